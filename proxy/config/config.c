/* INI parsing with inih: one table row per key, every error collected with its position. */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#define INI_HANDLER_LINENO 1
#include <ini.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef enum {
    K_BOOL,
    K_INT,
    K_STR,
    K_PATH,
    K_LISTEN,
    K_TRANSPARENT,
    K_MARK,
    K_ADDR_OPT,
    K_WORKERS,
    K_FORMAT,
    K_LEVEL,
    K_DEFAULT,
    K_CIDRS,
    K_REVOCATION,
    K_REV_FAILURE,
} key_kind;

typedef struct {
    const char *section;
    const char *name;
    key_kind kind;
    size_t offset;
    size_t size; /* strings: buffer size */
    long min, max;
} key_spec;

#define F(field) offsetof(config, field), sizeof(((config *)0)->field)

static const key_spec keys[] = {
    {"proxy", "listen", K_LISTEN, F(listen), 0, 0},
    {"proxy", "transparent", K_TRANSPARENT, F(transparent), 0, 0},
    {"proxy", "transparent_mark", K_MARK, F(transparent_mark), 0, 0xffffffffL},
    {"proxy", "workers", K_WORKERS, F(workers), 0, 256},
    {"proxy", "protocol_detection", K_BOOL, F(protocol_detection), 0, 0},
    {"proxy", "tunnel_on_protocol_error", K_BOOL, F(tunnel_on_protocol_error), 0, 0},
    {"proxy", "detect_timeout_ms", K_INT, F(detect_timeout_ms), 1, 600000},
    {"proxy", "header_timeout_s", K_INT, F(header_timeout_s), 1, 3600},
    {"proxy", "connect_timeout_s", K_INT, F(connect_timeout_s), 1, 3600},
    {"proxy", "idle_timeout_s", K_INT, F(idle_timeout_s), 1, 86400},
    {"proxy", "max_header_bytes", K_INT, F(max_header_bytes), 1024, 1048576},
    {"proxy", "max_connections", K_INT, F(max_connections), 1, 10000000},
    {"proxy", "tls_handshake_timeout_s", K_INT, F(tls_handshake_timeout_s), 1, 3600},
    {"proxy", "drain_timeout_s", K_INT, F(drain_timeout_s), 0, 86400},
    {"tls", "sni_must_match", K_BOOL, F(sni_must_match), 0, 0},
    {"proxy", "proxy_protocol", K_BOOL, F(proxy_protocol), 0, 0},
    {"proxy", "proxy_protocol_from", K_CIDRS, F(proxy_protocol_from), 0, 0},
    {"tls", "ca_cert", K_PATH, F(ca_cert), 0, 0},
    {"tls", "ca_key", K_PATH, F(ca_key), 0, 0},
    {"tls", "upstream_ca_file", K_PATH, F(upstream_ca_file), 0, 0},
    {"tls", "verify_upstream", K_BOOL, F(verify_upstream), 0, 0},
    {"tls", "leaf_cache_size", K_INT, F(leaf_cache_size), 1, 10000000},
    {"tls", "crl_url", K_STR, F(crl_url), 0, 0},
    {"tls", "ocsp_url", K_STR, F(ocsp_url), 0, 0},
    {"tls", "check_revocation", K_REVOCATION, F(check_revocation), 0, 0},
    {"tls", "revocation_failure", K_REV_FAILURE, F(revocation_hard), 0, 0},
    {"tls", "http2", K_BOOL, F(http2), 0, 0},
    {"policy", "file", K_PATH, F(policy_file), 0, 0},
    {"policy", "default", K_DEFAULT, F(policy_default_allow), 0, 0},
    {"admin", "listen", K_ADDR_OPT, F(admin), 0, 0},
    {"admin", "control_socket", K_PATH, F(control_socket), 0, 0},
    {"auth", "htpasswd", K_PATH, F(htpasswd), 0, 0},
    {"auth", "realm", K_STR, F(realm), 0, 0},
    {"auth", "mode", K_STR, F(auth_mode), 0, 0},
    {"auth", "keytab", K_PATH, F(keytab), 0, 0},
    {"auth", "service_principal", K_STR, F(service_principal), 0, 0},
    {"auth", "strip_realm", K_BOOL, F(strip_realm), 0, 0},
    {"auth", "groups", K_PATH, F(groups), 0, 0},
    {"log", "access_log", K_PATH, F(access_log), 0, 0},
    {"log", "format", K_FORMAT, F(log_format), 0, 0},
    {"log", "level", K_LEVEL, F(log_level), 0, 0},
    {"pac", "proxy", K_STR, F(pac_proxy), 0, 0},
    {"pac", "direct", K_STR, F(pac_direct), 0, 0},
    {"pac", "file", K_PATH, F(pac_file), 0, 0},
};

