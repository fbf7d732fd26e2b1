#include "fixtures.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void load_file(fixture *f, const char *path)
{
    FILE *fp = fopen(path, "rb");
    if (fp == NULL) {
        perror(path);
        abort();
    }
    f->len = fread(f->bytes, 1, sizeof f->bytes, fp);
    if (!feof(fp)) {
        fprintf(stderr, "%s: larger than %d bytes\n", path, FIXTURE_MAX_BYTES);
        abort();
    }
    fclose(fp);
}

size_t fixtures_load(fixture *out, size_t max)
{
    size_t count = 0;
    DIR *top = opendir(FIXTURES_DIR);
    if (top == NULL) {
        perror(FIXTURES_DIR);
        abort();
    }
    for (struct dirent *d; (d = readdir(top)) != NULL;) {
        detect_protocol proto = detect_protocol_from_name(d->d_name);
        if (proto == PROTO_UNKNOWN)
            continue; /* the generator script and dot files */
        char dir_path[1024];
        snprintf(dir_path, sizeof dir_path, "%s/%s", FIXTURES_DIR, d->d_name);
        DIR *sub = opendir(dir_path);
        if (sub == NULL) {
            perror(dir_path);
            abort();
        }
        for (struct dirent *e; (e = readdir(sub)) != NULL;) {
            if (e->d_name[0] == '.')
                continue;
            if (count == max)
                abort();
            fixture *f = &out[count++];
            snprintf(f->dir, sizeof f->dir, "%s", d->d_name);
            snprintf(f->name, sizeof f->name, "%s", e->d_name);
            f->expected = proto;
            char path[2048];
            snprintf(path, sizeof path, "%s/%s", dir_path, e->d_name);
            load_file(f, path);
        }
        closedir(sub);
    }
    closedir(top);
    return count;
}

const fixture *fixtures_find(const fixture *all, size_t count, const char *path)
{
    for (size_t i = 0; i < count; i++) {
        char full[520];
        snprintf(full, sizeof full, "%s/%s", all[i].dir, all[i].name);
        if (strcmp(full, path) == 0)
            return &all[i];
    }
    return NULL;
}
