/* The admin listener: a small HTTP/1.1 server on worker 0's loop. It never proxies. */
#include "admin.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "access_log.h"
#include "admin_page.h"
#include "certs.h"
#include "local_pages.h"
#include "metrics.h"
#include "ocsp.h"
#include "revocation.h"

/* A request head, and for POST /ocsp its body too. */
#define ADMIN_MAX_HEAD    8192
#define ADMIN_MAX_REQUEST (ADMIN_MAX_HEAD + CERTS_OCSP_MAX_REQUEST + 16)
#define SNAPSHOT_WAIT_MS  2000

typedef struct {
    uv_tcp_t tcp;
    uv_timer_t timer;
    worker *w;
    char buf[ADMIN_MAX_REQUEST];
    size_t len;
    uint64_t snapshot_gen;
    uint64_t snapshot_started;
    int handles;
    bool answered;
    bool head_only;  /* a HEAD request: the answer has no body */
    size_t head_len; /* bytes of the head, once complete */
    size_t body_len; /* a POST's Content-Length */
} admin_conn;

typedef struct {
    uv_tcp_t listener;
} admin_state;

static void on_conn_closed(uv_handle_t *h)
{
    admin_conn *c = h->data;
    if (--c->handles == 0)
        free(c);
}

static void conn_close(admin_conn *c)
{
    if (!uv_is_closing((uv_handle_t *)&c->tcp))
        uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
    if (!uv_is_closing((uv_handle_t *)&c->timer))
        uv_close((uv_handle_t *)&c->timer, on_conn_closed);
}

typedef struct {
    uv_write_t req;
    admin_conn *c;
    char data[];
} admin_write;

static void on_written(uv_write_t *req, int status)
{
    admin_write *wr = (admin_write *)req;
    (void)status;
    conn_close(wr->c);
    free(wr);
}

static void respond(admin_conn *c, int status, const char *reason, const char *type,
                    const char *body, size_t len)
{
    if (c->answered)
        return;
    c->answered = true;
    uv_read_stop((uv_stream_t *)&c->tcp);
    char head[512];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Cache-Control: no-store\r\nConnection: close\r\n\r\n",
                     status, reason, type, len);
    admin_write *wr = malloc(sizeof *wr + (size_t)n + len);
    if (!wr) {
        conn_close(c);
        return;
    }
    memcpy(wr->data, head, (size_t)n);
    if (c->head_only)
        len = 0;
    if (len)
        memcpy(wr->data + n, body, len);
    wr->c = c;
    uv_buf_t b = uv_buf_init(wr->data, (unsigned)((size_t)n + len));
    if (uv_write(&wr->req, (uv_stream_t *)&c->tcp, &b, 1, on_written) != 0) {
        free(wr);
        conn_close(c);
    }
}

static void respond_text(admin_conn *c, int status, const char *reason, const char *text)
{
    respond(c, status, reason, "text/plain; charset=utf-8", text, strlen(text));
}

