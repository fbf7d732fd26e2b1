/* A proxied connection: two legs, the stage it is in, the facts every stage shares, and the
 * transaction being recorded for the access log. The core (core/) owns its lifetime; stages
 * own only their state (s->st). */
#ifndef HANDOFF_SESSION_H
#define HANDOFF_SESSION_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "detect.h"
#include "framing.h"
#include "leg.h"
#include "policy.h"
#include "stage.h"
#include "txn.h"

typedef struct worker worker;
typedef struct upstream_op upstream_op;

struct session {
    worker *w;
    uint64_t id;
    session *prev, *next; /* the worker's registry */
    uint64_t started_ms;  /* uv_now at accept */
    uint64_t last_activity_ms;
    const stage *stage;
    void *st;    /* the current stage's state */
    policy *pol; /* the policy this connection started with */

    leg client, origin;
    uv_timer_t timer;      /* the current stage's deadline, then the closing bound */
    upstream_op *upstream; /* resolve and connect in progress */
    int pending;           /* open handles and outstanding requests; freed when it reaches 0 */
    bool ending;           /* session_end/abort called: no stage runs any more */
    unsigned streams_open;  /* HTTP/2: streams open now */
    uint64_t streams_total; /* HTTP/2: streams so far */
    unsigned auth_jobs;    /* credential checks queued for this connection */
    const char *auth_mech; /* "basic" or "negotiate" once the user is known */
    bool authenticated;    /* the connection's identity is established (Negotiate) */
    bool auth_exempt;      /* authenticate(no): the request goes on without identity */
    void *auth_ctx;        /* a multi-leg authentication context, freed with the session */
    void (*auth_ctx_free)(void *ctx);
    char *answer_headers; /* header lines for the next answer to the client (mutual auth) */
    bool idle;            /* waiting for a client's next request: a stop may close it now */

    /* Facts of the connection, shared by the stages. Names are canonical. */
    struct sockaddr_storage client_addr;
    char client_text[64];
    char target_host[256]; /* the CONNECT target (or the origin of the current request) */
    uint16_t target_port;
    bool target_is_name; /* the target is a DNS name (not an address literal) */
    char sni[256];
    char user[256];
    detect_protocol protocol;
    bool intercepted;
    bool tunneled;
    bool compressed;
    bool tunnel_on_error;
    bool detect_enabled;
    bool verify_server;
    int intercept_mode;         /* policy_ssl_forward when intercepted */
    bool client_offers_http11;  /* the ClientHello's ALPN lists http/1.1 */
    bool origin_alpn_other;     /* the origin chose an ALPN protocol other than http/1.1 */
    bool client_offers_h2;      /* the ClientHello's ALPN lists h2 and h2 may be offered */
    bool client_h2;             /* the intercepted client leg negotiated h2 */
    char *upstream_error;       /* why the origin's TLS was refused (allocated when it happens) */
    framing_counters *counters; /* a passthrough handler's message counters, else NULL */
    /* Transparent connections (SPEC 4.2, core/transparent.c). */
    bool transparent;        /* accepted on a transparent listener: no CONNECT, method unknown */
    char host_checked[256];  /* the last HTTP Host compared with the original destination */
    char host_elsewhere[96]; /* where it resolved instead ("" when to the destination) */

    /* Revocation of the origin's certificate (SPEC 6.2, tls/revocation_check.c). */
    policy_revocation check_revocation; /* ssl.check_revocation(); UNSET: the config's */
    const char *revocation;             /* good revoked unknown not-checked; NULL: not yet */

    txn t; /* the transaction being recorded */
};

/** A new session registered with the worker, holding the current policy. NULL when out of
 * memory. */
session *session_new(worker *w);

/** Initialises l's tcp handle on the worker's loop; the session now waits for its close. */
void session_open_leg(session *s, leg *l);

/** Keeps the session alive across a request that is not a handle (getaddrinfo, work). */
void session_ref(session *s);
void session_unref(session *s);

/** Leaves the current stage (its state is freed) and enters stage id with the bytes to replay.
 * The caller returns at once: its stage state no longer exists. */
void session_enter(session *s, stage_id id, const char *replay, size_t len);

/** Hands an event that arrived in the previous stage on to the current one (e.g. the bytes
 * with which an origin spoke first during detection). */
void session_deliver(session *s, leg *l, const char *buf, ssize_t n);

/** Arms the current stage's deadline (replacing any earlier one). */
void session_deadline(session *s, uint64_t ms);
void session_deadline_stop(session *s);

/** Ends the session gracefully: the transaction is logged, then both legs deliver what is
 * queued (TLS close_notify included) and close, bounded by idle_timeout_s of no progress. */
void session_end(session *s);

/** Ends the session now: the transaction is logged as an error with reason (unless one is
 * already recorded), queued bytes are discarded and both legs are reset. */
void session_abort(session *s, const char *reason);

/** The stage's name, for the admin view. */
const char *session_stage_name(const session *s);

#endif
