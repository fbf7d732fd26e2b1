/* certs_ocsp_respond and certs_ocsp_staple: handoff's OCSP answers for the leaves it mints. */
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

#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "certs.h"
#include "ocsp.h"
#include "revocation.h"
#include "test_util.h"

#define CRL_URL  "http://127.0.0.1:3128/handoff-ca.crl"
#define OCSP_URL "http://127.0.0.1:3128/ocsp"

struct fixture {
    char dir[PATH_MAX], cert_path[PATH_MAX];
    certs_ca *ca;
    EVP_PKEY *leaf_key;
    X509 *leaf;
};

static int setup_with(void **state, bool rsa)
{
    struct fixture *f = calloc(1, sizeof *f);
    tmpdir_make(f->dir, sizeof f->dir);
    f->ca = test_handoff_ca(f->dir, rsa);
    path_join(f->cert_path, sizeof f->cert_path, f->dir, "ca.crt");
    f->leaf_key = certs_leaf_key_new();
    f->leaf = certs_mint_leaf_ex(f->ca, f->leaf_key, NULL, "www.example.test", CRL_URL, OCSP_URL);
    assert_non_null(f->leaf);
    *state = f;
    return 0;
}

static int setup(void **state)
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
    X509_free(f->leaf);
    EVP_PKEY_free(f->leaf_key);
    certs_ca_free(f->ca);
    if (getenv("KEEP_TMP") == NULL)
        tmpdir_remove(f->dir);
    free(f);
    return 0;
}

/* Asks the responder about (cert, issuer) with a SHA-1 CertID; returns the outcome. */
static enum certs_ocsp_outcome ask(certs_ca *ca, X509 *cert, X509 *issuer, unsigned char *nonce,
                                   unsigned char **resp, size_t *resp_len)
{
    unsigned char *req = NULL;
    size_t req_len = 0;
    assert_int_equal(certs_rev_ocsp_request(cert, issuer, nonce, &req, &req_len), 0);
    enum certs_ocsp_outcome outcome = certs_ocsp_respond(ca, req, req_len, resp, resp_len);
    OPENSSL_free(req);
    assert_non_null(*resp);
    return outcome;
}

static OCSP_BASICRESP *basic_of(const unsigned char *der, size_t len)
{
    const unsigned char *p = der;
    OCSP_RESPONSE *resp = d2i_OCSP_RESPONSE(NULL, &p, (long)len);
    assert_non_null(resp);
    assert_int_equal(OCSP_response_status(resp), OCSP_RESPONSE_STATUS_SUCCESSFUL);
    OCSP_BASICRESP *basic = OCSP_response_get1_basic(resp);
    assert_non_null(basic);
    OCSP_RESPONSE_free(resp);
    return basic;
}

/* The status of the only SingleResponse, checked to be signed by ca. */
static int only_status(const unsigned char *der, size_t len, X509 *ca)
{
    OCSP_BASICRESP *basic = basic_of(der, len);
    STACK_OF(X509) *certs = sk_X509_new_null();
    sk_X509_push(certs, ca);
    assert_int_equal(OCSP_basic_verify(basic, certs, NULL, OCSP_NOVERIFY | OCSP_NOCHECKS), 1);
    sk_X509_free(certs);
    assert_int_equal(OCSP_resp_count(basic), 1);
    int status = OCSP_single_get0_status(OCSP_resp_get0(basic, 0), NULL, NULL, NULL, NULL);
    OCSP_BASICRESP_free(basic);
    return status;
}

static void minted_leaf_names_the_responder_and_the_crl(void **state)
{
    struct fixture *f = *state;
    char *urls[CERTS_REV_MAX_URLS];
    assert_int_equal(certs_rev_ocsp_urls(f->leaf, urls, CERTS_REV_MAX_URLS), 1);
    assert_string_equal(urls[0], OCSP_URL);
    certs_rev_urls_free(urls, 1);
    assert_int_equal(certs_rev_crl_urls(f->leaf, urls, CERTS_REV_MAX_URLS), 1);
    assert_string_equal(urls[0], CRL_URL);
    certs_rev_urls_free(urls, 1);

    /* The plain mint call still makes leaves without AIA. */
    X509 *plain = certs_mint_leaf(f->ca, f->leaf_key, NULL, "plain.test", CRL_URL);
    assert_non_null(plain);
    assert_int_equal(certs_rev_ocsp_urls(plain, urls, CERTS_REV_MAX_URLS), 0);
    X509_free(plain);
}

