/* The blind tunnel's fast path on Linux: bytes move socket -> pipe -> socket with splice(2),
 * never copied through user space. Taken only for a plain tunnel (no TLS, no framing) whose
 * write queues are empty. Pipes are made on a direction's first bytes, so an idle tunnel costs
 * no descriptors; each pipe is bounded and the bytes it pins are counted. */
#include "splice.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "metrics.h"
#include "session.h"
#include "worker.h"

/* What a slow reader can make the kernel hold per direction. */
#define SPLICE_PIPE_BYTES (256 * 1024)

typedef struct {
    int pipe[2]; /* -1 until the first bytes */
    size_t in_pipe;
    size_t capacity; /* what the kernel granted */
    bool eof;        /* the source sent FIN */
    bool shut;       /* FIN passed on */
} splice_dir;

struct splice_state {
    uv_poll_t poll[2]; /* 0: client fd, 1: origin fd */
    session *s;
    int fd[2];
    splice_dir dir[2]; /* 0: client -> origin, 1: origin -> client */
    int handles;
    bool stopped;
    bool counted; /* its pipes are counted in fds_in_use */
};

static void on_poll(uv_poll_t *p, int status, int events);

static void update(splice_state *st)
{
    for (int side = 0; side < 2; side++) {
        splice_dir *out = &st->dir[side];    /* what this side's fd produces */
        splice_dir *in = &st->dir[1 - side]; /* what is written to this side's fd */
        int mask = 0;
        if (!out->eof && (out->pipe[0] < 0 || out->in_pipe < out->capacity))
            mask |= UV_READABLE;
        if (in->in_pipe > 0)
            mask |= UV_WRITABLE;
        if (mask)
            uv_poll_start(&st->poll[side], mask, on_poll);
        else
            uv_poll_stop(&st->poll[side]);
    }
}

static void account(splice_dir *dir, ssize_t delta)
{
    dir->in_pipe = (size_t)((ssize_t)dir->in_pipe + delta);
    metrics_splice_pipe_bytes(delta);
}

/* Moves what the pipe holds to the destination; passes FIN on once it is empty. */
static int drain(splice_state *st, int d)
{
    splice_dir *dir = &st->dir[d];
    int to = st->fd[1 - d];
    while (dir->in_pipe > 0) {
        ssize_t n =
            splice(dir->pipe[0], NULL, to, NULL, dir->in_pipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n > 0) {
            account(dir, -n);
            st->s->last_activity_ms = uv_now(&st->s->w->loop);
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

static int fill(splice_state *st, int d)
{
    session *s = st->s;
    splice_dir *dir = &st->dir[d];
    leg *from = d == 0 ? &s->client : &s->origin;
    if (dir->pipe[0] < 0) {
        if (pipe2(dir->pipe, O_NONBLOCK | O_CLOEXEC) != 0)
            return errno;
        int granted = fcntl(dir->pipe[1], F_SETPIPE_SZ, SPLICE_PIPE_BYTES);
        if (granted < 0)
            granted = fcntl(dir->pipe[1], F_GETPIPE_SZ);
        dir->capacity = granted > 0 ? (size_t)granted : 65536;
    }
    while (dir->in_pipe < dir->capacity) {
        ssize_t n = splice(st->fd[d], NULL, dir->pipe[1], NULL, dir->capacity - dir->in_pipe,
                           SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n > 0) {
            account(dir, n);
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
    return drain(st, d);
}

static void finished(splice_state *st)
{
    session *s = st->s;
    /* Both FINs went straight through the sockets: the legs have nothing left to do. */
    leg *legs[2] = {&s->client, &s->origin};
    for (int i = 0; i < 2; i++) {
        legs[i]->eof = legs[i]->shut = legs[i]->shut_done = legs[i]->sock_eof = true;
        legs[i]->shut_done_ms = uv_now(&s->w->loop);
    }
    session_end(s);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    splice_state *st = p->data;
    session *s = st->s;
    if (st->stopped || s->ending)
        return;
    int side = p == &st->poll[0] ? 0 : 1;
    int err = status < 0 ? -status : 0;
    if (!err && (events & UV_WRITABLE))
        err = drain(st, 1 - side);
    if (!err && (events & UV_READABLE))
        err = fill(st, side);
    if (err) {
        char reason[160];
        snprintf(reason, sizeof reason, "%s: %s", side == 0 ? "client" : "origin", strerror(err));
        session_abort(s, reason);
        return;
    }
    update(st);
    if (st->dir[0].shut && st->dir[1].shut)
        finished(st);
}

static void on_poll_closed(uv_handle_t *h)
{
    splice_state *st = h->data;
    session *s = st->s;
    if (--st->handles > 0)
        return;
    for (int i = 0; i < 2; i++) {
        if (st->dir[i].in_pipe)
            account(&st->dir[i], -(ssize_t)st->dir[i].in_pipe);
        for (int j = 0; j < 2; j++)
            if (st->dir[i].pipe[j] >= 0)
                close(st->dir[i].pipe[j]);
    }
    if (st->handles == 0 && st->counted)
        atomic_fetch_sub(&s->w->shared->fds_in_use, 4);
    free(st);
    session_unref(s);
}

splice_state *splice_start(session *s)
{
    if (s->client.filter || s->origin.filter || s->client.queued || s->origin.queued ||
        s->client.eof || s->origin.eof)
        return NULL;
    /* Pipes cost descriptors: a tunnel relays through user space rather than starve accepts. */
    if (!worker_descriptors_available(s->w->shared, 4))
        return NULL;
    uv_os_fd_t fds[2];
    if (uv_fileno((uv_handle_t *)&s->client.tcp, &fds[0]) != 0 ||
        uv_fileno((uv_handle_t *)&s->origin.tcp, &fds[1]) != 0)
        return NULL;
    splice_state *st = calloc(1, sizeof *st);
    if (!st)
        return NULL;
    st->s = s;
    /* The tcp handles stop watching their sockets; the poll handles take them over. */
    leg_want_read(&s->client, false);
    leg_want_read(&s->origin, false);
    for (int i = 0; i < 2; i++) {
        st->fd[i] = fds[i];
        st->dir[i].pipe[0] = st->dir[i].pipe[1] = -1;
        if (uv_poll_init(&s->w->loop, &st->poll[i], fds[i]) != 0) {
            if (i == 1) {
                st->handles = 1;
                st->poll[0].data = st;
                session_ref(s);
                uv_close((uv_handle_t *)&st->poll[0], on_poll_closed);
            } else {
                free(st);
            }
            leg_want_read(&s->client, true);
            leg_want_read(&s->origin, true);
            return NULL;
        }
    }
    for (int i = 0; i < 2; i++)
        st->poll[i].data = st;
    st->handles = 2;
    session_ref(s);
    atomic_fetch_add(&s->w->shared->fds_in_use, 4);
    st->counted = true;
    update(st);
    return st;
}

void splice_stop(splice_state *st)
{
    st->stopped = true;
    for (int i = 0; i < 2; i++)
        if (!uv_is_closing((uv_handle_t *)&st->poll[i]))
            uv_close((uv_handle_t *)&st->poll[i], on_poll_closed);
}
