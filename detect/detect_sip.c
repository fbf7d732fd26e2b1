/* SIP request or status line (RFC 3261 section 7.1 and 7.2), after RFC 5626 CRLF keep-alives.
 * Real clients also send a bare LF as a keep-alive; the SIP framer takes the same set. */
#include "detect_internal.h"

/* Methods are extensible (NEGOTIATE, BENOTIFY, SERVICE...), so any token is accepted. */
static const char *const sip_schemes[] = {"sip:", "sips:"};
static const char *const sip_versions[] = {"SIP/2.0"};

static const detect_request_line_shape sip_request_line = {
    .is_token = detect_is_sip_token,
    .target_prefixes = sip_schemes,
    .target_prefix_count = sizeof sip_schemes / sizeof sip_schemes[0],
    .versions = sip_versions,
    .version_count = sizeof sip_versions / sizeof sip_versions[0],
};

static bool is_reason_byte(uint8_t c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

/* `SIP/2.0 SP 3DIGIT SP reason-phrase CRLF`, the status code in 100..699. */
static detect_answer status_line(const uint8_t *p, size_t n)
{
    size_t end = n < DETECT_MAX_LINE ? n : DETECT_MAX_LINE;
    detect_answer out_of_bytes = n < DETECT_MAX_LINE ? DETECT_NEED_MORE : DETECT_NO;
    static const uint8_t start[] = "SIP/2.0 ";
    size_t i = sizeof start - 1;

    detect_answer a = detect_expect(p, end, start, i, false);
    if (a != DETECT_MATCH)
        return a == DETECT_NO ? DETECT_NO : out_of_bytes;
    for (size_t digit = 0; digit < 3; digit++, i++) {
        if (i == end)
            return out_of_bytes;
        uint8_t lowest = digit == 0 ? '1' : '0';
        uint8_t highest = digit == 0 ? '6' : '9';
        if (p[i] < lowest || p[i] > highest)
            return DETECT_NO;
    }
    if (i == end)
        return out_of_bytes;
    if (p[i++] != ' ')
        return DETECT_NO;
    while (i < end && is_reason_byte(p[i]))
        i++;
    a = detect_expect(p + i, end - i, (const uint8_t *)"\r\n", 2, false);
    return a == DETECT_NEED_MORE ? out_of_bytes : a;
}

detect_answer detect_sip(const uint8_t *p, size_t n)
{
    size_t skip = 0;
    while (skip < n && (p[skip] == '\r' || p[skip] == '\n')) {
        if (p[skip] == '\n') {
            skip++;
            continue;
        }
        if (skip + 1 == n)
            return DETECT_NEED_MORE;
        if (p[skip + 1] != '\n')
            return DETECT_NO; /* a CR alone is no keep-alive: the framer would refuse it */
        skip += 2;
    }
    if (skip == n)
        return DETECT_NEED_MORE;
    p += skip;
    n -= skip;
    return detect_either(detect_request_line(p, n, &sip_request_line), status_line(p, n));
}
