/* One nghttp2 session with the proxy's limits: header blocks bounded by max_header_bytes,
 * CONTINUATION frames counted, and token buckets for the frames a peer can send for free
 * (RST_STREAM, SETTINGS, PING, PRIORITY, empty DATA). A peer that overdraws one gets GOAWAY
 * ENHANCE_YOUR_CALM: the work an attacker causes stays proportional to a bucket's size. */
#include "h2_conn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

/* A burst of `burst` frames, then `rate` frames a second. */
typedef struct {
    double tokens;
    uint64_t last_ms;
    double burst, rate;
    const char *what;
} bucket;

enum { B_RST, B_SETTINGS, B_PING, B_PRIORITY, B_EMPTY_DATA, B_COUNT };

typedef struct {
    size_t name_off, name_len, value_off, value_len;
} field;

struct h2_conn {
    nghttp2_session *ng;
    const h2_conn_events *ev;
    void *ud;
    size_t max_header_bytes;
    uint64_t now_ms;
    bucket buckets[B_COUNT];
    /* The header block being received (blocks never interleave on a connection). */
    char *mem;
    size_t mem_len, mem_cap;
    field *fields;
    size_t nfields, fields_cap;
    size_t block_bytes; /* RFC 9113 field sizes (name + value + 32) */
    size_t block_raw;   /* compressed bytes of HEADERS and CONTINUATION frames */
    bool calm;          /* a limit was exceeded: GOAWAY ENHANCE_YOUR_CALM */
    bool goaway_received;
    bool failed;
    char error[160];
    char last_ng[160]; /* nghttp2's last complaint, for a fatal error without a reason */
};

static void set_error(h2_conn *c, const char *msg)
{
    if (!c->error[0])
        snprintf(c->error, sizeof c->error, "%s", msg);
}

static int overdrawn(h2_conn *c, const char *why)
{
    c->calm = true;
    snprintf(c->error, sizeof c->error, "%s", why);
    return NGHTTP2_ERR_CALLBACK_FAILURE;
}

/* Takes one token; false when the bucket is empty. */
static bool take(h2_conn *c, int which)
{
    bucket *b = &c->buckets[which];
    if (c->now_ms > b->last_ms) {
        b->tokens += (double)(c->now_ms - b->last_ms) * b->rate / 1000.0;
        if (b->tokens > b->burst)
            b->tokens = b->burst;
        b->last_ms = c->now_ms;
    }
    if (b->tokens < 1.0)
        return false;
    b->tokens -= 1.0;
    return true;
}

static int on_begin_frame(nghttp2_session *ng, const nghttp2_frame_hd *hd, void *ud)
{
    (void)ng;
    h2_conn *c = ud;
    if (hd->type == NGHTTP2_HEADERS)
        c->block_raw = 0;
    if (hd->type == NGHTTP2_HEADERS || hd->type == NGHTTP2_CONTINUATION) {
        c->block_raw += hd->length;
        if (c->block_raw > c->max_header_bytes)
            return overdrawn(c, "header block over max_header_bytes");
    }
    return 0;
}

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *frame, void *ud)
{
    (void)ng;
    (void)frame;
    h2_conn *c = ud;
    c->mem_len = 0;
    c->nfields = 0;
    c->block_bytes = 0;
    return 0;
}

static bool append(h2_conn *c, const uint8_t *p, size_t n, size_t *off)
{
    if (c->mem_len + n + 1 > c->mem_cap) {
        size_t cap = c->mem_cap ? c->mem_cap : 1024;
        while (cap < c->mem_len + n + 1)
            cap *= 2;
        char *m = realloc(c->mem, cap);
        if (!m)
            return false;
        c->mem = m;
        c->mem_cap = cap;
    }
    *off = c->mem_len;
    memcpy(c->mem + c->mem_len, p, n);
    c->mem_len += n;
    c->mem[c->mem_len++] = '\0';
    return true;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags, void *ud)
{
    (void)ng;
    (void)frame;
    (void)flags;
    h2_conn *c = ud;
    c->block_bytes += namelen + valuelen + 32;
    if (c->block_bytes > c->max_header_bytes)
        return overdrawn(c, "header block over max_header_bytes");
    if (c->nfields == c->fields_cap) {
        size_t cap = c->fields_cap ? c->fields_cap * 2 : 32;
        field *f = realloc(c->fields, cap * sizeof *f);
        if (!f)
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        c->fields = f;
        c->fields_cap = cap;
    }
    field *f = &c->fields[c->nfields];
    if (!append(c, name, namelen, &f->name_off) || !append(c, value, valuelen, &f->value_off))
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    f->name_len = namelen;
    f->value_len = valuelen;
    c->nfields++;
    return 0;
}

