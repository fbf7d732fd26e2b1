/* certs_mint_leaf: minted leaves must pass a TLS client's checks and mimic the upstream. */
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

#define CRL_URL "http://127.0.0.1:3128/handoff-ca.crl"

struct fixture {
    char dir[PATH_MAX];
    certs_ca *ca;
    EVP_PKEY *leaf_key;
    X509 *upstream_ca, *upstream;
    EVP_PKEY *upstream_ca_key;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    tmpdir_make(f->dir, sizeof f->dir);
    f->ca = test_handoff_ca(f->dir, false);
    f->leaf_key = certs_leaf_key_new();
    assert_non_null(f->leaf_key);
    f->upstream_ca = test_ca_new(&f->upstream_ca_key, 365);
    f->upstream = test_server_cert(f->upstream_ca, f->upstream_ca_key, "origin.example",
                                   "origin.example", "*.cdn.example", "192.0.2.7", NULL);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    X509_free(f->upstream);
    X509_free(f->upstream_ca);
    EVP_PKEY_free(f->upstream_ca_key);
    EVP_PKEY_free(f->leaf_key);
    certs_ca_free(f->ca);
    tmpdir_remove(f->dir);
    free(f);
    return 0;
}

/* What a TLS client does: chain to the trusted CA, as a server, for host or ip. */
static int client_accepts(X509 *ca, X509 *leaf, const char *host, const char *ip)
{
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    assert_non_null(store);
    assert_non_null(ctx);
    assert_int_equal(X509_STORE_add_cert(store, ca), 1);
    assert_int_equal(X509_STORE_CTX_init(ctx, store, leaf, NULL), 1);
    assert_int_equal(X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_SERVER), 1);
    X509_VERIFY_PARAM *param = X509_STORE_CTX_get0_param(ctx);
    if (host != NULL)
        assert_int_equal(X509_VERIFY_PARAM_set1_host(param, host, 0), 1);
    if (ip != NULL)
        assert_int_equal(X509_VERIFY_PARAM_set1_ip_asc(param, ip), 1);
    int ok = X509_verify_cert(ctx);
    if (ok != 1)
        print_message("verify: %s\n", X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    return ok;
}

static void leaf_verifies_as_server_for_every_upstream_name(void **state)
{
    struct fixture *f = *state;
    X509 *leaf = certs_mint_leaf(f->ca, f->leaf_key, f->upstream, "origin.example", CRL_URL);
    assert_non_null(leaf);
    X509 *ca = certs_ca_cert(f->ca);
    assert_int_equal(client_accepts(ca, leaf, "origin.example", NULL), 1);
    assert_int_equal(client_accepts(ca, leaf, "img.cdn.example", NULL), 1);
    assert_int_equal(client_accepts(ca, leaf, NULL, "192.0.2.7"), 1);
    assert_int_equal(client_accepts(ca, leaf, "other.example", NULL), 0);
    assert_int_equal(X509_get_signature_nid(leaf), NID_ecdsa_with_SHA256);
    X509_free(leaf);
}

static void leaf_from_rsa_ca_verifies(void **state)
{
    struct fixture *f = *state;
    char dir[PATH_MAX];
    path_join(dir, sizeof dir, f->dir, "rsa");
    certs_ca *rsa_ca = test_handoff_ca(dir, true);
    X509 *leaf = certs_mint_leaf(rsa_ca, f->leaf_key, f->upstream, "origin.example", CRL_URL);
    assert_non_null(leaf);
    assert_int_equal(client_accepts(certs_ca_cert(rsa_ca), leaf, "origin.example", NULL), 1);
    assert_int_equal(X509_get_signature_nid(leaf), NID_sha256WithRSAEncryption);
    X509_free(leaf);
    certs_ca_free(rsa_ca);
}

