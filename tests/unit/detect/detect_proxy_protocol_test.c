/* PROXY protocol headers built as HAProxy's send-proxy and send-proxy-v2 write them
 * (doc/proxy-protocol.txt), every prefix of them, and every way to get them wrong. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>

#include "guarded_buffer.h"
#include "proxy_protocol.h"

#define ROOM 8192

static guarded_buffer guard;

static int setup(void **state)
{
    (void)state;
    guarded_init(&guard, ROOM);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    guarded_free(&guard);
    return 0;
}

/* The input ends right before a PROT_NONE page: reading past n faults. */
static detect_answer parse(const void *p, size_t n, proxy_protocol_header *h)
{
    return proxy_protocol_parse(guarded_place(&guard, p, n), n, h);
}

static detect_answer parse_str(const char *s, proxy_protocol_header *h)
{
    return parse(s, strlen(s), h);
}

/* Every proper prefix of a valid header waits for more, and says nothing yet. */
static void assert_prefixes_wait(const uint8_t *p, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        proxy_protocol_header h;
        detect_answer a = parse(p, k, &h);
        if (a != DETECT_NEED_MORE)
            fail_msg("prefix of %zu/%zu bytes: answer %d (%s)", k, n, a,
                     h.error ? h.error : "no error");
        assert_null(h.error);
        assert_int_equal(h.header_len, 0);
    }
}

static void assert_refused(const void *p, size_t n, const char *why)
{
    proxy_protocol_header h;
    detect_answer a = parse(p, n, &h);
    if (a != DETECT_NO)
        fail_msg("answer %d, want NO (%s)", a, why);
    assert_non_null(h.error);
    assert_string_equal(h.error, why);
    assert_int_equal(h.header_len, 0);
    assert_false(h.has_addresses);
}

static void assert_v4(const struct sockaddr_storage *ss, const char *addr, uint16_t port)
{
    const struct sockaddr_in *s = (const struct sockaddr_in *)ss;
    char text[INET_ADDRSTRLEN];
    assert_int_equal(s->sin_family, AF_INET);
    assert_non_null(inet_ntop(AF_INET, &s->sin_addr, text, sizeof text));
    assert_string_equal(text, addr);
    assert_int_equal(ntohs(s->sin_port), port);
}

static void assert_v6(const struct sockaddr_storage *ss, const char *addr, uint16_t port)
{
    const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)ss;
    char text[INET6_ADDRSTRLEN];
    assert_int_equal(s->sin6_family, AF_INET6);
    assert_non_null(inet_ntop(AF_INET6, &s->sin6_addr, text, sizeof text));
    assert_string_equal(text, addr);
    assert_int_equal(ntohs(s->sin6_port), port);
}

/* ---- v1 ---- */

static const char tcp4_line[] = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n";

static void v1_tcp4_as_haproxy_sends_it(void **state)
{
    (void)state;
    char in[128];
    size_t line = strlen(tcp4_line);
    /* The client's own bytes follow in the same read. */
    snprintf(in, sizeof in, "%sGET / HTTP/1.1\r\n", tcp4_line);
    proxy_protocol_header h;
    assert_int_equal(parse_str(in, &h), DETECT_MATCH);
    assert_int_equal(h.header_len, line);
    assert_int_equal(h.version, 1);
    assert_int_equal(h.command, PROXY_PROTOCOL_PROXY);
    assert_true(h.has_addresses);
    assert_null(h.error);
    assert_v4(&h.source, "192.168.0.1", 56324);
    assert_v4(&h.destination, "192.168.0.11", 443);
    assert_prefixes_wait((const uint8_t *)tcp4_line, line);

    assert_int_equal(parse_str("PROXY TCP4 255.255.255.255 0.0.0.0 65535 0\r\n", &h), DETECT_MATCH);
    assert_v4(&h.source, "255.255.255.255", 65535);
    assert_v4(&h.destination, "0.0.0.0", 0);
}

