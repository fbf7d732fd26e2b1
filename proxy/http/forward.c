/* Forwarding one HTTP request at a time to its origin and streaming the answer back. The
 * same code serves absolute-form requests, plain HTTP inside a tunnel, and decrypted HTTPS.
 * Framing is the proxy's own: the forwarded heads carry Content-Length or Transfer-Encoding
 * as the parser framed the message, whatever Connection names. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http_internal.h"
#include "tls_origin.h"
#include "upstream.h"
#include "worker.h"

static http_state *state(session *s)
{
    return s->st;
}

static void send_request_head(session *s);

/* ---- the response ---- */

static int resp_message_begin(llhttp_t *p)
{
    session *s = p->data;
    head_reset(&state(s)->resp_head);
    return 0;
}

/* Sends what the cork holds in one write. The pieces point into the read buffer, the state
 * and the owned head: flush before the read callback returns. */
static void flush_client(session *s)
{
    http_state *h = state(s);
    if (h->cork.n)
        leg_writev(&s->client, h->cork.bufs, h->cork.n);
    h->cork.n = 0;
    h->cork.nsizes = 0;
    free(h->cork.owned);
    h->cork.owned = NULL;
    if (s->client.queued > LEG_HIGH_WATER)
        leg_set_backpressure(&s->origin, true);
}

static void cork_add(session *s, const char *buf, size_t len)
{
    http_state *h = state(s);
    if (!h->cork.on) {
        leg_write(&s->client, buf, len);
        if (s->client.queued > LEG_HIGH_WATER)
            leg_set_backpressure(&s->origin, true);
        return;
    }
    if (h->cork.n == sizeof h->cork.bufs / sizeof h->cork.bufs[0])
        flush_client(s);
    h->cork.bufs[h->cork.n++] = uv_buf_init((char *)buf, (unsigned)len);
}

static void write_client(session *s, const char *buf, size_t len)
{
    state(s)->resp_bytes += len;
    cork_add(s, buf, len);
}

/* Writes buf as one chunk of a chunked body: size line, data and CRLF together. */
static void write_chunk(leg *l, const char *buf, size_t len)
{
    char size[24];
    int n = snprintf(size, sizeof size, "%zx\r\n", len);
    uv_buf_t parts[3] = {uv_buf_init(size, (unsigned)n), uv_buf_init((char *)buf, (unsigned)len),
                         uv_buf_init("\r\n", 2)};
    leg_writev(l, parts, 3);
}

static void write_client_chunk(session *s, const char *buf, size_t len)
{
    http_state *h = state(s);
    if (!h->cork.on) {
        write_chunk(&s->client, buf, len);
        if (s->client.queued > LEG_HIGH_WATER)
            leg_set_backpressure(&s->origin, true);
        return;
    }
    if (h->cork.nsizes == 4 || h->cork.n + 3 > sizeof h->cork.bufs / sizeof h->cork.bufs[0])
        flush_client(s);
    char *size = h->cork.sizes[h->cork.nsizes++];
    int n = snprintf(size, sizeof h->cork.sizes[0], "%zx\r\n", len);
    cork_add(s, size, (size_t)n);
    cork_add(s, buf, len);
    cork_add(s, "\r\n", 2);
}

static const char *const framing_headers[] = {"Content-Length", NULL};

