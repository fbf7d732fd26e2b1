/* libFuzzer target: PROXY protocol headers. Besides not crashing, the answers over the
 * prefixes of one input must tell one story: waiting, then a decision that never changes. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "proxy_protocol.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static detect_answer check(const uint8_t *data, size_t n, proxy_protocol_header *h)
{
    detect_answer a = proxy_protocol_parse(data, n, h);
    if ((a == DETECT_NO) != (h->error != NULL))
        abort();
    if (a == DETECT_MATCH) {
        size_t max = h->version == 1 ? PROXY_PROTOCOL_V1_MAX : PROXY_PROTOCOL_V2_MAX;
        if (h->header_len == 0 || h->header_len > n || h->header_len > max)
            abort();
        if (h->has_addresses &&
            (h->source.ss_family != h->destination.ss_family ||
             (h->source.ss_family != AF_INET && h->source.ss_family != AF_INET6)))
            abort();
        if (h->has_addresses && h->command != PROXY_PROTOCOL_PROXY)
            abort();
    } else if (h->header_len != 0 || h->has_addresses) {
        abort();
    }
    /* Either bound decides: no valid header is longer. */
    if (a == DETECT_NEED_MORE && n >= PROXY_PROTOCOL_V2_MAX)
        abort();
    return a;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    proxy_protocol_header whole;
    detect_answer final = check(data, size, &whole);
    /* Prefixes: NEED_MORE until the decision; after it, the same decision. */
    size_t limit = size < 600 ? size : 600;
    for (size_t k = 0; k < limit; k++) {
        proxy_protocol_header h;
        detect_answer a = check(data, k, &h);
        if (final == DETECT_NEED_MORE && a != DETECT_NEED_MORE)
            abort();
        if (final == DETECT_MATCH && k < whole.header_len && a != DETECT_NEED_MORE)
            abort();
        if (final == DETECT_MATCH && k >= whole.header_len &&
            (a != DETECT_MATCH || h.header_len != whole.header_len))
            abort();
        if (a == DETECT_NO && final != DETECT_NO)
            abort();
    }
    return 0;
}
