/* The empty CRL that handoff serves at /handoff-ca.crl, so revocation-checking clients pass. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/x509v3.h>

#include "ca_internal.h"

#define CRL_VALIDITY_SECS      (7 * 86400)
#define CRL_RESIGN_MARGIN_SECS 86400
/* As leaves are backdated: a client whose clock is behind still sees a current CRL. */
#define CRL_BACKDATE_SECS 3600

static int add_crl_number(X509_CRL *crl, uint64_t number)
{
    ASN1_INTEGER *value = ASN1_INTEGER_new();
    int ok = value != NULL && ASN1_INTEGER_set_uint64(value, number) == 1 &&
             X509_CRL_add1_ext_i2d(crl, NID_crl_number, value, 0, X509V3_ADD_DEFAULT) == 1;
    ASN1_INTEGER_free(value);
    return ok;
}

static int add_authority_key_id(X509_CRL *crl, const certs_ca *ca)
{
    AUTHORITY_KEYID *aki = certs_ca_authority_key_id(ca);
    int ok = aki != NULL && X509_CRL_add1_ext_i2d(crl, NID_authority_key_identifier, aki, 0,
                                                  X509V3_ADD_DEFAULT) == 1;
    AUTHORITY_KEYID_free(aki);
    return ok;
}

/* Signs a fresh CRL into ca->crl_der; the caller holds crl_lock. */
static int resign(certs_ca *ca, time_t now)
{
    /* Numbers must only grow, across restarts too: seconds since the epoch do. */
    uint64_t number = (uint64_t)now > ca->crl_number ? (uint64_t)now : ca->crl_number + 1;
    /* A CRL must not claim to be current after its issuer has expired. */
    time_t next_update = certs_ca_clamp(ca, now, CRL_VALIDITY_SECS);
    X509_CRL *crl = X509_CRL_new();
    ASN1_TIME *last = ASN1_TIME_set(NULL, now - CRL_BACKDATE_SECS);
    ASN1_TIME *next = ASN1_TIME_set(NULL, next_update);
    unsigned char *der = NULL;
    int len = -1;

    if (crl != NULL && last != NULL && next != NULL && X509_CRL_set_version(crl, 1) == 1 &&
        X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca->cert)) == 1 &&
        X509_CRL_set1_lastUpdate(crl, last) == 1 && X509_CRL_set1_nextUpdate(crl, next) == 1 &&
        add_authority_key_id(crl, ca) && add_crl_number(crl, number) &&
        X509_CRL_sign(crl, ca->key, ca->sha256) > 0)
        len = i2d_X509_CRL(crl, &der);
    ASN1_TIME_free(last);
    ASN1_TIME_free(next);
    X509_CRL_free(crl);
    if (len <= 0)
        return -1;

    unsigned char *copy = malloc((size_t)len);
    if (copy != NULL)
        memcpy(copy, der, (size_t)len);
    OPENSSL_free(der);
    if (copy == NULL)
        return -1;
    free(ca->crl_der);
    ca->crl_der = copy;
    ca->crl_len = (size_t)len;
    ca->crl_next_update = next_update;
    ca->crl_number = number;
    return 0;
}

int certs_crl_der(certs_ca *ca, unsigned char **der, size_t *len)
{
    if (ca == NULL || der == NULL || len == NULL)
        return -1;
    *der = NULL;
    *len = 0;

    time_t now = time(NULL);
    int rc = 0;
    pthread_mutex_lock(&ca->crl_lock);
    /* A failed re-sign keeps serving the previous CRL while it is still current. */
    if ((ca->crl_der == NULL || now >= ca->crl_next_update - CRL_RESIGN_MARGIN_SECS) &&
        resign(ca, now) != 0 && (ca->crl_der == NULL || now >= ca->crl_next_update))
        rc = -1;
    if (rc == 0) {
        *der = malloc(ca->crl_len);
        if (*der != NULL) {
            memcpy(*der, ca->crl_der, ca->crl_len);
            *len = ca->crl_len;
        } else {
            rc = -1;
        }
    }
    pthread_mutex_unlock(&ca->crl_lock);
    return rc;
}
