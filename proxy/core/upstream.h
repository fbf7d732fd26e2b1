/* Opening the origin leg: resolve (off the loop, unless the host is an address literal), then
 * connect to each address in turn, all under connect_timeout_s. A target that is one of our
 * own listeners is refused. */
#ifndef HANDOFF_UPSTREAM_H
#define HANDOFF_UPSTREAM_H

#include <stdint.h>

typedef struct session session;

/** Outcome: status 0 (s->origin is connected), or an HTTP status (502, 504, 508, 403) and why. */
typedef void (*upstream_cb)(session *s, int status, const char *reason);

/** Connects s->origin to host:port (host canonical). done runs once, unless cancelled. */
void upstream_connect(session *s, const char *host, uint16_t port, upstream_cb done);

/** Stops a connect in progress; its callback will not run. */
void upstream_cancel(session *s);

#endif