static int deliver_headers(h2_conn *c, const nghttp2_frame *frame)
{
    nghttp2_nv *nv = calloc(c->nfields ? c->nfields : 1, sizeof *nv);
    if (!nv)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    for (size_t i = 0; i < c->nfields; i++) {
        nv[i].name = (uint8_t *)c->mem + c->fields[i].name_off;
        nv[i].namelen = c->fields[i].name_len;
        nv[i].value = (uint8_t *)c->mem + c->fields[i].value_off;
        nv[i].valuelen = c->fields[i].value_len;
        nv[i].flags = NGHTTP2_NV_FLAG_NONE;
    }
    c->ev->on_headers(c->ud, frame->hd.stream_id, nv, c->nfields,
                      (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0);
    free(nv);
    return 0;
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *frame, void *ud)
{
    (void)ng;
    h2_conn *c = ud;
    bool ack = (frame->hd.flags & NGHTTP2_FLAG_ACK) != 0;
    int which = -1;
    switch (frame->hd.type) {
    case NGHTTP2_HEADERS:
        return deliver_headers(c, frame);
    case NGHTTP2_DATA:
        if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)
            c->ev->on_end(c->ud, frame->hd.stream_id);
        else if (frame->hd.length == 0)
            which = B_EMPTY_DATA;
        break;
    case NGHTTP2_RST_STREAM:
        which = B_RST;
        break;
    case NGHTTP2_SETTINGS:
        which = ack ? -1 : B_SETTINGS;
        break;
    case NGHTTP2_PING:
        which = ack ? -1 : B_PING;
        break;
    case NGHTTP2_PRIORITY:
        which = B_PRIORITY;
        break;
    case NGHTTP2_GOAWAY:
        c->goaway_received = true;
        break;
    default:
        break;
    }
    if (which >= 0 && !take(c, which))
        return overdrawn(c, c->buckets[which].what);
    return 0;
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *ud)
{
    (void)ng;
    (void)flags;
    h2_conn *c = ud;
    c->ev->on_data(c->ud, id, data, len);
    return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t code, void *ud)
{
    (void)ng;
    h2_conn *c = ud;
    c->ev->on_close(c->ud, id, code);
    return 0;
}

static int on_error(nghttp2_session *ng, int code, const char *msg, size_t len, void *ud)
{
    (void)ng;
    (void)code;
    h2_conn *c = ud;
    snprintf(c->last_ng, sizeof c->last_ng, "%.*s", (int)len, msg);
    return 0;
}

static void init_buckets(h2_conn *c)
{
    static const struct {
        double burst, rate;
        const char *what;
    } limits[B_COUNT] = {
        [B_RST] = {200, 50, "RST_STREAM flood (rapid reset)"},
        [B_SETTINGS] = {50, 5, "SETTINGS flood"},
        [B_PING] = {50, 5, "PING flood"},
        [B_PRIORITY] = {1000, 200, "PRIORITY flood"},
        [B_EMPTY_DATA] = {100, 20, "empty DATA flood"},
    };
    for (int i = 0; i < B_COUNT; i++)
        c->buckets[i] = (bucket){.tokens = limits[i].burst,
                                 .burst = limits[i].burst,
                                 .rate = limits[i].rate,
                                 .what = limits[i].what};
}

h2_conn *h2_conn_new(bool server, size_t max_header_bytes, const h2_conn_events *ev, void *ud)
{
    h2_conn *c = calloc(1, sizeof *c);
    nghttp2_session_callbacks *cb = NULL;
    nghttp2_option *opt = NULL;
    if (!c || nghttp2_session_callbacks_new(&cb) != 0 || nghttp2_option_new(&opt) != 0)
        goto fail;
    c->ev = ev;
    c->ud = ud;
    c->max_header_bytes = max_header_bytes;
    init_buckets(c);
    nghttp2_session_callbacks_set_on_begin_frame_callback(cb, on_begin_frame);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    nghttp2_session_callbacks_set_error_callback2(cb, on_error);
    /* Windows open only as bytes reach the other side (backpressure). */
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_max_continuations(opt, H2_MAX_CONTINUATIONS);
    nghttp2_option_set_stream_reset_rate_limit(opt, 400, 100);
    nghttp2_option_set_max_outbound_ack(opt, 200);
    nghttp2_option_set_max_settings(opt, 16);
    nghttp2_option_set_peer_max_concurrent_streams(opt, H2_MAX_STREAMS);
    int rv = server ? nghttp2_session_server_new2(&c->ng, cb, c, opt)
                    : nghttp2_session_client_new2(&c->ng, cb, c, opt);
    nghttp2_session_callbacks_del(cb);
    nghttp2_option_del(opt);
    cb = NULL;
    opt = NULL;
    if (rv != 0)
        goto fail;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, H2_MAX_STREAMS},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, H2_STREAM_WINDOW},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, (uint32_t)max_header_bytes},
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
    };
    /* A server never sends ENABLE_PUSH; a client turns push off with it. */
    size_t niv = server ? 3 : 4;
    if (nghttp2_submit_settings(c->ng, NGHTTP2_FLAG_NONE, iv, niv) != 0 ||
        nghttp2_session_set_local_window_size(c->ng, NGHTTP2_FLAG_NONE, 0, H2_CONNECTION_WINDOW) !=
            0)
        goto fail;
    return c;
