/* SIP framing on a byte stream (RFC 3261 18.3): start line and headers up to CRLFCRLF, then a
 * body of Content-Length bytes. RFC 5626 CRLF keep-alives may appear between messages; a bare LF
 * is taken as one too, since real clients send it. Inside a head, lines end in CRLF only (as in
 * detection).
 *
 * The head is scanned byte by byte and never copied: a head may be up to SIP_MAX_HEAD bytes, and
 * only the facts framing needs (method or status, Content-Length, CSeq, Compression) are kept.
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

/* Where in the current head line the next byte falls. */
enum sip_part {
    SL_METHOD,         /* request method, or "SIP" of a status line */
    SL_SCHEME_FIRST,   /* first byte of the Request-URI scheme */
    SL_SCHEME,         /* rest of the scheme up to ':' */
    SL_URI,            /* rest of the Request-URI up to SP */
    SL_VERSION,        /* "SIP/2.0" of a request line, pos bytes matched */
    SL_STATUS_VERSION, /* "SIP/2.0 " of a status line, pos bytes matched */
    SL_CODE,           /* status code, pos digits read */
    SL_AFTER_CODE,     /* end of line or SP */
    SL_REASON,         /* reason phrase */
    H_LINE_START,      /* first byte of a header line (CR here ends the head) */
    H_NAME,            /* header name up to ':' */
    H_NAME_WS,         /* whitespace between the name and ':' */
    H_VALUE,           /* header value up to the line end */
    H_FOLDED,          /* an obsolete folded continuation line */
};

/* Headers whose values the framer reads. */
enum sip_header { HDR_OTHER, HDR_LENGTH, HDR_CSEQ, HDR_COMPRESSION };

static const char start_line_reason[] =
    "start line is neither a SIP request line nor a SIP/2.0 status line";

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

static char ascii_lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c + ('a' - 'A')) : c;
}

/* Matches c against word[h->pos] ignoring case; advances pos on success. */
static bool expect_word(sip_head_scan *h, const char *word, char c)
{
    if (word[h->pos] == '\0' || ascii_lower(c) != ascii_lower(word[h->pos])) {
        return false;
    }
    h->pos++;
    return true;
}

/* One byte of the start line: Request-Line = Method SP Request-URI SP SIP-Version, the URI at
 * least scheme ":" ...; Status-Line = SIP-Version SP Status-Code [SP Reason-Phrase]. A method
 * cannot contain '/', so "SIP/" can only begin a status line. */
static bool start_line_byte(sip_head_scan *h, char c)
{
    switch (h->part) {
    case SL_METHOD:
        if (is_token_char(c)) {
            if (h->method_len < sizeof h->method - 1) {
                h->method[h->method_len] = c;
            }
            h->method_len++;
            return true;
        }
        if (c == ' ' && h->method_len > 0) {
            h->part = SL_SCHEME_FIRST;
            return true;
        }
        if (c == '/' && equals_nocase(h->method, h->method_len, "SIP")) {
            h->part = SL_STATUS_VERSION;
            h->pos = 4;
            return true;
        }
        return false;
    case SL_SCHEME_FIRST:
        h->part = SL_SCHEME;
        return is_alpha(c);
    case SL_SCHEME:
        if (c == ':') {
            h->part = SL_URI;
            return true;
        }
        return is_alpha(c) || is_digit(c) || c == '+' || c == '-' || c == '.';
    case SL_URI:
        if (c == ' ') {
            h->part = SL_VERSION;
            h->pos = 0;
        }
        return true;
    case SL_VERSION:
        return expect_word(h, "SIP/2.0", c);
    case SL_STATUS_VERSION:
        if (!expect_word(h, "SIP/2.0 ", c)) {
            return false;
        }
        if (h->pos == 8) {
            h->part = SL_CODE;
            h->pos = 0;
        }
        return true;
    case SL_CODE:
        if (!is_digit(c) || (h->pos == 0 && (c < '1' || c > '6'))) {
            return false;
        }
        h->status = h->status * 10 + (unsigned)(c - '0');
        if (++h->pos == 3) {
            h->part = SL_AFTER_CODE;
        }
        return true;
    case SL_AFTER_CODE:
        h->part = SL_REASON;
        return c == ' ';
    case SL_REASON:
        return true;
    default:
        return false;
    }
}

