/* Request heads as llhttp reports them (in pieces), and the rewriting done before a request
 * goes to the origin: hop-by-hop headers out, credentials for the proxy out, Via in. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http_head.h"

#define HEAD_LIMIT 65536

typedef struct {
    const char *name, *value;
} field;

/* One span as llhttp may report it when it arrives in two reads: cut in two. */
static int feed(http_head *h, head_part part, const char *at, size_t len, size_t max)
{
    if (len < 2)
        return head_append(h, part, at, len, max);
    return head_append(h, part, at, len / 2, max) ||
           head_append(h, part, at + len / 2, len - len / 2, max);
}

/* Builds a head from a URL and fields, each span in pieces. Returns 0 or -1. */
static int build(http_head *h, const char *url, const field *fields, size_t n, size_t max)
{
    head_reset(h);
    if (feed(h, HEAD_URL, url, strlen(url), max))
        return -1;
    for (size_t i = 0; i < n; i++)
        if (feed(h, HEAD_FIELD, fields[i].name, strlen(fields[i].name), max) ||
            feed(h, HEAD_VALUE, fields[i].value, strlen(fields[i].value), max))
            return -1;
    return 0;
}

static char *get(const http_head *h, const char *name)
{
    static char out[1024];
    size_t len = 0;
    const char *v = head_get(h, name, &len);
    if (!v)
        return NULL;
    snprintf(out, sizeof out, "%.*s", (int)len, v);
    return out;
}

static char *forwarded(const http_head *h, const char *const *skip)
{
    static char storage[8192];
    out_buf o;
    out_init(&o, storage, sizeof storage - 1);
    head_write_forwarded(h, &o, skip);
    assert_false(o.overflow);
    storage[o.len] = '\0';
    return storage;
}

static void pieces_join_into_url_and_fields(void **state)
{
    (void)state;
    http_head h = {0};
    const field f[] = {{"Host", "example.com"}, {"User-Agent", "curl/7.88"}, {"Accept", "*/*"}};
    assert_int_equal(build(&h, "http://example.com/a/b?c=d", f, 3, HEAD_LIMIT), 0);
    assert_int_equal(h.count, 3);
    assert_int_equal(h.url_len, strlen("http://example.com/a/b?c=d"));
    assert_memory_equal(h.buf + h.url_off, "http://example.com/a/b?c=d", h.url_len);
    assert_string_equal(get(&h, "host"), "example.com");
    assert_string_equal(get(&h, "USER-AGENT"), "curl/7.88");
    assert_string_equal(get(&h, "Accept"), "*/*");
    assert_null(get(&h, "Cookie"));
    assert_null(get(&h, "Hos"));
    head_release(&h);
}

static void first_of_repeated_headers_is_returned(void **state)
{
    (void)state;
    http_head h = {0};
    const field f[] = {{"X-Id", "one"}, {"x-id", "two"}};
    assert_int_equal(build(&h, "/", f, 2, HEAD_LIMIT), 0);
    assert_string_equal(get(&h, "X-ID"), "one");
    head_release(&h);
}

static void empty_value_is_present(void **state)
{
    (void)state;
    http_head h = {0};
    const field f[] = {{"X-Empty", ""}, {"Host", "h"}};
    assert_int_equal(build(&h, "/", f, 2, HEAD_LIMIT), 0);
    assert_int_equal(h.count, 2);
    assert_string_equal(get(&h, "X-Empty"), "");
    assert_string_equal(get(&h, "Host"), "h");
    head_release(&h);
}

static void tokens_in_comma_lists(void **state)
{
    (void)state;
    http_head h = {0};
    const field f[] = {{"Connection", "Keep-Alive ,  Upgrade,close"},
                       {"Upgrade", "websocket"},
                       {"Connection", "X-Extra"}};
    assert_int_equal(build(&h, "/", f, 3, HEAD_LIMIT), 0);
    assert_true(head_has_token(&h, "connection", "keep-alive"));
    assert_true(head_has_token(&h, "Connection", "upgrade"));
    assert_true(head_has_token(&h, "Connection", "CLOSE"));
    assert_true(head_has_token(&h, "Connection", "x-extra")); /* from the second line */
    assert_false(head_has_token(&h, "Connection", "keep"));
    assert_false(head_has_token(&h, "Connection", "alive"));
    assert_false(head_has_token(&h, "Connection", "websocket"));
    assert_true(head_has_token(&h, "Upgrade", "WebSocket"));
    assert_false(head_has_token(&h, "Expect", "100-continue"));
    head_release(&h);
}

