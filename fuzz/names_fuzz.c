/* libFuzzer target: canonical hosts, authorities, SNI and escaping. A canonical form must be
 * a fixed point: parsing it again gives it back unchanged. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "names.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_cleared(const char *err, const names_host *h)
{
    if (err && (h->kind != 0 || h->len != 0 || h->text[0] != '\0'))
        abort();
}

/* A success is well formed and canonical. */
static void check_host(const names_host *h)
{
    if (h->len != strlen(h->text) || h->len == 0 || h->len > NAMES_MAX_NAME)
        abort();
    if (h->kind != NAMES_NAME && h->kind != NAMES_IPV4 && h->kind != NAMES_IPV6)
        abort();
    names_host again;
    if (names_host_canonical(h->text, h->len, &again) != NULL || again.kind != h->kind ||
        strcmp(again.text, h->text) != 0)
        abort();
    if (h->kind == NAMES_NAME)
        for (size_t i = 0; i < h->len; i++) {
            char c = h->text[i];
            if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
                  c == '.'))
                abort();
        }
}

static void check_authority(const char *err, const names_authority *a)
{
    check_cleared(err, &a->host);
    if (err)
        return;
    check_host(&a->host);
    if (a->port == 0)
        abort();
    char text[NAMES_MAX_NAME + 16];
    snprintf(text, sizeof text, a->host.kind == NAMES_IPV6 ? "[%s]:%u" : "%s:%u", a->host.text,
             a->port);
    names_authority again;
    if (names_connect_target(text, strlen(text), &again) != NULL || again.port != a->port ||
        strcmp(again.host.text, a->host.text) != 0)
        abort();
}

static void check_escape(const uint8_t *data, size_t size)
{
    static char out[NAMES_ESCAPED_SIZE(1024)];
    if (size > 1024)
        size = 1024;
    size_t need = names_escape(data, size, out, sizeof out);
    if (need != strlen(out) || need + 1 > NAMES_ESCAPED_SIZE(size))
        abort();
    for (size_t i = 0; i < need; i++)
        if (out[i] < 0x20 || out[i] > 0x7e || out[i] == '"')
            abort();
    char small[16];
    if (names_escape(data, size, small, sizeof small) != need ||
        strncmp(small, out, strlen(small)) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    names_host h;
    const char *err = names_host_canonical(p, size, &h);
    check_cleared(err, &h);
    if (!err)
        check_host(&h);

    names_host sni;
    err = names_sni_canonical(data, size, &sni);
    check_cleared(err, &sni);
    if (!err) {
        check_host(&sni);
        if (sni.kind != NAMES_NAME)
            abort();
    }

    names_authority a;
    check_authority(names_connect_target(p, size, &a), &a);
    check_authority(names_host_header(p, size, 80, &a), &a);
    err = names_url_authority(p, size, 443, &a);
    check_authority(err, &a);
    if (!err && memchr(p, '@', size))
        abort();

    check_escape(data, size);
    return 0;
}
