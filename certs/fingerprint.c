/* SHA-256 certificate fingerprints in the colon-separated form browsers display. */
#include <stdio.h>

#include <openssl/evp.h>

#include "certs.h"

int certs_fingerprint(const X509 *cert, char *out, size_t outlen)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    if (cert == NULL || out == NULL || outlen < CERTS_FINGERPRINT_LEN)
        return -1;
    if (X509_digest(cert, EVP_sha256(), md, &mdlen) != 1 || mdlen != 32)
        return -1;
    for (unsigned int i = 0; i < mdlen; i++)
        snprintf(out + 3 * i, outlen - 3 * i, i + 1 < mdlen ? "%02X:" : "%02X", md[i]);
    return 0;
}
