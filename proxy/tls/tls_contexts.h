/* The process-wide TLS contexts and origin session resumption. */
#ifndef HANDOFF_TLS_CONTEXTS_H
#define HANDOFF_TLS_CONTEXTS_H

#include <openssl/ssl.h>
#include <stddef.h>

typedef struct session session;

/** Builds the contexts in sh (a shared_state *). 0 or -1 with err filled. */
int tls_contexts_init(void *sh, char *err, size_t errlen);

/** Offers a cached session for this origin, name and verification mode. */
void tls_session_cache_apply(session *s, SSL *ssl);

/** Marks a client-leg SSL as s's, for the ALPN and alert callbacks. */
void tls_contexts_bind(SSL *ssl, session *s);

/** Sets up origin session resumption on the origin-facing context. */
void tls_session_cache_init(SSL_CTX *client_ctx);

/** The session owning ssl (client-leg SSLs carry it for their callbacks). */
session *tls_session_of(const SSL *ssl);

#endif
