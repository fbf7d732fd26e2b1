/*
 * loadgen: drives a forward proxy through CONNECT tunnels (or an origin
 * directly) for the benchmark in bench/run.sh.
 *
 *   loadgen bulk --origin A:P [--proxy A:P] [--bytes N] [--max-secs S]
 *       One tunnel, one `GET /N`, body counted until N bytes or S seconds.
 *       Prints: bulk bytes=N secs=S mbps=X        (MB = 10^6 bytes)
 *       With --cpu-pids it adds cpu_s_per_gb: the processes' CPU seconds per 10^9 body bytes.
 *   loadgen rate --origin A:P [--proxy A:P] [--concurrency C] [--secs S] [--bytes N] [--raw]
 *       C clients loop: connect, CONNECT, 200, `GET /N`, read the response, close.
 *       With --raw the request is not HTTP: 8 bytes, "\0HOB" and N as a 32-bit big-endian
 *       number, answered by sink with N bytes and a close; no protocol matcher knows it.
 *       Prints: rate done=N errors=E secs=S per_sec=X p50_ms=X p99_ms=X
 *   loadgen tls-rate --origin A:P [--proxy A:P] [--sni NAME] [--names K [--once]] ...
 *       The same with TLS inside the tunnel: connect, CONNECT, 200, TLS handshake with SNI
 *       NAME, `GET /N` with `Host: NAME:P`, read the response, close. A %d in NAME is
 *       replaced by 0..K-1 in turn; with --once each name is used once and the run ends
 *       when all K exchanges have finished (--secs is then only a cap).
 *       Prints: tls-rate done=N errors=E secs=S per_sec=X p50_ms=X p99_ms=X
 *   loadgen keepalive --origin A:P [--proxy A:P] [--concurrency C] [--secs S] [--bytes N]
 *       C clients each open one connection to the proxy and loop absolute-form
 *       `GET http://A:P/N` on it (origin-form without --proxy).
 *   loadgen tls-keepalive --origin A:P [--proxy A:P] [--sni NAME] ...
 *       C clients each open one tunnel with TLS inside and loop `GET /N` on it.
 *       Both keep-alive modes time only the requests: the clock starts once all C
 *       connections are open. per_sec is requests per second, p50/p99 per request.
 *   loadgen hold --origin A:P [--proxy A:P] [--count N] [--parallel P] [--secs S]
 *       Opens N tunnels (at most P handshakes in flight) and keeps them idle.
 *       Prints "ready established=N failed=F" once all were tried, then holds
 *       them until S seconds pass or SIGTERM/SIGINT, then prints
 *       "end established=N lost=L" (L: tunnels the proxy closed meanwhile).
 *   loadgen tls-hold --origin A:P [--proxy A:P] [--sni NAME] [--count N] ...
 *       The same with TLS: each connection (CONNECT first with --proxy) completes a
 *       handshake and one keep-alive `GET /N`, so both legs of an intercepting proxy are
 *       open, and is then left idle.
 *
 * Without --proxy the client connects to the origin and skips the CONNECT. Every response
 * must be a 200 whose body has the requested length (N bytes); anything else counts as an
 * error, and the first failure's cause is printed on stderr. Certificates are not verified:
 * the TLS modes measure the proxies, not trust. Sessions are never resumed, so every TLS
 * connection is a full handshake. Single-threaded; bulk uses blocking I/O, the others epoll.
 *
 * With --cpu-pids P1,P2,... the rate and keep-alive modes also print cpu_us_per_op: the CPU
 * time those processes used during the timed part, divided by the completed exchanges.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define HEAD_MAX      4096
#define BULK_BUF      (256 * 1024)
#define MAX_LATENCIES (1 << 22)
#define REQUEST_MAX   512
#define NAME_MAX_LEN  256
#define RAW_REQ_LEN   8
/* Keep-alive modes give up waiting for every connection to open after this long. */
#define OPEN_WAIT_SECS 20.0

enum mode {
    MODE_BULK,
    MODE_RATE,
    MODE_HOLD,
    MODE_KEEPALIVE,
    MODE_TLS_RATE,
    MODE_TLS_KEEPALIVE,
    MODE_TLS_HOLD,
};

static const char *const mode_names[] = {
    [MODE_BULK] = "bulk",         [MODE_RATE] = "rate",
    [MODE_HOLD] = "hold",         [MODE_KEEPALIVE] = "keepalive",
    [MODE_TLS_RATE] = "tls-rate", [MODE_TLS_KEEPALIVE] = "tls-keepalive",
    [MODE_TLS_HOLD] = "tls-hold",
};

