/* Arbitrary bytes as an OCSP request (POST body or GET path) to our responder, and as an
 * origin's OCSP response or CRL; the first byte picks which. Whatever comes in, the responder
 * answers with a well-formed OCSPResponse and the checks never call garbage good. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/ocsp.h>

#include "certs.h"
#include "ocsp.h"
#include "revocation.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static certs_ca *ca;
static X509 *leaf;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char dir[] = "/tmp/handoff-ocsp-fuzz-XXXXXX", cert[64], key[64], fp[CERTS_FINGERPRINT_LEN],
         err[256];
    if (mkdtemp(dir) == NULL || certs_ca_init(dir, false, fp, sizeof fp, err, sizeof err) != 0)
        abort();
    snprintf(cert, sizeof cert, "%s/ca.crt", dir);
    snprintf(key, sizeof key, "%s/ca.key", dir);
    ca = certs_ca_load(cert, key, err, sizeof err);
    EVP_PKEY *leaf_key = certs_leaf_key_new();
    leaf = ca ? certs_mint_leaf_ex(ca, leaf_key, NULL, "fuzz.test", NULL, "http://127.0.0.1/ocsp")
              : NULL;
    EVP_PKEY_free(leaf_key);
    remove(cert);
    remove(key);
    remove(dir);
    if (leaf == NULL)
        abort();
    return 0;
}

static void respond(const uint8_t *req, size_t len)
{
    unsigned char *resp = NULL;
    size_t resp_len = 0;
    enum certs_ocsp_outcome outcome = certs_ocsp_respond(ca, req, len, &resp, &resp_len);
    if (resp == NULL)
        abort();
    const unsigned char *p = resp;
    OCSP_RESPONSE *parsed = d2i_OCSP_RESPONSE(NULL, &p, (long)resp_len);
    if (parsed == NULL || p != resp + resp_len)
        abort();
    int status = OCSP_response_status(parsed);
    if ((outcome == CERTS_OCSP_MALFORMED) != (status == OCSP_RESPONSE_STATUS_MALFORMEDREQUEST))
        abort();
    OCSP_RESPONSE_free(parsed);
    OPENSSL_free(resp);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    struct certs_rev_result r;
    unsigned char *der = NULL;
    size_t der_len = 0;

    switch (data[0] % 4) {
    case 0:
        respond(p, n);
        break;
    case 1:
        if (certs_ocsp_decode_get((const char *)p, n, &der, &der_len) == 0) {
            respond(der, der_len);
            free(der);
        }
        break;
    case 2:
        /* Only our CA's key could make a response good, and fuzzed bytes carry no such
         * signature. */
        if (certs_rev_ocsp_verify(p, n, leaf, certs_ca_cert(ca), NULL, time(NULL), &r) !=
                CERTS_REV_ERROR ||
            r.reason[0] == '\0')
            abort();
        break;
    case 3:
        if (certs_rev_crl_check(p, n, leaf, certs_ca_cert(ca), time(NULL), &r) != CERTS_REV_ERROR ||
            r.reason[0] == '\0')
            abort();
        break;
    }
    return 0;
}
