/* SIP framing on a byte stream (RFC 3261 18.3): start line and headers up to CRLFCRLF, then a
 * body of Content-Length bytes. RFC 5626 CRLF keep-alives may appear between messages.
 *
 * MS-SIPCOMP: when one direction sends NEGOTIATE with "Compression: LZ77-8K" and the other
 * answers 200 (same CSeq number, CSeq method NEGOTIATE), both directions become LZ77 streams.
 * The answering side compresses from the byte after its 200; the requesting side may only start
 * once it has received that 200, so it switches at its next message boundary after the 200 was
 * relayed (normally at once, since it is idle waiting for the answer). A 200 that names another
 * Compression value declines; a 200 without the header is taken as acceptance, because guessing
 * wrong that way costs only the counters, while the other way would fail a working call. */
#include "framing.h"

#include <stdio.h>
#include <string.h>

enum sip_state {
    SIP_IDLE,    /* between messages */
    SIP_IDLE_CR, /* a keep-alive CR, waiting for its LF */
    SIP_HEAD,    /* collecting the start line and headers */
    SIP_BODY,    /* skipping body_left bytes */
    SIP_OPAQUE,  /* compressed: no framing any more */
    SIP_FAILED,
};

/* What the framer needs from one message head. */
struct sip_head {
    bool is_request;
    const char *method;
    size_t method_len;
    unsigned status;
    bool has_content_length;
    uint64_t content_length;
    bool has_cseq;
    uint64_t cseq;
    bool cseq_is_negotiate;
    bool has_compression;
    bool compression_lz77;
};

static framing_status sip_fail(sip_stream *s, const char *reason)
{
    snprintf(s->error, sizeof s->error, "SIP: %s", reason);
    s->state = SIP_FAILED;
    return FRAMING_ERROR;
}

static bool is_token_char(char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
        return true;
    }
    return c != '\0' && strchr("-.!%*_+`'~", c) != NULL;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool equals_nocase(const char *p, size_t n, const char *lit)
{
    return n == strlen(lit) && strncasecmp(p, lit, n) == 0;
}

static void trim(const char **p, size_t *n)
{
    while (*n > 0 && (**p == ' ' || **p == '\t')) {
        (*p)++;
        (*n)--;
    }
    while (*n > 0 && ((*p)[*n - 1] == ' ' || (*p)[*n - 1] == '\t')) {
        (*n)--;
    }
}

/* 1*DIGIT, at most 18 digits so the value fits without overflow checks. */
static bool parse_number(const char *p, size_t n, uint64_t *out)
{
    if (n == 0 || n > 18) {
        return false;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit(p[i])) {
            return false;
        }
        v = v * 10 + (uint64_t)(p[i] - '0');
    }
    *out = v;
    return true;
}

/* Request-Line = Method SP Request-URI SP SIP-Version; the URI must at least be scheme ":" ... */
static bool parse_request_line(const char *p, size_t n, struct sip_head *h)
{
    size_t i = 0;
    while (i < n && is_token_char(p[i])) {
        i++;
    }
    if (i == 0 || i >= n || p[i] != ' ') {
        return false;
    }
    h->method = p;
    h->method_len = i;
    size_t uri = ++i;
    if (i >= n || !is_alpha(p[i])) {
        return false;
    }
    while (i < n &&
           (is_alpha(p[i]) || is_digit(p[i]) || p[i] == '+' || p[i] == '-' || p[i] == '.')) {
        i++;
    }
    if (i >= n || p[i] != ':') {
        return false;
    }
    while (i < n && p[i] != ' ') {
        i++;
    }
    if (i == uri || i >= n) {
        return false;
    }
    i++;
    h->is_request = true;
    return equals_nocase(p + i, n - i, "SIP/2.0");
}

/* Status-Line = SIP-Version SP Status-Code SP Reason-Phrase (an empty reason is tolerated). */
static bool parse_status_line(const char *p, size_t n, struct sip_head *h)
{
    if (n < 11 || strncasecmp(p, "SIP/2.0 ", 8) != 0) {
        return false;
    }
    if (p[8] < '1' || p[8] > '6' || !is_digit(p[9]) || !is_digit(p[10])) {
        return false;
    }
    if (n > 11 && p[11] != ' ') {
        return false;
    }
    h->is_request = false;
    h->status = (unsigned)((p[8] - '0') * 100 + (p[9] - '0') * 10 + (p[10] - '0'));
    return true;
}

static bool parse_start_line(const char *p, size_t n, struct sip_head *h)
{
    return parse_status_line(p, n, h) || parse_request_line(p, n, h);
}

