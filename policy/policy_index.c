/* Indexes built once at compile time so that evaluation never scans a long list of hosts:
 * per layer, the rules keyed by the url.host / url.domain values they require, and per large
 * alternative list, its values as a hash set. Matching through them gives exactly the answers of
 * the plain scan (policy_layer_match_scan); the unit tests compare the two. */
#include "policy_internal.h"

#include <stdlib.h>
#include <string.h>

static char ascii_lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

/* FNV-1a over the lower-cased bytes: lookups are case-insensitive. */
static uint32_t hash_ci(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)ascii_lower(s[i]);
        h *= 16777619u;
    }
    return h;
}

/* key is stored lower-case. */
static bool key_equals(const struct str_slot *slot, const char *s, size_t n)
{
    if (slot->len != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (ascii_lower(s[i]) != slot->key[i])
            return false;
    return true;
}

/* The slot holding s[0..n), or the empty slot where it would go. */
static struct str_slot *find_slot(const struct str_index *ix, const char *s, size_t n)
{
    size_t i = hash_ci(s, n) & ix->mask;
    while (ix->slots[i].key && !key_equals(&ix->slots[i], s, n))
        i = (i + 1) & ix->mask;
    return &ix->slots[i];
}

/* Room for keys entries at most half full. */
static bool str_index_init(struct str_index *ix, size_t keys)
{
    size_t slots = 8;
    while (slots < 2 * keys)
        slots *= 2;
    ix->slots = calloc(slots, sizeof *ix->slots);
    ix->mask = slots - 1;
    ix->ids = NULL;
    return ix->slots != NULL;
}

static void str_index_free(struct str_index *ix)
{
    free(ix->slots);
    free(ix->ids);
    *ix = (struct str_index){0};
}

const uint32_t *policy_str_index_find(const struct str_index *ix, const char *s, size_t n,
                                      size_t *count)
{
    *count = 0;
    if (!ix->slots)
        return NULL;
    const struct str_slot *slot = find_slot(ix, s, n);
    if (!slot->key)
        return NULL;
    *count = slot->count;
    return ix->ids ? ix->ids + slot->first : NULL;
}

/* The condition that keys a rule in the layer index: a positive url.host or url.domain. */
static const struct condition *index_key(const struct rule *r)
{
    for (size_t c = 0; c < r->condition_count; c++) {
        const struct condition *cond = &r->conditions[c];
        if (!cond->negated && (cond->kind == COND_URL_HOST || cond->kind == COND_URL_DOMAIN))
            return cond;
    }
    return NULL;
}

/* Counts, per key, the distinct rules listing it; `first` holds the last rule seen + 1. */
static void count_key(struct str_index *ix, const char *key, uint32_t rule)
{
    struct str_slot *slot = find_slot(ix, key, strlen(key));
    if (!slot->key) {
        slot->key = key;
        slot->len = strlen(key);
    }
    if (slot->first != rule + 1) {
        slot->first = rule + 1;
        slot->count++;
    }
}

/* Turns the counts into offsets into ids and empties the runs for filling. */
static bool allocate_runs(struct str_index *ix, size_t total)
{
    ix->ids = malloc((total ? total : 1) * sizeof *ix->ids);
    if (!ix->ids)
        return false;
    uint32_t offset = 0;
    for (size_t i = 0; i <= ix->mask; i++) {
        ix->slots[i].first = offset;
        offset += ix->slots[i].count;
        ix->slots[i].count = 0;
    }
    return true;
}

static void add_id(struct str_index *ix, const char *key, uint32_t rule)
{
    struct str_slot *slot = find_slot(ix, key, strlen(key));
    uint32_t *run = ix->ids + slot->first;
    if (slot->count == 0 || run[slot->count - 1] != rule)
        run[slot->count++] = rule;
}

static bool build_layer(struct layer *layer)
{
    struct layer_index *ix = &layer->index;
    ix->first_identity_rule = SIZE_MAX;
    size_t host_keys = 0, domain_keys = 0;
    for (size_t r = 0; r < layer->rule_count; r++) {
        const struct rule *rule = &layer->rules[r];
        if (rule->names_identity && ix->first_identity_rule == SIZE_MAX)
            ix->first_identity_rule = r;
        const struct condition *key = index_key(rule);
        if (!key)
            ix->other_count++;
        else if (key->kind == COND_URL_HOST)
            host_keys += key->value_count;
        else
            domain_keys += key->value_count;
    }
    ix->others = malloc((ix->other_count ? ix->other_count : 1) * sizeof *ix->others);
    if (!ix->others || !str_index_init(&ix->hosts, host_keys) ||
        !str_index_init(&ix->domains, domain_keys))
        return false;
    for (uint32_t r = 0; r < layer->rule_count; r++) {
        const struct condition *key = index_key(&layer->rules[r]);
        if (!key)
            continue;
        struct str_index *map = key->kind == COND_URL_HOST ? &ix->hosts : &ix->domains;
        for (size_t v = 0; v < key->value_count; v++)
            count_key(map, key->values[v].text, r);
    }
    if (!allocate_runs(&ix->hosts, host_keys) || !allocate_runs(&ix->domains, domain_keys))
        return false;
    size_t others = 0;
    for (uint32_t r = 0; r < layer->rule_count; r++) {
        const struct condition *key = index_key(&layer->rules[r]);
        if (!key) {
            ix->others[others++] = r;
            continue;
        }
        struct str_index *map = key->kind == COND_URL_HOST ? &ix->hosts : &ix->domains;
        for (size_t v = 0; v < key->value_count; v++)
            add_id(map, key->values[v].text, r);
    }
    return true;
}

static bool build_set(struct condition *c)
{
    c->set = calloc(1, sizeof *c->set);
    if (!c->set || !str_index_init(c->set, c->value_count))
        return false;
    for (size_t v = 0; v < c->value_count; v++) {
        struct str_slot *slot = find_slot(c->set, c->values[v].text, strlen(c->values[v].text));
        slot->key = c->values[v].text;
        slot->len = strlen(slot->key);
        slot->count = 1;
    }
    return true;
}

bool policy_index_build(policy *p)
{
    for (size_t l = 0; l < p->layer_count; l++) {
        struct layer *layer = &p->layers[l];
        if (layer->rule_count > UINT32_MAX || !build_layer(layer))
            return false;
        for (size_t r = 0; r < layer->rule_count; r++) {
            struct rule *rule = &layer->rules[r];
            for (size_t c = 0; c < rule->condition_count; c++) {
                struct condition *cond = &rule->conditions[c];
                if ((cond->kind == COND_URL_HOST || cond->kind == COND_URL_DOMAIN) &&
                    cond->value_count > POLICY_SET_MIN_VALUES && !build_set(cond))
                    return false;
            }
        }
    }
    return true;
}

void policy_condition_set_free(struct condition *c)
{
    if (c->set)
        str_index_free(c->set);
    free(c->set);
    c->set = NULL;
}

void policy_index_free_layer(struct layer *layer)
{
    str_index_free(&layer->index.hosts);
    str_index_free(&layer->index.domains);
    free(layer->index.others);
    layer->index.others = NULL;
    layer->index.other_count = 0;
}
