/* The detect stage: hold the client's first bytes until detection decides (or the deadline
 * passes, or the origin speaks first), then checkpoint 2 for TLS and checkpoint 3, and hand the
 * held bytes to the chosen stage. Inside intercepted TLS the same stage runs on the decrypted
 * bytes. */
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "names.h"
#include "session.h"
#include "verdict.h"
#include "worker.h"

typedef struct {
    uint64_t started_ms;
    size_t len;
    char *extra; /* bytes of the same read that did not fit in hold */
    size_t extra_len;
    char *hold; /* grows with what arrives, up to DETECT_MAX_BYTES: a client that sends nothing
                 * (a server-first protocol) costs no buffer at all */
    size_t cap;
} detect_state;

static stage_id handler_for(detect_protocol p)
{
    switch (p) {
    case PROTO_SIP:
        return STAGE_SIP;
    case PROTO_MSTURN:
        return STAGE_MSTURN;
    case PROTO_TURN:
        return STAGE_TURN;
    case PROTO_HTTP:
    case PROTO_HTTPS:
        return STAGE_HTTP;
    default:
        return STAGE_TUNNEL;
    }
}

/* Hands the held bytes (and what followed them) to stage id. */
static void hand_off(session *s, stage_id id)
{
    detect_state *st = s->st;
    if (!st->extra_len) {
        session_enter(s, id, st->hold ? st->hold : "", st->len);
        return;
    }
    char *all = malloc(st->len + st->extra_len);
    if (!all) {
        session_abort(s, "out of memory");
        return;
    }
    if (st->len)
        memcpy(all, st->hold, st->len);
    memcpy(all + st->len, st->extra, st->extra_len);
    size_t n = st->len + st->extra_len;
    session_enter(s, id, all, n);
    free(all);
}

/* Checkpoint 3: only an explicit DENY ends the connection here. */
static bool checkpoint3(session *s)
{
    if (session_policy(s, POLICY_CP_DETECTED, s->target_host, NULL, NULL))
        return true;
    txn_note(s, "%s denied after detection by %s:%d", detect_protocol_name(s->protocol),
             s->t.rule.file ? s->t.rule.file : "default", s->t.rule.line);
    session_end(s);
    return false;
}

static void settle_inner(session *s, detect_protocol proto)
{
    /* A client that negotiated h2 speaks HTTP/2 or nothing: the h2 stage answers it. */
    if (s->client_h2 && proto != PROTO_SIP)
        proto = PROTO_HTTPS;
    if (s->intercept_mode == SSL_FP_HTTPS && proto != PROTO_HTTPS) {
        if (!s->tunnel_on_error || s->upstream_error) {
            s->protocol = proto;
            txn_fail(s, "ssl.forward_proxy(https) expects HTTP inside TLS");
            session_end(s);
            return;
        }
        proto = PROTO_TCP;
    }
    s->protocol = proto;
    stage_id id = proto == PROTO_HTTPS ? (s->client_h2 ? STAGE_H2 : STAGE_HTTP)
                  : proto == PROTO_SIP ? STAGE_SIP
                                       : STAGE_TUNNEL;
    s->tunneled = id == STAGE_TUNNEL;
    if (!checkpoint3(s))
        return;
    if (s->upstream_error && id != STAGE_HTTP && id != STAGE_H2) {
        /* Nothing is relayed to or from an origin that failed verification. */
        txn_fail(s, "%s", s->upstream_error);
        session_end(s);
        return;
    }
    hand_off(s, id);
}

/* The SNI in canonical form, checked against the CONNECT host; false when the connection
 * ended (logged, nothing relayed). */
static bool accept_sni(session *s, const char *raw)
{
    s->sni[0] = '\0';
    if (!raw[0])
        return true;
    names_host h;
    const char *why = names_sni_canonical((const uint8_t *)raw, strlen(raw), &h);
    if (why == names_err_sni_ip_literal)
        return true; /* RFC 6066 forbids it: taken as no name at all */
    if (why) {
        names_escape((const uint8_t *)raw, strlen(raw), s->sni, sizeof s->sni);
        txn_fail(s, "protocol error: the TLS server name is not a host name (%s)", why);
        session_end(s);
        return false;
    }
    snprintf(s->sni, sizeof s->sni, "%s", h.text);
    if (s->w->shared->cfg.sni_must_match && s->target_is_name &&
        strcmp(s->sni, s->target_host) != 0) {
        txn_fail(s, "the TLS server name %s is not the CONNECT host %s ([tls] sni_must_match)",
                 s->sni, s->target_host);
        session_end(s);
        return false;
    }
    return true;
}

