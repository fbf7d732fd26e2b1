/* The INI configuration of SPEC section 3: defaults, every key read from a real file, relative
 * paths resolved against the file's folder, and each mistake reported at FILE:LINE. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <cmocka.h>

#include "config.h"

typedef struct {
    char dir[64];
    char path[128];
    char *errors; /* what config_load printed */
    size_t errors_len;
    config cfg;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    snprintf(f->dir, sizeof f->dir, "/tmp/handoff-config-test-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof f->path, "%s/handoff.conf", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    unlink(f->path);
    rmdir(f->dir);
    free(f->errors);
    free(f);
    return 0;
}

/* Writes text as the config file and loads it over the defaults; returns the error count. */
static int load(fixture *f, const char *text)
{
    FILE *file = fopen(f->path, "w");
    assert_non_null(file);
    fputs(text, file);
    fclose(file);
    free(f->errors);
    f->errors = NULL;
    FILE *err = open_memstream(&f->errors, &f->errors_len);
    assert_non_null(err);
    config_defaults(&f->cfg);
    int n = config_load(&f->cfg, f->path, err);
    fclose(err);
    return n;
}

static void assert_error_at(const fixture *f, int line, const char *says)
{
    char where[200];
    snprintf(where, sizeof where, "%s:%d:", f->path, line);
    if (!strstr(f->errors, where) || !strstr(f->errors, says))
        fail_msg("expected an error at %s mentioning '%s', got:\n%s", where, says, f->errors);
}

static int port_of(const config_addr *a)
{
    if (a->addr.ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)&a->addr)->sin6_port);
    return ntohs(((const struct sockaddr_in *)&a->addr)->sin_port);
}

static void defaults_follow_the_spec(void **state)
{
    (void)state;
    config cfg;
    config_defaults(&cfg);
    assert_int_equal(cfg.listen_count, 1);
    assert_string_equal(cfg.listen[0].text, "127.0.0.1:3128");
    assert_int_equal(port_of(&cfg.listen[0]), 3128);
    assert_int_equal(cfg.workers, 0); /* auto */
    assert_true(cfg.protocol_detection);
    assert_false(cfg.tunnel_on_protocol_error);
    assert_int_equal(cfg.detect_timeout_ms, 2000);
    assert_int_equal(cfg.header_timeout_s, 30);
    assert_int_equal(cfg.connect_timeout_s, 10);
    assert_int_equal(cfg.idle_timeout_s, 300);
    assert_int_equal(cfg.max_header_bytes, 65536);
    assert_int_equal(cfg.max_connections, 20000);
    assert_true(cfg.verify_upstream);
    assert_int_equal(cfg.leaf_cache_size, 10000);
    assert_false(cfg.policy_default_allow);
    assert_true(cfg.admin_enabled);
    assert_int_equal(port_of(&cfg.admin), 8082);
    assert_string_equal(cfg.realm, "handoff");
    assert_string_equal(cfg.access_log, "-");
    assert_int_equal(cfg.log_format, LOG_FORMAT_JSON);
    assert_int_equal(cfg.log_level, LOG_INFO);
    assert_string_equal(cfg.pac_proxy, "PROXY 127.0.0.1:3128");
    assert_string_equal(cfg.ocsp_url, ""); /* http://<first listen>/ocsp, filled at start-up */
    assert_int_equal(cfg.check_revocation, CHECK_REV_AUTO);
    assert_false(cfg.revocation_hard);
}