struct options {
    enum mode mode;
    bool use_proxy;
    bool tunnel;    /* CONNECT through the proxy first (all modes but keepalive) */
    bool tls;       /* TLS inside the tunnel (or straight to the origin) */
    bool keepalive; /* many requests per connection */
    bool raw;       /* rate: the non-HTTP request */
    bool once;      /* tls-rate: each of --names used once, then stop */
    struct sockaddr_in proxy;
    struct sockaddr_in origin;
    char origin_text[64];
    char sni[NAME_MAX_LEN];
    int names;
    uint64_t bytes;
    double secs;
    int concurrency;
    int count;
    int parallel;
    char cpu_pids[256]; /* comma-separated processes whose CPU time is reported */
};

/* Where the head of an HTTP message ends and what it said. */
struct head_info {
    size_t head_len;
    int status;
    bool has_length;
    uint64_t content_length;
};

static volatile sig_atomic_t stop_requested;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void on_stop_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static int parse_addr(const char *spec, struct sockaddr_in *sa)
{
    char host[64];
    const char *colon = strrchr(spec, ':');
    if (colon == NULL || (size_t)(colon - spec) >= sizeof host)
        return -1;
    memcpy(host, spec, (size_t)(colon - spec));
    host[colon - spec] = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end != '\0' || port <= 0 || port > 65535)
        return -1;
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)port);
    return inet_pton(AF_INET, host, &sa->sin_addr) == 1 ? 0 : -1;
}

/*
 * Parses a complete head in buf[0..len). Returns 1 when the head is complete,
 * 0 when more bytes are needed, -1 when it is malformed or too long.
 */
static int parse_head(const char *buf, size_t len, struct head_info *out)
{
    const char *end = memmem(buf, len, "\r\n\r\n", 4);
    if (end == NULL)
        return len >= HEAD_MAX ? -1 : 0;
    memset(out, 0, sizeof *out);
    out->head_len = (size_t)(end - buf) + 4;
    if (out->head_len < 12 || memcmp(buf, "HTTP/1.", 7) != 0 || buf[8] != ' ')
        return -1;
    out->status = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
    static const char name[] = "content-length:";
    const char *line = memmem(buf, out->head_len, "\r\n", 2);
    while (line != NULL && line + 2 < end) {
        line += 2;
        size_t room = (size_t)(end - line);
        if (room > sizeof name - 1 && strncasecmp(line, name, sizeof name - 1) == 0) {
            out->has_length = true;
            out->content_length = strtoull(line + sizeof name - 1, NULL, 10);
        }
        line = memmem(line, (size_t)(end - line) + 2, "\r\n", 2);
    }
    return 1;
}

static int format_connect(char *out, size_t cap, const struct options *o)
{
    return snprintf(out, cap, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", o->origin_text,
                    o->origin_text);
}

static int format_get(char *out, size_t cap, const struct options *o)
{
    return snprintf(out, cap,
                    "GET /%" PRIu64 " HTTP/1.1\r\nHost: %s\r\nUser-Agent: handoff-loadgen\r\n"
                    "Connection: close\r\n\r\n",
                    o->bytes, o->origin_text);
}

static const struct sockaddr_in *first_hop(const struct options *o)
{
    return o->use_proxy ? &o->proxy : &o->origin;
}

static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static double cpu_seconds(const char *pids);

/* ---- bulk: blocking, one connection ---- */

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/*
 * Reads until a full head is in buf; *got is everything read so far.
 * On failure says why on stderr, prefixed by `what`.
 */
static int read_head_blocking(int fd, char *buf, size_t *got, struct head_info *hi,
                              const char *what)
{
    *got = 0;
    memset(hi, 0, sizeof *hi);
    for (;;) {
        ssize_t r = read(fd, buf + *got, HEAD_MAX - *got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            fprintf(stderr, "loadgen bulk: %s: %s\n", what, strerror(errno));
            return -1;
        }
        if (r == 0) {
            fprintf(stderr, "loadgen bulk: %s: closed after %zu bytes\n", what, *got);
            return -1;
        }
        *got += (size_t)r;
        int rc = parse_head(buf, *got, hi);
        if (rc < 0)
            fprintf(stderr, "loadgen bulk: %s: malformed head\n", what);
        if (rc != 0)
            return rc > 0 ? 0 : -1;
    }
}

