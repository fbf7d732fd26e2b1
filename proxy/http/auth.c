#include "auth.h"

#include <crypt.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define AUTH_MAX_USERS   4096
#define AUTH_CACHE       256
#define AUTH_CACHE_TTL_S 300
#define AUTH_MAX_VALUE   512
#define AUTH_NEGATIVE    256
#define AUTH_DIGEST      32

typedef struct {
    char *name;
    char *hash;
} auth_user;

typedef struct {
    char value[AUTH_MAX_VALUE]; /* the Proxy-Authorization value as sent */
    char user[128];
    time_t expires;
} auth_cached;

/* A failed user+password: the password only as a salted digest. */
typedef struct {
    char user[128];
    unsigned char digest[AUTH_DIGEST];
    time_t expires;
} auth_failed;

struct auth_db {
    auth_user users[AUTH_MAX_USERS];
    size_t count;
    pthread_mutex_t lock; /* guards everything below */
    auth_cached cache[AUTH_CACHE];
    unsigned next_slot;
    auth_failed failed[AUTH_NEGATIVE];
    unsigned next_failed;
    unsigned char salt[16];
    unsigned long hashes;
};

auth_db *auth_load(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "cannot open htpasswd file %s", path);
        return NULL;
    }
    auth_db *db = calloc(1, sizeof *db);
    if (!db) {
        fclose(f);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&db->lock, NULL);
    if (RAND_bytes(db->salt, sizeof db->salt) != 1) {
        fclose(f);
        auth_free(db);
        snprintf(err, errlen, "no randomness for the credential cache");
        return NULL;
    }
    char line[1024];
    int lineno = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        line[strcspn(line, "\r\n")] = '\0';
        if (!line[0] || line[0] == '#')
            continue;
        char *colon = strchr(line, ':');
        if (!colon || colon == line || db->count == AUTH_MAX_USERS) {
            snprintf(err, errlen, "%s:%d: expected user:hash", path, lineno);
            fclose(f);
            auth_free(db);
            return NULL;
        }
        *colon = '\0';
        const char *hash = colon + 1;
        if (strncmp(hash, "$2", 2) != 0 && strncmp(hash, "$5$", 3) != 0 &&
            strncmp(hash, "$6$", 3) != 0) {
            snprintf(err, errlen, "%s:%d: user %s: only bcrypt and sha-crypt hashes are accepted",
                     path, lineno, line);
            fclose(f);
            auth_free(db);
            return NULL;
        }
        db->users[db->count].name = strdup(line);
        db->users[db->count].hash = strdup(hash);
        db->count++;
    }
    fclose(f);
    return db;
}

void auth_free(auth_db *db)
{
    if (!db)
        return;
    for (size_t i = 0; i < db->count; i++) {
        free(db->users[i].name);
        free(db->users[i].hash);
    }
    pthread_mutex_destroy(&db->lock);
    free(db);
}

int auth_reload(auth_db *db, const char *path, char *err, size_t errlen)
{
    auth_db *fresh = auth_load(path, err, errlen);
    if (!fresh)
        return -1;
    pthread_mutex_lock(&db->lock);
    for (size_t i = 0; i < sizeof db->users / sizeof db->users[0]; i++) {
        auth_user t = db->users[i];
        db->users[i] = fresh->users[i];
        fresh->users[i] = t;
    }
    size_t n = db->count;
    db->count = fresh->count;
    fresh->count = n;
    /* A removed user or a changed password must not live on in a cache. */
    memset(db->cache, 0, sizeof db->cache);
    memset(db->failed, 0, sizeof db->failed);
    pthread_mutex_unlock(&db->lock);
    auth_free(fresh); /* frees the old users */
    return 0;
}

bool auth_check_cached(auth_db *db, const char *value, size_t len, char *user, size_t userlen)
{
    if (len >= AUTH_MAX_VALUE)
        return false;
    time_t now = time(NULL);
    bool ok = false;
    pthread_mutex_lock(&db->lock);
    for (unsigned i = 0; i < AUTH_CACHE && !ok; i++) {
        auth_cached *c = &db->cache[i];
        if (c->expires > now && strlen(c->value) == len && memcmp(c->value, value, len) == 0) {
            snprintf(user, userlen, "%s", c->user);
            ok = true;
        }
    }
    pthread_mutex_unlock(&db->lock);
    return ok;
}

static bool decode_basic(const char *value, size_t len, char *user, size_t userlen, char *pass,
                         size_t passlen)
{
    while (len && (*value == ' ' || *value == '\t'))
        value++, len--;
    if (len < 6 || strncasecmp(value, "Basic ", 6) != 0)
        return false;
    value += 6;
    len -= 6;
    while (len && *value == ' ')
        value++, len--;
    while (len && (value[len - 1] == ' ' || value[len - 1] == '\t'))
        len--;
    if (len == 0 || len > 4 * 200 || len % 4)
        return false;
    unsigned char decoded[601];
    int n = EVP_DecodeBlock(decoded, (const unsigned char *)value, (int)len);
    if (n < 0)
        return false;
    /* EVP_DecodeBlock counts padding as output bytes */
    if (value[len - 1] == '=')
        n--;
    if (value[len - 2] == '=')
        n--;
    decoded[n] = '\0';
    if (memchr(decoded, '\0', (size_t)n))
        return false;
    char *colon = strchr((char *)decoded, ':');
    if (!colon)
        return false;
    *colon = '\0';
    if (strlen((char *)decoded) >= userlen || strlen(colon + 1) >= passlen)
        return false;
    snprintf(user, userlen, "%s", (char *)decoded);
    snprintf(pass, passlen, "%s", colon + 1);
    return true;
}

