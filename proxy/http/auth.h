/* Proxy authentication: Basic credentials checked against an htpasswd file with libcrypt. */
#ifndef HANDOFF_AUTH_H
#define HANDOFF_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#include "cred_pool.h"

typedef struct auth_db auth_db;

/** Loads user:hash lines (bcrypt $2y$/$2b$, sha-crypt $5$/$6$). NULL with err filled. */
auth_db *auth_load(const char *path, char *err, size_t errlen);
void auth_free(auth_db *db);

/** Re-reads the users from path into db (SIGHUP); checks in flight finish with the old hash,
 * the caches are emptied. On error db is unchanged: -1 with err filled; 0 on success. */
int auth_reload(auth_db *db, const char *path, char *err, size_t errlen);

/** Fast path, safe on a loop: credentials verified recently. */
bool auth_check_cached(auth_db *db, const char *value, size_t len, char *user, size_t userlen);

/** Slow path (crypt): run it off the loop. Caches a success; a wrong password for a known user
 * is remembered for AUTH_NEGATIVE_TTL_S and then refused without hashing. */
bool auth_check(auth_db *db, const char *value, size_t len, char *user, size_t userlen);

/** What the loop can decide without hashing. */
typedef enum {
    AUTH_UNKNOWN, /* needs auth_check in the credential pool */
    AUTH_GRANTED, /* verified recently: user filled */
    AUTH_REFUSED, /* malformed, or the same user and password failed recently */
} auth_verdict;

/** Loop-safe: positive cache, then syntax, then negative cache. */
auth_verdict auth_check_fast(auth_db *db, const char *value, size_t len, char *user,
                             size_t userlen);

/** Seconds a failed user+password is remembered. */
#define AUTH_NEGATIVE_TTL_S 30

/** Password hashes computed so far (crypt calls), for metrics and tests. */
unsigned long auth_hash_count(auth_db *db);

/** Called on the submitting loop: ok with user, or status < 0 if the check never ran. */
typedef void (*auth_basic_cb)(void *data, bool ok, const char *user, int status);

/** Runs auth_check in the credential pool on a copy of value; cb(data, ...) later on the loop.
 * pending/cap bound the checks one client connection may have queued (see cred_pool_submit).
 * Returns 0 or the cred_pool_submit error (cb is then never called); UV_EINVAL if value is too
 * long, UV_ENOMEM. */
int auth_basic_submit(cred_pool_loop *pl, auth_db *db, const char *value, size_t len,
                      unsigned *pending, unsigned cap, auth_basic_cb cb, void *data);

#endif
