#include "metrics.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "access_log.h"
#include "certs.h"
#include "session_internal.h"

#define LABELS 64

typedef struct {
    char name[96];
    uint64_t count;
} labelled;

static struct {
    pthread_mutex_t lock;
    labelled connections[LABELS]; /* "protocol|action" */
    labelled detections[LABELS];
    labelled denials[LABELS];
    labelled handshake_failures[LABELS];
    uint64_t bytes_from_client, bytes_from_server;
    uint64_t detect_buckets[8]; /* latency histogram, ms upper bounds below */
    uint64_t detect_sum_ms, detect_count;
    uint64_t handshakes[2][2]; /* [client leg][resumed] */
} m = {.lock = PTHREAD_MUTEX_INITIALIZER};

static const unsigned detect_bounds_ms[8] = {1, 5, 10, 50, 100, 500, 1000, 5000};

static void bump(labelled *table, const char *name)
{
    for (int i = 0; i < LABELS; i++) {
        if (table[i].name[0] == '\0')
            snprintf(table[i].name, sizeof table[i].name, "%s", name);
        if (strcmp(table[i].name, name) == 0) {
            table[i].count++;
            return;
        }
    }
}

void metrics_handshake_failure(shared_state *sh, const char *reason)
{
    (void)sh;
    /* Keep the label set small: the OpenSSL reason after the last colon. */
    const char *r = strrchr(reason, ':');
    r = r ? r + 1 : reason;
    pthread_mutex_lock(&m.lock);
    bump(m.handshake_failures, r);
    pthread_mutex_unlock(&m.lock);
}

void metrics_connection_end(shared_state *sh, const char *protocol, const char *action,
                            uint64_t from_client, uint64_t from_server)
{
    (void)sh;
    char key[96];
    snprintf(key, sizeof key, "%s|%s", protocol ? protocol : "none", action ? action : "allowed");
    pthread_mutex_lock(&m.lock);
    bump(m.connections, key);
    m.bytes_from_client += from_client;
    m.bytes_from_server += from_server;
    pthread_mutex_unlock(&m.lock);
}

void metrics_detection(shared_state *sh, const char *protocol, uint64_t latency_ms)
{
    (void)sh;
    pthread_mutex_lock(&m.lock);
    bump(m.detections, protocol);
    for (int i = 0; i < 8; i++)
        if (latency_ms <= detect_bounds_ms[i])
            m.detect_buckets[i]++;
    m.detect_sum_ms += latency_ms;
    m.detect_count++;
    pthread_mutex_unlock(&m.lock);
}

void metrics_tls_handshake(shared_state *sh, bool client_leg, bool resumed)
{
    (void)sh;
    pthread_mutex_lock(&m.lock);
    m.handshakes[client_leg][resumed]++;
    pthread_mutex_unlock(&m.lock);
}

void metrics_denial(shared_state *sh, const char *rule)
{
    (void)sh;
    pthread_mutex_lock(&m.lock);
    bump(m.denials, rule ? rule : "default");
    pthread_mutex_unlock(&m.lock);
}

static void emit(FILE *f, const char *metric, const char *label, const labelled *t)
{
    for (int i = 0; i < LABELS && t[i].name[0]; i++)
        fprintf(f, "%s{%s=\"%s\"} %llu\n", metric, label, t[i].name,
                (unsigned long long)t[i].count);
}

char *metrics_render(shared_state *sh, size_t *len)
{
    char *out = NULL;
    FILE *f = open_memstream(&out, len);
    if (!f)
        return NULL;
    pthread_mutex_lock(&m.lock);
    fprintf(f, "# HELP handoff_connections_total Connections and requests ended, by protocol "
               "and outcome.\n# TYPE handoff_connections_total counter\n");
    for (int i = 0; i < LABELS && m.connections[i].name[0]; i++) {
        char proto[96];
        snprintf(proto, sizeof proto, "%s", m.connections[i].name);
        char *bar = strchr(proto, '|');
        const char *action = bar ? bar + 1 : "";
        if (bar)
            *bar = '\0';
        fprintf(f, "handoff_connections_total{protocol=\"%s\",outcome=\"%s\"} %llu\n", proto,
                action, (unsigned long long)m.connections[i].count);
    }
    fprintf(f, "# HELP handoff_detections_total Protocol detection results.\n"
               "# TYPE handoff_detections_total counter\n");
    emit(f, "handoff_detections_total", "protocol", m.detections);
    fprintf(f, "# HELP handoff_denials_total Denials by deciding rule.\n"
               "# TYPE handoff_denials_total counter\n");
    emit(f, "handoff_denials_total", "rule", m.denials);
    fprintf(f, "# HELP handoff_tls_handshake_failures_total TLS handshake failures by reason.\n"
               "# TYPE handoff_tls_handshake_failures_total counter\n");
    emit(f, "handoff_tls_handshake_failures_total", "reason", m.handshake_failures);
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
    pthread_mutex_unlock(&m.lock);
    fprintf(f,
            "# HELP handoff_active_sessions Open client connections.\n"
            "# TYPE handoff_active_sessions gauge\nhandoff_active_sessions %d\n",
            atomic_load(&sh->connections));
    uint64_t hits = 0, misses = 0;
    size_t size = 0;
    if (sh->leaves)
        certs_cache_stats(sh->leaves, &hits, &misses, &size);
    fprintf(f,
            "# HELP handoff_leaf_cache_hits_total Minted leaves found in the cache.\n"
            "# TYPE handoff_leaf_cache_hits_total counter\nhandoff_leaf_cache_hits_total %llu\n"
            "# HELP handoff_leaf_cache_misses_total Leaves minted.\n"
            "# TYPE handoff_leaf_cache_misses_total counter\n"
            "handoff_leaf_cache_misses_total %llu\n"
            "# HELP handoff_leaf_cache_entries Leaves in the cache.\n"
            "# TYPE handoff_leaf_cache_entries gauge\nhandoff_leaf_cache_entries %zu\n",
            (unsigned long long)hits, (unsigned long long)misses, size);
    fprintf(f,
            "# HELP handoff_access_log_dropped_total Log lines dropped because the writer "
            "fell behind.\n# TYPE handoff_access_log_dropped_total counter\n"
            "handoff_access_log_dropped_total %llu\n",
            (unsigned long long)access_log_dropped(sh->log));
    fclose(f);
    return out;
}
