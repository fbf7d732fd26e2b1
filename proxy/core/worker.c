/* Workers: each its own loop and its own SO_REUSEPORT listeners on the same addresses. */
#include "worker.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cred_pool.h"
#include "diag.h"
#include "groups.h"
#include "session.h"
#include "session_json.h"
#include "transparent.h"

policy *shared_policy_acquire(shared_state *sh)
{
    pthread_mutex_lock(&sh->policy_lock);
    policy *p = sh->current_policy ? policy_retain(sh->current_policy) : NULL;
    pthread_mutex_unlock(&sh->policy_lock);
    return p;
}

void shared_policy_publish(shared_state *sh, policy *p)
{
    pthread_mutex_lock(&sh->policy_lock);
    policy *old = sh->current_policy;
    sh->current_policy = p;
    pthread_mutex_unlock(&sh->policy_lock);
    if (old)
        policy_release(old);
}

policy_groups *shared_groups_acquire(shared_state *sh)
{
    pthread_mutex_lock(&sh->policy_lock);
    policy_groups *g = sh->groups ? policy_groups_retain(sh->groups) : NULL;
    pthread_mutex_unlock(&sh->policy_lock);
    return g;
}

void shared_groups_publish(shared_state *sh, policy_groups *g)
{
    pthread_mutex_lock(&sh->policy_lock);
    policy_groups *old = sh->groups;
    sh->groups = g;
    pthread_mutex_unlock(&sh->policy_lock);
    if (old)
        policy_groups_release(old);
}

static void format_peer(const struct sockaddr_storage *ss, char *out, size_t len)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const void *)ss;
        uv_ip4_name(a, ip, sizeof ip);
        snprintf(out, len, "%s:%u", ip, ntohs(a->sin_port));
    } else {
        const struct sockaddr_in6 *a = (const void *)ss;
        uv_ip6_name(a, ip, sizeof ip);
        snprintf(out, len, "[%s]:%u", ip, ntohs(a->sin6_port));
    }
}

/* Out of descriptors (or memory): stop accepting for a moment rather than spin or drop the
 * listener. Connections wait in the kernel's backlog meanwhile. */
#define ACCEPT_PAUSE_MS 250

static void listen_handles_closed(uv_handle_t *h)
{
    (void)h;
}

/* Descriptors kept free for DNS, the admin listener, log files and origin connections. */
#define FD_RESERVE 24

void worker_budget_descriptors(shared_state *sh)
{
    struct rlimit rl;
    int open_now = 0;
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        while (readdir(d))
            open_now++;
        closedir(d);
    }
    int limit = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)INT32_MAX
                    ? (int)rl.rlim_cur
                    : INT32_MAX;
    sh->fd_budget = limit - open_now - FD_RESERVE;
    if (sh->fd_budget < 4)
        sh->fd_budget = 4;
}

bool worker_descriptors_available(shared_state *sh, int n)
{
    return sh->fd_budget <= 0 || atomic_load(&sh->fds_in_use) + n <= sh->fd_budget;
}

static void resume_accepting(uv_timer_t *t);

static void pause_accepting(worker *w, int err)
{
    if (w->accept_paused)
        return;
    w->accept_paused = true;
    uint64_t now = uv_now(&w->loop);
    if (now - w->accept_pause_logged_ms >= 1000) {
        w->accept_pause_logged_ms = now;
        diag(LOG_WARN, "worker %d: cannot accept (%s): pausing new connections for %d ms", w->index,
             uv_strerror(err), ACCEPT_PAUSE_MS);
    }
    for (int i = 0; i < w->listener_count; i++)
        if (!uv_is_closing((uv_handle_t *)&w->listeners[i]))
            uv_close((uv_handle_t *)&w->listeners[i], listen_handles_closed);
    uv_timer_start(&w->accept_timer, resume_accepting, ACCEPT_PAUSE_MS, 0);
}

static void on_connection(uv_stream_t *server, int status);

/* After a burst, freed session memory stays in the allocator's free lists (glibc keeps it
 * per arena); give it back once the worker holds less than half of what it had. */
#define TRIM_INTERVAL_MS 5000
#define TRIM_MIN_PEAK    256

static void on_trim_timer(uv_timer_t *t)
{
    worker *w = t->data;
    if (w->peak_sessions >= TRIM_MIN_PEAK && w->session_count * 2 < w->peak_sessions) {
        malloc_trim(0);
        w->peak_sessions = w->session_count;
    }
}

static int attach_listener(worker *w, int i)
{
    int fd = dup(w->listen_fd[i]);
    if (fd < 0)
        return -errno;
    uv_tcp_init(&w->loop, &w->listeners[i]);
    int rc = uv_tcp_open(&w->listeners[i], fd);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&w->listeners[i], 1024, on_connection);
    w->listeners[i].data = w;
    if (rc != 0)
        uv_close((uv_handle_t *)&w->listeners[i], listen_handles_closed);
    return rc;
}

