/* The nghttp2 session wrapper's limits (SPEC 6.1): what reaches the owner, and which floods end
 * the connection with which GOAWAY code, after how much work. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "h2_conn.h"

#define PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

typedef struct {
    h2_conn *c;
    int requests;
    char last_path[64];
    size_t data_bytes;
    int closes;
} owner;

static void on_headers(void *ud, int32_t id, const nghttp2_nv *nv, size_t n, bool end_stream)
{
    (void)id;
    (void)end_stream;
    owner *o = ud;
    o->requests++;
    for (size_t i = 0; i < n; i++)
        if (nv[i].namelen == 5 && memcmp(nv[i].name, ":path", 5) == 0)
            snprintf(o->last_path, sizeof o->last_path, "%.*s", (int)nv[i].valuelen,
                     (const char *)nv[i].value);
}

static void on_data(void *ud, int32_t id, const uint8_t *p, size_t len)
{
    (void)id;
    (void)p;
    ((owner *)ud)->data_bytes += len;
}

static void on_end(void *ud, int32_t id)
{
    (void)ud;
    (void)id;
}

static void on_close(void *ud, int32_t id, uint32_t code)
{
    (void)id;
    (void)code;
    ((owner *)ud)->closes++;
}

static const h2_conn_events events = {on_headers, on_data, on_end, on_close};

/* ---- building frames ---- */

typedef struct {
    uint8_t b[1 << 20];
    size_t n;
} wire;

static void put(wire *w, const void *p, size_t n)
{
    assert_true(w->n + n <= sizeof w->b);
    memcpy(w->b + w->n, p, n);
    w->n += n;
}

static void frame(wire *w, uint8_t type, uint8_t flags, uint32_t stream, const void *payload,
                  size_t len)
{
    uint8_t hd[9] = {(uint8_t)(len >> 16),
                     (uint8_t)(len >> 8),
                     (uint8_t)len,
                     type,
                     flags,
                     (uint8_t)(stream >> 24),
                     (uint8_t)(stream >> 16),
                     (uint8_t)(stream >> 8),
                     (uint8_t)stream};
    put(w, hd, sizeof hd);
    if (len)
        put(w, payload, len);
}

/* A literal field without indexing (RFC 7541 6.2.2); names and values under 127 bytes. */
static size_t literal(uint8_t *out, const char *name, const char *value)
{
    size_t nl = strlen(name), vl = strlen(value), n = 0;
    out[n++] = 0;
    out[n++] = (uint8_t)nl;
    memcpy(out + n, name, nl);
    n += nl;
    out[n++] = (uint8_t)vl;
    memcpy(out + n, value, vl);
    return n + vl;
}

/* GET with :path first (pseudo-headers may come in any order). */
static size_t request_block(uint8_t *out, const char *path)
{
    size_t n = literal(out, ":path", path);
    n += literal(out + n, ":authority", "example.test");
    out[n++] = 0x82; /* :method GET */
    out[n++] = 0x87; /* :scheme https */
    return n;
}

static void start(wire *w)
{
    w->n = 0;
    put(w, PREFACE, strlen(PREFACE));
    frame(w, 4, 0, 0, NULL, 0);
}

/* Everything the session wants to send; the GOAWAY error code in it, or -1. */
static long drain_goaway(h2_conn *c, bool *saw_window_update_for_1)
{
    long code = -1;
    const uint8_t *out;
    ssize_t n;
    uint8_t buf[1 << 16];
    size_t len = 0;
    while ((n = h2_conn_next_output(c, &out)) > 0) {
        assert_true(len + (size_t)n <= sizeof buf);
        memcpy(buf + len, out, (size_t)n);
        len += (size_t)n;
    }
    for (size_t off = 0; off + 9 <= len;) {
        size_t flen = ((size_t)buf[off] << 16) | ((size_t)buf[off + 1] << 8) | buf[off + 2];
        uint8_t type = buf[off + 3];
        uint32_t sid = ((uint32_t)(buf[off + 5] & 0x7f) << 24) | ((uint32_t)buf[off + 6] << 16) |
                       ((uint32_t)buf[off + 7] << 8) | buf[off + 8];
        if (type == 7 && flen >= 8)
            code = ((long)buf[off + 13] << 24) | ((long)buf[off + 14] << 16) |
                   ((long)buf[off + 15] << 8) | buf[off + 16];
        if (type == 8 && sid == 1 && saw_window_update_for_1)
            *saw_window_update_for_1 = true;
        off += 9 + flen;
    }
    return code;
}

static wire w;

static h2_conn *server(owner *o, size_t max_header_bytes)
{
    memset(o, 0, sizeof *o);
    o->c = h2_conn_new(true, max_header_bytes, &events, o);
    assert_non_null(o->c);
    return o->c;
}

/* ---- tests ---- */

static void a_request_reaches_the_owner_whatever_the_pseudo_header_order(void **state)
{
    (void)state;
    owner o;
    h2_conn *c = server(&o, 65536);
    start(&w);
    uint8_t block[256];
    frame(&w, 1, 0x5, 1, block, request_block(block, "/index.html"));
    assert_int_equal(h2_conn_recv(c, w.b, w.n, 0), 0);
    assert_int_equal(o.requests, 1);
    assert_string_equal(o.last_path, "/index.html");
    assert_int_equal(drain_goaway(c, NULL), -1);
    assert_null(h2_conn_error(c));
    h2_conn_free(c);
}

