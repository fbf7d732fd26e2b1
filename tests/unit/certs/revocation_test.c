/* Origin-side checks: OCSP requests and responses, CRLs and the certificate's URLs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "revocation.h"
#include "test_util.h"

struct fixture {
    X509 *issuer, *cert, *other_ca;
    EVP_PKEY *issuer_key, *other_key;
    time_t now;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    f->issuer = test_ca_new(&f->issuer_key, 30);
    f->cert = test_server_cert(f->issuer, f->issuer_key, "origin.test", "origin.test", "b.test",
                               "192.0.2.1", NULL);
    f->other_ca = test_ca_new(&f->other_key, 30);
    f->now = time(NULL);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    X509_free(f->issuer);
    X509_free(f->cert);
    X509_free(f->other_ca);
    EVP_PKEY_free(f->issuer_key);
    EVP_PKEY_free(f->other_key);
    free(f);
    return 0;
}

/* What a responder would say. */
struct answer {
    int status;              /* V_OCSP_CERTSTATUS_* */
    X509 *about;             /* the certificate the response is about */
    X509 *signer;            /* its certificate goes in the response unless it is the issuer */
    EVP_PKEY *key;           /* signs */
    long this_off, next_off; /* seconds from now; next_off 0: no nextUpdate */
    const unsigned char *nonce;
};

static unsigned char *respond(struct fixture *f, const struct answer *a, size_t *len)
{
    OCSP_BASICRESP *basic = OCSP_BASICRESP_new();
    OCSP_CERTID *cid = OCSP_cert_to_id(EVP_sha1(), a->about, f->issuer);
    ASN1_TIME *this_update = ASN1_TIME_set(NULL, f->now + a->this_off);
    ASN1_TIME *next_update = a->next_off ? ASN1_TIME_set(NULL, f->now + a->next_off) : NULL;
    ASN1_TIME *revoked_at = ASN1_TIME_set(NULL, f->now - 86400);
    assert_non_null(OCSP_basic_add1_status(
        basic, cid, a->status, OCSP_REVOKED_STATUS_KEYCOMPROMISE,
        a->status == V_OCSP_CERTSTATUS_REVOKED ? revoked_at : NULL, this_update, next_update));
    if (a->nonce != NULL)
        assert_int_equal(
            OCSP_basic_add1_nonce(basic, (unsigned char *)a->nonce, CERTS_REV_NONCE_LEN), 1);
    X509 *signer = a->signer != NULL ? a->signer : f->issuer;
    unsigned long flags = signer == f->issuer ? OCSP_NOCERTS : 0;
    assert_int_equal(OCSP_basic_sign(basic, signer, a->key != NULL ? a->key : f->issuer_key,
                                     EVP_sha256(), NULL, flags),
                     1);
    OCSP_RESPONSE *resp = OCSP_response_create(OCSP_RESPONSE_STATUS_SUCCESSFUL, basic);
    unsigned char *der = NULL;
    int n = i2d_OCSP_RESPONSE(resp, &der);
    assert_true(n > 0);
    *len = (size_t)n;
    OCSP_RESPONSE_free(resp);
    OCSP_BASICRESP_free(basic);
    OCSP_CERTID_free(cid);
    ASN1_TIME_free(this_update);
    ASN1_TIME_free(next_update);
    ASN1_TIME_free(revoked_at);
    return der;
}

static enum certs_rev_status verify(struct fixture *f, const struct answer *a,
                                    const unsigned char *nonce, time_t now,
                                    struct certs_rev_result *r)
{
    size_t len = 0;
    unsigned char *der = respond(f, a, &len);
    enum certs_rev_status st = certs_rev_ocsp_verify(der, len, f->cert, f->issuer, nonce, now, r);
    print_message("%s: %s\n", certs_rev_status_name(st), r->reason);
    OPENSSL_free(der);
    return st;
}

static void ocsp_good_and_revoked(void **state)
{
    struct fixture *f = *state;
    struct certs_rev_result r;
    struct answer a = {
        .status = V_OCSP_CERTSTATUS_GOOD, .about = f->cert, .this_off = -60, .next_off = 7200};
    assert_int_equal(verify(f, &a, NULL, f->now, &r), CERTS_REV_GOOD);
    assert_int_equal(r.next_update, f->now + 7200);

    a.status = V_OCSP_CERTSTATUS_REVOKED;
    assert_int_equal(verify(f, &a, NULL, f->now, &r), CERTS_REV_REVOKED);
    assert_non_null(strstr(r.reason, "revoked"));
    assert_non_null(strstr(r.reason, "keyCompromise"));
    assert_int_equal(r.revoked_at, f->now - 86400);

    a.status = V_OCSP_CERTSTATUS_UNKNOWN;
    assert_int_equal(verify(f, &a, NULL, f->now, &r), CERTS_REV_UNKNOWN);

    /* No nextUpdate: current for a default while. */
    a.status = V_OCSP_CERTSTATUS_GOOD;
    a.next_off = 0;
    assert_int_equal(verify(f, &a, NULL, f->now, &r), CERTS_REV_GOOD);
    assert_int_equal(r.next_update, f->now + CERTS_REV_DEFAULT_TTL_SECS);
}

