/* group=, proxy.mode=, the properties of SPEC 4.1/6.1/6.2, "needs the identity" (SPEC 4.1),
 * canonical numeric hosts and v4-mapped client blocks (SPEC 4 "Names and addresses"). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "facts_helper.h"
#include "policy.h"

static policy *compile(const char *text)
{
    policy_errors errs;
    policy *p = policy_compile_text("t.cpl", text, strlen(text), &errs);
    if (!p) {
        print_error("did not compile: %d:%d: %s\n%s", errs.items[0].line, errs.items[0].col,
                    errs.items[0].message, text);
        fail();
    }
    return p;
}

/* The first error of text, which must not compile. */
static void expect_error(const char *text, int line, int col, const char *says)
{
    policy_errors errs;
    policy *p = policy_compile_text("t.cpl", text, strlen(text), &errs);
    assert_null(p);
    assert_true(errs.count >= 1);
    if (errs.items[0].line != line || errs.items[0].col != col ||
        !strstr(errs.items[0].message, says)) {
        print_error("got %d:%d: %s\nwant %d:%d: ...%s...\n", errs.items[0].line, errs.items[0].col,
                    errs.items[0].message, line, col, says);
        fail();
    }
    policy_errors_free(&errs);
}

static policy_decision eval(const policy *p, policy_facts f, policy_checkpoint cp)
{
    policy_decision d;
    policy_evaluate(p, &f, cp, &d);
    return d;
}

static const char *const staff[] = {"users", "staff"};
static const char *const guests[] = {"guests"};

static policy_facts user_facts(const char *user, const char *const *groups, size_t n)
{
    return (policy_facts){.host = "www.example.com",
                          .port = 443,
                          .method = "CONNECT",
                          .tunneled = -1,
                          .user = user,
                          .groups = groups,
                          .group_count = n};
}

static void test_placement_and_values(void **state)
{
    (void)state;
    expect_error("<ssl-intercept>\n  authenticate(no)\n", 2, 3,
                 "authenticate() is not allowed in <ssl-intercept> layers");
    expect_error("<proxy>\n  url.domain=a.test ssl.check_revocation(ocsp)\n", 2, 21,
                 "ssl.check_revocation() is not allowed in <proxy> layers");
    expect_error("<proxy>\n  ssl.http2(no)\n", 2, 3, "ssl.http2() is not allowed in <proxy>");
    expect_error("<proxy>\n  authenticate(yes)\n", 2, 16,
                 "bad value 'yes' for authenticate(): expected no");
    expect_error("<ssl-intercept>\n  ssl.check_revocation(sometimes)\n", 2, 24,
                 "expected auto, ocsp, crl or no");
    expect_error("<ssl-intercept>\n  ssl.http2(h2)\n", 2, 13, "expected yes or no");
    expect_error("<proxy>\n  proxy.mode=reverse DENY\n", 2, 14,
                 "bad value 'reverse' for proxy.mode: expected transparent or explicit");
    expect_error("<proxy>\n  authenticate(no) authenticate(no)\n", 2, 20, "set twice");
    expect_error("<proxy>\n  grup=staff DENY\n", 2, 3, "unknown condition 'grup'");
}

static void test_property_decisions(void **state)
{
    (void)state;
    policy *p = compile("<proxy>\n"
                        "  url.domain=crl.microsoft.com authenticate(no)\n"
                        "<ssl-intercept>\n"
                        "  url.domain=bank.test ssl.check_revocation(crl) ssl.http2(no)\n"
                        "  ssl.forward_proxy(https) SSL.Check_Revocation(OCSP) ssl.http2(yes)\n"
                        "<ssl-intercept>\n"
                        "  url.host=www.bank.test ssl.check_revocation(no)\n");
    policy_facts f = {.host = "www.crl.microsoft.com", .port = 80, .tunneled = -1};
    policy_decision d = eval(p, f, POLICY_CP_REQUEST);
    assert_int_equal(d.authenticate, TRI_NO);
    assert_int_equal(d.last_rule.line, 2);
    f.host = "example.org";
    d = eval(p, f, POLICY_CP_REQUEST);
    assert_int_equal(d.authenticate, TRI_UNSET);
    d = eval(p, f, POLICY_CP_TLS);
    assert_int_equal(d.check_revocation, REVOCATION_OCSP);
    assert_int_equal(d.http2, TRI_YES);
    f.host = "login.bank.test";
    d = eval(p, f, POLICY_CP_TLS);
    assert_int_equal(d.check_revocation, REVOCATION_CRL);
    assert_int_equal(d.http2, TRI_NO);
    assert_int_equal(d.ssl_forward_proxy, SSL_FP_UNSET);
    /* A later layer overrides what it sets and keeps the rest. */
    f.host = "www.bank.test";
    d = eval(p, f, POLICY_CP_TLS);
    assert_int_equal(d.check_revocation, REVOCATION_NO);
    assert_int_equal(d.http2, TRI_NO);
    policy_release(p);
}

