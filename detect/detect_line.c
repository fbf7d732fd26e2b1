/* Request-line scanning shared by the SIP and HTTP matchers. */
#include "detect_internal.h"

#include <string.h>

detect_answer detect_either(detect_answer a, detect_answer b)
{
    if (a == DETECT_MATCH || b == DETECT_MATCH)
        return DETECT_MATCH;
    if (a == DETECT_NEED_MORE || b == DETECT_NEED_MORE)
        return DETECT_NEED_MORE;
    return DETECT_NO;
}

static uint8_t ascii_lower(uint8_t c)
{
    return (c >= 'A' && c <= 'Z') ? (uint8_t)(c + ('a' - 'A')) : c;
}

detect_answer detect_expect(const uint8_t *p, size_t n, const uint8_t *want, size_t want_len,
                            bool nocase)
{
    size_t avail = n < want_len ? n : want_len;
    for (size_t i = 0; i < avail; i++) {
        uint8_t got = nocase ? ascii_lower(p[i]) : p[i];
        uint8_t exp = nocase ? ascii_lower(want[i]) : want[i];
        if (got != exp)
            return DETECT_NO;
    }
    return n < want_len ? DETECT_NEED_MORE : DETECT_MATCH;
}

static bool is_alnum(uint8_t c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* RFC 3261 section 25.1 token. */
bool detect_is_sip_token(uint8_t c)
{
    return is_alnum(c) || (c != 0 && strchr("-.!%*_+`'~", c) != NULL);
}

/* RFC 9110 section 5.6.2 tchar. */
bool detect_is_http_token(uint8_t c)
{
    return is_alnum(c) || (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* A request target is any run of visible bytes; UTF-8 is let through. */
static bool is_target_byte(uint8_t c)
{
    return c > 0x20 && c != 0x7f;
}

/* Matches the bytes at p against one of the words; *len gets the matched word's length. */
static detect_answer expect_one_of(const uint8_t *p, size_t n, const char *const *words,
                                   size_t count, bool nocase, size_t *len)
{
    detect_answer best = DETECT_NO;
    for (size_t i = 0; i < count; i++) {
        size_t wlen = strlen(words[i]);
        detect_answer a = detect_expect(p, n, (const uint8_t *)words[i], wlen, nocase);
        if (a == DETECT_MATCH) {
            *len = wlen;
            return DETECT_MATCH;
        }
        best = detect_either(best, a);
    }
    return best;
}

detect_answer detect_request_line(const uint8_t *p, size_t n,
                                  const detect_request_line_shape *shape)
{
    /* Past the line cap nothing can complete the line, so bytes beyond it are irrelevant. */
    size_t end = n < DETECT_MAX_LINE ? n : DETECT_MAX_LINE;
    detect_answer out_of_bytes = n < DETECT_MAX_LINE ? DETECT_NEED_MORE : DETECT_NO;
    size_t i = 0;

    while (i < end && shape->is_token(p[i]))
        i++;
    if (i == end)
        return out_of_bytes;
    if (i == 0 || p[i] != ' ')
        return DETECT_NO;
    i++;

    if (shape->target_prefixes != NULL) {
        size_t len = 0;
        detect_answer a = expect_one_of(p + i, end - i, shape->target_prefixes,
                                        shape->target_prefix_count, true, &len);
        if (a == DETECT_NO)
            return DETECT_NO;
        if (a == DETECT_NEED_MORE)
            return out_of_bytes;
        i += len;
    }
    /* The target (after its required prefix) must not be empty. */
    size_t target_start = i;
    while (i < end && is_target_byte(p[i]))
        i++;
    if (i == end)
        return out_of_bytes;
    if (i == target_start || p[i] != ' ')
        return DETECT_NO;
    i++;

    size_t len = 0;
    detect_answer a =
        expect_one_of(p + i, end - i, shape->versions, shape->version_count, false, &len);
    if (a == DETECT_NO)
        return DETECT_NO;
    if (a == DETECT_NEED_MORE)
        return out_of_bytes;
    i += len;

    a = detect_expect(p + i, end - i, (const uint8_t *)"\r\n", 2, false);
    return a == DETECT_NEED_MORE ? out_of_bytes : a;
}
