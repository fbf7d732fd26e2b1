/* The OCSP responder for minted leaves (RFC 6960): good for recorded serials, else unknown. */
#include <string.h>
#include <time.h>

#include <openssl/ocsp.h>

#include "ca_internal.h"

const char *certs_ocsp_outcome_name(enum certs_ocsp_outcome outcome)
{
    switch (outcome) {
    case CERTS_OCSP_GOOD:
        return "good";
    case CERTS_OCSP_UNKNOWN:
        return "unknown";
    case CERTS_OCSP_MALFORMED:
        return "malformed";
    case CERTS_OCSP_INTERNAL:
        break;
    }
    return "internal_error";
}

static int encode_response(OCSP_RESPONSE *resp, unsigned char **der, size_t *len)
{
    unsigned char *out = NULL;
    int n = resp != NULL ? i2d_OCSP_RESPONSE(resp, &out) : -1;
    if (n <= 0)
        return -1;
    *der = out;
    *len = (size_t)n;
    return 0;
}

/* An unsigned error response (malformedRequest, internalError): RFC 6960 4.2.1. */
static int error_response(int status, unsigned char **der, size_t *len)
{
    OCSP_RESPONSE *resp = OCSP_response_create(status, NULL);
    int rc = encode_response(resp, der, len);
    OCSP_RESPONSE_free(resp);
    return rc;
}

/* Whether cid names this CA as issuer, by its name and key hashes in cid's own algorithm. */
static bool issued_by_ca(const certs_ca *ca, const OCSP_CERTID *cid)
{
    ASN1_OBJECT *alg = NULL;
    ASN1_INTEGER *serial = NULL;
    if (OCSP_id_get0_info(NULL, &alg, NULL, &serial, (OCSP_CERTID *)cid) != 1)
        return false;
    const EVP_MD *md = EVP_get_digestbyobj(alg);
    if (md == NULL)
        return false;
    OCSP_CERTID *ours = OCSP_cert_id_new(md, X509_get_subject_name(ca->cert),
                                         X509_get0_pubkey_bitstr(ca->cert), serial);
    bool same = ours != NULL && OCSP_id_issuer_cmp(ours, cid) == 0;
    OCSP_CERTID_free(ours);
    return same;
}

static bool is_sha1(const OCSP_CERTID *cid)
{
    ASN1_OBJECT *alg = NULL;
    return OCSP_id_get0_info(NULL, &alg, NULL, NULL, (OCSP_CERTID *)cid) == 1 &&
           OBJ_obj2nid(alg) == NID_sha1;
}

/* Signs a response with one SingleResponse per CertID; req (may be NULL) lends its nonce. */
static int sign_response(certs_ca *ca, OCSP_CERTID *const *ids, const bool *good, int n,
                         OCSP_REQUEST *req, time_t now, unsigned char **der, size_t *len)
{
    OCSP_BASICRESP *basic = OCSP_BASICRESP_new();
    ASN1_TIME *this_update = ASN1_TIME_set(NULL, now - CERTS_OCSP_BACKDATE_SECS);
    ASN1_TIME *next_update = ASN1_TIME_set(NULL, certs_ca_clamp(ca, now, CERTS_OCSP_VALIDITY_SECS));
    OCSP_RESPONSE *resp = NULL;
    int ok = basic != NULL && this_update != NULL && next_update != NULL;

    for (int i = 0; ok && i < n; i++)
        ok = OCSP_basic_add1_status(basic, ids[i],
                                    good[i] ? V_OCSP_CERTSTATUS_GOOD : V_OCSP_CERTSTATUS_UNKNOWN, 0,
                                    NULL, this_update, next_update) != NULL;
    /* OCSP_copy_nonce answers 2 when the request had none: nothing to copy. */
    if (ok && req != NULL)
        ok = OCSP_copy_nonce(basic, req) > 0;
    /* The CA signs itself (no delegated certificate), so clients need no extra certificate. */
    if (ok)
        ok = OCSP_basic_sign(basic, ca->cert, ca->key, ca->sha256, NULL,
                             OCSP_NOCERTS | OCSP_RESPID_KEY) == 1;
    if (ok)
        resp = OCSP_response_create(OCSP_RESPONSE_STATUS_SUCCESSFUL, basic);
    int rc = ok ? encode_response(resp, der, len) : -1;
    OCSP_RESPONSE_free(resp);
    OCSP_BASICRESP_free(basic);
    ASN1_TIME_free(this_update);
    ASN1_TIME_free(next_update);
    return rc;
}

