/* JSON strings from bytes that may not be UTF-8: invalid bytes become the text \xHH, so a
 * field is never dropped and never invalid. */
#ifndef HANDOFF_JSON_TEXT_H
#define HANDOFF_JSON_TEXT_H

#include <jansson.h>

/** A new JSON string for v (NUL-terminated bytes), or JSON null when v is NULL. */
json_t *json_text(const char *v);

#endif
