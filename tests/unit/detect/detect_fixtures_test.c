/* Every committed fixture, at every prefix length, against a guard page. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "detect.h"
#include "fixtures.h"
#include "guarded_buffer.h"

static fixture all[FIXTURE_MAX_COUNT];
static size_t fixture_count;
static guarded_buffer guard;
static uint8_t padded[DETECT_MAX_BYTES];

static int setup(void **state)
{
    (void)state;
    fixture_count = fixtures_load(all, FIXTURE_MAX_COUNT);
    guarded_init(&guard, DETECT_MAX_BYTES);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    guarded_free(&guard);
    return 0;
}

typedef detect_answer (*classifier)(const uint8_t *p, size_t n, detect_result *out);

static void fail_fixture(const fixture *f, size_t prefix, const char *what, detect_protocol got)
{
    const char *name = detect_protocol_name(got);
    fail_msg("%s/%s, first %zu bytes: %s (got %s)", f->dir, f->name, prefix, what,
             name != NULL ? name : "unknown");
}

/*
 * Whole input: the expected protocol. Where the bytes alone leave detection waiting (a
 * server-first protocol), the input padded with zeros up to the cap must decide it instead.
 */
static void check_complete(const fixture *f, classifier classify, detect_protocol expected)
{
    detect_result r;
    const uint8_t *p = guarded_place(&guard, f->bytes, f->len);
    detect_answer a = classify(p, f->len, &r);
    if (a == DETECT_NEED_MORE && expected == PROTO_TCP) {
        memset(padded, 0, sizeof padded);
        memcpy(padded, f->bytes, f->len);
        p = guarded_place(&guard, padded, sizeof padded);
        a = classify(p, sizeof padded, &r);
    }
    if (a != DETECT_MATCH || r.protocol != expected)
        fail_fixture(f, f->len, "whole input not classified as expected", r.protocol);
}

/* No prefix may be given a wrong answer, and once decided the answer never changes. */
static void check_prefixes(const fixture *f, classifier classify, detect_protocol expected)
{
    bool decided = false;
    for (size_t k = 0; k <= f->len; k++) {
        detect_result r;
        const uint8_t *p = guarded_place(&guard, f->bytes, k);
        detect_answer a = classify(p, k, &r);
        if (a == DETECT_NEED_MORE) {
            if (r.protocol != PROTO_UNKNOWN)
                fail_fixture(f, k, "waiting but a protocol is set", r.protocol);
            if (decided)
                fail_fixture(f, k, "went back to waiting after deciding", r.protocol);
            continue;
        }
        if (a != DETECT_MATCH || r.protocol != expected)
            fail_fixture(f, k, "wrong protocol for a prefix", r.protocol);
        decided = true;
    }
}

static detect_protocol inner_expectation(const fixture *f)
{
    detect_protocol outer = f->expected;
    /* The HTTP/2 preface is plain TCP outside TLS but HTTP (h2 after ALPN) inside it. */
    if (strncmp(f->name, "http2-preface", 13) == 0)
        return PROTO_HTTPS;
    if (outer == PROTO_HTTP)
        return PROTO_HTTPS;
    if (outer == PROTO_SIP)
        return PROTO_SIP;
    return PROTO_TCP;
}

static void every_fixture_is_classified_right_at_every_prefix(void **state)
{
    (void)state;
    for (size_t i = 0; i < fixture_count; i++) {
        check_prefixes(&all[i], detect_classify, all[i].expected);
        check_complete(&all[i], detect_classify, all[i].expected);
    }
}

static void inner_classification_reports_https_sip_or_tcp(void **state)
{
    (void)state;
    for (size_t i = 0; i < fixture_count; i++) {
        detect_protocol expected = inner_expectation(&all[i]);
        check_prefixes(&all[i], detect_classify_inner, expected);
        check_complete(&all[i], detect_classify_inner, expected);
    }
}

/* Each matcher alone must also stay inside the bytes it is given. */
static void matchers_never_read_past_any_prefix(void **state)
{
    (void)state;
    for (size_t i = 0; i < fixture_count; i++) {
        for (size_t k = 0; k <= all[i].len; k++) {
            const uint8_t *p = guarded_place(&guard, all[i].bytes, k);
            detect_tls_info info;
            (void)detect_msturn(p, k);
            (void)detect_tls_client_hello(p, k, &info);
            (void)detect_stun(p, k);
            (void)detect_sip(p, k);
            (void)detect_http(p, k);
        }
    }
}

