/* Compiles policy text into the immutable form of policy_internal.h.
 * The text is read line by line; every error is recorded with FILE:LINE:COL and parsing goes on,
 * so one run reports all the mistakes of a file. */
#include "policy_internal.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* A runaway file (or fuzz input) must not produce an unbounded list of errors. */
#define MAX_ERRORS 100
/* Longest piece of offending text quoted in a message. */
#define QUOTE_MAX 40
/* Lines are counted in an int. */
#define MAX_TEXT_BYTES (64u * 1024 * 1024)

typedef enum { NO_LAYER = 0, IN_LAYER, BAD_LAYER } layer_state;

struct parser {
    policy *p;
    policy_errors *errs;
    const char *file;
    int line;
    layer_state state;
    size_t error_count;
    bool out_of_memory;
};

/* A piece of the current line: s[a..b). */
struct span {
    const char *s;
    size_t a, b;
};

static size_t span_len(struct span t)
{
    return t.b - t.a;
}

static int quote_len(struct span t)
{
    return (int)(span_len(t) < QUOTE_MAX ? span_len(t) : QUOTE_MAX);
}

static const char *span_ptr(struct span t)
{
    return t.s + t.a;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t';
}

static char ascii_lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

static char ascii_upper(char c)
{
    return (c >= 'a' && c <= 'z') ? (char)(c - 'a' + 'A') : c;
}

