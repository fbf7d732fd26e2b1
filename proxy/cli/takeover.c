/* The control socket's protocol is three messages on one unix stream connection:
 *   new -> old  "TAKEOVER\n"
 *   old -> new  "LISTENERS <kinds>\n" with one descriptor per kind (SCM_RIGHTS): L for each
 *               [proxy] listen address (worker 0's socket), A for the admin listener
 *   new -> old  "GO\n" once the new workers watch those sockets; the old one then drains.
 * A new process that fails before GO just closes: the old one goes on as before. */
#include "takeover.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "diag.h"
#include "names.h"

#define MAX_PASSED    (CONFIG_MAX_LISTEN + 1)
#define IO_TIMEOUT_MS 5000
/* From passing the sockets to the successor's GO: its workers start in that time. */
#define GO_TIMEOUT_MS 30000

static struct {
    uv_loop_t *loop;
    shared_state *sh;
    const worker *workers;
    void (*handed_over)(void *data);
    void *data;
    int listen_fd; /* the control socket */
    uv_poll_t listen_poll;
    bool serving;
    int peer_fd; /* a takeover in progress, waiting for GO */
    uv_poll_t peer_poll;
    bool peer_polling;
    uv_timer_t peer_timer; /* the successor's GO must come within GO_TIMEOUT_MS */
    bool peer_timer_open;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    ino_t ino;    /* our socket file, to leave a successor's alone */
    int fetch_fd; /* new side: the connection to the old instance */
} ctl = {.listen_fd = -1, .peer_fd = -1, .fetch_fd = -1};

static void set_timeouts(int fd)
{
    struct timeval tv = {.tv_sec = IO_TIMEOUT_MS / 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

static pid_t peer_pid(int fd)
{
    struct ucred cred;
    socklen_t len = sizeof cred;
    return getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 ? cred.pid : -1;
}

static void peer_closed(uv_handle_t *h)
{
    (void)h;
    close(ctl.peer_fd);
    ctl.peer_fd = -1;
    ctl.peer_polling = false;
}

static void end_peer(void)
{
    if (ctl.peer_timer_open) {
        uv_timer_stop(&ctl.peer_timer);
        uv_close((uv_handle_t *)&ctl.peer_timer, NULL);
        ctl.peer_timer_open = false;
    }
    if (ctl.peer_polling && !uv_is_closing((uv_handle_t *)&ctl.peer_poll))
        uv_close((uv_handle_t *)&ctl.peer_poll, peer_closed);
    else if (!ctl.peer_polling && ctl.peer_fd >= 0) {
        close(ctl.peer_fd);
        ctl.peer_fd = -1;
    }
}

static void on_peer_readable(uv_poll_t *p, int status, int events)
{
    (void)p;
    (void)events;
    char buf[16];
    ssize_t n = status == 0 ? recv(ctl.peer_fd, buf, sizeof buf - 1, MSG_DONTWAIT) : -1;
    if (n < 0 && (errno == EAGAIN || errno == EINTR) && status == 0)
        return;
    pid_t pid = peer_pid(ctl.peer_fd);
    if (n == 3 && memcmp(buf, "GO\n", 3) == 0) {
        diag(LOG_INFO, "takeover: process %d now accepts on our sockets; draining", (int)pid);
        end_peer();
        ctl.handed_over(ctl.data);
        return;
    }
    diag(LOG_WARN, "takeover by process %d abandoned; going on as before", (int)pid);
    end_peer();
}

static void on_peer_silent(uv_timer_t *t)
{
    (void)t;
    diag(LOG_WARN, "takeover by process %d abandoned: no GO within %d ms; going on as before",
         (int)peer_pid(ctl.peer_fd), GO_TIMEOUT_MS);
    end_peer();
}

/* The new process's request: answer with our sockets. Short blocking I/O on the main loop,
 * bounded by IO_TIMEOUT_MS: the peer is a local process that wrote first. */
static void answer(int fd)
{
    set_timeouts(fd);
    char req[16];
    ssize_t n = recv(fd, req, sizeof req - 1, 0);
    if (n != 9 || memcmp(req, "TAKEOVER\n", 9) != 0) {
        diag(LOG_WARN, "control socket: unexpected request; closed");
        close(fd);
        return;
    }
    const config *cfg = &ctl.sh->cfg;
    int fds[MAX_PASSED], count = 0;
    char text[64] = "LISTENERS ";
    for (int i = 0; i < cfg->listen_count && ctl.workers[0].listen_fd[i] >= 0; i++) {
        fds[count++] = ctl.workers[0].listen_fd[i];
        strcat(text, "L");
    }
    if (ctl.sh->admin_fd >= 0) {
        fds[count++] = ctl.sh->admin_fd;
        strcat(text, "A");
    }
    strcat(text, "\n");
    char cbuf[CMSG_SPACE(sizeof(int) * MAX_PASSED)];
    memset(cbuf, 0, sizeof cbuf);
    struct iovec iov = {.iov_base = text, .iov_len = strlen(text)};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    if (count) {
        msg.msg_control = cbuf;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)count);
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)count);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)count);
    }
    if (sendmsg(fd, &msg, MSG_NOSIGNAL) != (ssize_t)iov.iov_len) {
        diag(LOG_WARN, "control socket: cannot pass the listeners: %s", strerror(errno));
        close(fd);
        return;
    }
    diag(LOG_INFO, "takeover: listeners passed to process %d", (int)peer_pid(fd));
    ctl.peer_fd = fd;
    uv_poll_init(ctl.loop, &ctl.peer_poll, fd);
    ctl.peer_polling = true;
    uv_poll_start(&ctl.peer_poll, UV_READABLE | UV_DISCONNECT, on_peer_readable);
    /* A successor that took the sockets and hangs must not block every later takeover. */
    uv_timer_init(ctl.loop, &ctl.peer_timer);
    ctl.peer_timer_open = true;
    uv_timer_start(&ctl.peer_timer, on_peer_silent, GO_TIMEOUT_MS, 0);
}