/* The cacheable case: one SHA-1 CertID for a recorded serial, no nonce. */
static int cached_or_signed(certs_ca *ca, OCSP_CERTID *cid, time_t now, unsigned char **der,
                            size_t *len)
{
    ASN1_INTEGER *serial = NULL;
    OCSP_id_get0_info(NULL, NULL, NULL, &serial, cid);
    if (certs_issued_cached_response(ca->issued, serial, now, der, len) == 0)
        return 0;
    const bool good = true;
    if (sign_response(ca, &cid, &good, 1, NULL, now, der, len) != 0)
        return -1;
    certs_issued_store_response(ca->issued, serial, *der, *len, now + CERTS_OCSP_REFRESH_SECS);
    return 0;
}

static OCSP_REQUEST *parse_request(const unsigned char *der, size_t len)
{
    if (der == NULL || len == 0 || len > CERTS_OCSP_MAX_REQUEST)
        return NULL;
    const unsigned char *p = der;
    OCSP_REQUEST *req = d2i_OCSP_REQUEST(NULL, &p, (long)len);
    if (req != NULL && p != der + len) { /* trailing bytes: not one DER request */
        OCSP_REQUEST_free(req);
        req = NULL;
    }
    return req;
}

enum certs_ocsp_outcome certs_ocsp_respond(certs_ca *ca, const unsigned char *req_der,
                                           size_t req_len, unsigned char **resp, size_t *resp_len)
{
    *resp = NULL;
    *resp_len = 0;
    OCSP_REQUEST *req = parse_request(req_der, req_len);
    int n = req != NULL ? OCSP_request_onereq_count(req) : 0;
    if (n <= 0 || n > CERTS_OCSP_MAX_IDS) {
        OCSP_REQUEST_free(req);
        error_response(OCSP_RESPONSE_STATUS_MALFORMEDREQUEST, resp, resp_len);
        return CERTS_OCSP_MALFORMED;
    }

    time_t now = time(NULL);
    OCSP_CERTID *ids[CERTS_OCSP_MAX_IDS];
    bool good[CERTS_OCSP_MAX_IDS];
    bool all_good = true;
    for (int i = 0; i < n; i++) {
        ids[i] = OCSP_onereq_get0_id(OCSP_request_onereq_get0(req, i));
        ASN1_INTEGER *serial = NULL;
        OCSP_id_get0_info(NULL, NULL, NULL, &serial, ids[i]);
        good[i] = issued_by_ca(ca, ids[i]) && certs_issued_contains(ca->issued, serial, now);
        all_good = all_good && good[i];
    }
    bool has_nonce = OCSP_REQUEST_get_ext_by_NID(req, NID_id_pkix_OCSP_Nonce, -1) >= 0;

    int rc;
    if (n == 1 && good[0] && !has_nonce && is_sha1(ids[0]))
        rc = cached_or_signed(ca, ids[0], now, resp, resp_len);
    else
        /* A nonce makes each response unique: cached bytes cannot carry it, so sign afresh. */
        rc = sign_response(ca, ids, good, n, req, now, resp, resp_len);
    OCSP_REQUEST_free(req);
    if (rc != 0) {
        error_response(OCSP_RESPONSE_STATUS_INTERNALERROR, resp, resp_len);
        return CERTS_OCSP_INTERNAL;
    }
    return all_good ? CERTS_OCSP_GOOD : CERTS_OCSP_UNKNOWN;
}

int certs_ocsp_staple(certs_ca *ca, X509 *leaf, unsigned char **der, size_t *len)
{
    *der = NULL;
    *len = 0;
    if (ca == NULL || leaf == NULL || X509_check_issued(ca->cert, leaf) != X509_V_OK)
        return -1;

    time_t now = time(NULL);
    const ASN1_INTEGER *serial = X509_get0_serialNumber(leaf);
    if (!certs_issued_contains(ca->issued, serial, now)) {
        /* A leaf still in use outlived its record (the record is bounded): record it again. */
        int days = 0, secs = 0;
        if (ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(leaf)) != 1 ||
            days * 86400 + secs <= 0 ||
            certs_issued_add(ca->issued, serial, now + (time_t)days * 86400 + secs) != 0)
            return -1;
    }
    OCSP_CERTID *cid = OCSP_cert_id_new(EVP_sha1(), X509_get_subject_name(ca->cert),
                                        X509_get0_pubkey_bitstr(ca->cert), serial);
    int rc = cid != NULL ? cached_or_signed(ca, cid, now, der, len) : -1;
    OCSP_CERTID_free(cid);
    return rc;
}