static int run_bulk(const struct options *o)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (const struct sockaddr *)first_hop(o), sizeof o->proxy) < 0) {
        perror("loadgen bulk: connect");
        return 1;
    }
    /* A proxy that stalls must not hang the benchmark. */
    struct timeval stall = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &stall, sizeof stall);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &stall, sizeof stall);
    char head[HEAD_MAX];
    size_t got;
    struct head_info hi;
    if (o->use_proxy) {
        int n = format_connect(head, sizeof head, o);
        if (write_all(fd, head, (size_t)n) < 0 ||
            read_head_blocking(fd, head, &got, &hi, "CONNECT") < 0)
            return 1;
        if (hi.status != 200 || got != hi.head_len) {
            fprintf(stderr, "loadgen bulk: CONNECT answered %d\n", hi.status);
            return 1;
        }
    }
    double cpu_start = cpu_seconds(o->cpu_pids);
    double start = now_s();
    int n = format_get(head, sizeof head, o);
    if (write_all(fd, head, (size_t)n) < 0 || read_head_blocking(fd, head, &got, &hi, "GET") < 0)
        return 1;
    if (hi.status != 200 || !hi.has_length || hi.content_length != o->bytes) {
        fprintf(stderr, "loadgen bulk: GET answered %d, length %" PRIu64 "\n", hi.status,
                hi.content_length);
        return 1;
    }
    uint64_t body = got - hi.head_len;
    char *buf = malloc(BULK_BUF);
    if (buf == NULL)
        return 1;
    double deadline = start + o->secs;
    double end = start;
    bool cut_short = false;
    while (body < o->bytes) {
        ssize_t r = read(fd, buf, BULK_BUF);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        body += (uint64_t)r;
        end = now_s();
        if (end > deadline) {
            cut_short = true;
            break;
        }
    }
    end = now_s();
    double cpu = cpu_seconds(o->cpu_pids) - cpu_start;
    free(buf);
    close(fd);
    if (body < o->bytes && !cut_short) {
        fprintf(stderr, "loadgen bulk: stream ended after %" PRIu64 " of %" PRIu64 " bytes\n", body,
                o->bytes);
        return 1;
    }
    double secs = end - start;
    printf("bulk bytes=%" PRIu64 " secs=%.3f mbps=%.1f", body, secs, (double)body / secs / 1e6);
    if (o->cpu_pids[0] != '\0' && body > 0)
        printf(" cpu_s_per_gb=%.3f", cpu * 1e9 / (double)body);
    printf("%s\n", cut_short ? " cut_short=1" : "");
    return 0;
}

/* ---- rate, keep-alive and hold: one epoll state machine per client ---- */

enum client_state {
    IDLE_SLOT,
    CONNECTING,
    SENDING, /* out[] is being written; then after_send */
    AWAIT_200,
    TLS_HANDSHAKE,
    AWAIT_RESPONSE,
    READY,       /* keep-alive: open, waiting for the timed part to begin */
    ESTABLISHED, /* hold: tunnel open and idle */
};

/* What one step of a client's state machine achieved. */
enum step { STEP_FAIL = -1, STEP_WAIT = 0, STEP_DONE = 1, STEP_NEXT = 2 };

struct client {
    int fd;
    SSL *ssl;
    enum client_state state;
    enum client_state after_send;
    uint32_t interest; /* the epoll events registered for fd */
    double started;    /* connection start (rate) or request start (keep-alive) */
    char name[NAME_MAX_LEN];
    char out[REQUEST_MAX];
    size_t out_len;
    size_t out_off;
    size_t len;
    bool head_done;
    uint64_t body_need;
    uint64_t body_got;
    char buf[HEAD_MAX];
};

struct run {
    const struct options *o;
    SSL_CTX *tls;
    int ep;
    struct client *clients;
    int nclients;
    bool timing; /* keep-alive: requests go out only once this is set */
    uint64_t started_exchanges;
    uint64_t next_name;
    uint64_t done;
    uint64_t errors;
    uint64_t lost;
    int established;
    const char *first_error;
    float *latencies;
    size_t nlat;
};

static void note_error(struct run *r, const char *why)
{
    r->errors++;
    if (r->first_error == NULL)
        r->first_error = why;
}

