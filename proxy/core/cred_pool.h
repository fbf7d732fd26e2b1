/* Credential checks off the event loops: a bounded pool of its own threads (libuv's threadpool
 * is left to DNS), with each completion delivered on the loop that submitted the job. */
#ifndef HANDOFF_CRED_POOL_H
#define HANDOFF_CRED_POOL_H

#include <uv.h>

typedef struct cred_pool cred_pool;
typedef struct cred_pool_loop cred_pool_loop;
typedef struct cred_job cred_job;

/** Runs on a pool thread; must not touch loop-owned state. */
typedef void (*cred_work_fn)(cred_job *job);
/** Runs on the submitting loop: status 0 after work ran, UV_ECANCELED if the pool stopped first. */
typedef void (*cred_done_fn)(cred_job *job, int status);

/** One check. The caller owns the memory and keeps it alive until done has been called. */
struct cred_job {
    cred_work_fn work;
    cred_done_fn done;
    void *data; /* the caller's */
    /* private to the pool */
    cred_pool_loop *pl;
    unsigned *pending;
    int status;
    cred_job *next;
};

/** Starts `threads` threads; at most `max_queued` jobs wait (running jobs not counted). */
cred_pool *cred_pool_new(unsigned threads, unsigned max_queued);

/** Registers a loop for completions; call on that loop's thread. NULL if out of memory. */
cred_pool_loop *cred_pool_attach(cred_pool *p, uv_loop_t *loop);

/** Queues job on the loop's thread. *pending (the caller's counter, loop-owned) is raised on
 * success and lowered just before done runs; with cap > 0 a submitter at cap is refused.
 * 0, UV_EBUSY (at cap), UV_EAGAIN (queue full) or UV_ECANCELED (pool stopped). */
int cred_pool_submit(cred_pool_loop *pl, cred_job *job, unsigned *pending, unsigned cap);

/** Jobs waiting in the queue now (for metrics and tests). */
unsigned cred_pool_queued(cred_pool *p);

/** Refuses new jobs, cancels queued ones (done gets UV_ECANCELED on its loop), waits for running
 * ones and joins the threads. Any thread; idempotent. */
void cred_pool_stop(cred_pool *p);

/** On the loop's thread, once none of its jobs is outstanding (after cred_pool_stop, or after
 * every done): runs completions still queued and closes the async handle (freed by the loop). */
void cred_pool_detach(cred_pool_loop *pl);

/** After cred_pool_stop and every detach. */
void cred_pool_free(cred_pool *p);

#endif
