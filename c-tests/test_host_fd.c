/* Host integration: afut_loop_fd, afut_loop_timeout_ms, afut_loop_run_once driven by a
 * host's own wait (poll, level- and edge-triggered epoll), and afut_loop_set_wakeup_fn.
 *
 * Mirrors API.md "host poll integration" and the header's rules (one epoll fd, stable,
 * readable exactly when run_once(loop, 0) has work, due timers included; a fresh edge
 * after a run_once that leaves work; idle = not readable; timeout rounded up), and
 * SEMANTICS.md B12 (a coalesced boolean wakeup, data in the queue, none lost). The
 * shape of the hosts follows libuv's embedding contract (uv_backend_fd /
 * uv_backend_timeout / uv_run(NOWAIT)).
 *
 * ThreadSanitizer: see test_threads.c. Tokens submitted from other threads carry an
 * atomic "published" flag (release by the producer, acquire-and-check by the consumer),
 * which makes the library's hand-off visible to TSan without hiding a missing one. */
#define _GNU_SOURCE
#include "test.h"

#include <afut.h>

#include "thread_helpers.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ helpers */







/* A wall-clock budget for host loops; generous under valgrind. */



/* ceil() without libm (the C suite does not link -lm). */
static long long ceil_ll(double x) {
    long long t = (long long)x;
    return (double)t < x ? t + 1 : t;
}

/* Remaining ms until `deadline`, at least 1, at most INT_MAX-ish. */

/* ------------------------------------------------ counted, published tokens */

typedef struct tally {
    pthread_t loop_thread;
    atomic_long ran, freed, wrong_thread, unpublished;
} tally_t;

typedef struct token {
    atomic_int published;
    tally_t *t;
} token_t;

static void tally_init(tally_t *t) {
    memset(t, 0, sizeof *t);
    t->loop_thread = pthread_self();
    atomic_init(&t->ran, 0);
    atomic_init(&t->freed, 0);
    atomic_init(&t->wrong_thread, 0);
    atomic_init(&t->unpublished, 0);
}

static token_t *token_new(tally_t *t) {
    token_t *k = calloc(1, sizeof *k);
    if (!k) abort();
    k->t = t;
    atomic_store_explicit(&k->published, 1, memory_order_release);
    return k;
}

static void token_check(token_t *k) {
    if (atomic_load_explicit(&k->published, memory_order_acquire) != 1)
        atomic_fetch_add(&k->t->unpublished, 1);
}

static void token_cb(void *ud) {
    token_t *k = ud;
    token_check(k);
    if (!pthread_equal(pthread_self(), k->t->loop_thread)) atomic_fetch_add(&k->t->wrong_thread, 1);
    atomic_fetch_add(&k->t->ran, 1);
}

static void token_done_cb(afut_t *fut, void *ud) {
    (void)fut;
    token_cb(ud);
}

static void token_free(void *ud) {
    token_t *k = ud;
    token_check(k);
    atomic_fetch_add(&k->t->freed, 1);
    free(k);
}

static atomic_int plain_frees;
static void plain_free(void *p) {
    (void)p;
    atomic_fetch_add(&plain_frees, 1);
}
static void noop_cb(void *p) { (void)p; }

/* A thread that submits `n` call_soon's (or one set_result) after `delay`. */
typedef struct submitter {
    afut_loop_t *loop;
    tally_t *t;
    afut_t *fut; /* if set: set_result on it instead */
    long n;
    double delay;
    double pause_every; /* sleep this long every 64 submissions */
    double t_act;
    long accepted;
    pthread_t th;
} submitter_t;

static void *submitter_main(void *p) {
    submitter_t *s = p;
    sleep_s(s->delay);
    s->t_act = now_s();
    if (s->fut) {
        s->accepted = afut_set_result(s->fut, NULL, NULL) == AFUT_OK;
        return NULL;
    }
    for (long i = 0; i < s->n; i++) {
        token_t *k = token_new(s->t);
        if (afut_loop_call_soon(s->loop, token_cb, k, token_free)) s->accepted++;
        else free(k);
        if (s->pause_every > 0 && (i & 63) == 63) sleep_s(s->pause_every);
    }
    return NULL;
}

static void submitter_start(submitter_t *s) { pthread_create(&s->th, NULL, submitter_main, s); }

/* ============================================================ the fd itself */

/* API.md afut_loop_fd: one fd for the loop's life; -1 with errno EINVAL for NULL. */
TEST(fd_is_stable_and_null_is_einval) {
    afut_loop_t *loop = afut_loop_new();
    int fd = afut_loop_fd(loop);
    CHECK(fd >= 0);
    CHECK_EQ_INT(afut_loop_fd(loop), fd);
    CHECK(afut_loop_call_soon(loop, noop_cb, NULL, NULL) != 0);
    CHECK_EQ_INT(afut_loop_run_once(loop, 0, NULL), AFUT_OK);
    CHECK(afut_loop_call_later(loop, 0.001, noop_cb, NULL, NULL) != 0);
    sleep_s(0.002);
    CHECK_EQ_INT(afut_loop_run_once(loop, 0, NULL), AFUT_OK);
    CHECK_EQ_INT(afut_loop_fd(loop), fd);
    errno = 0;
    CHECK_EQ_INT(afut_loop_fd(NULL), -1);
    CHECK_EQ_INT(errno, EINVAL);
    CHECK_EQ_INT(afut_loop_timeout_ms(NULL), -1);
    afut_loop_free(loop);
}

/* "An idle loop's fd is not readable", also with many timers far in the future;
 * afut_loop_timeout_ms then gives -1 (nothing) or the time to the first timer. */
