/* Event loop tests: call_soon, batches, cancel, stop, run_until_complete,
 * run_once, close, free, exception handler, debug mode, time.
 *
 * Each test uses a fresh loop (setup()/teardown()). Every userdata is a
 * heap "token" whose free function counts frees, so teardown() can check that
 * the library freed each token exactly once (valgrind and ASan check the rest).
 * Timing checks are lower bounds only; the machine is shared and noisy. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "afut.h"
#include "test.h"
#include "tokens.h"

/* ------------------------------------------------------------------ helpers */

static bool g_safety_fired;

/* Logs, then schedules token id+100 with call_soon. */
static void sched_child_cb(void *p) {
    int id = ((tok_t *)p)->id;
    record(id);
    soon(id + 100);
}

static void stop_cb(void *p) {
    record(((tok_t *)p)->id);
    afut_loop_stop(g_loop);
}

/* Logs, stops the loop and schedules token id+100. */
static void stop_and_child_cb(void *p) {
    int id = ((tok_t *)p)->id;
    record(id);
    afut_loop_stop(g_loop);
    soon(id + 100);
}

static void safety_cb(void *p) {
    (void)p;
    g_safety_fired = true;
    afut_loop_stop(g_loop);
}

/* A far timer that stops run_forever if the loop would otherwise block forever
 * (a library bug); tests check g_safety_fired is still false. */
static void arm_safety(void) {
    double s = test_under_valgrind() ? 20.0 : 5.0;
    CHECK(afut_loop_call_later(g_loop, s, safety_cb, NULL, NULL) != 0);
}

/* Exception handler that records what it got. Its userdata, when not NULL, is
 * a token whose id tells which installation received the report. */
static int g_reports;
static int g_slow_reports;
static int g_never_retrieved_reports;
static char g_report_msg[256];
static bool g_report_has_future;
static int g_report_code;
static char g_report_exc_msg[64];
static afut_loop_t *g_report_loop;
static int g_report_handler_id;

static void handler(afut_loop_t *loop, const afut_error_context_t *ctx, void *ud) {
    g_reports++;
    g_report_loop = loop;
    g_report_handler_id = ud ? ((tok_t *)ud)->id : -1;
    snprintf(g_report_msg, sizeof g_report_msg, "%s",
             ctx && ctx->message ? ctx->message : "(null)");
    g_report_has_future = ctx && ctx->future != NULL;
    g_report_code = ctx && ctx->exception ? ctx->exception->code : 0;
    snprintf(g_report_exc_msg, sizeof g_report_exc_msg, "%s",
             ctx && ctx->exception && ctx->exception->message ? ctx->exception->message
                                                              : "(null)");
    if (ctx && ctx->message && strncmp(ctx->message, "Executing ", 10) == 0 &&
        strstr(ctx->message, "took"))
        g_slow_reports++;
    if (ctx && ctx->message && strcmp(ctx->message, "Future exception was never retrieved") == 0)
        g_never_retrieved_reports++;
}

static void setup(void) {
    g_safety_fired = false;
    g_reports = g_slow_reports = g_never_retrieved_reports = 0;
    g_report_msg[0] = g_report_exc_msg[0] = '\0';
    g_report_has_future = false;
    g_report_code = 0;
    g_report_loop = NULL;
    g_report_handler_id = 0;
    tokens_setup();
}

static void teardown(void) { tokens_teardown(); }

/* future helpers */
static void set_result_cb(void *fut) { afut_set_result(fut, (void *)(uintptr_t)0x1234, NULL); }
static void set_exception_cb(void *fut) { afut_set_exception(fut, 7, "boom", NULL, NULL); }
static void cancel_fut_cb(void *fut) { afut_cancel(fut, "bye"); }
static void done_log_cb(afut_t *fut, void *ud) {
    (void)fut;
    record(((tok_t *)ud)->id);
}
static void done_sched_child_cb(afut_t *fut, void *ud) {
    (void)fut;
    sched_child_cb(ud);
}

/* ------------------------------------------------------------ call_soon, L1 */

/* test_base_events.py BaseEventLoopTests.test_call_soon;
 * test_events.py EventLoopTestsMixin.test_call_soon; SEMANTICS L1 (FIFO, exactly once);
 * API.md "afut_handle_t values are never 0 on success" */
TEST(test_call_soon_fifo_exactly_once) {
    setup();
    afut_handle_t hs[10];
    for (int i = 0; i < 10; i++) {
        hs[i] = soon(i);
        CHECK(hs[i] != 0);
        for (int j = 0; j < i; j++) CHECK(hs[j] != hs[i]);
    }
    CHECK_EQ_INT(g_nlog, 0); /* never inline */
    size_t ran = 999;
    CHECK_EQ_INT(afut_loop_run_once(g_loop, 0, &ran), AFUT_OK);
    CHECK_EQ_INT(ran, 10);
    CHECK_LOG(0, 1, 2, 3, 4, 5, 6, 7, 8, 9);
    for (int i = 0; i < 10; i++) {
        CHECK_EQ_INT(g_runs[i], 1);
        CHECK_EQ_INT(g_frees[i], 1); /* freed after it ran */
    }
    ran = 999;
    CHECK_EQ_INT(afut_loop_run_once(g_loop, 0, &ran), AFUT_OK);
    CHECK_EQ_INT(ran, 0);
    CHECK_EQ_INT(afut_loop_run_once(g_loop, 0, NULL), AFUT_OK); /* ran_out may be NULL */
    for (int i = 0; i < 10; i++) CHECK_EQ_INT(g_runs[i], 1);
    teardown();
}

/* test_base_events.py BaseEventLoopTests.test__run_once_schedule_handle;
 * SEMANTICS L2 (what a callback schedules runs in the next iteration) */
TEST(test_batch_scheduled_during_batch_runs_next_iteration) {
    setup();
    soon_with(sched_child_cb, 1);
    soon_with(sched_child_cb, 2);
    size_t ran = 999;
    CHECK_EQ_INT(afut_loop_run_once(g_loop, 0, &ran), AFUT_OK);
    CHECK_EQ_INT(ran, 2);
    CHECK_LOG(1, 2);
    ran = 999;
    CHECK_EQ_INT(afut_loop_run_once(g_loop, 0, &ran), AFUT_OK);
    CHECK_EQ_INT(ran, 2);
    CHECK_LOG(1, 2, 101, 102);
    ran = 999;
    CHECK_EQ_INT(afut_loop_run_once(g_loop, 0, &ran), AFUT_OK);
    CHECK_EQ_INT(ran, 0);
    teardown();
}

/* SEMANTICS L2 (`if handle._cancelled: continue`); API.md run_once
 * "*ran_out = callbacks and timers that ran, cancelled ones not counted" */
