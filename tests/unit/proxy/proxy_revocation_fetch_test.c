/* The HTTP client of origin revocation checks, against a tiny server on the same loop
 * (loopback): GET and POST, concurrent fetches of one URL sharing one connection, the size and
 * time bounds, refused connections and unusable URLs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <pthread.h>
#include <time.h>
#include <uv.h>

#include "revocation_fetch.h"

/* ---- a server that answers every request with one canned response ---- */

typedef struct {
    uv_tcp_t listener;
    int port;
    const char *response; /* NULL: read and never answer */
    size_t response_len;
    int accepted;
    char last_request[1024];
    size_t last_len;
} server;

typedef struct {
    uv_tcp_t tcp;
    server *srv;
    uv_write_t wr;
    char buf[4096];
    size_t len;
    bool answered;
} server_conn;

static void conn_closed(uv_handle_t *h)
{
    free(h->data);
}

static void conn_written(uv_write_t *req, int status)
{
    (void)status;
    server_conn *c = req->data;
    uv_close((uv_handle_t *)&c->tcp, conn_closed);
}

static void conn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    server_conn *c = h->data;
    (void)suggested;
    *buf = uv_buf_init(c->buf + c->len, (unsigned)(sizeof c->buf - c->len));
}

static void conn_read(uv_stream_t *stream, ssize_t n, const uv_buf_t *buf)
{
    server_conn *c = stream->data;
    (void)buf;
    if (n < 0) {
        if (!uv_is_closing((uv_handle_t *)&c->tcp))
            uv_close((uv_handle_t *)&c->tcp, conn_closed);
        return;
    }
    c->len += (size_t)n;
    memcpy(c->srv->last_request, c->buf, c->len < 1023 ? c->len : 1023);
    c->srv->last_len = c->len;
    const char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
    if (!end || c->answered || !c->srv->response)
        return;
    /* A POST's body is the Content-Length after the head. */
    const char *cl = memmem(c->buf, (size_t)(end - c->buf), "Content-Length: ", 16);
    size_t need = (size_t)(end + 4 - c->buf) + (cl ? strtoul(cl + 16, NULL, 10) : 0);
    if (c->len < need)
        return;
    c->answered = true;
    c->wr.data = c;
    uv_buf_t out = uv_buf_init((char *)c->srv->response, (unsigned)c->srv->response_len);
    uv_write(&c->wr, stream, &out, 1, conn_written);
}

static void on_accept(uv_stream_t *listener, int status)
{
    server *srv = listener->data;
    assert_int_equal(status, 0);
    server_conn *c = calloc(1, sizeof *c);
    assert_non_null(c);
    c->srv = srv;
    uv_tcp_init(listener->loop, &c->tcp);
    c->tcp.data = c;
    assert_int_equal(uv_accept(listener, (uv_stream_t *)&c->tcp), 0);
    srv->accepted++;
    uv_read_start((uv_stream_t *)&c->tcp, conn_alloc, conn_read);
}

static void server_start(uv_loop_t *loop, server *srv, const char *response, size_t len)
{
    memset(srv, 0, sizeof *srv);
    srv->response = response;
    srv->response_len = len;
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", 0, &addr);
    uv_tcp_init(loop, &srv->listener);
    srv->listener.data = srv;
    assert_int_equal(uv_tcp_bind(&srv->listener, (struct sockaddr *)&addr, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&srv->listener, 16, on_accept), 0);
    struct sockaddr_storage bound;
    int namelen = sizeof bound;
    uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&bound, &namelen);
    srv->port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
}

/* ---- what the fetches answered ---- */

typedef struct {
    int calls;
    int status;
    char body[256];
    size_t len;
    char error[200];
    server *srv; /* closed once every expected answer is in */
    int expected;
} outcome;

static void on_done(void *arg, int status, const unsigned char *body, size_t len, const char *error)
{
    outcome *o = arg;
    o->calls++;
    o->status = status;
    o->len = len;
    if (body)
        memcpy(o->body, body, len < sizeof o->body ? len : sizeof o->body);
    snprintf(o->error, sizeof o->error, "%s", error ? error : "");
    if (o->srv && o->calls == o->expected && !uv_is_closing((uv_handle_t *)&o->srv->listener))
        uv_close((uv_handle_t *)&o->srv->listener, NULL);
}

