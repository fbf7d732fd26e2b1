#include "cred_pool.h"

#include <assert.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#define CRED_POOL_MAX_THREADS 64

struct cred_pool_loop {
    uv_async_t async;
    cred_pool *pool;
    pthread_mutex_t lock; /* guards done_head/done_tail, filled by pool threads */
    cred_job *done_head, *done_tail;
    unsigned outstanding; /* loop thread only */
};

struct cred_pool {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    cred_job *head, *tail;
    unsigned queued, max_queued;
    bool stopping, stopped;
    unsigned nthreads;
    pthread_t threads[CRED_POOL_MAX_THREADS];
};

static void deliver(cred_job *job, int status)
{
    cred_pool_loop *pl = job->pl;
    job->status = status;
    job->next = NULL;
    pthread_mutex_lock(&pl->lock);
    if (pl->done_tail)
        pl->done_tail->next = job;
    else
        pl->done_head = job;
    pl->done_tail = job;
    /* Sent under the lock: once the loop can see the job, this thread no longer touches pl, so
     * the loop may detach and free it right after the job's done. */
    uv_async_send(&pl->async);
    pthread_mutex_unlock(&pl->lock);
}

static void *pool_thread(void *arg)
{
    cred_pool *p = arg;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (!p->head && !p->stopping)
            pthread_cond_wait(&p->wake, &p->lock);
        if (!p->head)
            break;
        cred_job *job = p->head;
        p->head = job->next;
        if (!p->head)
            p->tail = NULL;
        p->queued--;
        pthread_mutex_unlock(&p->lock);
        job->work(job);
        deliver(job, 0);
        pthread_mutex_lock(&p->lock);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* Completions run in submission order per loop; the counter drops before done so that done may
 * submit again. */
static void run_completions(cred_pool_loop *pl)
{
    pthread_mutex_lock(&pl->lock);
    cred_job *job = pl->done_head;
    pl->done_head = pl->done_tail = NULL;
    pthread_mutex_unlock(&pl->lock);
    while (job) {
        cred_job *next = job->next;
        pl->outstanding--;
        if (job->pending)
            (*job->pending)--;
        job->done(job, job->status);
        job = next;
    }
}

static void on_async(uv_async_t *a)
{
    run_completions(a->data);
}

cred_pool *cred_pool_new(unsigned threads, unsigned max_queued)
{
    if (threads == 0 || threads > CRED_POOL_MAX_THREADS || max_queued == 0)
        return NULL;
    cred_pool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    p->max_queued = max_queued;
    for (; p->nthreads < threads; p->nthreads++) {
        if (pthread_create(&p->threads[p->nthreads], NULL, pool_thread, p) != 0) {
            cred_pool_stop(p);
            cred_pool_free(p);
            return NULL;
        }
    }
    return p;
}

cred_pool_loop *cred_pool_attach(cred_pool *p, uv_loop_t *loop)
{
    cred_pool_loop *pl = calloc(1, sizeof *pl);
    if (!pl)
        return NULL;
    if (uv_async_init(loop, &pl->async, on_async) != 0) {
        free(pl);
        return NULL;
    }
    pl->async.data = pl;
    pl->pool = p;
    pthread_mutex_init(&pl->lock, NULL);
    return pl;
}

int cred_pool_submit(cred_pool_loop *pl, cred_job *job, unsigned *pending, unsigned cap)
{
    if (pending && cap && *pending >= cap)
        return UV_EBUSY;
    cred_pool *p = pl->pool;
    pthread_mutex_lock(&p->lock);
    int rc = 0;
    if (p->stopping)
        rc = UV_ECANCELED;
    else if (p->queued >= p->max_queued)
        rc = UV_EAGAIN;
    if (rc == 0) {
        job->pl = pl;
        job->pending = pending;
        job->status = 0;
        job->next = NULL;
        if (p->tail)
            p->tail->next = job;
        else
            p->head = job;
        p->tail = job;
        p->queued++;
        pl->outstanding++;
        if (pending)
            (*pending)++;
        pthread_cond_signal(&p->wake);
    }
    pthread_mutex_unlock(&p->lock);
    return rc;
}

unsigned cred_pool_queued(cred_pool *p)
{
    pthread_mutex_lock(&p->lock);
    unsigned n = p->queued;
    pthread_mutex_unlock(&p->lock);
    return n;
}

void cred_pool_stop(cred_pool *p)
{
    pthread_mutex_lock(&p->lock);
    if (p->stopped) {
        pthread_mutex_unlock(&p->lock);
        return;
    }
    p->stopping = true;
    cred_job *job = p->head;
    p->head = p->tail = NULL;
    p->queued = 0;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    while (job) {
        cred_job *next = job->next;
        deliver(job, UV_ECANCELED);
        job = next;
    }
    for (unsigned i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    pthread_mutex_lock(&p->lock);
    p->stopped = true;
    pthread_mutex_unlock(&p->lock);
}

static void on_async_closed(uv_handle_t *h)
{
    cred_pool_loop *pl = h->data;
    pthread_mutex_destroy(&pl->lock);
    free(pl);
}

void cred_pool_detach(cred_pool_loop *pl)
{
    run_completions(pl);
    assert(pl->outstanding == 0);
    uv_close((uv_handle_t *)&pl->async, on_async_closed);
}

void cred_pool_free(cred_pool *p)
{
    if (!p)
        return;
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->lock);
    free(p);
}
