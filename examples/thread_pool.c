/*
 * thread_pool.c: blocking work on a thread pool, results back on the loop.
 *
 * asyncio's loop.run_in_executor(), in C: an afut executor (concurrent.futures'
 * ThreadPoolExecutor) runs each job on one of its worker threads, and
 * afut_loop_run_in_executor hands back a future of the loop for it:
 *
 *   - the job function runs on a worker and completes its future with afut_set_result;
 *   - the done-callbacks of the loop futures run on the LOOP thread, in the order the jobs
 *     completed, so they can touch loop-thread state with no lock;
 *   - cancelling a loop future cancels the job: a job still queued never runs, and one already
 *     running finishes while its loop future stays cancelled (asyncio's rules);
 *   - afut_executor_free waits for the workers, whose userdata are all freed by then.
 *
 * This program creates no thread itself: the executor starts its workers when jobs arrive (at
 * most 4 here) and reuses idle ones.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "afut.h"

enum { N_WORKERS = 4, N_JOBS = 8, CANCELLED_JOB = 3 };

/* Loop-thread state, touched only by done-callbacks: no lock needed. */
struct app {
    pthread_t loop_thread;
    afut_t *all_done; /* completed by the last done-callback */
    int completed;    /* position in completion order */
    int remaining;
    int off_thread; /* callbacks that ran elsewhere than the loop thread (must stay 0) */
    bool failed;
};

struct job {
    struct app *app;
    int index;
    long k; /* sum the primes below k */
};

static long long sum_primes_below(long k) {
    long long sum = 0;
    for (long n = 2; n < k; n++) {
        bool prime = true;
        for (long d = 2; d * d <= n; d++)
            if (n % d == 0) {
                prime = false;
                break;
            }
        if (prime) sum += n;
    }
    return sum;
}

/* Runs on a worker thread. */
static void compute(afut_t *fut, void *userdata) {
    const struct job *job = userdata;
    long long *sum = malloc(sizeof *sum);
    if (sum == NULL) {
        afut_set_exception(fut, 12 /* ENOMEM */, "out of memory", NULL, NULL);
        return;
    }
    *sum = sum_primes_below(job->k);
    if (afut_set_result(fut, sum, free) != AFUT_OK) free(sum); /* not taken: still ours */
}

/* Runs on the loop thread. */
static void on_job_done(afut_t *fut, void *userdata) {
    const struct job *job = userdata;
    struct app *app = job->app;
    if (!pthread_equal(pthread_self(), app->loop_thread)) app->off_thread++;
    app->completed++;

    void *value;
    afut_status_t rc = afut_result(fut, &value);
    if (rc == AFUT_OK) {
        printf("#%d  job %d: sum of primes below %ld = %lld\n", app->completed, job->index, job->k,
               *(long long *)value);
    } else if (rc == AFUT_ERR_CANCELLED) {
        const char *why = afut_cancel_message(fut);
        printf("#%d  job %d: cancelled (%s)\n", app->completed, job->index, why ? why : "no message");
    } else {
        afut_exception_t exc;
        if (afut_exception(fut, &exc) == AFUT_OK && exc.code != 0)
            printf("#%d  job %d: failed: code %d: %s\n", app->completed, job->index, (int)exc.code,
                   exc.message ? exc.message : "");
        else
            printf("#%d  job %d: %s\n", app->completed, job->index, afut_status_str(rc));
        app->failed = true;
    }
    if (--app->remaining == 0 && afut_set_result(app->all_done, NULL, NULL) != AFUT_OK) app->failed = true;
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    static const long sizes[N_JOBS] = {1000000, 10, 500000, 100, 100000, 1000, 200000, 10000};
    afut_loop_t *loop = afut_loop_new();
    afut_executor_t *pool = afut_executor_new(N_WORKERS);
    if (loop == NULL || pool == NULL) {
        perror("thread_pool: setup");
        return EXIT_FAILURE;
    }
    struct app app = {.loop_thread = pthread_self(), .remaining = N_JOBS};
    struct job jobs[N_JOBS];
    afut_t *futs[N_JOBS] = {0};
    int status = EXIT_FAILURE;

    app.all_done = afut_loop_create_future(loop);
    for (int i = 0; i < N_JOBS; i++) {
        jobs[i] = (struct job){.app = &app, .index = i, .k = sizes[i]};
        /* The job borrows jobs[i] (no userdata_free): it outlives the pool. */
        futs[i] = afut_loop_run_in_executor(loop, pool, compute, &jobs[i], NULL);
        if (futs[i] == NULL || afut_add_done_callback(futs[i], on_job_done, &jobs[i], NULL) != AFUT_OK) {
            fprintf(stderr, "thread_pool: submitting job %d failed\n", i);
            goto out;
        }
    }

    /* Changed our mind about one job: its loop future is cancelled at once (its callback runs
     * first), and the job itself is cancelled too if no worker has started it yet. */
    if (!afut_cancel(futs[CANCELLED_JOB], "result no longer needed")) {
        fprintf(stderr, "thread_pool: afut_cancel returned false\n");
        goto out;
    }

    /* The loop thread sleeps in here, waking only to run done-callbacks. */
    afut_status_t rc = afut_loop_run_until_complete(loop, app.all_done);
    if (rc != AFUT_OK) {
        fprintf(stderr, "thread_pool: afut_loop_run_until_complete: %s\n", afut_status_str(rc));
        goto out;
    }
    printf("%d jobs, %d callbacks off the loop thread\n", app.completed, app.off_thread);
    status = app.failed || app.off_thread != 0 ? EXIT_FAILURE : EXIT_SUCCESS;

out:
    afut_executor_free(pool); /* waits for the workers (a cancelled running job included) */
    for (int i = 0; i < N_JOBS; i++) afut_unref(futs[i]); /* NULL is fine */
    afut_unref(app.all_done);
    afut_loop_free(loop);
    return status;
}
