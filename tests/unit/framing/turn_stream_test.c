#include "framing.h"
#include "guarded.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

/* RFC 5769 section 2.1: sample Binding request (SOFTWARE, PRIORITY, ICE-CONTROLLED, USERNAME,
 * MESSAGE-INTEGRITY, FINGERPRINT), 20 + 88 bytes. */
#define RFC5769_REQUEST                                                                            \
    0x00, 0x01, 0x00, 0x58, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6,      \
        0x86, 0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x10, 0x53, 0x54, 0x55, 0x4e, 0x20, 0x74,  \
        0x65, 0x73, 0x74, 0x20, 0x63, 0x6c, 0x69, 0x65, 0x6e, 0x74, 0x00, 0x24, 0x00, 0x04, 0x6e,  \
        0x00, 0x01, 0xff, 0x80, 0x29, 0x00, 0x08, 0x93, 0x2f, 0xf9, 0xb1, 0x51, 0x26, 0x3b, 0x36,  \
        0x00, 0x06, 0x00, 0x09, 0x65, 0x76, 0x74, 0x6a, 0x3a, 0x68, 0x36, 0x76, 0x59, 0x20, 0x20,  \
        0x20, 0x00, 0x08, 0x00, 0x14, 0x9a, 0xea, 0xa7, 0x0c, 0xbf, 0xd8, 0xcb, 0x56, 0x78, 0x1e,  \
        0xf2, 0xb5, 0xb2, 0xd3, 0xf2, 0x49, 0xc1, 0xb5, 0x71, 0xa2, 0x80, 0x28, 0x00, 0x04, 0xe5,  \
        0x7a, 0x3b, 0xcf

#define COOKIE 0x21, 0x12, 0xa4, 0x42
#define TXID   0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c

/* Header-only STUN messages of the given type. */
#define STUN(type_hi, type_lo) type_hi, type_lo, 0x00, 0x00, COOKIE, TXID

static const uint8_t plain_stream[] = {
    RFC5769_REQUEST,
    0x40,
    0x00,
    0x00,
    0x05,
    'h',
    'e',
    'l',
    'l',
    'o',
    0,
    0,
    0, /* ChannelData, padded to 8 */
    0x7f,
    0xff,
    0x00,
    0x04,
    1,
    2,
    3,
    4,                /* ChannelData, no padding needed */
    STUN(0x00, 0x03), /* Allocate request */
    STUN(0x01, 0x13), /* Allocate error response */
    STUN(0x01, 0x09), /* ChannelBind success response */
    STUN(0x00, 0x17), /* Data indication */
    STUN(0x00, 0x0f), /* unknown method 0x00f */
    0x40,
    0x01,
    0x00,
    0x00, /* empty ChannelData */
};

/* RFC 4571 framing (ICE-TCP): each packet has a 2-byte length. */
static const uint8_t prefixed_stream[] = {
    0x00, 0x6c, RFC5769_REQUEST,
    0x00, 0x0c, 0x80,
    0x00, 0x00, 0x01,
    0,    0,    0,
    0,    0,    0,
    0,    0,                      /* RTP */
    0x00, 0x14, STUN(0x01, 0x01), /* Binding response */
    0x00, 0x03, 0x17,
    0xfe, 0xfd, /* short packet */
};

struct outcome {
    framing_status status;
    framing_counters counters;
    char error[FRAMING_ERROR_LEN];
};

static void play(const uint8_t *p, size_t n, size_t split, size_t piece, struct outcome *out)
{
    turn_stream s;
    turn_stream_init(&s);
    memset(out, 0, sizeof *out);
    size_t start = 0;
    while (start < n) {
        size_t end = n - start > piece ? start + piece : n;
        if (split > start && split < end) {
            end = split;
        }
        guarded g;
        guarded_copy(&g, p + start, end - start);
        framing_status st = turn_stream_feed(&s, g.bytes, end - start, &out->counters);
        guarded_release(&g);
        if (st != FRAMING_OK) {
            out->status = st;
        }
        start = end;
    }
    memcpy(out->error, s.error, sizeof out->error);
}

static struct outcome play_whole(const uint8_t *p, size_t n)
{
    struct outcome out;
    play(p, n, SIZE_MAX, SIZE_MAX, &out);
    return out;
}

static void assert_split_invariant(const uint8_t *p, size_t n)
{
    struct outcome whole = play_whole(p, n);
    struct outcome cut;
    for (size_t split = 1; split < n; split++) {
        play(p, n, split, SIZE_MAX, &cut);
        assert_int_equal(cut.status, whole.status);
        assert_memory_equal(&cut.counters, &whole.counters, sizeof whole.counters);
    }
    play(p, n, SIZE_MAX, 1, &cut);
    assert_int_equal(cut.status, whole.status);
    assert_memory_equal(&cut.counters, &whole.counters, sizeof whole.counters);
}

