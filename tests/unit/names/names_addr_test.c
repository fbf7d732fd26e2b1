/* Socket addresses for the self-check, and escaping for logs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>

#include "names.h"

static struct sockaddr_storage v4(const char *text, uint16_t port)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *s = (struct sockaddr_in *)&ss;
    s->sin_family = AF_INET;
    s->sin_port = htons(port);
    assert_int_equal(inet_pton(AF_INET, text, &s->sin_addr), 1);
    return ss;
}

static struct sockaddr_storage v6(const char *text, uint16_t port)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in6 *s = (struct sockaddr_in6 *)&ss;
    s->sin6_family = AF_INET6;
    s->sin6_port = htons(port);
    assert_int_equal(inet_pton(AF_INET6, text, &s->sin6_addr), 1);
    return ss;
}

#define SA(x) ((const struct sockaddr *)&(x))

static void v4_mapped_becomes_ipv4_with_its_port(void **state)
{
    (void)state;
    struct sockaddr_storage in = v6("::ffff:127.0.0.1", 3128), out;
    assert_int_equal(names_sockaddr_canonical(SA(in), &out), sizeof(struct sockaddr_in));
    const struct sockaddr_in *s = (const struct sockaddr_in *)&out;
    assert_int_equal(s->sin_family, AF_INET);
    assert_int_equal(ntohs(s->sin_port), 3128);
    assert_int_equal(s->sin_addr.s_addr, htonl(INADDR_LOOPBACK));

    struct sockaddr_storage plain = v6("::1", 1);
    assert_int_equal(names_sockaddr_canonical(SA(plain), &out), sizeof(struct sockaddr_in6));
    assert_int_equal(out.ss_family, AF_INET6);

    struct sockaddr_storage unix_sa;
    memset(&unix_sa, 0, sizeof unix_sa);
    unix_sa.ss_family = AF_UNIX;
    assert_int_equal(names_sockaddr_canonical(SA(unix_sa), &out), 0);
    assert_false(names_sockaddr_same_address(SA(unix_sa), SA(unix_sa)));
}

static void addresses_compare_after_canonicalising(void **state)
{
    (void)state;
    struct sockaddr_storage a = v4("127.0.0.1", 8080), b = v6("::ffff:127.0.0.1", 8080),
                            c = v6("::ffff:127.0.0.1", 9090), d = v4("127.0.0.2", 8080),
                            e = v6("::1", 8080), f = v6("0::1", 8080);
    assert_true(names_sockaddr_same_endpoint(SA(a), SA(b)));
    assert_true(names_sockaddr_same_address(SA(a), SA(c)));
    assert_false(names_sockaddr_same_endpoint(SA(a), SA(c)));
    assert_false(names_sockaddr_same_address(SA(a), SA(d)));
    assert_false(names_sockaddr_same_address(SA(a), SA(e)));
    assert_true(names_sockaddr_same_endpoint(SA(e), SA(f)));
    ((struct sockaddr_in6 *)&f)->sin6_scope_id = 2;
    assert_false(names_sockaddr_same_address(SA(e), SA(f)));
}

static void unspecified_addresses(void **state)
{
    (void)state;
    struct sockaddr_storage a = v4("0.0.0.0", 1), b = v6("::", 1), c = v6("::ffff:0.0.0.0", 1),
                            d = v4("127.0.0.1", 1), e = v6("::1", 1);
    assert_true(names_sockaddr_is_unspecified(SA(a)));
    assert_true(names_sockaddr_is_unspecified(SA(b)));
    assert_true(names_sockaddr_is_unspecified(SA(c)));
    assert_false(names_sockaddr_is_unspecified(SA(d)));
    assert_false(names_sockaddr_is_unspecified(SA(e)));
}

static void host_of_an_address(void **state)
{
    (void)state;
    names_host h;
    struct sockaddr_storage a = v6("::ffff:10.0.0.1", 1), b = v6("2001:DB8:0:0:0:0:0:1", 1);
    assert_null(names_host_from_sockaddr(SA(a), &h));
    assert_int_equal(h.kind, NAMES_IPV4);
    assert_string_equal(h.text, "10.0.0.1");
    assert_null(names_host_from_sockaddr(SA(b), &h));
    assert_int_equal(h.kind, NAMES_IPV6);
    assert_string_equal(h.text, "2001:db8::1");
    assert_int_equal(h.len, 11);
}

static void escape_renders_every_byte_printable(void **state)
{
    (void)state;
    char out[64];
    const uint8_t in[] = "\xff\xfe.evil\n\"q\\ \x00z";
    size_t n = sizeof in - 1;
    const char *want = "\\xff\\xfe.evil\\x0a\\x22q\\x5c \\x00z";
    assert_int_equal(names_escape(in, n, out, sizeof out), strlen(want));
    assert_string_equal(out, want);
    assert_true(strlen(want) + 1 <= NAMES_ESCAPED_SIZE(n));

    /* Truncation never splits an escape and still reports the full length. */
    assert_int_equal(names_escape(in, n, out, 6), strlen(want));
    assert_string_equal(out, "\\xff");
    assert_int_equal(names_escape(in, n, out, 9), strlen(want));
    assert_string_equal(out, "\\xff\\xfe");
    assert_int_equal(names_escape(in, n, out, 1), strlen(want));
    assert_string_equal(out, "");
    assert_int_equal(names_escape(in, n, NULL, 0), strlen(want));
    assert_int_equal(names_escape((const uint8_t *)"plain", 5, out, sizeof out), 5);
    assert_string_equal(out, "plain");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(v4_mapped_becomes_ipv4_with_its_port),
        cmocka_unit_test(addresses_compare_after_canonicalising),
        cmocka_unit_test(unspecified_addresses),
        cmocka_unit_test(host_of_an_address),
        cmocka_unit_test(escape_renders_every_byte_printable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
