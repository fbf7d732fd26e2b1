/* A small asynchronous HTTP/1.1 client for OCSP and CRL fetches (see revocation_fetch.h). */
#include "revocation_fetch.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "llhttp.h"
#include "transparent.h"

#define READ_CHUNK 16384

/* A check waiting for a fetch. One on another worker's loop is told through its own async
 * handle, made on (and closed on) that loop; it keeps that loop alive until it is told, which
 * the fetch's timeout bounds. */
typedef struct waiter {
    rev_fetch_cb cb;
    void *arg;
    struct waiter *next;
    bool remote;
    uv_async_t async;
    int status;
    unsigned char *body;
    size_t len;
    bool failed;
    char error[160];
} waiter;

typedef struct fetch {
    struct fetch *next; /* this thread's fetches in flight */
    uv_loop_t *loop;
    char *key; /* url, NUL, body: what makes two fetches the same */
    size_t key_len;
    char host[256];
    char port[8];
    char *request;
    size_t request_len;
    size_t max_body;
    uint64_t timeout_ms;
    uv_getaddrinfo_t gai;
    bool gai_pending;
    uv_tcp_t tcp;
    bool tcp_open;
    uv_connect_t connect;
    uv_write_t write;
    uv_timer_t timer;
    int handles; /* open handles (timer, tcp) */
    llhttp_t parser;
    llhttp_settings_t settings;
    unsigned char *body;
    size_t body_len;
    bool too_big;
    bool complete;
    bool done; /* the waiters have their answer */
    char pending_error[160];
    int status;
    waiter *waiters;
    char rbuf[READ_CHUNK];
} fetch;

/* Fetches in flight on every worker: a check of the same URL on any loop joins the one there
 * is. The list and the waiters lists are guarded by lock; a fetch itself belongs to its loop. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static fetch *in_flight;
static _Thread_local uint64_t started;

uint64_t rev_fetch_started(void)
{
    return started;
}

static void maybe_free(fetch *f)
{
    if (!f->done || f->handles > 0 || f->gai_pending)
        return;
    free(f->key);
    free(f->request);
    free(f->body);
    free(f);
}

static void on_closed(uv_handle_t *h)
{
    fetch *f = h->data;
    f->handles--;
    maybe_free(f);
}

static void remote_closed(uv_handle_t *h)
{
    waiter *w = h->data;
    free(w->body);
    free(w);
}

/* On the waiter's own loop. */
static void on_remote(uv_async_t *a)
{
    waiter *w = a->data;
    w->cb(w->arg, w->failed ? 0 : w->status, w->failed ? NULL : w->body, w->failed ? 0 : w->len,
          w->failed ? w->error : NULL);
    uv_close((uv_handle_t *)&w->async, remote_closed);
}

/* On the fetch's loop: a copy of the answer goes to the waiter's loop. */
static void tell_remote(waiter *w, const fetch *f, const char *error)
{
    w->status = f->status;
    if (error || (f->body_len && !(w->body = malloc(f->body_len)))) {
        w->failed = true;
        snprintf(w->error, sizeof w->error, "%s", error ? error : "out of memory");
    } else if (f->body_len) {
        memcpy(w->body, f->body, f->body_len);
        w->len = f->body_len;
    }
    uv_async_send(&w->async);
}

/* Tells every waiter, then lets go of the handles; the fetch is freed once they are closed. */
static void finish(fetch *f, const char *error)
{
    if (f->done)
        return;
    f->done = true;
    pthread_mutex_lock(&lock);
    for (fetch **p = &in_flight; *p; p = &(*p)->next)
        if (*p == f) {
            *p = f->next;
            break;
        }
    waiter *w = f->waiters;
    f->waiters = NULL;
    pthread_mutex_unlock(&lock);
    while (w) {
        waiter *next = w->next;
        if (w->remote) {
            tell_remote(w, f, error);
        } else {
            w->cb(w->arg, error ? 0 : f->status, error ? NULL : f->body, error ? 0 : f->body_len,
                  error);
            free(w);
        }
        w = next;
    }
    uv_timer_stop(&f->timer);
    if (!uv_is_closing((uv_handle_t *)&f->timer))
        uv_close((uv_handle_t *)&f->timer, on_closed);
    if (f->tcp_open && !uv_is_closing((uv_handle_t *)&f->tcp))
        uv_close((uv_handle_t *)&f->tcp, on_closed);
    if (f->gai_pending)
        uv_cancel((uv_req_t *)&f->gai);
    maybe_free(f);
}

static void on_timer(uv_timer_t *t);

/* Fails from a later turn of the loop, so callers never see their callback inside rev_fetch. */
static void fail_later(fetch *f, const char *fmt, const char *detail)
{
    snprintf(f->pending_error, sizeof f->pending_error, fmt, detail);
    uv_timer_start(&f->timer, on_timer, 0, 0);
}

