#include "auth_negotiate.h"

#include <assert.h>
#include <gssapi/gssapi.h>
#include <gssapi/gssapi_ext.h>
#include <gssapi/gssapi_krb5.h>
#include <krb5/krb5.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Credentials come from gss_acquire_cred_from with an explicit "keytab" cred store: the keytab
 * is named per call, so no process-wide state (KRB5_KTNAME, a shared krb5_context) is touched
 * from the pool threads, and a rotated keytab is read again by the next connection. */
struct negotiate_acceptor {
    char *keytab;  /* NULL: the default keytab */
    char *service; /* NULL: any principal in the keytab */
    bool strip_realm;
};

struct negotiate_ctx {
    cred_job job;
    negotiate_acceptor *acceptor;
    gss_cred_id_t cred;
    gss_ctx_id_t gss;
    bool busy;
    char *input;
    size_t input_len;
    negotiate_cb cb;
    void *data;
    char *token_b64;
    negotiate_result result;
};

static void gss_reason(char *out, size_t outlen, const char *what, OM_uint32 major, OM_uint32 minor)
{
    size_t used = (size_t)snprintf(out, outlen, "%s", what);
    for (int pass = 0; pass < 2; pass++) {
        OM_uint32 code = pass == 0 ? major : minor;
        int type = pass == 0 ? GSS_C_GSS_CODE : GSS_C_MECH_CODE;
        if (pass == 1 && minor == 0)
            break;
        /* "Unspecified GSS failure" only points at the mechanism's message */
        if (pass == 0 && GSS_ROUTINE_ERROR(major) == GSS_S_FAILURE && minor != 0)
            continue;
        OM_uint32 ctx = 0, min2;
        do {
            gss_buffer_desc msg = GSS_C_EMPTY_BUFFER;
            if (GSS_ERROR(gss_display_status(&min2, code, type, GSS_C_NO_OID, &ctx, &msg)))
                break;
            if (used < outlen)
                used += (size_t)snprintf(out + used, outlen - used, ": %.*s", (int)msg.length,
                                         (const char *)msg.value);
            gss_release_buffer(&min2, &msg);
        } while (ctx != 0);
    }
}

static bool import_service(const char *service, gss_name_t *name, char *err, size_t errlen)
{
    OM_uint32 minor;
    gss_buffer_desc b = {strlen(service), (void *)service};
    OM_uint32 major = gss_import_name(&minor, &b, GSS_KRB5_NT_PRINCIPAL_NAME, name);
    if (GSS_ERROR(major)) {
        gss_reason(err, errlen, "service principal", major, minor);
        return false;
    }
    return true;
}

static bool acquire(const negotiate_acceptor *a, gss_cred_id_t *cred, char *err, size_t errlen)
{
    gss_name_t name = GSS_C_NO_NAME;
    if (a->service && !import_service(a->service, &name, err, errlen))
        return false;
    gss_key_value_element_desc kv = {"keytab", a->keytab};
    gss_key_value_set_desc store = {a->keytab ? 1 : 0, &kv};
    OM_uint32 minor, min2;
    OM_uint32 major = gss_acquire_cred_from(&minor, name, GSS_C_INDEFINITE, GSS_C_NO_OID_SET,
                                            GSS_C_ACCEPT, &store, cred, NULL, NULL);
    if (name != GSS_C_NO_NAME)
        gss_release_name(&min2, &name);
    if (GSS_ERROR(major)) {
        *cred = GSS_C_NO_CREDENTIAL;
        gss_reason(err, errlen, "acceptor credentials", major, minor);
        return false;
    }
    return true;
}

/* Start-up check with a better message than GSSAPI's, and one that avoids MIT's acquire path for
 * a name missing from the keytab (it leaks the name). */
