/* certs_rev_cache: statuses shared by all workers until their nextUpdate, bounded in memory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "revocation.h"
#include "test_util.h"

static struct certs_rev_key key_n(unsigned n)
{
    struct certs_rev_key k;
    memset(&k, 0, sizeof k);
    memset(k.issuer_key_hash, 0xab, sizeof k.issuer_key_hash);
    k.serial_len = 16;
    memcpy(k.serial, &n, sizeof n);
    return k;
}

static void entries_expire_at_next_update(void **state)
{
    (void)state;
    certs_rev_cache *c = certs_rev_cache_new(8);
    struct certs_rev_key k = key_n(1);
    enum certs_rev_status st = CERTS_REV_ERROR;
    time_t next = 0;
    certs_rev_cache_put(c, &k, CERTS_REV_REVOKED, 1000);
    assert_true(certs_rev_cache_get(c, &k, 999, &st, &next));
    assert_int_equal(st, CERTS_REV_REVOKED);
    assert_int_equal(next, 1000);
    assert_false(certs_rev_cache_get(c, &k, 1000, &st, &next));
    size_t size = 9;
    uint64_t hits = 0, misses = 0;
    certs_rev_cache_stats(c, &hits, &misses, &size);
    assert_int_equal(hits, 1);
    assert_int_equal(misses, 1);
    assert_int_equal(size, 0); /* the expired entry is gone */

    /* A newer answer replaces the old one; errors are not kept. */
    certs_rev_cache_put(c, &k, CERTS_REV_GOOD, 2000);
    certs_rev_cache_put(c, &k, CERTS_REV_REVOKED, 3000);
    assert_true(certs_rev_cache_get(c, &k, 2500, &st, NULL));
    assert_int_equal(st, CERTS_REV_REVOKED);
    struct certs_rev_key e = key_n(2);
    certs_rev_cache_put(c, &e, CERTS_REV_ERROR, 3000);
    assert_false(certs_rev_cache_get(c, &e, 0, &st, NULL));
    certs_rev_cache_stats(c, NULL, NULL, &size);
    assert_int_equal(size, 1);
    certs_rev_cache_free(c);
}

static void least_recently_used_goes_first(void **state)
{
    (void)state;
    certs_rev_cache *c = certs_rev_cache_new(3);
    enum certs_rev_status st;
    for (unsigned i = 0; i < 3; i++) {
        struct certs_rev_key k = key_n(i);
        certs_rev_cache_put(c, &k, CERTS_REV_GOOD, 100);
    }
    struct certs_rev_key k0 = key_n(0), k1 = key_n(1), k3 = key_n(3);
    assert_true(certs_rev_cache_get(c, &k0, 0, &st, NULL)); /* 0 is now the newest */
    certs_rev_cache_put(c, &k3, CERTS_REV_GOOD, 100);       /* evicts 1 */
    assert_false(certs_rev_cache_get(c, &k1, 0, &st, NULL));
    for (unsigned i = 0; i < 4; i++) {
        struct certs_rev_key k = key_n(i);
        assert_int_equal(certs_rev_cache_get(c, &k, 0, &st, NULL), i != 1);
    }
    size_t size = 0;
    certs_rev_cache_stats(c, NULL, NULL, &size);
    assert_int_equal(size, 3);
    /* Many more keys than room: never more than the capacity. */
    for (unsigned i = 10; i < 1000; i++) {
        struct certs_rev_key k = key_n(i);
        certs_rev_cache_put(c, &k, CERTS_REV_GOOD, 100);
    }
    certs_rev_cache_stats(c, NULL, NULL, &size);
    assert_int_equal(size, 3);
    struct certs_rev_key last = key_n(999);
    assert_true(certs_rev_cache_get(c, &last, 0, &st, NULL));
    certs_rev_cache_free(c);
}