static void test_group_conditions(void **state)
{
    (void)state;
    policy *p = compile("<proxy>\n"
                        "  group=staff ALLOW\n"
                        "  group=!(staff, guests) url.port=443 DENY\n"
                        "  group=(admins, guests) detect_protocol(none)\n");
    policy_decision d = eval(p, user_facts("alice", staff, 2), POLICY_CP_REQUEST);
    assert_int_equal(d.verdict, POLICY_ALLOW);
    assert_int_equal(d.verdict_rule.line, 2);
    d = eval(p, user_facts("bob", NULL, 0), POLICY_CP_REQUEST);
    assert_int_equal(d.verdict, POLICY_DENY); /* in no group: the negated list holds */
    assert_int_equal(d.verdict_rule.line, 3);
    d = eval(p, user_facts("carol", guests, 1), POLICY_CP_REQUEST);
    assert_int_equal(d.verdict, POLICY_UNSET);
    assert_int_equal(d.detect_protocol, DETECT_PROTO_NONE);
    /* Group names compare exactly. */
    static const char *const upper[] = {"Staff"};
    d = eval(p, user_facts("dave", upper, 1), POLICY_CP_REQUEST);
    assert_int_equal(d.verdict_rule.line, 3);
    /* Groups are unknown while the user is: neither group= nor group=! match. */
    d = eval(p, user_facts(NULL, staff, 2), POLICY_CP_DETECTED);
    assert_int_equal(d.verdict, POLICY_UNSET);
    assert_int_equal(d.last_rule.line, 0);
    policy_release(p);
}

static void test_proxy_mode(void **state)
{
    (void)state;
    policy *p = compile("<proxy>\n"
                        "  proxy.mode=Transparent url.port=!443 DENY\n"
                        "  proxy.mode=!explicit detect_protocol(all)\n"
                        "  proxy.mode=(explicit, transparent) ALLOW\n");
    policy_facts f = {.port = 80, .tunneled = -1, .mode = "transparent"};
    assert_int_equal(eval(p, f, POLICY_CP_REQUEST).verdict_rule.line, 2);
    f.port = 443;
    assert_int_equal(eval(p, f, POLICY_CP_REQUEST).last_rule.line, 3);
    f.mode = "explicit";
    f.port = 80;
    assert_int_equal(eval(p, f, POLICY_CP_REQUEST).last_rule.line, 4);
    f.mode = NULL; /* unknown: no condition on it matches, negated or not */
    assert_int_equal(eval(p, f, POLICY_CP_REQUEST).last_rule.line, 0);
    policy_release(p);
}

/* SPEC 4.1: "group=staff ALLOW" then "DENY" means "only staff"; "url.port=25 DENY" placed before
 * denies without asking anyone. */
static void test_needs_identity(void **state)
{
    (void)state;
    policy *p = compile("<proxy>\n"
                        "  url.port=25 DENY\n"
                        "  group=staff ALLOW\n"
                        "  DENY\n");
    policy_facts anon = user_facts(NULL, NULL, 0);
    policy_decision d = eval(p, anon, POLICY_CP_REQUEST);
    assert_int_equal(d.verdict, POLICY_DENY);
    assert_true(d.needs_identity); /* 407, not 403 */
    anon.port = 25;
    d = eval(p, anon, POLICY_CP_REQUEST);
    assert_int_equal(d.verdict, POLICY_DENY);
    assert_int_equal(d.verdict_rule.line, 2);
    assert_false(d.needs_identity); /* 403 with no challenge */
    /* Second pass with the identity: that result stands. */
    d = eval(p, user_facts("alice", staff, 2), POLICY_CP_REQUEST);
    assert_int_equal(d.verdict, POLICY_ALLOW);
    assert_false(d.needs_identity);
    d = eval(p, user_facts("bob", guests, 1), POLICY_CP_REQUEST);
    assert_int_equal(d.verdict, POLICY_DENY);
    assert_int_equal(d.verdict_rule.line, 4);
    assert_false(d.needs_identity);
    /* authenticate(no) path: identity withheld, rules naming it neither match nor ask. */
    anon.port = 80;
    anon.identity_withheld = true;
    d = eval(p, anon, POLICY_CP_REQUEST);
    assert_int_equal(d.verdict, POLICY_DENY);
    assert_int_equal(d.verdict_rule.line, 4);
    assert_false(d.needs_identity);
    /* Only checkpoint 1 asks for the identity. */
    anon.identity_withheld = false;
    assert_false(eval(p, anon, POLICY_CP_DETECTED).needs_identity);
    policy_release(p);
}

