/* explain names, for each layer consulted, the rule that matched and what it set. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "facts_helper.h"
#include "policy.h"

static const char policy_text[] =
    "<proxy>\n"
    "  client.address=10.0.0.0/8 ALLOW\n"
    "  DENY\n"
    "<ssl-intercept>\n"
    "  url.domain=lync.com ssl.forward_proxy(no) ssl.verify_server(no)\n"
    "<proxy>\n"
    "  url.domain=example.com detect_protocol(none) "
    "tunnel_on_protocol_error(yes)\n"
    "  DENY client.protocol=!ssl tunneled=yes\n";

struct explain_case {
    struct fact_row facts;
    policy_checkpoint cp;
    const char *expected;
};

static const struct explain_case cases[] = {
    {{.host = "app.example.com", .client = "10.0.0.1", .port = 443, .tunneled = -1},
     POLICY_CP_REQUEST,
     "  layer <proxy> x.cpl:1: rule x.cpl:2 matched (ALLOW)\n"
     "  layer <proxy> x.cpl:6: rule x.cpl:7 matched (detect_protocol(none) "
     "tunnel_on_protocol_error(yes))\n"},
    {{.host = "www.contoso.com", .client = "10.0.0.1", .port = 443, .tunneled = -1},
     POLICY_CP_TLS,
     "  layer <ssl-intercept> x.cpl:4: no rule matched\n"},
    {{.host = "sip.lync.com", .client = "10.0.0.1", .port = 443, .tunneled = -1},
     POLICY_CP_TLS,
     "  layer <ssl-intercept> x.cpl:4: rule x.cpl:5 matched (ssl.forward_proxy(no) "
     "ssl.verify_server(no))\n"},
    {{.host = "vpn.contoso.com",
      .client = "192.0.2.1",
      .port = 443,
      .protocol = "tcp",
      .tunneled = 1},
     POLICY_CP_DETECTED,
     "  layer <proxy> x.cpl:1: rule x.cpl:3 matched (DENY)\n"
     "  layer <proxy> x.cpl:6: rule x.cpl:8 matched (DENY)\n"},
};

static void test_explain_lines(void **state)
{
    (void)state;
    policy *p = policy_compile_text("x.cpl", policy_text, strlen(policy_text), NULL);
    assert_non_null(p);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        struct sockaddr_storage addr;
        policy_facts facts = facts_from_row(&cases[i].facts, &addr);
        char *text = NULL;
        size_t len = 0;
        FILE *out = open_memstream(&text, &len);
        assert_non_null(out);
        policy_decision explained, evaluated;
        policy_explain(p, &facts, cases[i].cp, &explained, out);
        fclose(out);
        assert_string_equal(text, cases[i].expected);
        free(text);
        /* explain must decide exactly what evaluate decides. */
        policy_evaluate(p, &facts, cases[i].cp, &evaluated);
        assert_int_equal(explained.verdict, evaluated.verdict);
        assert_int_equal(explained.verdict_rule.line, evaluated.verdict_rule.line);
        assert_int_equal(explained.last_rule.line, evaluated.last_rule.line);
        assert_int_equal(explained.detect_protocol, evaluated.detect_protocol);
        assert_int_equal(explained.ssl_forward_proxy, evaluated.ssl_forward_proxy);
        assert_int_equal(explained.tunnel_on_protocol_error, evaluated.tunnel_on_protocol_error);
        assert_int_equal(explained.verify_server, evaluated.verify_server);
    }
    policy_release(p);
}

static void test_explain_without_layers(void **state)
{
    (void)state;
    const char *text = "<proxy>\n  DENY\n";
    policy *p = policy_compile_text("y.cpl", text, strlen(text), NULL);
    struct fact_row row = {.port = -1, .tunneled = -1};
    struct sockaddr_storage addr;
    policy_facts facts = facts_from_row(&row, &addr);
    char *out_text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&out_text, &len);
    policy_decision d;
    policy_explain(p, &facts, POLICY_CP_TLS, &d, out);
    fclose(out);
    assert_string_equal(out_text, "  no <ssl-intercept> layer to consult\n");
    assert_int_equal(d.verdict, POLICY_UNSET);
    free(out_text);
    policy_release(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_explain_lines),
        cmocka_unit_test(test_explain_without_layers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