static void every_key_is_read(void **state)
{
    fixture *f = *state;
    int n = load(f, "; a comment\n"
                    "[proxy]\n"
                    "listen = 127.0.0.1:8080, [::1]:8081\n"
                    "workers = 3\n"
                    "protocol_detection = no\n"
                    "tunnel_on_protocol_error = yes\n"
                    "detect_timeout_ms = 750\n"
                    "header_timeout_s = 7\n"
                    "connect_timeout_s = 4\n"
                    "idle_timeout_s = 90\n"
                    "max_header_bytes = 4096\n"
                    "max_connections = 12\n"
                    "[tls]\n"
                    "ca_cert = /etc/handoff/ca.crt\n"
                    "ca_key = keys/ca.key\n"
                    "verify_upstream = no\n"
                    "leaf_cache_size = 50\n"
                    "crl_url = http://crl.example/ca.crl\n"
                    "ocsp_url = http://ocsp.example/ocsp\n"
                    "check_revocation = crl\n"
                    "revocation_failure = hard\n"
                    "[policy]\n"
                    "file = policy.cpl\n"
                    "default = allow\n"
                    "[admin]\n"
                    "listen =\n"
                    "[auth]\n"
                    "htpasswd = users.htpasswd\n"
                    "realm = corp\n"
                    "[log]\n"
                    "access_log = off\n"
                    "format = squid\n"
                    "level = debug\n"
                    "[pac]\n"
                    "proxy = PROXY proxy.corp:8080\n"
                    "direct = intranet.corp\n");
    assert_int_equal(n, 0);
    assert_int_equal(f->cfg.listen_count, 2);
    assert_int_equal(f->cfg.listen[0].addr.ss_family, AF_INET);
    assert_int_equal(port_of(&f->cfg.listen[0]), 8080);
    assert_int_equal(f->cfg.listen[1].addr.ss_family, AF_INET6);
    assert_int_equal(port_of(&f->cfg.listen[1]), 8081);
    assert_int_equal(f->cfg.workers, 3);
    assert_false(f->cfg.protocol_detection);
    assert_true(f->cfg.tunnel_on_protocol_error);
    assert_int_equal(f->cfg.detect_timeout_ms, 750);
    assert_int_equal(f->cfg.header_timeout_s, 7);
    assert_int_equal(f->cfg.connect_timeout_s, 4);
    assert_int_equal(f->cfg.idle_timeout_s, 90);
    assert_int_equal(f->cfg.max_header_bytes, 4096);
    assert_int_equal(f->cfg.max_connections, 12);
    assert_string_equal(f->cfg.ca_cert, "/etc/handoff/ca.crt");
    assert_false(f->cfg.verify_upstream);
    assert_int_equal(f->cfg.leaf_cache_size, 50);
    assert_string_equal(f->cfg.crl_url, "http://crl.example/ca.crl");
    assert_string_equal(f->cfg.ocsp_url, "http://ocsp.example/ocsp");
    assert_int_equal(f->cfg.check_revocation, CHECK_REV_CRL);
    assert_true(f->cfg.revocation_hard);
    assert_true(f->cfg.policy_default_allow);
    assert_false(f->cfg.admin_enabled);
    assert_string_equal(f->cfg.realm, "corp");
    assert_string_equal(f->cfg.access_log, ""); /* off */
    assert_int_equal(f->cfg.log_format, LOG_FORMAT_SQUID);
    assert_int_equal(f->cfg.log_level, LOG_DEBUG);
    assert_string_equal(f->cfg.pac_proxy, "PROXY proxy.corp:8080");
    assert_string_equal(f->cfg.pac_direct, "intranet.corp");
}

static void relative_paths_resolve_against_the_config_folder(void **state)
{
    fixture *f = *state;
    assert_int_equal(load(f, "[policy]\nfile = policy.cpl\n[tls]\nca_key = keys/ca.key\n"
                             "[auth]\nhtpasswd = users.htpasswd\n"
                             "[log]\naccess_log = logs/access.log\n"),
                     0);
    char want[256];
    snprintf(want, sizeof want, "%s/policy.cpl", f->dir);
    assert_string_equal(f->cfg.policy_file, want);
    snprintf(want, sizeof want, "%s/keys/ca.key", f->dir);
    assert_string_equal(f->cfg.ca_key, want);
    snprintf(want, sizeof want, "%s/users.htpasswd", f->dir);
    assert_string_equal(f->cfg.htpasswd, want);
    snprintf(want, sizeof want, "%s/logs/access.log", f->dir);
    assert_string_equal(f->cfg.access_log, want);
}

static void stdout_log_and_workers_auto(void **state)
{
    fixture *f = *state;
    assert_int_equal(load(f, "[proxy]\nworkers = 2\nworkers = auto\n[log]\naccess_log = -\n"), 0);
    assert_int_equal(f->cfg.workers, 0);
    assert_string_equal(f->cfg.access_log, "-");
}

static void unknown_key_names_file_line_and_key(void **state)
{
    fixture *f = *state;
    assert_int_equal(load(f, "[proxy]\nworkers = 1\nlisten_backlog = 5\n"), 1);
    assert_error_at(f, 3, "listen_backlog");
}

static void unknown_section_is_an_error(void **state)
{
    fixture *f = *state;
    assert_true(load(f, "[proxy]\nworkers = 1\n\n[cache]\nsize = 5\n") >= 1);
    if (!strstr(f->errors, "cache"))
        fail_msg("the unknown section is not named: %s", f->errors);
    char at4[200], at5[200];
    snprintf(at4, sizeof at4, "%s:4:", f->path);
    snprintf(at5, sizeof at5, "%s:5:", f->path);
    if (!strstr(f->errors, at4) && !strstr(f->errors, at5))
        fail_msg("no FILE:LINE for the unknown section: %s", f->errors);
}

