/* The handoff command: run the proxy, check a configuration, make a CA, explain a decision,
 * list sessions. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

#define HANDOFF_VERSION "0.1.0"

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage:\n"
        "  handoff [-c FILE]            run (default FILE: ./handoff.conf, else "
        "examples/handoff.conf)\n"
        "  handoff -c FILE --check      check config and policy, print every error\n"
        "  handoff -c FILE --takeover   start on the running instance's sockets, then let it "
        "drain\n"
        "  handoff ca init DIR [--rsa]  write DIR/ca.key and DIR/ca.crt\n"
        "  handoff sessions [--admin HOST:PORT] [--json]\n"
        "  handoff -c FILE explain [--client IP] [--connect HOST:PORT | --url URL [--method M]]\n"
        "                          [--sni NAME] [--protocol P] [--tunneled yes|no] [--user NAME]\n"
        "  handoff --version | --help\n");
}

static const char *default_config(void)
{
    if (access("handoff.conf", R_OK) == 0)
        return "handoff.conf";
    return "examples/handoff.conf";
}

int main(int argc, char **argv)
{
    const char *conf = NULL;
    bool check = false, takeover = false;
    int i = 1;
    while (i < argc && argv[i][0] == '-') {
        if (!strcmp(argv[i], "-c") && i + 1 < argc) {
            conf = argv[i + 1];
            i += 2;
        } else if (!strcmp(argv[i], "--check")) {
            check = true;
            i++;
        } else if (!strcmp(argv[i], "--takeover")) {
            takeover = true;
            i++;
        } else if (!strcmp(argv[i], "--version")) {
            printf("handoff %s\n", HANDOFF_VERSION);
            return 0;
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "handoff: unknown option %s\n", argv[i]);
            usage(stderr);
            return 1;
        }
    }
    if (!conf)
        conf = default_config();
    if (i < argc) {
        const char *cmd = argv[i];
        if (!strcmp(cmd, "ca"))
            return cli_ca(argc - i - 1, argv + i + 1);
        if (!strcmp(cmd, "explain"))
            return cli_explain(conf, argc - i - 1, argv + i + 1);
        if (!strcmp(cmd, "sessions"))
            return cli_sessions(conf, argc - i - 1, argv + i + 1);
        fprintf(stderr, "handoff: unknown command %s\n", cmd);
        usage(stderr);
        return 1;
    }
    if (check)
        return cli_check(conf);
    return cli_run(conf, takeover);
}
