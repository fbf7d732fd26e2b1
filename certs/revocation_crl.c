/* Origin side: judging a CRL fetched from a certificate's CRL Distribution Point. */
#include <limits.h>
#include <string.h>

#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "revocation_internal.h"

static X509_CRL *parse_crl(const unsigned char *der, size_t len)
{
    static const char pem_start[] = "-----BEGIN X509 CRL-----";
    if (len >= sizeof pem_start - 1 && memcmp(der, pem_start, sizeof pem_start - 1) == 0) {
        BIO *bio = BIO_new_mem_buf(der, (int)len);
        X509_CRL *crl = bio != NULL ? PEM_read_bio_X509_CRL(bio, NULL, NULL, NULL) : NULL;
        BIO_free(bio);
        return crl;
    }
    const unsigned char *p = der;
    X509_CRL *crl = d2i_X509_CRL(NULL, &p, (long)len);
    if (crl != NULL && p != der + len) {
        X509_CRL_free(crl);
        crl = NULL;
    }
    return crl;
}

static enum certs_rev_status judge(X509_CRL *crl, X509 *cert, X509 *issuer, time_t now,
                                   struct certs_rev_result *out)
{
    if (X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(issuer)) != 0)
        return certs_rev_set(out, CERTS_REV_ERROR, "CRL is from another issuer");
    if ((X509_get_key_usage(issuer) & KU_CRL_SIGN) == 0)
        return certs_rev_set(out, CERTS_REV_ERROR, "CRL issuer may not sign CRLs (keyUsage)");
    if (X509_CRL_verify(crl, X509_get0_pubkey(issuer)) != 1)
        return certs_rev_set(out, CERTS_REV_ERROR, "CRL signature does not verify");
    /* Delta CRLs and indirect CRLs would need more than one CRL to decide. */
    ISSUING_DIST_POINT *idp = X509_CRL_get_ext_d2i(crl, NID_issuing_distribution_point, NULL, NULL);
    bool indirect = idp != NULL && idp->indirectCRL;
    ISSUING_DIST_POINT_free(idp);
    if (indirect || X509_CRL_get_ext_by_NID(crl, NID_delta_crl, -1) >= 0)
        return certs_rev_set(out, CERTS_REV_ERROR, "delta or indirect CRLs are not supported");

    time_t last = certs_asn1_time(X509_CRL_get0_lastUpdate(crl));
    if (last == 0 || last > now + CERTS_REV_LEEWAY_SECS)
        return certs_rev_set(out, CERTS_REV_ERROR, "CRL lastUpdate is in the future");
    const ASN1_TIME *next_t = X509_CRL_get0_nextUpdate(crl);
    if (next_t != NULL) {
        out->next_update = certs_asn1_time(next_t);
        if (out->next_update == 0 || out->next_update < now - CERTS_REV_LEEWAY_SECS)
            return certs_rev_set(out, CERTS_REV_ERROR, "CRL has expired (nextUpdate passed)");
    } else {
        out->next_update = now + CERTS_REV_DEFAULT_TTL_SECS;
    }

    X509_REVOKED *entry = NULL;
    if (X509_CRL_get0_by_serial(crl, &entry, (ASN1_INTEGER *)X509_get0_serialNumber(cert)) == 0 ||
        entry == NULL)
        return certs_rev_set(out, CERTS_REV_GOOD, "CRL: not listed");

    ASN1_ENUMERATED *code = X509_REVOKED_get_ext_d2i(entry, NID_crl_reason, NULL, NULL);
    long reason = code != NULL ? ASN1_ENUMERATED_get(code) : -1;
    ASN1_ENUMERATED_free(code);
    /* removeFromCRL (RFC 5280 5.3.1) means the serial is no longer revoked. */
    if (reason == OCSP_REVOKED_STATUS_REMOVEFROMCRL)
        return certs_rev_set(out, CERTS_REV_GOOD, "CRL: removed from CRL");
    out->revoked_at = certs_asn1_time(X509_REVOKED_get0_revocationDate(entry));
    return certs_rev_set(out, CERTS_REV_REVOKED, "certificate revoked (CRL, reason %s)",
                         reason >= 0 ? OCSP_crl_reason_str(reason) : "unspecified");
}

enum certs_rev_status certs_rev_crl_check(const unsigned char *der, size_t len, X509 *cert,
                                          X509 *issuer, time_t now, struct certs_rev_result *out)
{
    memset(out, 0, sizeof *out);
    if (der == NULL || len == 0 || len > INT_MAX || cert == NULL || issuer == NULL)
        return certs_rev_set(out, CERTS_REV_ERROR, "no CRL");
    X509_CRL *crl = parse_crl(der, len);
    if (crl == NULL)
        return certs_rev_set(out, CERTS_REV_ERROR, "CRL is neither DER nor PEM");
    enum certs_rev_status st = judge(crl, cert, issuer, now, out);
    X509_CRL_free(crl);
    return st;
}