/* Returns NULL or the reason the header line is unacceptable. */
static const char *parse_header(const char *line, size_t n, struct sip_head *h, bool *is_length)
{
    *is_length = false;
    const char *colon = memchr(line, ':', n);
    if (colon == NULL) {
        return "header line without a colon";
    }
    const char *name = line;
    size_t name_len = (size_t)(colon - line);
    trim(&name, &name_len); /* HCOLON allows whitespace before the colon */
    if (name_len == 0) {
        return "empty header name";
    }
    for (size_t i = 0; i < name_len; i++) {
        if (!is_token_char(name[i])) {
            return "malformed header name";
        }
    }
    const char *value = colon + 1;
    size_t value_len = (size_t)(line + n - value);
    trim(&value, &value_len);

    if (equals_nocase(name, name_len, "Content-Length") || equals_nocase(name, name_len, "l")) {
        uint64_t v;
        *is_length = true;
        if (!parse_number(value, value_len, &v)) {
            return "bad Content-Length";
        }
        if (h->has_content_length && v != h->content_length) {
            return "conflicting Content-Length headers";
        }
        h->has_content_length = true;
        h->content_length = v;
    } else if (equals_nocase(name, name_len, "CSeq")) {
        size_t i = 0;
        while (i < value_len && is_digit(value[i])) {
            i++;
        }
        const char *method = value + i;
        size_t method_len = value_len - i;
        trim(&method, &method_len);
        h->has_cseq = parse_number(value, i, &h->cseq);
        h->cseq_is_negotiate = equals_nocase(method, method_len, "NEGOTIATE");
    } else if (equals_nocase(name, name_len, "Compression")) {
        h->has_compression = true;
        h->compression_lz77 = equals_nocase(value, value_len, "LZ77-8K");
    }
    return NULL;
}

/* Parses the complete head (ending in CRLFCRLF); NULL on success, else the reason. */
static const char *parse_head(const char *p, size_t n, struct sip_head *h)
{
    memset(h, 0, sizeof *h);
    const char *end = p + n - 2; /* the CR of the final empty line */
    const char *eol = memchr(p, '\r', n);
    if (!parse_start_line(p, (size_t)(eol - p), h)) {
        return "start line is neither a SIP request line nor a SIP/2.0 status line";
    }
    bool last_was_length = false;
    for (const char *line = eol + 2; line < end; line = eol + 2) {
        eol = memchr(line, '\r', (size_t)(end - line) + 1);
        size_t len = (size_t)(eol - line);
        if (line[0] == ' ' || line[0] == '\t') {
            /* Obsolete folding: harmless except where it could hide part of the length. */
            if (last_was_length) {
                return "folded Content-Length";
            }
            continue;
        }
        const char *reason = parse_header(line, len, h, &last_was_length);
        if (reason != NULL) {
            return reason;
        }
    }
    return NULL;
}

static void count_head(const struct sip_head *h, framing_counters *counters)
{
    char name[FRAMING_COUNTER_NAME];
    if (h->is_request) {
        size_t len = h->method_len < sizeof name - 1 ? h->method_len : sizeof name - 1;
        memcpy(name, h->method, len);
        name[len] = '\0';
    } else {
        snprintf(name, sizeof name, "%uxx", h->status / 100);
    }
    framing_count(counters, name);
}

/* Records the NEGOTIATE offer on the requester, or its answer on the responder. */
static void track_compression(sip_stream *s, sip_stream *peer, const struct sip_head *h)
{
    if (h->is_request) {
        if (equals_nocase(h->method, h->method_len, "NEGOTIATE") && h->has_compression &&
            h->compression_lz77) {
            s->negotiate_lz77_pending = true;
            s->negotiate_has_cseq = h->has_cseq;
            s->negotiate_cseq = h->cseq;
        }
        return;
    }
    if (peer == NULL || !peer->negotiate_lz77_pending || !h->cseq_is_negotiate) {
        return;
    }
    if (peer->negotiate_has_cseq && (!h->has_cseq || h->cseq != peer->negotiate_cseq)) {
        return;
    }
    if (h->status < 200) {
        return;
    }
    peer->negotiate_lz77_pending = false;
    if (h->status == 200 && (!h->has_compression || h->compression_lz77)) {
        s->compress_after_message = true;
    }
}

