#include "framing.h"
#include "guarded.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

enum { CLIENT, SERVER };

/* One relayed chunk of a conversation. */
struct seg {
    int dir;
    const char *bytes;
    size_t len;
};

struct outcome {
    framing_status status[2];
    bool compressed[2];
    char error[2][FRAMING_ERROR_LEN];
    framing_counters counters;
};

/* Builds a message: head lines (each ending in CRLF, no Content-Length), then the length and
 * the body, so tests never carry hand-counted lengths. */
static const char *sip_msg(char *out, size_t cap, const char *head, const char *body)
{
    int n = snprintf(out, cap, "%sContent-Length: %zu\r\n\r\n%s", head, strlen(body), body);
    assert_true(n > 0 && (size_t)n < cap);
    return out;
}

static struct seg seg_of(int dir, const char *s)
{
    return (struct seg){dir, s, strlen(s)};
}

/* Plays the conversation through one pair of streams. Each segment is cut into pieces of at most
 * 'piece' bytes and additionally at global offset 'split'. */
static void play(const struct seg *segs, size_t nseg, size_t split, size_t piece,
                 struct outcome *out)
{
    sip_stream streams[2];
    sip_stream_init(&streams[CLIENT]);
    sip_stream_init(&streams[SERVER]);
    memset(out, 0, sizeof *out);
    size_t offset = 0;
    for (size_t k = 0; k < nseg; k++) {
        const struct seg *sg = &segs[k];
        size_t start = 0;
        while (start < sg->len) {
            size_t end = sg->len - start > piece ? start + piece : sg->len;
            if (split > offset + start && split < offset + end) {
                end = split - offset;
            }
            guarded g;
            guarded_copy(&g, sg->bytes + start, end - start);
            framing_status st = sip_stream_feed(&streams[sg->dir], &streams[!sg->dir], g.bytes,
                                                end - start, &out->counters);
            guarded_release(&g);
            if (st != FRAMING_OK) {
                out->status[sg->dir] = st;
            }
            start = end;
        }
        offset += sg->len;
    }
    for (int d = 0; d < 2; d++) {
        out->compressed[d] = streams[d].compressed;
        memcpy(out->error[d], streams[d].error, sizeof out->error[d]);
    }
}

static struct outcome play_whole(const struct seg *segs, size_t nseg)
{
    struct outcome out;
    play(segs, nseg, SIZE_MAX, SIZE_MAX, &out);
    return out;
}

/* Whatever the read boundaries, the observer must reach the same verdict and counts. */
static void assert_split_invariant(const struct seg *segs, size_t nseg)
{
    struct outcome whole = play_whole(segs, nseg);
    size_t total = 0;
    for (size_t k = 0; k < nseg; k++) {
        total += segs[k].len;
    }
    struct outcome cut;
    for (size_t split = 1; split < total; split++) {
        play(segs, nseg, split, SIZE_MAX, &cut);
        assert_memory_equal(&cut.counters, &whole.counters, sizeof whole.counters);
        assert_memory_equal(cut.status, whole.status, sizeof whole.status);
        assert_memory_equal(cut.compressed, whole.compressed, sizeof whole.compressed);
    }
    play(segs, nseg, SIZE_MAX, 1, &cut);
    assert_memory_equal(&cut.counters, &whole.counters, sizeof whole.counters);
    assert_memory_equal(cut.status, whole.status, sizeof whole.status);
    assert_memory_equal(cut.compressed, whole.compressed, sizeof whole.compressed);
}

#define VIA "Via: SIP/2.0/TLS 192.0.2.10:50123;branch=z9hG4bK776asdhds\r\n"
#define DIALOG                                                                                     \
    "From: <sip:alice@example.com>;tag=1928301774\r\n"                                             \
    "To: <sip:alice@example.com>\r\n"                                                              \
    "Call-ID: a84b4c76e66710@192.0.2.10\r\n"

