#include "access_log.h"

#include "json_text.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* Bounded so a stuck log file can never grow memory: past it lines are counted and dropped. */
#define LOG_QUEUE_BYTES (4 * 1024 * 1024)

typedef struct line {
    struct line *next;
    size_t len;
    char text[];
} line;

struct access_log {
    FILE *out;
    bool is_stdout;
    config_log_format format;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    line *head, *tail;
    size_t queued;
    bool stop;
    bool reopen; /* SIGUSR1: reopen path between two batches */
    uint64_t dropped;
    char path[4096];
};

/* Runs on the writer thread between batches, so every line is whole in the old file or the
 * new one. If the new file cannot be opened the old one stays in use. */
static void reopen_file(access_log *log)
{
    FILE *f = fopen(log->path, "a");
    if (!f) {
        fprintf(stderr, "handoff: cannot reopen access log %s: %s (writing on to the old file)\n",
                log->path, strerror(errno));
        return;
    }
    setvbuf(f, NULL, _IONBF, 0);
    fclose(log->out);
    log->out = f;
}

/* A batch goes out in one write where it can: with O_APPEND, lines from another process
 * appending to the same file (the old one draining after a takeover) never interleave. */
static void write_batch(access_log *log, line *batch)
{
    size_t total = 0;
    for (line *l = batch; l; l = l->next)
        total += l->len;
    char *buf = total ? malloc(total) : NULL;
    size_t at = 0;
    for (line *l = batch, *next; l; l = next) {
        next = l->next;
        if (buf)
            memcpy(buf + at, l->text, l->len);
        else
            fwrite(l->text, 1, l->len, log->out);
        at += l->len;
        free(l);
    }
    if (buf) {
        fwrite(buf, 1, total, log->out); /* files are unbuffered: one write(2) */
        free(buf);
    }
    fflush(log->out);
}

static void *writer(void *arg)
{
    access_log *log = arg;
    pthread_mutex_lock(&log->lock);
    for (;;) {
        while (!log->head && !log->stop && !log->reopen)
            pthread_cond_wait(&log->wake, &log->lock);
        line *batch = log->head;
        log->head = log->tail = NULL;
        log->queued = 0;
        bool stop = log->stop, reopen = log->reopen;
        log->reopen = false;
        pthread_mutex_unlock(&log->lock);
        write_batch(log, batch);
        if (reopen && !log->is_stdout)
            reopen_file(log);
        pthread_mutex_lock(&log->lock);
        if (stop && !log->head)
            break;
    }
    pthread_mutex_unlock(&log->lock);
    return NULL;
}

access_log *access_log_open(const char *path, config_log_format format)
{
    if (!path || !path[0])
        return NULL;
    access_log *log = calloc(1, sizeof *log);
    if (!log)
        return NULL;
    log->format = format;
    snprintf(log->path, sizeof log->path, "%s", path);
    if (strcmp(path, "-") == 0) {
        log->out = stdout;
        log->is_stdout = true;
    } else if (!(log->out = fopen(path, "a"))) {
        int e = errno;
        free(log);
        errno = e;
        return NULL;
    }
    if (!log->is_stdout)
        setvbuf(log->out, NULL, _IONBF, 0); /* batches are written whole, see write_batch */
    pthread_mutex_init(&log->lock, NULL);
    pthread_cond_init(&log->wake, NULL);
    if (pthread_create(&log->thread, NULL, writer, log) != 0) {
        if (!log->is_stdout)
            fclose(log->out);
        free(log);
        return NULL;
    }
    return log;
}

static void format_time(char *buf, size_t len, bool squid)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    if (squid) {
        snprintf(buf, len, "%lld.%03ld", (long long)tv.tv_sec, (long)(tv.tv_usec / 1000));
        return;
    }
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, len - n, ".%03ldZ", (long)(tv.tv_usec / 1000));
}

static void set_str(json_t *o, const char *key, const char *v)
{
    if (v)
        json_object_set_new(o, key, json_text(v));
}

