/* What the proxy answers itself: the PAC file and the CA's CRL (and the CA on the admin port). */
#ifndef HANDOFF_LOCAL_PAGES_H
#define HANDOFF_LOCAL_PAGES_H

#include <stdbool.h>
#include <stddef.h>

#include "worker.h"

typedef struct {
    const char *type;
    const char *body;
    size_t len;
    char *owned; /* free() after sending */
} local_page;

/** Finds the page for path ("/proxy.pac", "/wpad.dat", "/handoff-ca.crl"; with_ca adds "/ca.crt").
 */
bool local_page_find(shared_state *sh, const char *path, bool with_ca, local_page *out);

#endif
