/* libFuzzer target: arbitrary bytes from a client to the server end of the h2 session wrapper,
 * in chunks, with requests answered (so responses, window updates and resets are framed too).
 * An odd first byte starts with a valid preface and SETTINGS so the fuzzer reaches the frames
 * behind them at once. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "h2_conn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
    h2_conn *c;
    size_t body_left[16];
} fuzz_state;

static ssize_t body(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t length, uint32_t *flags,
                    nghttp2_data_source *src, void *ud)
{
    (void)ng;
    (void)id;
    (void)ud;
    size_t *left = src->ptr;
    size_t n = *left < length ? *left : length;
    memset(buf, 'x', n);
    *left -= n;
    if (*left == 0)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

static void on_headers(void *ud, int32_t id, const nghttp2_nv *nv, size_t n, bool end_stream)
{
    (void)nv;
    (void)end_stream;
    fuzz_state *f = ud;
    if (!n || nghttp2_session_get_stream_user_data(h2_conn_session(f->c), id))
        return; /* trailers */
    nghttp2_session_set_stream_user_data(h2_conn_session(f->c), id, f);
    size_t *left = &f->body_left[(uint32_t)id % 16];
    *left = 70000; /* more than one window: flow control is exercised */
    nghttp2_nv status = {(uint8_t *)":status", (uint8_t *)"200", 7, 3, NGHTTP2_NV_FLAG_NONE};
    nghttp2_data_provider prov = {.source.ptr = left, .read_callback = body};
    nghttp2_submit_response(h2_conn_session(f->c), id, &status, 1, &prov);
}

static void on_data(void *ud, int32_t id, const uint8_t *p, size_t len)
{
    (void)p;
    fuzz_state *f = ud;
    h2_conn_consume(f->c, id, len);
}

static void on_end(void *ud, int32_t id)
{
    (void)ud;
    (void)id;
}

static void on_close(void *ud, int32_t id, uint32_t code)
{
    (void)ud;
    (void)id;
    (void)code;
}

static const h2_conn_events events = {on_headers, on_data, on_end, on_close};

static void drain(h2_conn *c)
{
    const uint8_t *out;
    for (int i = 0; i < 64 && h2_conn_next_output(c, &out) > 0; i++)
        ;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char start[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\4\0\0\0\0\0";
    fuzz_state f = {0};
    f.c = h2_conn_new(true, 4096, &events, &f);
    if (!f.c)
        return 0;
    uint64_t now = 0;
    if (size && (data[0] & 1))
        h2_conn_recv(f.c, (const uint8_t *)start, sizeof start - 1, now);
    size_t off = size ? 1 : 0;
    size_t chunk = size ? (size_t)(data[0] >> 1) + 1 : 1;
    while (off < size) {
        size_t n = size - off < chunk ? size - off : chunk;
        int rv = h2_conn_recv(f.c, data + off, n, now);
        drain(f.c);
        if (rv != 0)
            break;
        off += n;
        now += 3;
    }
    if (h2_conn_error(f.c) && !h2_conn_error(f.c)[0])
        abort();
    h2_conn_free(f.c);
    return 0;
}
