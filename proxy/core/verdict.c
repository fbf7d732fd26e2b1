/* Facts in, decision applied: every checkpoint goes through session_policy. */
#include "verdict.h"

#include "groups.h"
#include "session.h"
#include "worker.h"

static void build_facts(const session *s, policy_checkpoint cp, const char *host,
                        const char *method, policy_facts *f)
{
    if (!host)
        host = cp == POLICY_CP_TLS && s->sni[0] ? s->sni : s->target_host;
    *f = (policy_facts){
        .host = host,
        .port = s->target_port,
        .method = method           ? method
                  : s->transparent ? NULL
                                   : "CONNECT",
        .client = (const struct sockaddr *)&s->client_addr,
        .protocol = NULL,
        .tunneled = -1,
        .user = s->user[0] ? s->user : NULL,
        .mode = s->transparent ? "transparent" : "explicit",
    };
    f->mode = s->transparent ? "transparent" : "explicit";
    f->identity_withheld = s->auth_exempt;
    if (cp == POLICY_CP_TLS)
        f->protocol = "ssl";
    if (cp == POLICY_CP_DETECTED) {
        f->protocol = detect_protocol_name(s->protocol);
        f->tunneled = s->tunneled ? 1 : 0;
    }
}

static void apply(session *s, policy_checkpoint cp, const policy_decision *d)
{
    if (cp == POLICY_CP_REQUEST) {
        if (d->detect_protocol == DETECT_PROTO_NONE)
            s->detect_enabled = false;
        else if (d->detect_protocol == DETECT_PROTO_ALL)
            s->detect_enabled = true;
    }
    if (d->tunnel_on_protocol_error != TRI_UNSET)
        s->tunnel_on_error = d->tunnel_on_protocol_error == TRI_YES;
    if (d->verify_server != TRI_UNSET)
        s->verify_server = d->verify_server == TRI_YES;
    if (d->check_revocation != REVOCATION_UNSET)
        s->check_revocation = d->check_revocation;
}

/* Evaluates with the user's groups, when a user is known and a groups file is loaded. */
static void evaluate(session *s, policy_facts *f, policy_checkpoint cp, policy_decision *d)
{
    policy_groups *g = f->user ? shared_groups_acquire(s->w->shared) : NULL;
    if (g)
        f->groups = policy_groups_of(g, f->user, &f->group_count);
    policy_evaluate(s->pol, f, cp, d);
    if (g)
        policy_groups_release(g);
}

void session_policy_peek(session *s, policy_checkpoint cp, const char *host, const char *method,
                         policy_decision *out)
{
    policy_facts f;
    build_facts(s, cp, host, method, &f);
    evaluate(s, &f, cp, out);
}

bool session_policy_allows(const session *s, const policy_decision *d)
{
    return d->verdict == POLICY_UNSET ? s->w->shared->cfg.policy_default_allow
                                      : d->verdict == POLICY_ALLOW;
}

bool session_policy(session *s, policy_checkpoint cp, const char *host, const char *method,
                    policy_decision *out)
{
    policy_facts f;
    policy_decision d;
    build_facts(s, cp, host, method, &f);
    evaluate(s, &f, cp, &d);
    apply(s, cp, &d);
    bool allow;
    if (cp == POLICY_CP_REQUEST) {
        s->t.rule = d.verdict_rule;
        allow = d.verdict == POLICY_UNSET ? s->w->shared->cfg.policy_default_allow
                                          : d.verdict == POLICY_ALLOW;
    } else {
        if (cp == POLICY_CP_TLS && d.last_rule.file)
            s->t.rule = d.last_rule;
        else if (cp == POLICY_CP_DETECTED && d.verdict_rule.file)
            s->t.rule = d.verdict_rule;
        allow = d.verdict != POLICY_DENY;
    }
    if (!allow)
        txn_deny(s, d.verdict_rule);
    if (out)
        *out = d;
    return allow;
}