static void v1_tcp6(void **state)
{
    (void)state;
    static const char line[] = "PROXY TCP6 2001:DB8::1 ::ffff:10.0.0.2 40000 3128\r\n";
    proxy_protocol_header h;
    assert_int_equal(parse_str(line, &h), DETECT_MATCH);
    assert_int_equal(h.header_len, strlen(line));
    assert_v6(&h.source, "2001:db8::1", 40000);
    /* v4-mapped stays as sent: the caller canonicalises (names_sockaddr_canonical). */
    assert_v6(&h.destination, "::ffff:10.0.0.2", 3128);
    assert_prefixes_wait((const uint8_t *)line, strlen(line));

    /* The longest TCP6 line of the spec: 104 bytes. */
    static const char longest[] = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                                  "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    assert_int_equal(strlen(longest), 104);
    assert_int_equal(parse_str(longest, &h), DETECT_MATCH);
    assert_int_equal(h.header_len, 104);
}

static void v1_unknown_keeps_the_connection_addresses(void **state)
{
    (void)state;
    proxy_protocol_header h;
    assert_int_equal(parse_str("PROXY UNKNOWN\r\nhello", &h), DETECT_MATCH);
    assert_int_equal(h.header_len, 15);
    assert_false(h.has_addresses);
    assert_int_equal(h.command, PROXY_PROTOCOL_PROXY);
    assert_prefixes_wait((const uint8_t *)"PROXY UNKNOWN\r\n", 15);

    /* The spec's worst case, 107 bytes: the rest of an UNKNOWN line is ignored. */
    static const char worst[] = "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                                "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    assert_int_equal(strlen(worst), PROXY_PROTOCOL_V1_MAX);
    assert_int_equal(parse_str(worst, &h), DETECT_MATCH);
    assert_int_equal(h.header_len, PROXY_PROTOCOL_V1_MAX);
    assert_false(h.has_addresses);
    assert_prefixes_wait((const uint8_t *)worst, strlen(worst));
}

