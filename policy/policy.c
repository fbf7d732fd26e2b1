/* Lifetime of compiled policies and of error lists; loading a policy from a file. */
#include "policy_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Larger than any hand-written policy; a bound so a wrong path cannot exhaust memory. */
#define MAX_FILE_BYTES (16u * 1024 * 1024)

static void set_single_error(policy_errors *errs, const char *path, const char *message)
{
    if (!errs)
        return;
    *errs = (policy_errors){0};
    policy_error *e = calloc(1, sizeof *e);
    if (!e)
        return;
    e->file = strdup(path);
    e->message = strdup(message);
    e->line = 0;
    e->col = 0;
    if (!e->file || !e->message) {
        free(e->file);
        free(e->message);
        free(e);
        return;
    }
    errs->items = e;
    errs->count = 1;
}

policy *policy_compile_file(const char *path, policy_errors *errs)
{
    char message[256];
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(message, sizeof message, "cannot open: %s", strerror(errno));
        set_single_error(errs, path, message);
        return NULL;
    }
    char *text = malloc(MAX_FILE_BYTES + 1);
    size_t len = text ? fread(text, 1, MAX_FILE_BYTES + 1, f) : 0;
    bool failed = !text || ferror(f);
    fclose(f);
    if (failed || len > MAX_FILE_BYTES) {
        snprintf(message, sizeof message, "%s",
                 failed ? "cannot read the file" : "file larger than 16 MiB");
        set_single_error(errs, path, message);
        free(text);
        return NULL;
    }
    policy *p = policy_compile_text(path, text, len, errs);
    free(text);
    return p;
}

void policy_errors_free(policy_errors *errs)
{
    if (!errs)
        return;
    for (size_t i = 0; i < errs->count; i++) {
        free(errs->items[i].file);
        free(errs->items[i].message);
    }
    free(errs->items);
    errs->items = NULL;
    errs->count = 0;
}

void policy_condition_free(struct condition *c)
{
    policy_condition_set_free(c);
    if (policy_cond_has_text(c->kind))
        for (size_t v = 0; v < c->value_count; v++)
            free(c->values[v].text);
    free(c->values);
    c->values = NULL;
    c->value_count = 0;
}

void policy_free(policy *p)
{
    if (!p)
        return;
    for (size_t l = 0; l < p->layer_count; l++) {
        struct layer *layer = &p->layers[l];
        for (size_t r = 0; r < layer->rule_count; r++) {
            struct rule *rule = &layer->rules[r];
            for (size_t c = 0; c < rule->condition_count; c++)
                policy_condition_free(&rule->conditions[c]);
            free(rule->conditions);
        }
        free(layer->rules);
        policy_index_free_layer(layer);
    }
    free(p->layers);
    free(p->file);
    free(p);
}

policy *policy_retain(policy *p)
{
    if (p)
        atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
    return p;
}

void policy_release(policy *p)
{
    /* acq_rel: the last owner must see every other owner's reads finished before freeing. */
    if (p && atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) == 1)
        policy_free(p);
}
