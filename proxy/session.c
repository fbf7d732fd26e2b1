/* Session lifetime: one close path, freed when the last handle has closed. */
#include "session.h"

#include <stdlib.h>
#include <string.h>

#include "access_log.h"
#include "leg.h"
#include "session_internal.h"
#include "tls_leg.h"
#include "worker.h"

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
    atomic_fetch_sub(&w->shared->connections, 1);
    if (s->addrs)
        uv_freeaddrinfo(s->addrs);
    tls_leg_free(&s->client);
    tls_leg_free(&s->origin);
    free(s->head.buf);
    free(s->resp_head.buf);
    free(s->pending_in);
    free(s->url);
    free(s->hold);
    free(s->pass);
    splice_relay_free(s);
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

static void on_handle_closed(uv_handle_t *h)
{
    session_unref(h->data);
}

static void close_handle(session *s, uv_handle_t *h)
{
    if (!uv_is_closing(h)) {
        h->data = s;
        uv_close(h, on_handle_closed);
    }
}

void session_close(session *s)
{
    if (s->closing)
        return;
    s->closing = true;
    s->phase = PHASE_CLOSING;
    splice_relay_close(s); /* before the tcp handles close the descriptors it watches */
    if (s->client.open)
        close_handle(s, (uv_handle_t *)&s->client.tcp);
    if (s->origin.open)
        close_handle(s, (uv_handle_t *)&s->origin.tcp);
    close_handle(s, (uv_handle_t *)&s->timer);
    if (s->resolving)
        uv_cancel((uv_req_t *)&s->resolve);
}

static void on_origin_only_closed(uv_handle_t *h)
{
    session *s = h->data;
    void (*then)(session *) = s->origin_closed_then;
    s->origin_closed_then = NULL;
    s->origin_closing = false;
    tls_leg_free(&s->origin);
    leg_init(&s->origin, s, false);
    s->origin_key[0] = '\0';
    if (then && !s->closing)
        then(s);
    session_unref(s);
}

void session_close_origin(session *s, void (*then)(session *s))
{
    if (s->origin_closing) {
        /* The handle is still closing: whatever comes next waits for its callback. */
        if (then)
            s->origin_closed_then = then;
        return;
    }
    if (!s->origin.open) {
        if (then)
            then(s);
        return;
    }
    s->origin_closing = true;
    s->origin_closed_then = then;
    s->origin.open = false; /* session_close must not close it twice */
    s->origin.tcp.data = s;
    uv_close((uv_handle_t *)&s->origin.tcp, on_origin_only_closed);
}

static void on_timer(uv_timer_t *t);

void session_set_timer(session *s, uint64_t ms, timer_purpose purpose)
{
    s->timer_purpose = purpose;
    uv_timer_start(&s->timer, on_timer, ms, 0);
}

void session_stop_timer(session *s)
{
    s->timer_purpose = TIMER_NONE;
    uv_timer_stop(&s->timer);
}

void session_on_drain(session *s, leg *l)
{
    leg *peer = leg_peer(l);
    if (peer->backpressure)
        leg_set_backpressure(peer, false);
    if (s->phase == PHASE_RELAY)
        relay_drained(s);
}

void session_fail(session *s, leg *l, int status)
{
    if (!s->error[0])
        snprintf(s->error, sizeof s->error, "%s: %s", l->is_client ? "client" : "origin",
                 uv_strerror(status));
    if (s->phase == PHASE_RELAY || s->phase == PHASE_DETECT || s->phase == PHASE_TLS)
        session_log_connection(s);
    session_close(s);
}

static void on_timer(uv_timer_t *t)
{
    session *s = t->data;
    uint64_t now = uv_now(&s->w->loop);
    const config *cfg = &s->w->shared->cfg;
    switch (s->timer_purpose) {
    case TIMER_HEADER:
        front_answer(s, 408, "Request Timeout", "request head not complete within %d s\n",
                     cfg->header_timeout_s);
        break;
    case TIMER_KEEPALIVE:
        session_close(s);
        break;
    case TIMER_CONNECT:
        /* upstream.c owns the outcome; it registered the callback */
        upstream_timeout(s);
        break;
    case TIMER_DETECT:
        detect_stage_timeout(s);
        break;
    case TIMER_IDLE: {
        uint64_t idle_ms = (uint64_t)cfg->idle_timeout_s * 1000;
        if (now - s->last_activity_ms >= idle_ms) {
            snprintf(s->error, sizeof s->error, "idle for %d s", cfg->idle_timeout_s);
            if (s->phase == PHASE_HTTP && !s->response_started)
                front_answer(s, 504, "Gateway Timeout", "no answer from the origin within %d s\n",
                             cfg->idle_timeout_s);
            else if (s->phase == PHASE_HTTP) {
                front_log_request(s, s->status, "error"); /* mid-answer: too late for a status */
                session_close(s);
            } else
                session_fail(s, &s->client, 0);
        } else {
            session_set_timer(s, idle_ms - (now - s->last_activity_ms), TIMER_IDLE);
        }
        break;
    }
    case TIMER_NONE:
        break;
    }
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
}
