/* The snippets of SPEC section 7 and the shipped example policy behave as a ProxySG
 * administrator expects, for the traffic of an SfB deployment, at every checkpoint. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "facts_helper.h"
#include "policy.h"

/* One kind of connection, with what is known at checkpoint 3 (detection settled). */
struct scenario {
    const char *name;
    const char *host;
    const char *protocol;
    int tunneled;
};

enum { SIP, MS_TURN, HTTPS, TLS_UNTOUCHED, UNKNOWN, CARVED_OUT, LYNC_TLS, SCENARIOS };

static const struct scenario scenarios[SCENARIOS] = {
    [SIP] = {"SIP inside TLS", "sip.contoso.com", "sip", 0},
    [MS_TURN] = {"MS-TURN", "turn.contoso.com", "ms-turn", 0},
    [HTTPS] = {"HTTPS intercepted", "www.contoso.com", "https", 0},
    [TLS_UNTOUCHED] = {"TLS left untouched", "bank.contoso.com", "ssl", 1},
    [UNKNOWN] = {"unknown protocol", "vpn.contoso.com", "tcp", 1},
    [CARVED_OUT] = {"unknown protocol to example.com", "app.example.com", "tcp", 1},
    [LYNC_TLS] = {"TLS to a lync.com server", "sipfed.online.lync.com", "ssl", 1},
};

/* Facts at each checkpoint: 1 knows the CONNECT, 2 also that TLS was seen (SNI = host),
 * 3 also the detected protocol and whether the connection is a blind tunnel. */
static policy_facts facts_at(const struct scenario *s, policy_checkpoint cp,
                             struct sockaddr_storage *addr)
{
    struct fact_row row = {
        .host = s->host, .port = 443, .method = "CONNECT", .client = "10.1.2.3", .tunneled = -1};
    if (cp == POLICY_CP_TLS)
        row.protocol = "ssl";
    if (cp == POLICY_CP_DETECTED) {
        row.protocol = s->protocol;
        row.tunneled = s->tunneled;
    }
    return facts_from_row(&row, addr);
}

struct outcome {
    policy_verdict verdict;
    policy_detect detect;
    policy_ssl_forward forward;
};

struct seed_case {
    const char *file;
    struct outcome at[SCENARIOS][3]; /* by scenario, then checkpoint 1..3 */
};

#define NOTHING                                                                                    \
    {                                                                                              \
        0, 0, 0                                                                                    \
    }
#define DENIED                                                                                     \
    {                                                                                              \
        POLICY_DENY, 0, 0                                                                          \
    }
#define HANDOFF                                                                                    \
    {                                                                                              \
        0, 0, SSL_FP_YES                                                                           \
    }
#define BYPASS                                                                                     \
    {                                                                                              \
        0, 0, SSL_FP_NO                                                                            \
    }
#define HTTPS_ONLY                                                                                 \
    {                                                                                              \
        0, 0, SSL_FP_HTTPS                                                                         \
    }
#define NO_DETECT                                                                                  \
    {                                                                                              \
        0, DETECT_PROTO_NONE, 0                                                                    \
    }

static const struct seed_case seeds[] = {
    {"step2-intercept-handoff.cpl",
     {
         [SIP] = {NOTHING, HANDOFF, NOTHING},
         [MS_TURN] = {NOTHING, HANDOFF, NOTHING},
         [HTTPS] = {NOTHING, HANDOFF, NOTHING},
         [TLS_UNTOUCHED] = {NOTHING, HANDOFF, NOTHING},
         [UNKNOWN] = {NOTHING, HANDOFF, NOTHING},
         [CARVED_OUT] = {NOTHING, HANDOFF, NOTHING},
         [LYNC_TLS] = {NOTHING, HANDOFF, NOTHING},
     }},
    {"step3-deny-unknown.cpl",
     {
         [SIP] = {NOTHING, NOTHING, NOTHING},
         [MS_TURN] = {NOTHING, NOTHING, NOTHING},
         [HTTPS] = {NOTHING, NOTHING, NOTHING},
         [TLS_UNTOUCHED] = {NOTHING, NOTHING, NOTHING},
         [UNKNOWN] = {NOTHING, NOTHING, DENIED},
         [CARVED_OUT] = {NOTHING, NOTHING, DENIED},
         [LYNC_TLS] = {NOTHING, NOTHING, NOTHING},
     }},
    {"carve-out.cpl",
     {
         [SIP] = {NOTHING, NOTHING, NOTHING},
         [MS_TURN] = {NOTHING, NOTHING, NOTHING},
         [HTTPS] = {NOTHING, NOTHING, NOTHING},
         [TLS_UNTOUCHED] = {NOTHING, NOTHING, NOTHING},
         [UNKNOWN] = {NOTHING, NOTHING, DENIED},
         [CARVED_OUT] = {NO_DETECT, NOTHING, NO_DETECT},
         [LYNC_TLS] = {NOTHING, NOTHING, NOTHING},
     }},
    {"sni-bypass.cpl",
     {
         [SIP] = {NOTHING, HTTPS_ONLY, NOTHING},
         [MS_TURN] = {NOTHING, HTTPS_ONLY, NOTHING},
         [HTTPS] = {NOTHING, HTTPS_ONLY, NOTHING},
         [TLS_UNTOUCHED] = {NOTHING, HTTPS_ONLY, NOTHING},
         [UNKNOWN] = {NOTHING, HTTPS_ONLY, NOTHING},
         [CARVED_OUT] = {NOTHING, HTTPS_ONLY, NOTHING},
         [LYNC_TLS] = {NOTHING, BYPASS, NOTHING},
     }},
};

