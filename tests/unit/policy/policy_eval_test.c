/* Evaluation semantics of SPEC section 7, each case chosen so that a plausible wrong
 * implementation (last match wins, no label boundary, unknown facts treated as empty, ...)
 * gives a different answer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <pthread.h>

#include "facts_helper.h"
#include "policy.h"

/* Shorthands for the table: a CONNECT from a private client with nothing else known. */
#define UNKNOWN_FACTS .port = -1, .tunneled = -1

struct eval_case {
    const char *what;
    const char *text;
    struct fact_row facts;
    policy_checkpoint cp;
    policy_verdict verdict;
    int verdict_line; /* 0: no rule set the verdict */
    int last_line;    /* 0: no rule set anything */
    policy_detect detect;
    policy_ssl_forward forward;
};

#define LAYER "<proxy>\n"

static const struct eval_case eval_cases[] = {
    /* Within a layer the first match wins. */
    {"first match in a layer",
     LAYER "url.port=443 ALLOW\nDENY\n",
     {.port = 443, .tunneled = -1},
     POLICY_CP_REQUEST,
     POLICY_ALLOW,
     2,
     2,
     0,
     0},
    {"fall through to a catch-all",
     LAYER "url.port=443 ALLOW\nDENY\n",
     {.port = 80, .tunneled = -1},
     POLICY_CP_REQUEST,
     POLICY_DENY,
     3,
     3,
     0,
     0},
    /* Across layers the later one wins, and what it does not set is kept. */
    {"later layer overrides",
     LAYER "ALLOW\n" LAYER "url.port=443 DENY\n",
     {.port = 443, .tunneled = -1},
     POLICY_CP_REQUEST,
     POLICY_DENY,
     4,
     4,
     0,
     0},
    {"later layer without a match keeps the verdict",
     LAYER "ALLOW\n" LAYER "url.port=443 DENY\n",
     {.port = 80, .tunneled = -1},
     POLICY_CP_REQUEST,
     POLICY_ALLOW,
     2,
     2,
     0,
     0},
    {"property of an earlier layer survives",
     LAYER "detect_protocol(none) ALLOW\n" LAYER "DENY\n",
     {UNKNOWN_FACTS},
     POLICY_CP_REQUEST,
     POLICY_DENY,
     4,
     4,
     DETECT_PROTO_NONE,
     0},
    {"verdict_rule differs from last_rule",
     LAYER "DENY\n" LAYER "detect_protocol(all)\n",
     {UNKNOWN_FACTS},
     POLICY_CP_REQUEST,
     POLICY_DENY,
     2,
     4,
     DETECT_PROTO_ALL,
     0},
    /* Unknown facts match nothing, negated or not. */
    {"negated condition on an unknown protocol",
     LAYER "DENY client.protocol=!ssl tunneled=yes\n",
     {.port = 443, .method = "CONNECT", .tunneled = -1},
     POLICY_CP_REQUEST,
     0,
     0,
     0,
     0,
     0},
    {"negated condition once the protocol is known",
     LAYER "DENY client.protocol=!ssl tunneled=yes\n",
     {.port = 443, .protocol = "tcp", .tunneled = 1},
     POLICY_CP_DETECTED,
     POLICY_DENY,
     2,
     2,
     0,
     0},
    {"negated condition, protocol excluded",
     LAYER "DENY client.protocol=!ssl tunneled=yes\n",
     {.port = 443, .protocol = "ssl", .tunneled = 1},
     POLICY_CP_DETECTED,
     0,
     0,
     0,
     0,
     0},
    {"negated port unknown",
     LAYER "url.port=!443 DENY\n",
     {UNKNOWN_FACTS},
     POLICY_CP_REQUEST,
     0,
     0,
     0,
     0,
     0},
    {"negated tunneled unknown",
     LAYER "tunneled=!yes DENY\n",
     {UNKNOWN_FACTS},
     POLICY_CP_REQUEST,
     0,
     0,
     0,
     0,
     0},
    {"negated user unknown",
     LAYER "user=!alice DENY\n",
     {UNKNOWN_FACTS},
     POLICY_CP_REQUEST,
     0,
     0,
     0,
     0,
     0},
    {"negated user known",
     LAYER "user=!alice DENY\n",
     {.port = -1, .tunneled = -1, .user = "bob"},
     POLICY_CP_REQUEST,
     POLICY_DENY,
     2,
     2,
     0,
     0},
    {"user compared exactly",
     LAYER "user=alice DENY\n",
     {.port = -1, .tunneled = -1, .user = "Alice"},
     POLICY_CP_REQUEST,
     0,
     0,
     0,
     0,
     0},
    {"user matches",
     LAYER "user=alice DENY\n",
     {.port = -1, .tunneled = -1, .user = "alice"},
     POLICY_CP_REQUEST,
     POLICY_DENY,
     2,
     2,
     0,
     0},
    /* Alternatives and negated alternatives. */
    {"negated alternatives, listed port",
     LAYER "method=CONNECT url.port=!(443, 5061, 8443) DENY\n",
     {.port = 5061, .method = "CONNECT", .tunneled = -1},
     POLICY_CP_REQUEST,
     0,
     0,
     0,
     0,
     0},
    {"negated alternatives, other port",
     LAYER "method=CONNECT url.port=!(443, 5061, 8443) DENY\n",
     {.port = 22, .method = "CONNECT", .tunneled = -1},
     POLICY_CP_REQUEST,
     POLICY_DENY,
     2,
     2,
     0,
     0},
    {"negated alternatives, not CONNECT",
     LAYER "method=CONNECT url.port=!(443, 5061, 8443) DENY\n",
     {.port = 22, .method = "GET", .tunneled = -1},
     POLICY_CP_REQUEST,
     0,
     0,
     0,
     0,
     0},
    {"method case-insensitive",
     LAYER "method=connect DENY\n",
     {.port = -1, .method = "Connect", .tunneled = -1},
     POLICY_CP_REQUEST,
     POLICY_DENY,
     2,
     2,
     0,
     0},
    {"alternatives, second value",
     LAYER "url.port=(80, 8080) ALLOW\n",
     {.port = 8080, .tunneled = -1},
     POLICY_CP_REQUEST,
     POLICY_ALLOW,
     2,
     2,
     0,
     0},
    {"alternatives, no value",
     LAYER "url.port=(80, 8080) ALLOW\n",
     {.port = 81, .tunneled = -1},
     POLICY_CP_REQUEST,
     0,
     0,
     0,
     0,
     0},
    {"protocol alternatives",
     LAYER "client.protocol=(sip, ms-turn) tunneled=no ALLOW\n",
     {.port = -1, .protocol = "ms-turn", .tunneled = 0},
     POLICY_CP_DETECTED,
     POLICY_ALLOW,
     2,
     2,
     0,
     0},
    /* Domains respect label boundaries; hosts ignore case and a trailing dot. */
    {"domain: label boundary",
     LAYER "url.domain=example.com DENY\n",
     {.host = "evilexample.com", .port = -1, .tunneled = -1},
     POLICY_CP_REQUEST,
     0,
     0,
     0,
     0,
     0},
    {"domain: subdomain",
     LAYER "url.domain=example.com DENY\n",
     {.host = "www.example.com", .port = -1, .tunneled = -1},
     POLICY_CP_REQUEST,
     POLICY_DENY,
     2,
     2,
     0,
     0},
    {"domain: itself, case and dot",
     LAYER "url.domain=Example.COM. DENY\n",
     {.host = "EXAMPLE.com.", .port = -1, .tunneled = -1},
     POLICY_CP_REQUEST,
     POLICY_DENY,
     2,
     2,
     0,
     0},
    {"domain: not a prefix",
     LAYER "url.domain=example.com DENY\n",
     {.host = "example.com.evil", .port = -1, .tunneled = -1},
     POLICY_CP_REQUEST,
     0,
     0,
     0,
     0,
     0},
    {"host: exact only",
     LAYER "url.host=example.com DENY\n",
     {.host = "www.example.com", .port = -1, .tunneled = -1},
     POLICY_CP_REQUEST,
     0,
     0,
     0,
     0,
     0},
    {"host: case and trailing dot",
     LAYER "url.host=example.com DENY\n",
     {.host = "Example.Com.", .port = -1, .tunneled = -1},
     POLICY_CP_REQUEST,
     POLICY_DENY,
     2,
     2,
     0,
     0},
    {"host: IPv6 literal with brackets",
     LAYER "url.host=[2001:DB8::1] DENY\n",
     {.host = "2001:db8::1", .port = -1, .tunneled = -1},
     POLICY_CP_REQUEST,
     POLICY_DENY,
     2,
     2,
     0,
     0},
    {"substring: anywhere in the name",
     LAYER "url.host.substring=Lync.com DENY\n",
     {.host = "notlync.com.evil", .port = -1, .tunneled = -1},
     POLICY_CP_REQUEST,
     POLICY_DENY,
     2,
     2,
     0,
     0},
    {"unknown host",
     LAYER "url.domain=!example.com DENY\n",
     {UNKNOWN_FACTS},
     POLICY_CP_REQUEST,
     0,
     0,
     0,
     0,
     0},
    /* Addresses. */
    {"IPv4 CIDR off a byte boundary",
     LAYER "client.address=172.16.0.0/12 DENY\n",
     {.client = "172.31.255.255", .port = -1, .tunneled = -1},
     POLICY_CP_REQUEST,
     POLICY_DENY,
     2,
     2,
     0,
     0},
    {"IPv4 CIDR just outside",
     LAYER "client.address=172.16.0.0/12 DENY\n",
     {.client = "172.32.0.1", .port = -1, .tunneled = -1},
     POLICY_CP_REQUEST,
     0,
     0,
     0,
     0,
     0},
    {"IPv6 CIDR inside",
     LAYER "client.address=2001:db8::/32 DENY\n",
     {.client = "2001:db8:1::5", .port = -1, .tunneled = -1},
     POLICY_CP_REQUEST,
     POLICY_DENY,
     2,
     2,
     0,
     0},
    {"IPv6 CIDR outside",
     LAYER "client.address=2001:db8::/32 DENY\n",
     {.client = "2001:db9::5", .port = -1, .tunneled = -1},
     POLICY_CP_REQUEST,
     0,
     0,
     0,
     0,
     0},
    {"IPv6 CIDR, IPv4 client",
     LAYER "client.address=::/0 DENY\n",
     {.client = "10.0.0.1", .port = -1, .tunneled = -1},
     POLICY_CP_REQUEST,
     0,
     0,
     0,
     0,
     0},
    {"IPv6 loopback address",
     LAYER "client.address=::1 ALLOW\n",
     {.client = "::1", .port = -1, .tunneled = -1},
     POLICY_CP_REQUEST,
     POLICY_ALLOW,
     2,
     2,
     0,
     0},
    {"IPv4-mapped client, IPv4 CIDR",
     LAYER "client.address=10.0.0.0/8 DENY\n",
     {.client = "::ffff:10.1.2.3", .port = -1, .tunneled = -1},
     POLICY_CP_REQUEST,
     POLICY_DENY,
     2,
     2,
     0,
     0},
    {"IPv4-mapped client outside",
     LAYER "client.address=10.0.0.0/8 DENY\n",
     {.client = "::ffff:11.1.2.3", .port = -1, .tunneled = -1},
     POLICY_CP_REQUEST,
     0,
     0,
     0,
     0,
     0},
    {"IPv4-compatible is not mapped",
     LAYER "client.address=10.0.0.0/8 DENY\n",
     {.client = "::10.1.2.3", .port = -1, .tunneled = -1},
     POLICY_CP_REQUEST,
     0,
     0,
     0,
     0,
     0},
    {"unknown client",
     LAYER "client.address=!10.0.0.0/8 DENY\n",
     {UNKNOWN_FACTS},
     POLICY_CP_REQUEST,
     0,
     0,
     0,
     0,
     0},
    /* Checkpoints pick the layers. */
    {"checkpoint 2 reads only <ssl-intercept>",
     "<ssl-intercept>\nssl.forward_proxy(yes)\n" LAYER "DENY\n",
     {UNKNOWN_FACTS},
     POLICY_CP_TLS,
     0,
     0,
     2,
     0,
     SSL_FP_YES},
    {"checkpoint 1 reads only <proxy>",
     "<ssl-intercept>\nssl.forward_proxy(yes)\n" LAYER "DENY\n",
     {UNKNOWN_FACTS},
     POLICY_CP_REQUEST,
     POLICY_DENY,
     4,
     4,
     0,
     0},
    {"checkpoint 3 reads only <proxy>",
     "<ssl-intercept>\nssl.forward_proxy(yes)\n" LAYER "DENY\n",
     {UNKNOWN_FACTS},
     POLICY_CP_DETECTED,
     POLICY_DENY,
     4,
     4,
     0,
     0},
    {"later <ssl-intercept> overrides",
     "<ssl-intercept>\nssl.forward_proxy(yes)\n"
     "<ssl-intercept>\nurl.domain=bank.example ssl.forward_proxy(no)\n",
     {.host = "www.bank.example", .port = -1, .tunneled = -1},
     POLICY_CP_TLS,
     0,
     0,
     4,
     0,
     SSL_FP_NO},
};

