/* A session is always in exactly one stage. A stage is a table of functions; the session core
 * calls only the current stage's, and session_enter() is the only way to change stage.
 *
 *   accept -> [proxy-header] -> head -> connect -> detect -> tls -> detect (inside TLS)
 *          -> handler -> end
 *
 * head is the HTTP front end of the proxy port (it also forwards absolute-form requests);
 * the handlers are http (HTTP inside a tunnel or intercepted TLS), h2 (HTTP/2 inside
 * intercepted TLS) and the relays: tunnel, sip, turn and ms-turn. Each stage owns its state
 * (allocated on entry, freed on leave) and arms its own deadline on entry. */
#ifndef HANDOFF_STAGE_H
#define HANDOFF_STAGE_H

#include <stddef.h>
#include <sys/types.h>

typedef struct session session;
typedef struct leg leg;

typedef enum {
    STAGE_HEAD,
    STAGE_CONNECT,
    STAGE_DETECT,
    STAGE_TLS,
    STAGE_HTTP,
    STAGE_TUNNEL,
    STAGE_SIP,
    STAGE_TURN,
    STAGE_MSTURN,
    STAGE_PROXY_HEADER, /* the load balancer's PROXY header, when [proxy] proxy_protocol is on */
    STAGE_H2,
    STAGE_COUNT
} stage_id;

typedef struct stage {
    const char *name;  /* the session's "state" in /sessions */
    size_t state_size; /* allocated zeroed on entry, freed on leave */
    /** Starts the stage. replay: bytes the client sent that the previous stage held (valid
     * only during the call). */
    void (*enter)(session *s, const char *replay, size_t len);
    /** Bytes from a leg (plaintext on TLS legs); n < 0 is the leg's EOF (UV_EOF) or error. */
    void (*on_data)(session *s, leg *l, const char *buf, ssize_t n);
    /** l's write queue fell below the low-water mark. May be NULL. */
    void (*on_drain)(session *s, leg *l);
    /** The deadline the stage armed has passed. */
    void (*on_deadline)(session *s);
    /** Writing to l failed (never called for writes cancelled by l's own close). May be NULL:
     * the session then aborts with the error. */
    void (*on_error)(session *s, leg *l, int err);
    /** The stage has ended: release what its state old holds (the state itself is freed right
     * after). Runs after the next stage's enter, so the bytes handed on stay valid during it
     * (s->st is then the next stage's; when the session ends, s->st is still old); it must not
     * do I/O. May be NULL. */
    void (*leave)(session *s, void *old);
} stage;

/** The stages, indexed by stage_id (defined with the stages themselves). */
extern const stage *const stage_table[STAGE_COUNT];

#endif
