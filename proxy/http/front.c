/* The HTTP front end: request heads from the client, local answers, and the dispatch of
 * CONNECT and absolute-form requests (the head stage), and of origin-form requests inside a
 * tunnel or intercepted TLS (the http stage). */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth.h"
#include "auth_negotiate.h"
#include "diag.h"
#include "http_internal.h"
#include "local_pages.h"
#include "metrics.h"
#include "names.h"
#include "ocsp.h"
#include "transparent.h"
#include "url.h"
#include "verdict.h"
#include "worker.h"

/* Client bytes held while a request is in flight; past this, reading stops until it resumes. */
#define HELD_MAX (64 * 1024)

static http_state *state(session *s)
{
    return s->st;
}

static size_t max_head(session *s)
{
    return (size_t)s->w->shared->cfg.max_header_bytes;
}

/* ---- llhttp callbacks ---- */

static int on_message_begin(llhttp_t *p)
{
    session *s = p->data;
    http_state *h = state(s);
    head_reset(&h->head);
    h->req_body_bytes = 0;
    return 0;
}

/* The head a parser fills: the request's or the response's (forward.c uses these too). */
static http_head *head_of(llhttp_t *p)
{
    http_state *h = state(p->data);
    return p == &h->req ? &h->head : &h->resp_head;
}

static int append(llhttp_t *p, head_part part, const char *at, size_t len)
{
    return head_append(head_of(p), part, at, len, max_head(p->data)) ? -1 : 0;
}

int http_on_start_line(llhttp_t *p, const char *at, size_t len)
{
    return append(p, HEAD_URL, at, len);
}

int http_on_header_field(llhttp_t *p, const char *at, size_t len)
{
    return append(p, HEAD_FIELD, at, len);
}

int http_on_header_value(llhttp_t *p, const char *at, size_t len)
{
    return append(p, HEAD_VALUE, at, len);
}

int http_on_header_value_complete(llhttp_t *p)
{
    head_value_done(head_of(p));
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    session *s = p->data;
    http_state *h = state(s);
    h->req_content_length = (p->flags & F_CONTENT_LENGTH) ? p->content_length : 0;
    /* Stop here: the body goes nowhere until the request is allowed and an origin is open. */
    return HPE_PAUSED;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    session *s = p->data;
    http_state *h = state(s);
    h->req_body_bytes += len;
    /* Only a forwarded request's body goes to an origin; a local answer's is read and dropped
     * (an OCSP POST's is kept, bounded). */
    if (h->kind == REQ_FORWARD)
        http_forward_body(s, at, len);
    else if (h->post.active)
        local_body_append(&h->post, at, len);
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    session *s = p->data;
    http_state *h = state(s);
    if (h->kind == REQ_FORWARD)
        http_forward_request_end(s);
    h->request_done = true;
    /* Pipelined requests wait until this one is answered. */
    return HPE_PAUSED;
}

