/* Edge cases of each matcher and of the classification order. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "detect.h"
#include "guarded_buffer.h"

static guarded_buffer guard;
static uint8_t work[DETECT_MAX_BYTES];

static int setup(void **state)
{
    (void)state;
    guarded_init(&guard, DETECT_MAX_BYTES);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    guarded_free(&guard);
    return 0;
}

static const uint8_t *place(const void *p, size_t n)
{
    return guarded_place(&guard, p, n);
}

static const uint8_t *place_str(const char *s)
{
    return place(s, strlen(s));
}

static detect_answer classify(const void *p, size_t n, detect_protocol *proto)
{
    detect_result r;
    detect_answer a = detect_classify(place(p, n), n, &r);
    *proto = r.protocol;
    return a;
}

static const uint8_t pseudo_hello[50] = {
    0x16, 0x03, 0x01, 0x00, 0x2d, 0x01, 0x00, 0x00, 0x29, 0x03, 0x01, 0xc1, 0xfc,
    0xd5, 0xa3, 0x6d, 0x93, 0xdd, 0x7e, 0x0b, 0x45, 0x67, 0x3f, 0xec, 0x79, 0x85,
    0xfb, 0xbc, 0x3f, 0xd6, 0x60, 0xc2, 0xce, 0x84, 0x85, 0x08, 0x1b, 0x81, 0x21,
    0xbc, 0xaa, 0x10, 0xfb, 0x00, 0x00, 0x02, 0x00, 0x18, 0x01, 0x00,
};

static void empty_input_waits(void **state)
{
    (void)state;
    detect_protocol proto;
    assert_int_equal(classify("", 0, &proto), DETECT_NEED_MORE);
    assert_int_equal(proto, PROTO_UNKNOWN);
    assert_int_equal(detect_classify_inner(place("", 0), 0, &(detect_result){0}), DETECT_NEED_MORE);
}

/* "S" may begin SUBSCRIBE (SIP) or SSH-2.0 (tcp): only more bytes can tell. */
static void ambiguous_first_byte_waits(void **state)
{
    (void)state;
    detect_protocol proto;
    assert_int_equal(classify("S", 1, &proto), DETECT_NEED_MORE);
    assert_int_equal(classify("SUBSCRIBE sip:a@b SIP/2.0\r", 26, &proto), DETECT_NEED_MORE);
    assert_int_equal(classify("SUBSCRIBE sip:a@b SIP/2.0\r\n", 27, &proto), DETECT_MATCH);
    assert_int_equal(proto, PROTO_SIP);
    assert_int_equal(classify("SSH-2.0-x\r\n", 11, &proto), DETECT_MATCH);
    assert_int_equal(proto, PROTO_TCP);
}

static void pseudo_tls_hello_wins_over_tls_only_when_complete(void **state)
{
    (void)state;
    detect_protocol proto;
    assert_int_equal(detect_tls_client_hello(place(pseudo_hello, 50), 50, NULL), DETECT_MATCH);
    assert_int_equal(classify(pseudo_hello, 49, &proto), DETECT_NEED_MORE);
    assert_int_equal(classify(pseudo_hello, 50, &proto), DETECT_MATCH);
    assert_int_equal(proto, PROTO_MSTURN);
}

/* Any change to a fixed byte makes it an ordinary hello (or nothing); random bytes may vary. */
static void pseudo_tls_hello_needs_every_fixed_byte(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof pseudo_hello; i++) {
        memcpy(work, pseudo_hello, sizeof pseudo_hello);
        work[i] ^= 0x40;
        detect_answer a = detect_msturn(place(work, sizeof pseudo_hello), sizeof pseudo_hello);
        bool is_random = i >= 11 && i < 43;
        assert_int_equal(a, is_random ? DETECT_MATCH : DETECT_NO);
        detect_protocol proto;
        classify(work, sizeof pseudo_hello, &proto);
        assert_true(is_random ? proto == PROTO_MSTURN : proto != PROTO_MSTURN);
    }
}