static void message_done(sip_stream *s, sip_stream *peer)
{
    s->state = SIP_IDLE;
    s->crlf_odd = false;
    if (s->compress_after_message) {
        s->compressed = true;
        s->state = SIP_OPAQUE;
        if (peer != NULL && !peer->compressed) {
            peer->compress_at_boundary = true;
            if (peer->state == SIP_IDLE) {
                /* Already between messages: its next byte is compressed. */
                peer->compressed = true;
                peer->state = SIP_OPAQUE;
            }
        }
    }
}

static framing_status head_done(sip_stream *s, sip_stream *peer, framing_counters *counters)
{
    struct sip_head h;
    const char *reason = parse_head(s->head, s->head_len, &h);
    if (reason != NULL) {
        return sip_fail(s, reason);
    }
    count_head(&h, counters);
    track_compression(s, peer, &h);
    s->body_left = h.content_length; /* RFC 3261 18.3: absent on a stream means 0 */
    if (s->body_left > 0) {
        s->state = SIP_BODY;
    } else {
        message_done(s, peer);
    }
    return FRAMING_OK;
}

/* One head byte: enforces CRLF line ends and text, checks the start line as soon as it ends. */
static framing_status head_byte(sip_stream *s, sip_stream *peer, uint8_t c,
                                framing_counters *counters)
{
    char prev = s->head_len > 0 ? s->head[s->head_len - 1] : '\0';
    if (prev == '\r' && c != '\n') {
        return sip_fail(s, "CR not followed by LF in header");
    }
    if (c == '\n' && prev != '\r') {
        return sip_fail(s, "bare LF in header");
    }
    if ((c < 0x20 && c != '\r' && c != '\n' && c != '\t') || c == 0x7f) {
        return sip_fail(s, "control byte in header");
    }
    if (s->head_len == sizeof s->head) {
        return sip_fail(s, "header block longer than 8192 bytes");
    }
    s->head[s->head_len++] = (char)c;
    if (c != '\n') {
        return FRAMING_OK;
    }
    if (!s->start_line_checked) {
        struct sip_head h;
        if (!parse_start_line(s->head, s->head_len - 2, &h)) {
            return sip_fail(s,
                            "start line is neither a SIP request line nor a SIP/2.0 status line");
        }
        s->start_line_checked = true;
        return FRAMING_OK;
    }
    if (s->head_len >= 4 && s->head[s->head_len - 3] == '\n') {
        return head_done(s, peer, counters);
    }
    return FRAMING_OK;
}

void sip_stream_init(sip_stream *s)
{
    memset(s, 0, sizeof *s);
    s->state = SIP_IDLE;
}

framing_status sip_stream_feed(sip_stream *s, sip_stream *peer, const uint8_t *p, size_t n,
                               framing_counters *counters)
{
    size_t i = 0;
    while (i < n) {
        switch (s->state) {
        case SIP_FAILED:
            return FRAMING_ERROR;
        case SIP_OPAQUE:
            return FRAMING_OK;
        case SIP_IDLE:
            if (s->compress_at_boundary) {
                s->compressed = true;
                s->state = SIP_OPAQUE;
                return FRAMING_OK;
            }
            if (p[i] == '\r') {
                s->state = SIP_IDLE_CR;
                i++;
                break;
            }
            s->state = SIP_HEAD;
            s->head_len = 0;
            s->start_line_checked = false;
            s->compress_after_message = false;
            break;
        case SIP_IDLE_CR:
            if (p[i] != '\n') {
                return sip_fail(s, "keep-alive CR not followed by LF");
            }
            /* Count a ping (CRLFCRLF) or a pong (CRLF) once, not per line end. */
            if (!s->crlf_odd) {
                framing_count(counters, "keepalive");
            }
            s->crlf_odd = !s->crlf_odd;
            s->state = SIP_IDLE;
            i++;
            break;
        case SIP_HEAD:
            if (head_byte(s, peer, p[i], counters) != FRAMING_OK) {
                return FRAMING_ERROR;
            }
            i++;
            break;
        case SIP_BODY: {
            size_t take = n - i;
            if ((uint64_t)take > s->body_left) {
                take = (size_t)s->body_left;
            }
            s->body_left -= take;
            i += take;
            if (s->body_left == 0) {
                message_done(s, peer);
            }
            break;
        }
        default:
            return sip_fail(s, "internal state error");
        }
    }
    if (s->state == SIP_FAILED) {
        return FRAMING_ERROR;
    }
    /* A boundary reached at the end of the input still switches, so compressed shows early. */
    if (s->state == SIP_IDLE && s->compress_at_boundary) {
        s->compressed = true;
        s->state = SIP_OPAQUE;
    }
    return FRAMING_OK;
}
