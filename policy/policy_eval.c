/* Evaluates a compiled policy against the facts of one connection. Pure: no allocation, no I/O. */
#include "policy_internal.h"

#include <netinet/in.h>
#include <string.h>

static char ascii_lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

/* The host as compared: without IPv6 brackets and without one trailing dot. */
struct host_view {
    const char *s;
    size_t n;
};

static struct host_view host_view(const char *host)
{
    struct host_view h = {host, strlen(host)};
    if (h.n >= 2 && h.s[0] == '[' && h.s[h.n - 1] == ']') {
        h.s++;
        h.n -= 2;
    }
    if (h.n > 1 && h.s[h.n - 1] == '.')
        h.n--;
    return h;
}

/* pattern is already lower-case (the compiler stores it so). */
static bool equals_ci(const char *s, size_t n, const char *pattern, size_t m)
{
    if (n != m)
        return false;
    for (size_t i = 0; i < n; i++)
        if (ascii_lower(s[i]) != pattern[i])
            return false;
    return true;
}

static bool domain_matches(struct host_view h, const char *domain)
{
    size_t m = strlen(domain);
    if (h.n == m)
        return equals_ci(h.s, h.n, domain, m);
    /* Only a whole label may precede the domain: evilexample.com is not in example.com. */
    return h.n > m && h.s[h.n - m - 1] == '.' && equals_ci(h.s + h.n - m, m, domain, m);
}

static bool contains_ci(struct host_view h, const char *needle)
{
    size_t m = strlen(needle);
    for (size_t i = 0; i + m <= h.n; i++)
        if (equals_ci(h.s + i, m, needle, m))
            return true;
    return false;
}

/* Compares with an upper-case pattern, the form methods are stored in. */
static bool method_matches(const char *method, const char *pattern)
{
    size_t i = 0;
    for (; method[i] && pattern[i]; i++) {
        char c = method[i];
        if ((c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c) != pattern[i])
            return false;
    }
    return method[i] == pattern[i];
}

static bool prefix_matches(const uint8_t *addr, const struct cidr *c)
{
    int whole = c->prefix / 8, bits = c->prefix % 8;
    if (memcmp(addr, c->bytes, (size_t)whole) != 0)
        return false;
    if (bits == 0)
        return true;
    uint8_t mask = (uint8_t)(0xffu << (8 - bits));
    return (addr[whole] & mask) == c->bytes[whole];
}

static bool address_matches(const struct sockaddr *sa, const struct cidr *c)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        return c->family == AF_INET && prefix_matches((const uint8_t *)&in->sin_addr, c);
    }
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
    const uint8_t *b = in6->sin6_addr.s6_addr;
    if (c->family == AF_INET6)
        return prefix_matches(b, c);
    /* A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d; IPv4 rules must still apply. */
    static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return memcmp(b, v4_mapped, sizeof v4_mapped) == 0 && prefix_matches(b + 12, c);
}

static bool fact_known(cond_kind kind, const policy_facts *f)
{
    switch (kind) {
    case COND_URL_DOMAIN:
    case COND_URL_HOST:
    case COND_URL_HOST_SUBSTRING:
        return f->host && f->host[0];
    case COND_URL_PORT:
        return f->port >= 0;
    case COND_CLIENT_ADDRESS:
        return f->client && (f->client->sa_family == AF_INET || f->client->sa_family == AF_INET6);
    case COND_METHOD:
        return f->method && f->method[0];
    case COND_CLIENT_PROTOCOL:
        return f->protocol && f->protocol[0];
    case COND_TUNNELED:
        return f->tunneled == 0 || f->tunneled == 1;
    case COND_USER:
        return f->user && f->user[0];
    }
    return false;
}

static bool value_matches(cond_kind kind, const union cond_value *v, const policy_facts *f)
{
    switch (kind) {
    case COND_URL_DOMAIN:
        return domain_matches(host_view(f->host), v->text);
    case COND_URL_HOST: {
        struct host_view h = host_view(f->host);
        return equals_ci(h.s, h.n, v->text, strlen(v->text));
    }
    case COND_URL_HOST_SUBSTRING:
        return contains_ci(host_view(f->host), v->text);
    case COND_URL_PORT:
        return f->port == v->number;
    case COND_CLIENT_ADDRESS:
        return address_matches(f->client, &v->cidr);
    case COND_METHOD:
        return method_matches(f->method, v->text);
    case COND_CLIENT_PROTOCOL:
        return equals_ci(f->protocol, strlen(f->protocol), v->text, strlen(v->text));
    case COND_TUNNELED:
        return f->tunneled == v->number;
    case COND_USER:
        return strcmp(f->user, v->text) == 0;
    }
    return false;
}

static bool condition_matches(const struct condition *c, const policy_facts *f)
{
    if (!fact_known(c->kind, f))
        return false;
    bool any = false;
    for (size_t i = 0; i < c->value_count && !any; i++)
        any = value_matches(c->kind, &c->values[i], f);
    return any != c->negated;
}

bool policy_layer_consulted(layer_type type, policy_checkpoint cp)
{
    switch (cp) {
    case POLICY_CP_REQUEST:
    case POLICY_CP_DETECTED:
        return type == LAYER_PROXY;
    case POLICY_CP_TLS:
        return type == LAYER_SSL_INTERCEPT;
    }
    return false;
}

const struct rule *policy_layer_match(const struct layer *layer, const policy_facts *facts)
{
    for (size_t r = 0; r < layer->rule_count; r++) {
        const struct rule *rule = &layer->rules[r];
        size_t c = 0;
        while (c < rule->condition_count && condition_matches(&rule->conditions[c], facts))
            c++;
        if (c == rule->condition_count)
            return rule;
    }
    return NULL;
}

void policy_apply_rule(const policy *p, const struct rule *rule, policy_decision *out)
{
    policy_where where = {p->file, rule->line};
    if (rule->verdict) {
        out->verdict = rule->verdict;
        out->verdict_rule = where;
    }
    if (rule->detect_protocol)
        out->detect_protocol = rule->detect_protocol;
    if (rule->ssl_forward_proxy)
        out->ssl_forward_proxy = rule->ssl_forward_proxy;
    if (rule->tunnel_on_protocol_error)
        out->tunnel_on_protocol_error = rule->tunnel_on_protocol_error;
    if (rule->verify_server)
        out->verify_server = rule->verify_server;
    out->last_rule = where;
}

const char *policy_layer_name(layer_type type)
{
    return type == LAYER_SSL_INTERCEPT ? "<ssl-intercept>" : "<proxy>";
}

void policy_evaluate(const policy *p, const policy_facts *facts, policy_checkpoint cp,
                     policy_decision *out)
{
    memset(out, 0, sizeof *out);
    if (!p || !facts)
        return;
    for (size_t l = 0; l < p->layer_count; l++) {
        if (!policy_layer_consulted(p->layers[l].type, cp))
            continue;
        const struct rule *rule = policy_layer_match(&p->layers[l], facts);
        if (rule)
            policy_apply_rule(p, rule, out);
    }
}
