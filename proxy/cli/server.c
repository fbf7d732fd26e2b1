/* Starting and stopping the process: configuration, shared state, workers, signals. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "access_log.h"
#include "admin.h"
#include "auth.h"
#include "certs.h"
#include "cli.h"
#include "diag.h"
#include "ocsp.h"
#include "pac.h"
#include "revocation.h"
#include "tls_contexts.h"
#include "worker.h"

#define MAX_WORKERS 64

typedef struct {
    shared_state *sh;
    worker *workers;
    int count;
    uv_signal_t sig_term, sig_int, sig_hup;
} process;

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 8192;
            char *p = realloc(buf, cap);
            if (!p) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = p;
        }
        size_t r = fread(buf + n, 1, 4096, f);
        n += r;
        if (r == 0)
            break;
    }
    fclose(f);
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

/* Prints every error of a policy file; returns the compiled policy or NULL. */
policy *load_policy(const config *cfg, FILE *err)
{
    if (!cfg->policy_file[0])
        return NULL;
    policy_errors errs = {0};
    policy *p = policy_compile_file(cfg->policy_file, &errs);
    for (size_t i = 0; i < errs.count; i++)
        fprintf(err, "%s:%d:%d: %s\n", errs.items[i].file, errs.items[i].line, errs.items[i].col,
                errs.items[i].message);
    policy_errors_free(&errs);
    return p;
}

/* Loads everything a running proxy needs besides sockets. Exit code on failure, else 0. */
static int prepare(shared_state *sh, const char *conf, bool for_check)
{
    config *cfg = &sh->cfg;
    config_defaults(cfg);
    int errors = config_load(cfg, conf, stderr);
    policy *p = NULL;
    if (errors == 0 && cfg->policy_file[0]) {
        p = load_policy(cfg, stderr);
        if (!p)
            errors++;
    }
    char err[512];
    if (errors == 0 && cfg->htpasswd[0] &&
        !(sh->auth = auth_load(cfg->htpasswd, err, sizeof err))) {
        fprintf(stderr, "%s: [auth] htpasswd: %s\n", cfg->path, err);
        errors++;
    }
    if (errors == 0) {
        if (cfg->pac_file[0]) {
            if (!(sh->pac = read_file(cfg->pac_file, &sh->pac_len))) {
                fprintf(stderr, "%s: [pac] file: cannot read %s: %s\n", cfg->path, cfg->pac_file,
                        strerror(errno));
                errors++;
            }
        } else if (!(sh->pac = pac_generate(cfg->pac_proxy, cfg->pac_direct, &sh->pac_len, err,
                                            sizeof err))) {
            fprintf(stderr, "%s: %s\n", cfg->path, err);
            errors++;
        }
    }
    if (errors == 0 && !for_check) {
        if (!cfg->ca_cert[0] || !cfg->ca_key[0]) {
            fprintf(stderr,
                    "handoff: [tls] ca_cert and ca_key are required: run `handoff ca init DIR`\n");
            errors++;
        } else if (!(sh->ca = certs_ca_load(cfg->ca_cert, cfg->ca_key, err, sizeof err))) {
            fprintf(stderr, "handoff: %s\n", err);
            errors++;
        } else {
            sh->ca_pem = read_file(cfg->ca_cert, NULL);
            sh->leaves = certs_cache_new((size_t)cfg->leaf_cache_size);
            /* Minted serials outlive their cached leaves: the responder keeps saying good. */
            size_t record = (size_t)cfg->leaf_cache_size * 4;
            certs_ca_set_record_capacity(sh->ca, record > CERTS_ISSUED_DEFAULT_CAPACITY
                                                     ? record
                                                     : CERTS_ISSUED_DEFAULT_CAPACITY);
            sh->rev_cache = certs_rev_cache_new((size_t)cfg->leaf_cache_size);
            if (tls_contexts_init(sh, err, sizeof err) != 0) {
                fprintf(stderr, "handoff: %s\n", err);
                errors++;
            }
        }
    }
    if (errors) {
        if (p)
            policy_release(p);
        return 1;
    }
    sh->current_policy = p;
    if (cfg->crl_url[0])
        snprintf(sh->crl_url, sizeof sh->crl_url, "%s", cfg->crl_url);
    else
        snprintf(sh->crl_url, sizeof sh->crl_url, "http://%s/handoff-ca.crl", cfg->listen[0].text);
    if (cfg->ocsp_url[0])
        snprintf(sh->ocsp_url, sizeof sh->ocsp_url, "%s", cfg->ocsp_url);
    else
        snprintf(sh->ocsp_url, sizeof sh->ocsp_url, "http://%s/ocsp", cfg->listen[0].text);
    return 0;
}

int cli_check(const char *conf)
{
    shared_state sh;
    memset(&sh, 0, sizeof sh);
    pthread_mutex_init(&sh.policy_lock, NULL);
    int rc = prepare(&sh, conf, true);
    if (sh.current_policy)
        policy_release(sh.current_policy);
    auth_free(sh.auth);
    free(sh.pac);
    if (rc == 0)
        printf("%s: ok\n", conf);
    return rc;
}

static void on_stop_signal(uv_signal_t *sig, int signum)
{
    process *pr = sig->data;
    diag(LOG_INFO, "signal %d: stopping (open connections get up to %d s)", signum,
         pr->sh->cfg.drain_timeout_s);
    atomic_store(&pr->sh->stopping, true);
    for (int i = 0; i < pr->count; i++)
        worker_request_stop(&pr->workers[i]);
    uv_close((uv_handle_t *)&pr->sig_term, NULL);
    uv_close((uv_handle_t *)&pr->sig_int, NULL);
    uv_close((uv_handle_t *)&pr->sig_hup, NULL);
}