static void v1_malformed_lines_are_refused(void **state)
{
    (void)state;
    static const struct {
        const char *line;
        const char *why;
    } t[] = {
        {"GET / HTTP/1.1\r\n", "not a PROXY protocol header"},
        {"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "not a PROXY protocol header"},
        {"PROXY\r\n", "not a PROXY protocol header"},
        {"PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "unknown protocol in PROXY v1 line"},
        {"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", "unknown protocol in PROXY v1 line"},
        {"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", "unknown protocol in PROXY v1 line"},
        {"PROXY UNKNOWNX\r\n", "unknown protocol in PROXY v1 line"},
        {"PROXY UNKNOWN junk\n", "PROXY v1 line ends without CRLF"},
        {"PROXY UNKNOWN\rX", "PROXY v1 line ends without CRLF"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "bad destination port in PROXY v1 line"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX", "PROXY v1 line ends without CRLF"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", "bad destination port in PROXY v1 line"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "bad destination port in PROXY v1 line"},
        {"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", "bad source address in PROXY v1 line"},
        {"PROXY TCP4 192.168.000.1 5.6.7.8 1 2\r\n", "bad source address in PROXY v1 line"},
        {"PROXY TCP4 256.1.1.1 5.6.7.8 1 2\r\n", "bad source address in PROXY v1 line"},
        {"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", "bad source address in PROXY v1 line"},
        {"PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n", "bad source address in PROXY v1 line"},
        {"PROXY TCP4 1..3.4 5.6.7.8 1 2\r\n", "bad source address in PROXY v1 line"},
        {"PROXY TCP4 1111.2.3.4 5.6.7.8 1 2\r\n", "bad source address in PROXY v1 line"},
        {"PROXY TCP4 ::1 5.6.7.8 1 2\r\n", "bad source address in PROXY v1 line"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8.9 1 2\r\n", "bad destination address in PROXY v1 line"},
        {"PROXY TCP4 1.2.3.4 ::1 1 2\r\n", "bad destination address in PROXY v1 line"},
        {"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "bad source address in PROXY v1 line"},
        {"PROXY TCP6 ::1 ::g 1 2\r\n", "bad destination address in PROXY v1 line"},
        {"PROXY TCP6 ::1 1::2::3 1 2\r\n", "bad destination address in PROXY v1 line"},
        {"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", "bad source address in PROXY v1 line"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 056324 443\r\n", "bad source port in PROXY v1 line"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 -1 443\r\n", "bad source port in PROXY v1 line"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 65536 443\r\n", "source port out of range in PROXY v1 line"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n",
         "destination port out of range in PROXY v1 line"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 123456\r\n", "bad destination port in PROXY v1 line"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 00\r\n", "bad destination port in PROXY v1 line"},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        proxy_protocol_header h;
        detect_answer a = parse_str(t[i].line, &h);
        if (a != DETECT_NO || !h.error || strcmp(h.error, t[i].why) != 0)
            fail_msg("%s: answer %d, error %s, want %s", t[i].line, a, h.error ? h.error : "(none)",
                     t[i].why);
        assert_int_equal(h.header_len, 0);
    }
}

/* A line cut anywhere before its last field, then ended, is never a header. */
static void v1_truncated_lines_are_refused(void **state)
{
    (void)state;
    size_t last_space = strrchr(tcp4_line, ' ') - tcp4_line;
    for (size_t k = 1; k <= last_space; k++) {
        char cut[128];
        memcpy(cut, tcp4_line, k);
        memcpy(cut + k, "\r\n", 3);
        proxy_protocol_header h;
        if (parse_str(cut, &h) != DETECT_NO)
            fail_msg("accepted or waits on \"%.*s\" + CRLF", (int)k, tcp4_line);
        assert_non_null(h.error);
    }
}

static void v1_line_without_crlf_in_107_bytes_is_too_long(void **state)
{
    (void)state;
    char line[200];
    memset(line, 'x', sizeof line);
    memcpy(line, "PROXY UNKNOWN ", 14);
    proxy_protocol_header h;
    assert_int_equal(parse(line, PROXY_PROTOCOL_V1_MAX - 1, &h), DETECT_NEED_MORE);
    assert_refused(line, PROXY_PROTOCOL_V1_MAX, "PROXY v1 line longer than 107 bytes");
    assert_refused(line, sizeof line, "PROXY v1 line longer than 107 bytes");
    /* 106 bytes then CRLF would be 108. */
    memcpy(line + 106, "\r\n", 2);
    assert_refused(line, 108, "PROXY v1 line longer than 107 bytes");
    memcpy(line + 105, "\r\n", 2);
    assert_int_equal(parse(line, 107, &h), DETECT_MATCH);

    /* A TCP6 line with long embedded dotted quads also hits the cap. */
    static const char tcp6[] = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 "
                               "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 65535 65535\r\n";
    assert_refused(tcp6, strlen(tcp6), "PROXY v1 line longer than 107 bytes");
}

/* ---- v2 ---- */

static const uint8_t signature[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                      0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

/* RFC 4960 appendix B, written independently of the parser's. */
static uint32_t crc32c(const uint8_t *p, size_t n)
{
    static uint32_t table[256];
    if (!table[1])
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++)
                c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
            table[i] = c;
        }
    uint32_t crc = 0xffffffffu;
    for (size_t i = 0; i < n; i++)
        crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
    return ~crc;
}

typedef struct {
    uint8_t b[ROOM];
    size_t n;
} v2_header;

/* Signature, version/command, family, then the length patched by v2_end. */
static void v2_begin(v2_header *h, uint8_t ver_cmd, uint8_t fam)
{
    memcpy(h->b, signature, 12);
    h->b[12] = ver_cmd;
    h->b[13] = fam;
    h->n = 16;
}

static void v2_put(v2_header *h, const void *p, size_t n)
{
    memcpy(h->b + h->n, p, n);
    h->n += n;
}

static void v2_put16(v2_header *h, uint16_t v)
{
    uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    v2_put(h, b, 2);
}

static void v2_tlv(v2_header *h, uint8_t type, const void *value, uint16_t len)
{
    v2_put(h, &type, 1);
    v2_put16(h, len);
    v2_put(h, value, len);
}

static void v2_end(v2_header *h)
{
    h->b[14] = (uint8_t)((h->n - 16) >> 8);
    h->b[15] = (uint8_t)(h->n - 16);
}

/* send-proxy-v2 for 192.0.2.10:51000 -> 198.51.100.5:3128. */
static void v2_tcp4(v2_header *h)
{
    static const uint8_t src[4] = {192, 0, 2, 10}, dst[4] = {198, 51, 100, 5};
    v2_begin(h, 0x21, 0x11);
    v2_put(h, src, 4);
    v2_put(h, dst, 4);
    v2_put16(h, 51000);
    v2_put16(h, 3128);
    v2_end(h);
}

static void v2_tcp4_as_haproxy_sends_it(void **state)
{
    (void)state;
    v2_header h;
    v2_tcp4(&h);
    assert_int_equal(h.n, 28);
    memcpy(h.b + h.n, "\x16\x03\x01", 3); /* a ClientHello follows */
    proxy_protocol_header r;
    assert_int_equal(parse(h.b, h.n + 3, &r), DETECT_MATCH);
    assert_int_equal(r.header_len, 28);
    assert_int_equal(r.version, 2);
    assert_int_equal(r.command, PROXY_PROTOCOL_PROXY);
    assert_true(r.has_addresses);
    assert_v4(&r.source, "192.0.2.10", 51000);
    assert_v4(&r.destination, "198.51.100.5", 3128);
    assert_prefixes_wait(h.b, h.n);
}

static void v2_tcp6(void **state)
{
    (void)state;
    v2_header h;
    struct in6_addr src, dst;
    inet_pton(AF_INET6, "2001:db8::7", &src);
    inet_pton(AF_INET6, "::ffff:10.1.1.1", &dst);
    v2_begin(&h, 0x21, 0x21);
    v2_put(&h, &src, 16);
    v2_put(&h, &dst, 16);
    v2_put16(&h, 1);
    v2_put16(&h, 65535);
    v2_end(&h);
    proxy_protocol_header r;
    assert_int_equal(parse(h.b, h.n, &r), DETECT_MATCH);
    assert_int_equal(r.header_len, 52);
    assert_v6(&r.source, "2001:db8::7", 1);
    assert_v6(&r.destination, "::ffff:10.1.1.1", 65535);
    assert_prefixes_wait(h.b, h.n);
}

static void v2_tlvs_are_skipped_and_crc32c_checked(void **state)
{
    (void)state;
    assert_int_equal(crc32c((const uint8_t *)"123456789", 9), 0xe3069283u);

    v2_header h;
    v2_tcp4(&h);
    v2_tlv(&h, 0x01, "h2", 2);                /* ALPN */
    v2_tlv(&h, 0x02, "example.test", 12);     /* AUTHORITY */
    v2_tlv(&h, 0x04, "", 0);                  /* NOOP */
    v2_tlv(&h, 0x05, "0123456789abcdef", 16); /* UNIQUE_ID */
    static const uint8_t ssl[] = {0x01, 0,   0,   0,   0,   0x21, 0x00, 0x07,
                                  'T',  'L', 'S', 'v', '1', '.',  '3'};
    v2_tlv(&h, 0x20, ssl, sizeof ssl);
    size_t crc_at = h.n + 3;
    v2_tlv(&h, 0x03, "\0\0\0\0", 4);
    v2_end(&h);
    uint32_t crc = crc32c(h.b, h.n);
    h.b[crc_at] = (uint8_t)(crc >> 24);
    h.b[crc_at + 1] = (uint8_t)(crc >> 16);
    h.b[crc_at + 2] = (uint8_t)(crc >> 8);
    h.b[crc_at + 3] = (uint8_t)crc;

    proxy_protocol_header r;
    assert_int_equal(parse(h.b, h.n, &r), DETECT_MATCH);
    assert_int_equal(r.header_len, h.n);
    assert_v4(&r.source, "192.0.2.10", 51000);
    assert_prefixes_wait(h.b, h.n);

    /* Any changed byte covered by the checksum is caught (the signature and the length
     * have their own checks). */
    for (size_t i = 16; i < h.n; i++) {
        if (i >= crc_at - 3 && i < crc_at) /* the CRC TLV's own type and length */
            continue;
        h.b[i] ^= 0x40;
        detect_answer a = parse(h.b, h.n, &r);
        h.b[i] ^= 0x40;
        if (a != DETECT_NO)
            fail_msg("byte %zu changed: answer %d", i, a);
    }
    h.b[20] ^= 1; /* the source address */
    assert_refused(h.b, h.n, "CRC32C mismatch in PROXY v2 header");
    h.b[20] ^= 1;

    h.b[crc_at - 1] = 3; /* CRC32C TLV of 3 bytes, one stray byte after it */
    assert_refused(h.b, h.n, "bad CRC32C TLV in PROXY v2 header");
    h.b[crc_at - 1] = 5;
    assert_refused(h.b, h.n, "TLV runs past the PROXY v2 header");
}

static void v2_local_and_other_families_keep_the_connection_addresses(void **state)
{
    (void)state;
    v2_header h;
    proxy_protocol_header r;

    v2_begin(&h, 0x20, 0x00); /* LOCAL, as a health check sends it */
    v2_end(&h);
    assert_int_equal(parse(h.b, h.n, &r), DETECT_MATCH);
    assert_int_equal(r.header_len, 16);
    assert_int_equal(r.command, PROXY_PROTOCOL_LOCAL);
    assert_false(r.has_addresses);
    assert_prefixes_wait(h.b, h.n);

    v2_begin(&h, 0x20, 0xff); /* LOCAL ignores the family byte */
    v2_tlv(&h, 0x04, "pad", 3);
    v2_end(&h);
    assert_int_equal(parse(h.b, h.n, &r), DETECT_MATCH);
    assert_int_equal(r.header_len, 22);
    assert_int_equal(r.command, PROXY_PROTOCOL_LOCAL);

    v2_begin(&h, 0x21, 0x00); /* PROXY over UNSPEC */
    v2_end(&h);
    assert_int_equal(parse(h.b, h.n, &r), DETECT_MATCH);
    assert_int_equal(r.command, PROXY_PROTOCOL_PROXY);
    assert_false(r.has_addresses);

    static const uint8_t zeros[216] = {0};
    v2_begin(&h, 0x21, 0x12); /* UDP over IPv4 */
    v2_put(&h, zeros, 12);
    v2_end(&h);
    assert_int_equal(parse(h.b, h.n, &r), DETECT_MATCH);
    assert_false(r.has_addresses);

    v2_begin(&h, 0x21, 0x31); /* AF_UNIX stream */
    v2_put(&h, zeros, 216);
    v2_tlv(&h, 0x02, "x.test", 6);
    v2_end(&h);
    assert_int_equal(parse(h.b, h.n, &r), DETECT_MATCH);
    assert_int_equal(r.header_len, 16 + 216 + 9);
    assert_false(r.has_addresses);
}

static void v2_malformed_headers_are_refused(void **state)
{
    (void)state;
    v2_header h;
    for (size_t i = 0; i < 12; i++) {
        v2_tcp4(&h);
        h.b[i] ^= 0x20;
        /* A changed first byte is no PROXY header at all ("P" aside). */
        assert_refused(h.b, h.n, i == 0 ? "not a PROXY protocol header" : "bad PROXY v2 signature");
    }
    static const uint8_t bad_versions[] = {0x01, 0x11, 0x31, 0xf1};
    for (size_t i = 0; i < sizeof bad_versions; i++) {
        v2_tcp4(&h);
        h.b[12] = bad_versions[i];
        assert_refused(h.b, 13, "bad PROXY v2 version");
    }
    v2_tcp4(&h);
    h.b[12] = 0x22;
    assert_refused(h.b, 13, "unknown PROXY v2 command");
    h.b[12] = 0x2f;
    assert_refused(h.b, h.n, "unknown PROXY v2 command");

    static const uint8_t bad_families[] = {0x01, 0x02, 0x10, 0x13, 0x20, 0x33, 0x41, 0xff};
    for (size_t i = 0; i < sizeof bad_families; i++) {
        v2_tcp4(&h);
        h.b[13] = bad_families[i];
        assert_refused(h.b, 14, "unknown PROXY v2 address family or transport");
    }

    /* A length that cannot hold the family's address block. */
    for (unsigned len = 0; len < 12; len++) {
        v2_tcp4(&h);
        h.b[15] = (uint8_t)len;
        assert_refused(h.b, 16 + len, "truncated address block in PROXY v2 header");
    }
    v2_begin(&h, 0x21, 0x21);
    static const uint8_t junk[35] = {1};
    v2_put(&h, junk, sizeof junk);
    v2_end(&h);
    assert_refused(h.b, h.n, "truncated address block in PROXY v2 header");

    /* TLVs that do not fit. */
    v2_tcp4(&h);
    v2_put(&h, "\x04\x00", 2);
    v2_end(&h);
    assert_refused(h.b, h.n, "truncated TLV in PROXY v2 header");
    v2_tcp4(&h);
    v2_put(&h, "\x04\x00\x05xxxx", 7);
    v2_end(&h);
    assert_refused(h.b, h.n, "TLV runs past the PROXY v2 header");
    v2_tcp4(&h);
    v2_tlv(&h, 0x03, "\0\0\0", 3);
    v2_end(&h);
    assert_refused(h.b, h.n, "bad CRC32C TLV in PROXY v2 header");
}

static void v2_length_is_bounded(void **state)
{
    (void)state;
    static uint8_t pad[PROXY_PROTOCOL_V2_MAX];
    v2_header h;
    proxy_protocol_header r;
    /* Exactly the bound: 16 + 12 + one NOOP TLV filling the rest. */
    v2_tcp4(&h);
    v2_tlv(&h, 0x04, pad, (uint16_t)(PROXY_PROTOCOL_V2_MAX - 28 - 3));
    v2_end(&h);
    assert_int_equal(h.n, PROXY_PROTOCOL_V2_MAX);
    assert_int_equal(parse(h.b, h.n, &r), DETECT_MATCH);
    assert_int_equal(r.header_len, PROXY_PROTOCOL_V2_MAX);
    assert_int_equal(parse(h.b, h.n - 1, &r), DETECT_NEED_MORE);

    /* One byte more is refused as soon as the length is known. */
    h.b[15]++;
    assert_refused(h.b, 16, "PROXY v2 header longer than 4096 bytes");
    h.b[14] = 0xff;
    h.b[15] = 0xff;
    assert_refused(h.b, 16, "PROXY v2 header longer than 4096 bytes");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(v1_tcp4_as_haproxy_sends_it),
        cmocka_unit_test(v1_tcp6),
        cmocka_unit_test(v1_unknown_keeps_the_connection_addresses),
        cmocka_unit_test(v1_malformed_lines_are_refused),
        cmocka_unit_test(v1_truncated_lines_are_refused),
        cmocka_unit_test(v1_line_without_crlf_in_107_bytes_is_too_long),
        cmocka_unit_test(v2_tcp4_as_haproxy_sends_it),
        cmocka_unit_test(v2_tcp6),
        cmocka_unit_test(v2_tlvs_are_skipped_and_crc32c_checked),
        cmocka_unit_test(v2_local_and_other_families_keep_the_connection_addresses),
        cmocka_unit_test(v2_malformed_headers_are_refused),
        cmocka_unit_test(v2_length_is_bounded),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