TEST(fd_idle_loop_not_readable) {
    afut_loop_t *loop = afut_loop_new();
    int fd = afut_loop_fd(loop);
    CHECK_EQ_INT(test_readable(fd, 0), 0);
    CHECK_EQ_INT(afut_loop_timeout_ms(loop), -1);
    atomic_store(&plain_frees, 0);
    for (int i = 0; i < 1000; i++)
        CHECK(afut_loop_call_later(loop, 1000.0 + i, noop_cb, NULL, plain_free) != 0);
    CHECK_EQ_INT(test_readable(fd, 0), 0);
    CHECK_EQ_INT(test_readable(fd, 20), 0);
    int t = afut_loop_timeout_ms(loop);
    CHECK(t >= 999000 && t <= 1000000);
    size_t ran = 99;
    CHECK_EQ_INT(afut_loop_run_once(loop, 0, &ran), AFUT_OK);
    CHECK_EQ_INT(ran, 0);
    CHECK_EQ_INT(test_readable(fd, 0), 0);
    /* a timer at INFINITY never comes due: not readable, and no zero timeout */
    afut_loop_t *loop2 = afut_loop_new();
    int fd2 = afut_loop_fd(loop2);
    CHECK(afut_loop_call_later(loop2, INFINITY, noop_cb, NULL, plain_free) != 0);
    CHECK_EQ_INT(test_readable(fd2, 0), 0);
    int t2 = afut_loop_timeout_ms(loop2);
    CHECK(t2 == -1 || t2 > 1000000);
    afut_loop_free(loop2);
    afut_loop_free(loop);
    CHECK_EQ_INT(atomic_load(&plain_frees), 1001);
}

/* L8 for hosts: call_soon from another thread makes the fd readable; a host blocked in
 * poll() wakes promptly; run_once runs it on the host's thread and the fd goes quiet. */
TEST(fd_readable_after_call_soon_from_thread) {
    afut_loop_t *loop = afut_loop_new();
    int fd = afut_loop_fd(loop);
    tally_t t;
    tally_init(&t);
    /* the host blocks in poll while the thread submits */
    submitter_t s = {.loop = loop, .t = &t, .n = 1, .delay = 0.05};
    submitter_start(&s);
    double t0 = now_s();
    int r = test_readable(fd, (int)(budget(5.0) * 1000));
    double woke = now_s();
    pthread_join(s.th, NULL);
    CHECK_EQ_INT(r, 1);
    CHECK(woke - s.t_act < max_latency());
    CHECK(woke - t0 >= 0.04);
    CHECK_EQ_INT(afut_loop_timeout_ms(loop), 0);
    CHECK_EQ_INT(test_readable(fd, 0), 1); /* level: still readable until run */
    size_t ran = 0;
    CHECK_EQ_INT(afut_loop_run_once(loop, 0, &ran), AFUT_OK);
    CHECK_EQ_INT(ran, 1);
    CHECK_EQ_INT(atomic_load(&t.ran), 1);
    CHECK_EQ_INT(atomic_load(&t.wrong_thread), 0);
    CHECK_EQ_INT(test_readable(fd, 0), 0);
    CHECK_EQ_INT(afut_loop_timeout_ms(loop), -1);
    /* submitted before the host looks at all */
    submitter_t s2 = {.loop = loop, .t = &t, .n = 3};
    submitter_start(&s2);
    pthread_join(s2.th, NULL);
    CHECK_EQ_INT(test_readable(fd, 0), 1);
    CHECK_EQ_INT(afut_loop_run_once(loop, 0, &ran), AFUT_OK);
    CHECK_EQ_INT(ran, 3);
    CHECK_EQ_INT(test_readable(fd, 0), 0);
    afut_loop_free(loop);
    CHECK_EQ_INT(atomic_load(&t.freed), 4);
    CHECK_EQ_INT(atomic_load(&t.unpublished), 0);
}

/* call_soon on the loop's thread while the loop is not running: readable too. */
TEST(fd_readable_after_call_soon_on_loop_thread) {
    afut_loop_t *loop = afut_loop_new();
    int fd = afut_loop_fd(loop);
    CHECK(afut_loop_call_soon(loop, noop_cb, NULL, NULL) != 0);
    CHECK_EQ_INT(test_readable(fd, 0), 1);
    CHECK_EQ_INT(afut_loop_timeout_ms(loop), 0);
    size_t ran = 0;
    CHECK_EQ_INT(afut_loop_run_once(loop, 0, &ran), AFUT_OK);
    CHECK_EQ_INT(ran, 1);
    CHECK_EQ_INT(test_readable(fd, 0), 0);
    /* a done-callback queued by completing a future on this thread */
    afut_t *f = afut_loop_create_future(loop);
    CHECK_EQ_INT(test_readable(fd, 0), 0);
    tally_t t;
    tally_init(&t);
    CHECK_EQ_INT(afut_add_done_callback(f, token_done_cb, token_new(&t), token_free), AFUT_OK);
    CHECK_EQ_INT(test_readable(fd, 0), 0);
    CHECK_EQ_INT(afut_set_result(f, NULL, NULL), AFUT_OK);
    CHECK_EQ_INT(test_readable(fd, 0), 1);
    CHECK_EQ_INT(afut_loop_run_once(loop, 0, &ran), AFUT_OK);
    CHECK_EQ_INT(ran, 1);
    CHECK_EQ_INT(test_readable(fd, 0), 0);
    afut_unref(f);
    afut_loop_free(loop);
    CHECK_EQ_INT(atomic_load(&t.freed), 1);
}

/* Cross-thread set_result of a future with a callback wakes a host blocked in poll; a
 * future without callbacks gives the loop no work, so no readable fd (idle stays idle). */
