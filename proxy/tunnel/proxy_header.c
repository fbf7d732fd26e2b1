/* The PROXY-protocol stage: on a listener behind a load balancer, the balancer's header comes
 * before the client's first byte. It names the real client, which then stands for the
 * connection everywhere (policy client.address, logs, /sessions, metrics). A connection that
 * does not start with a valid header from an allowed balancer is reset with a logged reason:
 * a diagnostic line and a metric, no access-log line (there was no transaction; a port scan
 * should not fill the access log). */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "diag.h"
#include "metrics.h"
#include "names.h"
#include "proxy_protocol.h"
#include "session.h"
#include "worker.h"

typedef struct {
    char buf[PROXY_PROTOCOL_V2_MAX]; /* the header so far; no valid header is longer */
    size_t len;
} header_state;

static void format_address(const struct sockaddr_storage *ss, char *out, size_t len)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const void *)ss;
        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
        snprintf(out, len, "%s:%u", ip, ntohs(a->sin_port));
    } else {
        const struct sockaddr_in6 *a = (const void *)ss;
        inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
        snprintf(out, len, "[%s]:%u", ip, ntohs(a->sin6_port));
    }
}

static void refuse(session *s, const char *outcome, const char *reason)
{
    metrics_proxy_protocol(outcome);
    diag(LOG_WARN, "connection from %s refused: %s", s->client_text, reason);
    session_abort(s, NULL);
}

static bool from_balancer(const session *s)
{
    const config *cfg = &s->w->shared->cfg;
    struct sockaddr_storage peer;
    if (!names_sockaddr_canonical((const struct sockaddr *)&s->client_addr, &peer))
        return false;
    for (int i = 0; i < cfg->proxy_protocol_from_count; i++)
        if (config_cidr_contains(&cfg->proxy_protocol_from[i], (const struct sockaddr *)&peer))
            return true;
    return false;
}

static void enter(session *s, const char *replay, size_t len)
{
    (void)replay;
    (void)len;
    if (!from_balancer(s)) {
        refuse(s, "source", "PROXY header expected from [proxy] proxy_protocol_from only");
        return;
    }
    session_deadline(s, (uint64_t)s->w->shared->cfg.header_timeout_s * 1000);
    leg_want_read(&s->client, true);
}

static void on_data(session *s, leg *l, const char *buf, ssize_t n)
{
    header_state *h = s->st;
    if (!l->is_client)
        return;
    if (n < 0) {
        refuse(s, h->len ? "truncated" : "missing",
               h->len ? "the connection ended inside its PROXY header"
                      : "the connection ended before its PROXY header");
        return;
    }
    size_t room = sizeof h->buf - h->len;
    size_t take = (size_t)n < room ? (size_t)n : room;
    memcpy(h->buf + h->len, buf, take);
    h->len += take;
    proxy_protocol_header ph;
    detect_answer a = proxy_protocol_parse((const uint8_t *)h->buf, h->len, &ph);
    if (a == DETECT_NEED_MORE && h->len == sizeof h->buf)
        a = DETECT_NO, ph.error = "PROXY header too long";
    if (a == DETECT_NEED_MORE)
        return;
    if (a == DETECT_NO) {
        const char *why = ph.error ? ph.error : "bad PROXY header";
        const char *outcome = strstr(why, "too long") || strstr(why, "longer than") ? "too_long"
                              : strstr(why, "not a PROXY")                          ? "missing"
                                                                                    : "malformed";
        refuse(s, outcome, why);
        return;
    }
    if (ph.command == PROXY_PROTOCOL_PROXY && ph.has_addresses) {
        names_sockaddr_canonical((const struct sockaddr *)&ph.source, &s->client_addr);
        format_address(&s->client_addr, s->client_text, sizeof s->client_text);
        metrics_proxy_protocol("accepted");
    } else {
        metrics_proxy_protocol("local"); /* the balancer's own connection: its address stands */
    }
    /* What followed the header: the part already copied is replayed, the rest delivered. */
    const char *rest = buf + take;
    size_t rest_len = (size_t)n - take;
    session_enter(s, STAGE_HEAD, h->buf + ph.header_len, h->len - ph.header_len);
    if (rest_len && !s->ending && s->stage == stage_table[STAGE_HEAD])
        session_deliver(s, &s->client, rest, (ssize_t)rest_len);
}

static void on_deadline(session *s)
{
    char reason[96];
    snprintf(reason, sizeof reason, "no complete PROXY header within %d s",
             s->w->shared->cfg.header_timeout_s);
    refuse(s, "timeout", reason);
}

const stage proxy_header_stage = {
    .name = "proxy-header",
    .state_size = sizeof(header_state),
    .enter = enter,
    .on_data = on_data,
    .on_deadline = on_deadline,
};
