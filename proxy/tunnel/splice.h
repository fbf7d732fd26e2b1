/* The blind tunnel's zero-copy path on Linux: socket -> pipe -> socket with splice(2). */
#ifndef HANDOFF_SPLICE_H
#define HANDOFF_SPLICE_H

typedef struct session session;
typedef struct splice_state splice_state;

/** Takes over both legs' sockets for a plain tunnel with empty write queues. NULL when it
 * cannot (the relay then goes on as it was). */
splice_state *splice_start(session *s);

/** Stops watching the sockets; the state frees itself once its handles have closed. */
void splice_stop(splice_state *st);

#endif