static void set_interest(struct run *r, struct client *c, uint32_t events)
{
    if (c->interest == events)
        return;
    struct epoll_event ev = {.events = events, .data.ptr = c};
    epoll_ctl(r->ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->interest = events;
}

static void client_reset(struct run *r, struct client *c)
{
    if (c->ssl != NULL) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0) {
        epoll_ctl(r->ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
    c->state = IDLE_SLOT;
    c->interest = 0;
    c->len = 0;
    c->head_done = false;
    c->body_got = 0;
    c->body_need = 0;
}

/* The SNI name for the next connection: the pattern with its %d replaced, if it has one. */
static void pick_name(struct run *r, struct client *c)
{
    const char *pattern = r->o->sni;
    const char *mark = strstr(pattern, "%d");
    if (mark == NULL || r->o->names <= 0) {
        snprintf(c->name, sizeof c->name, "%s", pattern);
        return;
    }
    uint64_t index = r->next_name++ % (uint64_t)r->o->names;
    snprintf(c->name, sizeof c->name, "%.*s%" PRIu64 "%s", (int)(mark - pattern), pattern, index,
             mark + 2);
}

/* Whether another exchange may begin: before the deadline and, with --once, names are left. */
static bool may_start(const struct run *r, double deadline)
{
    if (stop_requested || now_s() >= deadline)
        return false;
    return !(r->o->once && r->started_exchanges >= (uint64_t)r->o->names);
}

static int client_start(struct run *r, struct client *c)
{
    r->started_exchanges++;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return -1;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->started = now_s();
    c->state = CONNECTING;
    if (r->o->tls)
        pick_name(r, c);
    const struct sockaddr_in *to = first_hop(r->o);
    if (connect(c->fd, (const struct sockaddr *)to, sizeof *to) < 0 && errno != EINPROGRESS)
        return -1;
    c->interest = EPOLLOUT;
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
    return epoll_ctl(r->ep, EPOLL_CTL_ADD, c->fd, &ev);
}

/* Maps a failed TLS call to waiting for the readiness it asks for, or to a failure. */
static int tls_wait(struct run *r, struct client *c, int rc, const char *what)
{
    switch (SSL_get_error(c->ssl, rc)) {
    case SSL_ERROR_WANT_READ:
        set_interest(r, c, EPOLLIN);
        return STEP_WAIT;
    case SSL_ERROR_WANT_WRITE:
        set_interest(r, c, EPOLLOUT);
        return STEP_WAIT;
    default:
        note_error(r, what);
        return STEP_FAIL;
    }
}

/* Reads plain or TLS bytes: the count, 0 when none are ready (interest set), -1 on EOF/error. */
static ssize_t client_read(struct run *r, struct client *c, char *into, size_t room)
{
    if (c->ssl == NULL) {
        ssize_t n = read(c->fd, into, room);
        if (n > 0)
            return n;
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            set_interest(r, c, EPOLLIN);
            return 0;
        }
        note_error(r, n == 0 ? "closed by the peer" : "read failed");
        return -1;
    }
    ERR_clear_error();
    int n = SSL_read(c->ssl, into, (int)room);
    if (n > 0)
        return n;
    return tls_wait(r, c, n, "TLS read failed or closed") == STEP_WAIT ? 0 : -1;
}

static void queue_send(struct client *c, size_t len, enum client_state next)
{
    c->out_len = len;
    c->out_off = 0;
    c->state = SENDING;
    c->after_send = next;
}

static int send_pending(struct run *r, struct client *c)
{
    while (c->out_off < c->out_len) {
        const char *from = c->out + c->out_off;
        size_t left = c->out_len - c->out_off;
        if (c->ssl != NULL) {
            ERR_clear_error();
            /* Retried with the same arguments after WANT_*, as SSL_write requires. */
            int n = SSL_write(c->ssl, from, (int)left);
            if (n <= 0)
                return tls_wait(r, c, n, "TLS write failed");
            c->out_off += (size_t)n;
            continue;
        }
        ssize_t n = write(c->fd, from, left);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            set_interest(r, c, EPOLLOUT);
            return STEP_WAIT;
        }
        if (n <= 0) {
            note_error(r, "write failed");
            return STEP_FAIL;
        }
        c->out_off += (size_t)n;
    }
    c->state = c->after_send;
    c->len = 0;
    c->head_done = false;
    c->body_got = 0;
    c->body_need = 0;
    set_interest(r, c, EPOLLIN);
    return STEP_NEXT;
}

static void begin_request(struct run *r, struct client *c)
{
    const struct options *o = r->o;
    int n;
    if (o->raw) {
        memcpy(c->out, "\0HOB", 4);
        uint32_t be = htonl((uint32_t)o->bytes);
        memcpy(c->out + 4, &be, 4);
        n = RAW_REQ_LEN;
    } else if (o->tls) {
        n = snprintf(c->out, sizeof c->out,
                     "GET /%" PRIu64
                     " HTTP/1.1\r\nHost: %s:%u\r\nUser-Agent: handoff-loadgen\r\n%s\r\n",
                     o->bytes, c->name, ntohs(o->origin.sin_port),
                     o->keepalive ? "" : "Connection: close\r\n");
    } else if (o->keepalive && o->use_proxy) {
        n = snprintf(c->out, sizeof c->out,
                     "GET http://%s/%" PRIu64 " HTTP/1.1\r\nHost: %s\r\n"
                     "User-Agent: handoff-loadgen\r\n\r\n",
                     o->origin_text, o->bytes, o->origin_text);
    } else {
        n = snprintf(c->out, sizeof c->out,
                     "GET /%" PRIu64
                     " HTTP/1.1\r\nHost: %s\r\nUser-Agent: handoff-loadgen\r\n%s\r\n",
                     o->bytes, o->origin_text, o->keepalive ? "" : "Connection: close\r\n");
    }
    if (o->keepalive)
        c->started = now_s();
    queue_send(c, (size_t)n, AWAIT_RESPONSE);
}

/* The connection (and tunnel) can carry requests: send one, or wait for the timed part. */
static int ready_to_speak(struct run *r, struct client *c)
{
    if (r->o->mode == MODE_HOLD) {
        c->state = ESTABLISHED;
        set_interest(r, c, EPOLLIN);
        return STEP_WAIT;
    }
    if (r->o->keepalive && !r->timing) {
        c->state = READY;
        set_interest(r, c, EPOLLIN);
        return STEP_WAIT;
    }
    begin_request(r, c);
    return STEP_NEXT;
}

