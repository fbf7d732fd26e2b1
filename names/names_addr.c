/* Socket addresses compared the way the self-check needs: v4-mapped IPv6 is IPv4. */
#include "names.h"

#include <arpa/inet.h>
#include <string.h>

socklen_t names_sockaddr_canonical(const struct sockaddr *sa, struct sockaddr_storage *out)
{
    memset(out, 0, sizeof *out);
    if (sa->sa_family == AF_INET) {
        memcpy(out, sa, sizeof(struct sockaddr_in));
        return sizeof(struct sockaddr_in);
    }
    if (sa->sa_family != AF_INET6)
        return 0;
    struct sockaddr_in6 s6;
    memcpy(&s6, sa, sizeof s6);
    if (!IN6_IS_ADDR_V4MAPPED(&s6.sin6_addr)) {
        memcpy(out, &s6, sizeof s6);
        return sizeof s6;
    }
    struct sockaddr_in *s4 = (struct sockaddr_in *)out;
    s4->sin_family = AF_INET;
    s4->sin_port = s6.sin6_port;
    memcpy(&s4->sin_addr, &s6.sin6_addr.s6_addr[12], sizeof s4->sin_addr);
    return sizeof *s4;
}

/* Compares canonical forms; with_port also compares ports. Unknown families never match. */
static bool same(const struct sockaddr *a, const struct sockaddr *b, bool with_port)
{
    struct sockaddr_storage ca, cb;
    if (names_sockaddr_canonical(a, &ca) == 0 || names_sockaddr_canonical(b, &cb) == 0)
        return false;
    if (ca.ss_family != cb.ss_family)
        return false;
    if (ca.ss_family == AF_INET) {
        const struct sockaddr_in *x = (const struct sockaddr_in *)&ca;
        const struct sockaddr_in *y = (const struct sockaddr_in *)&cb;
        return x->sin_addr.s_addr == y->sin_addr.s_addr &&
               (!with_port || x->sin_port == y->sin_port);
    }
    const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)&ca;
    const struct sockaddr_in6 *y = (const struct sockaddr_in6 *)&cb;
    /* fe80::1 on two interfaces are two addresses. */
    return memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr) == 0 &&
           x->sin6_scope_id == y->sin6_scope_id && (!with_port || x->sin6_port == y->sin6_port);
}

bool names_sockaddr_same_address(const struct sockaddr *a, const struct sockaddr *b)
{
    return same(a, b, false);
}

bool names_sockaddr_same_endpoint(const struct sockaddr *a, const struct sockaddr *b)
{
    return same(a, b, true);
}

bool names_sockaddr_is_unspecified(const struct sockaddr *sa)
{
    struct sockaddr_storage c;
    if (names_sockaddr_canonical(sa, &c) == 0)
        return false;
    if (c.ss_family == AF_INET)
        return ((const struct sockaddr_in *)&c)->sin_addr.s_addr == htonl(INADDR_ANY);
    return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)&c)->sin6_addr);
}

const char *names_host_from_sockaddr(const struct sockaddr *sa, names_host *out)
{
    struct sockaddr_storage c;
    memset(out, 0, sizeof *out);
    if (names_sockaddr_canonical(sa, &c) == 0)
        return "address family is neither IPv4 nor IPv6";
    out->text[0] = '\0';
    if (c.ss_family == AF_INET) {
        out->kind = NAMES_IPV4;
        out->addr.v4 = ((const struct sockaddr_in *)&c)->sin_addr;
        inet_ntop(AF_INET, &out->addr.v4, out->text, sizeof out->text);
    } else {
        out->kind = NAMES_IPV6;
        out->addr.v6 = ((const struct sockaddr_in6 *)&c)->sin6_addr;
        inet_ntop(AF_INET6, &out->addr.v6, out->text, sizeof out->text);
    }
    out->len = strlen(out->text);
    return NULL;
}
