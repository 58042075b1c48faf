/* The executor (API.md "Executor"): concurrent.futures' ThreadPoolExecutor behind
 * afut_executor_new / submit / shutdown / free, and asyncio's loop.run_in_executor.
 *
 * What is checked, rule by rule:
 *   - a job runs on a worker and completes its loop-less future; returning without completing
 *     it gives a NULL result; an exception set by the job is the future's;
 *   - workers start lazily (none before the first submit), idle ones are reused (sequential
 *     jobs run on one thread), never more than max_workers, and blocking jobs reach that many
 *     at once; 0 means the number of CPUs this process may run on;
 *   - the states of concurrent.futures: a queued job cancelled never runs; a running one
 *     cannot be cancelled (afut_cancel returns false, also from inside the job); a future
 *     completed by someone else before its job starts skips the job;
 *   - done-callbacks of an executor future run on the thread that completes or cancels it;
 *   - submit after shutdown is refused (NULL) and the userdata stays the caller's;
 *   - every userdata_free exactly once, never while its job runs, on every path (ran,
 *     cancelled, refused, shut down with cancel_futures), at the latest when shutdown(wait)
 *     or free returns;
 *   - shutdown(wait = true / false, cancel_futures = true / false), a second shutdown, a
 *     shutdown from inside a job, shutdown/free of NULL;
 *   - run_in_executor: a future of the loop whose done-callbacks run on the loop thread,
 *     cancellation chained both ways (the loop future stays cancelled while the job runs on);
 *   - shutdown racing submits and cancels from several threads (TSan runs this program:
 *     scripts/reliability.sh);
 *   - bad input: a status or NULL, nothing taken.
 *
 * ThreadSanitizer: see test_threads.c. Everything a job writes and another thread reads is an
 * atomic (the library's own synchronisation is invisible to TSan). */
#define _GNU_SOURCE
#include "test.h"

#include <afut.h>

#define AFUT_SANITIZED_DIVISOR 4
#define AFUT_SANITIZED_BUDGET 4
#include "thread_helpers.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ helpers */

/* Small integer identities for threads (1, 2, ...), comparable across threads. */
static atomic_int next_tid = 1;
static _Thread_local int my_tid;
static int tid(void) {
    if (!my_tid) my_tid = atomic_fetch_add(&next_tid, 1);
    return my_tid;
}

/* A gate jobs block on until the test opens it (with a deadline, so that a bug fails a test
 * instead of hanging the suite). */
typedef struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int open;
} gate_t;

static void gate_init(gate_t *g) {
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    g->open = 0;
}
static void gate_open(gate_t *g) {
    pthread_mutex_lock(&g->mu);
    g->open = 1;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}
/* 1 once open, 0 if still closed after `secs`. */
static int gate_wait(gate_t *g, double secs) {
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    double end = (double)dl.tv_sec + (double)dl.tv_nsec / 1e9 + budget(secs);
    dl.tv_sec = (time_t)end;
    dl.tv_nsec = (long)((end - (double)dl.tv_sec) * 1e9);
    pthread_mutex_lock(&g->mu);
    int rc = 0;
    while (!g->open && rc != ETIMEDOUT) rc = pthread_cond_timedwait(&g->cv, &g->mu, &dl);
    int open = g->open;
    pthread_mutex_unlock(&g->mu);
    return open;
}
static void gate_destroy(gate_t *g) {
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->mu);
}

/* A counter one can wait on (jobs started, callbacks run). */
typedef struct counter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int n;
} counter_t;

static void counter_init(counter_t *c) {
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    c->n = 0;
}
static void counter_add(counter_t *c) {
    pthread_mutex_lock(&c->mu);
    c->n++;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}
static int counter_get(counter_t *c) {
    pthread_mutex_lock(&c->mu);
    int n = c->n;
    pthread_mutex_unlock(&c->mu);
    return n;
}
/* 1 once the count reached `n`, 0 after `secs` without. */
static int counter_wait(counter_t *c, int n, double secs) {
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    double end = (double)dl.tv_sec + (double)dl.tv_nsec / 1e9 + budget(secs);
    dl.tv_sec = (time_t)end;
    dl.tv_nsec = (long)((end - (double)dl.tv_sec) * 1e9);
    pthread_mutex_lock(&c->mu);
    int rc = 0;
    while (c->n < n && rc != ETIMEDOUT) rc = pthread_cond_timedwait(&c->cv, &c->mu, &dl);
    int ok = c->n >= n;
    pthread_mutex_unlock(&c->mu);
    return ok;
}
static void counter_destroy(counter_t *c) {
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
}

/* The threads of this process (/proc/self/task), to see workers start and end. */
static int thread_count(void) {
    DIR *d = opendir("/proc/self/task");
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}
/* Waits (up to a budget) for the thread count to come back to `n`: a joined thread may still
 * be listed for a moment after pthread_join returned. */
static int thread_count_settles_at(int n) {
    double end = now_s() + budget(5);
    int got;
    while ((got = thread_count()) != n && now_s() < end) sleep_s(0.001);
    return got;
}

/* ------------------------------------------------------------------ jobs */

/* Jobs running now, and the most seen at once. */
static atomic_int g_running;
static atomic_int g_max_running;
/* Every job userdata_free, over the whole program (checked per test through deltas). */
static atomic_int g_frees;

enum job_mode { J_NOTHING, J_RESULT, J_EXCEPTION };

typedef struct job {
    int id;
    enum job_mode mode;
    gate_t *gate;          /* block until open, if set */
    counter_t *started;    /* bumped when the job starts, if set */
    double sleep;          /* real seconds to sleep in the job */
    int try_cancel;        /* call afut_cancel(fut) from inside the job */
    afut_executor_t *shutdown_ex; /* call afut_executor_shutdown(ex, true, false) inside */
    int value;             /* the result is &value */
    atomic_int runs;       /* calls of the job function */
    atomic_int returned;   /* returns of the job function */
    atomic_int frees;      /* userdata_free calls */
    atomic_int freed_early;    /* freed while the job function was running */
    atomic_int thread;     /* tid() of the worker */
    atomic_int done_inside;    /* afut_done(fut) inside the job */
    atomic_int cancel_inside;  /* afut_cancel(fut) inside the job */
    atomic_int gate_timeout;   /* the gate never opened */
    atomic_int set_rc;     /* status of the job's own set_result / set_exception */
    atomic_int published;  /* set (release) before the submit: the TSan hand-off */
} job_t;

/* Jobs that found their job_t unpublished (must stay 0: see the TSan note at the top). */
static atomic_int g_unpublished;

static void job_init(job_t *j, int id, enum job_mode mode) {
    memset(j, 0, sizeof *j);
    j->id = id;
    j->mode = mode;
    j->value = id;
    atomic_init(&j->runs, 0);
    atomic_init(&j->returned, 0);
    atomic_init(&j->frees, 0);
    atomic_init(&j->freed_early, 0);
    atomic_init(&j->thread, 0);
    atomic_init(&j->done_inside, -1);
    atomic_init(&j->cancel_inside, -1);
    atomic_init(&j->gate_timeout, 0);
    atomic_init(&j->set_rc, 1);
    atomic_init(&j->published, 0);
}

/* Publishes the job_t to the worker that will read it. */
static job_t *pub(job_t *j) {
    atomic_store_explicit(&j->published, 1, memory_order_release);
    return j;
}
static void check_published(job_t *j) {
    if (!atomic_load_explicit(&j->published, memory_order_acquire)) atomic_fetch_add(&g_unpublished, 1);
}

