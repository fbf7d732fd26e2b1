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
#include "auth_negotiate.h"
#include "certs.h"
#include "cli.h"
#include "cred_pool.h"
#include "diag.h"
#include "groups.h"
#include "notify.h"
#include "ocsp.h"
#include "pac.h"
#include "revocation.h"
#include "takeover.h"
#include "tls_contexts.h"
#include "worker.h"

#define MAX_WORKERS 64

typedef struct {
    shared_state *sh;
    worker *workers;
    int count;
    uv_signal_t sig_term, sig_int, sig_hup, sig_usr1;
    uv_timer_t status_timer; /* systemd's STATUS= line */
} process;

/* How often systemd's status line is refreshed. */
#define STATUS_INTERVAL_MS 2000

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

/* Prints every error of the groups file; returns the compiled groups or NULL. */
static policy_groups *load_groups(const config *cfg, FILE *err)
{
    policy_errors errs = {0};
    policy_groups *g = policy_groups_compile_file(cfg->groups, &errs);
    for (size_t i = 0; i < errs.count; i++)
        fprintf(err, "%s:%d:%d: %s\n", errs.items[i].file, errs.items[i].line, errs.items[i].col,
                errs.items[i].message);
    policy_errors_free(&errs);
    return g;
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
    if (errors == 0 && cfg->groups[0] && !(sh->groups = load_groups(cfg, stderr)))
        errors++;
    if (errors == 0 && !for_check) {
        for (int i = 0; i < cfg->auth_count; i++) {
            if (cfg->auth[i] != AUTH_MECH_NEGOTIATE)
                continue;
            sh->negotiate =
                negotiate_acceptor_new(cfg->keytab[0] ? cfg->keytab : NULL,
                                       cfg->service_principal[0] ? cfg->service_principal : NULL,
                                       cfg->strip_realm, err, sizeof err);
            if (!sh->negotiate) {
                fprintf(stderr, "%s: [auth] negotiate: %s\n", cfg->path, err);
                errors++;
            }
        }
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
    if (sh.groups)
        policy_groups_release(sh.groups);
    free(sh.pac);
    if (rc == 0)
        printf("%s: ok\n", conf);
    return rc;
}

static void begin_stop(process *pr)
{
    takeover_serve_stop();
    notify_stopping();
    notify_status(atomic_load(&pr->sh->connections), true);
    atomic_store(&pr->sh->stopping, true);
    for (int i = 0; i < pr->count; i++)
        worker_request_stop(&pr->workers[i]);
    uv_close((uv_handle_t *)&pr->sig_term, NULL);
    uv_close((uv_handle_t *)&pr->sig_int, NULL);
    uv_close((uv_handle_t *)&pr->sig_hup, NULL);
    uv_close((uv_handle_t *)&pr->sig_usr1, NULL);
    uv_close((uv_handle_t *)&pr->status_timer, NULL);
}

static void on_stop_signal(uv_signal_t *sig, int signum)
{
    process *pr = sig->data;
    diag(LOG_INFO, "signal %d: stopping (open connections get up to %d s)", signum,
         pr->sh->cfg.drain_timeout_s);
    begin_stop(pr);
}

/* A successor accepts on our sockets now: drain like a stop, and close the admin listener at
 * once so that health checks reach the successor only. */
static void on_handed_over(void *data)
{
    process *pr = data;
    diag(LOG_INFO, "stopping after a takeover (open connections get up to %d s)",
         pr->sh->cfg.drain_timeout_s);
    atomic_store(&pr->sh->handed_over, true);
    begin_stop(pr);
}

/* Log rotation: the files were renamed; write on to fresh ones under the configured names. */
static void on_rotate_signal(uv_signal_t *sig, int signum)
{
    process *pr = sig->data;
    (void)signum;
    diag_reopen();
    access_log_reopen(pr->sh->log);
    diag(LOG_INFO, "SIGUSR1: log files reopened");
}

static void on_status_timer(uv_timer_t *t)
{
    process *pr = t->data;
    notify_status(atomic_load(&pr->sh->connections), false);
}

/* [pac] and [auth] htpasswd are applied on reload; every other changed key is named, so an
 * operator is not misled into thinking it took effect. */
/* [pac] and [auth] htpasswd are applied on reload (turning authentication on or off is not);
 * every other changed key is named, so an operator is not misled into thinking it took
 * effect. Only the main loop reloads, so a file-scope flag is enough. */
static bool running_htpasswd_set;

static void report_restart_key(const char *section, const char *name, void *data)
{
    const config *fresh = data;
    bool auth_toggled = !strcmp(section, "auth") && !strcmp(name, "htpasswd") &&
                        !fresh->htpasswd[0] != !running_htpasswd_set;
    bool applied = !strcmp(section, "pac") ||
                   (!strcmp(section, "auth") && !strcmp(name, "htpasswd") && !auth_toggled);
    if (!applied)
        diag(LOG_WARN, "SIGHUP: [%s] %s changed: it takes effect after a restart (or --takeover)",
             section, name);
}

static void reload_pac(shared_state *sh, const config *fresh)
{
    char err[512];
    size_t len = 0;
    char *pac = fresh->pac_file[0]
                    ? read_file(fresh->pac_file, &len)
                    : pac_generate(fresh->pac_proxy, fresh->pac_direct, &len, err, sizeof err);
    if (!pac) {
        diag(LOG_ERROR, "SIGHUP: [pac]: %s; the running PAC stays",
             fresh->pac_file[0] ? strerror(errno) : err);
        return;
    }
    pthread_mutex_lock(&sh->policy_lock);
    char *old = sh->pac;
    sh->pac = pac;
    sh->pac_len = len;
    pthread_mutex_unlock(&sh->policy_lock);
    free(old);
    diag(LOG_INFO, "SIGHUP: PAC reloaded");
}

static void reload_auth(shared_state *sh, const config *fresh)
{
    char err[512];
    if (!sh->auth || !fresh->htpasswd[0])
        return; /* turning authentication on or off is a restart (reported as a changed key) */
    if (auth_reload(sh->auth, fresh->htpasswd, err, sizeof err) != 0)
        diag(LOG_ERROR, "SIGHUP: [auth] htpasswd: %s; the running users stay", err);
    else
        diag(LOG_INFO, "SIGHUP: users reloaded from %s", fresh->htpasswd);
}

/* Re-reads the configuration file: [pac] and [auth] are applied, the rest reported. */
static void reload_config(shared_state *sh)
{
    const config *running = &sh->cfg;
    config *fresh = malloc(sizeof *fresh);
    if (!fresh)
        return;
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    config_defaults(fresh);
    int errors = mem ? config_load(fresh, running->path, mem) : 1;
    if (mem)
        fclose(mem);
    if (errors) {
        diag(LOG_ERROR, "SIGHUP: %s has errors; only the policy was reloaded", running->path);
        for (char *save = NULL, *l = text ? strtok_r(text, "\n", &save) : NULL; l;
             l = strtok_r(NULL, "\n", &save))
            diag(LOG_ERROR, "%s", l);
    } else {
        reload_pac(sh, fresh);
        reload_auth(sh, fresh);
        running_htpasswd_set = sh->auth != NULL;
        config_diff(running, fresh, report_restart_key, fresh);
    }
    free(text);
    free(fresh);
}

static void reload_policy(process *pr);

static void reload_groups(shared_state *sh)
{
    if (!sh->cfg.groups[0])
        return;
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    policy_groups *g = load_groups(&sh->cfg, mem ? mem : stderr);
    if (mem)
        fclose(mem);
    if (!g) {
        diag(LOG_ERROR, "SIGHUP: %s has errors; the running groups stay", sh->cfg.groups);
        for (char *save = NULL, *l = text ? strtok_r(text, "\n", &save) : NULL; l;
             l = strtok_r(NULL, "\n", &save))
            diag(LOG_ERROR, "%s", l);
    } else {
        shared_groups_publish(sh, g);
        diag(LOG_INFO, "SIGHUP: groups %s reloaded", sh->cfg.groups);
    }
    free(text);
}

static void on_reload_signal(uv_signal_t *sig, int signum)
{
    process *pr = sig->data;
    (void)signum;
    notify_reloading();
    reload_policy(pr);
    reload_groups(pr->sh);
    reload_config(pr->sh);
    notify_ready();
}

static void reload_policy(process *pr)
{
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

int cli_run(const char *conf, bool takeover)
{
    raise_descriptor_limit();
    shared_state *sh = calloc(1, sizeof *sh);
    if (!sh)
        return 2;
    pthread_mutex_init(&sh->policy_lock, NULL);
    for (int i = 0; i < CONFIG_MAX_LISTEN; i++)
        sh->inherited_fd[i] = -1;
    sh->inherited_admin_fd = sh->admin_fd = -1;
    int rc = prepare(sh, conf, false);
    char err[512];
    /* Only a configuration that loaded completely gets to touch the running instance. */
    if (rc == 0 && takeover && takeover_fetch(sh, err, sizeof err) != 0) {
        fprintf(stderr, "handoff: --takeover: %s\n", err);
        rc = 1;
    }
    if (rc) {
        if (sh->current_policy)
            policy_release(sh->current_policy);
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
    diag_remember_file();
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
    for (int i = 0; i < CONFIG_MAX_LISTEN; i++)
        if (sh->inherited_fd[i] >= 0)
            close(sh->inherited_fd[i]); /* every worker holds its own duplicate */

    uv_loop_t *main_loop = uv_default_loop();
    uv_signal_init(main_loop, &pr.sig_term);
    uv_signal_init(main_loop, &pr.sig_int);
    uv_signal_init(main_loop, &pr.sig_hup);
    uv_signal_init(main_loop, &pr.sig_usr1);
    uv_timer_init(main_loop, &pr.status_timer);
    pr.sig_term.data = pr.sig_int.data = pr.sig_hup.data = pr.sig_usr1.data = &pr;
    pr.status_timer.data = &pr;
    uv_signal_start(&pr.sig_term, on_stop_signal, SIGTERM);
    uv_signal_start(&pr.sig_int, on_stop_signal, SIGINT);
    uv_signal_start(&pr.sig_hup, on_reload_signal, SIGHUP);
    uv_signal_start(&pr.sig_usr1, on_rotate_signal, SIGUSR1);

    worker_budget_descriptors(sh);
    /* Password checks get threads of their own, so they never wait behind or delay DNS. */
    if (cfg->auth_count > 0 && !(sh->cred_pool = cred_pool_new(2, 256))) {
        fprintf(stderr, "handoff: cannot start the credential check threads\n");
        return 2;
    }
    for (int i = 0; i < pr.count; i++)
        pthread_create(&pr.workers[i].thread, NULL, worker_run, &pr.workers[i]);
    if (takeover)
        takeover_commit();
    if (takeover_serve(main_loop, sh, pr.workers, takeover, on_handed_over, &pr, err, sizeof err) !=
        0)
        diag(LOG_ERROR, "%s: --takeover of this instance is off", err);
    for (int i = 0; i < cfg->listen_count; i++)
        diag(LOG_INFO, "listening on %s with %d worker%s", cfg->listen[i].text, pr.count,
             pr.count > 1 ? "s" : "");
    for (int i = 0; i < cfg->transparent_count; i++)
        diag(LOG_INFO, "transparent listener on %s", cfg->transparent[i].text);
    if (cfg->admin_enabled)
        diag(LOG_INFO, "admin on http://%s/", cfg->admin.text);
    notify_ready();
    uv_timer_start(&pr.status_timer, on_status_timer, 0, STATUS_INTERVAL_MS);

    uv_run(main_loop, UV_RUN_DEFAULT);
    for (int i = 0; i < pr.count; i++) {
        pthread_join(pr.workers[i].thread, NULL);
        uv_loop_close(&pr.workers[i].loop);
        free(pr.workers[i].snapshot_json);
    }
    uv_loop_close(main_loop);
    if (sh->cred_pool) {
        cred_pool_stop(sh->cred_pool);
        cred_pool_free(sh->cred_pool);
    }
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
    if (sh->groups)
        policy_groups_release(sh->groups);
    negotiate_acceptor_free(sh->negotiate);
    free(sh->pac);
    free(sh->ca_pem);
    free(pr.workers);
    free(sh);
    return 0;
}
