/* TLS on a leg through memory BIOs: ciphertext moves over the leg's socket, plaintext is
 * delivered to and taken from the leg's consumer. */
#ifndef HANDOFF_TLS_LEG_H
#define HANDOFF_TLS_LEG_H

#include <openssl/ssl.h>

#include "session.h"

/** Called with ciphertext read from the socket (n < 0: EOF or error). */
void tls_leg_on_read(leg *l, const char *buf, ssize_t n);

/** Encrypts and sends plaintext pieces. 0 or a negative errno. */
int tls_leg_writev(leg *l, const uv_buf_t *bufs, unsigned count);

/** Queues close_notify. */
void tls_leg_close_notify(leg *l);

/** Frees the TLS state of l (no I/O). */
void tls_leg_free(leg *l);

#endif
