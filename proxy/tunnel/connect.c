/* The connect stage: a CONNECT was allowed; open the origin, answer 200 and hand the tunnel to
 * detection with the bytes the client sent meanwhile. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "session.h"
#include "upstream.h"
#include "worker.h"

/* Client bytes held until the origin is open; past this, reading stops. */
#define CONNECT_HOLD_MAX (64 * 1024)

typedef struct {
    char *held;
    size_t held_len;
} connect_state;

static const char *status_text(int status)
{
    switch (status) {
    case 403:
        return "Forbidden";
    case 504:
        return "Gateway Timeout";
    case 508:
        return "Loop Detected";
    default:
        return "Bad Gateway";
    }
}

static void refuse(session *s, int status, const char *reason)
{
    if (s->transparent) {
        /* No CONNECT to answer: the client only sees its connection close. */
        s->t.status = status;
        txn_fail(s, "%s", reason);
        session_end(s);
        return;
    }
    char msg[600];
    int body = snprintf(msg, sizeof msg, "%s\n", reason);
    char head[200];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
                     "Content-Length: %d\r\nConnection: close\r\n\r\n",
                     status, status_text(status), body);
    uv_buf_t parts[2] = {uv_buf_init(head, (unsigned)n), uv_buf_init(msg, (unsigned)body)};
    leg_writev(&s->client, parts, 2);
    s->t.status = status;
    s->t.rule.file = NULL; /* not a policy decision */
    if (status == 403)
        s->t.action = "denied";
    txn_fail(s, "%s", reason);
    session_end(s);
}

static void on_origin(session *s, int status, const char *reason)
{
    connect_state *st = s->st;
    if (status) {
        refuse(s, status, reason);
        return;
    }
    static const char established[] = "HTTP/1.1 200 Connection established\r\n";
    s->t.status = 200;
    const char *extra = s->answer_headers ? s->answer_headers : "";
    uv_buf_t parts[3] = {uv_buf_init((char *)established, sizeof established - 1),
                         uv_buf_init((char *)extra, (unsigned)strlen(extra)),
                         uv_buf_init("\r\n", 2)};
    if (!s->transparent) /* a redirected connection asked for nothing */
        leg_writev(&s->client, parts, 3);
    free(s->answer_headers);
    s->answer_headers = NULL;
    /* The tunnel's bytes are counted from here: the CONNECT head is not part of them. */
    s->t.client_mark = s->client.bytes_in - st->held_len;
    s->t.origin_mark = s->origin.bytes_in;
    session_enter(s, STAGE_DETECT, st->held, st->held_len);
}

static void connect_enter(session *s, const char *replay, size_t len)
{
    connect_state *st = s->st;
    if (len) {
        st->held = malloc(len);
        if (!st->held) {
            session_abort(s, "out of memory");
            return;
        }
        memcpy(st->held, replay, len);
        st->held_len = len;
    }
    /* Keep reading: what the client sends before the 200 belongs to the tunnel. */
    leg_want_read(&s->client, st->held_len < CONNECT_HOLD_MAX);
    session_deadline(s, (uint64_t)s->w->shared->cfg.connect_timeout_s * 1000);
    upstream_connect(s, s->target_host, s->target_port, on_origin);
}

static void connect_on_data(session *s, leg *l, const char *buf, ssize_t n)
{
    connect_state *st = s->st;
    if (n < 0 && n != UV_EOF) {
        char reason[160];
        snprintf(reason, sizeof reason, "%s: %s", l->is_client ? "client" : "origin",
                 uv_strerror((int)n));
        session_abort(s, reason);
        return;
    }
    if (!l->is_client || n < 0)
        return; /* a FIN stays on the leg (l->eof) for the next stage */
    char *p = realloc(st->held, st->held_len + (size_t)n);
    if (!p) {
        session_abort(s, "out of memory");
        return;
    }
    memcpy(p + st->held_len, buf, (size_t)n);
    st->held = p;
    st->held_len += (size_t)n;
    if (st->held_len >= CONNECT_HOLD_MAX)
        leg_want_read(&s->client, false);
}

static void connect_on_deadline(session *s)
{
    /* The upstream operation times out at the same moment; whichever fires first answers. */
    upstream_cancel(s);
    char reason[400];
    snprintf(reason, sizeof reason, "connecting to %s:%u timed out after %d s", s->target_host,
             s->target_port, s->w->shared->cfg.connect_timeout_s);
    refuse(s, 504, reason);
}

static void connect_leave(session *s, void *old)
{
    (void)s;
    connect_state *st = old;
    free(st->held);
    st->held = NULL;
}

const stage connect_stage = {
    .name = "connecting",
    .state_size = sizeof(connect_state),
    .enter = connect_enter,
    .on_data = connect_on_data,
    .on_deadline = connect_on_deadline,
    .leave = connect_leave,
};
