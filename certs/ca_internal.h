/* What the certs/ files share about a loaded CA; not part of the public API. */
#ifndef HANDOFF_CERTS_CA_INTERNAL_H
#define HANDOFF_CERTS_CA_INTERNAL_H

#include <pthread.h>
#include <stdint.h>
#include <time.h>

#include <openssl/x509v3.h>

#include "certs.h"

struct certs_ca {
    X509 *cert;
    EVP_PKEY *key;
    /* The CA's Subject Key Identifier, copied once so minting threads never touch the
     * certificate's lazily computed extension cache. Leaves and CRLs use it as their AKI. */
    ASN1_OCTET_STRING *key_id;
    /* Fetched once: the implicit fetch behind EVP_sha256() costs more than the ECDSA signature. */
    EVP_MD *sha256;

    pthread_mutex_t crl_lock; /* guards the fields below */
    unsigned char *crl_der;
    size_t crl_len;
    time_t crl_next_update;
    uint64_t crl_number;
};

/** snprintf into an error buffer that may be NULL or empty. */
void certs_set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/** The reason of the newest error on this thread's OpenSSL error queue, never NULL. */
const char *certs_ossl_reason(void);

/** Sets a random, positive, non-zero 128-bit serial on cert. 0 or -1. */
int certs_set_random_serial(X509 *cert);

/** A new AKI holding only the CA's key identifier, or NULL. */
AUTHORITY_KEYID *certs_ca_authority_key_id(const certs_ca *ca);

#endif
