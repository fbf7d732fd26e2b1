/* certs_ca_init and certs_ca_load: what `handoff ca init` writes and what the proxy accepts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "certs.h"
#include "test_util.h"

struct paths {
    char dir[PATH_MAX], cert[PATH_MAX], key[PATH_MAX];
};

static int setup(void **state)
{
    struct paths *p = calloc(1, sizeof *p);
    tmpdir_make(p->dir, sizeof p->dir);
    path_join(p->cert, sizeof p->cert, p->dir, "ca.crt");
    path_join(p->key, sizeof p->key, p->dir, "ca.key");
    *state = p;
    return 0;
}

static int teardown(void **state)
{
    struct paths *p = *state;
    tmpdir_remove(p->dir);
    free(p);
    return 0;
}

static X509 *read_cert(const char *path)
{
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    X509 *cert = PEM_read_X509(fp, NULL, NULL, NULL);
    fclose(fp);
    assert_non_null(cert);
    return cert;
}

static void assert_name_entry(X509 *cert, int nid, const char *want)
{
    char got[128];
    assert_true(X509_NAME_get_text_by_NID(X509_get_subject_name(cert), nid, got, sizeof got) > 0);
    assert_string_equal(got, want);
}

static void assert_is_good_ca(const char *cert_path, const char *key_path, const char *fingerprint)
{
    struct stat st;
    assert_int_equal(stat(key_path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);

    X509 *cert = read_cert(cert_path);
    assert_name_entry(cert, NID_commonName, "handoff CA");
    assert_name_entry(cert, NID_organizationName, "handoff");
    assert_int_equal(X509_NAME_cmp(X509_get_subject_name(cert), X509_get_issuer_name(cert)), 0);

    int at = X509_get_ext_by_NID(cert, NID_basic_constraints, -1);
    assert_true(at >= 0);
    assert_int_equal(X509_EXTENSION_get_critical(X509_get_ext(cert, at)), 1);
    BASIC_CONSTRAINTS *bc = X509_get_ext_d2i(cert, NID_basic_constraints, NULL, NULL);
    assert_non_null(bc);
    assert_true(bc->ca);
    BASIC_CONSTRAINTS_free(bc);

    at = X509_get_ext_by_NID(cert, NID_key_usage, -1);
    assert_true(at >= 0);
    assert_int_equal(X509_EXTENSION_get_critical(X509_get_ext(cert, at)), 1);
    assert_int_equal(X509_get_key_usage(cert), KU_KEY_CERT_SIGN | KU_CRL_SIGN);
    assert_non_null(X509_get0_subject_key_id(cert));

    /* Self-signed with SHA-256, and a valid chain of one. */
    EVP_PKEY *pub = X509_get0_pubkey(cert);
    assert_int_equal(X509_verify(cert, pub), 1);
    int sig = X509_get_signature_nid(cert);
    assert_true(sig == NID_ecdsa_with_SHA256 || sig == NID_sha256WithRSAEncryption);

    /* Ten years, backdated by a day. */
    time_t now = time(NULL);
    time_t day_ago = now - 23 * 3600, nine_years = now + 9L * 365 * 86400;
    assert_true(X509_cmp_time(X509_get0_notBefore(cert), &day_ago) < 0);
    assert_true(X509_cmp_time(X509_get0_notAfter(cert), &nine_years) > 0);

    unsigned char md[32];
    unsigned int len = 0;
    assert_int_equal(X509_digest(cert, EVP_sha256(), md, &len), 1);
    char want[CERTS_FINGERPRINT_LEN] = "";
    for (unsigned int i = 0; i < len; i++)
        snprintf(want + strlen(want), sizeof want - strlen(want), i ? ":%02X" : "%02X", md[i]);
    assert_string_equal(fingerprint, want);
    X509_free(cert);
}

static void init_ec_writes_p256_ca(void **state)
{
    struct paths *p = *state;
    char fp[CERTS_FINGERPRINT_LEN], err[256] = "";
    assert_int_equal(certs_ca_init(p->dir, false, fp, sizeof fp, err, sizeof err), 0);
    assert_is_good_ca(p->cert, p->key, fp);

    X509 *cert = read_cert(p->cert);
    EVP_PKEY *pub = X509_get0_pubkey(cert);
    assert_int_equal(EVP_PKEY_get_base_id(pub), EVP_PKEY_EC);
    char group[64];
    assert_int_equal(EVP_PKEY_get_group_name(pub, group, sizeof group, NULL), 1);
    assert_string_equal(group, "prime256v1");
    X509_free(cert);
}

