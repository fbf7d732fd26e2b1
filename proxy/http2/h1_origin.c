/* h2 to HTTP/1.1: origin connections of the h2 stage, one per concurrent stream, kept alive.
 * TLS runs through memory BIOs on a plain uv_tcp_t (these are not session legs: the session
 * knows them only by the reference each holds until its handle has closed). */
#include "h1_origin.h"

#include <ctype.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llhttp.h"
#include "tls_contexts.h"
#include "transparent.h"
#include "worker.h"

#define H1_WRITE_HIGH (256 * 1024) /* request bytes queued towards the origin */
#define H1_RESP_HIGH  (256 * 1024) /* response bytes waiting for the client */
#define H1_MAX_FIELDS 256

typedef struct {
    size_t name_off, name_len, value_off, value_len;
} h1_field;

struct h1_pool {
    session *s;
    struct sockaddr_storage addr;
    h1_conn *conns;
};

struct h1_conn {
    uv_tcp_t tcp;
    uv_connect_t connect_req;
    session *s;
    h1_pool *pool; /* NULL once the pool is gone */
    h1_conn *next;
    h2_stream *st; /* the stream it serves; NULL when idle */
    SSL *ssl;
    BIO *rbio, *wbio;
    llhttp_t parser;
    bool handshake_done, closing, reading;
    size_t queued;
    uint64_t since_ms; /* opened, or idle since */
    uint64_t heard_ms; /* the origin's last bytes, or the exchange's start */
    /* The exchange under way. */
    char *head; /* the request head, until the handshake is done */
    size_t head_len;
    bool chunked, req_done, resp_done, keep_alive, informational, head_request;
    bool reused;        /* the exchange runs on a kept-alive connection */
    bool response_seen; /* a byte of the response arrived */
    bool retry_safe;    /* the method may be sent again (RFC 9110 9.2.2) */
    uint64_t body_sent;
    /* The response head being parsed. */
    bytes hbuf;
    h1_field fields[H1_MAX_FIELDS];
    size_t nfields;
    size_t head_fields; /* fields of the head; those after it are the chunked trailers */
    bool in_value;
};

typedef struct {
    uv_write_t req;
    h1_conn *c;
    size_t len;
    char data[];
} h1_write;

static void h1_close(h1_conn *c);
static void fail(h1_conn *c, const char *why);
static bool retried(h1_conn *c);

/* ---- bytes on the socket ---- */

static void on_written(uv_write_t *req, int status)
{
    h1_write *w = (h1_write *)req;
    h1_conn *c = w->c;
    c->queued -= w->len;
    free(w);
    if (c->closing)
        return;
    session *s = c->s;
    if (status < 0)
        fail(c, "writing to the origin failed");
    else if (c->st && c->queued < H1_WRITE_HIGH / 2)
        h1_request_more(c->st);
    h2_stage_pump(s);
}

/* Sends what TLS has produced. */
static int flush_tls(h1_conn *c)
{
    int pending;
    while ((pending = BIO_pending(c->wbio)) > 0) {
        h1_write *w = malloc(sizeof *w + (size_t)pending);
        if (!w)
            return -1;
        int n = BIO_read(c->wbio, w->data, pending);
        if (n <= 0) {
            free(w);
            return -1;
        }
        w->c = c;
        w->len = (size_t)n;
        uv_buf_t b = uv_buf_init(w->data, (unsigned)n);
        if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_written) != 0) {
            free(w);
            return -1;
        }
        c->queued += (size_t)n;
    }
    return 0;
}

static int send_plain(h1_conn *c, const char *p, size_t n)
{
    if (n && SSL_write(c->ssl, p, (int)n) <= 0)
        return -1;
    return flush_tls(c);
}

/* ---- the request ---- */

static bool name_is(const nghttp2_nv *nv, const char *name)
{
    size_t n = strlen(name);
    return nv->namelen == n && strncasecmp((const char *)nv->name, name, n) == 0;
}

static int add(bytes *b, const char *text)
{
    return h2_bytes_add(b, (const uint8_t *)text, strlen(text));
}

static int add_n(bytes *b, const uint8_t *p, size_t n)
{
    return h2_bytes_add(b, p, n);
}