static bool is_alnum(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool span_equals_ci(struct span t, const char *word)
{
    size_t n = strlen(word);
    if (span_len(t) != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (ascii_lower(t.s[t.a + i]) != ascii_lower(word[i]))
            return false;
    return true;
}

static struct span span_trim(struct span t)
{
    while (t.a < t.b && is_space(t.s[t.a]))
        t.a++;
    while (t.b > t.a && is_space(t.s[t.b - 1]))
        t.b--;
    return t;
}

/* Index of the first c in t at or after t.a, or t.b. */
static size_t span_find(struct span t, char c)
{
    size_t i = t.a;
    while (i < t.b && t.s[i] != c)
        i++;
    return i;
}

/* ---- errors ---- */

static char *copy_string(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

static void push_error(struct parser *ps, int col, const char *message)
{
    if (!ps->errs)
        return;
    policy_error *items = realloc(ps->errs->items, (ps->errs->count + 1) * sizeof *items);
    if (!items) {
        ps->out_of_memory = true;
        return;
    }
    ps->errs->items = items;
    policy_error *e = &items[ps->errs->count];
    e->file = copy_string(ps->file);
    e->message = copy_string(message);
    e->line = ps->line;
    e->col = col;
    if (!e->file || !e->message) {
        free(e->file);
        free(e->message);
        ps->out_of_memory = true;
        return;
    }
    ps->errs->count++;
}

/* col is 0-based here; messages show it 1-based like compilers do. */
__attribute__((format(printf, 3, 4))) static void report(struct parser *ps, size_t col,
                                                         const char *fmt, ...)
{
    ps->error_count++;
    if (ps->error_count > MAX_ERRORS)
        return;
    char message[512];
    if (ps->error_count == MAX_ERRORS) {
        snprintf(message, sizeof message, "too many errors; stopping here");
    } else {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(message, sizeof message, fmt, ap);
        va_end(ap);
    }
    push_error(ps, (int)col + 1, message);
}

/* ---- values ---- */

/* Arrays grow by doubling, without storing a capacity: one of count elements has room for the
 * next power of two, so it is reallocated only when count is 0 or a power of two. Blocklists of
 * 100,000 rules or values then compile in linear time. Returns the array with room for one more,
 * or NULL (the array untouched) when out of memory. */
static void *grow(void *items, size_t count, size_t size)
{
    if (count & (count - 1))
        return items;
    return realloc(items, (count ? count * 2 : 1) * size);
}

static char *copy_span(struct span t, char (*map)(char))
{
    size_t n = span_len(t);
    char *d = malloc(n + 1);
    if (!d)
        return NULL;
    for (size_t i = 0; i < n; i++)
        d[i] = map ? map(t.s[t.a + i]) : t.s[t.a + i];
    d[n] = '\0';
    return d;
}

/* Labels of letters, digits, '-' and '_' separated by single dots; extra allows ':' (IPv6). */
static bool valid_host(struct span t, bool allow_colon)
{
    if (span_len(t) == 0)
        return false;
    char prev = '.';
    for (size_t i = t.a; i < t.b; i++) {
        char c = t.s[i];
        if (c == '.' && prev == '.')
            return false;
        if (!(is_alnum(c) || c == '-' || c == '_' || c == '.' || (allow_colon && c == ':')))
            return false;
        prev = c;
    }
    return prev != '.';
}

/* An IP literal in the canonical form of SPEC section 4 (what the caller's facts are in):
 * any inet_aton spelling as a dotted quad, IPv6 as inet_ntop writes it, v4-mapped as IPv4.
 * False when h is not an IP literal. */
static bool canonical_ip(struct span h, char *out, size_t cap)
{
    char buf[INET6_ADDRSTRLEN + 1];
    if (span_len(h) == 0 || span_len(h) >= sizeof buf)
        return false;
    memcpy(buf, span_ptr(h), span_len(h));
    buf[span_len(h)] = '\0';
    struct in_addr a4;
    if (strchr(buf, ':')) {
        struct in6_addr a6;
        if (inet_pton(AF_INET6, buf, &a6) != 1)
            return false;
        if (!IN6_IS_ADDR_V4MAPPED(&a6))
            return inet_ntop(AF_INET6, &a6, out, (socklen_t)cap) != NULL;
        memcpy(&a4, &a6.s6_addr[12], sizeof a4);
    } else {
        /* inet_aton stops at whitespace; the token holds none, so the whole text is read. */
        if (!(buf[0] >= '0' && buf[0] <= '9') || inet_aton(buf, &a4) == 0)
            return false;
    }
    return inet_ntop(AF_INET, &a4, out, (socklen_t)cap) != NULL;
}

static bool parse_host(struct parser *ps, struct span t, cond_kind kind, union cond_value *out)
{
    struct span h = t;
    if (span_len(h) >= 2 && h.s[h.a] == '[' && h.s[h.b - 1] == ']') {
        h.a++;
        h.b--;
    }
    if (span_len(h) > 1 && h.s[h.b - 1] == '.')
        h.b--;
    char ip[INET6_ADDRSTRLEN];
    if (canonical_ip(h, ip, sizeof ip)) {
        out->text = copy_string(ip);
        return out->text != NULL;
    }
    /* ".example.com" is a common way to write a domain suffix; it means the same. */
    if (kind == COND_URL_DOMAIN && span_len(h) > 1 && h.s[h.a] == '.')
        h.a++;
    if (!valid_host(h, false)) {
        if (kind == COND_URL_DOMAIN)
            report(ps, t.a, "bad domain '%.*s': expected a DNS name such as example.com",
                   quote_len(t), span_ptr(t));
        else
            report(ps, t.a, "bad host '%.*s': expected a host name or IP address", quote_len(t),
                   span_ptr(t));
        return false;
    }
    out->text = copy_span(h, ascii_lower);
    return out->text != NULL;
}

/* A decimal number in [lo, hi] with no sign and at most 9 digits. */
static bool parse_number(struct span t, long lo, long hi, long *out)
{
    if (span_len(t) == 0 || span_len(t) > 9)
        return false;
    long v = 0;
    for (size_t i = t.a; i < t.b; i++) {
        if (t.s[i] < '0' || t.s[i] > '9')
            return false;
        v = v * 10 + (t.s[i] - '0');
    }
    if (v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

static bool parse_cidr(struct parser *ps, struct span t, struct cidr *out)
{
    size_t slash = span_find(t, '/');
    struct span addr = {t.s, t.a, slash};
    char buf[INET6_ADDRSTRLEN + 1];
    if (span_len(addr) == 0 || span_len(addr) >= sizeof buf)
        goto bad_address;
    memcpy(buf, span_ptr(addr), span_len(addr));
    buf[span_len(addr)] = '\0';
    memset(out, 0, sizeof *out);
    int max_prefix;
    bool v4_mapped = false;
    if (inet_pton(AF_INET, buf, out->bytes) == 1) {
        out->family = AF_INET;
        max_prefix = 32;
    } else if (inet_pton(AF_INET6, buf, out->bytes) == 1) {
        out->family = AF_INET6;
        max_prefix = 128;
        v4_mapped = IN6_IS_ADDR_V4MAPPED((const struct in6_addr *)out->bytes);
    } else {
        goto bad_address;
    }
    out->prefix = max_prefix;
    if (slash < t.b) {
        struct span len = {t.s, slash + 1, t.b};
        long prefix;
        if (!parse_number(len, 0, max_prefix, &prefix)) {
            report(ps, slash, "bad prefix length '/%.*s' in '%.*s': expected /0 to /%d",
                   quote_len(len), span_ptr(len), quote_len(t), span_ptr(t), max_prefix);
            return false;
        }
        out->prefix = (int)prefix;
    }
    /* Clients are compared in canonical form, v4-mapped as IPv4: so is a block inside
     * ::ffff:0:0/96. */
    if (v4_mapped && out->prefix >= 96) {
        memmove(out->bytes, out->bytes + 12, 4);
        memset(out->bytes + 4, 0, 12);
        out->family = AF_INET;
        out->prefix -= 96;
        max_prefix = 32;
    }
    /* Host bits are cleared so that matching compares whole bytes plus one masked byte. */
    for (int bit = out->prefix; bit < max_prefix; bit++)
        out->bytes[bit / 8] &= (uint8_t) ~(0x80u >> (bit % 8));
    return true;

bad_address:
    report(ps, t.a,
           "bad address '%.*s': expected an IPv4 or IPv6 address or CIDR such as 10.0.0.0/8",
           quote_len(t), span_ptr(t));
    return false;
}

static bool is_token_char(char c)
{
    return is_alnum(c) || (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static const char *const protocol_names[] = {"ms-turn", "ssl",   "turn", "sip",
                                             "http",    "https", "tcp"};

/* Parses one alternative of a condition; reports and returns false when it is not valid. */
static bool parse_value(struct parser *ps, cond_kind kind, struct span t, union cond_value *out)
{
    long n;
    switch (kind) {
    case COND_URL_DOMAIN:
    case COND_URL_HOST:
        return parse_host(ps, t, kind, out);
    case COND_URL_HOST_SUBSTRING:
        out->text = copy_span(t, ascii_lower);
        return out->text != NULL;
    case COND_URL_PORT:
        if (!parse_number(t, 1, 65535, &n)) {
            report(ps, t.a, "bad port '%.*s': expected a number from 1 to 65535", quote_len(t),
                   span_ptr(t));
            return false;
        }
        out->number = (int)n;
        return true;
    case COND_CLIENT_ADDRESS:
        return parse_cidr(ps, t, &out->cidr);
    case COND_METHOD:
        for (size_t i = t.a; i < t.b; i++) {
            if (!is_token_char(t.s[i])) {
                report(ps, t.a, "bad method '%.*s': expected an HTTP method such as CONNECT",
                       quote_len(t), span_ptr(t));
                return false;
            }
        }
        out->text = copy_span(t, ascii_upper);
        return out->text != NULL;
    case COND_CLIENT_PROTOCOL:
        for (size_t i = 0; i < sizeof protocol_names / sizeof *protocol_names; i++) {
            if (span_equals_ci(t, protocol_names[i])) {
                out->text = copy_string(protocol_names[i]);
                return out->text != NULL;
            }
        }
        report(ps, t.a,
               "unknown protocol '%.*s': expected ms-turn, ssl, turn, sip, http, https or tcp",
               quote_len(t), span_ptr(t));
        return false;
    case COND_TUNNELED:
        if (span_equals_ci(t, "yes") || span_equals_ci(t, "no")) {
            out->number = span_equals_ci(t, "yes");
            return true;
        }
        report(ps, t.a, "bad value '%.*s' for tunneled: expected yes or no", quote_len(t),
               span_ptr(t));
        return false;
    case COND_USER:
    case COND_GROUP:
        out->text = copy_span(t, NULL);
        return out->text != NULL;
    case COND_PROXY_MODE:
        if (span_equals_ci(t, "transparent") || span_equals_ci(t, "explicit")) {
            out->text = copy_span(t, ascii_lower);
            return out->text != NULL;
        }
        report(ps, t.a, "bad value '%.*s' for proxy.mode: expected transparent or explicit",
               quote_len(t), span_ptr(t));
        return false;
    }
    return false;
}

/* ---- conditions ---- */

static const struct {
    const char *name;
    cond_kind kind;
} condition_names[] = {
    {"url.domain", COND_URL_DOMAIN},
    {"url.host", COND_URL_HOST},
    {"url.host.substring", COND_URL_HOST_SUBSTRING},
    {"url.port", COND_URL_PORT},
    {"client.address", COND_CLIENT_ADDRESS},
    {"method", COND_METHOD},
    {"client.protocol", COND_CLIENT_PROTOCOL},
    {"tunneled", COND_TUNNELED},
    {"user", COND_USER},
    {"group", COND_GROUP},
    {"proxy.mode", COND_PROXY_MODE},
};

static bool condition_add_value(struct parser *ps, struct condition *c, struct span t)
{
    union cond_value v;
    if (!parse_value(ps, c->kind, t, &v))
        return false;
    union cond_value *values = grow(c->values, c->value_count, sizeof *values);
    if (!values) {
        if (policy_cond_has_text(c->kind))
            free(v.text);
        ps->out_of_memory = true;
        return false;
    }
    c->values = values;
    c->values[c->value_count++] = v;
    return true;
}

/* The inside of name=(v1, v2, ...): t spans from just after '(' to just before ')'. */
static bool parse_value_list(struct parser *ps, struct condition *c, struct span t)
{
    bool ok = true;
    size_t i = t.a;
    for (;;) {
        size_t comma = span_find((struct span){t.s, i, t.b}, ',');
        struct span item = span_trim((struct span){t.s, i, comma});
        if (span_len(item) == 0) {
            report(ps, comma, "expected a value before '%c'", comma < t.b ? ',' : ')');
            ok = false;
        } else if (!condition_add_value(ps, c, item)) {
            ok = false;
        }
        if (comma == t.b)
            return ok;
        i = comma + 1;
    }
}

static bool parse_condition(struct parser *ps, struct rule *r, struct span tok, size_t eq)
{
    struct span name = {tok.s, tok.a, eq};
    if (span_len(name) == 0) {
        report(ps, tok.a, "expected a condition name before '='");
        return false;
    }
    size_t k = 0;
    const size_t known = sizeof condition_names / sizeof *condition_names;
    while (k < known && !span_equals_ci(name, condition_names[k].name))
        k++;
    if (k == known) {
        report(ps, tok.a,
               "unknown condition '%.*s': expected url.domain, url.host, url.host.substring, "
               "url.port, client.address, method, client.protocol, tunneled, user, group or "
               "proxy.mode",
               quote_len(name), span_ptr(name));
        return false;
    }
    struct condition c = {.kind = condition_names[k].kind};
    size_t v = eq + 1;
    if (v < tok.b && tok.s[v] == '!') {
        c.negated = true;
        v++;
    }
    if (v == tok.b) {
        report(ps, v, "expected a value after '%.*s'", (int)(v - tok.a), span_ptr(tok));
        return false;
    }
    bool ok;
    if (tok.s[v] == '(') {
        struct span rest = {tok.s, v + 1, tok.b};
        size_t open = span_find(rest, '(');
        size_t close = span_find(rest, ')');
        if (open < close) {
            report(ps, open, "unexpected '(' inside a list of values");
            return false;
        }
        /* The tokenizer guarantees a ')' exists since parentheses are balanced. */
        if (close + 1 < tok.b) {
            struct span after = {tok.s, close + 1, tok.b};
            report(ps, close + 1, "expected whitespace after ')', found '%.*s'", quote_len(after),
                   span_ptr(after));
            return false;
        }
        ok = parse_value_list(ps, &c, (struct span){tok.s, v + 1, close});
    } else {
        struct span value = {tok.s, v, tok.b};
        size_t bad = v;
        while (bad < tok.b && tok.s[bad] != '(' && tok.s[bad] != ',' && tok.s[bad] != '!')
            bad++;
        if (bad < tok.b) {
            report(ps, bad, "unexpected '%c' in the value '%.*s': a list is written name=(v1, v2)",
                   tok.s[bad], quote_len(value), span_ptr(value));
            return false;
        }
        ok = condition_add_value(ps, &c, value);
    }
    if (ok) {
        struct condition *cs =
            realloc(r->conditions, (r->condition_count + 1) * sizeof *r->conditions);
        if (cs) {
            r->conditions = cs;
            r->conditions[r->condition_count++] = c;
            if (c.kind == COND_USER || c.kind == COND_GROUP)
                r->names_identity = true;
            return true;
        }
        ps->out_of_memory = true;
        ok = false;
    }
    policy_condition_free(&c);
    return ok;
}

/* ---- properties ---- */

typedef enum {
    PROP_DETECT_PROTOCOL = 0,
    PROP_SSL_FORWARD_PROXY,
    PROP_TUNNEL_ON_PROTOCOL_ERROR,
    PROP_SSL_VERIFY_SERVER,
    PROP_AUTHENTICATE,
    PROP_SSL_CHECK_REVOCATION,
    PROP_SSL_HTTP2,
} property_kind;

#define IN_PROXY         (1u << LAYER_PROXY)
#define IN_SSL_INTERCEPT (1u << LAYER_SSL_INTERCEPT)

/* Where each property may appear: see the table in policy.h. */
static const struct {
    const char *name;
    property_kind kind;
    unsigned layers;
    const char *expected;
    int first;             /* enum value of values[0] */
    const char *values[4]; /* in the order of the enum values from first */
} property_names[] = {
    {"detect_protocol", PROP_DETECT_PROTOCOL, IN_PROXY, "all or none", 1, {"all", "none"}},
    {"ssl.forward_proxy",
     PROP_SSL_FORWARD_PROXY,
     IN_SSL_INTERCEPT,
     "no, https or yes",
     1,
     {"no", "https", "yes"}},
    {"tunnel_on_protocol_error",
     PROP_TUNNEL_ON_PROTOCOL_ERROR,
     IN_PROXY | IN_SSL_INTERCEPT,
     "yes or no",
     1,
     {"yes", "no"}},
    {"ssl.verify_server",
     PROP_SSL_VERIFY_SERVER,
     IN_PROXY | IN_SSL_INTERCEPT,
     "yes or no",
     1,
     {"yes", "no"}},
    /* Only the exemption exists: authentication is switched on in the configuration. */
    {"authenticate", PROP_AUTHENTICATE, IN_PROXY, "no", TRI_NO, {"no"}},
    {"ssl.check_revocation",
     PROP_SSL_CHECK_REVOCATION,
     IN_SSL_INTERCEPT,
     "auto, ocsp, crl or no",
     1,
     {"auto", "ocsp", "crl", "no"}},
    {"ssl.http2", PROP_SSL_HTTP2, IN_SSL_INTERCEPT, "yes or no", 1, {"yes", "no"}},
};

#define PROPERTY_COUNT (sizeof property_names / sizeof *property_names)

static size_t find_property(struct span name)
{
    size_t k = 0;
    while (k < PROPERTY_COUNT && !span_equals_ci(name, property_names[k].name))
        k++;
    return k;
}

static bool set_verdict(struct parser *ps, struct rule *r, struct span tok, layer_type layer)
{
    if (ps->state == IN_LAYER && layer != LAYER_PROXY) {
        report(ps, tok.a, "%.*s is not allowed in %s layers: ALLOW and DENY belong in <proxy>",
               quote_len(tok), span_ptr(tok), policy_layer_name(layer));
        return false;
    }
    if (r->verdict != POLICY_UNSET) {
        report(ps, tok.a, "%.*s: this rule already says ALLOW or DENY", quote_len(tok),
               span_ptr(tok));
        return false;
    }
    r->verdict = span_equals_ci(tok, "allow") ? POLICY_ALLOW : POLICY_DENY;
    return true;
}

/* Sets the property unless the rule already sets it; value is the enum value. */
static bool property_set_once(struct rule *r, property_kind kind, int value)
{
    switch (kind) {
    case PROP_DETECT_PROTOCOL:
        if (r->detect_protocol)
            return false;
        r->detect_protocol = (policy_detect)value;
        return true;
    case PROP_SSL_FORWARD_PROXY:
        if (r->ssl_forward_proxy)
            return false;
        r->ssl_forward_proxy = (policy_ssl_forward)value;
        return true;
    case PROP_TUNNEL_ON_PROTOCOL_ERROR:
        if (r->tunnel_on_protocol_error)
            return false;
        r->tunnel_on_protocol_error = (policy_tri)value;
        return true;
    case PROP_SSL_VERIFY_SERVER:
        if (r->verify_server)
            return false;
        r->verify_server = (policy_tri)value;
        return true;
    case PROP_AUTHENTICATE:
        if (r->authenticate)
            return false;
        r->authenticate = (policy_tri)value;
        return true;
    case PROP_SSL_CHECK_REVOCATION:
        if (r->check_revocation)
            return false;
        r->check_revocation = (policy_revocation)value;
        return true;
    case PROP_SSL_HTTP2:
        if (r->http2)
            return false;
        r->http2 = (policy_tri)value;
        return true;
    }
    return false;
}

static bool parse_property(struct parser *ps, struct rule *r, struct span tok, layer_type layer)
{
    if (span_equals_ci(tok, "allow") || span_equals_ci(tok, "deny"))
        return set_verdict(ps, r, tok, layer);
    size_t open = span_find(tok, '(');
    struct span name = {tok.s, tok.a, open};
    size_t k = find_property(name);
    if (open == tok.b) {
        if (k < PROPERTY_COUNT)
            report(ps, tok.b, "expected '(' after %s, e.g. %s(%s)", property_names[k].name,
                   property_names[k].name, property_names[k].values[0]);
        else
            report(ps, tok.a,
                   "expected a condition (name=value) or a property (ALLOW, DENY, name(value)), "
                   "found '%.*s'",
                   quote_len(tok), span_ptr(tok));
        return false;
    }
    if (k == PROPERTY_COUNT) {
        report(ps, tok.a,
               "unknown property '%.*s': expected ALLOW, DENY, detect_protocol(), "
               "ssl.forward_proxy(), tunnel_on_protocol_error(), ssl.verify_server(), "
               "authenticate(), ssl.check_revocation() or ssl.http2()",
               quote_len(name), span_ptr(name));
        return false;
    }
    struct span rest = {tok.s, open + 1, tok.b};
    size_t close = span_find(rest, ')');
    size_t nested = span_find(rest, '(');
    if (nested < close) {
        report(ps, nested, "unexpected '(' inside %s()", property_names[k].name);
        return false;
    }
    if (close + 1 < tok.b) {
        struct span after = {tok.s, close + 1, tok.b};
        report(ps, close + 1, "expected whitespace after ')', found '%.*s'", quote_len(after),
               span_ptr(after));
        return false;
    }
    if (ps->state == IN_LAYER && !(property_names[k].layers & (1u << layer))) {
        report(ps, tok.a, "%s() is not allowed in %s layers; it belongs in %s",
               property_names[k].name, policy_layer_name(layer),
               policy_layer_name(layer == LAYER_PROXY ? LAYER_SSL_INTERCEPT : LAYER_PROXY));
        return false;
    }
    struct span arg = span_trim((struct span){tok.s, open + 1, close});
    int value = 0;
    for (int i = 0; i < 4 && property_names[k].values[i]; i++)
        if (span_equals_ci(arg, property_names[k].values[i]))
            value = property_names[k].first + i;
    if (value == 0) {
        report(ps, span_len(arg) ? arg.a : close, "bad value '%.*s' for %s(): expected %s",
               quote_len(arg), span_ptr(arg), property_names[k].name, property_names[k].expected);
        return false;
    }
    if (!property_set_once(r, property_names[k].kind, value)) {
        report(ps, tok.a, "%s() is set twice in this rule", property_names[k].name);
        return false;
    }
    return true;
}

/* ---- rules and layers ---- */

static void rule_free(struct rule *r)
{
    for (size_t i = 0; i < r->condition_count; i++)
        policy_condition_free(&r->conditions[i]);
    free(r->conditions);
    r->conditions = NULL;
    r->condition_count = 0;
}

static bool rule_sets_something(const struct rule *r)
{
    return r->verdict || r->detect_protocol || r->ssl_forward_proxy ||
           r->tunnel_on_protocol_error || r->verify_server || r->authenticate ||
           r->check_revocation || r->http2;
}

static bool parse_token(struct parser *ps, struct rule *r, struct span tok, layer_type layer)
{
    size_t eq = span_find(tok, '=');
    size_t open = span_find(tok, '(');
    if (eq < tok.b && eq < open)
        return parse_condition(ps, r, tok, eq);
    return parse_property(ps, r, tok, layer);
}

/* Splits at whitespace outside parentheses, so "!(443, 5061)" stays one token. */
static void parse_rule(struct parser *ps, struct span line)
{
    layer_type layer = LAYER_PROXY;
    if (ps->state == IN_LAYER)
        layer = ps->p->layers[ps->p->layer_count - 1].type;
    struct rule r = {.line = ps->line};
    bool ok = true;
    size_t i = line.a;
    while (i < line.b) {
        while (i < line.b && is_space(line.s[i]))
            i++;
        if (i == line.b)
            break;
        size_t start = i, open_at = 0;
        int depth = 0;
        bool balanced = true;
        for (; i < line.b && (depth > 0 || !is_space(line.s[i])); i++) {
            if (line.s[i] == '(') {
                if (depth++ == 0)
                    open_at = i;
            } else if (line.s[i] == ')') {
                if (depth == 0) {
                    report(ps, i, "unbalanced parentheses: ')' without a matching '('");
                    balanced = false;
                } else {
                    depth--;
                }
            }
        }
        if (depth > 0) {
            report(ps, open_at, "unbalanced parentheses: '(' is not closed on this line");
            balanced = false;
        }
        if (!balanced || !parse_token(ps, &r, (struct span){line.s, start, i}, layer))
            ok = false;
    }
    if (ok && !rule_sets_something(&r)) {
        report(ps, line.a,
               "this rule sets nothing: expected ALLOW, DENY or a property such as "
               "detect_protocol(none)");
        ok = false;
    }
    if (ok && ps->state == IN_LAYER) {
        struct layer *l = &ps->p->layers[ps->p->layer_count - 1];
        struct rule *rules = grow(l->rules, l->rule_count, sizeof *rules);
        if (rules) {
            l->rules = rules;
            l->rules[l->rule_count++] = r;
            return;
        }
        ps->out_of_memory = true;
    }
    rule_free(&r);
}

static void parse_layer_header(struct parser *ps, struct span line)
{
    size_t gt = span_find(line, '>');
    if (gt == line.b) {
        report(ps, line.b, "expected '>' to close the layer header");
        ps->state = BAD_LAYER;
        return;
    }
    struct span name = {line.s, line.a + 1, gt};
    layer_type type;
    if (span_equals_ci(name, "proxy")) {
        type = LAYER_PROXY;
    } else if (span_equals_ci(name, "ssl-intercept")) {
        type = LAYER_SSL_INTERCEPT;
    } else {
        report(ps, line.a, "unknown layer '<%.*s>': expected <proxy> or <ssl-intercept>",
               quote_len(name), span_ptr(name));
        ps->state = BAD_LAYER;
        return;
    }
    struct span rest = span_trim((struct span){line.s, gt + 1, line.b});
    if (span_len(rest))
        report(ps, rest.a, "expected the end of the line after %s, found '%.*s'",
               policy_layer_name(type), quote_len(rest), span_ptr(rest));
    struct layer *layers = realloc(ps->p->layers, (ps->p->layer_count + 1) * sizeof *ps->p->layers);
    if (!layers) {
        ps->out_of_memory = true;
        ps->state = BAD_LAYER;
        return;
    }
    ps->p->layers = layers;
    layers[ps->p->layer_count++] = (struct layer){.type = type, .line = ps->line};
    ps->state = IN_LAYER;
}

static void parse_line(struct parser *ps, const char *s, size_t n)
{
    if (n > 0 && s[n - 1] == '\r')
        n--;
    size_t end = 0;
    while (end < n && s[end] != ';') {
        unsigned char c = (unsigned char)s[end];
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            report(ps, end, "unexpected control character 0x%02x", c);
            return;
        }
        end++;
    }
    struct span line = span_trim((struct span){s, 0, end});
    if (span_len(line) == 0)
        return;
    if (s[line.a] == '<') {
        parse_layer_header(ps, line);
        return;
    }
    if (ps->state == NO_LAYER) {
        report(ps, line.a, "rule outside any layer: expected <proxy> or <ssl-intercept> first");
        return;
    }
    parse_rule(ps, line);
}

policy *policy_compile_text(const char *file, const char *text, size_t len, policy_errors *errs)
{
    if (errs)
        *errs = (policy_errors){0};
    struct parser ps = {.errs = errs, .file = file ? file : "(policy)", .line = 0};
    ps.p = calloc(1, sizeof *ps.p);
    if (ps.p)
        ps.p->file = copy_string(ps.file);
    if (!ps.p || !ps.p->file) {
        report(&ps, 0, "out of memory");
        policy_free(ps.p);
        return NULL;
    }
    atomic_init(&ps.p->refs, 1);
    if (len > MAX_TEXT_BYTES) {
        report(&ps, 0, "policy larger than %u bytes", MAX_TEXT_BYTES);
    } else {
        size_t start = 0;
        while (start < len && ps.error_count < MAX_ERRORS && !ps.out_of_memory) {
            const char *nl = memchr(text + start, '\n', len - start);
            size_t end = nl ? (size_t)(nl - text) : len;
            ps.line++;
            parse_line(&ps, text + start, end - start);
            start = end + 1;
        }
    }
    if (ps.out_of_memory) {
        ps.error_count = 0;
        report(&ps, 0, "out of memory");
    }
    if (!ps.error_count && !ps.out_of_memory && !policy_index_build(ps.p))
        report(&ps, 0, "out of memory");
    if (ps.error_count || ps.out_of_memory) {
        policy_free(ps.p);
        return NULL;
    }
    return ps.p;
}