static void minted_leaf_is_good(void **state)
{
    struct fixture *f = *state;
    X509 *ca = certs_ca_cert(f->ca);
    unsigned char *resp = NULL;
    size_t len = 0;
    time_t now = time(NULL);
    assert_int_equal(ask(f->ca, f->leaf, ca, NULL, &resp, &len), CERTS_OCSP_GOOD);

    struct certs_rev_result r;
    assert_int_equal(certs_rev_ocsp_verify(resp, len, f->leaf, ca, NULL, now, &r), CERTS_REV_GOOD);
    /* nextUpdate a day ahead; thisUpdate in the past for clients whose clock lags. */
    assert_true(r.next_update >= now + CERTS_OCSP_VALIDITY_SECS - 5);
    assert_true(r.next_update <= now + CERTS_OCSP_VALIDITY_SECS + 5);
    OCSP_BASICRESP *basic = basic_of(resp, len);
    ASN1_GENERALIZEDTIME *this_update = NULL;
    OCSP_single_get0_status(OCSP_resp_get0(basic, 0), NULL, NULL, &this_update, NULL);
    assert_true(certs_asn1_time(this_update) <= now - CERTS_OCSP_BACKDATE_SECS + 5);
    /* Responder ID by key hash, and no certificates: the CA signs directly. */
    const ASN1_OCTET_STRING *key_id = NULL;
    const X509_NAME *name = NULL;
    assert_int_equal(OCSP_resp_get0_id(basic, &key_id, &name), 1);
    assert_non_null(key_id);
    assert_null(name);
    assert_true(sk_X509_num(OCSP_resp_get0_certs(basic)) <= 0);
    OCSP_BASICRESP_free(basic);
    OPENSSL_free(resp);
}

static void sha256_cert_id_is_answered_in_kind(void **state)
{
    struct fixture *f = *state;
    X509 *ca = certs_ca_cert(f->ca);
    OCSP_REQUEST *req = OCSP_REQUEST_new();
    assert_non_null(OCSP_request_add0_id(req, OCSP_cert_to_id(EVP_sha256(), f->leaf, ca)));
    unsigned char *der = NULL, *resp = NULL;
    int len = i2d_OCSP_REQUEST(req, &der);
    size_t resp_len = 0;
    assert_int_equal(certs_ocsp_respond(f->ca, der, (size_t)len, &resp, &resp_len),
                     CERTS_OCSP_GOOD);
    struct certs_rev_result r;
    assert_int_equal(certs_rev_ocsp_verify(resp, resp_len, f->leaf, ca, NULL, time(NULL), &r),
                     CERTS_REV_GOOD);
    OPENSSL_free(der);
    OPENSSL_free(resp);
    OCSP_REQUEST_free(req);
}

static void foreign_certificates_are_unknown(void **state)
{
    struct fixture *f = *state;
    X509 *ca = certs_ca_cert(f->ca);
    unsigned char *resp = NULL;
    size_t len = 0;

    /* Another CA's certificate: the issuer hashes do not match ours. */
    EVP_PKEY *other_key = NULL;
    X509 *other_ca = test_ca_new(&other_key, 30);
    X509 *other =
        test_server_cert(other_ca, other_key, "o.test", "o.test", "p.test", "192.0.2.1", NULL);
    assert_int_equal(ask(f->ca, other, other_ca, NULL, &resp, &len), CERTS_OCSP_UNKNOWN);
    assert_int_equal(only_status(resp, len, ca), V_OCSP_CERTSTATUS_UNKNOWN);
    OPENSSL_free(resp);

    /* Our issuer, a serial we never minted (the foreign certificate's, under our CA). */
    OCSP_CERTID *cid = OCSP_cert_id_new(EVP_sha1(), X509_get_subject_name(ca),
                                        X509_get0_pubkey_bitstr(ca), X509_get_serialNumber(other));
    OCSP_REQUEST *req = OCSP_REQUEST_new();
    assert_non_null(OCSP_request_add0_id(req, cid));
    unsigned char *der = NULL;
    int dlen = i2d_OCSP_REQUEST(req, &der);
    assert_int_equal(certs_ocsp_respond(f->ca, der, (size_t)dlen, &resp, &len), CERTS_OCSP_UNKNOWN);
    assert_int_equal(only_status(resp, len, ca), V_OCSP_CERTSTATUS_UNKNOWN);
    OPENSSL_free(resp);
    OPENSSL_free(der);
    OCSP_REQUEST_free(req);
    X509_free(other);
    X509_free(other_ca);
    EVP_PKEY_free(other_key);
}

