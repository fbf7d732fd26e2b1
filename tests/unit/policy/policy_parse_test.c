/* Compile errors: each mistake an administrator can make is reported at its exact
 * FILE:LINE:COL with what was expected, and every error of a file is reported. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "policy.h"

struct expected_error {
    int line, col;
    const char *says; /* a piece of the message */
};

struct error_case {
    const char *what;
    const char *text;
    struct expected_error errors[4]; /* terminated by line 0 */
};

static const struct error_case error_cases[] = {
    {"unknown condition", "<proxy>\n  url.foo=1 ALLOW\n", {{2, 3, "unknown condition 'url.foo'"}}},
    {"unknown property",
     "<proxy>\n  ALLOW frobnicate(yes)\n",
     {{2, 9, "unknown property 'frobnicate'"}}},
    {"bad CIDR address",
     "<proxy>\n  client.address=10.0.0.300/8 DENY\n",
     {{2, 18, "bad address '10.0.0.300/8'"}}},
    {"prefix too long",
     "<proxy>\n  client.address=10.0.0.0/33 DENY\n",
     {{2, 26, "expected /0 to /32"}}},
    {"IPv6 prefix too long",
     "<proxy>\n  client.address=(10.0.0.0/8, 2001:db8::/129) DENY\n",
     {{2, 41, "expected /0 to /128"}}},
    {"ssl.forward_proxy in <proxy>",
     "<proxy>\n  ssl.forward_proxy(yes)\n",
     {{2, 3, "ssl.forward_proxy() is not allowed in <proxy> layers"}}},
    {"ALLOW in <ssl-intercept>",
     "<ssl-intercept>\n  ALLOW\n",
     {{2, 3, "ALLOW is not allowed in <ssl-intercept> layers"}}},
    {"detect_protocol in <ssl-intercept>",
     "<ssl-intercept>\n  url.domain=a.com detect_protocol(none)\n",
     {{2, 20, "detect_protocol() is not allowed in <ssl-intercept> layers"}}},
    {"unclosed parenthesis",
     "<proxy>\n  url.port=(443, 5061 DENY\n",
     {{2, 12, "'(' is not closed"}}},
    {"stray closing parenthesis", "<proxy>\n  url.port=443) DENY\n", {{2, 15, "')' without"}}},
    {"rule of a lone '!'", "<proxy>\n  !\n", {{2, 3, "expected a condition (name=value)"}}},
    {"port not a number", "<proxy>\n  url.port=abc DENY\n", {{2, 12, "bad port 'abc'"}}},
    {"port out of range",
     "<proxy>\n  url.port=!(443, 70000) DENY\n",
     {{2, 19, "bad port '70000'"}}},
    {"tunneled=maybe", "<proxy>\n  tunneled=maybe DENY\n", {{2, 12, "expected yes or no"}}},
    {"unknown protocol",
     "<proxy>\n  client.protocol=smtp DENY\n",
     {{2, 19, "unknown protocol 'smtp'"}}},
    {"rule before any layer",
     "  DENY\n<proxy>\n  ALLOW\n",
     {{1, 3, "rule outside any layer: expected <proxy> or <ssl-intercept>"}}},
    {"unknown layer reported once, its rules still checked",
     "<foo>\n  DENY\n  url.port=x DENY\n",
     {{1, 1, "unknown layer '<foo>'"}, {3, 12, "bad port 'x'"}}},
    {"layer header not alone",
     "<proxy> DENY\n",
     {{1, 9, "expected the end of the line after <proxy>"}}},
    {"layer header without '>'", "<proxy\n", {{1, 7, "expected '>'"}}},
    {"rule that sets nothing", "<proxy>\n  url.port=443\n", {{2, 3, "this rule sets nothing"}}},
    {"bad property value",
     "<proxy>\n  detect_protocol(some)\n",
     {{2, 19, "bad value 'some' for detect_protocol(): expected all or none"}}},
    {"bad ssl.forward_proxy value",
     "<ssl-intercept>\n  ssl.forward_proxy(maybe)\n",
     {{2, 21, "expected no, https or yes"}}},
    {"property without its argument",
     "<proxy>\n  detect_protocol DENY\n",
     {{2, 18, "expected '(' after detect_protocol"}}},
    {"empty value in a list",
     "<proxy>\n  url.port=(443, ) DENY\n",
     {{2, 18, "expected a value before ')'"}}},
    {"negation without a value",
     "<proxy>\n  url.port=! DENY\n",
     {{2, 13, "expected a value after 'url.port=!'"}}},
    {"bad method", "<proxy>\n  method=GE/T DENY\n", {{2, 10, "bad method 'GE/T'"}}},
    {"bad domain", "<proxy>\n  url.domain=a..b DENY\n", {{2, 14, "bad domain 'a..b'"}}},
    {"list without parentheses",
     "<proxy>\n  url.port=443,5061 DENY\n",
     {{2, 15, "a list is written name=(v1, v2)"}}},
    {"ALLOW and DENY in one rule",
     "<proxy>\n  ALLOW DENY\n",
     {{2, 9, "already says ALLOW or DENY"}}},
    {"property set twice",
     "<proxy>\n  detect_protocol(all) detect_protocol(none)\n",
     {{2, 24, "detect_protocol() is set twice"}}},
    {"control character", "<proxy>\n  DENY\x01\n", {{2, 7, "control character 0x01"}}},
    {"several errors, all reported, in order",
     "<proxy>\n"
     "  url.port=abc DENY          ; first\n"
     "  tunneled=maybe ALLOW\n"
     "  ALLOW\n"
     "<bar>\n",
     {{2, 12, "bad port"}, {3, 12, "tunneled"}, {5, 1, "unknown layer '<bar>'"}}},
    {"two errors on one line",
     "<proxy>\n  url.foo=1 url.port=0 DENY\n",
     {{2, 3, "unknown condition"}, {2, 22, "bad port '0'"}}},
};

