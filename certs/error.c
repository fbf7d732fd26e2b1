/* Error text for the set-up paths, which report into caller-supplied buffers. */
#include <stdarg.h>
#include <stdio.h>

#include <openssl/err.h>

#include "ca_internal.h"

void certs_set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

const char *certs_ossl_reason(void)
{
    unsigned long code = ERR_peek_last_error();
    const char *reason = code ? ERR_reason_error_string(code) : NULL;
    return reason ? reason : "unknown OpenSSL error";
}
