/* What the certs/ files share about a loaded CA; not part of the public API. */
#ifndef HANDOFF_CERTS_CA_INTERNAL_H
#define HANDOFF_CERTS_CA_INTERNAL_H

#include <pthread.h>
#include <stdint.h>
#include <time.h>

#include <openssl/x509v3.h>

#include "certs.h"
#include "ocsp.h"

/* RFC 5280 4.1.2.2: serials are at most 20 octets. */
#define CERTS_SERIAL_MAX 20

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

    certs_issued *issued; /* serials minted, for the OCSP responder; locks itself */
    time_t not_after;     /* the CA's own; CRLs and OCSP responses never outlive it */
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

/** The serial's magnitude bytes into out; 0 for a negative, zero or over-long serial. */
size_t certs_serial_bytes(const ASN1_INTEGER *serial, unsigned char out[CERTS_SERIAL_MAX]);

/** A copy (OPENSSL_malloc) of the response cached for serial while fresh. 0 or -1. */
int certs_issued_cached_response(certs_issued *r, const ASN1_INTEGER *serial, time_t now,
                                 unsigned char **der, size_t *len);
/** Caches a copy of der for serial, if still recorded, until refresh. */
void certs_issued_store_response(certs_issued *r, const ASN1_INTEGER *serial,
                                 const unsigned char *der, size_t len, time_t refresh);

/** now + secs, but never after the CA's notAfter. */
time_t certs_ca_clamp(const certs_ca *ca, time_t now, time_t secs);

#endif
