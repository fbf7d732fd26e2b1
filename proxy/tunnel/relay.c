/* The relay stages: bytes from one leg written to the other, with backpressure and half-close.
 * tunnel relays blindly (and switches to splice(2) for bulk); sip, turn and ms-turn watch the
 * same bytes through their framers, counting messages. */
#include <stdlib.h>
#include <string.h>

#include "session.h"
#include "splice.h"
#include "verdict.h"
#include "worker.h"

#define SPLICE_AFTER_BYTES (256 * 1024)

/* What a passthrough handler keeps: its framers and message counters. A blind tunnel has none,
 * so an idle tunnel carries only relay_state. */
typedef struct {
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
    framing_counters counters;
} passthrough;

typedef struct {
    stage_id kind;
    bool framed;       /* a passthrough handler watching the bytes */
    passthrough *pass; /* allocated for sip, turn and ms-turn */
    uint64_t relayed_bytes;
    bool splice_tried;
    splice_state *splice;
} relay_state;

static void maybe_finish(session *s)
{
    if (s->client.eof && s->origin.eof && s->client.queued == 0 && s->origin.queued == 0)
        session_end(s);
}

/* Returns 0, or -1 when the bytes broke the protocol (reason recorded). */
static int observe(session *s, relay_state *st, bool from_client, const char *buf, size_t n)
{
    const uint8_t *b = (const uint8_t *)buf;
    framing_status fs = FRAMING_OK;
    const char *why = NULL;
    switch (st->kind) {
    case STAGE_SIP: {
        sip_stream *me = from_client ? &st->pass->u.sip.up : &st->pass->u.sip.down;
        sip_stream *peer = from_client ? &st->pass->u.sip.down : &st->pass->u.sip.up;
        fs = sip_stream_feed(me, peer, b, n, &st->pass->counters);
        s->compressed = st->pass->u.sip.up.compressed || st->pass->u.sip.down.compressed;
        why = me->error;
        break;
    }
    case STAGE_MSTURN: {
        msturn_stream *me = from_client ? &st->pass->u.msturn.up : &st->pass->u.msturn.down;
        fs = msturn_stream_feed(me, b, n, &st->pass->counters);
        why = me->error;
        break;
    }
    case STAGE_TURN: {
        turn_stream *me = from_client ? &st->pass->u.turn.up : &st->pass->u.turn.down;
        fs = turn_stream_feed(me, b, n, &st->pass->counters);
        why = me->error;
        break;
    }
    default:
        return 0;
    }
    if (fs == FRAMING_OK)
        return 0;
    txn_note(s, "%s protocol error from %s: %s", detect_protocol_name(s->protocol),
             from_client ? "client" : "server", why);
    return -1;
}

/* A passthrough handler could not frame the bytes: tunnel them if allowed, else close. */
static bool protocol_error(session *s, relay_state *st)
{
    if (!s->tunnel_on_error) {
        s->t.action = "error";
        session_end(s);
        return false;
    }
    /* Every byte so far went through unchanged, so the rest can simply follow as a tunnel. */
    st->framed = false;
    s->protocol = PROTO_TCP;
    s->tunneled = true;
    free(s->t.error); /* the fallback is not an error of this connection */
    s->t.error = NULL;
    if (session_policy(s, POLICY_CP_DETECTED, s->target_host, NULL, NULL))
        return true;
    session_end(s);
    return false;
}

static void relay_on_data(session *s, leg *l, const char *buf, ssize_t n)
{
    relay_state *st = s->st;
    leg *peer = leg_peer(l);
    if (n == UV_ECONNRESET && l->shut)
        n = UV_EOF; /* a peer that resets after our FIN has nothing more to say */
    if (n < 0) {
        if (n != UV_EOF) {
            char reason[160];
            snprintf(reason, sizeof reason, "%s: %s", l->is_client ? "client" : "origin",
                     uv_strerror((int)n));
            session_abort(s, reason);
            return;
        }
        /* A peer that stops without close_notify before the other side ended cut its stream
         * short; once we had passed it the other side's close, the conversation was over. */
        if (l->truncated && !l->shut) {
            txn_fail(s, "%s ended TLS without close_notify: the stream may be truncated",
                     l->is_client ? "client" : "origin");
            peer->no_close_notify = true;
        }
        leg_shutdown(peer); /* the half-close passes on, after what is queued */
        maybe_finish(s);
        return;
    }
    if (st->framed && observe(s, st, l->is_client, buf, (size_t)n) != 0 && !protocol_error(s, st))
        return;
    int rc = leg_write(peer, buf, (size_t)n);
    if (rc < 0) {
        char reason[160];
        snprintf(reason, sizeof reason, "%s: %s", peer->is_client ? "client" : "origin",
                 uv_strerror(rc));
        session_abort(s, reason);
        return;
    }
    if (peer->queued > LEG_HIGH_WATER) {
        leg_set_backpressure(l, true);
        return;
    }
    /* Bulk tunnels are worth the set-up of the zero-copy path; short exchanges are not. */
    st->relayed_bytes += (uint64_t)n;
    if (st->kind == STAGE_TUNNEL && !st->framed && st->relayed_bytes >= SPLICE_AFTER_BYTES &&
        !st->splice_tried && peer->queued == 0 && l->queued == 0) {
        st->splice_tried = true;
        st->splice = splice_start(s);
    }
}

