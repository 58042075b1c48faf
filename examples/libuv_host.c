/*
 * libuv_host.c: afut inside a libuv loop.
 *
 * libuv owns the thread and the wait; afut is driven by two libuv handles:
 *
 *   uv_poll_t   on afut_loop_fd(loop), UV_READABLE. The fd is readable whenever
 *               afut has work, due timers included, and it is safe for level-
 *               and edge-triggered pollers alike. On each poll event call
 *               afut_loop_run_once(loop, 0, NULL) once: it runs what is ready
 *               and never blocks (timeout 0). Never read or close the fd.
 *   uv_timer_t  one-shot, re-armed after every dispatch from
 *               afut_loop_timeout_ms(loop): -1 stop it (no afut timer), 0 run
 *               soon, >0 the ms until afut's next timer (rounded up, so the
 *               timer never fires early and never spins). afut's fd already
 *               signals due timers, so this timer is a safety net that keeps
 *               libuv's own idea of "when is the next deadline" right; if your
 *               own libuv callbacks schedule afut timers, re-arm after them too.
 *
 * Worker threads (here libuv's own thread pool, through uv_queue_work) complete
 * afut futures with a plain afut_set_result: afut queues the done-callbacks and
 * wakes its fd, so there is no uv_async_t to set up and no queue of your own.
 * Every afut callback runs on the libuv loop thread, inside run_once.
 *
 * Build: gcc -std=c11 -Wall -Wextra -O2 -Iinclude examples/libuv_host.c \
 *            $(pkg-config --cflags --libs libuv) -Ltarget/release -lafut ...
 * (Debian: apt-get install libuv1-dev pkg-config; scripts/install-deps.sh does it.)
 */
#define _GNU_SOURCE /* libuv's headers want POSIX declarations under -std=c11 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <uv.h>

#include "afut.h"

enum { N_JOBS = 3 };

struct host {
    uv_loop_t uv;
    uv_poll_t afut_poll;   /* watches afut_loop_fd */
    uv_timer_t afut_timer; /* re-armed from afut_loop_timeout_ms */
    uv_timer_t tick;       /* the host's own periodic timer, unrelated to afut */
    afut_loop_t *loop;
    int outstanding;       /* results still expected; 0 shuts down */
    unsigned long ticks, dispatches;
    bool failed;
};

struct job {
    uv_work_t req;  /* req.data unused: container-of through the first member */
    int id;
    long n;         /* count the primes below n */
    afut_t *fut;    /* the worker's own reference */
    struct host *host;
};

static void die(const char *what, afut_status_t rc) {
    fprintf(stderr, "libuv_host: %s failed: %s (%d)\n", what, afut_status_str(rc), (int)rc);
    exit(EXIT_FAILURE);
}

/* For the calls that return a handle: 0 or NULL means failure (closed loop, NULL or
 * invalid argument, out of memory); nothing was taken from us. */
static void die_null(const char *what) {
    fprintf(stderr, "libuv_host: %s failed\n", what);
    exit(EXIT_FAILURE);
}

static void die_uv(const char *what, int err) {
    fprintf(stderr, "libuv_host: %s failed: %s\n", what, uv_strerror(err));
    exit(EXIT_FAILURE);
}

/* ---------------- the integration: about 30 lines ---------------- */

static void on_afut_timer(uv_timer_t *timer);

/* After every dispatch: make libuv's timer match afut's next deadline. */
static void rearm_afut_timer(struct host *h) {
    int ms = afut_loop_timeout_ms(h->loop);
    if (ms < 0) {
        uv_timer_stop(&h->afut_timer); /* afut has no timer */
        return;
    }
    int err = uv_timer_start(&h->afut_timer, on_afut_timer, (uint64_t)ms, 0);
    if (err != 0) die_uv("uv_timer_start", err);
}

static void shutdown_host(struct host *h);

static void dispatch_afut(struct host *h) {
    size_t ran = 0;
    afut_status_t rc = afut_loop_run_once(h->loop, 0, &ran); /* 0: never block libuv */
    if (rc != AFUT_OK) die("afut_loop_run_once", rc);
    h->dispatches++;
    if (h->outstanding == 0) {
        shutdown_host(h);
        return;
    }
    rearm_afut_timer(h);
}

static void on_afut_readable(uv_poll_t *poll, int status, int events) {
    (void)events;
    struct host *h = poll->data;
    if (status < 0) die_uv("uv_poll (afut fd)", status);
    dispatch_afut(h);
}

static void on_afut_timer(uv_timer_t *timer) { dispatch_afut(timer->data); }

/* ---------------- the application ---------------- */

static void on_tick(uv_timer_t *timer) {
    struct host *h = timer->data;
    h->ticks++;
}

/* Runs on a libuv thread-pool thread, NOT the loop thread. */
static void job_work(uv_work_t *req) {
    struct job *job = (struct job *)req;
    long *count = malloc(sizeof *count);
    if (count == NULL) {
        afut_status_t rc = afut_set_exception(job->fut, 12 /* ENOMEM */, "out of memory", NULL, NULL);
        if (rc != AFUT_OK) fprintf(stderr, "libuv_host: afut_set_exception: %s\n", afut_status_str(rc));
    } else {
        *count = 0;
        for (long k = 2; k < job->n; k++) {
            bool prime = true;
            for (long d = 2; d * d <= k; d++)
                if (k % d == 0) {
                    prime = false;
                    break;
                }
            *count += prime;
        }
        /* Thread-safe: wakes the afut fd, the done-callback runs on the loop thread. */
        afut_status_t rc = afut_set_result(job->fut, count, free);
        if (rc != AFUT_OK) {
            free(count); /* not taken: still ours */
            fprintf(stderr, "libuv_host: afut_set_result: %s\n", afut_status_str(rc));
        }
    }
    afut_unref(job->fut);
    job->fut = NULL;
}