/* The HTTP/1.1 request head for an h2 header block. */
static int build_head(h1_conn *c, const nghttp2_nv *nv, size_t n, bool end_stream, bytes *out)
{
    const nghttp2_nv *method = NULL, *path = NULL, *authority = NULL, *host = NULL;
    bool has_length = false;
    for (size_t i = 0; i < n; i++) {
        if (name_is(&nv[i], ":method"))
            method = &nv[i];
        else if (name_is(&nv[i], ":path"))
            path = &nv[i];
        else if (name_is(&nv[i], ":authority"))
            authority = &nv[i];
        else if (name_is(&nv[i], "host"))
            host = &nv[i];
        else if (name_is(&nv[i], "content-length"))
            has_length = true;
    }
    if (!method || !path)
        return -1;
    if (!authority)
        authority = host;
    c->head_request = method->valuelen == 4 && memcmp(method->value, "HEAD", 4) == 0;
    static const char *const idempotent[] = {"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"};
    c->retry_safe = false;
    for (size_t i = 0; i < sizeof idempotent / sizeof idempotent[0]; i++)
        c->retry_safe |= method->valuelen == strlen(idempotent[i]) &&
                         memcmp(method->value, idempotent[i], method->valuelen) == 0;
    int rc = add_n(out, method->value, method->valuelen) | add(out, " ") |
             add_n(out, path->value, path->valuelen) | add(out, " HTTP/1.1\r\n");
    if (authority)
        rc |= add(out, "host: ") | add_n(out, authority->value, authority->valuelen) |
              add(out, "\r\n");
    bool first_cookie = true;
    for (size_t i = 0; i < n; i++) {
        if (nv[i].namelen && nv[i].name[0] == ':')
            continue;
        if (name_is(&nv[i], "host") || name_is(&nv[i], "te") || name_is(&nv[i], "connection"))
            continue;
        if (name_is(&nv[i], "cookie")) {
            /* h2 may split cookies into fields; HTTP/1.1 wants one header (RFC 9113 8.2.3). */
            rc |= add(out, first_cookie ? "cookie: " : "; ") |
                  add_n(out, nv[i].value, nv[i].valuelen);
            first_cookie = false;
            continue;
        }
        rc |= add_n(out, nv[i].name, nv[i].namelen) | add(out, ": ") |
              add_n(out, nv[i].value, nv[i].valuelen) | add(out, "\r\n");
    }
    if (!first_cookie)
        rc |= add(out, "\r\n");
    rc |= add(out, "via: 2 handoff\r\n");
    c->chunked = !end_stream && !has_length;
    if (c->chunked)
        rc |= add(out, "transfer-encoding: chunked\r\n");
    rc |= add(out, "\r\n");
    return rc ? -1 : 0;
}

/* The exchange failed: the stream learns why, the connection closes. The libuv callbacks
 * (on_read, on_connect, on_written) pump the stage afterwards; nothing else here does, since
 * the stage may be calling in from inside nghttp2. */
static void fail(h1_conn *c, const char *why)
{
    if (retried(c))
        return;
    if (c->st)
        h2_stream_origin_failed(c->st, why);
    h1_close(c);
}

/* Sends buffered request body (and its end) while the write queue is short. */
static void send_body(h1_conn *c)
{
    h2_stream *st = c->st;
    while (!c->req_done && c->queued < H1_WRITE_HIGH) {
        size_t have = st->req.len - st->req.off;
        if (have == 0)
            break;
        size_t n = have < 65536 ? have : 65536;
        char size_line[24];
        int rc = 0;
        if (c->chunked) {
            snprintf(size_line, sizeof size_line, "%zx\r\n", n);
            rc = send_plain(c, size_line, strlen(size_line));
        }
        rc |= send_plain(c, st->req.p + st->req.off, n);
        if (c->chunked)
            rc |= send_plain(c, "\r\n", 2);
        if (rc != 0) {
            fail(c, "writing to the origin failed");
            return;
        }
        st->req.off += n;
        c->body_sent += n;
        h2_stream_request_consumed(st, n);
    }
    if (c->req_done || !st->req_end || st->req.off != st->req.len)
        return;
    c->req_done = true;
    if (!c->chunked)
        return;
    bytes end = {0};
    int rc = add(&end, "0\r\n");
    for (size_t i = 0; i < st->req_trailers.n; i++) {
        const nghttp2_nv *nv = &st->req_trailers.nv[i];
        rc |= add_n(&end, nv->name, nv->namelen) | add(&end, ": ") |
              add_n(&end, nv->value, nv->valuelen) | add(&end, "\r\n");
    }
    rc |= add(&end, "\r\n");
    if (rc || send_plain(c, end.p, end.len) != 0) {
        free(end.p);
        fail(c, "writing to the origin failed");
        return;
    }
    free(end.p);
}