static void ocsp_wrong_signer_is_an_error(void **state)
{
    struct fixture *f = *state;
    struct certs_rev_result r;
    /* Another CA signs, claiming to be the responder. */
    struct answer a = {.status = V_OCSP_CERTSTATUS_GOOD,
                       .about = f->cert,
                       .signer = f->other_ca,
                       .key = f->other_key,
                       .this_off = -60,
                       .next_off = 7200};
    assert_int_equal(verify(f, &a, NULL, f->now, &r), CERTS_REV_ERROR);

    /* The issuer named as responder, but a signature its key did not make. */
    size_t len = 0;
    OCSP_BASICRESP *basic = OCSP_BASICRESP_new();
    OCSP_CERTID *cid = OCSP_cert_to_id(EVP_sha1(), f->cert, f->issuer);
    ASN1_TIME *this_update = X509_gmtime_adj(NULL, -60);
    OCSP_basic_add1_status(basic, cid, V_OCSP_CERTSTATUS_GOOD, 0, NULL, this_update, NULL);
    ASN1_TIME_free(this_update);
    /* OCSP_basic_sign checks that the key matches: sign with the issuer, then spoil it. */
    assert_int_equal(
        OCSP_basic_sign(basic, f->issuer, f->issuer_key, EVP_sha256(), NULL, OCSP_NOCERTS), 1);
    ASN1_OCTET_STRING *sig = (ASN1_OCTET_STRING *)OCSP_resp_get0_signature(basic);
    unsigned char *bytes = OPENSSL_memdup(ASN1_STRING_get0_data(sig), ASN1_STRING_length(sig));
    bytes[ASN1_STRING_length(sig) / 2] ^= 0x55;
    ASN1_STRING_set(sig, bytes, ASN1_STRING_length(sig));
    OPENSSL_free(bytes);
    OCSP_RESPONSE *resp = OCSP_response_create(OCSP_RESPONSE_STATUS_SUCCESSFUL, basic);
    unsigned char *der = NULL;
    len = (size_t)i2d_OCSP_RESPONSE(resp, &der);
    assert_int_equal(certs_rev_ocsp_verify(der, len, f->cert, f->issuer, NULL, f->now, &r),
                     CERTS_REV_ERROR);
    assert_non_null(strstr(r.reason, "signature"));
    OPENSSL_free(der);
    OCSP_RESPONSE_free(resp);
    OCSP_BASICRESP_free(basic);
    OCSP_CERTID_free(cid);
}

/* A responder certificate issued by the issuer, with or without id-kp-OCSPSigning. */
static X509 *responder_cert(struct fixture *f, bool ocsp_signing, EVP_PKEY **key)
{
    *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509 *cert = X509_new();
    X509_set_version(cert, X509_VERSION_3);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 77);
    X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
    X509_gmtime_adj(X509_getm_notAfter(cert), 86400);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(cert), "CN", MBSTRING_ASC,
                               (const unsigned char *)"responder", -1, -1, 0);
    X509_set_issuer_name(cert, X509_get_subject_name(f->issuer));
    X509_set_pubkey(cert, *key);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, NULL, NID_ext_key_usage,
                                              ocsp_signing ? "OCSPSigning" : "serverAuth");
    X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
    assert_true(X509_sign(cert, f->issuer_key, EVP_sha256()) > 0);
    return cert;
}

static void ocsp_delegated_responder_needs_ocsp_signing(void **state)
{
    struct fixture *f = *state;
    struct certs_rev_result r;
    EVP_PKEY *key = NULL;
    X509 *responder = responder_cert(f, true, &key);
    struct answer a = {.status = V_OCSP_CERTSTATUS_GOOD,
                       .about = f->cert,
                       .signer = responder,
                       .key = key,
                       .this_off = -60,
                       .next_off = 7200};
    assert_int_equal(verify(f, &a, NULL, f->now, &r), CERTS_REV_GOOD);
    X509_free(responder);
    EVP_PKEY_free(key);

    responder = responder_cert(f, false, &key);
    a.signer = responder;
    a.key = key;
    assert_int_equal(verify(f, &a, NULL, f->now, &r), CERTS_REV_ERROR);
    assert_non_null(strstr(r.reason, "OCSPSigning"));
    X509_free(responder);
    EVP_PKEY_free(key);
}

