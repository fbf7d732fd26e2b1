/* Proxy authentication with SPNEGO/Kerberos (RFC 4559) through GSSAPI: an acceptor built from the
 * [auth] keys and one context per client connection, whose steps run in the credential pool. */
#ifndef HANDOFF_AUTH_NEGOTIATE_H
#define HANDOFF_AUTH_NEGOTIATE_H

#include <stdbool.h>
#include <stddef.h>

#include "cred_pool.h"

typedef struct negotiate_acceptor negotiate_acceptor;
typedef struct negotiate_ctx negotiate_ctx;

/** Largest token accepted, decoded. */
#define NEGOTIATE_MAX_TOKEN 49152

/** Outcome of one step. */
typedef enum {
    NEGOTIATE_COMPLETE, /* authenticated: user and principal set; token_b64 may hold a mutual token
                         */
    NEGOTIATE_CONTINUE, /* multi-leg: answer 407 with `Negotiate token_b64`, keep the connection */
    NEGOTIATE_FAILED,   /* reason set: answer 407 with a fresh challenge, log the reason */
} negotiate_status;

/** One step's result; owned by the context, valid until its next step or its free. */
typedef struct {
    negotiate_status status;
    char user[256];        /* COMPLETE: the principal, its realm stripped when configured */
    char principal[256];   /* COMPLETE: the full principal, e.g. alice@EXAMPLE.NET */
    const char *token_b64; /* base64 for `Proxy-Authenticate: Negotiate <token>`, or NULL */
    char reason[256];      /* FAILED: why, for the log */
} negotiate_result;

/** keytab: path or NULL/"" for the default (KRB5_KTNAME, else /etc/krb5.keytab); service_principal:
 * e.g. "HTTP/proxy.example.net" (realm optional) or NULL/"" for any key in the keytab. Checks at
 * once that credentials can be acquired; NULL with err filled otherwise. Blocking (start-up). */
negotiate_acceptor *negotiate_acceptor_new(const char *keytab, const char *service_principal,
                                           bool strip_realm, char *err, size_t errlen);

/** After every context made from it is freed. */
void negotiate_acceptor_free(negotiate_acceptor *a);

/** A context for one client connection (holds a multi-leg exchange). NULL if out of memory. */
negotiate_ctx *negotiate_ctx_new(negotiate_acceptor *a);

/** On the loop thread, when no step is running (negotiate_ctx_busy is false). */
void negotiate_ctx_free(negotiate_ctx *c);

/** True between negotiate_submit and its callback. */
bool negotiate_ctx_busy(const negotiate_ctx *c);

/** One blocking step on a Proxy-Authorization value ("Negotiate <base64>"): for pool threads and
 * tests. The result stays in the context; the pointer returned is to it. */
const negotiate_result *negotiate_step(negotiate_ctx *c, const char *value, size_t len);

/** Called on the submitting loop; status UV_ECANCELED (result FAILED) if the pool stopped. */
typedef void (*negotiate_cb)(negotiate_ctx *c, const negotiate_result *r, int status, void *data);

/** Runs negotiate_step on a copy of value in the credential pool. 0, or UV_EBUSY (a step of this
 * context is running, or *pending is at cap), UV_EAGAIN (pool queue full), UV_ECANCELED,
 * UV_EINVAL (value too long), UV_ENOMEM; cb is called only after 0. */
int negotiate_submit(cred_pool_loop *pl, negotiate_ctx *c, const char *value, size_t len,
                     unsigned *pending, unsigned cap, negotiate_cb cb, void *data);

/** Splits a displayed principal at its realm: user part into user (escapes kept), realm into
 * realm ("" if none). False if a buffer is too small. */
bool negotiate_split_principal(const char *principal, char *user, size_t userlen, char *realm,
                               size_t realmlen);

#endif