static const llhttp_settings_t request_settings = {
    .on_message_begin = on_message_begin,
    .on_url = http_on_start_line,
    .on_header_field = http_on_header_field,
    .on_header_value = http_on_header_value,
    .on_header_value_complete = http_on_header_value_complete,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ---- holding bytes while the parser waits ---- */

static int hold(session *s, const char *at, size_t len)
{
    http_state *h = state(s);
    if (len == 0)
        return 0;
    char *p = realloc(h->held, h->held_len + len);
    if (!p)
        return -1;
    memcpy(p + h->held_len, at, len);
    h->held = p;
    h->held_len += len;
    if (h->held_len > HELD_MAX)
        leg_want_read(&s->client, false);
    return 0;
}

/* ---- local answers ---- */

static void reset_request(http_state *h)
{
    free(h->url);
    h->url = NULL;
    free(h->local_body);
    h->local_body = NULL;
    free(h->local_extra);
    h->local_extra = NULL;
    h->local_status = 0;
    local_body_reset(&h->post);
    h->kind = REQ_NONE;
    h->request_done = h->response_done = h->response_started = false;
    h->response_chunked = h->response_until_close = h->upgrade_requested = false;
    h->head_request = h->sent_on_reused = h->retried = h->auth_pending = false;
    h->status = 0;
    h->req_body_bytes = h->resp_bytes = 0;
    head_release(&h->head);
    head_release(&h->resp_head);
}

static void next_request(session *s);

/* Writes a local answer prepared in h, ends its transaction, then the next request or the
 * end of the connection. */
static void send_local(session *s)
{
    http_state *h = state(s);
    bool keep_alive =
        !h->local_close && !h->client_eof && llhttp_should_keep_alive(&h->req) && h->request_done;
    char *head = NULL;
    int n =
        asprintf(&head, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s%s%s\r\n",
                 h->local_status, h->local_reason, h->local_type, h->local_body_len,
                 h->local_extra ? h->local_extra : "", s->answer_headers ? s->answer_headers : "",
                 keep_alive ? "" : "Connection: close\r\n");
    if (n < 0) {
        session_abort(s, "out of memory");
        return;
    }
    free(s->answer_headers);
    s->answer_headers = NULL;
    uv_buf_t parts[2] = {uv_buf_init(head, (unsigned)n),
                         uv_buf_init(h->local_body ? h->local_body : "",
                                     h->head_request ? 0 : (unsigned)h->local_body_len)};
    leg_writev(&s->client, parts, 2);
    free(head);
    s->t.status = h->local_status;
    if (s->t.is_request && !s->t.http_version)
        s->t.http_version = h->req.http_minor == 0 ? "1.0" : "1.1";
    s->t.bytes_from_client = h->head.wire + h->req_body_bytes;
    s->t.bytes_from_server = h->head_request ? 0 : h->local_body_len;
    txn_end(s);
    if (!keep_alive) {
        session_end(s);
        return;
    }
    next_request(s);
}

static void prepare_local(session *s, int status, const char *reason, const char *type,
                          const char *body, size_t len, bool close)
{
    http_state *h = state(s);
    h->kind = REQ_LOCAL;
    /* The rest of the request (its body) is read before the answer: that too has a deadline. */
    session_deadline(s, (uint64_t)s->w->shared->cfg.header_timeout_s * 1000);
    h->local_status = status;
    h->local_reason = reason;
    h->local_type = type;
    free(h->local_body);
    h->local_body = malloc(len ? len : 1);
    if (h->local_body && len)
        memcpy(h->local_body, body, len);
    h->local_body_len = h->local_body ? len : 0;
    h->local_close = close;
}

void http_answer(session *s, int status, const char *reason, const char *fmt, ...)
{
    http_state *h = state(s);
    char body[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(body, sizeof body, fmt, ap);
    va_end(ap);
    if (!s->t.open)
        txn_begin(s, true, h->method[0] ? h->method : NULL, h->url);
    if (status >= 400 && status != 407 && status != 403)
        txn_fail(s, "%s", body);
    else if (status == 403 || status == 407)
        s->t.action = "denied";
    if (h->response_started) {
        /* Too late for a status: the client sees the connection end. */
        session_abort(s, body);
        return;
    }
    prepare_local(s, status, reason, "text/plain; charset=utf-8", body, strlen(body), true);
    /* An error ends the connection: what the client still sends is read and dropped. */
    send_local(s);
}

/* ---- feeding the parser ---- */

static void dispatch(session *s);
static void after_message(session *s);

static void feed(session *s, const char *buf, size_t len)
{
    http_state *h = state(s);
    llhttp_errno_t err = llhttp_execute(&h->req, buf, len);
    if (s->ending || s->st != h)
        return;
    if (err == HPE_OK)
        return;
    if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
        const char *pos = llhttp_get_error_pos(&h->req);
        size_t used = pos ? (size_t)(pos - buf) : len;
        h->paused = true;
        if (hold(s, buf + used, len - used) != 0) {
            session_abort(s, "out of memory");
            return;
        }
        if (h->request_done)
            after_message(s);
        else if (h->kind == REQ_NONE)
            dispatch(s);
        return;
    }
    if (h->head.overflow) {
        http_answer(s, 431, "Request Header Fields Too Large",
                    "request head larger than max_header_bytes (%d)\n",
                    s->w->shared->cfg.max_header_bytes);
        return;
    }
    if (h->head.too_many) {
        http_answer(s, 431, "Request Header Fields Too Large", "more than %d header fields\n",
                    HEAD_MAX_HEADERS);
        return;
    }
    http_answer(s, 400, "Bad Request", "malformed request: %s\n", llhttp_get_error_reason(&h->req));
}

static void client_eof(session *s, ssize_t n)
{
    http_state *h = state(s);
    if (h->kind == REQ_NONE && h->head.wire == 0 && h->held_len == 0) {
        session_end(s); /* a client that is done: nothing to answer */
        return;
    }
    if (h->kind == REQ_NONE) {
        http_answer(s, 400, "Bad Request", "connection closed before the request head ended\n");
        return;
    }
    if (h->request_done) {
        /* The client half-closed after its request: finish the answer, then close. */
        h->client_keep_alive = false;
        h->client_eof = true;
        return;
    }
    if (n != UV_EOF) {
        char reason[160];
        snprintf(reason, sizeof reason, "client: %s", uv_strerror((int)n));
        session_abort(s, reason);
        return;
    }
    h->client_eof = true;
    if (h->kind == REQ_FORWARD && h->response_started)
        return; /* the answer goes on; the request was cut short */
    txn_fail(s, "the client closed the connection before its request ended");
    session_end(s);
}

void http_resume_client(session *s)
{
    http_state *h = state(s);
    if (!h->paused) {
        leg_want_read(&s->client, true);
        return;
    }
    llhttp_errno_t e = llhttp_get_errno(&h->req);
    if (e == HPE_PAUSED) {
        llhttp_resume(&h->req);
    } else if (e == HPE_PAUSED_UPGRADE) {
        llhttp_resume_after_upgrade(&h->req);
    }
    char *held = h->held;
    size_t n = h->held_len;
    h->held = NULL;
    h->held_len = 0;
    h->paused = false;
    /* Even with no bytes: a message paused at its head completes on the next execute. */
    feed(s, held ? held : "", n);
    free(held);
    if (s->ending || s->st != h || h->paused)
        return;
    if (s->client.eof) {
        client_eof(s, UV_EOF);
        return;
    }
    leg_want_read(&s->client, true);
}

static void next_request(session *s)
{
    http_state *h = state(s);
    /* A CONNECT (or upgrade) answered here, e.g. 407: llhttp would take what follows for
     * tunnel bytes, but on this connection the next request follows. */
    if (h->req.upgrade || llhttp_get_method(&h->req) == HTTP_CONNECT) {
        llhttp_init(&h->req, HTTP_REQUEST, &request_settings);
        h->req.data = s;
    }
    reset_request(h);
    s->idle = true;
    /* Between requests a connection holds no buffer it does not need. */
    leg_trim(&s->client);
    if (h->origin_ready)
        leg_trim(&s->origin);
    session_deadline(s, (uint64_t)s->w->shared->cfg.idle_timeout_s * 1000);
    http_resume_client(s);
}

bool http_exchange_complete(const http_state *h)
{
    return h->request_done && h->response_done;
}

void http_exchange_done(session *s)
{
    http_state *h = state(s);
    s->t.status = h->status;
    if (!s->t.http_version)
        s->t.http_version = h->req.http_minor == 0 ? "1.0" : "1.1";
    s->t.bytes_from_client = h->head.wire + h->req_body_bytes;
    s->t.bytes_from_server = h->resp_bytes;
    txn_end(s);
    bool origin_reusable = h->origin_keep_alive && !h->response_until_close;
    if (!origin_reusable) {
        h->origin_ready = false;
        leg_close_graceful(&s->origin);
    }
    if (!h->client_keep_alive || h->client_eof) {
        session_end(s);
        return;
    }
    next_request(s);
}

/* ---- the OCSP responder for minted leaves (local_pages.c), never behind authentication ---- */

/* A GET is answered at once; a POST once its body is read (finish_ocsp_post). */
static void serve_ocsp(session *s)
{
    http_state *h = state(s);
    if (strcmp(h->method, "POST") == 0) {
        if (h->req_content_length > CERTS_OCSP_MAX_REQUEST) {
            http_answer(s, 413, "Payload Too Large", "an OCSP request is at most %d bytes\n",
                        CERTS_OCSP_MAX_REQUEST);
            return;
        }
        h->kind = REQ_LOCAL;
        h->post.active = true;
        http_resume_client(s);
        return;
    }
    local_page page;
    if (strcmp(h->method, "GET") != 0 || !local_ocsp_answer(s->w->shared, h->url, NULL, 0, &page)) {
        http_answer(s, 400, "Bad Request", "OCSP takes GET /ocsp/<base64> or POST /ocsp\n");
        return;
    }
    prepare_local(s, 200, "OK", page.type, page.body, page.len, false);
    free(page.owned);
    http_resume_client(s);
}

static void finish_ocsp_post(session *s)
{
    http_state *h = state(s);
    local_page page;
    if (h->post.too_big) {
        static const char too_big[] = "an OCSP request is at most 8192 bytes\n";
        prepare_local(s, 413, "Payload Too Large", "text/plain; charset=utf-8", too_big,
                      sizeof too_big - 1, true);
        txn_fail(s, "OCSP request larger than %d bytes", CERTS_OCSP_MAX_REQUEST);
    } else if (local_ocsp_answer(s->w->shared, h->url,
                                 h->post.buf ? h->post.buf : (unsigned char *)"", h->post.len,
                                 &page)) {
        prepare_local(s, 200, "OK", page.type, page.body, page.len, false);
        free(page.owned);
    } else {
        static const char none[] = "no OCSP responder: no CA is configured\n";
        prepare_local(s, 500, "Internal Server Error", "text/plain; charset=utf-8", none,
                      sizeof none - 1, true);
    }
    local_body_reset(&h->post);
}

/* The request parser stopped at a message's end. */
static void after_message(session *s)
{
    http_state *h = state(s);
    if (h->kind == REQ_LOCAL) {
        if (h->post.active)
            finish_ocsp_post(s);
        send_local(s);
        return;
    }
    if (h->kind == REQ_FORWARD && http_exchange_complete(h))
        http_exchange_done(s);
}

/* ---- dispatch ---- */

static void decide(session *s);

/* ---- proxy authentication (SPEC 4.1) ---- */

static bool offers(const shared_state *sh, config_auth_mech m)
{
    for (int i = 0; i < sh->cfg.auth_count; i++)
        if (sh->cfg.auth[i] == m)
            return true;
    return false;
}

/* 407 with one challenge per configured mechanism, in the configured order. The connection
 * stays open (once the request's body is read): Negotiate authenticates a connection. */
static void challenge(session *s, const char *negotiate_token, const char *why)
{
    http_state *h = state(s);
    shared_state *sh = s->w->shared;
    char *extra = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&extra, &len);
    if (!f) {
        session_abort(s, "out of memory");
        return;
    }
    for (int i = 0; i < sh->cfg.auth_count; i++) {
        if (sh->cfg.auth[i] == AUTH_MECH_NEGOTIATE)
            fprintf(f, "Proxy-Authenticate: Negotiate%s%s\r\n", negotiate_token ? " " : "",
                    negotiate_token ? negotiate_token : "");
        else
            fprintf(f, "Proxy-Authenticate: Basic realm=\"%s\"\r\n", sh->cfg.realm);
    }
    fclose(f);
    if (!s->t.open)
        txn_begin(s, true, h->method, h->url);
    s->t.action = "denied";
    if (why)
        txn_note(s, "%s", why);
    static const char body[] = "proxy authentication required\n";
    prepare_local(s, 407, "Proxy Authentication Required", "text/plain; charset=utf-8", body,
                  sizeof body - 1, false);
    h->local_extra = extra;
    /* The answer goes out once the request has been read, so the connection can go on. */
    http_resume_client(s);
}

