/*
 * loadgen: drives a forward proxy through CONNECT tunnels (or an origin
 * directly) for the benchmark in bench/run.sh.
 *
 *   loadgen bulk --origin A:P [--proxy A:P] [--bytes N] [--max-secs S]
 *       One tunnel, one `GET /N`, body counted until N bytes or S seconds.
 *       Prints: bulk bytes=N secs=S mbps=X        (MB = 10^6 bytes)
 *   loadgen rate --origin A:P [--proxy A:P] [--concurrency C] [--secs S] [--bytes N]
 *       C clients loop: connect, CONNECT, 200, `GET /N`, read the response, close.
 *       Prints: rate done=N errors=E secs=S per_sec=X p50_ms=X p99_ms=X
 *   loadgen hold --origin A:P [--proxy A:P] [--count N] [--parallel P] [--secs S]
 *       Opens N tunnels (at most P handshakes in flight) and keeps them idle.
 *       Prints "ready established=N failed=F" once all were tried, then holds
 *       them until S seconds pass or SIGTERM/SIGINT, then prints
 *       "end established=N lost=L" (L: tunnels the proxy closed meanwhile).
 *
 * Without --proxy the client connects to the origin and skips the CONNECT.
 * Single-threaded; bulk uses blocking I/O, rate and hold use epoll.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
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

enum mode { MODE_BULK, MODE_RATE, MODE_HOLD };

struct options {
    enum mode mode;
    bool use_proxy;
    struct sockaddr_in proxy;
    struct sockaddr_in origin;
    char origin_text[64];
    uint64_t bytes;
    double secs;
    int concurrency;
    int count;
    int parallel;
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
    free(buf);
    close(fd);
    if (body < o->bytes && !cut_short) {
        fprintf(stderr, "loadgen bulk: stream ended after %" PRIu64 " of %" PRIu64 " bytes\n", body,
                o->bytes);
        return 1;
    }
    double secs = end - start;
    printf("bulk bytes=%" PRIu64 " secs=%.3f mbps=%.1f%s\n", body, secs, (double)body / secs / 1e6,
           cut_short ? " cut_short=1" : "");
    return 0;
}

/* ---- rate and hold: epoll state machines ---- */

enum client_state { IDLE_SLOT, CONNECTING, AWAIT_200, AWAIT_RESPONSE, ESTABLISHED };

struct client {
    int fd;
    enum client_state state;
    double started;
    size_t len;
    bool head_done;
    uint64_t body_need;
    uint64_t body_got;
    char buf[HEAD_MAX];
};

struct run {
    const struct options *o;
    int ep;
    struct client *clients;
    int nclients;
    char connect_req[256];
    size_t connect_len;
    char get_req[256];
    size_t get_len;
    uint64_t done;
    uint64_t errors;
    uint64_t lost;
    int established;
    int attempted;
    float *latencies;
    size_t nlat;
};

