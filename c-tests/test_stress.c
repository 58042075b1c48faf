/* Stress: many threads completing loop futures, the same load under an edge-triggered
 * epoll host, and a ping-pong between the loop thread and a worker.
 *
 * Checked: N threads x M completions with exact counts and every callback on
 * the loop thread; an edge-triggered host under the same load never stalls;
 * userdata_free calls equal registrations. SEMANTICS.md L8, B12, R1, R2, R7.
 *
 * Bounded in time: a few seconds normally; counts divided by 20 when
 * AFUT_UNDER_VALGRIND=1, and by 4 under a sanitizer. Every blocking step has a deadline
 * (a watchdog thread that stops the loop, an alarm() for the whole program).
 *
 * ThreadSanitizer: see test_threads.c ("published" flags make the library's hand-off
 * visible without hiding a missing one). */
#define _GNU_SOURCE
#include "test.h"

#include <afut.h>

#define AFUT_SANITIZED_DIVISOR 4
#define AFUT_SANITIZED_BUDGET 3
#include "thread_helpers.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>


/* ------------------------------------------------------------------ helpers */













/* ----------------------------------------------------- the completion load */

/* 8 producer threads (the same load runs under an edge-triggered host below). */
#define NT 8

typedef struct tally {
    afut_loop_t *loop;
    pthread_t loop_thread;
    long stop_at;
    atomic_long ran, freed, wrong_thread, unpublished, mismatches, not_done;
    long last_seq[NT];     /* loop thread only */
    long order_violations; /* loop thread only */
} tally_t;

/* What a thread did to the future the token belongs to. */
enum kind { K_RESULT, K_EXCEPTION, K_CANCEL };

typedef struct token {
    atomic_int published;
    tally_t *t;
    int src;
    long seq;
    enum kind kind;
} token_t;

static void tally_init(tally_t *t, afut_loop_t *loop, long stop_at) {
    memset(t, 0, sizeof *t);
    t->loop = loop;
    t->loop_thread = pthread_self();
    t->stop_at = stop_at;
    atomic_init(&t->ran, 0);
    atomic_init(&t->freed, 0);
    atomic_init(&t->wrong_thread, 0);
    atomic_init(&t->unpublished, 0);
    atomic_init(&t->mismatches, 0);
    atomic_init(&t->not_done, 0);
    for (int i = 0; i < NT; i++) t->last_seq[i] = -1;
}

static void token_check(token_t *k) {
    if (atomic_load_explicit(&k->published, memory_order_acquire) != 1)
        atomic_fetch_add(&k->t->unpublished, 1);
}

static void load_done_cb(afut_t *fut, void *ud) {
    token_t *k = ud;
    token_check(k);
    tally_t *t = k->t;
    if (!pthread_equal(pthread_self(), t->loop_thread)) {
        atomic_fetch_add(&t->wrong_thread, 1);
    } else {
        /* one thread's submissions reach the ready queue in its program order */
        if (k->seq <= t->last_seq[k->src]) t->order_violations++;
        t->last_seq[k->src] = k->seq;
    }
    if (!afut_done(fut)) atomic_fetch_add(&t->not_done, 1);
    void *v = NULL;
    afut_exception_t e;
    int ok = 0;
    switch (k->kind) {
    case K_RESULT: ok = afut_result(fut, &v) == AFUT_OK && v == (void *)(uintptr_t)(k->seq + 1); break;
    case K_EXCEPTION:
        ok = afut_exception(fut, &e) == AFUT_OK && e.code == 5 && e.detail == (void *)(uintptr_t)(k->seq + 1);
        break;
    case K_CANCEL: ok = afut_cancelled(fut) && afut_result(fut, NULL) == AFUT_ERR_CANCELLED; break;
    }
    if (!ok) atomic_fetch_add(&t->mismatches, 1);
    long n = atomic_fetch_add(&t->ran, 1) + 1;
    if (t->stop_at && n == t->stop_at) afut_loop_stop(t->loop);
}

static void load_free(void *ud) {
    token_t *k = ud;
    token_check(k);
    atomic_fetch_add(&k->t->freed, 1);
    free(k);
}

typedef struct worker {
    afut_loop_t *loop;
    tally_t *t;
    int src;
    long m;
    long registered, rc_errors;
    pthread_t th;
} worker_t;

/* Each iteration: create a loop future, attach a callback (before the completion for
 * even j, after it for odd j: the done-future path of add_done_callback), complete it
 * (result, exception, cancel in turn), drop our reference. */