static void password_digest(const auth_db *db, const char *pass, unsigned char *out)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned n = 0;
    if (!md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1 ||
        EVP_DigestUpdate(md, db->salt, sizeof db->salt) != 1 ||
        EVP_DigestUpdate(md, pass, strlen(pass)) != 1 || EVP_DigestFinal_ex(md, out, &n) != 1)
        RAND_bytes(out, AUTH_DIGEST); /* matches nothing: the check just costs a hash */
    EVP_MD_CTX_free(md);
}

/* Call with db->lock held. */
static bool failed_recently(auth_db *db, const char *name, const unsigned char *digest, time_t now)
{
    for (unsigned i = 0; i < AUTH_NEGATIVE; i++) {
        const auth_failed *f = &db->failed[i];
        if (f->expires > now && strcmp(f->user, name) == 0 &&
            CRYPTO_memcmp(f->digest, digest, AUTH_DIGEST) == 0)
            return true;
    }
    return false;
}

static void remember_failure(auth_db *db, const char *name, const unsigned char *digest)
{
    time_t now = time(NULL);
    pthread_mutex_lock(&db->lock);
    if (!failed_recently(db, name, digest, now)) {
        auth_failed *f = &db->failed[db->next_failed++ % AUTH_NEGATIVE];
        snprintf(f->user, sizeof f->user, "%s", name);
        memcpy(f->digest, digest, AUTH_DIGEST);
        f->expires = now + AUTH_NEGATIVE_TTL_S;
    }
    pthread_mutex_unlock(&db->lock);
}

auth_verdict auth_check_fast(auth_db *db, const char *value, size_t len, char *user, size_t userlen)
{
    if (auth_check_cached(db, value, len, user, userlen))
        return AUTH_GRANTED;
    char name[128], pass[512];
    if (len >= AUTH_MAX_VALUE || !decode_basic(value, len, name, sizeof name, pass, sizeof pass))
        return AUTH_REFUSED;
    unsigned char digest[AUTH_DIGEST];
    password_digest(db, pass, digest);
    explicit_bzero(pass, sizeof pass);
    pthread_mutex_lock(&db->lock);
    bool failed = failed_recently(db, name, digest, time(NULL));
    pthread_mutex_unlock(&db->lock);
    return failed ? AUTH_REFUSED : AUTH_UNKNOWN;
}

unsigned long auth_hash_count(auth_db *db)
{
    pthread_mutex_lock(&db->lock);
    unsigned long n = db->hashes;
    pthread_mutex_unlock(&db->lock);
    return n;
}

bool auth_check(auth_db *db, const char *value, size_t len, char *user, size_t userlen)
{
    char name[128], pass[512];
    if (len >= AUTH_MAX_VALUE || !decode_basic(value, len, name, sizeof name, pass, sizeof pass))
        return false;
    unsigned char digest[AUTH_DIGEST];
    password_digest(db, pass, digest);
    /* The hash is copied: a reload may replace the users while crypt runs. */
    char *hash = NULL;
    pthread_mutex_lock(&db->lock);
    for (size_t i = 0; i < db->count && !hash; i++)
        if (strcmp(db->users[i].name, name) == 0)
            hash = strdup(db->users[i].hash);
    bool failed = hash && failed_recently(db, name, digest, time(NULL));
    if (hash && !failed)
        db->hashes++;
    pthread_mutex_unlock(&db->lock);
    struct crypt_data *cd = hash && !failed ? calloc(1, sizeof *cd) : NULL;
    if (!cd) {
        free(hash);
        explicit_bzero(pass, sizeof pass);
        return false;
    }
    const char *h = crypt_r(pass, hash, cd);
    bool ok = h && h[0] != '*' && strcmp(h, hash) == 0;
    free(cd);
    free(hash);
    explicit_bzero(pass, sizeof pass);
    if (!ok) {
        remember_failure(db, name, digest);
        return false;
    }
    snprintf(user, userlen, "%s", name);
    pthread_mutex_lock(&db->lock);
    auth_cached *c = &db->cache[db->next_slot++ % AUTH_CACHE];
    memcpy(c->value, value, len);
    c->value[len] = '\0';
    snprintf(c->user, sizeof c->user, "%s", name);
    c->expires = time(NULL) + AUTH_CACHE_TTL_S;
    pthread_mutex_unlock(&db->lock);
    return true;
}

/* ---- in the credential pool ---- */

typedef struct {
    cred_job job;
    auth_db *db;
    auth_basic_cb cb;
    void *data;
    bool ok;
    size_t len;
    char value[AUTH_MAX_VALUE];
    char user[128];
} basic_job;

static void basic_work(cred_job *job)
{
    basic_job *b = (basic_job *)job;
    b->ok = auth_check(b->db, b->value, b->len, b->user, sizeof b->user);
}

static void basic_done(cred_job *job, int status)
{
    basic_job *b = (basic_job *)job;
    b->cb(b->data, status == 0 && b->ok, b->user, status);
    explicit_bzero(b->value, sizeof b->value);
    free(b);
}

int auth_basic_submit(cred_pool_loop *pl, auth_db *db, const char *value, size_t len,
                      unsigned *pending, unsigned cap, auth_basic_cb cb, void *data)
{
    if (len >= AUTH_MAX_VALUE)
        return UV_EINVAL;
    basic_job *b = calloc(1, sizeof *b);
    if (!b)
        return UV_ENOMEM;
    b->job.work = basic_work;
    b->job.done = basic_done;
    b->db = db;
    b->cb = cb;
    b->data = data;
    b->len = len;
    memcpy(b->value, value, len);
    int rc = cred_pool_submit(pl, &b->job, pending, cap);
    if (rc != 0)
        free(b);
    return rc;
}