TEST(fd_readable_after_set_result_from_thread) {
    afut_loop_t *loop = afut_loop_new();
    int fd = afut_loop_fd(loop);
    tally_t t;
    tally_init(&t);
    afut_t *f = afut_loop_create_future(loop);
    CHECK_EQ_INT(afut_add_done_callback(f, token_done_cb, token_new(&t), token_free), AFUT_OK);
    submitter_t s = {.loop = loop, .t = &t, .fut = f, .delay = 0.05};
    submitter_start(&s);
    int r = test_readable(fd, (int)(budget(5.0) * 1000));
    double woke = now_s();
    pthread_join(s.th, NULL);
    CHECK_EQ_INT(r, 1);
    CHECK(woke - s.t_act < max_latency());
    size_t ran = 0;
    CHECK_EQ_INT(afut_loop_run_once(loop, 0, &ran), AFUT_OK);
    CHECK_EQ_INT(ran, 1);
    CHECK_EQ_INT(atomic_load(&t.ran), 1);
    CHECK_EQ_INT(test_readable(fd, 0), 0);

    afut_t *g = afut_loop_create_future(loop);
    submitter_t s2 = {.loop = loop, .t = &t, .fut = g};
    submitter_start(&s2);
    pthread_join(s2.th, NULL);
    CHECK(afut_done(g));
    CHECK_EQ_INT(test_readable(fd, 0), 0);
    CHECK_EQ_INT(afut_loop_timeout_ms(loop), -1);
    afut_unref(f);
    afut_unref(g);
    afut_loop_free(loop);
}

static void count_cb(void *ud) { (*(int *)ud)++; }

/* "readable whenever run_once(loop, 0) has work, due timers included" and "an idle
 * loop's fd is not readable": a timer scheduled (on the loop's thread, loop not running)
 * for 50 ms ahead; with no run_once at all, the fd turns readable when the timer comes
 * due, not before. */
TEST(fd_readable_when_timer_due_without_run_once) {
    afut_loop_t *loop = afut_loop_new();
    int fd = afut_loop_fd(loop);
    int called = 0;
    double t0 = now_s();
    CHECK(afut_loop_call_later(loop, 0.05, count_cb, &called, NULL) != 0);
    CHECK_EQ_INT(test_readable(fd, 0), 0);
    int r = test_readable(fd, (int)(budget(3.0) * 1000));
    double took = now_s() - t0;
    CHECK_EQ_INT(r, 1);
    if (took < 0.045) fprintf(stderr, "  readable after %.4f s, before the timer was due\n", took);
    CHECK(took >= 0.045);
    CHECK(took < 0.05 + max_latency());
    /* drive it like a host from here on (bounded), whatever happened above */
    double deadline = now_s() + budget(3.0);
    long spurious = 0;
    while (!called && now_s() < deadline) {
        int to = afut_loop_timeout_ms(loop);
        if (test_readable(fd, to < 0 ? ms_until(deadline) : to) != 1) continue;
        size_t ran = 0;
        afut_loop_run_once(loop, 0, &ran);
        if (ran == 0) spurious++;
    }
    CHECK_EQ_INT(called, 1);
    CHECK_EQ_INT(spurious, 0);
    CHECK(now_s() - t0 >= 0.045);
    CHECK_EQ_INT(test_readable(fd, 0), 0);
    CHECK_EQ_INT(afut_loop_timeout_ms(loop), -1);
    afut_loop_free(loop);
}

typedef struct arm {
    afut_loop_t *loop;
    int called;
    double delay;
} arm_t;

static void arm_fire_cb(void *ud) { ((arm_t *)ud)->called++; }

static void arm_from_callback(void *ud) {
    arm_t *a = ud;
    afut_loop_call_later(a->loop, a->delay, arm_fire_cb, a, NULL);
}

/* A host that ignores afut_loop_timeout_ms and only watches the fd never misses a
 * timer: a 50 ms timer armed from inside a callback; after that run_once the fd is
 * quiet, then readable when the timer is due. */
TEST(fd_readable_when_timer_due_host_watches_fd_only) {
    afut_loop_t *loop = afut_loop_new();
    int fd = afut_loop_fd(loop);
    arm_t a = {.loop = loop, .delay = 0.05};
    CHECK(afut_loop_call_soon(loop, arm_from_callback, &a, NULL) != 0);
    size_t ran = 0;
    double t0 = now_s();
    CHECK_EQ_INT(afut_loop_run_once(loop, 0, &ran), AFUT_OK);
    CHECK_EQ_INT(ran, 1);
    CHECK_EQ_INT(test_readable(fd, 0), 0);
    int t = afut_loop_timeout_ms(loop);
    CHECK(t >= 1 && t <= 50);
    int r = test_readable(fd, (int)(budget(3.0) * 1000));
    double took = now_s() - t0;
    CHECK_EQ_INT(r, 1);
    CHECK(took >= 0.045);
    CHECK(took < 0.05 + max_latency());
    CHECK_EQ_INT(afut_loop_timeout_ms(loop), 0);
    CHECK_EQ_INT(afut_loop_run_once(loop, 0, &ran), AFUT_OK);
    CHECK_EQ_INT(ran, 1);
    CHECK_EQ_INT(a.called, 1);
    CHECK_EQ_INT(test_readable(fd, 0), 0);
    CHECK_EQ_INT(afut_loop_timeout_ms(loop), -1);
    afut_loop_free(loop);
}

/* Timers that are already due (delay <= 0, a past call_at) are work at once. */
TEST(fd_readable_at_once_for_due_timers) {
    afut_loop_t *loop = afut_loop_new();
    int fd = afut_loop_fd(loop);
    size_t ran = 0;
    CHECK(afut_loop_call_later(loop, -1.0, noop_cb, NULL, NULL) != 0);
    CHECK_EQ_INT(test_readable(fd, 0), 1);
    CHECK_EQ_INT(afut_loop_timeout_ms(loop), 0);
    CHECK_EQ_INT(afut_loop_run_once(loop, 0, &ran), AFUT_OK);
    CHECK_EQ_INT(ran, 1);
    CHECK_EQ_INT(test_readable(fd, 0), 0);
    CHECK(afut_loop_call_at(loop, afut_loop_time(loop) - 5.0, noop_cb, NULL, NULL) != 0);
    CHECK_EQ_INT(test_readable(fd, 0), 1);
    CHECK_EQ_INT(afut_loop_run_once(loop, 0, &ran), AFUT_OK);
    CHECK_EQ_INT(ran, 1);
    CHECK_EQ_INT(test_readable(fd, 0), 0);
    afut_loop_free(loop);
}

