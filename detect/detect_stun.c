/* STUN/TURN over TCP: an RFC 5389 header, bare or behind an RFC 4571 length prefix. */
#include "detect_internal.h"

#define STUN_HEADER_LEN    20
#define STUN_COOKIE_OFF    4
#define RFC4571_PREFIX_LEN 2

static const uint8_t stun_magic_cookie[] = {0x21, 0x12, 0xa4, 0x42};

/* Type with its two top bits zero, a length that is a multiple of 4, then the cookie. */
static detect_answer stun_header(const uint8_t *p, size_t n)
{
    if (n < 1)
        return DETECT_NEED_MORE;
    if ((p[0] & 0xc0) != 0)
        return DETECT_NO;
    if (n < STUN_COOKIE_OFF)
        return DETECT_NEED_MORE;
    if (detect_u16(p + 2) % 4 != 0)
        return DETECT_NO;
    return detect_expect(p + STUN_COOKIE_OFF, n - STUN_COOKIE_OFF, stun_magic_cookie,
                         sizeof stun_magic_cookie, false);
}

/* RFC 4571 frames carry one message, so the prefix must equal the STUN message's size. */
static detect_answer framed_stun_header(const uint8_t *p, size_t n)
{
    if (n < RFC4571_PREFIX_LEN)
        return DETECT_NEED_MORE;
    detect_answer a = stun_header(p + RFC4571_PREFIX_LEN, n - RFC4571_PREFIX_LEN);
    if (a == DETECT_NO || n < RFC4571_PREFIX_LEN + STUN_COOKIE_OFF)
        return a;
    size_t stun_len = detect_u16(p + RFC4571_PREFIX_LEN + 2);
    if (detect_u16(p) != STUN_HEADER_LEN + stun_len)
        return DETECT_NO;
    return a;
}

detect_answer detect_stun(const uint8_t *p, size_t n)
{
    return detect_either(stun_header(p, n), framed_stun_header(p, n));
}
