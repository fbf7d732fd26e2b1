/* Between "200 Connection established" and a handler: hold the client's first bytes until
 * detection decides, then replay them to the chosen handler. */
#include <stdlib.h>
#include <string.h>

#include "leg.h"
#include "session_internal.h"
#include "worker.h"

static void hold_on_data(leg *l, const char *buf, ssize_t n);

/* Checkpoint 3: only an explicit DENY ends the connection here. */
bool detect_stage_checkpoint3(session *s)
{
    policy_facts f = {
        .host = s->target_host,
        .port = s->target_port,
        .method = "CONNECT",
        .client = (const struct sockaddr *)&s->client_addr,
        .protocol = detect_protocol_name(s->protocol),
        .tunneled = s->tunneled ? 1 : 0,
        .user = s->user[0] ? s->user : NULL,
    };
    policy_decision d;
    policy_evaluate(s->pol, &f, POLICY_CP_DETECTED, &d);
    if (d.verdict_rule.file)
        s->rule = d.verdict_rule;
    if (d.verdict != POLICY_DENY)
        return true;
    s->action = "denied";
    snprintf(s->error, sizeof s->error, "%s denied after detection by %s:%d",
             detect_protocol_name(s->protocol), d.verdict_rule.file, d.verdict_rule.line);
    session_log_connection(s);
    session_close(s);
    return false;
}

static session_handler handler_for(detect_protocol p)
{
    switch (p) {
    case PROTO_SIP:
        return HANDLER_SIP;
    case PROTO_MSTURN:
        return HANDLER_MSTURN;
    case PROTO_TURN:
        return HANDLER_TURN;
    case PROTO_HTTP:
    case PROTO_HTTPS:
        return HANDLER_HTTP;
    default:
        return HANDLER_TUNNEL;
    }
}

void detect_stage_hand_off(session *s, session_handler h)
{
    char *held = s->hold;
    size_t len = s->hold_len;
    s->hold = NULL;
    s->hold_len = 0;
    if (h == HANDLER_HTTP) {
        http_forward_start_inner(s, held, len);
    } else {
        relay_start(s, h);
        if (len && !s->closing)
            leg_deliver(&s->client, held, (ssize_t)len);
    }
    free(held);
}

size_t detect_stage_hold(session *s, const char *buf, size_t n)
{
    size_t room = DETECT_MAX_BYTES - s->hold_len;
    size_t take = n < room ? n : room;
    memcpy(s->hold + s->hold_len, buf, take);
    s->hold_len += take;
    return take;
}

/* Starts the handler for s->protocol and replays the held bytes into it. */
static void settle(session *s, const detect_result *r)
{
    session_stop_timer(s);
    s->protocol = r->protocol;
    metrics_detection(s->w->shared, detect_protocol_name(r->protocol),
                      uv_now(&s->w->loop) - s->request_started_ms);
    if (r->protocol == PROTO_SSL) {
        snprintf(s->sni, sizeof s->sni, "%s", r->tls.sni);
        if (tls_decide(s, &r->tls)) /* interception takes the held bytes from here */
            return;
        if (s->closing)
            return;
    }
    session_handler h = handler_for(s->protocol);
    s->tunneled = h == HANDLER_TUNNEL;
    if (!detect_stage_checkpoint3(s))
        return;
    detect_stage_hand_off(s, h);
}

static void classify(session *s, bool final)
{
    detect_result r;
    memset(&r, 0, sizeof r);
    detect_answer a = detect_classify((const uint8_t *)s->hold, s->hold_len, &r);
    if (a == DETECT_MATCH) {
        settle(s, &r);
    } else if (final) {
        r.protocol = PROTO_TCP;
        settle(s, &r);
    }
}

static void hold_on_data(leg *l, const char *buf, ssize_t n)
{
    session *s = l->s;
    if (s->phase != PHASE_DETECT)
        return; /* interception took over: TLS legs report their own end */
    if (!l->is_client) {
        /* The origin spoke first: a server-first protocol, so a tunnel. */
        classify(s, true);
        if (!s->closing && s->phase != PHASE_DETECT)
            leg_deliver(l, buf, n);
        return;
    }
    if (n < 0) {
        classify(s, true);
        if (!s->closing && s->phase != PHASE_DETECT)
            leg_deliver(l, buf, n);
        return;
    }
    size_t take = detect_stage_hold(s, buf, (size_t)n);
    classify(s, s->hold_len == DETECT_MAX_BYTES);
    /* Whatever did not fit follows the replayed bytes. */
    if (take < (size_t)n && !s->closing && s->phase != PHASE_DETECT)
        leg_deliver(l, buf + take, n - (ssize_t)take);
}

void detect_stage_timeout(session *s)
{
    if (s->phase == PHASE_TLS) {
        tls_inner_timeout(s);
        return;
    }
    classify(s, true);
}

void detect_stage_start(session *s, const char *first, size_t len)
{
    s->request_started_ms = uv_now(&s->w->loop);
    if (!s->detect_enabled) {
        s->protocol = PROTO_TCP;
        s->tunneled = true;
        if (!detect_stage_checkpoint3(s))
            return;
        relay_start(s, HANDLER_TUNNEL);
        if (len && !s->closing)
            leg_deliver(&s->client, first, (ssize_t)len);
        return;
    }
    s->phase = PHASE_DETECT;
    s->hold = malloc(DETECT_MAX_BYTES);
    if (!s->hold) {
        session_close(s);
        return;
    }
    s->client.on_data = hold_on_data;
    s->origin.on_data = hold_on_data;
    leg_want_read(&s->client, true);
    leg_want_read(&s->origin, true);
    session_set_timer(s, (uint64_t)s->w->shared->cfg.detect_timeout_ms, TIMER_DETECT);
    if (len)
        hold_on_data(&s->client, first, (ssize_t)len);
}