static void init_rsa_writes_3072_bit_ca(void **state)
{
    struct paths *p = *state;
    char fp[CERTS_FINGERPRINT_LEN], err[256] = "";
    assert_int_equal(certs_ca_init(p->dir, true, fp, sizeof fp, err, sizeof err), 0);
    assert_is_good_ca(p->cert, p->key, fp);

    X509 *cert = read_cert(p->cert);
    assert_int_equal(EVP_PKEY_get_base_id(X509_get0_pubkey(cert)), EVP_PKEY_RSA);
    assert_int_equal(EVP_PKEY_get_bits(X509_get0_pubkey(cert)), 3072);
    X509_free(cert);
}

static char *slurp(const char *path)
{
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    char *buf = calloc(1, 16384);
    assert_non_null(buf);
    size_t n = fread(buf, 1, 16383, fp);
    assert_true(n > 0);
    fclose(fp);
    return buf;
}

static void init_refuses_to_overwrite_a_ca(void **state)
{
    struct paths *p = *state;
    char fp[CERTS_FINGERPRINT_LEN], err[512] = "";
    assert_int_equal(certs_ca_init(p->dir, false, fp, sizeof fp, err, sizeof err), 0);
    char *key_before = slurp(p->key), *cert_before = slurp(p->cert);

    assert_int_equal(certs_ca_init(p->dir, false, fp, sizeof fp, err, sizeof err), -1);
    assert_non_null(strstr(err, p->key));
    assert_non_null(strstr(err, "already exists"));

    char *key_after = slurp(p->key), *cert_after = slurp(p->cert);
    assert_string_equal(key_before, key_after);
    assert_string_equal(cert_before, cert_after);
    free(key_before);
    free(key_after);
    free(cert_before);
    free(cert_after);
}

