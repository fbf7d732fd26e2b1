#include "pac.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_head.h"

#define PAC_MAX 65536

static int cidr_mask(const char *entry, char *net, size_t netlen, char *mask, size_t masklen)
{
    const char *slash = strchr(entry, '/');
    char addr[64];
    size_t alen = slash ? (size_t)(slash - entry) : strlen(entry);
    if (alen >= sizeof addr)
        return -1;
    memcpy(addr, entry, alen);
    addr[alen] = '\0';
    struct in_addr a;
    if (inet_pton(AF_INET, addr, &a) != 1)
        return -1;
    long bits = 32;
    if (slash) {
        char *end;
        bits = strtol(slash + 1, &end, 10);
        if (*end || end == slash + 1 || bits < 0 || bits > 32)
            return -1;
    }
    uint32_t m = bits == 0 ? 0 : htonl(~0u << (32 - bits));
    struct in_addr ma = {.s_addr = m};
    a.s_addr &= m;
    if (!inet_ntop(AF_INET, &a, net, (socklen_t)netlen) ||
        !inet_ntop(AF_INET, &ma, mask, (socklen_t)masklen))
        return -1;
    return 0;
}

static bool valid_name(const char *s)
{
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("-.*?_", *s))
            return false;
    return true;
}

char *pac_generate(const char *proxy, const char *direct, size_t *len, char *err, size_t errlen)
{
    char *storage = malloc(PAC_MAX);
    char list[1024];
    if (!storage) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (strchr(proxy, '"') || strchr(proxy, '\\')) {
        snprintf(err, errlen, "[pac] proxy must not contain quotes");
        free(storage);
        return NULL;
    }
    out_buf o;
    out_init(&o, storage, PAC_MAX - 1);
    out_addf(&o, "function FindProxyForURL(url, host) {\n"
                 "    if (isPlainHostName(host))\n"
                 "        return \"DIRECT\";\n"
                 "    var ipv4 = /^[0-9]+\\.[0-9]+\\.[0-9]+\\.[0-9]+$/.test(host);\n");
    snprintf(list, sizeof list, "%s", direct);
    for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        while (isspace((unsigned char)*tok))
            tok++;
        size_t n = strlen(tok);
        while (n && isspace((unsigned char)tok[n - 1]))
            tok[--n] = '\0';
        if (!n)
            continue;
        char net[32], mask[32];
        if (isdigit((unsigned char)tok[0]) &&
            cidr_mask(tok, net, sizeof net, mask, sizeof mask) == 0) {
            out_addf(&o,
                     "    if (ipv4 && isInNet(host, \"%s\", \"%s\"))\n        return \"DIRECT\";\n",
                     net, mask);
        } else if (!valid_name(tok) || strchr(tok, '/')) {
            snprintf(err, errlen,
                     "[pac] direct: '%s' is neither a host name, a pattern nor an IPv4 CIDR", tok);
            free(storage);
            return NULL;
        } else if (strpbrk(tok, "*?")) {
            out_addf(&o, "    if (shExpMatch(host, \"%s\"))\n        return \"DIRECT\";\n", tok);
        } else {
            const char *name = tok[0] == '.' ? tok + 1 : tok;
            out_addf(&o,
                     "    if (host == \"%s\" || dnsDomainIs(host, \".%s\"))\n"
                     "        return \"DIRECT\";\n",
                     name, name);
        }
    }
    out_addf(&o, "    return \"%s\";\n}\n", proxy);
    if (o.overflow) {
        snprintf(err, errlen, "[pac] direct list too long");
        free(storage);
        return NULL;
    }
    storage[o.len] = '\0';
    *len = o.len;
    return storage;
}
