/* Canonical hosts, authorities and SNI: one table per family of spellings, then refusals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>

#include "names.h"

typedef struct {
    const char *in;
    const char *want;
    names_kind kind;
} spelling;

/* Feeds the host without a NUL right after it, so a parser reading on would see junk. */
static const char *canonical(const char *in, size_t n, names_host *h)
{
    char buf[600];
    assert_true(n + 8 < sizeof buf);
    memcpy(buf, in, n);
    memset(buf + n, 'Z', 8);
    return names_host_canonical(buf, n, h);
}

static void check_spellings(const spelling *t, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        names_host h;
        const char *err = canonical(t[i].in, strlen(t[i].in), &h);
        if (err)
            fail_msg("%s: %s", t[i].in, err);
        assert_string_equal(h.text, t[i].want);
        assert_int_equal(h.len, strlen(t[i].want));
        assert_int_equal(h.kind, t[i].kind);
    }
}

static void names_are_lowercased_without_trailing_dot(void **state)
{
    (void)state;
    static const spelling t[] = {
        {"Example.COM", "example.com", NAMES_NAME},
        {"localhost.", "localhost", NAMES_NAME},
        {"_sip._tls.Example.test", "_sip._tls.example.test", NAMES_NAME},
        {"xn--bcher-kva.example", "xn--bcher-kva.example", NAMES_NAME},
        {"XN--BCHER-KVA.example.", "xn--bcher-kva.example", NAMES_NAME},
        {"r3---sn-abc.example", "r3---sn-abc.example", NAMES_NAME},
        {"-", "-", NAMES_NAME},
        {"deadbeef", "deadbeef", NAMES_NAME}, /* hex digits without 0x: not a number */
        {"1.2.3.4.example", "1.2.3.4.example", NAMES_NAME},
        {"foo.0xg", "foo.0xg", NAMES_NAME},
        {"123abc", "123abc", NAMES_NAME},
    };
    check_spellings(t, sizeof t / sizeof t[0]);
}

static void every_inet_aton_spelling_is_a_dotted_quad(void **state)
{
    (void)state;
    static const spelling t[] = {
        {"127.0.0.2", "127.0.0.2", NAMES_IPV4},
        {"2130706434", "127.0.0.2", NAMES_IPV4},
        {"0x7f.2", "127.0.0.2", NAMES_IPV4},
        {"0X7F.2", "127.0.0.2", NAMES_IPV4},
        {"127.2", "127.0.0.2", NAMES_IPV4},
        {"127.0.2", "127.0.0.2", NAMES_IPV4},
        {"017700000002", "127.0.0.2", NAMES_IPV4},
        {"0177.0.0.02", "127.0.0.2", NAMES_IPV4},
        {"0x7f000002", "127.0.0.2", NAMES_IPV4},
        {"127.0.0.2.", "127.0.0.2", NAMES_IPV4},
        {"0", "0.0.0.0", NAMES_IPV4},
        {"4294967295", "255.255.255.255", NAMES_IPV4},
    };
    check_spellings(t, sizeof t / sizeof t[0]);
}

static void ipv6_is_rfc5952_and_v4_mapped_is_ipv4(void **state)
{
    (void)state;
    static const spelling t[] = {
        {"::1", "::1", NAMES_IPV6},
        {"0::1", "::1", NAMES_IPV6},
        {"[0:0:0:0:0:0:0:1]", "::1", NAMES_IPV6},
        {"2001:DB8::A", "2001:db8::a", NAMES_IPV6},
        {"2001:0db8:0000:0000:0001:0000:0000:0001", "2001:db8::1:0:0:1", NAMES_IPV6},
        {"2001:db8:0:0:1:0:0:0", "2001:db8:0:0:1::", NAMES_IPV6},
        {"2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1", NAMES_IPV6},
        {"[::ffff:127.0.0.2]", "127.0.0.2", NAMES_IPV4},
        {"::FFFF:7f00:2", "127.0.0.2", NAMES_IPV4},
        {"::", "::", NAMES_IPV6},
    };
    check_spellings(t, sizeof t / sizeof t[0]);
}

static void the_binary_address_comes_with_the_text(void **state)
{
    (void)state;
    names_host h;
    assert_null(canonical("0x7f.2", 6, &h));
    assert_int_equal(h.addr.v4.s_addr, htonl(0x7f000002));
    assert_null(canonical("[::ffff:10.1.2.3]", 17, &h));
    assert_int_equal(h.addr.v4.s_addr, htonl(0x0a010203));
    assert_null(canonical("::2", 3, &h));
    static const uint8_t two[16] = {[15] = 2};
    assert_memory_equal(h.addr.v6.s6_addr, two, 16);
}

