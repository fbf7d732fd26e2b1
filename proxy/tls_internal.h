/* TLS state of a leg, shared by tls_leg.c and tls_intercept.c. */
#ifndef HANDOFF_TLS_INTERNAL_H
#define HANDOFF_TLS_INTERNAL_H

#include <openssl/ssl.h>
#include <stdbool.h>

#include "session.h"
#include "worker.h"

typedef void (*tls_handshake_cb)(leg *l, bool ok);

struct tls_leg {
    SSL *ssl;
    BIO *rbio, *wbio; /* owned by ssl */
    tls_handshake_cb on_handshake;
    bool handshake_done;
    bool failed;
    bool peer_eof;
    bool eof_delivered;
    bool in_pump, pump_again;
    char error[200];
};

/** Puts ssl (connect or accept state already set) on l. */
int tls_leg_attach(leg *l, SSL *ssl, tls_handshake_cb on_handshake);

/** Starts the handshake (a client sends its hello). */
void tls_leg_start(leg *l);

/** Hands on decrypted bytes that waited while the consumer did not read. */
void tls_leg_resume(leg *l);

/** Builds the process-wide TLS contexts. 0 or -1 with err filled. */
int tls_contexts_init(shared_state *sh, char *err, size_t errlen);

#endif