/* A timer scheduled from another thread while a poll() host waits (honouring
 * afut_loop_timeout_ms, which was -1 when it started waiting): it runs on time. */
typedef struct later_from_thread {
    afut_loop_t *loop;
    arm_t *a;
    double t_act;
    pthread_t th;
} later_from_thread_t;

static void *later_main(void *p) {
    later_from_thread_t *l = p;
    sleep_s(0.02);
    l->t_act = now_s();
    afut_loop_call_later(l->loop, 0.05, arm_fire_cb, l->a, NULL);
    return NULL;
}

TEST(fd_timer_scheduled_from_thread_runs_on_time) {
    afut_loop_t *loop = afut_loop_new();
    int fd = afut_loop_fd(loop);
    arm_t a = {.loop = loop};
    later_from_thread_t l = {.loop = loop, .a = &a};
    pthread_create(&l.th, NULL, later_main, &l);
    double deadline = now_s() + budget(3.0);
    double fired_at = 0;
    while (!a.called && now_s() < deadline) {
        int to = afut_loop_timeout_ms(loop);
        if (test_readable(fd, to < 0 ? ms_until(deadline) : to) != 1 && to < 0) continue;
        afut_loop_run_once(loop, 0, NULL);
        if (a.called) fired_at = now_s();
    }
    pthread_join(l.th, NULL);
    CHECK_EQ_INT(a.called, 1);
    CHECK(fired_at - l.t_act >= 0.045);
    CHECK(fired_at - l.t_act < 0.05 + max_latency());
    afut_loop_free(loop);
}

/* A cancelled timer leaves an idle loop: at worst one spurious readiness, cleared by
 * one run_once, never a readable fd that run_once cannot clear (a level host would spin). */
TEST(fd_cancelled_timer_leaves_loop_idle) {
    afut_loop_t *loop = afut_loop_new();
    int fd = afut_loop_fd(loop);
    atomic_store(&plain_frees, 0);
    afut_handle_t h = afut_loop_call_later(loop, 0.02, noop_cb, NULL, plain_free);
    CHECK(h != 0);
    CHECK(afut_loop_cancel(loop, h));
    CHECK_EQ_INT(atomic_load(&plain_frees), 1);
    int t = afut_loop_timeout_ms(loop);
    CHECK(t == -1 || (t > 0 && t <= 20));
    sleep_s(0.04);
    size_t ran = 99;
    if (test_readable(fd, 0) == 1) {
        CHECK_EQ_INT(afut_loop_run_once(loop, 0, &ran), AFUT_OK);
        CHECK_EQ_INT(ran, 0);
    }
    CHECK_EQ_INT(test_readable(fd, 0), 0);
    CHECK_EQ_INT(afut_loop_timeout_ms(loop), -1);
    afut_loop_free(loop);
}

/* afut_loop_timeout_ms: -1 nothing scheduled, 0 work ready (also a due timer), else the
 * ms to the next timer rounded UP (GLib: "rounding down will lead to spinning"). */
TEST(timeout_ms_values) {
    afut_loop_t *loop = afut_loop_new();
    (void)afut_loop_fd(loop);
    CHECK_EQ_INT(afut_loop_timeout_ms(loop), -1);
    CHECK(afut_loop_call_soon(loop, noop_cb, NULL, NULL) != 0);
    CHECK_EQ_INT(afut_loop_timeout_ms(loop), 0);
    CHECK_EQ_INT(afut_loop_run_once(loop, 0, NULL), AFUT_OK);
    CHECK_EQ_INT(afut_loop_timeout_ms(loop), -1);

    /* rounding: a deadline 500.5 ms ahead. Bracket the library's own clock read between
     * two of ours: the answer must be ceil() of a remaining time within that bracket. */
    double when = afut_loop_time(loop) + 0.5005;
    afut_handle_t h = afut_loop_call_at(loop, when, noop_cb, NULL, NULL);
    CHECK(h != 0);
    double before = afut_loop_time(loop);
    int t = afut_loop_timeout_ms(loop);
    double after = afut_loop_time(loop);
    long long lo = ceil_ll((when - after) * 1000.0 - 1e-6);
    long long hi = ceil_ll((when - before) * 1000.0 + 1e-6);
    if (t < lo || t > hi)
        fprintf(stderr, "  timeout_ms %d, expected within [%lld, %lld]\n", t, lo, hi);
    CHECK(t >= lo && t <= hi);
    CHECK(t >= 1);
    /* a call_soon on top: 0 */
    CHECK(afut_loop_call_soon(loop, noop_cb, NULL, NULL) != 0);
    CHECK_EQ_INT(afut_loop_timeout_ms(loop), 0);
    CHECK_EQ_INT(afut_loop_run_once(loop, 0, NULL), AFUT_OK);
    CHECK(afut_loop_cancel(loop, h));
    /* (a cancelled timer may be dropped lazily; after one run_once it must be gone) */
    CHECK_EQ_INT(afut_loop_run_once(loop, 0, NULL), AFUT_OK);
    CHECK_EQ_INT(afut_loop_timeout_ms(loop), -1);

    /* a sub-millisecond remainder rounds up to 1, never 0 while nothing is due */
    CHECK(afut_loop_call_later(loop, 0.0004, noop_cb, NULL, NULL) != 0);
    int t1 = afut_loop_timeout_ms(loop);
    CHECK(t1 == 0 || t1 == 1);
    /* a due-but-not-run timer: 0 */
    sleep_s(0.002);
    CHECK_EQ_INT(afut_loop_timeout_ms(loop), 0);
    size_t ran = 0;
    CHECK_EQ_INT(afut_loop_run_once(loop, 0, &ran), AFUT_OK);
    CHECK_EQ_INT(ran, 1);
    CHECK_EQ_INT(afut_loop_timeout_ms(loop), -1);
    /* a closed loop: -1 (header) */
    CHECK_EQ_INT(afut_loop_close(loop), AFUT_OK);
    CHECK_EQ_INT(afut_loop_timeout_ms(loop), -1);
    afut_loop_free(loop);
}