static void on_reload_signal(uv_signal_t *sig, int signum)
{
    process *pr = sig->data;
    (void)signum;
    if (!pr->sh->cfg.policy_file[0]) {
        diag(LOG_INFO, "SIGHUP: no [policy] file to reload");
        return;
    }
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    policy *p = load_policy(&pr->sh->cfg, mem ? mem : stderr);
    if (mem)
        fclose(mem);
    if (!p) {
        diag(LOG_ERROR, "SIGHUP: %s has errors; the running policy stays", pr->sh->cfg.policy_file);
        for (char *save = NULL, *l = text ? strtok_r(text, "\n", &save) : NULL; l;
             l = strtok_r(NULL, "\n", &save))
            diag(LOG_ERROR, "%s", l);
    } else {
        shared_policy_publish(pr->sh, p);
        diag(LOG_INFO, "SIGHUP: policy %s reloaded", pr->sh->cfg.policy_file);
    }
    free(text);
}

static int worker_count(const config *cfg)
{
    if (cfg->workers > 0)
        return cfg->workers > MAX_WORKERS ? MAX_WORKERS : cfg->workers;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (n > MAX_WORKERS ? MAX_WORKERS : (int)n);
}

/* Each connection costs descriptors: take every one the hard limit allows. */
static void raise_descriptor_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            diag(LOG_WARN, "cannot raise the descriptor limit: %s", strerror(errno));
    }
}

int cli_run(const char *conf)
{
    raise_descriptor_limit();
    shared_state *sh = calloc(1, sizeof *sh);
    if (!sh)
        return 2;
    pthread_mutex_init(&sh->policy_lock, NULL);
    int rc = prepare(sh, conf, false);
    if (rc) {
        auth_free(sh->auth);
        free(sh->pac);
        free(sh->ca_pem);
        certs_cache_free(sh->leaves);
        certs_rev_cache_free(sh->rev_cache);
        certs_ca_free(sh->ca);
        SSL_CTX_free(sh->client_ctx);
        SSL_CTX_free(sh->server_ctx);
        EVP_PKEY_free(sh->leaf_key);
        free(sh);
        return rc;
    }
    config *cfg = &sh->cfg;
    diag_set_level(cfg->log_level);
    signal(SIGPIPE, SIG_IGN);
    if (cfg->access_log[0] && !(sh->log = access_log_open(cfg->access_log, cfg->log_format))) {
        fprintf(stderr, "handoff: cannot open access log %s: %s\n", cfg->access_log,
                strerror(errno));
        return 2;
    }

    process pr = {.sh = sh, .count = worker_count(cfg)};
    pr.workers = calloc((size_t)pr.count, sizeof *pr.workers);
    if (!pr.workers)
        return 2;
    sh->workers = pr.workers;
    sh->worker_count = pr.count;
    char err[512];
    for (int i = 0; i < pr.count; i++) {
        if (worker_init(&pr.workers[i], sh, i) != 0 ||
            worker_listen(&pr.workers[i], err, sizeof err) != 0) {
            fprintf(stderr, "handoff: %s\n", err);
            return 2;
        }
    }
    if (cfg->admin_enabled && admin_start(&pr.workers[0], err, sizeof err) != 0) {
        fprintf(stderr, "handoff: %s\n", err);
        return 2;
    }

    uv_loop_t *main_loop = uv_default_loop();
    uv_signal_init(main_loop, &pr.sig_term);
    uv_signal_init(main_loop, &pr.sig_int);
    uv_signal_init(main_loop, &pr.sig_hup);
    pr.sig_term.data = pr.sig_int.data = pr.sig_hup.data = &pr;
    uv_signal_start(&pr.sig_term, on_stop_signal, SIGTERM);
    uv_signal_start(&pr.sig_int, on_stop_signal, SIGINT);
    uv_signal_start(&pr.sig_hup, on_reload_signal, SIGHUP);

    for (int i = 0; i < pr.count; i++)
        pthread_create(&pr.workers[i].thread, NULL, worker_run, &pr.workers[i]);
    for (int i = 0; i < cfg->listen_count; i++)
        diag(LOG_INFO, "listening on %s with %d worker%s", cfg->listen[i].text, pr.count,
             pr.count > 1 ? "s" : "");
    if (cfg->admin_enabled)
        diag(LOG_INFO, "admin on http://%s/", cfg->admin.text);

    uv_run(main_loop, UV_RUN_DEFAULT);
    for (int i = 0; i < pr.count; i++) {
        pthread_join(pr.workers[i].thread, NULL);
        uv_loop_close(&pr.workers[i].loop);
        free(pr.workers[i].snapshot_json);
    }
    uv_loop_close(main_loop);
    access_log_close(sh->log);
    diag(LOG_INFO, "stopped");
    if (sh->current_policy)
        policy_release(sh->current_policy);
    certs_cache_free(sh->leaves);
    certs_rev_cache_free(sh->rev_cache);
    SSL_CTX_free(sh->client_ctx);
    SSL_CTX_free(sh->server_ctx);
    EVP_PKEY_free(sh->leaf_key);
    certs_ca_free(sh->ca);
    auth_free(sh->auth);
    free(sh->pac);
    free(sh->ca_pem);
    free(pr.workers);
    free(sh);
    return 0;
}
