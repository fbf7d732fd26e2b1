/* What legs, timers and the worker tell the session core. Stages never call these. */
#ifndef HANDOFF_CORE_INTERNAL_H
#define HANDOFF_CORE_INTERNAL_H

#include <stdint.h>

#include "leg.h"
#include "session.h"

/** Writing to l failed (not cancelled by l's own close). */
void session_leg_error(session *s, leg *l, int err);

/** l's write queue fell below the low-water mark. */
void session_leg_drained(session *s, leg *l);

/** One of the session's leg handles has closed. */
void session_leg_closed(session *s);

/** Closing: ends l once its FIN is out and the linger is over, or aborts it when nothing
 * moved for idle_ms. A leg not yet closing starts a graceful close. */
void leg_linger_check(leg *l, uint64_t now, uint64_t linger_ms, uint64_t idle_ms);

#endif