static void leaf_copies_upstream_san_and_cn(void **state)
{
    struct fixture *f = *state;
    /* The client asked by IP; the names still come from the upstream certificate. */
    X509 *leaf = certs_mint_leaf(f->ca, f->leaf_key, f->upstream, "192.0.2.7", CRL_URL);
    assert_non_null(leaf);

    GENERAL_NAMES *want = X509_get_ext_d2i(f->upstream, NID_subject_alt_name, NULL, NULL);
    GENERAL_NAMES *got = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
    assert_non_null(got);
    assert_int_equal(sk_GENERAL_NAME_num(got), 3);
    assert_int_equal(sk_GENERAL_NAME_num(got), sk_GENERAL_NAME_num(want));
    for (int i = 0; i < sk_GENERAL_NAME_num(want); i++)
        assert_int_equal(
            GENERAL_NAME_cmp(sk_GENERAL_NAME_value(got, i), sk_GENERAL_NAME_value(want, i)), 0);
    GENERAL_NAMES_free(want);
    GENERAL_NAMES_free(got);

    char cn[128];
    assert_true(
        X509_NAME_get_text_by_NID(X509_get_subject_name(leaf), NID_commonName, cn, sizeof cn) > 0);
    assert_string_equal(cn, "origin.example");
    assert_int_equal(
        X509_NAME_cmp(X509_get_issuer_name(leaf), X509_get_subject_name(certs_ca_cert(f->ca))), 0);
    X509_free(leaf);
}

static void leaf_points_at_our_crl(void **state)
{
    struct fixture *f = *state;
    X509 *leaf = certs_mint_leaf(f->ca, f->leaf_key, f->upstream, "origin.example", CRL_URL);
    assert_non_null(leaf);
    CRL_DIST_POINTS *points = X509_get_ext_d2i(leaf, NID_crl_distribution_points, NULL, NULL);
    assert_non_null(points);
    assert_int_equal(sk_DIST_POINT_num(points), 1);
    DIST_POINT *point = sk_DIST_POINT_value(points, 0);
    assert_non_null(point->distpoint);
    assert_int_equal(point->distpoint->type, 0);
    GENERAL_NAMES *names = point->distpoint->name.fullname;
    assert_int_equal(sk_GENERAL_NAME_num(names), 1);
    int type = -1;
    ASN1_IA5STRING *uri = GENERAL_NAME_get0_value(sk_GENERAL_NAME_value(names, 0), &type);
    assert_int_equal(type, GEN_URI);
    assert_int_equal(ASN1_STRING_length(uri), strlen(CRL_URL));
    assert_memory_equal(ASN1_STRING_get0_data(uri), CRL_URL, strlen(CRL_URL));
    CRL_DIST_POINTS_free(points);
    X509_free(leaf);
}

static void leaf_key_ids_are_its_own_and_the_cas(void **state)
{
    struct fixture *f = *state;
    X509 *leaf = certs_mint_leaf(f->ca, f->leaf_key, f->upstream, "origin.example", CRL_URL);
    assert_non_null(leaf);
    const ASN1_OCTET_STRING *ca_ski = X509_get0_subject_key_id(certs_ca_cert(f->ca));
    const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id(leaf);
    const ASN1_OCTET_STRING *aki = X509_get0_authority_key_id(leaf);
    assert_non_null(ca_ski);
    assert_non_null(ski);
    assert_non_null(aki);
    assert_int_not_equal(ASN1_OCTET_STRING_cmp(ski, ca_ski), 0);
    assert_int_equal(ASN1_OCTET_STRING_cmp(aki, ca_ski), 0);

    /* The SKI is the hash of the leaf's own public key. */
    unsigned char md[20];
    unsigned int len = 0;
    assert_int_equal(X509_pubkey_digest(leaf, EVP_sha1(), md, &len), 1);
    assert_int_equal(ASN1_STRING_length(ski), len);
    assert_memory_equal(ASN1_STRING_get0_data(ski), md, len);
    assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(leaf), f->leaf_key), 1);
    assert_int_equal(X509_check_private_key(leaf, f->leaf_key), 1); /* what SSL_CTX setup checks */
    X509_free(leaf);
}

static void leaf_is_a_v3_server_only_certificate(void **state)
{
    struct fixture *f = *state;
    X509 *leaf = certs_mint_leaf(f->ca, f->leaf_key, NULL, "plain.example", CRL_URL);
    assert_non_null(leaf);
    assert_int_equal(X509_get_version(leaf), X509_VERSION_3);
    assert_int_equal(X509_check_ca(leaf), 0);
    assert_int_equal(X509_get_key_usage(leaf), KU_DIGITAL_SIGNATURE);
    assert_int_equal(X509_get_extended_key_usage(leaf), XKU_SSL_SERVER);
    X509_free(leaf);
}