typedef struct {
    config *cfg;
    FILE *err;
    int errors;
    const char *file;
} load_ctx;

void config_defaults(config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    config_parse_addr("127.0.0.1:3128", &cfg->listen[0]);
    cfg->listen_count = 1;
    cfg->workers = 0;
    cfg->transparent_mark = 0x68;
    cfg->protocol_detection = true;
    cfg->tunnel_on_protocol_error = false;
    cfg->detect_timeout_ms = 2000;
    cfg->header_timeout_s = 30;
    cfg->connect_timeout_s = 10;
    cfg->idle_timeout_s = 300;
    cfg->max_header_bytes = 65536;
    cfg->max_connections = 20000;
    cfg->tls_handshake_timeout_s = 10;
    cfg->drain_timeout_s = 10;
    cfg->sni_must_match = true;
    snprintf(cfg->upstream_ca_file, sizeof cfg->upstream_ca_file, "%s",
             "/etc/ssl/certs/ca-certificates.crt");
    cfg->verify_upstream = true;
    cfg->leaf_cache_size = 10000;
    cfg->check_revocation = CHECK_REV_AUTO;
    cfg->revocation_hard = false;
    cfg->http2 = true;
    cfg->policy_default_allow = false;
    config_parse_addr("127.0.0.1:8082", &cfg->admin);
    cfg->admin_enabled = true;
    snprintf(cfg->realm, sizeof cfg->realm, "handoff");
    cfg->strip_realm = true;
    snprintf(cfg->access_log, sizeof cfg->access_log, "-");
    cfg->log_format = LOG_FORMAT_JSON;
    cfg->log_level = LOG_INFO;
    snprintf(cfg->pac_proxy, sizeof cfg->pac_proxy, "PROXY 127.0.0.1:3128");
    snprintf(cfg->pac_direct, sizeof cfg->pac_direct, "localhost, 127.0.0.0/8, *.local");
}

static const char *const check_revocation_names[] = {"auto", "ocsp", "crl", "no"};

const char *config_check_revocation_name(config_check_revocation mode)
{
    return (unsigned)mode < 4 ? check_revocation_names[mode] : "auto";
}

bool config_addr_is_wildcard(const config_addr *a)
{
    if (a->addr.ss_family == AF_INET)
        return ((const struct sockaddr_in *)&a->addr)->sin_addr.s_addr == htonl(INADDR_ANY);
    if (a->addr.ss_family == AF_INET6)
        return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)&a->addr)->sin6_addr);
    return false;
}

int config_parse_addr(const char *text, config_addr *out)
{
    char host[64];
    const char *colon;
    memset(out, 0, sizeof *out);
    if (strlen(text) >= sizeof out->text)
        return -1;
    snprintf(out->text, sizeof out->text, "%s", text);
    if (text[0] == '[') {
        const char *end = strchr(text, ']');
        if (!end || end[1] != ':' || (size_t)(end - text - 1) >= sizeof host)
            return -1;
        memcpy(host, text + 1, (size_t)(end - text - 1));
        host[end - text - 1] = '\0';
        colon = end + 1;
    } else {
        colon = strrchr(text, ':');
        if (!colon || (size_t)(colon - text) >= sizeof host)
            return -1;
        memcpy(host, text, (size_t)(colon - text));
        host[colon - text] = '\0';
    }
    char *endp;
    errno = 0;
    long port = strtol(colon + 1, &endp, 10);
    if (errno || *endp || colon[1] == '\0' || port < 1 || port > 65535)
        return -1;
    if (text[0] == '[') {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&out->addr;
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, host, &a6->sin6_addr) != 1)
            return -1;
    } else {
        struct sockaddr_in *a4 = (struct sockaddr_in *)&out->addr;
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        if (inet_pton(AF_INET, host, &a4->sin_addr) != 1)
            return -1;
    }
    return 0;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

static void report(load_ctx *ctx, int line, const char *fmt, const char *a, const char *b)
{
    fprintf(ctx->err, "%s:%d:1: ", ctx->file, line);
    fprintf(ctx->err, fmt, a, b);
    fputc('\n', ctx->err);
    ctx->errors++;
}

