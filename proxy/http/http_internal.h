/* The HTTP handler's state, shared by its front end (front.c: request heads, local answers,
 * dispatch) and its forwarding (forward.c: the origin exchange). One state serves the head
 * stage (the proxy port) and the http stage (inside a tunnel or intercepted TLS). */
#ifndef HANDOFF_HTTP_INTERNAL_H
#define HANDOFF_HTTP_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "http_head.h"
#include "llhttp.h"
#include "local_pages.h"
#include "session.h"

typedef enum {
    REQ_NONE,    /* waiting for a request head */
    REQ_WAIT,    /* head dispatched: authentication, policy or origin pending */
    REQ_LOCAL,   /* answered (or to be answered) by the proxy itself */
    REQ_FORWARD, /* forwarded to the origin */
} request_kind;

typedef struct http_state {
    bool inner; /* inside a tunnel: origin-form requests to a fixed origin */
    llhttp_t req, resp;
    http_head head, resp_head;
    char *held; /* client bytes that arrived while the parser waited */
    size_t held_len;
    bool paused;     /* the request parser is paused (at a head or a message end) */
    bool client_eof; /* the client sent FIN while the parser waited */
    bool in_feed;    /* feed() is running: a resume only marks the parser runnable */

    request_kind kind;
    char method[24];
    char *url;                /* as received */
    const char *request_path; /* origin-form path to send */
    char host[256];           /* canonical host of the request */
    uint16_t port;
    int local_status; /* a local answer waiting for the request's end */
    const char *local_reason;
    char *local_body;
    size_t local_body_len;
    const char *local_type;
    char *local_extra;
    bool local_close;
    local_body post; /* an OCSP POST's body, read before it is answered */

    bool request_done, response_started, response_done;
    bool client_keep_alive, origin_keep_alive;
    bool request_chunked, response_chunked, response_until_close;
    bool upgrade_requested, head_request;
    bool sent_on_reused; /* the request went out on a kept-alive origin connection */
    bool retried;
    uint64_t req_content_length;
    uint64_t req_body_bytes, resp_bytes;
    int status;

    /* What one read from the origin produces for the client (head, body pieces, chunk
     * framing), sent in one write when the read is done. */
    struct {
        uv_buf_t bufs[12];
        unsigned n;
        char sizes[4][24]; /* chunk size lines */
        unsigned nsizes;
        char *owned; /* the rewritten response head */
        bool on;
    } cork;

    char origin_key[272]; /* host:port of the open origin connection */
    bool origin_ready;    /* the origin leg is connected and idle or in use by us */
    bool auth_pending;
} http_state;

/* front.c */
/** llhttp callbacks that fill the request's or the response's head, whichever parser calls. */
int http_on_start_line(llhttp_t *p, const char *at, size_t len);
int http_on_header_field(llhttp_t *p, const char *at, size_t len);
int http_on_header_value(llhttp_t *p, const char *at, size_t len);
int http_on_header_value_complete(llhttp_t *p);

/** Answers the request locally (a status with a text body); the connection closes after it. */
void http_answer(session *s, int status, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/** The exchange is over: log it, then the next request or a graceful end. */
void http_exchange_done(session *s);
/** Feeds client bytes held while the parser waited. */
void http_resume_client(session *s);

/* forward.c */
void http_forward(session *s);
void http_forward_body(session *s, const char *buf, size_t len);
void http_forward_request_end(session *s);
void http_origin_data(session *s, const char *buf, ssize_t n);
/** The request and the response are both complete. */
bool http_exchange_complete(const http_state *h);
void http_forward_deadline(session *s);
/** Writing to a leg failed. */
void http_leg_error(session *s, leg *l, int err);

#endif
