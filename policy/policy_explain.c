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

static const char *revocation_text(policy_revocation r)
{
    switch (r) {
    case REVOCATION_AUTO:
        return "auto";
    case REVOCATION_OCSP:
        return "ocsp";
    case REVOCATION_CRL:
        return "crl";
    default:
        return "no";
    }
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
    if (r->verify_server) {
        fprintf(out, "%sssl.verify_server(%s)", sep, tri_text(r->verify_server));
        sep = " ";
    }
    if (r->authenticate) {
        fprintf(out, "%sauthenticate(%s)", sep, tri_text(r->authenticate));
        sep = " ";
    }
    if (r->check_revocation) {
        fprintf(out, "%sssl.check_revocation(%s)", sep, revocation_text(r->check_revocation));
        sep = " ";
    }
    if (r->http2)
        fprintf(out, "%sssl.http2(%s)", sep, tri_text(r->http2));
}

/* For a matching rule, says how each of its group= conditions held for the user: the group the
 * user is in, or that the user is in none of the negated list. */
static void print_group_matches(const struct rule *r, const policy_facts *facts, FILE *out)
{
    for (size_t c = 0; c < r->condition_count; c++) {
        const struct condition *cond = &r->conditions[c];
        if (cond->kind != COND_GROUP)
            continue;
        if (cond->negated) {
            fprintf(out, "    group=! matched: user %s is in none of", facts->user);
            for (size_t v = 0; v < cond->value_count; v++)
                fprintf(out, " %s", cond->values[v].text);
            fputc('\n', out);
            continue;
        }
        for (size_t v = 0; v < cond->value_count; v++)
            for (size_t g = 0; facts->groups && g < facts->group_count; g++)
                if (facts->groups[g] && strcmp(facts->groups[g], cond->values[v].text) == 0)
                    fprintf(out, "    group=%s matched for user %s\n", cond->values[v].text,
                            facts->user);
    }
}

void policy_explain(const policy *p, const policy_facts *facts, policy_checkpoint cp,
                    policy_decision *decision, FILE *out)
{
    memset(decision, 0, sizeof *decision);
    layer_type wanted = cp == POLICY_CP_TLS ? LAYER_SSL_INTERCEPT : LAYER_PROXY;
    size_t consulted = 0;
    bool pending = facts && policy_identity_pending(facts, cp);
    for (size_t l = 0; p && facts && l < p->layer_count; l++) {
        const struct layer *layer = &p->layers[l];
        if (!policy_layer_consulted(layer->type, cp))
            continue;
        consulted++;
        fprintf(out, "  layer %s %s:%d: ", policy_layer_name(layer->type), p->file, layer->line);
        struct layer_match m = policy_layer_match(layer, facts, pending);
        if (!m.rule) {
            fputs("no rule matched\n", out);
        } else {
            policy_apply_rule(p, m.rule, decision);
            fprintf(out, "rule %s:%d matched (", p->file, m.rule->line);
            print_properties(m.rule, out);
            fputs(")\n", out);
            if (facts->user && facts->user[0])
                print_group_matches(m.rule, facts, out);
        }
        if (m.needs_identity) {
            decision->needs_identity = true;
            fprintf(out, "    needs the identity: rule %s:%d names user or group\n", p->file,
                    layer->rules[layer->index.first_identity_rule].line);
        }
    }
    if (consulted == 0)
        fprintf(out, "  no %s layer to consult\n", policy_layer_name(wanted));
}
