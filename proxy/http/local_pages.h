/* What the proxy answers itself: the PAC file, the CA's CRL, the OCSP responder for minted
 * leaves (and the CA on the admin port). Used by the proxy port (front.c) and the admin port. */
#ifndef HANDOFF_LOCAL_PAGES_H
#define HANDOFF_LOCAL_PAGES_H

#include <stdbool.h>
#include <stddef.h>

#include "worker.h"

typedef struct {
    const char *type;
    const char *body;
    size_t len;
    char *owned; /* free() after sending */
} local_page;

/** Finds the page for path ("/proxy.pac", "/wpad.dat", "/handoff-ca.crl"; with_ca adds "/ca.crt").
 */
bool local_page_find(shared_state *sh, const char *path, bool with_ca, local_page *out);

/** Whether path (query stripped) belongs to the OCSP responder: "/ocsp" or "/ocsp/...". */
bool local_ocsp_path(const char *path);

/**
 * The OCSP responder (SPEC 6.2): answers a GET target "/ocsp/<base64>[?...]" (body NULL) or a
 * POST body (application/ocsp-request) with an application/ocsp-response page, a
 * malformedRequest response for garbage; counts handoff_ocsp_responses_total. False when there
 * is no CA or no response could be built.
 */
bool local_ocsp_answer(shared_state *sh, const char *target, const unsigned char *body, size_t len,
                       local_page *out);

/* The request body of an OCSP POST: read into a bounded buffer (CERTS_OCSP_MAX_REQUEST). */
typedef struct {
    unsigned char *buf;
    size_t len;
    bool active;  /* the current request is an OCSP POST */
    bool too_big; /* more than the bound arrived: answered 413 */
} local_body;

/** Appends what fits under the bound; past it the body is marked too big. */
void local_body_append(local_body *b, const char *at, size_t len);
/** Frees and clears b. */
void local_body_reset(local_body *b);

#endif
