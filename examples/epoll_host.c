/*
 * epoll_host.c: afut hosted by a hand-written, EDGE-TRIGGERED epoll loop.
 *
 * The host owns the wait; afut only does the work. The whole contract is:
 *
 *   1. Register afut_loop_fd(loop) for EPOLLIN. Level- or edge-triggered both
 *      work; this example uses EPOLLET, the harder case. The fd belongs to the
 *      loop: never read it, never close it.
 *   2. Before each wait, ask afut_loop_timeout_ms(loop) and use it (or your own
 *      deadline, whichever is sooner) as the wait's timeout:
 *        -1  afut has no timer: wait as long as you like,
 *         0  afut has work ready now,
 *        >0  ms until afut's next timer, rounded up (so never a busy spin).
 *   3. Whenever the fd is reported readable, call
 *      afut_loop_run_once(loop, 0, NULL) ONCE. It runs the due timers and the
 *      callbacks that were ready when it started; what those callbacks schedule
 *      runs in the next iteration, and afut then makes the fd readable again
 *      (a fresh edge), so one run_once per event never stalls an edge-triggered
 *      host, and you never need to "drain" afut in a loop.
 *   4. The fd also becomes readable when a timer falls due, so the timeout of
 *      step 2 is only a safety net: when the wait times out on afut's deadline
 *      we call run_once too (a run_once with nothing to do costs little).
 *
 * Everything afut runs (timers, done-callbacks) runs here, on the host thread,
 * inside run_once. Worker threads complete futures with plain afut_set_result:
 * afut queues the callbacks and wakes the fd; no call_soon_threadsafe needed.
 *
 * The program: three workers finish at different times, an afut timer starts
 * a chain of call_soon callbacks (one iteration each, the edge-triggered test),
 * an afut_sleep future completes, and the host's own timerfd ticks alongside.
 * It prints what happened and exits when everything is done.
 */
#define _GNU_SOURCE /* timerfd, nanosleep with -std=c11 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "afut.h"

enum { TAG_AFUT = 1, TAG_TICK = 2 };
enum { N_WORKERS = 3, CHAIN_STEPS = 5 };

/* State shared by the callbacks; touched only on the host (loop) thread. */
struct app {
    afut_loop_t *loop;
    double start;       /* afut_loop_time() at startup */
    int outstanding;    /* results we still wait for; 0 ends the host loop */
    int chain_step;     /* call_soon chain progress */
    unsigned long dispatches;          /* afut_loop_run_once calls so far */
    unsigned long chain_last_dispatch; /* the dispatch that ran the previous chain step */
    bool chain_shared;  /* two steps in one iteration: would break asyncio's batch rule */
    bool failed;
};

/* One unit of work for a worker thread. */
struct job {
    int id;
    unsigned delay_ms;  /* pretend the work takes this long */
    long n;             /* compute 1^2 + 2^2 + ... + n^2 */
    afut_t *fut;        /* the worker's own reference */
    struct app *app;
};

static void die(const char *what, afut_status_t rc) {
    fprintf(stderr, "epoll_host: %s failed: %s (%d)\n", what, afut_status_str(rc), (int)rc);
    exit(EXIT_FAILURE);
}

/* For the calls that return a handle: 0 or NULL means failure (closed loop, NULL or
 * invalid argument, out of memory); nothing was taken from us. */
static void die_null(const char *what) {
    fprintf(stderr, "epoll_host: %s failed\n", what);
    exit(EXIT_FAILURE);
}

static double elapsed(const struct app *app) { return afut_loop_time(app->loop) - app->start; }

