/* HTTP/1.x request line (RFC 9112 section 3) and the HTTP/2 connection preface (RFC 9113 3.4). */
#include "detect_internal.h"

static const char *const http_versions[] = {"HTTP/1.1", "HTTP/1.0"};

static const detect_request_line_shape http_request_line = {
    .is_token = detect_is_http_token,
    .target_prefixes = NULL,
    .target_prefix_count = 0,
    .versions = http_versions,
    .version_count = sizeof http_versions / sizeof http_versions[0],
};

detect_answer detect_http(const uint8_t *p, size_t n)
{
    return detect_request_line(p, n, &http_request_line);
}

detect_answer detect_h2_preface(const uint8_t *p, size_t n)
{
    static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    return detect_expect(p, n, (const uint8_t *)preface, sizeof preface - 1, false);
}