static void job_fn(afut_t *fut, void *ud) {
    job_t *j = ud;
    check_published(j);
    atomic_fetch_add(&j->runs, 1);
    atomic_store(&j->thread, tid());
    int now = atomic_fetch_add(&g_running, 1) + 1;
    int max = atomic_load(&g_max_running);
    while (now > max && !atomic_compare_exchange_weak(&g_max_running, &max, now)) {
    }
    atomic_store(&j->done_inside, afut_done(fut));
    if (j->try_cancel) atomic_store(&j->cancel_inside, afut_cancel(fut, "from inside"));
    if (j->started) counter_add(j->started);
    if (j->gate && !gate_wait(j->gate, 10)) atomic_store(&j->gate_timeout, 1);
    if (j->sleep > 0) sleep_s(j->sleep);
    if (j->shutdown_ex) afut_executor_shutdown(j->shutdown_ex, true, false);
    atomic_fetch_sub(&g_running, 1);
    switch (j->mode) {
    case J_NOTHING: break;
    case J_RESULT: atomic_store(&j->set_rc, afut_set_result(fut, &j->value, NULL)); break;
    case J_EXCEPTION:
        atomic_store(&j->set_rc, afut_set_exception(fut, 42, "job failed", NULL, NULL));
        break;
    }
    atomic_store(&j->returned, atomic_load(&j->returned) + 1);
}

static void job_free(void *ud) {
    job_t *j = ud;
    if (atomic_load(&j->runs) != atomic_load(&j->returned)) atomic_store(&j->freed_early, 1);
    atomic_fetch_add(&j->frees, 1);
    atomic_fetch_add(&g_frees, 1);
}

static void reset_running(void) {
    atomic_store(&g_running, 0);
    atomic_store(&g_max_running, 0);
}

/* A done-callback recorder (callbacks of loop-less futures run on any thread: atomics). */
typedef struct rec {
    atomic_int calls;
    atomic_int thread;
    atomic_int state;     /* afut_result() status seen inside */
    atomic_int frees;
} rec_t;

static void rec_init(rec_t *r) {
    atomic_init(&r->calls, 0);
    atomic_init(&r->thread, 0);
    atomic_init(&r->state, 1);
    atomic_init(&r->frees, 0);
}
static void rec_cb(afut_t *fut, void *ud) {
    rec_t *r = ud;
    void *v;
    atomic_store(&r->state, afut_result(fut, &v));
    atomic_store(&r->thread, tid());
    atomic_fetch_add(&r->calls, 1);
}
static void rec_free(void *ud) {
    rec_t *r = ud;
    atomic_fetch_add(&r->frees, 1);
}

/* A userdata_free that only counts (for refused calls: it must stay at 0). */
static atomic_int plain_frees;
static void plain_free(void *p) {
    (void)p;
    atomic_fetch_add(&plain_frees, 1);
}
static void nop_job(afut_t *fut, void *ud) {
    (void)fut;
    (void)ud;
}

/* ------------------------------------------------------------------ basics */

/* fn(fut, userdata) runs on a worker and completes the loop-less future. */
TEST(job_result_completes_the_future) {
    afut_executor_t *ex = afut_executor_new(2);
    CHECK(ex != NULL);
    job_t j;
    job_init(&j, 7, J_RESULT);
    afut_t *f = afut_executor_submit(ex, job_fn, pub(&j), job_free);
    CHECK(f != NULL);
    CHECK(afut_get_loop(f) == NULL);
    CHECK_EQ_INT(afut_wait(f, budget(5)), AFUT_OK);
    void *v = NULL;
    CHECK_EQ_INT(afut_result(f, &v), AFUT_OK);
    CHECK(v == &j.value);
    CHECK_EQ_INT(atomic_load(&j.done_inside), 0); /* pending while the job runs */
    CHECK(atomic_load(&j.thread) != tid());       /* on a worker */
    afut_executor_free(ex);
    CHECK_EQ_INT(atomic_load(&j.set_rc), AFUT_OK);
    CHECK_EQ_INT(atomic_load(&j.runs), 1);
    CHECK_EQ_INT(atomic_load(&j.frees), 1);
    CHECK_EQ_INT(atomic_load(&j.freed_early), 0);
    afut_unref(f);
}

/* Returning without completing the future gives a NULL result; the userdata is freed right
 * after the job returns, before the executor completes the future (afut.h). */
TEST(job_returning_without_completing_gives_null_result) {
    afut_executor_t *ex = afut_executor_new(1);
    job_t j;
    job_init(&j, 1, J_NOTHING);
    afut_t *f = afut_executor_submit(ex, job_fn, pub(&j), job_free);
    CHECK(f != NULL);
    CHECK_EQ_INT(afut_wait(f, budget(5)), AFUT_OK);
    void *v = &j;
    CHECK_EQ_INT(afut_result(f, &v), AFUT_OK);
    CHECK(v == NULL);
    CHECK(!afut_cancelled(f));
    CHECK_EQ_INT(atomic_load(&j.frees), 1); /* already when the future completed */
    afut_executor_free(ex);
    CHECK_EQ_INT(atomic_load(&j.frees), 1);
    afut_unref(f);
}

TEST(job_exception_is_the_futures) {
    afut_executor_t *ex = afut_executor_new(1);
    job_t j;
    job_init(&j, 1, J_EXCEPTION);
    afut_t *f = afut_executor_submit(ex, job_fn, pub(&j), job_free);
    CHECK_EQ_INT(afut_wait(f, budget(5)), AFUT_OK);
    void *v;
    CHECK_EQ_INT(afut_result(f, &v), AFUT_ERR_EXCEPTION);
    afut_exception_t e;
    CHECK_EQ_INT(afut_exception(f, &e), AFUT_OK);
    CHECK_EQ_INT(e.code, 42);
    CHECK_STR(e.message, "job failed");
    afut_executor_free(ex);
    CHECK_EQ_INT(atomic_load(&j.frees), 1);
    afut_unref(f);
}

/* A job with a NULL userdata and no userdata_free is fine. */
static atomic_int null_ud_runs;
static void null_ud_job(afut_t *fut, void *ud) {
    atomic_fetch_add(&null_ud_runs, ud == NULL);
    afut_set_result(fut, (void *)&null_ud_runs, NULL);
}
TEST(job_with_null_userdata) {
    afut_executor_t *ex = afut_executor_new(1);
    afut_t *f = afut_executor_submit(ex, null_ud_job, NULL, NULL);
    CHECK(f != NULL);
    CHECK_EQ_INT(afut_wait(f, budget(5)), AFUT_OK);
    afut_executor_free(ex);
    CHECK_EQ_INT(atomic_load(&null_ud_runs), 1);
    afut_unref(f);
}

/* ------------------------------------------------------------------ workers */

/* No thread before the first submit; one job starts one worker; sequential jobs reuse it
 * (a worker counts as idle once its job function returned); free joins it. */
TEST(workers_start_lazily_and_idle_ones_are_reused) {
    int base = thread_count();
    CHECK(base > 0);
    afut_executor_t *ex = afut_executor_new(4);
    CHECK_EQ_INT(thread_count(), base);
    job_t jobs[6];
    int first_thread = 0;
    for (int i = 0; i < 6; i++) {
        job_init(&jobs[i], i, J_NOTHING);
        afut_t *f = afut_executor_submit(ex, job_fn, pub(&jobs[i]), job_free);
        CHECK(f != NULL);
        CHECK_EQ_INT(afut_wait(f, budget(5)), AFUT_OK);
        afut_unref(f);
        if (i == 0) first_thread = atomic_load(&jobs[0].thread);
        CHECK_EQ_INT(atomic_load(&jobs[i].thread), first_thread);
        CHECK_EQ_INT(thread_count(), base + 1);
    }
    afut_executor_free(ex);
    CHECK_EQ_INT(thread_count_settles_at(base), base);
    for (int i = 0; i < 6; i++) CHECK_EQ_INT(atomic_load(&jobs[i].frees), 1);
}

