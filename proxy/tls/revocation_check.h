/* Revocation of origin certificates on intercepted connections (SPEC 6.2, origin side): the
 * stapled OCSP response, else the OCSP responder of the certificate's AIA, else the CRL of its
 * CRL Distribution Point, for the leaf and every intermediate whose issuer is in the chain;
 * answers cached in the shared status cache until their nextUpdate. */
#ifndef HANDOFF_REVOCATION_CHECK_H
#define HANDOFF_REVOCATION_CHECK_H

#include <openssl/ssl.h>
#include <stdbool.h>

#include "config.h"

typedef struct session session;

/** The mode for s: its policy's ssl.check_revocation(), else [tls] check_revocation. */
config_check_revocation revocation_mode(const session *s);

/** Whether the origin handshake should ask for a stapled OCSP response (status_request). */
bool revocation_wants_staple(const session *s);

/**
 * Checks the verified chain of the origin connection ssl (handshake done, verification passed)
 * in the session's mode. Sets s->revocation ("good", "revoked", "unknown", "not-checked") and,
 * when the connection must be refused (revoked; unknown with revocation_failure = hard),
 * s->upstream_error. done runs exactly once, possibly inside this call, unless the session
 * ends first. The whole check is bounded by connect_timeout_s.
 */
void revocation_check(session *s, SSL *ssl, void (*done)(session *s));

#endif