static void authenticated(session *s, const char *user, const char *mech)
{
    snprintf(s->user, sizeof s->user, "%s", user);
    s->auth_mech = mech;
    metrics_auth(mech, "ok");
    decide(s);
}

static void on_basic_checked(void *data, bool ok, const char *user, int status)
{
    session *s = data;
    if (!s->ending && s->stage == stage_table[STAGE_HEAD] && state(s)->auth_pending) {
        state(s)->auth_pending = false;
        if (status == 0 && ok) {
            authenticated(s, user, "basic");
        } else if (status < 0) {
            http_answer(s, 503, "Service Unavailable", "the credential check did not run (%s)\n",
                        uv_strerror(status));
        } else {
            metrics_auth("basic", "failed");
            challenge(s, NULL, "wrong user name or password");
        }
    }
    session_unref(s);
}

static void on_negotiated(negotiate_ctx *c, const negotiate_result *r, int status, void *data)
{
    (void)c;
    session *s = data;
    if (!s->ending && s->stage == stage_table[STAGE_HEAD] && state(s)->auth_pending) {
        state(s)->auth_pending = false;
        if (status < 0) {
            http_answer(s, 503, "Service Unavailable", "the credential check did not run (%s)\n",
                        uv_strerror(status));
        } else if (r->status == NEGOTIATE_COMPLETE) {
            /* The identity belongs to the connection: later requests are not challenged. */
            s->authenticated = true;
            if (r->token_b64 && asprintf(&s->answer_headers, "Proxy-Authenticate: Negotiate %s\r\n",
                                         r->token_b64) < 0)
                s->answer_headers = NULL;
            authenticated(s, r->user, "negotiate");
        } else if (r->status == NEGOTIATE_CONTINUE) {
            metrics_auth("negotiate", "continue");
            challenge(s, r->token_b64, NULL);
        } else {
            metrics_auth("negotiate", "failed");
            diag(LOG_WARN, "client %s: Negotiate failed: %s", s->client_text, r->reason);
            challenge(s, NULL, r->reason);
        }
    }
    session_unref(s);
}

