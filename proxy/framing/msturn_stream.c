/* MS-TURN over TCP ([MS-TURN] 2.1.1, 2.1.4): an optional pseudo-TLS exchange (a fixed 50-byte
 * ClientHello, answered by a fixed-shape 83-byte ServerHello+ServerHelloDone record), then frames
 * of Type(1) Reserved(1)=0 Length(2, big-endian) carrying TURN control messages (type 2) or
 * end-to-end data (type 3).
 *
 * Pseudo-TLS is optional on the wire, so each direction decides from its own first byte: 0x16
 * must begin the exact hello of that direction, 0x02/0x03 begins frames. That keeps the two
 * directions independent (no peer pointer) at the cost of not noticing a server that skips the
 * hello the client sent; such a server is broken for the client anyway. */
#include "framing.h"

#include <stdio.h>
#include <string.h>

enum msturn_state {
    MST_START,
    MST_HELLO,
    MST_FRAME_HDR,   /* collecting the 4-byte frame header */
    MST_CONTROL_HDR, /* collecting the TURN type and length at the start of a control frame */
    MST_SKIP,        /* relaying the rest of a frame */
    MST_FAILED,
};

#define FRAME_CONTROL 0x02
#define FRAME_DATA    0x03
#define TURN_HEADER   20

/* Pseudo-TLS templates (RESEARCH 1.2, 1.3); random and session id bytes are free. */
static const uint8_t client_hello[50] = {
    0x16, 0x03, 0x01,        0x00, 0x2d, 0x01, 0x00, 0x00, 0x29,
    0x03, 0x01, [43] = 0x00, 0x00, 0x02, 0x00, 0x18, 0x01, 0x00,
};
static const uint8_t server_hello[83] = {
    0x16, 0x03,        0x01,        0x00, 0x4e, 0x02, 0x00, 0x00, 0x46, 0x03,
    0x01, [43] = 0x20, [76] = 0x00, 0x18, 0x00, 0x0e, 0x00, 0x00, 0x00,
};

static bool hello_byte_is_free(bool from_server, size_t pos)
{
    if (pos >= 11 && pos < 43) {
        return true; /* random */
    }
    return from_server && pos >= 44 && pos < 76; /* session id */
}

static framing_status msturn_fail(msturn_stream *s, const char *reason)
{
    snprintf(s->error, sizeof s->error, "MS-TURN %s: %s", s->from_server ? "server" : "client",
             reason);
    s->state = MST_FAILED;
    return FRAMING_ERROR;
}

static const char *message_name(unsigned type)
{
    switch (type) {
    case 0x0001:
        return "Binding";
    case 0x0101:
        return "Binding response";
    case 0x0111:
        return "Binding error";
    case 0x0003:
        return "Allocate";
    case 0x0103:
        return "Allocate response";
    case 0x0113:
        return "Allocate error";
    case 0x0004:
        return "Send";
    case 0x0115:
        return "Data Indication";
    case 0x0006:
        return "Set Active Destination";
    case 0x0106:
        return "Set Active Destination response";
    case 0x0116:
        return "Set Active Destination error";
    default:
        return NULL;
    }
}

static void count_control(const uint8_t *turn_hdr, framing_counters *counters)
{
    unsigned type = (unsigned)(turn_hdr[0] << 8 | turn_hdr[1]);
    const char *name = message_name(type);
    if (name != NULL) {
        framing_count(counters, name);
        return;
    }
    char other[FRAMING_COUNTER_NAME];
    snprintf(other, sizeof other, "type 0x%04x", type);
    framing_count(counters, other);
}

static framing_status hello_byte(msturn_stream *s, uint8_t c)
{
    const uint8_t *expect = s->from_server ? server_hello : client_hello;
    size_t len = s->from_server ? sizeof server_hello : sizeof client_hello;
    size_t pos = s->hello_pos;
    if (!hello_byte_is_free(s->from_server, pos) && c != expect[pos]) {
        char reason[96];
        snprintf(reason, sizeof reason, "pseudo-TLS %s byte %zu is 0x%02x, expected 0x%02x",
                 s->from_server ? "ServerHello" : "ClientHello", pos, c, expect[pos]);
        return msturn_fail(s, reason);
    }
    if (++s->hello_pos == len) {
        s->state = MST_FRAME_HDR;
        s->hdr_len = 0;
    }
    return FRAMING_OK;
}