static void every_protocol_has_fixtures(void **state)
{
    (void)state;
    const detect_protocol outer[] = {PROTO_MSTURN, PROTO_SSL,  PROTO_TURN,
                                     PROTO_SIP,    PROTO_HTTP, PROTO_TCP};
    for (size_t j = 0; j < sizeof outer / sizeof outer[0]; j++) {
        size_t seen = 0;
        for (size_t i = 0; i < fixture_count; i++)
            seen += all[i].expected == outer[j];
        if (seen < 2)
            fail_msg("only %zu fixtures for %s", seen, detect_protocol_name(outer[j]));
    }
}

static const detect_tls_info *classify_hello(const char *path, detect_result *r)
{
    const fixture *f = fixtures_find(all, fixture_count, path);
    assert_non_null(f);
    const uint8_t *p = guarded_place(&guard, f->bytes, f->len);
    assert_int_equal(detect_classify(p, f->len, r), DETECT_MATCH);
    assert_int_equal(r->protocol, PROTO_SSL);
    /* The capture holds exactly the records of the hello. */
    assert_int_equal(r->tls.hello_bytes, f->len);
    return &r->tls;
}

static void assert_alpn(const detect_tls_info *tls, unsigned count, const char *first,
                        const char *second)
{
    assert_int_equal(tls->alpn_count, count);
    if (first != NULL)
        assert_string_equal(tls->alpn[0], first);
    if (second != NULL)
        assert_string_equal(tls->alpn[1], second);
}

static void openssl_hello_gives_sni_alpn_and_tls13(void **state)
{
    (void)state;
    const char *paths[] = {"ssl/openssl-s_client.bin", "ssl/openssl-split-2-records.bin",
                           "ssl/openssl-split-4-records.bin"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        detect_result r;
        const detect_tls_info *tls = classify_hello(paths[i], &r);
        assert_string_equal(tls->sni, "test.example");
        assert_alpn(tls, 2, "h2", "http/1.1");
        assert_int_equal(tls->legacy_version, 0x0303);
        assert_int_equal(tls->max_version, 0x0304);
    }
}

static void tls12_only_hello_reports_legacy_version(void **state)
{
    (void)state;
    detect_result r;
    const detect_tls_info *tls = classify_hello("ssl/openssl-s_client-tls1_2.bin", &r);
    assert_string_equal(tls->sni, "test.example");
    assert_int_equal(tls->alpn_count, 0);
    assert_int_equal(tls->max_version, 0x0303);
}

static void curl_and_python_hellos_give_sni_and_alpn(void **state)
{
    (void)state;
    detect_result r;
    const detect_tls_info *tls = classify_hello("ssl/curl.bin", &r);
    assert_string_equal(tls->sni, "test.example");
    assert_alpn(tls, 2, "h2", "http/1.1");
    assert_int_equal(tls->max_version, 0x0304);

    tls = classify_hello("ssl/python-ssl.bin", &r);
    assert_string_equal(tls->sni, "test.example");
    assert_alpn(tls, 2, "http/1.1", "sip/2.0");
    assert_int_equal(tls->max_version, 0x0304);
}

static void large_hello_is_reassembled_and_alpn_is_capped(void **state)
{
    (void)state;
    detect_result r;
    const detect_tls_info *tls = classify_hello("ssl/python-ssl-large.bin", &r);
    assert_true(tls->hello_bytes > 1500);
    assert_string_equal(tls->sni, "test.example");
    assert_alpn(tls, DETECT_MAX_ALPN, "x-handoff-test-protocol-000", "x-handoff-test-protocol-001");
    assert_string_equal(tls->alpn[DETECT_MAX_ALPN - 1], "x-handoff-test-protocol-007");
}

static void bytes_after_the_hello_do_not_change_hello_bytes(void **state)
{
    (void)state;
    const fixture *f = fixtures_find(all, fixture_count, "ssl/openssl-split-2-records.bin");
    assert_non_null(f);
    memset(padded, 0x17, sizeof padded);
    memcpy(padded, f->bytes, f->len);
    const uint8_t *p = guarded_place(&guard, padded, f->len + 100);
    detect_result r;
    assert_int_equal(detect_classify(p, f->len + 100, &r), DETECT_MATCH);
    assert_int_equal(r.protocol, PROTO_SSL);
    assert_int_equal(r.tls.hello_bytes, f->len);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_protocol_has_fixtures),
        cmocka_unit_test(every_fixture_is_classified_right_at_every_prefix),
        cmocka_unit_test(inner_classification_reports_https_sip_or_tcp),
        cmocka_unit_test(matchers_never_read_past_any_prefix),
        cmocka_unit_test(openssl_hello_gives_sni_alpn_and_tls13),
        cmocka_unit_test(tls12_only_hello_reports_legacy_version),
        cmocka_unit_test(curl_and_python_hellos_give_sni_and_alpn),
        cmocka_unit_test(large_hello_is_reassembled_and_alpn_is_capped),
        cmocka_unit_test(bytes_after_the_hello_do_not_change_hello_bytes),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
