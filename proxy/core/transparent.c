/* Transparent listeners (SPEC 4.2). A redirected connection has no CONNECT: its target is the
 * destination the client dialled, which the kernel keeps for us (SO_ORIGINAL_DST after
 * REDIRECT, the socket's own local address after TPROXY). From there it is a tunnel like any
 * other: checkpoint 1, the origin, detection. */
#include "transparent.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "diag.h"
#include "metrics.h"
#include "names.h"
#include "session.h"
#include "upstream.h"
#include "verdict.h"
#include "worker.h"

/* From <linux/netfilter_ipv4.h> and <linux/netfilter_ipv6/ip6_tables.h>, whose includes clash
 * with glibc's <netinet/in.h>. Both are the conntrack lookup of the connection's original
 * (pre-NAT) destination. */
#ifndef SO_ORIGINAL_DST
#define SO_ORIGINAL_DST 80
#endif
#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80
#endif

/* Decided once at start-up, before the workers run. */
static bool mark_usable = true;
/* The mark in force, for sockets opened where no configuration is at hand (revocation
 * fetches); 0 when there is none. Set once at start, before the workers run. */
static unsigned process_mark;

void transparent_prepare_listener(int fd, int family, const char *text, bool log)
{
    int one = 1;
    int rc = family == AF_INET6 ? setsockopt(fd, SOL_IPV6, IPV6_TRANSPARENT, &one, sizeof one)
                                : setsockopt(fd, SOL_IP, IP_TRANSPARENT, &one, sizeof one);
    if (rc != 0 && log)
        diag(LOG_WARN,
             "transparent listener %s: cannot set %s (%s; TPROXY needs CAP_NET_ADMIN): it "
             "takes REDIRECTed connections only",
             text, family == AF_INET6 ? "IPV6_TRANSPARENT" : "IP_TRANSPARENT", strerror(errno));
}

void transparent_probe_mark(const config *cfg)
{
    if (cfg->transparent_count == 0 || cfg->transparent_mark == 0)
        return;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    unsigned mark = cfg->transparent_mark;
    if (fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof mark) != 0) {
        mark_usable = false;
        diag(LOG_WARN,
             "transparent_mark 0x%x: cannot mark origin connections (%s; SO_MARK needs "
             "CAP_NET_ADMIN): the redirect rules must exempt handoff's traffic another way "
             "(e.g. meta skuid)",
             mark, strerror(errno));
    }
    if (fd >= 0)
        close(fd);
    if (mark_usable)
        process_mark = mark;
}

void transparent_mark_tcp(uv_tcp_t *tcp, int family)
{
    if (process_mark == 0)
        return;
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return;
    setsockopt(fd, SOL_SOCKET, SO_MARK, &process_mark, sizeof process_mark);
    if (uv_tcp_open(tcp, fd) != 0)
        close(fd);
}

void transparent_mark_socket(const config *cfg, uv_tcp_t *tcp, int family)
{
    if (cfg->transparent_count == 0 || cfg->transparent_mark == 0 || !mark_usable)
        return;
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return; /* the connect then fails (or succeeds) on its own socket, as before */
    unsigned mark = cfg->transparent_mark;
    setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof mark);
    if (uv_tcp_open(tcp, fd) != 0)
        close(fd);
}

void transparent_mark_origin(session *s, int family)
{
    transparent_mark_socket(&s->w->shared->cfg, &s->origin.tcp, family);
}

/* ---- addresses ---- */

static uint16_t port_of(const struct sockaddr_storage *a)
{
    return ntohs(a->ss_family == AF_INET ? ((const struct sockaddr_in *)a)->sin_port
                                         : ((const struct sockaddr_in6 *)a)->sin6_port);
}

/* v4-mapped IPv6 becomes IPv4, so one address has one spelling. */
static void canonical(const struct sockaddr_storage *in, struct sockaddr_storage *out)
{
    memset(out, 0, sizeof *out);
    if (!names_sockaddr_canonical((const struct sockaddr *)in, out))
        memcpy(out, in, sizeof *out);
}

static void ip_text(const struct sockaddr_storage *a, char *out, size_t len)
{
    if (a->ss_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)a)->sin_addr, out, (socklen_t)len);
    else
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)a)->sin6_addr, out, (socklen_t)len);
}

static bool is_own_listener(const config *cfg, const struct sockaddr_storage *dst)
{
    for (int i = 0; i < cfg->listen_count; i++)
        if (upstream_reaches((const struct sockaddr *)dst, &cfg->listen[i].addr))
            return true;
    for (int i = 0; i < cfg->transparent_count; i++)
        if (upstream_reaches((const struct sockaddr *)dst, &cfg->transparent[i].addr))
            return true;
    return cfg->admin_enabled && upstream_reaches((const struct sockaddr *)dst, &cfg->admin.addr);
}

/* The destination the client dialled: conntrack's pre-NAT address after REDIRECT; without a
 * NAT entry (TPROXY, or no redirection at all) the socket's own local address. */
static int original_destination(session *s, struct sockaddr_storage *out)
{
    uv_os_fd_t fd;
    if (uv_fileno((const uv_handle_t *)&s->client.tcp, &fd) != 0)
        return -EBADF;
    struct sockaddr_storage local, nat;
    socklen_t len = sizeof local;
    if (getsockname(fd, (struct sockaddr *)&local, &len) != 0)
        return -errno;
    len = sizeof nat;
    int rc = local.ss_family == AF_INET6
                 ? getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &nat, &len)
                 : getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &nat, &len);
    canonical(rc == 0 ? &nat : &local, out);
    return 0;
}

