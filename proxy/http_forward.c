/* Forwarding one HTTP request at a time to its origin and streaming the answer back. The
 * same code serves absolute-form requests, plain HTTP inside a tunnel, and decrypted HTTPS. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http_head.h"
#include "leg.h"
#include "session_internal.h"
#include "worker.h"

static void send_request_head(session *s);

static int resp_message_begin(llhttp_t *p)
{
    session *s = p->data;
    head_reset(&s->resp_head);
    return 0;
}

static int resp_append(llhttp_t *p, head_part part, const char *at, size_t len)
{
    session *s = p->data;
    return head_append(&s->resp_head, part, at, len, (size_t)s->w->shared->cfg.max_header_bytes)
               ? -1
               : 0;
}

static int resp_status(llhttp_t *p, const char *at, size_t len)
{
    return resp_append(p, HEAD_URL, at, len); /* the reason phrase */
}

static int resp_field(llhttp_t *p, const char *at, size_t len)
{
    return resp_append(p, HEAD_FIELD, at, len);
}

static int resp_value(llhttp_t *p, const char *at, size_t len)
{
    return resp_append(p, HEAD_VALUE, at, len);
}

static void write_client(session *s, const char *buf, size_t len)
{
    s->resp_bytes += len;
    leg_write(&s->client, buf, len);
    if (s->client.queued > LEG_HIGH_WATER)
        leg_set_backpressure(&s->origin, true);
}

/* Writes buf as one chunk of a chunked body: size line, data and CRLF in one write. */
static void write_chunk(leg *l, const char *buf, size_t len)
{
    char size[24];
    int n = snprintf(size, sizeof size, "%zx\r\n", len);
    uv_buf_t parts[3] = {uv_buf_init(size, (unsigned)n), uv_buf_init((char *)buf, (unsigned)len),
                         uv_buf_init("\r\n", 2)};
    leg_writev(l, parts, 3);
}

static int resp_value_done(llhttp_t *p)
{
    session *s = p->data;
    head_value_done(&s->resp_head);
    return 0;
}

static int resp_headers_complete(llhttp_t *p)
{
    session *s = p->data;
    const http_head *h = &s->resp_head;
    int status = p->status_code;
    size_t cap = head_forward_size(h);
    char *storage = malloc(cap);
    if (!storage)
        return -1;
    out_buf o;
    out_init(&o, storage, cap);
    out_addf(&o, "HTTP/1.1 %d %.*s\r\n", status, (int)h->url_len,
             h->buf ? h->buf + h->url_off : "");
    head_write_forwarded(h, &o, NULL);
    int ret = 0;
    if (status == 101) {
        size_t ulen;
        const char *up = head_get(h, "Upgrade", &ulen);
        out_addf(&o, "Connection: Upgrade\r\nUpgrade: %.*s\r\n", (int)(up ? ulen : 0),
                 up ? up : "");
    } else if (status >= 200) {
        s->status = status;
        s->response_started = true;
        bool no_body = s->head_request || status == 204 || status == 304;
        s->response_chunked = false;
        s->response_until_close = false;
        if (!no_body && (p->flags & F_CHUNKED)) {
            s->response_chunked = true;
            out_addf(&o, "Transfer-Encoding: chunked\r\n");
        } else if (!no_body && !(p->flags & F_CONTENT_LENGTH)) {
            /* The body ends when the origin closes: so must the client's connection. */
            s->response_until_close = true;
            s->client_keep_alive = false;
        }
        if (!s->request_done)
            s->client_keep_alive = false; /* answered early: the rest of the body is not read */
        if (!s->client_keep_alive)
            out_addf(&o, "Connection: close\r\n");
        if (no_body)
            ret = 1;
    }
    out_add(&o, "\r\n", 2);
    if (o.overflow) {
        free(storage);
        return -1;
    }
    write_client(s, o.data, o.len);
    free(storage);
    return ret;
}

static int resp_body(llhttp_t *p, const char *at, size_t len)
{
    session *s = p->data;
    if (s->response_chunked) {
        s->resp_bytes += len;
        write_chunk(&s->client, at, len);
        if (s->client.queued > LEG_HIGH_WATER)
            leg_set_backpressure(&s->origin, true);
    } else {
        write_client(s, at, len);
    }
    return 0;
}

static int resp_message_complete(llhttp_t *p)
{
    session *s = p->data;
    if (p->status_code < 200)
        return 0; /* 1xx: the final response follows; 101 turns into a tunnel */
    if (s->response_chunked)
        write_client(s, "0\r\n\r\n", 5);
    s->response_done = true;
    s->origin_keep_alive = llhttp_should_keep_alive(p);
    return HPE_PAUSED;
}

