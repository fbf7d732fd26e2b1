/* Negotiate acceptor input handling without a KDC: a keytab with a random key is written here,
 * and every malformed, cut or foreign token must fail with a reason (never crash). Real tickets
 * are tested in tests/integration/test_negotiate.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <krb5/krb5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth_negotiate.h"

static char dir[64], keytab[128];

static int make_keytab(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/handoff-negotiate-XXXXXX");
    assert_non_null(mkdtemp(dir));
    char conf[160], rc[160];
    snprintf(conf, sizeof conf, "%s/krb5.conf", dir);
    snprintf(rc, sizeof rc, "%s", dir);
    FILE *f = fopen(conf, "w");
    fprintf(f, "[libdefaults]\n  default_realm = TEST.HANDOFF\n");
    fclose(f);
    setenv("KRB5_CONFIG", conf, 1);
    setenv("KRB5RCACHEDIR", rc, 1);
    snprintf(keytab, sizeof keytab, "%s/service.keytab", dir);

    krb5_context k;
    assert_int_equal(krb5_init_context(&k), 0);
    krb5_keytab kt;
    char name[200];
    snprintf(name, sizeof name, "FILE:%s", keytab);
    assert_int_equal(krb5_kt_resolve(k, name, &kt), 0);
    krb5_keytab_entry e;
    memset(&e, 0, sizeof e);
    assert_int_equal(krb5_parse_name(k, "HTTP/localhost@TEST.HANDOFF", &e.principal), 0);
    e.vno = 1;
    assert_int_equal(krb5_c_make_random_key(k, ENCTYPE_AES256_CTS_HMAC_SHA1_96, &e.key), 0);
    assert_int_equal(krb5_kt_add_entry(k, kt, &e), 0);
    krb5_free_keyblock_contents(k, &e.key);
    krb5_free_principal(k, e.principal);
    krb5_kt_close(k, kt);
    krb5_free_context(k);
    return 0;
}

static int remove_keytab(void **state)
{
    (void)state;
    char path[200];
    unlink(keytab);
    snprintf(path, sizeof path, "%s/krb5.conf", dir);
    unlink(path);
    /* a replay cache may have been created there */
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void acceptor_needs_a_usable_keytab(void **state)
{
    (void)state;
    char err[512];
    negotiate_acceptor *a =
        negotiate_acceptor_new("/nonexistent/handoff.keytab", NULL, true, err, sizeof err);
    assert_null(a);
    assert_non_null(strstr(err, "/nonexistent/handoff.keytab"));

    a = negotiate_acceptor_new(keytab, "HTTP/other.example@TEST.HANDOFF", true, err, sizeof err);
    assert_null(a);
    assert_non_null(strstr(err, "HTTP/other.example"));

    a = negotiate_acceptor_new(keytab, "HTTP/localhost", true, err, sizeof err);
    assert_non_null(a);
    negotiate_acceptor_free(a);
}

static void expect_failure(negotiate_ctx *c, const char *value, const char *reason_part)
{
    const negotiate_result *r = negotiate_step(c, value, strlen(value));
    if (r->status != NEGOTIATE_FAILED)
        fail_msg("%s: not refused", value);
    assert_true(r->reason[0] != '\0');
    if (reason_part && !strstr(r->reason, reason_part))
        fail_msg("%s: reason '%s' lacks '%s'", value, r->reason, reason_part);
    assert_null(r->token_b64);
}

/* SPNEGO NegTokenInit offering Kerberos, with a Kerberos AP-REQ that is garbage. */
static const char spnego_with_bad_apreq[] =
    "Negotiate YC0GBisGAQUFAqAjMCGgDTALBgkqhkiG9xIBAgKiEAQOYIIAAAYJKoZIhvcSAQI=";

static void malformed_tokens_fail_with_a_reason(void **state)
{
    (void)state;
    char err[512];
    negotiate_acceptor *a = negotiate_acceptor_new(keytab, NULL, true, err, sizeof err);
    assert_non_null(a);
    negotiate_ctx *c = negotiate_ctx_new(a);
    expect_failure(c, "Basic YWxpY2U6eA==", "not a Negotiate");
    expect_failure(c, "NegotiateYII=", "not a Negotiate");
    expect_failure(c, "Negotiate", "empty");
    expect_failure(c, "Negotiate    ", "empty");
    expect_failure(c, "Negotiate ####", "not base64");
    expect_failure(c, "Negotiate YWJ", "not base64");     /* length not a multiple of 4 */
    expect_failure(c, "Negotiate Y=Jj", "not base64");    /* padding in the middle */
    expect_failure(c, "Negotiate YWJj", "token refused"); /* "abc" */
    expect_failure(c, "Negotiate AAAAAAAA", "token refused");
    expect_failure(c, spnego_with_bad_apreq, "token refused");

    /* every cut of a well-formed SPNEGO header must fail cleanly */
    const char *b64 = spnego_with_bad_apreq + strlen("Negotiate ");
    for (size_t cut = 4; cut < strlen(b64); cut += 4) {
        char v[200];
        snprintf(v, sizeof v, "Negotiate %.*s", (int)cut, b64);
        expect_failure(c, v, NULL);
    }

    char *huge = malloc(70000);
    memcpy(huge, "Negotiate ", 10);
    memset(huge + 10, 'A', 69988);
    huge[69998] = '\0';
    expect_failure(c, huge, "too large");
    free(huge);

    negotiate_ctx_free(c);
    negotiate_acceptor_free(a);
}

static void principals_split_at_the_last_unescaped_at(void **state)
{
    (void)state;
    char user[64], realm[64];
    assert_true(
        negotiate_split_principal("alice@TEST.HANDOFF", user, sizeof user, realm, sizeof realm));
    assert_string_equal(user, "alice");
    assert_string_equal(realm, "TEST.HANDOFF");
    assert_true(
        negotiate_split_principal("a\\@b@EXAMPLE.NET", user, sizeof user, realm, sizeof realm));
    assert_string_equal(user, "a\\@b");
    assert_string_equal(realm, "EXAMPLE.NET");
    assert_true(negotiate_split_principal("noreal", user, sizeof user, realm, sizeof realm));
    assert_string_equal(user, "noreal");
    assert_string_equal(realm, "");
    assert_false(negotiate_split_principal("alice@TEST.HANDOFF", user, 5, realm, sizeof realm));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(acceptor_needs_a_usable_keytab),
        cmocka_unit_test(malformed_tokens_fail_with_a_reason),
        cmocka_unit_test(principals_split_at_the_last_unescaped_at),
    };
    return cmocka_run_group_tests(tests, make_keytab, remove_keytab);
}