/* A poll() host that honours afut_loop_timeout_ms never busy-spins: whenever it says 0,
 * run_once(loop, 0) runs something. Several timers 1..20 ms apart. */
TEST(timeout_ms_host_never_spins_on_timers) {
    afut_loop_t *loop = afut_loop_new();
    int fd = afut_loop_fd(loop);
    tally_t t;
    tally_init(&t);
    enum { NTIM = 12 };
    for (int i = 0; i < NTIM; i++)
        CHECK(afut_loop_call_later(loop, 0.001 + 0.0017 * i, token_cb, token_new(&t), token_free) != 0);
    double deadline = now_s() + budget(3.0);
    long spins = 0, waits = 0;
    while (atomic_load(&t.ran) < NTIM && now_s() < deadline) {
        int to = afut_loop_timeout_ms(loop);
        if (to == 0) {
            size_t ran = 0;
            afut_loop_run_once(loop, 0, &ran);
            if (ran == 0) spins++;
        } else {
            int wait = to < 0 ? ms_until(deadline) : to;
            test_readable(fd, wait);
            waits++;
        }
    }
    CHECK_EQ_INT(atomic_load(&t.ran), NTIM);
    CHECK_EQ_INT(spins, 0);
    CHECK(waits >= 1);
    CHECK_EQ_INT(test_readable(fd, 0), 0);
    afut_loop_free(loop);
    CHECK_EQ_INT(atomic_load(&t.freed), NTIM);
}

/* ============================================================ host loops */

/* Chain: each callback schedules the next (from inside the loop, no syscall). */
typedef struct chain {
    afut_loop_t *loop;
    long n, target;
    double delay; /* < 0: call_soon, else call_later(delay) */
} chain_t;

static void chain_cb(void *ud) {
    chain_t *c = ud;
    c->n++;
    if (c->n < c->target) {
        if (c->delay < 0) afut_loop_call_soon(c->loop, chain_cb, c, NULL);
        else afut_loop_call_later(c->loop, c->delay, chain_cb, c, NULL);
    }
}

/* A level-triggered poll() host: run_once only when the fd is readable. Every readable
 * state must mean work (no spurious wakeups on a single-threaded chain), one callback
 * per iteration (F4-F7: work queued during a batch waits for the next iteration). */
TEST(level_triggered_poll_host_chain) {
    afut_loop_t *loop = afut_loop_new();
    int fd = afut_loop_fd(loop);
    chain_t c = {.loop = loop, .target = 1000, .delay = -1};
    CHECK(afut_loop_call_soon(loop, chain_cb, &c, NULL) != 0);
    double deadline = now_s() + budget(5.0);
    long iterations = 0, spurious = 0;
    while (c.n < c.target && now_s() < deadline) {
        int to = afut_loop_timeout_ms(loop);
        int r = test_readable(fd, to < 0 ? ms_until(deadline) : to);
        if (r != 1) continue;
        size_t ran = 0;
        CHECK_EQ_INT(afut_loop_run_once(loop, 0, &ran), AFUT_OK);
        iterations++;
        if (ran == 0) spurious++;
    }
    CHECK_EQ_INT(c.n, 1000);
    CHECK_EQ_INT(iterations, 1000);
    CHECK_EQ_INT(spurious, 0);
    CHECK_EQ_INT(test_readable(fd, 0), 0);
    afut_loop_free(loop);
}

/* An edge-triggered epoll host (EPOLLET on the afut fd): run_once(loop, 0) exactly once
 * per event, never on a timeout; afut_loop_timeout_ms is the epoll_wait timeout. "After a
 * run_once that leaves work pending the library produces a fresh edge", so the chain
 * completes. A stall is detected either by the wall-clock deadline or by the host
 * spinning (timeout 0 and no event) too long; both fail instead of hanging. */
typedef struct et_stats {
    long events, timeouts, zero_spins, run_errors;
    int stalled;
} et_stats_t;

static void et_host(afut_loop_t *loop, int (*finished)(void *), void *arg, double secs,
                    et_stats_t *st) {
    memset(st, 0, sizeof *st);
    int fd = afut_loop_fd(loop);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.fd = fd};
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
        st->run_errors++;
        if (ep >= 0) close(ep);
        return;
    }
    double deadline = now_s() + budget(secs);
    double spin_since = 0;
    while (!finished(arg)) {
        double now = now_s();
        if (now >= deadline) {
            st->stalled = 1;
            break;
        }
        int to = afut_loop_timeout_ms(loop);
        int wait = to < 0 ? ms_until(deadline) : to;
        if (wait > ms_until(deadline)) wait = ms_until(deadline);
        struct epoll_event out[4];
        int n = epoll_wait(ep, out, 4, wait);
        if (n < 0) {
            if (errno == EINTR) continue;
            st->run_errors++;
            break;
        }
        if (n == 0) {
            st->timeouts++;
            if (to == 0) {
                /* work is ready, says timeout_ms, yet no edge came: tolerate a short
                 * race with a submitting thread, fail on a sustained one */
                st->zero_spins++;
                if (spin_since == 0) spin_since = now;
                else if (now - spin_since > budget(1.0)) {
                    st->stalled = 1;
                    break;
                }
                sched_yield();
            }
            continue;
        }
        spin_since = 0;
        for (int i = 0; i < n; i++) {
            st->events++;
            if (afut_loop_run_once(loop, 0, NULL) != AFUT_OK) st->run_errors++;
        }
    }
    close(ep);
}

