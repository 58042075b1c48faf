/*
 * thread_pool.c: worker threads compute, futures carry the results back.
 *
 * The pattern asyncio users know as loop.run_in_executor(), without any
 * call_soon_threadsafe ceremony:
 *
 *   - the loop thread creates one future per job and attaches a done-callback;
 *   - a pool of plain pthreads takes jobs and completes the futures with
 *     afut_set_result from their own thread (thread-safe, wakes the loop);
 *   - the done-callbacks run on the LOOP thread, in the order the jobs
 *     completed, so they can touch loop-thread state with no lock.
 *
 * A job cancelled before a worker reaches it shows the other direction: the
 * worker notices afut_cancelled() and skips it, and even if it did not,
 * afut_set_result on a cancelled future returns AFUT_ERR_INVALID_STATE and
 * leaves the value with the caller to free.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "afut.h"

enum { N_THREADS = 4, N_JOBS = 8, CANCELLED_JOB = 3 };

struct job {
    long k;         /* sum the primes below k */
    afut_t *fut;    /* the loop thread's reference; workers borrow it (joined before unref) */
};

/* The pool: a fixed array of jobs and the index of the next one to take. */
struct pool {
    struct job jobs[N_JOBS];
    size_t next;
    pthread_mutex_t lock;
};

/* Loop-thread state, touched only by done-callbacks: no lock needed. */
struct app {
    pthread_t loop_thread;
    afut_t *all_done;    /* completed by the last done-callback */
    int completed;       /* position in completion order */
    int remaining;
    int off_thread;      /* callbacks that ran elsewhere than the loop thread (must stay 0) */
    bool failed;
};

struct watch {
    struct app *app;
    int index;
    long k;
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

static void *worker_main(void *arg) {
    struct pool *pool = arg;
    for (;;) {
        pthread_mutex_lock(&pool->lock);
        struct job *job = pool->next < N_JOBS ? &pool->jobs[pool->next++] : NULL;
        pthread_mutex_unlock(&pool->lock);
        if (job == NULL) return NULL;

        if (afut_cancelled(job->fut)) continue; /* nobody wants it any more */

        long long *sum = malloc(sizeof *sum);
        if (sum == NULL) {
            afut_status_t rc = afut_set_exception(job->fut, 12 /* ENOMEM */, "out of memory", NULL, NULL);
            if (rc != AFUT_OK) fprintf(stderr, "thread_pool: afut_set_exception: %s\n", afut_status_str(rc));
            continue;
        }
        *sum = sum_primes_below(job->k);
        afut_status_t rc = afut_set_result(job->fut, sum, free); /* from this worker thread */
        if (rc == AFUT_ERR_INVALID_STATE) {
            free(sum); /* cancelled meanwhile: the value was not taken */
        } else if (rc != AFUT_OK) {
            free(sum);
            fprintf(stderr, "thread_pool: afut_set_result: %s\n", afut_status_str(rc));
        }
    }
}

static void on_job_done(afut_t *fut, void *userdata) {
    struct watch *w = userdata;
    struct app *app = w->app;
    if (!pthread_equal(pthread_self(), app->loop_thread)) app->off_thread++;
    app->completed++;

    void *value;
    afut_status_t rc = afut_result(fut, &value);
    if (rc == AFUT_OK) {
        printf("#%d  job %d: sum of primes below %ld = %lld\n", app->completed, w->index, w->k,
               *(long long *)value);
    } else if (rc == AFUT_ERR_CANCELLED) {
        const char *why = afut_cancel_message(fut);
        printf("#%d  job %d: cancelled (%s)\n", app->completed, w->index, why ? why : "no message");
    } else {
        afut_exception_t exc;
        if (afut_exception(fut, &exc) == AFUT_OK && exc.code != 0)
            printf("#%d  job %d: failed: code %d: %s\n", app->completed, w->index, (int)exc.code,
                   exc.message ? exc.message : "");
        else
            printf("#%d  job %d: %s\n", app->completed, w->index, afut_status_str(rc));
        app->failed = true;
    }

    if (--app->remaining == 0) {
        rc = afut_set_result(app->all_done, NULL, NULL);
        if (rc != AFUT_OK) {
            fprintf(stderr, "thread_pool: afut_set_result(all_done): %s\n", afut_status_str(rc));
            app->failed = true;
        }
    }
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    static const long sizes[N_JOBS] = {1000000, 10, 500000, 100, 100000, 1000, 200000, 10000};
    int status = EXIT_FAILURE;

    afut_loop_t *loop = afut_loop_new();
    if (loop == NULL) {
        perror("thread_pool: afut_loop_new");
        return EXIT_FAILURE;
    }
    struct app app = {.loop_thread = pthread_self(), .remaining = N_JOBS};
    struct pool pool = {.next = 0};
    struct watch watches[N_JOBS];
    pthread_t threads[N_THREADS];
    int started = 0;
    pthread_mutex_init(&pool.lock, NULL);

    app.all_done = afut_loop_create_future(loop);
    if (app.all_done == NULL) goto out;
    for (int i = 0; i < N_JOBS; i++) {
        pool.jobs[i].k = sizes[i];
        pool.jobs[i].fut = afut_loop_create_future(loop);
        if (pool.jobs[i].fut == NULL) {
            fprintf(stderr, "thread_pool: afut_loop_create_future failed\n");
            goto out;
        }
        watches[i] = (struct watch){.app = &app, .index = i, .k = sizes[i]};
        afut_status_t rc = afut_add_done_callback(pool.jobs[i].fut, on_job_done, &watches[i], NULL);
        if (rc != AFUT_OK) {
            fprintf(stderr, "thread_pool: afut_add_done_callback: %s\n", afut_status_str(rc));
            goto out;
        }
    }

    /* Changed our mind about one job before the pool starts: its callback still runs. */
    if (!afut_cancel(pool.jobs[CANCELLED_JOB].fut, "result no longer needed")) {
        fprintf(stderr, "thread_pool: afut_cancel returned false\n");
        goto out;
    }

    for (; started < N_THREADS; started++)
        if (pthread_create(&threads[started], NULL, worker_main, &pool) != 0) {
            fprintf(stderr, "thread_pool: pthread_create failed\n");
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
    for (int i = 0; i < started; i++) pthread_join(threads[i], NULL);
    for (int i = 0; i < N_JOBS; i++) afut_unref(pool.jobs[i].fut); /* NULL is fine */
    afut_unref(app.all_done);
    afut_loop_free(loop);
    pthread_mutex_destroy(&pool.lock);
    return status;
}