static void run(uv_loop_t *loop)
{
    assert_int_equal(uv_run(loop, UV_RUN_DEFAULT), 0);
}

static char *url_of(const server *srv, const char *path)
{
    static char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", srv->port, path);
    return url;
}

static const char ok_response[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";

static void get_reads_a_response(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    server srv;
    server_start(&loop, &srv, ok_response, sizeof ok_response - 1);
    outcome o = {.srv = &srv, .expected = 1};
    assert_int_equal(rev_fetch(&loop, url_of(&srv, "/ca.crl"), NULL, 0, 1024, 5000, on_done, &o),
                     0);
    assert_int_equal(o.calls, 0); /* never from inside rev_fetch */
    run(&loop);
    assert_int_equal(o.calls, 1);
    assert_string_equal(o.error, "");
    assert_int_equal(o.status, 200);
    assert_int_equal(o.len, 5);
    assert_memory_equal(o.body, "hello", 5);
    assert_non_null(strstr(srv.last_request, "GET /ca.crl HTTP/1.1\r\n"));
    assert_non_null(strstr(srv.last_request, "Host: 127.0.0.1:"));
    uv_loop_close(&loop);
}

static void post_carries_the_ocsp_request(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    server srv;
    /* A body delimited by the close, as HTTP/1.0 responders send. */
    static const char close_delimited[] = "HTTP/1.0 200 OK\r\n\r\nanswer";
    server_start(&loop, &srv, close_delimited, sizeof close_delimited - 1);
    outcome o = {.srv = &srv, .expected = 1};
    static const unsigned char req[] = {0x30, 0x03, 0x02, 0x01, 0x07};
    assert_int_equal(rev_fetch(&loop, url_of(&srv, ""), req, sizeof req, 1024, 5000, on_done, &o),
                     0);
    run(&loop);
    assert_string_equal(o.error, "");
    assert_int_equal(o.len, 6);
    assert_non_null(strstr(srv.last_request, "POST / HTTP/1.1\r\n"));
    assert_non_null(strstr(srv.last_request, "Content-Type: application/ocsp-request\r\n"));
    assert_non_null(strstr(srv.last_request, "Content-Length: 5\r\n"));
    assert_memory_equal(srv.last_request + srv.last_len - sizeof req, req, sizeof req);
    uv_loop_close(&loop);
}

static void concurrent_fetches_of_one_url_share_one_connection(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    server srv;
    server_start(&loop, &srv, ok_response, sizeof ok_response - 1);
    outcome shared = {.srv = &srv, .expected = 3};
    uint64_t before = rev_fetch_started();
    for (int i = 0; i < 3; i++)
        assert_int_equal(
            rev_fetch(&loop, url_of(&srv, "/same"), NULL, 0, 1024, 5000, on_done, &shared), 0);
    run(&loop);
    assert_int_equal(shared.calls, 3);
    assert_int_equal(srv.accepted, 1);
    assert_int_equal(rev_fetch_started() - before, 1);
    /* Once it is answered, the next fetch is a new one. */
    server_start(&loop, &srv, ok_response, sizeof ok_response - 1);
    outcome again = {.srv = &srv, .expected = 1};
    assert_int_equal(rev_fetch(&loop, url_of(&srv, "/same"), NULL, 0, 1024, 5000, on_done, &again),
                     0);
    run(&loop);
    assert_int_equal(again.calls, 1);
    assert_int_equal(rev_fetch_started() - before, 2);
    uv_loop_close(&loop);
}

/* A check on another worker's loop joins the fetch in flight instead of making its own. */
typedef struct {
    const char *url;
    outcome result;
    pthread_t ran_on;
    int joined;
} remote_check;

static void on_remote_done(void *arg, int status, const unsigned char *body, size_t len,
                           const char *error)
{
    remote_check *r = arg;
    r->ran_on = pthread_self();
    on_done(&r->result, status, body, len, error);
}

static void *other_worker(void *arg)
{
    remote_check *r = arg;
    uv_loop_t loop;
    uv_loop_init(&loop);
    uint64_t before = rev_fetch_started();
    r->joined = rev_fetch(&loop, r->url, NULL, 0, 1024, 5000, on_remote_done, r) == 0 &&
                rev_fetch_started() == before;
    uv_run(&loop, UV_RUN_DEFAULT); /* returns once the answer came through its own handle */
    uv_loop_close(&loop);
    return NULL;
}

static void a_fetch_in_flight_on_one_loop_answers_another_loop(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    server srv;
    server_start(&loop, &srv, ok_response, sizeof ok_response - 1);
    outcome mine = {.srv = &srv, .expected = 1};
    char url[128];
    snprintf(url, sizeof url, "%s", url_of(&srv, "/shared"));
    /* In flight on this loop, not answered yet: this loop has not run. */
    assert_int_equal(rev_fetch(&loop, url, NULL, 0, 1024, 5000, on_done, &mine), 0);
    remote_check other = {.url = url};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, other_worker, &other), 0);
    /* Give the other loop time to join before this one answers. */
    struct timespec pause = {.tv_nsec = 200 * 1000 * 1000};
    nanosleep(&pause, NULL);
    run(&loop);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_true(other.joined);
    assert_int_equal(srv.accepted, 1);
    assert_int_equal(mine.calls, 1);
    assert_int_equal(other.result.calls, 1);
    assert_int_equal(other.result.status, 200);
    assert_int_equal(other.result.len, 5);
    assert_memory_equal(other.result.body, "hello", 5);
    assert_true(pthread_equal(other.ran_on, t));
    uv_loop_close(&loop);
}

