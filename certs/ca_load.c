/* Loading the configured CA and the checks that keep a bad one from starting the proxy. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>

#include "ca_internal.h"

/* Never prompt on the terminal for a passphrase: an encrypted key is an error. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

static void dir_of(const char *path, char *out, size_t outlen)
{
    const char *slash = strrchr(path, '/');
    if (slash == NULL)
        snprintf(out, outlen, ".");
    else if (slash == path)
        snprintf(out, outlen, "/");
    else
        snprintf(out, outlen, "%.*s", (int)(slash - path), path);
}

static FILE *open_ca_file(const char *path, const char *what, struct stat *st, char *err,
                          size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) {
            char dir[PATH_MAX];
            dir_of(path, dir, sizeof dir);
            certs_set_err(err, errlen, "CA %s %s not found: create one with `handoff ca init %s`",
                          what, path, dir);
        } else {
            certs_set_err(err, errlen, "cannot open CA %s %s: %s", what, path, strerror(errno));
        }
        return NULL;
    }
    /* fstat the descriptor we read from, so the file checked is the file loaded. */
    if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode)) {
        certs_set_err(err, errlen, "CA %s %s is not a regular file", what, path);
        close(fd);
        return NULL;
    }
    FILE *fp = fdopen(fd, "r");
    if (fp == NULL) {
        certs_set_err(err, errlen, "cannot open CA %s %s: %s", what, path, strerror(errno));
        close(fd);
    }
    return fp;
}

static X509 *read_cert(const char *path, char *err, size_t errlen)
{
    struct stat st;
    FILE *fp = open_ca_file(path, "certificate", &st, err, errlen);
    if (fp == NULL)
        return NULL;
    X509 *cert = PEM_read_X509(fp, NULL, no_passphrase, NULL);
    fclose(fp);
    if (cert == NULL)
        certs_set_err(err, errlen, "CA certificate %s is not a PEM certificate: %s", path,
                      certs_ossl_reason());
    return cert;
}

static EVP_PKEY *read_key(const char *path, char *err, size_t errlen)
{
    struct stat st;
    FILE *fp = open_ca_file(path, "key", &st, err, errlen);
    if (fp == NULL)
        return NULL;
    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
        certs_set_err(err, errlen,
                      "CA key %s is readable by group or others (mode %04o): chmod 600 it", path,
                      (unsigned)(st.st_mode & 07777));
        fclose(fp);
        return NULL;
    }
    EVP_PKEY *key = PEM_read_PrivateKey(fp, NULL, no_passphrase, NULL);
    fclose(fp);
    if (key == NULL) {
        certs_set_err(err, errlen, "CA key %s is not an unencrypted PEM private key: %s", path,
                      certs_ossl_reason());
        return NULL;
    }
    int type = EVP_PKEY_get_base_id(key);
    if (type != EVP_PKEY_EC && type != EVP_PKEY_RSA) {
        certs_set_err(err, errlen, "CA key %s is neither RSA nor ECDSA", path);
        EVP_PKEY_free(key);
        return NULL;
    }
    return key;
}

/* Leaves carry this as their AKI; a CA without an SKI gets the RFC 5280 method 1 hash. */
static ASN1_OCTET_STRING *ca_key_id(X509 *cert)
{
    const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id(cert);
    if (ski != NULL)
        return ASN1_OCTET_STRING_dup(ski);

    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    ASN1_OCTET_STRING *id = ASN1_OCTET_STRING_new();
    if (id == NULL || X509_pubkey_digest(cert, EVP_sha1(), md, &len) != 1 ||
        ASN1_OCTET_STRING_set(id, md, (int)len) != 1) {
        ASN1_OCTET_STRING_free(id);
        return NULL;
    }
    return id;
}

