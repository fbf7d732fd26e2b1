/* Checkpoint 2 and TLS interception with proxy handoff: the origin handshake first (to learn
 * its certificate and ALPN), then a minted leaf for the client, then detection again on the
 * decrypted bytes. */
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>

#include "certs.h"
#include "diag.h"
#include "leg.h"
#include "session_internal.h"
#include "tls_internal.h"
#include "tls_leg.h"
#include "worker.h"

static const unsigned char alpn_http11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};

static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg);

int tls_contexts_init(shared_state *sh, char *err, size_t errlen)
{
    sh->client_ctx = SSL_CTX_new(TLS_client_method());
    sh->server_ctx = SSL_CTX_new(TLS_server_method());
    sh->leaf_key = certs_leaf_key_new();
    if (!sh->client_ctx || !sh->server_ctx || !sh->leaf_key) {
        snprintf(err, errlen, "cannot create TLS contexts");
        return -1;
    }
    SSL_CTX_set_min_proto_version(sh->client_ctx, TLS1_2_VERSION);
    SSL_CTX_set_min_proto_version(sh->server_ctx, TLS1_2_VERSION);
    if (sh->cfg.upstream_ca_file[0] &&
        SSL_CTX_load_verify_locations(sh->client_ctx, sh->cfg.upstream_ca_file, NULL) != 1) {
        snprintf(err, errlen, "[tls] upstream_ca_file: cannot load %s", sh->cfg.upstream_ca_file);
        return -1;
    }
    /* Verification is checked after the handshake so a failure can be reported inside TLS. */
    SSL_CTX_set_verify(sh->client_ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_session_cache_mode(sh->server_ctx, SSL_SESS_CACHE_SERVER);
    SSL_CTX_set_alpn_select_cb(sh->server_ctx, select_alpn, NULL);
    tls_session_cache_init(sh);
    return 0;
}

static void start_inner(session *s);

static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)arg;
    session *s = SSL_get_app_data(ssl);
    /* Only http/1.1, and only when the origin agreed to it or to nothing: no h2 end to end. */
    if (s->origin_alpn_other)
        return SSL_TLSEXT_ERR_NOACK;
    unsigned char *sel;
    unsigned char sellen;
    if (SSL_select_next_proto(&sel, &sellen, alpn_http11, sizeof alpn_http11, in, inlen) ==
        OPENSSL_NPN_NEGOTIATED) {
        *out = sel;
        *outlen = sellen;
        return SSL_TLSEXT_ERR_OK;
    }
    return SSL_TLSEXT_ERR_NOACK;
}

static const char *tls_name(session *s)
{
    return s->sni[0] ? s->sni : s->target_host;
}

static void client_handshake_done(leg *l, bool ok)
{
    session *s = l->s;
    if (!ok) {
        snprintf(s->error, sizeof s->error, "%s", l->tls->error);
        diag(LOG_WARN, "client %s rejected the certificate for %s: %s", s->client_text, tls_name(s),
             l->tls->error);
        s->action = "error";
        metrics_handshake_failure(s->w->shared, l->tls->error);
        session_log_connection(s);
        session_close(s);
        return;
    }
    metrics_tls_handshake(s->w->shared, true, SSL_session_reused(l->tls->ssl));
    start_inner(s);
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
    leaf = certs_mint_leaf(sh->ca, sh->leaf_key, upstream, tls_name(s), sh->crl_url);
    if (leaf)
        certs_cache_put(sh->leaves, key, leaf);
    return leaf;
}

