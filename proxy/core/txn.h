/* One transaction: an HTTP request, or a tunnel or passthrough connection. Stages record what
 * happens (action, status, reason) where it happens; txn_end writes the access-log line and
 * the metrics, exactly once. */
#ifndef HANDOFF_TXN_H
#define HANDOFF_TXN_H

#include <stdbool.h>
#include <stdint.h>

#include "policy.h"

typedef struct session session;

typedef struct txn {
    bool open;
    bool is_request;    /* an HTTP request (url), else a connection (target) */
    const char *action; /* "allowed" "denied" "error"; NULL = allowed unless error */
    int status;
    char method[24];
    char *url; /* request URL or CONNECT target */
    const char *http_version;
    policy_where rule;
    char *error; /* first reason recorded */
    uint64_t started_ms;
    uint64_t client_mark, origin_mark; /* leg byte counters when it began (connections) */
    uint64_t bytes_from_client, bytes_from_server; /* requests: set by the HTTP stage */
} txn;

/** Starts recording; an open transaction is ended first. url is copied. */
void txn_begin(session *s, bool is_request, const char *method, const char *url);

/** Records an error reason (the first one stays) and the action "error". */
void txn_fail(session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/** Records a reason without changing the action (e.g. a denial's explanation). */
void txn_note(session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/** Records a denial by rule (file NULL: the default policy). */
void txn_deny(session *s, policy_where rule);

/** Writes the access-log line and counts the metrics, once; later calls do nothing. */
void txn_end(session *s);

/** Writes the line of a transaction the stage keeps itself (one HTTP/2 stream of the session,
 * recorded like s->t), once; later calls do nothing. */
void txn_log_stream(session *s, txn *t);

/** Frees what the transaction holds (the session is going away). */
void txn_free(txn *t);

#endif