static void bad_values_are_errors(void **state)
{
    fixture *f = *state;
    static const struct {
        const char *text;
        int line;
        const char *key;
    } cases[] = {
        {"[proxy]\nheader_timeout_s = soon\n", 2, "header_timeout_s"},
        {"[proxy]\nheader_timeout_s = 0\n", 2, "header_timeout_s"},
        {"[proxy]\nmax_header_bytes = 12abc\n", 2, "max_header_bytes"},
        {"[proxy]\nmax_connections = -1\n", 2, "max_connections"},
        {"[proxy]\nprotocol_detection = maybe\n", 2, "protocol_detection"},
        {"[proxy]\nworkers = many\n", 2, "workers"},
        {"[proxy]\nlisten = 127.0.0.1\n", 2, "listen"},
        {"[proxy]\nlisten = 127.0.0.1:70000\n", 2, "listen"},
        {"[proxy]\nlisten = ::1:3128\n", 2, "listen"},
        {"[admin]\nlisten = nowhere\n", 2, "listen"},
        {"[policy]\ndefault = maybe\n", 2, "default"},
        {"[log]\nformat = xml\n", 2, "format"},
        {"[log]\nlevel = loud\n", 2, "level"},
        {"[tls]\nverify_upstream = sometimes\n", 2, "verify_upstream"},
        {"[tls]\ncheck_revocation = always\n", 2, "check_revocation"},
        {"[tls]\nrevocation_failure = strict\n", 2, "revocation_failure"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int n = load(f, cases[i].text);
        if (n < 1)
            fail_msg("accepted: %s", cases[i].text);
        assert_error_at(f, cases[i].line, cases[i].key);
    }
}

static void every_error_is_reported(void **state)
{
    fixture *f = *state;
    assert_int_equal(load(f, "[proxy]\n"
                             "workers = none\n"
                             "colour = blue\n"
                             "header_timeout_s = 5\n"
                             "[log]\n"
                             "format = text\n"),
                     3);
    assert_error_at(f, 2, "workers");
    assert_error_at(f, 3, "colour");
    assert_error_at(f, 6, "format");
    /* The good key between them still applies. */
    assert_int_equal(f->cfg.header_timeout_s, 5);
}

static void missing_file_is_an_error(void **state)
{
    fixture *f = *state;
    config cfg;
    config_defaults(&cfg);
    char *text = NULL;
    size_t len = 0;
    FILE *err = open_memstream(&text, &len);
    char missing[200];
    snprintf(missing, sizeof missing, "%s/absent.conf", f->dir);
    assert_true(config_load(&cfg, missing, err) > 0);
    fclose(err);
    assert_non_null(strstr(text, "absent.conf"));
    free(text);
}

static bool in_block(const config_cidr *c, const char *ip)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (strchr(ip, ':')) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        assert_int_equal(inet_pton(AF_INET6, ip, &a->sin6_addr), 1);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        assert_int_equal(inet_pton(AF_INET, ip, &a->sin_addr), 1);
    }
    return config_cidr_contains(c, (const struct sockaddr *)&ss);
}

static void proxy_protocol_keys(void **state)
{
    fixture *f = *state;
    assert_int_equal(load(f, "[proxy]\nproxy_protocol = yes\n"
                             "proxy_protocol_from = 10.1.2.0/23, ::1, 127.0.0.1/32\n"
                             "[admin]\ncontrol_socket = run/handoff.sock\n"),
                     0);
    assert_true(f->cfg.proxy_protocol);
    assert_int_equal(f->cfg.proxy_protocol_from_count, 3);
    const config_cidr *c = f->cfg.proxy_protocol_from;
    assert_true(in_block(&c[0], "10.1.2.7"));
    assert_true(in_block(&c[0], "10.1.3.255"));
    assert_false(in_block(&c[0], "10.1.4.0"));
    assert_false(in_block(&c[0], "::1")); /* another family */
    assert_true(in_block(&c[1], "::1"));
    assert_false(in_block(&c[1], "::2"));
    assert_true(in_block(&c[2], "127.0.0.1"));
    assert_false(in_block(&c[2], "127.0.0.5"));
    char want[200];
    snprintf(want, sizeof want, "%s/run/handoff.sock", f->dir);
    assert_string_equal(f->cfg.control_socket, want);

    /* On without a list would trust every peer's claim. */
    assert_int_equal(load(f, "[proxy]\nproxy_protocol = yes\n"), 1);
    assert_non_null(strstr(f->errors, "proxy_protocol_from"));
    assert_int_equal(load(f, "[proxy]\nproxy_protocol_from = 10.0.0.0/33\n"), 1);
    assert_error_at(f, 2, "proxy_protocol_from");
    assert_int_equal(load(f, "[proxy]\nproxy_protocol_from = balancer.example\n"), 1);
    assert_int_equal(load(f, "[proxy]\nproxy_protocol_from = ::/0\n"), 0);
    assert_true(in_block(&f->cfg.proxy_protocol_from[0], "2001:db8::1"));
    assert_false(f->cfg.proxy_protocol);
}

