/* CA handling, leaf minting, the leaf cache and the CRL (SPEC sections 2 and 6). */
#ifndef HANDOFF_CERTS_H
#define HANDOFF_CERTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

typedef struct certs_ca certs_ca;
typedef struct certs_cache certs_cache;

/* "AA:BB:..": 32 bytes as hex pairs joined by colons, plus the NUL. */
#define CERTS_FINGERPRINT_LEN 96

/**
 * Writes DIR/ca.key (mode 0600) and DIR/ca.crt: ECDSA P-256, or RSA-3072 when rsa is true.
 * basicConstraints CA:TRUE critical, keyUsage keyCertSign+cRLSign, SKI. Creates DIR if needed.
 * Fills fingerprint (at least CERTS_FINGERPRINT_LEN bytes) with the SHA-256 fingerprint "AA:BB:..".
 * Refuses to overwrite an existing DIR/ca.key. 0 or -1 with err filled.
 */
int certs_ca_init(const char *dir, bool rsa, char *fingerprint, size_t fplen, char *err,
                  size_t errlen);

/** SHA-256 fingerprint of cert as "AA:BB:.."; outlen >= CERTS_FINGERPRINT_LEN. 0 or -1. */
int certs_fingerprint(const X509 *cert, char *out, size_t outlen);

/**
 * Loads a CA (RSA or ECDSA); refuses a key readable by group or others, a key that does not match
 * the certificate, a certificate that is not a CA or has expired. NULL with err filled.
 * The CA may then be used from several threads at once.
 */
certs_ca *certs_ca_load(const char *cert_path, const char *key_path, char *err, size_t errlen);
void certs_ca_free(certs_ca *ca);
X509 *certs_ca_cert(const certs_ca *ca); /* borrowed */

/** A new ECDSA P-256 key; the process makes one and signs every leaf for it. NULL on failure. */
EVP_PKEY *certs_leaf_key_new(void);

/**
 * Mints a leaf for name: SAN and CN copied from upstream when given (else name), random serial,
 * validity inside the CA's, own SKI, AKI of the CA, CDP = crl_url (omitted when NULL).
 * name is a host name or an IP literal (IPv6 with or without brackets). Thread-safe.
 * Returns a new X509 or NULL (bad name, expired CA, leaf_key equal to the CA key).
 */
X509 *certs_mint_leaf(const certs_ca *ca, EVP_PKEY *leaf_key, X509 *upstream, const char *name,
                      const char *crl_url);

/**
 * certs_mint_leaf plus an Authority Information Access extension naming ocsp_url as the OCSP
 * responder (omitted when NULL). Every minted serial is recorded for certs_ocsp_respond.
 */
X509 *certs_mint_leaf_ex(const certs_ca *ca, EVP_PKEY *leaf_key, X509 *upstream, const char *name,
                         const char *crl_url, const char *ocsp_url);

/**
 * A current CRL (v2, no revoked entries, valid 7 days) signed by the CA, re-signed when within a
 * day of nextUpdate. Thread-safe. *der is the caller's own copy: free() it. 0 or -1.
 */
int certs_crl_der(certs_ca *ca, unsigned char **der, size_t *len);

/** Thread-safe LRU of minted leaves keyed by a string (name plus upstream fingerprint).
 * A capacity of 0 caches nothing. NULL when out of memory. */
certs_cache *certs_cache_new(size_t capacity);
void certs_cache_free(certs_cache *c);
/** Returns a new reference (X509_up_ref) or NULL; counts a hit or a miss. */
X509 *certs_cache_get(certs_cache *c, const char *key);
/** Stores a reference to leaf (the cache takes its own), replacing any entry under key and
 * evicting the least recently used entry when full. */
void certs_cache_put(certs_cache *c, const char *key, X509 *leaf);
void certs_cache_stats(certs_cache *c, uint64_t *hits, uint64_t *misses, size_t *size);

#endif
