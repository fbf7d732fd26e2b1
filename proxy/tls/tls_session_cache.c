/* TLS session resumption towards origins: one cached session per origin, name and
 * verification mode, so a session made without verification never resumes a connection that
 * must verify. */
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "session.h"
#include "tls_contexts.h"
#include "worker.h"

#define ORIGIN_SESSIONS 256

typedef struct {
    char key[600];
    SSL_SESSION *sess;
} cached_session;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static cached_session table[ORIGIN_SESSIONS];
static int key_index = -1;

static unsigned slot_of(const char *key)
{
    unsigned h = 2166136261u;
    for (; *key; key++)
        h = (h ^ (unsigned char)*key) * 16777619u;
    return h % ORIGIN_SESSIONS;
}

static void free_key(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    (void)parent;
    (void)ad;
    (void)idx;
    (void)argl;
    (void)argp;
    free(ptr);
}

static int on_new_session(SSL *ssl, SSL_SESSION *sess)
{
    const char *key = SSL_get_ex_data(ssl, key_index);
    /* Keep a copy: the original stays the connection's own session, and OpenSSL marks that
     * one unresumable when the connection ends without close_notify, as origins often do. */
    SSL_SESSION *copy = key ? SSL_SESSION_dup(sess) : NULL;
    if (!copy)
        return 0;
    cached_session *c = &table[slot_of(key)];
    pthread_mutex_lock(&lock);
    if (c->sess)
        SSL_SESSION_free(c->sess);
    snprintf(c->key, sizeof c->key, "%s", key);
    c->sess = copy;
    pthread_mutex_unlock(&lock);
    return 0;
}

void tls_session_cache_init(SSL_CTX *client_ctx)
{
    if (key_index < 0)
        key_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, free_key);
    SSL_CTX_set_session_cache_mode(client_ctx,
                                   SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(client_ctx, on_new_session);
}

void tls_session_cache_apply(session *s, SSL *ssl)
{
    char *key = NULL;
    if (asprintf(&key, "%s|%s:%u|%s", s->sni, s->target_host, s->target_port,
                 s->verify_server ? "verify" : "no-verify") < 0)
        return;
    SSL_set_ex_data(ssl, key_index, key); /* freed with the SSL */
    cached_session *c = &table[slot_of(key)];
    pthread_mutex_lock(&lock);
    if (c->sess && strcmp(c->key, key) == 0 && SSL_SESSION_is_resumable(c->sess))
        SSL_set_session(ssl, c->sess);
    pthread_mutex_unlock(&lock);
}
