/* STUN/TURN over TCP (RFC 5389, RFC 5766 section 11): self-delimiting STUN messages (20-byte
 * header + length) and, once a STUN message has been seen, ChannelData (4-byte header + length,
 * padded to a multiple of 4 on TCP). A stream whose first packet carries an RFC 4571 2-byte length
 * prefix (the magic cookie at offset 6 rather than 4, as in ICE-TCP, RFC 6544) keeps that framing:
 * every packet is prefixed, STUN packets are counted by method and anything else as "data".
 *
 * Counter names: requests and indications by method ("Allocate"), success responses as
 * "<method> response", error responses as "<method> error", ChannelData as "ChannelData". */
#include "framing.h"

#include <stdio.h>
#include <string.h>

enum turn_state {
    TS_START,      /* deciding between plain and RFC 4571 framing */
    TS_PLAIN_HDR,  /* collecting a STUN or ChannelData header */
    TS_PREFIX_HDR, /* collecting an RFC 4571 length and the start of its packet */
    TS_SKIP,       /* relaying the rest of a message */
    TS_FAILED,
};

#define STUN_HEADER 20
#define PREFIX_LEN  2
#define PEEK_LEN    8 /* type, length and magic cookie */

static const uint8_t magic_cookie[4] = {0x21, 0x12, 0xa4, 0x42};

static framing_status turn_fail(turn_stream *s, const char *reason)
{
    snprintf(s->error, sizeof s->error, "TURN: %s", reason);
    s->state = TS_FAILED;
    return FRAMING_ERROR;
}

static unsigned be16(const uint8_t *p)
{
    return (unsigned)(p[0] << 8 | p[1]);
}

/* True when p (PEEK_LEN bytes) starts a STUN message of RFC 5389. */
static bool looks_like_stun(const uint8_t *p)
{
    return (p[0] & 0xc0) == 0 && memcmp(p + 4, magic_cookie, sizeof magic_cookie) == 0;
}

static const char *method_name(unsigned method)
{
    switch (method) {
    case 0x001:
        return "Binding";
    case 0x003:
        return "Allocate";
    case 0x004:
        return "Refresh";
    case 0x006:
        return "Send";
    case 0x007:
        return "Data";
    case 0x008:
        return "CreatePermission";
    case 0x009:
        return "ChannelBind";
    case 0x00a:
        return "Connect";
    case 0x00b:
        return "ConnectionBind";
    case 0x00c:
        return "ConnectionAttempt";
    default:
        return NULL;
    }
}

static void count_stun(turn_stream *s, const uint8_t *p, framing_counters *counters)
{
    /* RFC 5389 section 6: the class bits are interleaved with the 12 method bits. */
    unsigned type = be16(p);
    unsigned method = (type & 0x000f) | (type & 0x00e0) >> 1 | (type & 0x3e00) >> 2;
    unsigned cls = (type & 0x0100) >> 7 | (type & 0x0010) >> 4;
    const char *suffix = cls == 2 ? " response" : cls == 3 ? " error" : "";
    const char *known = method_name(method);
    char name[FRAMING_COUNTER_NAME];
    if (known != NULL) {
        snprintf(name, sizeof name, "%s%s", known, suffix);
    } else {
        snprintf(name, sizeof name, "method 0x%03x%s", method, suffix);
    }
    framing_count(counters, name);
    s->messages++;
}

static void expect_header(turn_stream *s)
{
    s->hdr_len = 0;
    if (s->length_prefixed) {
        s->state = TS_PREFIX_HDR;
        s->hdr_want = PREFIX_LEN;
    } else {
        s->state = TS_PLAIN_HDR;
        s->hdr_want = 4;
    }
}

static void skip(turn_stream *s, uint64_t len)
{
    s->frame_left = len;
    if (len == 0) {
        expect_header(s);
    } else {
        s->state = TS_SKIP;
    }
}

