#include "metrics.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stdatomic.h>

/* One counter family: label values stored as given (any length), bounded in number. */
typedef struct {
    char *name;
    uint64_t count;
} series;

typedef struct {
    series items[METRICS_MAX_SERIES];
    int used;
    uint64_t overflow;
} labelled;

static struct {
    pthread_mutex_t lock;
    labelled connections; /* "protocol|action" */
    labelled detections;
    labelled denials;
    labelled handshake_failures;
    labelled auth;        /* "mechanism|result" */
    labelled h2_streams;  /* by action */
    labelled transparent; /* by result */
    labelled proxy_protocol;
    labelled ocsp_responses;
    labelled revocation_checks; /* "source|result" */
    uint64_t bytes_from_client, bytes_from_server;
    uint64_t detect_buckets[8]; /* latency histogram, ms upper bounds below */
    uint64_t detect_sum_ms, detect_count;
    uint64_t handshakes[2][2]; /* [client leg][resumed] */
} m = {.lock = PTHREAD_MUTEX_INITIALIZER};

static _Atomic int64_t splice_pipe_bytes;

static const unsigned detect_bounds_ms[8] = {1, 5, 10, 50, 100, 500, 1000, 5000};

static void bump(labelled *t, const char *name)
{
    for (int i = 0; i < t->used; i++)
        if (strcmp(t->items[i].name, name) == 0) {
            t->items[i].count++;
            return;
        }
    char *copy = t->used < METRICS_MAX_SERIES ? strdup(name) : NULL;
    if (!copy) {
        t->overflow++;
        return;
    }
    t->items[t->used].name = copy;
    t->items[t->used].count = 1;
    t->used++;
}

static void count(labelled *t, const char *name)
{
    pthread_mutex_lock(&m.lock);
    bump(t, name);
    pthread_mutex_unlock(&m.lock);
}

/* A two-label series is kept as "a|b" and rendered by emit2. */
static void count2(labelled *t, const char *a, const char *b)
{
    char key[128];
    snprintf(key, sizeof key, "%s|%s", a, b);
    count(t, key);
}

void metrics_auth(const char *mechanism, const char *result)
{
    count2(&m.auth, mechanism, result);
}

void metrics_http2_stream(const char *action)
{
    count(&m.h2_streams, action);
}

void metrics_splice_pipe_bytes(ssize_t delta)
{
    atomic_fetch_add(&splice_pipe_bytes, (int64_t)delta);
}

void metrics_handshake_failure(const char *reason)
{
    /* Keep the label set small: the OpenSSL reason after the last colon. */
    const char *r = strrchr(reason, ':');
    count(&m.handshake_failures, r ? r + 1 : reason);
}

void metrics_connection_end(const char *protocol, const char *action, uint64_t from_client,
                            uint64_t from_server)
{
    char key[96];
    snprintf(key, sizeof key, "%s|%s", protocol ? protocol : "none", action ? action : "allowed");
    pthread_mutex_lock(&m.lock);
    bump(&m.connections, key);
    m.bytes_from_client += from_client;
    m.bytes_from_server += from_server;
    pthread_mutex_unlock(&m.lock);
}

void metrics_detection(const char *protocol, uint64_t latency_ms)
{
    pthread_mutex_lock(&m.lock);
    bump(&m.detections, protocol ? protocol : "none");
    for (int i = 0; i < 8; i++)
        if (latency_ms <= detect_bounds_ms[i])
            m.detect_buckets[i]++;
    m.detect_sum_ms += latency_ms;
    m.detect_count++;
    pthread_mutex_unlock(&m.lock);
}

void metrics_proxy_protocol(const char *outcome)
{
    count(&m.proxy_protocol, outcome);
}

void metrics_tls_handshake(bool client_leg, bool resumed)
{
    pthread_mutex_lock(&m.lock);
    m.handshakes[client_leg][resumed]++;
    pthread_mutex_unlock(&m.lock);
}

void metrics_transparent(const char *result)
{
    count(&m.transparent, result);
}

void metrics_ocsp_response(const char *status)
{
    count(&m.ocsp_responses, status);
}

void metrics_revocation_check(const char *source, const char *result)
{
    count2(&m.revocation_checks, source, result);
}

void metrics_denial(const char *rule)
{
    count(&m.denials, rule ? rule : "default");
}

/* A label value in the text format: backslash, quote and newline escaped. */
static void put_label(FILE *f, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            fprintf(f, "\\%c", *v);
        else if (*v == '\n')
            fputs("\\n", f);
        else
            fputc(*v, f);
    }
}