static void ocsp_time_window(void **state)
{
    struct fixture *f = *state;
    struct certs_rev_result r;
    struct answer a = {
        .status = V_OCSP_CERTSTATUS_GOOD, .about = f->cert, .this_off = -7200, .next_off = -3600};
    assert_int_equal(verify(f, &a, NULL, f->now, &r), CERTS_REV_ERROR);
    assert_non_null(strstr(r.reason, "expired"));
    /* Within the leeway either side it passes. */
    a.next_off = -(CERTS_REV_LEEWAY_SECS - 10);
    assert_int_equal(verify(f, &a, NULL, f->now, &r), CERTS_REV_GOOD);
    a.this_off = CERTS_REV_LEEWAY_SECS - 10;
    a.next_off = 7200;
    assert_int_equal(verify(f, &a, NULL, f->now, &r), CERTS_REV_GOOD);
    a.this_off = CERTS_REV_LEEWAY_SECS + 60;
    assert_int_equal(verify(f, &a, NULL, f->now, &r), CERTS_REV_ERROR);
    /* A good response read a day later has expired. */
    a.this_off = -60;
    assert_int_equal(verify(f, &a, NULL, f->now + 86400, &r), CERTS_REV_ERROR);
}

static void ocsp_about_another_certificate_is_an_error(void **state)
{
    struct fixture *f = *state;
    struct certs_rev_result r;
    X509 *sibling =
        test_server_cert(f->issuer, f->issuer_key, "s.test", "s.test", "t.test", "192.0.2.2", NULL);
    ASN1_INTEGER_set(X509_get_serialNumber(sibling), 99); /* test certificates share serial 2 */
    struct answer a = {
        .status = V_OCSP_CERTSTATUS_GOOD, .about = sibling, .this_off = -60, .next_off = 7200};
    assert_int_equal(verify(f, &a, NULL, f->now, &r), CERTS_REV_ERROR);
    assert_non_null(strstr(r.reason, "another certificate"));
    X509_free(sibling);
}

static void ocsp_nonce_and_error_statuses(void **state)
{
    struct fixture *f = *state;
    struct certs_rev_result r;
    unsigned char sent[CERTS_REV_NONCE_LEN] = {1, 2, 3}, other[CERTS_REV_NONCE_LEN] = {9};
    struct answer a = {.status = V_OCSP_CERTSTATUS_GOOD,
                       .about = f->cert,
                       .this_off = -60,
                       .next_off = 7200,
                       .nonce = sent};
    assert_int_equal(verify(f, &a, sent, f->now, &r), CERTS_REV_GOOD);
    a.nonce = other;
    assert_int_equal(verify(f, &a, sent, f->now, &r), CERTS_REV_ERROR);
    a.nonce = NULL; /* pre-signed responses carry none */
    assert_int_equal(verify(f, &a, sent, f->now, &r), CERTS_REV_GOOD);

    OCSP_RESPONSE *resp = OCSP_response_create(OCSP_RESPONSE_STATUS_TRYLATER, NULL);
    unsigned char *der = NULL;
    int len = i2d_OCSP_RESPONSE(resp, &der);
    assert_int_equal(certs_rev_ocsp_verify(der, (size_t)len, f->cert, f->issuer, NULL, f->now, &r),
                     CERTS_REV_ERROR);
    assert_non_null(strstr(r.reason, "trylater"));
    OPENSSL_free(der);
    OCSP_RESPONSE_free(resp);
    static const unsigned char junk[] = {0x30, 0x03, 0x0a, 0x01};
    assert_int_equal(certs_rev_ocsp_verify(junk, sizeof junk, f->cert, f->issuer, NULL, f->now, &r),
                     CERTS_REV_ERROR);
}