static void free_negotiate_ctx(void *ctx)
{
    negotiate_ctx_free(ctx);
}

/* Checks the credentials the request carries; decide() runs once they are good. */
static void check_credentials(session *s)
{
    shared_state *sh = s->w->shared;
    http_state *h = state(s);
    size_t len;
    const char *v = head_get(&h->head, "Proxy-Authorization", &len);
    bool negotiate = v && len > 10 && strncasecmp(v, "Negotiate ", 10) == 0;
    bool basic = v && len > 6 && strncasecmp(v, "Basic ", 6) == 0;
    if (negotiate && offers(sh, AUTH_MECH_NEGOTIATE) && sh->negotiate) {
        if (!s->auth_ctx) {
            s->auth_ctx = negotiate_ctx_new(sh->negotiate);
            s->auth_ctx_free = free_negotiate_ctx;
            if (!s->auth_ctx) {
                session_abort(s, "out of memory");
                return;
            }
        }
        session_ref(s);
        h->auth_pending = true;
        int rc =
            negotiate_submit(s->w->cred, s->auth_ctx, v, len, &s->auth_jobs, 1, on_negotiated, s);
        if (rc != 0) {
            h->auth_pending = false;
            session_unref(s);
            http_answer(s, 503, "Service Unavailable", "too many credential checks waiting (%s)\n",
                        uv_strerror(rc));
        }
        return;
    }
    if (!basic || !offers(sh, AUTH_MECH_BASIC)) {
        challenge(s, NULL, v ? "credentials of a mechanism that is not offered" : NULL);
        return;
    }
    switch (auth_check_fast(sh->auth, v, len, s->user, sizeof s->user)) {
    case AUTH_GRANTED:
        s->auth_mech = "basic";
        metrics_auth("basic", "cached");
        decide(s);
        return;
    case AUTH_REFUSED:
        s->user[0] = '\0';
        metrics_auth("basic", "failed");
        challenge(s, NULL, "wrong user name or password");
        return;
    case AUTH_UNKNOWN:
        break;
    }
    /* One check at a time per connection, in a bounded pool of its own: a flood of wrong
     * passwords neither queues unbounded work nor delays name resolution. */
    session_ref(s);
    h->auth_pending = true;
    int rc = auth_basic_submit(s->w->cred, sh->auth, v, len, &s->auth_jobs, 1, on_basic_checked, s);
    if (rc != 0) {
        h->auth_pending = false;
        session_unref(s);
        http_answer(s, 503, "Service Unavailable", "too many credential checks waiting (%s)\n",
                    uv_strerror(rc));
    }
}

