/* The HTTP front end: request heads from the client, local answers, and the dispatch of
 * CONNECT and absolute-form requests. */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "access_log.h"
#include "auth.h"
#include "http_head.h"
#include "leg.h"
#include "local_pages.h"
#include "session_internal.h"
#include "url.h"
#include "worker.h"

static int on_message_begin(llhttp_t *p)
{
    session *s = p->data;
    head_reset(&s->head);
    s->request_started_ms = uv_now(&s->w->loop);
    s->req_body_bytes = 0;
    return 0;
}

static int append(llhttp_t *p, head_part part, const char *at, size_t len)
{
    session *s = p->data;
    return head_append(&s->head, part, at, len, (size_t)s->w->shared->cfg.max_header_bytes) ? -1
                                                                                            : 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    return append(p, HEAD_URL, at, len);
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    return append(p, HEAD_FIELD, at, len);
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    return append(p, HEAD_VALUE, at, len);
}

static int on_header_value_complete(llhttp_t *p)
{
    session *s = p->data;
    head_value_done(&s->head);
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    (void)p;
    /* Stop here: the body goes nowhere until the request is allowed and an origin is open. */
    return HPE_PAUSED;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    session *s = p->data;
    s->req_body_bytes += len;
    http_forward_body(s, at, len);
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    session *s = p->data;
    http_forward_request_done(s);
    /* Pipelined requests wait until this one is answered. */
    return HPE_PAUSED;
}

static const llhttp_settings_t request_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* Client bytes held while the parser waits; past this, reading stops until it resumes. */
#define PENDING_MAX (64 * 1024)

static void save_pending(session *s, const char *at, size_t len)
{
    if (len == 0)
        return;
    char *p = malloc(s->pending_len + len);
    if (!p) {
        session_close(s);
        return;
    }
    if (s->pending_len)
        memcpy(p, s->pending_in, s->pending_len);
    memcpy(p + s->pending_len, at, len);
    free(s->pending_in);
    s->pending_in = p;
    s->pending_len += len;
}

static void dispatch(session *s);

static void client_on_data(leg *l, const char *buf, ssize_t n)
{
    session *s = l->s;
    if (s->parser_paused && s->phase != PHASE_LOCAL) {
        /* A request is in flight: hold what the client sends meanwhile, up to a bound, rather
         * than stopping and restarting reads around every request. */
        if (n == UV_EOF) {
            s->client_eof_held = true;
        } else if (n < 0) {
            session_fail(s, l, (int)n);
        } else {
            save_pending(s, buf, (size_t)n);
            if (s->pending_len > PENDING_MAX)
                leg_want_read(&s->client, false);
        }
        return;
    }
    if (n < 0) {
        if (s->phase == PHASE_LOCAL || (s->phase == PHASE_HEAD && s->head.wire == 0)) {
            session_close(s); /* a client that is done: nothing to answer */
            return;
        }
        if (n == UV_EOF && s->phase == PHASE_HEAD) {
            llhttp_finish(&s->req_parser);
            front_answer(s, 400, "Bad Request",
                         "connection closed before the request head ended\n");
            return;
        }
        if (s->phase == PHASE_HTTP && n == UV_EOF && s->request_done) {
            /* The client half-closed after its request: finish the answer, then close. */
            s->client_keep_alive = false;
            return;
        }
        session_fail(s, l, (int)n);
        return;
    }
    if (s->phase == PHASE_LOCAL)
        return; /* an answer is on its way: what follows is read and dropped */
    if (s->phase == PHASE_HEAD && s->timer_purpose == TIMER_KEEPALIVE)
        session_set_timer(s, (uint64_t)s->w->shared->cfg.header_timeout_s * 1000, TIMER_HEADER);
    front_feed(s, buf, (size_t)n);
}

