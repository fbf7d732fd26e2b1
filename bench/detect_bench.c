/*
 * Nanoseconds per detect_classify call on a captured ClientHello, a SIP INVITE and an MS-TURN
 * pseudo-TLS hello, median of 5 runs.
 *
 * Build and run (from the repository root):
 *   cc -O2 -std=c11 -Idetect bench/detect_bench.c $(ls detect/detect_*.c) -o /tmp/detect_bench
 *   /tmp/detect_bench tests/fixtures/detect
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "detect.h"

#define RUNS       5
#define ITERATIONS 200000

static size_t load(const char *dir, const char *name, uint8_t *buf, size_t cap)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        perror(path);
        exit(1);
    }
    size_t n = fread(buf, 1, cap, f);
    fclose(f);
    return n;
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Keeps the compiler from dropping calls whose result is unused. */
static volatile detect_protocol sink;

static double median_ns_per_call(const uint8_t *p, size_t n)
{
    double runs[RUNS];
    for (int r = 0; r < RUNS; r++) {
        double start = now_ns();
        for (int i = 0; i < ITERATIONS; i++) {
            detect_result out;
            detect_classify(p, n, &out);
            sink = out.protocol;
        }
        runs[r] = (now_ns() - start) / ITERATIONS;
    }
    qsort(runs, RUNS, sizeof runs[0], compare_doubles);
    return runs[RUNS / 2];
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "tests/fixtures/detect";
    const char *inputs[] = {"ssl/openssl-s_client.bin", "sip/invite-sdp.txt",
                            "ms-turn/pseudo-tls-hello.bin"};
    static uint8_t buf[DETECT_MAX_BYTES];
    for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++) {
        size_t n = load(dir, inputs[i], buf, sizeof buf);
        detect_result out;
        detect_classify(buf, n, &out);
        printf("%-32s %5zu bytes  %-8s %8.1f ns/classification\n", inputs[i], n,
               detect_protocol_name(out.protocol), median_ns_per_call(buf, n));
    }
    return 0;
}