static void resume_accepting(uv_timer_t *t)
{
    worker *w = t->data;
    if (w->stop_requested)
        return;
    /* A client needs its own descriptor and, soon, one towards its origin. */
    if (!worker_descriptors_available(w->shared, 2)) {
        uv_timer_start(&w->accept_timer, resume_accepting, ACCEPT_PAUSE_MS, 0);
        return;
    }
    for (int i = 0; i < w->listener_count; i++) {
        int rc = attach_listener(w, i);
        if (rc != 0) {
            w->accept_paused = false;
            pause_accepting(w, rc);
            return;
        }
    }
    w->accept_paused = false;
}

static void begin_session(worker *w, session *s, int listener);

static void on_connection(uv_stream_t *server, int status)
{
    worker *w = server->data;
    if (status < 0) {
        pause_accepting(w, status);
        return;
    }
    session *s = session_new(w);
    if (!s) {
        pause_accepting(w, UV_ENOMEM);
        return;
    }
    if (w->session_count > w->peak_sessions)
        w->peak_sessions = w->session_count;
    session_open_leg(s, &s->client);
    if (uv_accept(server, (uv_stream_t *)&s->client.tcp) != 0) {
        session_abort(s, NULL);
        return;
    }
    begin_session(w, s, (int)((uv_tcp_t *)server - w->listeners));
}

static void begin_session(worker *w, session *s, int listener)
{
    uv_tcp_nodelay(&s->client.tcp, 1);
    int len = sizeof s->client_addr;
    uv_tcp_getpeername(&s->client.tcp, (struct sockaddr *)&s->client_addr, &len);
    format_peer(&s->client_addr, s->client_text, sizeof s->client_text);
    /* Stop accepting before the descriptors run out: clients then wait in the backlog
     * instead of being accepted and dropped. */
    if (!worker_descriptors_available(w->shared, 4))
        pause_accepting(w, UV_EMFILE);
    const config *cfg = &w->shared->cfg;
    if (listener >= cfg->listen_count) {
        transparent_accept(s, &cfg->transparent[listener - cfg->listen_count]);
        return;
    }
    session_enter(s, cfg->proxy_protocol ? STAGE_PROXY_HEADER : STAGE_HEAD, NULL, 0);
}

/* SO_REUSEPORT would let a second instance share the port silently: bind once without it
 * first, so a port already taken is reported as such. */