static void leaf_validity_lies_inside_the_cas(void **state)
{
    struct fixture *f = *state;
    X509 *ca = certs_ca_cert(f->ca);
    X509 *leaf = certs_mint_leaf(f->ca, f->leaf_key, f->upstream, "origin.example", CRL_URL);
    assert_non_null(leaf);
    assert_true(ASN1_TIME_compare(X509_get0_notBefore(leaf), X509_get0_notBefore(ca)) >= 0);
    assert_true(ASN1_TIME_compare(X509_get0_notAfter(leaf), X509_get0_notAfter(ca)) <= 0);
    /* Valid now, for no more than 397 days. */
    time_t now = time(NULL), limit = now + 398L * 86400;
    assert_true(X509_cmp_time(X509_get0_notBefore(leaf), &now) < 0);
    assert_true(X509_cmp_time(X509_get0_notAfter(leaf), &now) > 0);
    assert_true(X509_cmp_time(X509_get0_notAfter(leaf), &limit) < 0);
    X509_free(leaf);
}

static void leaf_never_outlives_a_short_lived_ca(void **state)
{
    struct fixture *f = *state;
    char cert_path[PATH_MAX], key_path[PATH_MAX], err[256] = "";
    path_join(cert_path, sizeof cert_path, f->dir, "short.crt");
    path_join(key_path, sizeof key_path, f->dir, "short.key");
    EVP_PKEY *key = NULL;
    X509 *short_ca = test_ca_new(&key, 30);
    test_write_pem(short_ca, key, cert_path, key_path);
    certs_ca *ca = certs_ca_load(cert_path, key_path, err, sizeof err);
    assert_non_null(ca);

    X509 *leaf = certs_mint_leaf(ca, f->leaf_key, NULL, "short.example", CRL_URL);
    assert_non_null(leaf);
    assert_int_equal(ASN1_TIME_compare(X509_get0_notAfter(leaf), X509_get0_notAfter(short_ca)), 0);
    assert_int_equal(client_accepts(short_ca, leaf, "short.example", NULL), 1);
    /* A CA without an SKI still gets a matching AKI: the hash of its key. */
    unsigned char md[20];
    unsigned int len = 0;
    assert_int_equal(X509_pubkey_digest(short_ca, EVP_sha1(), md, &len), 1);
    const ASN1_OCTET_STRING *aki = X509_get0_authority_key_id(leaf);
    assert_non_null(aki);
    assert_memory_equal(ASN1_STRING_get0_data(aki), md, len);

    X509_free(leaf);
    certs_ca_free(ca);
    X509_free(short_ca);
    EVP_PKEY_free(key);
}

static void serials_are_random_and_positive(void **state)
{
    struct fixture *f = *state;
    X509 *a = certs_mint_leaf(f->ca, f->leaf_key, f->upstream, "origin.example", CRL_URL);
    X509 *b = certs_mint_leaf(f->ca, f->leaf_key, f->upstream, "origin.example", CRL_URL);
    assert_non_null(a);
    assert_non_null(b);
    const ASN1_INTEGER *sa = X509_get0_serialNumber(a), *sb = X509_get0_serialNumber(b);
    assert_int_not_equal(ASN1_INTEGER_cmp(sa, sb), 0);
    BIGNUM *bn = ASN1_INTEGER_to_BN(sa, NULL);
    assert_false(BN_is_negative(bn));
    assert_false(BN_is_zero(bn));
    assert_true(BN_num_bits(bn) <= 128);
    assert_true(BN_num_bits(bn) > 64); /* fails with odds 2^-64 */
    BN_free(bn);
    X509_free(a);
    X509_free(b);
}

static void without_upstream_the_name_is_the_san(void **state)
{
    struct fixture *f = *state;
    X509 *ca = certs_ca_cert(f->ca);
    struct {
        const char *name, *host, *ip;
        int type;
        size_t len;
    } cases[] = {
        {"www.example.test", "www.example.test", NULL, GEN_DNS, 16},
        {"127.0.0.1", NULL, "127.0.0.1", GEN_IPADD, 4},
        {"[::1]", NULL, "::1", GEN_IPADD, 16},
        {"2001:db8::5", NULL, "2001:db8::5", GEN_IPADD, 16},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        X509 *leaf = certs_mint_leaf(f->ca, f->leaf_key, NULL, cases[i].name, CRL_URL);
        assert_non_null(leaf);
        GENERAL_NAMES *names = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
        assert_int_equal(sk_GENERAL_NAME_num(names), 1);
        int type = -1;
        ASN1_STRING *value = GENERAL_NAME_get0_value(sk_GENERAL_NAME_value(names, 0), &type);
        assert_int_equal(type, cases[i].type);
        assert_int_equal(ASN1_STRING_length(value), cases[i].len);
        GENERAL_NAMES_free(names);
        assert_int_equal(client_accepts(ca, leaf, cases[i].host, cases[i].ip), 1);

        char cn[128];
        assert_true(X509_NAME_get_text_by_NID(X509_get_subject_name(leaf), NID_commonName, cn,
                                              sizeof cn) > 0);
        assert_string_equal(cn, cases[i].name);
        X509_free(leaf);
    }
}

