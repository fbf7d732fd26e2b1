/* Feeds arbitrary bytes to every stream observer, split where the first input byte says, and
 * checks that a failed stream says why. */
#include "framing.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_counters(const framing_counters *c)
{
    if (c->used > FRAMING_MAX_COUNTERS) {
        abort();
    }
    for (unsigned i = 0; i < c->used; i++) {
        if (memchr(c->items[i].name, '\0', sizeof c->items[i].name) == NULL) {
            abort();
        }
    }
}

static void check_status(framing_status st, const char *error)
{
    if (st == FRAMING_ERROR && error[0] == '\0') {
        abort();
    }
}

static void fuzz_sip(const uint8_t *p, size_t split, size_t n)
{
    static sip_stream client, server;
    framing_counters counters;
    memset(&counters, 0, sizeof counters);
    sip_stream_init(&client);
    sip_stream_init(&server);
    /* The same bytes go both ways, so a NEGOTIATE can meet its own 200. */
    check_status(sip_stream_feed(&client, &server, p, split, &counters), client.error);
    check_status(sip_stream_feed(&server, &client, p, n, &counters), server.error);
    check_status(sip_stream_feed(&client, &server, p + split, n - split, &counters), client.error);
    check_counters(&counters);
}

/* The head scanner resumes at any byte: one piece or two must give the same verdict and counts. */
static void fuzz_sip_split_invariance(const uint8_t *p, size_t split, size_t n)
{
    static sip_stream whole, cut;
    static framing_counters whole_counters, cut_counters;
    memset(&whole_counters, 0, sizeof whole_counters);
    memset(&cut_counters, 0, sizeof cut_counters);
    sip_stream_init(&whole);
    sip_stream_init(&cut);
    framing_status a = sip_stream_feed(&whole, NULL, p, n, &whole_counters);
    framing_status b = sip_stream_feed(&cut, NULL, p, split, &cut_counters);
    if (b == FRAMING_OK) {
        b = sip_stream_feed(&cut, NULL, p + split, n - split, &cut_counters);
    }
    if (a != b || whole.large_heads != cut.large_heads ||
        memcmp(&whole_counters, &cut_counters, sizeof whole_counters) != 0) {
        abort();
    }
}

static void fuzz_msturn(const uint8_t *p, size_t split, size_t n, bool from_server)
{
    msturn_stream s;
    framing_counters counters;
    memset(&counters, 0, sizeof counters);
    msturn_stream_init(&s, from_server);
    check_status(msturn_stream_feed(&s, p, split, &counters), s.error);
    check_status(msturn_stream_feed(&s, p + split, n - split, &counters), s.error);
    check_counters(&counters);
}

static void fuzz_turn(const uint8_t *p, size_t split, size_t n)
{
    turn_stream s;
    framing_counters counters;
    memset(&counters, 0, sizeof counters);
    turn_stream_init(&s);
    check_status(turn_stream_feed(&s, p, split, &counters), s.error);
    check_status(turn_stream_feed(&s, p + split, n - split, &counters), s.error);
    check_counters(&counters);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) {
        return 0;
    }
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    size_t split = n == 0 ? 0 : (size_t)data[0] * n / 255;
    fuzz_sip(p, split, n);
    fuzz_sip_split_invariance(p, split, n);
    fuzz_msturn(p, split, n, false);
    fuzz_msturn(p, split, n, true);
    fuzz_turn(p, split, n);
    return 0;
}
