/* Proxy authentication: Basic credentials checked against an htpasswd file with libcrypt. */
#ifndef HANDOFF_AUTH_H
#define HANDOFF_AUTH_H

#include <stdbool.h>
#include <stddef.h>

typedef struct auth_db auth_db;

/** Loads user:hash lines (bcrypt $2y$/$2b$, sha-crypt $5$/$6$). NULL with err filled. */
auth_db *auth_load(const char *path, char *err, size_t errlen);
void auth_free(auth_db *db);

/** Fast path, safe on a loop: credentials verified recently. */
bool auth_check_cached(auth_db *db, const char *value, size_t len, char *user, size_t userlen);

/** Slow path (crypt): run it off the loop. Caches a success. */
bool auth_check(auth_db *db, const char *value, size_t len, char *user, size_t userlen);

#endif
