/* Named message counters shared by the stream observers. */
#include "framing.h"

#include <string.h>

static int find_counter(const framing_counters *c, const char *name)
{
    for (unsigned i = 0; i < c->used; i++) {
        if (strcmp(c->items[i].name, name) == 0) {
            return (int)i;
        }
    }
    return -1;
}

static void add_counter(framing_counters *c, const char *name)
{
    memset(c->items[c->used].name, 0, sizeof c->items[c->used].name);
    memcpy(c->items[c->used].name, name, strlen(name));
    c->items[c->used].count = 1;
    c->used++;
}

void framing_count(framing_counters *c, const char *name)
{
    if (c == NULL) {
        return;
    }
    /* Compare on the stored form so a long name keeps hitting its truncated counter. */
    char key[FRAMING_COUNTER_NAME];
    size_t len = strnlen(name, sizeof key - 1);
    memcpy(key, name, len);
    key[len] = '\0';

    int i = find_counter(c, key);
    if (i >= 0) {
        c->items[i].count++;
        return;
    }
    /* The last slot is kept for "other" so overflow is still visible in the totals. */
    if (c->used < FRAMING_MAX_COUNTERS - 1) {
        add_counter(c, key);
        return;
    }
    i = find_counter(c, "other");
    if (i >= 0) {
        c->items[i].count++;
    } else if (c->used < FRAMING_MAX_COUNTERS) {
        add_counter(c, "other");
    }
}

uint64_t framing_counter_get(const framing_counters *c, const char *name)
{
    int i = find_counter(c, name);
    return i >= 0 ? c->items[i].count : 0;
}
