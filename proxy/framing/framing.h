/* Stream observers for the passthrough handlers: they see every relayed byte, in order, and
 * check the framing of SIP, MS-TURN and STUN/TURN while counting messages. Pure: no I/O, no
 * allocation; state is bounded and lives in the struct.
 *
 * Common contract: the proxy relays bytes unchanged and calls the feed function of the matching
 * direction with exactly those bytes, split anywhere. A feed returns FRAMING_ERROR once the bytes
 * cannot be framed; the reason is in s->error and every later feed fails the same way. */
#ifndef HANDOFF_FRAMING_H
#define HANDOFF_FRAMING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FRAMING_MAX_COUNTERS 24
#define FRAMING_COUNTER_NAME 32
#define FRAMING_ERROR_LEN    128

/** Message counters by name ("INVITE", "2xx", "Allocate", "data", ...), in order of first use.
 * Zero-initialise before use. */
typedef struct {
    struct {
        char name[FRAMING_COUNTER_NAME];
        uint64_t count;
    } items[FRAMING_MAX_COUNTERS];
    unsigned used;
} framing_counters;

/** Adds one to the counter called name (truncated to FRAMING_COUNTER_NAME - 1 bytes). Once all
 * but the last slot hold other names, new names are counted as "other". c may be NULL. */
void framing_count(framing_counters *c, const char *name);

/** Current value of the counter called name, 0 if it does not exist. */
uint64_t framing_counter_get(const framing_counters *c, const char *name);

typedef enum { FRAMING_OK = 0, FRAMING_ERROR = -1 } framing_status;

/** Longest SIP head (start line, headers, final CRLF) accepted; SfB REGISTER and SUBSCRIBE with
 * Kerberos gssapi-data or certificates run to tens of KiB. */
#define SIP_MAX_HEAD (64 * 1024)
/** Heads longer than this (the former limit) are counted as "large-head". */
#define SIP_LARGE_HEAD 8192
/** Bytes of a header value kept for the headers the framer reads (Content-Length, CSeq, ...). */
#define SIP_VALUE_KEEP 48

/** Resumable scan of one SIP head: the head is never copied, only the facts framing needs and
 * the position inside the current line are kept. */
typedef struct {
    uint8_t part;         /* where in the current line the next byte falls */
    uint8_t pos;          /* bytes of a fixed word ("SIP/2.0") matched, or status digits read */
    bool prev_cr;         /* the last byte was the CR of a line end */
    bool last_was_length; /* the previous header line was Content-Length */
    uint8_t header;       /* which interesting header the current line is */
    bool name_bad;        /* the current header name holds a byte that is not a token char */
    uint32_t name_len;
    char name[16]; /* the start of the current header name */
    uint32_t value_len;
    bool value_long; /* the value went past SIP_VALUE_KEEP bytes */
    char value[SIP_VALUE_KEEP];
    /* Facts of the head so far. */
    bool is_request;
    char method[FRAMING_COUNTER_NAME]; /* the method, truncated for its counter */
    uint32_t method_len;
    unsigned status;
    bool has_content_length;
    uint64_t content_length;
    bool has_cseq;
    uint64_t cseq;
    bool cseq_is_negotiate;
    bool has_compression;
    bool compression_lz77;
} sip_head_scan;

/* SIP: one per direction; 'counters' may be shared by both directions of a session. */
typedef struct {
    int state;
    sip_head_scan scan;   /* the head being read */
    size_t head_len;      /* bytes of the current head so far */
    uint64_t large_heads; /* complete heads longer than SIP_LARGE_HEAD */
    uint64_t body_left;
    bool crlf_odd;               /* an odd number of keep-alive line ends since the last message */
    bool compressed;             /* once set, bytes are relayed opaque */
    bool negotiate_lz77_pending; /* this direction sent NEGOTIATE with Compression: LZ77-8K */
    bool negotiate_has_cseq;
    uint64_t negotiate_cseq;
    bool compress_after_message; /* this message answers the peer's NEGOTIATE with 200 */
    bool compress_at_boundary;   /* the peer accepted compression: switch at the next boundary */
    char error[FRAMING_ERROR_LEN];
} sip_stream;

void sip_stream_init(sip_stream *s);
/** Feeds relayed bytes. peer is the other direction's stream (for NEGOTIATE/200 pairing); with
 * NULL, compression is never recognised and compressed bytes end in FRAMING_ERROR. */
framing_status sip_stream_feed(sip_stream *s, sip_stream *peer, const uint8_t *p, size_t n,
                               framing_counters *counters);

/* MS-TURN: client->server and server->client directions differ. */
typedef struct {
    int state;
    bool from_server;
    size_t hello_pos; /* bytes of the pseudo-TLS hello checked so far */
    uint8_t hdr[8];   /* frame header, then the TURN type and length of a control frame */
    size_t hdr_len;
    size_t frame_left;
    char error[FRAMING_ERROR_LEN];
} msturn_stream;

/** from_server selects the direction. Each direction finds out by itself whether pseudo-TLS is
 * used: a first byte 0x16 must start the exact hello shape, 0x02/0x03 starts frames. */
void msturn_stream_init(msturn_stream *s, bool from_server);
framing_status msturn_stream_feed(msturn_stream *s, const uint8_t *p, size_t n,
                                  framing_counters *counters);

/* STUN/TURN over TCP (RFC 5389/5766, RFC 4571 optional prefix), ChannelData after the first
 * message. */
typedef struct {
    int state;
    bool length_prefixed; /* RFC 4571: every packet carries a 2-byte length */
    uint8_t hdr[10];
    size_t hdr_len;
    size_t hdr_want;
    uint64_t frame_left;
    uint64_t messages; /* STUN messages seen so far */
    char error[FRAMING_ERROR_LEN];
} turn_stream;

void turn_stream_init(turn_stream *s);
framing_status turn_stream_feed(turn_stream *s, const uint8_t *p, size_t n,
                                framing_counters *counters);

#endif
