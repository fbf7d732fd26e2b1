/* The INI configuration file (SPEC section 3). */
#ifndef HANDOFF_CONFIG_H
#define HANDOFF_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/socket.h>

#define CONFIG_MAX_LISTEN 8
#define CONFIG_MAX_PATH   4096

typedef struct {
    struct sockaddr_storage addr;
    char text[64]; /* as written, e.g. "[::1]:3128" */
} config_addr;

/** An address block of proxy_protocol_from: family AF_INET or AF_INET6, network bytes. */
typedef struct {
    int family;
    unsigned char addr[16];
    int prefix; /* bits that must match */
} config_cidr;

#define CONFIG_MAX_CIDRS 32

typedef enum { LOG_FORMAT_JSON, LOG_FORMAT_SQUID } config_log_format;
typedef enum { AUTH_MECH_BASIC = 1, AUTH_MECH_NEGOTIATE } config_auth_mech;
typedef enum { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG } config_log_level;
/* [tls] check_revocation: origin certificates' revocation (SPEC section 6.2). */
typedef enum {
    CHECK_REV_AUTO, /* stapled OCSP, else the AIA's responder, else the CDP's CRL */
    CHECK_REV_OCSP,
    CHECK_REV_CRL,
    CHECK_REV_NO,
} config_check_revocation;

typedef struct {
    char path[CONFIG_MAX_PATH]; /* the config file itself */
    char dir[CONFIG_MAX_PATH];  /* its folder: relative paths resolve here */

    config_addr listen[CONFIG_MAX_LISTEN];
    int listen_count;
    config_addr transparent[CONFIG_MAX_LISTEN]; /* SPEC 4.2: redirected connections */
    int transparent_count;
    unsigned transparent_mark; /* SO_MARK on origin connections; 0 = none */
    int workers;               /* 0 = auto */
    bool protocol_detection;
    bool tunnel_on_protocol_error;
    int detect_timeout_ms;
    int header_timeout_s;
    int connect_timeout_s;
    int idle_timeout_s;
    int max_header_bytes;
    int max_connections;
    int tls_handshake_timeout_s;
    int drain_timeout_s;
    bool proxy_protocol; /* a PROXY header (v1 or v2) precedes every connection on listen */
    config_cidr proxy_protocol_from[CONFIG_MAX_CIDRS]; /* the balancers allowed to send it */
    int proxy_protocol_from_count;

    char ca_cert[CONFIG_MAX_PATH];
    char ca_key[CONFIG_MAX_PATH];
    char upstream_ca_file[CONFIG_MAX_PATH];
    bool verify_upstream;
    bool sni_must_match; /* a CONNECT to a name accepts only an SNI for that name */
    int leaf_cache_size;
    char crl_url[CONFIG_MAX_PATH];
    char ocsp_url[CONFIG_MAX_PATH];
    config_check_revocation check_revocation;
    bool revocation_hard; /* revocation_failure = hard: no answer is a 502 */
    bool http2;           /* offer h2 on intercepted client connections */

    char policy_file[CONFIG_MAX_PATH];
    bool policy_default_allow;

    config_addr admin;
    bool admin_enabled;
    char control_socket[CONFIG_MAX_PATH]; /* unix socket for --takeover; "" = none */

    char htpasswd[CONFIG_MAX_PATH];
    char realm[128];
    char auth_mode[64];
    config_auth_mech auth[2]; /* the mechanisms offered, in challenge order */
    int auth_count;
    char keytab[CONFIG_MAX_PATH];
    char service_principal[256];
    bool strip_realm;
    char groups[CONFIG_MAX_PATH];

    char access_log[CONFIG_MAX_PATH]; /* "-" stdout, "" off */
    config_log_format log_format;
    config_log_level log_level;

    char pac_proxy[256];
    char pac_direct[1024];
    char pac_file[CONFIG_MAX_PATH];
} config;

/** Sets every key to its SPEC default. */
void config_defaults(config *cfg);

/**
 * Loads path over the defaults. Every error is printed to err as "FILE:LINE:COL: message";
 * returns the number of errors (0 on success).
 */
int config_load(config *cfg, const char *path, FILE *err);

/** Whether the AF_INET/AF_INET6 address sa lies in c (a v4-mapped address is not AF_INET:
 * canonicalise first). */
bool config_cidr_contains(const config_cidr *c, const struct sockaddr *sa);

/** Calls changed(section, name, data) for every key whose value differs between a and b. */
void config_diff(const config *a, const config *b,
                 void (*changed)(const char *section, const char *name, void *data), void *data);
/** Whether a is 0.0.0.0 or :: (clients cannot use it in a URL). */
bool config_addr_is_wildcard(const config_addr *a);

/** The name of a check_revocation value: "auto", "ocsp", "crl", "no". */
const char *config_check_revocation_name(config_check_revocation mode);

/** Parses "host:port" / "[v6]:port" into a sockaddr. 0 or -1. */
int config_parse_addr(const char *text, config_addr *out);

#endif
