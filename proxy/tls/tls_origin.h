/* TLS towards an intercepted origin: the handshake on an already connected origin leg, with
 * the client's SNI, verification of the chain and the name, and session resumption. Used by
 * the tls stage and by the HTTP handler when it opens a fresh origin connection. */
#ifndef HANDOFF_TLS_ORIGIN_H
#define HANDOFF_TLS_ORIGIN_H

#include <stdbool.h>

typedef struct session session;

/** Starts TLS on s->origin. done(s, ok) runs when the handshake ends; a certificate that does
 * not verify (or a failed handshake) leaves the reason in s->upstream_error. */
void tls_origin_open(session *s, void (*done)(session *s, bool ok));

/** Whether the origin negotiated an ALPN protocol other than http/1.1. */
bool tls_origin_alpn_other(session *s);

/** Whether the origin leg's TLS negotiated h2. */
bool tls_origin_h2(session *s);

#endif
