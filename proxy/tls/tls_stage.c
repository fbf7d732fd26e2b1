/* The tls stage of interception with proxy handoff: the origin handshake first (to learn its
 * certificate and ALPN), then a minted leaf for the client, each under
 * tls_handshake_timeout_s; then detection runs again on the decrypted bytes. */
#include <openssl/err.h>
#include <stdlib.h>
#include <string.h>

#include "certs.h"
#include "diag.h"
#include "metrics.h"
#include "session.h"
#include "tls_contexts.h"
#include "tls_leg.h"
#include "tls_origin.h"
#include "worker.h"

typedef struct {
    char *hello; /* the client's first bytes (ClientHello and whatever followed) */
    size_t hello_len;
    bool client_started;
} tls_state;

static const char *tls_name(session *s)
{
    return s->sni[0] ? s->sni : s->target_host;
}

static void arm(session *s)
{
    session_deadline(s, (uint64_t)s->w->shared->cfg.tls_handshake_timeout_s * 1000);
}

/* Alerts that say the client refused our certificate (RFC 8446 6.2). */
static bool certificate_alert(int alert)
{
    switch (alert) {
    case 42: /* bad_certificate */
    case 43: /* unsupported_certificate */
    case 44: /* certificate_revoked */
    case 45: /* certificate_expired */
    case 46: /* certificate_unknown */
    case 48: /* unknown_ca */
    case 49: /* access_denied */
        return true;
    default:
        return false;
    }
}

static void client_handshake_done(leg *l, bool ok)
{
    session *s = l->s;
    tls_leg *t = tls_leg_of(l);
    if (!ok) {
        if (certificate_alert(t->alert_received)) {
            txn_fail(s, "client rejected the certificate for %s: %s (alert %d)", tls_name(s),
                     t->error, t->alert_received);
            diag(LOG_WARN, "client %s rejected the certificate for %s: %s", s->client_text,
                 tls_name(s), t->error);
        } else {
            txn_fail(s, "%s", t->error);
        }
        metrics_handshake_failure(t->error);
        session_end(s);
        return;
    }
    metrics_tls_handshake(true, SSL_session_reused(t->ssl));
    const unsigned char *proto;
    unsigned int plen;
    SSL_get0_alpn_selected(t->ssl, &proto, &plen);
    s->client_h2 = plen == 2 && memcmp(proto, "h2", 2) == 0;
    /* Later origin connections (HTTP/1.1 keep-alive) must not offer h2. */
    s->client_offers_h2 = s->client_h2;
    /* Proxy handoff: what is inside the TLS decides the handler. */
    session_enter(s, STAGE_DETECT, NULL, 0);
}

static X509 *leaf_for(session *s, X509 *upstream)
{
    shared_state *sh = s->w->shared;
    char key[512];
    char fp[100] = "none";
    if (upstream)
        certs_fingerprint(upstream, fp, sizeof fp);
    snprintf(key, sizeof key, "%s|%s", tls_name(s), fp);
    X509 *leaf = certs_cache_get(sh->leaves, key);
    if (leaf)
        return leaf;
    leaf =
        certs_mint_leaf_ex(sh->ca, sh->leaf_key, upstream, tls_name(s), sh->crl_url, sh->ocsp_url);
    if (leaf)
        certs_cache_put(sh->leaves, key, leaf);
    return leaf;
}

/* The origin side is settled (verified, or failed with s->upstream_error): serve the client. */
static void serve_client(session *s)
{
    tls_state *st = s->st;
    shared_state *sh = s->w->shared;
    /* Names are copied only from a certificate that was validated; otherwise the leaf is
     * for the name the client asked for. */
    tls_leg *ot = tls_leg_of(&s->origin);
    X509 *upstream =
        s->upstream_error || !ot || !s->verify_server ? NULL : SSL_get1_peer_certificate(ot->ssl);
    X509 *leaf = leaf_for(s, upstream);
    X509_free(upstream);
    SSL *ssl = leaf ? SSL_new(sh->server_ctx) : NULL;
    if (!ssl || SSL_use_certificate(ssl, leaf) != 1 || SSL_use_PrivateKey(ssl, sh->leaf_key) != 1 ||
        SSL_add1_chain_cert(ssl, certs_ca_cert(sh->ca)) != 1) {
        X509_free(leaf);
        SSL_free(ssl);
        txn_fail(s, "cannot mint a certificate for %s", tls_name(s));
        session_end(s);
        return;
    }
    X509_free(leaf);
    SSL_set_accept_state(ssl);
    tls_contexts_bind(ssl, s);
    if (tls_leg_attach(&s->client, ssl, client_handshake_done) != 0) {
        SSL_free(ssl);
        session_abort(s, "out of memory");
        return;
    }
    st->client_started = true;
    arm(s);
    leg_want_read(&s->client, true);
    /* The ClientHello held by detection (and anything after it) goes to our TLS server. */
    tls_leg_feed(&s->client, st->hello, st->hello_len);
}

static void origin_done(session *s, bool ok)
{
    (void)ok; /* a failure is in s->upstream_error: the client learns it inside TLS */
    serve_client(s);
}

static void tls_enter(session *s, const char *replay, size_t len)
{
    tls_state *st = s->st;
    st->hello = malloc(len ? len : 1);
    if (!st->hello) {
        session_abort(s, "out of memory");
        return;
    }
    memcpy(st->hello, replay, len);
    st->hello_len = len;
    leg_want_read(&s->client, false);
    arm(s);
    tls_origin_open(s, origin_done);
}

static void tls_on_data(session *s, leg *l, const char *buf, ssize_t n)
{
    (void)buf;
    tls_state *st = s->st;
    if (l->is_client && !st->client_started && n > 0) {
        /* More of the client's first flight before its handshake began: keep it in order. */
        char *p = realloc(st->hello, st->hello_len + (size_t)n);
        if (!p) {
            session_abort(s, "out of memory");
            return;
        }
        memcpy(p + st->hello_len, buf, (size_t)n);
        st->hello = p;
        st->hello_len += (size_t)n;
        return;
    }
    if (n < 0) {
        char reason[200];
        snprintf(reason, sizeof reason, "%s closed the connection during the TLS handshake",
                 l->is_client ? "client" : "origin");
        txn_fail(s, "%s", reason);
        session_end(s);
    }
}

static void tls_on_deadline(session *s)
{
    tls_state *st = s->st;
    char reason[200];
    snprintf(reason, sizeof reason, "TLS handshake with the %s timed out after %d s",
             st->client_started ? "client" : "origin", s->w->shared->cfg.tls_handshake_timeout_s);
    session_abort(s, reason);
}

static void tls_leave(session *s, void *old)
{
    (void)s;
    tls_state *st = old;
    free(st->hello);
    st->hello = NULL;
}

const stage tls_stage = {
    .name = "tls",
    .state_size = sizeof(tls_state),
    .enter = tls_enter,
    .on_data = tls_on_data,
    .on_deadline = tls_on_deadline,
    .leave = tls_leave,
};
