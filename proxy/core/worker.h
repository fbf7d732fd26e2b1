/* One event loop per core; process-wide state shared by all of them. */
#ifndef HANDOFF_WORKER_H
#define HANDOFF_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <uv.h>

#include "config.h"
#include "policy.h"

typedef struct session session;
typedef struct worker worker;
typedef struct access_log access_log;
typedef struct auth_db auth_db;
typedef struct certs_ca certs_ca;
typedef struct certs_cache certs_cache;
typedef struct certs_rev_cache certs_rev_cache;

#define READ_BUFFER_SIZE (64 * 1024)

/** Shared by every worker; read-only after start except where atomic or locked. */
typedef struct {
    config cfg;
    access_log *log;
    auth_db *auth;
    struct cred_pool *cred_pool;          /* credential checks, when authentication is on */
    struct negotiate_acceptor *negotiate; /* Kerberos acceptor, with [auth] mode negotiate */
    struct policy_groups *groups;         /* [auth] groups, replaced on SIGHUP (policy_lock) */
    certs_ca *ca;                         /* NULL when no CA is configured */
    char *ca_pem;                         /* the CA certificate, served on the admin port */
    certs_cache *leaves;
    struct ssl_ctx_st *client_ctx; /* origin-facing */
    struct ssl_ctx_st *server_ctx; /* client-facing */
    struct evp_pkey_st *leaf_key;  /* one key for every minted leaf */
    char crl_url[CONFIG_MAX_PATH];
    char ocsp_url[CONFIG_MAX_PATH];
    certs_rev_cache *rev_cache; /* origin revocation statuses, all workers */
    char *pac;                  /* the PAC file served on /proxy.pac and /wpad.dat */
    size_t pac_len;
    pthread_mutex_t policy_lock; /* guards current_policy, and pac/pac_len (a reload swaps them) */
    policy *current_policy;
    atomic_int connections; /* open client connections, all workers */
    atomic_int fds_in_use;  /* sockets and pipes of sessions, all workers */
    int fd_budget;          /* what sessions may use: the descriptor limit less a reserve */
    atomic_uint_fast64_t next_session_id;
    atomic_bool stopping;
    struct worker *workers; /* for the admin view, which merges every worker's sessions */
    int worker_count;
    atomic_uint_fast64_t snapshot_wanted; /* generation the admin asked for */
    /* Takeover: sockets received from the previous process (-1 = bind our own), the admin
     * listener's descriptor (to pass on), and whether a successor took our sockets. */
    int inherited_fd[CONFIG_MAX_LISTEN];
    int inherited_admin_fd;
    int admin_fd;
    atomic_bool handed_over;
} shared_state;

struct worker {
    int index;
    shared_state *shared;
    uv_loop_t loop;
    /* [proxy] listen first, then [proxy] transparent (SPEC 4.2) */
    uv_tcp_t listeners[2 * CONFIG_MAX_LISTEN];
    int listen_fd[2 * CONFIG_MAX_LISTEN]; /* the sockets; listeners[] watch duplicates */
    int listener_count;
    uv_timer_t accept_timer; /* resumes accepting after a pause */
    uv_timer_t trim_timer;   /* gives freed memory back to the system after a burst */
    int peak_sessions;       /* since the last trim */
    bool accept_paused;
    uint64_t accept_pause_logged_ms;
    uv_async_t wakeup; /* stop requests from the main thread */
    uv_timer_t stop_timer;
    uint64_t stop_started_ms;
    bool stop_requested;
    void (*admin_close)(worker *w); /* the admin listener lives on worker 0 */
    void *admin;
    pthread_t thread;
    struct cred_pool_loop *cred; /* this loop's end of the credential pool */
    session *sessions;           /* registry of open sessions */
    pthread_mutex_t snapshot_lock;
    char *snapshot_json; /* this worker's sessions as a JSON array, for the admin view */
    uint64_t snapshot_gen;
    int session_count;
    char read_buf[READ_BUFFER_SIZE]; /* every read lands here and is consumed before the next */
    bool read_buf_busy;
};

/** The policy new connections use, retained for the caller. */
policy *shared_policy_acquire(shared_state *sh);

/** The groups file in force, retained for the caller (NULL when none). */
struct policy_groups *shared_groups_acquire(shared_state *sh);

/** Publishes re-read groups; the old object lives on while evaluations hold it. */
void shared_groups_publish(shared_state *sh, struct policy_groups *g);

/** Publishes a freshly compiled policy; the old one lives on in the connections that hold it. */
void shared_policy_publish(shared_state *sh, policy *p);

/** Sets sh->fd_budget from the descriptor limit and what the process holds now. */
void worker_budget_descriptors(shared_state *sh);

/** Whether a session may open n more descriptors now. */
bool worker_descriptors_available(shared_state *sh, int n);

/** Prepares the worker's loop. 0 or a negative errno. */
int worker_init(worker *w, shared_state *sh, int index);

/** Opens the listeners (SO_REUSEPORT) on the worker's loop. 0 or a negative errno. */
int worker_listen(worker *w, char *err, size_t errlen);

/** Runs the loop until the worker is asked to stop and its sessions ended. */
void *worker_run(void *arg);

/** Asks the worker to publish its sessions for snapshot generation shared->snapshot_wanted. */
void worker_request_snapshot(worker *w);

/** Asks the worker to stop accepting and finish within grace_ms. Thread-safe. */
void worker_request_stop(worker *w);

#endif