static const llhttp_settings_t response_settings = {
    .on_message_begin = resp_message_begin,
    .on_status = resp_status,
    .on_header_field = resp_field,
    .on_header_value = resp_value,
    .on_header_value_complete = resp_value_done,
    .on_headers_complete = resp_headers_complete,
    .on_body = resp_body,
    .on_message_complete = resp_message_complete,
};

static void close_when_written(session *s)
{
    front_close_after_answer(s);
}

/* Both halves of the exchange are done: log it and take the next request. */
static void exchange_complete(session *s)
{
    front_log_request(s, s->status, "allowed");
    bool origin_reusable = s->origin_keep_alive && !s->response_until_close;
    if (!origin_reusable && !s->intercepted)
        session_close_origin(s, NULL);
    if (!s->client_keep_alive || (!origin_reusable && (s->intercepted || s->inner_http))) {
        close_when_written(s);
        return;
    }
    s->response_done = s->request_done = s->response_started = false;
    front_begin(s, true);
}

void http_forward_after_pause(session *s)
{
    if (s->phase == PHASE_HTTP && s->request_done && s->response_done)
        exchange_complete(s);
}

static void upgrade_to_tunnel(session *s, const char *rest, size_t len)
{
    front_log_request(s, 101, "allowed");
    s->logged = true; /* the upgraded connection was logged as its request */
    char *held = s->pending_in;
    size_t held_len = s->pending_len;
    s->pending_in = NULL;
    s->pending_len = 0;
    relay_start(s, HANDLER_TUNNEL);
    if (len)
        leg_write(&s->client, rest, len);
    if (held_len)
        leg_write(&s->origin, held, held_len);
    free(held);
}

static void origin_on_data(leg *l, const char *buf, ssize_t n)
{
    session *s = l->s;
    if (n < 0) {
        if (!s->response_started && s->request_done == false && s->status == 0 &&
            s->response_done == false && s->phase == PHASE_HEAD) {
            session_close_origin(s, NULL); /* an idle kept-alive origin went away */
            return;
        }
        if (n == UV_EOF && s->response_until_close) {
            llhttp_finish(&s->resp_parser);
            s->origin_keep_alive = false;
            if (!s->request_done) {
                s->client_keep_alive = false;
                s->request_done = true;
            }
            exchange_complete(s);
            return;
        }
        if (s->phase == PHASE_HEAD) {
            session_close_origin(s, NULL);
            return;
        }
        if (!s->response_started) {
            front_answer(s, 502, "Bad Gateway",
                         "origin closed the connection without a response (%s)\n",
                         uv_strerror((int)n));
            return;
        }
        snprintf(s->error, sizeof s->error, "origin ended the response early: %s",
                 uv_strerror((int)n));
        front_log_request(s, s->status, "error");
        session_close(s);
        return;
    }
    if (s->phase != PHASE_HTTP) {
        /* Bytes from an idle origin are not an answer to anything. */
        session_close_origin(s, NULL);
        return;
    }
    llhttp_errno_t err = llhttp_execute(&s->resp_parser, buf, (size_t)n);
    if (s->closing)
        return;
    const char *pos = llhttp_get_error_pos(&s->resp_parser);
    size_t used = pos ? (size_t)(pos - buf) : (size_t)n;
    switch (err) {
    case HPE_OK:
        return;
    case HPE_PAUSED_UPGRADE:
        if (s->upgrade_requested && s->resp_parser.status_code == 101) {
            upgrade_to_tunnel(s, buf + used, (size_t)n - used);
            return;
        }
        break;
    case HPE_PAUSED:
        if (used < (size_t)n)
            s->origin_keep_alive = false; /* bytes past the response: not a clean origin */
        llhttp_resume(&s->resp_parser);
        if (s->request_done)
            exchange_complete(s);
        else if (!s->client_keep_alive)
            close_when_written(s);
        return;
    default:
        break;
    }
    if (!s->response_started) {
        front_answer(s, 502, "Bad Gateway", "invalid response from origin: %s\n",
                     llhttp_get_error_reason(&s->resp_parser));
        return;
    }
    snprintf(s->error, sizeof s->error, "invalid response from origin: %s",
             llhttp_get_error_reason(&s->resp_parser));
    front_log_request(s, s->status, "error");
    session_close(s);
}