static void refuses_bad_names_and_the_ca_key(void **state)
{
    struct fixture *f = *state;
    assert_null(certs_mint_leaf(f->ca, f->leaf_key, NULL, "", CRL_URL));
    assert_null(certs_mint_leaf(f->ca, f->leaf_key, NULL, "bad name", CRL_URL));
    assert_null(certs_mint_leaf(f->ca, f->leaf_key, NULL, "ok.example", "http://x/a b"));

    /* A leaf signed for the CA's own key would carry the CA's SKI: SChannel rejects that. */
    char key_path[PATH_MAX];
    path_join(key_path, sizeof key_path, f->dir, "ca.key");
    FILE *fp = fopen(key_path, "r");
    assert_non_null(fp);
    EVP_PKEY *ca_key = PEM_read_PrivateKey(fp, NULL, NULL, NULL);
    fclose(fp);
    assert_non_null(ca_key);
    assert_null(certs_mint_leaf(f->ca, ca_key, NULL, "ok.example", CRL_URL));
    EVP_PKEY_free(ca_key);
}

static void long_names_go_in_the_san_only(void **state)
{
    struct fixture *f = *state;
    char name[200];
    memset(name, 'a', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    memcpy(name + sizeof name - 9, ".example", 8);
    X509 *leaf = certs_mint_leaf(f->ca, f->leaf_key, NULL, name, CRL_URL);
    assert_non_null(leaf);
    assert_int_equal(X509_NAME_entry_count(X509_get_subject_name(leaf)), 0);
    int at = X509_get_ext_by_NID(leaf, NID_subject_alt_name, -1);
    assert_true(at >= 0);
    assert_int_equal(X509_EXTENSION_get_critical(X509_get_ext(leaf, at)), 1);
    assert_int_equal(client_accepts(certs_ca_cert(f->ca), leaf, name, NULL), 1);
    X509_free(leaf);
}

struct minter {
    struct fixture *f;
    int failures;
};

static void *mint_many(void *arg)
{
    struct minter *m = arg;
    for (int i = 0; i < 50; i++) {
        char name[64];
        snprintf(name, sizeof name, "host%d.example", i);
        X509 *leaf = certs_mint_leaf(m->f->ca, m->f->leaf_key, m->f->upstream, name, CRL_URL);
        if (leaf == NULL || X509_verify(leaf, X509_get0_pubkey(certs_ca_cert(m->f->ca))) != 1)
            m->failures++;
        X509_free(leaf);
    }
    return NULL;
}

static void ca_mints_from_several_threads(void **state)
{
    struct minter m[4];
    pthread_t tid[4];
    for (int i = 0; i < 4; i++) {
        m[i] = (struct minter){.f = *state};
        assert_int_equal(pthread_create(&tid[i], NULL, mint_many, &m[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(tid[i], NULL), 0);
        assert_int_equal(m[i].failures, 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(leaf_verifies_as_server_for_every_upstream_name, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(leaf_from_rsa_ca_verifies, setup, teardown),
        cmocka_unit_test_setup_teardown(leaf_copies_upstream_san_and_cn, setup, teardown),
        cmocka_unit_test_setup_teardown(leaf_points_at_our_crl, setup, teardown),
        cmocka_unit_test_setup_teardown(leaf_key_ids_are_its_own_and_the_cas, setup, teardown),
        cmocka_unit_test_setup_teardown(leaf_is_a_v3_server_only_certificate, setup, teardown),
        cmocka_unit_test_setup_teardown(leaf_validity_lies_inside_the_cas, setup, teardown),
        cmocka_unit_test_setup_teardown(leaf_never_outlives_a_short_lived_ca, setup, teardown),
        cmocka_unit_test_setup_teardown(serials_are_random_and_positive, setup, teardown),
        cmocka_unit_test_setup_teardown(without_upstream_the_name_is_the_san, setup, teardown),
        cmocka_unit_test_setup_teardown(refuses_bad_names_and_the_ca_key, setup, teardown),
        cmocka_unit_test_setup_teardown(long_names_go_in_the_san_only, setup, teardown),
        cmocka_unit_test_setup_teardown(ca_mints_from_several_threads, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
