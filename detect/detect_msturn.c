/* MS-TURN over TCP: the pseudo-TLS hello of [MS-TURN] 2.1.1, or a 2.1.4 control frame. */
#include "detect_internal.h"

#define PSEUDO_TLS_HELLO_LEN  50
#define PSEUDO_TLS_RANDOM_OFF 11
#define PSEUDO_TLS_RANDOM_LEN 32

/* Fixed bytes of the 50-byte hello; the 32 random bytes at offset 11 are skipped. */
static const uint8_t pseudo_tls_head[PSEUDO_TLS_RANDOM_OFF] = {
    0x16, 0x03, 0x01, 0x00, 0x2d, /* handshake record, TLS 1.0, 45 bytes */
    0x01, 0x00, 0x00, 0x29,       /* ClientHello, 41 bytes */
    0x03, 0x01,                   /* client_version 3.1 */
};
static const uint8_t pseudo_tls_tail[] = {
    0x00,                   /* no session id */
    0x00, 0x02, 0x00, 0x18, /* one cipher suite, 0x0018 */
    0x01, 0x00,             /* null compression only, no extensions */
};
_Static_assert(PSEUDO_TLS_RANDOM_OFF + PSEUDO_TLS_RANDOM_LEN + sizeof pseudo_tls_tail ==
                   PSEUDO_TLS_HELLO_LEN,
               "the pseudo-TLS hello is 50 bytes");

static detect_answer pseudo_tls_hello(const uint8_t *p, size_t n)
{
    detect_answer a = detect_expect(p, n, pseudo_tls_head, sizeof pseudo_tls_head, false);
    if (a != DETECT_MATCH)
        return a;
    size_t tail_off = PSEUDO_TLS_RANDOM_OFF + PSEUDO_TLS_RANDOM_LEN;
    if (n <= tail_off)
        return DETECT_NEED_MORE;
    /* Bytes after the 50th belong to whatever follows the hello, not to its shape. */
    return detect_expect(p + tail_off, n - tail_off, pseudo_tls_tail, sizeof pseudo_tls_tail,
                         false);
}

#define FRAME_HEADER_LEN 4
#define TURN_HEADER_LEN  20
#define FRAME_CONTROL    0x02

static const uint8_t magic_cookie_attr[] = {0x00, 0x0f, 0x00, 0x04, 0x72, 0xc6, 0x4b, 0xc6};

/*
 * `02 00 LL LL`, then a TURN header (type with its two top bits zero, length, 16-byte
 * transaction id) whose length plus 20 is LL, then the MAGIC-COOKIE attribute, which
 * [MS-TURN] 2.2.2 requires first in every message.
 */
static detect_answer control_frame(const uint8_t *p, size_t n)
{
    if (n < 1)
        return DETECT_NEED_MORE;
    if (p[0] != FRAME_CONTROL)
        return DETECT_NO;
    if (n < 2)
        return DETECT_NEED_MORE;
    if (p[1] != 0x00)
        return DETECT_NO;
    if (n < FRAME_HEADER_LEN)
        return DETECT_NEED_MORE;
    size_t frame_len = detect_u16(p + 2);
    if (frame_len < TURN_HEADER_LEN + sizeof magic_cookie_attr)
        return DETECT_NO;
    if (n < FRAME_HEADER_LEN + 1)
        return DETECT_NEED_MORE;
    if ((p[FRAME_HEADER_LEN] & 0xc0) != 0)
        return DETECT_NO;
    if (n < FRAME_HEADER_LEN + 4)
        return DETECT_NEED_MORE;
    if ((size_t)detect_u16(p + FRAME_HEADER_LEN + 2) + TURN_HEADER_LEN != frame_len)
        return DETECT_NO;
    size_t attr_off = FRAME_HEADER_LEN + TURN_HEADER_LEN;
    if (n <= attr_off)
        return DETECT_NEED_MORE;
    return detect_expect(p + attr_off, n - attr_off, magic_cookie_attr, sizeof magic_cookie_attr,
                         false);
}

detect_answer detect_msturn(const uint8_t *p, size_t n)
{
    if (n == 0)
        return DETECT_NEED_MORE;
    return detect_either(pseudo_tls_hello(p, n), control_frame(p, n));
}
