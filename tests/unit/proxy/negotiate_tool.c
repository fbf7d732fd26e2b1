/* Test driver for the Negotiate acceptor, run by tests/integration/test_negotiate.py.
 *   negotiate_tool init SERVICE@HOST   prints a SPNEGO token from the ticket cache (KRB5CCNAME)
 *   negotiate_tool init-krb5 SERVICE@HOST   the same as a bare Kerberos token
 *   negotiate_tool accept KEYTAB SERVICE_PRINCIPAL|- yes|no
 *       feeds each stdin line (a Proxy-Authorization value) to one context through the credential
 *       pool on a libuv loop, and prints `complete USER PRINCIPAL MUTUAL`, `continue TOKEN` or
 *       `failed REASON` per line; a line `new` starts a new context (a new connection). */
#include <gssapi/gssapi.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth_negotiate.h"
#include "cred_pool.h"

static int init_token(const char *service, bool raw_krb5)
{
    OM_uint32 minor;
    gss_buffer_desc nb = {strlen(service), (void *)service};
    gss_name_t target;
    OM_uint32 major = gss_import_name(&minor, &nb, GSS_C_NT_HOSTBASED_SERVICE, &target);
    if (GSS_ERROR(major)) {
        fprintf(stderr, "gss_import_name failed\n");
        return 1;
    }
    static gss_OID_desc spnego = {6, (void *)"\x2b\x06\x01\x05\x05\x02"};
    static gss_OID_desc krb5 = {9, (void *)"\x2a\x86\x48\x86\xf7\x12\x01\x02\x02"};
    gss_ctx_id_t ctx = GSS_C_NO_CONTEXT;
    gss_buffer_desc out = GSS_C_EMPTY_BUFFER;
    major = gss_init_sec_context(
        &minor, GSS_C_NO_CREDENTIAL, &ctx, target, raw_krb5 ? &krb5 : &spnego, GSS_C_MUTUAL_FLAG, 0,
        GSS_C_NO_CHANNEL_BINDINGS, GSS_C_NO_BUFFER, NULL, &out, NULL, NULL);
    gss_release_name(&minor, &target);
    if (GSS_ERROR(major) || out.length == 0) {
        OM_uint32 ctx2 = 0;
        gss_buffer_desc msg;
        gss_display_status(&minor, major, GSS_C_GSS_CODE, GSS_C_NO_OID, &ctx2, &msg);
        fprintf(stderr, "gss_init_sec_context: %.*s\n", (int)msg.length, (char *)msg.value);
        return 1;
    }
    char *b64 = malloc(4 * ((out.length + 2) / 3) + 1);
    EVP_EncodeBlock((unsigned char *)b64, out.value, (int)out.length);
    printf("%s\n", b64);
    free(b64);
    gss_release_buffer(&minor, &out);
    gss_delete_sec_context(&minor, &ctx, GSS_C_NO_BUFFER);
    return 0;
}

static int done_count;

static void on_step(negotiate_ctx *c, const negotiate_result *r, int status, void *data)
{
    (void)c, (void)data;
    done_count++;
    if (status != 0)
        printf("failed pool status %d: %s\n", status, r->reason);
    else if (r->status == NEGOTIATE_COMPLETE)
        printf("complete %s %s %s\n", r->user, r->principal, r->token_b64 ? "mutual" : "-");
    else if (r->status == NEGOTIATE_CONTINUE)
        printf("continue %s\n", r->token_b64 ? r->token_b64 : "-");
    else
        printf("failed %s\n", r->reason);
    fflush(stdout);
}

static int accept_lines(const char *keytab, const char *service, bool strip)
{
    char err[512];
    negotiate_acceptor *a = negotiate_acceptor_new(keytab, strcmp(service, "-") ? service : NULL,
                                                   strip, err, sizeof err);
    if (!a) {
        printf("acceptor %s\n", err);
        return 2;
    }
    uv_loop_t loop;
    uv_loop_init(&loop);
    cred_pool *pool = cred_pool_new(2, 16);
    cred_pool_loop *pl = cred_pool_attach(pool, &loop);
    negotiate_ctx *c = negotiate_ctx_new(a);
    unsigned pending = 0;
    static char line[65536 + 64];
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (strcmp(line, "new") == 0) {
            negotiate_ctx_free(c);
            c = negotiate_ctx_new(a);
            continue;
        }
        int want = done_count + 1;
        int rc = negotiate_submit(pl, c, line, strlen(line), &pending, 1, on_step, NULL);
        if (rc != 0) {
            printf("failed submit %s\n", uv_err_name(rc));
            continue;
        }
        while (done_count < want)
            uv_run(&loop, UV_RUN_ONCE);
        if (pending != 0)
            printf("pending counter not released\n");
    }
    negotiate_ctx_free(c);
    cred_pool_stop(pool);
    cred_pool_detach(pl);
    uv_run(&loop, UV_RUN_DEFAULT);
    cred_pool_free(pool);
    uv_loop_close(&loop);
    negotiate_acceptor_free(a);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "init") == 0)
        return init_token(argv[2], false);
    if (argc == 3 && strcmp(argv[1], "init-krb5") == 0)
        return init_token(argv[2], true);
    if (argc == 5 && strcmp(argv[1], "accept") == 0)
        return accept_lines(argv[2], argv[3], strcmp(argv[4], "no") != 0);
    fprintf(stderr, "usage: negotiate_tool init SERVICE@HOST | accept KEYTAB PRINCIPAL|- yes|no\n");
    return 2;
}
