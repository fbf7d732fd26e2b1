/* What the h2 stage (h2_stage.c) and its HTTP/1.1 origin side (h1_origin.c) share: the
 * stream, its buffers, and the calls through which an HTTP/1.1 exchange answers a stream. */
#ifndef HANDOFF_H2_INTERNAL_H
#define HANDOFF_H2_INTERNAL_H

#include <nghttp2/nghttp2.h>
#include <stdbool.h>
#include <stdint.h>

#include "h2_conn.h"
#include "session.h"

typedef struct h1_conn h1_conn;
typedef struct h1_pool h1_pool;

typedef struct {
    char *p;
    size_t len, off, cap;
} bytes;

typedef struct {
    nghttp2_nv *nv;
    size_t n;
    char *mem;
} headers;

typedef struct h2_stream h2_stream;
struct h2_stream {
    h2_stream *prev, *next;
    session *s;
    int32_t cid, oid; /* client and origin stream ids (oid 0: not forwarded) */
    txn t;            /* this stream's access-log line */
    bytes req, resp;  /* body bytes on their way */
    bool req_end, resp_end;
    headers req_trailers, resp_trailers;
    bool origin_open;    /* oid is a live stream of the origin connection */
    bool resp_submitted; /* the response head went to the client */
    unsigned interim;    /* 1xx heads passed on: bounded, each is queued for the client */
    bool local;          /* answered by the proxy */
    h1_conn *h1;         /* the HTTP/1.1 origin connection serving it (h2 to HTTP/1.1) */
};

typedef struct {
    h2_conn *client, *origin;
    h2_stream *streams;
    unsigned nstreams;
    uint64_t last_activity_ms;
    bool origin_gone; /* the origin connection ended: new streams get 502 */
    bool goaway_sent; /* a graceful GOAWAY went to the client */
    bool pumping;
    h1_pool *h1; /* the origin speaks HTTP/1.1: a connection per concurrent stream */
} h2_state;

/** Appends n bytes to b. 0 or -1 (out of memory). */
int h2_bytes_add(bytes *b, const uint8_t *p, size_t n);

/** The response head of st from an HTTP/1.1 origin (nv starts with :status); end: no body. */
void h2_stream_response_head(h2_stream *st, const nghttp2_nv *nv, size_t n, bool end);

/** Response body bytes (or, with end, the end of the body) for st. */
void h2_stream_response_data(h2_stream *st, const uint8_t *p, size_t n, bool end);

/** Trailers that end st's response (sent after its body; nv is copied). */
void h2_stream_response_trailers(h2_stream *st, const nghttp2_nv *nv, size_t n);

/** Request body bytes of st were written to the origin: its window reopens. */
void h2_stream_request_consumed(h2_stream *st, size_t n);

/** The origin exchange of st failed: a 502 when no response began, else a stream reset. */
void h2_stream_origin_failed(h2_stream *st, const char *why);

/** Sends what the stage's connections have queued (after an event outside nghttp2). */
void h2_stage_pump(session *s);

#endif