static void register_with_challenge(void **state)
{
    (void)state;
    char m[4][1024];
    struct seg segs[] = {
        seg_of(CLIENT, sip_msg(m[0], sizeof m[0],
                               "REGISTER sip:example.com SIP/2.0\r\n" VIA
                               "Max-Forwards: 70\r\n" DIALOG "CSeq: 1 REGISTER\r\n"
                               "Contact: <sip:alice@192.0.2.10:50123;transport=tls>\r\n",
                               "")),
        seg_of(SERVER, sip_msg(m[1], sizeof m[1],
                               "SIP/2.0 401 Unauthorized\r\n" VIA DIALOG "CSeq: 1 REGISTER\r\n"
                               "WWW-Authenticate: NTLM realm=\"SIP Communications Service\", "
                               "targetname=\"sip.example.com\", version=4\r\n",
                               "")),
        seg_of(CLIENT, sip_msg(m[2], sizeof m[2],
                               "REGISTER sip:example.com SIP/2.0\r\n" VIA
                               "Max-Forwards: 70\r\n" DIALOG "CSeq: 2 REGISTER\r\n"
                               "Authorization: NTLM qop=\"auth\", realm=\"SIP Communications "
                               "Service\", response=\"01000000\"\r\n",
                               "")),
        seg_of(SERVER, sip_msg(m[3], sizeof m[3],
                               "SIP/2.0 200 OK\r\n" VIA DIALOG "CSeq: 2 REGISTER\r\n"
                               "Content-Type: application/vnd-microsoft-roaming-self+xml\r\n",
                               "<roamingData>\r\n\r\nSIP/2.0 500 inside a body\r\n</roamingData>")),
    };
    struct outcome out = play_whole(segs, 4);
    assert_int_equal(out.status[CLIENT], FRAMING_OK);
    assert_int_equal(out.status[SERVER], FRAMING_OK);
    assert_int_equal(framing_counter_get(&out.counters, "REGISTER"), 2);
    assert_int_equal(framing_counter_get(&out.counters, "4xx"), 1);
    assert_int_equal(framing_counter_get(&out.counters, "2xx"), 1);
    assert_int_equal(framing_counter_get(&out.counters, "5xx"), 0);
    assert_int_equal(out.counters.used, 3);
    assert_false(out.compressed[CLIENT] || out.compressed[SERVER]);
    assert_split_invariant(segs, 4);
}

#define SDP                                                                                        \
    "v=0\r\no=- 0 0 IN IP4 192.0.2.10\r\ns=session\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"            \
    "m=audio 50020 RTP/AVP 0\r\n\r\n"

static void invite_dialog_with_sdp_bodies(void **state)
{
    (void)state;
    char m[6][1024];
    char answers[3072];
    snprintf(answers, sizeof answers, "%s%s%s",
             sip_msg(m[1], sizeof m[1], "SIP/2.0 100 Trying\r\n" VIA "CSeq: 1 INVITE\r\n", ""),
             sip_msg(m[2], sizeof m[2], "SIP/2.0 180 Ringing\r\n" VIA "CSeq: 1 INVITE\r\n", ""),
             sip_msg(m[3], sizeof m[3],
                     "SIP/2.0 200 OK\r\n" VIA "CSeq: 1 INVITE\r\nContent-Type: application/sdp\r\n",
                     SDP));
    struct seg segs[] = {
        seg_of(CLIENT, sip_msg(m[0], sizeof m[0],
                               "INVITE sip:bob@example.com SIP/2.0\r\n" VIA DIALOG
                               "CSeq: 1 INVITE\r\nContent-Type: application/sdp\r\n",
                               SDP)),
        seg_of(SERVER, answers),
        seg_of(CLIENT, sip_msg(m[4], sizeof m[4],
                               "ACK sip:bob@example.com SIP/2.0\r\n" VIA "CSeq: 1 ACK\r\n", "")),
        seg_of(CLIENT, sip_msg(m[5], sizeof m[5],
                               "BYE sip:bob@example.com SIP/2.0\r\n" VIA "CSeq: 2 BYE\r\n", "")),
        seg_of(SERVER, "SIP/2.0 200 OK\r\n" VIA "CSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"),
    };
    struct outcome out = play_whole(segs, 5);
    assert_int_equal(out.status[CLIENT], FRAMING_OK);
    assert_int_equal(out.status[SERVER], FRAMING_OK);
    assert_int_equal(framing_counter_get(&out.counters, "INVITE"), 1);
    assert_int_equal(framing_counter_get(&out.counters, "ACK"), 1);
    assert_int_equal(framing_counter_get(&out.counters, "BYE"), 1);
    assert_int_equal(framing_counter_get(&out.counters, "1xx"), 2);
    assert_int_equal(framing_counter_get(&out.counters, "2xx"), 2);
    assert_split_invariant(segs, 5);
}

