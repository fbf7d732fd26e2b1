/* The end of a transaction: the one place that writes its access-log line and counts it. */
#include "txn.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "access_log.h"
#include "metrics.h"
#include "session.h"
#include "worker.h"

void txn_free(txn *t)
{
    free(t->url);
    free(t->error);
    t->url = NULL;
    t->error = NULL;
}

void txn_begin(session *s, bool is_request, const char *method, const char *url)
{
    txn *t = &s->t;
    if (t->open)
        txn_end(s);
    txn_free(t);
    memset(t, 0, sizeof *t);
    t->open = true;
    t->is_request = is_request;
    snprintf(t->method, sizeof t->method, "%s", method ? method : "");
    t->url = url ? strdup(url) : NULL;
    t->started_ms = uv_now(&s->w->loop);
    t->client_mark = s->client.bytes_in;
    t->origin_mark = s->origin.bytes_in;
}

static void note(txn *t, const char *fmt, va_list ap)
{
    if (t->error)
        return;
    char buf[400];
    vsnprintf(buf, sizeof buf, fmt, ap);
    buf[strcspn(buf, "\n")] = '\0';
    t->error = strdup(buf);
}

void txn_fail(session *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    note(&s->t, fmt, ap);
    va_end(ap);
    if (!s->t.action || strcmp(s->t.action, "denied") != 0)
        s->t.action = "error";
}

void txn_note(session *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    note(&s->t, fmt, ap);
    va_end(ap);
}

void txn_deny(session *s, policy_where rule)
{
    s->t.action = "denied";
    s->t.rule = rule;
    char label[300];
    snprintf(label, sizeof label, "%s:%d", rule.file ? rule.file : "default", rule.line);
    metrics_denial(rule.file ? label : NULL);
}

static void write_line(session *s, txn *t);

void txn_end(session *s)
{
    txn *t = &s->t;
    if (!t->open)
        return;
    t->open = false;
    write_line(s, t);
}

void txn_log_stream(session *s, txn *t)
{
    if (!t->open)
        return;
    t->open = false;
    metrics_http2_stream(t->action ? t->action : t->error ? "error" : "allowed");
    write_line(s, t);
}

static void write_line(session *s, txn *t)
{
    char rule[300] = "";
    if (t->rule.file)
        snprintf(rule, sizeof rule, "%s:%d", t->rule.file, t->rule.line);
    const char *action = t->action ? t->action : t->error ? "error" : "allowed";
    access_record r = {
        .client = s->client_text,
        .method = t->method[0] ? t->method : NULL,
        .status = t->status,
        .intercepted = s->intercepted,
        .action = action,
        .rule = rule[0] ? rule : NULL,
        .sni = s->sni[0] ? s->sni : NULL,
        .user = s->user[0] ? s->user : NULL,
        .auth = s->user[0] ? s->auth_mech : NULL,
        .duration_ms = uv_now(&s->w->loop) - t->started_ms,
        .error = t->error,
        .http_version = t->http_version,
        .mode = s->transparent ? "transparent" : NULL,
        .revocation = s->intercepted ? (s->revocation ? s->revocation : "not-checked") : NULL,
    };
    const char *metric_protocol;
    if (t->is_request) {
        r.url = t->url;
        r.protocol = s->intercepted ? "https" : "http";
        r.bytes_from_client = t->bytes_from_client;
        r.bytes_from_server = t->bytes_from_server;
        metric_protocol = r.protocol;
    } else {
        const char *name = detect_protocol_name(s->protocol);
        r.target = t->url;
        r.protocol = name;
        r.tunneled = s->tunneled;
        r.bytes_from_client = s->client.bytes_in - t->client_mark;
        r.bytes_from_server = s->origin.bytes_in - t->origin_mark;
        r.messages = s->counters;
        r.compressed = s->compressed;
        if (!r.status && name)
            r.status = 200;
        metric_protocol = name ? name : "connect";
    }
    access_log_write(s->w->shared->log, &r);
    metrics_connection_end(metric_protocol, action, r.bytes_from_client, r.bytes_from_server);
}
