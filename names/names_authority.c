/* Authorities: CONNECT targets, Host headers and absolute URLs' host[:port]. */
#include "names.h"

#include <string.h>

/* RFC 3986 allows an empty port; we refuse it, and port 0, which nothing listens on. */
static const char *parse_port(const char *p, size_t n, uint16_t *out)
{
    if (n == 0)
        return "empty port";
    unsigned long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return "port is not a number";
        v = v * 10 + (unsigned long)(p[i] - '0');
        if (v > 65535)
            return "port out of range";
    }
    if (v == 0)
        return "port 0";
    *out = (uint16_t)v;
    return NULL;
}

/* host[:port] or [v6][:port]; a missing port is an error when default_port is 0. */
static const char *parse_authority(const char *p, size_t n, uint16_t default_port,
                                   names_authority *out)
{
    size_t host_len;
    const char *port = NULL;
    if (n == 0)
        return "empty host";
    if (p[0] == '[') {
        const char *close = memchr(p, ']', n);
        if (!close)
            return "unbalanced brackets in host";
        host_len = (size_t)(close - p) + 1;
        if (host_len < n && p[host_len] != ':')
            return "bytes after a bracketed address";
    } else {
        const char *colon = memchr(p, ':', n);
        host_len = colon ? (size_t)(colon - p) : n;
        /* A second colon would mean a bare IPv6 address, which authorities bracket. */
        if (colon && memchr(colon + 1, ':', n - host_len - 1))
            return "IPv6 address without brackets";
    }
    if (host_len < n)
        port = p + host_len + 1;
    if (host_len == 0)
        return "empty host";
    const char *err = names_host_canonical(p, host_len, &out->host);
    if (err)
        return err;
    if (port)
        return parse_port(port, n - host_len - 1, &out->port);
    if (default_port == 0)
        return "port missing";
    out->port = default_port;
    return NULL;
}

static const char *authority(const char *p, size_t n, uint16_t default_port, names_authority *out)
{
    const char *err = parse_authority(p, n, default_port, out);
    if (err)
        memset(out, 0, sizeof *out);
    return err;
}

const char *names_connect_target(const char *p, size_t n, names_authority *out)
{
    return authority(p, n, 0, out);
}

const char *names_host_header(const char *p, size_t n, uint16_t default_port, names_authority *out)
{
    if (default_port == 0) {
        memset(out, 0, sizeof *out);
        return "no default port";
    }
    return authority(p, n, default_port, out);
}

const char *names_url_authority(const char *p, size_t n, uint16_t default_port,
                                names_authority *out)
{
    /* Credentials in a URL are refused rather than forwarded or logged. */
    if (n > 0 && memchr(p, '@', n)) {
        memset(out, 0, sizeof *out);
        return "userinfo in URL";
    }
    return names_host_header(p, n, default_port, out);
}
