/* Reads land in the worker's shared buffer and are consumed at once; writes are tried
 * immediately and only what the socket does not take is copied and queued. A leg ends in one
 * of two ways: gracefully (queued bytes, close_notify and FIN delivered first) or by abort. */
#include "leg.h"

#include <stdlib.h>
#include <string.h>

#include "core_internal.h"
#include "session.h"
#include "worker.h"

typedef struct {
    uv_write_t req;
    leg *l;
    size_t len;
    char data[];
} write_req;

typedef struct {
    uv_shutdown_t req;
    leg *l;
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

bool leg_busy(const leg *l)
{
    return l->open;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    leg *l = h->data;
    (void)suggested;
    buf->base = l->s->w->read_buf;
    buf->len = sizeof l->s->w->read_buf;
}

static void close_now(leg *l, bool reset);

/* A finishing leg has delivered everything and the peer is done (or need not be awaited). */
static void maybe_finish_close(leg *l)
{
    if (!l->finishing || l->closing)
        return;
    if (l->shut_done && (l->eof || !l->s->ending))
        close_now(l, false);
}

void leg_received(leg *l, const char *buf, ssize_t n)
{
    session *s = l->s;
    s->last_activity_ms = uv_now(&s->w->loop);
    if (l->finishing || s->ending || !s->stage) {
        /* Closing: what the peer still sends is read and dropped until its FIN. */
        if (n < 0) {
            l->eof = true;
            if (n != UV_EOF || !l->finishing)
                close_now(l, false);
            else
                maybe_finish_close(l);
        }
        return;
    }
    if (n > 0)
        l->bytes_in += (uint64_t)n;
    if (n < 0)
        l->eof = true;
    s->stage->on_data(s, l, buf, n);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    leg *l = stream->data;
    if (nread == 0 || l->closing)
        return;
    if (nread < 0) {
        /* The socket reads nothing more either way. */
        uv_read_stop(stream);
        l->reading = false;
        l->sock_eof = true;
    }
    if (l->filter) {
        l->filter->on_read(l, buf->base, nread);
        return;
    }
    leg_received(l, buf->base, nread);
}

static void update_reading(leg *l)
{
    if (!l->open || l->closing || l->sock_eof)
        return;
    bool want = (l->want_read && !l->backpressure) || l->finishing;
    if (want && !l->reading) {
        if (uv_read_start((uv_stream_t *)&l->tcp, on_alloc, on_read) == 0)
            l->reading = true;
        /* Records already read may hold plaintext the stage did not take yet. */
        if (l->filter && !l->finishing)
            l->filter->resume(l);
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
    l->queued -= wr->len;
    free(wr);
    /* A write cancelled because its own leg is closing is not a failure of anything. */
    if (l->closing)
        return;
    s->last_activity_ms = uv_now(&s->w->loop);
    if (status < 0) {
        if (l->finishing || s->ending)
            close_now(l, true);
        else
            session_leg_error(s, l, status);
        return;
    }
    if (l->queued < LEG_LOW_WATER)
        session_leg_drained(s, l);
}

int leg_writev_raw(leg *l, const uv_buf_t *bufs, unsigned count)
{
    if (!l->open || l->closing || l->shut)
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
    if (l->shut || l->closing || !l->open)
        return UV_EPIPE;
    if (l->filter)
        return l->filter->writev(l, bufs, count);
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
    leg *l = sr->l;
    free(sr);
    if (l->closing)
        return;
    l->shut_done = true;
    l->shut_done_ms = uv_now(&l->s->w->loop);
    if (status < 0 && l->finishing) {
        close_now(l, true);
        return;
    }
    /* Our close_notify and FIN are out: what the peer still sends is dropped unread, so its TLS
     * state (and buffers) can go now rather than when the linger ends. */
    if (l->finishing && l->filter) {
        l->filter->free(l);
        l->filter = NULL;
        l->filter_state = NULL;
    }
    maybe_finish_close(l);
}

void leg_shutdown(leg *l)
{
    if (!l->open || l->closing || l->shut)
        return;
    /* close_notify goes out before FIN, through the raw path. */
    if (l->filter && !l->no_close_notify)
        l->filter->close_notify(l);
    l->shut = true;
    shutdown_req *sr = malloc(sizeof *sr);
    if (!sr) {
        l->shut_done = true;
        return;
    }
    sr->l = l;
    if (uv_shutdown(&sr->req, (uv_stream_t *)&l->tcp, on_shutdown) != 0) {
        free(sr);
        l->shut_done = true;
    }
}

static void on_closed(uv_handle_t *h)
{
    leg *l = h->data;
    session *s = l->s;
    void (*then)(session *) = l->closed_then;
    leg *peer = leg_peer(l);
    if (l->filter) {
        l->filter->free(l);
        l->filter = NULL;
        l->filter_state = NULL;
    }
    bool is_client = l->is_client;
    uint64_t bytes_in = l->bytes_in; /* the transaction's counts outlive the handle */
    leg_init(l, s, is_client);
    l->bytes_in = bytes_in;
    /* Bytes held back for this leg are gone with it: the other side may read again. */
    if (peer->backpressure && !s->ending)
        leg_set_backpressure(peer, false);
    if (then && !s->ending)
        then(s);
    session_leg_closed(s);
}

static void close_now(leg *l, bool reset)
{
    if (!l->open || l->closing)
        return;
    l->closing = true;
    l->reading = false;
    l->tcp.data = l;
    if (reset && !l->shut && uv_tcp_close_reset(&l->tcp, on_closed) == 0)
        return;
    uv_close((uv_handle_t *)&l->tcp, on_closed);
}

void leg_close_graceful(leg *l)
{
    if (!l->open || l->closing || l->finishing)
        return;
    l->finishing = true;
    l->backpressure = false;
    leg_shutdown(l);
    if (l->eof && !l->shut_done && l->queued == 0 && !l->s->ending)
        l->shut_done = true;
    update_reading(l);
    maybe_finish_close(l);
}

void leg_trim(leg *l)
{
    if (l->open && !l->closing && l->filter && l->filter->trim)
        l->filter->trim(l);
}

void leg_abort(leg *l)
{
    close_now(l, true);
}

void leg_after_close(leg *l, void (*then)(session *s))
{
    if (!l->open) {
        if (then)
            then(l->s);
        return;
    }
    l->closed_then = then;
}

void leg_linger_check(leg *l, uint64_t now, uint64_t linger_ms, uint64_t idle_ms)
{
    if (!l->open || l->closing)
        return;
    if (!l->finishing) {
        leg_close_graceful(l);
        return;
    }
    if (l->shut_done) {
        if (now - l->shut_done_ms >= linger_ms)
            close_now(l, false);
    } else if (now - l->s->last_activity_ms >= idle_ms) {
        close_now(l, true); /* no progress delivering: give up */
    }
}
