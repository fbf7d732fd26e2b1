/* The h2 stage: an intercepted client that negotiated h2. Each client stream is a transaction
 * of its own: checkpoint 1 with its method and :authority, a 403 on that stream alone when
 * denied, one access-log line when it closes. When the origin chose h2, allowed streams map one
 * to one onto streams of the origin connection; when it chose HTTP/1.1, h1_origin.c gives each
 * concurrent stream a kept-alive origin connection. Bodies pass through per-stream buffers
 * whose size the flow-control windows bound: a window reopens only when its bytes were framed
 * (or written) for the other leg. */
#include <nghttp2/nghttp2.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h1_origin.h"
#include "h2_conn.h"
#include "h2_internal.h"
#include "session.h"
#include "tls_origin.h"
#include "url.h"
#include "verdict.h"
#include "worker.h"

#define H2_TICK_MS 1000
#define H2_BATCH   16384 /* bytes of frames per write: one TLS record */

extern const stage h2_stage;

static h2_state *state(session *s)
{
    return s->st;
}

static uint64_t now(session *s)
{
    return uv_now(&s->w->loop);
}

/* ---- small helpers ---- */

int h2_bytes_add(bytes *b, const uint8_t *p, size_t n)
{
    if (n == 0)
        return 0;
    if (b->off && b->off == b->len)
        b->off = b->len = 0;
    if (b->len + n > b->cap) {
        if (b->off) {
            memmove(b->p, b->p + b->off, b->len - b->off);
            b->len -= b->off;
            b->off = 0;
        }
        size_t cap = b->cap ? b->cap : 16384;
        while (cap < b->len + n)
            cap *= 2;
        if (cap > b->cap) {
            char *q = realloc(b->p, cap);
            if (!q)
                return -1;
            b->p = q;
            b->cap = cap;
        }
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
    return 0;
}

static int headers_copy(headers *h, const nghttp2_nv *nv, size_t n)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += nv[i].namelen + nv[i].valuelen;
    h->nv = calloc(n ? n : 1, sizeof *h->nv);
    h->mem = malloc(total ? total : 1);
    if (!h->nv || !h->mem) {
        free(h->nv);
        free(h->mem);
        h->nv = NULL;
        h->mem = NULL;
        return -1;
    }
    char *p = h->mem;
    for (size_t i = 0; i < n; i++) {
        h->nv[i] = nv[i];
        h->nv[i].name = (uint8_t *)memcpy(p, nv[i].name, nv[i].namelen);
        p += nv[i].namelen;
        h->nv[i].value = (uint8_t *)memcpy(p, nv[i].value, nv[i].valuelen);
        p += nv[i].valuelen;
    }
    h->n = n;
    return 0;
}

static void headers_free(headers *h)
{
    free(h->nv);
    free(h->mem);
    memset(h, 0, sizeof *h);
}

static bool nv_is(const nghttp2_nv *nv, const char *name)
{
    size_t n = strlen(name);
    return nv->namelen == n && memcmp(nv->name, name, n) == 0;
}

/* The value of the first field called name, copied into out (empty when absent). */
static void nv_get(const nghttp2_nv *nv, size_t n, const char *name, char *out, size_t outlen)
{
    out[0] = '\0';
    for (size_t i = 0; i < n; i++)
        if (nv_is(&nv[i], name)) {
            snprintf(out, outlen, "%.*s", (int)nv[i].valuelen, (const char *)nv[i].value);
            return;
        }
}

/* nv and a Via field naming the proxy (RFC 9110 7.6.3), in a new array (names and values
 * shared with nv). NULL when out of memory. */
static nghttp2_nv *with_via(const nghttp2_nv *nv, size_t n, const char *via)
{
    nghttp2_nv *all = malloc((n + 1) * sizeof *all);
    if (!all)
        return NULL;
    memcpy(all, nv, n * sizeof *nv);
    all[n] = (nghttp2_nv){(uint8_t *)"via", (uint8_t *)via, 3, strlen(via), NGHTTP2_NV_FLAG_NONE};
    return all;
}

static h2_stream *by_client(session *s, int32_t id)
{
    return nghttp2_session_get_stream_user_data(h2_conn_session(state(s)->client), id);
}

static h2_stream *by_origin(session *s, int32_t id)
{
    return nghttp2_session_get_stream_user_data(h2_conn_session(state(s)->origin), id);
}