static bool service_in_keytab(const negotiate_acceptor *a, char *err, size_t errlen)
{
    if (!a->service)
        return true;
    krb5_context k;
    if (krb5_init_context(&k) != 0) {
        snprintf(err, errlen, "cannot initialise Kerberos");
        return false;
    }
    krb5_keytab kt = NULL;
    krb5_principal p = NULL;
    krb5_keytab_entry e;
    krb5_error_code rc = a->keytab ? krb5_kt_resolve(k, a->keytab, &kt) : krb5_kt_default(k, &kt);
    if (rc == 0)
        rc = krb5_parse_name(k, a->service, &p);
    if (rc == 0) {
        rc = krb5_kt_get_entry(k, kt, p, 0, 0, &e);
        if (rc == 0)
            krb5_free_keytab_entry_contents(k, &e);
    }
    if (rc != 0) {
        const char *msg = krb5_get_error_message(k, rc);
        snprintf(err, errlen, "%s", msg);
        krb5_free_error_message(k, msg);
    }
    krb5_free_principal(k, p);
    if (kt)
        krb5_kt_close(k, kt);
    krb5_free_context(k);
    return rc == 0;
}

negotiate_acceptor *negotiate_acceptor_new(const char *keytab, const char *service_principal,
                                           bool strip_realm, char *err, size_t errlen)
{
    negotiate_acceptor *a = calloc(1, sizeof *a);
    if (!a) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    a->strip_realm = strip_realm;
    if ((keytab && keytab[0] && !(a->keytab = strdup(keytab))) ||
        (service_principal && service_principal[0] && !(a->service = strdup(service_principal)))) {
        snprintf(err, errlen, "out of memory");
        negotiate_acceptor_free(a);
        return NULL;
    }
    gss_cred_id_t cred;
    char why[200];
    if (!service_in_keytab(a, why, sizeof why) || !acquire(a, &cred, why, sizeof why)) {
        snprintf(err, errlen, "keytab %s%s%s: %s", a->keytab ? a->keytab : "(default)",
                 a->service ? ", principal " : "", a->service ? a->service : "", why);
        negotiate_acceptor_free(a);
        return NULL;
    }
    OM_uint32 minor;
    gss_release_cred(&minor, &cred);
    return a;
}

void negotiate_acceptor_free(negotiate_acceptor *a)
{
    if (!a)
        return;
    free(a->keytab);
    free(a->service);
    free(a);
}

negotiate_ctx *negotiate_ctx_new(negotiate_acceptor *a)
{
    negotiate_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->acceptor = a;
    c->cred = GSS_C_NO_CREDENTIAL;
    c->gss = GSS_C_NO_CONTEXT;
    return c;
}

static void reset_exchange(negotiate_ctx *c)
{
    OM_uint32 minor;
    if (c->gss != GSS_C_NO_CONTEXT)
        gss_delete_sec_context(&minor, &c->gss, GSS_C_NO_BUFFER);
    c->gss = GSS_C_NO_CONTEXT;
}

void negotiate_ctx_free(negotiate_ctx *c)
{
    if (!c)
        return;
    assert(!c->busy);
    OM_uint32 minor;
    reset_exchange(c);
    if (c->cred != GSS_C_NO_CREDENTIAL)
        gss_release_cred(&minor, &c->cred);
    free(c->input);
    free(c->token_b64);
    free(c);
}

bool negotiate_ctx_busy(const negotiate_ctx *c)
{
    return c->busy;
}

bool negotiate_split_principal(const char *principal, char *user, size_t userlen, char *realm,
                               size_t realmlen)
{
    /* The realm starts after the last '@' that is not escaped by a backslash. */
    const char *at = NULL;
    for (const char *p = principal; *p; p++) {
        if (*p == '\\' && p[1])
            p++;
        else if (*p == '@')
            at = p;
    }
    size_t ulen = at ? (size_t)(at - principal) : strlen(principal);
    const char *r = at ? at + 1 : "";
    if (ulen >= userlen || strlen(r) >= realmlen)
        return false;
    memcpy(user, principal, ulen);
    user[ulen] = '\0';
    snprintf(realm, realmlen, "%s", r);
    return true;
}

static const negotiate_result *fail(negotiate_ctx *c, const char *reason)
{
    reset_exchange(c);
    c->result.status = NEGOTIATE_FAILED;
    if (reason != c->result.reason)
        snprintf(c->result.reason, sizeof c->result.reason, "%s", reason);
    return &c->result;
}

