/* A proxied connection: the client leg, the origin leg, and the phase between them. */
#ifndef HANDOFF_SESSION_H
#define HANDOFF_SESSION_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "detect.h"
#include "framing.h"
#include "llhttp.h"
#include "policy.h"

typedef struct worker worker;
typedef struct session session;
typedef struct leg leg;
typedef struct tls_leg tls_leg;
struct passthrough;
struct splice_state;
struct ssl_st;

/* A write queue above this stops reading the other side; below the low mark reading resumes. */
#define LEG_HIGH_WATER (256 * 1024)
#define LEG_LOW_WATER  (64 * 1024)

/** Outcome of resolving and connecting to the origin: status 0, or an HTTP status and why. */
typedef void (*upstream_cb)(session *s, int status, const char *reason);

/** Consumer of bytes arriving on a leg (plaintext when the leg carries TLS). n < 0: EOF/error. */
typedef void (*leg_data_cb)(leg *l, const char *buf, ssize_t n);

struct leg {
    uv_tcp_t tcp;
    session *s;
    leg_data_cb on_data;
    tls_leg *tls;      /* NULL for plain TCP */
    size_t queued;     /* bytes accepted by leg_write and not yet written */
    uint64_t bytes_in; /* bytes received (plaintext) */
    bool open;         /* tcp initialised: must be closed */
    bool want_read;    /* the phase wants bytes from this leg */
    bool backpressure; /* the other leg's write queue is over the high-water mark */
    bool reading;      /* uv_read_start is in effect */
    bool eof;          /* peer sent FIN */
    bool shut;         /* we sent FIN */
    bool is_client;
};

typedef enum {
    PHASE_HEAD,       /* reading a request head from the client */
    PHASE_LOCAL,      /* a local answer is being written, then close or next request */
    PHASE_CONNECTING, /* resolving and connecting to the origin */
    PHASE_DETECT,     /* holding the client's first bytes */
    PHASE_TLS,        /* TLS handshakes (interception) */
    PHASE_HTTP,       /* forwarding HTTP requests */
    PHASE_RELAY,      /* tunnel or passthrough */
    PHASE_CLOSING,
} session_phase;

typedef enum {
    HANDLER_NONE,
    HANDLER_TUNNEL,
    HANDLER_HTTP,
    HANDLER_SIP,
    HANDLER_MSTURN,
    HANDLER_TURN
} session_handler;

/* The request head as parsed, with bounded storage. */
#define HEAD_MAX_HEADERS 128
typedef struct {
    char *buf; /* max_header_bytes, owned by the session */
    size_t len, cap;
    size_t wire; /* bytes of the head as sent, separators included */
    uint32_t url_off, url_len;
    struct {
        uint32_t name_off, name_len, value_off, value_len;
    } h[HEAD_MAX_HEADERS];
    unsigned count;
    bool in_value;
    bool overflow; /* head larger than max_header_bytes */
    bool too_many; /* more than HEAD_MAX_HEADERS */
} http_head;

struct session {
    worker *w;
    uint64_t id;
    session *prev, *next; /* the worker's registry */
    uint64_t started_ms;  /* uv_now at accept */
    uint64_t request_started_ms;
    uint64_t last_activity_ms;
    session_phase phase;
    session_handler handler;
    policy *pol; /* the policy this connection started with */

    leg client, origin;
    uv_timer_t timer;
    uv_getaddrinfo_t resolve;
    uv_connect_t connect;
    struct addrinfo *addrs, *next_addr;
    int pending; /* open handles and outstanding requests; freed when it reaches 0 */
    bool closing;
    bool resolving;
    bool origin_closing; /* the origin handle is closing while the client stays */
    void (*origin_closed_then)(session *s);
    bool logged;
    int timer_purpose;
    upstream_cb upstream_done; /* set while connecting */
    int connect_error;         /* last connect failure while trying addresses */

    struct sockaddr_storage client_addr;
    char client_text[64];
    char target_host[256];
    uint16_t target_port;
    char origin_key[272]; /* host:port of the open origin connection, for keep-alive reuse */
    char sni[256];
    char user[128];
    detect_protocol protocol;
    bool intercepted;
    bool tunneled;
    bool compressed;
    bool tunnel_on_error;
    bool detect_enabled;

    /* request in progress */
    llhttp_t req_parser;
    llhttp_t resp_parser;
    http_head head;
    http_head resp_head;
    char method[24];
    char *url;                /* request target as received, or host:port for CONNECT */
    const char *request_path; /* origin-form path inside url */
    bool head_dispatched;
    bool auth_ok;
    bool verify_server;
    bool inner_http;          /* HTTP inside a CONNECT tunnel: the origin is fixed */
    bool origin_alpn_other;   /* the origin chose an ALPN protocol other than http/1.1 */
    int intercept_mode;       /* policy_ssl_forward when intercepted */
    char upstream_error[200]; /* why the origin's TLS was refused */
    char policy_host[256];    /* url.host of the request being decided */
    char resume_key[560];     /* TLS session cache key towards the origin */
    bool is_connect;
    bool request_done, response_started, response_done;
    bool client_keep_alive, origin_keep_alive;
    bool request_chunked, response_chunked, response_until_close;
    bool upgrade_requested;
    bool head_request;
    int status;
    uint64_t req_body_bytes, resp_bytes;
    char *pending_in;     /* unparsed client bytes held while a response is outstanding */
    bool parser_paused;   /* the request parser waits for the proxy (policy, origin, answer) */
    bool client_eof_held; /* the client's FIN arrived while the parser waited */
    size_t pending_len;

    /* detection */
    char *hold; /* first client bytes, DETECT_MAX_BYTES */
    size_t hold_len;

    /* passthrough observers, allocated when a passthrough handler is chosen */
    struct passthrough *pass;
    struct splice_state *splice; /* the blind tunnel's zero-copy path, when taken */
    uint64_t relayed_bytes;
    bool splice_tried;
    framing_counters counters;

    /* logging */
    policy_where rule;
    const char *action; /* allowed denied error */
    char error[320];
    uint64_t log_bytes_client_mark;
};

/** Starts serving an accepted client (the tcp handle is initialised by the caller). */
void session_start(session *s);

/** Closes every handle; the last close callback frees. Return at once after calling it. */
void session_close(session *s);

#endif