static void nonce_is_copied_and_plain_requests_share_the_cached_bytes(void **state)
{
    struct fixture *f = *state;
    X509 *ca = certs_ca_cert(f->ca);
    unsigned char nonce[CERTS_REV_NONCE_LEN], *a = NULL, *b = NULL;
    size_t alen = 0, blen = 0;

    assert_int_equal(ask(f->ca, f->leaf, ca, nonce, &a, &alen), CERTS_OCSP_GOOD);
    struct certs_rev_result r;
    assert_int_equal(certs_rev_ocsp_verify(a, alen, f->leaf, ca, nonce, time(NULL), &r),
                     CERTS_REV_GOOD);
    OCSP_BASICRESP *basic = basic_of(a, alen);
    assert_true(OCSP_BASICRESP_get_ext_by_NID(basic, NID_id_pkix_OCSP_Nonce, -1) >= 0);
    OCSP_BASICRESP_free(basic);
    /* Another nonce is not accepted for this response. */
    unsigned char wrong[CERTS_REV_NONCE_LEN];
    memcpy(wrong, nonce, sizeof wrong);
    wrong[0] ^= 1;
    assert_int_equal(certs_rev_ocsp_verify(a, alen, f->leaf, ca, wrong, time(NULL), &r),
                     CERTS_REV_ERROR);
    OPENSSL_free(a);

    /* Without a nonce: the same signed bytes twice (ECDSA would differ if re-signed). */
    assert_int_equal(ask(f->ca, f->leaf, ca, NULL, &a, &alen), CERTS_OCSP_GOOD);
    assert_int_equal(ask(f->ca, f->leaf, ca, NULL, &b, &blen), CERTS_OCSP_GOOD);
    assert_int_equal(alen, blen);
    assert_memory_equal(a, b, alen);
    OPENSSL_free(a);
    OPENSSL_free(b);
    /* With nonces: a fresh signature each time. */
    assert_int_equal(ask(f->ca, f->leaf, ca, nonce, &a, &alen), CERTS_OCSP_GOOD);
    assert_int_equal(ask(f->ca, f->leaf, ca, nonce, &b, &blen), CERTS_OCSP_GOOD);
    assert_true(alen != blen || memcmp(a, b, alen) != 0);
    OPENSSL_free(a);
    OPENSSL_free(b);
}

