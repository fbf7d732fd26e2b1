#include "framing.h"
#include "guarded.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

/* The pseudo-TLS ClientHello libnice sends (MSOC compatibility). */
#define CLIENT_HELLO                                                                               \
    0x16, 0x03, 0x01, 0x00, 0x2d, 0x01, 0x00, 0x00, 0x29, 0x03, 0x01, 0xc1, 0xfc, 0xd5, 0xa3,      \
        0x6d, 0x93, 0xdd, 0x7e, 0x0b, 0x45, 0x67, 0x3f, 0xec, 0x79, 0x85, 0xfb, 0xbc, 0x3f, 0xd6,  \
        0x60, 0xc2, 0xce, 0x84, 0x85, 0x08, 0x1b, 0x81, 0x21, 0xbc, 0xaa, 0x10, 0xfb, 0x00, 0x00,  \
        0x02, 0x00, 0x18, 0x01, 0x00

#define RANDOM32                                                                                   \
    0x5f, 0x1e, 0x2d, 0x3c, 0x4b, 0x5a, 0x69, 0x78, 0x87, 0x96, 0xa5, 0xb4, 0xc3, 0xd2, 0xe1,      \
        0xf0, 0x0f, 0x1e, 0x2d, 0x3c, 0x4b, 0x5a, 0x69, 0x78, 0x87, 0x96, 0xa5, 0xb4, 0xc3, 0xd2,  \
        0xe1, 0xf0

/* ServerHello (random, 32-byte session id, suite 0x0018, null compression) + ServerHelloDone. */
#define SERVER_HELLO                                                                               \
    0x16, 0x03, 0x01, 0x00, 0x4e, 0x02, 0x00, 0x00, 0x46, 0x03, 0x01, RANDOM32, 0x20, RANDOM32,    \
        0x00, 0x18, 0x00, 0x0e, 0x00, 0x00, 0x00

#define TXID                                                                                       \
    0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf, 0xb0
#define MAGIC_COOKIE_ATTR 0x00, 0x0f, 0x00, 0x04, 0x72, 0xc6, 0x4b, 0xc6

/* Control frames holding a TURN message that has only the Magic Cookie attribute. */
#define CONTROL(type_hi, type_lo)                                                                  \
    0x02, 0x00, 0x00, 0x1c, type_hi, type_lo, 0x00, 0x08, TXID, MAGIC_COOKIE_ATTR
#define ALLOCATE_RESPONSE                                                                          \
    0x02, 0x00, 0x00, 0x28, 0x01, 0x03, 0x00, 0x14, TXID, MAGIC_COOKIE_ATTR, 0x00, 0x01, 0x00,     \
        0x08, 0x00, 0x01, 0x0d, 0x96, 0xc0, 0x00, 0x02, 0x01

static const uint8_t client_stream[] = {
    CLIENT_HELLO,
    CONTROL(0x00, 0x03), /* Allocate */
    CONTROL(0x00, 0x06), /* Set Active Destination */
    0x03,
    0x00,
    0x00,
    0x05,
    'h',
    'e',
    'l',
    'l',
    'o',                 /* data */
    CONTROL(0x00, 0x04), /* Send */
    0x03,
    0x00,
    0x00,
    0x00, /* empty data frame */
};

static const uint8_t server_stream[] = {
    SERVER_HELLO,
    ALLOCATE_RESPONSE,
    CONTROL(0x01, 0x06), /* Set Active Destination response */
    CONTROL(0x01, 0x15), /* Data Indication */
    0x03,
    0x00,
    0x00,
    0x03,
    0x80,
    0x00,
    0x01,
    CONTROL(0x00, 0x02), /* Shared Secret: not an MS-TURN message, counted by type */
};

struct outcome {
    framing_status status;
    framing_counters counters;
    char error[FRAMING_ERROR_LEN];
};

/* Feeds one direction in pieces of at most 'piece' bytes, also cut at 'split'. */
static void play(bool from_server, const uint8_t *p, size_t n, size_t split, size_t piece,
                 struct outcome *out)
{
    msturn_stream s;
    msturn_stream_init(&s, from_server);
    memset(out, 0, sizeof *out);
    size_t start = 0;
    while (start < n) {
        size_t end = n - start > piece ? start + piece : n;
        if (split > start && split < end) {
            end = split;
        }
        guarded g;
        guarded_copy(&g, p + start, end - start);
        framing_status st = msturn_stream_feed(&s, g.bytes, end - start, &out->counters);
        guarded_release(&g);
        if (st != FRAMING_OK) {
            out->status = st;
        }
        start = end;
    }
    memcpy(out->error, s.error, sizeof out->error);
}

static struct outcome play_whole(bool from_server, const uint8_t *p, size_t n)
{
    struct outcome out;
    play(from_server, p, n, SIZE_MAX, SIZE_MAX, &out);
    return out;
}

static void assert_split_invariant(bool from_server, const uint8_t *p, size_t n)
{
    struct outcome whole = play_whole(from_server, p, n);
    struct outcome cut;
    for (size_t split = 1; split < n; split++) {
        play(from_server, p, n, split, SIZE_MAX, &cut);
        assert_int_equal(cut.status, whole.status);
        assert_memory_equal(&cut.counters, &whole.counters, sizeof whole.counters);
    }
    play(from_server, p, n, SIZE_MAX, 1, &cut);
    assert_int_equal(cut.status, whole.status);
    assert_memory_equal(&cut.counters, &whole.counters, sizeof whole.counters);
}