static void relay_on_drain(session *s, leg *l)
{
    (void)l;
    maybe_finish(s);
}

static void relay_on_deadline(session *s)
{
    uint64_t idle_ms = (uint64_t)s->w->shared->cfg.idle_timeout_s * 1000;
    uint64_t quiet = uv_now(&s->w->loop) - s->last_activity_ms;
    if (quiet < idle_ms) {
        session_deadline(s, idle_ms - quiet);
        return;
    }
    char reason[100];
    snprintf(reason, sizeof reason, "idle for %d s", s->w->shared->cfg.idle_timeout_s);
    session_abort(s, reason);
}

static void relay_leave(session *s, void *old)
{
    relay_state *st = old;
    if (st->splice) {
        splice_stop(st->splice);
        st->splice = NULL;
    }
    /* The counters stay readable for the log line written before leave. */
    if (st->pass && s->counters == &st->pass->counters)
        s->counters = NULL;
    free(st->pass);
    st->pass = NULL;
}

static void begin(session *s, stage_id kind, const char *replay, size_t len)
{
    relay_state *st = s->st;
    st->kind = kind;
    st->framed = kind != STAGE_TUNNEL;
    if (st->framed && !(st->pass = calloc(1, sizeof *st->pass))) {
        session_abort(s, "out of memory");
        return;
    }
    if (kind == STAGE_SIP) {
        sip_stream_init(&st->pass->u.sip.up);
        sip_stream_init(&st->pass->u.sip.down);
    } else if (kind == STAGE_MSTURN) {
        msturn_stream_init(&st->pass->u.msturn.up, false);
        msturn_stream_init(&st->pass->u.msturn.down, true);
    } else if (kind == STAGE_TURN) {
        turn_stream_init(&st->pass->u.turn.up);
        turn_stream_init(&st->pass->u.turn.down);
    }
    if (st->framed)
        s->counters = &st->pass->counters;
    leg_want_read(&s->client, true);
    leg_want_read(&s->origin, true);
    session_deadline(s, (uint64_t)s->w->shared->cfg.idle_timeout_s * 1000);
    session_ref(s);
    bool client_done = s->client.eof, origin_done = s->origin.eof;
    if (len)
        relay_on_data(s, &s->client, replay, (ssize_t)len);
    if (!s->ending && s->st == st && client_done)
        leg_shutdown(&s->origin);
    if (!s->ending && s->st == st && origin_done)
        leg_shutdown(&s->client);
    if (!s->ending && s->st == st)
        maybe_finish(s);
    session_unref(s);
}

static void tunnel_enter(session *s, const char *replay, size_t len)
{
    begin(s, STAGE_TUNNEL, replay, len);
}

static void sip_enter(session *s, const char *replay, size_t len)
{
    begin(s, STAGE_SIP, replay, len);
}

static void turn_enter(session *s, const char *replay, size_t len)
{
    begin(s, STAGE_TURN, replay, len);
}

static void msturn_enter(session *s, const char *replay, size_t len)
{
    begin(s, STAGE_MSTURN, replay, len);
}

#define RELAY_STAGE(var, label, entry)                                                             \
    const stage var = {                                                                            \
        .name = label,                                                                             \
        .state_size = sizeof(relay_state),                                                         \
        .enter = entry,                                                                            \
        .on_data = relay_on_data,                                                                  \
        .on_drain = relay_on_drain,                                                                \
        .on_deadline = relay_on_deadline,                                                          \
        .leave = relay_leave,                                                                      \
    }

RELAY_STAGE(tunnel_stage, "tunnel", tunnel_enter);
RELAY_STAGE(sip_stage, "sip", sip_enter);
RELAY_STAGE(turn_stage, "turn", turn_enter);
RELAY_STAGE(msturn_stage, "ms-turn", msturn_enter);
