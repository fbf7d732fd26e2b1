/* PROXY protocol v1 and v2 headers, read the way doc/proxy-protocol.txt asks a receiver to:
 * anything that does not exactly match is refused, and nothing is decided from a partial
 * address block. */
#include "proxy_protocol.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "detect_internal.h"

#define V2_FIXED_LEN  16
#define V2_SIG_LEN    12
#define V2_CMD_LOCAL  0x0
#define V2_CMD_PROXY  0x1
#define TLV_HEAD_LEN  3
#define TLV_CRC32C    0x03
#define V4_TEXT_MAX   15                     /* 255.255.255.255 */
#define V6_TEXT_MAX   (INET6_ADDRSTRLEN - 1) /* with an embedded dotted quad */
#define PORT_TEXT_MAX 5

static const uint8_t v2_signature[V2_SIG_LEN] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                                 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

static detect_answer refuse(proxy_protocol_header *out, const char *why)
{
    out->error = why;
    return DETECT_NO;
}

/* ---- v1 ---- */

typedef struct {
    const uint8_t *p;
    size_t n; /* capped at the longest line, so running out there means "too long" */
    size_t i;
} cursor;

static bool is_digit(uint8_t c)
{
    return c >= '0' && c <= '9';
}

static bool in_v4_text(uint8_t c)
{
    return is_digit(c) || c == '.';
}

static bool in_v6_text(uint8_t c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':' || c == '.';
}

/* Reads a field of allowed bytes up to the terminator (consumed). NEED_MORE at the end of the
 * input; NO for a foreign byte or a field longer than max. */
static detect_answer field(cursor *c, bool (*allowed)(uint8_t), size_t max, uint8_t term,
                           const uint8_t **start, size_t *len)
{
    *start = c->p + c->i;
    size_t k = 0;
    for (; c->i < c->n; c->i++, k++) {
        uint8_t b = c->p[c->i];
        if (b == term && k > 0) {
            c->i++;
            *len = k;
            return DETECT_MATCH;
        }
        if (!allowed(b) || k == max)
            return DETECT_NO;
    }
    return DETECT_NEED_MORE;
}

/* Decimal without leading zeros (the spec forbids them to avoid octal readings). */
static bool decimal(const uint8_t *p, size_t n, unsigned max, unsigned *out)
{
    if (n == 0 || (n > 1 && p[0] == '0'))
        return false;
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit(p[i]))
            return false;
        v = v * 10 + (unsigned)(p[i] - '0');
        if (v > max)
            return false;
    }
    *out = v;
    return true;
}

/* Exactly four decimal numbers 0..255, no leading zeros. */
static bool v4_text(const uint8_t *p, size_t n, struct in_addr *out)
{
    uint8_t b[4];
    size_t part = 0, start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && p[i] != '.')
            continue;
        unsigned v;
        if (part == 4 || !decimal(p + start, i - start, 255, &v))
            return false;
        b[part++] = (uint8_t)v;
        start = i + 1;
    }
    if (part != 4)
        return false;
    memcpy(&out->s_addr, b, 4);
    return true;
}

static bool v6_text(const uint8_t *p, size_t n, struct in6_addr *out)
{
    char buf[INET6_ADDRSTRLEN];
    if (n >= sizeof buf)
        return false;
    memcpy(buf, p, n);
    buf[n] = '\0';
    return inet_pton(AF_INET6, buf, out) == 1;
}

static void set_v4(struct sockaddr_storage *ss, struct in_addr a, uint16_t port_host)
{
    struct sockaddr_in *s = (struct sockaddr_in *)ss;
    memset(ss, 0, sizeof *ss);
    s->sin_family = AF_INET;
    s->sin_addr = a;
    s->sin_port = htons(port_host);
}

static void set_v6(struct sockaddr_storage *ss, const struct in6_addr *a, uint16_t port_host)
{
    struct sockaddr_in6 *s = (struct sockaddr_in6 *)ss;
    memset(ss, 0, sizeof *ss);
    s->sin6_family = AF_INET6;
    s->sin6_addr = *a;
    s->sin6_port = htons(port_host);
}

/* `UNKNOWN`, then optionally a space and anything, up to the CRLF. */
static detect_answer v1_unknown(cursor *c, proxy_protocol_header *out)
{
    if (c->i < c->n && c->p[c->i] != ' ' && c->p[c->i] != '\r')
        return refuse(out, "unknown protocol in PROXY v1 line");
    for (; c->i < c->n; c->i++) {
        if (c->p[c->i] == '\n')
            return refuse(out, "PROXY v1 line ends without CRLF");
        if (c->p[c->i] != '\r')
            continue;
        if (c->i + 1 == c->n)
            return DETECT_NEED_MORE;
        if (c->p[c->i + 1] != '\n')
            return refuse(out, "PROXY v1 line ends without CRLF");
        out->header_len = c->i + 2;
        return DETECT_MATCH;
    }
    return DETECT_NEED_MORE;
}