static void ocsp_request_names_the_certificate(void **state)
{
    struct fixture *f = *state;
    unsigned char nonce[CERTS_REV_NONCE_LEN] = {0}, *der = NULL;
    size_t len = 0;
    assert_int_equal(certs_rev_ocsp_request(f->cert, f->issuer, nonce, &der, &len), 0);
    const unsigned char *p = der;
    OCSP_REQUEST *req = d2i_OCSP_REQUEST(NULL, &p, (long)len);
    assert_non_null(req);
    assert_int_equal(OCSP_request_onereq_count(req), 1);
    OCSP_CERTID *want = OCSP_cert_to_id(EVP_sha1(), f->cert, f->issuer);
    assert_int_equal(OCSP_id_cmp(want, OCSP_onereq_get0_id(OCSP_request_onereq_get0(req, 0))), 0);
    /* The nonce was filled and is what the request carries (inside an OCTET STRING). */
    int at = OCSP_REQUEST_get_ext_by_NID(req, NID_id_pkix_OCSP_Nonce, -1);
    assert_true(at >= 0);
    const ASN1_OCTET_STRING *v = X509_EXTENSION_get_data(OCSP_REQUEST_get_ext(req, at));
    assert_int_equal(ASN1_STRING_length(v), CERTS_REV_NONCE_LEN + 2);
    assert_memory_equal(ASN1_STRING_get0_data(v) + 2, nonce, CERTS_REV_NONCE_LEN);
    OCSP_CERTID_free(want);
    OCSP_REQUEST_free(req);
    OPENSSL_free(der);

    assert_int_equal(certs_rev_ocsp_request(f->cert, f->issuer, NULL, &der, &len), 0);
    p = der;
    req = d2i_OCSP_REQUEST(NULL, &p, (long)len);
    assert_int_equal(OCSP_REQUEST_get_ext_by_NID(req, NID_id_pkix_OCSP_Nonce, -1), -1);
    OCSP_REQUEST_free(req);
    OPENSSL_free(der);
}

/* A CRL from issuer (signed with key), listing serial when listed. */
static unsigned char *make_crl(struct fixture *f, EVP_PKEY *key, bool listed, long last_off,
                               long next_off, size_t *len)
{
    X509_CRL *crl = X509_CRL_new();
    X509_CRL_set_version(crl, 1);
    X509_CRL_set_issuer_name(crl, X509_get_subject_name(f->issuer));
    ASN1_TIME *last = ASN1_TIME_set(NULL, f->now + last_off);
    ASN1_TIME *next = ASN1_TIME_set(NULL, f->now + next_off);
    X509_CRL_set1_lastUpdate(crl, last);
    X509_CRL_set1_nextUpdate(crl, next);
    X509_REVOKED *other = X509_REVOKED_new();
    ASN1_INTEGER *serial = ASN1_INTEGER_new();
    ASN1_INTEGER_set(serial, 12345);
    X509_REVOKED_set_serialNumber(other, serial);
    X509_REVOKED_set_revocationDate(other, last);
    X509_CRL_add0_revoked(crl, other);
    if (listed) {
        X509_REVOKED *entry = X509_REVOKED_new();
        X509_REVOKED_set_serialNumber(entry, X509_get_serialNumber(f->cert));
        X509_REVOKED_set_revocationDate(entry, last);
        ASN1_ENUMERATED *reason = ASN1_ENUMERATED_new();
        ASN1_ENUMERATED_set(reason, OCSP_REVOKED_STATUS_SUPERSEDED);
        X509_REVOKED_add1_ext_i2d(entry, NID_crl_reason, reason, 0, 0);
        ASN1_ENUMERATED_free(reason);
        X509_CRL_add0_revoked(crl, entry);
    }
    X509_CRL_sort(crl);
    assert_true(X509_CRL_sign(crl, key, EVP_sha256()) > 0);
    unsigned char *der = NULL;
    int n = i2d_X509_CRL(crl, &der);
    assert_true(n > 0);
    *len = (size_t)n;
    ASN1_INTEGER_free(serial);
    ASN1_TIME_free(last);
    ASN1_TIME_free(next);
    X509_CRL_free(crl);
    return der;
}

static enum certs_rev_status check_crl(struct fixture *f, EVP_PKEY *key, bool listed, long last_off,
                                       long next_off, struct certs_rev_result *r)
{
    size_t len = 0;
    unsigned char *der = make_crl(f, key, listed, last_off, next_off, &len);
    enum certs_rev_status st = certs_rev_crl_check(der, len, f->cert, f->issuer, f->now, r);
    print_message("%s: %s\n", certs_rev_status_name(st), r->reason);
    OPENSSL_free(der);
    return st;
}

