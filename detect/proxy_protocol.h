/* HAProxy's PROXY protocol (doc/proxy-protocol.txt), v1 text and v2 binary: a pure parser of
 * the header a load balancer puts before a connection's first byte. */
#ifndef HANDOFF_PROXY_PROTOCOL_H
#define HANDOFF_PROXY_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "detect.h"

/** A v1 line is at most this long, CRLF included (the spec's worst case). */
#define PROXY_PROTOCOL_V1_MAX 107

/** A v2 header longer than this is refused. HAProxy's longest (a 216-byte AF_UNIX block plus
 * ALPN, authority, unique id, SSL and CRC32C TLVs) is well under 1 KiB; the bound keeps what
 * an untrusted peer can make us buffer small and within one detection buffer. */
#define PROXY_PROTOCOL_V2_MAX 4096

/** The command of a header. */
typedef enum {
    PROXY_PROTOCOL_PROXY = 1, /* relayed: the addresses (if any) are the client's */
    PROXY_PROTOCOL_LOCAL,     /* v2 LOCAL: the balancer's own connection (a health check) */
} proxy_protocol_command;

/** What a complete header says. */
typedef struct {
    size_t header_len;              /* bytes to skip before the client's own data */
    unsigned version;               /* 1 or 2 */
    proxy_protocol_command command; /* PROXY_PROTOCOL_LOCAL for v2 LOCAL only */
    bool has_addresses; /* false for LOCAL, v1 UNKNOWN and v2 families other than TCP over
                           IPv4/IPv6: the connection's own addresses stand */
    struct sockaddr_storage source; /* AF_INET or AF_INET6 with port, as sent (a v4-mapped
                                       source stays AF_INET6) */
    struct sockaddr_storage destination;
    const char *error; /* why the answer is DETECT_NO; NULL otherwise */
} proxy_protocol_header;

/**
 * Parses a PROXY header at the start of p[0..n). DETECT_MATCH: *out describes it and
 * out->header_len bytes belong to it. DETECT_NEED_MORE: p is a proper prefix of a header that
 * may still be valid. DETECT_NO: not a valid header whatever follows, out->error says why.
 */
detect_answer proxy_protocol_parse(const uint8_t *p, size_t n, proxy_protocol_header *out);

#endif