static char *format_json(const access_record *r)
{
    char when[40];
    format_time(when, sizeof when, false);
    json_t *o = json_object();
    set_str(o, "time", when);
    set_str(o, "client", r->client);
    set_str(o, "method", r->method);
    set_str(o, "url", r->url);
    set_str(o, "target", r->target);
    if (r->status > 0)
        json_object_set_new(o, "status", json_integer(r->status));
    set_str(o, "protocol", r->protocol);
    json_object_set_new(o, "intercepted", json_boolean(r->intercepted));
    json_object_set_new(o, "tunneled", json_boolean(r->tunneled));
    set_str(o, "action", r->action);
    json_object_set_new(o, "rule", json_text(r->rule));
    json_object_set_new(o, "sni", json_text(r->sni));
    set_str(o, "user", r->user);
    set_str(o, "auth", r->auth);
    json_object_set_new(o, "bytes_from_client", json_integer((json_int_t)r->bytes_from_client));
    json_object_set_new(o, "bytes_from_server", json_integer((json_int_t)r->bytes_from_server));
    json_object_set_new(o, "duration_ms", json_integer((json_int_t)r->duration_ms));
    set_str(o, "error", r->error);
    set_str(o, "http_version", r->http_version);
    set_str(o, "mode", r->mode);
    set_str(o, "revocation", r->revocation);
    if (r->messages && r->messages->used) {
        json_t *m = json_object();
        for (unsigned i = 0; i < r->messages->used; i++)
            json_object_set_new(m, r->messages->items[i].name,
                                json_integer((json_int_t)r->messages->items[i].count));
        json_object_set_new(o, "messages", m);
    }
    if (r->compressed)
        json_object_set_new(o, "compressed", json_true());
    char *text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    return text;
}

/* Squid's native format: time elapsed client code/status bytes method url user hierarchy type */
static char *format_squid(const access_record *r)
{
    char when[40];
    format_time(when, sizeof when, true);
    const char *code = "TCP_MISS";
    if (r->action && strcmp(r->action, "denied") == 0)
        code = "TCP_DENIED";
    else if (r->target)
        code = "TCP_TUNNEL";
    else if (r->action && strcmp(r->action, "error") == 0)
        code = "TAG_NONE";
    /* Squid's %>a is the address alone: drop the port (and IPv6 brackets). */
    char client[64] = "-";
    if (r->client) {
        const char *c = r->client[0] == '[' ? r->client + 1 : r->client;
        const char *end = r->client[0] == '[' ? strchr(c, ']') : strrchr(c, ':');
        size_t len = end ? (size_t)(end - c) : strlen(c);
        snprintf(client, sizeof client, "%.*s", (int)len, c);
    }
    char *text = NULL;
    if (asprintf(&text, "%s %6llu %s %s/%03d %llu %s %s %s HIER_DIRECT/- -", when,
                 (unsigned long long)r->duration_ms, client, code, r->status > 0 ? r->status : 0,
                 (unsigned long long)(r->bytes_from_server + r->bytes_from_client),
                 r->method ? r->method : "-", r->url ? r->url : (r->target ? r->target : "-"),
                 r->user && r->user[0] ? r->user : "-") < 0)
        return NULL;
    return text;
}

void access_log_write(access_log *log, const access_record *r)
{
    if (!log)
        return;
    char *text = log->format == LOG_FORMAT_SQUID ? format_squid(r) : format_json(r);
    if (!text)
        return;
    size_t len = strlen(text);
    line *l = malloc(sizeof *l + len + 1);
    if (l) {
        memcpy(l->text, text, len);
        l->text[len] = '\n';
        l->len = len + 1;
        l->next = NULL;
    }
    free(text);
    pthread_mutex_lock(&log->lock);
    if (!l || log->queued + (l ? l->len : 0) > LOG_QUEUE_BYTES) {
        log->dropped++;
        free(l);
    } else {
        if (log->tail)
            log->tail->next = l;
        else
            log->head = l;
        log->tail = l;
        log->queued += l->len;
        pthread_cond_signal(&log->wake);
    }
    pthread_mutex_unlock(&log->lock);
}

void access_log_reopen(access_log *log)
{
    if (!log)
        return;
    pthread_mutex_lock(&log->lock);
    log->reopen = true;
    pthread_cond_signal(&log->wake);
    pthread_mutex_unlock(&log->lock);
}

uint64_t access_log_dropped(access_log *log)
{
    if (!log)
        return 0;
    pthread_mutex_lock(&log->lock);
    uint64_t n = log->dropped;
    pthread_mutex_unlock(&log->lock);
    return n;
}

void access_log_close(access_log *log)
{
    if (!log)
        return;
    pthread_mutex_lock(&log->lock);
    log->stop = true;
    pthread_cond_signal(&log->wake);
    pthread_mutex_unlock(&log->lock);
    pthread_join(log->thread, NULL);
    if (!log->is_stdout)
        fclose(log->out);
    pthread_mutex_destroy(&log->lock);
    pthread_cond_destroy(&log->wake);
    free(log);
}