void h1_request_more(h2_stream *st)
{
    h1_conn *c = st->h1;
    if (!c || c->closing || !c->handshake_done)
        return;
    send_body(c);
}

/* ---- the response ---- */

static h1_conn *conn_of(llhttp_t *p)
{
    return p->data;
}

static int on_message_begin(llhttp_t *p)
{
    h1_conn *c = conn_of(p);
    if (!c->st)
        return -1; /* bytes from an idle origin: it is not speaking HTTP/1.1 with us */
    c->response_seen = true;
    c->nfields = 0;
    c->head_fields = 0;
    c->hbuf.len = c->hbuf.off = 0;
    c->in_value = false;
    return 0;
}

/* A response head (or trailer section) is bounded like a request head: llhttp sets no limit. */
static int add_head_bytes(h1_conn *c, const char *at, size_t len)
{
    if (c->hbuf.len + len > (size_t)c->s->w->shared->cfg.max_header_bytes)
        return -1;
    return h2_bytes_add(&c->hbuf, (const uint8_t *)at, len);
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    h1_conn *c = conn_of(p);
    if (c->in_value || c->nfields == 0) {
        if (c->nfields == H1_MAX_FIELDS)
            return -1;
        h1_field *f = &c->fields[c->nfields++];
        f->name_off = c->hbuf.len;
        f->name_len = 0;
        f->value_len = 0;
        c->in_value = false;
    }
    h1_field *f = &c->fields[c->nfields - 1];
    f->name_len += len;
    return add_head_bytes(c, at, len);
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    h1_conn *c = conn_of(p);
    if (c->nfields == 0)
        return -1;
    h1_field *f = &c->fields[c->nfields - 1];
    if (!c->in_value) {
        f->value_off = c->hbuf.len;
        c->in_value = true;
    }
    f->value_len += len;
    return add_head_bytes(c, at, len);
}

static bool hop_by_hop(const char *name, size_t len)
{
    static const char *const names[] = {
        "connection", "keep-alive", "proxy-connection", "transfer-encoding",
        "upgrade",    "te",         "trailer"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strlen(names[i]) == len && strncasecmp(names[i], name, len) == 0)
            return true;
    return false;
}

/* Fields [from, to) as h2 fields (lower-case names, hop-by-hop ones left out) after nv[n]. */
static size_t fields_to_nv(h1_conn *c, size_t from, size_t to, nghttp2_nv *nv, size_t n)
{
    for (size_t i = from; i < to; i++) {
        h1_field *f = &c->fields[i];
        char *name = c->hbuf.p + f->name_off;
        if (hop_by_hop(name, f->name_len) || f->name_len == 0)
            continue;
        for (size_t k = 0; k < f->name_len; k++)
            name[k] = (char)tolower((unsigned char)name[k]);
        nv[n++] = (nghttp2_nv){(uint8_t *)name, (uint8_t *)c->hbuf.p + f->value_off, f->name_len,
                               f->value_len, NGHTTP2_NV_FLAG_NONE};
    }
    return n;
}

