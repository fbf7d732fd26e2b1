/* Test inputs placed right before a PROT_NONE page, so any read past the end faults. */
#ifndef HANDOFF_TEST_GUARDED_BUFFER_H
#define HANDOFF_TEST_GUARDED_BUFFER_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint8_t *base;
    size_t usable; /* bytes before the guard page */
    size_t mapped;
} guarded_buffer;

/** Maps room for capacity bytes followed by an inaccessible page; aborts on failure. */
void guarded_init(guarded_buffer *g, size_t capacity);

/** Copies n bytes so that the last one sits just before the guard page; returns the copy. */
const uint8_t *guarded_place(guarded_buffer *g, const uint8_t *p, size_t n);

void guarded_free(guarded_buffer *g);

#endif
