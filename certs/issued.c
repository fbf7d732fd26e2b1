/* The serials this process minted, so the OCSP responder can tell its own leaves from others.
 * A ring in minting order (the oldest record is dropped first when full) indexed by a chained
 * hash table; each record may also hold the signed OCSP response last made for it. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "ca_internal.h"

#define NO_ENTRY UINT32_MAX

struct record {
    unsigned char serial[CERTS_SERIAL_MAX];
    uint8_t serial_len; /* 0: slot unused */
    uint32_t chain;     /* next record in the same bucket */
    time_t not_after;
    unsigned char *resp; /* cached DER OCSPResponse (SHA-1 CertID, no nonce), or NULL */
    size_t resp_len;
    time_t resp_refresh; /* make a new response from then on */
};

struct certs_issued {
    pthread_mutex_t lock;
    size_t capacity, count, oldest;
    uint32_t bucket_mask;
    uint32_t *buckets;
    struct record *ring;
};

/* The serial's magnitude bytes; 0 for a negative, zero or over-long serial (never ours). */
size_t certs_serial_bytes(const ASN1_INTEGER *serial, unsigned char out[CERTS_SERIAL_MAX])
{
    if (serial == NULL || ASN1_STRING_type(serial) != V_ASN1_INTEGER)
        return 0;
    int len = ASN1_STRING_length(serial);
    if (len <= 0 || len > CERTS_SERIAL_MAX)
        return 0;
    memcpy(out, ASN1_STRING_get0_data(serial), (size_t)len);
    return (size_t)len;
}

static uint32_t hash_serial(const unsigned char *s, size_t len)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < len; i++) {
        h ^= s[i];
        h *= 16777619u;
    }
    return h;
}

certs_issued *certs_issued_new(size_t capacity)
{
    if (capacity == 0 || capacity >= NO_ENTRY / 2)
        return NULL;
    certs_issued *r = calloc(1, sizeof *r);
    if (r == NULL)
        return NULL;
    size_t buckets = 1;
    while (buckets < capacity)
        buckets <<= 1;
    r->ring = calloc(capacity, sizeof *r->ring);
    r->buckets = malloc(buckets * sizeof *r->buckets);
    if (r->ring == NULL || r->buckets == NULL || pthread_mutex_init(&r->lock, NULL) != 0) {
        free(r->ring);
        free(r->buckets);
        free(r);
        return NULL;
    }
    memset(r->buckets, 0xff, buckets * sizeof *r->buckets); /* all NO_ENTRY */
    r->capacity = capacity;
    r->bucket_mask = (uint32_t)(buckets - 1);
    return r;
}

void certs_issued_free(certs_issued *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->capacity; i++)
        OPENSSL_free(r->ring[i].resp);
    pthread_mutex_destroy(&r->lock);
    free(r->ring);
    free(r->buckets);
    free(r);
}

/* The caller holds the lock. */
static struct record *find(certs_issued *r, const unsigned char *s, size_t len)
{
    uint32_t at = r->buckets[hash_serial(s, len) & r->bucket_mask];
    while (at != NO_ENTRY) {
        struct record *rec = &r->ring[at];
        if (rec->serial_len == len && memcmp(rec->serial, s, len) == 0)
            return rec;
        at = rec->chain;
    }
    return NULL;
}

/* Unlinks the record in slot `at` from its bucket and clears it; the caller holds the lock. */
static void drop(certs_issued *r, uint32_t at)
{
    struct record *rec = &r->ring[at];
    uint32_t *link = &r->buckets[hash_serial(rec->serial, rec->serial_len) & r->bucket_mask];
    while (*link != NO_ENTRY && *link != at)
        link = &r->ring[*link].chain;
    if (*link == at)
        *link = rec->chain;
    OPENSSL_free(rec->resp);
    memset(rec, 0, sizeof *rec);
}

int certs_issued_add(certs_issued *r, const ASN1_INTEGER *serial, time_t not_after)
{
    unsigned char s[CERTS_SERIAL_MAX];
    size_t len = certs_serial_bytes(serial, s);
    if (r == NULL || len == 0)
        return -1;

    pthread_mutex_lock(&r->lock);
    struct record *rec = find(r, s, len);
    if (rec != NULL) {
        rec->not_after = not_after;
        pthread_mutex_unlock(&r->lock);
        return 0;
    }
    uint32_t at;
    if (r->count == r->capacity) {
        at = (uint32_t)r->oldest;
        drop(r, at);
        r->oldest = (r->oldest + 1) % r->capacity;
    } else {
        at = (uint32_t)((r->oldest + r->count) % r->capacity);
        r->count++;
    }
    rec = &r->ring[at];
    memcpy(rec->serial, s, len);
    rec->serial_len = (uint8_t)len;
    rec->not_after = not_after;
    uint32_t *bucket = &r->buckets[hash_serial(s, len) & r->bucket_mask];
    rec->chain = *bucket;
    *bucket = at;
    pthread_mutex_unlock(&r->lock);
    return 0;
}

bool certs_issued_contains(certs_issued *r, const ASN1_INTEGER *serial, time_t now)
{
    unsigned char s[CERTS_SERIAL_MAX];
    size_t len = certs_serial_bytes(serial, s);
    if (r == NULL || len == 0)
        return false;
    pthread_mutex_lock(&r->lock);
    const struct record *rec = find(r, s, len);
    bool found = rec != NULL && now < rec->not_after;
    pthread_mutex_unlock(&r->lock);
    return found;
}

size_t certs_issued_count(certs_issued *r)
{
    pthread_mutex_lock(&r->lock);
    size_t n = r->count;
    pthread_mutex_unlock(&r->lock);
    return n;
}

int certs_issued_cached_response(certs_issued *r, const ASN1_INTEGER *serial, time_t now,
                                 unsigned char **der, size_t *len)
{
    unsigned char s[CERTS_SERIAL_MAX];
    size_t slen = certs_serial_bytes(serial, s);
    int rc = -1;
    if (slen == 0)
        return -1;
    pthread_mutex_lock(&r->lock);
    const struct record *rec = find(r, s, slen);
    if (rec != NULL && now < rec->not_after && rec->resp != NULL && now < rec->resp_refresh) {
        *der = OPENSSL_memdup(rec->resp, rec->resp_len);
        if (*der != NULL) {
            *len = rec->resp_len;
            rc = 0;
        }
    }
    pthread_mutex_unlock(&r->lock);
    return rc;
}

void certs_issued_store_response(certs_issued *r, const ASN1_INTEGER *serial,
                                 const unsigned char *der, size_t len, time_t refresh)
{
    unsigned char s[CERTS_SERIAL_MAX];
    size_t slen = certs_serial_bytes(serial, s);
    if (slen == 0)
        return;
    unsigned char *copy = OPENSSL_memdup(der, len);
    if (copy == NULL)
        return;
    pthread_mutex_lock(&r->lock);
    struct record *rec = find(r, s, slen); /* may have been dropped while we signed */
    if (rec != NULL) {
        OPENSSL_free(rec->resp);
        rec->resp = copy;
        rec->resp_len = len;
        rec->resp_refresh = refresh;
        copy = NULL;
    }
    pthread_mutex_unlock(&r->lock);
    OPENSSL_free(copy);
}
