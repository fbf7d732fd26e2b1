/* Name resolution off the loop, then a connect to each resolved address in turn, all under
 * one connect timeout that the operation owns. */
#include "upstream.h"

#include <ifaddrs.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "session.h"
#include "transparent.h"
#include "worker.h"

struct upstream_op {
    session *s;
    uv_getaddrinfo_t resolve;
    uv_connect_t connect;
    uv_timer_t timer;
    struct addrinfo *addrs, *next_addr;
    upstream_cb done;
    char host[256];
    uint16_t port;
    int outstanding; /* resolve, connect, timer handle */
    int connect_error;
    bool cancelled;
    bool connecting;
};

static void op_release(upstream_op *op)
{
    session *s = op->s;
    if (--op->outstanding == 0) {
        if (op->addrs)
            uv_freeaddrinfo(op->addrs);
        free(op);
    }
    session_unref(s);
}

static void on_timer_closed(uv_handle_t *h)
{
    op_release(h->data);
}

/* Detaches the operation from the session; what is still outstanding finishes on its own. */
static void op_detach(upstream_op *op)
{
    if (op->s->upstream == op)
        op->s->upstream = NULL;
    op->cancelled = true;
    if (!uv_is_closing((uv_handle_t *)&op->timer))
        uv_close((uv_handle_t *)&op->timer, on_timer_closed);
}

static void finish(upstream_op *op, int status, const char *reason)
{
    session *s = op->s;
    upstream_cb done = op->done;
    op_detach(op);
    if (!s->ending)
        done(s, status, reason);
}

void upstream_cancel(session *s)
{
    if (!s->upstream)
        return;
    upstream_op *op = s->upstream;
    op_detach(op);
    if (op->connecting)
        leg_abort(&s->origin); /* the connect request then returns cancelled */
}

/* ---- is the target one of our own listeners? ---- */

static struct {
    pthread_once_t once;
    struct sockaddr_storage addr[64];
    int count;
} local = {.once = PTHREAD_ONCE_INIT};

static void load_local_addresses(void)
{
    struct ifaddrs *ifs;
    if (getifaddrs(&ifs) != 0)
        return;
    for (struct ifaddrs *i = ifs; i && local.count < 64; i = i->ifa_next) {
        if (!i->ifa_addr)
            continue;
        int fam = i->ifa_addr->sa_family;
        if (fam == AF_INET)
            memcpy(&local.addr[local.count++], i->ifa_addr, sizeof(struct sockaddr_in));
        else if (fam == AF_INET6)
            memcpy(&local.addr[local.count++], i->ifa_addr, sizeof(struct sockaddr_in6));
    }
    freeifaddrs(ifs);
}

/* v4-mapped IPv6 becomes IPv4, so one address has one spelling. */
static void canonical(const struct sockaddr *in, struct sockaddr_storage *out)
{
    memset(out, 0, sizeof *out);
    if (in->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const void *)in;
        if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr)) {
            struct sockaddr_in *o = (void *)out;
            o->sin_family = AF_INET;
            o->sin_port = a->sin6_port;
            memcpy(&o->sin_addr, &a->sin6_addr.s6_addr[12], 4);
            return;
        }
        memcpy(out, a, sizeof *a);
        return;
    }
    memcpy(out, in, sizeof(struct sockaddr_in));
}

static bool same_ip(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return false;
    if (a->ss_family == AF_INET)
        return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
               ((const struct sockaddr_in *)b)->sin_addr.s_addr;
    return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
                  &((const struct sockaddr_in6 *)b)->sin6_addr, sizeof(struct in6_addr)) == 0;
}

static bool is_unspecified(const struct sockaddr_storage *a)
{
    if (a->ss_family == AF_INET)
        return ((const struct sockaddr_in *)a)->sin_addr.s_addr == htonl(INADDR_ANY);
    return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)a)->sin6_addr);
}

static bool is_loopback(const struct sockaddr_storage *a)
{
    if (a->ss_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)a)->sin_addr.s_addr) >> 24) == 127;
    return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)a)->sin6_addr);
}

static uint16_t port_of(const struct sockaddr_storage *a)
{
    return a->ss_family == AF_INET ? ((const struct sockaddr_in *)a)->sin_port
                                   : ((const struct sockaddr_in6 *)a)->sin6_port;
}

static bool is_local(const struct sockaddr_storage *a)
{
    if (is_loopback(a))
        return true;
    pthread_once(&local.once, load_local_addresses);
    for (int i = 0; i < local.count; i++)
        if (same_ip(a, &local.addr[i]))
            return true;
    return false;
}

bool upstream_reaches(const struct sockaddr *target_raw, const struct sockaddr_storage *listen_raw)
{
    struct sockaddr_storage t, l;
    canonical(target_raw, &t);
    canonical((const struct sockaddr *)listen_raw, &l);
    if (port_of(&t) != port_of(&l))
        return false;
    /* Connecting to 0.0.0.0 or :: reaches this host. */
    if (is_unspecified(&t))
        return true;
    if (is_unspecified(&l))
        return is_local(&t);
    return same_ip(&t, &l);
}

