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
    COND_GROUP,
    COND_PROXY_MODE,
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

/**
 * An open-addressing hash from strings (compared ASCII case-insensitively, keys stored lower-case)
 * to a run of rule numbers in ascending order. Keys point into condition values it does not own.
 */
struct str_index {
    size_t mask; /* slot count - 1, a power of two minus one */
    struct str_slot {
        const char *key; /* NULL: empty */
        size_t len;
        uint32_t first, count; /* ids[first .. first + count) */
    } * slots;
    uint32_t *ids;
};

struct condition {
    cond_kind kind;
    bool negated;
    size_t value_count;
    union cond_value *values; /* matched when any value matches (none, if negated) */
    struct str_index *set;    /* url.domain/url.host with many values: the values as a set */
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
    policy_tri authenticate;
    policy_revocation check_revocation;
    policy_tri http2;
    bool names_identity; /* has a user= or group= condition */
};

/**
 * Per layer, which rules may match a host: rules with a positive url.host (url.domain)
 * condition are listed under each of its values in hosts (domains); every other rule is in
 * others. Each list is in rule order, so merging them keeps first-match semantics.
 */
struct layer_index {
    struct str_index hosts, domains;
    uint32_t *others;
    size_t other_count;
    size_t first_identity_rule; /* index of the first rule naming user/group, or SIZE_MAX */
};

struct layer {
    layer_type type;
    int line;
    size_t rule_count;
    struct rule *rules;
    struct layer_index index;
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

/** Alternative lists longer than this get a hash set (url.domain and url.host). */
#define POLICY_SET_MIN_VALUES 8

/** Builds the indexes of every layer and large condition; false when out of memory. */
bool policy_index_build(policy *p);

/** Frees what policy_index_build made for one layer (not its conditions' sets). */
void policy_index_free_layer(struct layer *layer);

/** Frees the value set of a condition, if it has one. */
void policy_condition_set_free(struct condition *c);

/** The rule numbers stored for key s[0..n), or NULL with *count 0. */
const uint32_t *policy_str_index_find(const struct str_index *ix, const char *s, size_t n,
                                      size_t *count);

/** Frees the values of a condition (not the condition itself). */
void policy_condition_free(struct condition *c);

/** Whether layers of this type are consulted at checkpoint cp. */
bool policy_layer_consulted(layer_type type, policy_checkpoint cp);

/** Outcome of matching one layer. */
struct layer_match {
    const struct rule *rule; /* the first rule whose conditions all match, or NULL */
    bool needs_identity;     /* a rule naming user/group comes before it (see policy.h) */
};

/** Matches a layer through its index. identity_pending: the user is unknown and may become
 * known (checkpoint 1, identity not withheld). */
struct layer_match policy_layer_match(const struct layer *layer, const policy_facts *facts,
                                      bool identity_pending);

/** The same by testing every rule in order, every value in turn: the reference semantics. */
struct layer_match policy_layer_match_scan(const struct layer *layer, const policy_facts *facts,
                                           bool identity_pending);

/** Whether the user may still become known at cp (SPEC 4.1). */
bool policy_identity_pending(const policy_facts *facts, policy_checkpoint cp);

/** Whether the condition holds for the facts (through its value set when it has one). */
bool policy_condition_matches(const struct condition *c, const policy_facts *facts);

/** Copies every property the rule sets into out, recording where it came from. */
void policy_apply_rule(const policy *p, const struct rule *rule, policy_decision *out);

/** Name of a layer type as written in a policy file, with its angle brackets. */
const char *policy_layer_name(layer_type type);

/** Frees a policy whether or not its compilation finished. */
void policy_free(policy *p);

#endif