static void crl_revoked_good_bad_signature_expired(void **state)
{
    struct fixture *f = *state;
    struct certs_rev_result r;
    assert_int_equal(check_crl(f, f->issuer_key, true, -60, 86400, &r), CERTS_REV_REVOKED);
    assert_non_null(strstr(r.reason, "superseded"));
    assert_int_equal(r.next_update, f->now + 86400);
    assert_int_equal(check_crl(f, f->issuer_key, false, -60, 86400, &r), CERTS_REV_GOOD);
    assert_int_equal(r.next_update, f->now + 86400);
    assert_int_equal(check_crl(f, f->other_key, true, -60, 86400, &r), CERTS_REV_ERROR);
    assert_non_null(strstr(r.reason, "signature"));
    assert_int_equal(check_crl(f, f->issuer_key, false, -7 * 86400, -3600, &r), CERTS_REV_ERROR);
    assert_non_null(strstr(r.reason, "expired"));
    assert_int_equal(check_crl(f, f->issuer_key, false, 3600, 86400, &r), CERTS_REV_ERROR);

    /* PEM is read too; a CRL from another issuer name is refused. */
    size_t len = 0;
    unsigned char *der = make_crl(f, f->issuer_key, true, -60, 86400, &len);
    const unsigned char *p = der;
    X509_CRL *crl = d2i_X509_CRL(NULL, &p, (long)len);
    BIO *bio = BIO_new(BIO_s_mem());
    PEM_write_bio_X509_CRL(bio, crl);
    char *pem = NULL;
    long pem_len = BIO_get_mem_data(bio, &pem);
    assert_int_equal(
        certs_rev_crl_check((unsigned char *)pem, (size_t)pem_len, f->cert, f->issuer, f->now, &r),
        CERTS_REV_REVOKED);
    assert_int_equal(certs_rev_crl_check(der, len, f->cert, f->other_ca, f->now, &r),
                     CERTS_REV_ERROR);
    assert_int_equal(certs_rev_crl_check(der, len - 1, f->cert, f->issuer, f->now, &r),
                     CERTS_REV_ERROR);
    BIO_free(bio);
    X509_CRL_free(crl);
    OPENSSL_free(der);
}

static void urls_are_the_http_ones(void **state)
{
    struct fixture *f = *state;
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, f->issuer, f->cert, NULL, NULL, 0);
    X509_EXTENSION *aia =
        X509V3_EXT_conf_nid(NULL, &ctx, NID_info_access,
                            "caIssuers;URI:http://127.0.0.1/ca.crt,OCSP;URI:ldap://127.0.0.1/x,"
                            "OCSP;URI:http://127.0.0.1:8080/ocsp,OCSP;URI:HTTP://127.0.0.2/");
    X509_EXTENSION *cdp = X509V3_EXT_conf_nid(NULL, &ctx, NID_crl_distribution_points,
                                              "URI:http://127.0.0.1/a.crl,URI:https://x/b.crl");
    assert_non_null(aia);
    assert_non_null(cdp);
    X509_add_ext(f->cert, aia, -1);
    X509_add_ext(f->cert, cdp, -1);
    X509_EXTENSION_free(aia);
    X509_EXTENSION_free(cdp);

    char *urls[CERTS_REV_MAX_URLS];
    assert_int_equal(certs_rev_ocsp_urls(f->cert, urls, CERTS_REV_MAX_URLS), 2);
    assert_string_equal(urls[0], "http://127.0.0.1:8080/ocsp");
    assert_string_equal(urls[1], "HTTP://127.0.0.2/");
    certs_rev_urls_free(urls, 2);
    assert_int_equal(certs_rev_ocsp_urls(f->cert, urls, 1), 1);
    certs_rev_urls_free(urls, 1);
    assert_int_equal(certs_rev_crl_urls(f->cert, urls, CERTS_REV_MAX_URLS), 1);
    assert_string_equal(urls[0], "http://127.0.0.1/a.crl");
    certs_rev_urls_free(urls, 1);
    assert_int_equal(certs_rev_crl_urls(f->issuer, urls, CERTS_REV_MAX_URLS), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(ocsp_good_and_revoked, setup, teardown),
        cmocka_unit_test_setup_teardown(ocsp_wrong_signer_is_an_error, setup, teardown),
        cmocka_unit_test_setup_teardown(ocsp_delegated_responder_needs_ocsp_signing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(ocsp_time_window, setup, teardown),
        cmocka_unit_test_setup_teardown(ocsp_about_another_certificate_is_an_error, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(ocsp_nonce_and_error_statuses, setup, teardown),
        cmocka_unit_test_setup_teardown(ocsp_request_names_the_certificate, setup, teardown),
        cmocka_unit_test_setup_teardown(crl_revoked_good_bad_signature_expired, setup, teardown),
        cmocka_unit_test_setup_teardown(urls_are_the_http_ones, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