static void compact_and_missing_content_length(void **state)
{
    (void)state;
    struct seg segs[] = {
        seg_of(CLIENT, "MESSAGE sip:bob@example.com SIP/2.0\r\n" VIA "CSeq: 3 MESSAGE\r\n"
                       "l: 5\r\n\r\nhello"
                       "OPTIONS sip:bob@example.com SIP/2.0\r\n" VIA "CSeq: 4 OPTIONS\r\n"
                       "content-length :0\r\n\r\n"),
        /* No Content-Length on a stream means an empty body (RFC 3261 18.3). */
        seg_of(SERVER, "SIP/2.0 202 Accepted\r\n" VIA "CSeq: 3 MESSAGE\r\n\r\n"
                       "SIP/2.0 200 OK\r\n" VIA "CSeq: 4 OPTIONS\r\nL: 2\r\n\r\n{}"
                       "BENOTIFY sip:alice@example.com SIP/2.0\r\nCSeq: 5 BENOTIFY\r\n"
                       "Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc"),
    };
    struct outcome out = play_whole(segs, 2);
    assert_int_equal(out.status[CLIENT], FRAMING_OK);
    assert_int_equal(out.status[SERVER], FRAMING_OK);
    assert_int_equal(framing_counter_get(&out.counters, "MESSAGE"), 1);
    assert_int_equal(framing_counter_get(&out.counters, "OPTIONS"), 1);
    assert_int_equal(framing_counter_get(&out.counters, "2xx"), 2);
    assert_int_equal(framing_counter_get(&out.counters, "BENOTIFY"), 1);
    assert_split_invariant(segs, 2);
}

static void crlf_keepalives_between_messages(void **state)
{
    (void)state;
    struct seg segs[] = {
        seg_of(CLIENT, "\r\n\r\n"), /* ping before the first message */
        seg_of(CLIENT, "OPTIONS sip:example.com SIP/2.0\r\nCSeq: 1 OPTIONS\r\n"
                       "Content-Length: 0\r\n\r\n\r\n\r\n\r\n\r\n"), /* two pings */
        seg_of(SERVER, "\r\n"),                                      /* pong */
        seg_of(SERVER, "SIP/2.0 200 OK\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"),
    };
    struct outcome out = play_whole(segs, 4);
    assert_int_equal(out.status[CLIENT], FRAMING_OK);
    assert_int_equal(out.status[SERVER], FRAMING_OK);
    assert_int_equal(framing_counter_get(&out.counters, "keepalive"), 4);
    assert_int_equal(framing_counter_get(&out.counters, "OPTIONS"), 1);
    assert_int_equal(framing_counter_get(&out.counters, "2xx"), 1);
    assert_split_invariant(segs, 4);
}

#define NEGOTIATE(compression)                                                                     \
    "NEGOTIATE sip:192.0.2.1:5061 SIP/2.0\r\n" VIA "Max-Forwards: 0\r\n" DIALOG                    \
    "CSeq: 1 NEGOTIATE\r\n" compression "Content-Length: 0\r\n\r\n"
#define NEGOTIATE_OK(compression)                                                                  \
    "SIP/2.0 200 OK\r\n" VIA DIALOG "CSeq: 1 NEGOTIATE\r\n" compression "Content-Length: "         \
    "0\r\n\r\n"
#define LZ77_DATA "\x20\x00\x13\x8f\xff\x00\r\n\r\nINVITE\x01\x02 binary \x00\x7f"