static void *worker_main(void *p) {
    worker_t *w = p;
    for (long j = 0; j < w->m; j++) {
        afut_t *f = afut_loop_create_future(w->loop);
        if (!f) {
            w->rc_errors++;
            continue;
        }
        token_t *k = calloc(1, sizeof *k);
        k->t = w->t;
        k->src = w->src;
        k->seq = j;
        enum kind kind = (enum kind)(j % 3);
        k->kind = kind;
        atomic_store_explicit(&k->published, 1, memory_order_release);
        /* from here on the token may belong to the library: never touch it again */
        int before = (j & 1) == 0;
        if (before) {
            if (afut_add_done_callback(f, load_done_cb, k, load_free) == AFUT_OK) w->registered++;
            else w->rc_errors++;
        }
        int rc = AFUT_OK;
        switch (kind) {
        case K_RESULT: rc = afut_set_result(f, (void *)(uintptr_t)(j + 1), NULL); break;
        case K_EXCEPTION: rc = afut_set_exception(f, 5, "load", (void *)(uintptr_t)(j + 1), NULL); break;
        case K_CANCEL: rc = afut_cancel(f, NULL) ? AFUT_OK : AFUT_ERR_INVALID_STATE; break;
        }
        if (rc != AFUT_OK) w->rc_errors++;
        if (!before) {
            if (afut_add_done_callback(f, load_done_cb, k, load_free) == AFUT_OK) w->registered++;
            else w->rc_errors++;
        }
        afut_unref(f);
    }
    return NULL;
}

static void start_workers(worker_t *ws, afut_loop_t *loop, tally_t *t, long m) {
    for (int i = 0; i < NT; i++) {
        ws[i] = (worker_t){.loop = loop, .t = t, .src = i, .m = m};
        pthread_create(&ws[i].th, NULL, worker_main, &ws[i]);
    }
}

static long join_workers(worker_t *ws) {
    long registered = 0;
    for (int i = 0; i < NT; i++) {
        pthread_join(ws[i].th, NULL);
        CHECK_EQ_INT(ws[i].rc_errors, 0);
        registered += ws[i].registered;
    }
    return registered;
}

static void check_load(tally_t *t, long total, long registered) {
    CHECK_EQ_INT(registered, total);
    CHECK_EQ_INT(atomic_load(&t->ran), total);
    CHECK_EQ_INT(atomic_load(&t->wrong_thread), 0);
    CHECK_EQ_INT(atomic_load(&t->unpublished), 0);
    CHECK_EQ_INT(atomic_load(&t->mismatches), 0);
    CHECK_EQ_INT(atomic_load(&t->not_done), 0);
    CHECK_EQ_INT(t->order_violations, 0);
}

/* The loop in run_forever; the last callback stops it. */
TEST(threads_complete_loop_futures_run_forever) {
    long m = scaled(10000);
    long total = NT * m;
    afut_loop_t *loop = afut_loop_new();
    tally_t t;
    tally_init(&t, loop, total);
    worker_t ws[NT];
    watchdog_t wd;
    watchdog_start(&wd, loop, 20.0);
    double t0 = now_s();
    start_workers(ws, loop, &t, m);
    int rc = afut_loop_run_forever(loop);
    double took = now_s() - t0;
    long registered = join_workers(ws);
    CHECK(!watchdog_finish(&wd));
    CHECK_EQ_INT(rc, AFUT_OK);
    if (atomic_load(&t.ran) != total)
        fprintf(stderr, "  ran %ld of %ld in %.2f s\n", atomic_load(&t.ran), total, took);
    check_load(&t, total, registered);
    afut_loop_run_once(loop, 0, NULL);
    afut_loop_free(loop);
    CHECK_EQ_INT(atomic_load(&t.freed), registered);
}

/* The same load, driven by an edge-triggered epoll host that calls run_once(loop, 0)
 * exactly once per event and never on a timeout. */
TEST(threads_complete_loop_futures_edge_triggered_host) {
    long m = scaled(10000);
    long total = NT * m;
    afut_loop_t *loop = afut_loop_new();
    tally_t t;
    tally_init(&t, loop, 0);
    int fd = afut_loop_fd(loop);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.fd = fd};
    CHECK(fd >= 0 && ep >= 0);
    CHECK_EQ_INT(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev), 0);
    worker_t ws[NT];
    start_workers(ws, loop, &t, m);
    double deadline = now_s() + budget(15.0);
    long events = 0, zero_spins = 0;
    int stalled = 0;
    double spin_since = 0;
    while (atomic_load(&t.ran) < total) {
        double now = now_s();
        if (now >= deadline) {
            stalled = 1;
            break;
        }
        int to = afut_loop_timeout_ms(loop);
        int wait = to < 0 ? ms_until(deadline) : to;
        struct epoll_event out[4];
        int n = epoll_wait(ep, out, 4, wait);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            if (to == 0) {
                /* "work ready" but no edge: a short race with a submitter is fine, a
                 * sustained one is a stall */
                zero_spins++;
                if (spin_since == 0) spin_since = now;
                else if (now - spin_since > budget(1.0)) {
                    stalled = 1;
                    break;
                }
                sched_yield();
            }
            continue;
        }
        spin_since = 0;
        for (int i = 0; i < n; i++) {
            events++;
            CHECK_EQ_INT(afut_loop_run_once(loop, 0, NULL), AFUT_OK);
        }
    }
    long registered = join_workers(ws);
    if (stalled)
        fprintf(stderr, "  stalled: ran %ld of %ld, events %ld, zero-timeout spins %ld\n",
                atomic_load(&t.ran), total, events, zero_spins);
    CHECK(!stalled);
    check_load(&t, total, registered);
    /* drain whatever a failed run left, so that everything is freed (bounded) */
    double drain_end = now_s() + budget(5.0);
    while (afut_loop_timeout_ms(loop) == 0 && now_s() < drain_end) afut_loop_run_once(loop, 0, NULL);
    close(ep);
    afut_loop_free(loop);
    CHECK_EQ_INT(atomic_load(&t.freed), registered);
}