/* A family whose values are "a|b": two labels. */
static void emit2(FILE *f, const char *metric, const char *label_a, const char *label_b,
                  const labelled *t)
{
    for (int i = 0; i < t->used; i++) {
        const char *name = t->items[i].name;
        const char *bar = strchr(name, '|');
        fprintf(f, "%s{%s=\"%.*s\",%s=\"", metric, label_a,
                bar ? (int)(bar - name) : (int)strlen(name), name, label_b);
        put_label(f, bar ? bar + 1 : "");
        fprintf(f, "\"} %llu\n", (unsigned long long)t->items[i].count);
    }
}

static void emit(FILE *f, const char *metric, const char *label, const labelled *t)
{
    for (int i = 0; i < t->used; i++) {
        fprintf(f, "%s{%s=\"", metric, label);
        put_label(f, t->items[i].name);
        fprintf(f, "\"} %llu\n", (unsigned long long)t->items[i].count);
    }
}

char *metrics_render(const metrics_gauges *g, size_t *len)
{
    char *out = NULL;
    FILE *f = open_memstream(&out, len);
    if (!f)
        return NULL;
    pthread_mutex_lock(&m.lock);
    fprintf(f, "# HELP handoff_connections_total Connections and requests ended, by protocol "
               "and outcome.\n# TYPE handoff_connections_total counter\n");
    emit2(f, "handoff_connections_total", "protocol", "outcome", &m.connections);
    fprintf(f, "# HELP handoff_auth_total Proxy authentications by mechanism and result.\n"
               "# TYPE handoff_auth_total counter\n");
    emit2(f, "handoff_auth_total", "mechanism", "result", &m.auth);
    fprintf(f, "# HELP handoff_http2_streams_total HTTP/2 streams of intercepted connections, by "
               "action.\n# TYPE handoff_http2_streams_total counter\n");
    emit(f, "handoff_http2_streams_total", "action", &m.h2_streams);
    fprintf(f, "# HELP handoff_detections_total Protocol detection results.\n"
               "# TYPE handoff_detections_total counter\n");
    emit(f, "handoff_detections_total", "protocol", &m.detections);
    fprintf(f, "# HELP handoff_denials_total Denials by deciding rule.\n"
               "# TYPE handoff_denials_total counter\n");
    emit(f, "handoff_denials_total", "rule", &m.denials);
    fprintf(f, "# HELP handoff_tls_handshake_failures_total TLS handshake failures by reason.\n"
               "# TYPE handoff_tls_handshake_failures_total counter\n");
    emit(f, "handoff_tls_handshake_failures_total", "reason", &m.handshake_failures);
    fprintf(f, "# HELP handoff_transparent_connections_total Connections on transparent "
               "listeners, by result.\n# TYPE handoff_transparent_connections_total counter\n");
    emit(f, "handoff_transparent_connections_total", "result", &m.transparent);
    fprintf(f, "# HELP handoff_proxy_protocol_total Connections on a PROXY-protocol listener, "
               "by outcome (accepted, local, or why refused).\n"
               "# TYPE handoff_proxy_protocol_total counter\n");
    emit(f, "handoff_proxy_protocol_total", "outcome", &m.proxy_protocol);
    fprintf(f, "# HELP handoff_tls_handshakes_total Completed TLS handshakes of intercepted "
               "connections, by leg and whether the session was resumed.\n"
               "# TYPE handoff_tls_handshakes_total counter\n");
    for (int side = 0; side < 2; side++)
        for (int resumed = 0; resumed < 2; resumed++)
            fprintf(f, "handoff_tls_handshakes_total{leg=\"%s\",resumed=\"%s\"} %llu\n",
                    side ? "client" : "origin", resumed ? "yes" : "no",
                    (unsigned long long)m.handshakes[side][resumed]);
    fprintf(f,
            "# HELP handoff_bytes_total Bytes relayed, by direction.\n"
            "# TYPE handoff_bytes_total counter\n"
            "handoff_bytes_total{direction=\"from_client\"} %llu\n"
            "handoff_bytes_total{direction=\"from_server\"} %llu\n",
            (unsigned long long)m.bytes_from_client, (unsigned long long)m.bytes_from_server);
    fprintf(f, "# HELP handoff_detection_seconds Time from 200 to a detection decision.\n"
               "# TYPE handoff_detection_seconds histogram\n");
    for (int i = 0; i < 8; i++)
        fprintf(f, "handoff_detection_seconds_bucket{le=\"%g\"} %llu\n",
                detect_bounds_ms[i] / 1000.0, (unsigned long long)m.detect_buckets[i]);
    fprintf(f, "handoff_detection_seconds_bucket{le=\"+Inf\"} %llu\n",
            (unsigned long long)m.detect_count);
    fprintf(f, "handoff_detection_seconds_sum %g\nhandoff_detection_seconds_count %llu\n",
            m.detect_sum_ms / 1000.0, (unsigned long long)m.detect_count);
    fprintf(f, "# HELP handoff_ocsp_responses_total Answers of the OCSP responder for minted "
               "leaves, by status.\n# TYPE handoff_ocsp_responses_total counter\n");
    emit(f, "handoff_ocsp_responses_total", "status", &m.ocsp_responses);
    fprintf(f, "# HELP handoff_revocation_checks_total Origin certificate revocation answers, by "
               "source and result.\n# TYPE handoff_revocation_checks_total counter\n");
    emit2(f, "handoff_revocation_checks_total", "source", "result", &m.revocation_checks);
    fprintf(f,
            "# HELP handoff_metrics_overflow_total Label values not kept because a metric "
            "already had %d series.\n# TYPE handoff_metrics_overflow_total counter\n",
            METRICS_MAX_SERIES);
    const struct {
        const char *name;
        const labelled *t;
    } families[] = {{"handoff_connections_total", &m.connections},
                    {"handoff_detections_total", &m.detections},
                    {"handoff_denials_total", &m.denials},
                    {"handoff_tls_handshake_failures_total", &m.handshake_failures},
                    {"handoff_ocsp_responses_total", &m.ocsp_responses},
                    {"handoff_revocation_checks_total", &m.revocation_checks}};
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++)
        fprintf(f, "handoff_metrics_overflow_total{metric=\"%s\"} %llu\n", families[i].name,
                (unsigned long long)families[i].t->overflow);
    pthread_mutex_unlock(&m.lock);
    fprintf(f,
            "# HELP handoff_splice_pipe_bytes Bytes held in kernel pipes by spliced tunnels.\n"
            "# TYPE handoff_splice_pipe_bytes gauge\nhandoff_splice_pipe_bytes %lld\n",
            (long long)atomic_load(&splice_pipe_bytes));
    fprintf(f,
            "# HELP handoff_active_sessions Open client connections.\n"
            "# TYPE handoff_active_sessions gauge\nhandoff_active_sessions %d\n",
            g->active_sessions);
    fprintf(f,
            "# HELP handoff_leaf_cache_hits_total Minted leaves found in the cache.\n"
            "# TYPE handoff_leaf_cache_hits_total counter\nhandoff_leaf_cache_hits_total %llu\n"
            "# HELP handoff_leaf_cache_misses_total Leaves minted.\n"
            "# TYPE handoff_leaf_cache_misses_total counter\n"
            "handoff_leaf_cache_misses_total %llu\n"
            "# HELP handoff_leaf_cache_entries Leaves in the cache.\n"
            "# TYPE handoff_leaf_cache_entries gauge\nhandoff_leaf_cache_entries %zu\n",
            (unsigned long long)g->leaf_hits, (unsigned long long)g->leaf_misses, g->leaf_entries);
    fprintf(f,
            "# HELP handoff_revocation_cache_hits_total Origin revocation statuses found in the "
            "cache.\n# TYPE handoff_revocation_cache_hits_total counter\n"
            "handoff_revocation_cache_hits_total %llu\n"
            "# HELP handoff_revocation_cache_misses_total Origin revocation statuses not in the "
            "cache.\n# TYPE handoff_revocation_cache_misses_total counter\n"
            "handoff_revocation_cache_misses_total %llu\n"
            "# HELP handoff_revocation_cache_entries Origin revocation statuses cached.\n"
            "# TYPE handoff_revocation_cache_entries gauge\nhandoff_revocation_cache_entries %zu\n",
            (unsigned long long)g->rev_cache_hits, (unsigned long long)g->rev_cache_misses,
            g->rev_cache_entries);
    fprintf(f,
            "# HELP handoff_access_log_dropped_total Log lines dropped because the writer "
            "fell behind.\n# TYPE handoff_access_log_dropped_total counter\n"
            "handoff_access_log_dropped_total %llu\n",
            (unsigned long long)g->log_dropped);
    fclose(f);
    return out;
}