static void garbage_is_a_malformed_request(void **state)
{
    struct fixture *f = *state;
    static const unsigned char junk[] = "GET / HTTP/1.1\r\n\r\n";
    unsigned char *resp = NULL, *req = NULL;
    size_t len = 0, req_len = 0;
    const unsigned char *p;

    assert_int_equal(certs_ocsp_respond(f->ca, junk, sizeof junk - 1, &resp, &len),
                     CERTS_OCSP_MALFORMED);
    p = resp;
    OCSP_RESPONSE *r = d2i_OCSP_RESPONSE(NULL, &p, (long)len);
    assert_non_null(r);
    assert_int_equal(OCSP_response_status(r), OCSP_RESPONSE_STATUS_MALFORMEDREQUEST);
    OCSP_RESPONSE_free(r);
    OPENSSL_free(resp);

    assert_int_equal(certs_ocsp_respond(f->ca, junk, 0, &resp, &len), CERTS_OCSP_MALFORMED);
    OPENSSL_free(resp);

    /* A valid request with a byte after it, and one cut short. */
    assert_int_equal(certs_rev_ocsp_request(f->leaf, certs_ca_cert(f->ca), NULL, &req, &req_len),
                     0);
    unsigned char *longer = malloc(req_len + 1);
    memcpy(longer, req, req_len);
    longer[req_len] = 0;
    assert_int_equal(certs_ocsp_respond(f->ca, longer, req_len + 1, &resp, &len),
                     CERTS_OCSP_MALFORMED);
    OPENSSL_free(resp);
    assert_int_equal(certs_ocsp_respond(f->ca, req, req_len - 1, &resp, &len),
                     CERTS_OCSP_MALFORMED);
    OPENSSL_free(resp);
    free(longer);
    OPENSSL_free(req);
}

static void expired_or_dropped_records_are_unknown(void **state)
{
    struct fixture *f = *state;
    X509 *ca = certs_ca_cert(f->ca);
    unsigned char *resp = NULL;
    size_t len = 0;

    /* A record whose leaf has expired. */
    certs_issued *issued = certs_ca_issued(f->ca);
    assert_int_equal(certs_issued_add(issued, X509_get0_serialNumber(f->leaf), time(NULL) - 1), 0);
    assert_int_equal(ask(f->ca, f->leaf, ca, NULL, &resp, &len), CERTS_OCSP_UNKNOWN);
    assert_int_equal(only_status(resp, len, ca), V_OCSP_CERTSTATUS_UNKNOWN);
    OPENSSL_free(resp);

    /* A bounded record: of three leaves minted into room for two, the first is forgotten. */
    assert_int_equal(certs_ca_set_record_capacity(f->ca, 2), 0);
    X509 *leaves[3];
    for (int i = 0; i < 3; i++)
        assert_non_null(
            leaves[i] = certs_mint_leaf_ex(f->ca, f->leaf_key, NULL, "n.test", CRL_URL, OCSP_URL));
    assert_int_equal(certs_issued_count(certs_ca_issued(f->ca)), 2);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(ask(f->ca, leaves[i], ca, NULL, &resp, &len),
                         i == 0 ? CERTS_OCSP_UNKNOWN : CERTS_OCSP_GOOD);
        OPENSSL_free(resp);
        X509_free(leaves[i]);
    }
}

static void staple_is_good_and_rerecords_a_leaf_in_use(void **state)
{
    struct fixture *f = *state;
    X509 *ca = certs_ca_cert(f->ca);
    unsigned char *der = NULL;
    size_t len = 0;
    struct certs_rev_result r;

    /* The leaf's record is gone (a new, empty record), yet it is still served from a cache. */
    assert_int_equal(certs_ca_set_record_capacity(f->ca, 16), 0);
    assert_int_equal(certs_ocsp_staple(f->ca, f->leaf, &der, &len), 0);
    assert_int_equal(certs_rev_ocsp_verify(der, len, f->leaf, ca, NULL, time(NULL), &r),
                     CERTS_REV_GOOD);
    OPENSSL_free(der);
    assert_int_equal(ask(f->ca, f->leaf, ca, NULL, &der, &len), CERTS_OCSP_GOOD);
    OPENSSL_free(der);

    /* Not ours: no staple. */
    EVP_PKEY *other_key = NULL;
    X509 *other_ca = test_ca_new(&other_key, 30);
    X509 *other =
        test_server_cert(other_ca, other_key, "o.test", "o.test", "p.test", "192.0.2.1", NULL);
    assert_int_equal(certs_ocsp_staple(f->ca, other, &der, &len), -1);
    assert_null(der);
    X509_free(other);
    X509_free(other_ca);
    EVP_PKEY_free(other_key);
}

