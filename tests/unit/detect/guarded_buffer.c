#include "guarded_buffer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

void guarded_init(guarded_buffer *g, size_t capacity)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    g->usable = (capacity + page - 1) / page * page;
    g->mapped = g->usable + page;
    g->base = mmap(NULL, g->mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (g->base == MAP_FAILED || mprotect(g->base + g->usable, page, PROT_NONE) != 0) {
        perror("guarded_init");
        abort();
    }
}

const uint8_t *guarded_place(guarded_buffer *g, const uint8_t *p, size_t n)
{
    if (n > g->usable)
        abort();
    uint8_t *at = g->base + g->usable - n;
    if (n > 0)
        memcpy(at, p, n);
    return at;
}

void guarded_free(guarded_buffer *g)
{
    munmap(g->base, g->mapped);
    g->base = NULL;
}