static bool base64_char(char ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
           ch == '+' || ch == '/';
}

/* Strict RFC 4648 base64 (padding required); -1 if it is not. */
static int decode_token(const char *b64, size_t len, unsigned char *out)
{
    if (len == 0 || len % 4)
        return -1;
    size_t pad = 0;
    for (size_t i = 0; i < len; i++) {
        if (b64[i] == '=' && i >= len - 2)
            pad++;
        else if (pad || !base64_char(b64[i]))
            return -1;
    }
    int n = EVP_DecodeBlock(out, (const unsigned char *)b64, (int)len);
    return n < 0 ? -1 : n - (int)pad;
}

static bool encode_token(negotiate_ctx *c, const gss_buffer_desc *tok)
{
    free(c->token_b64);
    c->token_b64 = NULL;
    c->result.token_b64 = NULL;
    if (tok->length == 0)
        return true;
    if (tok->length > NEGOTIATE_MAX_TOKEN)
        return false;
    c->token_b64 = malloc(4 * ((tok->length + 2) / 3) + 1);
    if (!c->token_b64)
        return false;
    EVP_EncodeBlock((unsigned char *)c->token_b64, tok->value, (int)tok->length);
    c->result.token_b64 = c->token_b64;
    return true;
}

/* The client's and the service's names once the exchange is complete. */
static const negotiate_result *finish(negotiate_ctx *c, gss_name_t client, OM_uint32 flags)
{
    negotiate_result *r = &c->result;
    OM_uint32 minor;
    if (flags & GSS_C_ANON_FLAG)
        return fail(c, "anonymous principal refused");
    gss_buffer_desc shown = GSS_C_EMPTY_BUFFER;
    OM_uint32 major = gss_display_name(&minor, client, &shown, NULL);
    if (GSS_ERROR(major)) {
        gss_reason(r->reason, sizeof r->reason, "client name", major, minor);
        return fail(c, r->reason);
    }
    if (shown.length == 0 || shown.length >= sizeof r->principal ||
        memchr(shown.value, '\0', shown.length)) {
        gss_release_buffer(&minor, &shown);
        return fail(c, "client principal empty or too long");
    }
    memcpy(r->principal, shown.value, shown.length);
    r->principal[shown.length] = '\0';
    gss_release_buffer(&minor, &shown);

    char user[256], realm[256];
    if (!negotiate_split_principal(r->principal, user, sizeof user, realm, sizeof realm) ||
        !user[0])
        return fail(c, "client principal malformed");
    if (!c->acceptor->strip_realm) {
        snprintf(r->user, sizeof r->user, "%s", r->principal);
        r->status = NEGOTIATE_COMPLETE;
        return r;
    }
    /* Stripping is only unambiguous for principals of the service's own realm. */
    gss_name_t target = GSS_C_NO_NAME;
    char service_realm[256] = "";
    major = gss_inquire_context(&minor, c->gss, NULL, &target, NULL, NULL, NULL, NULL, NULL);
    if (!GSS_ERROR(major) && target != GSS_C_NO_NAME &&
        !GSS_ERROR(gss_display_name(&minor, target, &shown, NULL))) {
        char svc[512], tmp[512];
        snprintf(svc, sizeof svc, "%.*s", (int)shown.length, (const char *)shown.value);
        gss_release_buffer(&minor, &shown);
        negotiate_split_principal(svc, tmp, sizeof tmp, service_realm, sizeof service_realm);
    }
    if (target != GSS_C_NO_NAME)
        gss_release_name(&minor, &target);
    if (!service_realm[0] || strcmp(service_realm, realm) != 0) {
        snprintf(r->reason, sizeof r->reason,
                 "principal %.100s is not of the service's realm %.60s (strip_realm = yes)",
                 r->principal, service_realm[0] ? service_realm : "(unknown)");
        return fail(c, r->reason);
    }
    snprintf(r->user, sizeof r->user, "%s", user);
    r->status = NEGOTIATE_COMPLETE;
    return r;
}

