/* Canonical names and addresses (SPEC section 4 "Names and addresses"): every host a decision
 * is made on is put in one form here, and policy, connect, certificate checks and logs use only
 * that form. Pure functions over bytes, libc only, no allocation.
 *
 * Errors are static strings (never freed, compared by pointer where a caller must tell one
 * apart); NULL means success. */
#ifndef HANDOFF_NAMES_H
#define HANDOFF_NAMES_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/** Longest canonical name (RFC 1035 presentation form without the trailing dot). */
#define NAMES_MAX_NAME 253

/** What a canonical host is. */
typedef enum {
    NAMES_NAME = 1, /* a DNS name: lowercase, no trailing dot */
    NAMES_IPV4,     /* dotted quad */
    NAMES_IPV6,     /* RFC 5952 text, never v4-mapped */
} names_kind;

/** A host in canonical form. */
typedef struct {
    names_kind kind;
    size_t len;                    /* strlen(text) */
    char text[NAMES_MAX_NAME + 1]; /* canonical text, NUL-terminated, IPv6 without brackets */
    union {
        struct in_addr v4;  /* kind == NAMES_IPV4 */
        struct in6_addr v6; /* kind == NAMES_IPV6 */
    } addr;
} names_host;

/** A host with its port. */
typedef struct {
    names_host host;
    uint16_t port; /* 1..65535 */
} names_authority;

/** The error names_sni_canonical returns for an IP literal (RFC 6066 section 3 forbids them);
 * the only error a caller may want to treat differently from a malformed SNI. */
extern const char names_err_sni_ip_literal[];

/**
 * Canonicalises a bare host p[0..n) (not NUL-terminated): a name, any IPv4 spelling inet_aton
 * accepts, or an IPv6 address with or without brackets (zone ids refused). v4-mapped IPv6
 * becomes IPv4. A name whose last label is a number but that is no IPv4 address is refused.
 * Names: ASCII letters, digits, `-`, `_` and `.` (hyphens anywhere in a label, as browsers
 * accept), no empty label, at most 253 bytes; A-labels (xn--) pass as they are.
 */
const char *names_host_canonical(const char *p, size_t n, names_host *out);

/** A CONNECT target `host:port` or `[v6]:port`: the port is required. */
const char *names_connect_target(const char *p, size_t n, names_authority *out);

/** A Host header value (without surrounding whitespace): `host[:port]` or `[v6][:port]`;
 * default_port when the port is absent. */
const char *names_host_header(const char *p, size_t n, uint16_t default_port, names_authority *out);

/** An absolute URL's authority (between `//` and the next `/`, `?` or `#`): as a Host header,
 * but userinfo (`user@`) is refused with its own reason. */
const char *names_url_authority(const char *p, size_t n, uint16_t default_port,
                                names_authority *out);

/**
 * Validates and canonicalises TLS server_name bytes: a host name under the rules of
 * names_host_canonical (no IP literal: names_err_sni_ip_literal; no `*`, NUL or control byte),
 * trailing dot removed. out->kind is NAMES_NAME on success.
 */
const char *names_sni_canonical(const uint8_t *p, size_t n, names_host *out);

/** Room names_escape needs for n bytes, NUL included. */
#define NAMES_ESCAPED_SIZE(n) (4 * (n) + 1)

/**
 * Renders p[0..n) printable for a log: bytes 0x20..0x7e pass except `\` and `"`, every other
 * byte becomes `\xHH`. Writes at most out_size bytes, always NUL-terminated (if out_size > 0)
 * and never splitting an escape; returns the length the whole rendering needs, like snprintf.
 */
size_t names_escape(const uint8_t *p, size_t n, char *out, size_t out_size);

/** Copies sa to out, turning a v4-mapped AF_INET6 address into AF_INET (port kept). Returns
 * the length of the result, 0 (out zeroed) when sa is neither AF_INET nor AF_INET6. */
socklen_t names_sockaddr_canonical(const struct sockaddr *sa, struct sockaddr_storage *out);

/** Whether a and b are the same address after canonicalising (ports ignored). */
bool names_sockaddr_same_address(const struct sockaddr *a, const struct sockaddr *b);

/** Whether a and b are the same address and port after canonicalising. */
bool names_sockaddr_same_endpoint(const struct sockaddr *a, const struct sockaddr *b);

/** Whether sa is 0.0.0.0, :: or ::ffff:0.0.0.0 (a wildcard listener's address). */
bool names_sockaddr_is_unspecified(const struct sockaddr *sa);

/** The canonical host of an address (v4-mapped as IPv4). NULL, or an error for a family
 * other than AF_INET/AF_INET6. */
const char *names_host_from_sockaddr(const struct sockaddr *sa, names_host *out);

#endif