/* SPEC 4.1: checkpoint 1 first without the identity, then authenticate(no), a DENY no
 * identity could change, or credentials. */
static void authorize(session *s)
{
    shared_state *sh = s->w->shared;
    http_state *h = state(s);
    if (sh->cfg.auth_count == 0 || h->inner || s->authenticated) {
        decide(s);
        return;
    }
    bool is_connect = strcmp(h->method, "CONNECT") == 0;
    char saved_user[sizeof s->user];
    snprintf(saved_user, sizeof saved_user, "%s", s->user);
    s->user[0] = '\0';
    policy_decision d;
    session_policy_peek(s, POLICY_CP_REQUEST, is_connect ? s->target_host : h->host, h->method, &d);
    snprintf(s->user, sizeof s->user, "%s", saved_user);
    if (d.authenticate == TRI_NO) {
        s->auth_exempt = true;
        s->user[0] = '\0';
        decide(s);
        return;
    }
    if (!session_policy_allows(s, &d) && !d.needs_identity) {
        s->user[0] = '\0';
        decide(s); /* a 403 no identity could change: no challenge */
        return;
    }
    check_credentials(s);
}

static void decide(session *s)
{
    http_state *h = state(s);
    bool is_connect = strcmp(h->method, "CONNECT") == 0;
    if (!session_policy(s, POLICY_CP_REQUEST, is_connect ? s->target_host : h->host, h->method,
                        NULL)) {
        policy_where r = s->t.rule;
        if (r.file)
            http_answer(s, 403, "Forbidden", "denied by policy rule %s:%d\n", r.file, r.line);
        else
            http_answer(s, 403, "Forbidden",
                        "denied by the default policy ([policy] default = deny)\n");
        return;
    }
    if (is_connect) {
        /* Bytes the client sent after the CONNECT head go to the tunnel. */
        session_enter(s, STAGE_CONNECT, h->held, h->held_len);
        return;
    }
    http_forward(s);
}