static int probe_free(const struct sockaddr_storage *addr, socklen_t alen)
{
    int fd = socket(addr->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (addr->ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    int rc = bind(fd, (const struct sockaddr *)addr, alen) == 0 ? 0 : -errno;
    close(fd);
    return rc;
}

/* The listening socket stays ours; libuv watches a duplicate, so accepting can pause by
 * closing the duplicate without losing the socket or its backlog. */
static int open_listener(worker *w, const config_addr *ca, bool transparent)
{
    const struct sockaddr_storage *addr = &ca->addr;
    socklen_t alen =
        addr->ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
    if (w->index == 0) {
        int rc = probe_free(addr, alen);
        if (rc < 0)
            return rc;
    }
    int fd = socket(addr->ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    /* Every worker binds the same address; the kernel spreads new connections. */
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (addr->ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (transparent)
        transparent_prepare_listener(fd, addr->ss_family, ca->text, w->index == 0);
    if (bind(fd, (const struct sockaddr *)addr, alen) != 0 || listen(fd, 1024) != 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    return fd;
}

int worker_listen(worker *w, char *err, size_t errlen)
{
    const config *cfg = &w->shared->cfg;
    if (w->index == 0)
        transparent_probe_mark(cfg);
    for (int i = 0; i < cfg->listen_count + cfg->transparent_count; i++) {
        bool transparent = i >= cfg->listen_count;
        const config_addr *ca =
            transparent ? &cfg->transparent[i - cfg->listen_count] : &cfg->listen[i];
        /* A takeover hands over the predecessor's sockets for the proxy listeners. */
        int inherited = transparent ? -1 : w->shared->inherited_fd[i];
        int rc = inherited >= 0 ? fcntl(inherited, F_DUPFD_CLOEXEC, 0)
                                : open_listener(w, ca, transparent);
        if (inherited >= 0 && rc < 0)
            rc = -errno;
        if (rc >= 0) {
            w->listen_fd[i] = rc;
            w->listener_count = i + 1;
            rc = attach_listener(w, i);
        }
        if (rc < 0) {
            snprintf(err, errlen, "cannot listen on %s: %s", ca->text, uv_strerror(rc));
            return rc;
        }
    }
    return 0;
}

/* Closing a listener resets the connections still in its backlog, which a load balancer has
 * already handed a client's bytes to: take them in as sessions that drain like the others. */
static void accept_backlog(worker *w, int fd, int listener)
{
    for (;;) {
        int c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (c < 0)
            return;
        session *s = session_new(w);
        if (!s) {
            close(c);
            return;
        }
        session_open_leg(s, &s->client);
        if (uv_tcp_open(&s->client.tcp, c) != 0) {
            close(c);
            session_abort(s, NULL);
            continue;
        }
        begin_session(w, s, listener);
    }
}

static void on_stop_check(uv_timer_t *t)
{
    worker *w = t->data;
    uint64_t waited = uv_now(&w->loop) - w->stop_started_ms;
    /* Idle keep-alive connections have nothing to finish. */
    for (session *s = w->sessions, *next; s; s = next) {
        next = s->next;
        if (s->idle)
            session_end(s);
    }
    uint64_t grace_ms = (uint64_t)w->shared->cfg.drain_timeout_s * 1000;
    if (w->session_count == 0 || waited >= grace_ms) {
        for (session *s = w->sessions, *next; s; s = next) {
            next = s->next;
            session_abort(s, "the proxy stopped before the connection ended");
        }
        if (w->session_count > 0)
            return; /* their handles are closing: the loop ends once they have */
        uv_timer_stop(t);
        uv_close((uv_handle_t *)t, NULL);
        uv_close((uv_handle_t *)&w->wakeup, NULL);
        if (w->cred) {
            cred_pool_detach(w->cred); /* no check is outstanding: every session has ended */
            w->cred = NULL;
        }
        if (w->admin_close)
            w->admin_close(w);
    }
}

static void on_wakeup(uv_async_t *a)
{
    worker *w = a->data;
    uint64_t wanted = atomic_load(&w->shared->snapshot_wanted);
    pthread_mutex_lock(&w->snapshot_lock);
    uint64_t have = w->snapshot_gen;
    pthread_mutex_unlock(&w->snapshot_lock);
    if (wanted > have) {
        char *json = session_json_worker(w);
        pthread_mutex_lock(&w->snapshot_lock);
        free(w->snapshot_json);
        w->snapshot_json = json;
        w->snapshot_gen = wanted;
        pthread_mutex_unlock(&w->snapshot_lock);
    }
    if (!atomic_load(&w->shared->stopping) || w->stop_requested)
        return;
    w->stop_requested = true;
    w->stop_started_ms = uv_now(&w->loop);
    uv_timer_stop(&w->accept_timer);
    /* A successor serves the admin port on the same socket now: health checks go to it. */
    if (atomic_load(&w->shared->handed_over) && w->admin_close)
        w->admin_close(w);
    for (int i = 0; i < w->listener_count; i++) {
        if (!w->accept_paused && !uv_is_closing((uv_handle_t *)&w->listeners[i]))
            uv_close((uv_handle_t *)&w->listeners[i], NULL);
        accept_backlog(w, w->listen_fd[i], i);
        close(w->listen_fd[i]);
        w->listen_fd[i] = -1;
    }
    uv_close((uv_handle_t *)&w->accept_timer, NULL);
    uv_close((uv_handle_t *)&w->trim_timer, NULL);
    uv_timer_init(&w->loop, &w->stop_timer);
    w->stop_timer.data = w;
    uv_timer_start(&w->stop_timer, on_stop_check, 0, 100);
}

void *worker_run(void *arg)
{
    worker *w = arg;
    if (w->shared->cred_pool)
        w->cred = cred_pool_attach(w->shared->cred_pool, &w->loop);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    return NULL;
}

int worker_init(worker *w, shared_state *sh, int index)
{
    memset(w, 0, sizeof *w);
    w->index = index;
    w->shared = sh;
    int rc = uv_loop_init(&w->loop);
    if (rc)
        return rc;
    uv_async_init(&w->loop, &w->wakeup, on_wakeup);
    uv_timer_init(&w->loop, &w->accept_timer);
    w->accept_timer.data = w;
    uv_timer_init(&w->loop, &w->trim_timer);
    w->trim_timer.data = w;
    uv_timer_start(&w->trim_timer, on_trim_timer, TRIM_INTERVAL_MS, TRIM_INTERVAL_MS);
    uv_unref((uv_handle_t *)&w->trim_timer); /* never what keeps a stopping loop alive */
    w->wakeup.data = w;
    pthread_mutex_init(&w->snapshot_lock, NULL);
    return 0;
}

void worker_request_snapshot(worker *w)
{
    uv_async_send(&w->wakeup);
}

void worker_request_stop(worker *w)
{
    uv_async_send(&w->wakeup);
}
