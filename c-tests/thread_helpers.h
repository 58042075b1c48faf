/* Helpers shared by the multi-thread C test programs (test_threads, test_loopless,
 * test_host_fd, test_stress), on top of test.h's: the short names these programs use for
 * test.h's deadline and time helpers, counts and deadlines scaled for slow runs (valgrind,
 * sanitizers), and a watchdog thread that stops a loop a test left blocked, so that a bug
 * fails a test instead of hanging the suite.
 *
 * A program may define, before including this header:
 *   AFUT_SANITIZED_DIVISOR  how much smaller scaled() counts are under ASan/TSan (default 1)
 *   AFUT_SANITIZED_BUDGET   how much longer budget() deadlines are under ASan/TSan (default 1)
 * Everything here is static inline, so a program uses what it needs. */
#ifndef AFUT_THREAD_HELPERS_H
#define AFUT_THREAD_HELPERS_H

#include <afut.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "test.h"

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define AFUT_TEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
#define AFUT_TEST_SANITIZED 1
#endif
#endif
#ifndef AFUT_TEST_SANITIZED
#define AFUT_TEST_SANITIZED 0
#endif
#ifndef AFUT_SANITIZED_DIVISOR
#define AFUT_SANITIZED_DIVISOR 1
#endif
#ifndef AFUT_SANITIZED_BUDGET
#define AFUT_SANITIZED_BUDGET 1
#endif

/* The whole-program deadline: main() calls signal(SIGALRM, on_alarm) and alarm(seconds)
 * (or test_deadline(seconds)); the message names the test that was running. */
static inline void on_alarm(int sig) { test_on_deadline_(sig); }

/* RUN() records the test's name for the deadline and the watchdog. */
#define RUNT(name) RUN(name)

static inline int under_valgrind(void) { return test_under_valgrind(); }

/* A loop count, smaller under valgrind (20x) and, if the program asks, under sanitizers. */
static inline long scaled(long n) {
    long d = under_valgrind() ? 20 : AFUT_TEST_SANITIZED ? AFUT_SANITIZED_DIVISOR : 1;
    return n / d > 0 ? n / d : 1;
}

/* A deadline in seconds, longer under valgrind (8x) and, if the program asks, sanitizers. */
static inline double budget(double s) {
    return s * (under_valgrind() ? 8 : AFUT_TEST_SANITIZED ? AFUT_SANITIZED_BUDGET : 1);
}

/* How late a wakeup may be and still count as prompt. */
static inline double max_latency(void) { return under_valgrind() ? 3.0 : 1.0; }

static inline double now_s(void) { return test_now_s(); }

static inline void sleep_s(double s) { test_sleep_s(s); }

/* Milliseconds until `deadline` (now_s() time), at least 1, for poll/epoll timeouts. */
static inline int ms_until(double deadline) {
    double left = (deadline - now_s()) * 1000.0;
    if (left < 1) return 1;
    if (left > 1e9) return 1000000000;
    return (int)left + 1;
}

/* A thread that calls afut_loop_stop(loop) if the test is still blocked after `secs`. */
typedef struct watchdog {
    afut_loop_t *loop;
    double secs;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int finished;
    atomic_int fired;
    pthread_t th;
} watchdog_t;

static inline void *watchdog_main(void *p) {
    watchdog_t *w = p;
    struct timespec dl;
    clock_gettime(CLOCK_MONOTONIC, &dl);
    double end = (double)dl.tv_sec + (double)dl.tv_nsec / 1e9 + w->secs;
    dl.tv_sec = (time_t)end;
    dl.tv_nsec = (long)((end - (double)dl.tv_sec) * 1e9);
    pthread_mutex_lock(&w->mu);
    int rc = 0;
    while (!w->finished && rc != ETIMEDOUT) rc = pthread_cond_timedwait(&w->cv, &w->mu, &dl);
    int fire = !w->finished;
    pthread_mutex_unlock(&w->mu);
    if (fire) {
        atomic_store(&w->fired, 1);
        fprintf(stderr, "  watchdog: %s still blocked after %.1f s, calling afut_loop_stop\n",
                (const char *)test_current_name_, w->secs);
        afut_loop_stop(w->loop);
    }
    return NULL;
}

static inline void watchdog_start(watchdog_t *w, afut_loop_t *loop, double secs) {
    memset(w, 0, sizeof *w);
    w->loop = loop;
    w->secs = budget(secs);
    atomic_init(&w->fired, 0);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cv, &attr);
    pthread_condattr_destroy(&attr);
    pthread_mutex_init(&w->mu, NULL);
    pthread_create(&w->th, NULL, watchdog_main, w);
}

/* Returns true if the watchdog had to stop the loop (the test then failed). */
static inline int watchdog_finish(watchdog_t *w) {
    pthread_mutex_lock(&w->mu);
    w->finished = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->th, NULL);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    return atomic_load(&w->fired);
}

#endif