static void keys_separate_issuers_and_serials(void **state)
{
    (void)state;
    EVP_PKEY *ka = NULL, *kb = NULL;
    X509 *a = test_ca_new(&ka, 30), *b = test_ca_new(&kb, 30);
    X509 *leaf = test_server_cert(a, ka, "x.test", "x.test", "y.test", "192.0.2.1", NULL);
    struct certs_rev_key under_a, under_b, other_serial;
    assert_int_equal(certs_rev_key_of(leaf, a, &under_a), 0);
    assert_int_equal(certs_rev_key_of(leaf, b, &under_b), 0);
    assert_memory_not_equal(&under_a, &under_b, sizeof under_a);
    ASN1_INTEGER_set(X509_get_serialNumber(leaf), 3);
    assert_int_equal(certs_rev_key_of(leaf, a, &other_serial), 0);
    assert_memory_not_equal(&under_a, &other_serial, sizeof under_a);

    certs_rev_cache *c = certs_rev_cache_new(4);
    enum certs_rev_status st;
    certs_rev_cache_put(c, &under_a, CERTS_REV_REVOKED, 100);
    assert_false(certs_rev_cache_get(c, &under_b, 0, &st, NULL));
    assert_false(certs_rev_cache_get(c, &other_serial, 0, &st, NULL));
    assert_true(certs_rev_cache_get(c, &under_a, 0, &st, NULL));
    certs_rev_cache_free(c);
    X509_free(leaf);
    X509_free(a);
    X509_free(b);
    EVP_PKEY_free(ka);
    EVP_PKEY_free(kb);
}

struct worker {
    certs_rev_cache *c;
    unsigned base;
};

static void *hammer(void *arg)
{
    struct worker *w = arg;
    enum certs_rev_status st;
    for (unsigned i = 0; i < 20000; i++) {
        struct certs_rev_key k = key_n(w->base + i % 500);
        if (!certs_rev_cache_get(w->c, &k, 0, &st, NULL))
            certs_rev_cache_put(w->c, &k, CERTS_REV_GOOD, 100);
        else if (st != CERTS_REV_GOOD)
            return (void *)1;
    }
    return NULL;
}

static void workers_share_one_cache(void **state)
{
    (void)state;
    certs_rev_cache *c = certs_rev_cache_new(256);
    pthread_t t[4];
    struct worker w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (struct worker){c, (unsigned)i * 250};
        assert_int_equal(pthread_create(&t[i], NULL, hammer, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        void *rc = NULL;
        pthread_join(t[i], &rc);
        assert_null(rc);
    }
    uint64_t hits = 0, misses = 0;
    size_t size = 0;
    certs_rev_cache_stats(c, &hits, &misses, &size);
    assert_int_equal(hits + misses, 80000);
    assert_int_equal(size, 256);
    certs_rev_cache_free(c);
}

/* The README's figure: memory for 10,000 cached statuses. */
static void ten_thousand_statuses_fit_in_a_known_size(void **state)
{
    (void)state;
    struct mallinfo2 before = mallinfo2();
    certs_rev_cache *c = certs_rev_cache_new(10000);
    for (unsigned i = 0; i < 10000; i++) {
        struct certs_rev_key k = key_n(i);
        certs_rev_cache_put(c, &k, CERTS_REV_GOOD, 100);
    }
    struct mallinfo2 after = mallinfo2();
    size_t bytes = certs_rev_cache_bytes(c);
    size_t measured = after.uordblks + after.hblkhd - before.uordblks - before.hblkhd;
    print_message("10000 statuses: %zu bytes by layout (%zu per entry), %zu bytes measured by "
                  "malloc\n",
                  bytes, bytes / 10000, measured);
    assert_true(bytes / 10000 <= 96);
    /* malloc's own count agrees (allocators without mallinfo, as under ASan, report 0). */
    if (measured != 0)
        assert_true(measured >= bytes && measured <= bytes + 4096);
    size_t size = 0;
    certs_rev_cache_stats(c, NULL, NULL, &size);
    assert_int_equal(size, 10000);
    certs_rev_cache_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(entries_expire_at_next_update),
        cmocka_unit_test(least_recently_used_goes_first),
        cmocka_unit_test(keys_separate_issuers_and_serials),
        cmocka_unit_test(workers_share_one_cache),
        cmocka_unit_test(ten_thousand_statuses_fit_in_a_known_size),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
