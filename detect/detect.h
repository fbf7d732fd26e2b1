/* Protocol detection: pure functions over the first bytes a client sends.
 * No I/O, no allocation; every function reads only p[0..n). */
#ifndef HANDOFF_DETECT_H
#define HANDOFF_DETECT_H

#include <stddef.h>
#include <stdint.h>

/** What a matcher says about the bytes seen so far. */
typedef enum {
    DETECT_NEED_MORE = 0, /* a longer prefix could still match */
    DETECT_NO,            /* cannot match, whatever follows */
    DETECT_MATCH,         /* matches */
} detect_answer;

/** Values of the policy fact client.protocol (SPEC section 5). */
typedef enum {
    PROTO_UNKNOWN = 0, /* not decided yet */
    PROTO_MSTURN,
    PROTO_SSL,
    PROTO_TURN,
    PROTO_SIP,
    PROTO_HTTP,
    PROTO_HTTPS, /* HTTP seen inside intercepted TLS */
    PROTO_TCP,
} detect_protocol;

/** Detection never looks past this many bytes. */
#define DETECT_MAX_BYTES 16384

#define DETECT_MAX_SNI  255
#define DETECT_MAX_ALPN 8

/** What a TLS ClientHello tells before any decryption. */
typedef struct {
    char sni[DETECT_MAX_SNI + 1]; /* empty when absent */
    char alpn[DETECT_MAX_ALPN][32];
    unsigned alpn_count;
    uint16_t legacy_version; /* client_version field */
    uint16_t max_version;    /* highest of supported_versions, else legacy_version */
    size_t hello_bytes;      /* bytes of the records holding the whole ClientHello */
} detect_tls_info;

/** Full classification result. */
typedef struct {
    detect_protocol protocol;
    detect_tls_info tls; /* valid when protocol == PROTO_SSL */
} detect_result;

detect_answer detect_msturn(const uint8_t *p, size_t n);
detect_answer detect_tls_client_hello(const uint8_t *p, size_t n, detect_tls_info *info);
detect_answer detect_stun(const uint8_t *p, size_t n);
detect_answer detect_sip(const uint8_t *p, size_t n);
detect_answer detect_http(const uint8_t *p, size_t n);
/** The HTTP/2 client connection preface (PRI * HTTP/2.0 ...), sent inside TLS after ALPN h2. */
detect_answer detect_h2_preface(const uint8_t *p, size_t n);

/**
 * Runs the matchers in SPEC order. Returns DETECT_MATCH with out->protocol set once decided
 * (PROTO_TCP when nothing can match), DETECT_NEED_MORE when a matcher still waits.
 * With n >= DETECT_MAX_BYTES it always decides.
 */
detect_answer detect_classify(const uint8_t *p, size_t n, detect_result *out);

/** Like detect_classify for the decrypted bytes inside intercepted TLS: HTTP is PROTO_HTTPS,
 * as is the HTTP/2 connection preface; SIP is PROTO_SIP, anything else PROTO_TCP. */
detect_answer detect_classify_inner(const uint8_t *p, size_t n, detect_result *out);

/** "ms-turn", "ssl", "turn", "sip", "http", "https", "tcp"; NULL for PROTO_UNKNOWN. */
const char *detect_protocol_name(detect_protocol proto);

/** Inverse of detect_protocol_name; PROTO_UNKNOWN for an unknown name. */
detect_protocol detect_protocol_from_name(const char *name);

#endif