/* Whether a Host value names a port (after an IPv6 literal's bracket, if any). */
static bool authority_has_port(const char *v, size_t n)
{
    const char *after = n && v[0] == '[' ? memchr(v, ']', n) : v;
    return after && memchr(after, ':', n - (size_t)(after - v)) != NULL;
}

/* host:port with brackets around IPv6, as logs and policy see a target. */
static void format_target(char *out, size_t len, const names_host *h, uint16_t port)
{
    snprintf(out, len, h->kind == NAMES_IPV6 ? "[%s]:%u" : "%s:%u", h->text, port);
}

/* An absolute http:// URL: the canonical URL replaces h->url; 0, or -1 with a 400 sent. */
static int canonical_absolute(session *s)
{
    http_state *h = state(s);
    if (strncasecmp(h->url, "http://", 7) != 0) {
        http_answer(s, 400, "Bad Request", "unsupported request target '%s'\n", h->url);
        return -1;
    }
    const char *auth = h->url + 7;
    size_t alen = strcspn(auth, "/?#");
    names_authority a;
    const char *why = names_url_authority(auth, alen, 80, &a);
    if (why) {
        http_answer(s, 400, "Bad Request", "the URL's host does not parse: %s\n", why);
        return -1;
    }
    const char *rest = auth + alen;
    if (*rest == '#')
        rest = "";
    char *url = NULL;
    bool v6 = a.host.kind == NAMES_IPV6;
    int n = a.port == 80 ? asprintf(&url, v6 ? "http://[%s]%s%s" : "http://%s%s%s", a.host.text,
                                    *rest == '/' ? "" : "/", rest)
                         : asprintf(&url, v6 ? "http://[%s]:%u%s%s" : "http://%s:%u%s%s",
                                    a.host.text, a.port, *rest == '/' ? "" : "/", rest);
    if (n < 0) {
        session_abort(s, "out of memory");
        return -1;
    }
    free(h->url);
    h->url = url;
    h->request_path = strchr(url + 7, '/');
    snprintf(h->host, sizeof h->host, "%s", a.host.text);
    h->port = a.port;
    s->target_is_name = a.host.kind == NAMES_NAME;
    return 0;
}

