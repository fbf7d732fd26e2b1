/* CONNECT: once allowed, open the origin, answer 200 and hand the tunnel to detection. */
#include <stdlib.h>
#include <string.h>

#include "leg.h"
#include "session_internal.h"
#include "worker.h"

static const char *status_reason(int status)
{
    switch (status) {
    case 403:
        return "Forbidden";
    case 504:
        return "Gateway Timeout";
    case 508:
        return "Loop Detected";
    default:
        return "Bad Gateway";
    }
}

static void on_origin_ready(session *s, int status, const char *reason)
{
    if (status) {
        front_answer(s, status, status_reason(status), "%s\n", reason);
        return;
    }
    static const char established[] = "HTTP/1.1 200 Connection established\r\n\r\n";
    s->status = 200;
    s->action = "allowed";
    leg_write(&s->client, established, sizeof established - 1);
    /* The head is no longer needed: give its memory back for the life of the tunnel. */
    free(s->head.buf);
    s->head.buf = NULL;
    s->head.cap = 0;
    s->log_bytes_client_mark = s->client.bytes_in - s->pending_len;
    char *first = s->pending_in;
    size_t len = s->pending_len;
    s->pending_in = NULL;
    s->pending_len = 0;
    detect_stage_start(s, first, len);
    free(first);
    /* A client that sent its bytes and FIN before the 200: pass the FIN on after them. */
    if (s->client_eof_held && !s->closing && s->client.on_data) {
        s->client_eof_held = false;
        leg_deliver(&s->client, NULL, UV_EOF);
    }
}

void connect_allowed(session *s)
{
    upstream_connect(s, on_origin_ready);
}