static int chain_finished(void *arg) {
    chain_t *c = arg;
    return c->n >= c->target;
}

TEST(edge_triggered_epoll_host_chain_of_1000) {
    afut_loop_t *loop = afut_loop_new();
    chain_t c = {.loop = loop, .target = 1000, .delay = -1};
    CHECK(afut_loop_call_soon(loop, chain_cb, &c, NULL) != 0);
    et_stats_t st;
    et_host(loop, chain_finished, &c, 5.0, &st);
    if (c.n != 1000)
        fprintf(stderr, "  chain stalled at %ld: events %ld, timeouts %ld, zero spins %ld\n", c.n,
                st.events, st.timeouts, st.zero_spins);
    CHECK_EQ_INT(c.n, 1000);
    CHECK(!st.stalled);
    CHECK_EQ_INT(st.run_errors, 0);
    CHECK_EQ_INT(test_readable(afut_loop_fd(loop), 0), 0);
    afut_loop_free(loop);
}

/* The same with timers: each callback arms a 1 ms timer for the next; events only
 * (the timerfd edge), never a run_once on an epoll timeout. */
TEST(edge_triggered_epoll_host_timer_chain) {
    afut_loop_t *loop = afut_loop_new();
    chain_t c = {.loop = loop, .target = 30, .delay = 0.001};
    CHECK(afut_loop_call_later(loop, 0.001, chain_cb, &c, NULL) != 0);
    et_stats_t st;
    et_host(loop, chain_finished, &c, 5.0, &st);
    if (c.n != c.target)
        fprintf(stderr, "  timer chain stalled at %ld: events %ld, timeouts %ld, zero spins %ld\n",
                c.n, st.events, st.timeouts, st.zero_spins);
    CHECK_EQ_INT(c.n, c.target);
    CHECK(!st.stalled);
    CHECK_EQ_INT(st.run_errors, 0);
    afut_loop_free(loop);
}

typedef struct count_target {
    tally_t *t;
    long target;
} count_target_t;

static int count_finished(void *arg) {
    count_target_t *c = arg;
    return atomic_load(&c->t->ran) >= c->target;
}

/* The ET host fed by other threads (with pauses, so the loop goes idle in between and
 * every idle->work transition needs its edge). */
TEST(edge_triggered_epoll_host_cross_thread) {
    enum { NT = 2 };
    long per = scaled(1000);
    afut_loop_t *loop = afut_loop_new();
    tally_t t;
    tally_init(&t);
    submitter_t s[NT];
    for (int i = 0; i < NT; i++) {
        s[i] = (submitter_t){.loop = loop, .t = &t, .n = per, .pause_every = 0.0005};
        submitter_start(&s[i]);
    }
    count_target_t ct = {&t, NT * per};
    et_stats_t st;
    et_host(loop, count_finished, &ct, 8.0, &st);
    for (int i = 0; i < NT; i++) pthread_join(s[i].th, NULL);
    if (atomic_load(&t.ran) != NT * per)
        fprintf(stderr, "  ran %ld of %ld: events %ld, timeouts %ld, zero spins %ld\n",
                atomic_load(&t.ran), NT * per, st.events, st.timeouts, st.zero_spins);
    CHECK_EQ_INT(atomic_load(&t.ran), NT * per);
    CHECK(!st.stalled);
    CHECK_EQ_INT(atomic_load(&t.wrong_thread), 0);
    CHECK_EQ_INT(atomic_load(&t.unpublished), 0);
    afut_loop_free(loop);
    CHECK_EQ_INT(atomic_load(&t.freed), NT * per);
}

/* ============================================================ wakeup_fn */

typedef struct wake {
    atomic_int calls;
    atomic_int frees;
} wake_t;

static void wake_fn(void *ud) {
    wake_t *w = ud;
    atomic_fetch_add(&w->calls, 1);
}

static void wake_free(void *ud) {
    wake_t *w = ud;
    atomic_fetch_add(&w->frees, 1);
}

static void wake_init(wake_t *w) {
    atomic_init(&w->calls, 0);
    atomic_init(&w->frees, 0);
}

/* API.md set_wakeup_fn: called on idle->work transitions from other threads, coalesced
 * (N submissions before a dispatch: between 1 and N calls), never while idle; its
 * userdata_free runs once on replacement, on removal (NULL) and on afut_loop_free. */