fail:
    if (cb)
        nghttp2_session_callbacks_del(cb);
    if (opt)
        nghttp2_option_del(opt);
    h2_conn_free(c);
    return NULL;
}

void h2_conn_free(h2_conn *c)
{
    if (!c)
        return;
    nghttp2_session_del(c->ng);
    free(c->mem);
    free(c->fields);
    free(c);
}

nghttp2_session *h2_conn_session(h2_conn *c)
{
    return c->ng;
}

static uint32_t code_for(h2_conn *c, int rv)
{
    if (c->calm)
        return NGHTTP2_ENHANCE_YOUR_CALM;
    switch (rv) {
    case NGHTTP2_ERR_BAD_CLIENT_MAGIC:
        set_error(c, "invalid HTTP/2 connection preface");
        return NGHTTP2_PROTOCOL_ERROR;
    case NGHTTP2_ERR_FLOODED:
        set_error(c, "flood of frames that need an answer");
        return NGHTTP2_ENHANCE_YOUR_CALM;
    case NGHTTP2_ERR_TOO_MANY_CONTINUATIONS:
        set_error(c, "CONTINUATION flood");
        return NGHTTP2_ENHANCE_YOUR_CALM;
    case NGHTTP2_ERR_HEADER_COMP:
        set_error(c, "HPACK decoding failed");
        return NGHTTP2_COMPRESSION_ERROR;
    case NGHTTP2_ERR_NOMEM:
        set_error(c, "out of memory");
        return NGHTTP2_INTERNAL_ERROR;
    default:
        set_error(c, c->last_ng[0] ? c->last_ng : nghttp2_strerror(rv));
        return NGHTTP2_PROTOCOL_ERROR;
    }
}

int h2_conn_recv(h2_conn *c, const uint8_t *p, size_t n, uint64_t now_ms)
{
    if (c->failed)
        return -1;
    c->now_ms = now_ms;
    ssize_t rv = nghttp2_session_mem_recv(c->ng, p, n);
    if (rv >= 0)
        return 0;
    c->failed = true;
    nghttp2_session_terminate_session(c->ng, code_for(c, (int)rv));
    return -1;
}

ssize_t h2_conn_next_output(h2_conn *c, const uint8_t **out)
{
    ssize_t n = nghttp2_session_mem_send(c->ng, out);
    if (n < 0) {
        c->failed = true;
        set_error(c, nghttp2_strerror((int)n));
        return -1;
    }
    return n;
}

void h2_conn_consume(h2_conn *c, int32_t id, size_t n)
{
    if (n)
        nghttp2_session_consume(c->ng, id, n);
}

void h2_conn_goaway(h2_conn *c, uint32_t code)
{
    if (code == NGHTTP2_NO_ERROR)
        nghttp2_submit_goaway(c->ng, NGHTTP2_FLAG_NONE,
                              nghttp2_session_get_last_proc_stream_id(c->ng), code, NULL, 0);
    else
        nghttp2_session_terminate_session(c->ng, code);
}

bool h2_conn_done(h2_conn *c)
{
    return !nghttp2_session_want_read(c->ng) && !nghttp2_session_want_write(c->ng);
}

const char *h2_conn_error(const h2_conn *c)
{
    return c->error[0] ? c->error : NULL;
}

bool h2_conn_goaway_received(const h2_conn *c)
{
    return c->goaway_received;
}

int32_t h2_conn_last_stream(h2_conn *c)
{
    return nghttp2_session_get_last_proc_stream_id(c->ng);
}
