#define _XOPEN_SOURCE 700
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "test_util.h"

void tmpdir_make(char *dir, size_t len)
{
    assert_true(len >= 64);
    snprintf(dir, len, "/tmp/handoff-certs-test-XXXXXX");
    assert_non_null(mkdtemp(dir));
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void tmpdir_remove(const char *dir)
{
    nftw(dir, remove_one, 8, FTW_DEPTH | FTW_PHYS);
}

void path_join(char *out, size_t len, const char *dir, const char *file)
{
    assert_true(snprintf(out, len, "%s/%s", dir, file) < (int)len);
}

static void add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    assert_non_null(ext);
    assert_int_equal(X509_add_ext(cert, ext, -1), 1);
    X509_EXTENSION_free(ext);
}

static X509 *cert_skeleton(EVP_PKEY *key, const char *cn, long serial, long valid_days)
{
    X509 *cert = X509_new();
    assert_non_null(cert);
    assert_int_equal(X509_set_version(cert, X509_VERSION_3), 1);
    assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(cert), serial), 1);
    assert_non_null(X509_gmtime_adj(X509_getm_notBefore(cert), -3600));
    assert_non_null(X509_time_adj_ex(X509_getm_notAfter(cert), valid_days, 0, NULL));
    assert_int_equal(X509_NAME_add_entry_by_txt(X509_get_subject_name(cert), "CN", MBSTRING_ASC,
                                                (const unsigned char *)cn, -1, -1, 0),
                     1);
    assert_int_equal(X509_set_pubkey(cert, key), 1);
    return cert;
}

X509 *test_ca_new(EVP_PKEY **key_out, long valid_days)
{
    return test_ca_new_with_usage(key_out, valid_days, NULL);
}

X509 *test_ca_new_with_usage(EVP_PKEY **key_out, long valid_days, const char *key_usage)
{
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    assert_non_null(key);
    X509 *ca = cert_skeleton(key, "throwaway test CA", 1, valid_days);
    assert_int_equal(X509_set_issuer_name(ca, X509_get_subject_name(ca)), 1);
    add_ext(ca, ca, NID_basic_constraints, "critical,CA:TRUE");
    if (key_usage != NULL)
        add_ext(ca, ca, NID_key_usage, key_usage);
    assert_true(X509_sign(ca, key, EVP_sha256()) > 0);
    *key_out = key;
    return ca;
}

X509 *test_server_cert(X509 *ca, EVP_PKEY *ca_key, const char *cn, const char *dns1,
                       const char *dns2, const char *ip, EVP_PKEY **key_out)
{
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    assert_non_null(key);
    X509 *cert = cert_skeleton(key, cn, 2, 90);
    if (key_out != NULL)
        *key_out = key;
    else
        EVP_PKEY_free(key);
    assert_int_equal(X509_set_issuer_name(cert, X509_get_subject_name(ca)), 1);
    char san[512];
    snprintf(san, sizeof san, "DNS:%s,DNS:%s,IP:%s", dns1, dns2, ip);
    add_ext(cert, ca, NID_subject_alt_name, san);
    add_ext(cert, ca, NID_basic_constraints, "CA:FALSE");
    assert_true(X509_sign(cert, ca_key, EVP_sha256()) > 0);
    return cert;
}

void test_write_pem(X509 *cert, EVP_PKEY *key, const char *cert_path, const char *key_path)
{
    FILE *fp = fopen(cert_path, "w");
    assert_non_null(fp);
    assert_int_equal(PEM_write_X509(fp, cert), 1);
    assert_int_equal(fclose(fp), 0);

    int fd = open(key_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    fp = fdopen(fd, "w");
    assert_non_null(fp);
    assert_int_equal(PEM_write_PrivateKey(fp, key, NULL, NULL, 0, NULL, NULL), 1);
    assert_int_equal(fclose(fp), 0);
}

certs_ca *test_handoff_ca(const char *dir, bool rsa)
{
    char fp[CERTS_FINGERPRINT_LEN], err[256] = "", cert[PATH_MAX], key[PATH_MAX];
    assert_int_equal(certs_ca_init(dir, rsa, fp, sizeof fp, err, sizeof err), 0);
    path_join(cert, sizeof cert, dir, "ca.crt");
    path_join(key, sizeof key, dir, "ca.key");
    certs_ca *ca = certs_ca_load(cert, key, err, sizeof err);
    assert_non_null(ca);
    return ca;
}
