/* Origin revocation checks: one small state machine per connection, one certificate at a
 * time (cache, staple, OCSP URLs, CRL URLs), fetches made by revocation_fetch.c. */
#include "revocation_check.h"

#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "diag.h"
#include "metrics.h"
#include "revocation.h"
#include "revocation_fetch.h"
#include "session.h"
#include "worker.h"

#define MAX_PAIRS 8

typedef enum { P_START, P_OCSP, P_CRL, P_END } rev_phase;

typedef struct {
    session *s;
    void (*done)(session *s);
    config_check_revocation mode;
    uint64_t timeout_ms;
    X509 *cert[MAX_PAIRS], *issuer[MAX_PAIRS]; /* leaf first; each with its issuer */
    int n, i;
    unsigned char *staple; /* the origin's stapled response for the leaf, if any */
    size_t staple_len;

    /* the certificate being checked */
    rev_phase phase;
    struct certs_rev_key key;
    bool key_ok;
    char *ocsp_urls[CERTS_REV_MAX_URLS], *crl_urls[CERTS_REV_MAX_URLS];
    int n_ocsp, n_crl, url_i;
    unsigned char *ocsp_req;
    size_t ocsp_req_len;
    bool had_source; /* a staple or a URL to ask */
    bool answered;   /* an OCSP `unknown` so far */
    time_t answer_next_update;
    char last_error[200];
    bool fetch_ocsp; /* what the fetch in flight asks */

    /* the whole chain */
    bool any_good, any_unknown, revoked;
    char why[240];

    uv_timer_t timer;
    bool timer_open;
    bool fetching;
    bool concluded;
} rev_check;

config_check_revocation revocation_mode(const session *s)
{
    switch (s->check_revocation) {
    case REVOCATION_AUTO:
        return CHECK_REV_AUTO;
    case REVOCATION_OCSP:
        return CHECK_REV_OCSP;
    case REVOCATION_CRL:
        return CHECK_REV_CRL;
    case REVOCATION_NO:
        return CHECK_REV_NO;
    case REVOCATION_UNSET:
        break;
    }
    return s->w->shared->cfg.check_revocation;
}

bool revocation_wants_staple(const session *s)
{
    config_check_revocation mode = revocation_mode(s);
    return s->verify_server && (mode == CHECK_REV_AUTO || mode == CHECK_REV_OCSP);
}

static void free_cert_state(rev_check *c)
{
    certs_rev_urls_free(c->ocsp_urls, (size_t)c->n_ocsp);
    certs_rev_urls_free(c->crl_urls, (size_t)c->n_crl);
    c->n_ocsp = c->n_crl = c->url_i = 0;
    OPENSSL_free(c->ocsp_req);
    c->ocsp_req = NULL;
    c->ocsp_req_len = 0;
}

static void maybe_free(rev_check *c)
{
    if (!c->concluded || c->fetching || c->timer_open)
        return;
    free_cert_state(c);
    for (int k = 0; k < c->n; k++) {
        X509_free(c->cert[k]);
        X509_free(c->issuer[k]);
    }
    free(c->staple);
    free(c);
}

static void on_timer_closed(uv_handle_t *h)
{
    rev_check *c = h->data;
    c->timer_open = false;
    maybe_free(c);
}

static void set_upstream_error(session *s, const char *text)
{
    free(s->upstream_error);
    s->upstream_error = strdup(text);
}

