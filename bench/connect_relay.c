/*
 * connect_relay: a loopback port whose every connection is relayed through a forward proxy's
 * CONNECT, for load generators that cannot use a proxy themselves (h2load).
 *
 *   connect_relay LISTEN_PORT PROXY_PORT TARGET_HOST:PORT
 *
 * Everything is on 127.0.0.1. Two threads per connection copy bytes with blocking I/O; a FIN
 * on one side is passed on as a FIN to the other.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int proxy_port;
static const char *target;

typedef struct {
    int from, to;
} pipe_args;

static void *copy(void *arg)
{
    pipe_args *p = arg;
    char buf[65536];
    for (;;) {
        ssize_t n = read(p->from, buf, sizeof buf);
        if (n <= 0)
            break;
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(p->to, buf + off, (size_t)(n - off));
            if (w <= 0)
                goto done;
            off += w;
        }
    }
done:
    shutdown(p->to, SHUT_WR);
    free(p);
    return NULL;
}

static int dial_proxy(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)proxy_port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
        goto fail;
    char req[512];
    int len = snprintf(req, sizeof req, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target);
    if (write(fd, req, (size_t)len) != len)
        goto fail;
    /* The answer head, byte by byte so nothing past it is consumed. */
    char head[1024];
    size_t got = 0;
    while (got < sizeof head - 1) {
        if (read(fd, head + got, 1) != 1)
            goto fail;
        got++;
        if (got >= 4 && memcmp(head + got - 4, "\r\n\r\n", 4) == 0)
            break;
    }
    head[got] = '\0';
    if (strncmp(head, "HTTP/1.1 200", 12) != 0 && strncmp(head, "HTTP/1.0 200", 12) != 0)
        goto fail;
    return fd;
fail:
    if (fd >= 0)
        close(fd);
    return -1;
}

static void *serve(void *arg)
{
    int client = (int)(intptr_t)arg;
    int up = dial_proxy();
    if (up < 0) {
        close(client);
        return NULL;
    }
    int one = 1;
    setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(up, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    pipe_args *a = malloc(sizeof *a), *b = malloc(sizeof *b);
    *a = (pipe_args){client, up};
    *b = (pipe_args){up, client};
    pthread_t t;
    pthread_create(&t, NULL, copy, a);
    copy(b);
    pthread_join(t, NULL);
    close(client);
    close(up);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: connect_relay LISTEN_PORT PROXY_PORT HOST:PORT\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    proxy_port = atoi(argv[2]);
    target = argv[3];
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(ls, (struct sockaddr *)&a, sizeof a) != 0 || listen(ls, 512) != 0) {
        perror("connect_relay: listen");
        return 1;
    }
    for (;;) {
        int c = accept(ls, NULL, NULL);
        if (c < 0)
            continue;
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_create(&t, &attr, serve, (void *)(intptr_t)c);
        pthread_attr_destroy(&attr);
    }
}
