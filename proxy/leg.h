/* Byte I/O on one side of a session, with write accounting for backpressure. */
#ifndef HANDOFF_LEG_H
#define HANDOFF_LEG_H

#include "session.h"

void leg_init(leg *l, session *s, bool is_client);

/** Lets the phase ask for (or stop) reads; backpressure is applied on top of it. */
void leg_want_read(leg *l, bool want);

/** Stops or restarts reading l because its peer's write queue is too long. */
void leg_set_backpressure(leg *l, bool on);

/** Queues bytes (plaintext: encrypted first when the leg carries TLS). 0 or negative errno. */
int leg_write(leg *l, const char *buf, size_t len);

/** The same for several pieces, sent together (one system call when the socket takes them). */
int leg_writev(leg *l, const uv_buf_t *bufs, unsigned count);

/** Writes bytes on the socket as they are (TLS records, or plain data). */
int leg_write_raw(leg *l, const char *buf, size_t len);
int leg_writev_raw(leg *l, const uv_buf_t *bufs, unsigned count);

/** Sends FIN after every queued byte (close_notify first on TLS). */
void leg_shutdown(leg *l);

/** The other leg of the same session. */
leg *leg_peer(leg *l);

/** Counts bytes that arrived and hands them to the leg's consumer. */
void leg_received(leg *l, const char *buf, ssize_t n);

/** Hands bytes already counted (held bytes being replayed) to the leg's consumer. */
void leg_deliver(leg *l, const char *buf, ssize_t n);

#endif
