/* libsystemd's sd_notify speaks the protocol (abstract sockets, credentials, the message
 * size); it is a no-op without NOTIFY_SOCKET, so the proxy also runs outside systemd. */
#include "notify.h"

#include <systemd/sd-daemon.h>
#include <time.h>

void notify_ready(void)
{
    sd_notify(0, "READY=1");
}

void notify_reloading(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    unsigned long long usec =
        (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000ULL;
    sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu", usec);
}

void notify_stopping(void)
{
    sd_notify(0, "STOPPING=1");
}

void notify_status(int active_sessions, bool stopping)
{
    sd_notifyf(0, "STATUS=%s%d active session%s", stopping ? "draining: " : "", active_sessions,
               active_sessions == 1 ? "" : "s");
}
