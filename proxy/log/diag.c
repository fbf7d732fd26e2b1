#include "diag.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

static config_log_level threshold = LOG_INFO;

void diag_set_level(config_log_level level)
{
    threshold = level;
}

void diag(config_log_level level, const char *fmt, ...)
{
    static const char *names[] = {"error", "warn", "info", "debug"};
    if (level > threshold)
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    time_t now = time(NULL);
    struct tm tm;
    char when[32];
    gmtime_r(&now, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    /* One fprintf per line keeps lines from different workers whole. */
    fprintf(stderr, "%s handoff %s: %s\n", when, names[level], line);
}
