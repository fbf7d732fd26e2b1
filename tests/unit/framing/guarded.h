/* Test inputs that end exactly at an inaccessible page, so reading one byte too far crashes. */
#ifndef HANDOFF_TEST_GUARDED_H
#define HANDOFF_TEST_GUARDED_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    void *map;
    size_t map_len;
    const uint8_t *bytes; /* a copy of the input, ending at the guard page */
} guarded;

void guarded_copy(guarded *g, const void *p, size_t n);
void guarded_release(guarded *g);

#endif