static void on_control(uv_poll_t *p, int status, int events)
{
    (void)p;
    (void)events;
    if (status < 0)
        return;
    int fd = accept4(ctl.listen_fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0)
        return;
    if (ctl.peer_fd >= 0 || atomic_load(&ctl.sh->stopping)) {
        close(fd); /* one takeover at a time, and never of a stopping instance */
        return;
    }
    answer(fd);
}

static int unix_address(const char *path, struct sockaddr_un *sun, char *err, size_t errlen)
{
    memset(sun, 0, sizeof *sun);
    sun->sun_family = AF_UNIX;
    if (strlen(path) >= sizeof sun->sun_path) {
        snprintf(err, errlen, "[admin] control_socket: path too long: %s", path);
        return -1;
    }
    memcpy(sun->sun_path, path, strlen(path));
    return 0;
}

int takeover_serve(uv_loop_t *loop, shared_state *sh, const worker *workers, bool replace,
                   void (*handed_over)(void *data), void *data, char *err, size_t errlen)
{
    const char *path = sh->cfg.control_socket;
    if (!path[0])
        return 0;
    struct sockaddr_un sun;
    if (unix_address(path, &sun, err, errlen) != 0)
        return -1;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        snprintf(err, errlen, "control socket: %s", strerror(errno));
        return -1;
    }
    /* A file left by an instance that is gone is replaced; a live one is not stolen. */
    if (!replace && connect(fd, (struct sockaddr *)&sun, sizeof sun) == 0) {
        close(fd);
        snprintf(err, errlen,
                 "control socket %s belongs to a running instance (use --takeover to replace "
                 "it)",
                 path);
        return -1;
    }
    close(fd);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        snprintf(err, errlen, "control socket: %s", strerror(errno));
        return -1;
    }
    unlink(path);
    mode_t old_mask = umask(0177); /* mode 0600 from the start: no window for others */
    int rc = bind(fd, (struct sockaddr *)&sun, sizeof sun);
    umask(old_mask);
    struct stat st;
    if (rc != 0 || listen(fd, 4) != 0 || stat(path, &st) != 0) {
        snprintf(err, errlen, "control socket %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    ctl.loop = loop;
    ctl.sh = sh;
    ctl.workers = workers;
    ctl.handed_over = handed_over;
    ctl.data = data;
    ctl.listen_fd = fd;
    ctl.ino = st.st_ino;
    snprintf(ctl.path, sizeof ctl.path, "%s", path);
    uv_poll_init(loop, &ctl.listen_poll, fd);
    uv_poll_start(&ctl.listen_poll, UV_READABLE, on_control);
    ctl.serving = true;
    return 0;
}

static void listen_closed(uv_handle_t *h)
{
    (void)h;
    close(ctl.listen_fd);
    ctl.listen_fd = -1;
}

void takeover_serve_stop(void)
{
    if (!ctl.serving)
        return;
    ctl.serving = false;
    struct stat st;
    if (stat(ctl.path, &st) == 0 && st.st_ino == ctl.ino)
        unlink(ctl.path);
    uv_close((uv_handle_t *)&ctl.listen_poll, listen_closed);
    end_peer();
}

/* ---- the new process ---- */

static int receive_listeners(int fd, char *kinds, size_t kinds_len, int *fds, int *count)
{
    char text[64];
    char cbuf[CMSG_SPACE(sizeof(int) * MAX_PASSED)];
    struct iovec iov = {.iov_base = text, .iov_len = sizeof text - 1};
    struct msghdr msg = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
    ssize_t n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
    *count = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); n > 0 && c; c = CMSG_NXTHDR(&msg, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
            int room = MAX_PASSED - *count;
            int *got = (int *)(void *)CMSG_DATA(c);
            /* More than we asked for: take what fits, close the rest, and refuse below. */
            for (int i = room < 0 ? 0 : room; i < k; i++)
                close(got[i]);
            if (k > room) {
                k = room < 0 ? 0 : room;
                msg.msg_flags |= MSG_CTRUNC;
            }
            memcpy(fds + *count, got, sizeof(int) * (size_t)k);
            *count += k;
        }
    if (n <= 0 || (msg.msg_flags & MSG_CTRUNC))
        return -1;
    text[n] = '\0';
    if (strncmp(text, "LISTENERS ", 10) != 0 || text[n - 1] != '\n')
        return -1;
    snprintf(kinds, kinds_len, "%.*s", (int)(n - 11), text + 10);
    return (int)strlen(kinds) == *count ? 0 : -1;
}