/* Merges every worker's published array once all have answered this generation. */
static void on_snapshot_poll(uv_timer_t *t)
{
    admin_conn *c = t->data;
    shared_state *sh = c->w->shared;
    bool ready = true;
    for (int i = 0; i < sh->worker_count && ready; i++) {
        pthread_mutex_lock(&sh->workers[i].snapshot_lock);
        ready = sh->workers[i].snapshot_gen >= c->snapshot_gen;
        pthread_mutex_unlock(&sh->workers[i].snapshot_lock);
    }
    if (!ready && uv_now(t->loop) - c->snapshot_started < SNAPSHOT_WAIT_MS)
        return;
    uv_timer_stop(t);
    json_t *all = json_array();
    for (int i = 0; i < sh->worker_count; i++) {
        pthread_mutex_lock(&sh->workers[i].snapshot_lock);
        json_t *part =
            sh->workers[i].snapshot_json ? json_loads(sh->workers[i].snapshot_json, 0, NULL) : NULL;
        pthread_mutex_unlock(&sh->workers[i].snapshot_lock);
        if (part)
            json_array_extend(all, part);
        json_decref(part);
    }
    json_t *doc = json_pack("{s:o}", "sessions", all);
    char *text = json_dumps(doc, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
    json_decref(doc);
    if (text)
        respond(c, 200, "OK", "application/json", text, strlen(text));
    else
        respond_text(c, 500, "Internal Server Error", "cannot render sessions\n");
    free(text);
}

static void serve_sessions(admin_conn *c)
{
    shared_state *sh = c->w->shared;
    if (atomic_load(&sh->stopping)) {
        respond_text(c, 503, "Service Unavailable", "stopping\n");
        return;
    }
    c->snapshot_gen = atomic_fetch_add(&sh->snapshot_wanted, 1) + 1;
    c->snapshot_started = uv_now(&c->w->loop);
    for (int i = 0; i < sh->worker_count; i++)
        worker_request_snapshot(&sh->workers[i]);
    uv_timer_start(&c->timer, on_snapshot_poll, 1, 5);
}

/* The OCSP responder, as on the proxy port: never behind authentication. */
static void serve_ocsp(admin_conn *c, const char *target, bool post)
{
    local_page page;
    if (local_ocsp_answer(c->w->shared, target, post ? (unsigned char *)c->buf + c->head_len : NULL,
                          post ? c->body_len : 0, &page)) {
        respond(c, 200, "OK", page.type, page.body, page.len);
        free(page.owned);
    } else {
        respond_text(c, 404, "Not Found", "no OCSP responder: no CA is configured\n");
    }
}

static void route(admin_conn *c)
{
    char method[16], target[2048];
    if (sscanf(c->buf, "%15s %2047s HTTP/1.", method, target) != 2) {
        respond_text(c, 400, "Bad Request", "malformed request\n");
        return;
    }
    c->head_only = strcmp(method, "HEAD") == 0;
    uv_timer_stop(&c->timer);
    if (target[0] == '/') {
        char path[2048];
        snprintf(path, sizeof path, "%.*s", (int)strcspn(target, "?"), target);
        bool post = strcmp(method, "POST") == 0;
        if (local_ocsp_path(path) && (post || strcmp(method, "GET") == 0)) {
            serve_ocsp(c, target, post);
            return;
        }
    }
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        respond_text(c, strcmp(method, "CONNECT") == 0 ? 403 : 405,
                     strcmp(method, "CONNECT") == 0 ? "Forbidden" : "Method Not Allowed",
                     "the admin port never proxies\n");
        return;
    }
    if (target[0] != '/') {
        respond_text(c, 403, "Forbidden", "the admin port never proxies\n");
        return;
    }
    target[strcspn(target, "?")] = '\0';
    shared_state *sh = c->w->shared;
    if (strcmp(target, "/healthz") == 0) {
        respond_text(c, 200, "OK", "ok\n");
    } else if (strcmp(target, "/sessions") == 0) {
        serve_sessions(c);
    } else if (strcmp(target, "/metrics") == 0) {
        size_t len = 0;
        metrics_gauges g = {.active_sessions = atomic_load(&sh->connections),
                            .log_dropped = access_log_dropped(sh->log)};
        if (sh->leaves)
            certs_cache_stats(sh->leaves, &g.leaf_hits, &g.leaf_misses, &g.leaf_entries);
        if (sh->rev_cache)
            certs_rev_cache_stats(sh->rev_cache, &g.rev_cache_hits, &g.rev_cache_misses,
                                  &g.rev_cache_entries);
        char *text = metrics_render(&g, &len);
        respond(c, 200, "OK", "text/plain; version=0.0.4", text ? text : "", text ? len : 0);
        free(text);
    } else if (strcmp(target, "/") == 0) {
        respond(c, 200, "OK", "text/html; charset=utf-8", admin_page_html, strlen(admin_page_html));
    } else {
        local_page page;
        if (local_page_find(sh, target, true, &page)) {
            respond(c, 200, "OK", page.type, page.body, page.len);
            free(page.owned);
        } else {
            respond_text(c, 404, "Not Found", "not found\n");
        }
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    admin_conn *c = h->data;
    (void)suggested;
    buf->base = c->buf + c->len;
    buf->len = sizeof c->buf - 1 - c->len;
}

/* Finds the end of the head and, for a POST, how long its body is. -1 when answered already. */
static int head_complete(admin_conn *c)
{
    char *end = strstr(c->buf, "\r\n\r\n");
    size_t sep = 4;
    if (!end) {
        end = strstr(c->buf, "\n\n");
        sep = 2;
    }
    if (!end || (size_t)(end - c->buf) >= ADMIN_MAX_HEAD)
        return 0;
    c->head_len = (size_t)(end - c->buf) + sep;
    if (strncmp(c->buf, "POST ", 5) != 0)
        return 0;
    /* Only POST /ocsp carries a body: Content-Length, at most CERTS_OCSP_MAX_REQUEST. */
    long length = -1;
    for (char *line = strchr(c->buf, '\n'); line && line < end; line = strchr(line + 1, '\n'))
        if (strncasecmp(line + 1, "Content-Length:", 15) == 0)
            length = strtol(line + 16, NULL, 10);
    if (length < 0) {
        respond_text(c, 411, "Length Required", "POST needs a Content-Length\n");
        return -1;
    }
    if (length > CERTS_OCSP_MAX_REQUEST) {
        respond_text(c, 413, "Payload Too Large", "an OCSP request is at most 8192 bytes\n");
        return -1;
    }
    c->body_len = (size_t)length;
    return 0;
}

static void on_read(uv_stream_t *stream, ssize_t n, const uv_buf_t *buf)
{
    admin_conn *c = stream->data;
    (void)buf;
    if (n < 0) {
        conn_close(c);
        return;
    }
    c->len += (size_t)n;
    c->buf[c->len] = '\0';
    if (!c->head_len && head_complete(c) != 0)
        return;
    if (c->head_len) {
        if (c->len >= c->head_len + c->body_len)
            route(c);
    } else if (c->len >= ADMIN_MAX_HEAD) {
        respond_text(c, 431, "Request Header Fields Too Large", "request too large\n");
    }
}

/* A client that does not finish its request within header_timeout_s is closed. */
static void on_header_timeout(uv_timer_t *t)
{
    admin_conn *c = t->data;
    respond_text(c, 408, "Request Timeout", "request not complete in time\n");
}

static void on_connection(uv_stream_t *server, int status)
{
    worker *w = server->data;
    if (status < 0)
        return;
    admin_conn *c = calloc(1, sizeof *c);
    if (!c)
        return;
    c->w = w;
    uv_tcp_init(&w->loop, &c->tcp);
    uv_timer_init(&w->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->handles = 2;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 ||
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
        conn_close(c);
        return;
    }
    uv_timer_start(&c->timer, on_header_timeout, (uint64_t)w->shared->cfg.header_timeout_s * 1000,
                   0);
}

static void admin_close(worker *w)
{
    admin_state *a = w->admin;
    if (a && !uv_is_closing((uv_handle_t *)&a->listener))
        uv_close((uv_handle_t *)&a->listener, (uv_close_cb)free);
    w->admin = NULL;
}

int admin_start(worker *w, char *err, size_t errlen)
{
    const config *cfg = &w->shared->cfg;
    admin_state *a = calloc(1, sizeof *a);
    if (!a)
        return UV_ENOMEM;
    uv_tcp_init(&w->loop, &a->listener);
    a->listener.data = w;
    int rc;
    int inherited = w->shared->inherited_admin_fd; /* --takeover: the old process's socket */
    if (inherited >= 0)
        rc = uv_tcp_open(&a->listener, inherited);
    else
        rc = uv_tcp_bind(&a->listener, (const struct sockaddr *)&cfg->admin.addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&a->listener, 128, on_connection);
    if (rc == 0)
        uv_fileno((uv_handle_t *)&a->listener, &w->shared->admin_fd);
    if (rc != 0) {
        snprintf(err, errlen, "cannot listen on admin %s: %s", cfg->admin.text, uv_strerror(rc));
        uv_close((uv_handle_t *)&a->listener, (uv_close_cb)free);
        return rc;
    }
    w->admin = a;
    w->admin_close = admin_close;
    return 0;
}