static void collect(const char *section, const char *name, void *data)
{
    char *out = data;
    size_t n = strlen(out);
    snprintf(out + n, 512 - n, "[%s]%s ", section, name);
}

static void diff_names_the_changed_keys(void **state)
{
    fixture *f = *state;
    assert_int_equal(load(f, "[proxy]\nidle_timeout_s = 60\nproxy_protocol_from = 10.0.0.0/8\n"
                             "[tls]\nupstream_ca_file = /tmp/a.pem\n"),
                     0);
    config *before = malloc(sizeof *before);
    assert_non_null(before);
    memcpy(before, &f->cfg, sizeof *before);
    char changed[512] = "";
    config_diff(before, &f->cfg, collect, changed);
    assert_string_equal(changed, "");
    /* Same values in another order and spacing: still no change. */
    assert_int_equal(load(f, "[tls]\nupstream_ca_file = /tmp/a.pem\n[proxy]\n"
                             "proxy_protocol_from =  10.0.0.0/8\nidle_timeout_s=60\n"),
                     0);
    config_diff(before, &f->cfg, collect, changed);
    assert_string_equal(changed, "");
    assert_int_equal(load(f, "[proxy]\nidle_timeout_s = 61\nproxy_protocol_from = 10.0.0.0/8, "
                             "::1\n[tls]\nupstream_ca_file = /tmp/a.pem\n[pac]\ndirect = x\n"),
                     0);
    config_diff(before, &f->cfg, collect, changed);
    assert_string_equal(changed, "[proxy]idle_timeout_s [proxy]proxy_protocol_from [pac]direct ");
    free(before);
}

static void revocation_modes_parse(void **state)
{
    fixture *f = *state;
    static const struct {
        const char *value;
        config_check_revocation mode;
    } modes[] = {{"auto", CHECK_REV_AUTO},
                 {"OCSP", CHECK_REV_OCSP},
                 {"crl", CHECK_REV_CRL},
                 {"no", CHECK_REV_NO}};
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        char text[200];
        snprintf(text, sizeof text, "[tls]\ncheck_revocation = %s\nrevocation_failure = soft\n",
                 modes[i].value);
        assert_int_equal(load(f, text), 0);
        assert_int_equal(f->cfg.check_revocation, modes[i].mode);
        assert_false(f->cfg.revocation_hard);
        assert_string_equal(config_check_revocation_name(modes[i].mode),
                            i == 1 ? "ocsp" : modes[i].value);
    }
}

static void wildcard_listen_needs_both_revocation_urls(void **state)
{
    fixture *f = *state;
    static const char *refused[] = {
        "[proxy]\nlisten = 0.0.0.0:3128\n",
        "[proxy]\nlisten = [::]:3128\n[tls]\ncrl_url = http://proxy.corp:3128/handoff-ca.crl\n",
        "[proxy]\nlisten = 0.0.0.0:3128\n[tls]\nocsp_url = http://proxy.corp:3128/ocsp\n",
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        if (load(f, refused[i]) != 1)
            fail_msg("accepted or miscounted: %s\n%s", refused[i], f->errors);
        /* One line names both keys. */
        char *line = strstr(f->errors, "crl_url");
        assert_non_null(line);
        char *end = strchr(line, '\n');
        assert_non_null(end);
        char *ocsp = strstr(f->errors, "ocsp_url");
        assert_true(ocsp && ocsp < end);
    }
    assert_int_equal(load(f, "[proxy]\nlisten = 0.0.0.0:3128\n[tls]\n"
                             "crl_url = http://proxy.corp:3128/handoff-ca.crl\n"
                             "ocsp_url = http://proxy.corp:3128/ocsp\n"),
                     0);
    /* Only the first address is named in the default URLs. */
    assert_int_equal(load(f, "[proxy]\nlisten = 127.0.0.1:3128, 0.0.0.0:3129\n"), 0);
}

