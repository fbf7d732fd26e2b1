/* The one place where a session meets the policy: the facts of a checkpoint are built here
 * and the decision is applied here. */
#ifndef HANDOFF_VERDICT_H
#define HANDOFF_VERDICT_H

#include <stdbool.h>

#include "policy.h"

typedef struct session session;

/**
 * Evaluates checkpoint cp with what the session knows. host is url.host (NULL: the SNI at
 * checkpoint 2, else the target), method NULL means CONNECT. The properties are applied to the
 * session and the deciding rule recorded on its transaction; a denial is recorded with
 * txn_deny. Returns whether the connection or request may go on: at checkpoint 1 the verdict or
 * the default, at 2 and 3 anything but an explicit DENY. out may be NULL.
 */
bool session_policy(session *s, policy_checkpoint cp, const char *host, const char *method,
                    policy_decision *out);

/** Evaluates checkpoint cp without applying anything (the first pass of SPEC 4.1). */
void session_policy_peek(session *s, policy_checkpoint cp, const char *host, const char *method,
                         policy_decision *out);

/** Whether a checkpoint-1 decision lets the request through (the default when no rule said). */
bool session_policy_allows(const session *s, const policy_decision *d);

#endif
