/* The admin listener (SPEC section 8): sessions, metrics, health, PAC, CA and CRL. */
#ifndef HANDOFF_ADMIN_H
#define HANDOFF_ADMIN_H

#include <stddef.h>

#include "worker.h"

/** Listens on [admin] listen on w's loop. 0, or a negative errno with err filled. */
int admin_start(worker *w, char *err, size_t errlen);

#endif
