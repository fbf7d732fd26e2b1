/* The credential pool (bounded queue, per-submitter cap, completions on the submitting loop, stop)
 * and Basic's caches on top of it (a repeated wrong password costs one hash). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <crypt.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth.h"
#include "cred_pool.h"

/* A gate the first job waits on, so the queue behind it can be filled deterministically. */
static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static bool gate_open, gate_entered;

static void gate_reset(void)
{
    pthread_mutex_lock(&gate_lock);
    gate_open = gate_entered = false;
    pthread_mutex_unlock(&gate_lock);
}

static void gate_release(void)
{
    pthread_mutex_lock(&gate_lock);
    gate_open = true;
    pthread_cond_broadcast(&gate_cond);
    pthread_mutex_unlock(&gate_lock);
}

static void gate_wait_entered(void)
{
    pthread_mutex_lock(&gate_lock);
    while (!gate_entered)
        pthread_cond_wait(&gate_cond, &gate_lock);
    pthread_mutex_unlock(&gate_lock);
}

typedef struct {
    cred_job job;
    bool gated;
    pthread_t worker;
    pthread_t completed_on;
    int status;
    int done;
} test_job;

static void work_fn(cred_job *job)
{
    test_job *t = (test_job *)job;
    t->worker = pthread_self();
    if (t->gated) {
        pthread_mutex_lock(&gate_lock);
        gate_entered = true;
        pthread_cond_broadcast(&gate_cond);
        while (!gate_open)
            pthread_cond_wait(&gate_cond, &gate_lock);
        pthread_mutex_unlock(&gate_lock);
    }
}

static int done_total;

static void done_fn(cred_job *job, int status)
{
    test_job *t = (test_job *)job;
    t->completed_on = pthread_self();
    t->status = status;
    t->done++;
    done_total++;
}

static void job_init(test_job *t, bool gated)
{
    memset(t, 0, sizeof *t);
    t->job.work = work_fn;
    t->job.done = done_fn;
    t->gated = gated;
    t->status = 1;
}

static void run_until(uv_loop_t *loop, int total)
{
    for (int i = 0; i < 10000 && done_total < total; i++)
        uv_run(loop, UV_RUN_ONCE);
}