TEST(test_ran_out_excludes_cancelled) {
    setup();
    afut_handle_t h[4];
    for (int i = 0; i < 4; i++) h[i] = soon(i);
    CHECK(afut_loop_cancel(g_loop, h[1]));
    CHECK(afut_loop_cancel(g_loop, h[3]));
    size_t ran = 999;
    CHECK_EQ_INT(afut_loop_run_once(g_loop, 0, &ran), AFUT_OK);
    CHECK_EQ_INT(ran, 2);
    CHECK_LOG(0, 2);
    CHECK_EQ_INT(g_runs[1], 0);
    CHECK_EQ_INT(g_runs[3], 0);
    teardown();
}

/* SEMANTICS L2: "Timers that are due are appended *after* callbacks that were
 * already ready"; API.md run_once "run due timers and the callbacks ready at
 * its start" (both in the same iteration) */
TEST(test_due_timers_run_after_ready_callbacks) {
    setup();
    double now = afut_loop_time(g_loop);
    CHECK(at_with(log_cb, now - 1.0, 50) != 0); /* scheduled first, due */
    soon_with(sched_child_cb, 1);
    soon(2);
    size_t ran = 999;
    CHECK_EQ_INT(afut_loop_run_once(g_loop, 0, &ran), AFUT_OK);
    CHECK_EQ_INT(ran, 3);
    CHECK_LOG(1, 2, 50);
    ran = 999;
    CHECK_EQ_INT(afut_loop_run_once(g_loop, 0, &ran), AFUT_OK);
    CHECK_EQ_INT(ran, 1);
    CHECK_LOG(1, 2, 50, 101);
    teardown();
}

/* --------------------------------------------------------- cancel, L4, API */

/* test_events.py HandleTests.test_handle (cancel); SEMANTICS L4; API.md
 * afut_loop_cancel "true iff this call cancelled a callback that had not
 * started (its userdata_free then runs)" */
TEST(test_cancel_pending_callback_once) {
    setup();
    afut_handle_t h = soon(5);
    CHECK(h != 0);
    CHECK(afut_loop_cancel(g_loop, h));
    CHECK_EQ_INT(g_frees[5], 1); /* freed by the cancel itself */
    CHECK(!afut_loop_cancel(g_loop, h)); /* already cancelled */
    CHECK_EQ_INT(g_frees[5], 1);
    size_t ran = 999;
    CHECK_EQ_INT(afut_loop_run_once(g_loop, 0, &ran), AFUT_OK);
    CHECK_EQ_INT(ran, 0);
    CHECK_EQ_INT(g_runs[5], 0);
    CHECK_EQ_INT(g_frees[5], 1);
    teardown();
}

/* API.md afut_loop_cancel: false for 0, unknown and already-run handles;
 * header: afut_loop_cancel(NULL, h) false; a handle of another loop is unknown there */
TEST(test_cancel_invalid_handles) {
    setup();
    CHECK(!afut_loop_cancel(g_loop, 0));
    afut_handle_t h = soon(1);
    CHECK(h != 0);
    CHECK(!afut_loop_cancel(NULL, h));
    afut_loop_t *other = afut_loop_new();
    CHECK(other != NULL);
    CHECK(!afut_loop_cancel(other, h)); /* other loop has nothing scheduled */
    CHECK(!afut_loop_cancel(g_loop, h + 1000000));
    CHECK_EQ_INT(g_frees[1], 0);
    size_t ran = 999;
    CHECK_EQ_INT(afut_loop_run_once(g_loop, 0, &ran), AFUT_OK);
    CHECK_EQ_INT(ran, 1);
    CHECK_EQ_INT(g_runs[1], 1);
    CHECK(!afut_loop_cancel(g_loop, h)); /* already run */
    CHECK_EQ_INT(g_frees[1], 1);
    afut_loop_free(other);
    teardown();
}

/* cancel_cb: logs, then cancels g_target[id] and stores the result. */
static afut_handle_t g_target[NTOK];
static int g_cres[NTOK];
static void cancel_cb(void *p) {
    int id = ((tok_t *)p)->id;
    record(id);
    g_cres[id] = afut_loop_cancel(g_loop, g_target[id]) ? 1 : 0;
}

/* SEMANTICS L2/L4: a handle cancelled while it waits in the current batch is
 * skipped (`if handle._cancelled: continue`); one that already ran in this
 * batch cannot be cancelled */
TEST(test_cancel_sibling_in_same_batch) {
    setup();
    memset(g_cres, -1, sizeof g_cres);
    afut_handle_t ha = soon_with(cancel_cb, 1);
    afut_handle_t hb = soon(2);
    soon_with(cancel_cb, 3);
    g_target[1] = hb; /* A cancels B before B runs */
    g_target[3] = ha; /* C tries to cancel A, which already ran */
    size_t ran = 999;
    CHECK_EQ_INT(afut_loop_run_once(g_loop, 0, &ran), AFUT_OK);
    CHECK_EQ_INT(g_cres[1], 1);
    CHECK_EQ_INT(g_cres[3], 0);
    CHECK_LOG(1, 3);
    CHECK_EQ_INT(ran, 2);
    CHECK_EQ_INT(g_runs[2], 0);
    CHECK_EQ_INT(g_frees[2], 1);
    teardown();
}

/* API.md afut_loop_cancel: false for a running handle (a callback cancelling itself) */
TEST(test_cancel_running_callback_itself) {
    setup();
    memset(g_cres, -1, sizeof g_cres);
    afut_handle_t h = soon_with(cancel_cb, 1);
    g_target[1] = h;
    size_t ran = 999;
    CHECK_EQ_INT(afut_loop_run_once(g_loop, 0, &ran), AFUT_OK);
    CHECK_EQ_INT(ran, 1);
    CHECK_EQ_INT(g_cres[1], 0);
    CHECK_EQ_INT(g_runs[1], 1);
    CHECK_EQ_INT(g_frees[1], 1);
    CHECK(!afut_loop_cancel(g_loop, h));
    teardown();
}

/* ------------------------------------------------------------------ stop, L6 */

/* SEMANTICS L6 [X] (['a','b'], then 'c' on the next run; asyncio docs of
 * loop.stop()): stop from inside a callback, the current batch finishes */
TEST(test_stop_inside_callback_finishes_batch) {
    setup();
    arm_safety();
    soon_with(stop_and_child_cb, 1);
    soon(2);
    CHECK_EQ_INT(afut_loop_run_forever(g_loop), AFUT_OK);
    CHECK_LOG(1, 2);
    CHECK_EQ_INT(g_runs[101], 0); /* scheduled during the stopping batch */
    CHECK(!afut_loop_is_running(g_loop));
    soon_with(stop_cb, 3);
    CHECK_EQ_INT(afut_loop_run_forever(g_loop), AFUT_OK);
    CHECK_LOG(1, 2, 101, 3);
    CHECK(!g_safety_fired);
    teardown();
}

/* test_base_events.py BaseEventLoopTests.test_run_forever_pre_stopped;
 * SEMANTICS L6 (stop before run_forever: exactly one iteration, gh-88391) */
