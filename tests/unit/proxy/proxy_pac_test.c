/* The generated PAC file: what goes DIRECT, what goes to the proxy, and refused entries. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pac.h"

static char *generate(const char *proxy, const char *direct)
{
    char err[256] = "";
    size_t len = 0;
    char *pac = pac_generate(proxy, direct, &len, err, sizeof err);
    if (!pac)
        fail_msg("pac_generate refused '%s': %s", direct, err);
    assert_int_equal(strlen(pac), len);
    return pac;
}

static void assert_contains(const char *pac, const char *piece)
{
    if (!strstr(pac, piece))
        fail_msg("'%s' not in:\n%s", piece, pac);
}

static void spec_default_direct_list(void **state)
{
    (void)state;
    char *pac = generate("PROXY 127.0.0.1:3128", "localhost, 127.0.0.0/8, *.local");
    assert_contains(pac, "function FindProxyForURL(url, host)");
    assert_contains(pac, "isPlainHostName(host)");
    assert_contains(pac, "isInNet(host, \"127.0.0.0\", \"255.0.0.0\")");
    assert_contains(pac, "shExpMatch(host, \"*.local\")");
    assert_contains(pac, "dnsDomainIs(host, \".localhost\")");
    /* The proxy is the last answer, after every DIRECT test. */
    const char *proxy = strstr(pac, "return \"PROXY 127.0.0.1:3128\";");
    assert_non_null(proxy);
    assert_true(proxy > strstr(pac, "*.local"));
    assert_null(strstr(proxy + 1, "return"));
    /* Braces balance. */
    int depth = 0;
    for (const char *p = pac; *p; p++)
        depth += *p == '{' ? 1 : *p == '}' ? -1 : 0;
    assert_int_equal(depth, 0);
    free(pac);
}

static void cidr_is_normalised_to_its_network(void **state)
{
    (void)state;
    char *pac = generate("PROXY p:1", "10.1.2.3/8, 192.168.7.9/24, 172.16.0.1");
    assert_contains(pac, "isInNet(host, \"10.0.0.0\", \"255.0.0.0\")");
    assert_contains(pac, "isInNet(host, \"192.168.7.0\", \"255.255.255.0\")");
    assert_contains(pac, "isInNet(host, \"172.16.0.1\", \"255.255.255.255\")");
    free(pac);
}

static void domains_match_themselves_and_their_subdomains(void **state)
{
    (void)state;
    char *pac = generate("PROXY p:1", " intranet.corp ,.lan");
    assert_contains(pac, "host == \"intranet.corp\"");
    assert_contains(pac, "dnsDomainIs(host, \".intranet.corp\")");
    assert_contains(pac, "dnsDomainIs(host, \".lan\")");
    assert_null(strstr(pac, "\"..lan\""));
    free(pac);
}

static void empty_direct_list_sends_everything_to_the_proxy(void **state)
{
    (void)state;
    char *pac = generate("PROXY proxy.corp:8080; DIRECT", "");
    assert_contains(pac, "return \"PROXY proxy.corp:8080; DIRECT\";");
    assert_null(strstr(pac, "isInNet"));
    assert_null(strstr(pac, "shExpMatch"));
    free(pac);
}

static void bad_entries_are_refused_with_a_reason(void **state)
{
    (void)state;
    static const char *bad[] = {"10.0.0.0/33", "10.0.0.0/x", "exa\"mple.com",
                                "a b",         "x/y",        "host);alert(1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char err[256] = "";
        size_t len = 0;
        char *pac = pac_generate("PROXY p:1", bad[i], &len, err, sizeof err);
        if (pac) {
            free(pac);
            fail_msg("accepted direct entry '%s'", bad[i]);
        }
        assert_true(err[0] != '\0');
    }
}

static void proxy_with_a_quote_is_refused(void **state)
{
    (void)state;
    char err[256] = "";
    size_t len = 0;
    assert_null(pac_generate("PROXY \"p:1", "localhost", &len, err, sizeof err));
    assert_non_null(strstr(err, "proxy"));
}

static void long_direct_list_fits(void **state)
{
    (void)state;
    char list[1000] = "";
    for (int i = 0; i < 40; i++) {
        char entry[24];
        snprintf(entry, sizeof entry, "%shost%d.corp", i ? ", " : "", i);
        strcat(list, entry);
    }
    char *pac = generate("PROXY p:1", list);
    assert_contains(pac, "host0.corp");
    assert_contains(pac, "host39.corp");
    free(pac);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(spec_default_direct_list),
        cmocka_unit_test(cidr_is_normalised_to_its_network),
        cmocka_unit_test(domains_match_themselves_and_their_subdomains),
        cmocka_unit_test(empty_direct_list_sends_everything_to_the_proxy),
        cmocka_unit_test(bad_entries_are_refused_with_a_reason),
        cmocka_unit_test(proxy_with_a_quote_is_refused),
        cmocka_unit_test(long_direct_list_fits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