static int resp_headers_complete(llhttp_t *p)
{
    session *s = p->data;
    http_state *h = state(s);
    const http_head *rh = &h->resp_head;
    int status = p->status_code;
    size_t cap = head_forward_size(rh) + 256 + (s->answer_headers ? strlen(s->answer_headers) : 0);
    char *storage = malloc(cap);
    if (!storage)
        return -1;
    out_buf o;
    out_init(&o, storage, cap);
    out_addf(&o, "HTTP/1.1 %d %.*s\r\n", status, (int)rh->url_len,
             rh->buf ? rh->buf + rh->url_off : "");
    head_write_forwarded(rh, &o, framing_headers);
    int ret = 0;
    if (status == 101) {
        size_t ulen;
        const char *up = head_get(rh, "Upgrade", &ulen);
        out_addf(&o, "Connection: Upgrade\r\nUpgrade: %.*s\r\n", (int)(up ? ulen : 0),
                 up ? up : "");
    } else if (status >= 200) {
        h->status = status;
        h->response_started = true;
        bool no_body = h->head_request || status == 204 || status == 304;
        h->response_chunked = false;
        h->response_until_close = false;
        if (no_body) {
            /* A HEAD or 304 answer describes a body it does not carry. */
            if (p->flags & F_CONTENT_LENGTH)
                out_addf(&o, "Content-Length: %" PRIu64 "\r\n", (uint64_t)p->content_length);
            ret = 1;
        } else if (p->flags & F_CHUNKED) {
            h->response_chunked = true;
            out_add(&o, "Transfer-Encoding: ", 19);
            head_join(rh, "Transfer-Encoding", &o); /* codings before chunked are kept */
            out_add(&o, "\r\n", 2);
        } else if (p->flags & F_CONTENT_LENGTH) {
            out_addf(&o, "Content-Length: %" PRIu64 "\r\n", (uint64_t)p->content_length);
        } else {
            /* The body ends when the origin closes: so must the client's connection. */
            h->response_until_close = true;
            h->client_keep_alive = false;
        }
        /* Inside a tunnel the client talks to the origin itself: its close is the client's. */
        if (h->inner && !llhttp_should_keep_alive(p))
            h->client_keep_alive = false;
        if (!h->client_keep_alive || h->client_eof)
            out_addf(&o, "Connection: close\r\n");
    }
    if (status >= 200 && s->answer_headers) {
        out_add(&o, s->answer_headers, strlen(s->answer_headers));
        free(s->answer_headers);
        s->answer_headers = NULL;
    }
    out_add(&o, "\r\n", 2);
    if (o.overflow) {
        free(storage);
        return -1;
    }
    if (h->cork.on) {
        if (h->cork.owned)
            flush_client(s);
        h->cork.owned = storage; /* freed once the cork is flushed */
        write_client(s, o.data, o.len);
    } else {
        write_client(s, o.data, o.len);
        free(storage);
    }
    return ret;
}

static int resp_body(llhttp_t *p, const char *at, size_t len)
{
    session *s = p->data;
    http_state *h = state(s);
    if (h->response_chunked) {
        h->resp_bytes += len;
        write_client_chunk(s, at, len);
    } else {
        write_client(s, at, len);
    }
    return 0;
}

static int resp_message_complete(llhttp_t *p)
{
    session *s = p->data;
    http_state *h = state(s);
    if (p->status_code < 200)
        return 0; /* 1xx: the final response follows; 101 turns into a tunnel */
    if (h->response_chunked)
        write_client(s, "0\r\n\r\n", 5);
    h->response_done = true;
    h->origin_keep_alive = llhttp_should_keep_alive(p);
    return HPE_PAUSED;
}

static const llhttp_settings_t response_settings = {
    .on_message_begin = resp_message_begin,
    .on_status = http_on_start_line, /* the reason phrase */
    .on_header_field = http_on_header_field,
    .on_header_value = http_on_header_value,
    .on_header_value_complete = http_on_header_value_complete,
    .on_headers_complete = resp_headers_complete,
    .on_body = resp_body,
    .on_message_complete = resp_message_complete,
};

static void upgrade_to_tunnel(session *s, const char *rest, size_t len)
{
    http_state *h = state(s);
    s->t.status = 101;
    s->t.bytes_from_client = h->head.wire;
    txn_end(s); /* the upgraded connection is logged as its request */
    if (len)
        leg_write(&s->client, rest, len);
    s->tunneled = true;
    session_enter(s, STAGE_TUNNEL, h->held, h->held_len);
}

