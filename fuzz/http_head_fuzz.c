/* Parses arbitrary bytes as an HTTP request head with llhttp, as the proxy does, and rewrites it
 * for forwarding: the head index stays inside its bounds, and the forwarded head never carries
 * a hop-by-hop or framing header of the original, whatever Connection names. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http_head.h"
#include "llhttp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_HEAD 4096

static http_head head;

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    (void)p;
    return head_append(&head, HEAD_URL, at, len, MAX_HEAD) ? -1 : 0;
}

static int on_field(llhttp_t *p, const char *at, size_t len)
{
    (void)p;
    return head_append(&head, HEAD_FIELD, at, len, MAX_HEAD) ? -1 : 0;
}

static int on_value(llhttp_t *p, const char *at, size_t len)
{
    (void)p;
    return head_append(&head, HEAD_VALUE, at, len, MAX_HEAD) ? -1 : 0;
}

static int on_value_done(llhttp_t *p)
{
    (void)p;
    head_value_done(&head);
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    (void)p;
    return HPE_PAUSED;
}

/* A forwarded line naming a header the proxy must write itself (or drop). */
static bool forbidden(const char *line, size_t len)
{
    static const char *const names[] = {
        "Content-Length:",   "Transfer-Encoding:", "Connection:", "Proxy-Authorization:",
        "Proxy-Connection:", "Keep-Alive:",        "Host:",       NULL};
    for (const char *const *n = names; *n; n++) {
        size_t nl = strlen(*n);
        if (len >= nl && strncasecmp(line, *n, nl) == 0)
            return true;
    }
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    llhttp_settings_t settings;
    llhttp_settings_init(&settings);
    settings.on_url = on_url;
    settings.on_header_field = on_field;
    settings.on_header_value = on_value;
    settings.on_header_value_complete = on_value_done;
    settings.on_headers_complete = on_headers_complete;
    llhttp_t parser;
    llhttp_init(&parser, HTTP_REQUEST, &settings);
    head_reset(&head);
    llhttp_errno_t err = llhttp_execute(&parser, (const char *)data, size);
    if (err == HPE_PAUSED) {
        if (head.len > MAX_HEAD || head.count > HEAD_MAX_HEADERS)
            abort();
        size_t cap = head_forward_size(&head);
        char *storage = malloc(cap);
        out_buf o;
        out_init(&o, storage, cap);
        static const char *const skip[] = {"Host", "Content-Length", NULL};
        head_write_forwarded(&head, &o, skip);
        if (o.overflow || o.len > cap)
            abort();
        /* Each forwarded line is one header; none of them may be one the proxy owns. */
        for (size_t i = 0; i < o.len;) {
            const char *eol = memchr(o.data + i, '\n', o.len - i);
            size_t len = eol ? (size_t)(eol - (o.data + i)) + 1 : o.len - i;
            if (forbidden(o.data + i, len))
                abort();
            i += len;
        }
        free(storage);
    }
    head_release(&head);
    return 0;
}