static policy *load(const char *relative)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", EXAMPLES_DIR, relative);
    policy_errors errs;
    policy *p = policy_compile_file(path, &errs);
    for (size_t i = 0; i < errs.count; i++)
        print_error("%s:%d:%d: %s\n", errs.items[i].file, errs.items[i].line, errs.items[i].col,
                    errs.items[i].message);
    policy_errors_free(&errs);
    assert_non_null(p);
    return p;
}

static void test_seed_snippets(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof seeds / sizeof *seeds; i++) {
        char relative[128];
        snprintf(relative, sizeof relative, "policies/%s", seeds[i].file);
        policy *p = load(relative);
        for (int s = 0; s < SCENARIOS; s++) {
            for (int cp = POLICY_CP_REQUEST; cp <= POLICY_CP_DETECTED; cp++) {
                struct sockaddr_storage addr;
                policy_facts facts = facts_at(&scenarios[s], (policy_checkpoint)cp, &addr);
                policy_decision d;
                policy_evaluate(p, &facts, (policy_checkpoint)cp, &d);
                const struct outcome *want = &seeds[i].at[s][cp - 1];
                if (d.verdict != want->verdict || d.detect_protocol != want->detect ||
                    d.ssl_forward_proxy != want->forward) {
                    print_error("%s, %s, checkpoint %d: verdict %d detect %d forward %d, "
                                "want %d %d %d\n",
                                seeds[i].file, scenarios[s].name, cp, d.verdict, d.detect_protocol,
                                d.ssl_forward_proxy, want->verdict, want->detect, want->forward);
                    fail();
                }
            }
        }
        policy_release(p);
    }
}

struct deployment_case {
    const char *what;
    struct fact_row facts;
    policy_checkpoint cp;
    policy_verdict verdict;
    policy_ssl_forward forward;
};

static const struct deployment_case deployment[] = {
    {"outside client refused",
     {.client = "203.0.113.9", .port = 443, .method = "CONNECT", .tunneled = -1},
     POLICY_CP_REQUEST,
     POLICY_DENY,
     0},
    {"IPv6 loopback client",
     {.client = "::1", .port = 80, .method = "GET", .tunneled = -1},
     POLICY_CP_REQUEST,
     POLICY_ALLOW,
     0},
    {"mapped private client",
     {.client = "::ffff:192.168.1.20", .port = 443, .method = "CONNECT", .tunneled = -1},
     POLICY_CP_REQUEST,
     POLICY_ALLOW,
     0},
    {"CONNECT to 5061",
     {.client = "10.0.0.7", .port = 5061, .method = "CONNECT", .tunneled = -1},
     POLICY_CP_REQUEST,
     POLICY_ALLOW,
     0},
    {"CONNECT to 22",
     {.client = "10.0.0.7", .port = 22, .method = "CONNECT", .tunneled = -1},
     POLICY_CP_REQUEST,
     POLICY_DENY,
     0},
    {"plain HTTP on 8080",
     {.client = "172.20.0.7", .port = 8080, .method = "GET", .tunneled = -1},
     POLICY_CP_REQUEST,
     POLICY_ALLOW,
     0},
    {"TLS intercepted with handoff",
     {.host = "www.contoso.com",
      .client = "10.0.0.7",
      .port = 443,
      .method = "CONNECT",
      .protocol = "ssl",
      .tunneled = -1},
     POLICY_CP_TLS,
     0,
     SSL_FP_YES},
    {"SIP passes",
     {.client = "10.0.0.7", .port = 443, .method = "CONNECT", .protocol = "sip", .tunneled = 0},
     POLICY_CP_DETECTED,
     POLICY_ALLOW,
     0},
    {"MS-TURN passes",
     {.client = "10.0.0.7", .port = 443, .method = "CONNECT", .protocol = "ms-turn", .tunneled = 0},
     POLICY_CP_DETECTED,
     POLICY_ALLOW,
     0},
    {"TURN passes",
     {.client = "10.0.0.7", .port = 443, .method = "CONNECT", .protocol = "turn", .tunneled = 0},
     POLICY_CP_DETECTED,
     POLICY_ALLOW,
     0},
    {"untouched TLS passes",
     {.client = "10.0.0.7", .port = 443, .method = "CONNECT", .protocol = "ssl", .tunneled = 1},
     POLICY_CP_DETECTED,
     POLICY_ALLOW,
     0},
    {"unknown protocol denied",
     {.client = "10.0.0.7", .port = 443, .method = "CONNECT", .protocol = "tcp", .tunneled = 1},
     POLICY_CP_DETECTED,
     POLICY_DENY,
     0},
};

static void test_example_deployment_policy(void **state)
{
    (void)state;
    policy *p = load("policy.cpl");
    for (size_t i = 0; i < sizeof deployment / sizeof *deployment; i++) {
        const struct deployment_case *c = &deployment[i];
        struct sockaddr_storage addr;
        policy_facts facts = facts_from_row(&c->facts, &addr);
        policy_decision d;
        policy_evaluate(p, &facts, c->cp, &d);
        if (d.verdict != c->verdict || d.ssl_forward_proxy != c->forward) {
            print_error("%s: verdict %d forward %d, want %d %d\n", c->what, d.verdict,
                        d.ssl_forward_proxy, c->verdict, c->forward);
            fail();
        }
    }
    policy_release(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seed_snippets),
        cmocka_unit_test(test_example_deployment_policy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