static void negotiated_compression_turns_both_directions_opaque(void **state)
{
    (void)state;
    static const char server[] = NEGOTIATE_OK("Compression: LZ77-8K\r\n") LZ77_DATA;
    static const char client[] = LZ77_DATA;
    struct seg segs[] = {
        seg_of(CLIENT, NEGOTIATE("Compression: LZ77-8K\r\n")),
        {SERVER, server, sizeof server - 1},
        {CLIENT, client, sizeof client - 1},
    };
    struct outcome out = play_whole(segs, 3);
    assert_int_equal(out.status[CLIENT], FRAMING_OK);
    assert_int_equal(out.status[SERVER], FRAMING_OK);
    assert_true(out.compressed[CLIENT]);
    assert_true(out.compressed[SERVER]);
    assert_int_equal(framing_counter_get(&out.counters, "NEGOTIATE"), 1);
    assert_int_equal(framing_counter_get(&out.counters, "2xx"), 1);
    assert_int_equal(out.counters.used, 2);
    assert_split_invariant(segs, 3);

    /* The client side is compressed as soon as the 200 has been relayed. */
    struct seg handshake[] = {
        seg_of(CLIENT, NEGOTIATE("Compression: LZ77-8K\r\n")),
        seg_of(SERVER, NEGOTIATE_OK("Compression: LZ77-8K\r\n")),
    };
    out = play_whole(handshake, 2);
    assert_true(out.compressed[CLIENT]);
    assert_true(out.compressed[SERVER]);
}

static void compressed_bytes_without_agreement_are_errors(void **state)
{
    (void)state;
    static const char garbage[] = LZ77_DATA;
    /* No offer. */
    struct seg no_offer[] = {
        seg_of(CLIENT, NEGOTIATE("")),
        seg_of(SERVER, NEGOTIATE_OK("")),
        {CLIENT, garbage, sizeof garbage - 1},
    };
    struct outcome out = play_whole(no_offer, 3);
    assert_int_equal(out.status[CLIENT], FRAMING_ERROR);
    assert_false(out.compressed[CLIENT] || out.compressed[SERVER]);

    /* Offer declined by the answer. */
    struct seg declined[] = {
        seg_of(CLIENT, NEGOTIATE("Compression: LZ77-8K\r\n")),
        seg_of(SERVER, NEGOTIATE_OK("Compression: None\r\n")),
        {SERVER, garbage, sizeof garbage - 1},
    };
    out = play_whole(declined, 3);
    assert_int_equal(out.status[SERVER], FRAMING_ERROR);
    assert_false(out.compressed[CLIENT] || out.compressed[SERVER]);

    /* A 200 that answers another transaction does not switch. */
    struct seg other_cseq[] = {
        seg_of(CLIENT, NEGOTIATE("Compression: LZ77-8K\r\n")),
        seg_of(SERVER, "SIP/2.0 200 OK\r\nCSeq: 7 NEGOTIATE\r\nContent-Length: 0\r\n\r\n"),
        {SERVER, garbage, sizeof garbage - 1},
    };
    out = play_whole(other_cseq, 3);
    assert_int_equal(out.status[SERVER], FRAMING_ERROR);

    /* Once refused, a later stray 200 for the same transaction does not switch either. */
    struct seg refused[] = {
        seg_of(CLIENT, NEGOTIATE("Compression: LZ77-8K\r\n")),
        seg_of(SERVER, "SIP/2.0 488 Not Acceptable Here\r\nCSeq: 1 NEGOTIATE\r\n"
                       "Content-Length: 0\r\n\r\n" NEGOTIATE_OK("Compression: LZ77-8K\r\n")),
        {SERVER, garbage, sizeof garbage - 1},
    };
    out = play_whole(refused, 3);
    assert_int_equal(out.status[SERVER], FRAMING_ERROR);
    assert_int_equal(framing_counter_get(&out.counters, "4xx"), 1);
}

static void expect_error(const char *bytes, const char *reason)
{
    sip_stream s;
    sip_stream_init(&s);
    framing_counters c = {0};
    guarded g;
    guarded_copy(&g, bytes, strlen(bytes));
    assert_int_equal(sip_stream_feed(&s, NULL, g.bytes, strlen(bytes), &c), FRAMING_ERROR);
    guarded_release(&g);
    if (strstr(s.error, reason) == NULL) {
        fail_msg("error \"%s\" does not mention \"%s\"", s.error, reason);
    }
    assert_int_equal(c.used, 0);
}

