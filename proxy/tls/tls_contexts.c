/* The two process-wide contexts: origin-facing (client) and client-facing (server). */
#include "tls_contexts.h"

#include <stdio.h>
#include <string.h>

#include "certs.h"
#include "ocsp.h"
#include "session.h"
#include "tls_leg.h"
#include "tls_origin.h"
#include "worker.h"

static const unsigned char alpn_http11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
static const unsigned char alpn_h2[] = {2, 'h', '2'};

static int session_index = -1;

session *tls_session_of(const SSL *ssl)
{
    return SSL_get_ex_data(ssl, session_index);
}

static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)arg;
    session *s = tls_session_of(ssl);
    if (!s)
        return SSL_TLSEXT_ERR_NOACK;
    unsigned char *sel;
    unsigned char sellen;
    /* h2 when the origin agreed to h2 (streams map one to one onto its connection) or to
     * http/1.1 or nothing (a connection per concurrent stream); otherwise http/1.1, and only
     * when the origin agreed to it or to nothing. */
    if (s->client_offers_h2 && (tls_origin_h2(s) || !s->origin_alpn_other)) {
        if (SSL_select_next_proto(&sel, &sellen, alpn_h2, sizeof alpn_h2, in, inlen) ==
            OPENSSL_NPN_NEGOTIATED) {
            *out = sel;
            *outlen = sellen;
            return SSL_TLSEXT_ERR_OK;
        }
        return SSL_TLSEXT_ERR_NOACK;
    }
    if (s->origin_alpn_other)
        return SSL_TLSEXT_ERR_NOACK;
    if (SSL_select_next_proto(&sel, &sellen, alpn_http11, sizeof alpn_http11, in, inlen) ==
        OPENSSL_NPN_NEGOTIATED) {
        *out = sel;
        *outlen = sellen;
        return SSL_TLSEXT_ERR_OK;
    }
    return SSL_TLSEXT_ERR_NOACK;
}

/* Remembers the alert a client sends, so a refused certificate can be told from a client
 * that simply went away. */
static void on_info(const SSL *ssl, int where, int ret)
{
    if (!(where & SSL_CB_READ_ALERT))
        return;
    session *s = tls_session_of(ssl);
    tls_leg *t = s ? tls_leg_of(&s->client) : NULL;
    if (t && t->ssl == ssl)
        t->alert_received = ret & 0xff;
}

/* The client asked for status_request: staple our own `good` answer for the minted leaf, so a
 * Windows or SfB client needs no fetch at all. */
static int staple_status(SSL *ssl, void *arg)
{
    certs_ca *ca = arg;
    X509 *leaf = SSL_get_certificate(ssl);
    unsigned char *der;
    size_t len;
    if (!ca || !leaf || certs_ocsp_staple(ca, leaf, &der, &len) != 0)
        return SSL_TLSEXT_ERR_NOACK;
    if (SSL_set_tlsext_status_ocsp_resp(ssl, der, (long)len) != 1) {
        OPENSSL_free(der);
        return SSL_TLSEXT_ERR_NOACK;
    }
    return SSL_TLSEXT_ERR_OK;
}

int tls_contexts_init(void *arg, char *err, size_t errlen)
{
    shared_state *sh = arg;
    if (session_index < 0)
        session_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    sh->client_ctx = SSL_CTX_new(TLS_client_method());
    sh->server_ctx = SSL_CTX_new(TLS_server_method());
    sh->leaf_key = certs_leaf_key_new();
    if (!sh->client_ctx || !sh->server_ctx || !sh->leaf_key) {
        snprintf(err, errlen, "cannot create TLS contexts");
        return -1;
    }
    SSL_CTX_set_min_proto_version(sh->client_ctx, TLS1_2_VERSION);
    SSL_CTX_set_min_proto_version(sh->server_ctx, TLS1_2_VERSION);
    /* Idle connections give their record buffers back; renegotiation is refused. */
    SSL_CTX_set_mode(sh->client_ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_mode(sh->server_ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_options(sh->client_ctx, SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_options(sh->server_ctx, SSL_OP_NO_RENEGOTIATION);
    if (sh->cfg.upstream_ca_file[0] &&
        SSL_CTX_load_verify_locations(sh->client_ctx, sh->cfg.upstream_ca_file, NULL) != 1) {
        snprintf(err, errlen, "[tls] upstream_ca_file: cannot load %s", sh->cfg.upstream_ca_file);
        return -1;
    }
    /* Verification is checked after the handshake so a failure can be reported inside TLS. */
    SSL_CTX_set_verify(sh->client_ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_session_cache_mode(sh->server_ctx, SSL_SESS_CACHE_SERVER);
    SSL_CTX_set_alpn_select_cb(sh->server_ctx, select_alpn, NULL);
    SSL_CTX_set_info_callback(sh->server_ctx, on_info);
    SSL_CTX_set_tlsext_status_cb(sh->server_ctx, staple_status);
    SSL_CTX_set_tlsext_status_arg(sh->server_ctx, sh->ca);
    tls_session_cache_init(sh->client_ctx);
    return 0;
}

void tls_contexts_bind(SSL *ssl, session *s)
{
    SSL_set_ex_data(ssl, session_index, s);
}
