/* The origin side of interception: SNI, verification, ALPN and resumption. */
#include "tls_origin.h"

#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>

#include "diag.h"
#include "metrics.h"
#include "revocation_check.h"
#include "session.h"
#include "tls_contexts.h"
#include "tls_leg.h"
#include "worker.h"

static const unsigned char alpn_http11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
static const unsigned char alpn_h2_http11[] = {2,   'h', '2', 8,   'h', 't',
                                               't', 'p', '/', '1', '.', '1'};

static const char *tls_name(session *s)
{
    return s->sni[0] ? s->sni : s->target_host;
}

static void set_upstream_error(session *s, const char *fmt, const char *detail)
{
    free(s->upstream_error);
    if (asprintf(&s->upstream_error, fmt, detail) < 0)
        s->upstream_error = NULL;
}

static void verify(session *s, SSL *ssl)
{
    const unsigned char *proto;
    unsigned int plen;
    SSL_get0_alpn_selected(ssl, &proto, &plen);
    s->origin_alpn_other = plen > 0 && !(plen == 8 && memcmp(proto, "http/1.1", 8) == 0);
    if (!s->verify_server)
        return;
    if (!SSL_get0_peer_certificate(ssl)) {
        set_upstream_error(s, "origin sent no certificate%s", "");
        return;
    }
    long rc = SSL_get_verify_result(ssl);
    if (rc != X509_V_OK)
        set_upstream_error(s, "origin certificate: %s", X509_verify_cert_error_string(rc));
}

/* The origin side is settled: verification and, where it applies, revocation. */
static void finish(session *s, bool ok)
{
    tls_leg *t = tls_leg_of(&s->origin);
    void (*done)(session *, bool) = t ? t->user_done : NULL;
    if (t)
        t->user_done = NULL;
    if (s->upstream_error)
        diag(LOG_WARN, "origin %s:%u for %s refused: %s", s->target_host, s->target_port,
             tls_name(s), s->upstream_error);
    if (done)
        done(s, ok && !s->upstream_error);
}

static void revocation_settled(session *s)
{
    finish(s, true);
}

static void on_handshake(leg *l, bool ok)
{
    session *s = l->s;
    tls_leg *t = tls_leg_of(l);
    if (!ok) {
        set_upstream_error(s, "%s", t->error);
        metrics_handshake_failure("origin handshake");
    } else {
        metrics_tls_handshake(false, SSL_session_reused(t->ssl));
        verify(s, t->ssl);
    }
    /* The origin stays quiet until a handler wants it. */
    leg_want_read(&s->origin, false);
    if (!ok || s->upstream_error || !s->verify_server) {
        finish(s, ok);
        return;
    }
    /* Bounded by connect_timeout_s; the stage's deadline must not cut it short. */
    session_deadline(s, (uint64_t)s->w->shared->cfg.connect_timeout_s * 1000 +
                            (uint64_t)s->w->shared->cfg.tls_handshake_timeout_s * 1000);
    revocation_check(s, t->ssl, revocation_settled);
}

bool tls_origin_alpn_other(session *s)
{
    return s->origin_alpn_other;
}

bool tls_origin_h2(session *s)
{
    tls_leg *t = tls_leg_of(&s->origin);
    if (!t || !t->handshake_done)
        return false;
    const unsigned char *proto;
    unsigned int plen;
    SSL_get0_alpn_selected(t->ssl, &proto, &plen);
    return plen == 2 && memcmp(proto, "h2", 2) == 0;
}

void tls_origin_open(session *s, void (*done)(session *s, bool ok))
{
    shared_state *sh = s->w->shared;
    SSL *ssl = SSL_new(sh->client_ctx);
    if (!ssl) {
        set_upstream_error(s, "%s", "cannot create a TLS connection to the origin");
        done(s, false);
        return;
    }
    SSL_set_connect_state(ssl);
    if (s->sni[0])
        SSL_set_tlsext_host_name(ssl, s->sni);
    const char *name = tls_name(s);
    if (s->verify_server) {
        X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
        if (X509_VERIFY_PARAM_set1_ip_asc(param, name) != 1) {
            X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
            X509_VERIFY_PARAM_set1_host(param, name, 0);
        }
    }
    /* The origin is offered what the client offered (h2 only while the client may get it);
     * an h2 client can be served by an HTTP/1.1 origin too, so http/1.1 goes with h2. */
    if (s->client_offers_h2)
        SSL_set_alpn_protos(ssl, alpn_h2_http11, sizeof alpn_h2_http11);
    else if (s->client_offers_http11)
        SSL_set_alpn_protos(ssl, alpn_http11, sizeof alpn_http11);
    if (revocation_wants_staple(s))
        SSL_set_tlsext_status_type(ssl, TLSEXT_STATUSTYPE_ocsp);
    tls_session_cache_apply(s, ssl);
    if (tls_leg_attach(&s->origin, ssl, on_handshake) != 0) {
        SSL_free(ssl);
        set_upstream_error(s, "%s", "out of memory");
        done(s, false);
        return;
    }
    tls_leg_of(&s->origin)->user_done = done;
    leg_want_read(&s->origin, true);
    tls_leg_start(&s->origin);
}