static void test_needs_identity_per_layer(void **state)
{
    (void)state;
    /* Layer 1 matches before its user= rule; layer 2 reaches a negated group rule first; an
     * exemption layer sets authenticate(no) for the caller to act on. */
    policy *p = compile("<proxy>\n"
                        "  url.domain=example.com ALLOW\n"
                        "  user=alice DENY\n"
                        "<proxy>\n"
                        "  url.port=443 detect_protocol(all)\n"
                        "  group=!staff DENY\n"
                        "<proxy>\n"
                        "  url.domain=crl.test authenticate(no)\n");
    policy_facts f = user_facts(NULL, NULL, 0);
    policy_decision d = eval(p, f, POLICY_CP_REQUEST);
    assert_false(d.needs_identity); /* layer 1 matched line 2, layer 2 matched line 5 */
    f.port = 80;
    d = eval(p, f, POLICY_CP_REQUEST);
    assert_true(d.needs_identity); /* layer 2 reaches line 6 */
    assert_int_equal(d.verdict, POLICY_ALLOW);
    f.host = "crl.test";
    d = eval(p, f, POLICY_CP_REQUEST);
    assert_true(d.needs_identity); /* both layers 1 and 2 reach their identity rules */
    assert_int_equal(d.authenticate, TRI_NO);
    policy_release(p);
}

/* Every spelling of 127.0.0.2 from issue 10 item 2 is the same rule. */
static void test_canonical_numeric_hosts(void **state)
{
    (void)state;
    static const char *const spellings[] = {
        "127.0.0.2",          "0x7f.2",        "127.2",      "2130706434", "017700000002",
        "[::ffff:127.0.0.2]", "::FFFF:7F00:2", "127.0.0.2.",
    };
    for (size_t i = 0; i < sizeof spellings / sizeof *spellings; i++) {
        for (int domain = 0; domain < 2; domain++) {
            char text[128];
            snprintf(text, sizeof text, "<proxy>\n  url.%s=%s DENY\n", domain ? "domain" : "host",
                     spellings[i]);
            policy *p = compile(text);
            policy_facts f = {.host = "127.0.0.2", .port = -1, .tunneled = -1};
            if (eval(p, f, POLICY_CP_REQUEST).verdict != POLICY_DENY) {
                print_error("%s did not match 127.0.0.2\n", text);
                fail();
            }
            f.host = "127.0.0.20";
            assert_int_equal(eval(p, f, POLICY_CP_REQUEST).verdict, POLICY_UNSET);
            policy_release(p);
        }
    }
    /* IPv6 in RFC 5952 form. */
    policy *p = compile("<proxy>\n  url.host=(0::1, 2001:DB8:0:0:0:0:0:1) DENY\n");
    policy_facts f = {.host = "::1", .port = -1, .tunneled = -1};
    assert_int_equal(eval(p, f, POLICY_CP_REQUEST).verdict, POLICY_DENY);
    f.host = "2001:db8::1";
    assert_int_equal(eval(p, f, POLICY_CP_REQUEST).verdict, POLICY_DENY);
    f.host = "[2001:db8::1]";
    assert_int_equal(eval(p, f, POLICY_CP_REQUEST).verdict, POLICY_DENY);
    policy_release(p);
    /* Names that start with digits stay names. */
    p = compile("<proxy>\n  url.domain=1password.com DENY\n");
    f.host = "my.1password.com";
    assert_int_equal(eval(p, f, POLICY_CP_REQUEST).verdict, POLICY_DENY);
    policy_release(p);
    expect_error("<proxy>\n  url.host=2001:zz::1 DENY\n", 2, 12, "bad host '2001:zz::1'");
}