static int begin_tls(struct run *r, struct client *c)
{
    c->ssl = SSL_new(r->tls);
    if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1 ||
        SSL_set_tlsext_host_name(c->ssl, c->name) != 1) {
        note_error(r, "TLS set-up failed");
        return STEP_FAIL;
    }
    SSL_set_connect_state(c->ssl);
    c->state = TLS_HANDSHAKE;
    return STEP_NEXT;
}

static int after_tunnel(struct run *r, struct client *c)
{
    return r->o->tls ? begin_tls(r, c) : ready_to_speak(r, c);
}

static int finish_connect(struct run *r, struct client *c)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err != 0) {
        note_error(r, "connect failed");
        return STEP_FAIL;
    }
    if (r->o->tunnel) {
        int n = snprintf(c->out, sizeof c->out, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n",
                         r->o->origin_text, r->o->origin_text);
        queue_send(c, (size_t)n, AWAIT_200);
        return STEP_NEXT;
    }
    return after_tunnel(r, c);
}

static int read_tunnel_head(struct run *r, struct client *c)
{
    ssize_t n = client_read(r, c, c->buf + c->len, HEAD_MAX - c->len);
    if (n <= 0)
        return n == 0 ? STEP_WAIT : STEP_FAIL;
    c->len += (size_t)n;
    struct head_info hi;
    int rc = parse_head(c->buf, c->len, &hi);
    if (rc == 0)
        return STEP_WAIT;
    if (rc < 0 || hi.status != 200 || c->len != hi.head_len) {
        note_error(r, "CONNECT not answered with a bare 200");
        return STEP_FAIL;
    }
    return after_tunnel(r, c);
}

static int handshake(struct run *r, struct client *c)
{
    ERR_clear_error();
    int rc = SSL_do_handshake(c->ssl);
    if (rc != 1)
        return tls_wait(r, c, rc, "TLS handshake failed");
    return ready_to_speak(r, c);
}

/* Reads the response until its body is complete (STEP_DONE). */
static int read_response(struct run *r, struct client *c)
{
    char scratch[16384];
    for (;;) {
        bool into_head = !c->head_done && !r->o->raw;
        char *into = into_head ? c->buf + c->len : scratch;
        size_t room = into_head ? HEAD_MAX - c->len : sizeof scratch;
        ssize_t n = client_read(r, c, into, room);
        if (n <= 0)
            return n == 0 ? STEP_WAIT : STEP_FAIL;
        if (r->o->raw) {
            c->body_need = r->o->bytes;
            c->body_got += (uint64_t)n;
        } else if (c->head_done) {
            c->body_got += (uint64_t)n;
        } else {
            c->len += (size_t)n;
            struct head_info hi;
            int rc = parse_head(c->buf, c->len, &hi);
            if (rc == 0)
                continue;
            if (rc < 0 || hi.status != 200) {
                note_error(r, rc < 0 ? "malformed response head" : "response status not 200");
                return STEP_FAIL;
            }
            if (!hi.has_length || hi.content_length != r->o->bytes) {
                note_error(r, "response without the requested Content-Length");
                return STEP_FAIL;
            }
            c->head_done = true;
            c->body_need = hi.content_length;
            c->body_got = c->len - hi.head_len;
        }
        if ((c->head_done || r->o->raw) && c->body_got >= c->body_need) {
            if (c->body_got > c->body_need) {
                note_error(r, "more body bytes than announced");
                return STEP_FAIL;
            }
            return STEP_DONE;
        }
    }
}

/*
 * An open connection waiting to be used: TLS may still process records (a TLS 1.3 server
 * sends its session tickets after the handshake); any data or an EOF means it is lost.
 */
static int check_idle(struct run *r, struct client *c)
{
    char scratch[512];
    ssize_t n = client_read(r, c, scratch, sizeof scratch);
    if (n == 0)
        return STEP_WAIT;
    if (n > 0)
        note_error(r, "bytes arrived on an idle connection");
    return STEP_FAIL;
}

/* Moves a client on until it has to wait. Returns STEP_WAIT, STEP_DONE or STEP_FAIL. */
static int advance(struct run *r, struct client *c)
{
    for (;;) {
        int rc;
        switch (c->state) {
        case CONNECTING:
            rc = finish_connect(r, c);
            break;
        case SENDING:
            rc = send_pending(r, c);
            break;
        case AWAIT_200:
            rc = read_tunnel_head(r, c);
            break;
        case TLS_HANDSHAKE:
            rc = handshake(r, c);
            break;
        case AWAIT_RESPONSE:
            rc = read_response(r, c);
            break;
        case READY:
            rc = check_idle(r, c);
            break;
        default:
            note_error(r, "event on a connection with nothing to do");
            return STEP_FAIL;
        }
        if (rc != STEP_NEXT)
            return rc;
    }
}