/* Blocking jobs reach max_workers at once, and never more: the others wait in the queue. */
static void reach_max_workers(size_t max_workers, int expect) {
    reset_running();
    int base = thread_count();
    afut_executor_t *ex = afut_executor_new(max_workers);
    CHECK(ex != NULL);
    enum { N = 40 };
    int n = expect + 2;
    CHECK(n <= N);
    if (n > N) n = N;
    job_t jobs[N];
    afut_t *futs[N];
    gate_t gate;
    counter_t started;
    gate_init(&gate);
    counter_init(&started);
    for (int i = 0; i < n; i++) {
        job_init(&jobs[i], i, J_RESULT);
        jobs[i].gate = &gate;
        jobs[i].started = &started;
        futs[i] = afut_executor_submit(ex, job_fn, pub(&jobs[i]), job_free);
        CHECK(futs[i] != NULL);
    }
    CHECK(counter_wait(&started, expect, 5));
    sleep_s(0.05); /* give an extra worker (a bug) the chance to start another job */
    CHECK_EQ_INT(counter_get(&started), expect);
    CHECK_EQ_INT(atomic_load(&g_max_running), expect);
    CHECK_EQ_INT(thread_count(), base + expect);
    gate_open(&gate);
    for (int i = 0; i < n; i++) CHECK_EQ_INT(afut_wait(futs[i], budget(5)), AFUT_OK);
    CHECK_EQ_INT(atomic_load(&g_max_running), expect);
    /* the jobs ran on exactly `expect` distinct threads */
    int distinct[N], nd = 0;
    for (int i = 0; i < n; i++) {
        int t = atomic_load(&jobs[i].thread), seen = 0;
        for (int k = 0; k < nd; k++) seen |= distinct[k] == t;
        if (!seen) distinct[nd++] = t;
    }
    CHECK_EQ_INT(nd, expect);
    afut_executor_free(ex);
    for (int i = 0; i < n; i++) {
        CHECK_EQ_INT(atomic_load(&jobs[i].runs), 1);
        CHECK_EQ_INT(atomic_load(&jobs[i].frees), 1);
        CHECK_EQ_INT(atomic_load(&jobs[i].gate_timeout), 0);
        afut_unref(futs[i]);
    }
    counter_destroy(&started);
    gate_destroy(&gate);
}

TEST(blocking_jobs_reach_max_workers) { reach_max_workers(3, 3); }

/* 0 means the number of CPUs this process may run on (its affinity mask). */
TEST(zero_max_workers_means_cpus) {
    cpu_set_t set;
    CPU_ZERO(&set);
    int cpus = 1;
    if (sched_getaffinity(0, sizeof set, &set) == 0) cpus = CPU_COUNT(&set);
    if (cpus > 38) cpus = 38; /* the helper's array */
    reach_max_workers(0, cpus);
}

/* A single worker runs jobs in submission order (a FIFO queue). */
static atomic_int order_log[16];
static atomic_int order_n;
static void order_job(afut_t *fut, void *ud) {
    (void)fut;
    int i = atomic_fetch_add(&order_n, 1);
    if (i < 16) atomic_store(&order_log[i], (int)(intptr_t)ud);
}
TEST(single_worker_runs_jobs_in_submission_order) {
    atomic_store(&order_n, 0);
    afut_executor_t *ex = afut_executor_new(1);
    afut_t *futs[10];
    for (int i = 0; i < 10; i++) futs[i] = afut_executor_submit(ex, order_job, (void *)(intptr_t)i, NULL);
    afut_executor_shutdown(ex, true, false);
    CHECK_EQ_INT(atomic_load(&order_n), 10);
    for (int i = 0; i < 10; i++) {
        CHECK_EQ_INT(atomic_load(&order_log[i]), i);
        CHECK(afut_done(futs[i]));
        afut_unref(futs[i]);
    }
    afut_executor_free(ex);
}

/* ------------------------------------------------------------------ states */

/* Cancelling a queued job cancels its future (callbacks on the cancelling thread, inside
 * afut_cancel); the job never runs and its userdata is freed once. */
TEST(queued_job_cancelled_never_runs) {
    afut_executor_t *ex = afut_executor_new(1);
    gate_t gate;
    counter_t started;
    gate_init(&gate);
    counter_init(&started);
    job_t blocker, queued;
    job_init(&blocker, 0, J_RESULT);
    blocker.gate = &gate;
    blocker.started = &started;
    job_init(&queued, 1, J_RESULT);
    afut_t *f0 = afut_executor_submit(ex, job_fn, pub(&blocker), job_free);
    CHECK(counter_wait(&started, 1, 5));
    afut_t *f1 = afut_executor_submit(ex, job_fn, pub(&queued), job_free);
    char buf[64];
    afut_describe(f1, buf, sizeof buf);
    CHECK_STR(buf, "<Future pending>");
    rec_t r;
    rec_init(&r);
    CHECK_EQ_INT(afut_add_done_callback(f1, rec_cb, &r, rec_free), AFUT_OK);
    CHECK(afut_cancel(f1, "not needed"));
    CHECK_EQ_INT(atomic_load(&r.calls), 1); /* inside afut_cancel, on this thread */
    CHECK_EQ_INT(atomic_load(&r.thread), tid());
    CHECK_EQ_INT(atomic_load(&r.state), AFUT_ERR_CANCELLED);
    CHECK(afut_cancelled(f1));
    CHECK_STR(afut_cancel_message(f1), "not needed");
    CHECK(!afut_cancel(f1, NULL)); /* already cancelled */
    gate_open(&gate);
    afut_executor_shutdown(ex, true, false);
    CHECK_EQ_INT(atomic_load(&queued.runs), 0);
    CHECK_EQ_INT(atomic_load(&queued.frees), 1);
    CHECK_EQ_INT(atomic_load(&blocker.runs), 1);
    CHECK_EQ_INT(atomic_load(&blocker.frees), 1);
    void *v;
    CHECK_EQ_INT(afut_result(f0, &v), AFUT_OK);
    CHECK_EQ_INT(atomic_load(&r.frees), 1);
    afut_executor_free(ex);
    afut_unref(f0);
    afut_unref(f1);
    counter_destroy(&started);
    gate_destroy(&gate);
}

/* A running job cannot be cancelled (concurrent.futures' RUNNING state): afut_cancel returns
 * false from outside and from inside the job; the job's result stands. */
TEST(running_job_cannot_be_cancelled) {
    afut_executor_t *ex = afut_executor_new(1);
    gate_t gate;
    counter_t started;
    gate_init(&gate);
    counter_init(&started);
    job_t j;
    job_init(&j, 3, J_RESULT);
    j.gate = &gate;
    j.started = &started;
    j.try_cancel = 1;
    afut_t *f = afut_executor_submit(ex, job_fn, pub(&j), job_free);
    CHECK(counter_wait(&started, 1, 5));
    char buf[64];
    afut_describe(f, buf, sizeof buf);
    CHECK_STR(buf, "<Future running>");
    CHECK(!afut_cancel(f, "too late"));
    CHECK(!afut_cancelled(f));
    CHECK(!afut_done(f));
    CHECK(afut_cancel_message(f) == NULL);
    gate_open(&gate);
    CHECK_EQ_INT(afut_wait(f, budget(5)), AFUT_OK);
    CHECK_EQ_INT(atomic_load(&j.cancel_inside), 0);
    void *v;
    CHECK_EQ_INT(afut_result(f, &v), AFUT_OK);
    CHECK(v == &j.value);
    CHECK(!afut_cancel(f, NULL)); /* done */
    afut_executor_free(ex);
    CHECK_EQ_INT(atomic_load(&j.set_rc), AFUT_OK);
    CHECK_EQ_INT(atomic_load(&j.frees), 1);
    afut_unref(f);
    counter_destroy(&started);
    gate_destroy(&gate);
}

/* A future completed by someone else while its job is queued: the job is skipped (there is no
 * result left to produce), its userdata freed once. */
