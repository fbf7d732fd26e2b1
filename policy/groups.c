/* Compiles a groups file into a sorted table of users, each with the groups it is in. */
#include "groups.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ERRORS     100
#define MAX_FILE_BYTES (16u * 1024 * 1024)

struct user_entry {
    const char *name;
    size_t first, count; /* lists[first .. first + count) */
};

struct policy_groups {
    atomic_int refs;
    char **names; /* every distinct group name, then every user name as read */
    size_t name_count;
    struct user_entry *users; /* sorted by name */
    size_t user_count;
    const char **lists;
};

/* One "user is in group" fact; seq keeps the file order of a user's groups after sorting. */
struct membership {
    const char *user;
    const char *group;
    size_t seq;
};

struct reader {
    const char *file;
    int line;
    policy_errors *errs;
    size_t error_count;
    bool out_of_memory;
    struct policy_groups *g;
    size_t names_cap;
    const char **groups; /* distinct group names, pointing into g->names */
    size_t group_count, group_cap;
    struct membership *members;
    size_t member_count, member_cap;
};

static void push_error(struct reader *rd, int col, const char *message)
{
    rd->error_count++;
    if (!rd->errs || rd->error_count > MAX_ERRORS)
        return;
    policy_error *items = realloc(rd->errs->items, (rd->errs->count + 1) * sizeof *items);
    if (!items) {
        rd->out_of_memory = true;
        return;
    }
    rd->errs->items = items;
    policy_error *e = &items[rd->errs->count];
    e->file = strdup(rd->file);
    e->message = strdup(rd->error_count == MAX_ERRORS ? "too many errors; stopping here" : message);
    e->line = rd->line;
    e->col = col;
    if (!e->file || !e->message) {
        free(e->file);
        free(e->message);
        rd->out_of_memory = true;
        return;
    }
    rd->errs->count++;
}

/* col is 0-based here and shown 1-based. */
__attribute__((format(printf, 3, 4))) static void report(struct reader *rd, size_t col,
                                                         const char *fmt, ...)
{
    char message[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    push_error(rd, (int)col + 1, message);
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t';
}

static const char *keep_name(struct reader *rd, const char *s, size_t n)
{
    if (rd->g->name_count == rd->names_cap) {
        size_t cap = rd->names_cap ? rd->names_cap * 2 : 64;
        char **names = realloc(rd->g->names, cap * sizeof *names);
        if (!names)
            return NULL;
        rd->g->names = names;
        rd->names_cap = cap;
    }
    char *d = strndup(s, n);
    if (d)
        rd->g->names[rd->g->name_count++] = d;
    return d;
}

static void add_member(struct reader *rd, const char *group, const char *user, size_t n)
{
    if (rd->member_count == rd->member_cap) {
        size_t cap = rd->member_cap ? rd->member_cap * 2 : 64;
        struct membership *m = realloc(rd->members, cap * sizeof *m);
        if (!m) {
            rd->out_of_memory = true;
            return;
        }
        rd->members = m;
        rd->member_cap = cap;
    }
    const char *name = keep_name(rd, user, n);
    if (!name) {
        rd->out_of_memory = true;
        return;
    }
    rd->members[rd->member_count] = (struct membership){name, group, rd->member_count};
    rd->member_count++;
}

/* Group names are shared by pointer so a group spread over several lines is one name. Files
 * have few groups and many users, so a linear search over the groups is enough. */
static const char *intern_group(struct reader *rd, const char *s, size_t n)
{
    for (size_t i = 0; i < rd->group_count; i++)
        if (strlen(rd->groups[i]) == n && memcmp(rd->groups[i], s, n) == 0)
            return rd->groups[i];
    if (rd->group_count == rd->group_cap) {
        size_t cap = rd->group_cap ? rd->group_cap * 2 : 16;
        const char **groups = realloc(rd->groups, cap * sizeof *groups);
        if (!groups)
            return NULL;
        rd->groups = groups;
        rd->group_cap = cap;
    }
    const char *name = keep_name(rd, s, n);
    if (name)
        rd->groups[rd->group_count++] = name;
    return name;
}

static void read_line(struct reader *rd, const char *s, size_t n)
{
    if (n > 0 && s[n - 1] == '\r')
        n--;
    size_t end = 0;
    for (; end < n && s[end] != '#' && s[end] != ';'; end++) {
        unsigned char c = (unsigned char)s[end];
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            report(rd, end, "unexpected control character 0x%02x", c);
            return;
        }
    }
    size_t a = 0;
    while (a < end && is_space(s[a]))
        a++;
    if (a == end)
        return;
    const char *colon = memchr(s + a, ':', end - a);
    if (!colon) {
        report(rd, a, "expected 'GROUP: user …', found no ':'");
        return;
    }
    size_t b = (size_t)(colon - s);
    size_t name_end = b;
    while (name_end > a && is_space(s[name_end - 1]))
        name_end--;
    if (name_end == a) {
        report(rd, b, "expected a group name before ':'");
        return;
    }
    for (size_t i = a; i < name_end; i++) {
        if (is_space(s[i])) {
            report(rd, i, "a group name has no spaces: '%.*s'", (int)(name_end - a), s + a);
            return;
        }
    }
    const char *group = intern_group(rd, s + a, name_end - a);
    if (!group) {
        rd->out_of_memory = true;
        return;
    }
    size_t i = b + 1;
    while (i < end) {
        while (i < end && is_space(s[i]))
            i++;
        size_t start = i;
        while (i < end && !is_space(s[i]))
            i++;
        if (i == start)
            break;
        if (memchr(s + start, ':', i - start)) {
            report(rd, start, "unexpected ':' in the user name '%.*s': one group per line",
                   (int)(i - start), s + start);
            return;
        }
        add_member(rd, group, s + start, i - start);
    }
}