/* `src SP dst SP sport SP dport CRLF` for TCP4 or TCP6. */
static detect_answer v1_tcp(cursor *c, bool v6, proxy_protocol_header *out)
{
    bool (*addr_bytes)(uint8_t) = v6 ? in_v6_text : in_v4_text;
    size_t addr_max = v6 ? V6_TEXT_MAX : V4_TEXT_MAX;
    static const char *const field_errors[4] = {
        "bad source address in PROXY v1 line",
        "bad destination address in PROXY v1 line",
        "bad source port in PROXY v1 line",
        "bad destination port in PROXY v1 line",
    };
    const uint8_t *text[4];
    size_t len[4];
    for (int f = 0; f < 4; f++) {
        detect_answer a =
            f < 2 ? field(c, addr_bytes, addr_max, ' ', &text[f], &len[f])
                  : field(c, is_digit, PORT_TEXT_MAX, f == 3 ? '\r' : ' ', &text[f], &len[f]);
        if (a == DETECT_NO)
            return refuse(out, field_errors[f]);
        if (a == DETECT_NEED_MORE)
            return a;
    }
    if (c->i == c->n)
        return DETECT_NEED_MORE;
    if (c->p[c->i] != '\n')
        return refuse(out, "PROXY v1 line ends without CRLF");
    out->header_len = c->i + 1;

    unsigned port[2];
    for (int f = 0; f < 2; f++) {
        if (len[2 + f] > 1 && text[2 + f][0] == '0')
            return refuse(out, field_errors[2 + f]);
        if (!decimal(text[2 + f], len[2 + f], 65535, &port[f]))
            return refuse(out, f == 0 ? "source port out of range in PROXY v1 line"
                                      : "destination port out of range in PROXY v1 line");
    }
    struct sockaddr_storage *where[2] = {&out->source, &out->destination};
    for (int f = 0; f < 2; f++) {
        if (v6) {
            struct in6_addr a;
            if (!v6_text(text[f], len[f], &a))
                return refuse(out, field_errors[f]);
            set_v6(where[f], &a, (uint16_t)port[f]);
        } else {
            struct in_addr a;
            if (!v4_text(text[f], len[f], &a))
                return refuse(out, field_errors[f]);
            set_v4(where[f], a, (uint16_t)port[f]);
        }
    }
    out->has_addresses = true;
    return DETECT_MATCH;
}

static detect_answer v1_parse(const uint8_t *p, size_t n, proxy_protocol_header *out)
{
    static const uint8_t proxy[] = "PROXY ";
    static const uint8_t tcp4[] = "TCP4 ", tcp6[] = "TCP6 ", unknown[] = "UNKNOWN";
    cursor c = {p, n < PROXY_PROTOCOL_V1_MAX ? n : PROXY_PROTOCOL_V1_MAX, 0};
    out->version = 1;
    out->command = PROXY_PROTOCOL_PROXY;

    detect_answer a = detect_expect(c.p, c.n, proxy, sizeof proxy - 1, false);
    if (a == DETECT_NO)
        return refuse(out, "not a PROXY protocol header");
    if (a == DETECT_NEED_MORE)
        return a;
    c.i = sizeof proxy - 1;

    const uint8_t *rest = c.p + c.i;
    size_t left = c.n - c.i;
    detect_answer a4 = detect_expect(rest, left, tcp4, sizeof tcp4 - 1, false);
    detect_answer a6 = detect_expect(rest, left, tcp6, sizeof tcp6 - 1, false);
    detect_answer au = detect_expect(rest, left, unknown, sizeof unknown - 1, false);
    if (a4 == DETECT_MATCH || a6 == DETECT_MATCH) {
        c.i += sizeof tcp4 - 1;
        a = v1_tcp(&c, a6 == DETECT_MATCH, out);
    } else if (au == DETECT_MATCH) {
        c.i += sizeof unknown - 1;
        a = v1_unknown(&c, out);
    } else if (a4 == DETECT_NO && a6 == DETECT_NO && au == DETECT_NO) {
        return refuse(out, "unknown protocol in PROXY v1 line");
    } else {
        a = DETECT_NEED_MORE;
    }
    /* The cursor stopped at the longest line: whatever waits there is too long. */
    if (a == DETECT_NEED_MORE && n >= PROXY_PROTOCOL_V1_MAX)
        return refuse(out, "PROXY v1 line longer than 107 bytes");
    return a;
}

/* ---- v2 ---- */

static uint32_t crc32c_update(uint32_t crc, uint8_t byte)
{
    crc ^= byte;
    for (int k = 0; k < 8; k++)
        crc = (crc >> 1) ^ (0x82f63b78u & (0u - (crc & 1u)));
    return crc;
}

/* RFC 4960 appendix B over the header, the checksum's own 4 bytes read as zero. */
static bool crc32c_matches(const uint8_t *p, size_t total, size_t value_off)
{
    uint32_t crc = 0xffffffffu;
    for (size_t i = 0; i < total; i++)
        crc = crc32c_update(crc, i >= value_off && i < value_off + 4 ? 0 : p[i]);
    crc = ~crc;
    uint32_t sent = (uint32_t)p[value_off] << 24 | (uint32_t)p[value_off + 1] << 16 |
                    (uint32_t)p[value_off + 2] << 8 | p[value_off + 3];
    return crc == sent;
}

