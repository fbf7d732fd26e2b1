/* What the parts of the proxy call on a session. */
#ifndef HANDOFF_SESSION_INTERNAL_H
#define HANDOFF_SESSION_INTERNAL_H

#include "session.h"
#include "worker.h"

typedef enum {
    TIMER_NONE,
    TIMER_HEADER,    /* request head must complete: 408 */
    TIMER_KEEPALIVE, /* idle between requests: silent close */
    TIMER_CONNECT,   /* origin connect: 504 */
    TIMER_DETECT,    /* client silent after 200: server-first protocol */
    TIMER_IDLE,      /* relay idle: close */
} timer_purpose;

/** A new session registered with the worker, holding the current policy. */
session *session_new(worker *w);

/** Initialises l's tcp handle on the worker's loop; the session now waits for its close. */
void session_open_leg(session *s, leg *l);

/** Keeps the session alive across a request that is not a handle (getaddrinfo, work). */
void session_ref(session *s);
void session_unref(session *s);

/** An I/O error or EOF the phase did not expect on leg l. */
void session_fail(session *s, leg *l, int status);

/** l's write queue fell below the low-water mark. */
void session_on_drain(session *s, leg *l);

/** Arms the single session timer (replacing any earlier purpose). */
void session_set_timer(session *s, uint64_t ms, timer_purpose purpose);
void session_stop_timer(session *s);

/** Closes only the origin leg; then() runs once its handle is closed (may be NULL). */
void session_close_origin(session *s, void (*then)(session *s));

/** Writes the access-log line of a tunnel or passthrough connection. */
void session_log_connection(session *s);

/* front.c: the request head */
void front_begin(session *s, bool keep_alive);
void front_answer(session *s, int status, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void front_feed(session *s, const char *buf, size_t len);
void front_resume(session *s);
void front_log_request(session *s, int status, const char *action);
/** Ends the client connection once what is queued is written. */
void front_close_after_answer(session *s);

/* connect.c: after a CONNECT is allowed */
void connect_allowed(session *s);

/* upstream.c: resolve and connect to s->target_host:s->target_port */
void upstream_connect(session *s, upstream_cb done);
void upstream_timeout(session *s);

/* relay.c: tunnel and passthrough handlers */
void relay_start(session *s, session_handler handler);
void relay_drained(session *s);

/* splice_relay.c: a plain tunnel switches to splice(2) when it can; false leaves relay.c on. */
bool splice_relay_start(session *s);
void splice_relay_close(session *s);
void splice_relay_free(session *s);

/* detect_stage.c */
void detect_stage_start(session *s, const char *first, size_t len);
void detect_stage_timeout(session *s);
/** Appends what fits of buf to the held first bytes; returns how much was taken. */
size_t detect_stage_hold(session *s, const char *buf, size_t n);
/** Starts handler h and replays the held bytes into it (the hold is released). */
void detect_stage_hand_off(session *s, session_handler h);
/** Checkpoint 3; false when a DENY closed the connection. */
bool detect_stage_checkpoint3(session *s);

/* tls_intercept.c: checkpoint 2 for a ClientHello held in s->hold. true when interception
 * took over the connection. */
bool tls_decide(session *s, const detect_tls_info *hello);
void tls_inner_timeout(session *s);

/* tls_session_cache.c: resumption towards origins */
void tls_session_cache_init(shared_state *sh);
void tls_session_cache_apply(session *s, struct ssl_st *ssl);

/* metrics.c */
void metrics_handshake_failure(shared_state *sh, const char *reason);
void metrics_connection_end(shared_state *sh, const char *protocol, const char *action,
                            uint64_t from_client, uint64_t from_server);
void metrics_detection(shared_state *sh, const char *protocol, uint64_t latency_ms);
void metrics_denial(shared_state *sh, const char *rule);
void metrics_tls_handshake(shared_state *sh, bool client_leg, bool resumed);

/* http_forward.c */
void http_forward_request(session *s);
void http_forward_body(session *s, const char *buf, size_t len);
void http_forward_request_done(session *s);
/** The request parser paused at a message end: finish the exchange if the answer is done. */
void http_forward_after_pause(session *s);
void http_forward_start_inner(session *s, const char *first, size_t len);

#endif