static void client_reset(struct run *r, struct client *c)
{
    if (c->fd >= 0) {
        epoll_ctl(r->ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
    c->state = IDLE_SLOT;
    c->len = 0;
    c->head_done = false;
    c->body_got = 0;
    c->body_need = 0;
}

static int client_start(struct run *r, struct client *c)
{
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return -1;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->started = now_s();
    c->state = CONNECTING;
    const struct sockaddr_in *to = first_hop(r->o);
    if (connect(c->fd, (const struct sockaddr *)to, sizeof *to) < 0 && errno != EINPROGRESS)
        return -1;
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
    return epoll_ctl(r->ep, EPOLL_CTL_ADD, c->fd, &ev);
}

static int send_small(struct run *r, struct client *c, const char *msg, size_t len,
                      enum client_state next)
{
    /* A fresh socket's send buffer always takes a few hundred bytes at once. */
    if (write(c->fd, msg, len) != (ssize_t)len)
        return -1;
    c->state = next;
    c->len = 0;
    c->head_done = false;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    return epoll_ctl(r->ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static int on_connected(struct run *r, struct client *c)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err != 0)
        return -1;
    if (r->o->use_proxy)
        return send_small(r, c, r->connect_req, r->connect_len, AWAIT_200);
    if (r->o->mode == MODE_HOLD) {
        c->state = ESTABLISHED;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        return epoll_ctl(r->ep, EPOLL_CTL_MOD, c->fd, &ev);
    }
    return send_small(r, c, r->get_req, r->get_len, AWAIT_RESPONSE);
}

static int on_tunnel_head(struct run *r, struct client *c)
{
    ssize_t n = read(c->fd, c->buf + c->len, HEAD_MAX - c->len);
    if (n < 0 && errno == EAGAIN)
        return 0;
    if (n <= 0)
        return -1;
    c->len += (size_t)n;
    struct head_info hi;
    int rc = parse_head(c->buf, c->len, &hi);
    if (rc <= 0)
        return rc;
    if (hi.status != 200 || c->len != hi.head_len)
        return -1;
    if (r->o->mode == MODE_HOLD) {
        c->state = ESTABLISHED;
        return 1;
    }
    return send_small(r, c, r->get_req, r->get_len, AWAIT_RESPONSE);
}

/* Returns 1 when the whole response arrived, 0 for more, -1 on failure. */
static int on_response(struct client *c)
{
    char scratch[16384];
    for (;;) {
        char *into = c->head_done ? scratch : c->buf + c->len;
        size_t room = c->head_done ? sizeof scratch : HEAD_MAX - c->len;
        ssize_t n = read(c->fd, into, room);
        if (n < 0 && errno == EAGAIN)
            return 0;
        if (n <= 0)
            return -1;
        if (c->head_done) {
            c->body_got += (uint64_t)n;
        } else {
            c->len += (size_t)n;
            struct head_info hi;
            int rc = parse_head(c->buf, c->len, &hi);
            if (rc < 0)
                return -1;
            if (rc == 0)
                continue;
            if (hi.status != 200 || !hi.has_length)
                return -1;
            c->head_done = true;
            c->body_need = hi.content_length;
            c->body_got = c->len - hi.head_len;
        }
        if (c->head_done && c->body_got >= c->body_need)
            return 1;
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

static void run_init(struct run *r, const struct options *o, int nclients)
{
    memset(r, 0, sizeof *r);
    r->o = o;
    r->ep = epoll_create1(EPOLL_CLOEXEC);
    r->nclients = nclients;
    r->clients = calloc((size_t)nclients, sizeof *r->clients);
    if (r->ep < 0 || r->clients == NULL) {
        perror("loadgen: setup");
        exit(1);
    }
    for (int i = 0; i < nclients; i++)
        r->clients[i].fd = -1;
    r->connect_len = (size_t)format_connect(r->connect_req, sizeof r->connect_req, o);
    r->get_len = (size_t)format_get(r->get_req, sizeof r->get_req, o);
}

static int run_rate(const struct options *o)
{
    struct run r;
    run_init(&r, o, o->concurrency);
    r.latencies = malloc(sizeof(float) * MAX_LATENCIES);
    if (r.latencies == NULL)
        return 1;
    double start = now_s();
    double deadline = start + o->secs;
    for (int i = 0; i < r.nclients; i++) {
        if (client_start(&r, &r.clients[i]) < 0) {
            r.errors++;
            client_reset(&r, &r.clients[i]);
        }
    }
    struct epoll_event events[256];
    for (;;) {
        double now = now_s();
        if (now >= deadline)
            break;
        int n = epoll_wait(r.ep, events, 256, (int)((deadline - now) * 1e3) + 1);
        if (n < 0 && errno != EINTR)
            break;
        for (int i = 0; i < n; i++) {
            struct client *c = events[i].data.ptr;
            int rc;
            switch (c->state) {
            case CONNECTING:
                rc = on_connected(&r, c);
                break;
            case AWAIT_200:
                rc = on_tunnel_head(&r, c);
                rc = rc > 0 ? 0 : rc;
                break;
            case AWAIT_RESPONSE:
                rc = on_response(c);
                break;
            default:
                rc = -1;
            }
            if (rc == 0)
                continue;
            if (rc > 0) {
                r.done++;
                record_latency(&r, now_s() - c->started);
            } else {
                r.errors++;
            }
            client_reset(&r, c);
            if (now_s() < deadline && client_start(&r, c) < 0) {
                r.errors++;
                client_reset(&r, c);
            }
        }
        /* Slots that failed to start are retried here rather than spinning. */
        for (int i = 0; i < r.nclients; i++) {
            struct client *c = &r.clients[i];
            if (c->state == IDLE_SLOT && now_s() < deadline && client_start(&r, c) < 0) {
                r.errors++;
                client_reset(&r, c);
            }
        }
    }
    double secs = now_s() - start;
    qsort(r.latencies, r.nlat, sizeof(float), compare_float);
    double p50 = r.nlat ? r.latencies[r.nlat / 2] : 0;
    double p99 = r.nlat ? r.latencies[(size_t)((double)r.nlat * 0.99)] : 0;
    printf("rate done=%" PRIu64 " errors=%" PRIu64 " secs=%.3f per_sec=%.1f p50_ms=%.3f "
           "p99_ms=%.3f\n",
           r.done, r.errors, secs, (double)r.done / secs, p50, p99);
    return r.done > 0 ? 0 : 1;
}

static int run_hold(const struct options *o)
{
    struct run r;
    run_init(&r, o, o->count);
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
            int rc;
            if (c->state == CONNECTING) {
                rc = on_connected(&r, c);
                rc = (rc == 0 && c->state == ESTABLISHED) ? 1 : rc;
            } else if (c->state == AWAIT_200) {
                rc = on_tunnel_head(&r, c);
            } else {
                /* An idle tunnel that becomes readable was closed (or spoke): either way it is
                 * lost. */
                char scratch[512];
                ssize_t got = read(c->fd, scratch, sizeof scratch);
                if (got < 0 && errno == EAGAIN)
                    continue;
                r.lost++;
                r.established--;
                client_reset(&r, c);
                continue;
            }
            if (rc == 0)
                continue;
            in_flight--;
            if (rc > 0) {
                r.established++;
            } else {
                failed++;
                client_reset(&r, c);
            }
        }
    }
    printf("end established=%d lost=%" PRIu64 "\n", r.established, r.lost);
    fflush(stdout);
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: loadgen bulk|rate|hold --origin ADDR:PORT [--proxy ADDR:PORT]\n"
                    "       [--bytes N] [--secs S] [--max-secs S] [--concurrency C]\n"
                    "       [--count N] [--parallel P]\n");
    exit(2);
}

static void parse_options(int argc, char **argv, struct options *o)
{
    memset(o, 0, sizeof *o);
    if (argc < 2)
        usage();
    if (strcmp(argv[1], "bulk") == 0) {
        o->mode = MODE_BULK;
        o->bytes = (uint64_t)1 << 30;
        o->secs = 30;
    } else if (strcmp(argv[1], "rate") == 0) {
        o->mode = MODE_RATE;
        o->bytes = 100;
        o->secs = 10;
    } else if (strcmp(argv[1], "hold") == 0) {
        o->mode = MODE_HOLD;
        o->secs = 120;
    } else {
        usage();
    }
    o->concurrency = 64;
    o->count = 5000;
    o->parallel = 200;
    bool have_origin = false;
    for (int i = 2; i < argc; i++) {
        const char *arg = argv[i];
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
    if (!have_origin || o->secs <= 0 || o->concurrency <= 0 || o->count <= 0 || o->parallel <= 0)
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
    case MODE_RATE:
        return run_rate(&o);
    case MODE_HOLD:
        return run_hold(&o);
    }
    return 2;
}
