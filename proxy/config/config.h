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

typedef enum { LOG_FORMAT_JSON, LOG_FORMAT_SQUID } config_log_format;
typedef enum { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG } config_log_level;

typedef struct {
    char path[CONFIG_MAX_PATH]; /* the config file itself */
    char dir[CONFIG_MAX_PATH];  /* its folder: relative paths resolve here */

    config_addr listen[CONFIG_MAX_LISTEN];
    int listen_count;
    int workers; /* 0 = auto */
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

    char ca_cert[CONFIG_MAX_PATH];
    char ca_key[CONFIG_MAX_PATH];
    char upstream_ca_file[CONFIG_MAX_PATH];
    bool verify_upstream;
    int leaf_cache_size;
    char crl_url[CONFIG_MAX_PATH];
    bool http2; /* offer h2 on intercepted client connections */

    char policy_file[CONFIG_MAX_PATH];
    bool policy_default_allow;

    config_addr admin;
    bool admin_enabled;

    char htpasswd[CONFIG_MAX_PATH];
    char realm[128];

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

/** Parses "host:port" / "[v6]:port" into a sockaddr. 0 or -1. */
int config_parse_addr(const char *text, config_addr *out);

#endif