static void on_timer(uv_timer_t *t)
{
    fetch *f = t->data;
    if (f->pending_error[0]) {
        finish(f, f->pending_error);
        return;
    }
    char why[96];
    snprintf(why, sizeof why, "no complete answer within %llu ms",
             (unsigned long long)f->timeout_ms);
    finish(f, why);
}

/* ---- the response ---- */

static int on_headers_complete(llhttp_t *p)
{
    fetch *f = p->data;
    f->status = llhttp_get_status_code(p);
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    fetch *f = p->data;
    if (len > f->max_body - f->body_len) {
        f->too_big = true;
        return -1;
    }
    unsigned char *b = realloc(f->body, f->body_len + len);
    if (!b)
        return -1;
    memcpy(b + f->body_len, at, len);
    f->body = b;
    f->body_len += len;
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    fetch *f = p->data;
    f->complete = true;
    return HPE_PAUSED;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    fetch *f = h->data;
    (void)suggested;
    *buf = uv_buf_init(f->rbuf, sizeof f->rbuf);
}

static void parsed(fetch *f, llhttp_errno_t rc)
{
    if (f->complete) {
        finish(f, NULL);
    } else if (f->too_big) {
        char why[80];
        snprintf(why, sizeof why, "response larger than %zu bytes", f->max_body);
        finish(f, why);
    } else if (rc != HPE_OK) {
        finish(f, "malformed HTTP response");
    }
}

static void on_read(uv_stream_t *stream, ssize_t n, const uv_buf_t *buf)
{
    fetch *f = stream->data;
    if (f->done)
        return;
    if (n == UV_EOF) {
        /* A body delimited by the close ends here. */
        llhttp_errno_t rc = llhttp_finish(&f->parser);
        parsed(f, rc);
        if (!f->done)
            finish(f, "connection closed before the response ended");
        return;
    }
    if (n < 0) {
        finish(f, uv_strerror((int)n));
        return;
    }
    parsed(f, llhttp_execute(&f->parser, buf->base, (size_t)n));
}

/* ---- the request ---- */

static void on_written(uv_write_t *req, int status)
{
    fetch *f = req->data;
    if (status < 0 && !f->done)
        finish(f, "cannot send the request");
}

static void on_connect(uv_connect_t *req, int status)
{
    fetch *f = req->data;
    if (f->done)
        return;
    if (status < 0) {
        char why[400];
        snprintf(why, sizeof why, "cannot connect to %s:%s: %s", f->host, f->port,
                 uv_strerror(status));
        finish(f, why);
        return;
    }
    uv_buf_t b = uv_buf_init(f->request, (unsigned)f->request_len);
    f->write.data = f;
    if (uv_write(&f->write, (uv_stream_t *)&f->tcp, &b, 1, on_written) != 0 ||
        uv_read_start((uv_stream_t *)&f->tcp, on_alloc, on_read) != 0)
        finish(f, "cannot send the request");
}

static int connect_to(fetch *f, const struct sockaddr *addr)
{
    uv_tcp_init(f->loop, &f->tcp);
    transparent_mark_tcp(&f->tcp, addr->sa_family); /* never redirected back to us */
    f->tcp.data = f;
    f->tcp_open = true;
    f->handles++;
    f->connect.data = f;
    return uv_tcp_connect(&f->connect, &f->tcp, addr, on_connect);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    fetch *f = req->data;
    f->gai_pending = false;
    if (f->done) {
        uv_freeaddrinfo(res);
        maybe_free(f);
        return;
    }
    if (status < 0 || !res) {
        char why[300];
        snprintf(why, sizeof why, "cannot resolve %s: %s", f->host,
                 status < 0 ? uv_strerror(status) : "no address");
        uv_freeaddrinfo(res);
        finish(f, why);
        return;
    }
    int rc = connect_to(f, res->ai_addr);
    uv_freeaddrinfo(res);
    if (rc != 0)
        finish(f, uv_strerror(rc));
}

/* http://host[:port][/path]: host, port and the origin-form path. 0 or -1. */
static int parse_url(const char *url, char *host, size_t hostlen, char *port, size_t portlen,
                     const char **path, const char **authority, size_t *authority_len)
{
    if (strncasecmp(url, "http://", 7) != 0)
        return -1;
    const char *a = url + 7;
    size_t alen = strcspn(a, "/?#");
    if (alen == 0 || memchr(a, '@', alen))
        return -1;
    *authority = a;
    *authority_len = alen;
    *path = a[alen] == '/' ? a + alen : "/";
    const char *h = a, *colon;
    size_t hlen;
    if (*a == '[') {
        const char *close = memchr(a, ']', alen);
        if (!close)
            return -1;
        h = a + 1;
        hlen = (size_t)(close - h);
        colon = close + 1 < a + alen && close[1] == ':' ? close + 1 : NULL;
    } else {
        colon = memchr(a, ':', alen);
        hlen = colon ? (size_t)(colon - a) : alen;
    }
    size_t plen = colon ? (size_t)(a + alen - colon - 1) : 0;
    if (hlen == 0 || hlen >= hostlen || plen >= portlen)
        return -1;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    if (colon && plen) {
        memcpy(port, colon + 1, plen);
        port[plen] = '\0';
    } else {
        snprintf(port, portlen, "80");
    }
    char *end;
    long n = strtol(port, &end, 10);
    return *end || n < 1 || n > 65535 ? -1 : 0;
}