static int set_path(load_ctx *ctx, char *dst, size_t size, const char *value)
{
    int n;
    if (value[0] == '\0' || value[0] == '/' || strcmp(value, "-") == 0 || strcmp(value, "off") == 0)
        n = snprintf(dst, size, "%s", strcmp(value, "off") == 0 ? "" : value);
    else
        n = snprintf(dst, size, "%s/%s", ctx->cfg->dir, value);
    return (n < 0 || (size_t)n >= size) ? -1 : 0;
}

static int parse_bool(const char *v, bool *out)
{
    if (!strcasecmp(v, "yes") || !strcasecmp(v, "true") || !strcasecmp(v, "on") || !strcmp(v, "1"))
        *out = true;
    else if (!strcasecmp(v, "no") || !strcasecmp(v, "false") || !strcasecmp(v, "off") ||
             !strcmp(v, "0"))
        *out = false;
    else
        return -1;
    return 0;
}

static int parse_long(const char *v, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || end == v || *end || n < min || n > max)
        return -1;
    *out = n;
    return 0;
}

static int set_listen(config *cfg, char *value)
{
    cfg->listen_count = 0;
    for (char *save = NULL, *tok = strtok_r(value, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        tok = trim(tok);
        if (cfg->listen_count == CONFIG_MAX_LISTEN ||
            config_parse_addr(tok, &cfg->listen[cfg->listen_count]) != 0)
            return -1;
        cfg->listen_count++;
    }
    return cfg->listen_count > 0 ? 0 : -1;
}

/* An empty value means no transparent listener. */
static int set_transparent(config *cfg, char *value)
{
    cfg->transparent_count = 0;
    for (char *save = NULL, *tok = strtok_r(value, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        tok = trim(tok);
        if (cfg->transparent_count == CONFIG_MAX_LISTEN ||
            config_parse_addr(tok, &cfg->transparent[cfg->transparent_count]) != 0)
            return -1;
        cfg->transparent_count++;
    }
    return 0;
}

/* "10.0.0.0/8", "::1", "fd00::/8": an address alone is a host block. */
static int parse_cidr(char *text, config_cidr *out)
{
    memset(out, 0, sizeof *out);
    char *slash = strchr(text, '/');
    if (slash)
        *slash = '\0';
    if (inet_pton(AF_INET, text, out->addr) == 1)
        out->family = AF_INET;
    else if (inet_pton(AF_INET6, text, out->addr) == 1)
        out->family = AF_INET6;
    else
        return -1;
    long max = out->family == AF_INET ? 32 : 128, n = max;
    if (slash && parse_long(slash + 1, 0, max, &n) != 0)
        return -1;
    out->prefix = (int)n;
    return 0;
}

static int set_cidrs(config *cfg, char *value)
{
    cfg->proxy_protocol_from_count = 0;
    for (char *save = NULL, *tok = strtok_r(value, ", ", &save); tok;
         tok = strtok_r(NULL, ", ", &save)) {
        if (cfg->proxy_protocol_from_count == CONFIG_MAX_CIDRS ||
            parse_cidr(tok, &cfg->proxy_protocol_from[cfg->proxy_protocol_from_count]) != 0)
            return -1;
        cfg->proxy_protocol_from_count++;
    }
    return 0;
}

/* A socket mark as iptables and nftables write it: decimal or 0x hex. */
static int parse_mark(const char *v, unsigned *out)
{
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 0);
    if (errno || end == v || *end || v[0] == '-' || n > 0xffffffffULL)
        return -1;
    *out = (unsigned)n;
    return 0;
}

void config_diff(const config *a, const config *b,
                 void (*changed)(const char *section, const char *name, void *data), void *data)
{
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const key_spec *k = &keys[i];
        const char *fa = (const char *)a + k->offset, *fb = (const char *)b + k->offset;
        /* Strings compare as text: bytes past the NUL may hold an overwritten default. */
        bool differs = k->kind == K_STR || k->kind == K_PATH ? strncmp(fa, fb, k->size) != 0
                                                             : memcmp(fa, fb, k->size) != 0;
        if (k->kind == K_LISTEN)
            differs |= a->listen_count != b->listen_count;
        else if (k->kind == K_ADDR_OPT)
            differs |= a->admin_enabled != b->admin_enabled;
        else if (k->kind == K_CIDRS)
            differs |= a->proxy_protocol_from_count != b->proxy_protocol_from_count;
        if (differs)
            changed(k->section, k->name, data);
    }
}

