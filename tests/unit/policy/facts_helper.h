/* Builds policy_facts from readable test-table rows. */
#ifndef HANDOFF_TEST_POLICY_FACTS_HELPER_H
#define HANDOFF_TEST_POLICY_FACTS_HELPER_H

#include "policy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

/** A row's facts; NULL strings, port -1 and tunneled -1 mean unknown. */
struct fact_row {
    const char *host;
    int port;
    const char *method;
    const char *client; /* textual IPv4 or IPv6 address */
    const char *protocol;
    int tunneled;
    const char *user;
};

/** Facts pointing into row and into storage, which must outlive them. */
static inline policy_facts facts_from_row(const struct fact_row *row,
                                          struct sockaddr_storage *storage)
{
    policy_facts f = {
        .host = row->host,
        .port = row->port,
        .method = row->method,
        .protocol = row->protocol,
        .tunneled = row->tunneled,
        .user = row->user,
    };
    memset(storage, 0, sizeof *storage);
    struct sockaddr_in *in = (struct sockaddr_in *)storage;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)storage;
    if (row->client && inet_pton(AF_INET, row->client, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        f.client = (const struct sockaddr *)storage;
    } else if (row->client && inet_pton(AF_INET6, row->client, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        f.client = (const struct sockaddr *)storage;
    }
    return f;
}

#endif