/* ---- bodies: nghttp2 pulls them from the stream's buffers ---- */

static ssize_t pull(bytes *b, bool end, headers *trailers, nghttp2_session *ng, int32_t id,
                    uint8_t *buf, size_t length, uint32_t *flags, h2_conn *source, int32_t sid,
                    uint64_t *counted)
{
    size_t have = b->len - b->off;
    size_t n = have < length ? have : length;
    if (n == 0 && !end)
        return NGHTTP2_ERR_DEFERRED;
    if (n) {
        memcpy(buf, b->p + b->off, n);
        b->off += n;
    }
    *counted += n;
    /* The bytes are now framed for the other leg: the sender may send as many again. */
    if (source && sid > 0)
        h2_conn_consume(source, sid, n);
    if (b->off == b->len && end) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        if (trailers->n) {
            *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
            nghttp2_submit_trailer(ng, id, trailers->nv, trailers->n);
        }
    }
    return (ssize_t)n;
}

static ssize_t pull_request(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t length,
                            uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    (void)ud;
    h2_stream *st = src->ptr;
    h2_state *hs = state(st->s);
    return pull(&st->req, st->req_end, &st->req_trailers, ng, id, buf, length, flags, hs->client,
                st->cid, &st->t.bytes_from_client);
}

static ssize_t pull_response(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t length,
                             uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    (void)ud;
    h2_stream *st = src->ptr;
    h2_state *hs = state(st->s);
    ssize_t n = pull(&st->resp, st->resp_end, &st->resp_trailers, ng, id, buf, length, flags,
                     st->local ? NULL : hs->origin, st->oid, &st->t.bytes_from_server);
    if (n > 0 && st->h1)
        h1_response_pulled(st);
    return n;
}

/* ---- streams ---- */

static void stream_free(session *s, h2_stream *st)
{
    h2_state *hs = state(s);
    if (st->t.open) {
        st->t.started_ms = st->t.started_ms ? st->t.started_ms : now(s);
        txn_log_stream(s, &st->t);
    }
    txn_free(&st->t);
    /* Bytes still buffered were never delivered: their connection windows reopen now. */
    if (hs->client)
        h2_conn_consume(hs->client, st->cid, st->req.len - st->req.off);
    if (hs->origin && !st->local && st->oid > 0)
        h2_conn_consume(hs->origin, st->oid, st->resp.len - st->resp.off);
    if (st->h1)
        h1_stream_gone(st);
    if (st->origin_open && hs->origin) {
        nghttp2_session_set_stream_user_data(h2_conn_session(hs->origin), st->oid, NULL);
        nghttp2_submit_rst_stream(h2_conn_session(hs->origin), NGHTTP2_FLAG_NONE, st->oid,
                                  NGHTTP2_CANCEL);
    }
    if (hs->client)
        nghttp2_session_set_stream_user_data(h2_conn_session(hs->client), st->cid, NULL);
    if (st->prev)
        st->prev->next = st->next;
    else
        hs->streams = st->next;
    if (st->next)
        st->next->prev = st->prev;
    hs->nstreams--;
    s->streams_open = hs->nstreams;
    free(st->req.p);
    free(st->resp.p);
    headers_free(&st->req_trailers);
    headers_free(&st->resp_trailers);
    free(st);
}

/* The proxy answers the stream itself (denial, unusable origin). */
static void answer(session *s, h2_stream *st, int status, const char *body)
{
    h2_state *hs = state(s);
    st->local = true;
    st->t.status = status;
    char code[8];
    snprintf(code, sizeof code, "%d", status);
    nghttp2_nv nv[] = {
        {(uint8_t *)":status", (uint8_t *)code, 7, strlen(code), NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)"content-type", (uint8_t *)"text/plain", 12, 10, NGHTTP2_NV_FLAG_NONE},
    };
    if (h2_bytes_add(&st->resp, (const uint8_t *)body, strlen(body)) != 0) {
        nghttp2_submit_rst_stream(h2_conn_session(hs->client), NGHTTP2_FLAG_NONE, st->cid,
                                  NGHTTP2_INTERNAL_ERROR);
        return;
    }
    st->t.bytes_from_server = 0;
    st->resp_end = true;
    st->resp_submitted = true;
    nghttp2_data_provider prov = {.source.ptr = st, .read_callback = pull_response};
    nghttp2_submit_response(h2_conn_session(hs->client), st->cid, nv, 2, &prov);
}

