/* Virtual time (API.md "Virtual time"): afut_loop_set_virtual_clock and
 * afut_loop_advance_time, for tests of code that waits (asyncio's test_utils.TestLoop, tokio's
 * time::pause, trio's MockClock with autojump).
 *
 * What is checked:
 *   - the clock starts at 0 and moves only by advance_time, or by auto-advance;
 *   - switching is refused while a timer exists (AFUT_ERR_INVALID_STATE; a cancelled timer
 *     does not count); a second call only changes auto_advance, the clock keeps its value;
 *   - advance_time: negative, NaN or infinite seconds are AFUT_ERR_INVALID_ARGUMENT and change
 *     nothing; a real clock is AFUT_ERR_INVALID_STATE; any thread, a callback included;
 *   - every timer due after advance_time runs in the next single iteration, in deadline
 *     order; a deadline equal to the clock is due; nothing moves by waiting;
 *   - auto-advance jumps exactly to the next live deadline, and only when nothing is ready
 *     (work queued from other threads included); an idle auto-advance loop without timers
 *     blocks until another thread submits (no spinning); a timer scheduled from another
 *     thread wakes it; jobs of afut_loop_run_in_executor hold the clock until they are done;
 *   - afut_sleep, afut_wait_for (wait_for(fut, 3600) times out in a moment of real time),
 *     afut_wait_many and afut_as_completed timeouts follow the virtual clock; a day of
 *     call_later timers runs in order, each at its deadline exactly;
 *   - the debug-mode slow-callback report measures loop time;
 *   - host mode: the fd becomes readable for a virtual timer only once advance_time made it
 *     due; afut_loop_timeout_ms is -1 while no timer is due (waiting would not make one due),
 *     0 once one is due; with auto-advance it is 0 while a live timer is pending (the next
 *     run_once jumps to it) and the fd stays unreadable for it.
 *
 * ThreadSanitizer: see test_threads.c (data passed through afut between threads is atomic). */
#define _GNU_SOURCE
#include "test.h"

#include <afut.h>

#include "thread_helpers.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ helpers */

static afut_loop_t *new_virtual_loop(bool auto_advance) {
    afut_loop_t *loop = afut_loop_new();
    CHECK(loop != NULL);
    CHECK_EQ_INT(afut_loop_set_virtual_clock(loop, auto_advance), AFUT_OK);
    return loop;
}

/* Exact double comparison, with both values printed on failure. */
#define CHECK_TIME(a, b)                                                                   \
    do {                                                                                   \
        double a_ = (a), b_ = (b);                                                         \
        if (!(a_ == b_)) {                                                                 \
            test_current_failures_++;                                                      \
            fprintf(stderr, "  %s:%d: %s == %.17g, expected %.17g\n", __FILE__, __LINE__, #a, \
                    a_, b_);                                                               \
        }                                                                                  \
    } while (0)

/* Callbacks that log their id and the loop time they ran at. */
#define MAXLOG 2048
static int g_log_id[MAXLOG];
static double g_log_time[MAXLOG];
static int g_nlog;
static afut_loop_t *g_loop;

static void log_cb(void *ud) {
    if (g_nlog < MAXLOG) {
        g_log_id[g_nlog] = (int)(intptr_t)ud;
        g_log_time[g_nlog] = afut_loop_time(g_loop);
        g_nlog++;
    }
}
static void reset_log(afut_loop_t *loop) {
    g_nlog = 0;
    g_loop = loop;
}
static afut_handle_t later(afut_loop_t *loop, double delay, int id) {
    afut_handle_t h = afut_loop_call_later(loop, delay, log_cb, (void *)(intptr_t)id, NULL);
    CHECK(h != 0);
    return h;
}

static size_t run_once(afut_loop_t *loop, int timeout_ms) {
    size_t ran = 0;
    CHECK_EQ_INT(afut_loop_run_once(loop, timeout_ms, &ran), AFUT_OK);
    return ran;
}

static void set_result_cb(void *fut) { afut_set_result(fut, NULL, NULL); }
static void stop_cb(void *loop) { afut_loop_stop(loop); }

static double thread_cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Records the loop time at which a future completed (a done-callback of a loop future runs
 * on the loop thread). */
typedef struct done_at {
    double when;
    int calls;
} done_at_t;
static void done_at_cb(afut_t *fut, void *ud) {
    done_at_t *d = ud;
    d->when = afut_loop_time(afut_get_loop(fut));
    d->calls++;
}

/* ------------------------------------------------------------------ switching */

/* The clock starts at 0 and does not move by itself. */
TEST(clock_starts_at_zero_and_stands_still) {
    afut_loop_t *loop = afut_loop_new();
    double real = afut_loop_time(loop);
    CHECK(real >= 0);
    CHECK_EQ_INT(afut_loop_set_virtual_clock(loop, false), AFUT_OK);
    CHECK_TIME(afut_loop_time(loop), 0.0);
    sleep_s(0.02);
    CHECK_EQ_INT(run_once(loop, 20), 0); /* waits 20 ms of real time: no timer, no move */
    CHECK_TIME(afut_loop_time(loop), 0.0);
    CHECK_EQ_INT(afut_loop_advance_time(loop, 1.5), AFUT_OK);
    CHECK_TIME(afut_loop_time(loop), 1.5);
    CHECK_EQ_INT(afut_loop_advance_time(loop, 0), AFUT_OK);
    CHECK_TIME(afut_loop_time(loop), 1.5);
    CHECK_EQ_INT(afut_loop_advance_time(loop, 0.25), AFUT_OK);
    CHECK_TIME(afut_loop_time(loop), 1.75);
    afut_loop_free(loop);
}

/* Refused with AFUT_ERR_INVALID_STATE while a timer exists (call_later, afut_sleep, a
 * wait_for's timeout); a cancelled timer does not count, nor does call_soon. */