static void init_creates_missing_private_directories(void **state)
{
    struct paths *p = *state;
    char dir[PATH_MAX], leaf_dir[PATH_MAX], fp[CERTS_FINGERPRINT_LEN], err[256] = "";
    path_join(dir, sizeof dir, p->dir, "state");
    path_join(leaf_dir, sizeof leaf_dir, dir, "ca");
    assert_int_equal(certs_ca_init(leaf_dir, false, fp, sizeof fp, err, sizeof err), 0);

    struct stat st;
    assert_int_equal(stat(leaf_dir, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0700);
    char key[PATH_MAX];
    path_join(key, sizeof key, leaf_dir, "ca.key");
    assert_int_equal(stat(key, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
}

static void load_accepts_what_init_wrote(bool rsa, struct paths *p)
{
    char fp[CERTS_FINGERPRINT_LEN], err[256] = "";
    assert_int_equal(certs_ca_init(p->dir, rsa, fp, sizeof fp, err, sizeof err), 0);
    certs_ca *ca = certs_ca_load(p->cert, p->key, err, sizeof err);
    assert_non_null(ca);

    X509 *on_disk = read_cert(p->cert);
    assert_int_equal(X509_cmp(certs_ca_cert(ca), on_disk), 0);
    char loaded_fp[CERTS_FINGERPRINT_LEN];
    assert_int_equal(certs_fingerprint(certs_ca_cert(ca), loaded_fp, sizeof loaded_fp), 0);
    assert_string_equal(loaded_fp, fp);
    X509_free(on_disk);
    certs_ca_free(ca);
}

static void load_accepts_ec_ca(void **state)
{
    load_accepts_what_init_wrote(false, *state);
}

static void load_accepts_rsa_ca(void **state)
{
    load_accepts_what_init_wrote(true, *state);
}

static void load_refuses_key_readable_by_others(void **state)
{
    struct paths *p = *state;
    char fp[CERTS_FINGERPRINT_LEN], err[512] = "";
    assert_int_equal(certs_ca_init(p->dir, false, fp, sizeof fp, err, sizeof err), 0);
    assert_int_equal(chmod(p->key, 0644), 0);

    assert_null(certs_ca_load(p->cert, p->key, err, sizeof err));
    assert_non_null(strstr(err, p->key));
    assert_non_null(strstr(err, "0644"));
    assert_non_null(strstr(err, "chmod 600"));

    assert_int_equal(chmod(p->key, 0640), 0);
    assert_null(certs_ca_load(p->cert, p->key, err, sizeof err));
    assert_non_null(strstr(err, "0640"));
}

static void load_of_missing_files_says_how_to_make_them(void **state)
{
    struct paths *p = *state;
    char err[512] = "";
    assert_null(certs_ca_load(p->cert, p->key, err, sizeof err));
    assert_non_null(strstr(err, p->cert));
    assert_non_null(strstr(err, "handoff ca init"));
    assert_non_null(strstr(err, p->dir));

    char fp[CERTS_FINGERPRINT_LEN];
    assert_int_equal(certs_ca_init(p->dir, false, fp, sizeof fp, err, sizeof err), 0);
    assert_int_equal(remove(p->key), 0);
    assert_null(certs_ca_load(p->cert, p->key, err, sizeof err));
    assert_non_null(strstr(err, p->key));
    assert_non_null(strstr(err, "handoff ca init"));
}

static void load_refuses_key_of_another_ca(void **state)
{
    struct paths *p = *state;
    char other_dir[PATH_MAX], other_key[PATH_MAX], fp[CERTS_FINGERPRINT_LEN], err[512] = "";
    path_join(other_dir, sizeof other_dir, p->dir, "other");
    path_join(other_key, sizeof other_key, other_dir, "ca.key");
    assert_int_equal(certs_ca_init(p->dir, false, fp, sizeof fp, err, sizeof err), 0);
    assert_int_equal(certs_ca_init(other_dir, false, fp, sizeof fp, err, sizeof err), 0);

    assert_null(certs_ca_load(p->cert, other_key, err, sizeof err));
    assert_non_null(strstr(err, "does not match"));
}

static void load_refuses_a_certificate_that_is_not_a_ca(void **state)
{
    struct paths *p = *state;
    EVP_PKEY *ca_key = NULL;
    X509 *ca = test_ca_new(&ca_key, 30);
    EVP_PKEY *server_key = NULL;
    X509 *server =
        test_server_cert(ca, ca_key, "server.test", "a.test", "b.test", "192.0.2.1", &server_key);
    test_write_pem(server, server_key, p->cert, p->key);
    char err[512] = "";
    assert_null(certs_ca_load(p->cert, p->key, err, sizeof err));
    assert_non_null(strstr(err, "not a CA certificate"));
    X509_free(server);
    EVP_PKEY_free(server_key);

    /* A real CA built elsewhere (no SKI, no keyUsage) is accepted. */
    test_write_pem(ca, ca_key, p->cert, p->key);
    certs_ca *loaded = certs_ca_load(p->cert, p->key, err, sizeof err);
    assert_non_null(loaded);
    certs_ca_free(loaded);
    X509_free(ca);
    EVP_PKEY_free(ca_key);
}

static void load_refuses_a_ca_whose_key_usage_forbids_crls(void **state)
{
    struct paths *p = *state;
    EVP_PKEY *key = NULL;
    X509 *ca = test_ca_new_with_usage(&key, 30, "critical,keyCertSign");
    test_write_pem(ca, key, p->cert, p->key);
    char err[512] = "";
    assert_null(certs_ca_load(p->cert, p->key, err, sizeof err));
    assert_non_null(strstr(err, "cRLSign"));
    assert_non_null(strstr(err, p->cert));
    X509_free(ca);
    EVP_PKEY_free(key);

    ca = test_ca_new_with_usage(&key, 30, "critical,cRLSign,digitalSignature");
    test_write_pem(ca, key, p->cert, p->key);
    assert_null(certs_ca_load(p->cert, p->key, err, sizeof err));
    assert_non_null(strstr(err, "keyCertSign"));
    X509_free(ca);
    EVP_PKEY_free(key);

    ca = test_ca_new_with_usage(&key, 30, "critical,keyCertSign,cRLSign");
    test_write_pem(ca, key, p->cert, p->key);
    certs_ca *loaded = certs_ca_load(p->cert, p->key, err, sizeof err);
    assert_non_null(loaded);
    certs_ca_free(loaded);
    X509_free(ca);
    EVP_PKEY_free(key);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(init_ec_writes_p256_ca, setup, teardown),
        cmocka_unit_test_setup_teardown(init_rsa_writes_3072_bit_ca, setup, teardown),
        cmocka_unit_test_setup_teardown(init_refuses_to_overwrite_a_ca, setup, teardown),
        cmocka_unit_test_setup_teardown(init_creates_missing_private_directories, setup, teardown),
        cmocka_unit_test_setup_teardown(load_accepts_ec_ca, setup, teardown),
        cmocka_unit_test_setup_teardown(load_accepts_rsa_ca, setup, teardown),
        cmocka_unit_test_setup_teardown(load_refuses_key_readable_by_others, setup, teardown),
        cmocka_unit_test_setup_teardown(load_of_missing_files_says_how_to_make_them, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(load_refuses_key_of_another_ca, setup, teardown),
        cmocka_unit_test_setup_teardown(load_refuses_a_certificate_that_is_not_a_ca, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(load_refuses_a_ca_whose_key_usage_forbids_crls, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