/* Checkpoint 1 for one stream; the stream's own transaction stands in for the session's. */
static bool stream_policy(session *s, h2_stream *st, const char *host)
{
    txn connection = s->t;
    s->t = st->t;
    bool ok = session_policy(s, POLICY_CP_REQUEST, host, st->t.method, NULL);
    st->t = s->t;
    s->t = connection;
    return ok;
}

static void strip_trailing_dot(char *host)
{
    size_t n = strlen(host);
    if (n > 1 && host[n - 1] == '.')
        host[n - 1] = '\0';
}

static void on_request(session *s, int32_t id, const nghttp2_nv *nv, size_t n, bool end_stream)
{
    h2_state *hs = state(s);
    nghttp2_session *cng = h2_conn_session(hs->client);
    h2_stream *st = calloc(1, sizeof *st);
    if (!st) {
        nghttp2_submit_rst_stream(cng, NGHTTP2_FLAG_NONE, id, NGHTTP2_INTERNAL_ERROR);
        return;
    }
    st->s = s;
    st->cid = id;
    st->next = hs->streams;
    if (hs->streams)
        hs->streams->prev = st;
    hs->streams = st;
    hs->nstreams++;
    s->streams_open = hs->nstreams;
    s->streams_total++;
    nghttp2_session_set_stream_user_data(cng, id, st);
    st->req_end = end_stream;

    char method[24], authority[300], path[4096];
    nv_get(nv, n, ":method", method, sizeof method);
    nv_get(nv, n, ":authority", authority, sizeof authority);
    if (!authority[0])
        nv_get(nv, n, "host", authority, sizeof authority);
    nv_get(nv, n, ":path", path, sizeof path);
    st->t.open = true;
    st->t.is_request = true;
    st->t.http_version = "2";
    st->t.started_ms = now(s);
    snprintf(st->t.method, sizeof st->t.method, "%s", method);

    url_parts u;
    char host[256];
    if (authority[0] && url_parse_host_header(authority, &u) == 0)
        snprintf(host, sizeof host, "%s", u.host);
    else
        snprintf(host, sizeof host, "%s", s->sni[0] ? s->sni : s->target_host);
    strip_trailing_dot(host);
    bool v6 = strchr(host, ':') != NULL;
    uint16_t port = s->target_port;
    int r = port == 443 ? asprintf(&st->t.url, v6 ? "https://[%s]%s" : "https://%s%s", host, path)
                        : asprintf(&st->t.url, v6 ? "https://[%s]:%u%s" : "https://%s:%u%s", host,
                                   port, path);
    if (r < 0)
        st->t.url = NULL;

    if (strcmp(method, "CONNECT") == 0) {
        /* RFC 8441 extended CONNECT (and plain CONNECT) inside h2 is not relayed. */
        st->t.action = "error";
        st->t.error = strdup("CONNECT inside HTTP/2 is not supported");
        answer(s, st, 501, "CONNECT inside HTTP/2 is not supported by this proxy\n");
        return;
    }
    if (!stream_policy(s, st, host)) {
        char body[400];
        if (st->t.rule.file)
            snprintf(body, sizeof body, "denied by policy rule %s:%d\n", st->t.rule.file,
                     st->t.rule.line);
        else
            snprintf(body, sizeof body, "denied by the default policy ([policy] default = deny)\n");
        answer(s, st, 403, body);
        return;
    }
    if (s->upstream_error || hs->origin_gone) {
        const char *why = s->upstream_error ? s->upstream_error : "the origin connection closed";
        st->t.action = "error";
        st->t.error = strdup(why);
        char body[600];
        snprintf(body, sizeof body, "%s\n", why);
        answer(s, st, 502, body);
        return;
    }
    if (hs->h1) {
        if (h1_pool_start(hs->h1, st, nv, n, end_stream) != 0) {
            st->t.action = "error";
            st->t.error = strdup("cannot open a connection to the origin");
            answer(s, st, 502, "cannot open a connection to the origin\n");
        }
        return;
    }
    nghttp2_data_provider prov = {.source.ptr = st, .read_callback = pull_request};
    nghttp2_nv *all = with_via(nv, n, "2 handoff");
    int32_t oid = all ? nghttp2_submit_request(h2_conn_session(hs->origin), NULL, all, n + 1,
                                               end_stream ? NULL : &prov, st)
                      : NGHTTP2_ERR_NOMEM;
    free(all);
    if (oid < 0) {
        st->t.action = "error";
        st->t.error = strdup(nghttp2_strerror(oid));
        answer(s, st, 502, "the origin connection cannot take another stream\n");
        return;
    }
    st->oid = oid;
    st->origin_open = true;
}

