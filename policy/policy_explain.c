/* Human-readable trace of one evaluation, for the explain command and for debugging a policy. */
#include "policy_internal.h"

#include <string.h>

static const char *verdict_text(policy_verdict v)
{
    return v == POLICY_ALLOW ? "ALLOW" : "DENY";
}

static const char *detect_text(policy_detect d)
{
    return d == DETECT_PROTO_ALL ? "all" : "none";
}

static const char *forward_text(policy_ssl_forward f)
{
    return f == SSL_FP_NO ? "no" : f == SSL_FP_HTTPS ? "https" : "yes";
}

static const char *tri_text(policy_tri t)
{
    return t == TRI_YES ? "yes" : "no";
}

/* Writes what the rule sets, in the syntax of the policy file. */
static void print_properties(const struct rule *r, FILE *out)
{
    const char *sep = "";
    if (r->verdict) {
        fprintf(out, "%s%s", sep, verdict_text(r->verdict));
        sep = " ";
    }
    if (r->detect_protocol) {
        fprintf(out, "%sdetect_protocol(%s)", sep, detect_text(r->detect_protocol));
        sep = " ";
    }
    if (r->ssl_forward_proxy) {
        fprintf(out, "%sssl.forward_proxy(%s)", sep, forward_text(r->ssl_forward_proxy));
        sep = " ";
    }
    if (r->tunnel_on_protocol_error) {
        fprintf(out, "%stunnel_on_protocol_error(%s)", sep, tri_text(r->tunnel_on_protocol_error));
        sep = " ";
    }
    if (r->verify_server)
        fprintf(out, "%sssl.verify_server(%s)", sep, tri_text(r->verify_server));
}

void policy_explain(const policy *p, const policy_facts *facts, policy_checkpoint cp,
                    policy_decision *decision, FILE *out)
{
    memset(decision, 0, sizeof *decision);
    layer_type wanted = cp == POLICY_CP_TLS ? LAYER_SSL_INTERCEPT : LAYER_PROXY;
    size_t consulted = 0;
    for (size_t l = 0; p && facts && l < p->layer_count; l++) {
        const struct layer *layer = &p->layers[l];
        if (!policy_layer_consulted(layer->type, cp))
            continue;
        consulted++;
        fprintf(out, "  layer %s %s:%d: ", policy_layer_name(layer->type), p->file, layer->line);
        const struct rule *rule = policy_layer_match(layer, facts);
        if (!rule) {
            fputs("no rule matched\n", out);
            continue;
        }
        policy_apply_rule(p, rule, decision);
        fprintf(out, "rule %s:%d matched (", p->file, rule->line);
        print_properties(rule, out);
        fputs(")\n", out);
    }
    if (consulted == 0)
        fprintf(out, "  no %s layer to consult\n", policy_layer_name(wanted));
}
