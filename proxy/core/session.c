/* Session lifetime and the one door between stages. The session is freed in exactly one
 * place: when its last handle has closed and its last outstanding request has returned. */
#include "session.h"

#include <stdlib.h>
#include <string.h>

#include "core_internal.h"
#include "upstream.h"
#include "worker.h"

/* After our FIN has left, a closing leg waits this long for the peer's, reading and dropping
 * what it still sends, so that unread bytes do not turn the close into a reset. */
#define CLOSE_LINGER_MS 2000
#define CLOSE_TICK_MS   250

static void session_free(session *s)
{
    worker *w = s->w;
    if (s->prev)
        s->prev->next = s->next;
    else
        w->sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    w->session_count--;
    if (!s->ending)
        atomic_fetch_sub(&w->shared->connections, 1);
    txn_free(&s->t);
    if (s->auth_ctx && s->auth_ctx_free)
        s->auth_ctx_free(s->auth_ctx); /* no check runs: each held a reference */
    free(s->answer_headers);
    free(s->upstream_error);
    free(s->st);
    if (s->pol)
        policy_release(s->pol);
    free(s);
}

void session_ref(session *s)
{
    s->pending++;
}

void session_unref(session *s)
{
    if (--s->pending == 0)
        session_free(s);
}

static void on_timer_closed(uv_handle_t *h)
{
    session_unref(h->data);
}

static void check_done(session *s)
{
    if (!s->ending || s->client.open || s->origin.open)
        return;
    if (!uv_is_closing((uv_handle_t *)&s->timer))
        uv_close((uv_handle_t *)&s->timer, on_timer_closed);
}

void session_leg_closed(session *s)
{
    atomic_fetch_sub(&s->w->shared->fds_in_use, 1);
    session_ref(s);
    check_done(s);
    session_unref(s);
    session_unref(s);
}

static void on_timer(uv_timer_t *t)
{
    session *s = t->data;
    if (s->ending) {
        const config *cfg = &s->w->shared->cfg;
        uint64_t now = uv_now(&s->w->loop);
        uint64_t idle_ms = (uint64_t)cfg->idle_timeout_s * 1000;
        session_ref(s);
        leg_linger_check(&s->client, now, CLOSE_LINGER_MS, idle_ms);
        leg_linger_check(&s->origin, now, CLOSE_LINGER_MS, idle_ms);
        check_done(s);
        session_unref(s);
        return;
    }
    s->stage->on_deadline(s);
}

void session_deadline(session *s, uint64_t ms)
{
    if (!s->ending)
        uv_timer_start(&s->timer, on_timer, ms, 0);
}

void session_deadline_stop(session *s)
{
    if (!s->ending)
        uv_timer_stop(&s->timer);
}

/* The session ends in its stage: no stage follows, so s->st stays the state during leave. */
static void leave_stage(session *s)
{
    const stage *old = s->stage;
    void *old_st = s->st;
    s->stage = NULL;
    if (old && old->leave)
        old->leave(s, old_st);
    s->st = NULL;
    free(old_st);
}

void session_enter(session *s, stage_id id, const char *replay, size_t len)
{
    if (s->ending)
        return;
    const stage *next = stage_table[id];
    const stage *old = s->stage;
    void *old_st = s->st;
    uv_timer_stop(&s->timer);
    s->st = NULL;
    s->stage = next;
    s->idle = false;
    if (next->state_size) {
        s->st = calloc(1, next->state_size);
        if (!s->st) {
            s->stage = NULL;
            if (old && old->leave)
                old->leave(s, old_st);
            free(old_st);
            session_abort(s, "out of memory");
            return;
        }
    }
    /* The old state outlives enter(): the replayed bytes may point into it. */
    next->enter(s, replay, len);
    if (old && old->leave)
        old->leave(s, old_st);
    free(old_st);
}

void session_deliver(session *s, leg *l, const char *buf, ssize_t n)
{
    if (!s->ending && s->stage)
        s->stage->on_data(s, l, buf, n);
}

static void begin_ending(session *s)
{
    txn_end(s);
    leave_stage(s);
    s->ending = true;
    /* A connection that is only closing no longer counts against max_connections. */
    atomic_fetch_sub(&s->w->shared->connections, 1);
    s->idle = false;
    upstream_cancel(s);
    uv_timer_start(&s->timer, on_timer, CLOSE_TICK_MS, CLOSE_TICK_MS);
}

void session_end(session *s)
{
    if (s->ending)
        return;
    session_ref(s);
    begin_ending(s);
    leg_close_graceful(&s->client);
    leg_close_graceful(&s->origin);
    check_done(s);
    session_unref(s);
}

void session_abort(session *s, const char *reason)
{
    session_ref(s);
    if (!s->ending) {
        if (reason)
            txn_fail(s, "%s", reason);
        begin_ending(s);
    }
    leg_abort(&s->client);
    leg_abort(&s->origin);
    check_done(s);
    session_unref(s);
}

void session_leg_error(session *s, leg *l, int err)
{
    if (s->ending) {
        leg_abort(l);
        return;
    }
    if (s->stage->on_error) {
        s->stage->on_error(s, l, err);
        return;
    }
    char reason[160];
    snprintf(reason, sizeof reason, "%s: %s", l->is_client ? "client" : "origin", uv_strerror(err));
    session_abort(s, reason);
}

void session_leg_drained(session *s, leg *l)
{
    leg *peer = leg_peer(l);
    if (peer->backpressure)
        leg_set_backpressure(peer, false);
    if (!s->ending && s->stage->on_drain)
        s->stage->on_drain(s, l);
}

const char *session_stage_name(const session *s)
{
    return s->ending ? "closing" : s->stage ? s->stage->name : "new";
}

session *session_new(worker *w)
{
    session *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->w = w;
    s->id = atomic_fetch_add(&w->shared->next_session_id, 1) + 1;
    s->started_ms = s->last_activity_ms = uv_now(&w->loop);
    leg_init(&s->client, s, true);
    leg_init(&s->origin, s, false);
    uv_timer_init(&w->loop, &s->timer);
    s->timer.data = s;
    s->pending = 1; /* the timer handle */
    s->next = w->sessions;
    if (w->sessions)
        w->sessions->prev = s;
    w->sessions = s;
    w->session_count++;
    atomic_fetch_add(&w->shared->connections, 1);
    s->pol = shared_policy_acquire(w->shared);
    s->protocol = PROTO_UNKNOWN;
    s->tunnel_on_error = w->shared->cfg.tunnel_on_protocol_error;
    s->detect_enabled = w->shared->cfg.protocol_detection;
    s->verify_server = w->shared->cfg.verify_upstream;
    return s;
}

void session_open_leg(session *s, leg *l)
{
    uv_tcp_init(&s->w->loop, &l->tcp);
    l->tcp.data = l;
    l->open = true;
    s->pending++;
    atomic_fetch_add(&s->w->shared->fds_in_use, 1);
}
