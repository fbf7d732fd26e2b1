/*
 * TLS ClientHello (RFC 8446 section 4.1.2, RFC 5246 section 7.4.1.2), possibly fragmented over
 * several handshake records. Reads the SNI, ALPN and supported_versions extensions.
 */
#include "detect_internal.h"

#include <string.h>

#define RECORD_HEADER_LEN      5
#define RECORD_HANDSHAKE       22
#define RECORD_MAX_PLAINTEXT   16384
#define HANDSHAKE_HEADER_LEN   4
#define HANDSHAKE_CLIENT_HELLO 1
/* version, random, empty session id, one suite, one compression method */
#define CLIENT_HELLO_MIN_LEN (2 + 32 + 1 + 2 + 2 + 1 + 1)

#define EXT_SERVER_NAME        0
#define EXT_ALPN               16
#define EXT_SUPPORTED_VERSIONS 43
#define SNI_HOST_NAME          0

/* A bounds-checked reader over the ClientHello body. */
typedef struct {
    const uint8_t *p;
    size_t len;
    size_t off;
    bool bad;
} reader;

static size_t left(const reader *r)
{
    return r->len - r->off;
}

static const uint8_t *take(reader *r, size_t count)
{
    if (r->bad || count > left(r)) {
        r->bad = true;
        return NULL;
    }
    const uint8_t *at = r->p + r->off;
    r->off += count;
    return at;
}

static unsigned take_u8(reader *r)
{
    const uint8_t *at = take(r, 1);
    return at != NULL ? at[0] : 0;
}

static unsigned take_u16(reader *r)
{
    const uint8_t *at = take(r, 2);
    return at != NULL ? detect_u16(at) : 0;
}

/* A vector with a length prefix of prefix_len bytes, as a reader of its own. */
static reader take_vector(reader *r, size_t prefix_len)
{
    size_t count = prefix_len == 1 ? take_u8(r) : take_u16(r);
    const uint8_t *at = take(r, count);
    reader sub = {at, at != NULL ? count : 0, 0, at == NULL};
    return sub;
}

static bool has_nul(const uint8_t *p, size_t n)
{
    return memchr(p, 0, n) != NULL;
}

static bool parse_server_name(reader ext, detect_tls_info *info)
{
    reader list = take_vector(&ext, 2);
    if (list.bad || left(&ext) != 0 || left(&list) == 0)
        return false;
    while (left(&list) > 0) {
        unsigned type = take_u8(&list);
        reader name = take_vector(&list, 2);
        if (list.bad)
            return false;
        if (type != SNI_HOST_NAME || info->sni[0] != '\0')
            continue;
        /* A name that cannot be a C string or a DNS name would mislead the policy. */
        if (name.len == 0 || name.len > DETECT_MAX_SNI || has_nul(name.p, name.len))
            return false;
        memcpy(info->sni, name.p, name.len);
        info->sni[name.len] = '\0';
    }
    return true;
}

static bool parse_alpn(reader ext, detect_tls_info *info)
{
    reader list = take_vector(&ext, 2);
    if (list.bad || left(&ext) != 0 || left(&list) == 0)
        return false;
    while (left(&list) > 0) {
        reader proto = take_vector(&list, 1);
        if (list.bad || proto.len == 0)
            return false;
        /* Only names that fit and are printable as C strings are kept. */
        if (info->alpn_count < DETECT_MAX_ALPN && proto.len < sizeof info->alpn[0] &&
            !has_nul(proto.p, proto.len)) {
            memcpy(info->alpn[info->alpn_count], proto.p, proto.len);
            info->alpn[info->alpn_count][proto.len] = '\0';
            info->alpn_count++;
        }
    }
    return true;
}

/* RFC 8701 GREASE values (0x?A?A) are placeholders, never real versions. */
static bool is_grease(unsigned v)
{
    return (v & 0x0f0f) == 0x0a0a && (v >> 8) == (v & 0xff);
}

static bool parse_supported_versions(reader ext, detect_tls_info *info)
{
    reader list = take_vector(&ext, 1);
    if (list.bad || left(&ext) != 0 || left(&list) == 0 || left(&list) % 2 != 0)
        return false;
    while (left(&list) > 0) {
        unsigned v = take_u16(&list);
        if (!is_grease(v) && v > info->max_version)
            info->max_version = (uint16_t)v;
    }
    return true;
}

static bool parse_extension(unsigned type, reader ext, detect_tls_info *info)
{
    switch (type) {
    case EXT_SERVER_NAME:
        return parse_server_name(ext, info);
    case EXT_ALPN:
        return parse_alpn(ext, info);
    case EXT_SUPPORTED_VERSIONS:
        return parse_supported_versions(ext, info);
    default:
        return true;
    }
}