static void settle(session *s, const detect_result *r)
{
    detect_state *st = s->st;
    session_deadline_stop(s);
    metrics_detection(detect_protocol_name(r->protocol), uv_now(&s->w->loop) - st->started_ms);
    if (s->intercepted) {
        settle_inner(s, r->protocol);
        return;
    }
    s->protocol = r->protocol;
    if (r->protocol == PROTO_SSL) {
        if (!accept_sni(s, r->tls.sni))
            return;
        s->client_offers_http11 = false;
        s->client_offers_h2 = false;
        for (unsigned i = 0; i < r->tls.alpn_count; i++) {
            s->client_offers_http11 |= strcmp(r->tls.alpn[i], "http/1.1") == 0;
            s->client_offers_h2 |= strcmp(r->tls.alpn[i], "h2") == 0;
        }
        policy_decision d;
        if (!session_policy(s, POLICY_CP_TLS, NULL, NULL, &d)) {
            session_end(s);
            return;
        }
        if (d.ssl_forward_proxy == SSL_FP_HTTPS || d.ssl_forward_proxy == SSL_FP_YES) {
            s->intercept_mode = d.ssl_forward_proxy;
            s->intercepted = true;
            s->client_offers_h2 &= s->w->shared->cfg.http2 && d.http2 != TRI_NO;
            hand_off(s, STAGE_TLS);
            return;
        }
    }
    stage_id id = handler_for(s->protocol);
    s->tunneled = id == STAGE_TUNNEL;
    if (!checkpoint3(s))
        return;
    hand_off(s, id);
}

static void classify(session *s, bool final)
{
    detect_state *st = s->st;
    detect_result r;
    memset(&r, 0, sizeof r);
    const uint8_t *held = st->hold ? (const uint8_t *)st->hold : (const uint8_t *)"";
    detect_answer a = s->intercepted ? detect_classify_inner(held, st->len, &r)
                                     : detect_classify(held, st->len, &r);
    if (a == DETECT_MATCH) {
        settle(s, &r);
    } else if (final) {
        r.protocol = PROTO_TCP;
        settle(s, &r);
    }
}

static void detect_on_data(session *s, leg *l, const char *buf, ssize_t n)
{
    detect_state *st = s->st;
    if (!l->is_client || n < 0) {
        /* The origin spoke first (a server-first protocol), or the client is done: decide
         * now, then pass this event on to the chosen stage. */
        session_ref(s);
        classify(s, true);
        if (!s->ending && s->st != st)
            session_deliver(s, l, buf, n);
        session_unref(s);
        return;
    }
    size_t room = DETECT_MAX_BYTES - st->len;
    size_t take = (size_t)n < room ? (size_t)n : room;
    if (st->len + take > st->cap) {
        size_t cap = st->cap ? st->cap : 2048;
        while (cap < st->len + take)
            cap *= 2;
        if (cap > DETECT_MAX_BYTES)
            cap = DETECT_MAX_BYTES;
        char *p = realloc(st->hold, cap);
        if (!p) {
            session_abort(s, "out of memory");
            return;
        }
        st->hold = p;
        st->cap = cap;
    }
    memcpy(st->hold + st->len, buf, take);
    st->len += take;
    if (take < (size_t)n) {
        /* Whatever did not fit follows the held bytes, in order. */
        st->extra = malloc((size_t)n - take);
        if (!st->extra) {
            session_abort(s, "out of memory");
            return;
        }
        memcpy(st->extra, buf + take, (size_t)n - take);
        st->extra_len = (size_t)n - take;
    }
    classify(s, st->len == DETECT_MAX_BYTES);
}

static void detect_enter(session *s, const char *replay, size_t len)
{
    detect_state *st = s->st;
    st->started_ms = uv_now(&s->w->loop);
    if (!s->intercepted && !s->detect_enabled) {
        s->protocol = PROTO_TCP;
        s->tunneled = true;
        if (checkpoint3(s))
            session_enter(s, STAGE_TUNNEL, replay, len);
        return;
    }
    session_deadline(s, (uint64_t)s->w->shared->cfg.detect_timeout_ms);
    leg_want_read(&s->client, true);
    /* Nothing is ever read from an origin that failed verification. */
    leg_want_read(&s->origin, !s->upstream_error);
    session_ref(s);
    size_t off = 0;
    while (off < len && !s->ending && s->st == st) {
        size_t chunk = len - off;
        detect_on_data(s, &s->client, replay + off, (ssize_t)chunk);
        off += chunk;
    }
    if (!s->ending && s->st == st && s->client.eof)
        detect_on_data(s, &s->client, NULL, UV_EOF);
    session_unref(s);
}

static void detect_on_deadline(session *s)
{
    classify(s, true);
}

static void detect_leave(session *s, void *old)
{
    (void)s;
    detect_state *st = old;
    free(st->extra);
    st->extra = NULL;
    free(st->hold);
    st->hold = NULL;
}

const stage detect_stage = {
    .name = "detecting",
    .state_size = sizeof(detect_state),
    .enter = detect_enter,
    .on_data = detect_on_data,
    .on_deadline = detect_on_deadline,
    .leave = detect_leave,
};