/* The chain is settled (or the session ended): record, refuse if need be, hand back. */
static void conclude(rev_check *c)
{
    if (c->concluded)
        return;
    c->concluded = true;
    session *s = c->s;
    if (c->timer_open && !uv_is_closing((uv_handle_t *)&c->timer)) {
        uv_timer_stop(&c->timer);
        uv_close((uv_handle_t *)&c->timer, on_timer_closed);
    }
    if (!s->ending) {
        const char *name = s->sni[0] ? s->sni : s->target_host;
        if (c->revoked) {
            s->revocation = "revoked";
            set_upstream_error(s, c->why);
        } else if (c->any_unknown) {
            s->revocation = "unknown";
            if (s->w->shared->cfg.revocation_hard) {
                char text[400];
                snprintf(text, sizeof text,
                         "certificate revocation status unknown (%s) and revocation_failure = "
                         "hard",
                         c->why);
                set_upstream_error(s, text);
            } else {
                diag(LOG_WARN, "revocation: unknown for %s: %s (revocation_failure = soft)", name,
                     c->why);
            }
        } else {
            s->revocation = c->any_good ? "good" : "not-checked";
        }
        c->done(s);
    }
    session_unref(s);
    maybe_free(c);
}

/* The current certificate is settled with status (from source), or with no answer. */
static void cert_done(rev_check *c, bool have, enum certs_rev_status status, const char *reason,
                      time_t next_update, bool from_cache)
{
    if (have && c->key_ok && !from_cache)
        certs_rev_cache_put(c->s->w->shared->rev_cache, &c->key, status, next_update);
    const char *which = c->i == 0 ? "" : "intermediate CA ";
    if (have && status == CERTS_REV_REVOKED) {
        c->revoked = true;
        snprintf(c->why, sizeof c->why, "%s%s", which, reason);
        free_cert_state(c);
        conclude(c);
        return;
    }
    if (have && status == CERTS_REV_GOOD) {
        c->any_good = true;
    } else if (have || c->had_source) {
        if (!c->any_unknown)
            snprintf(c->why, sizeof c->why, "%s%s", which,
                     have ? "the responder does not know the certificate" : c->last_error);
        c->any_unknown = true;
    }
    free_cert_state(c);
    c->i++;
    c->phase = P_START;
}

static void note_error(rev_check *c, const char *what, const char *url, const char *error)
{
    snprintf(c->last_error, sizeof c->last_error, "%s %s: %s", what, url, error);
}

static void begin_cert(rev_check *c)
{
    X509 *cert = c->cert[c->i], *issuer = c->issuer[c->i];
    shared_state *sh = c->s->w->shared;
    time_t now = time(NULL);
    c->had_source = c->answered = false;
    c->last_error[0] = '\0';
    c->key_ok = certs_rev_key_of(cert, issuer, &c->key) == 0;
    enum certs_rev_status status;
    time_t next_update;
    if (c->key_ok && certs_rev_cache_get(sh->rev_cache, &c->key, now, &status, &next_update)) {
        metrics_revocation_check("cache", certs_rev_status_name(status));
        cert_done(c, true, status,
                  status == CERTS_REV_REVOKED ? "certificate revoked (cached status)" : "",
                  next_update, true);
        return;
    }
    if (c->i == 0 && c->staple && c->mode != CHECK_REV_CRL) {
        struct certs_rev_result r;
        c->had_source = true;
        certs_rev_ocsp_verify(c->staple, c->staple_len, cert, issuer, NULL, now, &r);
        metrics_revocation_check("staple", certs_rev_status_name(r.status));
        if (r.status == CERTS_REV_GOOD || r.status == CERTS_REV_REVOKED) {
            cert_done(c, true, r.status, r.reason, r.next_update, false);
            return;
        }
        if (r.status == CERTS_REV_UNKNOWN) {
            c->answered = true;
            c->answer_next_update = r.next_update;
        } else {
            snprintf(c->last_error, sizeof c->last_error, "stapled OCSP response: %s", r.reason);
        }
    }
    if (c->mode != CHECK_REV_CRL)
        c->n_ocsp = certs_rev_ocsp_urls(cert, c->ocsp_urls, CERTS_REV_MAX_URLS);
    if (c->mode != CHECK_REV_OCSP)
        c->n_crl = certs_rev_crl_urls(cert, c->crl_urls, CERTS_REV_MAX_URLS);
    if (c->n_ocsp < 0 || c->n_crl < 0) {
        c->n_ocsp = c->n_ocsp < 0 ? 0 : c->n_ocsp;
        c->n_crl = c->n_crl < 0 ? 0 : c->n_crl;
    }
    c->had_source |= c->n_ocsp > 0 || c->n_crl > 0;
    c->url_i = 0;
    c->phase = c->mode == CHECK_REV_CRL ? P_CRL : P_OCSP;
}