static void bad_start_lines_are_rejected_early(void **state)
{
    (void)state;
    /* Only the first line is given: the verdict must not wait for the end of the head. */
    expect_error("HELLO WORLD\r\n", "start line");
    expect_error("GET / HTTP/1.1\r\n", "start line");
    expect_error("INVITE sip:bob@example.com SIP/3.0\r\n", "start line");
    expect_error("INVITE bob@example.com SIP/2.0\r\n", "start line");
    expect_error("SIP/2.0 700 Beyond\r\n", "start line");
    expect_error("SIP/2.0 20 OK\r\n", "start line");
    expect_error(" INVITE sip:bob@example.com SIP/2.0\r\n", "start line");
    expect_error("\x16\x03\x01\x00\x2d\x01", "control byte");
    expect_error("\r\r", "CR not followed by LF");
    expect_error("OPTIONS sip:a SIP/2.0\r\nVia: x\r\r\n", "CR not followed by LF");
    expect_error("OPTIONS sip:a SIP/2.0\nCSeq: 1 OPTIONS\n\n", "bare LF");
}

static void bad_content_length_is_rejected(void **state)
{
    (void)state;
    expect_error("OPTIONS sip:a SIP/2.0\r\nContent-Length: 5\r\nl: 6\r\n\r\n", "conflicting");
    expect_error("OPTIONS sip:a SIP/2.0\r\nContent-Length: 12a\r\n\r\n", "bad Content-Length");
    expect_error("OPTIONS sip:a SIP/2.0\r\nContent-Length: -1\r\n\r\n", "bad Content-Length");
    expect_error("OPTIONS sip:a SIP/2.0\r\nContent-Length:\r\n\r\n", "bad Content-Length");
    expect_error("OPTIONS sip:a SIP/2.0\r\nContent-Length: 1\r\n 2\r\n\r\n", "folded");
    expect_error("OPTIONS sip:a SIP/2.0\r\nno colon here\r\n\r\n", "colon");
}

/* Builds a REGISTER whose head (through the final CRLFCRLF) is exactly 'size' bytes. */
static size_t head_of_size(char *out, size_t size)
{
    static const char prefix[] =
        "REGISTER sip:example.com SIP/2.0\r\nContent-Length: 0\r\nX-Fill: ";
    size_t fill = size - (sizeof prefix - 1) - 4;
    memcpy(out, prefix, sizeof prefix - 1);
    memset(out + sizeof prefix - 1, 'a', fill);
    memcpy(out + size - 4, "\r\n\r\n", 4);
    return size;
}

static void header_block_is_bounded(void **state)
{
    (void)state;
    static char head[SIP_MAX_HEAD + 1];
    sip_stream s;
    framing_counters c = {0};

    size_t n = head_of_size(head, SIP_MAX_HEAD);
    sip_stream_init(&s);
    assert_int_equal(sip_stream_feed(&s, NULL, (const uint8_t *)head, n, &c), FRAMING_OK);
    assert_int_equal(framing_counter_get(&c, "REGISTER"), 1);

    n = head_of_size(head, SIP_MAX_HEAD + 1);
    sip_stream_init(&s);
    assert_int_equal(sip_stream_feed(&s, NULL, (const uint8_t *)head, n, &c), FRAMING_ERROR);
    assert_non_null(strstr(s.error, "longer than"));
    assert_int_equal(framing_counter_get(&c, "REGISTER"), 1);
}

/* A REGISTER as SfB sends it with Kerberos: one huge Authorization header carrying gssapi-data,
 * total head size exactly 'size' bytes (CRLFCRLF included), then a 2-byte body. */