static void test_evaluation_semantics(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof eval_cases / sizeof *eval_cases; i++) {
        const struct eval_case *c = &eval_cases[i];
        policy_errors errs;
        policy *p = policy_compile_text("e.cpl", c->text, strlen(c->text), &errs);
        if (!p) {
            print_error("case '%s' did not compile: %d:%d: %s\n", c->what, errs.items[0].line,
                        errs.items[0].col, errs.items[0].message);
            fail();
        }
        struct sockaddr_storage addr;
        policy_facts facts = facts_from_row(&c->facts, &addr);
        policy_decision d;
        policy_evaluate(p, &facts, c->cp, &d);
        if (d.verdict != c->verdict || d.verdict_rule.line != c->verdict_line ||
            d.last_rule.line != c->last_line || d.detect_protocol != c->detect ||
            d.ssl_forward_proxy != c->forward) {
            print_error("case '%s': verdict %d (line %d), last line %d, detect %d, forward %d\n"
                        "       want verdict %d (line %d), last line %d, detect %d, forward %d\n",
                        c->what, d.verdict, d.verdict_rule.line, d.last_rule.line,
                        d.detect_protocol, d.ssl_forward_proxy, c->verdict, c->verdict_line,
                        c->last_line, c->detect, c->forward);
            fail();
        }
        if (c->verdict_line)
            assert_string_equal(d.verdict_rule.file, "e.cpl");
        else
            assert_null(d.verdict_rule.file);
        policy_release(p);
    }
}

