/* http2/ owns HTTP/2 on intercepted connections (SPEC 6.1): h2_conn wraps one nghttp2 session
 * (either end) with the proxy's limits and flood counters; h2_stage.c maps the client's streams
 * onto the origin's. Framing, HPACK and flow-control state are nghttp2's. h2_conn knows nothing
 * of sessions or legs, so it can be fuzzed on its own. */
#ifndef HANDOFF_H2_CONN_H
#define HANDOFF_H2_CONN_H

#include <nghttp2/nghttp2.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* SPEC 6.1 limits. */
#define H2_MAX_STREAMS       100
#define H2_STREAM_WINDOW     (256 * 1024)
#define H2_CONNECTION_WINDOW (1024 * 1024)
#define H2_MAX_CONTINUATIONS 16

typedef struct h2_conn h2_conn;

/** What the owner learns from the peer. Every callback may submit frames on any session but
 * must not free the h2_conn. */
typedef struct {
    /** A complete header block (request or response head, 1xx, or trailers) on stream id; nv
     * is valid during the call only. end_stream: nothing follows on this stream. */
    void (*on_headers)(void *ud, int32_t id, const nghttp2_nv *nv, size_t n, bool end_stream);
    /** DATA payload on stream id: the window reopens only through h2_conn_consume. */
    void (*on_data)(void *ud, int32_t id, const uint8_t *p, size_t len);
    /** END_STREAM on a DATA frame. */
    void (*on_end)(void *ud, int32_t id);
    /** Stream id closed; error_code 0 is a clean end. */
    void (*on_close)(void *ud, int32_t id, uint32_t error_code);
} h2_conn_events;

/** A session for one end: server (the client leg) or client (the origin leg). max_header_bytes
 * bounds one header block, CONTINUATION frames included. NULL when out of memory. */
h2_conn *h2_conn_new(bool server, size_t max_header_bytes, const h2_conn_events *ev, void *ud);

/** Frees the session (no callbacks run). */
void h2_conn_free(h2_conn *c);

/** The nghttp2 session, for submitting frames. */
nghttp2_session *h2_conn_session(h2_conn *c);

/** Feeds bytes from the peer. now_ms drives the flood counters. 0, or -1 when the connection
 * must end: a GOAWAY is queued and h2_conn_error says why. */
int h2_conn_recv(h2_conn *c, const uint8_t *p, size_t n, uint64_t now_ms);

/** The next bytes to send (valid until the next call); 0 when nothing is queued, -1 on a
 * fatal error. */
ssize_t h2_conn_next_output(h2_conn *c, const uint8_t **out);

/** Reopens the window for n bytes of stream id that were delivered to the other side. */
void h2_conn_consume(h2_conn *c, int32_t id, size_t n);

/** Queues a GOAWAY with code (NGHTTP2_NO_ERROR: graceful, open streams finish). */
void h2_conn_goaway(h2_conn *c, uint32_t code);

/** Whether the connection has nothing more to read or send. */
bool h2_conn_done(h2_conn *c);

/** Why the connection failed (NULL while it has not). */
const char *h2_conn_error(const h2_conn *c);

/** Whether the peer sent GOAWAY (it takes no new streams). */
bool h2_conn_goaway_received(const h2_conn *c);

/** The highest stream id the peer opened that was processed. */
int32_t h2_conn_last_stream(h2_conn *c);

#endif
