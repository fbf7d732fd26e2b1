/* Request targets: CONNECT authorities and absolute-form http:// URLs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "url.h"

static void authorities_parse(void **state)
{
    (void)state;
    url_parts u;
    assert_int_equal(url_parse_authority("example.com:443", &u), 0);
    assert_string_equal(u.host, "example.com");
    assert_int_equal(u.port, 443);

    assert_int_equal(url_parse_authority("Sip.Example.COM:5061", &u), 0);
    assert_string_equal(u.host, "sip.example.com");
    assert_int_equal(u.port, 5061);

    assert_int_equal(url_parse_authority("[2001:db8::1]:8443", &u), 0);
    assert_string_equal(u.host, "2001:db8::1");
    assert_int_equal(u.port, 8443);

    assert_int_equal(url_parse_authority("127.0.0.1:65535", &u), 0);
    assert_string_equal(u.host, "127.0.0.1");
    assert_int_equal(u.port, 65535);
}

static void bad_authorities_are_refused(void **state)
{
    (void)state;
    static const char *bad[] = {
        "example.com", /* CONNECT needs a port */
        "example.com:",       "example.com:0", "example.com:65536",
        "example.com:44x",    ":443",          "[::1]",
        "[::1]443",           "::1:443",       "[example.com]:443",
        "exa mple.com:443",   "a/b:443",       "user@host:443",
        "example.com:123456",
    };
    url_parts u;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (url_parse_authority(bad[i], &u) == 0)
            fail_msg("accepted '%s'", bad[i]);
}

static void absolute_urls_parse(void **state)
{
    (void)state;
    url_parts u;
    const char *s = "http://Example.COM/a/b?c=d#f";
    assert_int_equal(url_parse_absolute(s, &u), 0);
    assert_string_equal(u.host, "example.com");
    assert_int_equal(u.port, 80);
    assert_string_equal(u.path, "/a/b?c=d#f");
    assert_true(u.path > s && u.path < s + strlen(s)); /* points into the string */

    assert_int_equal(url_parse_absolute("HTTP://origin.test:8080", &u), 0);
    assert_string_equal(u.host, "origin.test");
    assert_int_equal(u.port, 8080);
    assert_string_equal(u.path, "/");

    assert_int_equal(url_parse_absolute("http://[::1]:3128/x", &u), 0);
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.port, 3128);
    assert_string_equal(u.path, "/x");

    assert_int_equal(url_parse_absolute("http://[::1]/", &u), 0);
    assert_int_equal(u.port, 80);
}

static void bad_absolute_urls_are_refused(void **state)
{
    (void)state;
    static const char *bad[] = {
        "https://example.com/", /* TLS goes through CONNECT */
        "ftp://example.com/",     "/relative/path",
        "example.com/x",          "http://",
        "http:///path",           "http://user:pw@example.com/",
        "http://example.com:0/",  "http://example.com:99999/",
        "http://exa mple.com/",   "http://[::1/",
        "http://example.com:8o/",
    };
    url_parts u;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (url_parse_absolute(bad[i], &u) == 0)
            fail_msg("accepted '%s'", bad[i]);
}

static void host_longer_than_a_dns_name_is_refused(void **state)
{
    (void)state;
    char s[400] = "http://";
    memset(s + 7, 'a', 300);
    strcpy(s + 307, "/");
    url_parts u;
    assert_int_not_equal(url_parse_absolute(s, &u), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(authorities_parse),
        cmocka_unit_test(bad_authorities_are_refused),
        cmocka_unit_test(absolute_urls_parse),
        cmocka_unit_test(bad_absolute_urls_are_refused),
        cmocka_unit_test(host_longer_than_a_dns_name_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