TEST(test_stop_before_run_forever_one_iteration) {
    setup();
    arm_safety();
    afut_loop_stop(g_loop);
    CHECK_EQ_INT(afut_loop_run_forever(g_loop), AFUT_OK); /* nothing ready: returns anyway */
    CHECK(!g_safety_fired);
    soon_with(sched_child_cb, 1);
    afut_loop_stop(g_loop);
    CHECK_EQ_INT(afut_loop_run_forever(g_loop), AFUT_OK);
    CHECK_LOG(1);
    CHECK(!g_safety_fired);
    size_t ran = 999;
    CHECK_EQ_INT(afut_loop_run_once(g_loop, 0, &ran), AFUT_OK);
    CHECK_EQ_INT(ran, 1);
    CHECK_LOG(1, 101);
    teardown();
}

/* header (afut_loop_stop): "afut_loop_run_once ignores it" */
TEST(test_run_once_keeps_pending_stop) {
    setup();
    arm_safety();
    afut_loop_stop(g_loop);
    CHECK_EQ_INT(afut_loop_run_once(g_loop, 0, NULL), AFUT_OK);
    soon_with(sched_child_cb, 1);
    CHECK_EQ_INT(afut_loop_run_forever(g_loop), AFUT_OK);
    CHECK_LOG(1);
    CHECK(!g_safety_fired);
    teardown();
}

/* SEMANTICS L5/L6; API.md run_forever returns AFUT_OK after a stop from a timer */
TEST(test_run_forever_until_timer_stops) {
    setup();
    arm_safety();
    double t0 = afut_loop_time(g_loop);
    CHECK(later_with(stop_cb, 0.02, 1) != 0);
    CHECK_EQ_INT(afut_loop_run_forever(g_loop), AFUT_OK);
    CHECK_LOG(1);
    CHECK(afut_loop_time(g_loop) >= t0 + 0.02 - 1e-6);
    CHECK(!g_safety_fired);
    teardown();
}

static void *stop_from_thread(void *arg) {
    test_sleep_ms(30);
    afut_loop_stop(arg);
    return NULL;
}

/* header (afut_loop_stop): "from another thread it also wakes the loop"
 * (asyncio needs call_soon_threadsafe(loop.stop), SEMANTICS L6) */
TEST(test_stop_from_other_thread_wakes_loop) {
    setup();
    arm_safety();
    pthread_t th;
    CHECK_EQ_INT(pthread_create(&th, NULL, stop_from_thread, g_loop), 0);
    CHECK_EQ_INT(afut_loop_run_forever(g_loop), AFUT_OK);
    pthread_join(th, NULL);
    CHECK(!g_safety_fired);
    teardown();
}

static void *soon_threadsafe_from_thread(void *arg) {
    (void)arg;
    test_sleep_ms(30);
    tok_t *t = tok_new(7);
    if (!afut_loop_call_soon_threadsafe(g_loop, stop_cb, t, tok_free)) tok_discard(t);
    return NULL;
}

/* test_events.py EventLoopTestsMixin.test_call_soon_threadsafe; SEMANTICS L8
 * (a blocked loop wakes promptly) */
TEST(test_call_soon_threadsafe_wakes_loop) {
    setup();
    arm_safety();
    pthread_t th;
    CHECK_EQ_INT(pthread_create(&th, NULL, soon_threadsafe_from_thread, NULL), 0);
    CHECK_EQ_INT(afut_loop_run_forever(g_loop), AFUT_OK);
    pthread_join(th, NULL);
    CHECK_LOG(7);
    CHECK(!g_safety_fired);
    teardown();
}

/* ---------------------------------------------------- run_until_complete, L7 */

/* test_events.py EventLoopTestsMixin.test_run_until_complete; SEMANTICS L7.5 */
TEST(test_run_until_complete_result) {
    setup();
    afut_t *fut = afut_loop_create_future(g_loop);
    CHECK(fut != NULL);
    CHECK(afut_loop_call_soon(g_loop, set_result_cb, fut, NULL) != 0);
    CHECK_EQ_INT(afut_loop_run_until_complete(g_loop, fut), AFUT_OK);
    CHECK(afut_done(fut));
    void *v = NULL;
    CHECK_EQ_INT(afut_result(fut, &v), AFUT_OK);
    CHECK(v == (void *)(uintptr_t)0x1234);
    CHECK(!afut_loop_is_running(g_loop));
    afut_unref(fut);
    teardown();
}

/* SEMANTICS L7.5 (the exception is re-raised) + F15 / header: run_until_complete
 * returning ERR_EXCEPTION suppresses the never-retrieved report; the second
 * future is the control showing that the report does happen otherwise
 * (test_futures.py BaseFutureTests.test_tb_logger_exception_unretrieved) */
TEST(test_run_until_complete_exception_counts_as_retrieved) {
    setup();
    afut_loop_set_exception_handler(g_loop, handler, NULL, NULL);
    afut_t *fut = afut_loop_create_future(g_loop);
    CHECK(afut_loop_call_soon(g_loop, set_exception_cb, fut, NULL) != 0);
    CHECK_EQ_INT(afut_loop_run_until_complete(g_loop, fut), AFUT_ERR_EXCEPTION);
    CHECK(afut_done(fut));
    afut_unref(fut);
    afut_loop_run_once(g_loop, 0, NULL);
    afut_loop_run_once(g_loop, 0, NULL);
    CHECK_EQ_INT(g_reports, 0);

    afut_t *control = afut_loop_create_future(g_loop);
    CHECK_EQ_INT(afut_set_exception(control, 7, "boom", NULL, NULL), AFUT_OK);
    afut_unref(control);
    afut_loop_run_once(g_loop, 0, NULL);
    afut_loop_run_once(g_loop, 0, NULL);
    CHECK_EQ_INT(g_reports, 1);
    CHECK_STR(g_report_msg, "Future exception was never retrieved");
    CHECK_EQ_INT(g_report_code, 7);
    teardown();
}

/* SEMANTICS L7.5 (a cancelled future raises CancelledError) */
TEST(test_run_until_complete_cancelled) {
    setup();
    afut_t *fut = afut_loop_create_future(g_loop);
    CHECK(afut_loop_call_soon(g_loop, cancel_fut_cb, fut, NULL) != 0);
    CHECK_EQ_INT(afut_loop_run_until_complete(g_loop, fut), AFUT_ERR_CANCELLED);
    CHECK(afut_cancelled(fut));
    afut_unref(fut);
    teardown();
}

/* SEMANTICS L7 "An already-done f gives exactly one iteration" */
TEST(test_run_until_complete_already_done_one_iteration) {
    setup();
    afut_t *fut = afut_loop_create_future(g_loop);
    CHECK_EQ_INT(afut_set_result(fut, NULL, NULL), AFUT_OK);
    soon_with(sched_child_cb, 1);
    CHECK_EQ_INT(afut_loop_run_until_complete(g_loop, fut), AFUT_OK);
    CHECK_LOG(1);
    CHECK_EQ_INT(g_runs[101], 0);
    size_t ran = 999;
    CHECK_EQ_INT(afut_loop_run_once(g_loop, 0, &ran), AFUT_OK);
    CHECK_EQ_INT(ran, 1);
    CHECK_LOG(1, 101);
    afut_unref(fut);
    teardown();
}