static void msturn_frame_needs_matching_lengths_and_cookie_first(void **state)
{
    (void)state;
    uint8_t frame[] = {0x02, 0x00, 0x00, 0x1c, 0x00, 0x03, 0x00, 0x08, 1,    2,   3,
                       4,    5,    6,    7,    8,    9,    10,   11,   12,   13,  14,
                       15,   16,   0x00, 0x0f, 0x00, 0x04, 0x72, 0xc6, 0x4b, 0xc6};
    assert_int_equal(detect_msturn(place(frame, sizeof frame), sizeof frame), DETECT_MATCH);
    assert_int_equal(detect_msturn(place(frame, 31), 31), DETECT_NEED_MORE);
    frame[3] = 0x1d; /* frame length no longer TURN length + 20 */
    assert_int_equal(detect_msturn(place(frame, sizeof frame), sizeof frame), DETECT_NO);
    frame[3] = 0x1c;
    frame[25] = 0x06; /* USERNAME first instead of MAGIC-COOKIE */
    assert_int_equal(detect_msturn(place(frame, sizeof frame), sizeof frame), DETECT_NO);
    frame[25] = 0x0f;
    frame[0] = 0x03; /* a data frame cannot open a connection */
    assert_int_equal(detect_msturn(place(frame, sizeof frame), sizeof frame), DETECT_NO);
}

static void stun_requires_cookie_type_bits_and_aligned_length(void **state)
{
    (void)state;
    uint8_t header[20] = {0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42};
    assert_int_equal(detect_stun(place(header, 8), 8), DETECT_MATCH);
    assert_int_equal(detect_stun(place(header, 7), 7), DETECT_NEED_MORE);
    header[7] = 0x43;
    assert_int_equal(detect_stun(place(header, 8), 8), DETECT_NO);
    header[7] = 0x42;
    header[3] = 0x02; /* length not a multiple of 4 */
    assert_int_equal(detect_stun(place(header, 8), 8), DETECT_NO);
    header[3] = 0x00;
    header[0] = 0x40; /* ChannelData, not allowed first */
    assert_int_equal(detect_stun(place(header, 8), 8), DETECT_NO);
}

static void rfc4571_prefix_must_match_the_message_size(void **state)
{
    (void)state;
    uint8_t framed[] = {0x00, 0x18, 0x00, 0x01, 0x00, 0x04, 0x21, 0x12, 0xa4, 0x42};
    assert_int_equal(detect_stun(place(framed, sizeof framed), sizeof framed), DETECT_MATCH);
    framed[1] = 0x14;
    assert_int_equal(detect_stun(place(framed, sizeof framed), sizeof framed), DETECT_NO);
}

static void sip_accepts_any_method_token_and_skips_keepalives(void **state)
{
    (void)state;
    const char *yes[] = {
        "NEGOTIATE sip:192.0.2.1:5061 SIP/2.0\r\n",
        "BENOTIFY sips:a@example.com SIP/2.0\r\n",
        "\r\n\r\nSERVICE SIP:a@example.com SIP/2.0\r\n",
        "SIP/2.0 180 Ringing\r\n",
        "SIP/2.0 603 \r\n",
    };
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
        assert_int_equal(detect_sip(place_str(yes[i]), strlen(yes[i])), DETECT_MATCH);
    const char *no[] = {
        "INVITE tel:+15551234 SIP/2.0\r\n", "INVITE sip: SIP/2.0\r\n", "INVITE sip:a SIP/3.0\r\n",
        "SIP/2.0 099 Too low\r\n",          "SIP/2.0 2000 OK\r\n",     "IN(VITE sip:a SIP/2.0\r\n",
        "INVITE sip:a SIP/2.0\n",
    };
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
        assert_int_equal(detect_sip(place_str(no[i]), strlen(no[i])), DETECT_NO);
    assert_int_equal(detect_sip(place_str("\r\n\r\n"), 4), DETECT_NEED_MORE);
}

/* Keep-alives as the SIP framer takes them: CRLF or a bare LF, never a lone CR. */
static void sip_skips_bare_lf_keepalives_but_not_lone_cr(void **state)
{
    (void)state;
    const char *yes[] = {
        "\n\nOPTIONS sip:a@example.com SIP/2.0\r\n",
        "\r\n\nREGISTER sip:example.com SIP/2.0\r\n",
        "\n\r\nSIP/2.0 200 OK\r\n",
    };
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
        assert_int_equal(detect_sip(place_str(yes[i]), strlen(yes[i])), DETECT_MATCH);
    const char *more[] = {"\n", "\n\n\r", "\r", "\n\nOPTIONS sip:a SIP/2.0\r"};
    for (size_t i = 0; i < sizeof more / sizeof more[0]; i++)
        assert_int_equal(detect_sip(place_str(more[i]), strlen(more[i])), DETECT_NEED_MORE);
    const char *no[] = {"\r\rOPTIONS sip:a SIP/2.0\r\n", "\n\rOPTIONS sip:a SIP/2.0\r\n",
                        "\r OPTIONS sip:a SIP/2.0\r\n"};
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
        assert_int_equal(detect_sip(place_str(no[i]), strlen(no[i])), DETECT_NO);
}