static void step(rev_check *c);

static void on_fetched(void *arg, int status, const unsigned char *body, size_t len,
                       const char *error)
{
    rev_check *c = arg;
    c->fetching = false;
    if (c->concluded) {
        maybe_free(c);
        return;
    }
    const char *source = c->fetch_ocsp ? "ocsp" : "crl";
    const char *what = c->fetch_ocsp ? "OCSP responder" : "CRL";
    const char *url = c->fetch_ocsp ? c->ocsp_urls[c->url_i - 1] : c->crl_urls[c->url_i - 1];
    if (error || status != 200) {
        char text[80];
        if (!error)
            snprintf(text, sizeof text, "HTTP status %d", status);
        note_error(c, what, url, error ? error : text);
        metrics_revocation_check(source, "error");
        step(c);
        return;
    }
    X509 *cert = c->cert[c->i], *issuer = c->issuer[c->i];
    struct certs_rev_result r;
    time_t now = time(NULL);
    if (c->fetch_ocsp)
        certs_rev_ocsp_verify(body, len, cert, issuer, NULL, now, &r);
    else
        certs_rev_crl_check(body, len, cert, issuer, now, &r);
    metrics_revocation_check(source, certs_rev_status_name(r.status));
    if (r.status == CERTS_REV_GOOD || r.status == CERTS_REV_REVOKED) {
        cert_done(c, true, r.status, r.reason, r.next_update, false);
    } else if (r.status == CERTS_REV_UNKNOWN) {
        c->answered = true;
        c->answer_next_update = r.next_update;
    } else {
        note_error(c, what, url, r.reason);
    }
    step(c);
}

/* Starts one fetch; false when the URL cannot be fetched (the next one is tried). */
static bool start_fetch(rev_check *c, const char *url, bool ocsp)
{
    if (ocsp && !c->ocsp_req &&
        certs_rev_ocsp_request(c->cert[c->i], c->issuer[c->i], NULL, &c->ocsp_req,
                               &c->ocsp_req_len) != 0) {
        note_error(c, "OCSP responder", url, "cannot build the request");
        return false;
    }
    c->fetch_ocsp = ocsp;
    c->fetching = true;
    if (rev_fetch(&c->s->w->loop, url, ocsp ? c->ocsp_req : NULL, ocsp ? c->ocsp_req_len : 0,
                  ocsp ? REV_FETCH_MAX_OCSP : REV_FETCH_MAX_CRL, c->timeout_ms, on_fetched,
                  c) != 0) {
        c->fetching = false;
        note_error(c, ocsp ? "OCSP responder" : "CRL", url, "not an http:// URL");
        return false;
    }
    return true;
}

static void step(rev_check *c)
{
    while (!c->concluded) {
        if (c->s->ending || c->i >= c->n) {
            conclude(c);
            return;
        }
        switch (c->phase) {
        case P_START:
            begin_cert(c);
            break;
        case P_OCSP:
            if (c->url_i < c->n_ocsp) {
                if (start_fetch(c, c->ocsp_urls[c->url_i++], true))
                    return;
                break;
            }
            c->phase = c->mode == CHECK_REV_AUTO ? P_CRL : P_END;
            c->url_i = 0;
            break;
        case P_CRL:
            if (c->url_i < c->n_crl) {
                if (start_fetch(c, c->crl_urls[c->url_i++], false))
                    return;
                break;
            }
            c->phase = P_END;
            break;
        case P_END:
            cert_done(c, c->answered, CERTS_REV_UNKNOWN, "", c->answer_next_update, false);
            break;
        }
    }
}

