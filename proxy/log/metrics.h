/* Counters for /metrics, shared by every worker (thread-safe), and their Prometheus text. */
#ifndef HANDOFF_METRICS_H
#define HANDOFF_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Distinct label values kept per metric; more are counted in handoff_metrics_overflow_total. */
#define METRICS_MAX_SERIES 256

void metrics_handshake_failure(const char *reason);
void metrics_connection_end(const char *protocol, const char *action, uint64_t from_client,
                            uint64_t from_server);
void metrics_detection(const char *protocol, uint64_t latency_ms);
void metrics_denial(const char *rule);
void metrics_tls_handshake(bool client_leg, bool resumed);
/** A proxy authentication by mechanism ("basic", "negotiate") and result. */
void metrics_auth(const char *mechanism, const char *result);

/** A connection on a transparent listener, by result: accepted, denied, loop, not-redirected,
 * refused, error. */
void metrics_transparent(const char *result);
/** A connection on a PROXY-protocol listener: "accepted", "local" (a LOCAL header) or why it
 * was refused ("source", "missing", "malformed", "too_long", "truncated", "timeout"). */
void metrics_proxy_protocol(const char *outcome);
/** One answer of our OCSP responder: "good", "unknown", "malformed", "internal_error". */
void metrics_ocsp_response(const char *status);
/** One origin revocation check: source staple|ocsp|crl|cache, result good|revoked|unknown|error. */
void metrics_revocation_check(const char *source, const char *result);
/** An HTTP/2 stream ended (its log line written), by action. */
void metrics_http2_stream(const char *action);

/** Bytes held in splice pipes (a gauge): delta may be negative. */
void metrics_splice_pipe_bytes(ssize_t delta);

/** Values the admin listener reads from elsewhere. */
typedef struct {
    int active_sessions;
    uint64_t leaf_hits, leaf_misses;
    size_t leaf_entries;
    uint64_t log_dropped;
    uint64_t rev_cache_hits, rev_cache_misses; /* the origin revocation status cache */
    size_t rev_cache_entries;
} metrics_gauges;

/** Renders the Prometheus text exposition. Returns a malloc'd string. */
char *metrics_render(const metrics_gauges *g, size_t *len);

#endif
