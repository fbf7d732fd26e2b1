/* What the certs/revocation*.c files share; not part of the public API. */
#ifndef HANDOFF_CERTS_REVOCATION_INTERNAL_H
#define HANDOFF_CERTS_REVOCATION_INTERNAL_H

#include "revocation.h"

/** Sets out->status and out->reason (printf-style); returns status. */
enum certs_rev_status certs_rev_set(struct certs_rev_result *out, enum certs_rev_status status,
                                    const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
