/* `handoff ca init DIR`: generate the CA key pair and self-signed certificate on disk. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "ca_internal.h"

#define CA_VALIDITY_DAYS 3652  /* ten years */
#define CA_BACKDATE_SECS 86400 /* tolerate clients whose clocks run a day slow */

/* mkdir -p; every directory it creates is private to the owner. */
static int make_dirs(const char *dir, char *err, size_t errlen)
{
    char path[PATH_MAX];
    size_t n = strlen(dir);

    if (n == 0 || n >= sizeof path) {
        certs_set_err(err, errlen, "CA directory name is empty or too long");
        return -1;
    }
    memcpy(path, dir, n + 1);
    for (char *p = path + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char saved = *p;
        *p = '\0';
        if (mkdir(path, 0700) != 0 && errno != EEXIST) {
            certs_set_err(err, errlen, "cannot create directory %s: %s", path, strerror(errno));
            return -1;
        }
        *p = saved;
        if (saved == '\0')
            break;
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        certs_set_err(err, errlen, "%s is not a directory", dir);
        return -1;
    }
    return 0;
}

static int add_conf_ext(X509 *cert, X509V3_CTX *ctx, int nid, const char *value)
{
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
    int ok = ext != NULL && X509_add_ext(cert, ext, -1) == 1;
    X509_EXTENSION_free(ext);
    return ok;
}

static X509 *make_ca_cert(EVP_PKEY *key)
{
    X509 *cert = X509_new();
    if (cert == NULL)
        return NULL;

    X509_NAME *name = X509_get_subject_name(cert);
    int ok = X509_set_version(cert, X509_VERSION_3) && certs_set_random_serial(cert) == 0 &&
             X509_gmtime_adj(X509_getm_notBefore(cert), -CA_BACKDATE_SECS) != NULL &&
             X509_time_adj_ex(X509_getm_notAfter(cert), CA_VALIDITY_DAYS, 0, NULL) != NULL &&
             X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                        (const unsigned char *)"handoff CA", -1, -1, 0) &&
             X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"handoff",
                                        -1, -1, 0) &&
             X509_set_issuer_name(cert, name) && X509_set_pubkey(cert, key);
    if (ok) {
        X509V3_CTX ctx;
        X509V3_set_ctx_nodb(&ctx);
        X509V3_set_ctx(&ctx, cert, cert, NULL, NULL, 0);
        ok = add_conf_ext(cert, &ctx, NID_basic_constraints, "critical,CA:TRUE") &&
             add_conf_ext(cert, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign") &&
             add_conf_ext(cert, &ctx, NID_subject_key_identifier, "hash") &&
             X509_sign(cert, key, EVP_sha256()) > 0;
    }
    if (!ok) {
        X509_free(cert);
        return NULL;
    }
    return cert;
}

static int write_key(int fd, EVP_PKEY *key)
{
    /* The mode given to open() is reduced by the umask; make it exactly owner read/write. */
    if (fchmod(fd, 0600) != 0) {
        close(fd);
        return -1;
    }
    FILE *fp = fdopen(fd, "w");
    if (fp == NULL) {
        close(fd);
        return -1;
    }
    int ok = PEM_write_PrivateKey(fp, key, NULL, NULL, 0, NULL, NULL) == 1;
    ok = fflush(fp) == 0 && ok;
    ok = fsync(fileno(fp)) == 0 && ok;
    return fclose(fp) == 0 && ok ? 0 : -1;
}

/* Written under a temporary name and renamed, so a reader never sees half a certificate. */
static int write_cert(const char *path, X509 *cert)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return -1;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    FILE *fp = fdopen(fd, "w");
    if (fp == NULL) {
        close(fd);
        unlink(tmp);
        return -1;
    }
    int ok = PEM_write_X509(fp, cert) == 1;
    ok = fflush(fp) == 0 && ok;
    ok = fsync(fileno(fp)) == 0 && ok;
    ok = fclose(fp) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

int certs_ca_init(const char *dir, bool rsa, char *fingerprint, size_t fplen, char *err,
                  size_t errlen)
{
    char key_path[PATH_MAX], cert_path[PATH_MAX];

    if (dir == NULL || fingerprint == NULL || fplen < CERTS_FINGERPRINT_LEN) {
        certs_set_err(err, errlen, "internal error: bad arguments to CA init");
        return -1;
    }
    if (snprintf(key_path, sizeof key_path, "%s/ca.key", dir) >= (int)sizeof key_path ||
        snprintf(cert_path, sizeof cert_path, "%s/ca.crt", dir) >= (int)sizeof cert_path) {
        certs_set_err(err, errlen, "CA directory name %s is too long", dir);
        return -1;
    }
    if (make_dirs(dir, err, errlen) != 0)
        return -1;

    /* Claim the key file before the (slow) key generation; O_EXCL refuses an existing CA and
     * the 0600 mode means the key is never readable by others, not even for a moment. */
    int fd = open(key_path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        if (errno == EEXIST)
            certs_set_err(err, errlen,
                          "%s already exists: refusing to overwrite an existing CA key", key_path);
        else
            certs_set_err(err, errlen, "cannot create %s: %s", key_path, strerror(errno));
        return -1;
    }

    ERR_clear_error();
    EVP_PKEY *key = rsa ? EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)3072)
                        : EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509 *cert = key ? make_ca_cert(key) : NULL;
    int rc = -1;
    if (cert == NULL) {
        close(fd);
        certs_set_err(err, errlen, "cannot generate the CA: %s", certs_ossl_reason());
    } else if (write_key(fd, key) != 0) {
        certs_set_err(err, errlen, "cannot write %s: %s", key_path, strerror(errno));
    } else if (write_cert(cert_path, cert) != 0) {
        certs_set_err(err, errlen, "cannot write %s: %s", cert_path, strerror(errno));
    } else if (certs_fingerprint(cert, fingerprint, fplen) != 0) {
        certs_set_err(err, errlen, "cannot compute the CA fingerprint: %s", certs_ossl_reason());
    } else {
        rc = 0;
    }
    if (rc != 0)
        unlink(key_path); /* leave nothing half-made, so the next init can succeed */
    X509_free(cert);
    EVP_PKEY_free(key);
    return rc;
}
