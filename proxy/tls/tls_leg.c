/* OpenSSL over libuv with memory BIOs. Ciphertext read from the socket goes into rbio;
 * whatever OpenSSL puts in wbio is written to the socket right away. */
#include "tls_leg.h"

#include <openssl/buffer.h>
#include <openssl/err.h>
#include <stdlib.h>
#include <string.h>

#include "session.h"
#include "worker.h"

#define TLS_CHUNK 16384

static const leg_filter tls_filter;

tls_leg *tls_leg_of(const leg *l)
{
    return l->filter == &tls_filter ? l->filter_state : NULL;
}

static int flush_wbio(leg *l)
{
    tls_leg *t = l->filter_state;
    char *data;
    long len = BIO_get_mem_data(t->wbio, &data);
    if (len <= 0)
        return 0;
    /* Written straight from the BIO's memory: leg_write_raw copies only what the socket
     * does not take at once. */
    int rc = leg_write_raw(l, data, (size_t)len);
    (void)BIO_reset(t->wbio);
    return rc;
}

static void describe_error(tls_leg *t, const char *what)
{
    unsigned long e = ERR_peek_last_error();
    char reason[160] = "";
    if (e)
        ERR_error_string_n(e, reason, sizeof reason);
    else
        snprintf(reason, sizeof reason, "connection closed during the handshake");
    snprintf(t->error, sizeof t->error, "%s: %s", what, reason);
    ERR_clear_error();
}

static void finish_handshake(leg *l, bool ok)
{
    tls_leg *t = l->filter_state;
    tls_handshake_cb cb = t->on_handshake;
    t->on_handshake = NULL;
    if (cb)
        cb(l, ok);
}

static bool still_mine(leg *l, tls_leg *t)
{
    return !l->s->ending && l->filter_state == t && !l->closing;
}

/* Runs the handshake or hands decrypted bytes on, as long as the stage wants them. */
static void pump(leg *l)
{
    tls_leg *t = l->filter_state;
    session *s = l->s;
    if (t->in_pump) {
        t->pump_again = true;
        return;
    }
    t->in_pump = true;
    session_ref(s);
    do {
        t->pump_again = false;
        if (!t->handshake_done) {
            ERR_clear_error();
            int rc = SSL_do_handshake(t->ssl);
            flush_wbio(l);
            if (rc == 1) {
                t->handshake_done = true;
                finish_handshake(l, true);
            } else {
                int err = SSL_get_error(t->ssl, rc);
                if ((err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) || t->peer_eof) {
                    describe_error(t, l->is_client ? "client handshake" : "origin handshake");
                    t->failed = true;
                    finish_handshake(l, false);
                }
                break;
            }
        }
        char buf[TLS_CHUNK];
        while (still_mine(l, t) && t->handshake_done && !t->eof_delivered &&
               ((l->want_read && !l->backpressure) || l->finishing)) {
            ERR_clear_error();
            int n = SSL_read(t->ssl, buf, sizeof buf);
            if (n > 0) {
                leg_received(l, buf, n);
                continue;
            }
            int err = SSL_get_error(t->ssl, n);
            flush_wbio(l); /* e.g. a KeyUpdate answer or session tickets */
            if (err == SSL_ERROR_ZERO_RETURN) {
                t->eof_delivered = true;
                leg_received(l, NULL, UV_EOF);
            } else if (err == SSL_ERROR_WANT_READ && t->peer_eof) {
                /* FIN without close_notify: the peer's data may be cut short. */
                t->eof_delivered = true;
                l->truncated = true;
                leg_received(l, NULL, UV_EOF);
            } else if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) {
                describe_error(t, l->is_client ? "client TLS" : "origin TLS");
                t->eof_delivered = true;
                t->failed = true;
                leg_received(l, NULL, UV_EPROTO);
            }
            break;
        }
    } while (t->pump_again && still_mine(l, t));
    t->in_pump = false;
    session_unref(s);
}

static void tls_on_read(leg *l, const char *buf, ssize_t n)
{
    tls_leg *t = l->filter_state;
    if (n > 0)
        BIO_write(t->rbio, buf, (int)n);
    else
        t->peer_eof = true;
    pump(l);
}

