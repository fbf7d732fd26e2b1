#include "auth.h"

#include <crypt.h>
#include <openssl/evp.h>
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

typedef struct {
    char *name;
    char *hash;
} auth_user;

typedef struct {
    char value[AUTH_MAX_VALUE]; /* the Proxy-Authorization value as sent */
    char user[128];
    time_t expires;
} auth_cached;

struct auth_db {
    auth_user users[AUTH_MAX_USERS];
    size_t count;
    pthread_mutex_t lock;
    auth_cached cache[AUTH_CACHE];
    unsigned next_slot;
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

bool auth_check(auth_db *db, const char *value, size_t len, char *user, size_t userlen)
{
    char name[128], pass[512];
    if (len >= AUTH_MAX_VALUE || !decode_basic(value, len, name, sizeof name, pass, sizeof pass))
        return false;
    const auth_user *u = NULL;
    for (size_t i = 0; i < db->count && !u; i++)
        if (strcmp(db->users[i].name, name) == 0)
            u = &db->users[i];
    if (!u)
        return false;
    struct crypt_data *cd = calloc(1, sizeof *cd);
    if (!cd)
        return false;
    const char *h = crypt_r(pass, u->hash, cd);
    bool ok = h && h[0] != '*' && strcmp(h, u->hash) == 0;
    free(cd);
    explicit_bzero(pass, sizeof pass);
    if (!ok)
        return false;
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
