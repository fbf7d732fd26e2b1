/* The host indexes must not change a single answer: on random mixed policies, matching through
 * the index gives the same rule (and the same "needs the identity") as testing every rule in
 * order with every value, and large policies give the answers a blocklist should. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "policy.h"
#include "policy_internal.h"

/* xorshift: the same sequence on every run, so a failure can be replayed. */
static uint32_t rng_state = 2463534242u;

static uint32_t rnd(uint32_t n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state % n;
}

static policy *compile_or_fail(const char *text)
{
    policy_errors errs;
    policy *p = policy_compile_text("i.cpl", text, strlen(text), &errs);
    if (!p) {
        print_error("did not compile: %d:%d: %s\n%s", errs.items[0].line, errs.items[0].col,
                    errs.items[0].message, text);
        fail();
    }
    return p;
}

static const char *const labels[] = {"a", "b", "example", "test", "com", "x-1", "cdn"};
#define LABEL_COUNT (sizeof labels / sizeof *labels)

struct buf {
    char *s;
    size_t len, cap;
};

__attribute__((format(printf, 2, 3))) static void put(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (b->len + (size_t)n + 1 > b->cap) {
        b->cap = (b->len + (size_t)n + 1) * 2;
        b->s = realloc(b->s, b->cap);
        assert_non_null(b->s);
    }
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

static void random_host(char *out, size_t cap)
{
    size_t n = 0;
    uint32_t count = 1 + rnd(4);
    for (uint32_t i = 0; i < count; i++)
        n += (size_t)snprintf(out + n, cap - n, "%s%s", i ? "." : "", labels[rnd(LABEL_COUNT)]);
}

static void random_host_value(struct buf *b, const char *name)
{
    char host[64];
    /* Either one value or a list long enough (sometimes) to get a hash set. */
    uint32_t count = rnd(3) == 0 ? 1 + rnd(14) : 1;
    put(b, " %s=%s", name, rnd(4) == 0 ? "!" : "");
    if (count == 1) {
        random_host(host, sizeof host);
        put(b, "%s", host);
        return;
    }
    put(b, "(");
    for (uint32_t i = 0; i < count; i++) {
        random_host(host, sizeof host);
        put(b, "%s%s", i ? ", " : "", host);
    }
    put(b, ")");
}

static void random_rule(struct buf *b, int rule_no)
{
    uint32_t conditions = rnd(4);
    for (uint32_t c = 0; c < conditions; c++) {
        switch (rnd(8)) {
        case 0:
        case 1:
            random_host_value(b, "url.domain");
            break;
        case 2:
            random_host_value(b, "url.host");
            break;
        case 3:
            put(b, " url.port=%s%s", rnd(3) ? "" : "!", rnd(2) ? "443" : "(80, 8080)");
            break;
        case 4:
            put(b, " method=%s", rnd(2) ? "CONNECT" : "!GET");
            break;
        case 5:
            put(b, " user=%salice", rnd(3) ? "" : "!");
            break;
        case 6:
            put(b, " group=%sstaff", rnd(3) ? "" : "!");
            break;
        case 7:
            put(b, " url.host.substring=%s", labels[rnd(LABEL_COUNT)]);
            break;
        }
    }
    /* Distinct properties per rule so a wrong rule shows in the decision too. */
    put(b, " %s ; rule %d\n", rnd(2) ? "ALLOW" : "DENY", rule_no);
}

static const char *const staff[] = {"staff"};

static void random_facts(policy_facts *f, char *host, size_t cap)
{
    *f = (policy_facts){.port = -1, .tunneled = -1};
    if (rnd(8)) {
        random_host(host, cap);
        f->host = host;
    }
    static const int ports[] = {-1, 80, 443, 8080};
    f->port = ports[rnd(4)];
    static const char *const methods[] = {NULL, "CONNECT", "GET"};
    f->method = methods[rnd(3)];
    static const char *const users[] = {NULL, "alice", "bob"};
    f->user = users[rnd(3)];
    if (f->user && rnd(2)) {
        f->groups = staff;
        f->group_count = 1;
    }
    f->identity_withheld = !f->user && rnd(4) == 0;
}

static void compare_layers(const policy *p, const policy_facts *f, const char *text)
{
    for (size_t l = 0; l < p->layer_count; l++) {
        for (int pending = 0; pending < 2; pending++) {
            struct layer_match a = policy_layer_match(&p->layers[l], f, pending);
            struct layer_match b = policy_layer_match_scan(&p->layers[l], f, pending);
            if (a.rule != b.rule || a.needs_identity != b.needs_identity) {
                print_error("layer %zu, host %s: index says line %d (identity %d), scan line %d "
                            "(identity %d)\n%s",
                            l, f->host ? f->host : "(unknown)", a.rule ? a.rule->line : 0,
                            a.needs_identity, b.rule ? b.rule->line : 0, b.needs_identity, text);
                fail();
            }
        }
    }
}

static void test_index_agrees_with_scan(void **state)
{
    (void)state;
    for (int round = 0; round < 400; round++) {
        struct buf b = {0};
        uint32_t layers = 1 + rnd(3);
        int rule_no = 0;
        for (uint32_t l = 0; l < layers; l++) {
            put(&b, "<proxy>\n");
            uint32_t rules = 1 + rnd(30);
            for (uint32_t r = 0; r < rules; r++)
                random_rule(&b, ++rule_no);
        }
        policy *p = compile_or_fail(b.s);
        for (int i = 0; i < 200; i++) {
            char host[64];
            policy_facts f;
            random_facts(&f, host, sizeof host);
            compare_layers(p, &f, b.s);
        }
        policy_release(p);
        free(b.s);
    }
}

/* A host with more labels than the index walks at once still gets the scan's answer. */
static void test_many_labels(void **state)
{
    (void)state;
    struct buf b = {0};
    put(&b, "<proxy>\n  url.port=1 ALLOW\n");
    for (int i = 0; i < 200; i++)
        put(&b, "  url.domain=%s DENY\n", i % 2 ? "a" : "a.a");
    policy *p = compile_or_fail(b.s);
    char host[512] = "a";
    for (int i = 0; i < 199; i++)
        strcat(host, ".a");
    policy_facts f = {.host = host, .port = 80, .tunneled = -1};
    compare_layers(p, &f, b.s);
    policy_decision d;
    policy_evaluate(p, &f, POLICY_CP_REQUEST, &d);
    assert_int_equal(d.verdict_rule.line, 3);
    policy_release(p);
    free(b.s);
}

/* A 100,000-entry blocklist, as rules and as one list, around rules with no host key. */
static void test_large_blocklists(void **state)
{
    (void)state;
    for (int shape = 0; shape < 2; shape++) {
        struct buf b = {0};
        put(&b, "<proxy>\n  url.port=25 DENY\n  url.host=d7.test ALLOW\n");
        if (shape == 0) {
            for (int i = 0; i < 100000; i++)
                put(&b, "  url.domain=d%d.test DENY\n", i);
        } else {
            put(&b, "  url.domain=(");
            for (int i = 0; i < 100000; i++)
                put(&b, "%sd%d.test", i ? ", " : "", i);
            put(&b, ") DENY\n");
        }
        put(&b, "  url.port=443 detect_protocol(none)\n  ALLOW\n");
        policy *p = compile_or_fail(b.s);
        /* Lines: 2 port 25, 3 d7.test, then dN at 4 + N (rules) or the list at 4, then the
         * port 443 rule and the catch-all. */
        static const struct {
            const char *host;
            int port;
            int line[2]; /* the rule that must match, per shape */
        } rows[] = {
            {"www.d99999.test", 443, {100003, 4}},
            {"d7.test", 443, {3, 3}},
            {"x.d7.test", 80, {11, 4}},
            {"d123.test", 25, {2, 2}},
            {"d100000.test", 443, {100004, 5}},
            {"test", 80, {100005, 6}},
            {"D42.TEST.", 80, {46, 4}},
            {"xd42.test", 80, {100005, 6}},
        };
        for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
            policy_facts f = {.host = rows[i].host, .port = rows[i].port, .tunneled = -1};
            policy_decision d;
            policy_evaluate(p, &f, POLICY_CP_REQUEST, &d);
            int want = rows[i].line[shape];
            if (d.last_rule.line != want) {
                print_error("shape %d, %s:%d: line %d, want %d\n", shape, rows[i].host,
                            rows[i].port, d.last_rule.line, want);
                fail();
            }
        }
        policy_release(p);
        free(b.s);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_index_agrees_with_scan),
        cmocka_unit_test(test_many_labels),
        cmocka_unit_test(test_large_blocklists),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
