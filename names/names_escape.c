/* Escaping arbitrary bytes for log lines: nothing a client sends can forge or break a line. */
#include "names.h"

static bool passes(uint8_t c)
{
    return c >= 0x20 && c <= 0x7e && c != '\\' && c != '"';
}

size_t names_escape(const uint8_t *p, size_t n, char *out, size_t out_size)
{
    static const char hex[] = "0123456789abcdef";
    size_t need = 0;
    size_t w = 0;
    bool full = out_size == 0;
    for (size_t i = 0; i < n; i++) {
        size_t len = passes(p[i]) ? 1 : 4;
        need += len;
        if (full)
            continue;
        if (w + len >= out_size) {
            full = true; /* later bytes still count in the returned length */
            continue;
        }
        if (len == 1) {
            out[w++] = (char)p[i];
        } else {
            out[w++] = '\\';
            out[w++] = 'x';
            out[w++] = hex[p[i] >> 4];
            out[w++] = hex[p[i] & 0xf];
        }
    }
    if (out_size > 0)
        out[w] = '\0';
    return need;
}