static void test_null_policy_decides_nothing(void **state)
{
    (void)state;
    struct fact_row row = {UNKNOWN_FACTS};
    struct sockaddr_storage addr;
    policy_facts facts = facts_from_row(&row, &addr);
    policy_decision d;
    memset(&d, 0xff, sizeof d);
    policy_evaluate(NULL, &facts, POLICY_CP_REQUEST, &d);
    assert_int_equal(d.verdict, POLICY_UNSET);
    assert_null(d.verdict_rule.file);
    assert_null(d.last_rule.file);
}

/* Workers retain and release one policy concurrently; the last release frees it (ASan checks). */
static void *evaluate_many(void *arg)
{
    policy *shared = arg;
    struct fact_row row = {.port = 22, .method = "CONNECT", .tunneled = -1};
    struct sockaddr_storage addr;
    policy_facts facts = facts_from_row(&row, &addr);
    for (int i = 0; i < 20000; i++) {
        policy *mine = policy_retain(shared);
        policy_decision d;
        policy_evaluate(mine, &facts, POLICY_CP_REQUEST, &d);
        if (d.verdict != POLICY_DENY)
            return (void *)1;
        policy_release(mine);
    }
    policy_release(shared);
    return NULL;
}

static void test_shared_between_threads(void **state)
{
    (void)state;
    const char *text = "<proxy>\nmethod=CONNECT url.port=!443 DENY\n";
    policy *p = policy_compile_text("t.cpl", text, strlen(text), NULL);
    assert_non_null(p);
    pthread_t threads[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&threads[i], NULL, evaluate_many, policy_retain(p)), 0);
    policy_release(p);
    for (int i = 0; i < 4; i++) {
        void *result;
        assert_int_equal(pthread_join(threads[i], &result), 0);
        assert_null(result);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_evaluation_semantics),
        cmocka_unit_test(test_null_policy_decides_nothing),
        cmocka_unit_test(test_shared_between_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
