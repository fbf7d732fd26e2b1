/* handoff's own OCSP responder for the leaves it mints (SPEC section 6.2, client side). */
#ifndef HANDOFF_CERTS_OCSP_H
#define HANDOFF_CERTS_OCSP_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include <openssl/x509.h>

#include "certs.h"

/* Responses say thisUpdate = now - 1 h (client clock skew, as leaves are backdated) and
 * nextUpdate = now + 24 h (never after the CA's notAfter); a cached response is replaced once
 * it is 12 h old, so what a client holds is always good for at least 12 more hours. */
#define CERTS_OCSP_BACKDATE_SECS 3600
#define CERTS_OCSP_VALIDITY_SECS (24 * 3600)
#define CERTS_OCSP_REFRESH_SECS  (12 * 3600)
/* Records kept of minted serials unless certs_ca_set_record_capacity says otherwise. */
#define CERTS_ISSUED_DEFAULT_CAPACITY 65536
/* More CertIDs than this in one request is answered malformedRequest. */
#define CERTS_OCSP_MAX_IDS 32
/* A GET or POST body larger than this is not an OCSP request we answer. */
#define CERTS_OCSP_MAX_REQUEST 8192

/** What certs_ocsp_respond answered, for handoff_ocsp_responses_total{status}. */
enum certs_ocsp_outcome {
    CERTS_OCSP_GOOD,      /* every CertID good */
    CERTS_OCSP_UNKNOWN,   /* at least one CertID unknown (not ours, never minted, expired) */
    CERTS_OCSP_MALFORMED, /* malformedRequest */
    CERTS_OCSP_INTERNAL,  /* internalError (signing failed) */
};

/** Text for an outcome: "good", "unknown", "malformed", "internal_error". */
const char *certs_ocsp_outcome_name(enum certs_ocsp_outcome outcome);

/**
 * Answers one DER OCSPRequest (a POST body, or a GET path decoded by certs_ocsp_decode_get):
 * a DER OCSPResponse signed by the CA (responder ID by key hash, no certificates included),
 * one SingleResponse per requested CertID, `good` for serials the CA minted and still records,
 * else `unknown`; the request's nonce is copied. Garbage yields a malformedRequest response.
 * Requests for one SHA-1 CertID without a nonce are served from a per-serial cache; requests
 * with a nonce are signed afresh. Thread-safe. *resp is the caller's: OPENSSL_free() it.
 * Returns the outcome; *resp is NULL only when even an error response could not be built.
 */
enum certs_ocsp_outcome certs_ocsp_respond(certs_ca *ca, const unsigned char *req, size_t req_len,
                                           unsigned char **resp, size_t *resp_len);

/**
 * The `good` response to staple for leaf, a certificate this CA minted (issued by the CA, else
 * -1); re-records the serial if the record was dropped. Thread-safe. *der is OPENSSL_malloc'd,
 * so it can go straight to SSL_set_tlsext_status_ocsp_resp, which takes ownership. 0 or -1.
 */
int certs_ocsp_staple(certs_ca *ca, X509 *leaf, unsigned char **der, size_t *len);

/**
 * Decodes all of a GET /ocsp/<...> path after "/ocsp/" (base64 may hold '/', so do not split
 * there; strip any query first): percent-decoding, then base64
 * (standard or URL-safe alphabet, padding optional). *der is malloc'd: free() it. 0 or -1.
 */
int certs_ocsp_decode_get(const char *path, size_t path_len, unsigned char **der, size_t *der_len);

/* ---- record of minted serials ---- */

typedef struct certs_issued certs_issued;

/** A bounded record of capacity serials; the oldest record goes when full. NULL on failure. */
certs_issued *certs_issued_new(size_t capacity);
void certs_issued_free(certs_issued *r);
/** Records serial (positive, at most 20 bytes) with the leaf's notAfter. Thread-safe. 0 or -1. */
int certs_issued_add(certs_issued *r, const ASN1_INTEGER *serial, time_t not_after);
/** Whether serial is recorded and now is before its notAfter. Thread-safe. */
bool certs_issued_contains(certs_issued *r, const ASN1_INTEGER *serial, time_t now);
/** How many serials are recorded. */
size_t certs_issued_count(certs_issued *r);

/** The CA's record, filled by every certs_mint_leaf (borrowed). */
certs_issued *certs_ca_issued(certs_ca *ca);
/** Replaces the CA's record with an empty one of capacity serials; call before sharing the CA
 * between threads (e.g. with 4 x leaf_cache_size). 0 or -1. */
int certs_ca_set_record_capacity(certs_ca *ca, size_t capacity);

#endif