static void on_origin_ready(session *s, int status, const char *reason)
{
    if (status) {
        const char *text = status == 504   ? "Gateway Timeout"
                           : status == 508 ? "Loop Detected"
                           : status == 403 ? "Forbidden"
                                           : "Bad Gateway";
        front_answer(s, status, text, "%s\n", reason);
        return;
    }
    snprintf(s->origin_key, sizeof s->origin_key, "%s:%u", s->target_host, s->target_port);
    send_request_head(s);
}

static void send_request_head(session *s)
{
    const http_head *h = &s->head;
    size_t cap = head_forward_size(h);
    char *storage = malloc(cap);
    if (!storage) {
        session_close(s);
        return;
    }
    s->phase = PHASE_HTTP;
    out_buf o;
    out_init(&o, storage, cap);
    out_addf(&o, "%s %s HTTP/1.1\r\n", s->method, s->request_path);
    static const char *const skip_host[] = {NULL};
    head_write_forwarded(h, &o, skip_host);
    size_t hl;
    if (!head_get(h, "Host", &hl)) {
        if (s->target_port == 80)
            out_addf(&o, "Host: %s\r\n", s->target_host);
        else
            out_addf(&o, strchr(s->target_host, ':') ? "Host: [%s]:%u\r\n" : "Host: %s:%u\r\n",
                     s->target_host, s->target_port);
    }
    s->request_chunked = (s->req_parser.flags & F_CHUNKED) != 0;
    if (s->request_chunked)
        out_addf(&o, "Transfer-Encoding: chunked\r\n");
    s->upgrade_requested = false;
    size_t ulen;
    const char *up = head_get(h, "Upgrade", &ulen);
    if (up && head_has_token(h, "Connection", "upgrade")) {
        s->upgrade_requested = true;
        out_addf(&o, "Connection: Upgrade\r\nUpgrade: %.*s\r\n", (int)ulen, up);
    }
    out_add(&o, "\r\n", 2);
    if (o.overflow) {
        free(storage);
        front_answer(s, 431, "Request Header Fields Too Large",
                     "request head too large to forward\n");
        return;
    }
    leg_write(&s->origin, o.data, o.len);
    free(storage);

    s->head_request = strcmp(s->method, "HEAD") == 0;
    s->client_keep_alive = llhttp_should_keep_alive(&s->req_parser);
    s->request_done = s->response_done = s->response_started = false;
    s->status = 0;
    s->resp_bytes = 0;
    llhttp_init(&s->resp_parser, HTTP_RESPONSE, &response_settings);
    s->resp_parser.data = s;
    s->origin.on_data = origin_on_data;
    leg_want_read(&s->origin, true);
    session_set_timer(s, (uint64_t)s->w->shared->cfg.idle_timeout_s * 1000, TIMER_IDLE);
    /* A request with no body completed inside the head: llhttp reports it on resume. */
    front_resume(s);
}

void http_forward_request(session *s)
{
    char key[sizeof s->origin_key];
    snprintf(key, sizeof key, "%s:%u", s->target_host, s->target_port);
    s->phase = PHASE_HTTP;
    if (s->upstream_error[0]) {
        snprintf(s->error, sizeof s->error, "%s", s->upstream_error);
        front_answer(s, 502, "Bad Gateway", "%s\n", s->upstream_error);
        return;
    }
    if (s->origin.open && strcmp(key, s->origin_key) == 0) {
        send_request_head(s);
        return;
    }
    if (s->intercepted) {
        front_answer(s, 502, "Bad Gateway", "the origin connection is closed\n");
        return;
    }
    if (s->origin.open) {
        session_close_origin(s, NULL);
    }
    upstream_connect(s, on_origin_ready);
}

void http_forward_body(session *s, const char *buf, size_t len)
{
    if (s->request_chunked) {
        write_chunk(&s->origin, buf, len);
    } else {
        leg_write(&s->origin, buf, len);
    }
    if (s->origin.queued > LEG_HIGH_WATER)
        leg_set_backpressure(&s->client, true);
}

void http_forward_request_done(session *s)
{
    if (s->request_chunked)
        leg_write(&s->origin, "0\r\n\r\n", 5);
    s->request_done = true;
}

void http_forward_start_inner(session *s, const char *first, size_t len)
{
    s->inner_http = true;
    s->tunneled = false;
    s->handler = HANDLER_HTTP;
    s->logged = true; /* each inner request gets its own line instead */
    snprintf(s->origin_key, sizeof s->origin_key, "%s:%u", s->target_host, s->target_port);
    front_begin(s, false);
    if (len)
        front_feed(s, first, len);
}