static size_t gssapi_register(char *out, size_t size)
{
    static const char prefix[] =
        "REGISTER sip:example.com SIP/2.0\r\n" VIA "Max-Forwards: 70\r\n" DIALOG
        "CSeq: 3 REGISTER\r\nContent-Length: 2\r\n"
        "Authorization: Kerberos qop=\"auth\", realm=\"SIP Communications "
        "Service\", gssapi-data=\"";
    static const char suffix[] = "\"\r\n\r\n{}";
    size_t fill = size - (sizeof prefix - 1) - (sizeof suffix - 1) + 2;
    memcpy(out, prefix, sizeof prefix - 1);
    for (size_t i = 0; i < fill; i++) {
        out[sizeof prefix - 1 + i] =
            "YIIGgwYJKoZIhvcSAQICAQBuggZyMIIGbqADAgEFoQMCAQ6iBwMFACAAAACj+/"[i % 61];
    }
    memcpy(out + sizeof prefix - 1 + fill, suffix, sizeof suffix - 1);
    return size + 2;
}

static void kerberos_register_of_20_kib_passes_in_any_pieces(void **state)
{
    (void)state;
    static char big[20 * 1024 + 2];
    size_t n = gssapi_register(big, 20 * 1024);
    assert_memory_equal(big + 20 * 1024 - 4, "\r\n\r\n{}", 6);
    struct seg segs[] = {
        {CLIENT, big, n},
        seg_of(SERVER, "SIP/2.0 200 OK\r\n" VIA "CSeq: 3 REGISTER\r\nContent-Length: 0\r\n\r\n"),
        seg_of(CLIENT, "OPTIONS sip:example.com SIP/2.0\r\nCSeq: 4 OPTIONS\r\nl: 0\r\n\r\n"),
    };
    struct outcome whole = play_whole(segs, 3);
    assert_int_equal(whole.status[CLIENT], FRAMING_OK);
    assert_int_equal(whole.status[SERVER], FRAMING_OK);
    assert_int_equal(framing_counter_get(&whole.counters, "REGISTER"), 1);
    assert_int_equal(framing_counter_get(&whole.counters, "OPTIONS"), 1);
    assert_int_equal(framing_counter_get(&whole.counters, "2xx"), 1);
    assert_int_equal(framing_counter_get(&whole.counters, "large-head"), 1);

    struct outcome cut;
    play(segs, 3, SIZE_MAX, 997, &cut);
    assert_memory_equal(&cut.counters, &whole.counters, sizeof whole.counters);
    assert_memory_equal(cut.status, whole.status, sizeof whole.status);
    play(segs, 3, 20 * 1024 - 1, 997, &cut); /* a piece ending inside the final CRLFCRLF */
    assert_memory_equal(&cut.counters, &whole.counters, sizeof whole.counters);
}

static void head_over_the_bound_fails_with_its_reason(void **state)
{
    (void)state;
    static char big[70 * 1024 + 2];
    size_t n = gssapi_register(big, 70 * 1024);
    sip_stream s;
    sip_stream_init(&s);
    framing_counters c = {0};
    framing_status st = FRAMING_OK;
    for (size_t off = 0; off < n && st == FRAMING_OK; off += 997) {
        size_t len = n - off < 997 ? n - off : 997;
        st = sip_stream_feed(&s, NULL, (const uint8_t *)big + off, len, &c);
    }
    assert_int_equal(st, FRAMING_ERROR);
    assert_non_null(strstr(s.error, "header block longer than 65536 bytes"));
    assert_int_equal(c.used, 0);
    assert_int_equal(s.large_heads, 0);
}

static void heads_over_8_kib_are_counted_once_each(void **state)
{
    (void)state;
    static char big[9000 + 2];
    size_t n = gssapi_register(big, 9000);
    sip_stream s;
    sip_stream_init(&s);
    framing_counters c = {0};
    for (int k = 0; k < 3; k++) {
        assert_int_equal(sip_stream_feed(&s, NULL, (const uint8_t *)big, n, &c), FRAMING_OK);
    }
    n = gssapi_register(big, SIP_LARGE_HEAD);
    assert_int_equal(sip_stream_feed(&s, NULL, (const uint8_t *)big, n, &c), FRAMING_OK);
    assert_int_equal(s.large_heads, 3);
    assert_int_equal(framing_counter_get(&c, "large-head"), 3);
    assert_int_equal(framing_counter_get(&c, "REGISTER"), 4);
}