static void on_timeout(uv_timer_t *t)
{
    rev_check *c = t->data;
    if (c->concluded)
        return;
    if (!c->any_unknown)
        snprintf(c->why, sizeof c->why, "no revocation answer within %llu ms",
                 (unsigned long long)c->timeout_ms);
    c->any_unknown = true;
    conclude(c);
}

static void add_pair(rev_check *c, X509 *cert, X509 *issuer)
{
    X509_up_ref(cert);
    X509_up_ref(issuer);
    c->cert[c->n] = cert;
    c->issuer[c->n] = issuer;
    c->n++;
}

/* A resumed session keeps the peer's chain but not the verified one: each certificate's issuer
 * is then matched (names and key identifiers, no signature: verification passed already) in
 * that chain, else in the trust store. */
static void collect_resumed(rev_check *c, SSL *ssl)
{
    STACK_OF(X509) *peer = SSL_get_peer_cert_chain(ssl);
    X509 *cert = SSL_get0_peer_certificate(ssl);
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    if (!cert || !ctx ||
        X509_STORE_CTX_init(ctx, SSL_CTX_get_cert_store(SSL_get_SSL_CTX(ssl)), NULL, NULL) != 1) {
        X509_STORE_CTX_free(ctx);
        return;
    }
    while (cert && c->n < MAX_PAIRS && !(X509_get_extension_flags(cert) & EXFLAG_SS)) {
        X509 *issuer = NULL;
        for (int k = 0; peer && k < sk_X509_num(peer) && !issuer; k++) {
            X509 *candidate = sk_X509_value(peer, k);
            if (candidate != cert && X509_check_issued(candidate, cert) == X509_V_OK) {
                issuer = candidate;
                X509_up_ref(issuer);
            }
        }
        if (!issuer && X509_STORE_CTX_get1_issuer(&issuer, ctx, cert) != 1)
            issuer = NULL;
        if (!issuer)
            break;
        add_pair(c, cert, issuer);
        X509_free(issuer); /* the pair holds its own reference */
        cert = issuer;     /* still referenced by the pair */
    }
    X509_STORE_CTX_free(ctx);
}

/* The leaf and each intermediate with its issuer, from the verified chain. */
static void collect(rev_check *c, SSL *ssl)
{
    STACK_OF(X509) *chain = SSL_get0_verified_chain(ssl);
    if (!chain || sk_X509_num(chain) < 2) {
        collect_resumed(c, ssl);
        return;
    }
    for (int k = 0; k + 1 < sk_X509_num(chain) && c->n < MAX_PAIRS; k++) {
        X509 *cert = sk_X509_value(chain, k);
        if (X509_get_extension_flags(cert) & EXFLAG_SS)
            break;
        add_pair(c, cert, sk_X509_value(chain, k + 1));
    }
}

void revocation_check(session *s, SSL *ssl, void (*done)(session *s))
{
    config_check_revocation mode = revocation_mode(s);
    if (mode == CHECK_REV_NO || !s->verify_server || !s->w->shared->rev_cache) {
        s->revocation = "not-checked";
        done(s);
        return;
    }
    rev_check *c = calloc(1, sizeof *c);
    if (!c) {
        s->revocation = "not-checked";
        done(s);
        return;
    }
    c->s = s;
    c->done = done;
    c->mode = mode;
    c->timeout_ms = (uint64_t)s->w->shared->cfg.connect_timeout_s * 1000;
    collect(c, ssl);
    const unsigned char *staple = NULL;
    long staple_len = SSL_get_tlsext_status_ocsp_resp(ssl, &staple);
    if (staple && staple_len > 0 && (c->staple = malloc((size_t)staple_len))) {
        memcpy(c->staple, staple, (size_t)staple_len);
        c->staple_len = (size_t)staple_len;
    }
    session_ref(s);
    uv_timer_init(&s->w->loop, &c->timer);
    c->timer.data = c;
    c->timer_open = true;
    uv_timer_start(&c->timer, on_timeout, c->timeout_ms, 0);
    step(c);
}
