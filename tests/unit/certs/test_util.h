/* Helpers shared by the certs tests: scratch directories and a hand-built CA. */
#ifndef HANDOFF_CERTS_TEST_UTIL_H
#define HANDOFF_CERTS_TEST_UTIL_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/x509.h>

#include "certs.h"

/** mkdtemp under /tmp into dir (at least 64 bytes); aborts the test on failure. */
void tmpdir_make(char *dir, size_t len);
/** Removes dir and everything under it. */
void tmpdir_remove(const char *dir);
/** snprintf(out, len, "%s/%s", dir, file), failing the test on truncation. */
void path_join(char *out, size_t len, const char *dir, const char *file);

/** An EC P-256 CA built without certs/: basicConstraints CA:TRUE only (no SKI, no keyUsage),
 * valid from an hour ago for valid_days. */
X509 *test_ca_new(EVP_PKEY **key_out, long valid_days);
/** The same with a keyUsage extension (OpenSSL config syntax), e.g. "critical,keyCertSign". */
X509 *test_ca_new_with_usage(EVP_PKEY **key_out, long valid_days, const char *key_usage);
/** A server certificate signed by ca: CN cn, SAN DNS:dns1, DNS:dns2, IP:ip (IPv4 text).
 * Its key goes to *key_out unless key_out is NULL. */
X509 *test_server_cert(X509 *ca, EVP_PKEY *ca_key, const char *cn, const char *dns1,
                       const char *dns2, const char *ip, EVP_PKEY **key_out);
/** Writes cert and key as PEM, the key with mode 0600. */
void test_write_pem(X509 *cert, EVP_PKEY *key, const char *cert_path, const char *key_path);

/** The CA `handoff ca init` writes into dir (RSA or EC), loaded; fails the test otherwise. */
certs_ca *test_handoff_ca(const char *dir, bool rsa);

#endif