bool config_cidr_contains(const config_cidr *c, const struct sockaddr *sa)
{
    const unsigned char *a;
    if (sa->sa_family != c->family)
        return false;
    if (sa->sa_family == AF_INET)
        a = (const unsigned char *)&((const struct sockaddr_in *)(const void *)sa)->sin_addr;
    else
        a = ((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr.s6_addr;
    int full = c->prefix / 8, rest = c->prefix % 8;
    if (memcmp(a, c->addr, (size_t)full) != 0)
        return false;
    if (rest == 0)
        return true;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return (a[full] & mask) == (c->addr[full] & mask);
}

static int on_entry(void *user, const char *section, const char *name, const char *raw, int line)
{
    load_ctx *ctx = user;
    config *cfg = ctx->cfg;
    char value[CONFIG_MAX_PATH];

    if (!name) { /* a new section */
        for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
            if (!strcmp(keys[i].section, section))
                return 1;
        report(ctx, line, "unknown section [%s]%s", section, "");
        return 1;
    }
    const key_spec *k = NULL;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (!strcmp(keys[i].section, section) && !strcmp(keys[i].name, name))
            k = &keys[i];
    if (!k) {
        bool known_section = false;
        for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
            known_section |= !strcmp(keys[i].section, section);
        if (known_section)
            report(ctx, line, "unknown key '%s' in section [%s]", name, section);
        else
            report(ctx, line, "unknown section [%s] (key '%s')", section, name);
        return 1;
    }
    snprintf(value, sizeof value, "%s", raw);
    char *v = trim(value);
    char *field = (char *)cfg + k->offset;
    int rc = 0;
    long n;
    switch (k->kind) {
    case K_BOOL:
        rc = parse_bool(v, (bool *)field);
        break;
    case K_INT:
        rc = parse_long(v, k->min, k->max, &n);
        if (rc == 0)
            *(int *)field = (int)n;
        break;
    case K_WORKERS:
        if (!strcasecmp(v, "auto"))
            cfg->workers = 0;
        else if ((rc = parse_long(v, 1, k->max, &n)) == 0)
            cfg->workers = (int)n;
        break;
    case K_STR:
        rc = (size_t)snprintf(field, k->size, "%s", v) >= k->size ? -1 : 0;
        break;
    case K_PATH:
        rc = set_path(ctx, field, k->size, v);
        break;
    case K_LISTEN:
        rc = set_listen(cfg, v);
        break;
    case K_TRANSPARENT:
        rc = set_transparent(cfg, v);
        break;
    case K_MARK:
        rc = parse_mark(v, &cfg->transparent_mark);
        break;
    case K_ADDR_OPT:
        cfg->admin_enabled = v[0] != '\0';
        if (cfg->admin_enabled)
            rc = config_parse_addr(v, &cfg->admin);
        break;
    case K_FORMAT:
        if (!strcmp(v, "json"))
            cfg->log_format = LOG_FORMAT_JSON;
        else if (!strcmp(v, "squid"))
            cfg->log_format = LOG_FORMAT_SQUID;
        else
            rc = -1;
        break;
    case K_LEVEL: {
        static const char *levels[] = {"error", "warn", "info", "debug"};
        rc = -1;
        for (int i = 0; i < 4; i++)
            if (!strcmp(v, levels[i])) {
                cfg->log_level = (config_log_level)i;
                rc = 0;
            }
        break;
    }
    case K_CIDRS:
        rc = set_cidrs(cfg, v);
        break;
    case K_DEFAULT:
        if (!strcasecmp(v, "allow"))
            cfg->policy_default_allow = true;
        else if (!strcasecmp(v, "deny"))
            cfg->policy_default_allow = false;
        else
            rc = -1;
        break;
    case K_REVOCATION:
        rc = -1;
        for (int i = 0; i < 4; i++)
            if (!strcasecmp(v, check_revocation_names[i])) {
                cfg->check_revocation = (config_check_revocation)i;
                rc = 0;
            }
        break;
    case K_REV_FAILURE:
        if (!strcasecmp(v, "soft"))
            cfg->revocation_hard = false;
        else if (!strcasecmp(v, "hard"))
            cfg->revocation_hard = true;
        else
            rc = -1;
        break;
    }
    if (rc != 0) {
        fprintf(ctx->err, "%s:%d:1: bad value '%s' for %s.%s\n", ctx->file, line, v, section, name);
        ctx->errors++;
    }
    return 1;
}

/* [auth] mode: mechanisms in challenge order, each at most once; htpasswd alone means basic. */
static int config_auth_mechanisms(config *cfg, const char *path, FILE *err)
{
    int errors = 0;
    cfg->auth_count = 0;
    char copy[sizeof cfg->auth_mode];
    snprintf(copy, sizeof copy, "%s", cfg->auth_mode);
    for (char *save = NULL, *w = strtok_r(copy, " ,\t", &save); w;
         w = strtok_r(NULL, " ,\t", &save)) {
        config_auth_mech m;
        if (strcasecmp(w, "basic") == 0)
            m = AUTH_MECH_BASIC;
        else if (strcasecmp(w, "negotiate") == 0)
            m = AUTH_MECH_NEGOTIATE;
        else {
            fprintf(err, "%s:0:0: [auth] mode: unknown mechanism '%s' (basic, negotiate)\n", path,
                    w);
            errors++;
            continue;
        }
        bool dup = false;
        for (int i = 0; i < cfg->auth_count; i++)
            dup |= cfg->auth[i] == m;
        if (dup || cfg->auth_count == 2) {
            fprintf(err, "%s:0:0: [auth] mode: '%s' given twice\n", path, w);
            errors++;
            continue;
        }
        cfg->auth[cfg->auth_count++] = m;
    }
    if (cfg->auth_count == 0 && cfg->htpasswd[0])
        cfg->auth[cfg->auth_count++] = AUTH_MECH_BASIC;
    bool basic = false;
    for (int i = 0; i < cfg->auth_count; i++)
        basic |= cfg->auth[i] == AUTH_MECH_BASIC;
    if (basic && !cfg->htpasswd[0]) {
        fprintf(err, "%s:0:0: [auth] mode: basic needs [auth] htpasswd\n", path);
        errors++;
    }
    if (!basic && cfg->htpasswd[0]) {
        fprintf(err, "%s:0:0: [auth] htpasswd is set but [auth] mode does not include basic\n",
                path);
        errors++;
    }
    return errors;
}

int config_load(config *cfg, const char *path, FILE *err)
{
    load_ctx ctx = {.cfg = cfg, .err = err, .file = path};
    char abs[PATH_MAX];
    if (!realpath(path, abs)) {
        fprintf(err, "%s:0:0: cannot open config file: %s\n", path, strerror(errno));
        return 1;
    }
    snprintf(cfg->path, sizeof cfg->path, "%s", abs);
    snprintf(cfg->dir, sizeof cfg->dir, "%s", abs);
    char *slash = strrchr(cfg->dir, '/');
    if (slash == cfg->dir)
        slash[1] = '\0';
    else if (slash)
        *slash = '\0';

    FILE *f = fopen(abs, "r");
    if (!f) {
        fprintf(err, "%s:0:0: cannot open config file: %s\n", path, strerror(errno));
        return 1;
    }
    int rc = ini_parse_file(f, on_entry, &ctx);
    fclose(f);
    if (rc > 0) {
        fprintf(err, "%s:%d:1: syntax error (expected [section] or key = value)\n", path, rc);
        ctx.errors++;
    }
    ctx.errors += config_auth_mechanisms(cfg, path, err);
    /* Trusting every peer's header would let any client choose its own address. */
    if (cfg->proxy_protocol && cfg->proxy_protocol_from_count == 0) {
        fprintf(err,
                "%s:0:0: [proxy] proxy_protocol = yes needs proxy_protocol_from (the "
                "balancers' addresses)\n",
                path);
        ctx.errors++;
    }
    /* The default URLs name the first listen address, which a client cannot reach when it is
     * a wildcard: minted leaves would point Windows at nothing. */
    if (cfg->listen_count > 0 && config_addr_is_wildcard(&cfg->listen[0]) &&
        (!cfg->crl_url[0] || !cfg->ocsp_url[0])) {
        fprintf(err,
                "%s:0:0: [tls] crl_url and ocsp_url must both be set when the first listen "
                "address is a wildcard (%s): minted leaves name them for clients to fetch\n",
                path, cfg->listen[0].text);
        ctx.errors++;
    }
    return ctx.errors;
}