/* The start line has ended: is it complete? */
static bool start_line_done(sip_head_scan *h)
{
    if (h->part == SL_VERSION && h->pos == 7) {
        h->is_request = true;
        h->method[h->method_len < sizeof h->method ? h->method_len : sizeof h->method - 1] = '\0';
        return true;
    }
    if (h->part == SL_AFTER_CODE || h->part == SL_REASON) {
        h->is_request = false;
        return true;
    }
    return false;
}

static void begin_header_name(sip_head_scan *h)
{
    h->part = H_NAME;
    h->name_len = 0;
    h->name_bad = false;
    h->header = HDR_OTHER;
}

/* The ':' after a header name: HCOLON allows whitespace before it, none inside the name. */
static const char *header_name_done(sip_head_scan *h)
{
    if (h->name_len == 0) {
        return "empty header name";
    }
    if (h->name_bad) {
        return "malformed header name";
    }
    size_t kept = h->name_len < sizeof h->name ? h->name_len : 0;
    if (equals_nocase(h->name, kept, "Content-Length") || equals_nocase(h->name, kept, "l")) {
        h->header = HDR_LENGTH;
    } else if (equals_nocase(h->name, kept, "CSeq")) {
        h->header = HDR_CSEQ;
    } else if (equals_nocase(h->name, kept, "Compression")) {
        h->header = HDR_COMPRESSION;
    }
    h->part = H_VALUE;
    h->value_len = 0;
    h->value_long = false;
    return NULL;
}

/* One byte of a header line other than its CRLF; NULL or the reason it is unacceptable. */
static const char *header_byte(sip_head_scan *h, char c)
{
    switch (h->part) {
    case H_LINE_START:
        if (c == ' ' || c == '\t') {
            /* Obsolete folding: harmless except where it could hide part of the length. */
            if (h->last_was_length) {
                return "folded Content-Length";
            }
            h->part = H_FOLDED;
            return NULL;
        }
        begin_header_name(h);
        return header_byte(h, c);
    case H_NAME:
    case H_NAME_WS:
        if (c == ':') {
            return header_name_done(h);
        }
        if (c == ' ' || c == '\t') {
            h->part = H_NAME_WS;
            return NULL;
        }
        /* Bad bytes are reported at the colon, so a line without one says so first. */
        if (!is_token_char(c) || h->part == H_NAME_WS) {
            h->name_bad = true;
        }
        if (h->name_len < sizeof h->name) {
            h->name[h->name_len] = c;
        }
        h->name_len++;
        return NULL;
    case H_VALUE:
        if (h->header == HDR_OTHER) {
            return NULL;
        }
        if (h->value_len == 0 && (c == ' ' || c == '\t')) {
            return NULL; /* leading whitespace */
        }
        if (h->value_len < sizeof h->value) {
            h->value[h->value_len++] = c;
        } else if (c != ' ' && c != '\t') {
            h->value_long = true; /* trailing whitespace past the cap changes nothing */
        }
        return NULL;
    case H_FOLDED:
        return NULL;
    default:
        return "internal state error";
    }
}

/* A header line has ended: records what the framer needs from it. */
static const char *header_line_done(sip_head_scan *h)
{
    if (h->part == H_NAME || h->part == H_NAME_WS) {
        return "header line without a colon";
    }
    if (h->part == H_FOLDED) {
        h->part = H_LINE_START;
        return NULL;
    }
    const char *value = h->value;
    size_t value_len = h->value_len;
    trim(&value, &value_len);
    h->last_was_length = h->header == HDR_LENGTH;
    h->part = H_LINE_START;
    if (h->header == HDR_LENGTH) {
        uint64_t v;
        if (h->value_long || !parse_number(value, value_len, &v)) {
            return "bad Content-Length";
        }
        if (h->has_content_length && v != h->content_length) {
            return "conflicting Content-Length headers";
        }
        h->has_content_length = true;
        h->content_length = v;
    } else if (h->header == HDR_CSEQ) {
        size_t i = 0;
        while (i < value_len && is_digit(value[i])) {
            i++;
        }
        const char *method = value + i;
        size_t method_len = value_len - i;
        trim(&method, &method_len);
        h->has_cseq = !h->value_long && parse_number(value, i, &h->cseq);
        h->cseq_is_negotiate = !h->value_long && equals_nocase(method, method_len, "NEGOTIATE");
    } else if (h->header == HDR_COMPRESSION) {
        h->has_compression = true;
        h->compression_lz77 = !h->value_long && equals_nocase(value, value_len, "LZ77-8K");
    }
    return NULL;
}

