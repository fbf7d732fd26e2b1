/* Origin side: asking an OCSP responder about a certificate and judging its answer. */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/ocsp.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "revocation_internal.h"

int certs_rev_ocsp_request(X509 *cert, X509 *issuer, unsigned char *nonce, unsigned char **der,
                           size_t *len)
{
    *der = NULL;
    *len = 0;
    if (cert == NULL || issuer == NULL)
        return -1;
    OCSP_REQUEST *req = OCSP_REQUEST_new();
    OCSP_CERTID *cid = OCSP_cert_to_id(EVP_sha1(), cert, issuer);
    int ok = req != NULL && cid != NULL && OCSP_request_add0_id(req, cid) != NULL;
    if (ok)
        cid = NULL; /* the request owns it now */
    if (ok && nonce != NULL)
        ok = RAND_bytes(nonce, CERTS_REV_NONCE_LEN) == 1 &&
             OCSP_request_add1_nonce(req, nonce, CERTS_REV_NONCE_LEN) == 1;
    unsigned char *out = NULL;
    int n = ok ? i2d_OCSP_REQUEST(req, &out) : -1;
    OCSP_CERTID_free(cid);
    OCSP_REQUEST_free(req);
    if (n <= 0)
        return -1;
    *der = out;
    *len = (size_t)n;
    return 0;
}

/* The signature over tbsResponseData checked with key. */
static bool signed_with(OCSP_BASICRESP *basic, EVP_PKEY *key)
{
    return key != NULL &&
           ASN1_item_verify(ASN1_ITEM_rptr(OCSP_RESPDATA), OCSP_resp_get0_tbs_sigalg(basic),
                            OCSP_resp_get0_signature(basic), (void *)OCSP_resp_get0_respdata(basic),
                            key) == 1;
}

/* RFC 6960 4.2.2.2: the issuer itself, or a certificate it issued for OCSP signing. */
static bool trusted_signer(OCSP_BASICRESP *basic, X509 *issuer, time_t now, char *why,
                           size_t whylen)
{
    STACK_OF(X509) *extra = sk_X509_new_null();
    X509 *signer = NULL;
    if (extra == NULL || sk_X509_push(extra, issuer) == 0 ||
        OCSP_resp_get0_signer(basic, &signer, extra) != 1) {
        sk_X509_free(extra);
        snprintf(why, whylen, "OCSP response signer not found");
        return false;
    }
    sk_X509_free(extra);

    if (X509_cmp(signer, issuer) == 0 ||
        EVP_PKEY_eq(X509_get0_pubkey(signer), X509_get0_pubkey(issuer)) == 1) {
        if (signed_with(basic, X509_get0_pubkey(issuer)))
            return true;
        snprintf(why, whylen, "OCSP response signature does not verify with the issuer's key");
        return false;
    }
    if (X509_check_issued(issuer, signer) != X509_V_OK ||
        X509_verify(signer, X509_get0_pubkey(issuer)) != 1) {
        snprintf(why, whylen, "OCSP responder certificate is not issued by the issuer");
        return false;
    }
    if ((X509_get_extension_flags(signer) & EXFLAG_XKUSAGE) == 0 ||
        (X509_get_extended_key_usage(signer) & XKU_OCSP_SIGN) == 0) {
        snprintf(why, whylen, "OCSP responder certificate lacks id-kp-OCSPSigning");
        return false;
    }
    if (X509_cmp_time(X509_get0_notBefore(signer), &now) > 0 ||
        X509_cmp_time(X509_get0_notAfter(signer), &now) < 0) {
        snprintf(why, whylen, "OCSP responder certificate is not valid now");
        return false;
    }
    if (!signed_with(basic, X509_get0_pubkey(signer))) {
        snprintf(why, whylen, "OCSP response signature does not verify with the responder's key");
        return false;
    }
    return true;
}

/* The SingleResponse about (cert, issuer), whatever hash its CertID uses. */
static OCSP_SINGLERESP *find_single(OCSP_BASICRESP *basic, X509 *cert, X509 *issuer)
{
    for (int i = 0; i < OCSP_resp_count(basic); i++) {
        OCSP_SINGLERESP *single = OCSP_resp_get0(basic, i);
        const OCSP_CERTID *cid = OCSP_SINGLERESP_get0_id(single);
        ASN1_OBJECT *alg = NULL;
        if (OCSP_id_get0_info(NULL, &alg, NULL, NULL, (OCSP_CERTID *)cid) != 1)
            continue;
        const EVP_MD *md = EVP_get_digestbyobj(alg);
        OCSP_CERTID *ours = md != NULL ? OCSP_cert_to_id(md, cert, issuer) : NULL;
        bool same = ours != NULL && OCSP_id_cmp(ours, cid) == 0;
        OCSP_CERTID_free(ours);
        if (same)
            return single;
    }
    return NULL;
}