TEST(switching_is_refused_while_a_timer_exists) {
    afut_loop_t *loop = afut_loop_new();
    afut_handle_t h = afut_loop_call_later(loop, 10, log_cb, NULL, NULL);
    sleep_s(0.001);
    CHECK_EQ_INT(afut_loop_set_virtual_clock(loop, true), AFUT_ERR_INVALID_STATE);
    CHECK(afut_loop_time(loop) > 0); /* still the real clock */
    CHECK_EQ_INT(afut_loop_advance_time(loop, 1), AFUT_ERR_INVALID_STATE);
    CHECK(afut_loop_cancel(loop, h));

    afut_t *s = afut_sleep(loop, 5, NULL, NULL);
    CHECK_EQ_INT(afut_loop_set_virtual_clock(loop, false), AFUT_ERR_INVALID_STATE);
    CHECK(afut_cancel(s, NULL)); /* cancelling the sleep cancels its timer */
    afut_loop_run_once(loop, 0, NULL);

    afut_t *pending = afut_loop_create_future(loop);
    afut_t *w = afut_wait_for(loop, pending, 30);
    CHECK_EQ_INT(afut_loop_set_virtual_clock(loop, false), AFUT_ERR_INVALID_STATE);
    CHECK(afut_cancel(w, NULL));
    afut_loop_run_once(loop, 0, NULL);
    afut_loop_run_once(loop, 0, NULL);

    CHECK(afut_loop_call_soon(loop, log_cb, NULL, NULL) != 0); /* not a timer */
    double before = afut_loop_time(loop);
    CHECK_EQ_INT(afut_loop_set_virtual_clock(loop, false), AFUT_OK);
    CHECK_TIME(afut_loop_time(loop), 0.0);
    CHECK(before > 0);
    afut_unref(s);
    afut_unref(w);
    afut_unref(pending);
    afut_loop_free(loop);
}

/* A second call changes only auto_advance (no timer may exist); the clock keeps its value. */
TEST(second_switch_keeps_the_clock) {
    afut_loop_t *loop = new_virtual_loop(false);
    CHECK_EQ_INT(afut_loop_advance_time(loop, 5), AFUT_OK);
    CHECK_EQ_INT(afut_loop_set_virtual_clock(loop, true), AFUT_OK);
    CHECK_TIME(afut_loop_time(loop), 5.0);
    reset_log(loop);
    later(loop, 2, 1);
    CHECK_EQ_INT(afut_loop_set_virtual_clock(loop, false), AFUT_ERR_INVALID_STATE);
    CHECK_EQ_INT(run_once(loop, 0), 1); /* still auto-advance: jumps to 7 */
    CHECK_TIME(afut_loop_time(loop), 7.0);
    CHECK_EQ_INT(afut_loop_set_virtual_clock(loop, false), AFUT_OK);
    later(loop, 1, 2);
    CHECK_EQ_INT(run_once(loop, 10), 0); /* manual again: nothing moves */
    CHECK_TIME(afut_loop_time(loop), 7.0);
    afut_loop_free(loop);
}

/* A counter bumped by a callback. */
static void count_cb_vt(void *ud) { atomic_fetch_add((atomic_int *)ud, 1); }