/* ---- what the HTTP/1.1 origin side reports (h2_internal.h) ---- */

void h2_stream_response_head(h2_stream *st, const nghttp2_nv *nv, size_t n, bool end)
{
    session *s = st->s;
    int code = 0;
    for (size_t i = 0; i < n; i++)
        if (nv_is(&nv[i], ":status"))
            code = atoi((const char *)nv[i].value);
    st->t.status = code;
    st->resp_submitted = true;
    st->resp_end = end;
    nghttp2_data_provider prov = {.source.ptr = st, .read_callback = pull_response};
    nghttp2_submit_response(h2_conn_session(state(s)->client), st->cid, nv, n, end ? NULL : &prov);
}

void h2_stream_response_data(h2_stream *st, const uint8_t *p, size_t n, bool end)
{
    session *s = st->s;
    if (n && h2_bytes_add(&st->resp, p, n) != 0) {
        h2_stream_origin_failed(st, "out of memory");
        return;
    }
    if (end)
        st->resp_end = true;
    nghttp2_session_resume_data(h2_conn_session(state(s)->client), st->cid);
}

void h2_stream_response_trailers(h2_stream *st, const nghttp2_nv *nv, size_t n)
{
    if (!st->resp_trailers.n && headers_copy(&st->resp_trailers, nv, n) != 0)
        h2_stream_origin_failed(st, "out of memory");
}

void h2_stream_request_consumed(h2_stream *st, size_t n)
{
    st->t.bytes_from_client += n;
    h2_conn_consume(state(st->s)->client, st->cid, n);
}

void h2_stream_origin_failed(h2_stream *st, const char *why)
{
    session *s = st->s;
    if (!st->t.error) {
        st->t.action = "error";
        st->t.error = strdup(why);
    }
    if (!st->resp_submitted) {
        char body[300];
        snprintf(body, sizeof body, "%s\n", why);
        answer(s, st, 502, body);
        return;
    }
    if (!st->resp_end)
        nghttp2_submit_rst_stream(h2_conn_session(state(s)->client), NGHTTP2_FLAG_NONE, st->cid,
                                  NGHTTP2_INTERNAL_ERROR);
}

/* ---- events of the client connection ---- */

static void client_headers(void *ud, int32_t id, const nghttp2_nv *nv, size_t n, bool end_stream)
{
    session *s = ud;
    h2_stream *st = by_client(s, id);
    if (!st) {
        /* A block that opens a stream is its request (nghttp2 checked the pseudo-headers,
         * which may come in any order). */
        on_request(s, id, nv, n, end_stream);
        return;
    }
    /* Trailers (gRPC): they end the request body. */
    if (!st->local && !st->req_end && headers_copy(&st->req_trailers, nv, n) == 0) {
        st->req_end = true;
        if (st->h1)
            h1_request_more(st);
        else if (st->origin_open)
            nghttp2_session_resume_data(h2_conn_session(state(s)->origin), st->oid);
    }
}

static void client_data(void *ud, int32_t id, const uint8_t *p, size_t len)
{
    session *s = ud;
    h2_state *hs = state(s);
    h2_stream *st = by_client(s, id);
    if (!st || (!st->origin_open && !st->h1)) {
        /* Nobody takes these bytes: the window reopens at once. */
        h2_conn_consume(hs->client, id, len);
        return;
    }
    if (h2_bytes_add(&st->req, p, len) != 0) {
        nghttp2_submit_rst_stream(h2_conn_session(hs->client), NGHTTP2_FLAG_NONE, id,
                                  NGHTTP2_INTERNAL_ERROR);
        return;
    }
    if (st->h1)
        h1_request_more(st);
    else
        nghttp2_session_resume_data(h2_conn_session(hs->origin), st->oid);
}

static void client_end(void *ud, int32_t id)
{
    session *s = ud;
    h2_stream *st = by_client(s, id);
    if (!st)
        return;
    st->req_end = true;
    if (st->h1)
        h1_request_more(st);
    else if (st->origin_open)
        nghttp2_session_resume_data(h2_conn_session(state(s)->origin), st->oid);
}