static int by_user_then_file_order(const void *x, const void *y)
{
    const struct membership *a = x, *b = y;
    int c = strcmp(a->user, b->user);
    if (c)
        return c;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

/* Sorts the memberships into one entry per user, dropping repeated memberships. */
static bool build_table(struct reader *rd)
{
    struct policy_groups *g = rd->g;
    qsort(rd->members, rd->member_count, sizeof *rd->members, by_user_then_file_order);
    g->lists = malloc((rd->member_count ? rd->member_count : 1) * sizeof *g->lists);
    g->users = malloc((rd->member_count ? rd->member_count : 1) * sizeof *g->users);
    if (!g->lists || !g->users)
        return false;
    size_t n = 0;
    for (size_t i = 0; i < rd->member_count; i++) {
        const struct membership *m = &rd->members[i];
        struct user_entry *u = g->user_count ? &g->users[g->user_count - 1] : NULL;
        if (!u || strcmp(u->name, m->user) != 0) {
            u = &g->users[g->user_count++];
            *u = (struct user_entry){m->user, n, 0};
        }
        bool seen = false;
        for (size_t k = u->first; k < u->first + u->count && !seen; k++)
            seen = g->lists[k] == m->group;
        if (!seen) {
            g->lists[n++] = m->group;
            u->count++;
        }
    }
    return true;
}

policy_groups *policy_groups_compile_text(const char *file, const char *text, size_t len,
                                          policy_errors *errs)
{
    if (errs)
        *errs = (policy_errors){0};
    struct reader rd = {.file = file ? file : "(groups)", .errs = errs};
    rd.g = calloc(1, sizeof *rd.g);
    if (!rd.g) {
        report(&rd, 0, "out of memory");
        return NULL;
    }
    atomic_init(&rd.g->refs, 1);
    size_t start = 0;
    while (start < len && rd.error_count < MAX_ERRORS && !rd.out_of_memory) {
        const char *nl = memchr(text + start, '\n', len - start);
        size_t end = nl ? (size_t)(nl - text) : len;
        rd.line++;
        read_line(&rd, text + start, end - start);
        start = end + 1;
    }
    if (!rd.error_count && !rd.out_of_memory && !build_table(&rd))
        rd.out_of_memory = true;
    free(rd.members);
    free(rd.groups);
    if (rd.out_of_memory) {
        rd.line = 0;
        report(&rd, 0, "out of memory");
    }
    if (rd.error_count) {
        policy_groups_release(rd.g);
        return NULL;
    }
    return rd.g;
}

policy_groups *policy_groups_compile_file(const char *path, policy_errors *errs)
{
    if (errs)
        *errs = (policy_errors){0};
    struct reader rd = {.file = path, .errs = errs};
    FILE *f = fopen(path, "rb");
    if (!f) {
        char message[256];
        snprintf(message, sizeof message, "cannot open: %s", strerror(errno));
        push_error(&rd, 0, message);
        return NULL;
    }
    char *text = malloc(MAX_FILE_BYTES + 1);
    size_t len = text ? fread(text, 1, MAX_FILE_BYTES + 1, f) : 0;
    bool failed = !text || ferror(f);
    fclose(f);
    if (failed || len > MAX_FILE_BYTES) {
        push_error(&rd, 0, failed ? "cannot read the file" : "file larger than 16 MiB");
        free(text);
        return NULL;
    }
    policy_groups *g = policy_groups_compile_text(path, text, len, errs);
    free(text);
    return g;
}

policy_groups *policy_groups_retain(policy_groups *g)
{
    if (g)
        atomic_fetch_add_explicit(&g->refs, 1, memory_order_relaxed);
    return g;
}

void policy_groups_release(policy_groups *g)
{
    if (!g || atomic_fetch_sub_explicit(&g->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t i = 0; i < g->name_count; i++)
        free(g->names[i]);
    free(g->names);
    free(g->users);
    free(g->lists);
    free(g);
}

static int user_key(const void *key, const void *entry)
{
    return strcmp(key, ((const struct user_entry *)entry)->name);
}

const char *const *policy_groups_of(const policy_groups *g, const char *user, size_t *count)
{
    *count = 0;
    if (!g || !user || !user[0])
        return NULL;
    const struct user_entry *u = bsearch(user, g->users, g->user_count, sizeof *g->users, user_key);
    if (!u)
        return NULL;
    *count = u->count;
    return g->lists + u->first;
}