TEST(future_completed_elsewhere_before_start_skips_job) {
    afut_executor_t *ex = afut_executor_new(1);
    gate_t gate;
    counter_t started;
    gate_init(&gate);
    counter_init(&started);
    job_t blocker, queued;
    job_init(&blocker, 0, J_NOTHING);
    blocker.gate = &gate;
    blocker.started = &started;
    job_init(&queued, 1, J_RESULT);
    afut_t *f0 = afut_executor_submit(ex, job_fn, pub(&blocker), job_free);
    CHECK(counter_wait(&started, 1, 5));
    afut_t *f1 = afut_executor_submit(ex, job_fn, pub(&queued), job_free);
    static int mine;
    CHECK_EQ_INT(afut_set_result(f1, &mine, NULL), AFUT_OK);
    gate_open(&gate);
    afut_executor_shutdown(ex, true, false);
    CHECK_EQ_INT(atomic_load(&queued.runs), 0);
    CHECK_EQ_INT(atomic_load(&queued.frees), 1);
    void *v;
    CHECK_EQ_INT(afut_result(f1, &v), AFUT_OK);
    CHECK(v == &mine);
    afut_executor_free(ex);
    afut_unref(f0);
    afut_unref(f1);
    counter_destroy(&started);
    gate_destroy(&gate);
}

/* Done-callbacks follow the loop-less rule: on the thread that completes the future (the
 * worker), and at once on the adding thread once it is done. */
TEST(done_callbacks_run_on_the_completing_thread) {
    afut_executor_t *ex = afut_executor_new(2);
    gate_t gate;
    gate_init(&gate);
    job_t a, b;
    job_init(&a, 1, J_RESULT); /* completes its future itself */
    a.gate = &gate;
    job_init(&b, 2, J_NOTHING); /* the executor completes it */
    b.gate = &gate;
    afut_t *fa = afut_executor_submit(ex, job_fn, pub(&a), job_free);
    afut_t *fb = afut_executor_submit(ex, job_fn, pub(&b), job_free);
    rec_t ra, rb, late;
    rec_init(&ra);
    rec_init(&rb);
    rec_init(&late);
    CHECK_EQ_INT(afut_add_done_callback(fa, rec_cb, &ra, rec_free), AFUT_OK);
    CHECK_EQ_INT(afut_add_done_callback(fb, rec_cb, &rb, rec_free), AFUT_OK);
    gate_open(&gate);
    CHECK_EQ_INT(afut_wait(fa, budget(5)), AFUT_OK);
    CHECK_EQ_INT(afut_wait(fb, budget(5)), AFUT_OK);
    afut_executor_shutdown(ex, true, false);
    CHECK_EQ_INT(atomic_load(&ra.calls), 1);
    CHECK_EQ_INT(atomic_load(&ra.thread), atomic_load(&a.thread));
    CHECK_EQ_INT(atomic_load(&ra.state), AFUT_OK);
    CHECK_EQ_INT(atomic_load(&rb.calls), 1);
    CHECK_EQ_INT(atomic_load(&rb.thread), atomic_load(&b.thread));
    CHECK(atomic_load(&rb.thread) != tid());
    CHECK_EQ_INT(afut_add_done_callback(fa, rec_cb, &late, rec_free), AFUT_OK);
    CHECK_EQ_INT(atomic_load(&late.calls), 1);
    CHECK_EQ_INT(atomic_load(&late.thread), tid());
    CHECK_EQ_INT(atomic_load(&late.frees), 1);
    afut_executor_free(ex);
    CHECK_EQ_INT(atomic_load(&ra.frees), 1);
    CHECK_EQ_INT(atomic_load(&rb.frees), 1);
    afut_unref(fa);
    afut_unref(fb);
    gate_destroy(&gate);
}

/* ------------------------------------------------------------------ shutdown */

/* Submit after shutdown is refused: NULL, and the userdata stays the caller's. */
TEST(submit_after_shutdown_is_refused) {
    afut_executor_t *ex = afut_executor_new(2);
    afut_executor_shutdown(ex, true, false);
    atomic_store(&plain_frees, 0);
    int ud = 0;
    CHECK(afut_executor_submit(ex, nop_job, &ud, plain_free) == NULL);
    afut_loop_t *loop = afut_loop_new();
    CHECK(afut_loop_run_in_executor(loop, ex, nop_job, &ud, plain_free) == NULL);
    CHECK_EQ_INT(atomic_load(&plain_frees), 0);
    afut_loop_free(loop);
    afut_executor_free(ex);
    CHECK_EQ_INT(atomic_load(&plain_frees), 0);
}

/* shutdown(wait = true) returns once every queued and running job is done and freed. */
TEST(shutdown_wait_waits_for_every_job) {
    afut_executor_t *ex = afut_executor_new(1);
    job_t jobs[4];
    afut_t *futs[4];
    for (int i = 0; i < 4; i++) {
        job_init(&jobs[i], i, i % 2 ? J_RESULT : J_NOTHING);
        jobs[i].sleep = 0.01;
        futs[i] = afut_executor_submit(ex, job_fn, pub(&jobs[i]), job_free);
    }
    afut_executor_shutdown(ex, true, false);
    for (int i = 0; i < 4; i++) {
        CHECK(afut_done(futs[i]));
        CHECK(!afut_cancelled(futs[i]));
        CHECK_EQ_INT(atomic_load(&jobs[i].runs), 1);
        CHECK_EQ_INT(atomic_load(&jobs[i].frees), 1);
        CHECK_EQ_INT(atomic_load(&jobs[i].freed_early), 0);
        afut_unref(futs[i]);
    }
    afut_executor_free(ex);
}

/* shutdown(wait = false) returns at once; queued jobs still run; free waits for them. */
TEST(shutdown_nowait_lets_queued_jobs_finish) {
    int base = thread_count();
    afut_executor_t *ex = afut_executor_new(1);
    gate_t gate;
    counter_t started;
    gate_init(&gate);
    counter_init(&started);
    job_t jobs[3];
    afut_t *futs[3];
    for (int i = 0; i < 3; i++) {
        job_init(&jobs[i], i, J_RESULT);
        jobs[i].gate = &gate;
        jobs[i].started = &started;
        futs[i] = afut_executor_submit(ex, job_fn, pub(&jobs[i]), job_free);
    }
    CHECK(counter_wait(&started, 1, 5));
    afut_executor_shutdown(ex, false, false); /* returns while job 0 is blocked */
    CHECK(!afut_done(futs[0]));
    CHECK(!afut_cancelled(futs[1]));
    atomic_store(&plain_frees, 0);
    CHECK(afut_executor_submit(ex, nop_job, NULL, plain_free) == NULL);
    CHECK_EQ_INT(atomic_load(&plain_frees), 0);
    gate_open(&gate);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ_INT(afut_wait(futs[i], budget(5)), AFUT_OK);
        void *v;
        CHECK_EQ_INT(afut_result(futs[i], &v), AFUT_OK);
    }
    afut_executor_free(ex);
    CHECK_EQ_INT(thread_count_settles_at(base), base);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ_INT(atomic_load(&jobs[i].runs), 1);
        CHECK_EQ_INT(atomic_load(&jobs[i].frees), 1);
        afut_unref(futs[i]);
    }
    counter_destroy(&started);
    gate_destroy(&gate);
}

/* cancel_futures: the queued jobs are cancelled during shutdown (their callbacks on the
 * calling thread, their userdata freed before it returns); the running one goes on. */
