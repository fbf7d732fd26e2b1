/* TLS on a leg through memory BIOs: ciphertext moves over the leg's socket, plaintext is
 * delivered to and taken from the leg's stage. The leg sees it as a filter. */
#ifndef HANDOFF_TLS_LEG_H
#define HANDOFF_TLS_LEG_H

#include <openssl/ssl.h>
#include <stdbool.h>

#include "leg.h"

struct session;

typedef void (*tls_handshake_cb)(leg *l, bool ok);

typedef struct tls_leg {
    SSL *ssl;
    BIO *rbio, *wbio; /* owned by ssl */
    tls_handshake_cb on_handshake;
    bool handshake_done;
    bool failed;
    bool peer_eof;
    bool eof_delivered;
    bool in_pump, pump_again;
    int alert_received;                            /* the last alert the peer sent, -1 none */
    void (*user_done)(struct session *s, bool ok); /* the opener's callback (tls_origin) */
    char error[200];
} tls_leg;

/** Puts ssl (connect or accept state already set) on l as its filter. 0 or a negative errno;
 * on success ssl belongs to the leg. */
int tls_leg_attach(leg *l, SSL *ssl, tls_handshake_cb on_handshake);

/** The leg's TLS state, or NULL for plain TCP. */
tls_leg *tls_leg_of(const leg *l);

/** Starts the handshake (a client sends its hello). */
void tls_leg_start(leg *l);

/** Feeds ciphertext that was read before the filter existed (a held ClientHello). */
void tls_leg_feed(leg *l, const char *buf, size_t len);

#endif
