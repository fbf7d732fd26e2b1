/* Diagnostics on stderr, filtered by [log] level. */
#ifndef HANDOFF_DIAG_H
#define HANDOFF_DIAG_H

#include "config.h"

void diag_set_level(config_log_level level);
void diag(config_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
