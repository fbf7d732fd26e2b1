/* handoff explain: the policy's decision for one connection, checkpoint by checkpoint. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli.h"
#include "config.h"
#include "detect.h"
#include "groups.h"
#include "policy.h"
#include "url.h"

static const char *verdict_text(policy_verdict v, bool dflt)
{
    if (v == POLICY_UNSET)
        return dflt ? "allow" : "deny";
    return v == POLICY_ALLOW ? "allow" : "deny";
}

static const char *forward_text(policy_ssl_forward f)
{
    switch (f) {
    case SSL_FP_HTTPS:
        return "https (intercept, expect HTTP)";
    case SSL_FP_YES:
        return "yes (intercept with proxy handoff)";
    case SSL_FP_NO:
        return "no (tunnel untouched)";
    default:
        return "not set (tunnel untouched)";
    }
}

/* The origin revocation check an intercepted connection gets (SPEC 6.2). */
static void print_revocation(const config *cfg, policy_revocation rev)
{
    static const char *const names[] = {"", "auto", "ocsp", "crl", "no"};
    if (rev == REVOCATION_UNSET)
        printf("  -> ssl.check_revocation %s ([tls] check_revocation), failure %s\n",
               config_check_revocation_name(cfg->check_revocation),
               cfg->revocation_hard ? "hard" : "soft");
    else
        printf("  -> ssl.check_revocation %s, failure %s\n", names[rev],
               cfg->revocation_hard ? "hard" : "soft");
}

static int usage(void)
{
    fprintf(stderr, "usage: handoff -c FILE explain [--client IP] [--connect HOST:PORT | --url URL "
                    "[--method M]] [--sni NAME] [--protocol P] [--tunneled yes|no] [--user NAME] "
                    "[--mode explicit|transparent]\n");
    return 1;
}

