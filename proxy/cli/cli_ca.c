/* handoff ca init DIR [--rsa] */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "certs.h"
#include "cli.h"

int cli_ca(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[0], "init") != 0) {
        fprintf(stderr, "usage: handoff ca init DIR [--rsa]\n");
        return 1;
    }
    const char *dir = argv[1];
    bool rsa = argc > 2 && strcmp(argv[2], "--rsa") == 0;
    if (argc > 3 || (argc == 3 && !rsa)) {
        fprintf(stderr, "usage: handoff ca init DIR [--rsa]\n");
        return 1;
    }
    char fp[CERTS_FINGERPRINT_LEN], err[512];
    if (certs_ca_init(dir, rsa, fp, sizeof fp, err, sizeof err) != 0) {
        fprintf(stderr, "handoff: %s\n", err);
        return 1;
    }
    char abs[PATH_MAX];
    if (!realpath(dir, abs))
        snprintf(abs, sizeof abs, "%s", dir);
    printf("CA written: %s/ca.crt (key %s/ca.key, mode 0600, %s)\n", abs, abs,
           rsa ? "RSA-3072" : "ECDSA P-256");
    printf("SHA-256 fingerprint: %s\n", fp);
    printf("Trust it:\n"
           "  Debian/Ubuntu: cp %s/ca.crt /usr/local/share/ca-certificates/handoff.crt && "
           "update-ca-certificates\n"
           "  Windows (GPO): Computer Configuration > Policies > Windows Settings > Security "
           "Settings > Public Key Policies > Trusted Root Certification Authorities > Import\n"
           "  Firefox: Settings > Privacy & Security > Certificates > View Certificates > "
           "Authorities > Import\n"
           "  Chromium: Settings > Privacy and security > Security > Manage certificates > "
           "Authorities > Import\n",
           abs);
    return 0;
}
