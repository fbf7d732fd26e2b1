/*
 * sink: a minimal HTTP/1.1 origin for the benchmark.
 *
 * `GET /N` is answered with N bytes of body and the connection is closed.
 * A request that is not HTTP, 8 bytes "\0HOB" and N as a 32-bit big-endian
 * number, is answered with N bytes (no head) and a close: no protocol
 * matcher recognises it, so a proxy's detection classifies it as plain TCP.
 * A client that sends nothing is simply held open, which is what the
 * idle-tunnel memory test needs. Single-threaded, epoll, level-triggered.
 *
 *   sink [--listen 127.0.0.1:PORT]     PORT 0 (the default) picks a free port
 *
 * The chosen port is printed as "port N" on stdout once the socket listens.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define HEAD_MAX  4096
#define BODY_UNIT (1 << 20)
#define MAX_BODY  ((uint64_t)64 << 30)
#define RAW_LEN   8

static const char raw_magic[4] = {'\0', 'H', 'O', 'B'};

enum conn_state { READING_HEAD, WRITING_HEAD, WRITING_BODY };

struct conn {
    enum conn_state state;
    size_t head_len;
    char head[HEAD_MAX];
    size_t out_len;
    size_t out_off;
    char out[256];
    uint64_t body_left;
};

static struct conn **conns;
static size_t conns_cap;
static char body_unit[BODY_UNIT];

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static void conn_close(int ep, int fd)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
    close(fd);
    free(conns[fd]);
    conns[fd] = NULL;
}

static int parse_listen(const char *spec, struct sockaddr_in *sa)
{
    char host[64];
    const char *colon = strrchr(spec, ':');
    if (colon == NULL || (size_t)(colon - spec) >= sizeof host)
        return -1;
    memcpy(host, spec, (size_t)(colon - spec));
    host[colon - spec] = '\0';
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)atoi(colon + 1));
    return inet_pton(AF_INET, host, &sa->sin_addr) == 1 ? 0 : -1;
}

/* The request line is "METHOD /N ..."; a path that is not a number asks for 0 bytes. */
static uint64_t requested_size(const char *head)
{
    const char *sp = strchr(head, ' ');
    if (sp == NULL || sp[1] != '/')
        return 0;
    char *end;
    errno = 0;
    unsigned long long n = strtoull(sp + 2, &end, 10);
    if (errno != 0 || end == sp + 2 || n > MAX_BODY)
        return 0;
    return (uint64_t)n;
}

static void want_write(int ep, int fd, int on)
{
    struct epoll_event ev = {.events = on ? EPOLLOUT : EPOLLIN, .data.fd = fd};
    epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
}

static void start_response(int ep, int fd, struct conn *c)
{
    c->body_left = requested_size(c->head);
    int n = snprintf(c->out, sizeof c->out,
                     "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                     "Content-Length: %" PRIu64 "\r\nConnection: close\r\n\r\n",
                     c->body_left);
    c->out_len = (size_t)n;
    c->out_off = 0;
    c->state = WRITING_HEAD;
    want_write(ep, fd, 1);
}

/* The raw request: returns 1 when it is complete (body_left set), 0 for more, -1 if malformed. */
static int raw_request(struct conn *c)
{
    size_t have = c->head_len < sizeof raw_magic ? c->head_len : sizeof raw_magic;
    if (memcmp(c->head, raw_magic, have) != 0)
        return -1;
    if (c->head_len < RAW_LEN)
        return 0;
    if (c->head_len > RAW_LEN)
        return -1;
    const unsigned char *n = (const unsigned char *)c->head + sizeof raw_magic;
    c->body_left = (uint64_t)n[0] << 24 | (uint64_t)n[1] << 16 | (uint64_t)n[2] << 8 | n[3];
    return 1;
}

static void on_readable(int ep, int fd, struct conn *c)
{
    if (c->state != READING_HEAD) {
        /* Anything after the head is ignored; EOF while writing ends the connection. */
        char scratch[4096];
        ssize_t n = read(fd, scratch, sizeof scratch);
        if (n == 0 || (n < 0 && errno != EAGAIN))
            conn_close(ep, fd);
        return;
    }
    ssize_t n = read(fd, c->head + c->head_len, HEAD_MAX - 1 - c->head_len);
    if (n < 0 && errno == EAGAIN)
        return;
    if (n <= 0) {
        conn_close(ep, fd);
        return;
    }
    c->head_len += (size_t)n;
    c->head[c->head_len] = '\0';
    if (c->head[0] == '\0') {
        int rc = raw_request(c);
        if (rc < 0) {
            conn_close(ep, fd);
        } else if (rc > 0) {
            c->state = WRITING_BODY;
            want_write(ep, fd, 1);
        }
        return;
    }
    if (strstr(c->head, "\r\n\r\n") != NULL) {
        start_response(ep, fd, c);
    } else if (c->head_len == HEAD_MAX - 1) {
        conn_close(ep, fd);
    }
}

static void on_writable(int ep, int fd, struct conn *c)
{
    for (;;) {
        ssize_t n;
        if (c->state == WRITING_HEAD) {
            n = write(fd, c->out + c->out_off, c->out_len - c->out_off);
            if (n > 0) {
                c->out_off += (size_t)n;
                if (c->out_off == c->out_len)
                    c->state = WRITING_BODY;
                continue;
            }
        } else {
            if (c->body_left == 0) {
                conn_close(ep, fd);
                return;
            }
            size_t chunk = c->body_left < BODY_UNIT ? (size_t)c->body_left : BODY_UNIT;
            n = write(fd, body_unit, chunk);
            if (n > 0) {
                c->body_left -= (uint64_t)n;
                continue;
            }
        }
        if (n < 0 && errno == EAGAIN)
            return;
        conn_close(ep, fd);
        return;
    }
}

static void on_accept(int ep, int lfd)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != ECONNABORTED)
                perror("accept4");
            return;
        }
        if ((size_t)fd >= conns_cap) {
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct conn *c = calloc(1, sizeof *c);
        if (c == NULL) {
            close(fd);
            continue;
        }
        conns[fd] = c;
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
            conn_close(ep, fd);
    }
}

int main(int argc, char **argv)
{
    const char *listen_spec = "127.0.0.1:0";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) {
            listen_spec = argv[++i];
        } else {
            fprintf(stderr, "usage: %s [--listen 127.0.0.1:PORT]\n", argv[0]);
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    memset(body_unit, 'x', sizeof body_unit);

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    conns_cap = rl.rlim_cur;
    conns = calloc(conns_cap, sizeof *conns);
    if (conns == NULL)
        die("calloc");

    struct sockaddr_in sa;
    if (parse_listen(listen_spec, &sa) < 0) {
        fprintf(stderr, "sink: bad --listen %s\n", listen_spec);
        return 2;
    }
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0)
        die("bind");
    if (listen(lfd, 4096) < 0)
        die("listen");
    socklen_t len = sizeof sa;
    getsockname(lfd, (struct sockaddr *)&sa, &len);
    printf("port %u\n", ntohs(sa.sin_port));
    fflush(stdout);

    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    struct epoll_event events[256];
    for (;;) {
        int n = epoll_wait(ep, events, 256, -1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            die("epoll_wait");
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            if (fd == lfd) {
                on_accept(ep, lfd);
                continue;
            }
            struct conn *c = conns[fd];
            if (c == NULL)
                continue;
            if (events[i].events & EPOLLOUT)
                on_writable(ep, fd, c);
            else
                on_readable(ep, fd, c);
        }
    }
}
