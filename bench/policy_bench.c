/*
 * A blocklist of 100,000 url.domain values (issue 16): compile time, and median nanoseconds per
 * checkpoint-1 evaluation, for the two shapes a blocklist takes: 100,000 rules
 * "url.domain=dN.test DENY" in one layer, and one rule with a 100,000-value list. The goals are a
 * compile in at most 1 s and an evaluation in at most 2 µs.
 *
 * Built by CMake as the target policy_bench (not run by ctest):
 *   cmake --build build --target policy_bench && build/policy/policy_bench
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "policy.h"

#define DOMAINS    100000
#define RUNS       7
#define ITERATIONS 200000

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The text of one shape, with a rule before and after the blocklist as real policies have. */
static char *blocklist(int as_list, size_t *len)
{
    size_t cap = (size_t)DOMAINS * 40 + 1024, n = 0;
    char *s = malloc(cap);
    if (!s)
        exit(1);
    n += (size_t)snprintf(s + n, cap - n, "<proxy>\n  method=CONNECT url.port=!(443, 5061) DENY\n");
    if (as_list) {
        n += (size_t)snprintf(s + n, cap - n, "  url.domain=(");
        for (int i = 0; i < DOMAINS; i++)
            n += (size_t)snprintf(s + n, cap - n, "%sd%d.test", i ? ", " : "", i);
        n += (size_t)snprintf(s + n, cap - n, ") DENY\n");
    } else {
        for (int i = 0; i < DOMAINS; i++)
            n += (size_t)snprintf(s + n, cap - n, "  url.domain=d%d.test DENY\n", i);
    }
    n += (size_t)snprintf(s + n, cap - n, "  ALLOW\n");
    *len = n;
    return s;
}

static void bench(int as_list)
{
    size_t len;
    char *text = blocklist(as_list, &len);
    double compile[RUNS];
    policy *p = NULL;
    for (int r = 0; r < RUNS; r++) {
        if (p)
            policy_release(p);
        double t0 = now_ns();
        p = policy_compile_text("bench.cpl", text, len, NULL);
        compile[r] = now_ns() - t0;
        if (!p) {
            fprintf(stderr, "the blocklist did not compile\n");
            exit(1);
        }
    }
    qsort(compile, RUNS, sizeof *compile, by_value);

    /* Hosts that hit the list deep and shallow, and ones that miss it (the common case). */
    static const char *const hosts[] = {"www.d99999.test", "cdn.img.d5.test", "example.com",
                                        "a.b.c.d.example.org", "d100001.test"};
    const size_t host_count = sizeof hosts / sizeof *hosts;
    double per_eval[RUNS];
    unsigned denied = 0;
    for (int r = 0; r < RUNS; r++) {
        double t0 = now_ns();
        for (int i = 0; i < ITERATIONS; i++) {
            policy_facts f = {
                .host = hosts[i % host_count], .port = 443, .method = "CONNECT", .tunneled = -1};
            policy_decision d;
            policy_evaluate(p, &f, POLICY_CP_REQUEST, &d);
            denied += d.verdict == POLICY_DENY;
        }
        per_eval[r] = (now_ns() - t0) / ITERATIONS;
    }
    qsort(per_eval, RUNS, sizeof *per_eval, by_value);
    printf("%-28s compile %7.1f ms   evaluate %6.0f ns   (%u of %u denied)\n",
           as_list ? "one rule, 100,000 values" : "100,000 rules", compile[RUNS / 2] / 1e6,
           per_eval[RUNS / 2], denied / RUNS, ITERATIONS);
    policy_release(p);
    free(text);
}

int main(void)
{
    printf("policy of %d url.domain values, median of %d runs\n", DOMAINS, RUNS);
    bench(0);
    bench(1);
    return 0;
}