static void overlong_lines_are_refused(void **state)
{
    (void)state;
    memset(work, 'a', sizeof work);
    memcpy(work, "INVITE sip:", 11);
    assert_int_equal(detect_sip(place(work, 8191), 8191), DETECT_NEED_MORE);
    assert_int_equal(detect_sip(place(work, 8192), 8192), DETECT_NO);
    memcpy(work, "GET /", 5);
    assert_int_equal(detect_http(place(work, 9000), 9000), DETECT_NO);
}

static void http_request_line_needs_http1_version(void **state)
{
    (void)state;
    assert_int_equal(detect_http(place_str("OPTIONS * HTTP/1.1\r\n"), 20), DETECT_MATCH);
    assert_int_equal(detect_http(place_str("GET / HTTP/1.1"), 14), DETECT_NEED_MORE);
    assert_int_equal(detect_http(place_str("GET / HTTP/2.0\r\n"), 16), DETECT_NO);
    assert_int_equal(detect_http(place_str("GET  / HTTP/1.1\r\n"), 17), DETECT_NO);
    assert_int_equal(detect_http(place_str("G@T / HTTP/1.1\r\n"), 16), DETECT_NO);
}

/* A minimal hello with one extension, for malformation tests. */
static size_t build_hello(uint8_t *out, const uint8_t *ext, size_t ext_len)
{
    size_t body_len = 2 + 32 + 1 + 4 + 2 + 2 + ext_len;
    uint8_t *p = out;
    *p++ = 0x16, *p++ = 0x03, *p++ = 0x01;
    *p++ = (uint8_t)((body_len + 4) >> 8), *p++ = (uint8_t)(body_len + 4);
    *p++ = 0x01, *p++ = 0x00, *p++ = (uint8_t)(body_len >> 8), *p++ = (uint8_t)body_len;
    *p++ = 0x03, *p++ = 0x03;
    memset(p, 0xaa, 32), p += 32;
    *p++ = 0x00;
    *p++ = 0x00, *p++ = 0x02, *p++ = 0x13, *p++ = 0x01;
    *p++ = 0x01, *p++ = 0x00;
    *p++ = (uint8_t)(ext_len >> 8), *p++ = (uint8_t)ext_len;
    memcpy(p, ext, ext_len);
    return (size_t)(p + ext_len - out);
}

static void tls_reads_sni_and_refuses_malformed_extensions(void **state)
{
    (void)state;
    uint8_t sni[] = {0x00, 0x00, 0x00, 0x0b, 0x00, 0x09, 0x00, 0x00,
                     0x06, 'a',  '.',  'b',  '.',  'c',  'd'};
    size_t n = build_hello(work, sni, sizeof sni);
    detect_tls_info info;
    assert_int_equal(detect_tls_client_hello(place(work, n), n, &info), DETECT_MATCH);
    assert_string_equal(info.sni, "a.b.cd");
    assert_int_equal(info.max_version, 0x0303);
    assert_int_equal(info.hello_bytes, n);
    assert_int_equal(detect_tls_client_hello(place(work, n - 1), n - 1, &info), DETECT_NEED_MORE);

    sni[5] = 0x0a; /* server_name_list longer than the extension */
    n = build_hello(work, sni, sizeof sni);
    assert_int_equal(detect_tls_client_hello(place(work, n), n, &info), DETECT_NO);
    sni[5] = 0x09;
    sni[10] = 0x00; /* a NUL inside the name */
    n = build_hello(work, sni, sizeof sni);
    assert_int_equal(detect_tls_client_hello(place(work, n), n, &info), DETECT_NO);
}

static void tls_supported_versions_ignores_grease(void **state)
{
    (void)state;
    const uint8_t versions[] = {0x00, 0x2b, 0x00, 0x07, 0x06, 0x7a, 0x7a, 0x03, 0x04, 0x03, 0x03};
    size_t n = build_hello(work, versions, sizeof versions);
    detect_tls_info info;
    assert_int_equal(detect_tls_client_hello(place(work, n), n, &info), DETECT_MATCH);
    assert_int_equal(info.max_version, 0x0304);
    assert_int_equal(info.legacy_version, 0x0303);
}

static void tls_refuses_what_cannot_be_a_client_hello(void **state)
{
    (void)state;
    const uint8_t alert[] = {0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28};
    const uint8_t server_hello[] = {0x16, 0x03, 0x03, 0x00, 0x30, 0x02};
    const uint8_t huge_record[] = {0x16, 0x03, 0x01, 0x40, 0x01};
    const uint8_t beyond_cap[] = {0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0x00, 0x40, 0x00};
    assert_int_equal(detect_tls_client_hello(place(alert, 7), 7, NULL), DETECT_NO);
    assert_int_equal(detect_tls_client_hello(place(server_hello, 6), 6, NULL), DETECT_NO);
    assert_int_equal(detect_tls_client_hello(place(huge_record, 5), 5, NULL), DETECT_NO);
    assert_int_equal(detect_tls_client_hello(place(beyond_cap, 9), 9, NULL), DETECT_NO);
}