static bool bound_to(int fd, const struct sockaddr_storage *want)
{
    struct sockaddr_storage have;
    socklen_t len = sizeof have;
    return getsockname(fd, (struct sockaddr *)&have, &len) == 0 &&
           names_sockaddr_same_endpoint((const struct sockaddr *)&have,
                                        (const struct sockaddr *)want);
}

int takeover_fetch(shared_state *sh, char *err, size_t errlen)
{
    const config *cfg = &sh->cfg;
    struct sockaddr_un sun;
    if (!cfg->control_socket[0]) {
        snprintf(err, errlen, "--takeover needs [admin] control_socket");
        return -1;
    }
    if (unix_address(cfg->control_socket, &sun, err, errlen) != 0)
        return -1;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof sun) != 0) {
        snprintf(err, errlen, "cannot reach the running instance on %s: %s", cfg->control_socket,
                 strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    set_timeouts(fd);
    char kinds[MAX_PASSED + 1];
    int fds[MAX_PASSED], count = 0;
    if (send(fd, "TAKEOVER\n", 9, MSG_NOSIGNAL) != 9 ||
        receive_listeners(fd, kinds, sizeof kinds, fds, &count) != 0) {
        snprintf(err, errlen, "the running instance on %s did not pass its listeners",
                 cfg->control_socket);
        for (int i = 0; i < count; i++)
            close(fds[i]);
        close(fd);
        return -1;
    }
    for (int i = 0; i < count; i++) {
        bool used = false;
        for (int j = 0; kinds[i] == 'L' && j < cfg->listen_count && !used; j++)
            if (sh->inherited_fd[j] < 0 && bound_to(fds[i], &cfg->listen[j].addr)) {
                sh->inherited_fd[j] = fds[i];
                used = true;
            }
        if (kinds[i] == 'A' && cfg->admin_enabled && bound_to(fds[i], &cfg->admin.addr)) {
            sh->inherited_admin_fd = fds[i];
            used = true;
        }
        if (!used)
            close(fds[i]); /* an address the new configuration no longer has */
    }
    ctl.fetch_fd = fd;
    return 0;
}

void takeover_commit(void)
{
    if (ctl.fetch_fd < 0)
        return;
    if (send(ctl.fetch_fd, "GO\n", 3, MSG_NOSIGNAL) != 3)
        diag(LOG_ERROR, "takeover: cannot tell the old instance to drain: %s", strerror(errno));
    close(ctl.fetch_fd);
    ctl.fetch_fd = -1;
}
