/* A parsed HTTP head held in one bounded buffer, and the rewriting a proxy does to it. */
#ifndef HANDOFF_HTTP_HEAD_H
#define HANDOFF_HTTP_HEAD_H

#include <stdbool.h>
#include <stddef.h>

#include <stdint.h>

/* The request head as parsed, with bounded storage. */
#define HEAD_MAX_HEADERS 128
typedef struct {
    char *buf; /* grows up to max_header_bytes; released when the message is done */
    size_t len, cap;
    size_t wire; /* bytes of the head as sent, separators included */
    uint32_t url_off, url_len;
    struct head_field {
        uint32_t name_off, name_len, value_off, value_len;
    } * h; /* grows with the headers, up to HEAD_MAX_HEADERS */
    unsigned count;
    unsigned capacity; /* entries allocated in h */
    bool in_value;
    bool overflow; /* head larger than max_header_bytes */
    bool too_many; /* more than HEAD_MAX_HEADERS */
} http_head;

typedef enum { HEAD_URL, HEAD_FIELD, HEAD_VALUE } head_part;

/** Empties the head; the buffer is kept. max is the bound on its size. */
void head_reset(http_head *h);

/** Empties the head and gives its buffer and index back (an idle connection holds neither). */
void head_release(http_head *h);

/** How many headers are called name (case-insensitive). */
unsigned head_count(const http_head *h, const char *name);

/** Appends a span llhttp reported. -1 when the head would exceed max bytes or headers. */
int head_append(http_head *h, head_part part, const char *at, size_t len, size_t max);

/** Marks the end of the current header's value (llhttp on_header_value_complete). */
void head_value_done(http_head *h);

/** The value of the first header called name (case-insensitive), or NULL; *len set. */
const char *head_get(const http_head *h, const char *name, size_t *len);

/** Whether a comma-separated header name holds token (case-insensitive), e.g. Connection: close. */
bool head_has_token(const http_head *h, const char *name, const char *token);

/** Whether header i must not be forwarded: hop-by-hop, named in Connection, or Proxy-*. */
bool head_is_hop_by_hop(const http_head *h, unsigned i);

/** A growable output buffer with a hard bound. */
typedef struct {
    char *data;
    size_t len, cap;
    bool overflow;
} out_buf;

void out_init(out_buf *o, char *storage, size_t cap);
void out_add(out_buf *o, const char *s, size_t len);
void out_addf(out_buf *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/** A bound on the forwarded form of h: its bytes, their separators, a start line and the
 * headers the proxy adds (Via, Host, framing, Upgrade). */
size_t head_forward_size(const http_head *h);

/**
 * Writes the end-to-end headers of h (hop-by-hop removed), then Via, to o. Headers listed in
 * skip (NULL-terminated, case-insensitive) are left out too.
 */
void head_write_forwarded(const http_head *h, out_buf *o, const char *const *skip);

/** Appends every value of the headers called name, joined with ", " (one field, RFC 9110). */
void head_join(const http_head *h, const char *name, out_buf *o);

#endif
