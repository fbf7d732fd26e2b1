/* libFuzzer target: classification of arbitrary bytes, whole and at every short prefix. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "detect.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const uint8_t *data, size_t n)
{
    detect_result r;
    detect_answer a = detect_classify(data, n, &r);
    /* A decision names a protocol; waiting names none; a full buffer always decides. */
    if ((a == DETECT_MATCH) != (r.protocol != PROTO_UNKNOWN))
        abort();
    if (n >= DETECT_MAX_BYTES && a != DETECT_MATCH)
        abort();
    if (a == DETECT_MATCH && r.protocol == PROTO_SSL &&
        (r.tls.hello_bytes == 0 || r.tls.hello_bytes > n))
        abort();
    a = detect_classify_inner(data, n, &r);
    if ((a == DETECT_MATCH) != (r.protocol != PROTO_UNKNOWN))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check(data, size);
    size_t prefixes = size < 64 ? size : 64;
    for (size_t k = 0; k < prefixes; k++)
        check(data, k);
    return 0;
}