/* afut done-callback: on the loop thread, inside afut_loop_run_once. */
static void on_job_done(afut_t *fut, void *userdata) {
    struct job *job = userdata;
    struct host *h = job->host;
    void *value;
    afut_status_t rc = afut_result(fut, &value);
    if (rc == AFUT_OK) {
        printf("job %d: %ld primes below %ld\n", job->id, *(long *)value, job->n);
    } else {
        printf("job %d failed: %s\n", job->id, afut_status_str(rc));
        h->failed = true;
    }
    h->outstanding--;
}

static void on_afut_timer_app(void *userdata) {
    struct host *h = userdata;
    printf("afut call_later(0.2) fired after %lu host ticks\n", h->ticks);
    h->outstanding--;
}

static void on_sleep_done(afut_t *fut, void *userdata) {
    struct host *h = userdata;
    void *value;
    afut_status_t rc = afut_result(fut, &value);
    if (rc != AFUT_OK) die("afut_result", rc);
    printf("afut_sleep(0.1) done with \"%s\"\n", (const char *)value);
    h->outstanding--;
}

static void shutdown_host(struct host *h) {
    /* Stop watching the fd before afut_loop_free closes it; then let uv_run return. */
    uv_poll_stop(&h->afut_poll);
    uv_close((uv_handle_t *)&h->afut_poll, NULL);
    uv_close((uv_handle_t *)&h->afut_timer, NULL);
    uv_close((uv_handle_t *)&h->tick, NULL);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct host h = {0};
    int err = uv_loop_init(&h.uv);
    if (err != 0) die_uv("uv_loop_init", err);

    h.loop = afut_loop_new();
    if (h.loop == NULL) {
        perror("libuv_host: afut_loop_new");
        return EXIT_FAILURE;
    }
    int fd = afut_loop_fd(h.loop);
    if (fd < 0) {
        perror("libuv_host: afut_loop_fd");
        return EXIT_FAILURE;
    }

    /* The integration: a poll handle on the fd and a timer for afut's deadline. */
    if ((err = uv_poll_init(&h.uv, &h.afut_poll, fd)) != 0) die_uv("uv_poll_init", err);
    h.afut_poll.data = &h;
    if ((err = uv_poll_start(&h.afut_poll, UV_READABLE, on_afut_readable)) != 0) die_uv("uv_poll_start", err);
    if ((err = uv_timer_init(&h.uv, &h.afut_timer)) != 0) die_uv("uv_timer_init", err);
    h.afut_timer.data = &h;

    /* The host's own business: a 20 ms tick. */
    if ((err = uv_timer_init(&h.uv, &h.tick)) != 0) die_uv("uv_timer_init", err);
    h.tick.data = &h;
    if ((err = uv_timer_start(&h.tick, on_tick, 20, 20)) != 0) die_uv("uv_timer_start", err);

    /* afut work: three futures completed on libuv's thread pool, a timer, a sleep. */
    static const long sizes[N_JOBS] = {200000, 1000, 50000};
    struct job jobs[N_JOBS];
    afut_t *futs[N_JOBS];
    for (int i = 0; i < N_JOBS; i++) {
        futs[i] = afut_loop_create_future(h.loop);
        if (futs[i] == NULL) die_null("afut_loop_create_future");
        jobs[i] = (struct job){.id = i, .n = sizes[i], .host = &h};
        afut_status_t rc = afut_add_done_callback(futs[i], on_job_done, &jobs[i], NULL);
        if (rc != AFUT_OK) die("afut_add_done_callback", rc);
        jobs[i].fut = afut_ref(futs[i]);
        h.outstanding++;
        if ((err = uv_queue_work(&h.uv, &jobs[i].req, job_work, NULL)) != 0) die_uv("uv_queue_work", err);
    }
    if (afut_loop_call_later(h.loop, 0.2, on_afut_timer_app, &h, NULL) == 0) die_null("afut_loop_call_later");
    h.outstanding++;
    afut_t *nap = afut_sleep(h.loop, 0.1, "rested", NULL);
    if (nap == NULL) die_null("afut_sleep");
    afut_status_t rc = afut_add_done_callback(nap, on_sleep_done, &h, NULL);
    if (rc != AFUT_OK) die("afut_add_done_callback", rc);
    h.outstanding++;

    /* We scheduled afut timers from outside a dispatch: arm libuv's timer once. */
    rearm_afut_timer(&h);

    /* Returns when shutdown_host has closed every handle and the pool work is done. */
    uv_run(&h.uv, UV_RUN_DEFAULT);

    if ((err = uv_loop_close(&h.uv)) != 0) die_uv("uv_loop_close", err);
    for (int i = 0; i < N_JOBS; i++) afut_unref(futs[i]);
    afut_unref(nap);
    afut_loop_free(h.loop);
    printf("libuv_host: %lu afut dispatches, %s\n", h.dispatches, h.failed ? "FAILED" : "all done");
    return h.failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