static void hop_by_hop_headers_are_recognised(void **state)
{
    (void)state;
    http_head h = {0};
    const field f[] = {
        {"Host", "example.com"},                /* 0 */
        {"Connection", "keep-alive, X-Secret"}, /* 1 */
        {"Keep-Alive", "timeout=5"},            /* 2 */
        {"Proxy-Connection", "keep-alive"},     /* 3 */
        {"TE", "trailers"},                     /* 4 */
        {"Trailer", "X-Sum"},                   /* 5 */
        {"Transfer-Encoding", "chunked"},       /* 6 */
        {"Upgrade", "websocket"},               /* 7 */
        {"Proxy-Authorization", "Basic YTpi"},  /* 8 */
        {"x-secret", "1"},                      /* 9: named by Connection */
        {"X-Secretive", "2"},                   /* 10: only a prefix of a named header */
        {"Cookie", "a=b"},                      /* 11 */
    };
    assert_int_equal(build(&h, "/", f, 12, HEAD_LIMIT), 0);
    const bool hop[] = {false, true, true, true, true, true, true, true, true, true, false, false};
    for (unsigned i = 0; i < 12; i++)
        if (head_is_hop_by_hop(&h, i) != hop[i])
            fail_msg("%s: hop-by-hop should be %d", f[i].name, hop[i]);
    head_release(&h);
}

static void forwarded_headers_keep_end_to_end_ones_and_add_via(void **state)
{
    (void)state;
    http_head h = {0};
    const field f[] = {
        {"Host", "example.com"}, {"Connection", "close, X-Drop"},
        {"X-Drop", "gone"},      {"Proxy-Authorization", "Basic YTpi"},
        {"Accept", "text/html"}, {"Keep-Alive", "300"},
        {"Cookie", "k=v"},
    };
    assert_int_equal(build(&h, "http://example.com/", f, 7, HEAD_LIMIT), 0);
    const char *out = forwarded(&h, NULL);
    /* The end-to-end headers in their order, then exactly one Via. */
    const char *host = strstr(out, "Host: example.com\r\n");
    const char *accept = strstr(out, "Accept: text/html\r\n");
    const char *cookie = strstr(out, "Cookie: k=v\r\n");
    const char *via = strstr(out, "Via: ");
    assert_non_null(host);
    assert_non_null(accept);
    assert_non_null(cookie);
    assert_non_null(via);
    assert_true(host < accept && accept < cookie && cookie < via);
    assert_null(strstr(via + 1, "Via: "));
    assert_null(strstr(out, "X-Drop"));
    assert_null(strstr(out, "Proxy-Authorization"));
    assert_null(strstr(out, "Keep-Alive"));
    assert_null(strstr(out, "Connection"));
    /* Every line is a complete header line. */
    size_t len = strlen(out);
    assert_true(len >= 2 && out[len - 2] == '\r' && out[len - 1] == '\n');
    head_release(&h);
}

static void skip_list_leaves_out_headers_the_caller_rewrites(void **state)
{
    (void)state;
    http_head h = {0};
    const field f[] = {{"Host", "a"}, {"Content-Length", "5"}, {"Expect", "100-continue"}};
    assert_int_equal(build(&h, "/", f, 3, HEAD_LIMIT), 0);
    static const char *const skip[] = {"content-length", "EXPECT", NULL};
    const char *out = forwarded(&h, skip);
    assert_non_null(strstr(out, "Host: a\r\n"));
    assert_null(strstr(out, "Content-Length"));
    assert_null(strstr(out, "Expect"));
    head_release(&h);
}

