/* The HTTP/1.1 side of h2 to HTTP/1.1: an h2 client in front of an origin that chose
 * http/1.1. Each concurrent stream gets an origin connection of its own (TCP, then TLS through
 * memory BIOs, verified like the session's origin leg); a connection whose exchange ended
 * cleanly is kept alive and reused by the next stream. Connections hold a session reference
 * until their handle has closed. */
#ifndef HANDOFF_H1_ORIGIN_H
#define HANDOFF_H1_ORIGIN_H

#include <nghttp2/nghttp2.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "h2_internal.h"

/** A pool of origin connections to addr (the address the session's origin leg reached).
 * NULL when out of memory. */
h1_pool *h1_pool_new(session *s, const struct sockaddr *addr);

/** Closes every connection (their memory goes once their handles have closed). */
void h1_pool_free(h1_pool *p);

/** Sends the request of st (its h2 header block nv, path and authority from the pseudo
 * headers) on an idle connection, or a new one. 0, or -1 when none can be had. */
int h1_pool_start(h1_pool *p, h2_stream *st, const nghttp2_nv *nv, size_t n, bool end_stream);

/** More of st's request body (or its end, or its trailers) is buffered. */
void h1_request_more(h2_stream *st);

/** Bytes left st's response buffer: reading the origin may go on. */
void h1_response_pulled(h2_stream *st);

/** st is closing: its connection is kept only if its exchange is complete. */
void h1_stream_gone(h2_stream *st);

/** Closes connections idle for idle_ms. */
void h1_pool_tick(h1_pool *p, uint64_t now_ms, uint64_t idle_ms);

#endif
