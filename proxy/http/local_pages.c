#include "local_pages.h"

#include <stdlib.h>
#include <string.h>

#include "certs.h"

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