/* Bad input: a status and no change. */
TEST(bad_input) {
    CHECK_EQ_INT(afut_loop_set_virtual_clock(NULL, false), AFUT_ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(afut_loop_set_virtual_clock(NULL, true), AFUT_ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(afut_loop_advance_time(NULL, 1), AFUT_ERR_INVALID_ARGUMENT);

    afut_loop_t *real = afut_loop_new();
    CHECK_EQ_INT(afut_loop_advance_time(real, 1), AFUT_ERR_INVALID_STATE);
    CHECK_EQ_INT(afut_loop_advance_time(real, -1), AFUT_ERR_INVALID_ARGUMENT);
    afut_loop_free(real);

    afut_loop_t *loop = new_virtual_loop(false);
    CHECK_EQ_INT(afut_loop_advance_time(loop, 2), AFUT_OK);
    CHECK_EQ_INT(afut_loop_advance_time(loop, -1), AFUT_ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(afut_loop_advance_time(loop, -0.0001), AFUT_ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(afut_loop_advance_time(loop, NAN), AFUT_ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(afut_loop_advance_time(loop, INFINITY), AFUT_ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(afut_loop_advance_time(loop, -INFINITY), AFUT_ERR_INVALID_ARGUMENT);
    CHECK_TIME(afut_loop_time(loop), 2.0);
    /* an amount that would take the clock past DBL_MAX (to infinity) is refused too: an
     * infinite clock would make "never" timers due and every later deadline NaN */
    afut_loop_t *far = new_virtual_loop(false);
    CHECK_EQ_INT(afut_loop_advance_time(far, DBL_MAX), AFUT_OK);
    CHECK_EQ_INT(afut_loop_advance_time(far, DBL_MAX), AFUT_ERR_INVALID_ARGUMENT);
    CHECK(afut_loop_time(far) == DBL_MAX);
    CHECK_EQ_INT(afut_loop_advance_time(far, 1.0), AFUT_OK); /* below DBL_MAX's ulp: no change */
    CHECK(afut_loop_time(far) == DBL_MAX);
    atomic_int never;
    atomic_init(&never, 0);
    CHECK(afut_loop_call_later(far, INFINITY, count_cb_vt, &never, NULL) != 0);
    CHECK(afut_loop_call_later(far, -INFINITY, count_cb_vt, &never, NULL) != 0);
    size_t n = 0;
    CHECK_EQ_INT(afut_loop_run_once(far, 0, &n), AFUT_OK);
    CHECK_EQ_INT(n, 1); /* the -INFINITY one; the INFINITY one never comes due */
    CHECK_EQ_INT(atomic_load(&never), 1);
    afut_loop_free(far);
    CHECK_EQ_INT(afut_loop_close(loop), AFUT_OK);
    CHECK_EQ_INT(afut_loop_advance_time(loop, 1), AFUT_ERR_LOOP_CLOSED);
    CHECK_EQ_INT(afut_loop_set_virtual_clock(loop, true), AFUT_ERR_LOOP_CLOSED);
    CHECK_TIME(afut_loop_time(loop), 2.0);
    afut_loop_free(loop);
}

/* From inside a callback (the loop thread) with no timer: allowed. From another thread while
 * the loop runs: AFUT_ERR_WRONG_THREAD. */
static atomic_int g_switch_rc;
static void switch_in_cb(void *loop) { atomic_store(&g_switch_rc, afut_loop_set_virtual_clock(loop, true)); }
typedef struct switcher {
    afut_loop_t *loop;
    atomic_int started;
    atomic_int rc;
    pthread_t th;
} switcher_t;
static void started_cb(void *p) { atomic_store(&((switcher_t *)p)->started, 1); }
static void *switcher_main(void *p) {
    switcher_t *s = p;
    while (!atomic_load(&s->started)) sleep_s(0.001);
    atomic_store(&s->rc, afut_loop_set_virtual_clock(s->loop, false));
    afut_loop_call_soon_threadsafe(s->loop, stop_cb, s->loop, NULL);
    return NULL;
}
TEST(switch_from_callback_and_from_other_thread) {
    afut_loop_t *loop = afut_loop_new();
    atomic_store(&g_switch_rc, 1);
    afut_loop_call_soon(loop, switch_in_cb, loop, NULL);
    CHECK_EQ_INT(run_once(loop, 0), 1);
    CHECK_EQ_INT(atomic_load(&g_switch_rc), AFUT_OK);
    CHECK_TIME(afut_loop_time(loop), 0.0);

    switcher_t s = {.loop = loop};
    atomic_init(&s.started, 0);
    atomic_init(&s.rc, 1);
    afut_loop_call_soon(loop, started_cb, &s, NULL);
    pthread_create(&s.th, NULL, switcher_main, &s);
    watchdog_t w;
    watchdog_start(&w, loop, 10);
    CHECK_EQ_INT(afut_loop_run_forever(loop), AFUT_OK);
    CHECK(!watchdog_finish(&w));
    pthread_join(s.th, NULL);
    CHECK_EQ_INT(atomic_load(&s.rc), AFUT_ERR_WRONG_THREAD);
    afut_loop_free(loop);
}

/* ------------------------------------------------------------------ manual advance */

/* After advance_time every due timer runs in the next single iteration, in deadline order;
 * a deadline equal to the clock is due; later ones wait. */
TEST(advance_runs_due_timers_in_one_iteration) {
    afut_loop_t *loop = new_virtual_loop(false);
    reset_log(loop);
    later(loop, 3, 3);
    later(loop, 1, 1);
    later(loop, 2, 2);
    later(loop, 3.5, 4);
    CHECK_EQ_INT(afut_loop_timeout_ms(loop), -1);
    CHECK_EQ_INT(run_once(loop, 0), 0);
    CHECK_EQ_INT(afut_loop_advance_time(loop, 3), AFUT_OK);
    CHECK_EQ_INT(afut_loop_timeout_ms(loop), 0);
    CHECK_EQ_INT(run_once(loop, 0), 3);
    CHECK_EQ_INT(g_nlog, 3);
    for (int i = 0; i < 3 && i < g_nlog; i++) {
        CHECK_EQ_INT(g_log_id[i], i + 1);
        CHECK_TIME(g_log_time[i], 3.0);
    }
    CHECK_EQ_INT(run_once(loop, 0), 0);
    /* equal to the clock: due */
    CHECK(afut_loop_call_at(loop, 5.0, log_cb, (void *)(intptr_t)5, NULL) != 0);
    CHECK_EQ_INT(afut_loop_advance_time(loop, 2), AFUT_OK); /* 3.5 and 5.0 now due */
    CHECK_EQ_INT(run_once(loop, 0), 2);
    CHECK_EQ_INT(g_nlog, 5);
    CHECK_EQ_INT(g_log_id[3], 4);
    CHECK_EQ_INT(g_log_id[4], 5);
    /* call_later(0) and call_at(now) are due at once; call_at in the past too */
    CHECK(afut_loop_call_at(loop, 5.0, log_cb, (void *)(intptr_t)6, NULL) != 0);
    CHECK(afut_loop_call_at(loop, 1.0, log_cb, (void *)(intptr_t)7, NULL) != 0);
    later(loop, 0, 8);
    CHECK_EQ_INT(run_once(loop, 0), 3);
    CHECK_EQ_INT(g_log_id[5], 7); /* deadline order: 1.0, then the two at 5.0 in FIFO order */
    CHECK_EQ_INT(g_log_id[6], 6);
    CHECK_EQ_INT(g_log_id[7], 8);
    /* INFINITY never runs */
    CHECK(afut_loop_call_later(loop, INFINITY, log_cb, (void *)(intptr_t)9, NULL) != 0);
    CHECK_EQ_INT(afut_loop_advance_time(loop, 1e300), AFUT_OK);
    CHECK_EQ_INT(run_once(loop, 0), 0);
    CHECK_EQ_INT(g_nlog, 8);
    afut_loop_free(loop);
}

/* Timers with equal deadlines run in the order they were scheduled. */
TEST(equal_deadlines_run_fifo) {
    afut_loop_t *loop = new_virtual_loop(false);
    reset_log(loop);
    for (int i = 0; i < 50; i++) later(loop, 1.0, i);
    CHECK_EQ_INT(afut_loop_advance_time(loop, 1.0), AFUT_OK);
    CHECK_EQ_INT(run_once(loop, 0), 50);
    for (int i = 0; i < 50 && i < g_nlog; i++) CHECK_EQ_INT(g_log_id[i], i);
    afut_loop_free(loop);
}

/* Timers made due by advance_time inside a callback run in the next iteration. */
static void advance_cb(void *loop) { CHECK_EQ_INT(afut_loop_advance_time(loop, 10), AFUT_OK); }
TEST(advance_from_a_callback) {
    afut_loop_t *loop = new_virtual_loop(false);
    reset_log(loop);
    later(loop, 5, 1);
    afut_loop_call_soon(loop, advance_cb, loop, NULL);
    CHECK_EQ_INT(run_once(loop, 0), 1);
    CHECK_EQ_INT(g_nlog, 0);
    CHECK_TIME(afut_loop_time(loop), 10.0);
    CHECK_EQ_INT(run_once(loop, 0), 1);
    CHECK_EQ_INT(g_nlog, 1);
    CHECK_TIME(g_log_time[0], 10.0);
    afut_loop_free(loop);
}

/* advance_time from another thread wakes a loop blocked in run_once(-1) on a manual clock. */
typedef struct advancer {
    afut_loop_t *loop;
    double delay_real;
    double seconds;
    atomic_int rc;
    pthread_t th;
} advancer_t;
static void *advancer_main(void *p) {
    advancer_t *a = p;
    sleep_s(a->delay_real);
    atomic_store(&a->rc, afut_loop_advance_time(a->loop, a->seconds));
    return NULL;
}
TEST(advance_from_another_thread_wakes_the_loop) {
    afut_loop_t *loop = new_virtual_loop(false);
    reset_log(loop);
    later(loop, 60, 1);
    advancer_t a = {.loop = loop, .delay_real = 0.05, .seconds = 60};
    atomic_init(&a.rc, 1);
    pthread_create(&a.th, NULL, advancer_main, &a);
    watchdog_t w;
    watchdog_start(&w, loop, 10);
    size_t ran = 0;
    double end = now_s() + budget(10);
    while (ran == 0 && now_s() < end) ran += run_once(loop, -1);
    CHECK(!watchdog_finish(&w));
    pthread_join(a.th, NULL);
    CHECK_EQ_INT(atomic_load(&a.rc), AFUT_OK);
    CHECK_EQ_INT(ran, 1);
    CHECK_EQ_INT(g_nlog, 1);
    CHECK_TIME(afut_loop_time(loop), 60.0);
    afut_loop_free(loop);
}

/* afut_sleep on a manual clock completes once time is advanced past it. */
TEST(sleep_follows_manual_clock) {
    afut_loop_t *loop = new_virtual_loop(false);
    afut_t *s = afut_sleep(loop, 5, NULL, NULL);
    CHECK_EQ_INT(afut_loop_advance_time(loop, 4.5), AFUT_OK);
    run_once(loop, 0);
    run_once(loop, 0);
    CHECK(!afut_done(s));
    CHECK_EQ_INT(afut_loop_advance_time(loop, 0.5), AFUT_OK);
    run_once(loop, 0);
    CHECK(afut_done(s));
    afut_unref(s);
    afut_loop_free(loop);
}

/* ------------------------------------------------------------------ auto-advance */

/* Jumps exactly to each next deadline; a cancelled timer is skipped. */
TEST(auto_advance_jumps_exactly_to_deadlines) {
    afut_loop_t *loop = new_virtual_loop(true);
    reset_log(loop);
    later(loop, 100, 1);
    afut_handle_t dead = later(loop, 150, 99);
    later(loop, 250, 2);
    later(loop, 3600, 3);
    CHECK(afut_loop_cancel(loop, dead));
    afut_t *done = afut_loop_create_future(loop);
    CHECK(afut_loop_call_later(loop, 3600, set_result_cb, done, NULL) != 0);
    double t0 = now_s();
    CHECK_EQ_INT(afut_loop_run_until_complete(loop, done), AFUT_OK);
    double took = now_s() - t0;
    CHECK_EQ_INT(g_nlog, 3);
    CHECK_EQ_INT(g_log_id[0], 1);
    CHECK_TIME(g_log_time[0], 100.0);
    CHECK_EQ_INT(g_log_id[1], 2);
    CHECK_TIME(g_log_time[1], 250.0);
    CHECK_EQ_INT(g_log_id[2], 3);
    CHECK_TIME(g_log_time[2], 3600.0);
    CHECK_TIME(afut_loop_time(loop), 3600.0);
    CHECK(took < budget(10));
    afut_unref(done);
    afut_loop_free(loop);
}

/* Ready work always goes first: a call_soon chain runs at time 0 before the clock jumps. */
static int g_chain_left;
static void chain_cb(void *loop) {
    log_cb((void *)(intptr_t)100);
    if (--g_chain_left > 0) afut_loop_call_soon(loop, chain_cb, loop, NULL);
}
TEST(auto_advance_waits_for_ready_work) {
    afut_loop_t *loop = new_virtual_loop(true);
    reset_log(loop);
    later(loop, 5, 1);
    g_chain_left = 5;
    afut_loop_call_soon(loop, chain_cb, loop, NULL);
    afut_t *done = afut_loop_create_future(loop);
    afut_loop_call_later(loop, 5, set_result_cb, done, NULL);
    CHECK_EQ_INT(afut_loop_run_until_complete(loop, done), AFUT_OK);
    CHECK_EQ_INT(g_nlog, 6);
    for (int i = 0; i < 5 && i < g_nlog; i++) {
        CHECK_EQ_INT(g_log_id[i], 100);
        CHECK_TIME(g_log_time[i], 0.0);
    }
    CHECK_EQ_INT(g_log_id[5], 1);
    CHECK_TIME(g_log_time[5], 5.0);
    afut_unref(done);
    afut_loop_free(loop);
}

/* Work queued by another thread before the loop looks is ready work: no jump past it. A
 * future completed from another thread likewise delivers its callbacks first. */
typedef struct poster {
    afut_loop_t *loop;
    afut_t *fut;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int posted;
    pthread_t th;
} poster_t;
static void *poster_main(void *p) {
    poster_t *ps = p;
    afut_loop_call_soon_threadsafe(ps->loop, log_cb, (void *)(intptr_t)200, NULL);
    afut_set_result(ps->fut, NULL, NULL);
    pthread_mutex_lock(&ps->mu);
    ps->posted = 1;
    pthread_cond_signal(&ps->cv);
    pthread_mutex_unlock(&ps->mu);
    return NULL;
}
/* Runs on the loop thread at time 0: starts the poster and waits until it has posted. */
static void start_poster_cb(void *p) {
    poster_t *ps = p;
    pthread_create(&ps->th, NULL, poster_main, ps);
    pthread_mutex_lock(&ps->mu);
    while (!ps->posted) pthread_cond_wait(&ps->cv, &ps->mu);
    pthread_mutex_unlock(&ps->mu);
}
static void fut_time_cb(afut_t *fut, void *ud) {
    (void)fut;
    log_cb(ud);
}
TEST(auto_advance_waits_for_work_from_other_threads) {
    afut_loop_t *loop = new_virtual_loop(true);
    reset_log(loop);
    poster_t ps = {.loop = loop};
    ps.fut = afut_loop_create_future(loop);
    pthread_mutex_init(&ps.mu, NULL);
    pthread_cond_init(&ps.cv, NULL);
    CHECK_EQ_INT(afut_add_done_callback(ps.fut, fut_time_cb, (void *)(intptr_t)201, NULL), AFUT_OK);
    later(loop, 5, 1);
    afut_loop_call_soon(loop, start_poster_cb, &ps, NULL);
    afut_t *done = afut_loop_create_future(loop);
    afut_loop_call_later(loop, 5, set_result_cb, done, NULL);
    CHECK_EQ_INT(afut_loop_run_until_complete(loop, done), AFUT_OK);
    pthread_join(ps.th, NULL);
    CHECK_EQ_INT(g_nlog, 3);
    CHECK_EQ_INT(g_log_id[0], 200);
    CHECK_TIME(g_log_time[0], 0.0);
    CHECK_EQ_INT(g_log_id[1], 201);
    CHECK_TIME(g_log_time[1], 0.0);
    CHECK_EQ_INT(g_log_id[2], 1);
    CHECK_TIME(g_log_time[2], 5.0);
    pthread_cond_destroy(&ps.cv);
    pthread_mutex_destroy(&ps.mu);
    afut_unref(ps.fut);
    afut_unref(done);
    afut_loop_free(loop);
}

/* An idle auto-advance loop with no timer (or only an INFINITY one) blocks until another
 * thread submits work, and burns no CPU meanwhile. */
typedef struct submitter {
    afut_loop_t *loop;
    double delay_real;
    int use_timer;     /* submit call_later(100) instead of call_soon_threadsafe */
    pthread_t th;
} submitter_t;
static atomic_int g_from_thread_ran;
static atomic_long g_from_thread_time_ms;
static void from_thread_cb(void *loop) {
    atomic_store(&g_from_thread_time_ms, (long)(afut_loop_time(loop) * 1000));
    atomic_fetch_add(&g_from_thread_ran, 1);
    afut_loop_stop(loop);
}
static void *submitter_main(void *p) {
    submitter_t *s = p;
    sleep_s(s->delay_real);
    if (s->use_timer)
        afut_loop_call_later(s->loop, 100, from_thread_cb, s->loop, NULL);
    else
        afut_loop_call_soon_threadsafe(s->loop, from_thread_cb, s->loop, NULL);
    return NULL;
}
static void idle_blocks_until_submission(int use_timer, int infinity_timer) {
    afut_loop_t *loop = new_virtual_loop(true);
    atomic_store(&g_from_thread_ran, 0);
    atomic_store(&g_from_thread_time_ms, -1);
    if (infinity_timer) CHECK(afut_loop_call_later(loop, INFINITY, log_cb, NULL, NULL) != 0);
    submitter_t s = {.loop = loop, .delay_real = 0.2, .use_timer = use_timer};
    double wall0 = now_s(), cpu0 = thread_cpu_s();
    pthread_create(&s.th, NULL, submitter_main, &s);
    watchdog_t w;
    watchdog_start(&w, loop, 10);
    CHECK_EQ_INT(afut_loop_run_forever(loop), AFUT_OK);
    CHECK(!watchdog_finish(&w));
    double wall = now_s() - wall0, cpu = thread_cpu_s() - cpu0;
    pthread_join(s.th, NULL);
    CHECK_EQ_INT(atomic_load(&g_from_thread_ran), 1);
    CHECK(wall >= 0.19); /* it blocked until the submission */
    CHECK(cpu < wall / 2); /* without spinning */
    if (cpu >= wall / 2) fprintf(stderr, "  cpu %.3f s over %.3f s of wall time\n", cpu, wall);
    CHECK_EQ_INT(atomic_load(&g_from_thread_time_ms), use_timer ? 100000 : 0);
    afut_loop_free(loop);
}
TEST(idle_auto_advance_blocks_until_call_soon_threadsafe) { idle_blocks_until_submission(0, 0); }
TEST(idle_auto_advance_blocks_until_call_later_from_thread) { idle_blocks_until_submission(1, 0); }
TEST(idle_auto_advance_with_infinity_timer_blocks) { idle_blocks_until_submission(0, 1); }

/* run_once(timeout) on an idle auto-advance loop with no timer waits in real time and moves
 * nothing. */
TEST(idle_run_once_with_timeout_moves_nothing) {
    afut_loop_t *loop = new_virtual_loop(true);
    double t0 = now_s();
    CHECK_EQ_INT(run_once(loop, 30), 0);
    CHECK(now_s() - t0 >= 0.029);
    CHECK_TIME(afut_loop_time(loop), 0.0);
    afut_loop_free(loop);
}

/* A job of afut_loop_run_in_executor holds the clock: the loop waits for it instead of
 * jumping to the timeout. */
static void slow_job(afut_t *fut, void *ud) {
    (void)ud;
    sleep_s(0.05);
    afut_set_result(fut, (void *)&g_from_thread_ran, NULL);
}
TEST(executor_jobs_hold_auto_advance) {
    afut_loop_t *loop = new_virtual_loop(true);
    afut_executor_t *ex = afut_executor_new(1);
    afut_t *job = afut_loop_run_in_executor(loop, ex, slow_job, NULL, NULL);
    CHECK(job != NULL);
    afut_t *w = afut_wait_for(loop, job, 10);
    CHECK_EQ_INT(afut_loop_run_until_complete(loop, w), AFUT_OK);
    CHECK_TIME(afut_loop_time(loop), 0.0);
    /* once the job is done, the clock jumps again */
    afut_t *s = afut_sleep(loop, 7, NULL, NULL);
    CHECK_EQ_INT(afut_loop_run_until_complete(loop, s), AFUT_OK);
    CHECK_TIME(afut_loop_time(loop), 7.0);
    afut_executor_free(ex);
    afut_unref(s);
    afut_unref(w);
    afut_unref(job);
    afut_loop_free(loop);
}

/* ------------------------------------------------------------------ futures and combinators */

TEST(sleep_follows_auto_clock) {
    afut_loop_t *loop = new_virtual_loop(true);
    afut_t *s = afut_sleep(loop, 30, NULL, NULL);
    done_at_t d = {0};
    afut_add_done_callback(s, done_at_cb, &d, NULL);
    CHECK_EQ_INT(afut_loop_run_until_complete(loop, s), AFUT_OK);
    run_once(loop, 0);
    CHECK_EQ_INT(d.calls, 1);
    CHECK_TIME(d.when, 30.0);
    afut_unref(s);
    afut_loop_free(loop);
}

/* wait_for(fut, 3600) times out at loop time 3600, in a moment of real time. */
TEST(wait_for_an_hour_times_out_at_once) {
    afut_loop_t *loop = new_virtual_loop(true);
    afut_t *never = afut_loop_create_future(loop);
    double t0 = now_s();
    afut_t *w = afut_wait_for(loop, never, 3600);
    CHECK_EQ_INT(afut_loop_run_until_complete(loop, w), AFUT_ERR_EXCEPTION);
    double took = now_s() - t0;
    afut_exception_t e;
    CHECK_EQ_INT(afut_exception(w, &e), AFUT_OK);
    CHECK_EQ_INT(e.code, AFUT_ERR_TIMEOUT);
    CHECK(afut_cancelled(never));
    CHECK_TIME(afut_loop_time(loop), 3600.0);
    CHECK(took < budget(10));
    printf("  note: wait_for(fut, 3600) timed out after %.6f s of real time\n", took);

    /* and one that does not time out: the inner sleep wins at 3610 */
    afut_t *s = afut_sleep(loop, 10, NULL, NULL);
    afut_t *w2 = afut_wait_for(loop, s, 20);
    CHECK_EQ_INT(afut_loop_run_until_complete(loop, w2), AFUT_OK);
    CHECK_TIME(afut_loop_time(loop), 3610.0);
    afut_unref(s);
    afut_unref(w2);
    afut_unref(w);
    afut_unref(never);
    afut_loop_free(loop);
}

TEST(wait_many_timeout_follows_the_clock) {
    afut_loop_t *loop = new_virtual_loop(true);
    afut_t *futs[2];
    futs[0] = afut_sleep(loop, 5, NULL, NULL);
    futs[1] = afut_loop_create_future(loop);
    afut_t *w = afut_wait_many(loop, futs, 2, 60, AFUT_ALL_COMPLETED);
    CHECK_EQ_INT(afut_loop_run_until_complete(loop, w), AFUT_OK);
    CHECK_TIME(afut_loop_time(loop), 60.0);
    const afut_wait_result_t *r = afut_wait_many_result(w);
    CHECK(r != NULL);
    if (r) {
        CHECK_EQ_INT(r->n_done, 1);
        CHECK_EQ_INT(r->n_pending, 1);
        if (r->n_done == 1) CHECK(r->done[0] == futs[0]);
    }
    afut_unref(w);

    afut_t *b[2];
    b[0] = afut_sleep(loop, 9, NULL, NULL);
    b[1] = afut_sleep(loop, 7, NULL, NULL);
    w = afut_wait_many(loop, b, 2, INFINITY, AFUT_FIRST_COMPLETED);
    CHECK_EQ_INT(afut_loop_run_until_complete(loop, w), AFUT_OK);
    CHECK_TIME(afut_loop_time(loop), 67.0);
    r = afut_wait_many_result(w);
    if (r) {
        CHECK_EQ_INT(r->n_done, 1);
        if (r->n_done == 1) CHECK(r->done[0] == b[1]);
    }
    afut_unref(w);
    afut_cancel(futs[1], NULL);
    for (int i = 0; i < 2; i++) {
        afut_unref(futs[i]);
        afut_unref(b[i]);
    }
    afut_loop_free(loop);
}

TEST(as_completed_timeout_follows_the_clock) {
    afut_loop_t *loop = new_virtual_loop(true);
    afut_t *in[3];
    in[0] = afut_sleep(loop, 4, NULL, NULL);
    in[1] = afut_loop_create_future(loop);
    in[2] = afut_sleep(loop, 2, NULL, NULL);
    afut_t *out[3] = {0};
    CHECK_EQ_INT(afut_as_completed(loop, in, 3, 10, out), 3);
    done_at_t d[3] = {{0}};
    for (int i = 0; i < 3; i++) afut_add_done_callback(out[i], done_at_cb, &d[i], NULL);
    CHECK_EQ_INT(afut_loop_run_until_complete(loop, out[2]), AFUT_ERR_EXCEPTION);
    run_once(loop, 0);
    afut_exception_t e;
    CHECK_EQ_INT(afut_exception(out[2], &e), AFUT_OK);
    CHECK_EQ_INT(e.code, AFUT_ERR_TIMEOUT);
    CHECK_EQ_INT(afut_result(out[0], NULL), AFUT_OK);
    CHECK_EQ_INT(afut_result(out[1], NULL), AFUT_OK);
    for (int i = 0; i < 3; i++) CHECK_EQ_INT(d[i].calls, 1);
    /* each one iteration after its input: the clock did not move in between */
    CHECK_TIME(d[0].when, 2.0);
    CHECK_TIME(d[1].when, 4.0);
    CHECK_TIME(d[2].when, 10.0);
    for (int i = 0; i < 3; i++) {
        afut_unref(in[i]);
        afut_unref(out[i]);
    }
    afut_loop_free(loop);
}

/* A day of call_later timers, scheduled in a scrambled order: each runs at its deadline
 * exactly, in deadline order; a second day's chain (each timer schedules the next) too. */
static int g_chain_next;
static void day_chain_cb(void *loop) {
    log_cb((void *)(intptr_t)g_chain_next);
    if (++g_chain_next < 1440) afut_loop_call_later(loop, 60, day_chain_cb, loop, NULL);
}
TEST(a_day_of_timers_runs_in_order) {
    afut_loop_t *loop = new_virtual_loop(true);
    reset_log(loop);
    enum { N = 1440 };
    /* i -> (i * 577) mod 1440 is a permutation (gcd(577, 1440) = 1) */
    for (int k = 0; k < N; k++) {
        int i = (k * 577) % N;
        later(loop, (double)(i + 1) * 60, i);
    }
    afut_t *done = afut_loop_create_future(loop);
    afut_loop_call_later(loop, 86400, set_result_cb, done, NULL);
    double t0 = now_s();
    CHECK_EQ_INT(afut_loop_run_until_complete(loop, done), AFUT_OK);
    double took = now_s() - t0;
    CHECK_EQ_INT(g_nlog, N);
    int bad = 0;
    for (int i = 0; i < g_nlog; i++)
        if (g_log_id[i] != i || g_log_time[i] != (double)(i + 1) * 60) bad++;
    CHECK_EQ_INT(bad, 0);
    CHECK_TIME(afut_loop_time(loop), 86400.0);
    printf("  note: a day of %d timers ran in %.3f s of real time\n", N, took);
    afut_unref(done);

    reset_log(loop);
    g_chain_next = 0;
    afut_loop_call_later(loop, 60, day_chain_cb, loop, NULL);
    done = afut_loop_create_future(loop);
    afut_loop_call_later(loop, 86400 + 0.5, set_result_cb, done, NULL);
    CHECK_EQ_INT(afut_loop_run_until_complete(loop, done), AFUT_OK);
    CHECK_EQ_INT(g_nlog, N);
    bad = 0;
    for (int i = 0; i < g_nlog; i++)
        if (g_log_id[i] != i || g_log_time[i] != 86400.0 + (double)(i + 1) * 60) bad++;
    CHECK_EQ_INT(bad, 0);
    CHECK(took < budget(20));
    afut_unref(done);
    afut_loop_free(loop);
}

/* ------------------------------------------------------------------ debug mode */

static int g_slow_reports;
static char g_slow_msg[256];
static void slow_handler(afut_loop_t *loop, const afut_error_context_t *ctx, void *ud) {
    (void)loop;
    (void)ud;
    if (ctx && ctx->message && strncmp(ctx->message, "Executing ", 10) == 0) {
        g_slow_reports++;
        snprintf(g_slow_msg, sizeof g_slow_msg, "%s", ctx->message);
    }
}
static void advance_02_cb(void *loop) { afut_loop_advance_time(loop, 0.25); }
static void real_sleep_cb(void *loop) {
    (void)loop;
    sleep_s(0.15);
}
TEST(debug_slow_callback_uses_loop_time) {
    afut_loop_t *loop = new_virtual_loop(false);
    afut_loop_set_exception_handler(loop, slow_handler, NULL, NULL);
    afut_loop_set_debug(loop, true);
    g_slow_reports = 0;
    afut_loop_call_soon(loop, real_sleep_cb, loop, NULL); /* 150 ms real, 0 s of loop time */
    run_once(loop, 0);
    CHECK_EQ_INT(g_slow_reports, 0);
    afut_loop_call_soon(loop, advance_02_cb, loop, NULL); /* 0.25 s of loop time */
    run_once(loop, 0);
    CHECK_EQ_INT(g_slow_reports, 1);
    CHECK(strstr(g_slow_msg, "took 0.250 seconds") != NULL);
    if (g_slow_reports) printf("  note: slow-callback message: \"%s\"\n", g_slow_msg);
    afut_loop_free(loop);
}

/* ------------------------------------------------------------------ host mode */

/* Manual clock: the fd is readable for a virtual timer only once advance_time made it due;
 * afut_loop_timeout_ms is -1 until then (waiting would never make it due), 0 after. */
TEST(host_fd_readable_only_once_advanced) {
    afut_loop_t *loop = new_virtual_loop(false);
    reset_log(loop);
    int fd = afut_loop_fd(loop);
    CHECK(fd >= 0);
    later(loop, 0.5, 1);
    CHECK_EQ_INT(test_readable(fd, 100), 0); /* 100 ms of real time: not due */
    CHECK_EQ_INT(afut_loop_timeout_ms(loop), -1);
    CHECK_EQ_INT(afut_loop_advance_time(loop, 0.25), AFUT_OK);
    CHECK_EQ_INT(test_readable(fd, 20), 0);
    CHECK_EQ_INT(afut_loop_timeout_ms(loop), -1);
    CHECK_EQ_INT(afut_loop_advance_time(loop, 0.25), AFUT_OK);
    CHECK_EQ_INT(test_readable(fd, 0), 1);
    CHECK_EQ_INT(afut_loop_timeout_ms(loop), 0);
    CHECK_EQ_INT(run_once(loop, 0), 1);
    CHECK_EQ_INT(g_nlog, 1);
    CHECK_EQ_INT(test_readable(fd, 0), 0);
    CHECK_EQ_INT(afut_loop_timeout_ms(loop), -1);
    /* a timer that is due when scheduled (delay 0) makes the fd readable at once */
    later(loop, 0, 2);
    CHECK_EQ_INT(test_readable(fd, 0), 1);
    CHECK_EQ_INT(afut_loop_timeout_ms(loop), 0);
    CHECK_EQ_INT(run_once(loop, 0), 1);
    CHECK_EQ_INT(test_readable(fd, 0), 0);
    afut_loop_free(loop);
}

/* advance_time from another thread makes the fd readable for a host blocked in poll. */
TEST(host_fd_wakes_when_another_thread_advances) {
    afut_loop_t *loop = new_virtual_loop(false);
    reset_log(loop);
    int fd = afut_loop_fd(loop);
    later(loop, 2, 1);
    advancer_t a = {.loop = loop, .delay_real = 0.05, .seconds = 2};
    atomic_init(&a.rc, 1);
    pthread_create(&a.th, NULL, advancer_main, &a);
    CHECK_EQ_INT(test_readable(fd, (int)(budget(10) * 1000)), 1);
    pthread_join(a.th, NULL);
    CHECK_EQ_INT(run_once(loop, 0), 1);
    CHECK_EQ_INT(g_nlog, 1);
    afut_loop_free(loop);
}

/* Auto-advance in host mode: afut_loop_timeout_ms is 0 while a live timer is pending (the
 * next run_once jumps to it), -1 without one; the fd is not readable for it. */
TEST(host_auto_advance_timeout_is_zero) {
    afut_loop_t *loop = new_virtual_loop(true);
    reset_log(loop);
    int fd = afut_loop_fd(loop);
    CHECK_EQ_INT(afut_loop_timeout_ms(loop), -1);
    later(loop, 100, 1);
    later(loop, 200, 2);
    CHECK_EQ_INT(afut_loop_timeout_ms(loop), 0);
    CHECK_EQ_INT(test_readable(fd, 0), 0);
    CHECK_EQ_INT(run_once(loop, 0), 1);
    CHECK_TIME(afut_loop_time(loop), 100.0);
    CHECK_EQ_INT(afut_loop_timeout_ms(loop), 0);
    CHECK_EQ_INT(run_once(loop, 0), 1);
    CHECK_TIME(afut_loop_time(loop), 200.0);
    CHECK_EQ_INT(g_nlog, 2);
    CHECK_EQ_INT(afut_loop_timeout_ms(loop), -1);
    CHECK_EQ_INT(test_readable(fd, 0), 0);
    /* only an INFINITY timer: nothing to jump to */
    CHECK(afut_loop_call_later(loop, INFINITY, log_cb, NULL, NULL) != 0);
    CHECK_EQ_INT(afut_loop_timeout_ms(loop), -1);
    afut_loop_free(loop);
}

int main(void) {
    signal(SIGALRM, on_alarm);
    alarm(under_valgrind() ? 300 : 90);
    RUNT(clock_starts_at_zero_and_stands_still);
    RUNT(switching_is_refused_while_a_timer_exists);
    RUNT(second_switch_keeps_the_clock);
    RUNT(bad_input);
    RUNT(switch_from_callback_and_from_other_thread);
    RUNT(advance_runs_due_timers_in_one_iteration);
    RUNT(equal_deadlines_run_fifo);
    RUNT(advance_from_a_callback);
    RUNT(advance_from_another_thread_wakes_the_loop);
    RUNT(sleep_follows_manual_clock);
    RUNT(auto_advance_jumps_exactly_to_deadlines);
    RUNT(auto_advance_waits_for_ready_work);
    RUNT(auto_advance_waits_for_work_from_other_threads);
    RUNT(idle_auto_advance_blocks_until_call_soon_threadsafe);
    RUNT(idle_auto_advance_blocks_until_call_later_from_thread);
    RUNT(idle_auto_advance_with_infinity_timer_blocks);
    RUNT(idle_run_once_with_timeout_moves_nothing);
    RUNT(executor_jobs_hold_auto_advance);
    RUNT(sleep_follows_auto_clock);
    RUNT(wait_for_an_hour_times_out_at_once);
    RUNT(wait_many_timeout_follows_the_clock);
    RUNT(as_completed_timeout_follows_the_clock);
    RUNT(a_day_of_timers_runs_in_order);
    RUNT(debug_slow_callback_uses_loop_time);
    RUNT(host_fd_readable_only_once_advanced);
    RUNT(host_fd_wakes_when_another_thread_advances);
    RUNT(host_auto_advance_timeout_is_zero);
    TEST_END();
}
