/* Loads the committed detection fixtures: tests/fixtures/detect/<protocol>/<file>. */
#ifndef HANDOFF_TEST_FIXTURES_H
#define HANDOFF_TEST_FIXTURES_H

#include <stddef.h>
#include <stdint.h>

#include "detect.h"

#define FIXTURE_MAX_BYTES 8192
#define FIXTURE_MAX_COUNT 128

typedef struct {
    char dir[256];  /* the protocol folder, a detect_protocol_name */
    char name[256]; /* file name inside it */
    detect_protocol expected;
    uint8_t bytes[FIXTURE_MAX_BYTES];
    size_t len;
} fixture;

/** Reads every fixture below FIXTURES_DIR; returns how many (aborts on an unreadable file). */
size_t fixtures_load(fixture *out, size_t max);

/** Finds a loaded fixture by "dir/name"; NULL when absent. */
const fixture *fixtures_find(const fixture *all, size_t count, const char *path);

#endif