/* test_events.py EventLoopTestsMixin.test_run_until_complete_stopped; SEMANTICS L7.4
 * (also a stop() before the call: one iteration, then INVALID_STATE) */
TEST(test_run_until_complete_stopped_before_done) {
    setup();
    arm_safety();
    afut_t *fut = afut_loop_create_future(g_loop);
    soon_with(stop_cb, 1);
    CHECK_EQ_INT(afut_loop_run_until_complete(g_loop, fut), AFUT_ERR_INVALID_STATE);
    CHECK(!afut_done(fut));
    afut_loop_stop(g_loop);
    CHECK_EQ_INT(afut_loop_run_until_complete(g_loop, fut), AFUT_ERR_INVALID_STATE);
    CHECK(!afut_done(fut));
    /* the loop is still usable and the stop was consumed */
    CHECK(afut_loop_call_soon(g_loop, set_result_cb, fut, NULL) != 0);
    CHECK_EQ_INT(afut_loop_run_until_complete(g_loop, fut), AFUT_OK);
    CHECK(!g_safety_fired);
    afut_unref(fut);
    teardown();
}

/* bpo-22429; test_base_events.py
 * BaseEventLoopTests.test_run_until_complete_loop_orphan_future_close_loop;
 * SEMANTICS L7.3 / B14: a stale internal callback never stops a later run */
TEST(test_run_until_complete_stale_callback_does_not_stop_later_run) {
    setup();
    arm_safety();
    afut_t *f1 = afut_loop_create_future(g_loop);
    afut_t *f2 = afut_loop_create_future(g_loop);
    soon_with(stop_cb, 1);
    CHECK_EQ_INT(afut_loop_run_until_complete(g_loop, f1), AFUT_ERR_INVALID_STATE);
    /* f1 completes early in the next run; f2 only 30 ms later */
    CHECK(afut_loop_call_soon(g_loop, set_result_cb, f1, NULL) != 0);
    CHECK(afut_loop_call_later(g_loop, 0.03, set_result_cb, f2, NULL) != 0);
    CHECK_EQ_INT(afut_loop_run_until_complete(g_loop, f2), AFUT_OK);
    CHECK(afut_done(f1));
    CHECK(afut_done(f2));
    CHECK(!g_safety_fired);
    afut_unref(f1);
    afut_unref(f2);
    teardown();
}

static afut_t *g_inner;
static int g_nested_ruc_rc, g_nested_forever_rc;
static void nested_run_cb(void *outer) {
    g_nested_ruc_rc = afut_loop_run_until_complete(g_loop, g_inner);
    g_nested_forever_rc = afut_loop_run_forever(g_loop);
    afut_set_result(outer, NULL, NULL);
}

/* test_events.py EventLoopTestsMixin.test_run_until_complete_nesting;
 * SEMANTICS L5 ("This event loop is already running"); API.md AFUT_ERR_LOOP_RUNNING */
TEST(test_run_until_complete_nested_is_loop_running) {
    setup();
    arm_safety();
    afut_t *outer = afut_loop_create_future(g_loop);
    g_inner = afut_loop_create_future(g_loop);
    g_nested_ruc_rc = g_nested_forever_rc = 12345;
    CHECK(afut_loop_call_soon(g_loop, nested_run_cb, outer, NULL) != 0);
    CHECK_EQ_INT(afut_loop_run_until_complete(g_loop, outer), AFUT_OK);
    CHECK_EQ_INT(g_nested_ruc_rc, AFUT_ERR_LOOP_RUNNING);
    CHECK_EQ_INT(g_nested_forever_rc, AFUT_ERR_LOOP_RUNNING);
    CHECK(!afut_done(g_inner));
    /* the refused nested call left nothing behind that could stop a later run */
    afut_t *f3 = afut_loop_create_future(g_loop);
    CHECK(afut_loop_call_soon(g_loop, set_result_cb, g_inner, NULL) != 0);
    CHECK(afut_loop_call_later(g_loop, 0.03, set_result_cb, f3, NULL) != 0);
    CHECK_EQ_INT(afut_loop_run_until_complete(g_loop, f3), AFUT_OK);
    CHECK(!g_safety_fired);
    afut_unref(f3);
    afut_unref(g_inner);
    afut_unref(outer);
    g_inner = NULL;
    teardown();
}

/* test_base_events.py BaseEventLoopTests.test_run_until_complete_loop;
 * header: fut of another loop -> AFUT_ERR_INVALID_ARGUMENT, NULL -> INVALID_ARGUMENT */