static void count_head(const sip_head_scan *h, framing_counters *counters)
{
    char name[FRAMING_COUNTER_NAME];
    if (h->is_request) {
        snprintf(name, sizeof name, "%s", h->method);
    } else {
        snprintf(name, sizeof name, "%uxx", h->status / 100);
    }
    framing_count(counters, name);
}

/* Records the NEGOTIATE offer on the requester, or its answer on the responder. */
static void track_compression(sip_stream *s, sip_stream *peer, const sip_head_scan *h)
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

static void head_done(sip_stream *s, sip_stream *peer, framing_counters *counters)
{
    const sip_head_scan *h = &s->scan;
    count_head(h, counters);
    if (s->head_len > SIP_LARGE_HEAD) {
        s->large_heads++;
        framing_count(counters, "large-head");
    }
    track_compression(s, peer, h);
    s->body_left = h->content_length; /* RFC 3261 18.3: absent on a stream means 0 */
    if (s->body_left > 0) {
        s->state = SIP_BODY;
    } else {
        message_done(s, peer);
    }
}

/* A line of the head has ended (its LF). */
static framing_status line_done(sip_stream *s, sip_stream *peer, framing_counters *counters)
{
    sip_head_scan *h = &s->scan;
    if (h->part < H_LINE_START) {
        if (!start_line_done(h)) {
            return sip_fail(s, start_line_reason);
        }
        h->part = H_LINE_START;
        return FRAMING_OK;
    }
    if (h->part == H_LINE_START) {
        head_done(s, peer, counters); /* the empty line */
        return FRAMING_OK;
    }
    const char *reason = header_line_done(h);
    return reason == NULL ? FRAMING_OK : sip_fail(s, reason);
}

/* One head byte: enforces CRLF line ends, text and the size bound, then scans it. */
static framing_status head_byte(sip_stream *s, sip_stream *peer, uint8_t c,
                                framing_counters *counters)
{
    sip_head_scan *h = &s->scan;
    if (h->prev_cr && c != '\n') {
        return sip_fail(s, "CR not followed by LF in header");
    }
    if (c == '\n' && !h->prev_cr) {
        return sip_fail(s, "bare LF in header");
    }
    if ((c < 0x20 && c != '\r' && c != '\n' && c != '\t') || c == 0x7f) {
        return sip_fail(s, "control byte in header");
    }
    if (s->head_len == SIP_MAX_HEAD) {
        char reason[64];
        snprintf(reason, sizeof reason, "header block longer than %u bytes",
                 (unsigned)SIP_MAX_HEAD);
        return sip_fail(s, reason);
    }
    s->head_len++;
    if (c == '\r') {
        h->prev_cr = true;
        return FRAMING_OK;
    }
    if (c == '\n') {
        h->prev_cr = false;
        return line_done(s, peer, counters);
    }
    if (h->part < H_LINE_START) {
        return start_line_byte(h, (char)c) ? FRAMING_OK : sip_fail(s, start_line_reason);
    }
    const char *reason = header_byte(h, (char)c);
    return reason == NULL ? FRAMING_OK : sip_fail(s, reason);
}

/* A keep-alive line end between messages: a ping (two line ends) or a pong (one) counts once. */
static void keepalive_line_end(sip_stream *s, framing_counters *counters)
{
    if (!s->crlf_odd) {
        framing_count(counters, "keepalive");
    }
    s->crlf_odd = !s->crlf_odd;
    s->state = SIP_IDLE;
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
            if (p[i] == '\n') {
                keepalive_line_end(s, counters);
                i++;
                break;
            }
            s->state = SIP_HEAD;
            s->head_len = 0;
            memset(&s->scan, 0, sizeof s->scan);
            s->scan.part = SL_METHOD;
            s->compress_after_message = false;
            break;
        case SIP_IDLE_CR:
            if (p[i] != '\n') {
                return sip_fail(s, "keep-alive CR not followed by LF");
            }
            keepalive_line_end(s, counters);
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
