/* The compiled form of a policy, shared by the compiler, the evaluator and explain.
 * Everything here is immutable once policy_compile_* returns. */
#ifndef HANDOFF_POLICY_INTERNAL_H
#define HANDOFF_POLICY_INTERNAL_H

#include "policy.h"

#include <stdatomic.h>
#include <stdint.h>

typedef enum { LAYER_PROXY = 0, LAYER_SSL_INTERCEPT } layer_type;

typedef enum {
    COND_URL_DOMAIN = 0,
    COND_URL_HOST,
    COND_URL_HOST_SUBSTRING,
    COND_URL_PORT,
    COND_CLIENT_ADDRESS,
    COND_METHOD,
    COND_CLIENT_PROTOCOL,
    COND_TUNNELED,
    COND_USER,
} cond_kind;

/** An address block: family AF_INET (4 bytes) or AF_INET6 (16 bytes), host bits cleared. */
struct cidr {
    int family;
    uint8_t bytes[16];
    int prefix;
};

/** One alternative of a condition. Strings are stored in their compare form (see cond_kind). */
union cond_value {
    char *text; /* hosts and substrings lower-cased, methods upper-cased, protocols lower-cased */
    int number; /* url.port; tunneled: 1 yes, 0 no */
    struct cidr cidr;
};

struct condition {
    cond_kind kind;
    bool negated;
    size_t value_count;
    union cond_value *values; /* matched when any value matches (none, if negated) */
};

struct rule {
    int line;
    size_t condition_count;
    struct condition *conditions;
    /* Properties; *_UNSET means the rule does not set it. */
    policy_verdict verdict;
    policy_detect detect_protocol;
    policy_ssl_forward ssl_forward_proxy;
    policy_tri tunnel_on_protocol_error;
    policy_tri verify_server;
};

struct layer {
    layer_type type;
    int line;
    size_t rule_count;
    struct rule *rules;
};

struct policy {
    atomic_int refs;
    char *file;
    size_t layer_count;
    struct layer *layers;
};

/** Whether values of this kind own a string. */
static inline bool policy_cond_has_text(cond_kind kind)
{
    return kind != COND_URL_PORT && kind != COND_CLIENT_ADDRESS && kind != COND_TUNNELED;
}

/** Frees the values of a condition (not the condition itself). */
void policy_condition_free(struct condition *c);

/** Whether layers of this type are consulted at checkpoint cp. */
bool policy_layer_consulted(layer_type type, policy_checkpoint cp);

/** The first rule of the layer whose conditions all match, or NULL. */
const struct rule *policy_layer_match(const struct layer *layer, const policy_facts *facts);

/** Copies every property the rule sets into out, recording where it came from. */
void policy_apply_rule(const policy *p, const struct rule *rule, policy_decision *out);

/** Name of a layer type as written in a policy file, with its angle brackets. */
const char *policy_layer_name(layer_type type);

/** Frees a policy whether or not its compilation finished. */
void policy_free(policy *p);

#endif
