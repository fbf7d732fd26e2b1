/* What the origin-side checks share: result text, and ASN1_TIME read without the process
 * clock so every check can be made at a given "now". */
#include <stdarg.h>
#include <stdio.h>

#include <openssl/asn1.h>

#include "revocation_internal.h"

const char *certs_rev_status_name(enum certs_rev_status status)
{
    switch (status) {
    case CERTS_REV_GOOD:
        return "good";
    case CERTS_REV_REVOKED:
        return "revoked";
    case CERTS_REV_UNKNOWN:
        return "unknown";
    case CERTS_REV_ERROR:
        break;
    }
    return "error";
}

enum certs_rev_status certs_rev_set(struct certs_rev_result *out, enum certs_rev_status status,
                                    const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out->reason, sizeof out->reason, fmt, ap);
    va_end(ap);
    out->status = status;
    return status;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (the well-known era arithmetic). */
static long long days_from_civil(long long y, unsigned m, unsigned d)
{
    y -= m <= 2;
    long long era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (long long)doe - 719468;
}

time_t certs_asn1_time(const ASN1_TIME *t)
{
    struct tm tm;
    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
        return 0;
    long long days =
        days_from_civil(tm.tm_year + 1900LL, (unsigned)tm.tm_mon + 1, (unsigned)tm.tm_mday);
    return (time_t)(days * 86400 + tm.tm_hour * 3600 + tm.tm_min * 60 + tm.tm_sec);
}
