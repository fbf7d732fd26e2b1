/* Transparent listeners (SPEC 4.2): the socket options that let the kernel hand redirected
 * connections to handoff (REDIRECT, TPROXY), the original destination of such a connection, the
 * refusal of loops and of connections that were never redirected, and the socket mark that
 * keeps handoff's own origin connections out of the redirection. */
#ifndef HANDOFF_TRANSPARENT_H
#define HANDOFF_TRANSPARENT_H

#include <stdbool.h>
#include <sys/socket.h>

#include <uv.h>

#include "config.h"

typedef struct session session;

/** Prepares a transparent listener's socket before bind: IP_TRANSPARENT / IPV6_TRANSPARENT so
 * that TPROXY can deliver to it. Without CAP_NET_ADMIN the option is skipped (logged once by
 * the first worker) and the listener takes REDIRECTed connections only. */
void transparent_prepare_listener(int fd, int family, const char *text, bool log);

/** Checks once, at start-up, whether origin sockets can carry cfg->transparent_mark (SO_MARK
 * needs CAP_NET_ADMIN); logs and turns marking off when they cannot. */
void transparent_probe_mark(const config *cfg);

/** Gives the origin leg of s a socket of family carrying the configured mark, when transparent
 * listeners are configured and the mark is usable; otherwise leaves the leg as it is. Called
 * right after the origin leg's handle is initialised and before it connects. */
void transparent_mark_origin(session *s, int family);

/** The same for any outgoing socket of handoff's own (an HTTP/1.1 origin pool connection, a
 * revocation fetch): marked so that redirection rules let it through. */
void transparent_mark_socket(const config *cfg, uv_tcp_t *tcp, int family);

/** The same with the mark found usable at start (for code without the configuration). */
void transparent_mark_tcp(uv_tcp_t *tcp, int family);

/** A connection accepted on transparent listener `listener`: finds its original destination,
 * refuses loops and connections that were not redirected (logged), runs checkpoint 1 with the
 * destination as url.host and url.port, then connects the origin and enters detection. */
void transparent_accept(session *s, const config_addr *listener);

/** Called with the outcome of transparent_check_host. */
typedef void (*transparent_host_cb)(session *s);

/** Plain HTTP on a transparent connection goes to the original destination whatever its Host
 * says; when Host names another address the transaction says so. Resolves host off the loop
 * when it is a name (each name once per connection), then calls done unless the session ended
 * meanwhile. Calls done at once for explicit sessions and for hosts already checked. */
void transparent_check_host(session *s, const char *host, transparent_host_cb done);

#endif