static void stun_then_channel_data(void **state)
{
    (void)state;
    struct outcome out = play_whole(plain_stream, sizeof plain_stream);
    assert_int_equal(out.status, FRAMING_OK);
    assert_int_equal(framing_counter_get(&out.counters, "Binding"), 1);
    assert_int_equal(framing_counter_get(&out.counters, "ChannelData"), 3);
    assert_int_equal(framing_counter_get(&out.counters, "Allocate"), 1);
    assert_int_equal(framing_counter_get(&out.counters, "Allocate error"), 1);
    assert_int_equal(framing_counter_get(&out.counters, "ChannelBind response"), 1);
    assert_int_equal(framing_counter_get(&out.counters, "Data"), 1);
    assert_int_equal(framing_counter_get(&out.counters, "method 0x00f"), 1);
    assert_int_equal(out.counters.used, 7);
    assert_split_invariant(plain_stream, sizeof plain_stream);
}

static void length_prefixed_stream(void **state)
{
    (void)state;
    struct outcome out = play_whole(prefixed_stream, sizeof prefixed_stream);
    assert_int_equal(out.status, FRAMING_OK);
    assert_int_equal(framing_counter_get(&out.counters, "Binding"), 1);
    assert_int_equal(framing_counter_get(&out.counters, "Binding response"), 1);
    assert_int_equal(framing_counter_get(&out.counters, "data"), 2);
    assert_split_invariant(prefixed_stream, sizeof prefixed_stream);
}

static void expect_error(const uint8_t *p, size_t n, const char *reason)
{
    struct outcome out = play_whole(p, n);
    assert_int_equal(out.status, FRAMING_ERROR);
    if (strstr(out.error, reason) == NULL) {
        fail_msg("error \"%s\" does not mention \"%s\"", out.error, reason);
    }
    struct outcome bytewise;
    play(p, n, SIZE_MAX, 1, &bytewise);
    assert_int_equal(bytewise.status, FRAMING_ERROR);
    assert_string_equal(bytewise.error, out.error);
}

static void framing_errors(void **state)
{
    (void)state;
    static const uint8_t channel_first[] = {0x40, 0x00, 0x00, 0x04, 1, 2, 3, 4, 0, 0, 0, 0};
    expect_error(channel_first, sizeof channel_first, "first message is not STUN");

    static const uint8_t http[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    expect_error(http, sizeof http - 1, "first message is not STUN");

    /* A pre-RFC 5389 message without the cookie, after a valid one. */
    static const uint8_t no_cookie[] = {STUN(0x00, 0x01), 0x00, 0x01, 0x00, 0x00, 0, 0, 0, 0};
    expect_error(no_cookie, sizeof no_cookie, "magic cookie");

    static const uint8_t odd_length[] = {STUN(0x00, 0x01), 0x00, 0x01, 0x00, 0x02, COOKIE};
    expect_error(odd_length, sizeof odd_length, "multiple of 4");

    static const uint8_t top_bits[] = {STUN(0x00, 0x01), 0x80, 0x00, 0x00, 0x00};
    expect_error(top_bits, sizeof top_bits, "neither");

    /* Unpadded ChannelData puts the next header at the wrong place. */
    static const uint8_t unpadded[] = {STUN(0x00, 0x01), 0x40, 0x00, 0x00, 0x01, 0xaa,
                                       STUN(0x00, 0x03)};
    expect_error(unpadded, sizeof unpadded, "magic cookie");

    static const uint8_t prefix_mismatch[] = {0x00, 0x18, STUN(0x00, 0x01), 0, 0, 0, 0};
    expect_error(prefix_mismatch, sizeof prefix_mismatch, "RFC 4571");
}

static void first_message_counts_before_channel_data(void **state)
{
    (void)state;
    /* The same ChannelData is fine once a STUN message has passed. */
    static const uint8_t ok[] = {STUN(0x00, 0x03), 0x40, 0x00, 0x00, 0x04, 1, 2, 3, 4};
    struct outcome out = play_whole(ok, sizeof ok);
    assert_int_equal(out.status, FRAMING_OK);
    assert_int_equal(framing_counter_get(&out.counters, "ChannelData"), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(stun_then_channel_data),
        cmocka_unit_test(length_prefixed_stream),
        cmocka_unit_test(framing_errors),
        cmocka_unit_test(first_message_counts_before_channel_data),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