static void client_close(void *ud, int32_t id, uint32_t code)
{
    session *s = ud;
    h2_stream *st = by_client(s, id);
    if (!st)
        return;
    if (code != NGHTTP2_NO_ERROR && !st->t.error) {
        st->t.action = st->t.action ? st->t.action : "error";
        if (asprintf(&st->t.error, "stream reset (%s)", nghttp2_http2_strerror(code)) < 0)
            st->t.error = NULL;
    }
    stream_free(s, st);
}

static const h2_conn_events client_events = {
    .on_headers = client_headers,
    .on_data = client_data,
    .on_end = client_end,
    .on_close = client_close,
};

/* ---- events of the origin connection ---- */

#define H2_MAX_INTERIM 8

static void origin_headers(void *ud, int32_t id, const nghttp2_nv *nv, size_t n, bool end_stream)
{
    session *s = ud;
    h2_state *hs = state(s);
    nghttp2_session *cng = h2_conn_session(hs->client);
    h2_stream *st = by_origin(s, id);
    if (!st)
        return;
    char status[8];
    nv_get(nv, n, ":status", status, sizeof status);
    if (status[0] && !st->resp_submitted) {
        int code = atoi(status);
        if (code >= 100 && code < 200) {
            /* An origin sending 1xx heads forever would queue them for the client unbounded. */
            if (++st->interim > H2_MAX_INTERIM) {
                nghttp2_submit_rst_stream(cng, NGHTTP2_FLAG_NONE, st->cid, NGHTTP2_PROTOCOL_ERROR);
                nghttp2_submit_rst_stream(h2_conn_session(hs->origin), NGHTTP2_FLAG_NONE, id,
                                          NGHTTP2_ENHANCE_YOUR_CALM);
                return;
            }
            nghttp2_submit_headers(cng, NGHTTP2_FLAG_NONE, st->cid, NULL, nv, n, NULL);
            return;
        }
        nghttp2_nv *all = with_via(nv, n, "2 handoff");
        if (!all) {
            nghttp2_submit_rst_stream(cng, NGHTTP2_FLAG_NONE, st->cid, NGHTTP2_INTERNAL_ERROR);
            return;
        }
        st->t.status = code;
        st->resp_submitted = true;
        st->resp_end = end_stream;
        nghttp2_data_provider prov = {.source.ptr = st, .read_callback = pull_response};
        nghttp2_submit_response(cng, st->cid, all, n + 1, end_stream ? NULL : &prov);
        free(all);
        return;
    }
    /* Trailers: they end the response body. */
    if (st->resp_submitted && !st->resp_end && headers_copy(&st->resp_trailers, nv, n) == 0) {
        st->resp_end = true;
        nghttp2_session_resume_data(cng, st->cid);
    }
}

static void origin_data(void *ud, int32_t id, const uint8_t *p, size_t len)
{
    session *s = ud;
    h2_state *hs = state(s);
    h2_stream *st = by_origin(s, id);
    if (!st || !st->resp_submitted) {
        h2_conn_consume(hs->origin, id, len);
        return;
    }
    if (h2_bytes_add(&st->resp, p, len) != 0) {
        nghttp2_submit_rst_stream(h2_conn_session(hs->origin), NGHTTP2_FLAG_NONE, id,
                                  NGHTTP2_INTERNAL_ERROR);
        return;
    }
    nghttp2_session_resume_data(h2_conn_session(hs->client), st->cid);
}

static void origin_end(void *ud, int32_t id)
{
    session *s = ud;
    h2_stream *st = by_origin(s, id);
    if (!st)
        return;
    st->resp_end = true;
    nghttp2_session_resume_data(h2_conn_session(state(s)->client), st->cid);
}

static void origin_close(void *ud, int32_t id, uint32_t code)
{
    session *s = ud;
    h2_state *hs = state(s);
    h2_stream *st = by_origin(s, id);
    if (!st)
        return;
    st->origin_open = false;
    nghttp2_session_set_stream_user_data(h2_conn_session(hs->origin), id, NULL);
    if (code == NGHTTP2_NO_ERROR && st->resp_end)
        return;
    /* The origin reset the stream (or ended it without a response): so does the client. */
    if (!st->t.error) {
        st->t.action = "error";
        if (asprintf(&st->t.error, "origin reset the stream (%s)", nghttp2_http2_strerror(code)) <
            0)
            st->t.error = NULL;
    }
    nghttp2_submit_rst_stream(h2_conn_session(hs->client), NGHTTP2_FLAG_NONE, st->cid,
                              code == NGHTTP2_NO_ERROR ? NGHTTP2_INTERNAL_ERROR : code);
}