TEST(test_run_until_complete_other_loop_invalid_argument) {
    setup();
    afut_loop_t *other = afut_loop_new();
    afut_t *fut = afut_loop_create_future(other);
    CHECK_EQ_INT(afut_loop_run_until_complete(g_loop, fut), AFUT_ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(afut_loop_run_until_complete(g_loop, NULL), AFUT_ERR_INVALID_ARGUMENT);
    CHECK(!afut_done(fut));
    CHECK(afut_get_loop(fut) == other);
    /* still usable on its own loop */
    CHECK(afut_loop_call_soon(other, set_result_cb, fut, NULL) != 0);
    CHECK_EQ_INT(afut_loop_run_until_complete(other, fut), AFUT_OK);
    afut_unref(fut);
    afut_loop_free(other);
    teardown();
}

/* header: a loop-less future (afut_new(NULL)) is wrapped
 * (afut_wrap_future) and run; SEMANTICS L7.1 (ensure_future) and F22 (wrap_future) */
TEST(test_run_until_complete_loopless_future) {
    setup();
    afut_t *done = afut_new(NULL);
    CHECK_EQ_INT(afut_set_result(done, (void *)(uintptr_t)0x55, NULL), AFUT_OK);
    CHECK_EQ_INT(afut_loop_run_until_complete(g_loop, done), AFUT_OK);
    afut_t *pending = afut_new(NULL);
    CHECK(afut_loop_call_soon(g_loop, set_result_cb, pending, NULL) != 0);
    CHECK_EQ_INT(afut_loop_run_until_complete(g_loop, pending), AFUT_OK);
    void *v = NULL;
    CHECK_EQ_INT(afut_result(pending, &v), AFUT_OK);
    CHECK(v == (void *)(uintptr_t)0x1234);
    afut_unref(done);
    afut_unref(pending);
    teardown();
}

static void add_cb_and_set_result(void *fut) {
    record(1);
    tok_t *t = tok_new(12);
    if (afut_add_done_callback(fut, done_sched_child_cb, t, tok_free) != AFUT_OK) tok_discard(t);
    afut_set_result(fut, NULL, NULL);
}

/* SEMANTICS L7 [X]: "sibling done-callbacks of f that were queued in the same
 * batch do run, but whatever they schedule does not run until the next run" */
TEST(test_run_until_complete_sibling_done_callbacks_run) {
    setup();
    afut_t *fut = afut_loop_create_future(g_loop);
    tok_t *d1 = tok_new(11);
    CHECK_EQ_INT(afut_add_done_callback(fut, done_log_cb, d1, tok_free), AFUT_OK);
    CHECK(afut_loop_call_soon(g_loop, add_cb_and_set_result, fut, NULL) != 0);
    CHECK_EQ_INT(afut_loop_run_until_complete(g_loop, fut), AFUT_OK);
    CHECK_LOG(1, 11, 12);
    CHECK_EQ_INT(g_runs[112], 0);
    CHECK_EQ_INT(afut_loop_run_once(g_loop, 0, NULL), AFUT_OK);
    CHECK_LOG(1, 11, 12, 112);
    afut_unref(fut);
    teardown();
}

/* ------------------------------------------------------------- run_once, L13 */

/* API.md run_once "timeout_ms 0: no wait"; test_base_events.py
 * BaseEventLoopTests.test_run_once (select(0)) */
TEST(test_run_once_timeout_zero_returns_at_once) {
    setup();
    double t0 = test_now_s();
    size_t ran = 999;
    CHECK_EQ_INT(afut_loop_run_once(g_loop, 0, &ran), AFUT_OK);
    CHECK_EQ_INT(ran, 0);
    CHECK(later_with(log_cb, 10.0, 1) != 0);
    ran = 999;
    CHECK_EQ_INT(afut_loop_run_once(g_loop, 0, &ran), AFUT_OK);
    CHECK_EQ_INT(ran, 0);
    CHECK(test_now_s() - t0 < 2.0); /* generous: "no wait" vs a 10 s timer */
    CHECK_EQ_INT(g_runs[1], 0);
    teardown();
}

/* API.md run_once "wait up to timeout_ms for work, run due timers" */
TEST(test_run_once_waits_for_timer) {
    setup();
    double t0 = afut_loop_time(g_loop);
    CHECK(later_with(log_cb, 0.02, 1) != 0);
    size_t ran = 999;
    CHECK_EQ_INT(afut_loop_run_once(g_loop, 50, &ran), AFUT_OK);
    CHECK_EQ_INT(ran, 1);
    CHECK_EQ_INT(g_runs[1], 1);
    CHECK(g_ran_at[1] >= t0 + 0.02 - 1e-6);
    teardown();
}

static int g_running_seen[8];
static void running_cb(void *p) {
    int id = ((tok_t *)p)->id;
    record(id);
    g_running_seen[id] = afut_loop_is_running(g_loop) ? 1 : 0;
}
static void running_done_cb(afut_t *fut, void *ud) {
    (void)fut;
    running_cb(ud);
}

/* SEMANTICS L13 (is_running); API.md run_once "is_running() is true during it" */
TEST(test_is_running_inside_callbacks_only) {
    setup();
    memset(g_running_seen, -1, sizeof g_running_seen);
    CHECK(!afut_loop_is_running(g_loop));
    CHECK(!afut_loop_is_running(NULL));
    soon_with(running_cb, 1);
    CHECK_EQ_INT(afut_loop_run_once(g_loop, 0, NULL), AFUT_OK);
    CHECK(!afut_loop_is_running(g_loop));
    later_with(running_cb, 0.0, 2);
    CHECK_EQ_INT(afut_loop_run_once(g_loop, 0, NULL), AFUT_OK);
    CHECK(!afut_loop_is_running(g_loop));
    afut_t *fut = afut_loop_create_future(g_loop);
    tok_t *t = tok_new(3);
    CHECK_EQ_INT(afut_add_done_callback(fut, running_done_cb, t, tok_free), AFUT_OK);
    CHECK(afut_loop_call_soon(g_loop, set_result_cb, fut, NULL) != 0);
    CHECK_EQ_INT(afut_loop_run_until_complete(g_loop, fut), AFUT_OK);
    CHECK(!afut_loop_is_running(g_loop));
    soon_with(running_cb, 4);
    soon_with(stop_cb, 5);
    CHECK_EQ_INT(afut_loop_run_forever(g_loop), AFUT_OK);
    CHECK(!afut_loop_is_running(g_loop));
    for (int i = 1; i <= 4; i++) CHECK_EQ_INT(g_running_seen[i], 1);
    afut_unref(fut);
    teardown();
}

static int g_nested_once_rc;
static size_t g_nested_once_ran;
static void nested_run_once_cb(void *p) {
    record(((tok_t *)p)->id);
    g_nested_once_ran = 777;
    g_nested_once_rc = afut_loop_run_once(g_loop, 0, &g_nested_once_ran);
}

/* API.md run_once "ERR_LOOP_RUNNING from inside a callback"; outputs are
 * written only on success (API.md Conventions) */
TEST(test_run_once_inside_callback_is_loop_running) {
    setup();
    g_nested_once_rc = 12345;
    soon_with(nested_run_once_cb, 1);
    soon(2);
    size_t ran = 999;
    CHECK_EQ_INT(afut_loop_run_once(g_loop, 0, &ran), AFUT_OK);
    CHECK_EQ_INT(g_nested_once_rc, AFUT_ERR_LOOP_RUNNING);
    CHECK_EQ_INT(g_nested_once_ran, 777);
    CHECK_EQ_INT(ran, 2);
    CHECK_LOG(1, 2);
    teardown();
}

/* -------------------------------------------------------------- close, L9 */

static int g_close_rc;
static void close_inside_cb(void *p) {
    record(((tok_t *)p)->id);
    g_close_rc = afut_loop_close(g_loop);
}

/* SEMANTICS L9 ("RuntimeError if running"); API.md afut_loop_close
 * "ERR_LOOP_RUNNING while running" */
TEST(test_close_inside_callback_is_loop_running) {
    setup();
    g_close_rc = 12345;
    soon_with(close_inside_cb, 1);
    soon(2);
    CHECK_EQ_INT(afut_loop_run_once(g_loop, 0, NULL), AFUT_OK);
    CHECK_EQ_INT(g_close_rc, AFUT_ERR_LOOP_RUNNING);
    CHECK(!afut_loop_is_closed(g_loop));
    CHECK_LOG(1, 2);
    soon(3); /* still usable */
    CHECK_EQ_INT(afut_loop_run_once(g_loop, 0, NULL), AFUT_OK);
    CHECK_LOG(1, 2, 3);
    teardown();
}

static void free_inside_cb(void *p) {
    record(((tok_t *)p)->id);
    afut_loop_free(g_loop); /* misuse: must do nothing but complain on stderr */
}

/* API.md afut_loop_free: "called while the loop runs (from one of its
 * callbacks) it does nothing but report the misuse on stderr" */
TEST(test_free_inside_callback_does_nothing) {
    setup();
    soon_with(free_inside_cb, 1);
    soon(2);
    CHECK_EQ_INT(afut_loop_run_once(g_loop, 0, NULL), AFUT_OK);
    CHECK_LOG(1, 2);
    CHECK(!afut_loop_is_closed(g_loop));
    soon(3);
    CHECK_EQ_INT(afut_loop_run_once(g_loop, 0, NULL), AFUT_OK);
    CHECK_LOG(1, 2, 3);
    teardown();
}

/* test_base_events.py BaseEventLoopTests.test_close; SEMANTICS L9 (idempotent) */
TEST(test_close_idempotent) {
    setup();
    CHECK(!afut_loop_is_closed(g_loop));
    CHECK_EQ_INT(afut_loop_close(g_loop), AFUT_OK);
    CHECK(afut_loop_is_closed(g_loop));
    CHECK_EQ_INT(afut_loop_close(g_loop), AFUT_OK);
    CHECK(afut_loop_is_closed(g_loop));
    CHECK(!afut_loop_is_running(g_loop));
    CHECK(!afut_loop_is_closed(NULL));
    teardown();
}

/* SEMANTICS L9 ("Clears _ready and _scheduled ... in C that must mean running
 * the userdata destructors"); API.md User data "dropped because its loop closed" */
TEST(test_close_frees_queued_callbacks_and_timers) {
    setup();
    double now = afut_loop_time(g_loop);
    soon(1);
    soon(2);
    soon_with(sched_child_cb, 3);
    CHECK(later_with(log_cb, 0.5, 4) != 0);
    CHECK(later_with(log_cb, -1.0, 5) != 0); /* due */
    CHECK(at_with(log_cb, now + 100.0, 6) != 0);
    CHECK(at_with(log_cb, INFINITY, 7) != 0);
    afut_t *fut = afut_loop_create_future(g_loop);
    tok_t *t = tok_new(8);
    CHECK_EQ_INT(afut_add_done_callback(fut, done_log_cb, t, tok_free), AFUT_OK);
    CHECK_EQ_INT(afut_set_result(fut, NULL, NULL), AFUT_OK); /* done callback queued */
    CHECK_EQ_INT(afut_loop_close(g_loop), AFUT_OK);
    for (int i = 1; i <= 8; i++) {
        CHECK_EQ_INT(g_runs[i], 0);
        CHECK_EQ_INT(g_frees[i], 1);
    }
    CHECK_EQ_INT(g_allocs[103], 0); /* sched_child_cb never ran */
    afut_unref(fut);
    teardown();
}

/* SEMANTICS L9 (call_soon after close raises), B11; API.md "A closed loop":
 * scheduling fails with 0 and the userdata stays the caller's */
TEST(test_closed_loop_scheduling_fails_userdata_kept) {
    setup();
    afut_handle_t h = soon(9);
    CHECK_EQ_INT(afut_loop_close(g_loop), AFUT_OK);
    CHECK_EQ_INT(g_frees[9], 1);
    CHECK(!afut_loop_cancel(g_loop, h));
    CHECK_EQ_INT(g_frees[9], 1);
    tok_t *a = tok_new(1), *b = tok_new(2), *c = tok_new(3), *d = tok_new(4);
    CHECK(afut_loop_call_soon(g_loop, log_cb, a, tok_free) == 0);
    CHECK(afut_loop_call_soon_threadsafe(g_loop, log_cb, b, tok_free) == 0);
    CHECK(afut_loop_call_later(g_loop, 0.01, log_cb, c, tok_free) == 0);
    CHECK(afut_loop_call_at(g_loop, afut_loop_time(g_loop), log_cb, d, tok_free) == 0);
    for (int i = 1; i <= 4; i++) CHECK_EQ_INT(g_frees[i], 0);
    /* still ours: read it, then release it ourselves */
    CHECK_EQ_INT(a->id + b->id + c->id + d->id, 10);
    tok_discard(a);
    tok_discard(b);
    tok_discard(c);
    tok_discard(d);
    teardown();
}

/* test_base_events.py BaseEventLoopTests.test_close (run_forever /
 * run_until_complete raise after close); SEMANTICS L9; API.md AFUT_ERR_LOOP_CLOSED */
TEST(test_closed_loop_run_fails) {
    setup();
    afut_t *fut = afut_loop_create_future(g_loop);
    CHECK_EQ_INT(afut_loop_close(g_loop), AFUT_OK);
    CHECK(afut_loop_is_closed(g_loop));
    CHECK_EQ_INT(afut_loop_run_forever(g_loop), AFUT_ERR_LOOP_CLOSED);
    size_t ran = 999;
    CHECK_EQ_INT(afut_loop_run_once(g_loop, 0, &ran), AFUT_ERR_LOOP_CLOSED);
    CHECK_EQ_INT(ran, 999);
    CHECK_EQ_INT(afut_loop_run_until_complete(g_loop, fut), AFUT_ERR_LOOP_CLOSED);
    CHECK(!afut_done(fut));
    afut_unref(fut);
    teardown();
}

/* API.md "A closed loop": completing a future whose loop is closed completes it,
 * returns AFUT_OK, its callbacks are dropped (userdata_free once);
 * add_done_callback on the done future then fails with ERR_LOOP_CLOSED;
 * python/asyncio#258, bpo-44508 (SEMANTICS B11) */
TEST(test_closed_loop_future_completion) {
    setup();
    afut_t *f1 = afut_loop_create_future(g_loop);
    afut_t *f2 = afut_loop_create_future(g_loop);
    tok_t *t1 = tok_new(1), *t2 = tok_new(2);
    CHECK_EQ_INT(afut_add_done_callback(f1, done_log_cb, t1, tok_free), AFUT_OK);
    CHECK_EQ_INT(afut_add_done_callback(f2, done_log_cb, t2, tok_free), AFUT_OK);
    CHECK_EQ_INT(afut_loop_close(g_loop), AFUT_OK);
    CHECK_EQ_INT(afut_set_result(f1, (void *)(uintptr_t)0x77, NULL), AFUT_OK);
    CHECK(afut_done(f1));
    CHECK_EQ_INT(g_frees[1], 1);
    CHECK_EQ_INT(g_runs[1], 0);
    void *v = NULL;
    CHECK_EQ_INT(afut_result(f1, &v), AFUT_OK);
    CHECK(v == (void *)(uintptr_t)0x77);
    CHECK(afut_cancel(f2, NULL));
    CHECK_EQ_INT(g_frees[2], 1);
    CHECK_EQ_INT(g_runs[2], 0);
    tok_t *t3 = tok_new(3);
    CHECK_EQ_INT(afut_add_done_callback(f1, done_log_cb, t3, tok_free), AFUT_ERR_LOOP_CLOSED);
    CHECK_EQ_INT(g_frees[3], 0);
    tok_discard(t3);
    afut_unref(f1);
    afut_unref(f2);
    teardown();
}

/* --------------------------------------------------------- free, ownership */

/* API.md afut_loop_free "closes first if needed"; User data "exactly once"
 * (valgrind checks nothing leaks) */
TEST(test_free_with_pending_work) {
    setup();
    soon(1);
    soon_with(sched_child_cb, 2);
    CHECK(later_with(log_cb, 0.5, 3) != 0);
    CHECK(later_with(log_cb, 0.0, 4) != 0);
    CHECK(later_with(log_cb, INFINITY, 5) != 0);
    afut_t *queued = afut_loop_create_future(g_loop);
    tok_t *t6 = tok_new(6);
    CHECK_EQ_INT(afut_add_done_callback(queued, done_log_cb, t6, tok_free), AFUT_OK);
    CHECK_EQ_INT(afut_set_result(queued, NULL, NULL), AFUT_OK);
    afut_unref(queued); /* only the loop's queue holds it now */
    afut_t *pending = afut_loop_create_future(g_loop);
    tok_t *t7 = tok_new(7);
    CHECK_EQ_INT(afut_add_done_callback(pending, done_log_cb, t7, tok_free), AFUT_OK);
    afut_loop_free(g_loop);
    g_loop = NULL;
    for (int i = 1; i <= 6; i++) {
        CHECK_EQ_INT(g_runs[i], 0);
        CHECK_EQ_INT(g_frees[i], 1);
    }
    CHECK(afut_get_loop(pending) == NULL);
    CHECK_EQ_INT(afut_set_result(pending, NULL, NULL), AFUT_OK);
    CHECK_EQ_INT(g_frees[7], 1);
    CHECK_EQ_INT(g_runs[7], 0);
    afut_unref(pending);
    teardown();
}

/* API.md Ownership "futures may outlive their loop"; header: afut_get_loop then
 * NULL, set_result OK, unref fine; F15: a never-retrieved report of a future
 * whose loop was freed goes to stderr (no crash) */
TEST(test_future_outlives_loop) {
    setup();
    afut_t *fut = afut_loop_create_future(g_loop);
    afut_t *failing = afut_loop_create_future(g_loop);
    tok_t *t = tok_new(1);
    CHECK_EQ_INT(afut_add_done_callback(fut, done_log_cb, t, tok_free), AFUT_OK);
    CHECK(afut_get_loop(fut) == g_loop);
    afut_loop_free(g_loop);
    g_loop = NULL;
    CHECK(afut_get_loop(fut) == NULL);
    CHECK(!afut_done(fut));
    CHECK_EQ_INT(afut_set_result(fut, (void *)(uintptr_t)0x99, NULL), AFUT_OK);
    CHECK(afut_done(fut));
    CHECK_EQ_INT(g_frees[1], 1);
    CHECK_EQ_INT(g_runs[1], 0);
    void *v = NULL;
    CHECK_EQ_INT(afut_result(fut, &v), AFUT_OK);
    CHECK(v == (void *)(uintptr_t)0x99);
    CHECK_EQ_INT(afut_set_exception(failing, 3, "after free", NULL, NULL), AFUT_OK);
    afut_unref(failing);
    afut_unref(fut);
    afut_loop_free(NULL); /* no-op */
    teardown();
}

/* -------------------------------------------------- exception handler, L11 */

static void report_never_retrieved(afut_loop_t *loop) {
    afut_t *f = afut_loop_create_future(loop);
    CHECK_EQ_INT(afut_set_exception(f, 7, "boom", NULL, NULL), AFUT_OK);
    afut_unref(f); /* last reference: the report is made now */
}

/* test_base_events.py BaseEventLoopTests.test_set_exc_handler_custom,
 * test_default_exc_handler_callback (None restores the default); SEMANTICS L11;
 * API.md User data (old handler userdata freed once when replaced) */
TEST(test_exception_handler_set_replace_default) {
    setup();
    tok_t *u1 = tok_new(1), *u2 = tok_new(2);
    afut_loop_set_exception_handler(g_loop, handler, u1, tok_free);
    report_never_retrieved(g_loop);
    CHECK_EQ_INT(g_reports, 1);
    CHECK_EQ_INT(g_report_handler_id, 1);
    CHECK(g_report_loop == g_loop);
    CHECK_STR(g_report_msg, "Future exception was never retrieved");
    CHECK(g_report_has_future);
    CHECK_EQ_INT(g_report_code, 7);
    CHECK_STR(g_report_exc_msg, "boom");

    afut_loop_set_exception_handler(g_loop, handler, u2, tok_free);
    CHECK_EQ_INT(g_frees[1], 1); /* replaced: freed at once */
    CHECK_EQ_INT(g_frees[2], 0);
    report_never_retrieved(g_loop);
    CHECK_EQ_INT(g_reports, 2);
    CHECK_EQ_INT(g_report_handler_id, 2);

    afut_loop_set_exception_handler(g_loop, NULL, NULL, NULL); /* default: stderr */
    CHECK_EQ_INT(g_frees[2], 1);
    fprintf(stderr, "  (expected: one never-retrieved report from the default handler)\n");
    report_never_retrieved(g_loop);
    CHECK_EQ_INT(g_reports, 2);
    CHECK_EQ_INT(g_frees[1], 1);
    teardown();
}

/* API.md User data "exactly once": the handler's userdata is freed by
 * afut_loop_free (and not before) */
TEST(test_exception_handler_userdata_freed_at_loop_free) {
    setup();
    tok_t *u = tok_new(3);
    afut_loop_set_exception_handler(g_loop, handler, u, tok_free);
    CHECK_EQ_INT(afut_loop_close(g_loop), AFUT_OK);
    CHECK_EQ_INT(g_frees[3], 0);
    afut_loop_free(g_loop);
    g_loop = NULL;
    CHECK_EQ_INT(g_frees[3], 1);
    teardown();
}

static void slow_cb(void *p) {
    record(((tok_t *)p)->id);
    test_sleep_ms(120);
}

/* test_base_events.py BaseEventLoopTests.test_log_slow_callbacks; SEMANTICS L12,
 * L13 (debug toggled live); header: message starts with "Executing ", contains "took" */
TEST(test_debug_slow_callback_warning) {
    setup();
    afut_loop_set_exception_handler(g_loop, handler, NULL, NULL);
    afut_loop_set_debug(g_loop, true);
    soon_with(slow_cb, 1);
    CHECK_EQ_INT(afut_loop_run_once(g_loop, 0, NULL), AFUT_OK);
    CHECK_EQ_INT(g_slow_reports, 1);
    if (g_slow_reports != 1) fprintf(stderr, "  last report: \"%s\"\n", g_report_msg);
    later_with(slow_cb, 0.0, 2); /* timer callbacks are timed too */
    CHECK_EQ_INT(afut_loop_run_once(g_loop, 0, NULL), AFUT_OK);
    CHECK_EQ_INT(g_runs[2], 1);
    CHECK_EQ_INT(g_slow_reports, 2);
    printf("  note: slow-callback message: \"%s\"\n", g_report_msg);

    afut_loop_set_debug(g_loop, false);
    soon_with(slow_cb, 3);
    CHECK_EQ_INT(afut_loop_run_once(g_loop, 0, NULL), AFUT_OK);
    CHECK_EQ_INT(g_runs[3], 1);
    CHECK_EQ_INT(g_slow_reports, 2);
    CHECK_EQ_INT(g_reports, 2);
    teardown();
}

/* SEMANTICS L13 (time() is time.monotonic()); test_base_events.py
 * BaseEventLoopTests.test_time_and_call_at (time advances) */
TEST(test_loop_time_monotonic_and_advancing) {
    setup();
    double prev = afut_loop_time(g_loop);
    CHECK(!isnan(prev));
    for (int i = 0; i < 1000; i++) {
        double t = afut_loop_time(g_loop);
        if (t < prev) {
            CHECK(t >= prev);
            break;
        }
        prev = t;
    }
    double t1 = afut_loop_time(g_loop);
    double m1 = test_now_s();
    test_sleep_ms(20);
    double m2 = test_now_s();
    double t2 = afut_loop_time(g_loop);
    CHECK(t2 - t1 >= 0.019);
    CHECK(t2 - t1 >= (m2 - m1) - 0.001);
    CHECK(isnan(afut_loop_time(NULL)));
    teardown();
}

/* API.md Conventions "Bad input never crashes"; the header's bad-input lines */
TEST(test_loop_bad_arguments) {
    setup();
    tok_t *t = tok_new(1);
    CHECK(afut_loop_call_soon(NULL, log_cb, t, tok_free) == 0);
    CHECK(afut_loop_call_soon(g_loop, NULL, t, tok_free) == 0);
    CHECK(afut_loop_call_soon_threadsafe(NULL, log_cb, t, tok_free) == 0);
    CHECK(afut_loop_call_soon_threadsafe(g_loop, NULL, t, tok_free) == 0);
    CHECK_EQ_INT(g_frees[1], 0);
    tok_discard(t);
    CHECK_EQ_INT(afut_loop_run_forever(NULL), AFUT_ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(afut_loop_run_once(NULL, 0, NULL), AFUT_ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(afut_loop_run_until_complete(NULL, NULL), AFUT_ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(afut_loop_close(NULL), AFUT_ERR_INVALID_ARGUMENT);
    afut_loop_stop(NULL);
    afut_loop_set_debug(NULL, true);
    afut_loop_set_exception_handler(NULL, NULL, NULL, NULL);
    afut_loop_free(NULL);
    CHECK(!afut_loop_is_running(NULL));
    CHECK(!afut_loop_is_closed(NULL));
    CHECK_EQ_INT(afut_loop_timeout_ms(NULL), -1);
    CHECK(!afut_loop_cancel(NULL, 1));
    size_t ran = 999;
    CHECK_EQ_INT(afut_loop_run_once(g_loop, 0, &ran), AFUT_OK);
    CHECK_EQ_INT(ran, 0);
    teardown();
}

/* header (afut_loop_new): out of file descriptors it returns NULL with errno set (EMFILE
 * here) and leaks nothing. A loop needs three descriptors (epoll, eventfd, timerfd); with
 * room for 0, 1 or 2 new ones each attempt fails, and the lowest free descriptor is the
 * same afterwards. Run in a child process, whose descriptor limit it lowers. */
TEST(test_loop_new_out_of_descriptors) {
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        int lowest = dup(0); /* the lowest free descriptor */
        if (lowest < 0) _exit(10);
        close(lowest);
        struct rlimit saved;
        if (getrlimit(RLIMIT_NOFILE, &saved) != 0) _exit(11);
        for (int room = 0; room < 3; room++) {
            struct rlimit low = saved;
            low.rlim_cur = (rlim_t)(lowest + room);
            if (setrlimit(RLIMIT_NOFILE, &low) != 0) _exit(12);
            errno = 0;
            afut_loop_t *l = afut_loop_new();
            int err = errno;
            if (setrlimit(RLIMIT_NOFILE, &saved) != 0) _exit(13);
            if (l) _exit(20 + room);         /* must fail */
            if (err != EMFILE) _exit(30 + room); /* with errno set */
            int fd = dup(0);
            if (fd != lowest) _exit(40 + room); /* nothing leaked */
            close(fd);
        }
        afut_loop_t *l = afut_loop_new(); /* with room again, it works */
        if (!l) _exit(50);
        afut_loop_free(l);
        _exit(0);
    }
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status));
    CHECK_EQ_INT(WEXITSTATUS(status), 0);
}

int main(void) {
    RUN_T(test_call_soon_fifo_exactly_once);
    RUN_T(test_batch_scheduled_during_batch_runs_next_iteration);
    RUN_T(test_ran_out_excludes_cancelled);
    RUN_T(test_due_timers_run_after_ready_callbacks);
    RUN_T(test_cancel_pending_callback_once);
    RUN_T(test_cancel_invalid_handles);
    RUN_T(test_cancel_sibling_in_same_batch);
    RUN_T(test_cancel_running_callback_itself);
    RUN_T(test_stop_inside_callback_finishes_batch);
    RUN_T(test_stop_before_run_forever_one_iteration);
    RUN_T(test_run_once_keeps_pending_stop);
    RUN_T(test_run_forever_until_timer_stops);
    RUN_T(test_stop_from_other_thread_wakes_loop);
    RUN_T(test_call_soon_threadsafe_wakes_loop);
    RUN_T(test_run_until_complete_result);
    RUN_T(test_run_until_complete_exception_counts_as_retrieved);
    RUN_T(test_run_until_complete_cancelled);
    RUN_T(test_run_until_complete_already_done_one_iteration);
    RUN_T(test_run_until_complete_stopped_before_done);
    RUN_T(test_run_until_complete_stale_callback_does_not_stop_later_run);
    RUN_T(test_run_until_complete_nested_is_loop_running);
    RUN_T(test_run_until_complete_other_loop_invalid_argument);
    RUN_T(test_run_until_complete_loopless_future);
    RUN_T(test_run_until_complete_sibling_done_callbacks_run);
    RUN_T(test_run_once_timeout_zero_returns_at_once);
    RUN_T(test_run_once_waits_for_timer);
    RUN_T(test_is_running_inside_callbacks_only);
    RUN_T(test_run_once_inside_callback_is_loop_running);
    RUN_T(test_close_inside_callback_is_loop_running);
    RUN_T(test_free_inside_callback_does_nothing);
    RUN_T(test_close_idempotent);
    RUN_T(test_close_frees_queued_callbacks_and_timers);
    RUN_T(test_closed_loop_scheduling_fails_userdata_kept);
    RUN_T(test_closed_loop_run_fails);
    RUN_T(test_closed_loop_future_completion);
    RUN_T(test_free_with_pending_work);
    RUN_T(test_future_outlives_loop);
    RUN_T(test_exception_handler_set_replace_default);
    RUN_T(test_exception_handler_userdata_freed_at_loop_free);
    RUN_T(test_debug_slow_callback_warning);
    RUN_T(test_loop_time_monotonic_and_advancing);
    RUN_T(test_loop_bad_arguments);
    RUN_T(test_loop_new_out_of_descriptors);
    TEST_END();
}
