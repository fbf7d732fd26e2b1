/* Reads land in the worker's shared buffer and are consumed at once; writes are tried
 * immediately and only what the socket does not take is copied and queued. */
#include "leg.h"

#include <stdlib.h>
#include <string.h>

#include "session_internal.h"
#include "tls_internal.h"
#include "tls_leg.h"
#include "worker.h"

typedef struct {
    uv_write_t req;
    leg *l;
    size_t len;
    char data[];
} write_req;

typedef struct {
    uv_shutdown_t req;
    session *s;
} shutdown_req;

void leg_init(leg *l, session *s, bool is_client)
{
    memset(l, 0, sizeof *l);
    l->s = s;
    l->is_client = is_client;
}

leg *leg_peer(leg *l)
{
    return l->is_client ? &l->s->origin : &l->s->client;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    leg *l = h->data;
    (void)suggested;
    buf->base = l->s->w->read_buf;
    buf->len = sizeof l->s->w->read_buf;
}

void leg_deliver(leg *l, const char *buf, ssize_t n)
{
    l->on_data(l, buf, n);
}

void leg_received(leg *l, const char *buf, ssize_t n)
{
    if (n > 0)
        l->bytes_in += (uint64_t)n;
    l->s->last_activity_ms = uv_now(&l->s->w->loop);
    l->on_data(l, buf, n);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    leg *l = stream->data;
    if (nread == 0 || l->s->closing)
        return;
    if (nread == UV_EOF)
        l->eof = true;
    if (l->tls) {
        tls_leg_on_read(l, buf->base, nread);
        return;
    }
    leg_received(l, buf->base, nread);
}

static void update_reading(leg *l)
{
    if (!l->open || l->s->closing || l->eof)
        return;
    bool want = l->want_read && !l->backpressure;
    if (want && !l->reading) {
        if (uv_read_start((uv_stream_t *)&l->tcp, on_alloc, on_read) == 0)
            l->reading = true;
        /* Records already read may hold plaintext the consumer did not take yet. */
        if (l->tls)
            tls_leg_resume(l);
    } else if (!want && l->reading) {
        uv_read_stop((uv_stream_t *)&l->tcp);
        l->reading = false;
    }
}

void leg_want_read(leg *l, bool want)
{
    l->want_read = want;
    update_reading(l);
}

void leg_set_backpressure(leg *l, bool on)
{
    l->backpressure = on;
    update_reading(l);
}

static void on_write(uv_write_t *req, int status)
{
    write_req *wr = (write_req *)req;
    leg *l = wr->l;
    session *s = l->s;
    /* Cancelled writes arrive here before the close callbacks: the session is still alive. */
    l->queued -= wr->len;
    free(wr);
    if (s->closing)
        return;
    if (status < 0) {
        session_fail(s, l, status);
        return;
    }
    if (l->queued < LEG_LOW_WATER)
        session_on_drain(s, l);
}

int leg_writev_raw(leg *l, const uv_buf_t *bufs, unsigned count)
{
    if (!l->open || l->s->closing || l->shut)
        return UV_EPIPE;
    size_t total = 0;
    for (unsigned i = 0; i < count; i++)
        total += bufs[i].len;
    if (total == 0)
        return 0;
    size_t done = 0;
    if (l->queued == 0) {
        int n = uv_try_write((uv_stream_t *)&l->tcp, bufs, count);
        if (n == (int)total)
            return 0;
        if (n > 0)
            done = (size_t)n;
        else if (n != UV_EAGAIN && n != UV_ENOSYS)
            return n;
    }
    /* What the socket did not take is copied into one queued write. */
    size_t len = total - done;
    write_req *wr = malloc(sizeof *wr + len);
    if (!wr)
        return UV_ENOMEM;
    size_t skip = done, off = 0;
    for (unsigned i = 0; i < count; i++) {
        size_t blen = bufs[i].len;
        if (skip >= blen) {
            skip -= blen;
            continue;
        }
        memcpy(wr->data + off, bufs[i].base + skip, blen - skip);
        off += blen - skip;
        skip = 0;
    }
    wr->l = l;
    wr->len = len;
    uv_buf_t b = uv_buf_init(wr->data, (unsigned)len);
    int rc = uv_write(&wr->req, (uv_stream_t *)&l->tcp, &b, 1, on_write);
    if (rc < 0) {
        free(wr);
        return rc;
    }
    l->queued += len;
    return 0;
}

int leg_write_raw(leg *l, const char *buf, size_t len)
{
    uv_buf_t b = uv_buf_init((char *)buf, (unsigned)len);
    return leg_writev_raw(l, &b, 1);
}

int leg_writev(leg *l, const uv_buf_t *bufs, unsigned count)
{
    if (l->tls)
        return tls_leg_writev(l, bufs, count);
    return leg_writev_raw(l, bufs, count);
}

int leg_write(leg *l, const char *buf, size_t len)
{
    uv_buf_t b = uv_buf_init((char *)buf, (unsigned)len);
    return leg_writev(l, &b, 1);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    shutdown_req *sr = (shutdown_req *)req;
    (void)status;
    free(sr);
}

void leg_shutdown(leg *l)
{
    if (!l->open || l->shut || l->s->closing)
        return;
    l->shut = true;
    if (l->tls)
        tls_leg_close_notify(l);
    shutdown_req *sr = malloc(sizeof *sr);
    if (!sr)
        return;
    sr->s = l->s;
    if (uv_shutdown(&sr->req, (uv_stream_t *)&l->tcp, on_shutdown) != 0)
        free(sr);
}
