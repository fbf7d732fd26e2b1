/* The groups file: who is in which group, and every mistake reported at FILE:LINE:COL. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <pthread.h>

#include "groups.h"

static policy_groups *compile(const char *text)
{
    policy_errors errs;
    policy_groups *g = policy_groups_compile_text("g.txt", text, strlen(text), &errs);
    if (!g) {
        print_error("did not compile: %d:%d: %s\n", errs.items[0].line, errs.items[0].col,
                    errs.items[0].message);
        fail();
    }
    assert_int_equal(errs.count, 0);
    return g;
}

/* The groups of user joined by spaces. */
static void expect_groups(const policy_groups *g, const char *user, const char *want)
{
    size_t n;
    const char *const *list = policy_groups_of(g, user, &n);
    char got[256] = "";
    for (size_t i = 0; i < n; i++) {
        strcat(got, i ? " " : "");
        strcat(got, list[i]);
    }
    if (strcmp(got, want) != 0) {
        print_error("groups of %s: '%s', want '%s'\n", user, got, want);
        fail();
    }
}

static void test_lookup(void **state)
{
    (void)state;
    policy_groups *g = compile("# SfB pilot\n"
                               "staff: alice bob\t carol  ; contractors are not staff\n"
                               "\n"
                               "  admins :alice\r\n"
                               "empty:\n"
                               "staff: dave alice\n"
                               "pilot: Alice alice@TEST.HANDOFF\n");
    expect_groups(g, "alice", "staff admins");
    expect_groups(g, "bob", "staff");
    expect_groups(g, "carol", "staff");
    expect_groups(g, "dave", "staff");  /* a group continued on a later line */
    expect_groups(g, "Alice", "pilot"); /* user names are case-sensitive */
    expect_groups(g, "alice@TEST.HANDOFF", "pilot");
    expect_groups(g, "contractors", "");
    expect_groups(g, "", "");
    size_t n = 1;
    assert_null(policy_groups_of(g, "nobody", &n));
    assert_int_equal(n, 0);
    assert_null(policy_groups_of(NULL, "alice", &n));
    policy_groups_release(g);
}

static void test_errors(void **state)
{
    (void)state;
    const char *text = "staff alice\n"
                       "ok: alice\n"
                       "  : bob\n"
                       "two words: carol\n"
                       "a: b: c\n"
                       "x: y\x01z\n";
    policy_errors errs;
    assert_null(policy_groups_compile_text("g.txt", text, strlen(text), &errs));
    static const struct {
        int line, col;
        const char *says;
    } want[] = {
        {1, 1, "expected 'GROUP: user"},      {3, 3, "expected a group name before ':'"},
        {4, 4, "a group name has no spaces"}, {5, 4, "unexpected ':' in the user name 'b:'"},
        {6, 5, "control character 0x01"},
    };
    assert_int_equal(errs.count, sizeof want / sizeof *want);
    for (size_t i = 0; i < errs.count; i++) {
        assert_string_equal(errs.items[i].file, "g.txt");
        if (errs.items[i].line != want[i].line || errs.items[i].col != want[i].col ||
            !strstr(errs.items[i].message, want[i].says)) {
            print_error("error %zu: %d:%d: %s\n", i, errs.items[i].line, errs.items[i].col,
                        errs.items[i].message);
            fail();
        }
    }
    policy_errors_free(&errs);
    assert_null(policy_groups_compile_file("/nonexistent/groups", &errs));
    assert_int_equal(errs.count, 1);
    assert_int_equal(errs.items[0].line, 0);
    assert_non_null(strstr(errs.items[0].message, "cannot open"));
    policy_errors_free(&errs);
}

static void *lookup_many(void *arg)
{
    policy_groups *g = arg;
    for (int i = 0; i < 20000; i++) {
        policy_groups *mine = policy_groups_retain(g);
        size_t n;
        const char *const *list = policy_groups_of(mine, "u7", &n);
        if (n != 1 || strcmp(list[0], "staff") != 0)
            return (void *)1;
        policy_groups_release(mine);
    }
    policy_groups_release(g);
    return NULL;
}

static void test_shared_between_threads(void **state)
{
    (void)state;
    policy_groups *g = compile("staff: u1 u2 u3 u4 u5 u6 u7\n");
    pthread_t threads[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&threads[i], NULL, lookup_many, policy_groups_retain(g)),
                         0);
    policy_groups_release(g);
    for (int i = 0; i < 4; i++) {
        void *result;
        assert_int_equal(pthread_join(threads[i], &result), 0);
        assert_null(result);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lookup),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_shared_between_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
