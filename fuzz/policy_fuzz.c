/* libFuzzer target: compile arbitrary text as a policy; when it compiles, evaluate and explain
 * it for a few connections at every checkpoint, then release it. */
#include "policy.h"

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
           a->verify_server == b->verify_server;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    policy_errors errs;
    policy *p = policy_compile_text("fuzz.cpl", (const char *)data, size, &errs);
    policy_errors_free(&errs);
    if (!p)
        return 0;

    struct sockaddr_in v4 = {.sin_family = AF_INET};
    struct sockaddr_in6 v6 = {.sin6_family = AF_INET6};
    inet_pton(AF_INET, "10.1.2.3", &v4.sin_addr);
    inet_pton(AF_INET6, "::ffff:192.168.7.1", &v6.sin6_addr);
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
         .user = "alice"},
        {.host = "[2001:db8::1]", .port = 8443, .method = "GET", .protocol = "tcp", .tunneled = 1},
    };
    for (size_t i = 0; i < sizeof facts / sizeof *facts; i++) {
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
