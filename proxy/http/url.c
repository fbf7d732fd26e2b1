#include "url.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int parse_port(const char *p, size_t len, uint16_t *out)
{
    if (len == 0 || len > 5)
        return -1;
    unsigned v = 0;
    for (size_t i = 0; i < len; i++) {
        if (!isdigit((unsigned char)p[i]))
            return -1;
        v = v * 10 + (unsigned)(p[i] - '0');
    }
    if (v == 0 || v > 65535)
        return -1;
    *out = (uint16_t)v;
    return 0;
}

static int set_host(url_parts *u, const char *h, size_t len)
{
    if (len == 0 || len >= sizeof u->host)
        return -1;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)h[i];
        if (!isalnum(c) && c != '-' && c != '.' && c != '_' && c != ':')
            return -1;
        u->host[i] = (char)tolower(c);
    }
    u->host[len] = '\0';
    return 0;
}

/* host[:port] or [v6][:port] in s[0..len); default_port when the port is absent (0: required). */
static int parse_hostport(const char *s, size_t len, uint16_t default_port, url_parts *u)
{
    const char *port = NULL;
    size_t hlen;
    if (len && s[0] == '[') {
        const char *end = memchr(s, ']', len);
        if (!end)
            return -1;
        if (set_host(u, s + 1, (size_t)(end - s - 1)) != 0 || !strchr(u->host, ':'))
            return -1;
        size_t rest = len - (size_t)(end + 1 - s);
        if (rest) {
            if (end[1] != ':')
                return -1;
            port = end + 2;
        }
        hlen = 0;
    } else {
        const char *colon = memchr(s, ':', len);
        hlen = colon ? (size_t)(colon - s) : len;
        if (set_host(u, s, hlen) != 0 || strchr(u->host, ':'))
            return -1;
        if (colon)
            port = colon + 1;
    }
    if (port)
        return parse_port(port, len - (size_t)(port - s), &u->port);
    if (!default_port)
        return -1;
    u->port = default_port;
    return 0;
}

int url_parse_authority(const char *s, url_parts *u)
{
    u->path = "";
    return parse_hostport(s, strlen(s), 0, u);
}

int url_parse_absolute(const char *s, url_parts *u)
{
    if (strncasecmp(s, "http://", 7) != 0)
        return -1;
    const char *auth = s + 7;
    size_t alen = strcspn(auth, "/?#");
    if (memchr(auth, '@', alen))
        return -1; /* credentials in the URL are refused rather than forwarded */
    if (parse_hostport(auth, alen, 80, u) != 0)
        return -1;
    u->path = auth[alen] == '/' ? auth + alen : "/";
    if (auth[alen] == '?') /* "http://h?q" means "/?q" but we cannot prepend in place */
        return -1;
    return 0;
}

int url_parse_host_header(const char *s, url_parts *u)
{
    u->path = "";
    bool has_port = s[0] == '[' ? strstr(s, "]:") != NULL : strchr(s, ':') != NULL;
    if (has_port)
        return parse_hostport(s, strlen(s), 0, u);
    if (parse_hostport(s, strlen(s), 1, u) != 0)
        return -1;
    u->port = 0;
    return 0;
}