static void get_paths_decode_to_the_request(void **state)
{
    struct fixture *f = *state;
    unsigned char *req = NULL, *der = NULL;
    size_t req_len = 0, der_len = 0;
    assert_int_equal(certs_rev_ocsp_request(f->leaf, certs_ca_cert(f->ca), NULL, &req, &req_len),
                     0);
    char b64[1024], escaped[3072], urlsafe[1024];
    int n = EVP_EncodeBlock((unsigned char *)b64, req, (int)req_len);
    assert_true(n > 0);
    size_t e = 0;
    for (int i = 0; i < n; i++) {
        char c = b64[i];
        urlsafe[i] = c == '+' ? '-' : c == '/' ? '_' : c;
        if (c == '+' || c == '/' || c == '=')
            e += (size_t)snprintf(escaped + e, sizeof escaped - e, "%%%02X", c);
        else
            escaped[e++] = c;
    }
    escaped[e] = '\0';
    urlsafe[n] = '\0';
    const char *forms[] = {b64, escaped, urlsafe};
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(certs_ocsp_decode_get(forms[i], strlen(forms[i]), &der, &der_len), 0);
        assert_int_equal(der_len, req_len);
        assert_memory_equal(der, req, req_len);
        free(der);
    }
    /* Padding may be left out. */
    size_t bare = (size_t)n;
    while (bare > 0 && b64[bare - 1] == '=')
        bare--;
    assert_int_equal(certs_ocsp_decode_get(b64, bare, &der, &der_len), 0);
    assert_int_equal(der_len, req_len);
    free(der);

    const char *bad[] = {"", "AB*D", "%4", "%zz", "QQ==QQ", "QQ=", "QR==", "Q"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(certs_ocsp_decode_get(bad[i], strlen(bad[i]), &der, &der_len), -1);
        assert_null(der);
    }
    OPENSSL_free(req);
}

struct worker {
    struct fixture *f;
    int failures;
};

/* Workers mint and ask at once, as proxy threads do. */
static void *mint_and_ask(void *arg)
{
    struct worker *w = arg;
    X509 *ca = certs_ca_cert(w->f->ca);
    for (int i = 0; i < 50; i++) {
        X509 *leaf =
            certs_mint_leaf_ex(w->f->ca, w->f->leaf_key, NULL, "t.test", CRL_URL, OCSP_URL);
        X509 *which = i % 2 ? leaf : w->f->leaf;
        unsigned char *req = NULL, *resp = NULL;
        size_t req_len = 0, resp_len = 0;
        struct certs_rev_result r;
        if (leaf == NULL || certs_rev_ocsp_request(which, ca, NULL, &req, &req_len) != 0 ||
            certs_ocsp_respond(w->f->ca, req, req_len, &resp, &resp_len) != CERTS_OCSP_GOOD ||
            certs_rev_ocsp_verify(resp, resp_len, which, ca, NULL, time(NULL), &r) !=
                CERTS_REV_GOOD)
            w->failures++;
        OPENSSL_free(req);
        OPENSSL_free(resp);
        X509_free(leaf);
    }
    return NULL;
}

static void workers_share_the_responder(void **state)
{
    struct fixture *f = *state;
    pthread_t t[4];
    struct worker w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (struct worker){f, 0};
        assert_int_equal(pthread_create(&t[i], NULL, mint_and_ask, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(w[i].failures, 0);
    }
    assert_int_equal(certs_issued_count(certs_ca_issued(f->ca)), 1 + 4 * 50);
}

static void run(const char *cmd, char *out, size_t outlen)
{
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, outlen - 1, p);
    out[n] = '\0';
    pclose(p);
}

static void write_file(const char *path, const unsigned char *data, size_t len)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(data, 1, len, fp), len);
    assert_int_equal(fclose(fp), 0);
}

static unsigned char *read_file(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    unsigned char *buf = malloc(65536);
    *len = fread(buf, 1, 65536, fp);
    fclose(fp);
    return buf;
}

