/* Helpers shared by the matchers; not part of the public API. */
#ifndef HANDOFF_DETECT_INTERNAL_H
#define HANDOFF_DETECT_INTERNAL_H

#include "detect.h"

#include <stdbool.h>

/** A request or status line longer than this is not SIP or HTTP. */
#define DETECT_MAX_LINE 8192

/** Combines two alternative readings of the same bytes: either may match. */
detect_answer detect_either(detect_answer a, detect_answer b);

/**
 * Compares p[0..n) with the expected bytes: NO on the first difference, NEED_MORE when p is a
 * proper prefix of them, MATCH when all of them are present. ASCII case is ignored if nocase.
 */
detect_answer detect_expect(const uint8_t *p, size_t n, const uint8_t *want, size_t want_len,
                            bool nocase);

/** Which characters make up a method token. */
typedef bool (*detect_token_class)(uint8_t c);

bool detect_is_sip_token(uint8_t c);
bool detect_is_http_token(uint8_t c);

/** The shape of a request line: `token SP target SP version CRLF`. */
typedef struct {
    detect_token_class is_token;
    const char *const *target_prefixes; /* the target must start with one of these, or NULL */
    size_t target_prefix_count;
    const char *const *versions; /* the version must be one of these */
    size_t version_count;
} detect_request_line_shape;

/** Matches one request line at the start of p; the line must end within DETECT_MAX_LINE. */
detect_answer detect_request_line(const uint8_t *p, size_t n,
                                  const detect_request_line_shape *shape);

static inline uint16_t detect_u16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

#endif