void front_feed(session *s, const char *buf, size_t len)
{
    llhttp_errno_t err = llhttp_execute(&s->req_parser, buf, len);
    if (s->closing)
        return;
    if (err == HPE_OK)
        return;
    if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
        const char *pos = llhttp_get_error_pos(&s->req_parser);
        size_t used = pos ? (size_t)(pos - buf) : len;
        s->parser_paused = true;
        save_pending(s, buf + used, len - used);
        if (s->phase == PHASE_HEAD && !s->head_dispatched) {
            s->head_dispatched = true;
            dispatch(s);
        } else {
            http_forward_after_pause(s);
        }
        return;
    }
    if (s->head.overflow) {
        front_answer(s, 431, "Request Header Fields Too Large",
                     "request head larger than max_header_bytes (%d)\n",
                     s->w->shared->cfg.max_header_bytes);
        return;
    }
    if (s->head.too_many) {
        front_answer(s, 431, "Request Header Fields Too Large", "more than %d header fields\n",
                     HEAD_MAX_HEADERS);
        return;
    }
    if (s->phase == PHASE_HTTP && s->response_started) {
        snprintf(s->error, sizeof s->error, "malformed request: %s",
                 llhttp_get_error_reason(&s->req_parser));
        session_close(s);
        return;
    }
    front_answer(s, 400, "Bad Request", "malformed request: %s\n",
                 llhttp_get_error_reason(&s->req_parser));
}

/* Feeds bytes held back while the previous request was in flight. */
void front_resume(session *s)
{
    llhttp_errno_t e = llhttp_get_errno(&s->req_parser);
    if (e == HPE_PAUSED)
        llhttp_resume(&s->req_parser);
    else if (e == HPE_PAUSED_UPGRADE)
        llhttp_resume_after_upgrade(&s->req_parser);
    char *held = s->pending_in;
    size_t n = s->pending_len;
    s->pending_in = NULL;
    s->pending_len = 0;
    s->parser_paused = false;
    /* Even with no bytes: a message paused at its head completes on the next execute. */
    front_feed(s, held ? held : "", n);
    free(held);
    if (s->closing || s->parser_paused || s->client.on_data != client_on_data)
        return;
    if (s->client_eof_held) {
        s->client_eof_held = false;
        client_on_data(&s->client, NULL, UV_EOF);
        return;
    }
    leg_want_read(&s->client, true);
}

void front_begin(session *s, bool keep_alive)
{
    const config *cfg = &s->w->shared->cfg;
    s->phase = PHASE_HEAD;
    s->head_dispatched = false;
    s->client.on_data = client_on_data;
    if (!keep_alive) {
        llhttp_init(&s->req_parser, HTTP_REQUEST, &request_settings);
        s->req_parser.data = s;
        s->parser_paused = false;
        session_set_timer(s, (uint64_t)cfg->header_timeout_s * 1000, TIMER_HEADER);
    } else {
        session_set_timer(s, (uint64_t)cfg->idle_timeout_s * 1000, TIMER_KEEPALIVE);
    }
    head_reset(&s->head);
    if (keep_alive)
        front_resume(s);
    else
        leg_want_read(&s->client, true);
}

/* ---- local answers ---- */

void front_log_request(session *s, int status, const char *action)
{
    char rule[300] = "";
    if (s->rule.file)
        snprintf(rule, sizeof rule, "%s:%d", s->rule.file, s->rule.line);
    access_record r = {
        .client = s->client_text,
        .method = s->method[0] ? s->method : NULL,
        .url = s->url,
        .status = status,
        .protocol = s->intercepted ? "https" : "http",
        .intercepted = s->intercepted,
        .action = action,
        .rule = rule[0] ? rule : NULL,
        .sni = s->sni[0] ? s->sni : NULL,
        .user = s->user[0] ? s->user : NULL,
        .bytes_from_client = s->req_body_bytes + s->head.wire,
        .bytes_from_server = s->resp_bytes,
        .duration_ms = uv_now(&s->w->loop) - s->request_started_ms,
        .error = s->error[0] ? s->error : NULL,
    };
    if (s->is_connect) {
        r.url = NULL;
        r.target = s->url;
        r.protocol = NULL;
    }
    access_log_write(s->w->shared->log, &r);
    metrics_connection_end(s->w->shared, r.protocol ? r.protocol : "connect", action,
                           r.bytes_from_client, r.bytes_from_server);
}

void front_close_after_answer(session *s);

static void local_on_data(leg *l, const char *buf, ssize_t n)
{
    (void)buf;
    if (n < 0)
        session_close(l->s);
}

static void send_local(session *s, int status, const char *reason, const char *type,
                       const char *extra, const char *body, size_t len, bool keep_alive)
{
    char head[1024];
    int n = snprintf(
        head, sizeof head, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s%s\r\n",
        status, reason, type, len, extra ? extra : "", keep_alive ? "" : "Connection: close\r\n");
    s->resp_bytes = len;
    leg_write(&s->client, head, (size_t)n);
    if (len)
        leg_write(&s->client, body, len);
    if (keep_alive) {
        front_begin(s, true);
        return;
    }
    front_close_after_answer(s);
}