static framing_status frame_header_done(msturn_stream *s, framing_counters *counters)
{
    if (s->hdr[0] != FRAME_CONTROL && s->hdr[0] != FRAME_DATA) {
        char reason[64];
        snprintf(reason, sizeof reason, "frame type 0x%02x is neither control nor data", s->hdr[0]);
        return msturn_fail(s, reason);
    }
    if (s->hdr[1] != 0) {
        return msturn_fail(s, "frame reserved byte is not zero");
    }
    s->frame_left = (size_t)(s->hdr[2] << 8 | s->hdr[3]);
    if (s->hdr[0] == FRAME_CONTROL) {
        if (s->frame_left < TURN_HEADER) {
            return msturn_fail(s, "control frame shorter than a TURN header");
        }
        s->state = MST_CONTROL_HDR;
        return FRAMING_OK;
    }
    framing_count(counters, "data");
    s->state = s->frame_left > 0 ? MST_SKIP : MST_FRAME_HDR;
    s->hdr_len = 0;
    return FRAMING_OK;
}

static framing_status control_header_done(msturn_stream *s, framing_counters *counters)
{
    const uint8_t *turn = s->hdr + 4;
    if (turn[0] & 0xc0) {
        return msturn_fail(s, "control frame does not hold a TURN message");
    }
    size_t message_len = (size_t)(turn[2] << 8 | turn[3]);
    if (message_len + TURN_HEADER != s->frame_left) {
        return msturn_fail(s, "TURN message length does not match its frame");
    }
    count_control(turn, counters);
    s->frame_left -= 4;
    s->state = MST_SKIP;
    return FRAMING_OK;
}

void msturn_stream_init(msturn_stream *s, bool from_server)
{
    memset(s, 0, sizeof *s);
    s->from_server = from_server;
    s->state = MST_START;
}

framing_status msturn_stream_feed(msturn_stream *s, const uint8_t *p, size_t n,
                                  framing_counters *counters)
{
    size_t i = 0;
    while (i < n) {
        switch (s->state) {
        case MST_FAILED:
            return FRAMING_ERROR;
        case MST_START:
            if (p[i] == 0x16) {
                s->state = MST_HELLO;
            } else if (p[i] == FRAME_CONTROL || p[i] == FRAME_DATA) {
                s->state = MST_FRAME_HDR;
                s->hdr_len = 0;
            } else {
                return msturn_fail(s, "neither a pseudo-TLS hello nor an MS-TURN frame");
            }
            break;
        case MST_HELLO:
            if (hello_byte(s, p[i++]) != FRAMING_OK) {
                return FRAMING_ERROR;
            }
            break;
        case MST_FRAME_HDR:
            s->hdr[s->hdr_len++] = p[i++];
            if (s->hdr_len == 4 && frame_header_done(s, counters) != FRAMING_OK) {
                return FRAMING_ERROR;
            }
            break;
        case MST_CONTROL_HDR:
            s->hdr[s->hdr_len++] = p[i++];
            if (s->hdr_len == 8 && control_header_done(s, counters) != FRAMING_OK) {
                return FRAMING_ERROR;
            }
            break;
        case MST_SKIP: {
            size_t take = n - i < s->frame_left ? n - i : s->frame_left;
            i += take;
            s->frame_left -= take;
            break;
        }
        default:
            return msturn_fail(s, "internal state error");
        }
        if (s->state == MST_SKIP && s->frame_left == 0) {
            s->state = MST_FRAME_HDR;
            s->hdr_len = 0;
        }
    }
    return s->state == MST_FAILED ? FRAMING_ERROR : FRAMING_OK;
}