const negotiate_result *negotiate_step(negotiate_ctx *c, const char *value, size_t len)
{
    negotiate_result *r = &c->result;
    memset(r, 0, sizeof *r);
    free(c->token_b64);
    c->token_b64 = NULL;

    while (len && (*value == ' ' || *value == '\t'))
        value++, len--;
    while (len && (value[len - 1] == ' ' || value[len - 1] == '\t'))
        len--;
    if (len < 9 || strncasecmp(value, "Negotiate", 9) != 0 ||
        (len > 9 && value[9] != ' ' && value[9] != '\t'))
        return fail(c, "not a Negotiate credential");
    value += 9;
    len -= 9;
    while (len && (*value == ' ' || *value == '\t'))
        value++, len--;
    if (len == 0)
        return fail(c, "empty Negotiate token");
    if (len > 4 * (NEGOTIATE_MAX_TOKEN / 3))
        return fail(c, "Negotiate token too large");
    unsigned char *raw = malloc(len / 4 * 3 + 1);
    if (!raw)
        return fail(c, "out of memory");
    int n = decode_token(value, len, raw);
    if (n <= 0) {
        free(raw);
        return fail(c, "Negotiate token is not base64");
    }

    OM_uint32 minor;
    if (c->cred == GSS_C_NO_CREDENTIAL &&
        !acquire(c->acceptor, &c->cred, r->reason, sizeof r->reason)) {
        free(raw);
        return fail(c, r->reason);
    }
    gss_buffer_desc in = {(size_t)n, raw};
    gss_buffer_desc out = GSS_C_EMPTY_BUFFER;
    gss_name_t client = GSS_C_NO_NAME;
    OM_uint32 flags = 0;
    OM_uint32 major =
        gss_accept_sec_context(&minor, &c->gss, c->cred, &in, GSS_C_NO_CHANNEL_BINDINGS, &client,
                               NULL, &out, &flags, NULL, NULL);
    free(raw);
    const negotiate_result *res;
    if (GSS_ERROR(major)) {
        gss_reason(r->reason, sizeof r->reason, "token refused", major, minor);
        res = fail(c, r->reason);
    } else if (!encode_token(c, &out)) {
        res = fail(c, "reply token too large");
    } else if (major & GSS_S_CONTINUE_NEEDED) {
        r->status = NEGOTIATE_CONTINUE;
        res = r;
    } else {
        res = finish(c, client, flags);
        /* A later Negotiate header on this connection starts a new exchange. */
        reset_exchange(c);
    }
    gss_release_buffer(&minor, &out);
    if (client != GSS_C_NO_NAME)
        gss_release_name(&minor, &client);
    return res;
}

/* ---- in the credential pool ---- */

static void negotiate_work(cred_job *job)
{
    negotiate_ctx *c = job->data;
    negotiate_step(c, c->input, c->input_len);
}

static void negotiate_done(cred_job *job, int status)
{
    negotiate_ctx *c = job->data;
    free(c->input);
    c->input = NULL;
    if (status != 0) {
        memset(&c->result, 0, sizeof c->result);
        fail(c, "credential pool stopped");
    }
    c->busy = false;
    c->cb(c, &c->result, status, c->data);
}

int negotiate_submit(cred_pool_loop *pl, negotiate_ctx *c, const char *value, size_t len,
                     unsigned *pending, unsigned cap, negotiate_cb cb, void *data)
{
    if (c->busy)
        return UV_EBUSY;
    if (len > 4 * (NEGOTIATE_MAX_TOKEN / 3) + 64)
        return UV_EINVAL;
    c->input = malloc(len ? len : 1);
    if (!c->input)
        return UV_ENOMEM;
    memcpy(c->input, value, len);
    c->input_len = len;
    c->cb = cb;
    c->data = data;
    c->job.work = negotiate_work;
    c->job.done = negotiate_done;
    c->job.data = c;
    int rc = cred_pool_submit(pl, &c->job, pending, cap);
    if (rc != 0) {
        free(c->input);
        c->input = NULL;
        return rc;
    }
    c->busy = true;
    return 0;
}
