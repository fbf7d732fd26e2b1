/* The origin-side status cache shared by all workers: entries preallocated in one array, a
 * chained hash table of 32-bit indices, and an LRU list, so its memory is known in advance. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "revocation.h"

#define NONE UINT32_MAX

struct entry {
    struct certs_rev_key key;
    uint8_t status;
    uint8_t used;
    uint32_t chain, newer, older;
    time_t next_update;
};

struct certs_rev_cache {
    pthread_mutex_t lock;
    size_t capacity, size;
    uint32_t bucket_mask;
    uint32_t *buckets;
    struct entry *entries;
    uint32_t newest, oldest, free_list; /* free entries chain through `chain` */
    uint64_t hits, misses;
};

int certs_rev_key_of(X509 *cert, X509 *issuer, struct certs_rev_key *key)
{
    memset(key, 0, sizeof *key);
    unsigned int n = 0;
    const ASN1_INTEGER *serial = X509_get0_serialNumber(cert);
    int len = ASN1_STRING_length(serial);
    if (X509_pubkey_digest(issuer, EVP_sha1(), key->issuer_key_hash, &n) != 1 || n != 20 ||
        len <= 0)
        return -1;
    if ((size_t)len <= sizeof key->serial) {
        memcpy(key->serial, ASN1_STRING_get0_data(serial), (size_t)len);
        key->serial_len = (uint8_t)len;
    } else { /* longer than RFC 5280 allows, but seen: key on its hash */
        SHA1(ASN1_STRING_get0_data(serial), (size_t)len, key->serial);
        key->serial_len = 0xff;
    }
    return 0;
}

static uint32_t hash_key(const struct certs_rev_key *k)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    const unsigned char *p = (const unsigned char *)k;
    for (size_t i = 0; i < sizeof *k; i++) {
        h ^= p[i];
        h *= 16777619u;
    }
    return h;
}

static bool same_key(const struct certs_rev_key *a, const struct certs_rev_key *b)
{
    return memcmp(a, b, sizeof *a) == 0; /* keys are zero-filled, so padding compares too */
}

certs_rev_cache *certs_rev_cache_new(size_t capacity)
{
    if (capacity == 0 || capacity >= NONE / 2)
        return NULL;
    certs_rev_cache *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    size_t buckets = 1;
    while (buckets < capacity)
        buckets <<= 1;
    c->entries = calloc(capacity, sizeof *c->entries);
    c->buckets = malloc(buckets * sizeof *c->buckets);
    if (c->entries == NULL || c->buckets == NULL || pthread_mutex_init(&c->lock, NULL) != 0) {
        free(c->entries);
        free(c->buckets);
        free(c);
        return NULL;
    }
    memset(c->buckets, 0xff, buckets * sizeof *c->buckets);
    for (size_t i = 0; i < capacity; i++)
        c->entries[i].chain = i + 1 < capacity ? (uint32_t)(i + 1) : NONE;
    c->free_list = 0;
    c->capacity = capacity;
    c->bucket_mask = (uint32_t)(buckets - 1);
    c->newest = c->oldest = NONE;
    return c;
}

void certs_rev_cache_free(certs_rev_cache *c)
{
    if (c == NULL)
        return;
    pthread_mutex_destroy(&c->lock);
    free(c->entries);
    free(c->buckets);
    free(c);
}

size_t certs_rev_cache_bytes(const certs_rev_cache *c)
{
    return sizeof *c + c->capacity * sizeof *c->entries +
           ((size_t)c->bucket_mask + 1) * sizeof *c->buckets;
}

/* The lock is held by the callers of everything below. */

static void lru_unlink(certs_rev_cache *c, uint32_t at)
{
    struct entry *e = &c->entries[at];
    if (e->newer != NONE)
        c->entries[e->newer].older = e->older;
    else
        c->newest = e->older;
    if (e->older != NONE)
        c->entries[e->older].newer = e->newer;
    else
        c->oldest = e->newer;
}

static void lru_push_newest(certs_rev_cache *c, uint32_t at)
{
    struct entry *e = &c->entries[at];
    e->newer = NONE;
    e->older = c->newest;
    if (c->newest != NONE)
        c->entries[c->newest].newer = at;
    c->newest = at;
    if (c->oldest == NONE)
        c->oldest = at;
}

static uint32_t find(certs_rev_cache *c, const struct certs_rev_key *key)
{
    uint32_t at = c->buckets[hash_key(key) & c->bucket_mask];
    while (at != NONE && !same_key(&c->entries[at].key, key))
        at = c->entries[at].chain;
    return at;
}

static void remove_entry(certs_rev_cache *c, uint32_t at)
{
    struct entry *e = &c->entries[at];
    uint32_t *link = &c->buckets[hash_key(&e->key) & c->bucket_mask];
    while (*link != at)
        link = &c->entries[*link].chain;
    *link = e->chain;
    lru_unlink(c, at);
    memset(e, 0, sizeof *e);
    e->chain = c->free_list;
    c->free_list = at;
    c->size--;
}

bool certs_rev_cache_get(certs_rev_cache *c, const struct certs_rev_key *key, time_t now,
                         enum certs_rev_status *status, time_t *next_update)
{
    pthread_mutex_lock(&c->lock);
    uint32_t at = find(c, key);
    if (at != NONE && now >= c->entries[at].next_update) {
        remove_entry(c, at); /* expired at its nextUpdate: ask again */
        at = NONE;
    }
    if (at == NONE) {
        c->misses++;
        pthread_mutex_unlock(&c->lock);
        return false;
    }
    c->hits++;
    lru_unlink(c, at);
    lru_push_newest(c, at);
    *status = (enum certs_rev_status)c->entries[at].status;
    if (next_update != NULL)
        *next_update = c->entries[at].next_update;
    pthread_mutex_unlock(&c->lock);
    return true;
}

void certs_rev_cache_put(certs_rev_cache *c, const struct certs_rev_key *key,
                         enum certs_rev_status status, time_t next_update)
{
    if (status == CERTS_REV_ERROR)
        return;
    pthread_mutex_lock(&c->lock);
    uint32_t at = find(c, key);
    if (at != NONE) {
        lru_unlink(c, at);
    } else {
        if (c->free_list == NONE)
            remove_entry(c, c->oldest);
        at = c->free_list;
        c->free_list = c->entries[at].chain;
        c->entries[at].key = *key;
        uint32_t *bucket = &c->buckets[hash_key(key) & c->bucket_mask];
        c->entries[at].chain = *bucket;
        *bucket = at;
        c->size++;
    }
    c->entries[at].status = (uint8_t)status;
    c->entries[at].used = 1;
    c->entries[at].next_update = next_update;
    lru_push_newest(c, at);
    pthread_mutex_unlock(&c->lock);
}

void certs_rev_cache_stats(certs_rev_cache *c, uint64_t *hits, uint64_t *misses, size_t *size)
{
    pthread_mutex_lock(&c->lock);
    if (hits != NULL)
        *hits = c->hits;
    if (misses != NULL)
        *misses = c->misses;
    if (size != NULL)
        *size = c->size;
    pthread_mutex_unlock(&c->lock);
}
