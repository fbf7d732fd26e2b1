/* One side of a session: a TCP socket, optionally with a filter (TLS) between the socket and
 * the stage, write accounting for backpressure, and the two ways a leg ends. */
#ifndef HANDOFF_LEG_H
#define HANDOFF_LEG_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

typedef struct session session;
typedef struct leg leg;

/* A write queue above this stops reading the other side; below the low mark reading resumes. */
#define LEG_HIGH_WATER (256 * 1024)
#define LEG_LOW_WATER  (64 * 1024)

/** What sits between a leg's socket and its stage (TLS). The core calls it; tls/ fills it. */
typedef struct leg_filter {
    /** Ciphertext (or EOF/error, n < 0) from the socket. */
    void (*on_read)(leg *l, const char *buf, ssize_t n);
    /** Plaintext to send. 0 or a negative errno. */
    int (*writev)(leg *l, const uv_buf_t *bufs, unsigned count);
    /** Reading may go on: hand on plaintext already decrypted. */
    void (*resume)(leg *l);
    /** The last bytes before FIN (TLS close_notify). */
    void (*close_notify)(leg *l);
    /** Frees the filter state (no I/O). */
    void (*free)(leg *l);
    /** The leg is idle: give back buffers kept for traffic that has passed. May be NULL. */
    void (*trim)(leg *l);
} leg_filter;

struct leg {
    uv_tcp_t tcp;
    session *s;
    const leg_filter *filter; /* NULL for plain TCP */
    void *filter_state;
    void (*closed_then)(session *s); /* runs once the handle has closed (origin replacement) */
    size_t queued;                   /* bytes accepted by leg_write and not yet written */
    uint64_t bytes_in;               /* bytes received (plaintext) */
    bool open;                       /* tcp initialised and not yet closed */
    bool closing;                    /* uv_close called */
    bool finishing;                  /* graceful close under way */
    bool want_read;                  /* the stage wants bytes from this leg */
    bool backpressure;               /* the other leg's write queue is over the high-water mark */
    bool reading;                    /* uv_read_start is in effect */
    bool eof;                        /* peer sent FIN (or TLS close) */
    bool truncated;                  /* the peer ended TLS without close_notify */
    bool no_close_notify;            /* end without close_notify: pass a truncation on as one */
    bool shut;                       /* we sent FIN */
    bool shut_done;                  /* the FIN left after every queued byte */
    bool sock_eof;                   /* the socket reported EOF or an error: nothing more to read */
    uint64_t shut_done_ms;
    bool is_client;
};

void leg_init(leg *l, session *s, bool is_client);

/** Lets the stage ask for (or stop) reads; backpressure is applied on top of it. */
void leg_want_read(leg *l, bool want);

/** Stops or restarts reading l because its peer's write queue is too long. */
void leg_set_backpressure(leg *l, bool on);

/** Queues bytes (through the filter when there is one). 0 or negative errno. */
int leg_write(leg *l, const char *buf, size_t len);
int leg_writev(leg *l, const uv_buf_t *bufs, unsigned count);

/** Writes bytes on the socket as they are (the filter's own output). */
int leg_writev_raw(leg *l, const uv_buf_t *bufs, unsigned count);
int leg_write_raw(leg *l, const char *buf, size_t len);

/** Half-close: FIN after every queued byte (close_notify first on TLS); reading goes on. */
void leg_shutdown(leg *l);

/** Ends the leg gracefully: what is queued is delivered (close_notify, FIN), what the peer
 * still sends is read and dropped until its FIN, then the handle closes. The session's
 * deadline bounds it. */
void leg_close_graceful(leg *l);

/** The leg waits for its peer's next message: its filter gives back buffers it does not need. */
void leg_trim(leg *l);

/** Ends the leg now: queued bytes are discarded and the connection is reset. */
void leg_abort(leg *l);

/** Whether the leg still has a handle (open, or closing but not yet closed). */
bool leg_busy(const leg *l);

/** The other leg of the same session. */
leg *leg_peer(leg *l);

/** Counts bytes that arrived and hands them to the session's stage (filters call this). */
void leg_received(leg *l, const char *buf, ssize_t n);

/** Runs closed_then once l's handle has closed; at once when it has no handle. */
void leg_after_close(leg *l, void (*then)(session *s));

#endif
