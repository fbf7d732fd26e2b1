/* Counters for /metrics, shared by every worker. */
#ifndef HANDOFF_METRICS_H
#define HANDOFF_METRICS_H

#include <stddef.h>

#include "worker.h"

/** Renders the Prometheus text exposition. Returns a malloc'd string. */
char *metrics_render(shared_state *sh, size_t *len);

#endif