TEST(shutdown_cancel_futures_cancels_queued_jobs) {
    afut_executor_t *ex = afut_executor_new(1);
    gate_t gate;
    counter_t started;
    gate_init(&gate);
    counter_init(&started);
    job_t jobs[4];
    afut_t *futs[4];
    rec_t recs[4];
    for (int i = 0; i < 4; i++) {
        job_init(&jobs[i], i, J_RESULT);
        jobs[i].gate = &gate;
        jobs[i].started = &started;
        futs[i] = afut_executor_submit(ex, job_fn, pub(&jobs[i]), job_free);
        rec_init(&recs[i]);
        CHECK_EQ_INT(afut_add_done_callback(futs[i], rec_cb, &recs[i], rec_free), AFUT_OK);
    }
    CHECK(counter_wait(&started, 1, 5));
    afut_executor_shutdown(ex, false, true);
    CHECK(!afut_done(futs[0]));
    for (int i = 1; i < 4; i++) {
        CHECK(afut_cancelled(futs[i]));
        CHECK_EQ_INT(atomic_load(&recs[i].calls), 1);
        CHECK_EQ_INT(atomic_load(&recs[i].thread), tid());
        CHECK_EQ_INT(atomic_load(&jobs[i].frees), 1);
    }
    gate_open(&gate);
    CHECK_EQ_INT(afut_wait(futs[0], budget(5)), AFUT_OK);
    void *v;
    CHECK_EQ_INT(afut_result(futs[0], &v), AFUT_OK);
    afut_executor_free(ex);
    CHECK_EQ_INT(atomic_load(&jobs[0].runs), 1);
    CHECK_EQ_INT(atomic_load(&jobs[0].frees), 1);
    for (int i = 1; i < 4; i++) CHECK_EQ_INT(atomic_load(&jobs[i].runs), 0);
    for (int i = 0; i < 4; i++) {
        CHECK_EQ_INT(atomic_load(&recs[i].frees), 1);
        afut_unref(futs[i]);
    }
    counter_destroy(&started);
    gate_destroy(&gate);
}

/* Opens a gate after a delay, from another thread. */
typedef struct opener {
    gate_t *gate;
    double delay;
    pthread_t th;
} opener_t;
static void *opener_main(void *p) {
    opener_t *o = p;
    sleep_s(o->delay);
    gate_open(o->gate);
    return NULL;
}

/* shutdown(wait = true, cancel_futures = true): cancels the queued, waits for the running. */
TEST(shutdown_wait_and_cancel_futures) {
    afut_executor_t *ex = afut_executor_new(2);
    gate_t gate;
    counter_t started;
    gate_init(&gate);
    counter_init(&started);
    job_t jobs[5];
    afut_t *futs[5];
    for (int i = 0; i < 5; i++) {
        job_init(&jobs[i], i, J_RESULT);
        jobs[i].gate = &gate;
        jobs[i].started = &started;
        futs[i] = afut_executor_submit(ex, job_fn, pub(&jobs[i]), job_free);
    }
    CHECK(counter_wait(&started, 2, 5));
    opener_t o = {.gate = &gate, .delay = 0.03};
    pthread_create(&o.th, NULL, opener_main, &o);
    afut_executor_shutdown(ex, true, true);
    int ran = 0, cancelled = 0;
    for (int i = 0; i < 5; i++) {
        CHECK(afut_done(futs[i]));
        CHECK_EQ_INT(atomic_load(&jobs[i].frees), 1);
        if (afut_cancelled(futs[i])) {
            cancelled++;
            CHECK_EQ_INT(atomic_load(&jobs[i].runs), 0);
        } else {
            ran++;
            CHECK_EQ_INT(atomic_load(&jobs[i].runs), 1);
            CHECK_EQ_INT(atomic_load(&jobs[i].returned), 1);
        }
    }
    CHECK_EQ_INT(ran, 2);
    CHECK_EQ_INT(cancelled, 3);
    pthread_join(o.th, NULL);
    afut_executor_free(ex);
    for (int i = 0; i < 5; i++) afut_unref(futs[i]);
    counter_destroy(&started);
    gate_destroy(&gate);
}

/* A second shutdown is harmless, whatever the flags; shutdown(NULL) and free(NULL) are no-ops. */
TEST(second_shutdown_and_null_are_harmless) {
    afut_executor_t *ex = afut_executor_new(2);
    gate_t gate;
    counter_t started;
    gate_init(&gate);
    counter_init(&started);
    job_t j;
    job_init(&j, 1, J_RESULT);
    j.gate = &gate;
    j.started = &started;
    afut_t *f = afut_executor_submit(ex, job_fn, pub(&j), job_free);
    CHECK(counter_wait(&started, 1, 5));
    afut_executor_shutdown(ex, false, false);
    afut_executor_shutdown(ex, false, true); /* nothing queued: cancels nothing */
    CHECK(!afut_done(f));
    opener_t o = {.gate = &gate, .delay = 0.01};
    pthread_create(&o.th, NULL, opener_main, &o);
    afut_executor_shutdown(ex, true, false); /* waits for the job left running by the first */
    pthread_join(o.th, NULL);
    CHECK(afut_done(f));
    CHECK(!afut_cancelled(f));
    CHECK_EQ_INT(atomic_load(&j.frees), 1);
    afut_executor_shutdown(ex, true, true);
    afut_executor_free(ex);
    CHECK_EQ_INT(atomic_load(&j.runs), 1);
    CHECK_EQ_INT(atomic_load(&j.frees), 1);
    afut_unref(f);
    afut_executor_shutdown(NULL, true, true);
    afut_executor_shutdown(NULL, false, false);
    afut_executor_free(NULL);
    counter_destroy(&started);
    gate_destroy(&gate);
}

/* free without shutdown: shuts down with wait = true (every job done and freed on return). */
TEST(free_shuts_down_and_waits) {
    afut_executor_t *ex = afut_executor_new(2);
    job_t jobs[5];
    afut_t *futs[5];
    for (int i = 0; i < 5; i++) {
        job_init(&jobs[i], i, J_RESULT);
        jobs[i].sleep = 0.005;
        futs[i] = afut_executor_submit(ex, job_fn, pub(&jobs[i]), job_free);
    }
    afut_executor_free(ex);
    for (int i = 0; i < 5; i++) {
        CHECK(afut_done(futs[i]));
        CHECK_EQ_INT(atomic_load(&jobs[i].runs), 1);
        CHECK_EQ_INT(atomic_load(&jobs[i].frees), 1);
        afut_unref(futs[i]);
    }
}

/* A job may shut its own executor down with wait = true: it waits for the other workers,
 * never for itself (no deadlock). */
TEST(shutdown_from_inside_a_job) {
    afut_executor_t *ex = afut_executor_new(2);
    job_t other, self;
    job_init(&other, 1, J_RESULT);
    other.sleep = 0.02;
    job_init(&self, 2, J_RESULT);
    self.shutdown_ex = ex;
    afut_t *fo = afut_executor_submit(ex, job_fn, pub(&other), job_free);
    afut_t *fs = afut_executor_submit(ex, job_fn, pub(&self), job_free);
    CHECK_EQ_INT(afut_wait(fs, budget(5)), AFUT_OK);
    CHECK(afut_done(fo)); /* the job's shutdown(wait) waited for the other worker */
    CHECK(afut_executor_submit(ex, nop_job, NULL, NULL) == NULL);
    afut_executor_free(ex);
    CHECK_EQ_INT(atomic_load(&other.frees), 1);
    CHECK_EQ_INT(atomic_load(&self.frees), 1);
    afut_unref(fo);
    afut_unref(fs);
}

/* Futures outlive their executor: results stay readable after free. */
TEST(futures_outlive_the_executor) {
    afut_executor_t *ex = afut_executor_new(1);
    job_t j;
    job_init(&j, 5, J_RESULT);
    afut_t *f = afut_executor_submit(ex, job_fn, pub(&j), job_free);
    afut_executor_free(ex);
    void *v;
    CHECK_EQ_INT(afut_result(f, &v), AFUT_OK);
    CHECK(v == &j.value);
    afut_unref(f);
}

