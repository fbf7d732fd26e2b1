/* The CPL-like policy language (SPEC section 7): compile once, evaluate as a pure function.
 *
 * Where each property may be written (anything else is a compile error, as in ProxySG, whose
 * <SSL-Intercept> layer only decides interception and whose ALLOW/DENY live in <Proxy>):
 *
 *   property                                <proxy>  <ssl-intercept>
 *   ALLOW, DENY                               yes       no
 *   detect_protocol(all|none)                 yes       no   (decided with the request, cp 1)
 *   ssl.forward_proxy(no|https|yes)           no        yes
 *   tunnel_on_protocol_error(yes|no)          yes       yes
 *   ssl.verify_server(yes|no)                 yes       yes
 *   authenticate(no)                          yes       no   (SPEC 4.1: no 407 for the request)
 *   ssl.check_revocation(auto|ocsp|crl|no)    no        yes  (SPEC 6.2: origin revocation)
 *   ssl.http2(yes|no)                         no        yes  (SPEC 6.1: h2 on the client leg)
 *
 * Every condition may appear in both layer types; one on a fact unknown at that checkpoint
 * simply does not match. Names, layer headers and property values are case-insensitive; user=
 * and group= compare exactly. group= is known only when user is; proxy.mode= takes transparent
 * or explicit. url.host and url.domain values that are IP literals are kept in the canonical form
 * of SPEC section 4 (any inet_aton spelling as a dotted quad, IPv6 as RFC 5952, v4-mapped IPv6
 * as IPv4), so url.host=0x7f.2 is the fact 127.0.0.2. client.address=::ffff:a.b.c.d/N (N >= 96)
 * is the IPv4 block a.b.c.d/(N-96); a v4-mapped client address is compared as IPv4. A rule must set
 * at least one property: a rule of conditions alone is reported as an error (most likely a
 * forgotten ALLOW/DENY). Hosts in url.domain/url.host may carry a trailing dot, url.domain also a
 * leading one (".example.com" means example.com). client.address takes an address or a CIDR; host
 * bits under the prefix are ignored.
 */
#ifndef HANDOFF_POLICY_H
#define HANDOFF_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/socket.h>

/** When the policy is asked. */
typedef enum {
    POLICY_CP_REQUEST = 1,  /* CONNECT, proxied HTTP request, request inside intercepted TLS */
    POLICY_CP_TLS = 2,      /* TLS seen: <ssl-intercept> layers, url.host = SNI */
    POLICY_CP_DETECTED = 3, /* detection settled: <proxy> layers with client.protocol, tunneled */
} policy_checkpoint;

/** Facts known so far. A NULL pointer / negative number / TRI_UNKNOWN means "not known":
 * a condition on an unknown fact does not match, negated or not. */
typedef struct {
    const char *host;              /* url.host; case and trailing dot do not matter */
    int port;                      /* url.port, -1 unknown */
    const char *method;            /* CONNECT, GET, ... */
    const struct sockaddr *client; /* client.address (AF_INET or AF_INET6) */
    const char *protocol;          /* client.protocol: ms-turn ssl turn sip http https tcp */
    int tunneled;                  /* -1 unknown, 0 no, 1 yes */
    const char *user;              /* authenticated user name */
    const char *const *groups;     /* the user's groups; ignored (unknown) while user is */
    size_t group_count;
    const char *mode; /* proxy.mode: "transparent" or "explicit" */
    /* Set on the authenticate(no) path of SPEC 4.1: the identity will never be known, so rules
     * naming user or group do not match and do not make the decision need the identity. */
    bool identity_withheld;
} policy_facts;

typedef enum { POLICY_UNSET = 0, POLICY_ALLOW, POLICY_DENY } policy_verdict;
typedef enum { DETECT_PROTO_UNSET = 0, DETECT_PROTO_ALL, DETECT_PROTO_NONE } policy_detect;
typedef enum { SSL_FP_UNSET = 0, SSL_FP_NO, SSL_FP_HTTPS, SSL_FP_YES } policy_ssl_forward;
typedef enum { TRI_UNSET = 0, TRI_YES, TRI_NO } policy_tri;
typedef enum {
    REVOCATION_UNSET = 0,
    REVOCATION_AUTO,
    REVOCATION_OCSP,
    REVOCATION_CRL,
    REVOCATION_NO,
} policy_revocation;

/** Where a rule lives. */
typedef struct {
    const char *file; /* NULL when no rule */
    int line;
} policy_where;

/** Outcome of one evaluation. Each property keeps the value of the last layer that set it. */
typedef struct {
    policy_verdict verdict;
    policy_where verdict_rule; /* the rule that set verdict */
    policy_detect detect_protocol;
    policy_ssl_forward ssl_forward_proxy;
    policy_tri tunnel_on_protocol_error;
    policy_tri verify_server;
    policy_tri authenticate;            /* TRI_NO from authenticate(no); never TRI_YES */
    policy_revocation check_revocation; /* ssl.check_revocation() */
    policy_tri http2;                   /* ssl.http2() */
    /* Checkpoint 1 with user unknown (and identity_withheld false): some layer reached a rule
     * naming user or group before any of its rules matched, so the client must authenticate. */
    bool needs_identity;
    policy_where last_rule; /* the last matching rule that set any property */
} policy_decision;

typedef struct policy policy;

/** One compile error: FILE:LINE:COL: message. LINE and COL count from 1; both are 0 when the
 * error concerns the whole file (cannot open it). COL counts bytes, a tab being one. */
typedef struct {
    char *file;
    int line, col;
    char *message;
} policy_error;

typedef struct {
    policy_error *items;
    size_t count;
} policy_errors;

/**
 * Compiles the file at path. On success returns the policy (refcount 1) and leaves errs empty;
 * otherwise returns NULL and fills errs with every error of the file (at most 100).
 * errs is overwritten (free it with policy_errors_free) and may be NULL.
 */
policy *policy_compile_file(const char *path, policy_errors *errs);

/** The same from text in memory; file is the name used in errors and rule locations. */
policy *policy_compile_text(const char *file, const char *text, size_t len, policy_errors *errs);

void policy_errors_free(policy_errors *errs);

/** Thread-safe reference counting: workers share one compiled policy. */
policy *policy_retain(policy *p);
void policy_release(policy *p);

/** Pure: same inputs, same decision. p may be NULL (empty policy). */
void policy_evaluate(const policy *p, const policy_facts *facts, policy_checkpoint cp,
                     policy_decision *out);

/**
 * Same as policy_evaluate, and writes to out, one line per layer consulted at cp:
 *   "  layer <proxy> FILE:LINE: rule FILE:LINE matched (ALLOW)" or "... no rule matched".
 * When the user is known, each matching rule with a group= condition adds a line
 *   "    group=NAME matched for user USER" per group of the list the user is in, or for
 * group=!(...) "    group=! matched: user USER is in none of NAME NAME"; a layer that needs the
 * identity adds "    needs the identity: rule FILE:LINE names user or group" (its first such rule).
 */
void policy_explain(const policy *p, const policy_facts *facts, policy_checkpoint cp,
                    policy_decision *decision, FILE *out);

#endif