static bool idempotent(const char *method)
{
    static const char *const safe[] = {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE", NULL};
    for (const char *const *m = safe; *m; m++)
        if (strcmp(method, *m) == 0)
            return true;
    return false;
}

static void reconnect(session *s);

void http_origin_data(session *s, const char *buf, ssize_t n)
{
    http_state *h = state(s);
    if (h->kind != REQ_FORWARD || h->response_done) {
        /* An idle kept-alive origin closed or spoke out of turn: it is not reused. */
        h->origin_ready = false;
        if (n < 0)
            leg_close_graceful(&s->origin);
        else
            leg_abort(&s->origin);
        return;
    }
    if (n < 0) {
        if (n == UV_EOF && h->response_until_close) {
            if (s->origin.truncated) {
                txn_fail(s, "origin ended TLS without close_notify: the response may be "
                            "truncated");
                s->client.no_close_notify = true; /* the client must not take it as whole */
            }
            llhttp_finish(&h->resp);
            h->response_done = true;
            h->origin_keep_alive = false;
            if (!h->request_done) {
                h->client_keep_alive = false;
                h->request_done = true;
            }
            http_exchange_done(s);
            return;
        }
        h->origin_ready = false;
        if (!h->response_started && h->resp_bytes == 0 && h->sent_on_reused && !h->retried &&
            idempotent(h->method) && h->request_done && h->req_body_bytes == 0) {
            /* A kept-alive connection the origin had closed: try once on a fresh one. */
            h->retried = true;
            leg_abort(&s->origin);
            reconnect(s);
            return;
        }
        if (!h->response_started) {
            http_answer(
                s, 502, "Bad Gateway", "origin closed the connection without a response (%s)\n",
                s->origin.truncated ? "TLS ended without close_notify" : uv_strerror((int)n));
            return;
        }
        char reason[200];
        snprintf(reason, sizeof reason, "origin ended the response early: %s",
                 s->origin.truncated ? "TLS ended without close_notify" : uv_strerror((int)n));
        session_abort(s, reason);
        return;
    }
    h->cork.on = true;
    llhttp_errno_t err = llhttp_execute(&h->resp, buf, (size_t)n);
    h->cork.on = false;
    flush_client(s);
    if (s->ending || s->st != h)
        return;
    const char *pos = llhttp_get_error_pos(&h->resp);
    size_t used = pos ? (size_t)(pos - buf) : (size_t)n;
    switch (err) {
    case HPE_OK:
        return;
    case HPE_PAUSED_UPGRADE:
        if (h->upgrade_requested && h->resp.status_code == 101) {
            upgrade_to_tunnel(s, buf + used, (size_t)n - used);
            return;
        }
        break;
    case HPE_PAUSED:
        if (used < (size_t)n)
            h->origin_keep_alive = false; /* bytes past the response: not a clean origin */
        llhttp_resume(&h->resp);
        if (h->request_done)
            http_exchange_done(s);
        return;
    default:
        break;
    }
    if (!h->response_started) {
        http_answer(s, 502, "Bad Gateway", "invalid response from origin: %s\n",
                    llhttp_get_error_reason(&h->resp));
        return;
    }
    char reason[200];
    snprintf(reason, sizeof reason, "invalid response from origin: %s",
             llhttp_get_error_reason(&h->resp));
    session_abort(s, reason);
}

/* ---- the request ---- */

static void origin_ready(session *s)
{
    http_state *h = state(s);
    h->origin_ready = true;
    snprintf(h->origin_key, sizeof h->origin_key, "%s:%u", s->target_host, s->target_port);
    send_request_head(s);
}

static void on_origin_tls(session *s, bool ok)
{
    http_state *h = state(s);
    if (!ok || s->upstream_error) {
        http_answer(s, 502, "Bad Gateway", "%s\n",
                    s->upstream_error ? s->upstream_error : "origin TLS handshake failed");
        return;
    }
    (void)h;
    origin_ready(s);
}

static void on_origin_connected(session *s, int status, const char *reason)
{
    if (status) {
        const char *text = status == 504   ? "Gateway Timeout"
                           : status == 508 ? "Loop Detected"
                           : status == 403 ? "Forbidden"
                                           : "Bad Gateway";
        http_answer(s, status, text, "%s\n", reason);
        return;
    }
    if (s->intercepted) {
        tls_origin_open(s, on_origin_tls);
        return;
    }
    origin_ready(s);
}

static void reconnect(session *s)
{
    upstream_connect(s, s->target_host, s->target_port, on_origin_connected);
}

void http_forward(session *s)
{
    http_state *h = state(s);
    h->kind = REQ_FORWARD;
    if (s->upstream_error) {
        http_answer(s, 502, "Bad Gateway", "%s\n", s->upstream_error);
        return;
    }
    char key[sizeof h->origin_key];
    if (!h->inner) {
        snprintf(s->target_host, sizeof s->target_host, "%s", h->host);
        s->target_port = h->port;
    }
    snprintf(key, sizeof key, "%s:%u", s->target_host, s->target_port);
    if (h->origin_ready && s->origin.open && !s->origin.finishing &&
        strcmp(key, h->origin_key) == 0) {
        h->sent_on_reused = true;
        send_request_head(s);
        return;
    }
    h->origin_ready = false;
    h->sent_on_reused = false;
    session_deadline_stop(s); /* the connect has its own deadline */
    reconnect(s);
}

static void write_host(session *s, out_buf *o)
{
    http_state *h = state(s);
    bool v6 = strchr(h->host, ':') != NULL;
    uint16_t port = h->inner ? h->port : s->target_port;
    bool show_port = h->inner ? port != 0 : port != 80;
    if (show_port)
        out_addf(o, v6 ? "Host: [%s]:%u\r\n" : "Host: %s:%u\r\n", h->host, port);
    else
        out_addf(o, v6 ? "Host: [%s]\r\n" : "Host: %s\r\n", h->host);
}

static const char *const request_skip[] = {"Host", "Content-Length", NULL};

static void send_request_head(session *s)
{
    http_state *h = state(s);
    const http_head *hd = &h->head;
    size_t cap = head_forward_size(hd) + 512;
    char *storage = malloc(cap);
    if (!storage) {
        session_abort(s, "out of memory");
        return;
    }
    out_buf o;
    out_init(&o, storage, cap);
    out_addf(&o, "%s %s HTTP/1.1\r\n", h->method, h->request_path);
    head_write_forwarded(hd, &o, request_skip);
    write_host(s, &o);
    h->request_chunked = (h->req.flags & F_CHUNKED) != 0;
    if (h->request_chunked) {
        out_add(&o, "Transfer-Encoding: ", 19);
        head_join(hd, "Transfer-Encoding", &o);
        out_add(&o, "\r\n", 2);
    } else if (h->req.flags & F_CONTENT_LENGTH) {
        out_addf(&o, "Content-Length: %" PRIu64 "\r\n", h->req_content_length);
    }
    h->upgrade_requested = false;
    size_t ulen;
    const char *up = head_get(hd, "Upgrade", &ulen);
    if (up && head_has_token(hd, "Connection", "upgrade")) {
        h->upgrade_requested = true;
        out_addf(&o, "Connection: Upgrade\r\nUpgrade: %.*s\r\n", (int)ulen, up);
    }
    out_add(&o, "\r\n", 2);
    if (o.overflow) {
        free(storage);
        http_answer(s, 431, "Request Header Fields Too Large",
                    "request head too large to forward\n");
        return;
    }
    leg_write(&s->origin, o.data, o.len);
    free(storage);

    h->response_done = h->response_started = false;
    h->status = 0;
    h->resp_bytes = 0;
    llhttp_init(&h->resp, HTTP_RESPONSE, &response_settings);
    h->resp.data = s;
    leg_want_read(&s->origin, true);
    session_deadline(s, (uint64_t)s->w->shared->cfg.idle_timeout_s * 1000);
    if (h->retried)
        return; /* a resend: the request (without a body) is already complete */
    /* The body follows; a request without one completes on resume. */
    http_resume_client(s);
}

void http_forward_body(session *s, const char *buf, size_t len)
{
    http_state *h = state(s);
    /* An origin that answered early and went away: the rest of the body is read and dropped. */
    if (h->response_done && (!s->origin.open || s->origin.finishing || s->origin.closing))
        return;
    if (h->request_chunked)
        write_chunk(&s->origin, buf, len);
    else
        leg_write(&s->origin, buf, len);
    if (s->origin.queued > LEG_HIGH_WATER)
        leg_set_backpressure(&s->client, true);
}

void http_forward_request_end(session *s)
{
    http_state *h = state(s);
    if (h->response_done && (!s->origin.open || s->origin.finishing || s->origin.closing))
        return;
    if (h->request_chunked)
        leg_write(&s->origin, "0\r\n\r\n", 5);
}

void http_forward_deadline(session *s)
{
    http_state *h = state(s);
    const config *cfg = &s->w->shared->cfg;
    uint64_t idle_ms = (uint64_t)cfg->idle_timeout_s * 1000;
    uint64_t quiet = uv_now(&s->w->loop) - s->last_activity_ms;
    if (quiet < idle_ms) {
        session_deadline(s, idle_ms - quiet);
        return;
    }
    if (!h->response_started) {
        http_answer(s, 504, "Gateway Timeout", "no answer from the origin within %d s\n",
                    cfg->idle_timeout_s);
        return;
    }
    char reason[100];
    snprintf(reason, sizeof reason, "idle for %d s", cfg->idle_timeout_s);
    session_abort(s, reason);
}

void http_leg_error(session *s, leg *l, int err)
{
    http_state *h = state(s);
    if (!l->is_client && h->response_done) {
        /* The answer is complete: an origin that stopped taking the body costs nothing. */
        h->origin_ready = false;
        leg_abort(l);
        return;
    }
    char reason[160];
    snprintf(reason, sizeof reason, "%s: %s", l->is_client ? "client" : "origin", uv_strerror(err));
    session_abort(s, reason);
}
