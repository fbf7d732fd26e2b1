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
    const uint8_t *b;
    int family = sa->sa_family;
    if (family == AF_INET) {
        b = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
    } else {
        b = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
        /* A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d: canonically IPv4, as the
         * compiler stores v4-mapped blocks. */
        static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(b, v4_mapped, sizeof v4_mapped) == 0) {
            b += 12;
            family = AF_INET;
        }
    }
    return c->family == family && prefix_matches(b, c);
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
    case COND_GROUP: /* the groups are those of the user: unknown while the user is */
        return f->user && f->user[0];
    case COND_PROXY_MODE:
        return f->mode && f->mode[0];
    }
    return false;
}

static bool in_groups(const policy_facts *f, const char *group)
{
    for (size_t i = 0; f->groups && i < f->group_count; i++)
        if (f->groups[i] && strcmp(f->groups[i], group) == 0)
            return true;
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
    case COND_GROUP:
        return in_groups(f, v->text);
    case COND_PROXY_MODE:
        return equals_ci(f->mode, strlen(f->mode), v->text, strlen(v->text));
    }
    return false;
}

static bool condition_matches_scan(const struct condition *c, const policy_facts *f)
{
    if (!fact_known(c->kind, f))
        return false;
    bool any = false;
    for (size_t i = 0; i < c->value_count && !any; i++)
        any = value_matches(c->kind, &c->values[i], f);
    return any != c->negated;
}

/* Whether the set of a url.host / url.domain condition holds the host (or, for url.domain, one
 * of its label suffixes: the same test as domain_matches on each value). */
static bool set_matches(const struct condition *c, struct host_view h)
{
    size_t count;
    if (c->kind == COND_URL_HOST) {
        policy_str_index_find(c->set, h.s, h.n, &count);
        return count > 0;
    }
    for (size_t i = 0; i < h.n; i++) {
        if (i > 0 && h.s[i - 1] != '.')
            continue;
        policy_str_index_find(c->set, h.s + i, h.n - i, &count);
        if (count)
            return true;
    }
    return false;
}

bool policy_condition_matches(const struct condition *c, const policy_facts *f)
{
    if (!c->set)
        return condition_matches_scan(c, f);
    if (!fact_known(c->kind, f))
        return false;
    return set_matches(c, host_view(f->host)) != c->negated;
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

static bool rule_matches(const struct rule *rule, const policy_facts *facts, bool scan)
{
    for (size_t c = 0; c < rule->condition_count; c++) {
        const struct condition *cond = &rule->conditions[c];
        if (!(scan ? condition_matches_scan(cond, facts) : policy_condition_matches(cond, facts)))
            return false;
    }
    return true;
}

bool policy_identity_pending(const policy_facts *facts, policy_checkpoint cp)
{
    return cp == POLICY_CP_REQUEST && !(facts->user && facts->user[0]) && !facts->identity_withheld;
}

static struct layer_match layer_result(const struct layer *layer, size_t matched,
                                       bool identity_pending)
{
    struct layer_match m = {matched < layer->rule_count ? &layer->rules[matched] : NULL, false};
    m.needs_identity = identity_pending && layer->index.first_identity_rule < matched;
    return m;
}

struct layer_match policy_layer_match_scan(const struct layer *layer, const policy_facts *facts,
                                           bool identity_pending)
{
    struct layer_match m = {NULL, false};
    for (size_t r = 0; r < layer->rule_count; r++) {
        const struct rule *rule = &layer->rules[r];
        if (rule_matches(rule, facts, true)) {
            m.rule = rule;
            return m;
        }
        if (identity_pending && rule->names_identity)
            m.needs_identity = true;
    }
    return m;
}

/* Enough for a host of 253 bytes (127 labels), the exact-host list and the unkeyed rules. */
#define MAX_RUNS 130

struct run {
    const uint32_t *ids;
    size_t count;
};

/* Gathers the rule lists that can match the host: exact hosts, each label suffix for domains,
 * and the rules with no host key. False when the host has too many labels for the array. */
static bool gather_runs(const struct layer_index *ix, const policy_facts *facts, struct run *runs,
                        size_t *n)
{
    *n = 0;
    runs[(*n)++] = (struct run){ix->others, ix->other_count};
    if (!(facts->host && facts->host[0]))
        return true; /* host conditions do not match an unknown host */
    struct host_view h = host_view(facts->host);
    struct run r;
    r.ids = policy_str_index_find(&ix->hosts, h.s, h.n, &r.count);
    if (r.count)
        runs[(*n)++] = r;
    for (size_t i = 0; i < h.n; i++) {
        if (i > 0 && h.s[i - 1] != '.')
            continue;
        r.ids = policy_str_index_find(&ix->domains, h.s + i, h.n - i, &r.count);
        if (!r.count)
            continue;
        if (*n == MAX_RUNS)
            return false;
        runs[(*n)++] = r;
    }
    return true;
}

struct layer_match policy_layer_match(const struct layer *layer, const policy_facts *facts,
                                      bool identity_pending)
{
    struct run runs[MAX_RUNS];
    size_t n;
    if (!gather_runs(&layer->index, facts, runs, &n))
        return policy_layer_match_scan(layer, facts, identity_pending);
    /* Merge the ascending lists, testing candidates in rule order; the first match wins. A rule
     * listed under several suffixes comes up once per list: test it once. */
    uint32_t last = UINT32_MAX;
    for (;;) {
        size_t best = n;
        for (size_t i = 0; i < n; i++)
            if (runs[i].count && (best == n || runs[i].ids[0] < runs[best].ids[0]))
                best = i;
        if (best == n)
            return layer_result(layer, layer->rule_count, identity_pending);
        uint32_t id = runs[best].ids[0];
        runs[best].ids++;
        runs[best].count--;
        if (id == last)
            continue;
        last = id;
        if (rule_matches(&layer->rules[id], facts, false))
            return layer_result(layer, id, identity_pending);
    }
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
    if (rule->authenticate)
        out->authenticate = rule->authenticate;
    if (rule->check_revocation)
        out->check_revocation = rule->check_revocation;
    if (rule->http2)
        out->http2 = rule->http2;
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
    bool pending = policy_identity_pending(facts, cp);
    for (size_t l = 0; l < p->layer_count; l++) {
        if (!policy_layer_consulted(p->layers[l].type, cp))
            continue;
        struct layer_match m = policy_layer_match(&p->layers[l], facts, pending);
        if (m.needs_identity)
            out->needs_identity = true;
        if (m.rule)
            policy_apply_rule(p, m.rule, out);
    }
}
