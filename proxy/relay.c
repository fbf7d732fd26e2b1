/* The relay: bytes from one leg written to the other, with backpressure and half-close; the
 * passthrough handlers watch the same bytes through their framers. */
#include <stdlib.h>
#include <string.h>

#include "access_log.h"
#include "leg.h"
#include "session_internal.h"
#include "worker.h"

#define SPLICE_AFTER_BYTES (256 * 1024)

struct passthrough {
    union {
        struct {
            sip_stream up, down;
        } sip;
        struct {
            msturn_stream up, down;
        } msturn;
        struct {
            turn_stream up, down;
        } turn;
    } u;
};

static void maybe_finish(session *s)
{
    if (s->client.eof && s->origin.eof && s->client.queued == 0 && s->origin.queued == 0) {
        session_log_connection(s);
        session_close(s);
    }
}

/* Returns 0, or -1 when the bytes broke the protocol (reason in s->error). */
static int observe(session *s, bool from_client, const char *buf, size_t n)
{
    struct passthrough *p = s->pass;
    const uint8_t *b = (const uint8_t *)buf;
    framing_status st = FRAMING_OK;
    const char *why = NULL;
    switch (s->handler) {
    case HANDLER_SIP: {
        sip_stream *me = from_client ? &p->u.sip.up : &p->u.sip.down;
        sip_stream *peer = from_client ? &p->u.sip.down : &p->u.sip.up;
        st = sip_stream_feed(me, peer, b, n, &s->counters);
        s->compressed = p->u.sip.up.compressed || p->u.sip.down.compressed;
        why = me->error;
        break;
    }
    case HANDLER_MSTURN: {
        msturn_stream *me = from_client ? &p->u.msturn.up : &p->u.msturn.down;
        st = msturn_stream_feed(me, b, n, &s->counters);
        why = me->error;
        break;
    }
    case HANDLER_TURN: {
        turn_stream *me = from_client ? &p->u.turn.up : &p->u.turn.down;
        st = turn_stream_feed(me, b, n, &s->counters);
        why = me->error;
        break;
    }
    default:
        return 0;
    }
    if (st == FRAMING_OK)
        return 0;
    snprintf(s->error, sizeof s->error, "%s protocol error from %s: %s",
             detect_protocol_name(s->protocol), from_client ? "client" : "server", why);
    return -1;
}

/* A passthrough handler could not frame the bytes: tunnel them if allowed, else close. */
static bool protocol_error(session *s)
{
    if (!s->tunnel_on_error) {
        s->action = "error";
        session_log_connection(s);
        session_close(s);
        return false;
    }
    /* Every byte so far went through unchanged, so the rest can simply follow as a tunnel. */
    s->handler = HANDLER_TUNNEL;
    s->protocol = PROTO_TCP;
    s->tunneled = true;
    free(s->pass);
    s->pass = NULL;
    return detect_stage_checkpoint3(s);
}

static void relay_on_data(leg *l, const char *buf, ssize_t n)
{
    session *s = l->s;
    leg *peer = leg_peer(l);
    if (n < 0) {
        if (n != UV_EOF) {
            session_fail(s, l, (int)n);
            return;
        }
        l->eof = true;
        leg_shutdown(peer);
        maybe_finish(s);
        return;
    }
    if (s->pass && observe(s, l->is_client, buf, (size_t)n) != 0 && !protocol_error(s))
        return;
    int rc = leg_write(peer, buf, (size_t)n);
    if (rc < 0) {
        session_fail(s, peer, rc);
        return;
    }
    if (peer->queued > LEG_HIGH_WATER) {
        leg_set_backpressure(l, true);
        return;
    }
    /* Bulk tunnels are worth the set-up of the zero-copy path; short exchanges are not. */
    s->relayed_bytes += (uint64_t)n;
    if (s->handler == HANDLER_TUNNEL && s->relayed_bytes >= SPLICE_AFTER_BYTES &&
        !s->splice_tried && peer->queued == 0 && l->queued == 0) {
        s->splice_tried = true;
        splice_relay_start(s);
    }
}

void relay_drained(session *s)
{
    maybe_finish(s);
}

void relay_start(session *s, session_handler handler)
{
    s->phase = PHASE_RELAY;
    s->handler = handler;
    if (handler == HANDLER_SIP || handler == HANDLER_MSTURN || handler == HANDLER_TURN) {
        s->pass = calloc(1, sizeof *s->pass);
        if (!s->pass) {
            session_close(s);
            return;
        }
        if (handler == HANDLER_SIP) {
            sip_stream_init(&s->pass->u.sip.up);
            sip_stream_init(&s->pass->u.sip.down);
        } else if (handler == HANDLER_MSTURN) {
            msturn_stream_init(&s->pass->u.msturn.up, false);
            msturn_stream_init(&s->pass->u.msturn.down, true);
        } else {
            turn_stream_init(&s->pass->u.turn.up);
            turn_stream_init(&s->pass->u.turn.down);
        }
    }
    s->client.on_data = relay_on_data;
    s->origin.on_data = relay_on_data;
    leg_want_read(&s->client, true);
    leg_want_read(&s->origin, true);
    session_set_timer(s, (uint64_t)s->w->shared->cfg.idle_timeout_s * 1000, TIMER_IDLE);
    maybe_finish(s);
}

static const char *handler_protocol(session *s)
{
    const char *name = detect_protocol_name(s->protocol);
    return name ? name : "tcp";
}

void session_log_connection(session *s)
{
    if (s->logged)
        return;
    s->logged = true;
    char rule[300] = "";
    if (s->rule.file)
        snprintf(rule, sizeof rule, "%s:%d", s->rule.file, s->rule.line);
    access_record r = {
        .client = s->client_text,
        .method = "CONNECT",
        .target = s->url,
        .status = s->status ? s->status : 200,
        .protocol = s->protocol == PROTO_UNKNOWN ? NULL : handler_protocol(s),
        .intercepted = s->intercepted,
        .tunneled = s->tunneled,
        .action = s->action ? s->action : (s->error[0] ? "error" : "allowed"),
        .rule = rule[0] ? rule : NULL,
        .sni = s->sni[0] ? s->sni : NULL,
        .user = s->user[0] ? s->user : NULL,
        .bytes_from_client = s->client.bytes_in - s->log_bytes_client_mark,
        .bytes_from_server = s->origin.bytes_in,
        .duration_ms = uv_now(&s->w->loop) - s->request_started_ms,
        .error = s->error[0] ? s->error : NULL,
        .messages = &s->counters,
        .compressed = s->compressed,
    };
    access_log_write(s->w->shared->log, &r);
    metrics_connection_end(s->w->shared, r.protocol ? r.protocol : "none", r.action,
                           r.bytes_from_client, r.bytes_from_server);
}