static framing_status plain_header(turn_stream *s, framing_counters *counters)
{
    unsigned len = be16(s->hdr + 2);
    if (s->hdr_len == 4) {
        switch (s->hdr[0] >> 6) {
        case 0:
            s->hdr_want = PEEK_LEN;
            return FRAMING_OK;
        case 1: /* the start state has already required a STUN message */
            framing_count(counters, "ChannelData");
            skip(s, (len + 3u) & ~3u);
            return FRAMING_OK;
        default:
            return turn_fail(s, "neither a STUN message nor ChannelData");
        }
    }
    if (memcmp(s->hdr + 4, magic_cookie, sizeof magic_cookie) != 0) {
        return turn_fail(s, "STUN message without the magic cookie");
    }
    if (len % 4 != 0) {
        return turn_fail(s, "STUN message length is not a multiple of 4");
    }
    count_stun(s, s->hdr, counters);
    skip(s, STUN_HEADER - PEEK_LEN + len);
    return FRAMING_OK;
}

static framing_status prefixed_header(turn_stream *s, framing_counters *counters)
{
    unsigned packet_len = be16(s->hdr);
    if (s->hdr_len == PREFIX_LEN && packet_len > 0) {
        s->hdr_want = PREFIX_LEN + (packet_len < PEEK_LEN ? packet_len : PEEK_LEN);
        return FRAMING_OK;
    }
    const uint8_t *packet = s->hdr + PREFIX_LEN;
    if (packet_len >= STUN_HEADER && looks_like_stun(packet)) {
        if (be16(packet + 2) + STUN_HEADER != packet_len) {
            return turn_fail(s, "STUN length does not match its RFC 4571 packet");
        }
        count_stun(s, packet, counters);
    } else {
        framing_count(counters, "data");
    }
    skip(s, packet_len - (s->hdr_len - PREFIX_LEN));
    return FRAMING_OK;
}

/* The first message must be STUN; where its cookie sits tells the framing. */
static framing_status start_header(turn_stream *s, framing_counters *counters)
{
    if (s->hdr_len == PEEK_LEN && looks_like_stun(s->hdr)) {
        s->length_prefixed = false;
        s->state = TS_PLAIN_HDR;
        return plain_header(s, counters);
    }
    if (s->hdr_len == PEEK_LEN) {
        s->hdr_want = PREFIX_LEN + PEEK_LEN;
        return FRAMING_OK;
    }
    if (be16(s->hdr) < STUN_HEADER || !looks_like_stun(s->hdr + PREFIX_LEN)) {
        return turn_fail(s, "first message is not STUN");
    }
    s->length_prefixed = true;
    s->state = TS_PREFIX_HDR;
    return prefixed_header(s, counters);
}

void turn_stream_init(turn_stream *s)
{
    memset(s, 0, sizeof *s);
    s->state = TS_START;
    s->hdr_want = PEEK_LEN;
}

framing_status turn_stream_feed(turn_stream *s, const uint8_t *p, size_t n,
                                framing_counters *counters)
{
    size_t i = 0;
    while (i < n) {
        if (s->state == TS_FAILED) {
            return FRAMING_ERROR;
        }
        if (s->state == TS_SKIP) {
            uint64_t take = n - i < s->frame_left ? n - i : s->frame_left;
            i += (size_t)take;
            s->frame_left -= take;
            if (s->frame_left == 0) {
                expect_header(s);
            }
            continue;
        }
        s->hdr[s->hdr_len++] = p[i++];
        if (s->hdr_len < s->hdr_want) {
            continue;
        }
        framing_status st;
        if (s->state == TS_START) {
            st = start_header(s, counters);
        } else if (s->state == TS_PLAIN_HDR) {
            st = plain_header(s, counters);
        } else {
            st = prefixed_header(s, counters);
        }
        if (st != FRAMING_OK) {
            return FRAMING_ERROR;
        }
    }
    return s->state == TS_FAILED ? FRAMING_ERROR : FRAMING_OK;
}