static void test_each_error_is_reported_where_it_is(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof error_cases / sizeof *error_cases; i++) {
        const struct error_case *c = &error_cases[i];
        policy_errors errs;
        policy *p = policy_compile_text("t.cpl", c->text, strlen(c->text), &errs);
        size_t want = 0;
        while (want < 4 && c->errors[want].line)
            want++;
        if (p || errs.count != want) {
            print_error("case '%s': compiled=%d, %zu errors, want %zu\n", c->what, p != NULL,
                        errs.count, want);
            for (size_t k = 0; k < errs.count; k++)
                print_error("  %s:%d:%d: %s\n", errs.items[k].file, errs.items[k].line,
                            errs.items[k].col, errs.items[k].message);
            fail();
        }
        for (size_t k = 0; k < want; k++) {
            const policy_error *e = &errs.items[k];
            if (strcmp(e->file, "t.cpl") != 0 || e->line != c->errors[k].line ||
                e->col != c->errors[k].col || !strstr(e->message, c->errors[k].says)) {
                print_error("case '%s': got %s:%d:%d: %s\nwant t.cpl:%d:%d: ...%s...\n", c->what,
                            e->file, e->line, e->col, e->message, c->errors[k].line,
                            c->errors[k].col, c->errors[k].says);
                fail();
            }
        }
        policy_errors_free(&errs);
    }
}

/* Everything SPEC section 7 allows must compile. */
static const char *const valid_texts[] = {
    "<proxy>\n  method=CONNECT url.port=!(443, 5061, 8443) DENY\n",
    "<Proxy>   ; layer names and keywords are case-insensitive\n\tdeny\n",
    "<SSL-Intercept>\r\n  url.host.substring=lync.com ssl.forward_proxy(no)\r\n"
    "  ssl.forward_proxy(https)\r\n",
    "<proxy>\n  client.address=(127.0.0.0/8, ::1, ::ffff:10.0.0.0/104) ALLOW\n",
    "<proxy>\n  url.domain=.Example.COM. url.host=[::1] detect_protocol( none )\n",
    "<proxy>\n  client.protocol=(ms-turn, ssl, turn, sip, http, https, tcp) tunneled=!no ALLOW\n",
    "<proxy>\n  user=alice tunnel_on_protocol_error(yes) ssl.verify_server(no)\n"
    "<ssl-intercept>\n  tunnel_on_protocol_error(no) ssl.verify_server(yes)\n",
    "; only comments\n\n   \n",
    "<proxy>\n<ssl-intercept>\n",
    "<proxy>\n  DENY", /* no final newline */
};

static void test_valid_policies_compile(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof valid_texts / sizeof *valid_texts; i++) {
        policy_errors errs;
        policy *p = policy_compile_text("ok.cpl", valid_texts[i], strlen(valid_texts[i]), &errs);
        if (!p) {
            print_error("text %zu did not compile: %s:%d:%d: %s\n", i, errs.items[0].file,
                        errs.items[0].line, errs.items[0].col, errs.items[0].message);
            fail();
        }
        assert_int_equal(errs.count, 0);
        policy_release(p);
    }
}

static void test_missing_file_is_an_error_naming_it(void **state)
{
    (void)state;
    policy_errors errs;
    policy *p = policy_compile_file("/nonexistent/handoff.cpl", &errs);
    assert_null(p);
    assert_int_equal(errs.count, 1);
    assert_string_equal(errs.items[0].file, "/nonexistent/handoff.cpl");
    assert_non_null(strstr(errs.items[0].message, "cannot open"));
    policy_errors_free(&errs);
}

static void test_error_flood_is_bounded(void **state)
{
    (void)state;
    char text[16 * 1000 + 16] = "<proxy>\n";
    for (int i = 0; i < 1000; i++)
        strcat(text, "  url.port=x A\n");
    policy_errors errs;
    assert_null(policy_compile_text("t.cpl", text, strlen(text), &errs));
    assert_true(errs.count > 10 && errs.count <= 100);
    assert_non_null(strstr(errs.items[errs.count - 1].message, "too many errors"));
    policy_errors_free(&errs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_error_is_reported_where_it_is),
        cmocka_unit_test(test_valid_policies_compile),
        cmocka_unit_test(test_missing_file_is_an_error_naming_it),
        cmocka_unit_test(test_error_flood_is_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