/* The caller may drop its future at once: the job still runs, its userdata freed once. */
TEST(dropping_the_future_does_not_stop_the_job) {
    afut_executor_t *ex = afut_executor_new(1);
    job_t j;
    job_init(&j, 5, J_RESULT);
    j.sleep = 0.01;
    afut_unref(afut_executor_submit(ex, job_fn, pub(&j), job_free));
    afut_executor_free(ex);
    CHECK_EQ_INT(atomic_load(&j.runs), 1);
    CHECK_EQ_INT(atomic_load(&j.set_rc), AFUT_OK);
    CHECK_EQ_INT(atomic_load(&j.frees), 1);
}

/* ------------------------------------------------------------------ run_in_executor */

typedef struct loop_rec {
    int calls;
    int on_loop_thread;
    int state;
} loop_rec_t;
static pthread_t g_loop_thread;
static void loop_rec_cb(afut_t *fut, void *ud) {
    loop_rec_t *r = ud;
    void *v;
    r->state = afut_result(fut, &v);
    r->on_loop_thread = pthread_equal(pthread_self(), g_loop_thread);
    r->calls++;
}

/* A future of the loop; its done-callbacks run on the loop thread; value borrowed from the
 * job's future. */
TEST(run_in_executor_gives_a_loop_future) {
    g_loop_thread = pthread_self();
    afut_loop_t *loop = afut_loop_new();
    afut_executor_t *ex = afut_executor_new(2);
    job_t j;
    job_init(&j, 9, J_RESULT);
    j.sleep = 0.01;
    afut_t *f = afut_loop_run_in_executor(loop, ex, job_fn, pub(&j), job_free);
    CHECK(f != NULL);
    CHECK(afut_get_loop(f) == loop);
    loop_rec_t r = {0};
    CHECK_EQ_INT(afut_add_done_callback(f, loop_rec_cb, &r, NULL), AFUT_OK);
    CHECK_EQ_INT(afut_loop_run_until_complete(loop, f), AFUT_OK);
    void *v;
    CHECK_EQ_INT(afut_result(f, &v), AFUT_OK);
    CHECK(v == &j.value);
    CHECK(atomic_load(&j.thread) != tid());
    afut_loop_run_once(loop, 0, NULL);
    CHECK_EQ_INT(r.calls, 1);
    CHECK(r.on_loop_thread);
    CHECK_EQ_INT(r.state, AFUT_OK);
    afut_executor_free(ex);
    CHECK_EQ_INT(atomic_load(&j.frees), 1);
    afut_unref(f);
    afut_loop_free(loop);
}

TEST(run_in_executor_exception_and_null_result) {
    afut_loop_t *loop = afut_loop_new();
    afut_executor_t *ex = afut_executor_new(2);
    job_t a, b;
    job_init(&a, 1, J_EXCEPTION);
    job_init(&b, 2, J_NOTHING);
    afut_t *fa = afut_loop_run_in_executor(loop, ex, job_fn, pub(&a), job_free);
    afut_t *fb = afut_loop_run_in_executor(loop, ex, job_fn, pub(&b), job_free);
    CHECK_EQ_INT(afut_loop_run_until_complete(loop, fa), AFUT_ERR_EXCEPTION);
    afut_exception_t e;
    CHECK_EQ_INT(afut_exception(fa, &e), AFUT_OK);
    CHECK_EQ_INT(e.code, 42);
    CHECK_STR(e.message, "job failed");
    CHECK_EQ_INT(afut_loop_run_until_complete(loop, fb), AFUT_OK);
    void *v = &b;
    CHECK_EQ_INT(afut_result(fb, &v), AFUT_OK);
    CHECK(v == NULL);
    afut_executor_free(ex);
    afut_unref(fa);
    afut_unref(fb);
    afut_loop_free(loop);
    CHECK_EQ_INT(atomic_load(&a.frees), 1);
    CHECK_EQ_INT(atomic_load(&b.frees), 1);
}

/* Cancelling the loop future while the job is queued cancels the job's future: it never runs. */
TEST(run_in_executor_cancel_while_queued_never_runs) {
    afut_loop_t *loop = afut_loop_new();
    afut_executor_t *ex = afut_executor_new(1);
    gate_t gate;
    counter_t started;
    gate_init(&gate);
    counter_init(&started);
    job_t blocker, queued;
    job_init(&blocker, 0, J_RESULT);
    blocker.gate = &gate;
    blocker.started = &started;
    job_init(&queued, 1, J_RESULT);
    afut_t *f0 = afut_loop_run_in_executor(loop, ex, job_fn, pub(&blocker), job_free);
    CHECK(counter_wait(&started, 1, 5));
    afut_t *f1 = afut_loop_run_in_executor(loop, ex, job_fn, pub(&queued), job_free);
    CHECK(afut_cancel(f1, "changed my mind"));
    CHECK(afut_cancelled(f1));
    /* the chained cancel reaches the job's future on the loop (asyncio: a done-callback) */
    afut_loop_run_once(loop, 0, NULL);
    afut_loop_run_once(loop, 0, NULL);
    gate_open(&gate);
    CHECK_EQ_INT(afut_loop_run_until_complete(loop, f0), AFUT_OK);
    afut_executor_shutdown(ex, true, false);
    CHECK_EQ_INT(atomic_load(&queued.runs), 0);
    CHECK_EQ_INT(atomic_load(&queued.frees), 1);
    CHECK(afut_cancelled(f1));
    afut_executor_free(ex);
    afut_unref(f0);
    afut_unref(f1);
    afut_loop_free(loop);
    counter_destroy(&started);
    gate_destroy(&gate);
}

/* Cancelling the loop future while the job runs returns true (asyncio's wrapper); the loop
 * future stays cancelled while the job runs to its end; its result is freed once. */
static atomic_int result_frees;
static void result_free(void *p) {
    (void)p;
    atomic_fetch_add(&result_frees, 1);
}
static void heap_result_job(afut_t *fut, void *ud) {
    job_t *j = ud;
    check_published(j);
    atomic_fetch_add(&j->runs, 1);
    if (j->started) counter_add(j->started);
    if (j->gate && !gate_wait(j->gate, 10)) atomic_store(&j->gate_timeout, 1);
    atomic_store(&j->set_rc, afut_set_result(fut, &j->value, result_free));
    atomic_store(&j->returned, 1);
}
TEST(run_in_executor_cancel_while_running_returns_true) {
    atomic_store(&result_frees, 0);
    afut_loop_t *loop = afut_loop_new();
    afut_executor_t *ex = afut_executor_new(1);
    gate_t gate;
    counter_t started;
    gate_init(&gate);
    counter_init(&started);
    job_t j;
    job_init(&j, 4, J_RESULT);
    j.gate = &gate;
    j.started = &started;
    afut_t *f = afut_loop_run_in_executor(loop, ex, heap_result_job, pub(&j), job_free);
    CHECK(counter_wait(&started, 1, 5));
    CHECK(afut_cancel(f, "stop"));
    CHECK(afut_cancelled(f));
    for (int i = 0; i < 3; i++) afut_loop_run_once(loop, 0, NULL);
    gate_open(&gate);
    afut_executor_shutdown(ex, true, false);
    CHECK_EQ_INT(atomic_load(&j.set_rc), AFUT_OK); /* the job's own future was never cancelled */
    for (int i = 0; i < 3; i++) afut_loop_run_once(loop, 0, NULL);
    CHECK(afut_cancelled(f));
    CHECK_STR(afut_cancel_message(f), "stop");
    void *v;
    CHECK_EQ_INT(afut_result(f, &v), AFUT_ERR_CANCELLED);
    CHECK_EQ_INT(atomic_load(&j.frees), 1);
    afut_executor_free(ex);
    afut_unref(f);
    afut_loop_free(loop);
    CHECK_EQ_INT(atomic_load(&result_frees), 1);
    counter_destroy(&started);
    gate_destroy(&gate);
}

/* The other direction: shutdown(cancel_futures) cancels the job's future, and the loop future
 * follows on the loop. */