/* The origin side is settled (verified, or failed with s->upstream_error): serve the client. */
static void serve_client(session *s)
{
    shared_state *sh = s->w->shared;
    /* Names are copied only from a certificate that was validated; otherwise the leaf is
     * for the name the client asked for. */
    X509 *upstream = s->upstream_error[0] || !s->origin.tls || !s->verify_server
                         ? NULL
                         : SSL_get1_peer_certificate(s->origin.tls->ssl);
    X509 *leaf = leaf_for(s, upstream);
    X509_free(upstream);
    SSL *ssl = leaf ? SSL_new(sh->server_ctx) : NULL;
    if (!ssl || SSL_use_certificate(ssl, leaf) != 1 || SSL_use_PrivateKey(ssl, sh->leaf_key) != 1 ||
        SSL_add1_chain_cert(ssl, certs_ca_cert(sh->ca)) != 1) {
        X509_free(leaf);
        SSL_free(ssl);
        snprintf(s->error, sizeof s->error, "cannot mint a certificate for %s", tls_name(s));
        s->action = "error";
        session_log_connection(s);
        session_close(s);
        return;
    }
    X509_free(leaf);
    SSL_set_accept_state(ssl);
    SSL_set_app_data(ssl, s);
    if (tls_leg_attach(&s->client, ssl, client_handshake_done) != 0) {
        SSL_free(ssl);
        session_close(s);
        return;
    }
    /* The ClientHello held by detection now goes to our TLS server. */
    char *held = s->hold;
    size_t len = s->hold_len;
    s->hold = NULL;
    s->hold_len = 0;
    s->client.on_data = NULL;
    leg_want_read(&s->client, true);
    tls_leg_on_read(&s->client, held, (ssize_t)len);
    free(held);
}

static void verify_origin(session *s)
{
    SSL *ssl = s->origin.tls->ssl;
    const unsigned char *proto;
    unsigned int plen;
    SSL_get0_alpn_selected(ssl, &proto, &plen);
    s->origin_alpn_other = plen > 0 && !(plen == 8 && memcmp(proto, "http/1.1", 8) == 0);
    if (!s->verify_server)
        return;
    long rc = SSL_get_verify_result(ssl);
    X509 *cert = SSL_get0_peer_certificate(ssl);
    if (!cert) {
        snprintf(s->upstream_error, sizeof s->upstream_error, "origin sent no certificate");
        return;
    }
    if (rc != X509_V_OK) {
        snprintf(s->upstream_error, sizeof s->upstream_error, "origin certificate: %s",
                 X509_verify_cert_error_string(rc));
        return;
    }
}

static void origin_handshake_done(leg *l, bool ok)
{
    session *s = l->s;
    if (!ok) {
        snprintf(s->upstream_error, sizeof s->upstream_error, "%s", l->tls->error);
        metrics_handshake_failure(s->w->shared, "origin handshake");
    } else {
        metrics_tls_handshake(s->w->shared, false, SSL_session_reused(l->tls->ssl));
        verify_origin(s);
    }
    /* The origin stays quiet until the inner handler is chosen. */
    leg_want_read(&s->origin, false);
    if (s->upstream_error[0]) {
        diag(LOG_WARN, "origin %s:%u for %s refused: %s", s->target_host, s->target_port,
             tls_name(s), s->upstream_error);
    }
    serve_client(s);
}

static void inner_settle(session *s, detect_protocol proto);

static void origin_on_plain(leg *l, const char *buf, ssize_t n)
{
    session *s = l->s;
    if (n > 0 && s->phase == PHASE_TLS && s->hold) {
        /* The origin spoke first inside TLS: a server-first protocol, so a tunnel. */
        inner_settle(s, PROTO_TCP);
        if (!s->closing && s->phase == PHASE_RELAY)
            leg_deliver(l, buf, n);
        return;
    }
    if (n < 0)
        session_fail(s, l, (int)n);
}