static int check_ca(const char *cert_path, const char *key_path, X509 *cert, EVP_PKEY *key,
                    char *err, size_t errlen)
{
    if (X509_check_private_key(cert, key) != 1) {
        certs_set_err(err, errlen, "CA key %s does not match certificate %s", key_path, cert_path);
        return -1;
    }
    /* Also caches the certificate's extensions now, before any thread reads them. */
    if (X509_check_ca(cert) == 0) {
        certs_set_err(err, errlen,
                      "%s is not a CA certificate (it needs basicConstraints CA:TRUE and, if "
                      "keyUsage is present, keyCertSign)",
                      cert_path);
        return -1;
    }
    /* Absent keyUsage allows every use (RFC 5280 4.2.1.3); a present one must allow both. */
    uint32_t usage = X509_get_key_usage(cert);
    if ((usage & KU_KEY_CERT_SIGN) == 0 || (usage & KU_CRL_SIGN) == 0) {
        certs_set_err(err, errlen,
                      "CA certificate %s has a keyUsage without %s: it may not sign %s, which "
                      "clients reject; make one with `handoff ca init`",
                      cert_path, (usage & KU_KEY_CERT_SIGN) == 0 ? "keyCertSign" : "cRLSign",
                      (usage & KU_KEY_CERT_SIGN) == 0 ? "the leaves" : "the CRL");
        return -1;
    }
    if (X509_cmp_current_time(X509_get0_notAfter(cert)) <= 0) {
        certs_set_err(err, errlen, "CA certificate %s has expired", cert_path);
        return -1;
    }
    return 0;
}

certs_ca *certs_ca_load(const char *cert_path, const char *key_path, char *err, size_t errlen)
{
    if (cert_path == NULL || key_path == NULL) {
        certs_set_err(err, errlen, "internal error: no CA file names");
        return NULL;
    }
    ERR_clear_error();
    X509 *cert = read_cert(cert_path, err, errlen);
    if (cert == NULL)
        return NULL;
    EVP_PKEY *key = read_key(key_path, err, errlen);
    if (key == NULL || check_ca(cert_path, key_path, cert, key, err, errlen) != 0)
        goto fail;

    certs_ca *ca = calloc(1, sizeof *ca);
    if (ca == NULL)
        goto out_of_memory;
    ca->key_id = ca_key_id(cert);
    ca->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    ca->issued = certs_issued_new(CERTS_ISSUED_DEFAULT_CAPACITY);
    int days = 0, secs = 0;
    if (ca->key_id == NULL || ca->sha256 == NULL || ca->issued == NULL ||
        ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(cert)) != 1 ||
        pthread_mutex_init(&ca->crl_lock, NULL) != 0) {
        ASN1_OCTET_STRING_free(ca->key_id);
        EVP_MD_free(ca->sha256);
        certs_issued_free(ca->issued);
        free(ca);
        goto out_of_memory;
    }
    ca->not_after = time(NULL) + (time_t)days * 86400 + secs;
    ca->cert = cert;
    ca->key = key;
    return ca;

out_of_memory:
    certs_set_err(err, errlen, "cannot set up CA %s: out of memory", cert_path);
fail:
    EVP_PKEY_free(key);
    X509_free(cert);
    return NULL;
}

void certs_ca_free(certs_ca *ca)
{
    if (ca == NULL)
        return;
    pthread_mutex_destroy(&ca->crl_lock);
    free(ca->crl_der);
    certs_issued_free(ca->issued);
    ASN1_OCTET_STRING_free(ca->key_id);
    EVP_MD_free(ca->sha256);
    EVP_PKEY_free(ca->key);
    X509_free(ca->cert);
    free(ca);
}

X509 *certs_ca_cert(const certs_ca *ca)
{
    return ca->cert;
}

certs_issued *certs_ca_issued(certs_ca *ca)
{
    return ca->issued;
}

int certs_ca_set_record_capacity(certs_ca *ca, size_t capacity)
{
    certs_issued *fresh = certs_issued_new(capacity);
    if (fresh == NULL)
        return -1;
    certs_issued_free(ca->issued);
    ca->issued = fresh;
    return 0;
}

time_t certs_ca_clamp(const certs_ca *ca, time_t now, time_t secs)
{
    return now + secs < ca->not_after ? now + secs : ca->not_after;
}

AUTHORITY_KEYID *certs_ca_authority_key_id(const certs_ca *ca)
{
    AUTHORITY_KEYID *aki = AUTHORITY_KEYID_new();
    if (aki == NULL)
        return NULL;
    aki->keyid = ASN1_OCTET_STRING_dup(ca->key_id);
    if (aki->keyid == NULL) {
        AUTHORITY_KEYID_free(aki);
        return NULL;
    }
    return aki;
}
