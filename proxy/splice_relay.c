/* The blind tunnel's fast path on Linux: bytes move socket -> pipe -> socket with splice(2),
 * never copied through user space. Taken only for a plain tunnel (no TLS, no framing) whose
 * write queues are empty; everything else uses relay.c. Pipes are made on a direction's first
 * bytes, so an idle tunnel costs no descriptors. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "leg.h"
#include "session_internal.h"
#include "worker.h"

#define SPLICE_PIPE_BYTES (1 << 20)

typedef struct {
    int pipe[2]; /* -1 until the first bytes */
    size_t in_pipe;
    bool eof;  /* the source sent FIN */
    bool shut; /* FIN passed on */
} splice_dir;

struct splice_state {
    uv_poll_t poll[2]; /* 0: client fd, 1: origin fd */
    int fd[2];
    splice_dir dir[2]; /* 0: client -> origin, 1: origin -> client */
    bool failed;
};

static void on_poll(uv_poll_t *p, int status, int events);

static void update(session *s)
{
    struct splice_state *st = s->splice;
    for (int side = 0; side < 2; side++) {
        splice_dir *out = &st->dir[side];    /* what this side's fd produces */
        splice_dir *in = &st->dir[1 - side]; /* what is written to this side's fd */
        int mask = 0;
        if (!out->eof && out->in_pipe < SPLICE_PIPE_BYTES)
            mask |= UV_READABLE;
        if (in->in_pipe > 0)
            mask |= UV_WRITABLE;
        if (mask)
            uv_poll_start(&st->poll[side], mask, on_poll);
        else
            uv_poll_stop(&st->poll[side]);
    }
}

static void finish_if_done(session *s)
{
    struct splice_state *st = s->splice;
    if (st->dir[0].shut && st->dir[1].shut) {
        s->client.eof = s->origin.eof = true;
        session_log_connection(s);
        session_close(s);
    }
}

static void fail(session *s, int err, bool client_side)
{
    snprintf(s->error, sizeof s->error, "%s: %s", client_side ? "client" : "origin", strerror(err));
    session_log_connection(s);
    session_close(s);
}

/* Moves what the pipe holds to the destination; passes FIN on once it is empty. */
static int drain(session *s, int d)
{
    struct splice_state *st = s->splice;
    splice_dir *dir = &st->dir[d];
    int to = st->fd[1 - d];
    while (dir->in_pipe > 0) {
        ssize_t n =
            splice(dir->pipe[0], NULL, to, NULL, dir->in_pipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n > 0) {
            dir->in_pipe -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EAGAIN)
            return 0;
        return n < 0 ? errno : EPIPE;
    }
    if (dir->eof && !dir->shut) {
        shutdown(to, SHUT_WR);
        dir->shut = true;
    }
    return 0;
}

static int fill(session *s, int d)
{
    struct splice_state *st = s->splice;
    splice_dir *dir = &st->dir[d];
    leg *from = d == 0 ? &s->client : &s->origin;
    if (dir->pipe[0] < 0) {
        if (pipe2(dir->pipe, O_NONBLOCK | O_CLOEXEC) != 0)
            return errno;
        fcntl(dir->pipe[1], F_SETPIPE_SZ, SPLICE_PIPE_BYTES);
    }
    while (dir->in_pipe < SPLICE_PIPE_BYTES) {
        ssize_t n = splice(st->fd[d], NULL, dir->pipe[1], NULL, SPLICE_PIPE_BYTES - dir->in_pipe,
                           SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n > 0) {
            dir->in_pipe += (size_t)n;
            from->bytes_in += (uint64_t)n;
            s->last_activity_ms = uv_now(&s->w->loop);
            continue;
        }
        if (n == 0) {
            dir->eof = true;
            break;
        }
        if (errno == EAGAIN)
            break;
        return errno;
    }
    return drain(s, d);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    session *s = p->data;
    struct splice_state *st = s->splice;
    int side = p == &st->poll[0] ? 0 : 1;
    if (s->closing)
        return;
    int err = status < 0 ? -status : 0;
    if (!err && (events & UV_WRITABLE))
        err = drain(s, 1 - side);
    if (!err && (events & UV_READABLE))
        err = fill(s, side);
    if (err) {
        fail(s, err, side == 0);
        return;
    }
    update(s);
    finish_if_done(s);
}

bool splice_relay_start(session *s)
{
    if (s->client.tls || s->origin.tls || s->pass || s->client.queued || s->origin.queued ||
        s->client.eof || s->origin.eof)
        return false;
    struct splice_state *st = calloc(1, sizeof *st);
    if (!st)
        return false;
    uv_os_fd_t fds[2];
    if (uv_fileno((uv_handle_t *)&s->client.tcp, &fds[0]) != 0 ||
        uv_fileno((uv_handle_t *)&s->origin.tcp, &fds[1]) != 0) {
        free(st);
        return false;
    }
    /* The tcp handles stop watching their sockets; the poll handles take them over. */
    leg_want_read(&s->client, false);
    leg_want_read(&s->origin, false);
    if (s->client.reading || s->origin.reading) {
        free(st);
        return false;
    }
    for (int i = 0; i < 2; i++) {
        st->fd[i] = fds[i];
        st->dir[i].pipe[0] = st->dir[i].pipe[1] = -1;
    }
    if (uv_poll_init(&s->w->loop, &st->poll[0], fds[0]) != 0) {
        free(st);
        return false;
    }
    if (uv_poll_init(&s->w->loop, &st->poll[1], fds[1]) != 0) {
        /* poll[0] is the first member: its close callback frees st. */
        uv_close((uv_handle_t *)&st->poll[0], (uv_close_cb)free);
        return false;
    }
    for (int i = 0; i < 2; i++) {
        st->poll[i].data = s;
        session_ref(s);
    }
    s->splice = st;
    update(s);
    return true;
}

static void on_poll_closed(uv_handle_t *h)
{
    session *s = h->data;
    session_unref(s);
}

void splice_relay_close(session *s)
{
    struct splice_state *st = s->splice;
    if (!st)
        return;
    for (int i = 0; i < 2; i++) {
        if (!uv_is_closing((uv_handle_t *)&st->poll[i]))
            uv_close((uv_handle_t *)&st->poll[i], on_poll_closed);
    }
}

void splice_relay_free(session *s)
{
    struct splice_state *st = s->splice;
    if (!st)
        return;
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++)
            if (st->dir[i].pipe[j] >= 0)
                close(st->dir[i].pipe[j]);
    free(st);
    s->splice = NULL;
}
