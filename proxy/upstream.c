/* Name resolution off the loop, then a connect to each resolved address in turn, all under
 * one connect timeout. */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>

#include "leg.h"
#include "session_internal.h"
#include "worker.h"

static void try_next(session *s);

static void finish(session *s, int status, const char *reason)
{
    upstream_cb done = s->upstream_done;
    s->upstream_done = NULL;
    session_stop_timer(s);
    if (done)
        done(s, status, reason);
}

static bool same_endpoint(const struct sockaddr *target, const struct sockaddr_storage *listen)
{
    if (target->sa_family != listen->ss_family)
        return false;
    if (target->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const void *)target, *b = (const void *)listen;
        if (a->sin_port != b->sin_port)
            return false;
        /* A wildcard listener is only known to be us on loopback. */
        if (b->sin_addr.s_addr == htonl(INADDR_ANY))
            return (ntohl(a->sin_addr.s_addr) >> 24) == 127;
        return a->sin_addr.s_addr == b->sin_addr.s_addr;
    }
    const struct sockaddr_in6 *a = (const void *)target, *b = (const void *)listen;
    if (a->sin6_port != b->sin6_port)
        return false;
    if (IN6_IS_ADDR_UNSPECIFIED(&b->sin6_addr))
        return IN6_IS_ADDR_LOOPBACK(&a->sin6_addr);
    return memcmp(&a->sin6_addr, &b->sin6_addr, sizeof a->sin6_addr) == 0;
}

/* 508 for our own proxy port (a loop), 403 for the admin listener; 0 otherwise. */
static int check_self(session *s, const struct sockaddr *addr)
{
    const config *cfg = &s->w->shared->cfg;
    for (int i = 0; i < cfg->listen_count; i++)
        if (same_endpoint(addr, &cfg->listen[i].addr))
            return 508;
    if (cfg->admin_enabled && same_endpoint(addr, &cfg->admin.addr))
        return 403;
    return 0;
}

static void resolved(session *s, int status, struct addrinfo *res);

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    session *s = req->data;
    s->resolving = false;
    if (s->closing) {
        if (res)
            uv_freeaddrinfo(res);
        session_unref(s);
        return;
    }
    resolved(s, status, res);
    session_unref(s);
}

static void resolved(session *s, int status, struct addrinfo *res)
{
    if (status < 0) {
        char reason[320];
        snprintf(reason, sizeof reason, "name %s does not resolve (%s)", s->target_host,
                 uv_strerror(status));
        finish(s, 502, reason);
    } else {
        if (s->addrs)
            uv_freeaddrinfo(s->addrs);
        s->addrs = s->next_addr = res;
        int self = 0;
        for (struct addrinfo *a = res; a && !self; a = a->ai_next)
            self = check_self(s, a->ai_addr);
        if (self)
            s->rule.file = NULL; /* not a policy decision */
        if (self == 508)
            finish(s, 508, "the request loops back to this proxy");
        else if (self == 403)
            finish(s, 403, "the admin listener is not reachable through the proxy");
        else
            try_next(s);
    }
}

static void on_connected(uv_connect_t *req, int status)
{
    session *s = req->data;
    if (status == UV_ECANCELED || s->closing || !s->upstream_done)
        return;
    if (status < 0) {
        s->connect_error = status;
        session_close_origin(s, try_next);
        return;
    }
    uv_tcp_nodelay(&s->origin.tcp, 1);
    finish(s, 0, NULL);
}

static void try_next(session *s)
{
    while (s->next_addr) {
        struct addrinfo *a = s->next_addr;
        s->next_addr = a->ai_next;
        session_open_leg(s, &s->origin);
        s->connect.data = s;
        int rc = uv_tcp_connect(&s->connect, &s->origin.tcp, a->ai_addr, on_connected);
        if (rc == 0)
            return;
        s->connect_error = rc;
        session_close_origin(s, try_next);
        return;
    }
    char reason[320];
    snprintf(reason, sizeof reason, "cannot connect to %s:%u: %s", s->target_host, s->target_port,
             uv_strerror(s->connect_error ? s->connect_error : UV_ECONNREFUSED));
    finish(s, 502, reason);
}

void upstream_timeout(session *s)
{
    char reason[320];
    snprintf(reason, sizeof reason, "connecting to %s:%u timed out after %d s", s->target_host,
             s->target_port, s->w->shared->cfg.connect_timeout_s);
    s->next_addr = NULL;
    session_close_origin(s, NULL);
    finish(s, 504, reason);
}

static void connect_after_close(session *s)
{
    upstream_connect(s, s->upstream_done);
}

void upstream_connect(session *s, upstream_cb done)
{
    if (s->origin_closing) {
        /* A new origin handle can only be made once the old one has closed. */
        s->upstream_done = done;
        session_close_origin(s, connect_after_close);
        return;
    }
    char port[8];
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    s->upstream_done = done;
    s->connect_error = 0;
    s->phase = PHASE_CONNECTING;
    snprintf(port, sizeof port, "%u", s->target_port);
    session_set_timer(s, (uint64_t)s->w->shared->cfg.connect_timeout_s * 1000, TIMER_CONNECT);
    /* An address literal needs no resolver: skip the thread pool round trip. */
    struct addrinfo numeric = hints, *res = NULL;
    numeric.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    if (getaddrinfo(s->target_host, port, &numeric, &res) == 0) {
        resolved(s, 0, res);
        return;
    }
    s->resolve.data = s;
    int rc = uv_getaddrinfo(&s->w->loop, &s->resolve, on_resolved, s->target_host, port, &hints);
    if (rc < 0) {
        finish(s, 502, "name resolution failed to start");
        return;
    }
    s->resolving = true;
    session_ref(s);
}
