/* The groups file of [auth] groups (SPEC 4.1): which groups each user is in, for group=.
 *
 *   # comment (also ';'), anywhere on a line
 *   staff: alice bob
 *   admins: alice
 *
 * One group per line, "NAME:" then user names separated by spaces or tabs. A group may appear on
 * several lines (its members add up). User and group names compare exactly (case-sensitive), as
 * user= and group= do. Compiled once, shared read-only and refcounted like a policy, so a reload
 * swaps it while connections keep the one they started with.
 */
#ifndef HANDOFF_POLICY_GROUPS_H
#define HANDOFF_POLICY_GROUPS_H

#include "policy.h"

#include <stddef.h>

typedef struct policy_groups policy_groups;

/** Compiles a groups file; on any error returns NULL and fills errs (FILE:LINE:COL, at most
 * 100; LINE and COL 0 when the file cannot be read). errs may be NULL. */
policy_groups *policy_groups_compile_file(const char *path, policy_errors *errs);

/** The same from text in memory; file is the name used in errors. */
policy_groups *policy_groups_compile_text(const char *file, const char *text, size_t len,
                                          policy_errors *errs);

/** Thread-safe reference counting. */
policy_groups *policy_groups_retain(policy_groups *g);
void policy_groups_release(policy_groups *g);

/** The groups user is in, in the order of the file, for policy_facts.groups/group_count; NULL
 * and 0 when none (or g is NULL). Valid while g is held. */
const char *const *policy_groups_of(const policy_groups *g, const char *user, size_t *count);

#endif