static int on_headers_complete(llhttp_t *p)
{
    h1_conn *c = conn_of(p);
    int status = llhttp_get_status_code(p);
    if (status < 200) {
        c->informational = true; /* 100 Continue and friends stay on this leg */
        return 0;
    }
    if (c->hbuf.len > (size_t)c->s->w->shared->cfg.max_header_bytes)
        return -1;
    nghttp2_nv nv[H1_MAX_FIELDS + 2];
    char code[8];
    snprintf(code, sizeof code, "%d", status % 1000);
    nv[0] =
        (nghttp2_nv){(uint8_t *)":status", (uint8_t *)code, 7, strlen(code), NGHTTP2_NV_FLAG_NONE};
    size_t n = fields_to_nv(c, 0, c->nfields, nv, 1);
    c->head_fields = c->nfields;
    nv[n++] = (nghttp2_nv){(uint8_t *)"via", (uint8_t *)"1.1 handoff", 3, 11, NGHTTP2_NV_FLAG_NONE};
    h2_stream_response_head(c->st, nv, n, false);
    /* A response to HEAD has no body, whatever its Content-Length says. */
    return c->head_request ? 1 : 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    h1_conn *c = conn_of(p);
    if (c->st)
        h2_stream_response_data(c->st, (const uint8_t *)at, len, false);
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    h1_conn *c = conn_of(p);
    if (c->informational) {
        c->informational = false;
        return 0;
    }
    c->resp_done = true;
    c->keep_alive = llhttp_should_keep_alive(p);
    if (!c->st)
        return 0;
    if (c->nfields > c->head_fields) {
        /* Trailers of a chunked body: they end the h2 response as a HEADERS frame. */
        nghttp2_nv nv[H1_MAX_FIELDS];
        size_t n = fields_to_nv(c, c->head_fields, c->nfields, nv, 0);
        if (n)
            h2_stream_response_trailers(c->st, nv, n);
    }
    h2_stream_response_data(c->st, NULL, 0, true);
    return 0;
}

static const llhttp_settings_t parser_settings = {
    .on_message_begin = on_message_begin,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ---- TLS and the socket ---- */

static bool verified(h1_conn *c, char *why, size_t whylen)
{
    if (!c->s->verify_server)
        return true;
    if (!SSL_get0_peer_certificate(c->ssl)) {
        snprintf(why, whylen, "origin sent no certificate");
        return false;
    }
    long rc = SSL_get_verify_result(c->ssl);
    if (rc != X509_V_OK) {
        snprintf(why, whylen, "origin certificate: %s", X509_verify_cert_error_string(rc));
        return false;
    }
    return true;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    h1_conn *c = h->data;
    (void)suggested;
    buf->base = c->s->w->read_buf;
    buf->len = sizeof c->s->w->read_buf;
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);

static void set_reading(h1_conn *c, bool on)
{
    if (c->closing || on == c->reading)
        return;
    if (on ? uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0
           : uv_read_stop((uv_stream_t *)&c->tcp) == 0)
        c->reading = on;
}

static size_t waiting(const h2_stream *st)
{
    return st->resp.len - st->resp.off;
}

/* Response bytes of every stream of the pool that wait for the client. */
static size_t pool_waiting(const h1_pool *p)
{
    size_t total = 0;
    for (const h1_conn *c = p ? p->conns : NULL; c; c = c->next)
        if (c->st)
            total += waiting(c->st);
    return total;
}

/* A stream's buffer, and all of them together, stay bounded like an h2 origin's windows. */
static bool response_full(h1_conn *c)
{
    return c->st &&
           (waiting(c->st) >= H1_RESP_HIGH || pool_waiting(c->pool) >= H2_CONNECTION_WINDOW);
}

/* The exchange is over: the connection goes back to the pool, or closes. */
static void maybe_release(h1_conn *c)
{
    if (!c->resp_done || !c->st)
        return;
    if (!c->req_done || !c->keep_alive) {
        return; /* closed when the stream goes */
    }
    c->st->h1 = NULL;
    c->st = NULL;
    c->since_ms = uv_now(&c->s->w->loop);
}

static void on_eof(h1_conn *c)
{
    if (retried(c))
        return;
    if (c->st && !c->resp_done) {
        /* A body delimited by the close ends here. */
        if (llhttp_finish(&c->parser) != HPE_OK || !c->resp_done) {
            fail(c, "the origin closed the connection before the response ended");
            return;
        }
    }
    h1_close(c);
}

static void start_exchange(h1_conn *c)
{
    if (send_plain(c, c->head, c->head_len) != 0) {
        fail(c, "writing to the origin failed");
        return;
    }
    send_body(c);
}

static void after_tls_input(h1_conn *c)
{
    if (!c->handshake_done) {
        int rc = SSL_do_handshake(c->ssl);
        flush_tls(c);
        if (rc != 1) {
            int err = SSL_get_error(c->ssl, rc);
            if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) {
                char why[200];
                snprintf(why, sizeof why, "TLS handshake with the origin failed: %s",
                         ERR_reason_error_string(ERR_peek_last_error())
                             ? ERR_reason_error_string(ERR_peek_last_error())
                             : "protocol error");
                ERR_clear_error();
                fail(c, why);
            }
            return;
        }
        char why[200];
        if (!verified(c, why, sizeof why)) {
            fail(c, why);
            return;
        }
        c->handshake_done = true;
        start_exchange(c);
        if (c->closing)
            return;
    }
    char plain[16384];
    for (;;) {
        int n = SSL_read(c->ssl, plain, sizeof plain);
        if (n <= 0) {
            int err = SSL_get_error(c->ssl, n);
            ERR_clear_error();
            flush_tls(c);
            if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
                break;
            on_eof(c);
            return;
        }
        if (llhttp_execute(&c->parser, plain, (size_t)n) != HPE_OK) {
            fail(c, c->st ? "the origin's HTTP/1.1 response does not parse"
                          : "the idle origin connection sent bytes");
            return;
        }
        maybe_release(c);
    }
    if (response_full(c))
        set_reading(c, false);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    h1_conn *c = stream->data;
    if (c->closing || nread == 0)
        return;
    session *s = c->s;
    c->heard_ms = uv_now(&s->w->loop);
    if (nread < 0)
        on_eof(c);
    else if (BIO_write(c->rbio, buf->base, (int)nread) != nread)
        fail(c, "out of memory");
    else
        after_tls_input(c);
    h2_stage_pump(s);
}

