#include "http_head.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define HEAD_INITIAL 4096

void head_reset(http_head *h)
{
    h->len = 0;
    h->wire = 0;
    h->url_off = h->url_len = 0;
    h->count = 0;
    h->in_value = false;
    h->overflow = false;
    h->too_many = false;
}

void head_release(http_head *h)
{
    free(h->buf);
    h->buf = NULL;
    h->cap = 0;
    free(h->h);
    h->h = NULL;
    h->capacity = 0;
    head_reset(h);
}

static int reserve(http_head *h, size_t extra, size_t max)
{
    if (h->len + extra > max) {
        h->overflow = true;
        return -1;
    }
    if (h->len + extra <= h->cap)
        return 0;
    size_t cap = h->cap ? h->cap : HEAD_INITIAL;
    while (cap < h->len + extra)
        cap *= 2;
    if (cap > max)
        cap = max;
    char *p = realloc(h->buf, cap);
    if (!p)
        return -1;
    h->buf = p;
    h->cap = cap;
    return 0;
}

void head_value_done(http_head *h)
{
    /* An empty value may never reach head_append: the next field starts a new header. */
    if (h->count > 0)
        h->in_value = true;
}

int head_append(http_head *h, head_part part, const char *at, size_t len, size_t max)
{
    /* Each span costs its separators in the head as sent: count them against max too. */
    h->wire += len + 2;
    if (h->wire > max) {
        h->overflow = true;
        return -1;
    }
    if (reserve(h, len, max) != 0)
        return -1;
    switch (part) {
    case HEAD_URL:
        if (h->url_len == 0)
            h->url_off = (uint32_t)h->len;
        h->url_len += (uint32_t)len;
        break;
    case HEAD_FIELD:
        if (h->count == 0 || h->in_value) {
            if (h->count == HEAD_MAX_HEADERS) {
                h->too_many = true;
                return -1;
            }
            if (h->count == h->capacity) {
                unsigned cap = h->capacity ? h->capacity * 2 : 16;
                struct head_field *p = realloc(h->h, cap * sizeof *p);
                if (!p)
                    return -1;
                h->h = p;
                h->capacity = cap;
            }
            h->h[h->count].name_off = (uint32_t)h->len;
            h->h[h->count].name_len = 0;
            h->h[h->count].value_off = (uint32_t)h->len;
            h->h[h->count].value_len = 0;
            h->count++;
            h->in_value = false;
        }
        h->h[h->count - 1].name_len += (uint32_t)len;
        break;
    case HEAD_VALUE:
        if (h->count == 0)
            return -1;
        if (!h->in_value) {
            h->h[h->count - 1].value_off = (uint32_t)h->len;
            h->in_value = true;
        }
        h->h[h->count - 1].value_len += (uint32_t)len;
        break;
    }
    if (len) {
        memcpy(h->buf + h->len, at, len);
        h->len += len;
    }
    return 0;
}

static bool name_is(const http_head *h, unsigned i, const char *name)
{
    size_t n = strlen(name);
    return h->h[i].name_len == n && strncasecmp(h->buf + h->h[i].name_off, name, n) == 0;
}

const char *head_get(const http_head *h, const char *name, size_t *len)
{
    for (unsigned i = 0; i < h->count; i++)
        if (name_is(h, i, name)) {
            *len = h->h[i].value_len;
            return h->buf + h->h[i].value_off;
        }
    return NULL;
}

void head_join(const http_head *h, const char *name, out_buf *o)
{
    bool first = true;
    for (unsigned i = 0; i < h->count; i++) {
        if (!name_is(h, i, name))
            continue;
        if (!first)
            out_add(o, ", ", 2);
        out_add(o, h->buf + h->h[i].value_off, h->h[i].value_len);
        first = false;
    }
}

unsigned head_count(const http_head *h, const char *name)
{
    unsigned n = 0;
    for (unsigned i = 0; i < h->count; i++)
        n += name_is(h, i, name);
    return n;
}

static bool list_has_token(const char *v, size_t len, const char *token, size_t tlen)
{
    size_t i = 0;
    while (i < len) {
        while (i < len && (v[i] == ',' || v[i] == ' ' || v[i] == '\t'))
            i++;
        size_t start = i;
        while (i < len && v[i] != ',')
            i++;
        size_t end = i;
        while (end > start && (v[end - 1] == ' ' || v[end - 1] == '\t'))
            end--;
        if (end - start == tlen && strncasecmp(v + start, token, tlen) == 0)
            return true;
    }
    return false;
}

bool head_has_token(const http_head *h, const char *name, const char *token)
{
    for (unsigned i = 0; i < h->count; i++)
        if (name_is(h, i, name) &&
            list_has_token(h->buf + h->h[i].value_off, h->h[i].value_len, token, strlen(token)))
            return true;
    return false;
}

static const char *const hop_by_hop[] = {
    "Connection",
    "Keep-Alive",
    "Proxy-Connection",
    "Proxy-Authorization",
    "Proxy-Authenticate",
    "TE",
    "Trailer",
    "Transfer-Encoding",
    "Upgrade",
    NULL,
};

bool head_is_hop_by_hop(const http_head *h, unsigned i)
{
    for (const char *const *p = hop_by_hop; *p; p++)
        if (name_is(h, i, *p))
            return true;
    /* Headers named by Connection are hop-by-hop too (RFC 9110 7.6.1). */
    for (unsigned j = 0; j < h->count; j++)
        if (name_is(h, j, "Connection") &&
            list_has_token(h->buf + h->h[j].value_off, h->h[j].value_len, h->buf + h->h[i].name_off,
                           h->h[i].name_len))
            return true;
    return false;
}

void out_init(out_buf *o, char *storage, size_t cap)
{
    o->data = storage;
    o->len = 0;
    o->cap = cap;
    o->overflow = false;
}

void out_add(out_buf *o, const char *s, size_t len)
{
    if (o->len + len > o->cap) {
        o->overflow = true;
        return;
    }
    memcpy(o->data + o->len, s, len);
    o->len += len;
}

void out_addf(out_buf *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->data + o->len, o->cap - o->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= o->cap - o->len) {
        o->overflow = true;
        return;
    }
    o->len += (size_t)n;
}

size_t head_forward_size(const http_head *h)
{
    /* ": " and CRLF per header; 1 KiB for the start line's fixed parts, Via, a Host of up to
     * 255 bytes and a port, framing and Connection/Upgrade (whose value is already counted). */
    return h->len + 4 * (size_t)h->count + 1024;
}

void head_write_forwarded(const http_head *h, out_buf *o, const char *const *skip)
{
    for (unsigned i = 0; i < h->count; i++) {
        if (head_is_hop_by_hop(h, i))
            continue;
        bool skipped = false;
        for (const char *const *p = skip; p && *p && !skipped; p++)
            skipped = name_is(h, i, *p);
        if (skipped)
            continue;
        out_add(o, h->buf + h->h[i].name_off, h->h[i].name_len);
        out_add(o, ": ", 2);
        out_add(o, h->buf + h->h[i].value_off, h->h[i].value_len);
        out_add(o, "\r\n", 2);
    }
    out_add(o, "Via: 1.1 handoff\r\n", 18);
}
