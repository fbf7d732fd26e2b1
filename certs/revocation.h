/* Origin-side revocation checks, the pure parts (SPEC section 6.2): which URLs to ask, the OCSP
 * request to send, checking what comes back (OCSP response or CRL), and the shared status cache.
 * The fetching itself (HTTP on the event loop) belongs to the proxy. */
#ifndef HANDOFF_CERTS_REVOCATION_H
#define HANDOFF_CERTS_REVOCATION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <openssl/x509.h>

/* Clock skew tolerated around thisUpdate/nextUpdate and CRL lastUpdate/nextUpdate. */
#define CERTS_REV_LEEWAY_SECS 300
/* How long a status without a nextUpdate (allowed by RFC 6960) counts as current. */
#define CERTS_REV_DEFAULT_TTL_SECS 3600
#define CERTS_REV_NONCE_LEN        16
/* At most this many URLs of each kind are taken from one certificate. */
#define CERTS_REV_MAX_URLS 4

enum certs_rev_status {
    CERTS_REV_GOOD,
    CERTS_REV_REVOKED,
    CERTS_REV_UNKNOWN, /* the responder does not know the certificate */
    CERTS_REV_ERROR,   /* the answer could not be trusted or read: treat as no answer */
};

/** The result of checking one certificate. */
struct certs_rev_result {
    enum certs_rev_status status;
    time_t next_update; /* good/revoked/unknown: cache until then */
    time_t revoked_at;  /* revoked only */
    char reason[160];   /* why, for the log and the 502 page: "certificate revoked (...)" */
};

/** t as seconds since the epoch (UTC), 0 when unreadable. */
time_t certs_asn1_time(const ASN1_TIME *t);

/** "good", "revoked", "unknown" or "error". */
const char *certs_rev_status_name(enum certs_rev_status status);

/**
 * The http:// URLs of the OCSP responders in cert's Authority Information Access, in order,
 * at most max (other schemes are skipped: fetches are plain HTTP). Each urls[i] is malloc'd:
 * release with certs_rev_urls_free. Returns the count (0 when none), -1 when out of memory.
 */
int certs_rev_ocsp_urls(X509 *cert, char **urls, size_t max);
/** The same for the fullName URIs of cert's CRL Distribution Points. */
int certs_rev_crl_urls(X509 *cert, char **urls, size_t max);
/** Frees urls[0..n-1]. */
void certs_rev_urls_free(char **urls, size_t n);

/**
 * A DER OCSPRequest for cert (SHA-1 CertID under issuer). With nonce non-NULL, fills it with
 * CERTS_REV_NONCE_LEN random bytes and adds it; keep it for certs_rev_ocsp_verify.
 * *der is OPENSSL_malloc'd: OPENSSL_free() it. 0 or -1.
 */
int certs_rev_ocsp_request(X509 *cert, X509 *issuer, unsigned char *nonce, unsigned char **der,
                           size_t *len);

/**
 * Checks a DER OCSPResponse (stapled or fetched) for cert: successful status; signed by issuer,
 * or by a responder certificate that issuer signed, valid at now and with id-kp-OCSPSigning; a
 * SingleResponse whose CertID matches (cert, issuer) in any hash; thisUpdate <= now + leeway and
 * now - leeway <= nextUpdate; when nonce is non-NULL, a nonce in the response must equal it (a
 * response without one is accepted: most responders pre-sign). Fills and returns out->status.
 */
enum certs_rev_status certs_rev_ocsp_verify(const unsigned char *der, size_t len, X509 *cert,
                                            X509 *issuer, const unsigned char *nonce, time_t now,
                                            struct certs_rev_result *out);

/**
 * Checks a CRL (DER, or PEM) for cert: issued by and signed with the key of issuer (which, if
 * it has keyUsage, must allow cRLSign); lastUpdate no later than now + leeway and nextUpdate no
 * earlier than now - leeway. cert's serial listed means revoked (unless removeFromCRL), else
 * good until nextUpdate. The caller bounds the size (1 MiB).
 * Delta and indirect CRLs are not supported (error). Fills and returns out->status.
 */
enum certs_rev_status certs_rev_crl_check(const unsigned char *der, size_t len, X509 *cert,
                                          X509 *issuer, time_t now, struct certs_rev_result *out);

/* ---- status cache shared by all workers ---- */

typedef struct certs_rev_cache certs_rev_cache;

/** What identifies a certificate's status: its issuer's key and its serial. */
struct certs_rev_key {
    unsigned char issuer_key_hash[20]; /* SHA-1 of the issuer's public key bits */
    unsigned char serial[20];          /* magnitude bytes; SHA-1 of them when longer */
    uint8_t serial_len;
};

/** Fills key for cert issued by issuer. 0 or -1. */
int certs_rev_key_of(X509 *cert, X509 *issuer, struct certs_rev_key *key);

/** A thread-safe LRU of at most capacity statuses (capacity >= 1), all memory allocated up
 * front: see certs_rev_cache_bytes. NULL on failure. */
certs_rev_cache *certs_rev_cache_new(size_t capacity);
void certs_rev_cache_free(certs_rev_cache *c);
/** The status stored for key while now < its next_update (counts a hit), else false (a miss;
 * an expired entry is dropped). next_update may be NULL. */
bool certs_rev_cache_get(certs_rev_cache *c, const struct certs_rev_key *key, time_t now,
                         enum certs_rev_status *status, time_t *next_update);
/** Stores status for key until next_update, replacing any entry and evicting the least
 * recently used one when full. CERTS_REV_ERROR is not stored. */
void certs_rev_cache_put(certs_rev_cache *c, const struct certs_rev_key *key,
                         enum certs_rev_status status, time_t next_update);
/** Counters for metrics; any pointer may be NULL. */
void certs_rev_cache_stats(certs_rev_cache *c, uint64_t *hits, uint64_t *misses, size_t *size);
/** Bytes the cache holds for its capacity (structure, entries and hash buckets). */
size_t certs_rev_cache_bytes(const certs_rev_cache *c);

#endif