/* Inside a tunnel the origin is fixed; url.host is the Host header's name. */
static void dispatch_inner(session *s)
{
    http_state *h = state(s);
    txn_begin(s, true, h->method, NULL);
    if (h->url[0] != '/' && !(h->url[0] == '*' && h->url[1] == '\0')) {
        http_answer(s, 400, "Bad Request", "expected an origin-form request inside the tunnel\n");
        return;
    }
    unsigned hosts = head_count(&h->head, "Host");
    if (hosts > 1) {
        http_answer(s, 400, "Bad Request", "more than one Host header\n");
        return;
    }
    if (hosts == 1) {
        size_t hl = 0;
        const char *host = head_get(&h->head, "Host", &hl);
        names_authority a;
        const char *why = names_host_header(host, hl, 1, &a);
        if (why) {
            http_answer(s, 400, "Bad Request", "the Host header does not parse: %s\n", why);
            return;
        }
        snprintf(h->host, sizeof h->host, "%s", a.host.text);
        h->port = authority_has_port(host, hl) ? a.port : 0;
    } else {
        snprintf(h->host, sizeof h->host, "%s", s->sni[0] ? s->sni : s->target_host);
        h->port = 0;
    }
    const char *scheme = s->intercepted ? "https" : "http";
    uint16_t port = s->target_port;
    bool default_port = port == (s->intercepted ? 443 : 80);
    bool v6 = strchr(h->host, ':') != NULL;
    char *full = NULL;
    int n = default_port
                ? asprintf(&full, v6 ? "%s://[%s]%s" : "%s://%s%s", scheme, h->host, h->url)
                : asprintf(&full, v6 ? "%s://[%s]:%u%s" : "%s://%s:%u%s", scheme, h->host, port,
                           h->url);
    if (n < 0) {
        session_abort(s, "out of memory");
        return;
    }
    free(s->t.url);
    s->t.url = full;
    h->request_path = h->url;
    transparent_check_host(s, h->host, decide); /* explicit sessions: decide at once */
}

static void dispatch(session *s)
{
    http_state *h = state(s);
    const http_head *hd = &h->head;
    /* Authentication, policy and the origin are still to come: a credential check stuck in its
     * pool must not hold the connection forever. */
    session_deadline(s, (uint64_t)s->w->shared->cfg.header_timeout_s * 1000);
    s->idle = false;
    h->kind = REQ_WAIT;
    snprintf(h->method, sizeof h->method, "%s",
             llhttp_method_name((llhttp_method_t)llhttp_get_method(&h->req)));
    free(h->url);
    h->url = strndup(hd->buf ? hd->buf + hd->url_off : "", hd->url_len);
    if (!h->url) {
        session_abort(s, "out of memory");
        return;
    }
    h->head_request = strcmp(h->method, "HEAD") == 0;
    h->client_keep_alive = llhttp_should_keep_alive(&h->req);
    if (h->inner) {
        dispatch_inner(s);
        return;
    }
    if (strcmp(h->method, "CONNECT") == 0) {
        names_authority a;
        const char *why = names_connect_target(h->url, strlen(h->url), &a);
        if (why) {
            txn_begin(s, false, "CONNECT", h->url);
            http_answer(s, 400, "Bad Request", "CONNECT needs host:port (%s), got '%s'\n", why,
                        h->url);
            return;
        }
        char target[300];
        format_target(target, sizeof target, &a.host, a.port);
        txn_begin(s, false, "CONNECT", target);
        snprintf(s->target_host, sizeof s->target_host, "%s", a.host.text);
        s->target_port = a.port;
        s->target_is_name = a.host.kind == NAMES_NAME;
    } else if (h->url[0] == '/') {
        txn_begin(s, true, h->method, h->url);
        char path[256];
        snprintf(path, sizeof path, "%.*s", (int)strcspn(h->url, "?"), h->url);
        if (local_ocsp_path(path)) {
            serve_ocsp(s);
            return;
        }
        local_page page;
        bool get = strcmp(h->method, "GET") == 0 || h->head_request;
        if (!get || !local_page_find(s->w->shared, path, false, &page)) {
            http_answer(s, 400, "Bad Request",
                        "this is a proxy: send absolute-form requests (GET http://host/path); "
                        "it serves /proxy.pac, /wpad.dat, /handoff-ca.crl and /ocsp itself\n");
            return;
        }
        prepare_local(s, 200, "OK", page.type, page.body, page.len, false);
        free(page.owned);
        /* The answer goes out at the request's end: its body, if any, is read and dropped. */
        http_resume_client(s);
        return;
    } else {
        if (canonical_absolute(s) != 0)
            return; /* answered 400 */
        txn_begin(s, true, h->method, h->url);
        snprintf(s->target_host, sizeof s->target_host, "%s", h->host);
        s->target_port = h->port;
    }
    authorize(s);
}

