/* The subcommands of the handoff executable. Each returns the process exit code. */
#ifndef HANDOFF_CLI_H
#define HANDOFF_CLI_H

#include <stdbool.h>
#include <stdio.h>

#include "config.h"
#include "policy.h"

/** Compiles [policy] file, printing every error to err; NULL on error or when none is set. */
policy *load_policy(const config *cfg, FILE *err);

/** Runs the proxy; takeover: start on the sockets of the instance running on the same
 * [admin] control_socket, then let it drain. */
int cli_run(const char *conf, bool takeover);
int cli_check(const char *conf);
int cli_ca(int argc, char **argv);
int cli_explain(const char *conf, int argc, char **argv);
int cli_sessions(const char *conf, int argc, char **argv);

#endif