static void record_latency(struct run *r, double secs)
{
    if (r->nlat < MAX_LATENCIES)
        r->latencies[r->nlat++] = (float)(secs * 1e3);
}

static int compare_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static SSL_CTX *client_tls_context(void)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL)
        return NULL;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    /* Every connection pays a full handshake, as a first visit does. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    return ctx;
}

static void run_init(struct run *r, const struct options *o, int nclients)
{
    memset(r, 0, sizeof *r);
    r->o = o;
    r->ep = epoll_create1(EPOLL_CLOEXEC);
    r->nclients = nclients;
    r->clients = calloc((size_t)nclients, sizeof *r->clients);
    r->tls = o->tls ? client_tls_context() : NULL;
    if (r->ep < 0 || r->clients == NULL || (o->tls && r->tls == NULL)) {
        perror("loadgen: setup");
        exit(1);
    }
    for (int i = 0; i < nclients; i++)
        r->clients[i].fd = -1;
}

static void run_free(struct run *r)
{
    for (int i = 0; i < r->nclients; i++)
        client_reset(r, &r->clients[i]);
    free(r->clients);
    free(r->latencies);
    SSL_CTX_free(r->tls);
    close(r->ep);
}

/* (Re)starts a slot if the run still wants exchanges; a slot that cannot start is an error. */
static void refill(struct run *r, struct client *c, double deadline)
{
    if (c->state != IDLE_SLOT || !may_start(r, deadline))
        return;
    if (client_start(r, c) < 0) {
        note_error(r, "socket or connect failed");
        client_reset(r, c);
    }
}

static bool any_busy(const struct run *r)
{
    for (int i = 0; i < r->nclients; i++) {
        if (r->clients[i].state != IDLE_SLOT)
            return true;
    }
    return false;
}

static bool all_ready(const struct run *r)
{
    for (int i = 0; i < r->nclients; i++) {
        if (r->clients[i].state != READY && r->clients[i].state != IDLE_SLOT)
            return false;
    }
    return true;
}

/* Keep-alive: opens every connection before the clock starts. Returns how many opened. */
static int open_all(struct run *r)
{
    double give_up = now_s() + OPEN_WAIT_SECS;
    for (int i = 0; i < r->nclients; i++)
        refill(r, &r->clients[i], give_up);
    struct epoll_event events[256];
    while (!all_ready(r) && now_s() < give_up && !stop_requested) {
        int n = epoll_wait(r->ep, events, 256, 100);
        for (int i = 0; i < n; i++) {
            struct client *c = events[i].data.ptr;
            if (advance(r, c) == STEP_FAIL) {
                client_reset(r, c);
                refill(r, c, give_up);
            }
        }
    }
    int ready = 0;
    for (int i = 0; i < r->nclients; i++) {
        struct client *c = &r->clients[i];
        if (c->state == READY) {
            ready++;
        } else if (c->state != IDLE_SLOT) {
            note_error(r, "connection still not open when the timed part began");
            client_reset(r, c);
        }
    }
    return ready;
}

static void finish_exchange(struct run *r, struct client *c, int rc, double deadline)
{
    /* A keep-alive client whose next response is already there completes several in a row. */
    while (rc == STEP_DONE) {
        r->done++;
        record_latency(r, now_s() - c->started);
        if (!r->o->keepalive || !may_start(r, deadline))
            break;
        begin_request(r, c);
        rc = advance(r, c);
    }
    if (rc == STEP_WAIT)
        return;
    client_reset(r, c);
    refill(r, c, deadline);
}

/*
 * CPU time (user + system, plus that of waited-for children) of the listed processes, in
 * seconds, from /proc/PID/stat. A process that is gone counts as 0.
 */
static double cpu_seconds(const char *pids)
{
    static long ticks_per_sec;
    if (ticks_per_sec == 0)
        ticks_per_sec = sysconf(_SC_CLK_TCK);
    double total = 0;
    const char *p = pids;
    while (*p != '\0') {
        char *end;
        long pid = strtol(p, &end, 10);
        if (end == p)
            break;
        p = *end == ',' ? end + 1 : end;
        char path[64], line[1024];
        snprintf(path, sizeof path, "/proc/%ld/stat", pid);
        FILE *f = fopen(path, "r");
        if (f == NULL)
            continue;
        size_t n = fread(line, 1, sizeof line - 1, f);
        fclose(f);
        line[n] = '\0';
        /* The command name may hold spaces; the fields after it are fixed. */
        const char *after = strrchr(line, ')');
        unsigned long long ut, st;
        long long cut, cst;
        if (after != NULL &&
            sscanf(after + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %lld %lld",
                   &ut, &st, &cut, &cst) == 4)
            total += (double)(ut + st) + (double)(cut + cst);
    }
    return total / (double)ticks_per_sec;
}

