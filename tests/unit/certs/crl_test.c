/* certs_crl_der: the CRL that revocation-checking clients fetch from handoff. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "certs.h"
#include "test_util.h"

struct fixture {
    char dir[PATH_MAX], cert_path[PATH_MAX];
    certs_ca *ca;
};

static int setup_with(void **state, bool rsa)
{
    struct fixture *f = calloc(1, sizeof *f);
    tmpdir_make(f->dir, sizeof f->dir);
    f->ca = test_handoff_ca(f->dir, rsa);
    path_join(f->cert_path, sizeof f->cert_path, f->dir, "ca.crt");
    *state = f;
    return 0;
}

static int setup_ec(void **state)
{
    return setup_with(state, false);
}

static int setup_rsa(void **state)
{
    return setup_with(state, true);
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    certs_ca_free(f->ca);
    tmpdir_remove(f->dir);
    free(f);
    return 0;
}

static X509_CRL *fetch_crl(certs_ca *ca)
{
    unsigned char *der = NULL;
    size_t len = 0;
    assert_int_equal(certs_crl_der(ca, &der, &len), 0);
    assert_non_null(der);
    assert_true(len > 0);
    const unsigned char *p = der;
    X509_CRL *crl = d2i_X509_CRL(NULL, &p, (long)len);
    assert_non_null(crl);
    assert_ptr_equal(p, der + len); /* nothing trailing */
    free(der);
    return crl;
}

static void crl_is_signed_by_the_ca_and_current(void **state)
{
    struct fixture *f = *state;
    X509 *ca = certs_ca_cert(f->ca);
    X509_CRL *crl = fetch_crl(f->ca);

    assert_int_equal(X509_CRL_verify(crl, X509_get0_pubkey(ca)), 1);
    assert_int_equal(X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(ca)), 0);
    assert_int_equal(X509_CRL_get_version(crl), 1);                   /* v2 */
    assert_true(sk_X509_REVOKED_num(X509_CRL_get_REVOKED(crl)) <= 0); /* none, or an empty list */

    time_t now = time(NULL), in_six_days = now + 6L * 86400, in_eight_days = now + 8L * 86400;
    /* Backdated like leaves, for clients whose clock lags. */
    time_t backdated = now - 3600 + 60;
    assert_true(X509_cmp_time(X509_CRL_get0_lastUpdate(crl), &backdated) < 0);
    assert_true(X509_cmp_time(X509_CRL_get0_nextUpdate(crl), &in_six_days) > 0);
    assert_true(X509_cmp_time(X509_CRL_get0_nextUpdate(crl), &in_eight_days) < 0);

    AUTHORITY_KEYID *aki = X509_CRL_get_ext_d2i(crl, NID_authority_key_identifier, NULL, NULL);
    assert_non_null(aki);
    assert_int_equal(ASN1_OCTET_STRING_cmp(aki->keyid, X509_get0_subject_key_id(ca)), 0);
    AUTHORITY_KEYID_free(aki);
    ASN1_INTEGER *number = X509_CRL_get_ext_d2i(crl, NID_crl_number, NULL, NULL);
    assert_non_null(number);
    ASN1_INTEGER_free(number);
    X509_CRL_free(crl);
}

static void crl_is_cached_between_calls(void **state)
{
    struct fixture *f = *state;
    unsigned char *a = NULL, *b = NULL;
    size_t alen = 0, blen = 0;
    assert_int_equal(certs_crl_der(f->ca, &a, &alen), 0);
    assert_int_equal(certs_crl_der(f->ca, &b, &blen), 0);
    assert_ptr_not_equal(a, b); /* each caller owns its copy */
    assert_int_equal(alen, blen);
    /* ECDSA signatures are randomised: equal bytes mean the same signed CRL was reused. */
    assert_memory_equal(a, b, alen);
    free(a);
    free(b);
}

/* A client that checks revocation accepts a minted leaf against this CRL. */
static void minted_leaf_passes_a_revocation_check(void **state)
{
    struct fixture *f = *state;
    X509 *ca = certs_ca_cert(f->ca);
    EVP_PKEY *leaf_key = certs_leaf_key_new();
    X509 *leaf = certs_mint_leaf(f->ca, leaf_key, NULL, "www.example.test",
                                 "http://127.0.0.1:3128/handoff-ca.crl");
    assert_non_null(leaf);
    X509_CRL *crl = fetch_crl(f->ca);

    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    assert_int_equal(X509_STORE_add_cert(store, ca), 1);
    assert_int_equal(X509_STORE_add_crl(store, crl), 1);
    assert_int_equal(X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK), 1);
    assert_int_equal(X509_STORE_CTX_init(ctx, store, leaf, NULL), 1);
    assert_int_equal(X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_SERVER), 1);
    assert_int_equal(X509_verify_cert(ctx), 1);

    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    X509_CRL_free(crl);
    X509_free(leaf);
    EVP_PKEY_free(leaf_key);
}