TEST(run_in_executor_job_cancel_cancels_loop_future) {
    afut_loop_t *loop = afut_loop_new();
    afut_executor_t *ex = afut_executor_new(1);
    gate_t gate;
    counter_t started;
    gate_init(&gate);
    counter_init(&started);
    job_t blocker, queued;
    job_init(&blocker, 0, J_RESULT);
    blocker.gate = &gate;
    blocker.started = &started;
    job_init(&queued, 1, J_RESULT);
    afut_t *f0 = afut_loop_run_in_executor(loop, ex, job_fn, pub(&blocker), job_free);
    CHECK(counter_wait(&started, 1, 5));
    afut_t *f1 = afut_loop_run_in_executor(loop, ex, job_fn, pub(&queued), job_free);
    afut_executor_shutdown(ex, false, true);
    CHECK(!afut_done(f1)); /* the loop side follows on the loop */
    CHECK_EQ_INT(afut_loop_run_until_complete(loop, f1), AFUT_ERR_CANCELLED);
    CHECK(afut_cancelled(f1));
    gate_open(&gate);
    CHECK_EQ_INT(afut_loop_run_until_complete(loop, f0), AFUT_OK);
    afut_executor_free(ex);
    CHECK_EQ_INT(atomic_load(&queued.runs), 0);
    CHECK_EQ_INT(atomic_load(&queued.frees), 1);
    CHECK_EQ_INT(atomic_load(&blocker.frees), 1);
    afut_unref(f0);
    afut_unref(f1);
    afut_loop_free(loop);
    counter_destroy(&started);
    gate_destroy(&gate);
}

/* The loop may be freed while its job runs: the job completes, nothing crashes, every
 * userdata is freed once. */
TEST(run_in_executor_loop_freed_while_job_runs) {
    afut_loop_t *loop = afut_loop_new();
    afut_executor_t *ex = afut_executor_new(1);
    gate_t gate;
    counter_t started;
    gate_init(&gate);
    counter_init(&started);
    job_t j;
    job_init(&j, 1, J_RESULT);
    j.gate = &gate;
    j.started = &started;
    afut_t *f = afut_loop_run_in_executor(loop, ex, job_fn, pub(&j), job_free);
    CHECK(counter_wait(&started, 1, 5));
    afut_loop_free(loop);
    gate_open(&gate);
    afut_executor_free(ex);
    CHECK_EQ_INT(atomic_load(&j.runs), 1);
    CHECK_EQ_INT(atomic_load(&j.frees), 1);
    CHECK(!afut_done(f)); /* its loop is gone: nothing copies the result any more */
    afut_unref(f);
    counter_destroy(&started);
    gate_destroy(&gate);
}

/* ------------------------------------------------------------------ bad input */

TEST(bad_input_returns_null_and_takes_nothing) {
    atomic_store(&plain_frees, 0);
    int ud = 0;
    afut_executor_t *ex = afut_executor_new(1);
    afut_loop_t *loop = afut_loop_new();
    afut_loop_t *closed = afut_loop_new();
    CHECK_EQ_INT(afut_loop_close(closed), AFUT_OK);

    CHECK(afut_executor_submit(NULL, nop_job, &ud, plain_free) == NULL);
    CHECK(afut_executor_submit(ex, NULL, &ud, plain_free) == NULL);
    CHECK(afut_loop_run_in_executor(NULL, ex, nop_job, &ud, plain_free) == NULL);
    CHECK(afut_loop_run_in_executor(loop, NULL, nop_job, &ud, plain_free) == NULL);
    CHECK(afut_loop_run_in_executor(loop, ex, NULL, &ud, plain_free) == NULL);
    CHECK(afut_loop_run_in_executor(closed, ex, nop_job, &ud, plain_free) == NULL);
    CHECK_EQ_INT(atomic_load(&plain_frees), 0);

    /* nothing was queued: a shutdown with cancel_futures cancels and frees nothing */
    afut_executor_shutdown(ex, true, true);
    CHECK_EQ_INT(atomic_load(&plain_frees), 0);
    afut_executor_free(ex);
    afut_loop_free(loop);
    afut_loop_free(closed);
    CHECK_EQ_INT(atomic_load(&plain_frees), 0);

    /* a huge max_workers is fine: workers start lazily */
    ex = afut_executor_new(SIZE_MAX);
    CHECK(ex != NULL);
    job_t j;
    job_init(&j, 1, J_RESULT);
    afut_t *f = afut_executor_submit(ex, job_fn, pub(&j), job_free);
    CHECK_EQ_INT(afut_wait(f, budget(5)), AFUT_OK);
    afut_executor_free(ex);
    CHECK_EQ_INT(atomic_load(&j.frees), 1);
    afut_unref(f);
}

/* ------------------------------------------------------------------ threads */

/* Many threads submit to one executor; exact counts. */
enum { SUBMITTERS = 4 };

typedef struct tally {
    atomic_int ran;
    atomic_int frees;
} tally_t;
static tally_t g_tally;
static void count_job(afut_t *fut, void *ud) {
    (void)ud;
    atomic_fetch_add(&g_tally.ran, 1);
    afut_set_result(fut, NULL, NULL);
}
static void count_free(void *ud) {
    (void)ud;
    atomic_fetch_add(&g_tally.frees, 1);
}

typedef struct submitter {
    afut_executor_t *ex;
    int n;
    int cancel_every;   /* cancel every k-th accepted future at once (0: none) */
    afut_t **futs;      /* accepted futures (NULL: refused) */
    int accepted;
    int refused;
    int cancelled_ok;   /* afut_cancel returned true */
    int *cancel_true;   /* per index: afut_cancel returned true */
    atomic_int *go;
    pthread_t th;
} submitter_t;

static void *submitter_main(void *p) {
    submitter_t *s = p;
    while (!atomic_load(s->go)) sched_yield();
    for (int i = 0; i < s->n; i++) {
        afut_t *f = afut_executor_submit(s->ex, count_job, s, count_free);
        s->futs[i] = f;
        s->cancel_true[i] = 0;
        if (!f) {
            s->refused++; /* the userdata is still ours: nothing to free here (no heap) */
            continue;
        }
        s->accepted++;
        if (s->cancel_every && i % s->cancel_every == 0 && afut_cancel(f, NULL)) {
            s->cancel_true[i] = 1;
            s->cancelled_ok++;
        }
    }
    return NULL;
}

static void run_submitters(int per_thread, int cancel_every, double shutdown_after, bool cancel_futures) {
    atomic_store(&g_tally.ran, 0);
    atomic_store(&g_tally.frees, 0);
    afut_executor_t *ex = afut_executor_new(3);
    atomic_int go;
    atomic_init(&go, 0);
    submitter_t subs[SUBMITTERS];
    for (int t = 0; t < SUBMITTERS; t++) {
        subs[t] = (submitter_t){.ex = ex, .n = per_thread, .cancel_every = cancel_every, .go = &go};
        subs[t].futs = calloc((size_t)per_thread, sizeof(afut_t *));
        subs[t].cancel_true = calloc((size_t)per_thread, sizeof(int));
        pthread_create(&subs[t].th, NULL, submitter_main, &subs[t]);
    }
    atomic_store(&go, 1);
    if (shutdown_after >= 0) {
        sleep_s(shutdown_after);
        afut_executor_shutdown(ex, true, cancel_futures);
        /* every job accepted so far is done (ran or cancelled) and freed */
    }
    for (int t = 0; t < SUBMITTERS; t++) pthread_join(subs[t].th, NULL);
    afut_executor_free(ex);
    int accepted = 0, refused = 0, ran_futs = 0, cancelled_futs = 0;
    for (int t = 0; t < SUBMITTERS; t++) {
        accepted += subs[t].accepted;
        refused += subs[t].refused;
        for (int i = 0; i < per_thread; i++) {
            afut_t *f = subs[t].futs[i];
            if (!f) continue;
            CHECK(afut_done(f));
            if (afut_cancelled(f)) {
                cancelled_futs++;
            } else {
                ran_futs++;
                CHECK(!subs[t].cancel_true[i]); /* cancel returned true: the job never ran */
            }
            afut_unref(f);
        }
        free(subs[t].futs);
        free(subs[t].cancel_true);
    }
    CHECK_EQ_INT(accepted + refused, SUBMITTERS * per_thread);
    CHECK_EQ_INT(atomic_load(&g_tally.ran), ran_futs);
    CHECK_EQ_INT(ran_futs + cancelled_futs, accepted);
    CHECK_EQ_INT(atomic_load(&g_tally.frees), accepted); /* refused ones stay the caller's */
    if (shutdown_after < 0) CHECK_EQ_INT(refused, 0);
}