static int run_load(const struct options *o)
{
    struct run r;
    run_init(&r, o, o->concurrency);
    r.latencies = malloc(sizeof(float) * MAX_LATENCIES);
    if (r.latencies == NULL)
        return 1;
    struct sigaction sa = {.sa_handler = on_stop_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    int opened = 0;
    if (o->keepalive)
        opened = open_all(&r);
    r.timing = true;
    double cpu_start = cpu_seconds(o->cpu_pids);
    double start = now_s();
    double deadline = start + o->secs;
    for (int i = 0; i < r.nclients; i++) {
        struct client *c = &r.clients[i];
        if (c->state == READY) {
            begin_request(&r, c);
            finish_exchange(&r, c, advance(&r, c), deadline);
        } else {
            refill(&r, c, deadline);
        }
    }
    struct epoll_event events[256];
    while (!stop_requested) {
        double now = now_s();
        if (now >= deadline || (o->once && !any_busy(&r)))
            break;
        int n = epoll_wait(r.ep, events, 256, (int)((deadline - now) * 1e3) + 1);
        if (n < 0 && errno != EINTR)
            break;
        for (int i = 0; i < n; i++) {
            struct client *c = events[i].data.ptr;
            finish_exchange(&r, c, advance(&r, c), deadline);
        }
    }
    double secs = now_s() - start;
    double cpu = cpu_seconds(o->cpu_pids) - cpu_start;
    qsort(r.latencies, r.nlat, sizeof(float), compare_float);
    double p50 = r.nlat ? r.latencies[r.nlat / 2] : 0;
    double p99 = r.nlat ? r.latencies[(size_t)((double)r.nlat * 0.99)] : 0;
    if (r.first_error != NULL)
        fprintf(stderr, "loadgen %s: %" PRIu64 " errors, the first: %s\n", mode_names[o->mode],
                r.errors, r.first_error);
    if (o->keepalive && opened < r.nclients)
        fprintf(stderr, "loadgen %s: only %d of %d connections opened before the timed part\n",
                mode_names[o->mode], opened, r.nclients);
    printf("%s done=%" PRIu64 " errors=%" PRIu64 " secs=%.3f per_sec=%.1f p50_ms=%.3f "
           "p99_ms=%.3f",
           mode_names[o->mode], r.done, r.errors, secs, (double)r.done / secs, p50, p99);
    if (o->cpu_pids[0] != '\0' && r.done > 0)
        printf(" cpu_us_per_op=%.1f", cpu * 1e6 / (double)r.done);
    printf("\n");
    run_free(&r);
    return r.done > 0 ? 0 : 1;
}

/* A plain idle connection that became readable: true if nothing really arrived. */
static bool idle_still_open(struct client *c)
{
    char scratch[512];
    ssize_t got = read(c->fd, scratch, sizeof scratch);
    return got < 0 && errno == EAGAIN;
}

static int run_hold(const struct options *o)
{
    struct run r;
    run_init(&r, o, o->count);
    r.timing = true; /* tls-hold: the one request goes out as soon as TLS is up */
    struct sigaction sa = {.sa_handler = on_stop_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    double start = now_s();
    double deadline = start + o->secs;
    /* Give up on opening after half the time so the caller can still measure. */
    double open_deadline = start + o->secs / 2;
    int next = 0, in_flight = 0, failed = 0;
    bool ready_said = false;
    struct epoll_event events[256];
    while (!stop_requested && now_s() < deadline) {
        while (next < r.nclients && in_flight < o->parallel && now_s() < open_deadline) {
            struct client *c = &r.clients[next++];
            if (client_start(&r, c) < 0) {
                failed++;
                client_reset(&r, c);
            } else {
                in_flight++;
            }
        }
        if (!ready_said && ((in_flight == 0 && next == r.nclients) || now_s() >= open_deadline)) {
            printf("ready established=%d failed=%d\n", r.established, failed + in_flight);
            fflush(stdout);
            ready_said = true;
        }
        int n = epoll_wait(r.ep, events, 256, 100);
        for (int i = 0; i < n; i++) {
            struct client *c = events[i].data.ptr;
            if (c->state == ESTABLISHED) {
                /* An idle tunnel that becomes readable was closed (or spoke): it is lost. */
                if (c->ssl != NULL ? check_idle(&r, c) == STEP_WAIT : idle_still_open(c))
                    continue;
                r.lost++;
                r.established--;
                client_reset(&r, c);
                continue;
            }
            int rc = advance(&r, c);
            if (rc == STEP_DONE && o->mode == MODE_TLS_HOLD) {
                c->state = ESTABLISHED; /* its one request answered: now idle */
                set_interest(&r, c, EPOLLIN);
                rc = STEP_WAIT;
            }
            if (rc == STEP_WAIT && c->state != ESTABLISHED)
                continue;
            in_flight--;
            if (rc == STEP_WAIT) {
                r.established++;
            } else {
                failed++;
                client_reset(&r, c);
            }
        }
    }
    printf("end established=%d lost=%" PRIu64 "\n", r.established, r.lost);
    fflush(stdout);
    run_free(&r);
    return 0;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: loadgen bulk|rate|tls-rate|keepalive|tls-keepalive|hold|tls-hold --origin "
            "ADDR:PORT\n"
            "       [--proxy ADDR:PORT] [--bytes N] [--secs S] [--max-secs S] [--concurrency C]\n"
            "       [--raw] [--sni NAME] [--names K] [--once] [--count N] [--parallel P]\n"
            "       [--cpu-pids PID,PID...]\n");
    exit(2);
}

static void parse_options(int argc, char **argv, struct options *o)
{
    memset(o, 0, sizeof *o);
    if (argc < 2)
        usage();
    size_t mode_count = sizeof mode_names / sizeof mode_names[0];
    size_t m = 0;
    while (m < mode_count && strcmp(argv[1], mode_names[m]) != 0)
        m++;
    if (m == mode_count)
        usage();
    o->mode = (enum mode)m;
    o->tls = o->mode == MODE_TLS_RATE || o->mode == MODE_TLS_KEEPALIVE || o->mode == MODE_TLS_HOLD;
    o->keepalive =
        o->mode == MODE_KEEPALIVE || o->mode == MODE_TLS_KEEPALIVE || o->mode == MODE_TLS_HOLD;
    o->bytes = o->mode == MODE_BULK ? (uint64_t)1 << 30 : 100;
    o->secs = o->mode == MODE_BULK                                 ? 30
              : (o->mode == MODE_HOLD || o->mode == MODE_TLS_HOLD) ? 120
                                                                   : 10;
    o->concurrency = 64;
    o->count = 5000;
    o->parallel = 200;
    strcpy(o->sni, "bench.test");
    bool have_origin = false;
    for (int i = 2; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--raw") == 0) {
            o->raw = true;
            continue;
        }
        if (strcmp(arg, "--once") == 0) {
            o->once = true;
            continue;
        }
        if (i + 1 >= argc)
            usage();
        const char *val = argv[++i];
        if (strcmp(arg, "--proxy") == 0) {
            if (parse_addr(val, &o->proxy) < 0)
                usage();
            o->use_proxy = true;
        } else if (strcmp(arg, "--origin") == 0) {
            if (parse_addr(val, &o->origin) < 0 || strlen(val) >= sizeof o->origin_text)
                usage();
            strcpy(o->origin_text, val);
            have_origin = true;
        } else if (strcmp(arg, "--sni") == 0) {
            /* Room for the longest number that replaces %d. */
            if (strlen(val) + 20 >= sizeof o->sni)
                usage();
            strcpy(o->sni, val);
        } else if (strcmp(arg, "--cpu-pids") == 0) {
            if (strlen(val) >= sizeof o->cpu_pids)
                usage();
            strcpy(o->cpu_pids, val);
        } else if (strcmp(arg, "--names") == 0) {
            o->names = atoi(val);
        } else if (strcmp(arg, "--bytes") == 0) {
            o->bytes = strtoull(val, NULL, 10);
        } else if (strcmp(arg, "--secs") == 0 || strcmp(arg, "--max-secs") == 0) {
            o->secs = strtod(val, NULL);
        } else if (strcmp(arg, "--concurrency") == 0) {
            o->concurrency = atoi(val);
        } else if (strcmp(arg, "--count") == 0) {
            o->count = atoi(val);
        } else if (strcmp(arg, "--parallel") == 0) {
            o->parallel = atoi(val);
        } else {
            usage();
        }
    }
    bool bad_raw = o->raw && (o->mode != MODE_RATE || o->bytes > UINT32_MAX);
    bool bad_once = o->once && (o->mode != MODE_TLS_RATE || o->names <= 0);
    o->tunnel = o->use_proxy && o->mode != MODE_KEEPALIVE;
    if (!have_origin || o->secs <= 0 || o->concurrency <= 0 || o->count <= 0 || o->parallel <= 0 ||
        o->names < 0 || bad_raw || bad_once)
        usage();
}

int main(int argc, char **argv)
{
    struct options o;
    parse_options(argc, argv, &o);
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();
    switch (o.mode) {
    case MODE_BULK:
        return run_bulk(&o);
    case MODE_HOLD:
    case MODE_TLS_HOLD:
        return run_hold(&o);
    case MODE_RATE:
    case MODE_KEEPALIVE:
    case MODE_TLS_RATE:
    case MODE_TLS_KEEPALIVE:
        return run_load(&o);
    }
    return 2;
}