typedef struct {
    const char *in;
    size_t len; /* 0: strlen */
    const char *why;
} refusal;

static void check_refusals(const refusal *t, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        names_host h;
        size_t n = t[i].len ? t[i].len : strlen(t[i].in);
        const char *err = canonical(t[i].in, n, &h);
        if (!err)
            fail_msg("accepted \"%s\" as %s", t[i].in, h.text);
        assert_string_equal(err, t[i].why);
        assert_int_equal(h.kind, 0);
        assert_string_equal(h.text, "");
    }
}

static void invalid_hosts_are_refused_with_a_reason(void **state)
{
    (void)state;
    static const refusal t[] = {
        {"", 0, "empty host"},
        {".", 0, "empty host"},
        {"a..b", 0, "empty label in host"},
        {".a", 0, "empty label in host"},
        {"a.b..", 0, "empty label in host"},
        {"\xff\xfe.evil", 0, "non-ASCII byte in host (IDNA names must be A-labels)"},
        {"b\xc3\xbc"
         "cher.example",
         0, "non-ASCII byte in host (IDNA names must be A-labels)"},
        {"x\ny", 0, "control byte in host"},
        {"x\x7fy", 0, "control byte in host"},
        {"a\0b", 3, "NUL byte in host"},
        {"*.evil.test", 0, "wildcard in host"},
        {"a b", 0, "character not allowed in host"},
        {"a/b", 0, "character not allowed in host"},
        {"a@b", 0, "character not allowed in host"},
        {"1.2.3.4.5", 0, "numeric host that is not an IPv4 address"},
        {"999.1.1.1", 0, "numeric host that is not an IPv4 address"},
        {"08", 0, "numeric host that is not an IPv4 address"},
        {"0x", 0, "numeric host that is not an IPv4 address"},
        {"4294967296", 0, "numeric host that is not an IPv4 address"},
        {"example.123", 0, "numeric host that is not an IPv4 address"},
        {"example.0x1f", 0, "numeric host that is not an IPv4 address"},
        {"[::1", 0, "unbalanced brackets in host"},
        {"[]", 0, "empty host"},
        {"[127.0.0.1]", 0, "bad IPv6 address"},
        {"[example.com]", 0, "bad IPv6 address"},
        {"fe80::1%eth0", 0, "IPv6 zone id in host"},
        {"[fe80::1%25eth0]", 0, "IPv6 zone id in host"},
        {":::1", 0, "bad IPv6 address"},
        {"1:2:3:4:5:6:7:8:9", 0, "bad IPv6 address"},
        {"00000::1", 0, "bad IPv6 address"},
        {"::1\0", 4, "bad IPv6 address"},
    };
    check_refusals(t, sizeof t / sizeof t[0]);
}

static void length_limits(void **state)
{
    (void)state;
    char name[300];
    names_host h;
    /* 4 labels of 63 bytes and one of 1: 4*64 + 1 = 257 > 253. Build exact lengths instead. */
    memset(name, 'a', sizeof name);
    for (size_t i = 63; i < sizeof name; i += 64)
        name[i] = '.';
    assert_null(canonical(name, 253, &h)); /* ends in "a": 253 bytes */
    assert_int_equal(h.len, 253);
    name[253] = '.';
    assert_null(canonical(name, 254, &h)); /* the trailing dot does not count */
    assert_int_equal(h.len, 253);
    name[253] = 'a';
    assert_string_equal(canonical(name, 254, &h), "host longer than 253 bytes");
    assert_string_equal(canonical(name, 255, &h), "host longer than 253 bytes");

    /* SPEC 4: only the whole name is bounded; a long label is for the resolver to refuse. */
    memset(name, 'b', 64);
    assert_null(canonical(name, 64, &h));
}

typedef struct {
    const char *in;
    const char *host;
    unsigned port;
} authority_case;

static void authorities_parse(void **state)
{
    (void)state;
    static const authority_case connect_ok[] = {
        {"Example.COM:443", "example.com", 443},
        {"example.com.:443", "example.com", 443},
        {"[::1]:8443", "::1", 8443},
        {"[::ffff:127.0.0.2]:443", "127.0.0.2", 443},
        {"2130706434:65535", "127.0.0.2", 65535},
        {"a:0443", "a", 443},
    };
    for (size_t i = 0; i < sizeof connect_ok / sizeof connect_ok[0]; i++) {
        names_authority a;
        const char *err = names_connect_target(connect_ok[i].in, strlen(connect_ok[i].in), &a);
        if (err)
            fail_msg("%s: %s", connect_ok[i].in, err);
        assert_string_equal(a.host.text, connect_ok[i].host);
        assert_int_equal(a.port, connect_ok[i].port);
    }

    names_authority a;
    assert_null(names_host_header("BLOCKED.test", 12, 80, &a));
    assert_string_equal(a.host.text, "blocked.test");
    assert_int_equal(a.port, 80);
    assert_null(names_host_header("[2001:DB8::1]", 13, 443, &a));
    assert_string_equal(a.host.text, "2001:db8::1");
    assert_int_equal(a.host.kind, NAMES_IPV6);
    assert_int_equal(a.port, 443);
    assert_null(names_url_authority("0x7f.2:8080", 11, 80, &a));
    assert_string_equal(a.host.text, "127.0.0.2");
    assert_int_equal(a.port, 8080);
}