static void a_full_buffer_always_decides(void **state)
{
    (void)state;
    detect_protocol proto;
    memset(work, '\n', sizeof work); /* keep-alives forever: SIP would wait */
    assert_int_equal(classify(work, sizeof work, &proto), DETECT_MATCH);
    assert_int_equal(proto, PROTO_TCP);
    memset(work, 'A', sizeof work); /* a token that never ends */
    assert_int_equal(classify(work, sizeof work, &proto), DETECT_MATCH);
    assert_int_equal(proto, PROTO_TCP);
    /* A TLS record header promising more than arrived. */
    const uint8_t head[] = {0x16, 0x03, 0x01, 0x3f, 0xfb, 0x01, 0x00, 0x3f, 0xf7, 0x03, 0x03};
    memset(work, 0, sizeof work);
    memcpy(work, head, sizeof head);
    assert_int_equal(classify(work, sizeof work - 1, &proto), DETECT_NEED_MORE);
    assert_int_equal(classify(work, sizeof work, &proto), DETECT_MATCH);
    assert_int_equal(proto, PROTO_TCP);
}

static void protocol_names_round_trip(void **state)
{
    (void)state;
    const char *names[] = {"ms-turn", "ssl", "turn", "sip", "http", "https", "tcp"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        detect_protocol proto = detect_protocol_from_name(names[i]);
        assert_int_not_equal(proto, PROTO_UNKNOWN);
        assert_string_equal(detect_protocol_name(proto), names[i]);
    }
    assert_null(detect_protocol_name(PROTO_UNKNOWN));
    assert_int_equal(detect_protocol_from_name("SSL"), PROTO_UNKNOWN);
    assert_int_equal(detect_protocol_from_name(""), PROTO_UNKNOWN);
}

/* Inside TLS with ALPN h2 the first bytes are the HTTP/2 preface: that is HTTP (https), and
 * it is decided only once the whole preface is there. Outside TLS it is no request line. */
static void h2_preface_is_https_inside_tls(void **state)
{
    (void)state;
    static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\4\0\0\0\0\0";
    detect_result r;
    size_t full = 24;
    for (size_t n = 1; n < full; n++)
        assert_int_equal(detect_classify_inner(place(preface, n), n, &r), DETECT_NEED_MORE);
    assert_int_equal(detect_classify_inner(place(preface, full + 9), full + 9, &r), DETECT_MATCH);
    assert_int_equal(r.protocol, PROTO_HTTPS);
    /* One wrong byte of the preface: not HTTP/2, and not HTTP/1.1 either. */
    static const char wrong[] = "PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n";
    assert_int_equal(detect_classify_inner(place_str(wrong), strlen(wrong), &r), DETECT_MATCH);
    assert_int_equal(r.protocol, PROTO_TCP);
    assert_int_equal(detect_h2_preface(place_str("GET / HTTP/1.1\r\n"), 16), DETECT_NO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(empty_input_waits),
        cmocka_unit_test(ambiguous_first_byte_waits),
        cmocka_unit_test(pseudo_tls_hello_wins_over_tls_only_when_complete),
        cmocka_unit_test(pseudo_tls_hello_needs_every_fixed_byte),
        cmocka_unit_test(msturn_frame_needs_matching_lengths_and_cookie_first),
        cmocka_unit_test(stun_requires_cookie_type_bits_and_aligned_length),
        cmocka_unit_test(rfc4571_prefix_must_match_the_message_size),
        cmocka_unit_test(sip_accepts_any_method_token_and_skips_keepalives),
        cmocka_unit_test(sip_skips_bare_lf_keepalives_but_not_lone_cr),
        cmocka_unit_test(overlong_lines_are_refused),
        cmocka_unit_test(http_request_line_needs_http1_version),
        cmocka_unit_test(tls_reads_sni_and_refuses_malformed_extensions),
        cmocka_unit_test(tls_supported_versions_ignores_grease),
        cmocka_unit_test(tls_refuses_what_cannot_be_a_client_hello),
        cmocka_unit_test(a_full_buffer_always_decides),
        cmocka_unit_test(protocol_names_round_trip),
        cmocka_unit_test(h2_preface_is_https_inside_tls),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