static void head_over_the_limit_is_refused(void **state)
{
    (void)state;
    http_head h = {0};
    char big[3000];
    memset(big, 'v', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    const field two[] = {{"X-A", big}, {"X-B", big}};
    /* One fits in 4096 bytes, two do not. */
    assert_int_equal(build(&h, "/", two, 1, 4096), 0);
    assert_false(h.overflow);
    assert_int_equal(build(&h, "/", two, 2, 4096), -1);
    assert_true(h.overflow);
    /* After a reset the same head fits a larger bound. */
    assert_int_equal(build(&h, "/", two, 2, HEAD_LIMIT), 0);
    assert_false(h.overflow);
    size_t len = 0;
    const char *b = head_get(&h, "X-B", &len);
    assert_non_null(b);
    assert_int_equal(len, strlen(big));
    assert_memory_equal(b, big, len);
    head_release(&h);
}

static void separators_count_against_the_limit(void **state)
{
    (void)state;
    /* 300 one-byte headers hold 600 bytes of text but are over 1.5 KB on the wire. */
    http_head h = {0};
    head_reset(&h);
    int rc = 0;
    for (int i = 0; i < 300 && rc == 0; i++) {
        rc = head_append(&h, HEAD_FIELD, "a", 1, 1024);
        if (rc == 0)
            rc = head_append(&h, HEAD_VALUE, "b", 1, 1024);
    }
    assert_int_equal(rc, -1);
    head_release(&h);
}

static void too_many_headers_are_refused(void **state)
{
    (void)state;
    http_head h = {0};
    head_reset(&h);
    int rc = 0;
    unsigned added = 0;
    for (; added < 1000 && rc == 0; added++) {
        char name[16];
        int n = snprintf(name, sizeof name, "X-%u", added);
        rc = head_append(&h, HEAD_FIELD, name, (size_t)n, 1048576);
        if (rc == 0)
            rc = head_append(&h, HEAD_VALUE, "v", 1, 1048576);
    }
    assert_int_equal(rc, -1);
    assert_true(h.too_many);
    assert_false(h.overflow);
    assert_true(added > 8); /* a normal request is far from the limit */
    head_release(&h);
}

static void zero_length_span_on_a_new_head(void **state)
{
    (void)state;
    /* llhttp may report an empty span; nothing is stored yet, so the buffer is still NULL. */
    http_head h = {0};
    head_reset(&h);
    assert_int_equal(head_append(&h, HEAD_URL, "", 0, 4096), 0);
    assert_int_equal(head_append(&h, HEAD_URL, "/x", 2, 4096), 0);
    assert_int_equal(h.url_len, 2);
    assert_memory_equal(h.buf + h.url_off, "/x", 2);
    head_release(&h);
}

/* The forwarded head fits in head_forward_size() with the start line and every header the
 * proxy adds, for the largest head the parser accepts (full headers of one-byte values). */
static void forward_size_bounds_the_rewritten_head(void **state)
{
    (void)state;
    http_head h = {0};
    head_reset(&h);
    char url[2048];
    memset(url, 'u', sizeof url - 1);
    url[0] = '/';
    url[sizeof url - 1] = '\0';
    assert_int_equal(head_append(&h, HEAD_URL, url, strlen(url), 1048576), 0);
    for (unsigned i = 0; i < HEAD_MAX_HEADERS; i++) {
        char name[16];
        int n = snprintf(name, sizeof name, "X-%u", i);
        assert_int_equal(head_append(&h, HEAD_FIELD, name, (size_t)n, 1048576), 0);
        assert_int_equal(head_append(&h, HEAD_VALUE, "v", 1, 1048576), 0);
    }
    size_t cap = head_forward_size(&h);
    char *storage = malloc(cap);
    assert_non_null(storage);
    out_buf o;
    out_init(&o, storage, cap);
    char host[256];
    memset(host, 'h', sizeof host - 1);
    host[sizeof host - 1] = '\0';
    out_addf(&o, "OPTIONS %s HTTP/1.1\r\n", url);
    head_write_forwarded(&h, &o, NULL);
    out_addf(&o, "Host: %s:65535\r\nTransfer-Encoding: chunked\r\n", host);
    out_addf(&o, "Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
    assert_false(o.overflow);
    free(storage);
    head_release(&h);
}

static void output_buffer_is_bounded(void **state)
{
    (void)state;
    char storage[16];
    out_buf o;
    out_init(&o, storage, sizeof storage);
    out_add(&o, "0123456789", 10);
    assert_false(o.overflow);
    out_addf(&o, "%s", "abcdefghij");
    assert_true(o.overflow);
    assert_true(o.len <= sizeof storage);
    assert_memory_equal(storage, "0123456789", 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pieces_join_into_url_and_fields),
        cmocka_unit_test(first_of_repeated_headers_is_returned),
        cmocka_unit_test(empty_value_is_present),
        cmocka_unit_test(tokens_in_comma_lists),
        cmocka_unit_test(hop_by_hop_headers_are_recognised),
        cmocka_unit_test(forwarded_headers_keep_end_to_end_ones_and_add_via),
        cmocka_unit_test(skip_list_leaves_out_headers_the_caller_rewrites),
        cmocka_unit_test(head_over_the_limit_is_refused),
        cmocka_unit_test(separators_count_against_the_limit),
        cmocka_unit_test(too_many_headers_are_refused),
        cmocka_unit_test(zero_length_span_on_a_new_head),
        cmocka_unit_test(forward_size_bounds_the_rewritten_head),
        cmocka_unit_test(output_buffer_is_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