static void completions_arrive_on_the_submitting_loop(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    cred_pool *p = cred_pool_new(3, 16);
    assert_non_null(p);
    cred_pool_loop *pl = cred_pool_attach(p, &loop);
    test_job jobs[8];
    unsigned pending = 0;
    done_total = 0;
    for (int i = 0; i < 8; i++) {
        job_init(&jobs[i], false);
        assert_int_equal(cred_pool_submit(pl, &jobs[i].job, &pending, 0), 0);
    }
    assert_int_equal(pending, 8);
    run_until(&loop, 8);
    assert_int_equal(pending, 0);
    for (int i = 0; i < 8; i++) {
        assert_int_equal(jobs[i].done, 1);
        assert_int_equal(jobs[i].status, 0);
        assert_true(pthread_equal(jobs[i].completed_on, pthread_self()));
        assert_false(pthread_equal(jobs[i].worker, pthread_self()));
    }
    cred_pool_stop(p);
    cred_pool_detach(pl);
    uv_run(&loop, UV_RUN_DEFAULT);
    cred_pool_free(p);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void a_full_queue_refuses_and_a_submitter_at_its_cap_is_refused(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    cred_pool *p = cred_pool_new(1, 2);
    cred_pool_loop *pl = cred_pool_attach(p, &loop);
    gate_reset();
    done_total = 0;
    test_job running, q1, q2, extra, capped;
    job_init(&running, true);
    job_init(&q1, false);
    job_init(&q2, false);
    job_init(&extra, false);
    job_init(&capped, false);
    unsigned conn_a = 0, conn_b = 0;
    assert_int_equal(cred_pool_submit(pl, &running.job, &conn_a, 0), 0);
    gate_wait_entered(); /* the only thread is busy: later jobs wait in the queue */
    assert_int_equal(cred_pool_submit(pl, &q1.job, &conn_b, 2), 0);
    assert_int_equal(cred_pool_submit(pl, &capped.job, &conn_b, 1), UV_EBUSY);
    assert_int_equal(conn_b, 1);
    assert_int_equal(cred_pool_submit(pl, &q2.job, &conn_b, 2), 0);
    assert_int_equal(cred_pool_queued(p), 2);
    assert_int_equal(cred_pool_submit(pl, &extra.job, NULL, 0), UV_EAGAIN);
    assert_int_equal(conn_a, 1);
    assert_int_equal(conn_b, 2);
    gate_release();
    run_until(&loop, 3);
    assert_int_equal(done_total, 3);
    assert_int_equal(conn_a + conn_b, 0);
    assert_int_equal(extra.done + capped.done, 0);
    cred_pool_stop(p);
    cred_pool_detach(pl);
    uv_run(&loop, UV_RUN_DEFAULT);
    cred_pool_free(p);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static cred_pool *releasing_pool;

/* Opens the gate once cred_pool_stop has taken the queue, so queued jobs are cancelled. */
static void *release_after_stop_took_queue(void *arg)
{
    (void)arg;
    for (int i = 0; i < 5000 && cred_pool_queued(releasing_pool) != 0; i++)
        usleep(1000);
    gate_release();
    return NULL;
}

static void stop_cancels_queued_jobs_and_finishes_running_ones(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    cred_pool *p = cred_pool_new(1, 4);
    cred_pool_loop *pl = cred_pool_attach(p, &loop);
    gate_reset();
    done_total = 0;
    test_job running, queued[3];
    job_init(&running, true);
    unsigned pending = 0;
    assert_int_equal(cred_pool_submit(pl, &running.job, &pending, 0), 0);
    gate_wait_entered();
    for (int i = 0; i < 3; i++) {
        job_init(&queued[i], false);
        assert_int_equal(cred_pool_submit(pl, &queued[i].job, &pending, 0), 0);
    }
    releasing_pool = p;
    pthread_t releaser;
    pthread_create(&releaser, NULL, release_after_stop_took_queue, NULL);
    cred_pool_stop(p);
    pthread_join(releaser, NULL);
    test_job late;
    job_init(&late, false);
    assert_int_equal(cred_pool_submit(pl, &late.job, &pending, 0), UV_ECANCELED);
    /* detach delivers what is still queued for this loop, then closes its handle */
    cred_pool_detach(pl);
    assert_int_equal(done_total, 4);
    assert_int_equal(running.status, 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(queued[i].status, UV_ECANCELED);
        assert_true(pthread_equal(queued[i].worker, (pthread_t)0));
    }
    assert_int_equal(pending, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    cred_pool_free(p);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* ---- Basic on the pool ---- */

static char htpasswd_path[64];

static void write_htpasswd(void)
{
    snprintf(htpasswd_path, sizeof htpasswd_path, "/tmp/handoff-htpasswd-XXXXXX");
    int fd = mkstemp(htpasswd_path);
    assert_true(fd >= 0);
    struct crypt_data cd;
    memset(&cd, 0, sizeof cd);
    /* few rounds: the test counts hashes, it does not need them slow */
    const char *h = crypt_r("right", "$5$rounds=1000$saltsaltsalt", &cd);
    assert_non_null(h);
    FILE *f = fdopen(fd, "w");
    fprintf(f, "alice:%s\n", h);
    fclose(f);
}

static void basic_value(char *out, size_t outlen, const char *user, const char *pass)
{
    char plain[256];
    unsigned char b64[400];
    int n = snprintf(plain, sizeof plain, "%s:%s", user, pass);
    EVP_EncodeBlock(b64, (const unsigned char *)plain, n);
    snprintf(out, outlen, "Basic %s", (const char *)b64);
}

static bool check(auth_db *db, const char *user, const char *pass)
{
    char v[512], who[128];
    basic_value(v, sizeof v, user, pass);
    return auth_check(db, v, strlen(v), who, sizeof who);
}

static auth_verdict fast(auth_db *db, const char *user, const char *pass)
{
    char v[512], who[128];
    basic_value(v, sizeof v, user, pass);
    return auth_check_fast(db, v, strlen(v), who, sizeof who);
}

static void a_repeated_wrong_password_costs_one_hash(void **state)
{
    (void)state;
    write_htpasswd();
    char err[256];
    auth_db *db = auth_load(htpasswd_path, err, sizeof err);
    assert_non_null(db);
    assert_int_equal(fast(db, "alice", "wrong"), AUTH_UNKNOWN);
    for (int i = 0; i < 20; i++)
        assert_false(check(db, "alice", "wrong"));
    assert_int_equal(auth_hash_count(db), 1);
    assert_int_equal(fast(db, "alice", "wrong"), AUTH_REFUSED);

    /* another wrong password is hashed once too; the right one still works */
    assert_false(check(db, "alice", "wrong2"));
    assert_false(check(db, "alice", "wrong2"));
    assert_int_equal(auth_hash_count(db), 2);
    assert_int_equal(fast(db, "alice", "right"), AUTH_UNKNOWN);
    assert_true(check(db, "alice", "right"));
    assert_int_equal(auth_hash_count(db), 3);
    assert_int_equal(fast(db, "alice", "right"), AUTH_GRANTED);

    /* unknown users cost no hash; malformed values are refused on the loop */
    assert_false(check(db, "mallory", "x"));
    assert_int_equal(auth_hash_count(db), 3);
    assert_int_equal(auth_check_fast(db, "Basic !!!", 9, err, sizeof err), AUTH_REFUSED);
    auth_free(db);
    unlink(htpasswd_path);
}

static void the_negative_cache_is_bounded(void **state)
{
    (void)state;
    write_htpasswd();
    char err[256];
    auth_db *db = auth_load(htpasswd_path, err, sizeof err);
    assert_false(check(db, "alice", "first-wrong"));
    char pass[32];
    for (int i = 0; i < 300; i++) {
        snprintf(pass, sizeof pass, "wrong-%d", i);
        assert_false(check(db, "alice", pass));
    }
    assert_int_equal(auth_hash_count(db), 301);
    /* the oldest failure was pushed out, so it is hashed again */
    assert_int_equal(fast(db, "alice", "first-wrong"), AUTH_UNKNOWN);
    assert_false(check(db, "alice", "first-wrong"));
    assert_int_equal(auth_hash_count(db), 302);
    auth_free(db);
    unlink(htpasswd_path);
}

typedef struct {
    int calls;
    bool ok;
    char user[128];
    pthread_t on;
} basic_outcome;

static void on_basic(void *data, bool ok, const char *user, int status)
{
    basic_outcome *o = data;
    o->calls++;
    o->ok = ok && status == 0;
    snprintf(o->user, sizeof o->user, "%s", user);
    o->on = pthread_self();
    done_total++;
}

static void basic_checks_run_in_the_pool(void **state)
{
    (void)state;
    write_htpasswd();
    char err[256];
    auth_db *db = auth_load(htpasswd_path, err, sizeof err);
    uv_loop_t loop;
    uv_loop_init(&loop);
    cred_pool *p = cred_pool_new(2, 8);
    cred_pool_loop *pl = cred_pool_attach(p, &loop);
    done_total = 0;
    basic_outcome good = {0}, bad = {0};
    char v1[512], v2[512];
    basic_value(v1, sizeof v1, "alice", "right");
    basic_value(v2, sizeof v2, "alice", "nope");
    unsigned pending = 0;
    assert_int_equal(auth_basic_submit(pl, db, v1, strlen(v1), &pending, 4, on_basic, &good), 0);
    assert_int_equal(auth_basic_submit(pl, db, v2, strlen(v2), &pending, 4, on_basic, &bad), 0);
    /* the caller's buffer may change at once: the job has its own copy */
    memset(v1, 'x', sizeof v1);
    run_until(&loop, 2);
    assert_int_equal(good.calls, 1);
    assert_true(good.ok);
    assert_string_equal(good.user, "alice");
    assert_true(pthread_equal(good.on, pthread_self()));
    assert_int_equal(bad.calls, 1);
    assert_false(bad.ok);
    assert_int_equal(pending, 0);
    cred_pool_stop(p);
    cred_pool_detach(pl);
    uv_run(&loop, UV_RUN_DEFAULT);
    cred_pool_free(p);
    uv_loop_close(&loop);
    auth_free(db);
    unlink(htpasswd_path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(completions_arrive_on_the_submitting_loop),
        cmocka_unit_test(a_full_queue_refuses_and_a_submitter_at_its_cap_is_refused),
        cmocka_unit_test(stop_cancels_queued_jobs_and_finishes_running_ones),
        cmocka_unit_test(a_repeated_wrong_password_costs_one_hash),
        cmocka_unit_test(the_negative_cache_is_bounded),
        cmocka_unit_test(basic_checks_run_in_the_pool),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
