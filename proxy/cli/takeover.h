/* Takeover (`handoff --takeover`): a new process receives the running one's listening sockets
 * over [admin] control_socket (a unix socket, SCM_RIGHTS), starts on them, then tells the old
 * one to stop accepting and drain. No connection attempt is refused: the sockets, with their
 * backlogs, never close. */
#ifndef HANDOFF_TAKEOVER_H
#define HANDOFF_TAKEOVER_H

#include <stddef.h>
#include <uv.h>

#include "worker.h"

/** Old side: serves takeover requests on cfg->control_socket (created with mode 0600).
 * handed_over(data) runs on loop once a new process has started on our sockets. replace: we
 * are the successor, the file is ours to take (else a live instance's socket is an error).
 * 0, or -1 with err filled. Does nothing when no control socket is configured. */
int takeover_serve(uv_loop_t *loop, shared_state *sh, const worker *workers, bool replace,
                   void (*handed_over)(void *data), void *data, char *err, size_t errlen);

/** Stops serving takeover requests; removes the socket file unless a successor replaced it. */
void takeover_serve_stop(void);

/** New side: fetches the running instance's sockets into sh->inherited_fd[] (matched to
 * cfg->listen by address) and sh->inherited_admin_fd. 0, or -1 with err filled (the old
 * instance is untouched). */
int takeover_fetch(shared_state *sh, char *err, size_t errlen);

/** New side, once our workers are listening: the old instance stops accepting and drains. */
void takeover_commit(void);

#endif
