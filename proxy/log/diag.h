/* Diagnostics on stderr, filtered by [log] level. */
#ifndef HANDOFF_DIAG_H
#define HANDOFF_DIAG_H

#include "config.h"

void diag_set_level(config_log_level level);
void diag(config_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/** Remembers where stderr goes when it is a regular file, for diag_reopen. Call at start. */
void diag_remember_file(void);

/** Log rotation: reopens the file remembered by diag_remember_file on stderr (appending).
 * Does nothing when stderr was not a file (a terminal, the journal). */
void diag_reopen(void);

#endif