/* The head is scanned, not copied: a session's two directions stay far below one 64 KiB head. */
static void stream_state_stays_small(void **state)
{
    (void)state;
    assert_true(sizeof(sip_stream) < 512);
}

static void bare_lf_keepalives_before_and_between_messages(void **state)
{
    (void)state;
    struct seg segs[] = {
        seg_of(CLIENT, "\n\n"), /* ping before the first message */
        seg_of(CLIENT, "OPTIONS sip:example.com SIP/2.0\r\nCSeq: 1 OPTIONS\r\n"
                       "Content-Length: 0\r\n\r\n\n"),
        seg_of(SERVER, "\n"), /* pong */
        seg_of(SERVER, "SIP/2.0 200 OK\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"),
        seg_of(CLIENT, "\n\r\n"), /* mixed: still one ping */
        seg_of(CLIENT, "OPTIONS sip:example.com SIP/2.0\r\nCSeq: 2 OPTIONS\r\n\r\n"),
    };
    struct outcome out = play_whole(segs, 6);
    assert_int_equal(out.status[CLIENT], FRAMING_OK);
    assert_int_equal(out.status[SERVER], FRAMING_OK);
    assert_int_equal(framing_counter_get(&out.counters, "keepalive"), 4);
    assert_int_equal(framing_counter_get(&out.counters, "OPTIONS"), 2);
    assert_int_equal(framing_counter_get(&out.counters, "2xx"), 1);
    assert_split_invariant(segs, 6);
}

/* The scanner keeps only the start of header names: longer names must not pass for the ones
 * the framer reads. */
static void only_exact_header_names_frame_the_body(void **state)
{
    (void)state;
    static const char m[] =
        "OPTIONS sip:a SIP/2.0\r\nContent-Length-Extra: 7\r\nContent-Lengthx: 9\r\n"
        "Content-Length : 2\r\n\r\n{}sip/2.0 200 OK\r\nL:0\r\n\r\n";
    sip_stream s;
    sip_stream_init(&s);
    framing_counters c = {0};
    assert_int_equal(sip_stream_feed(&s, NULL, (const uint8_t *)m, sizeof m - 1, &c), FRAMING_OK);
    assert_int_equal(framing_counter_get(&c, "OPTIONS"), 1);
    assert_int_equal(framing_counter_get(&c, "2xx"), 1);
}

static void errors_are_sticky(void **state)
{
    (void)state;
    static const char bad[] = "NOT SIP\r\n";
    static const char good[] = "OPTIONS sip:a SIP/2.0\r\nContent-Length: 0\r\n\r\n";
    sip_stream s;
    sip_stream_init(&s);
    framing_counters c = {0};
    assert_int_equal(sip_stream_feed(&s, NULL, (const uint8_t *)bad, sizeof bad - 1, &c),
                     FRAMING_ERROR);
    assert_int_equal(sip_stream_feed(&s, NULL, (const uint8_t *)good, sizeof good - 1, &c),
                     FRAMING_ERROR);
    assert_int_equal(c.used, 0);
    assert_true(s.error[0] != '\0');
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(register_with_challenge),
        cmocka_unit_test(invite_dialog_with_sdp_bodies),
        cmocka_unit_test(compact_and_missing_content_length),
        cmocka_unit_test(crlf_keepalives_between_messages),
        cmocka_unit_test(negotiated_compression_turns_both_directions_opaque),
        cmocka_unit_test(compressed_bytes_without_agreement_are_errors),
        cmocka_unit_test(bad_start_lines_are_rejected_early),
        cmocka_unit_test(bad_content_length_is_rejected),
        cmocka_unit_test(header_block_is_bounded),
        cmocka_unit_test(kerberos_register_of_20_kib_passes_in_any_pieces),
        cmocka_unit_test(head_over_the_bound_fails_with_its_reason),
        cmocka_unit_test(heads_over_8_kib_are_counted_once_each),
        cmocka_unit_test(stream_state_stays_small),
        cmocka_unit_test(bare_lf_keepalives_before_and_between_messages),
        cmocka_unit_test(only_exact_header_names_frame_the_body),
        cmocka_unit_test(errors_are_sticky),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