static void openssl_cli_verifies_the_crl(void **state)
{
    struct fixture *f = *state;
    char der_path[PATH_MAX], cmd[3 * PATH_MAX], out[1024] = "";
    path_join(der_path, sizeof der_path, f->dir, "crl.der");
    unsigned char *der = NULL;
    size_t len = 0;
    assert_int_equal(certs_crl_der(f->ca, &der, &len), 0);
    FILE *fp = fopen(der_path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(der, 1, len, fp), len);
    assert_int_equal(fclose(fp), 0);
    free(der);

    snprintf(cmd, sizeof cmd, "openssl crl -inform DER -in '%s' -CAfile '%s' -noout 2>&1", der_path,
             f->cert_path);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = '\0';
    int status = pclose(p);
    print_message("openssl crl: %s", out);
    assert_int_equal(status, 0);
    assert_non_null(strstr(out, "verify OK"));
}

struct fetcher {
    certs_ca *ca;
    unsigned char first[4096];
    size_t first_len;
    int mismatches;
};

static void *fetch_many(void *arg)
{
    struct fetcher *t = arg;
    for (int i = 0; i < 200; i++) {
        unsigned char *der = NULL;
        size_t len = 0;
        if (certs_crl_der(t->ca, &der, &len) != 0 || len > sizeof t->first) {
            t->mismatches++;
        } else if (i == 0) {
            memcpy(t->first, der, len);
            t->first_len = len;
        } else if (len != t->first_len || memcmp(der, t->first, len) != 0) {
            t->mismatches++;
        }
        free(der);
    }
    return NULL;
}

static void crl_is_safe_to_fetch_from_several_threads(void **state)
{
    struct fixture *f = *state;
    struct fetcher t[4];
    pthread_t tid[4];
    for (int i = 0; i < 4; i++) {
        memset(&t[i], 0, sizeof t[i]);
        t[i].ca = f->ca;
        assert_int_equal(pthread_create(&tid[i], NULL, fetch_many, &t[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(tid[i], NULL), 0);
        assert_int_equal(t[i].mismatches, 0);
        assert_int_equal(t[i].first_len, t[0].first_len);
        assert_memory_equal(t[i].first, t[0].first, t[0].first_len);
    }
}

static void crl_never_outlives_the_ca(void **state)
{
    struct fixture *f = *state;
    char cert[PATH_MAX], key[PATH_MAX], err[256] = "";
    path_join(cert, sizeof cert, f->dir, "short.crt");
    path_join(key, sizeof key, f->dir, "short.key");
    EVP_PKEY *ca_key = NULL;
    X509 *ca_cert = test_ca_new(&ca_key, 2); /* expires before a 7-day CRL would */
    test_write_pem(ca_cert, ca_key, cert, key);
    certs_ca *ca = certs_ca_load(cert, key, err, sizeof err);
    assert_non_null(ca);

    X509_CRL *crl = fetch_crl(ca);
    assert_true(ASN1_TIME_compare(X509_CRL_get0_nextUpdate(crl), X509_get0_notAfter(ca_cert)) <= 0);
    time_t tomorrow = time(NULL) + 86400;
    assert_true(X509_cmp_time(X509_CRL_get0_nextUpdate(crl), &tomorrow) > 0);
    X509_CRL_free(crl);
    certs_ca_free(ca);
    X509_free(ca_cert);
    EVP_PKEY_free(ca_key);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(crl_is_signed_by_the_ca_and_current, setup_ec, teardown),
        cmocka_unit_test_setup_teardown(crl_is_signed_by_the_ca_and_current, setup_rsa, teardown),
        cmocka_unit_test_setup_teardown(crl_is_cached_between_calls, setup_ec, teardown),
        cmocka_unit_test_setup_teardown(minted_leaf_passes_a_revocation_check, setup_ec, teardown),
        cmocka_unit_test_setup_teardown(openssl_cli_verifies_the_crl, setup_ec, teardown),
        cmocka_unit_test_setup_teardown(openssl_cli_verifies_the_crl, setup_rsa, teardown),
        cmocka_unit_test_setup_teardown(crl_is_safe_to_fetch_from_several_threads, setup_ec,
                                        teardown),
        cmocka_unit_test_setup_teardown(crl_never_outlives_the_ca, setup_ec, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
