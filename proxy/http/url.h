/* Request targets: CONNECT authorities and absolute http:// URLs. */
#ifndef HANDOFF_URL_H
#define HANDOFF_URL_H

#include <stdint.h>

typedef struct {
    char host[256]; /* lower-case, without brackets for IPv6 */
    uint16_t port;
    const char *path; /* origin-form target inside the parsed string ("/" when absent) */
} url_parts;

/** "host:port" or "[v6]:port". 0 or -1. */
int url_parse_authority(const char *s, url_parts *u);

/** "http://host[:port][/path?query]" (scheme case-insensitive, no userinfo). 0 or -1. */
int url_parse_absolute(const char *s, url_parts *u);

/** A Host header: "host", "host:port", "[v6]" or "[v6]:port"; port 0 when absent. 0 or -1. */
int url_parse_host_header(const char *s, url_parts *u);

#endif
