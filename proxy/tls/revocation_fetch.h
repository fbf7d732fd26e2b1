/* Plain HTTP/1.1 fetches for origin revocation checks (an OCSP POST, a CRL GET), made on the
 * calling worker's loop: resolve (skipped for address literals), connect, one request, the
 * response read with llhttp, bounded in time and size. Fetches of the same URL and body while
 * one is in flight on the same worker share it (coalescing is per worker). */
#ifndef HANDOFF_REVOCATION_FETCH_H
#define HANDOFF_REVOCATION_FETCH_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* Response bodies larger than these are not read (SPEC 6.2). */
#define REV_FETCH_MAX_CRL  (1024 * 1024)
#define REV_FETCH_MAX_OCSP (64 * 1024)

/**
 * The outcome of one fetch: status is the HTTP status (0 when there was no response), body
 * its bytes (valid during the call only), error why it failed (NULL on a complete response).
 */
typedef void (*rev_fetch_cb)(void *arg, int status, const unsigned char *body, size_t len,
                             const char *error);

/**
 * Fetches url (http:// only) on loop: a POST of body as application/ocsp-request when body is
 * non-NULL, else a GET; at most max_body response bytes, everything within timeout_ms. cb runs
 * exactly once, on loop, never from inside this call. Returns 0, or -1 (cb will not run) when
 * the URL is not http:// or memory ran out.
 */
int rev_fetch(uv_loop_t *loop, const char *url, const unsigned char *body, size_t body_len,
              size_t max_body, uint64_t timeout_ms, rev_fetch_cb cb, void *arg);

/** Fetches started (not coalesced) on this thread, for tests. */
uint64_t rev_fetch_started(void);

#endif
