/* systemd's service notifications (sd_notify): readiness, reloads, stopping and a status
 * line. Every call does nothing when the process was not started with NOTIFY_SOCKET. */
#ifndef HANDOFF_NOTIFY_H
#define HANDOFF_NOTIFY_H

#include <stdbool.h>

/** Every listener is open: READY=1 (also after a reload). */
void notify_ready(void);

/** A reload begins: RELOADING=1 with MONOTONIC_USEC, as Type=notify-reload expects. */
void notify_reloading(void);

/** A stop begins: STOPPING=1. */
void notify_stopping(void);

/** STATUS= line shown by `systemctl status`. */
void notify_status(int active_sessions, bool stopping);

#endif