/* ---- the stage ---- */

static void begin(session *s, bool inner, const char *replay, size_t len)
{
    http_state *h = state(s);
    h->inner = inner;
    llhttp_init(&h->req, HTTP_REQUEST, &request_settings);
    h->req.data = s;
    session_deadline(s, (uint64_t)s->w->shared->cfg.header_timeout_s * 1000);
    if (!inner && atomic_load(&s->w->shared->connections) > s->w->shared->cfg.max_connections) {
        http_answer(s, 503, "Service Unavailable", "the proxy has reached max_connections (%d)\n",
                    s->w->shared->cfg.max_connections);
        return;
    }
    leg_want_read(&s->client, true);
    if (len)
        feed(s, replay, len);
    if (!s->ending && s->st == h && !h->paused && s->client.eof)
        client_eof(s, UV_EOF);
}

static void head_enter(session *s, const char *replay, size_t len)
{
    begin(s, false, replay, len);
}

static void http_enter(session *s, const char *replay, size_t len)
{
    /* Each inner request gets its own line; the tunnel that carried them gets none. */
    s->t.open = false;
    s->tunneled = false;
    http_state *h = state(s);
    /* The tunnel's origin connection serves the first request. */
    if (s->origin.open && !s->origin.finishing && !s->upstream_error) {
        h->origin_ready = true;
        snprintf(h->origin_key, sizeof h->origin_key, "%s:%u", s->target_host, s->target_port);
    }
    begin(s, true, replay, len);
}

static void on_data(session *s, leg *l, const char *buf, ssize_t n)
{
    http_state *h = state(s);
    if (!l->is_client) {
        http_origin_data(s, buf, n);
        return;
    }
    if (n < 0) {
        if (h->paused && !h->request_done) {
            h->client_eof = true;
            if (h->kind == REQ_WAIT || h->kind == REQ_LOCAL) {
                txn_fail(s, "the client closed the connection before its request ended");
                session_end(s);
            }
            return;
        }
        client_eof(s, n);
        return;
    }
    if (h->paused) {
        /* A request is in flight: hold what the client sends meanwhile, up to a bound. */
        if (hold(s, buf, (size_t)n) != 0)
            session_abort(s, "out of memory");
        return;
    }
    if (h->kind == REQ_NONE && s->idle) {
        s->idle = false;
        session_deadline(s, (uint64_t)s->w->shared->cfg.header_timeout_s * 1000);
    }
    feed(s, buf, (size_t)n);
}

static void on_deadline(session *s)
{
    http_state *h = state(s);
    if (h->kind == REQ_FORWARD) {
        http_forward_deadline(s);
        return;
    }
    if (h->kind == REQ_NONE && s->idle) {
        session_end(s); /* an idle keep-alive connection: nothing to log */
        return;
    }
    if (h->auth_pending) {
        http_answer(s, 503, "Service Unavailable",
                    "the credential check did not finish within %d s\n",
                    s->w->shared->cfg.header_timeout_s);
        return;
    }
    http_answer(s, 408, "Request Timeout", "request not complete within %d s\n",
                s->w->shared->cfg.header_timeout_s);
}

static void leave(session *s, void *old)
{
    (void)s;
    http_state *h = old;
    reset_request(h);
    free(h->held);
    h->held = NULL;
}

const stage head_stage = {
    .name = "request",
    .state_size = sizeof(http_state),
    .enter = head_enter,
    .on_data = on_data,
    .on_deadline = on_deadline,
    .on_error = http_leg_error,
    .leave = leave,
};

const stage http_stage = {
    .name = "http",
    .state_size = sizeof(http_state),
    .enter = http_enter,
    .on_data = on_data,
    .on_deadline = on_deadline,
    .on_error = http_leg_error,
    .leave = leave,
};