static void on_connect(uv_connect_t *req, int status)
{
    h1_conn *c = req->data;
    if (c->closing)
        return;
    session *s = c->s;
    if (status < 0) {
        char why[200];
        snprintf(why, sizeof why, "cannot connect to the origin: %s", uv_strerror(status));
        fail(c, why);
    } else {
        uv_tcp_nodelay(&c->tcp, 1);
        set_reading(c, true);
        SSL_do_handshake(c->ssl);
        if (flush_tls(c) != 0)
            fail(c, "writing to the origin failed");
    }
    h2_stage_pump(s);
}

static void on_closed(uv_handle_t *h)
{
    h1_conn *c = h->data;
    session *s = c->s;
    SSL_free(c->ssl);
    free(c->head);
    free(c->hbuf.p);
    free(c);
    session_unref(s);
}

static void h1_close(h1_conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    if (c->st)
        c->st->h1 = NULL;
    c->st = NULL;
    if (c->pool) {
        h1_conn **pp = &c->pool->conns;
        while (*pp && *pp != c)
            pp = &(*pp)->next;
        if (*pp)
            *pp = c->next;
        c->pool = NULL;
    }
    uv_close((uv_handle_t *)&c->tcp, on_closed);
}

static const char *tls_name(session *s)
{
    return s->sni[0] ? s->sni : s->target_host;
}

