/* TLS session resumption towards origins: one cached session per origin name and port. */
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "session_internal.h"

#define ORIGIN_SESSIONS 256

typedef struct {
    char key[560];
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

void tls_session_cache_init(shared_state *sh)
{
    if (key_index < 0)
        key_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    SSL_CTX_set_session_cache_mode(sh->client_ctx,
                                   SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(sh->client_ctx, on_new_session);
}

void tls_session_cache_apply(session *s, SSL *ssl)
{
    snprintf(s->resume_key, sizeof s->resume_key, "%s|%s:%u", s->sni, s->target_host,
             s->target_port);
    SSL_set_ex_data(ssl, key_index, s->resume_key);
    cached_session *c = &table[slot_of(s->resume_key)];
    pthread_mutex_lock(&lock);
    if (c->sess && strcmp(c->key, s->resume_key) == 0 && SSL_SESSION_is_resumable(c->sess))
        SSL_set_session(ssl, c->sess);
    pthread_mutex_unlock(&lock);
}
