/* certs_cache: the LRU of minted leaves shared by the worker threads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "certs.h"

static X509 *new_leaf(void)
{
    X509 *x = X509_new();
    assert_non_null(x);
    return x;
}

static void counts_hits_and_misses(void **state)
{
    (void)state;
    certs_cache *c = certs_cache_new(4);
    X509 *leaf = new_leaf();
    assert_null(certs_cache_get(c, "a.example|00"));
    certs_cache_put(c, "a.example|00", leaf);
    X509 *got = certs_cache_get(c, "a.example|00");
    assert_ptr_equal(got, leaf);
    X509_free(got);
    assert_null(certs_cache_get(c, "a.example|01")); /* a changed upstream cert misses */

    uint64_t hits = 0, misses = 0;
    size_t size = 0;
    certs_cache_stats(c, &hits, &misses, &size);
    assert_int_equal(hits, 1);
    assert_int_equal(misses, 2);
    assert_int_equal(size, 1);
    certs_cache_free(c);
    X509_free(leaf);
}

static void evicts_the_least_recently_used(void **state)
{
    (void)state;
    certs_cache *c = certs_cache_new(2);
    X509 *a = new_leaf(), *b = new_leaf(), *d = new_leaf();
    certs_cache_put(c, "a", a);
    certs_cache_put(c, "b", b);
    X509 *got = certs_cache_get(c, "a"); /* a is now more recent than b */
    assert_ptr_equal(got, a);
    X509_free(got);
    certs_cache_put(c, "d", d);

    assert_null(certs_cache_get(c, "b"));
    got = certs_cache_get(c, "a");
    assert_ptr_equal(got, a);
    X509_free(got);
    got = certs_cache_get(c, "d");
    assert_ptr_equal(got, d);
    X509_free(got);
    size_t size = 0;
    certs_cache_stats(c, NULL, NULL, &size);
    assert_int_equal(size, 2);

    /* Now a is the oldest. */
    certs_cache_put(c, "b", b);
    assert_null(certs_cache_get(c, "a"));
    certs_cache_free(c);
    X509_free(a);
    X509_free(b);
    X509_free(d);
}

static void put_replaces_and_references_outlive_the_cache(void **state)
{
    (void)state;
    certs_cache *c = certs_cache_new(2);
    X509 *old = new_leaf(), *fresh = new_leaf();
    certs_cache_put(c, "k", old);
    certs_cache_put(c, "k", fresh);
    X509_free(old);
    X509_free(fresh);

    X509 *got = certs_cache_get(c, "k");
    assert_ptr_equal(got, fresh);
    size_t size = 0;
    certs_cache_stats(c, NULL, NULL, &size);
    assert_int_equal(size, 1);
    certs_cache_free(c);
    /* Our reference keeps the leaf alive (ASan would catch a use after free). */
    assert_int_equal(X509_get_version(got), X509_VERSION_1);
    X509_free(got);
}

static void zero_capacity_caches_nothing(void **state)
{
    (void)state;
    certs_cache *c = certs_cache_new(0);
    X509 *leaf = new_leaf();
    certs_cache_put(c, "k", leaf);
    assert_null(certs_cache_get(c, "k"));
    certs_cache_free(c);
    X509_free(leaf);
}

#define THREADS 4
#define KEYS    16
#define ROUNDS  20000

struct worker {
    certs_cache *c;
    X509 **leaves;
    unsigned seed;
    uint64_t gets;
    int wrong;
};

static void *hammer(void *arg)
{
    struct worker *w = arg;
    char key[32];
    for (int i = 0; i < ROUNDS; i++) {
        int k = (int)(rand_r(&w->seed) % KEYS);
        snprintf(key, sizeof key, "host%d.example|%d", k, k * 7);
        X509 *got = certs_cache_get(w->c, key);
        w->gets++;
        if (got == NULL) {
            certs_cache_put(w->c, key, w->leaves[k]);
        } else {
            w->wrong += got != w->leaves[k];
            X509_free(got);
        }
    }
    return NULL;
}

static void survives_concurrent_use(void **state)
{
    (void)state;
    certs_cache *c = certs_cache_new(KEYS / 2); /* small enough to evict all the time */
    X509 *leaves[KEYS];
    for (int i = 0; i < KEYS; i++)
        leaves[i] = new_leaf();

    struct worker w[THREADS];
    pthread_t tid[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (struct worker){.c = c, .leaves = leaves, .seed = (unsigned)i + 1};
        assert_int_equal(pthread_create(&tid[i], NULL, hammer, &w[i]), 0);
    }
    uint64_t gets = 0;
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_join(tid[i], NULL), 0);
        assert_int_equal(w[i].wrong, 0);
        gets += w[i].gets;
    }
    uint64_t hits = 0, misses = 0;
    size_t size = 0;
    certs_cache_stats(c, &hits, &misses, &size);
    assert_int_equal(hits + misses, gets);
    assert_true(hits > 0);
    assert_true(size <= KEYS / 2);
    certs_cache_free(c);
    for (int i = 0; i < KEYS; i++)
        X509_free(leaves[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(counts_hits_and_misses),
        cmocka_unit_test(evicts_the_least_recently_used),
        cmocka_unit_test(put_replaces_and_references_outlive_the_cache),
        cmocka_unit_test(zero_capacity_caches_nothing),
        cmocka_unit_test(survives_concurrent_use),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