/* The real `openssl ocsp` makes the request and checks our answer. */
static void openssl_ocsp_accepts_the_answer(void **state)
{
    struct fixture *f = *state;
    if (system("openssl version >/dev/null 2>&1") != 0) {
        skip();
        return;
    }
    char leaf_path[PATH_MAX], req_path[PATH_MAX], resp_path[PATH_MAX], cmd[6 * PATH_MAX], out[4096];
    path_join(leaf_path, sizeof leaf_path, f->dir, "leaf.pem");
    path_join(req_path, sizeof req_path, f->dir, "req.der");
    path_join(resp_path, sizeof resp_path, f->dir, "resp.der");
    FILE *fp = fopen(leaf_path, "w");
    assert_non_null(fp);
    assert_int_equal(PEM_write_X509(fp, f->leaf), 1);
    fclose(fp);

    snprintf(cmd, sizeof cmd, "openssl ocsp -issuer '%s' -cert '%s' -reqout '%s' 2>&1",
             f->cert_path, leaf_path, req_path);
    run(cmd, out, sizeof out);
    size_t req_len = 0, resp_len = 0;
    unsigned char *req = read_file(req_path, &req_len), *resp = NULL;
    assert_int_equal(certs_ocsp_respond(f->ca, req, req_len, &resp, &resp_len), CERTS_OCSP_GOOD);
    write_file(resp_path, resp, resp_len);
    OPENSSL_free(resp);
    free(req);

    /* With -reqin, openssl also checks that the nonce it sent came back. */
    snprintf(cmd, sizeof cmd,
             "openssl ocsp -reqin '%s' -respin '%s' -issuer '%s' -CAfile '%s' 2>&1", req_path,
             resp_path, f->cert_path, f->cert_path);
    run(cmd, out, sizeof out);
    print_message("%s", out);
    assert_non_null(strstr(out, "Response verify OK"));
    assert_null(strstr(out, "Nonce"));

    snprintf(cmd, sizeof cmd,
             "openssl ocsp -respin '%s' -issuer '%s' -CAfile '%s' -cert '%s' -no_nonce 2>&1",
             resp_path, f->cert_path, f->cert_path, leaf_path);
    run(cmd, out, sizeof out);
    print_message("%s", out);
    assert_non_null(strstr(out, "Response verify OK"));
    assert_non_null(strstr(out, "leaf.pem: good"));

    /* A serial we never minted, asked by openssl itself. */
    snprintf(cmd, sizeof cmd, "openssl ocsp -issuer '%s' -serial 0x1234 -reqout '%s' 2>&1",
             f->cert_path, req_path);
    run(cmd, out, sizeof out);
    req = read_file(req_path, &req_len);
    assert_int_equal(certs_ocsp_respond(f->ca, req, req_len, &resp, &resp_len), CERTS_OCSP_UNKNOWN);
    write_file(resp_path, resp, resp_len);
    OPENSSL_free(resp);
    free(req);
    snprintf(cmd, sizeof cmd,
             "openssl ocsp -reqin '%s' -respin '%s' -issuer '%s' -CAfile '%s' -resp_text 2>&1",
             req_path, resp_path, f->cert_path, f->cert_path);
    run(cmd, out, sizeof out);
    assert_non_null(strstr(out, "Response verify OK"));
    assert_non_null(strstr(out, "Cert Status: unknown"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(minted_leaf_names_the_responder_and_the_crl, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(minted_leaf_is_good, setup, teardown),
        cmocka_unit_test_setup_teardown(minted_leaf_is_good, setup_rsa, teardown),
        cmocka_unit_test_setup_teardown(workers_share_the_responder, setup, teardown),
        cmocka_unit_test_setup_teardown(sha256_cert_id_is_answered_in_kind, setup, teardown),
        cmocka_unit_test_setup_teardown(foreign_certificates_are_unknown, setup, teardown),
        cmocka_unit_test_setup_teardown(nonce_is_copied_and_plain_requests_share_the_cached_bytes,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(garbage_is_a_malformed_request, setup, teardown),
        cmocka_unit_test_setup_teardown(expired_or_dropped_records_are_unknown, setup, teardown),
        cmocka_unit_test_setup_teardown(staple_is_good_and_rerecords_a_leaf_in_use, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(get_paths_decode_to_the_request, setup, teardown),
        cmocka_unit_test_setup_teardown(openssl_ocsp_accepts_the_answer, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