TEST(wakeup_fn_called_on_transitions_and_coalesced) {
    afut_loop_t *loop = afut_loop_new();
    tally_t t;
    tally_init(&t);
    wake_t w1, w2, w3;
    wake_init(&w1);
    wake_init(&w2);
    wake_init(&w3);
    afut_loop_set_wakeup_fn(loop, wake_fn, &w1, wake_free);
    sleep_s(0.01);
    CHECK_EQ_INT(atomic_load(&w1.calls), 0);

    submitter_t s = {.loop = loop, .t = &t, .n = 10};
    submitter_start(&s);
    pthread_join(s.th, NULL);
    int c1 = atomic_load(&w1.calls);
    CHECK(c1 >= 1 && c1 <= 10);
    size_t ran = 0;
    CHECK_EQ_INT(afut_loop_run_once(loop, 0, &ran), AFUT_OK);
    CHECK_EQ_INT(ran, 10);
    int c2 = atomic_load(&w1.calls);
    sleep_s(0.02); /* idle: no wakeups */
    CHECK_EQ_INT(atomic_load(&w1.calls), c2);

    /* a new idle->work transition: at least one more call */
    submitter_t s2 = {.loop = loop, .t = &t, .n = 1};
    submitter_start(&s2);
    pthread_join(s2.th, NULL);
    CHECK(atomic_load(&w1.calls) > c2);
    CHECK_EQ_INT(afut_loop_run_once(loop, 0, &ran), AFUT_OK);
    CHECK_EQ_INT(ran, 1);

    /* cross-thread completion of a future with a callback */
    afut_t *f = afut_loop_create_future(loop);
    CHECK_EQ_INT(afut_add_done_callback(f, token_done_cb, token_new(&t), token_free), AFUT_OK);
    int c3 = atomic_load(&w1.calls);
    submitter_t s3 = {.loop = loop, .t = &t, .fut = f};
    submitter_start(&s3);
    pthread_join(s3.th, NULL);
    CHECK(atomic_load(&w1.calls) > c3);
    CHECK_EQ_INT(afut_loop_run_once(loop, 0, &ran), AFUT_OK);
    CHECK_EQ_INT(ran, 1);

    /* call_soon on the loop's thread while not running also wakes (lead decision) */
    int c4 = atomic_load(&w1.calls);
    CHECK(afut_loop_call_soon(loop, noop_cb, NULL, NULL) != 0);
    CHECK(atomic_load(&w1.calls) > c4);
    CHECK_EQ_INT(afut_loop_run_once(loop, 0, &ran), AFUT_OK);

    /* replacement frees the old userdata once; the new hook gets the calls */
    afut_loop_set_wakeup_fn(loop, wake_fn, &w2, wake_free);
    CHECK_EQ_INT(atomic_load(&w1.frees), 1);
    CHECK_EQ_INT(atomic_load(&w2.frees), 0);
    int c5 = atomic_load(&w1.calls);
    submitter_t s4 = {.loop = loop, .t = &t, .n = 2};
    submitter_start(&s4);
    pthread_join(s4.th, NULL);
    CHECK(atomic_load(&w2.calls) >= 1);
    CHECK_EQ_INT(atomic_load(&w1.calls), c5);
    CHECK_EQ_INT(afut_loop_run_once(loop, 0, &ran), AFUT_OK);
    CHECK_EQ_INT(ran, 2);

    /* NULL removes the hook and frees its userdata */
    afut_loop_set_wakeup_fn(loop, NULL, NULL, NULL);
    CHECK_EQ_INT(atomic_load(&w2.frees), 1);
    int c6 = atomic_load(&w2.calls);
    submitter_t s5 = {.loop = loop, .t = &t, .n = 1};
    submitter_start(&s5);
    pthread_join(s5.th, NULL);
    CHECK_EQ_INT(atomic_load(&w2.calls), c6);
    CHECK_EQ_INT(test_readable(afut_loop_fd(loop), 0), 1); /* the fd still works */
    CHECK_EQ_INT(afut_loop_run_once(loop, 0, &ran), AFUT_OK);
    CHECK_EQ_INT(ran, 1);

    /* the last hook's userdata is freed with the loop */
    afut_loop_set_wakeup_fn(loop, wake_fn, &w3, wake_free);
    afut_unref(f);
    afut_loop_free(loop);
    CHECK_EQ_INT(atomic_load(&w1.frees), 1);
    CHECK_EQ_INT(atomic_load(&w2.frees), 1);
    CHECK_EQ_INT(atomic_load(&w3.frees), 1);
    CHECK_EQ_INT(atomic_load(&t.freed), 1 + 10 + 1 + 2 + 1);
    CHECK_EQ_INT(atomic_load(&t.wrong_thread), 0);
}

/* A host with no fd (a GUI message loop): the wakeup hook posts a "look" flag under a
 * mutex, the host waits on a condition variable for the flag or for
 * afut_loop_timeout_ms, then calls run_once(loop, 0). Threads submit with pauses, so the
 * loop keeps going idle; nothing may be left waiting (B12: none lost). */
typedef struct gui {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int posted;
    atomic_int wakeups;
} gui_t;