void front_close_after_answer(session *s)
{
    /* Send FIN, then drain what the client still sends until it closes: closing with unread
     * bytes would reset the connection and could destroy the answer. */
    s->phase = PHASE_LOCAL;
    s->client.on_data = local_on_data;
    leg_set_backpressure(&s->client, false);
    leg_shutdown(&s->client);
    leg_want_read(&s->client, true);
    session_set_timer(s, 5000, TIMER_KEEPALIVE);
}

void front_answer(session *s, int status, const char *reason, const char *fmt, ...)
{
    char body[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(body, sizeof body, fmt, ap);
    va_end(ap);
    if (!s->error[0] && status >= 400 && status != 407 && status != 403) {
        snprintf(s->error, sizeof s->error, "%.*s", (int)sizeof s->error - 1, body);
        s->error[strcspn(s->error, "\n")] = '\0';
    }
    if (s->phase == PHASE_HTTP && s->response_started) {
        /* Too late for a status: the client sees the connection end. */
        front_log_request(s, s->status, "error");
        session_close(s);
        return;
    }
    char extra[256] = "";
    if (status == 407)
        snprintf(extra, sizeof extra, "Proxy-Authenticate: Basic realm=\"%s\"\r\n",
                 s->w->shared->cfg.realm);
    front_log_request(s, status, (status == 403 || status == 407) ? "denied" : "error");
    send_local(s, status, reason, "text/plain; charset=utf-8", extra, body, strlen(body), false);
}

static bool serve_local(session *s, const char *path)
{
    if (strcasecmp(s->method, "GET") != 0 && strcasecmp(s->method, "HEAD") != 0)
        return false;
    local_page page;
    if (!local_page_find(s->w->shared, path, false, &page))
        return false;
    front_log_request(s, 200, "allowed");
    bool head_only = strcasecmp(s->method, "HEAD") == 0;
    send_local(s, 200, "OK", page.type, NULL, page.body, head_only ? 0 : page.len,
               !head_only && llhttp_should_keep_alive(&s->req_parser));
    free(page.owned);
    return true;
}

/* ---- dispatch ---- */

static void check_policy(session *s);

static void on_auth_work(uv_work_t *req)
{
    session *s = req->data;
    size_t len;
    const char *v = head_get(&s->head, "Proxy-Authorization", &len);
    s->auth_ok = v && auth_check(s->w->shared->auth, v, len, s->user, sizeof s->user);
}

static void on_auth_done(uv_work_t *req, int status)
{
    session *s = req->data;
    free(req);
    if (!s->closing) {
        if (status == 0 && s->auth_ok)
            check_policy(s);
        else
            front_answer(s, 407, "Proxy Authentication Required",
                         "proxy authentication required\n");
    }
    session_unref(s);
}

static void check_policy(session *s)
{
    shared_state *sh = s->w->shared;
    policy_facts f = {
        .host = s->policy_host[0] ? s->policy_host : s->target_host,
        .port = s->target_port,
        .method = s->method,
        .client = (const struct sockaddr *)&s->client_addr,
        .tunneled = -1,
        .user = s->user[0] ? s->user : NULL,
    };
    policy_decision d;
    policy_evaluate(s->pol, &f, POLICY_CP_REQUEST, &d);
    s->rule = d.verdict_rule;
    if (d.detect_protocol == DETECT_PROTO_NONE)
        s->detect_enabled = false;
    else if (d.detect_protocol == DETECT_PROTO_ALL)
        s->detect_enabled = true;
    if (d.tunnel_on_protocol_error != TRI_UNSET)
        s->tunnel_on_error = d.tunnel_on_protocol_error == TRI_YES;
    if (d.verify_server != TRI_UNSET)
        s->verify_server = d.verify_server == TRI_YES;
    bool allow =
        d.verdict == POLICY_UNSET ? sh->cfg.policy_default_allow : d.verdict == POLICY_ALLOW;
    if (!allow) {
        char rule[300];
        snprintf(rule, sizeof rule, "%s:%d", d.verdict_rule.file ? d.verdict_rule.file : "default",
                 d.verdict_rule.line);
        metrics_denial(sh, d.verdict_rule.file ? rule : NULL);
        if (d.verdict_rule.file)
            front_answer(s, 403, "Forbidden", "denied by policy rule %s:%d\n", d.verdict_rule.file,
                         d.verdict_rule.line);
        else
            front_answer(s, 403, "Forbidden",
                         "denied by the default policy ([policy] default = deny)\n");
        return;
    }
    if (s->is_connect)
        connect_allowed(s);
    else
        http_forward_request(s);
}

/* A request inside a tunnel: the origin is fixed and the target is origin-form. */
static void dispatch_inner(session *s)
{
    if (s->url[0] != '/' && !(s->url[0] == '*' && s->url[1] == '\0')) {
        front_answer(s, 400, "Bad Request", "expected an origin-form request inside the tunnel\n");
        return;
    }
    /* url.host is the Host header's name, else the SNI, else the CONNECT host. */
    size_t hl = 0;
    const char *host = head_get(&s->head, "Host", &hl);
    url_parts u;
    char authority[300];
    snprintf(authority, sizeof authority, "%.*s", (int)hl, host ? host : "");
    if (host && url_parse_authority(authority, &u) == 0)
        snprintf(s->policy_host, sizeof s->policy_host, "%s", u.host);
    else if (host && hl < sizeof s->policy_host && hl > 0 && !memchr(host, ':', hl))
        snprintf(s->policy_host, sizeof s->policy_host, "%.*s", (int)hl, host);
    else
        snprintf(s->policy_host, sizeof s->policy_host, "%s", s->sni[0] ? s->sni : s->target_host);
    for (char *p = s->policy_host; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    const char *scheme = s->intercepted ? "https" : "http";
    bool default_port = s->target_port == (s->intercepted ? 443 : 80);
    char *full = NULL;
    int n = default_port
                ? asprintf(&full, "%s://%s%s", scheme, s->policy_host, s->url)
                : asprintf(&full, "%s://%s:%u%s", scheme, s->policy_host, s->target_port, s->url);
    if (n < 0) {
        session_close(s);
        return;
    }
    size_t path_off = (size_t)n - strlen(s->url);
    free(s->url);
    s->url = full;
    s->request_path = full + path_off;
    check_policy(s);
}

static void dispatch(session *s)
{
    shared_state *sh = s->w->shared;
    const http_head *h = &s->head;
    session_stop_timer(s);
    snprintf(s->method, sizeof s->method, "%s",
             llhttp_method_name((llhttp_method_t)llhttp_get_method(&s->req_parser)));
    free(s->url);
    s->url = malloc(h->url_len + 1);
    if (!s->url) {
        session_close(s);
        return;
    }
    memcpy(s->url, h->buf + h->url_off, h->url_len);
    s->url[h->url_len] = '\0';
    s->is_connect = strcmp(s->method, "CONNECT") == 0;
    s->status = 0;
    s->error[0] = '\0';
    s->rule.file = NULL;

    s->policy_host[0] = '\0';
    if (s->inner_http) {
        dispatch_inner(s);
        return;
    }
    url_parts u;
    if (s->is_connect) {
        if (url_parse_authority(s->url, &u) != 0) {
            front_answer(s, 400, "Bad Request", "CONNECT needs host:port, got '%s'\n", s->url);
            return;
        }
    } else if (s->url[0] == '/') {
        char path[256];
        snprintf(path, sizeof path, "%.*s", (int)strcspn(s->url, "?"), s->url);
        if (!serve_local(s, path))
            front_answer(s, 400, "Bad Request",
                         "this is a proxy: send absolute-form requests (GET http://host/path); "
                         "it serves /proxy.pac, /wpad.dat and /handoff-ca.crl itself\n");
        return;
    } else if (url_parse_absolute(s->url, &u) != 0) {
        front_answer(s, 400, "Bad Request", "unsupported request target '%s'\n", s->url);
        return;
    }
    snprintf(s->target_host, sizeof s->target_host, "%s", u.host);
    s->target_port = u.port;
    s->request_path = u.path;

    if (sh->auth) {
        size_t len;
        const char *v = head_get(h, "Proxy-Authorization", &len);
        if (!v) {
            front_answer(s, 407, "Proxy Authentication Required",
                         "proxy authentication required\n");
            return;
        }
        if (!auth_check_cached(sh->auth, v, len, s->user, sizeof s->user)) {
            uv_work_t *req = malloc(sizeof *req);
            if (!req) {
                session_close(s);
                return;
            }
            req->data = s;
            session_ref(s);
            uv_queue_work(&s->w->loop, req, on_auth_work, on_auth_done);
            return;
        }
    }
    check_policy(s);
}