/* 1 nonce matches, 0 response has none, -1 it differs. */
static int check_nonce(OCSP_BASICRESP *basic, const unsigned char *nonce)
{
    int at = OCSP_BASICRESP_get_ext_by_NID(basic, NID_id_pkix_OCSP_Nonce, -1);
    if (at < 0)
        return 0;
    const ASN1_OCTET_STRING *value = X509_EXTENSION_get_data(OCSP_BASICRESP_get_ext(basic, at));
    /* The extension's value is itself a DER OCTET STRING holding the nonce (RFC 8954). */
    const unsigned char *p = ASN1_STRING_get0_data(value);
    ASN1_OCTET_STRING *inner = d2i_ASN1_OCTET_STRING(NULL, &p, ASN1_STRING_length(value));
    int ok = inner != NULL && ASN1_STRING_length(inner) == CERTS_REV_NONCE_LEN &&
             memcmp(ASN1_STRING_get0_data(inner), nonce, CERTS_REV_NONCE_LEN) == 0;
    ASN1_OCTET_STRING_free(inner);
    return ok ? 1 : -1;
}

static enum certs_rev_status judge_single(OCSP_SINGLERESP *single, time_t now,
                                          struct certs_rev_result *out)
{
    int reason = -1;
    ASN1_GENERALIZEDTIME *revoked_at = NULL, *this_update = NULL, *next_update = NULL;
    int status = OCSP_single_get0_status(single, &reason, &revoked_at, &this_update, &next_update);

    time_t this_t = certs_asn1_time(this_update);
    if (this_t == 0 || this_t > now + CERTS_REV_LEEWAY_SECS)
        return certs_rev_set(out, CERTS_REV_ERROR, "OCSP response thisUpdate is in the future");
    if (next_update != NULL) {
        out->next_update = certs_asn1_time(next_update);
        if (out->next_update == 0 || out->next_update < now - CERTS_REV_LEEWAY_SECS)
            return certs_rev_set(out, CERTS_REV_ERROR,
                                 "OCSP response has expired (nextUpdate passed)");
    } else {
        out->next_update = now + CERTS_REV_DEFAULT_TTL_SECS;
    }

    switch (status) {
    case V_OCSP_CERTSTATUS_GOOD:
        return certs_rev_set(out, CERTS_REV_GOOD, "OCSP: good");
    case V_OCSP_CERTSTATUS_REVOKED:
        out->revoked_at = certs_asn1_time(revoked_at);
        return certs_rev_set(out, CERTS_REV_REVOKED, "certificate revoked (OCSP, reason %s)",
                             reason >= 0 ? OCSP_crl_reason_str(reason) : "unspecified");
    case V_OCSP_CERTSTATUS_UNKNOWN:
        return certs_rev_set(out, CERTS_REV_UNKNOWN,
                             "OCSP responder does not know the certificate");
    }
    return certs_rev_set(out, CERTS_REV_ERROR, "OCSP response has no status");
}

enum certs_rev_status certs_rev_ocsp_verify(const unsigned char *der, size_t len, X509 *cert,
                                            X509 *issuer, const unsigned char *nonce, time_t now,
                                            struct certs_rev_result *out)
{
    memset(out, 0, sizeof *out);
    if (der == NULL || len == 0 || len > LONG_MAX || cert == NULL || issuer == NULL)
        return certs_rev_set(out, CERTS_REV_ERROR, "no OCSP response");
    const unsigned char *p = der;
    OCSP_RESPONSE *resp = d2i_OCSP_RESPONSE(NULL, &p, (long)len);
    if (resp == NULL || p != der + len) {
        OCSP_RESPONSE_free(resp);
        return certs_rev_set(out, CERTS_REV_ERROR, "OCSP response is not DER");
    }
    int rstatus = OCSP_response_status(resp);
    if (rstatus != OCSP_RESPONSE_STATUS_SUCCESSFUL) {
        OCSP_RESPONSE_free(resp);
        return certs_rev_set(out, CERTS_REV_ERROR, "OCSP responder answered %s",
                             OCSP_response_status_str(rstatus));
    }
    OCSP_BASICRESP *basic = OCSP_response_get1_basic(resp);
    OCSP_RESPONSE_free(resp);
    if (basic == NULL)
        return certs_rev_set(out, CERTS_REV_ERROR, "OCSP response is not a basic response");

    enum certs_rev_status st;
    OCSP_SINGLERESP *single = NULL;
    if (!trusted_signer(basic, issuer, now, out->reason, sizeof out->reason))
        st = out->status = CERTS_REV_ERROR;
    else if ((single = find_single(basic, cert, issuer)) == NULL)
        st = certs_rev_set(out, CERTS_REV_ERROR, "OCSP response is about another certificate");
    else if (nonce != NULL && check_nonce(basic, nonce) < 0)
        st = certs_rev_set(out, CERTS_REV_ERROR, "OCSP response nonce does not match the request");
    else
        st = judge_single(single, now, out);
    OCSP_BASICRESP_free(basic);
    return st;
}
