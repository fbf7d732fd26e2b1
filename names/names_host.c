/* Host canonicalisation: names, every IPv4 spelling inet_aton accepts, IPv6 (RFC 5952). */
#include "names.h"

#include <arpa/inet.h>
#include <string.h>

const char names_err_sni_ip_literal[] = "SNI is an IP literal";

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static bool is_hex(unsigned char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static const char *set_ipv4(names_host *out, struct in_addr a)
{
    out->kind = NAMES_IPV4;
    out->addr.v4 = a;
    inet_ntop(AF_INET, &a, out->text, sizeof out->text);
    out->len = strlen(out->text);
    return NULL;
}

static const char *set_ipv6(names_host *out, const struct in6_addr *a)
{
    if (IN6_IS_ADDR_V4MAPPED(a)) {
        struct in_addr v4;
        memcpy(&v4, &a->s6_addr[12], sizeof v4);
        return set_ipv4(out, v4);
    }
    out->kind = NAMES_IPV6;
    out->addr.v6 = *a;
    inet_ntop(AF_INET6, a, out->text, sizeof out->text); /* glibc writes RFC 5952 text */
    out->len = strlen(out->text);
    return NULL;
}

/* p[0..n) must be all IPv6 text; the characters are checked first so that a NUL cannot
 * shorten what inet_pton sees. */
static const char *ipv6_literal(const char *p, size_t n, names_host *out)
{
    char buf[INET6_ADDRSTRLEN];
    if (n == 0)
        return "empty host";
    if (memchr(p, '%', n))
        return "IPv6 zone id in host";
    if (n >= sizeof buf)
        return "bad IPv6 address";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (!is_hex(c) && c != ':' && c != '.')
            return "bad IPv6 address";
    }
    memcpy(buf, p, n);
    buf[n] = '\0';
    struct in6_addr a;
    if (inet_pton(AF_INET6, buf, &a) != 1)
        return "bad IPv6 address";
    return set_ipv6(out, &a);
}

/* Why a byte cannot be part of a host name, or NULL if it can. */
static const char *name_byte_error(unsigned char c)
{
    if (c == 0)
        return "NUL byte in host";
    if (c < 0x20 || c == 0x7f)
        return "control byte in host";
    if (c >= 0x80)
        return "non-ASCII byte in host (IDNA names must be A-labels)";
    if (c == '*')
        return "wildcard in host";
    if (is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' || c == '_' ||
        c == '.')
        return NULL;
    return "character not allowed in host";
}

/* A label that a URL parser reads as a number (WHATWG URL "ends in a number"): decimal or
 * octal digits, or 0x followed by hex digits. */
static bool label_is_number(const char *l, size_t n)
{
    size_t i = 0;
    bool hex = n >= 2 && l[0] == '0' && l[1] == 'x';
    if (hex)
        i = 2;
    else if (n == 0)
        return false;
    for (; i < n; i++)
        if (hex ? !is_hex((unsigned char)l[i]) : !is_digit((unsigned char)l[i]))
            return false;
    return true;
}

static const char *name_or_ipv4(const char *p, size_t n, names_host *out)
{
    /* One trailing dot is allowed on top of the 253 bytes. */
    if (n > NAMES_MAX_NAME + 1)
        return "host longer than 253 bytes";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        const char *err = name_byte_error(c);
        if (err)
            return err;
        out->text[i] = (char)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    }
    if (n > 0 && out->text[n - 1] == '.')
        n--;
    if (n == 0)
        return "empty host";
    if (n > NAMES_MAX_NAME)
        return "host longer than 253 bytes";
    out->text[n] = '\0';

    const char *label = out->text;
    size_t label_len = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && out->text[i] != '.') {
            label_len++;
            continue;
        }
        if (label_len == 0)
            return "empty label in host";
        if (i < n) {
            label = out->text + i + 1;
            label_len = 0;
        }
    }

    /* Numbers go through inet_aton because getaddrinfo does: what it would connect to is
     * what policy must see. A numeric last label that inet_aton refuses (1.2.3.4.5,
     * 999.1.1.1) is refused too: no top-level domain is numeric (RFC 1123 section 2.1), and
     * resolvers and browsers disagree on what such a host means. */
    if (label_is_number(label, label_len)) {
        struct in_addr a;
        if (inet_aton(out->text, &a) == 0)
            return "numeric host that is not an IPv4 address";
        return set_ipv4(out, a);
    }
    out->kind = NAMES_NAME;
    out->len = n;
    return NULL;
}

static const char *host_canonical(const char *p, size_t n, names_host *out)
{
    if (n == 0)
        return "empty host";
    if (p[0] == '[') {
        if (n < 2 || p[n - 1] != ']')
            return "unbalanced brackets in host";
        return ipv6_literal(p + 1, n - 2, out);
    }
    if (memchr(p, ':', n))
        return ipv6_literal(p, n, out);
    return name_or_ipv4(p, n, out);
}

const char *names_host_canonical(const char *p, size_t n, names_host *out)
{
    const char *err = host_canonical(p, n, out);
    if (err)
        memset(out, 0, sizeof *out); /* never a half-written name */
    return err;
}

const char *names_sni_canonical(const uint8_t *p, size_t n, names_host *out)
{
    if (n == 0) {
        memset(out, 0, sizeof *out);
        return "empty SNI";
    }
    const char *err = names_host_canonical((const char *)p, n, out);
    if (err)
        return err;
    /* RFC 6066 section 3 forbids literal addresses in HostName; taken as a name, one would
     * let a CONNECT to one address claim to be another. */
    if (out->kind != NAMES_NAME) {
        memset(out, 0, sizeof *out);
        return names_err_sni_ip_literal;
    }
    return NULL;
}