/* Parses the ClientHello body (after the 4-byte handshake header). */
static bool parse_client_hello(const uint8_t *body, size_t len, detect_tls_info *info)
{
    reader r = {body, len, 0, false};
    info->legacy_version = (uint16_t)take_u16(&r);
    take(&r, 32);
    reader session_id = take_vector(&r, 1);
    reader suites = take_vector(&r, 2);
    reader compressions = take_vector(&r, 1);
    if (r.bad || session_id.len > 32 || suites.len < 2 || suites.len % 2 != 0 ||
        compressions.len < 1)
        return false;

    if (left(&r) > 0) {
        reader exts = take_vector(&r, 2);
        if (r.bad || left(&r) != 0)
            return false;
        while (left(&exts) > 0) {
            unsigned type = take_u16(&exts);
            reader ext = take_vector(&exts, 2);
            if (exts.bad)
                return false;
            if (!parse_extension(type, ext, info))
                return false;
        }
    }
    /* Without supported_versions (or with GREASE only), the legacy field is the offer. */
    if (info->max_version == 0)
        info->max_version = info->legacy_version;
    return true;
}

/* Checks one record header at p: a handshake record of version 3.x and sane length. */
static detect_answer record_header(const uint8_t *p, size_t n, size_t *record_len)
{
    if (n < 1)
        return DETECT_NEED_MORE;
    if (p[0] != RECORD_HANDSHAKE)
        return DETECT_NO;
    if (n < 2)
        return DETECT_NEED_MORE;
    if (p[1] != 3)
        return DETECT_NO;
    if (n < RECORD_HEADER_LEN)
        return DETECT_NEED_MORE;
    *record_len = detect_u16(p + 3);
    if (*record_len == 0 || *record_len > RECORD_MAX_PLAINTEXT)
        return DETECT_NO;
    return DETECT_MATCH;
}

/* Fewest wire bytes that can carry a handshake message of this size. */
static size_t min_wire_bytes(size_t message_len)
{
    size_t records = (message_len + RECORD_MAX_PLAINTEXT - 1) / RECORD_MAX_PLAINTEXT;
    return message_len + records * RECORD_HEADER_LEN;
}

/* Early rejections on a partial handshake message, so non-TLS bytes are refused quickly. */
static detect_answer check_message_start(const uint8_t *msg, size_t have, size_t *needed)
{
    if (have >= 1 && msg[0] != HANDSHAKE_CLIENT_HELLO)
        return DETECT_NO;
    if (have >= HANDSHAKE_HEADER_LEN) {
        size_t body_len = ((size_t)msg[1] << 16) | ((size_t)msg[2] << 8) | msg[3];
        if (body_len < CLIENT_HELLO_MIN_LEN)
            return DETECT_NO;
        *needed = HANDSHAKE_HEADER_LEN + body_len;
        if (min_wire_bytes(*needed) > DETECT_MAX_BYTES)
            return DETECT_NO;
    }
    if (have >= HANDSHAKE_HEADER_LEN + 1 && msg[HANDSHAKE_HEADER_LEN] != 3)
        return DETECT_NO;
    return DETECT_NEED_MORE;
}

detect_answer detect_tls_client_hello(const uint8_t *p, size_t n, detect_tls_info *info)
{
    detect_tls_info scratch_info;
    if (info == NULL)
        info = &scratch_info;
    memset(info, 0, sizeof *info);

    /* The handshake message reassembled from the record bodies; no record crosses the cap. */
    uint8_t msg[DETECT_MAX_BYTES];
    size_t have = 0;
    size_t needed = HANDSHAKE_HEADER_LEN;
    size_t pos = 0;

    for (;;) {
        size_t record_len = 0;
        detect_answer a = record_header(p + pos, n - pos, &record_len);
        if (a != DETECT_MATCH)
            return a;
        size_t body = pos + RECORD_HEADER_LEN;
        size_t record_end = body + record_len;
        if (record_end > DETECT_MAX_BYTES)
            return DETECT_NO;
        size_t avail = n - body < record_len ? n - body : record_len;
        memcpy(msg + have, p + body, avail);
        have += avail;

        a = check_message_start(msg, have, &needed);
        if (a == DETECT_NO)
            return DETECT_NO;
        if (avail < record_len)
            return DETECT_NEED_MORE;
        if (have >= needed) {
            if (!parse_client_hello(msg + HANDSHAKE_HEADER_LEN, needed - HANDSHAKE_HEADER_LEN,
                                    info)) {
                memset(info, 0, sizeof *info);
                return DETECT_NO;
            }
            info->hello_bytes = record_end;
            return DETECT_MATCH;
        }
        pos = record_end;
    }
}