static void start_origin_tls(session *s, const detect_tls_info *hello)
{
    shared_state *sh = s->w->shared;
    SSL *ssl = SSL_new(sh->client_ctx);
    if (!ssl) {
        session_close(s);
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
    bool offers_http11 = false;
    for (unsigned i = 0; i < hello->alpn_count; i++)
        offers_http11 |= strcmp(hello->alpn[i], "http/1.1") == 0;
    if (offers_http11)
        SSL_set_alpn_protos(ssl, alpn_http11, sizeof alpn_http11);
    tls_session_cache_apply(s, ssl);
    if (tls_leg_attach(&s->origin, ssl, origin_handshake_done) != 0) {
        SSL_free(ssl);
        session_close(s);
        return;
    }
    s->origin.on_data = origin_on_plain;
    leg_want_read(&s->origin, true);
    tls_leg_start(&s->origin);
}

bool tls_decide(session *s, const detect_tls_info *hello)
{
    policy_facts f = {
        .host = s->sni[0] ? s->sni : s->target_host,
        .port = s->target_port,
        .method = "CONNECT",
        .client = (const struct sockaddr *)&s->client_addr,
        .protocol = "ssl",
        .tunneled = -1,
        .user = s->user[0] ? s->user : NULL,
    };
    policy_decision d;
    policy_evaluate(s->pol, &f, POLICY_CP_TLS, &d);
    if (d.last_rule.file)
        s->rule = d.last_rule;
    if (d.verify_server != TRI_UNSET)
        s->verify_server = d.verify_server == TRI_YES;
    if (d.tunnel_on_protocol_error != TRI_UNSET)
        s->tunnel_on_error = d.tunnel_on_protocol_error == TRI_YES;
    if (d.ssl_forward_proxy != SSL_FP_HTTPS && d.ssl_forward_proxy != SSL_FP_YES)
        return false; /* untouched: client.protocol=ssl, tunneled */
    s->intercept_mode = d.ssl_forward_proxy;
    s->intercepted = true;
    s->phase = PHASE_TLS;
    leg_want_read(&s->client, false);
    start_origin_tls(s, hello);
    return true;
}

/* ---- after both handshakes: detection on the decrypted bytes ---- */

/* The held bytes stay in s->hold until a handler takes them; the session frees them
 * otherwise. */
static void inner_settle(session *s, detect_protocol proto)
{
    session_stop_timer(s);
    if (s->intercept_mode == SSL_FP_HTTPS && proto != PROTO_HTTPS) {
        snprintf(s->error, sizeof s->error, "ssl.forward_proxy(https) expects HTTP inside TLS");
        if (!s->tunnel_on_error || s->upstream_error[0]) {
            s->protocol = proto;
            s->action = "error";
            session_log_connection(s);
            session_close(s);
            return;
        }
        proto = PROTO_TCP;
    }
    s->protocol = proto;
    session_handler h = proto == PROTO_HTTPS ? HANDLER_HTTP
                        : proto == PROTO_SIP ? HANDLER_SIP
                                             : HANDLER_TUNNEL;
    s->tunneled = h == HANDLER_TUNNEL;
    if (!detect_stage_checkpoint3(s))
        return;
    if (s->upstream_error[0] && h != HANDLER_HTTP) {
        snprintf(s->error, sizeof s->error, "%s", s->upstream_error);
        s->action = "error";
        session_log_connection(s);
        session_close(s);
        return;
    }
    detect_stage_hand_off(s, h);
}

static void inner_on_data(leg *l, const char *buf, ssize_t n)
{
    session *s = l->s;
    if (n < 0) {
        inner_settle(s, PROTO_TCP);
        if (!s->closing && s->phase != PHASE_TLS)
            leg_deliver(l, buf, n);
        return;
    }
    size_t take = detect_stage_hold(s, buf, (size_t)n);
    detect_result r;
    detect_answer a = detect_classify_inner((const uint8_t *)s->hold, s->hold_len, &r);
    if (a == DETECT_MATCH || s->hold_len == DETECT_MAX_BYTES) {
        inner_settle(s, a == DETECT_MATCH ? r.protocol : PROTO_TCP);
        if (take < (size_t)n && !s->closing)
            leg_deliver(l, buf + take, n - (ssize_t)take);
    }
}

void tls_inner_timeout(session *s)
{
    inner_settle(s, PROTO_TCP);
}

static void start_inner(session *s)
{
    s->hold = malloc(DETECT_MAX_BYTES);
    if (!s->hold) {
        session_close(s);
        return;
    }
    s->hold_len = 0;
    s->client.on_data = inner_on_data;
    s->origin.on_data = origin_on_plain;
    leg_want_read(&s->client, true);
    /* Nothing is ever relayed to or from an origin that failed verification. */
    if (!s->upstream_error[0])
        leg_want_read(&s->origin, true);
    session_set_timer(s, (uint64_t)s->w->shared->cfg.detect_timeout_ms, TIMER_DETECT);
}
