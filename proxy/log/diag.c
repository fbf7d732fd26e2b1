#include "diag.h"

#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static config_log_level threshold = LOG_INFO;
static char stderr_path[PATH_MAX]; /* "" when stderr is not a regular file */

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

void diag_remember_file(void)
{
    struct stat st;
    stderr_path[0] = '\0';
    if (fstat(STDERR_FILENO, &st) != 0 || !S_ISREG(st.st_mode))
        return;
    ssize_t n = readlink("/proc/self/fd/2", stderr_path, sizeof stderr_path - 1);
    stderr_path[n > 0 && stderr_path[0] == '/' ? n : 0] = '\0';
}

void diag_reopen(void)
{
    if (!stderr_path[0])
        return;
    int fd = open(stderr_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0) {
        diag(LOG_ERROR, "cannot reopen %s: diagnostics go on to the old file", stderr_path);
        return;
    }
    fflush(stderr);
    dup2(fd, STDERR_FILENO); /* one atomic switch: a line is written whole to one or the other */
    close(fd);
}