/* ---- the entry of a redirected connection ---- */

static void refuse(session *s, const char *result, const char *reason)
{
    metrics_transparent(result);
    txn_fail(s, "%s", reason);
    session_end(s);
}

void transparent_accept(session *s, const config_addr *listener)
{
    const config *cfg = &s->w->shared->cfg;
    s->transparent = true;
    struct sockaddr_storage dst;
    int rc = original_destination(s, &dst);
    if (rc != 0) {
        txn_begin(s, false, NULL, NULL);
        char reason[200];
        snprintf(reason, sizeof reason, "cannot read the original destination: %s",
                 uv_strerror(rc));
        refuse(s, "error", reason);
        return;
    }
    ip_text(&dst, s->target_host, sizeof s->target_host);
    s->target_port = port_of(&dst);
    char target[300];
    snprintf(target, sizeof target, dst.ss_family == AF_INET6 ? "[%s]:%u" : "%s:%u", s->target_host,
             s->target_port);
    txn_begin(s, false, NULL, target);

    char reason[400];
    if (upstream_reaches((const struct sockaddr *)&dst, &listener->addr)) {
        snprintf(reason, sizeof reason,
                 "not redirected: the connection was made to the transparent listener %s itself",
                 listener->text);
        refuse(s, "not-redirected", reason);
        return;
    }
    if (is_own_listener(cfg, &dst)) {
        snprintf(reason, sizeof reason,
                 "loop: the original destination %s is one of handoff's own listeners", target);
        refuse(s, "loop", reason);
        return;
    }
    if (atomic_load(&s->w->shared->connections) > cfg->max_connections) {
        snprintf(reason, sizeof reason, "the proxy has reached max_connections (%d)",
                 cfg->max_connections);
        refuse(s, "refused", reason);
        return;
    }
    if (!session_policy(s, POLICY_CP_REQUEST, s->target_host, NULL, NULL)) {
        metrics_transparent("denied");
        s->t.status = 403;
        txn_note(s, "denied by %s:%d", s->t.rule.file ? s->t.rule.file : "default", s->t.rule.line);
        session_end(s);
        return;
    }
    metrics_transparent("accepted");
    session_enter(s, STAGE_CONNECT, NULL, 0);
}

/* ---- Host headers of plain HTTP ---- */

typedef struct {
    uv_getaddrinfo_t req;
    session *s;
    void *st; /* the stage state that asked: the answer is dropped if the stage changed */
    transparent_host_cb done;
} host_check;

/* Records where host went (its first address when not the destination) and notes it. */
static void judge(session *s, const struct addrinfo *res, int status)
{
    char elsewhere[INET6_ADDRSTRLEN + 32] = "";
    bool match = false;
    for (const struct addrinfo *a = res; a && !match; a = a->ai_next) {
        struct sockaddr_storage raw, c;
        memset(&raw, 0, sizeof raw);
        memcpy(&raw, a->ai_addr, a->ai_addrlen);
        canonical(&raw, &c);
        char text[INET6_ADDRSTRLEN];
        ip_text(&c, text, sizeof text);
        match = strcmp(text, s->target_host) == 0;
        if (!elsewhere[0])
            snprintf(elsewhere, sizeof elsewhere, "%s", text);
    }
    if (match)
        elsewhere[0] = '\0';
    else if (status != 0 || !elsewhere[0])
        snprintf(elsewhere, sizeof elsewhere, "nothing (%s)",
                 status ? gai_strerror(status) : "no address");
    snprintf(s->host_elsewhere, sizeof s->host_elsewhere, "%s", elsewhere);
}

static void note(session *s)
{
    if (!s->host_elsewhere[0])
        return;
    bool v6 = strchr(s->target_host, ':') != NULL;
    txn_note(s,
             v6 ? "Host %s resolves to %s, not to the original destination: sent to [%s]:%u"
                : "Host %s resolves to %s, not to the original destination: sent to %s:%u",
             s->host_checked, s->host_elsewhere, s->target_host, s->target_port);
    if (!s->t.action)
        s->t.action = "allowed"; /* a remark, not a failure */
}

static void on_host_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    host_check *c = req->data;
    session *s = c->s;
    if (!s->ending && s->st == c->st) {
        judge(s, res, status == UV_ECANCELED ? EAI_AGAIN : (status ? EAI_NONAME : 0));
        note(s);
        c->done(s);
    }
    if (res)
        uv_freeaddrinfo(res);
    free(c);
    session_unref(s);
}

void transparent_check_host(session *s, const char *host, transparent_host_cb done)
{
    if (!s->transparent || strcmp(host, s->target_host) == 0) {
        done(s);
        return;
    }
    if (strcmp(host, s->host_checked) == 0) {
        note(s);
        done(s);
        return;
    }
    snprintf(s->host_checked, sizeof s->host_checked, "%s", host);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo numeric = hints, *res = NULL;
    numeric.ai_flags = AI_NUMERICHOST;
    if (getaddrinfo(host, NULL, &numeric, &res) == 0) {
        judge(s, res, 0);
        freeaddrinfo(res);
        note(s);
        done(s);
        return;
    }
    host_check *c = calloc(1, sizeof *c);
    if (!c) {
        session_abort(s, "out of memory");
        return;
    }
    c->s = s;
    c->st = s->st;
    c->done = done;
    c->req.data = c;
    session_ref(s);
    if (uv_getaddrinfo(&s->w->loop, &c->req, on_host_resolved, host, NULL, &hints) != 0) {
        free(c);
        session_unref(s);
        judge(s, NULL, EAI_FAIL);
        note(s);
        done(s);
    }
}