static void pseudo_tls_session_is_framed_and_counted(void **state)
{
    (void)state;
    struct outcome c = play_whole(false, client_stream, sizeof client_stream);
    assert_int_equal(c.status, FRAMING_OK);
    assert_int_equal(framing_counter_get(&c.counters, "Allocate"), 1);
    assert_int_equal(framing_counter_get(&c.counters, "Set Active Destination"), 1);
    assert_int_equal(framing_counter_get(&c.counters, "Send"), 1);
    assert_int_equal(framing_counter_get(&c.counters, "data"), 2);
    assert_int_equal(c.counters.used, 4);
    assert_split_invariant(false, client_stream, sizeof client_stream);

    struct outcome s = play_whole(true, server_stream, sizeof server_stream);
    assert_int_equal(s.status, FRAMING_OK);
    assert_int_equal(framing_counter_get(&s.counters, "Allocate response"), 1);
    assert_int_equal(framing_counter_get(&s.counters, "Set Active Destination response"), 1);
    assert_int_equal(framing_counter_get(&s.counters, "Data Indication"), 1);
    assert_int_equal(framing_counter_get(&s.counters, "data"), 1);
    assert_int_equal(framing_counter_get(&s.counters, "type 0x0002"), 1);
    assert_split_invariant(true, server_stream, sizeof server_stream);
}

static void frames_may_start_without_pseudo_tls(void **state)
{
    (void)state;
    const size_t hello = 50;
    struct outcome c = play_whole(false, client_stream + hello, sizeof client_stream - hello);
    assert_int_equal(c.status, FRAMING_OK);
    assert_int_equal(framing_counter_get(&c.counters, "Allocate"), 1);
    assert_int_equal(framing_counter_get(&c.counters, "data"), 2);

    const size_t answer = 83;
    struct outcome s = play_whole(true, server_stream + answer, sizeof server_stream - answer);
    assert_int_equal(s.status, FRAMING_OK);
    assert_int_equal(framing_counter_get(&s.counters, "Allocate response"), 1);
}

static void expect_error(bool from_server, const uint8_t *p, size_t n, const char *reason)
{
    struct outcome out = play_whole(from_server, p, n);
    assert_int_equal(out.status, FRAMING_ERROR);
    if (strstr(out.error, reason) == NULL) {
        fail_msg("error \"%s\" does not mention \"%s\"", out.error, reason);
    }
    /* The verdict must not depend on how the bytes arrive either. */
    struct outcome bytewise;
    play(from_server, p, n, SIZE_MAX, 1, &bytewise);
    assert_int_equal(bytewise.status, FRAMING_ERROR);
    assert_string_equal(bytewise.error, out.error);
}

static void wrong_server_answers_are_errors(void **state)
{
    (void)state;
    uint8_t bad[sizeof server_stream];

    /* Another cipher suite in the ServerHello. */
    memcpy(bad, server_stream, sizeof bad);
    bad[77] = 0x2f;
    expect_error(true, bad, sizeof bad, "byte 77");

    /* Session id of another length. */
    memcpy(bad, server_stream, sizeof bad);
    bad[43] = 0x00;
    expect_error(true, bad, sizeof bad, "byte 43");

    /* A real TLS 1.2 ServerHello record. */
    static const uint8_t tls12[] = {0x16, 0x03, 0x03, 0x00, 0x59, 0x02, 0x00, 0x00, 0x55, 0x03};
    expect_error(true, tls12, sizeof tls12, "ServerHello byte 2");

    /* An HTTP answer. */
    static const uint8_t http[] = "HTTP/1.1 403 Forbidden\r\n";
    expect_error(true, http, sizeof http - 1, "neither a pseudo-TLS hello nor an MS-TURN frame");

    /* The client's hello with extra cipher suites. */
    memcpy(bad, client_stream, 50);
    bad[45] = 0x04;
    expect_error(false, bad, 50, "ClientHello byte 45");
}

static void bad_frames_are_errors(void **state)
{
    (void)state;
    static const uint8_t bad_type[] = {CONTROL(0x00, 0x03), 0x04, 0x00, 0x00, 0x01, 0xff};
    expect_error(false, bad_type, sizeof bad_type, "frame type 0x04");

    static const uint8_t reserved[] = {0x03, 0x01, 0x00, 0x01, 0xff};
    expect_error(false, reserved, sizeof reserved, "reserved");

    /* TURN message length 8 in a frame of 36 bytes. */
    static const uint8_t mismatch[] = {
        0x02, 0x00, 0x00, 0x24, 0x00, 0x03, 0x00, 0x08, TXID, MAGIC_COOKIE_ATTR,
        0,    0,    0,    0,    0,    0,    0,    0};
    expect_error(false, mismatch, sizeof mismatch, "does not match");

    static const uint8_t too_short[] = {0x02, 0x00, 0x00, 0x04, 0x00, 0x03, 0x00, 0x00};
    expect_error(false, too_short, sizeof too_short, "shorter");

    /* A ChannelData-looking payload in a control frame. */
    static const uint8_t not_turn[] = {0x02, 0x00, 0x00, 0x14, 0x40, 0x00, 0x00, 0x00, TXID};
    expect_error(false, not_turn, sizeof not_turn, "TURN message");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pseudo_tls_session_is_framed_and_counted),
        cmocka_unit_test(frames_may_start_without_pseudo_tls),
        cmocka_unit_test(wrong_server_answers_are_errors),
        cmocka_unit_test(bad_frames_are_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