static const h2_conn_events origin_events = {
    .on_headers = origin_headers,
    .on_data = origin_data,
    .on_end = origin_end,
    .on_close = origin_close,
};

/* ---- moving bytes ---- */

/* Frames what each connection has queued onto its leg, as long as the leg's write queue is
 * short: a full queue leaves DATA in the buffers (and the windows closed) until on_drain. */
static void flush(session *s, h2_conn *c, leg *l)
{
    (void)s;
    /* Frames are gathered so that a TLS record and a write carry many of them. */
    char batch[H2_BATCH];
    size_t len = 0;
    while (c && l->open && !l->closing && l->queued + len < LEG_HIGH_WATER) {
        const uint8_t *out;
        ssize_t n = h2_conn_next_output(c, &out);
        if (n <= 0)
            break;
        if (len + (size_t)n > sizeof batch) {
            if (len && leg_write(l, batch, len) != 0)
                return;
            len = 0;
        }
        if ((size_t)n > sizeof batch) {
            if (leg_write(l, (const char *)out, (size_t)n) != 0)
                return;
            continue;
        }
        memcpy(batch + len, out, (size_t)n);
        len += (size_t)n;
    }
    if (len)
        leg_write(l, batch, len);
}

/* Streams the origin connection can no longer answer are reset. */
static void origin_lost(session *s, const char *why)
{
    h2_state *hs = state(s);
    if (hs->origin_gone)
        return;
    hs->origin_gone = true;
    for (h2_stream *st = hs->streams; st; st = st->next) {
        if (!st->origin_open)
            continue;
        st->origin_open = false;
        if (st->resp_end)
            continue;
        if (!st->t.error) {
            st->t.action = "error";
            st->t.error = strdup(why);
        }
        nghttp2_submit_rst_stream(h2_conn_session(hs->client), NGHTTP2_FLAG_NONE, st->cid,
                                  NGHTTP2_INTERNAL_ERROR);
    }
    /* No new streams: the client opens a new connection (and a new origin connection). */
    if (!hs->goaway_sent) {
        hs->goaway_sent = true;
        h2_conn_goaway(hs->client, NGHTTP2_NO_ERROR);
    }
}

/* Sends what is queued, then ends the session when the client connection is over. */
static void pump(session *s)
{
    h2_state *hs = state(s);
    if (hs->pumping)
        return;
    hs->pumping = true;
    flush(s, hs->origin, &s->origin);
    flush(s, hs->client, &s->client);
    /* Sending to the client may have opened windows towards the origin. */
    flush(s, hs->origin, &s->origin);
    hs->pumping = false;
    if (!hs->origin_gone && hs->origin && h2_conn_done(hs->origin))
        origin_lost(s, "the origin connection ended");
    /* The origin takes no new streams: neither do we, so the client opens a new connection
     * (and with it a new origin connection) for its next requests. */
    if (!hs->goaway_sent && hs->origin && h2_conn_goaway_received(hs->origin)) {
        hs->goaway_sent = true;
        h2_conn_goaway(hs->client, NGHTTP2_NO_ERROR);
        flush(s, hs->client, &s->client);
    }
    if (h2_conn_done(hs->client) || (hs->goaway_sent && hs->nstreams == 0)) {
        flush(s, hs->client, &s->client);
        session_end(s);
    }
}

void h2_stage_pump(session *s)
{
    if (s->ending || s->stage != &h2_stage)
        return;
    pump(s);
}

static void fail_connection(session *s, h2_conn *c, bool client)
{
    const char *why = h2_conn_error(c);
    txn_fail(s, "HTTP/2 %s connection: %s", client ? "client" : "origin",
             why ? why : "protocol error");
}