void tls_leg_feed(leg *l, const char *buf, size_t len)
{
    tls_leg *t = l->filter_state;
    if (len)
        BIO_write(t->rbio, buf, (int)len);
    pump(l);
}

static void tls_resume(leg *l)
{
    tls_leg *t = l->filter_state;
    if (BIO_ctrl_pending(t->rbio) > 0 || SSL_pending(t->ssl) > 0 || t->peer_eof)
        pump(l);
}

static int tls_writev(leg *l, const uv_buf_t *bufs, unsigned count)
{
    tls_leg *t = l->filter_state;
    if (!t->handshake_done || t->failed)
        return UV_ENOTCONN;
    ERR_clear_error();
    for (unsigned i = 0; i < count; i++) {
        const char *buf = bufs[i].base;
        size_t len = bufs[i].len;
        while (len > 0) {
            int chunk = len > (1 << 20) ? (1 << 20) : (int)len;
            int n = SSL_write(t->ssl, buf, chunk);
            if (n <= 0) {
                ERR_clear_error();
                return UV_EPROTO;
            }
            buf += n;
            len -= (size_t)n;
        }
    }
    /* Every record of the pieces leaves in one write. */
    return flush_wbio(l);
}

static void tls_close_notify(leg *l)
{
    tls_leg *t = l->filter_state;
    if (t->handshake_done && !t->failed) {
        ERR_clear_error();
        SSL_shutdown(t->ssl);
        ERR_clear_error();
        flush_wbio(l);
    }
}

static void tls_free(leg *l)
{
    tls_leg *t = l->filter_state;
    if (!t)
        return;
    SSL_free(t->ssl); /* frees both BIOs */
    free(t);
    l->filter_state = NULL;
}

/* A memory BIO keeps the largest buffer it ever held (a certificate flight, a 16 KiB record).
 * On an idle leg an empty one is swapped for a fresh, empty BIO. */
#define TLS_TRIM_ABOVE 2048

static bool oversized_and_empty(BIO *b)
{
    BUF_MEM *bm = NULL;
    BIO_get_mem_ptr(b, &bm);
    return bm && bm->length == 0 && bm->max > TLS_TRIM_ABOVE;
}

static void tls_trim(leg *l)
{
    tls_leg *t = l->filter_state;
    if (t->in_pump || !t->handshake_done || t->failed)
        return;
    if (oversized_and_empty(t->wbio)) {
        BIO *fresh = BIO_new(BIO_s_mem());
        if (fresh) {
            SSL_set0_wbio(t->ssl, fresh); /* frees the old one */
            t->wbio = fresh;
        }
    }
    if (oversized_and_empty(t->rbio) && SSL_pending(t->ssl) == 0) {
        BIO *fresh = BIO_new(BIO_s_mem());
        if (fresh) {
            BIO_set_mem_eof_return(fresh, -1);
            SSL_set0_rbio(t->ssl, fresh);
            t->rbio = fresh;
        }
    }
}

static const leg_filter tls_filter = {
    .trim = tls_trim,
    .on_read = tls_on_read,
    .writev = tls_writev,
    .resume = tls_resume,
    .close_notify = tls_close_notify,
    .free = tls_free,
};

int tls_leg_attach(leg *l, SSL *ssl, tls_handshake_cb on_handshake)
{
    tls_leg *t = calloc(1, sizeof *t);
    if (!t)
        return UV_ENOMEM;
    t->ssl = ssl;
    t->alert_received = -1;
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (!t->rbio || !t->wbio) {
        BIO_free(t->rbio);
        BIO_free(t->wbio);
        free(t);
        return UV_ENOMEM;
    }
    /* An empty memory BIO reports "retry" rather than EOF. */
    BIO_set_mem_eof_return(t->rbio, -1);
    SSL_set_bio(ssl, t->rbio, t->wbio);
    t->on_handshake = on_handshake;
    l->filter = &tls_filter;
    l->filter_state = t;
    return 0;
}

void tls_leg_start(leg *l)
{
    pump(l);
}