static void a_window_reopens_only_as_bytes_are_consumed(void **state)
{
    (void)state;
    owner o;
    h2_conn *c = server(&o, 65536);
    start(&w);
    uint8_t block[256];
    frame(&w, 1, 0x4, 1, block, request_block(block, "/upload"));
    static uint8_t chunk[16384];
    for (int i = 0; i < 3; i++)
        frame(&w, 0, 0, 1, chunk, sizeof chunk);
    assert_int_equal(h2_conn_recv(c, w.b, w.n, 0), 0);
    assert_int_equal(o.data_bytes, 3 * sizeof chunk);
    bool update = false;
    drain_goaway(c, &update);
    assert_false(update); /* nothing delivered yet: the stream's window stays as it is */
    h2_conn_consume(c, 1, 3 * sizeof chunk);
    drain_goaway(c, &update);
    assert_true(update);
    h2_conn_free(c);
}

static void ping_flood_gets_enhance_your_calm(void **state)
{
    (void)state;
    owner o;
    h2_conn *c = server(&o, 65536);
    start(&w);
    uint8_t opaque[8] = {0};
    for (int i = 0; i < 1000; i++)
        frame(&w, 6, 0, 0, opaque, sizeof opaque);
    assert_int_equal(h2_conn_recv(c, w.b, w.n, 0), -1);
    assert_non_null(strstr(h2_conn_error(c), "PING flood"));
    assert_int_equal(drain_goaway(c, NULL), NGHTTP2_ENHANCE_YOUR_CALM);
    assert_true(h2_conn_done(c));
    h2_conn_free(c);
}

static void pings_spread_over_time_are_fine(void **state)
{
    (void)state;
    owner o;
    h2_conn *c = server(&o, 65536);
    start(&w);
    assert_int_equal(h2_conn_recv(c, w.b, w.n, 0), 0);
    uint8_t opaque[8] = {0};
    /* 40 a second for a minute: under the refill rate once the burst is spent. */
    for (int sec = 0; sec < 60; sec++) {
        w.n = 0;
        for (int i = 0; i < (sec == 0 ? 40 : 4); i++)
            frame(&w, 6, 0, 0, opaque, sizeof opaque);
        assert_int_equal(h2_conn_recv(c, w.b, w.n, (uint64_t)sec * 1000), 0);
        drain_goaway(c, NULL);
    }
    assert_null(h2_conn_error(c));
    h2_conn_free(c);
}

static void rapid_reset_is_stopped_after_a_bounded_number_of_streams(void **state)
{
    (void)state;
    owner o;
    h2_conn *c = server(&o, 65536);
    start(&w);
    uint8_t block[256];
    size_t bl = request_block(block, "/");
    uint8_t cancel[4] = {0, 0, 0, 8};
    for (uint32_t i = 0; i < 2000; i++) {
        frame(&w, 1, 0x5, 1 + 2 * i, block, bl);
        frame(&w, 3, 0, 1 + 2 * i, cancel, sizeof cancel);
    }
    assert_int_equal(h2_conn_recv(c, w.b, w.n, 0), -1);
    assert_non_null(strstr(h2_conn_error(c), "rapid reset"));
    assert_in_range(o.requests, 1, 250);
    assert_int_equal(drain_goaway(c, NULL), NGHTTP2_ENHANCE_YOUR_CALM);
    h2_conn_free(c);
}

static void continuation_flood_is_stopped(void **state)
{
    (void)state;
    owner o;
    h2_conn *c = server(&o, 65536);
    start(&w);
    uint8_t first[2] = {0x82, 0x87};
    frame(&w, 1, 0x1, 1, first, sizeof first);
    uint8_t field[32];
    size_t fl = literal(field, "x-a", "b");
    for (int i = 0; i < 5000; i++)
        frame(&w, 9, 0, 1, field, fl);
    assert_int_equal(h2_conn_recv(c, w.b, w.n, 0), -1);
    assert_int_equal(drain_goaway(c, NULL), NGHTTP2_ENHANCE_YOUR_CALM);
    assert_int_equal(o.requests, 0);
    h2_conn_free(c);
}

static void header_block_over_the_limit_ends_the_connection(void **state)
{
    (void)state;
    owner o;
    h2_conn *c = server(&o, 4096);
    start(&w);
    uint8_t block[16384];
    size_t n = request_block(block, "/");
    char value[101];
    memset(value, 'v', 100);
    value[100] = '\0';
    for (int i = 0; i < 60; i++) {
        char name[16];
        snprintf(name, sizeof name, "x-big-%d", i);
        n += literal(block + n, name, value);
    }
    frame(&w, 1, 0x5, 1, block, n);
    assert_int_equal(h2_conn_recv(c, w.b, w.n, 0), -1);
    assert_non_null(strstr(h2_conn_error(c), "max_header_bytes"));
    assert_int_equal(drain_goaway(c, NULL), NGHTTP2_ENHANCE_YOUR_CALM);
    assert_int_equal(o.requests, 0);
    h2_conn_free(c);
}

static void a_bad_preface_is_a_protocol_error(void **state)
{
    (void)state;
    owner o;
    h2_conn *c = server(&o, 65536);
    const char bad[] = "PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n";
    assert_int_equal(h2_conn_recv(c, (const uint8_t *)bad, strlen(bad), 0), -1);
    assert_non_null(strstr(h2_conn_error(c), "preface"));
    assert_int_equal(drain_goaway(c, NULL), NGHTTP2_PROTOCOL_ERROR);
    h2_conn_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_request_reaches_the_owner_whatever_the_pseudo_header_order),
        cmocka_unit_test(a_window_reopens_only_as_bytes_are_consumed),
        cmocka_unit_test(ping_flood_gets_enhance_your_calm),
        cmocka_unit_test(pings_spread_over_time_are_fine),
        cmocka_unit_test(rapid_reset_is_stopped_after_a_bounded_number_of_streams),
        cmocka_unit_test(continuation_flood_is_stopped),
        cmocka_unit_test(header_block_over_the_limit_ends_the_connection),
        cmocka_unit_test(a_bad_preface_is_a_protocol_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