/* 508 for our own proxy port (a loop), 403 for the admin listener; 0 otherwise. */
static int check_self(const config *cfg, const struct sockaddr *addr)
{
    for (int i = 0; i < cfg->listen_count; i++)
        if (upstream_reaches(addr, &cfg->listen[i].addr))
            return 508;
    if (cfg->admin_enabled && upstream_reaches(addr, &cfg->admin.addr))
        return 403;
    return 0;
}

/* ---- resolve and connect ---- */

static void try_next(session *s);

static void on_connected(uv_connect_t *req, int status)
{
    upstream_op *op = req->data;
    session *s = op->s;
    op->connecting = false;
    if (op->cancelled || status == UV_ECANCELED || s->ending) {
        op_release(op);
        return;
    }
    if (status < 0) {
        op->connect_error = status;
        leg_abort(&s->origin);
        leg_after_close(&s->origin, try_next);
        op_release(op);
        return;
    }
    uv_tcp_nodelay(&s->origin.tcp, 1);
    finish(op, 0, NULL);
    op_release(op);
}

static void try_next(session *s)
{
    upstream_op *op = s->upstream;
    if (!op)
        return;
    while (op->next_addr) {
        struct addrinfo *a = op->next_addr;
        op->next_addr = a->ai_next;
        session_open_leg(s, &s->origin);
        transparent_mark_origin(s, a->ai_family);
        op->connect.data = op;
        int rc = uv_tcp_connect(&op->connect, &s->origin.tcp, a->ai_addr, on_connected);
        if (rc == 0) {
            op->connecting = true;
            op->outstanding++;
            session_ref(s);
            return;
        }
        op->connect_error = rc;
        leg_abort(&s->origin);
        leg_after_close(&s->origin, try_next);
        return;
    }
    char reason[400];
    snprintf(reason, sizeof reason, "cannot connect to %s:%u: %s", op->host, op->port,
             uv_strerror(op->connect_error ? op->connect_error : UV_ECONNREFUSED));
    finish(op, 502, reason);
}

static void resolved(upstream_op *op, int status, struct addrinfo *res)
{
    session *s = op->s;
    if (status < 0) {
        char reason[400];
        snprintf(reason, sizeof reason, "name %s does not resolve (%s)", op->host,
                 uv_strerror(status));
        finish(op, 502, reason);
        return;
    }
    op->addrs = op->next_addr = res;
    int self = 0;
    for (struct addrinfo *a = res; a && !self; a = a->ai_next)
        self = check_self(&s->w->shared->cfg, a->ai_addr);
    if (self == 508)
        finish(op, 508, "the request loops back to this proxy");
    else if (self == 403)
        finish(op, 403, "the admin listener is not reachable through the proxy");
    else
        leg_after_close(&s->origin, try_next);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    upstream_op *op = req->data;
    if (op->cancelled || op->s->ending) {
        if (res)
            uv_freeaddrinfo(res);
    } else {
        resolved(op, status, res);
    }
    op_release(op);
}

static void on_timeout(uv_timer_t *t)
{
    upstream_op *op = t->data;
    session *s = op->s;
    char reason[400];
    snprintf(reason, sizeof reason, "connecting to %s:%u timed out after %d s", op->host, op->port,
             s->w->shared->cfg.connect_timeout_s);
    op->next_addr = NULL;
    bool connecting = op->connecting;
    finish(op, 504, reason);
    if (connecting && !s->ending && s->origin.open && !s->origin.closing)
        leg_abort(&s->origin);
}

void upstream_connect(session *s, const char *host, uint16_t port, upstream_cb done)
{
    upstream_cancel(s);
    /* A previous origin connection ends first; the new one waits for its handle. Bytes
     * still queued to it belong to an exchange that is over: they are dropped. */
    if (s->origin.open && !s->origin.closing) {
        if (s->origin.queued)
            leg_abort(&s->origin);
        else if (!s->origin.finishing)
            leg_close_graceful(&s->origin);
    }
    upstream_op *op = calloc(1, sizeof *op);
    if (!op) {
        done(s, 502, "out of memory");
        return;
    }
    op->s = s;
    op->done = done;
    op->port = port;
    snprintf(op->host, sizeof op->host, "%s", host);
    s->upstream = op;
    uv_timer_init(&s->w->loop, &op->timer);
    op->timer.data = op;
    op->outstanding = 1;
    session_ref(s);
    uv_timer_start(&op->timer, on_timeout, (uint64_t)s->w->shared->cfg.connect_timeout_s * 1000, 0);

    char portstr[8];
    snprintf(portstr, sizeof portstr, "%u", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    /* An address literal needs no resolver: skip the thread pool round trip. */
    struct addrinfo numeric = hints, *res = NULL;
    numeric.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    if (getaddrinfo(host, portstr, &numeric, &res) == 0) {
        resolved(op, 0, res);
        return;
    }
    op->resolve.data = op;
    int rc = uv_getaddrinfo(&s->w->loop, &op->resolve, on_resolved, host, portstr, &hints);
    if (rc < 0) {
        finish(op, 502, "name resolution failed to start");
        return;
    }
    op->outstanding++;
    session_ref(s);
}
