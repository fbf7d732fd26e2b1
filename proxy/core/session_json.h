#ifndef HANDOFF_SESSION_JSON_H
#define HANDOFF_SESSION_JSON_H

#include "worker.h"

/** The open sessions of w as a JSON array text (malloc'd). Call on w's thread. */
char *session_json_worker(worker *w);

#endif