/* Every TLV must lie inside the header; TLVs are skipped except CRC32C, which is checked. */
static detect_answer v2_tlvs(const uint8_t *p, size_t off, size_t total, proxy_protocol_header *out)
{
    while (off < total) {
        if (total - off < TLV_HEAD_LEN)
            return refuse(out, "truncated TLV in PROXY v2 header");
        size_t len = detect_u16(p + off + 1);
        if (len > total - off - TLV_HEAD_LEN)
            return refuse(out, "TLV runs past the PROXY v2 header");
        if (p[off] == TLV_CRC32C) {
            if (len != 4)
                return refuse(out, "bad CRC32C TLV in PROXY v2 header");
            if (!crc32c_matches(p, total, off + TLV_HEAD_LEN))
                return refuse(out, "CRC32C mismatch in PROXY v2 header");
        }
        off += TLV_HEAD_LEN + len;
    }
    return DETECT_MATCH;
}

/* Address block length of the family/transport byte, or -1 if no sender may use it. */
static int v2_block_len(uint8_t fam)
{
    switch (fam) {
    case 0x00:
        return 0; /* UNSPEC */
    case 0x11:
    case 0x12:
        return 12; /* TCP or UDP over IPv4 */
    case 0x21:
    case 0x22:
        return 36; /* TCP or UDP over IPv6 */
    case 0x31:
    case 0x32:
        return 216; /* AF_UNIX stream or datagram */
    default:
        return -1;
    }
}

static detect_answer v2_parse(const uint8_t *p, size_t n, proxy_protocol_header *out)
{
    out->version = 2;
    detect_answer a = detect_expect(p, n, v2_signature, V2_SIG_LEN, false);
    if (a == DETECT_NO)
        return refuse(out, "bad PROXY v2 signature");
    if (a == DETECT_NEED_MORE || n == V2_SIG_LEN)
        return DETECT_NEED_MORE;
    if (p[12] >> 4 != 2)
        return refuse(out, "bad PROXY v2 version");
    unsigned cmd = p[12] & 0x0f;
    if (cmd != V2_CMD_LOCAL && cmd != V2_CMD_PROXY)
        return refuse(out, "unknown PROXY v2 command");
    out->command = cmd == V2_CMD_LOCAL ? PROXY_PROTOCOL_LOCAL : PROXY_PROTOCOL_PROXY;
    if (n < 14)
        return DETECT_NEED_MORE;
    int block = v2_block_len(p[13]);
    /* LOCAL ignores the family byte, as the spec says. */
    if (block < 0 && cmd == V2_CMD_PROXY)
        return refuse(out, "unknown PROXY v2 address family or transport");
    if (n < V2_FIXED_LEN)
        return DETECT_NEED_MORE;
    size_t total = V2_FIXED_LEN + (size_t)detect_u16(p + 14);
    if (total > PROXY_PROTOCOL_V2_MAX)
        return refuse(out, "PROXY v2 header longer than 4096 bytes");
    if (n < total)
        return DETECT_NEED_MORE;
    out->header_len = total;

    if (cmd == V2_CMD_LOCAL) /* HAProxy reads a LOCAL header's TLVs right after 16 bytes */
        return v2_tlvs(p, V2_FIXED_LEN, total, out);
    if (total - V2_FIXED_LEN < (size_t)block)
        return refuse(out, "truncated address block in PROXY v2 header");
    const uint8_t *b = p + V2_FIXED_LEN;
    if (p[13] == 0x11) {
        struct in_addr s, d;
        memcpy(&s, b, 4);
        memcpy(&d, b + 4, 4);
        set_v4(&out->source, s, detect_u16(b + 8));
        set_v4(&out->destination, d, detect_u16(b + 10));
        out->has_addresses = true;
    } else if (p[13] == 0x21) {
        struct in6_addr s, d;
        memcpy(&s, b, 16);
        memcpy(&d, b + 16, 16);
        set_v6(&out->source, &s, detect_u16(b + 32));
        set_v6(&out->destination, &d, detect_u16(b + 34));
        out->has_addresses = true;
    }
    /* Other families (UNSPEC, UDP, AF_UNIX) fall back to the connection's own addresses, as
     * the spec asks of a receiver that does not implement them. */
    return v2_tlvs(p, V2_FIXED_LEN + (size_t)block, total, out);
}

detect_answer proxy_protocol_parse(const uint8_t *p, size_t n, proxy_protocol_header *out)
{
    memset(out, 0, sizeof *out);
    if (n == 0)
        return DETECT_NEED_MORE;
    detect_answer a;
    if (p[0] == 'P')
        a = v1_parse(p, n, out);
    else if (p[0] == v2_signature[0])
        a = v2_parse(p, n, out);
    else
        a = refuse(out, "not a PROXY protocol header");
    if (a != DETECT_MATCH) {
        /* Only a complete header describes anything. */
        const char *why = out->error;
        memset(out, 0, sizeof *out);
        out->error = why;
    }
    return a;
}
