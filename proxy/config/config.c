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
    K_ADDR_OPT,
    K_WORKERS,
    K_FORMAT,
    K_LEVEL,
    K_DEFAULT
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
    {"tls", "ca_cert", K_PATH, F(ca_cert), 0, 0},
    {"tls", "ca_key", K_PATH, F(ca_key), 0, 0},
    {"tls", "upstream_ca_file", K_PATH, F(upstream_ca_file), 0, 0},
    {"tls", "verify_upstream", K_BOOL, F(verify_upstream), 0, 0},
    {"tls", "leaf_cache_size", K_INT, F(leaf_cache_size), 1, 10000000},
    {"tls", "crl_url", K_STR, F(crl_url), 0, 0},
    {"tls", "http2", K_BOOL, F(http2), 0, 0},
    {"policy", "file", K_PATH, F(policy_file), 0, 0},
    {"policy", "default", K_DEFAULT, F(policy_default_allow), 0, 0},
    {"admin", "listen", K_ADDR_OPT, F(admin), 0, 0},
    {"auth", "htpasswd", K_PATH, F(htpasswd), 0, 0},
    {"auth", "realm", K_STR, F(realm), 0, 0},
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
    snprintf(cfg->upstream_ca_file, sizeof cfg->upstream_ca_file, "%s",
             "/etc/ssl/certs/ca-certificates.crt");
    cfg->verify_upstream = true;
    cfg->leaf_cache_size = 10000;
    cfg->http2 = true;
    cfg->policy_default_allow = false;
    config_parse_addr("127.0.0.1:8082", &cfg->admin);
    cfg->admin_enabled = true;
    snprintf(cfg->realm, sizeof cfg->realm, "handoff");
    snprintf(cfg->access_log, sizeof cfg->access_log, "-");
    cfg->log_format = LOG_FORMAT_JSON;
    cfg->log_level = LOG_INFO;
    snprintf(cfg->pac_proxy, sizeof cfg->pac_proxy, "PROXY 127.0.0.1:3128");
    snprintf(cfg->pac_direct, sizeof cfg->pac_direct, "localhost, 127.0.0.0/8, *.local");
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
    case K_DEFAULT:
        if (!strcasecmp(v, "allow"))
            cfg->policy_default_allow = true;
        else if (!strcasecmp(v, "deny"))
            cfg->policy_default_allow = false;
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
    return ctx.errors;
}