static void test_v4_mapped_blocks(void **state)
{
    (void)state;
    policy *p = compile("<proxy>\n  client.address=::ffff:10.0.0.0/104 DENY\n");
    struct sockaddr_storage addr;
    static const struct {
        const char *client;
        bool denied;
    } rows[] = {
        {"10.1.2.3", true},         {"::ffff:10.1.2.3", true}, {"11.1.2.3", false},
        {"::ffff:11.1.2.3", false}, {"::10.1.2.3", false},     {"2001:db8::1", false},
    };
    for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
        struct fact_row row = {.client = rows[i].client, .port = -1, .tunneled = -1};
        policy_facts f = facts_from_row(&row, &addr);
        if ((eval(p, f, POLICY_CP_REQUEST).verdict == POLICY_DENY) != rows[i].denied) {
            print_error("client %s\n", rows[i].client);
            fail();
        }
    }
    policy_release(p);
    /* An IPv6 block outside ::ffff:0:0/96 stays IPv6: ::/0 matches no IPv4 client, mapped or not.
     */
    p = compile("<proxy>\n  client.address=::/0 DENY\n");
    struct fact_row row = {.client = "::ffff:10.1.2.3", .port = -1, .tunneled = -1};
    assert_int_equal(eval(p, facts_from_row(&row, &addr), POLICY_CP_REQUEST).verdict, POLICY_UNSET);
    row.client = "2001:db8::1";
    assert_int_equal(eval(p, facts_from_row(&row, &addr), POLICY_CP_REQUEST).verdict, POLICY_DENY);
    policy_release(p);
}

static char *explain_text(const policy *p, policy_facts f, policy_checkpoint cp)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    assert_non_null(out);
    policy_decision d, e;
    policy_explain(p, &f, cp, &d, out);
    fclose(out);
    policy_evaluate(p, &f, cp, &e);
    assert_int_equal(d.needs_identity, e.needs_identity);
    assert_int_equal(d.verdict, e.verdict);
    return buf;
}

static void test_explain(void **state)
{
    (void)state;
    policy *p = compile("<proxy>\n"
                        "  url.domain=crl.test authenticate(no)\n"
                        "  group=(admins, staff) ALLOW\n"
                        "  group=!staff DENY\n"
                        "<ssl-intercept>\n"
                        "  ssl.forward_proxy(https) ssl.check_revocation(auto) ssl.http2(no)\n");
    char *s = explain_text(p, user_facts("alice", staff, 2), POLICY_CP_REQUEST);
    assert_string_equal(s, "  layer <proxy> t.cpl:1: rule t.cpl:3 matched (ALLOW)\n"
                           "    group=staff matched for user alice\n");
    free(s);
    s = explain_text(p, user_facts("bob", guests, 1), POLICY_CP_REQUEST);
    assert_string_equal(s, "  layer <proxy> t.cpl:1: rule t.cpl:4 matched (DENY)\n"
                           "    group=! matched: user bob is in none of staff\n");
    free(s);
    s = explain_text(p, user_facts(NULL, NULL, 0), POLICY_CP_REQUEST);
    assert_string_equal(s, "  layer <proxy> t.cpl:1: no rule matched\n"
                           "    needs the identity: rule t.cpl:3 names user or group\n");
    free(s);
    policy_facts f = user_facts(NULL, NULL, 0);
    f.host = "crl.test";
    s = explain_text(p, f, POLICY_CP_REQUEST);
    assert_string_equal(s, "  layer <proxy> t.cpl:1: rule t.cpl:2 matched (authenticate(no))\n");
    free(s);
    s = explain_text(p, f, POLICY_CP_TLS);
    assert_string_equal(s, "  layer <ssl-intercept> t.cpl:5: rule t.cpl:6 matched "
                           "(ssl.forward_proxy(https) ssl.check_revocation(auto) ssl.http2(no))\n");
    free(s);
    policy_release(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_placement_and_values),
        cmocka_unit_test(test_property_decisions),
        cmocka_unit_test(test_group_conditions),
        cmocka_unit_test(test_proxy_mode),
        cmocka_unit_test(test_needs_identity),
        cmocka_unit_test(test_needs_identity_per_layer),
        cmocka_unit_test(test_canonical_numeric_hosts),
        cmocka_unit_test(test_v4_mapped_blocks),
        cmocka_unit_test(test_explain),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
