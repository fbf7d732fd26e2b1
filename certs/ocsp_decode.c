/* Turning the path of GET /ocsp/<base64> back into the DER request (RFC 6960 A.1). */
#include <stdlib.h>
#include <string.h>

#include "ocsp.h"

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Standard and URL-safe alphabets both decode; -1 for anything else. */
static int b64_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || c == '-')
        return 62;
    if (c == '/' || c == '_')
        return 63;
    return -1;
}

int certs_ocsp_decode_get(const char *path, size_t path_len, unsigned char **der, size_t *der_len)
{
    *der = NULL;
    *der_len = 0;
    /* Base64 of the largest request we answer, percent-encoded at worst: 4/3 x 3. */
    if (path == NULL || path_len == 0 || path_len > CERTS_OCSP_MAX_REQUEST * 4)
        return -1;

    unsigned char *out = malloc(path_len); /* decoding only ever shrinks */
    if (out == NULL)
        return -1;
    unsigned bits = 0, nbits = 0;
    size_t n = 0, pad = 0;
    for (size_t i = 0; i < path_len; i++) {
        char c = path[i];
        if (c == '%') {
            int hi = i + 2 < path_len ? hex_value(path[i + 1]) : -1;
            int lo = hi >= 0 ? hex_value(path[i + 2]) : -1;
            if (lo < 0)
                goto fail;
            c = (char)(hi << 4 | lo);
            i += 2;
        }
        if (c == '=') {
            pad++;
            continue;
        }
        int v = b64_value(c);
        if (v < 0 || pad > 0) /* nothing but padding after padding */
            goto fail;
        bits = (bits << 6 | (unsigned)v) & 0xffffff;
        nbits += 6;
        if (nbits >= 8) {
            nbits -= 8;
            out[n++] = (unsigned char)(bits >> nbits);
        }
    }
    /* Leftover bits must be the zero filler of a final partial group (2 or 4 bits), and
     * padding, when present, must complete the group. */
    if (nbits >= 6 || (bits & ((1u << nbits) - 1)) != 0 || pad > 2 ||
        (pad > 0 && pad != nbits / 2) || n == 0)
        goto fail;
    *der = out;
    *der_len = n;
    return 0;
fail:
    free(out);
    return -1;
}