static h1_conn *open_conn(h1_pool *p)
{
    session *s = p->s;
    h1_conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->s = s;
    c->ssl = SSL_new(s->w->shared->client_ctx);
    c->rbio = BIO_new(BIO_s_mem());
    c->wbio = BIO_new(BIO_s_mem());
    if (!c->ssl || !c->rbio || !c->wbio) {
        SSL_free(c->ssl);
        BIO_free(c->rbio);
        BIO_free(c->wbio);
        free(c);
        return NULL;
    }
    SSL_set_bio(c->ssl, c->rbio, c->wbio);
    SSL_set_connect_state(c->ssl);
    if (s->sni[0])
        SSL_set_tlsext_host_name(c->ssl, s->sni);
    if (s->verify_server) {
        X509_VERIFY_PARAM *param = SSL_get0_param(c->ssl);
        if (X509_VERIFY_PARAM_set1_ip_asc(param, tls_name(s)) != 1) {
            X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
            X509_VERIFY_PARAM_set1_host(param, tls_name(s), 0);
        }
    }
    static const unsigned char alpn[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
    SSL_set_alpn_protos(c->ssl, alpn, sizeof alpn);
    tls_session_cache_apply(s, c->ssl);
    uv_tcp_init(&s->w->loop, &c->tcp);
    transparent_mark_socket(&s->w->shared->cfg, &c->tcp, p->addr.ss_family);
    c->tcp.data = c;
    c->connect_req.data = c;
    session_ref(s);
    c->pool = p;
    c->next = p->conns;
    p->conns = c;
    c->since_ms = uv_now(&s->w->loop);
    if (uv_tcp_connect(&c->connect_req, &c->tcp, (const struct sockaddr *)&p->addr, on_connect) !=
        0) {
        h1_close(c);
        return NULL;
    }
    return c;
}

/* ---- the pool ---- */

h1_pool *h1_pool_new(session *s, const struct sockaddr *addr)
{
    h1_pool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->s = s;
    memcpy(&p->addr, addr,
           addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
    return p;
}

void h1_pool_free(h1_pool *p)
{
    if (!p)
        return;
    while (p->conns)
        h1_close(p->conns);
    free(p);
}

/* Puts st's exchange (its request head, owned from now on) on c. */
static void attach(h1_conn *c, h2_stream *st, char *head, size_t head_len, bool reused)
{
    free(c->head);
    c->head = head;
    c->head_len = head_len;
    c->st = st;
    c->heard_ms = uv_now(&c->s->w->loop);
    st->h1 = c;
    c->req_done = c->resp_done = c->keep_alive = c->informational = false;
    c->response_seen = false;
    c->body_sent = 0;
    c->reused = reused;
    llhttp_init(&c->parser, HTTP_RESPONSE, &parser_settings);
    c->parser.data = c;
    if (c->handshake_done) {
        start_exchange(c);
        set_reading(c, true);
    }
}

/* A kept-alive connection the origin closed just as a request went out: the request goes
 * again on a fresh connection, when nothing of it can have been acted on twice. */
static bool retried(h1_conn *c)
{
    h2_stream *st = c->st;
    h1_pool *p = c->pool;
    if (!st || !p || !c->reused || c->response_seen || c->body_sent || !c->retry_safe)
        return false;
    h1_conn *fresh = open_conn(p);
    if (!fresh)
        return false;
    char *head = c->head;
    size_t head_len = c->head_len;
    c->head = NULL;
    fresh->chunked = c->chunked;
    fresh->head_request = c->head_request;
    st->h1 = NULL;
    c->st = NULL;
    h1_close(c);
    attach(fresh, st, head, head_len, false);
    return true;
}

int h1_pool_start(h1_pool *p, h2_stream *st, const nghttp2_nv *nv, size_t n, bool end_stream)
{
    h1_conn *c = p->conns;
    while (c && (c->st || !c->handshake_done || c->closing))
        c = c->next;
    bool fresh = !c;
    if (fresh && !(c = open_conn(p)))
        return -1;
    bytes head = {0};
    if (build_head(c, nv, n, end_stream, &head) != 0) {
        free(head.p);
        if (fresh)
            h1_close(c);
        return -1;
    }
    attach(c, st, head.p, head.len, !fresh);
    return 0;
}

void h1_response_pulled(h2_stream *st)
{
    h1_conn *c = st->h1;
    if (!c || !c->pool || pool_waiting(c->pool) >= H2_CONNECTION_WINDOW / 2)
        return;
    for (h1_conn *o = c->pool->conns; o; o = o->next)
        if (o->st && !o->reading && !o->closing && waiting(o->st) < H1_RESP_HIGH / 2)
            set_reading(o, true);
}

void h1_stream_gone(h2_stream *st)
{
    h1_conn *c = st->h1;
    if (!c)
        return;
    st->h1 = NULL;
    c->st = NULL;
    /* Mid-exchange, the connection's state is unknown to the next request. */
    if (!c->resp_done || !c->req_done || !c->keep_alive)
        h1_close(c);
    else
        c->since_ms = uv_now(&c->s->w->loop);
}

void h1_pool_tick(h1_pool *p, uint64_t now_ms, uint64_t idle_ms)
{
    uint64_t connect_ms = (uint64_t)p->s->w->shared->cfg.connect_timeout_s * 1000;
    for (h1_conn *c = p->conns, *next; c; c = next) {
        next = c->next;
        if (!c->st && now_ms - c->since_ms >= idle_ms)
            h1_close(c);
        else if (c->st && !c->handshake_done && now_ms - c->since_ms >= connect_ms)
            fail(c, "the origin connection was not ready within connect_timeout_s");
        /* An origin silent mid-exchange (and not held back by a slow client) is given up. */
        else if (c->st && c->handshake_done && !response_full(c) && now_ms - c->heard_ms >= idle_ms)
            fail(c, "the origin sent nothing for idle_timeout_s");
    }
}
