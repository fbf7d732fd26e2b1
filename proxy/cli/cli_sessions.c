/* handoff sessions: the admin listener's /sessions as a table. */
#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "cli.h"
#include "config.h"

static char *fetch(const config_addr *admin, const char *path)
{
    int fd = socket(admin->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return NULL;
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    socklen_t len =
        admin->addr.ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
    if (connect(fd, (const struct sockaddr *)&admin->addr, len) != 0) {
        close(fd);
        return NULL;
    }
    char req[256];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n",
                     path, admin->text);
    if (write(fd, req, (size_t)n) != n) {
        close(fd);
        return NULL;
    }
    size_t cap = 65536, used = 0;
    char *buf = malloc(cap);
    for (ssize_t r; buf && (r = read(fd, buf + used, cap - used - 1)) > 0;) {
        used += (size_t)r;
        if (used + 1 == cap) {
            char *p = cap < (64u << 20) ? realloc(buf, cap * 2) : NULL;
            if (!p) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = p;
            cap *= 2;
        }
    }
    close(fd);
    if (!buf)
        return NULL;
    buf[used] = '\0';
    char *body = strstr(buf, "\r\n\r\n");
    if (strncmp(buf, "HTTP/1.1 200", 12) != 0 || !body) {
        free(buf);
        return NULL;
    }
    memmove(buf, body + 4, strlen(body + 4) + 1);
    return buf;
}

static const char *str(json_t *o, const char *key)
{
    const char *v = json_string_value(json_object_get(o, key));
    return v ? v : "-";
}

int cli_sessions(const char *conf, int argc, char **argv)
{
    const char *admin = NULL;
    bool as_json = false;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--admin") && i + 1 < argc)
            admin = argv[++i];
        else if (!strcmp(argv[i], "--json"))
            as_json = true;
        else {
            fprintf(stderr, "usage: handoff sessions [--admin HOST:PORT] [--json]\n");
            return 1;
        }
    }
    config cfg;
    config_defaults(&cfg);
    config_addr addr = cfg.admin;
    if (admin) {
        if (config_parse_addr(admin, &addr) != 0) {
            fprintf(stderr, "handoff sessions: bad --admin '%s' (HOST:PORT, [v6]:PORT)\n", admin);
            return 1;
        }
    } else if (access(conf, R_OK) == 0) {
        if (config_load(&cfg, conf, stderr))
            return 1;
        addr = cfg.admin;
    }
    char *body = fetch(&addr, "/sessions");
    if (!body) {
        fprintf(stderr, "handoff sessions: no answer from the admin listener at %s\n", addr.text);
        return 2;
    }
    if (as_json) {
        fputs(body, stdout);
        free(body);
        return 0;
    }
    json_t *doc = json_loads(body, 0, NULL);
    free(body);
    json_t *list = json_object_get(doc, "sessions");
    if (!json_is_array(list)) {
        fprintf(stderr, "handoff sessions: unexpected answer\n");
        json_decref(doc);
        return 2;
    }
    printf("%-6s %-22s %-26s %-20s %-8s %-5s %-5s %12s %12s %6s  %s\n", "ID", "CLIENT", "TARGET",
           "SNI", "PROTOCOL", "INTC", "TUNL", "FROM_CLIENT", "FROM_SERVER", "AGE", "MESSAGES");
    size_t i;
    json_t *s;
    json_array_foreach(list, i, s)
    {
        char messages[256] = "";
        size_t used = 0;
        const char *k;
        json_t *v;
        json_object_foreach(json_object_get(s, "messages"), k, v)
        {
            int n = snprintf(messages + used, sizeof messages - used, "%s%s=%lld", used ? " " : "",
                             k, (long long)json_integer_value(v));
            if (n < 0 || (size_t)n >= sizeof messages - used)
                break;
            used += (size_t)n;
        }
        printf("%-6lld %-22s %-26s %-20s %-8s %-5s %-5s %12lld %12lld %6lld  %s%s\n",
               (long long)json_integer_value(json_object_get(s, "id")), str(s, "client"),
               str(s, "target"), str(s, "sni"), str(s, "protocol"),
               json_is_true(json_object_get(s, "intercepted")) ? "yes" : "no",
               json_is_true(json_object_get(s, "tunneled")) ? "yes" : "no",
               (long long)json_integer_value(json_object_get(s, "bytes_from_client")),
               (long long)json_integer_value(json_object_get(s, "bytes_from_server")),
               (long long)json_integer_value(json_object_get(s, "age_s")), messages,
               json_is_true(json_object_get(s, "compressed")) ? " (compressed)" : "");
    }
    json_decref(doc);
    return 0;
}