static void h2_on_data(session *s, leg *l, const char *buf, ssize_t n)
{
    h2_state *hs = state(s);
    hs->last_activity_ms = now(s);
    if (n < 0) {
        if (l->is_client) {
            if (hs->nstreams)
                txn_note(s, "client closed the connection with %u streams open", hs->nstreams);
            session_end(s);
            return;
        }
        if (hs->origin) {
            origin_lost(s, "the origin closed the connection");
            pump(s);
        }
        return;
    }
    h2_conn *c = l->is_client ? hs->client : hs->origin;
    if (!c)
        return; /* the HTTP/1.1 origin's first leg, closing */
    if (h2_conn_recv(c, (const uint8_t *)buf, (size_t)n, now(s)) != 0) {
        fail_connection(s, c, l->is_client);
        if (!l->is_client)
            origin_lost(s, "the origin connection failed");
        else
            leg_want_read(&s->client, false);
    }
    if (s->ending)
        return;
    pump(s);
}

static void h2_on_drain(session *s, leg *l)
{
    (void)l;
    pump(s);
}

static void h2_on_deadline(session *s)
{
    h2_state *hs = state(s);
    uint64_t idle_ms = (uint64_t)s->w->shared->cfg.idle_timeout_s * 1000;
    bool stopping = atomic_load(&s->w->shared->stopping);
    /* Idle means no byte from either side, streams open or not: a client that never opens
     * its windows holds nothing for longer than idle_timeout_s. */
    if (!hs->goaway_sent && (stopping || now(s) - hs->last_activity_ms >= idle_ms)) {
        /* Graceful: open streams finish, new ones are refused by the client itself. */
        hs->goaway_sent = true;
        h2_conn_goaway(hs->client, NGHTTP2_NO_ERROR);
        if (!stopping) {
            txn_note(s, "idle for %d s with %u streams open", s->w->shared->cfg.idle_timeout_s,
                     hs->nstreams);
            /* The open streams get one more idle period to finish (or to be failed by the
             * origin pool's own deadline) before the connection is cut. */
            hs->last_activity_ms = now(s);
        }
    } else if (hs->goaway_sent && now(s) - hs->last_activity_ms >= idle_ms) {
        session_end(s);
        return;
    }
    if (hs->h1)
        h1_pool_tick(hs->h1, now(s), idle_ms);
    session_deadline(s, H2_TICK_MS);
    pump(s);
}

static void h2_enter(session *s, const char *replay, size_t len)
{
    h2_state *hs = state(s);
    size_t max_header = (size_t)s->w->shared->cfg.max_header_bytes;
    hs->client = h2_conn_new(true, max_header, &client_events, s);
    bool origin_h2 = !s->upstream_error && tls_origin_h2(s);
    if (origin_h2) {
        hs->origin = h2_conn_new(false, max_header, &origin_events, s);
    } else if (!s->upstream_error) {
        /* The origin chose HTTP/1.1: streams get connections of their own to the address
         * the origin leg reached, which is then closed. */
        struct sockaddr_storage addr;
        int alen = sizeof addr;
        if (uv_tcp_getpeername(&s->origin.tcp, (struct sockaddr *)&addr, &alen) == 0)
            hs->h1 = h1_pool_new(s, (struct sockaddr *)&addr);
        else
            hs->origin_gone = true;
        leg_close_graceful(&s->origin);
    }
    if (!hs->client || (origin_h2 && !hs->origin) ||
        (!origin_h2 && !s->upstream_error && !hs->h1 && !hs->origin_gone)) {
        session_abort(s, "out of memory");
        return;
    }
    hs->last_activity_ms = now(s);
    leg_want_read(&s->client, true);
    if (origin_h2)
        leg_want_read(&s->origin, true);
    if (s->upstream_error)
        hs->origin_gone = true;
    session_deadline(s, H2_TICK_MS);
    if (len)
        h2_on_data(s, &s->client, replay, (ssize_t)len);
    else
        pump(s);
}

static void h2_leave(session *s, void *old)
{
    /* h2 is a last stage: it leaves only when the session ends, with s->st still its state. */
    h2_state *hs = old;
    while (hs->streams) {
        h2_stream *st = hs->streams;
        if (st->t.open && !st->t.error) {
            st->t.action = st->t.action ? st->t.action : "error";
            st->t.error = strdup("the connection ended before the stream did");
        }
        stream_free(s, st);
    }
    h1_pool_free(hs->h1);
    hs->h1 = NULL;
    h2_conn_free(hs->client);
    h2_conn_free(hs->origin);
    hs->client = hs->origin = NULL;
}

const stage h2_stage = {
    .name = "h2",
    .state_size = sizeof(h2_state),
    .enter = h2_enter,
    .on_data = h2_on_data,
    .on_drain = h2_on_drain,
    .on_deadline = h2_on_deadline,
    .leave = h2_leave,
};