/* -------------------------------------------------------------- ping-pong */

/* The loop thread completes ping[i] inside a callback; a worker blocked in afut_wait
 * sees it and completes pong[i], which ends the loop's run_until_complete. 10000 round
 * trips, each a cross-thread wakeup in both directions. */
typedef struct pingpong {
    afut_t **ping, **pong;
    long rounds;
    long wait_errors, mismatches, done;
    pthread_t th;
} pingpong_t;

static void *pong_main(void *p) {
    pingpong_t *pp = p;
    for (long i = 0; i < pp->rounds; i++) {
        int rc = afut_wait(pp->ping[i], budget(10.0));
        if (rc != AFUT_OK) {
            pp->wait_errors++;
            break;
        }
        void *v = NULL;
        if (afut_result(pp->ping[i], &v) != AFUT_OK) break; /* cancelled: the loop gave up */
        if (v != (void *)(uintptr_t)(i + 1)) pp->mismatches++;
        afut_set_result(pp->pong[i], (void *)(uintptr_t)(i + 1), NULL);
        pp->done++;
    }
    return NULL;
}

typedef struct ping_arg {
    afut_t *fut;
    long i;
} ping_arg_t;

static void ping_cb(void *ud) {
    ping_arg_t *a = ud;
    afut_set_result(a->fut, (void *)(uintptr_t)(a->i + 1), NULL);
}

TEST(ping_pong_loop_and_thread) {
    long rounds = scaled(10000);
    afut_loop_t *loop = afut_loop_new();
    pingpong_t pp;
    memset(&pp, 0, sizeof pp);
    pp.rounds = rounds;
    pp.ping = calloc((size_t)rounds, sizeof(afut_t *));
    pp.pong = calloc((size_t)rounds, sizeof(afut_t *));
    for (long i = 0; i < rounds; i++) {
        pp.ping[i] = afut_loop_create_future(loop);
        pp.pong[i] = afut_loop_create_future(loop);
    }
    pthread_create(&pp.th, NULL, pong_main, &pp);
    watchdog_t wd;
    watchdog_start(&wd, loop, 20.0);
    long ok = 0;
    for (long i = 0; i < rounds; i++) {
        ping_arg_t a = {pp.ping[i], i};
        if (!afut_loop_call_soon(loop, ping_cb, &a, NULL)) break;
        int rc = afut_loop_run_until_complete(loop, pp.pong[i]);
        void *v = NULL;
        if (rc == AFUT_OK && afut_result(pp.pong[i], &v) == AFUT_OK && v == (void *)(uintptr_t)(i + 1)) {
            ok++;
        } else {
            fprintf(stderr, "  round %ld: run_until_complete -> %d (%s)\n", i, rc, afut_status_str(rc));
            /* make sure ping_cb has run before `a` goes out of scope */
            afut_loop_run_once(loop, 0, NULL);
            break;
        }
    }
    /* release the worker if we gave up early */
    for (long i = 0; i < rounds; i++) afut_cancel(pp.ping[i], NULL);
    pthread_join(pp.th, NULL);
    CHECK(!watchdog_finish(&wd));
    CHECK_EQ_INT(ok, rounds);
    CHECK_EQ_INT(pp.done, rounds);
    CHECK_EQ_INT(pp.wait_errors, 0);
    CHECK_EQ_INT(pp.mismatches, 0);
    for (long i = 0; i < rounds; i++) {
        afut_unref(pp.ping[i]);
        afut_unref(pp.pong[i]);
    }
    free(pp.ping);
    free(pp.pong);
    afut_loop_run_once(loop, 0, NULL);
    afut_loop_free(loop);
}

/* ================================================================== main */

int main(void) {
    signal(SIGALRM, on_alarm);
    alarm(under_valgrind() ? 115 : 90);
    RUNT(threads_complete_loop_futures_run_forever);
    RUNT(threads_complete_loop_futures_edge_triggered_host);
    RUNT(ping_pong_loop_and_thread);
    TEST_END();
}