static void bad_authorities_are_refused(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        const char *why;
    } connect_bad[] = {
        {"blocked.test", "port missing"},
        {"blocked.test:", "empty port"},
        {"blocked.test:0", "port 0"},
        {"BLOCKED.TEST:443x", "port is not a number"},
        {"blocked.test:+443", "port is not a number"},
        {"blocked.test:65536", "port out of range"},
        {"blocked.test:99999999999999999999", "port out of range"},
        {":443", "empty host"},
        {"", "empty host"},
        {"[]:443", "empty host"},
        {"::1:443", "IPv6 address without brackets"},
        {"[::1]443", "bytes after a bracketed address"},
        {"[::1:443", "unbalanced brackets in host"},
        {"[::1]:", "empty port"},
        {"a..b:443", "empty label in host"},
        {"user@host:443", "character not allowed in host"},
        {"host :443", "character not allowed in host"},
    };
    for (size_t i = 0; i < sizeof connect_bad / sizeof connect_bad[0]; i++) {
        names_authority a;
        const char *err = names_connect_target(connect_bad[i].in, strlen(connect_bad[i].in), &a);
        if (!err)
            fail_msg("accepted %s", connect_bad[i].in);
        assert_string_equal(err, connect_bad[i].why);
        assert_int_equal(a.port, 0);
        assert_string_equal(a.host.text, "");
    }
    names_authority a;
    assert_string_equal(names_host_header("blocked.test:", 13, 80, &a), "empty port");
    assert_string_equal(names_host_header("blocked.test:0", 14, 80, &a), "port 0");
    assert_string_equal(names_host_header("", 0, 80, &a), "empty host");
    assert_string_equal(names_url_authority("user:pw@example.com", 19, 80, &a), "userinfo in URL");
    assert_string_equal(names_url_authority("@example.com", 12, 80, &a), "userinfo in URL");
}

static void sni_must_be_a_host_name(void **state)
{
    (void)state;
    names_host h;
    assert_null(names_sni_canonical((const uint8_t *)"WWW.Example.test.", 17, &h));
    assert_string_equal(h.text, "www.example.test");
    assert_int_equal(h.kind, NAMES_NAME);

    static const struct {
        const char *in;
        size_t len;
        const char *why;
    } bad[] = {
        {"", 0, "empty SNI"},
        {"\xff\xfe.evil", 8, "non-ASCII byte in host (IDNA names must be A-labels)"},
        {"x\ny.test", 8, "control byte in host"},
        {"a\0.test", 7, "NUL byte in host"},
        {"*.evil.test", 11, "wildcard in host"},
        {"evil..test", 10, "empty label in host"},
        {"1.2.3.4.5", 9, "numeric host that is not an IPv4 address"},
        {"x.test:443", 10, "bad IPv6 address"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *err = names_sni_canonical((const uint8_t *)bad[i].in, bad[i].len, &h);
        if (!err)
            fail_msg("accepted SNI %s", bad[i].in);
        assert_string_equal(err, bad[i].why);
        assert_string_equal(h.text, "");
    }
    /* IP literals: the one error compared by pointer. */
    static const char *const literals[] = {"127.0.0.1", "2130706434", "::1", "[::1]",
                                           "::ffff:1.2.3.4"};
    for (size_t i = 0; i < sizeof literals / sizeof literals[0]; i++) {
        const char *err =
            names_sni_canonical((const uint8_t *)literals[i], strlen(literals[i]), &h);
        assert_ptr_equal(err, names_err_sni_ip_literal);
        assert_int_equal(h.kind, 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(names_are_lowercased_without_trailing_dot),
        cmocka_unit_test(every_inet_aton_spelling_is_a_dotted_quad),
        cmocka_unit_test(ipv6_is_rfc5952_and_v4_mapped_is_ipv4),
        cmocka_unit_test(the_binary_address_comes_with_the_text),
        cmocka_unit_test(invalid_hosts_are_refused_with_a_reason),
        cmocka_unit_test(length_limits),
        cmocka_unit_test(authorities_parse),
        cmocka_unit_test(bad_authorities_are_refused),
        cmocka_unit_test(sni_must_be_a_host_name),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
