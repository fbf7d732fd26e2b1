#include "local_pages.h"

#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#include "certs.h"
#include "metrics.h"
#include "ocsp.h"

bool local_page_find(shared_state *sh, const char *path, bool with_ca, local_page *out)
{
    memset(out, 0, sizeof *out);
    if (strcmp(path, "/proxy.pac") == 0 || strcmp(path, "/wpad.dat") == 0) {
        out->type = "application/x-ns-proxy-autoconfig";
        /* A reload replaces the PAC under this lock: answer with a copy. */
        pthread_mutex_lock(&sh->policy_lock);
        if (sh->pac && (out->owned = malloc(sh->pac_len + 1)) != NULL) {
            memcpy(out->owned, sh->pac, sh->pac_len);
            out->len = sh->pac_len;
        }
        pthread_mutex_unlock(&sh->policy_lock);
        out->body = out->owned;
        return out->owned != NULL;
    }
    if (strcmp(path, "/handoff-ca.crl") == 0 && sh->ca) {
        unsigned char *der;
        size_t len;
        if (certs_crl_der(sh->ca, &der, &len) != 0)
            return false;
        out->owned = (char *)der;
        out->type = "application/pkix-crl";
        out->body = out->owned;
        out->len = len;
        return true;
    }
    if (with_ca && strcmp(path, "/ca.crt") == 0 && sh->ca_pem) {
        out->type = "application/x-x509-ca-cert";
        out->body = sh->ca_pem;
        out->len = strlen(sh->ca_pem);
        return true;
    }
    return false;
}

bool local_ocsp_path(const char *path)
{
    return strcmp(path, "/ocsp") == 0 || strncmp(path, "/ocsp/", 6) == 0;
}

bool local_ocsp_answer(shared_state *sh, const char *target, const unsigned char *body, size_t len,
                       local_page *out)
{
    memset(out, 0, sizeof *out);
    if (!sh->ca)
        return false;
    unsigned char *decoded = NULL;
    size_t decoded_len = 0;
    if (!body && strncmp(target, "/ocsp/", 6) == 0) {
        const char *b64 = target + 6;
        /* Garbage stays empty and is answered malformedRequest. */
        if (certs_ocsp_decode_get(b64, strcspn(b64, "?"), &decoded, &decoded_len) == 0) {
            body = decoded;
            len = decoded_len;
        }
    }
    unsigned char *resp = NULL;
    size_t resp_len = 0;
    enum certs_ocsp_outcome outcome = certs_ocsp_respond(
        sh->ca, body ? body : (const unsigned char *)"", body ? len : 0, &resp, &resp_len);
    free(decoded);
    metrics_ocsp_response(certs_ocsp_outcome_name(outcome));
    if (!resp)
        return false;
    /* The page owns a malloc'd copy: callers free() it, not OPENSSL_free(). */
    out->owned = malloc(resp_len ? resp_len : 1);
    if (out->owned)
        memcpy(out->owned, resp, resp_len);
    OPENSSL_free(resp);
    if (!out->owned)
        return false;
    out->type = "application/ocsp-response";
    out->body = out->owned;
    out->len = resp_len;
    return true;
}

void local_body_append(local_body *b, const char *at, size_t len)
{
    if (b->too_big || len == 0)
        return;
    if (len > CERTS_OCSP_MAX_REQUEST - b->len) {
        b->too_big = true;
        return;
    }
    unsigned char *p = realloc(b->buf, b->len + len);
    if (!p) {
        b->too_big = true;
        return;
    }
    memcpy(p + b->len, at, len);
    b->buf = p;
    b->len += len;
}

void local_body_reset(local_body *b)
{
    free(b->buf);
    memset(b, 0, sizeof *b);
}
