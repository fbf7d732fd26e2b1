/* The access log (SPEC section 9): lines are formatted on the loop and written by a thread. */
#ifndef HANDOFF_ACCESS_LOG_H
#define HANDOFF_ACCESS_LOG_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "framing.h"

typedef struct access_log access_log;

/** One line's facts; NULL strings and negative numbers are left out. */
typedef struct {
    const char *client;
    const char *method;
    const char *url;    /* HTTP requests */
    const char *target; /* tunnels and passthrough connections */
    int status;
    const char *protocol;
    bool intercepted, tunneled;
    const char *action; /* allowed denied error */
    const char *rule;   /* FILE:LINE */
    const char *sni;
    const char *user;
    uint64_t bytes_from_client, bytes_from_server;
    uint64_t duration_ms;
    const char *error;
    const framing_counters *messages;
    bool compressed;
    const char *http_version; /* "1.1", "2" */
    const char *auth;         /* "basic", "negotiate" */
    const char *mode;         /* "transparent" (SPEC 4.2); NULL for explicit proxying */
    const char *revocation;   /* intercepted: good revoked unknown not-checked */
} access_record;

/** Opens the log: path "-" is stdout, "" is off. NULL on failure with errno set. */
access_log *access_log_open(const char *path, config_log_format format);

/** Formats and queues a line; never blocks on the file. Thread-safe. */
void access_log_write(access_log *log, const access_record *r);

/** Asks the writer to reopen the file (log rotation) after the lines queued so far: each
 * line lands whole in the old file or the new one. Thread- and signal-loop-safe. */
void access_log_reopen(access_log *log);

/** Flushes what is queued and stops the writer thread. */
void access_log_close(access_log *log);

/** Lines dropped because the writer fell behind. */
uint64_t access_log_dropped(access_log *log);

#endif
