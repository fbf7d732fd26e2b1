/* A worker's sessions as JSON (SPEC section 8), built on the worker's own thread. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "json_text.h"
#include "session.h"
#include "session_json.h"
#include "worker.h"

static json_t *session_to_json(const session *s, uint64_t now)
{
    json_t *o = json_object();
    const char *proto = detect_protocol_name(s->protocol);
    char target[300];
    snprintf(target, sizeof target,
             s->target_port ? (strchr(s->target_host, ':') ? "[%s]:%u" : "%s:%u") : "%s",
             s->target_host, s->target_port);
    json_object_set_new(o, "id", json_integer((json_int_t)s->id));
    json_object_set_new(o, "client", json_text(s->client_text));
    json_object_set_new(o, "target", s->target_host[0] ? json_text(target) : json_null());
    json_object_set_new(o, "sni", s->sni[0] ? json_text(s->sni) : json_null());
    json_object_set_new(o, "protocol", proto ? json_string(proto) : json_null());
    json_object_set_new(o, "intercepted", json_boolean(s->intercepted));
    json_object_set_new(o, "tunneled", json_boolean(s->tunneled));
    json_object_set_new(o, "state", json_string(session_stage_name(s)));
    json_object_set_new(o, "bytes_from_client", json_integer((json_int_t)s->client.bytes_in));
    json_object_set_new(o, "bytes_from_server", json_integer((json_int_t)s->origin.bytes_in));
    json_object_set_new(o, "age_s", json_integer((json_int_t)((now - s->started_ms) / 1000)));
    json_t *m = json_object();
    for (unsigned i = 0; s->counters && i < s->counters->used; i++)
        json_object_set_new(m, s->counters->items[i].name,
                            json_integer((json_int_t)s->counters->items[i].count));
    json_object_set_new(o, "messages", m);
    json_object_set_new(o, "compressed", json_boolean(s->compressed));
    if (s->streams_total) {
        json_object_set_new(o, "streams_open", json_integer((json_int_t)s->streams_open));
        json_object_set_new(o, "streams", json_integer((json_int_t)s->streams_total));
    }
    json_object_set_new(o, "mode", json_string(s->transparent ? "transparent" : "explicit"));
    if (s->user[0])
        json_object_set_new(o, "user", json_text(s->user));
    return o;
}

char *session_json_worker(worker *w)
{
    json_t *arr = json_array();
    uint64_t now = uv_now(&w->loop);
    for (session *s = w->sessions; s; s = s->next)
        if (!s->ending)
            json_array_append_new(arr, session_to_json(s, now));
    char *text = json_dumps(arr, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(arr);
    return text;
}
