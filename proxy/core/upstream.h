/* Opening the origin leg: resolve (off the loop, unless the host is an address literal), then
 * connect to each address in turn, all under connect_timeout_s. A target that is one of our
 * own listeners is refused. */
#ifndef HANDOFF_UPSTREAM_H
#define HANDOFF_UPSTREAM_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

typedef struct session session;

/** Outcome: status 0 (s->origin is connected), or an HTTP status (502, 504, 508, 403) and why. */
typedef void (*upstream_cb)(session *s, int status, const char *reason);

/** Connects s->origin to host:port (host canonical). done runs once, unless cancelled. */
void upstream_connect(session *s, const char *host, uint16_t port, upstream_cb done);

/** Whether a connection to target would arrive at a socket listening on listener: addresses
 * compared after canonicalising (v4-mapped as IPv4), 0.0.0.0/:: targets reach this host, and a
 * wildcard listener is reached through any of the machine's addresses. */
bool upstream_reaches(const struct sockaddr *target, const struct sockaddr_storage *listener);

/** Stops a connect in progress; its callback will not run. */
void upstream_cancel(session *s);

#endif