static fetch *fetch_new(uv_loop_t *loop, const char *url, const unsigned char *body,
                        size_t body_len, size_t max_body, uint64_t timeout_ms)
{
    fetch *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    const char *path, *authority;
    size_t authority_len;
    size_t url_len = strlen(url);
    f->key_len = url_len + 1 + (body ? body_len : 0);
    f->key = malloc(f->key_len);
    if (!f->key || parse_url(url, f->host, sizeof f->host, f->port, sizeof f->port, &path,
                             &authority, &authority_len) != 0) {
        free(f->key);
        free(f);
        return NULL;
    }
    memcpy(f->key, url, url_len + 1);
    if (body && body_len)
        memcpy(f->key + url_len + 1, body, body_len);
    char head[600];
    int n;
    if (body)
        n = snprintf(head, sizeof head,
                     "POST %.400s HTTP/1.1\r\nHost: %.*s\r\nContent-Type: application/ocsp-request"
                     "\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
                     path, (int)authority_len, authority, body_len);
    else
        n = snprintf(head, sizeof head,
                     "GET %.400s HTTP/1.1\r\nHost: %.*s\r\nConnection: close\r\n\r\n", path,
                     (int)authority_len, authority);
    f->request_len = (size_t)n + (body ? body_len : 0);
    f->request = malloc(f->request_len);
    if (!f->request) {
        free(f->key);
        free(f);
        return NULL;
    }
    memcpy(f->request, head, (size_t)n);
    if (body && body_len)
        memcpy(f->request + n, body, body_len);
    f->loop = loop;
    f->max_body = max_body;
    f->timeout_ms = timeout_ms;
    llhttp_settings_init(&f->settings);
    f->settings.on_headers_complete = on_headers_complete;
    f->settings.on_body = on_body;
    f->settings.on_message_complete = on_message_complete;
    llhttp_init(&f->parser, HTTP_RESPONSE, &f->settings);
    f->parser.data = f;
    return f;
}

int rev_fetch(uv_loop_t *loop, const char *url, const unsigned char *body, size_t body_len,
              size_t max_body, uint64_t timeout_ms, rev_fetch_cb cb, void *arg)
{
    waiter *w = calloc(1, sizeof *w);
    if (!w)
        return -1;
    w->cb = cb;
    w->arg = arg;
    size_t url_len = strlen(url);
    size_t key_len = url_len + 1 + (body ? body_len : 0);
    pthread_mutex_lock(&lock);
    for (fetch *f = in_flight; f; f = f->next)
        if (f->key_len == key_len && memcmp(f->key, url, url_len + 1) == 0 &&
            (!body || memcmp(f->key + url_len + 1, body, body_len) == 0)) {
            if (f->loop != loop) {
                /* Another worker's fetch: it answers through this loop's own handle. */
                if (uv_async_init(loop, &w->async, on_remote) != 0)
                    break;
                w->async.data = w;
                w->remote = true;
            }
            w->next = f->waiters;
            f->waiters = w;
            pthread_mutex_unlock(&lock);
            return 0;
        }
    pthread_mutex_unlock(&lock);
    fetch *f = fetch_new(loop, url, body, body_len, max_body, timeout_ms);
    if (!f) {
        free(w);
        return -1;
    }
    f->waiters = w;
    pthread_mutex_lock(&lock);
    f->next = in_flight;
    in_flight = f;
    pthread_mutex_unlock(&lock);
    started++;
    uv_timer_init(loop, &f->timer);
    f->timer.data = f;
    f->handles = 1;
    uv_timer_start(&f->timer, on_timer, timeout_ms, 0);

    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    uint16_t port = (uint16_t)atoi(f->port);
    if (inet_pton(AF_INET, f->host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons(port);
    } else if (inet_pton(AF_INET6, f->host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons(port);
    }
    if (ss.ss_family) {
        int rc = connect_to(f, (struct sockaddr *)&ss);
        if (rc != 0)
            fail_later(f, "cannot connect: %s", uv_strerror(rc));
        return 0;
    }
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    f->gai.data = f;
    int rc = uv_getaddrinfo(loop, &f->gai, on_resolved, f->host, f->port, &hints);
    if (rc != 0)
        fail_later(f, "cannot resolve: %s", uv_strerror(rc));
    else
        f->gai_pending = true;
    return 0;
}