int cli_explain(const char *conf, int argc, char **argv)
{
    const char *client = "127.0.0.1", *connect = NULL, *url = NULL, *method = NULL, *sni = NULL,
               *protocol = NULL, *tunneled = NULL, *user = NULL, *mode = NULL;
    for (int i = 0; i < argc; i++) {
        const char **slot = NULL;
        if (!strcmp(argv[i], "--client"))
            slot = &client;
        else if (!strcmp(argv[i], "--connect"))
            slot = &connect;
        else if (!strcmp(argv[i], "--url"))
            slot = &url;
        else if (!strcmp(argv[i], "--method"))
            slot = &method;
        else if (!strcmp(argv[i], "--sni"))
            slot = &sni;
        else if (!strcmp(argv[i], "--protocol"))
            slot = &protocol;
        else if (!strcmp(argv[i], "--tunneled"))
            slot = &tunneled;
        else if (!strcmp(argv[i], "--user"))
            slot = &user;
        else if (!strcmp(argv[i], "--mode"))
            slot = &mode;
        if (!slot || i + 1 >= argc)
            return usage();
        *slot = argv[++i];
    }
    if ((connect && url) || (!connect && !url)) {
        fprintf(stderr, "handoff explain: give --connect HOST:PORT or --url URL\n");
        return 1;
    }
    if (protocol && detect_protocol_from_name(protocol) == PROTO_UNKNOWN) {
        fprintf(stderr,
                "handoff explain: unknown protocol '%s' (ms-turn ssl turn sip http https tcp)\n",
                protocol);
        return 1;
    }
    if (tunneled && strcmp(tunneled, "yes") && strcmp(tunneled, "no")) {
        fprintf(stderr, "handoff explain: --tunneled takes yes or no\n");
        return 1;
    }
    if (mode && strcmp(mode, "explicit") && strcmp(mode, "transparent")) {
        fprintf(stderr, "handoff explain: --mode takes explicit or transparent\n");
        return 1;
    }
    /* A redirected connection (SPEC 4.2) has no CONNECT: its method is unknown. */
    bool transparent = mode && !strcmp(mode, "transparent");
    struct sockaddr_storage addr = {0};
    struct sockaddr_in *a4 = (struct sockaddr_in *)&addr;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&addr;
    if (inet_pton(AF_INET, client, &a4->sin_addr) == 1)
        a4->sin_family = AF_INET;
    else if (inet_pton(AF_INET6, client, &a6->sin6_addr) == 1)
        a6->sin6_family = AF_INET6;
    else {
        fprintf(stderr, "handoff explain: --client needs an IP address, got '%s'\n", client);
        return 1;
    }
    url_parts u;
    if (connect ? url_parse_authority(connect, &u) : url_parse_absolute(url, &u)) {
        fprintf(stderr, "handoff explain: cannot parse '%s'\n", connect ? connect : url);
        return 1;
    }
    config cfg;
    config_defaults(&cfg);
    if (config_load(&cfg, conf, stderr))
        return 1;
    policy *p = load_policy(&cfg, stderr);
    if (cfg.policy_file[0] && !p)
        return 1;

    policy_facts f = {
        .host = u.host,
        .port = u.port,
        .method = connect ? (transparent ? NULL : "CONNECT") : (method ? method : "GET"),
        .client = (const struct sockaddr *)&addr,
        .tunneled = -1,
        .user = user,
        .mode = transparent ? "transparent" : "explicit",
    };
    /* --user: the groups file says which group= rules the user matches. */
    policy_groups *groups = NULL;
    if (user && cfg.groups[0]) {
        policy_errors gerrs = {0};
        groups = policy_groups_compile_file(cfg.groups, &gerrs);
        for (size_t i = 0; i < gerrs.count; i++)
            fprintf(stderr, "%s:%d:%d: %s\n", gerrs.items[i].file, gerrs.items[i].line,
                    gerrs.items[i].col, gerrs.items[i].message);
        policy_errors_free(&gerrs);
        if (!groups) {
            if (p)
                policy_release(p);
            return 1;
        }
        f.groups = policy_groups_of(groups, user, &f.group_count);
        printf("user %s: groups", user);
        for (size_t i = 0; i < f.group_count; i++)
            printf(" %s", f.groups[i]);
        printf("%s\n", f.group_count ? "" : " (none)");
    }
    policy_decision d1, d2, d3;
    printf("checkpoint 1 (request): %s %s from %s\n", f.method ? f.method : "redirected to",
           connect ? connect : url, client);
    policy_explain(p, &f, POLICY_CP_REQUEST, &d1, stdout);
    bool allow = d1.verdict == POLICY_UNSET ? cfg.policy_default_allow : d1.verdict == POLICY_ALLOW;
    policy_where where = d1.verdict_rule;
    printf("  -> %s%s\n", verdict_text(d1.verdict, cfg.policy_default_allow),
           d1.verdict == POLICY_UNSET ? " ([policy] default)" : "");
    if (cfg.auth_count > 0 && !user) {
        if (d1.authenticate == TRI_NO)
            printf("  -> authenticate(no): no credentials asked\n");
        else if (d1.needs_identity || allow)
            printf("  -> would ask for authentication (407), then evaluate again with the user\n");
    }
    bool detect = cfg.protocol_detection;
    if (d1.detect_protocol != DETECT_PROTO_UNSET)
        detect = d1.detect_protocol == DETECT_PROTO_ALL;

    bool intercepted = false;
    if (allow && connect && detect &&
        (sni || (protocol && (!strcmp(protocol, "ssl") || !strcmp(protocol, "https"))))) {
        policy_facts f2 = f;
        f2.host = sni ? sni : u.host;
        f2.protocol = "ssl";
        printf("checkpoint 2 (TLS seen): url.host=%s\n", f2.host);
        policy_explain(p, &f2, POLICY_CP_TLS, &d2, stdout);
        intercepted = d2.ssl_forward_proxy == SSL_FP_HTTPS || d2.ssl_forward_proxy == SSL_FP_YES;
        printf("  -> ssl.forward_proxy %s\n", forward_text(d2.ssl_forward_proxy));
        if (intercepted)
            print_revocation(&cfg, d2.check_revocation);
    }
    if (allow && connect) {
        const char *proto = protocol;
        if (!detect)
            proto = "tcp";
        else if (!proto)
            proto = intercepted ? NULL : (sni ? "ssl" : NULL);
        if (proto) {
            policy_facts f3 = f;
            f3.protocol = proto;
            if (tunneled)
                f3.tunneled = !strcmp(tunneled, "yes");
            else
                f3.tunneled = !strcmp(proto, "tcp") || (!strcmp(proto, "ssl") && !intercepted);
            printf("checkpoint 3 (detection settled): client.protocol=%s tunneled=%s%s\n", proto,
                   f3.tunneled ? "yes" : "no", detect ? "" : " (detection off)");
            policy_explain(p, &f3, POLICY_CP_DETECTED, &d3, stdout);
            if (d3.verdict == POLICY_DENY) {
                allow = false;
                where = d3.verdict_rule;
            }
            printf("  -> %s\n", d3.verdict == POLICY_DENY ? "deny (connection closed)" : "no DENY");
        } else {
            printf("checkpoint 3 (detection settled): give --protocol to evaluate it\n");
        }
    }
    if (where.file)
        printf("decision: %s (%s:%d)\n", allow ? "allow" : "deny", where.file, where.line);
    else
        printf("decision: %s (default)\n", allow ? "allow" : "deny");
    if (p)
        policy_release(p);
    if (groups)
        policy_groups_release(groups);
    return 0;
}
