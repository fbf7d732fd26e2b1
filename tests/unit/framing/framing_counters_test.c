#include "framing.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

static void counts_each_name_separately(void **state)
{
    (void)state;
    framing_counters c = {0};
    framing_count(&c, "INVITE");
    framing_count(&c, "2xx");
    framing_count(&c, "INVITE");
    assert_int_equal(framing_counter_get(&c, "INVITE"), 2);
    assert_int_equal(framing_counter_get(&c, "2xx"), 1);
    assert_int_equal(framing_counter_get(&c, "BYE"), 0);
    assert_int_equal(c.used, 2);
    assert_string_equal(c.items[0].name, "INVITE");
    assert_string_equal(c.items[1].name, "2xx");
}

static void overflow_goes_to_other(void **state)
{
    (void)state;
    framing_counters c = {0};
    char name[16];
    for (int i = 0; i < FRAMING_MAX_COUNTERS + 5; i++) {
        snprintf(name, sizeof name, "m%d", i);
        framing_count(&c, name);
    }
    assert_int_equal(c.used, FRAMING_MAX_COUNTERS);
    /* All slots but the last hold real names; the 6 names without a slot land in "other". */
    assert_int_equal(framing_counter_get(&c, "m0"), 1);
    snprintf(name, sizeof name, "m%d", FRAMING_MAX_COUNTERS - 2);
    assert_int_equal(framing_counter_get(&c, name), 1);
    snprintf(name, sizeof name, "m%d", FRAMING_MAX_COUNTERS - 1);
    assert_int_equal(framing_counter_get(&c, name), 0);
    assert_int_equal(framing_counter_get(&c, "other"), 6);
    /* Names that already have a slot keep counting there. */
    framing_count(&c, "m3");
    assert_int_equal(framing_counter_get(&c, "m3"), 2);
}

static void long_names_share_their_truncated_counter(void **state)
{
    (void)state;
    framing_counters c = {0};
    char a[64], b[64];
    memset(a, 'X', sizeof a - 1);
    a[sizeof a - 1] = '\0';
    memcpy(b, a, sizeof b);
    b[50] = 'Y'; /* differs only after the stored length */
    framing_count(&c, a);
    framing_count(&c, b);
    assert_int_equal(c.used, 1);
    assert_int_equal(strlen(c.items[0].name), FRAMING_COUNTER_NAME - 1);
    assert_int_equal(c.items[0].count, 2);
}

static void null_counters_are_ignored(void **state)
{
    (void)state;
    framing_count(NULL, "INVITE");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(counts_each_name_separately),
        cmocka_unit_test(overflow_goes_to_other),
        cmocka_unit_test(long_names_share_their_truncated_counter),
        cmocka_unit_test(null_counters_are_ignored),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