static void addresses_parse(void **state)
{
    (void)state;
    config_addr a;
    assert_int_equal(config_parse_addr("127.0.0.1:3128", &a), 0);
    assert_int_equal(a.addr.ss_family, AF_INET);
    assert_int_equal(port_of(&a), 3128);
    assert_int_equal(ntohl(((struct sockaddr_in *)&a.addr)->sin_addr.s_addr), 0x7f000001);

    assert_int_equal(config_parse_addr("[::1]:8443", &a), 0);
    assert_int_equal(a.addr.ss_family, AF_INET6);
    assert_int_equal(port_of(&a), 8443);
    assert_true(IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)&a.addr)->sin6_addr));
    assert_string_equal(a.text, "[::1]:8443");

    assert_int_equal(config_parse_addr("0.0.0.0:1", &a), 0);
    assert_int_equal(config_parse_addr("[::]:65535", &a), 0);

    static const char *bad[] = {
        "",           "127.0.0.1",    "127.0.0.1:",   "127.0.0.1:0", "127.0.0.1:65536",
        "1.2.3:80",   "[::1]",        "[::1]80",      "::1:80",      "[::1:80",
        "1.2.3.4:8x", "[1.2.3.4]:80", "300.1.1.1:80",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (config_parse_addr(bad[i], &a) == 0)
            fail_msg("accepted '%s'", bad[i]);
}

static void transparent_listeners_and_mark(void **state)
{
    fixture *f = *state;
    assert_int_equal(load(f, "[proxy]\n"), 0);
    assert_int_equal(f->cfg.transparent_count, 0);
    assert_int_equal(f->cfg.transparent_mark, 0x68);

    assert_int_equal(load(f, "[proxy]\n"
                             "transparent = 127.0.0.1:3129, [::1]:3130\n"
                             "transparent_mark = 0x1f00\n"),
                     0);
    assert_int_equal(f->cfg.transparent_count, 2);
    assert_int_equal(f->cfg.transparent[0].addr.ss_family, AF_INET);
    assert_int_equal(port_of(&f->cfg.transparent[0]), 3129);
    assert_int_equal(f->cfg.transparent[1].addr.ss_family, AF_INET6);
    assert_int_equal(port_of(&f->cfg.transparent[1]), 3130);
    assert_int_equal(f->cfg.transparent_mark, 0x1f00);
    /* The explicit listener is untouched. */
    assert_int_equal(f->cfg.listen_count, 1);
    assert_int_equal(port_of(&f->cfg.listen[0]), 3128);

    assert_int_equal(load(f, "[proxy]\ntransparent =\ntransparent_mark = 0\n"), 0);
    assert_int_equal(f->cfg.transparent_count, 0);
    assert_int_equal(f->cfg.transparent_mark, 0);

    assert_int_equal(load(f, "[proxy]\ntransparent = 127.0.0.1\n"), 1);
    assert_error_at(f, 2, "transparent");
    assert_int_equal(load(f, "[proxy]\ntransparent_mark = -1\n"), 1);
    assert_error_at(f, 2, "transparent_mark");
    assert_int_equal(load(f, "[proxy]\ntransparent_mark = 0x100000000\n"), 1);
    assert_error_at(f, 2, "transparent_mark");
    assert_int_equal(load(f, "[proxy]\ntransparent_mark = mark\n"), 1);
    assert_error_at(f, 2, "transparent_mark");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults_follow_the_spec),
        cmocka_unit_test_setup_teardown(every_key_is_read, setup, teardown),
        cmocka_unit_test_setup_teardown(relative_paths_resolve_against_the_config_folder, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(stdout_log_and_workers_auto, setup, teardown),
        cmocka_unit_test_setup_teardown(unknown_key_names_file_line_and_key, setup, teardown),
        cmocka_unit_test_setup_teardown(unknown_section_is_an_error, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_values_are_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(every_error_is_reported, setup, teardown),
        cmocka_unit_test_setup_teardown(missing_file_is_an_error, setup, teardown),
        cmocka_unit_test(addresses_parse),
        cmocka_unit_test_setup_teardown(transparent_listeners_and_mark, setup, teardown),
        cmocka_unit_test_setup_teardown(proxy_protocol_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(diff_names_the_changed_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(revocation_modes_parse, setup, teardown),
        cmocka_unit_test_setup_teardown(wildcard_listen_needs_both_revocation_urls, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