static void gui_wake(void *ud) {
    gui_t *g = ud;
    atomic_fetch_add(&g->wakeups, 1);
    pthread_mutex_lock(&g->mu);
    g->posted = 1;
    pthread_cond_signal(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

TEST(wakeup_fn_driven_host_never_stalls) {
    enum { NT = 3 };
    long per = scaled(600);
    afut_loop_t *loop = afut_loop_new();
    gui_t g;
    memset(&g, 0, sizeof g);
    pthread_mutex_init(&g.mu, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&g.cv, &attr);
    pthread_condattr_destroy(&attr);
    atomic_init(&g.wakeups, 0);
    afut_loop_set_wakeup_fn(loop, gui_wake, &g, NULL);
    tally_t t;
    tally_init(&t);
    /* plus a timer chain on the loop thread, which relies on timeout_ms alone */
    chain_t c = {.loop = loop, .target = 20, .delay = 0.002};
    CHECK(afut_loop_call_later(loop, 0.002, chain_cb, &c, NULL) != 0);
    submitter_t s[NT];
    for (int i = 0; i < NT; i++) {
        s[i] = (submitter_t){.loop = loop, .t = &t, .n = per, .pause_every = 0.001};
        submitter_start(&s[i]);
    }
    double deadline = now_s() + budget(8.0);
    long dispatches = 0, long_waits = 0;
    while ((atomic_load(&t.ran) < NT * per || c.n < c.target) && now_s() < deadline) {
        int to = afut_loop_timeout_ms(loop);
        if (to != 0) {
            double until = to < 0 ? deadline : now_s() + to / 1000.0;
            if (until > deadline) until = deadline;
            struct timespec ts;
            ts.tv_sec = (time_t)until;
            ts.tv_nsec = (long)((until - (double)ts.tv_sec) * 1e9);
            pthread_mutex_lock(&g.mu);
            int rc = 0;
            while (!g.posted && rc != ETIMEDOUT) rc = pthread_cond_timedwait(&g.cv, &g.mu, &ts);
            if (rc == ETIMEDOUT && to < 0) long_waits++;
            g.posted = 0;
            pthread_mutex_unlock(&g.mu);
        }
        afut_loop_run_once(loop, 0, NULL);
        dispatches++;
    }
    for (int i = 0; i < NT; i++) pthread_join(s[i].th, NULL);
    if (atomic_load(&t.ran) != NT * per || c.n != c.target)
        fprintf(stderr, "  ran %ld of %ld, chain %ld of %ld, dispatches %ld, wakeups %d\n",
                atomic_load(&t.ran), NT * per, c.n, c.target, dispatches, atomic_load(&g.wakeups));
    CHECK_EQ_INT(atomic_load(&t.ran), NT * per);
    CHECK_EQ_INT(c.n, c.target);
    CHECK_EQ_INT(long_waits, 0);
    CHECK(atomic_load(&g.wakeups) >= 1);
    CHECK_EQ_INT(atomic_load(&t.wrong_thread), 0);
    CHECK_EQ_INT(atomic_load(&t.unpublished), 0);
    afut_loop_free(loop);
    CHECK_EQ_INT(atomic_load(&t.freed), NT * per);
    pthread_cond_destroy(&g.cv);
    pthread_mutex_destroy(&g.mu);
}

/* ================================================================== main */

/* A host that polls the fd and calls run_once(0) as fast as it can while other threads
 * submit work: every iteration parks the poll() backend's relay thread and re-arms it at
 * its end, millions of hand-overs a second between the two threads. No run_once may hang:
 * the model test once left one waiting forever for a relay whose poll() missed the park's
 * notification (a 60 s deadline turns a hang into a failure). How many runs took unusually
 * long is printed, never asserted (a loaded machine may deschedule any thread). */
typedef struct {
    afut_loop_t *loop;
    atomic_int stop;
    atomic_long sent;
} busy_host_t;

static void busy_noop(void *ud) { atomic_fetch_add((atomic_long *)ud, 1); }

static void *busy_host_producer(void *p) {
    busy_host_t *b = p;
    static atomic_long ran;
    unsigned x = 12345;
    while (!atomic_load(&b->stop)) {
        x = x * 1103515245u + 12345u;
        if ((x >> 16) % 4 == 0) {
            if (afut_loop_call_later(b->loop, 0.0, busy_noop, &ran, NULL) != 0) atomic_fetch_add(&b->sent, 1);
        } else if (afut_loop_call_soon_threadsafe(b->loop, busy_noop, &ran, NULL) != 0) {
            atomic_fetch_add(&b->sent, 1);
        }
        if ((x >> 20) % 8 == 0) test_sleep_s(0.00005);
    }
    return NULL;
}

TEST(busy_host_with_cross_thread_work_never_hangs) {
    busy_host_t b;
    memset(&b, 0, sizeof b);
    b.loop = afut_loop_new();
    int fd = afut_loop_fd(b.loop);
    CHECK(fd >= 0);
    pthread_t t[2];
    for (int i = 0; i < 2; i++) CHECK_EQ_INT(pthread_create(&t[i], NULL, busy_host_producer, &b), 0);
    long runs = 0, ran = 0, slow = 0;
    double worst = 0, end = test_now_s() + (test_under_valgrind() ? 3.0 : 1.5);
    while (test_now_s() < end) {
        (void)test_readable(fd, 0);
        double t0 = test_now_s();
        size_t n = 0;
        CHECK_EQ_INT(afut_loop_run_once(b.loop, 0, &n), AFUT_OK);
        double took = test_now_s() - t0;
        if (took > worst) worst = took;
        if (took > 0.015) slow++;
        runs++;
        ran += (long)n;
    }
    atomic_store(&b.stop, 1);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < 100 && ran < atomic_load(&b.sent); i++) {
        size_t n = 0;
        if (test_readable(fd, 100) != 1) break;
        CHECK_EQ_INT(afut_loop_run_once(b.loop, 0, &n), AFUT_OK);
        ran += (long)n;
    }
    CHECK_EQ_INT(ran, atomic_load(&b.sent));
    CHECK_EQ_INT(test_readable(fd, 0), 0);
    printf("    busy host: %ld run_once calls, %ld callbacks from 2 threads; slowest run_once %.1f ms, %ld over 15 ms\n",
           runs, ran, worst * 1e3, slow);
    afut_loop_free(b.loop);
}

int main(void) {
    test_deadline(under_valgrind() ? 110 : 60); /* for the whole program */
    RUN(fd_is_stable_and_null_is_einval);
    RUN(fd_idle_loop_not_readable);
    RUN(fd_readable_after_call_soon_from_thread);
    RUN(fd_readable_after_call_soon_on_loop_thread);
    RUN(fd_readable_after_set_result_from_thread);
    RUN(fd_readable_when_timer_due_without_run_once);
    RUN(fd_readable_when_timer_due_host_watches_fd_only);
    RUN(fd_readable_at_once_for_due_timers);
    RUN(fd_timer_scheduled_from_thread_runs_on_time);
    RUN(fd_cancelled_timer_leaves_loop_idle);
    RUN(timeout_ms_values);
    RUN(timeout_ms_host_never_spins_on_timers);
    RUN(level_triggered_poll_host_chain);
    RUN(edge_triggered_epoll_host_chain_of_1000);
    RUN(edge_triggered_epoll_host_timer_chain);
    RUN(edge_triggered_epoll_host_cross_thread);
    RUN(wakeup_fn_called_on_transitions_and_coalesced);
    RUN(wakeup_fn_driven_host_never_stalls);
    RUN_T(busy_host_with_cross_thread_work_never_hangs);
    TEST_END();
}