TEST(many_threads_submit_exact_counts) { run_submitters((int)scaled(2000), 0, -1, false); }

TEST(cancels_race_with_workers) { run_submitters((int)scaled(2000), 3, -1, false); }

TEST(shutdown_races_submits) {
    for (int round = 0; round < 4; round++) run_submitters((int)scaled(2000), 0, 0.002 * round, false);
}

TEST(shutdown_cancel_futures_races_submits_and_cancels) {
    for (int round = 0; round < 4; round++) run_submitters((int)scaled(2000), 2, 0.002 * round, true);
}

/* Shutdown from several threads at once while jobs run: each shutdown(wait = true) returns
 * only once every job is done. */
typedef struct shutter {
    afut_executor_t *ex;
    afut_t **futs;
    int n;
    int all_done_after;
    pthread_t th;
} shutter_t;
static void *shutter_main(void *p) {
    shutter_t *s = p;
    afut_executor_shutdown(s->ex, true, false);
    int ok = 1;
    for (int i = 0; i < s->n; i++) ok &= afut_done(s->futs[i]);
    s->all_done_after = ok;
    return NULL;
}
TEST(concurrent_shutdowns_all_wait) {
    atomic_store(&g_tally.ran, 0);
    atomic_store(&g_tally.frees, 0);
    afut_executor_t *ex = afut_executor_new(2);
    enum { N = 50 };
    afut_t *futs[N];
    for (int i = 0; i < N; i++) futs[i] = afut_executor_submit(ex, count_job, NULL, count_free);
    shutter_t sh[3];
    for (int t = 0; t < 3; t++) {
        sh[t] = (shutter_t){.ex = ex, .futs = futs, .n = N};
        pthread_create(&sh[t].th, NULL, shutter_main, &sh[t]);
    }
    afut_executor_shutdown(ex, true, false);
    for (int t = 0; t < 3; t++) {
        pthread_join(sh[t].th, NULL);
        CHECK(sh[t].all_done_after);
    }
    afut_executor_free(ex);
    CHECK_EQ_INT(atomic_load(&g_tally.ran), N);
    CHECK_EQ_INT(atomic_load(&g_tally.frees), N);
    for (int i = 0; i < N; i++) afut_unref(futs[i]);
}

/* run_in_executor from the loop thread while jobs complete on workers: every loop future
 * completes, its callbacks on the loop thread. */
typedef struct rie_state {
    afut_loop_t *loop;
    afut_executor_t *ex;
    int submitted;
    int completed;
    int off_thread;
    int target;
    afut_t *all_done;
} rie_state_t;
static void rie_done(afut_t *fut, void *ud);
static void rie_submit_more(void *ud) {
    rie_state_t *st = ud;
    for (int k = 0; k < 8 && st->submitted < st->target; k++) {
        afut_t *f = afut_loop_run_in_executor(st->loop, st->ex, count_job, NULL, count_free);
        if (!f) continue;
        st->submitted++;
        afut_add_done_callback(f, rie_done, st, NULL);
        afut_unref(f);
    }
    if (st->submitted < st->target) afut_loop_call_soon(st->loop, rie_submit_more, st, NULL);
}
static void rie_done(afut_t *fut, void *ud) {
    rie_state_t *st = ud;
    (void)fut;
    if (!pthread_equal(pthread_self(), g_loop_thread)) st->off_thread++;
    if (++st->completed == st->target) afut_set_result(st->all_done, NULL, NULL);
}
TEST(run_in_executor_many_jobs) {
    g_loop_thread = pthread_self();
    atomic_store(&g_tally.ran, 0);
    atomic_store(&g_tally.frees, 0);
    rie_state_t st = {0};
    st.loop = afut_loop_new();
    st.ex = afut_executor_new(3);
    st.target = (int)scaled(2000);
    st.all_done = afut_loop_create_future(st.loop);
    afut_loop_call_soon(st.loop, rie_submit_more, &st, NULL);
    watchdog_t w;
    watchdog_start(&w, st.loop, 30);
    CHECK_EQ_INT(afut_loop_run_until_complete(st.loop, st.all_done), AFUT_OK);
    CHECK(!watchdog_finish(&w));
    CHECK_EQ_INT(st.completed, st.target);
    CHECK_EQ_INT(st.off_thread, 0);
    afut_executor_free(st.ex);
    CHECK_EQ_INT(atomic_load(&g_tally.ran), st.target);
    CHECK_EQ_INT(atomic_load(&g_tally.frees), st.target);
    afut_unref(st.all_done);
    afut_loop_free(st.loop);
}

/* The TSan hand-off held: every job read a published job_t. */
TEST(every_job_saw_its_data_published) { CHECK_EQ_INT(atomic_load(&g_unpublished), 0); }

int main(void) {
    signal(SIGALRM, on_alarm);
    alarm(under_valgrind() ? 300 : 90);
    (void)tid();
    RUNT(job_result_completes_the_future);
    RUNT(job_returning_without_completing_gives_null_result);
    RUNT(job_exception_is_the_futures);
    RUNT(job_with_null_userdata);
    RUNT(workers_start_lazily_and_idle_ones_are_reused);
    RUNT(blocking_jobs_reach_max_workers);
    RUNT(zero_max_workers_means_cpus);
    RUNT(single_worker_runs_jobs_in_submission_order);
    RUNT(queued_job_cancelled_never_runs);
    RUNT(running_job_cannot_be_cancelled);
    RUNT(future_completed_elsewhere_before_start_skips_job);
    RUNT(done_callbacks_run_on_the_completing_thread);
    RUNT(submit_after_shutdown_is_refused);
    RUNT(shutdown_wait_waits_for_every_job);
    RUNT(shutdown_nowait_lets_queued_jobs_finish);
    RUNT(shutdown_cancel_futures_cancels_queued_jobs);
    RUNT(shutdown_wait_and_cancel_futures);
    RUNT(second_shutdown_and_null_are_harmless);
    RUNT(free_shuts_down_and_waits);
    RUNT(shutdown_from_inside_a_job);
    RUNT(futures_outlive_the_executor);
    RUNT(dropping_the_future_does_not_stop_the_job);
    RUNT(run_in_executor_gives_a_loop_future);
    RUNT(run_in_executor_exception_and_null_result);
    RUNT(run_in_executor_cancel_while_queued_never_runs);
    RUNT(run_in_executor_cancel_while_running_returns_true);
    RUNT(run_in_executor_job_cancel_cancels_loop_future);
    RUNT(run_in_executor_loop_freed_while_job_runs);
    RUNT(bad_input_returns_null_and_takes_nothing);
    RUNT(many_threads_submit_exact_counts);
    RUNT(cancels_race_with_workers);
    RUNT(shutdown_races_submits);
    RUNT(shutdown_cancel_futures_races_submits_and_cancels);
    RUNT(concurrent_shutdowns_all_wait);
    RUNT(run_in_executor_many_jobs);
    RUNT(every_job_saw_its_data_published);
    TEST_END();
}
