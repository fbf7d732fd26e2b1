/* Runs the matchers in the order of SPEC section 5 and names the protocols. */
#include "detect_internal.h"

#include <string.h>

/*
 * Each matcher is monotonic: once it says MATCH or NO, longer input never changes the answer.
 * So the first matcher (in order) that has not said NO decides: its MATCH is final, its
 * NEED_MORE means an earlier-ranked protocol may still win. At the byte cap, waiting is over
 * and NEED_MORE counts as NO. Later matchers are not run once one has decided.
 */
typedef enum { STEP_MSTURN, STEP_TLS, STEP_STUN, STEP_SIP, STEP_HTTP, STEP_H2 } step;

static detect_answer run_step(step s, const uint8_t *p, size_t n, detect_result *out)
{
    switch (s) {
    case STEP_MSTURN:
        return detect_msturn(p, n);
    case STEP_TLS:
        return detect_tls_client_hello(p, n, &out->tls);
    case STEP_STUN:
        return detect_stun(p, n);
    case STEP_SIP:
        return detect_sip(p, n);
    case STEP_HTTP:
        return detect_http(p, n);
    case STEP_H2:
        return detect_h2_preface(p, n);
    }
    return DETECT_NO;
}

typedef struct {
    step matcher;
    detect_protocol protocol;
} rank;

static detect_answer first_decided(const rank *order, size_t count, const uint8_t *p, size_t n,
                                   detect_result *out)
{
    bool at_cap = n >= DETECT_MAX_BYTES;
    if (at_cap)
        n = DETECT_MAX_BYTES;
    memset(out, 0, sizeof *out);

    for (size_t i = 0; i < count; i++) {
        detect_answer a = run_step(order[i].matcher, p, n, out);
        if (a == DETECT_MATCH) {
            out->protocol = order[i].protocol;
            if (out->protocol != PROTO_SSL)
                memset(&out->tls, 0, sizeof out->tls);
            return DETECT_MATCH;
        }
        if (a == DETECT_NEED_MORE && !at_cap) {
            memset(&out->tls, 0, sizeof out->tls);
            return DETECT_NEED_MORE;
        }
    }
    memset(&out->tls, 0, sizeof out->tls);
    out->protocol = PROTO_TCP;
    return DETECT_MATCH;
}

/* SPEC section 5: the exact MS-TURN shape before generic TLS. */
static const rank outer_order[] = {
    {STEP_MSTURN, PROTO_MSTURN}, {STEP_TLS, PROTO_SSL},   {STEP_STUN, PROTO_TURN},
    {STEP_SIP, PROTO_SIP},       {STEP_HTTP, PROTO_HTTP},
};

static const rank inner_order[] = {
    {STEP_H2, PROTO_HTTPS},
    {STEP_HTTP, PROTO_HTTPS},
    {STEP_SIP, PROTO_SIP},
};

detect_answer detect_classify(const uint8_t *p, size_t n, detect_result *out)
{
    return first_decided(outer_order, sizeof outer_order / sizeof outer_order[0], p, n, out);
}

detect_answer detect_classify_inner(const uint8_t *p, size_t n, detect_result *out)
{
    return first_decided(inner_order, sizeof inner_order / sizeof inner_order[0], p, n, out);
}

static const char *const protocol_names[] = {
    [PROTO_MSTURN] = "ms-turn", [PROTO_SSL] = "ssl",     [PROTO_TURN] = "turn", [PROTO_SIP] = "sip",
    [PROTO_HTTP] = "http",      [PROTO_HTTPS] = "https", [PROTO_TCP] = "tcp",
};

#define PROTOCOL_COUNT (sizeof protocol_names / sizeof protocol_names[0])

const char *detect_protocol_name(detect_protocol proto)
{
    if ((size_t)proto >= PROTOCOL_COUNT)
        return NULL;
    return protocol_names[proto];
}

detect_protocol detect_protocol_from_name(const char *name)
{
    if (name == NULL)
        return PROTO_UNKNOWN;
    for (size_t i = 0; i < PROTOCOL_COUNT; i++) {
        if (protocol_names[i] != NULL && strcmp(protocol_names[i], name) == 0)
            return (detect_protocol)i;
    }
    return PROTO_UNKNOWN;
}