static void oversized_response_is_an_error(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    server srv;
    server_start(&loop, &srv, ok_response, sizeof ok_response - 1);
    outcome o = {.srv = &srv, .expected = 1};
    assert_int_equal(rev_fetch(&loop, url_of(&srv, "/big"), NULL, 0, 4, 5000, on_done, &o), 0);
    run(&loop);
    assert_int_equal(o.calls, 1);
    assert_non_null(strstr(o.error, "larger than 4 bytes"));
    assert_int_equal(o.len, 0);
    uv_loop_close(&loop);
}

static void silent_server_times_out(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    server srv;
    server_start(&loop, &srv, NULL, 0);
    outcome o = {.srv = &srv, .expected = 1};
    uint64_t started = uv_now(&loop);
    assert_int_equal(rev_fetch(&loop, url_of(&srv, "/"), NULL, 0, 1024, 200, on_done, &o), 0);
    run(&loop);
    assert_int_equal(o.calls, 1);
    assert_non_null(strstr(o.error, "within 200 ms"));
    assert_true(uv_now(&loop) - started >= 190);
    uv_loop_close(&loop);
}

static void refused_connection_and_bad_urls(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    server srv;
    server_start(&loop, &srv, NULL, 0);
    int port = srv.port;
    uv_close((uv_handle_t *)&srv.listener, NULL); /* nothing listens there any more */
    run(&loop);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", port);
    outcome o = {0};
    assert_int_equal(rev_fetch(&loop, url, NULL, 0, 1024, 5000, on_done, &o), 0);
    run(&loop);
    assert_int_equal(o.calls, 1);
    assert_non_null(strstr(o.error, "cannot connect"));
    static const char *bad[] = {"https://127.0.0.1/", "ldap://ca/x",    "http://",
                                "http://user@host/",  "http://host:0/", "http://[::1/"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (rev_fetch(&loop, bad[i], NULL, 0, 1024, 5000, on_done, &o) != -1)
            fail_msg("accepted %s", bad[i]);
    run(&loop);
    assert_int_equal(o.calls, 1);
    uv_loop_close(&loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(get_reads_a_response),
        cmocka_unit_test(post_carries_the_ocsp_request),
        cmocka_unit_test(concurrent_fetches_of_one_url_share_one_connection),
        cmocka_unit_test(a_fetch_in_flight_on_one_loop_answers_another_loop),
        cmocka_unit_test(oversized_response_is_an_error),
        cmocka_unit_test(silent_server_times_out),
        cmocka_unit_test(refused_connection_and_bad_urls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
