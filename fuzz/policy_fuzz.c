/* libFuzzer target: compile arbitrary text as a policy; when it compiles, evaluate and explain
 * it for a few connections at every checkpoint, check that the host indexes give the same rule
 * as the plain scan in every layer, then release it. The same bytes are also read as a groups
 * file. */
#include "groups.h"
#include "policy.h"
#include "policy_internal.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static FILE *sink(void)
{
    static FILE *devnull;
    if (!devnull)
        devnull = fopen("/dev/null", "w");
    return devnull;
}

static bool same_decision(const policy_decision *a, const policy_decision *b)
{
    return a->verdict == b->verdict && a->verdict_rule.file == b->verdict_rule.file &&
           a->verdict_rule.line == b->verdict_rule.line && a->last_rule.file == b->last_rule.file &&
           a->last_rule.line == b->last_rule.line && a->detect_protocol == b->detect_protocol &&
           a->ssl_forward_proxy == b->ssl_forward_proxy &&
           a->tunnel_on_protocol_error == b->tunnel_on_protocol_error &&
           a->verify_server == b->verify_server && a->authenticate == b->authenticate &&
           a->check_revocation == b->check_revocation && a->http2 == b->http2 &&
           a->needs_identity == b->needs_identity;
}

static void check_groups(const uint8_t *data, size_t size)
{
    policy_errors errs;
    policy_groups *g = policy_groups_compile_text("fuzz.groups", (const char *)data, size, &errs);
    policy_errors_free(&errs);
    size_t n;
    const char *const *list = policy_groups_of(g, "alice", &n);
    for (size_t i = 0; i < n; i++)
        if (!list[i][0])
            __builtin_trap(); /* group names are never empty */
    policy_groups_release(g);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_groups(data, size);
    policy_errors errs;
    policy *p = policy_compile_text("fuzz.cpl", (const char *)data, size, &errs);
    policy_errors_free(&errs);
    if (!p)
        return 0;

    struct sockaddr_in v4 = {.sin_family = AF_INET};
    struct sockaddr_in6 v6 = {.sin6_family = AF_INET6};
    inet_pton(AF_INET, "10.1.2.3", &v4.sin_addr);
    inet_pton(AF_INET6, "::ffff:192.168.7.1", &v6.sin6_addr);
    static const char *const groups[] = {"staff", "Admins"};
    const policy_facts facts[] = {
        {.host = NULL, .port = -1, .tunneled = -1},
        {.host = "www.Example.com.",
         .port = 443,
         .method = "CONNECT",
         .client = (const struct sockaddr *)&v4,
         .tunneled = -1},
        {.host = "sip.lync.com",
         .port = 5061,
         .method = "connect",
         .client = (const struct sockaddr *)&v6,
         .protocol = "sip",
         .tunneled = 0,
         .user = "alice",
         .groups = groups,
         .group_count = 2,
         .mode = "explicit"},
        {.host = "[2001:db8::1]", .port = 8443, .method = "GET", .protocol = "tcp", .tunneled = 1},
        {.host = "127.0.0.2", .port = 80, .tunneled = -1, .mode = "transparent"},
        {.host = "a.b.c.d.e.example.com", .port = 443, .tunneled = -1, .identity_withheld = true},
    };
    for (size_t i = 0; i < sizeof facts / sizeof *facts; i++) {
        for (size_t l = 0; l < p->layer_count; l++) {
            for (int pending = 0; pending < 2; pending++) {
                struct layer_match x = policy_layer_match(&p->layers[l], &facts[i], pending);
                struct layer_match y = policy_layer_match_scan(&p->layers[l], &facts[i], pending);
                if (x.rule != y.rule || x.needs_identity != y.needs_identity)
                    __builtin_trap(); /* the index changed an answer */
            }
        }
        for (int cp = POLICY_CP_REQUEST; cp <= POLICY_CP_DETECTED; cp++) {
            policy_decision a, b;
            policy_evaluate(p, &facts[i], (policy_checkpoint)cp, &a);
            if (sink()) {
                policy_explain(p, &facts[i], (policy_checkpoint)cp, &b, sink());
                /* explain and evaluate must agree */
                if (!same_decision(&a, &b))
                    __builtin_trap();
            }
        }
    }
    policy_release(policy_retain(p));
    policy_release(p);
    return 0;
}