static void sleep_ms(unsigned ms) {
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* ---- worker thread: computes, then completes its future from this foreign thread ---- */
static void *worker_main(void *arg) {
    struct job *job = arg;
    sleep_ms(job->delay_ms);
    long *value = malloc(sizeof *value);
    if (value != NULL) {
        *value = 0;
        for (long i = 1; i <= job->n; i++) *value += i * i;
        /* Thread-safe: afut queues the done-callbacks on the loop and wakes its fd.
         * On success the future owns value and frees it with free(). */
        afut_status_t rc = afut_set_result(job->fut, value, free);
        if (rc != AFUT_OK) {
            free(value); /* on error the value stays ours */
            fprintf(stderr, "epoll_host: worker %d: afut_set_result: %s\n", job->id, afut_status_str(rc));
        }
    } else {
        afut_status_t rc = afut_set_exception(job->fut, 12 /* ENOMEM */, "out of memory", NULL, NULL);
        if (rc != AFUT_OK) fprintf(stderr, "epoll_host: afut_set_exception: %s\n", afut_status_str(rc));
    }
    afut_unref(job->fut); /* the worker's reference */
    job->fut = NULL;
    return NULL;
}

/* ---- callbacks: all run on the host thread, inside afut_loop_run_once ---- */
static void on_job_done(afut_t *fut, void *userdata) {
    struct job *job = userdata;
    struct app *app = job->app;
    void *value;
    afut_status_t rc = afut_result(fut, &value);
    if (rc == AFUT_OK) {
        printf("[%.2fs] worker %d: sum of squares 1..%ld = %ld\n", elapsed(app), job->id, job->n,
               *(long *)value);
    } else {
        printf("[%.2fs] worker %d failed: %s\n", elapsed(app), job->id, afut_status_str(rc));
        app->failed = true;
    }
    app->outstanding--;
}

static void chain_step(void *userdata) {
    struct app *app = userdata;
    if (app->chain_step > 0 && app->dispatches == app->chain_last_dispatch) app->chain_shared = true;
    app->chain_last_dispatch = app->dispatches;
    app->chain_step++;
    if (app->chain_step < CHAIN_STEPS) {
        /* Scheduled from inside run_once: runs in the NEXT iteration. For an
         * edge-triggered host that needs a new edge, which afut provides. */
        if (afut_loop_call_soon(app->loop, chain_step, app, NULL) == 0) die_null("afut_loop_call_soon");
        return;
    }
    printf("[%.2fs] call_soon chain: %d steps, %s\n", elapsed(app), app->chain_step,
           app->chain_shared ? "SOME IN THE SAME ITERATION" : "one per iteration");
    if (app->chain_shared) app->failed = true;
    app->outstanding--;
}

static void on_timer(void *userdata) {
    struct app *app = userdata;
    printf("[%.2fs] afut timer fired (scheduled for 0.15s)\n", elapsed(app));
    if (afut_loop_call_soon(app->loop, chain_step, app, NULL) == 0) die_null("afut_loop_call_soon");
    app->outstanding--;
}

static void on_sleep_done(afut_t *fut, void *userdata) {
    struct app *app = userdata;
    void *value;
    afut_status_t rc = afut_result(fut, &value);
    if (rc != AFUT_OK) die("afut_result", rc);
    printf("[%.2fs] afut_sleep(0.3) done with \"%s\"\n", elapsed(app), (const char *)value);
    app->outstanding--;
}

/* ---- host side ---- */
static int epoll_add(int ep, int fd, uint32_t events, uint32_t tag) {
    struct epoll_event ev = {.events = events, .data.u32 = tag};
    return epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0); /* line by line, even into a pipe */

    struct app app = {0};
    app.loop = afut_loop_new();
    if (app.loop == NULL) {
        perror("epoll_host: afut_loop_new");
        return EXIT_FAILURE;
    }
    app.start = afut_loop_time(app.loop);

    /* 1. The host's epoll set: afut's fd and the host's own timerfd, both edge-triggered. */
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) {
        perror("epoll_host: epoll_create1");
        return EXIT_FAILURE;
    }
    int afd = afut_loop_fd(app.loop);
    if (afd < 0) {
        perror("epoll_host: afut_loop_fd");
        return EXIT_FAILURE;
    }
    if (epoll_add(ep, afd, EPOLLIN | EPOLLET, TAG_AFUT) < 0) {
        perror("epoll_host: epoll_ctl(afut fd)");
        return EXIT_FAILURE;
    }
    int tick = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    struct itimerspec every_50ms = {.it_interval = {0, 50000000L}, .it_value = {0, 50000000L}};
    if (tick < 0 || timerfd_settime(tick, 0, &every_50ms, NULL) < 0 ||
        epoll_add(ep, tick, EPOLLIN | EPOLLET, TAG_TICK) < 0) {
        perror("epoll_host: timerfd");
        return EXIT_FAILURE;
    }

    /* 2. Work for afut: futures completed by workers, a timer, a sleep. */
    static const unsigned delays[N_WORKERS] = {200, 50, 120};
    struct job jobs[N_WORKERS];
    afut_t *futs[N_WORKERS];
    pthread_t threads[N_WORKERS];
    for (int i = 0; i < N_WORKERS; i++) {
        futs[i] = afut_loop_create_future(app.loop);
        if (futs[i] == NULL) die_null("afut_loop_create_future");
        jobs[i] = (struct job){.id = i, .delay_ms = delays[i], .n = 1000L * (i + 1), .app = &app};
        afut_status_t rc = afut_add_done_callback(futs[i], on_job_done, &jobs[i], NULL);
        if (rc != AFUT_OK) die("afut_add_done_callback", rc);
        app.outstanding++;
    }
    if (afut_loop_call_later(app.loop, 0.15, on_timer, &app, NULL) == 0) die_null("afut_loop_call_later");
    app.outstanding += 2; /* the timer and the chain it starts */
    afut_t *nap = afut_sleep(app.loop, 0.3, "good morning", NULL);
    if (nap == NULL) die_null("afut_sleep");
    afut_status_t rc = afut_add_done_callback(nap, on_sleep_done, &app, NULL);
    if (rc != AFUT_OK) die("afut_add_done_callback", rc);
    app.outstanding++;

    for (int i = 0; i < N_WORKERS; i++) {
        jobs[i].fut = afut_ref(futs[i]); /* each thread holding the pointer holds a reference */
        if (pthread_create(&threads[i], NULL, worker_main, &jobs[i]) != 0) {
            fprintf(stderr, "epoll_host: pthread_create failed\n");
            return EXIT_FAILURE;
        }
    }

    /* 3. The host loop. */
    unsigned long ticks = 0, ran_total = 0, on_timeout = 0;
    while (app.outstanding > 0) {
        int timeout = afut_loop_timeout_ms(app.loop); /* combine with your own deadline here */
        struct epoll_event events[8];
        int n = epoll_wait(ep, events, 8, timeout);
        if (n < 0) {
            if (errno == EINTR) continue;
            perror("epoll_host: epoll_wait");
            return EXIT_FAILURE;
        }
        /* Timed out on afut's deadline: safety net, see step 4 above. */
        bool run_afut = (n == 0 && timeout >= 0);
        for (int i = 0; i < n; i++) {
            if (events[i].data.u32 == TAG_AFUT) {
                run_afut = true; /* do NOT read the fd: afut manages it */
            } else if (events[i].data.u32 == TAG_TICK) {
                /* Edge-triggered: read our own fd until EAGAIN. */
                uint64_t expirations;
                while (read(tick, &expirations, sizeof expirations) == (ssize_t)sizeof expirations)
                    ticks += expirations;
            }
        }
        if (run_afut) {
            size_t ran = 0;
            app.dispatches++;
            rc = afut_loop_run_once(app.loop, 0, &ran); /* 0: never block inside afut */
            if (rc != AFUT_OK) die("afut_loop_run_once", rc);
            ran_total += ran;
            if (n == 0 && ran > 0) on_timeout++; /* work the fd did not announce first */
        }
    }
    printf("host: timerfd ticked %lu times; afut ran %lu callbacks in %lu dispatches"
           " (%lu found work after a timeout)\n",
           ticks, ran_total, app.dispatches, on_timeout);

    /* 4. Tear down: threads first (they hold references), then the futures, then the loop. */
    for (int i = 0; i < N_WORKERS; i++) pthread_join(threads[i], NULL);
    for (int i = 0; i < N_WORKERS; i++) afut_unref(futs[i]);
    afut_unref(nap);
    close(tick);
    close(ep);              /* the host's epoll set; afut's fd is closed by afut_loop_free */
    afut_loop_free(app.loop);
    puts(app.failed ? "epoll_host: FAILED" : "epoll_host: all done");
    return app.failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
