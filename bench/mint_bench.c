/*
 * Cost of a leaf-cache miss: minting and signing one leaf with certs_mint_leaf, for an ECDSA
 * P-256 CA and an RSA-3072 CA. Prints the median over 5 runs of N mints, per mint.
 *
 * Build (after building handoff_certs in BUILD, e.g. build/):
 *   cc -O2 -std=gnu11 -Icerts bench/mint_bench.c BUILD/certs/libhandoff_certs.a \
 *      -lcrypto -lpthread -o mint_bench
 * Run:  ./mint_bench [N]     (default N = 200)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "certs.h"

#define RUNS 5

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static certs_ca *make_ca(const char *dir, int rsa)
{
    char fp[CERTS_FINGERPRINT_LEN], err[512], cert[4096], key[4096];
    if (certs_ca_init(dir, rsa, fp, sizeof fp, err, sizeof err) != 0) {
        fprintf(stderr, "ca init: %s\n", err);
        return NULL;
    }
    snprintf(cert, sizeof cert, "%s/ca.crt", dir);
    snprintf(key, sizeof key, "%s/ca.key", dir);
    certs_ca *ca = certs_ca_load(cert, key, err, sizeof err);
    if (ca == NULL)
        fprintf(stderr, "ca load: %s\n", err);
    return ca;
}

/* Median nanoseconds per mint, or a negative value on failure. */
static double bench(certs_ca *ca, EVP_PKEY *leaf_key, int n)
{
    double per_mint[RUNS];
    for (int run = 0; run < RUNS; run++) {
        double start = now_ns();
        for (int i = 0; i < n; i++) {
            char name[64];
            snprintf(name, sizeof name, "host%d.bench.example", i);
            X509 *leaf =
                certs_mint_leaf(ca, leaf_key, NULL, name, "http://127.0.0.1:3128/handoff-ca.crl");
            if (leaf == NULL)
                return -1;
            X509_free(leaf);
        }
        per_mint[run] = (now_ns() - start) / n;
    }
    qsort(per_mint, RUNS, sizeof per_mint[0], cmp_double);
    return per_mint[RUNS / 2];
}

static void remove_ca(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/ca.crt", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/ca.key", dir);
    unlink(path);
    rmdir(dir);
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 200;
    if (n <= 0) {
        fprintf(stderr, "usage: %s [N]\n", argv[0]);
        return 1;
    }
    EVP_PKEY *leaf_key = certs_leaf_key_new();
    if (leaf_key == NULL)
        return 1;

    int rc = 0;
    const char *labels[] = {"ECDSA P-256 CA", "RSA-3072 CA"};
    for (int rsa = 0; rsa <= 1; rsa++) {
        char dir[] = "/tmp/handoff-mint-bench-XXXXXX";
        if (mkdtemp(dir) == NULL)
            return 1;
        certs_ca *ca = make_ca(dir, rsa);
        double ns = ca ? bench(ca, leaf_key, n) : -1;
        if (ns < 0) {
            fprintf(stderr, "%s: minting failed\n", labels[rsa]);
            rc = 1;
        } else {
            printf("%-15s %8.1f us per mint (median of %d runs of %d)\n", labels[rsa], ns / 1000,
                   RUNS, n);
        }
        certs_ca_free(ca);
        remove_ca(dir);
    }
    EVP_PKEY_free(leaf_key);
    return rc;
}
