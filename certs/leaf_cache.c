/* LRU of minted leaves: a chained hash table for lookup, a doubly linked list for recency. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "certs.h"

struct entry {
    struct entry *chain; /* next in the same bucket */
    struct entry *newer, *older;
    uint64_t hash;
    X509 *leaf;
    char key[]; /* NUL-terminated */
};

struct certs_cache {
    pthread_mutex_t lock;
    size_t capacity, size;
    size_t bucket_mask; /* bucket count - 1; the count is a power of two */
    struct entry **buckets;
    struct entry *newest, *oldest;
    uint64_t hits, misses;
};

static uint64_t hash_key(const char *key)
{
    uint64_t h = 0xcbf29ce484222325u; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
        h ^= *p;
        h *= 0x100000001b3u;
    }
    return h;
}

certs_cache *certs_cache_new(size_t capacity)
{
    certs_cache *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    /* At least as many buckets as entries keeps chains short. */
    size_t buckets = 1;
    while (buckets < capacity && buckets <= SIZE_MAX / 4)
        buckets <<= 1;
    c->buckets = calloc(buckets, sizeof *c->buckets);
    if (c->buckets == NULL || pthread_mutex_init(&c->lock, NULL) != 0) {
        free(c->buckets);
        free(c);
        return NULL;
    }
    c->capacity = capacity;
    c->bucket_mask = buckets - 1;
    return c;
}

void certs_cache_free(certs_cache *c)
{
    if (c == NULL)
        return;
    for (struct entry *e = c->newest, *next; e != NULL; e = next) {
        next = e->older;
        X509_free(e->leaf);
        free(e);
    }
    pthread_mutex_destroy(&c->lock);
    free(c->buckets);
    free(c);
}

static struct entry **find_slot(certs_cache *c, const char *key, uint64_t hash)
{
    struct entry **slot = &c->buckets[hash & c->bucket_mask];
    while (*slot != NULL && ((*slot)->hash != hash || strcmp((*slot)->key, key) != 0))
        slot = &(*slot)->chain;
    return slot;
}

static void unlink_recency(certs_cache *c, struct entry *e)
{
    if (e->newer != NULL)
        e->newer->older = e->older;
    else
        c->newest = e->older;
    if (e->older != NULL)
        e->older->newer = e->newer;
    else
        c->oldest = e->newer;
    e->newer = e->older = NULL;
}

static void push_newest(certs_cache *c, struct entry *e)
{
    e->newer = NULL;
    e->older = c->newest;
    if (c->newest != NULL)
        c->newest->newer = e;
    c->newest = e;
    if (c->oldest == NULL)
        c->oldest = e;
}

static void evict_oldest(certs_cache *c)
{
    struct entry *victim = c->oldest;
    struct entry **slot = find_slot(c, victim->key, victim->hash);
    *slot = victim->chain;
    unlink_recency(c, victim);
    c->size--;
    X509_free(victim->leaf);
    free(victim);
}

X509 *certs_cache_get(certs_cache *c, const char *key)
{
    uint64_t hash = hash_key(key);
    X509 *leaf = NULL;

    pthread_mutex_lock(&c->lock);
    struct entry *e = *find_slot(c, key, hash);
    if (e != NULL && X509_up_ref(e->leaf) == 1) {
        leaf = e->leaf;
        unlink_recency(c, e);
        push_newest(c, e);
        c->hits++;
    } else {
        c->misses++;
    }
    pthread_mutex_unlock(&c->lock);
    return leaf;
}

void certs_cache_put(certs_cache *c, const char *key, X509 *leaf)
{
    if (c->capacity == 0 || leaf == NULL || X509_up_ref(leaf) != 1)
        return;
    uint64_t hash = hash_key(key);
    size_t key_len = strlen(key);
    /* Allocated outside the lock; freed again if the key is already cached. */
    struct entry *fresh = malloc(sizeof *fresh + key_len + 1);
    if (fresh == NULL) {
        X509_free(leaf);
        return;
    }
    fresh->chain = NULL;
    fresh->hash = hash;
    fresh->leaf = leaf;
    memcpy(fresh->key, key, key_len + 1);

    X509 *replaced = NULL;
    pthread_mutex_lock(&c->lock);
    struct entry **slot = find_slot(c, key, hash);
    if (*slot != NULL) {
        struct entry *e = *slot;
        replaced = e->leaf;
        e->leaf = leaf;
        unlink_recency(c, e);
        push_newest(c, e);
    } else {
        if (c->size == c->capacity) {
            evict_oldest(c);
            slot = find_slot(c, key, hash); /* eviction may have unlinked the slot's owner */
        }
        *slot = fresh;
        push_newest(c, fresh);
        c->size++;
        fresh = NULL;
    }
    pthread_mutex_unlock(&c->lock);
    X509_free(replaced);
    free(fresh);
}

void certs_cache_stats(certs_cache *c, uint64_t *hits, uint64_t *misses, size_t *size)
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
