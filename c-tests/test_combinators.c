/* C tests for the combinators (SEMANTICS.md section 3: G1-G6 gather, W1-W4 wait, WF1-WF2
 * wait_for, S1 shield, plus as_completed).
 *
 * Each test names the CPython test it mirrors (Lib/test/test_asyncio/test_tasks.py,
 * test_waitfor.py or test_futures.py) or the SEMANTICS.md rule. One
 * afut_loop_run_once(loop, 0, NULL) is one asyncio iteration. */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "afut.h"
#include "test.h"

static int g_reports;
static char g_report_msg[128];

static void handler(afut_loop_t *loop, const afut_error_context_t *ctx, void *ud) {
    (void)loop;
    (void)ud;
    g_reports++;
    snprintf(g_report_msg, sizeof g_report_msg, "%s", ctx->message ? ctx->message : "");
}

static afut_loop_t *new_loop(void) {
    g_reports = 0;
    g_report_msg[0] = 0;
    afut_loop_t *loop = afut_loop_new();
    afut_loop_set_exception_handler(loop, handler, NULL, NULL);
    return loop;
}

static void run1(afut_loop_t *loop) { afut_loop_run_once(loop, 0, NULL); }

static void runn(afut_loop_t *loop, int n) {
    for (int i = 0; i < n; i++) run1(loop);
}

#define V(n) ((void *)(intptr_t)(n))

static intptr_t result_of(afut_t *f) {
    void *v = V(-1);
    if (afut_result(f, &v) != AFUT_OK) return -1;
    return (intptr_t)v;
}

static void set_result_cb(void *p) { afut_set_result(p, V(77), NULL); }

/* ------------------------------------------------------------------------------------ */
/* gather                                                                               */

/* G1: gather() with no futures is already done, with an empty result
 * (FutureGatherTests.test_constructor_empty_sequence_without_loop). */
TEST(test_gather_empty) {
    afut_loop_t *loop = new_loop();
    afut_t *g = afut_gather(loop, NULL, 0, false);
    CHECK(g != NULL);
    CHECK(afut_done(g));
    void *v = V(1);
    CHECK_EQ_INT(afut_result(g, &v), AFUT_OK);
    CHECK(v == NULL);
    CHECK(afut_gather_child(g, 0) == NULL);
    afut_unref(g);
    afut_loop_free(loop);
}

/* G2: results follow argument order, not completion order; the same future twice is one
 * child shown at both positions (GatherTestsBase.test_success,
 * CoroutineGatherTests.test_duplicate_coroutines). */
TEST(test_gather_order_and_duplicates) {
    afut_loop_t *loop = new_loop();
    afut_t *a = afut_loop_create_future(loop);
    afut_t *b = afut_loop_create_future(loop);
    afut_t *in[3] = {b, a, b};
    afut_t *g = afut_gather(loop, in, 3, false);
    CHECK(!afut_done(g));
    afut_set_result(a, V(1), NULL);
    run1(loop);
    CHECK(!afut_done(g));
    afut_set_result(b, V(2), NULL);
    run1(loop);
    CHECK(afut_done(g));
    afut_t **children = NULL;
    CHECK_EQ_INT(afut_result(g, (void **)&children), AFUT_OK);
    CHECK(children != NULL);
    if (children) {
        CHECK(children[0] == b);
        CHECK(children[1] == a);
        CHECK(children[2] == b);
        CHECK_EQ_INT(result_of(children[0]), 2);
        CHECK_EQ_INT(result_of(children[1]), 1);
        CHECK_EQ_INT(result_of(children[2]), 2);
    }
    CHECK(afut_gather_child(g, 1) == a);
    CHECK(afut_gather_child(g, 3) == NULL);
    CHECK(afut_gather_child(a, 0) == NULL);
    afut_unref(a);
    afut_unref(b);
    /* the children stay alive as long as the gather */
    CHECK_EQ_INT(result_of(afut_gather_child(g, 0)), 2);
    afut_unref(g);
    afut_loop_free(loop);
}

/* G3: the first exception is set on the gather at once; the other children keep running
 * and are not cancelled; a later child's exception is marked retrieved
 * (GatherTestsBase.test_one_exception, CoroutineGatherTests.test_exception_marking). */
TEST(test_gather_one_exception) {
    afut_loop_t *loop = new_loop();
    afut_t *a = afut_loop_create_future(loop);
    afut_t *b = afut_loop_create_future(loop);
    afut_t *c = afut_loop_create_future(loop);
    afut_t *in[3] = {a, b, c};
    afut_t *g = afut_gather(loop, in, 3, false);
    afut_set_exception(b, 5, "bad", NULL, NULL);
    run1(loop);
    CHECK(afut_done(g));
    afut_exception_t e;
    CHECK_EQ_INT(afut_exception(g, &e), AFUT_OK);
    CHECK_EQ_INT(e.code, 5);
    CHECK_STR(e.message, "bad");
    CHECK(!afut_done(a));
    CHECK(!afut_done(c));
    afut_set_result(a, V(1), NULL);
    afut_set_exception(c, 6, "later", NULL, NULL);
    run1(loop);
    afut_unref(a);
    afut_unref(b);
    afut_unref(c);
    afut_unref(g);
    CHECK_EQ_INT(g_reports, 0); /* b's exception went to the gather (read), c's is marked */
    afut_loop_free(loop);
}

/* G3: a cancelled child ends the gather FINISHED with a CancelledError exception carrying the
 * child's message; gather.cancelled() is false (GatherTestsBase.test_one_cancellation). */
TEST(test_gather_one_cancellation) {
    afut_loop_t *loop = new_loop();
    afut_t *a = afut_loop_create_future(loop);
    afut_t *b = afut_loop_create_future(loop);
    afut_t *in[2] = {a, b};
    afut_t *g = afut_gather(loop, in, 2, false);
    afut_cancel(a, "child msg");
    run1(loop);
    CHECK(afut_done(g));
    CHECK(!afut_cancelled(g));
    CHECK_EQ_INT(afut_result(g, NULL), AFUT_ERR_EXCEPTION);
    afut_exception_t e;
    CHECK_EQ_INT(afut_exception(g, &e), AFUT_OK);
    CHECK_EQ_INT(e.code, AFUT_ERR_CANCELLED);
    CHECK_STR(e.message, "child msg");
    CHECK(!afut_done(b));
    afut_cancel(b, NULL);
    run1(loop);
    afut_unref(a);
    afut_unref(b);
    afut_unref(g);
    afut_loop_free(loop);
}

/* G4: return_exceptions: the gather succeeds; exceptions and cancellations are read from the
 * children; nothing is reported (GatherTestsBase.test_return_exceptions,
 * test_result_exception_one_cancellation). */
TEST(test_gather_return_exceptions) {
    afut_loop_t *loop = new_loop();
    afut_t *a = afut_loop_create_future(loop);
    afut_t *b = afut_loop_create_future(loop);
    afut_t *c = afut_loop_create_future(loop);
    afut_t *in[3] = {a, b, c};
    afut_t *g = afut_gather(loop, in, 3, true);
    afut_set_exception(a, 3, "x", NULL, NULL);
    afut_cancel(b, NULL);
    run1(loop);
    CHECK(!afut_done(g));
    afut_set_result(c, V(9), NULL);
    run1(loop);
    CHECK(afut_done(g));
    afut_t **r = NULL;
    CHECK_EQ_INT(afut_result(g, (void **)&r), AFUT_OK);
    if (r) {
        CHECK_EQ_INT(afut_result(r[0], NULL), AFUT_ERR_EXCEPTION);
        CHECK_EQ_INT(afut_result(r[1], NULL), AFUT_ERR_CANCELLED);
        CHECK_EQ_INT(result_of(r[2]), 9);
    }
    afut_unref(a);
    afut_unref(b);
    afut_unref(c);
    afut_unref(g);
    CHECK_EQ_INT(g_reports, 0);
    afut_loop_free(loop);
}

/* G5, improved (gh-85071): cancelling the gather cancels every pending child at once and
 * ends the gather CANCELLED with the message (CoroutineGatherTests.test_cancellation_broadcast,
 * test_cancel_gather_2); a gather that is done refuses (test_cancel_gather_1, bpo-26923). */
TEST(test_gather_cancel) {
    afut_loop_t *loop = new_loop();
    afut_t *a = afut_loop_create_future(loop);
    afut_t *b = afut_loop_create_future(loop);
    afut_set_result(a, V(1), NULL);
    afut_t *in[2] = {a, b};
    afut_t *g = afut_gather(loop, in, 2, false);
    CHECK(afut_cancel(g, "stop all"));
    CHECK(afut_cancelled(g));
    CHECK_STR(afut_cancel_message(g), "stop all");
    CHECK(afut_cancelled(b));
    CHECK_STR(afut_cancel_message(b), "stop all");
    CHECK(!afut_cancelled(a));
    CHECK(!afut_cancel(g, NULL));
    runn(loop, 2);
    CHECK(afut_cancelled(g));

    afut_t *c = afut_loop_create_future(loop);
    afut_t *g2 = afut_gather(loop, &c, 1, false);
    afut_set_result(c, V(1), NULL);
    run1(loop);
    CHECK(afut_done(g2));
    CHECK(!afut_cancel(g2, NULL));
    CHECK(!afut_cancelled(g2));
    afut_unref(a);
    afut_unref(b);
    afut_unref(c);
    afut_unref(g);
    afut_unref(g2);
    afut_loop_free(loop);
}

/* G6: children already done are processed during gather(): the gather may be done on return,
 * also with an exception. */
TEST(test_gather_children_already_done) {
    afut_loop_t *loop = new_loop();
    afut_t *a = afut_loop_create_future(loop);
    afut_t *b = afut_loop_create_future(loop);
    afut_set_result(a, V(1), NULL);
    afut_set_result(b, V(2), NULL);
    afut_t *in[2] = {a, b};
    afut_t *g = afut_gather(loop, in, 2, false);
    CHECK(afut_done(g));
    CHECK_EQ_INT(result_of(afut_gather_child(g, 1)), 2);
    afut_t *c = afut_loop_create_future(loop);
    afut_set_exception(c, 4, NULL, NULL, NULL);
    afut_t *in2[2] = {c, afut_loop_create_future(loop)};
    afut_t *g2 = afut_gather(loop, in2, 2, false);
    CHECK(afut_done(g2));
    CHECK_EQ_INT(afut_result(g2, NULL), AFUT_ERR_EXCEPTION);
    afut_cancel(in2[1], NULL);
    afut_unref(in2[1]);
    afut_unref(a);
    afut_unref(b);
    afut_unref(c);
    afut_unref(g);
    afut_unref(g2);
    runn(loop, 2);
    CHECK_EQ_INT(g_reports, 0);
    afut_loop_free(loop);
}

/* G2: inputs of another loop or loop-less are wrapped (ensure_future); API.md bad input. */
TEST(test_gather_loopless_and_bad_input) {
    afut_loop_t *loop = new_loop();
    afut_t *x = afut_new(NULL);
    afut_t *in[1] = {x};
    afut_t *g = afut_gather(loop, in, 1, false);
    CHECK(afut_gather_child(g, 0) != x);
    afut_set_result(x, V(8), NULL);
    CHECK_EQ_INT(afut_loop_run_until_complete(loop, g), AFUT_OK);
    CHECK_EQ_INT(result_of(afut_gather_child(g, 0)), 8);
    afut_unref(x);
    afut_unref(g);
    afut_t *bad[2] = {NULL, NULL};
    CHECK(afut_gather(NULL, NULL, 0, false) == NULL);
    CHECK(afut_gather(loop, NULL, 2, false) == NULL);
    CHECK(afut_gather(loop, bad, 2, false) == NULL);
    afut_loop_free(loop);
}

/* ------------------------------------------------------------------------------------ */
/* wait_for                                                                             */

/* WF1: timeout = INFINITY is a plain await (AsyncioWaitForTest.test_none_timeout); the result
 * arrives one iteration after the inner's; no timer is left. */
TEST(test_wait_for_no_timeout) {
    afut_loop_t *loop = new_loop();
    afut_t *f = afut_loop_create_future(loop);
    afut_t *w = afut_wait_for(loop, f, INFINITY);
    CHECK_EQ_INT(afut_loop_timeout_ms(loop), -1);
    afut_loop_call_soon(loop, set_result_cb, f, NULL);
    CHECK_EQ_INT(afut_loop_run_until_complete(loop, w), AFUT_OK);
    CHECK_EQ_INT(result_of(w), 77);
    afut_unref(f);
    afut_unref(w);
    CHECK(afut_wait_for(loop, NULL, 1) == NULL);
    afut_t *g = afut_loop_create_future(loop);
    CHECK(afut_wait_for(loop, g, NAN) == NULL);
    CHECK(afut_wait_for(NULL, g, 1) == NULL);
    afut_unref(g);
    afut_loop_free(loop);
}

/* WF2: a result before the timeout; the timer is cancelled (test_wait_for). */
TEST(test_wait_for_result_in_time) {
    afut_loop_t *loop = new_loop();
    afut_t *f = afut_loop_create_future(loop);
    afut_t *w = afut_wait_for(loop, f, 10.0);
    CHECK(afut_loop_timeout_ms(loop) > 5000);
    afut_loop_call_later(loop, 0.001, set_result_cb, f, NULL);
    CHECK_EQ_INT(afut_loop_run_until_complete(loop, w), AFUT_OK);
    CHECK_EQ_INT(result_of(w), 77);
    CHECK_EQ_INT(afut_loop_timeout_ms(loop), -1);
    afut_unref(f);
    afut_unref(w);
    afut_loop_free(loop);
}

/* WF2: on timeout the inner is cancelled and the wait_for fails with AFUT_ERR_TIMEOUT
 * (test_wait_for_timeout / test_wait_for_waits_for_task_cancellation for a plain future). */
TEST(test_wait_for_timeout) {
    afut_loop_t *loop = new_loop();
    afut_t *f = afut_loop_create_future(loop);
    afut_t *w = afut_wait_for(loop, f, 0.01);
    CHECK_EQ_INT(afut_loop_run_until_complete(loop, w), AFUT_ERR_EXCEPTION);
    CHECK(afut_cancelled(f));
    CHECK(!afut_cancelled(w));
    afut_exception_t e;
    CHECK_EQ_INT(afut_exception(w, &e), AFUT_OK);
    CHECK_EQ_INT(e.code, AFUT_ERR_TIMEOUT);
    CHECK_STR(e.message, "timed out");
    afut_unref(f);
    afut_unref(w);
    afut_loop_free(loop);
}

/* WF1: timeout <= 0: a done inner gives its result
 * (test_wait_for_timeout_less_then_0_or_0_future_done); a pending one is cancelled at once
 * and the wait_for times out (test_wait_for_timeout_less_then_0_or_0, test_zero_timeout). */
TEST(test_wait_for_zero_timeout) {
    afut_loop_t *loop = new_loop();
    afut_t *done = afut_loop_create_future(loop);
    afut_set_result(done, V(4), NULL);
    afut_t *w1 = afut_wait_for(loop, done, 0);
    CHECK_EQ_INT(afut_loop_run_until_complete(loop, w1), AFUT_OK);
    CHECK_EQ_INT(result_of(w1), 4);
    afut_t *pending = afut_loop_create_future(loop);
    afut_t *w2 = afut_wait_for(loop, pending, -1);
    CHECK(afut_cancelled(pending)); /* at once */
    CHECK_EQ_INT(afut_loop_run_until_complete(loop, w2), AFUT_ERR_EXCEPTION);
    afut_exception_t e;
    afut_exception(w2, &e);
    CHECK_EQ_INT(e.code, AFUT_ERR_TIMEOUT);
    afut_unref(done);
    afut_unref(pending);
    afut_unref(w1);
    afut_unref(w2);
    afut_loop_free(loop);
}

/* WF2: the wait_for waits until the cancelled inner is really done: an inner task that takes
 * two more iterations to honour the cancel (test_wait_for_waits_for_task_cancellation);
 * an inner that swallows the cancellation gives its value (test_wait_for_cancel_suppressed,
 * gh-86296); one that raises something else propagates it
 * (test_wait_for_reraises_exception_during_cancellation). */
typedef struct {
    int mode; /* 0: end cancelled late, 1: swallow with a value, 2: raise */
    int steps_after_cancel;
    afut_t *fut;
} slow_t;

static void slow_step(afut_t *task, afut_t *awaited, void *ud) {
    slow_t *s = ud;
    if (!awaited && s->steps_after_cancel == 0) {
        s->fut = afut_loop_create_future(afut_get_loop(task));
        afut_task_await(task, s->fut);
        return;
    }
    if (s->steps_after_cancel == 0) {
        /* awaited was cancelled by the timeout: swallow it by awaiting a nap */
        s->steps_after_cancel = 1;
        afut_t *nap = afut_sleep(afut_get_loop(task), 0, NULL, NULL);
        afut_task_await(task, nap);
        afut_unref(nap);
        return;
    }
    if (s->steps_after_cancel == 1) {
        s->steps_after_cancel = 2;
        return; /* yield one iteration */
    }
    s->steps_after_cancel = 3;
    if (s->mode == 0) afut_cancel(task, "late");
    if (s->mode == 1) afut_set_result(task, V(55), NULL);
    if (s->mode == 2) afut_set_exception(task, 12, "during cancel", NULL, NULL);
}

TEST(test_wait_for_waits_for_inner) {
    for (int mode = 0; mode < 3; mode++) {
        afut_loop_t *loop = new_loop();
        slow_t s = {.mode = mode};
        afut_t *t = afut_task_new(loop, slow_step, &s, NULL);
        afut_t *w = afut_wait_for(loop, t, 0.005);
        afut_status_t rc = afut_loop_run_until_complete(loop, w);
        CHECK(afut_done(t));
        CHECK_EQ_INT(s.steps_after_cancel, 3);
        afut_exception_t e = {0};
        if (mode == 0) {
            CHECK_EQ_INT(rc, AFUT_ERR_EXCEPTION);
            afut_exception(w, &e);
            CHECK_EQ_INT(e.code, AFUT_ERR_TIMEOUT);
        } else if (mode == 1) {
            CHECK_EQ_INT(rc, AFUT_OK);
            CHECK_EQ_INT(result_of(w), 55);
        } else {
            CHECK_EQ_INT(rc, AFUT_ERR_EXCEPTION);
            afut_exception(w, &e);
            CHECK_EQ_INT(e.code, 12);
            CHECK_STR(e.message, "during cancel");
        }
        afut_unref(s.fut);
        afut_unref(t);
        afut_unref(w);
        afut_loop_free(loop);
        CHECK_EQ_INT(g_reports, 0);
    }
}

/* WF2: a result that is ready in the same iteration as the timeout wins
 * (test_wait_for_race_condition, test_wait_for_cancellation_race_condition). */
TEST(test_wait_for_race_condition) {
    afut_loop_t *loop = new_loop();
    afut_t *f = afut_loop_create_future(loop);
    afut_t *w = afut_wait_for(loop, f, 0.01);
    test_sleep_ms(20); /* the timer is due, but not run yet */
    afut_loop_call_soon(loop, set_result_cb, f, NULL);
    run1(loop); /* set_result runs first, then the due timer, in the same iteration */
    CHECK(!afut_cancelled(f));
    CHECK_EQ_INT(afut_loop_run_until_complete(loop, w), AFUT_OK);
    CHECK_EQ_INT(result_of(w), 77);
    afut_unref(f);
    afut_unref(w);
    afut_loop_free(loop);
}

/* WF2: cancelling the wait_for cancels the inner (test_cancel_wait_for, bpo-23219). */
TEST(test_cancel_wait_for) {
    afut_loop_t *loop = new_loop();
    afut_t *f = afut_loop_create_future(loop);
    afut_t *w = afut_wait_for(loop, f, 60);
    CHECK(afut_cancel(w, "no more"));
    CHECK(afut_cancelled(f));
    CHECK_STR(afut_cancel_message(f), "no more");
    CHECK(afut_cancelled(w));
    runn(loop, 2);
    CHECK_EQ_INT(afut_loop_timeout_ms(loop), -1); /* timer gone */
    afut_unref(f);
    afut_unref(w);
    afut_loop_free(loop);
}

/* WF2 + S1: a shielded inner survives the timeout (WaitForShieldTests.test_shielded_timeout). */
TEST(test_wait_for_shielded_timeout) {
    afut_loop_t *loop = new_loop();
    afut_t *f = afut_loop_create_future(loop);
    afut_t *s = afut_shield(loop, f);
    afut_t *w = afut_wait_for(loop, s, 0.005);
    CHECK_EQ_INT(afut_loop_run_until_complete(loop, w), AFUT_ERR_EXCEPTION);
    CHECK(afut_cancelled(s));
    CHECK(!afut_done(f));
    afut_set_result(f, V(1), NULL);
    runn(loop, 2);
    CHECK_EQ_INT(result_of(f), 1);
    afut_unref(f);
    afut_unref(s);
    afut_unref(w);
    afut_loop_free(loop);
}

/* ------------------------------------------------------------------------------------ */
/* shield                                                                               */

/* S1: a done inner is returned itself (test_shield_shortcut); result and exception are
 * copied (test_shield_result, test_shield_exception). */
TEST(test_shield_shortcut_result_exception) {
    afut_loop_t *loop = new_loop();
    afut_t *d = afut_loop_create_future(loop);
    afut_set_result(d, V(3), NULL);
    afut_t *s = afut_shield(loop, d);
    CHECK(s == d);
    afut_unref(s);

    afut_t *f = afut_loop_create_future(loop);
    afut_t *o = afut_shield(loop, f);
    CHECK(o != f);
    afut_set_result(f, V(6), NULL);
    CHECK_EQ_INT(afut_loop_run_until_complete(loop, o), AFUT_OK);
    CHECK_EQ_INT(result_of(o), 6);
    afut_unref(o);
    afut_unref(f);

    afut_t *x = afut_loop_create_future(loop);
    afut_t *ox = afut_shield(loop, x);
    afut_set_exception(x, 2, "e", NULL, NULL);
    CHECK_EQ_INT(afut_loop_run_until_complete(loop, ox), AFUT_ERR_EXCEPTION);
    afut_exception_t e;
    afut_exception(ox, &e);
    CHECK_EQ_INT(e.code, 2);
    afut_unref(ox);
    afut_unref(x);
    afut_unref(d);
    CHECK(afut_shield(loop, NULL) == NULL);
    CHECK_EQ_INT(g_reports, 0);
    afut_loop_free(loop);
}

/* S1: inner cancelled -> outer cancelled (test_shield_cancel_inner); outer cancelled -> inner
 * untouched and still completes (test_shield_cancel_outer, test_shield_effect). */
TEST(test_shield_cancel) {
    afut_loop_t *loop = new_loop();
    afut_t *f = afut_loop_create_future(loop);
    afut_t *o = afut_shield(loop, f);
    afut_cancel(f, "in");
    CHECK_EQ_INT(afut_loop_run_until_complete(loop, o), AFUT_ERR_CANCELLED);
    /* asyncio's _inner_done_callback calls outer.cancel() without the inner's message. */
    CHECK(afut_cancel_message(o) == NULL);
    afut_unref(o);
    afut_unref(f);

    afut_t *g = afut_loop_create_future(loop);
    afut_t *og = afut_shield(loop, g);
    CHECK(afut_cancel(og, NULL));
    CHECK(!afut_done(g));
    runn(loop, 2);
    CHECK(!afut_done(g));
    afut_set_exception(g, 9, NULL, NULL, NULL);
    runn(loop, 2);
    CHECK_EQ_INT(afut_result(g, NULL), AFUT_ERR_EXCEPTION);
    afut_unref(og);
    afut_unref(g);
    afut_loop_free(loop);
}

/* S1 + G5: shield inside gather (test_shield_gather) and gather inside shield
 * (test_gather_shield): cancelling the outer layer leaves the shielded futures running. */
TEST(test_shield_and_gather) {
    afut_loop_t *loop = new_loop();
    afut_t *a = afut_loop_create_future(loop);
    afut_t *b = afut_loop_create_future(loop);
    afut_t *sa = afut_shield(loop, a);
    afut_t *sb = afut_shield(loop, b);
    afut_t *in[2] = {sa, sb};
    afut_t *g = afut_gather(loop, in, 2, false);
    CHECK(afut_cancel(g, NULL));
    runn(loop, 2);
    CHECK(afut_cancelled(sa));
    CHECK(!afut_done(a));
    CHECK(!afut_done(b));

    afut_t *in2[2] = {a, b};
    afut_t *g2 = afut_gather(loop, in2, 2, false);
    afut_t *sg = afut_shield(loop, g2);
    CHECK(afut_cancel(sg, NULL));
    runn(loop, 2);
    CHECK(!afut_done(g2));
    afut_set_result(a, V(1), NULL);
    afut_set_result(b, V(2), NULL);
    runn(loop, 2);
    CHECK(afut_done(g2));
    CHECK_EQ_INT(result_of(afut_gather_child(g2, 1)), 2);
    afut_unref(a);
    afut_unref(b);
    afut_unref(sa);
    afut_unref(sb);
    afut_unref(g);
    afut_unref(g2);
    afut_unref(sg);
    afut_loop_free(loop);
}

/* ------------------------------------------------------------------------------------ */
/* wait                                                                                 */

/* W1: argument checks (test_wait_errors, test_wait_invalid_args). */
TEST(test_wait_bad_args) {
    afut_loop_t *loop = new_loop();
    afut_t *f = afut_loop_create_future(loop);
    CHECK(afut_wait_many(loop, &f, 0, INFINITY, AFUT_ALL_COMPLETED) == NULL);
    CHECK(afut_wait_many(loop, &f, 1, INFINITY, 7) == NULL);
    CHECK(afut_wait_many(loop, &f, 1, NAN, AFUT_ALL_COMPLETED) == NULL);
    CHECK(afut_wait_many(loop, NULL, 1, 1, AFUT_ALL_COMPLETED) == NULL);
    CHECK(afut_wait_many(NULL, &f, 1, 1, AFUT_ALL_COMPLETED) == NULL);
    CHECK(afut_wait_many_result(NULL) == NULL);
    CHECK(afut_wait_many_result(f) == NULL);
    afut_unref(f);
    afut_loop_free(loop);
}

/* W2 + W3 ALL_COMPLETED: even when every input is done it takes one iteration; duplicates
 * count once (test_wait, test_wait_duplicate_coroutines). */
TEST(test_wait_all_completed) {
    afut_loop_t *loop = new_loop();
    afut_t *a = afut_loop_create_future(loop);
    afut_t *b = afut_loop_create_future(loop);
    afut_set_result(a, V(1), NULL);
    afut_set_result(b, V(2), NULL);
    afut_t *in[3] = {a, b, a};
    afut_t *w = afut_wait_many(loop, in, 3, INFINITY, AFUT_ALL_COMPLETED);
    CHECK(!afut_done(w));
    run1(loop);
    CHECK(afut_done(w));
    const afut_wait_result_t *r = NULL;
    CHECK_EQ_INT(afut_result(w, (void **)&r), AFUT_OK);
    CHECK(r == afut_wait_many_result(w));
    if (r) {
        CHECK_EQ_INT(r->n_done, 2);
        CHECK_EQ_INT(r->n_pending, 0);
        CHECK(r->pending == NULL);
        CHECK(r->done[0] == a);
        CHECK(r->done[1] == b);
    }
    afut_unref(a);
    afut_unref(b);
    afut_unref(w);
    afut_loop_free(loop);
}

/* W3 FIRST_COMPLETED (test_wait_first_completed); `done` includes others finished in the same
 * batch (test_wait_really_done). */
TEST(test_wait_first_completed) {
    afut_loop_t *loop = new_loop();
    afut_t *a = afut_loop_create_future(loop);
    afut_t *b = afut_loop_create_future(loop);
    afut_t *c = afut_loop_create_future(loop);
    afut_t *in[3] = {a, b, c};
    afut_t *w = afut_wait_many(loop, in, 3, INFINITY, AFUT_FIRST_COMPLETED);
    run1(loop);
    CHECK(!afut_done(w));
    afut_cancel(b, NULL); /* any outcome counts */
    afut_set_result(c, V(1), NULL);
    run1(loop);
    CHECK(afut_done(w));
    const afut_wait_result_t *r = afut_wait_many_result(w);
    CHECK(r != NULL);
    if (r) {
        CHECK_EQ_INT(r->n_done, 2);
        CHECK_EQ_INT(r->n_pending, 1);
        CHECK(r->done[0] == b);
        CHECK(r->done[1] == c);
        CHECK(r->pending[0] == a);
    }
    CHECK(!afut_done(a)); /* nothing cancelled */
    afut_cancel(a, NULL);
    afut_unref(a);
    afut_unref(b);
    afut_unref(c);
    afut_unref(w);
    afut_loop_free(loop);
}

/* W3 FIRST_EXCEPTION: an exception returns at once (test_wait_first_exception); a
 * cancellation is not an exception: it waits for all [X]; no exception at all = all. */
TEST(test_wait_first_exception) {
    afut_loop_t *loop = new_loop();
    afut_t *a = afut_loop_create_future(loop);
    afut_t *b = afut_loop_create_future(loop);
    afut_t *in[2] = {a, b};
    afut_t *w = afut_wait_many(loop, in, 2, INFINITY, AFUT_FIRST_EXCEPTION);
    afut_cancel(a, NULL);
    runn(loop, 2);
    CHECK(!afut_done(w));
    afut_set_exception(b, 1, NULL, NULL, NULL);
    run1(loop);
    CHECK(afut_done(w));
    CHECK_EQ_INT(afut_wait_many_result(w)->n_done, 2);

    afut_t *c = afut_loop_create_future(loop);
    afut_t *d = afut_loop_create_future(loop);
    afut_t *in2[2] = {c, d};
    afut_t *w2 = afut_wait_many(loop, in2, 2, INFINITY, AFUT_FIRST_EXCEPTION);
    afut_set_exception(c, 2, NULL, NULL, NULL);
    run1(loop);
    CHECK(afut_done(w2));
    CHECK_EQ_INT(afut_wait_many_result(w2)->n_pending, 1);
    afut_cancel(d, NULL);
    afut_unref(a);
    afut_unref(b);
    afut_unref(c);
    afut_unref(d);
    afut_unref(w);
    afut_unref(w2);
    runn(loop, 1);
    CHECK_EQ_INT(g_reports, 0); /* exceptions read by the FIRST_EXCEPTION check */
    afut_loop_free(loop);
}

/* W4: on timeout it returns the sets, raises nothing and cancels nothing
 * (test_wait_with_timeout, test_wait_concurrent_complete); cancelling the wait leaves the
 * inputs alone. */
TEST(test_wait_timeout_and_cancel) {
    afut_loop_t *loop = new_loop();
    afut_t *a = afut_loop_create_future(loop);
    afut_t *b = afut_loop_create_future(loop);
    afut_set_result(b, V(1), NULL);
    afut_t *in[2] = {a, b};
    afut_t *w = afut_wait_many(loop, in, 2, 0.01, AFUT_ALL_COMPLETED);
    CHECK_EQ_INT(afut_loop_run_until_complete(loop, w), AFUT_OK);
    const afut_wait_result_t *r = afut_wait_many_result(w);
    CHECK_EQ_INT(r->n_done, 1);
    CHECK_EQ_INT(r->n_pending, 1);
    CHECK(r->pending[0] == a);
    CHECK(!afut_done(a));

    afut_t *w2 = afut_wait_many(loop, in, 2, 60, AFUT_ALL_COMPLETED);
    CHECK(afut_cancel(w2, NULL));
    CHECK(!afut_done(a));
    run1(loop); /* b's callback was already queued */
    CHECK_EQ_INT(afut_loop_timeout_ms(loop), -1);
    CHECK(afut_wait_many_result(w2) == NULL);
    afut_cancel(a, NULL);
    runn(loop, 2);
    afut_unref(a);
    afut_unref(b);
    afut_unref(w);
    afut_unref(w2);
    afut_loop_free(loop);
}

/* ------------------------------------------------------------------------------------ */
/* as_completed                                                                         */

/* as_completed yields in completion order (test_as_completed); duplicates count once
 * (test_as_completed_duplicate_coroutines); the remaining ones time out
 * (test_as_completed_with_timeout). */
TEST(test_as_completed) {
    afut_loop_t *loop = new_loop();
    afut_t *a = afut_loop_create_future(loop);
    afut_t *b = afut_loop_create_future(loop);
    afut_t *c = afut_loop_create_future(loop);
    afut_t *in[4] = {a, b, c, b};
    afut_t *out[4] = {0};
    CHECK_EQ_INT(afut_as_completed(loop, in, 4, 0.05, out), 3);
    CHECK(out[3] == NULL);
    afut_set_result(c, V(3), NULL);
    run1(loop);
    CHECK(afut_done(out[0]));
    CHECK(!afut_done(out[1]));
    afut_set_result(a, V(1), NULL);
    run1(loop);
    CHECK_EQ_INT(result_of(out[0]), 3);
    CHECK_EQ_INT(result_of(out[1]), 1);
    CHECK_EQ_INT(afut_loop_run_until_complete(loop, out[2]), AFUT_ERR_EXCEPTION);
    afut_exception_t e;
    afut_exception(out[2], &e);
    CHECK_EQ_INT(e.code, AFUT_ERR_TIMEOUT);
    CHECK(!afut_done(b));
    for (int i = 0; i < 3; i++) afut_unref(out[i]);
    CHECK_EQ_INT(afut_as_completed(loop, in, 1, NAN, out), 0);
    CHECK_EQ_INT(afut_as_completed(loop, in, 1, 1, NULL), 0);
    afut_cancel(b, NULL);
    afut_unref(a);
    afut_unref(b);
    afut_unref(c);
    runn(loop, 2);
    afut_loop_free(loop);
}

/* as_completed: no timeout, exceptions and cancellations are delivered in order too. */
TEST(test_as_completed_outcomes) {
    afut_loop_t *loop = new_loop();
    afut_t *a = afut_loop_create_future(loop);
    afut_t *b = afut_loop_create_future(loop);
    afut_t *in[2] = {a, b};
    afut_t *out[2] = {0};
    CHECK_EQ_INT(afut_as_completed(loop, in, 2, INFINITY, out), 2);
    afut_set_exception(b, 8, "x", NULL, NULL);
    run1(loop);
    afut_cancel(a, "c");
    run1(loop);
    CHECK_EQ_INT(afut_result(out[0], NULL), AFUT_ERR_EXCEPTION);
    CHECK_EQ_INT(afut_result(out[1], NULL), AFUT_ERR_CANCELLED);
    CHECK_STR(afut_cancel_message(out[1]), "c");
    afut_unref(out[0]);
    afut_unref(out[1]);
    afut_unref(a);
    afut_unref(b);
    CHECK_EQ_INT(g_reports, 0);
    afut_loop_free(loop);
}

/* A task-based gather: tasks are futures (API.md); gather of two tasks. */
static void t_result(afut_t *task, afut_t *awaited, void *ud) {
    (void)awaited;
    afut_set_result(task, ud, NULL);
}

TEST(test_gather_tasks) {
    afut_loop_t *loop = new_loop();
    afut_t *t1 = afut_task_new(loop, t_result, V(1), NULL);
    afut_t *t2 = afut_task_new(loop, t_result, V(2), NULL);
    afut_t *in[2] = {t1, t2};
    afut_t *g = afut_gather(loop, in, 2, false);
    CHECK_EQ_INT(afut_loop_run_until_complete(loop, g), AFUT_OK);
    CHECK_EQ_INT(result_of(afut_gather_child(g, 0)), 1);
    CHECK_EQ_INT(result_of(afut_gather_child(g, 1)), 2);
    afut_unref(t1);
    afut_unref(t2);
    afut_unref(g);
    afut_loop_free(loop);
}

/* A cycle of awaits (a task awaiting a gather that contains the task itself): cancelling
 * either side terminates (asyncio recurses until RecursionError) and both end cancelled. */
typedef struct {
    afut_t *gather;
    afut_t *other;
} cyc_t;

static void cyc_step(afut_t *task, afut_t *awaited, void *ud) {
    cyc_t *c = ud;
    if (!awaited) {
        afut_t *in[2] = {task, c->other};
        c->gather = afut_gather(afut_get_loop(task), in, 2, false);
        afut_task_await(task, c->gather);
    }
}

TEST(test_cancel_cycle_task_gather) {
    for (int which = 0; which < 2; which++) {
        afut_loop_t *loop = new_loop();
        cyc_t c = {0};
        c.other = afut_loop_create_future(loop);
        afut_t *t = afut_task_new(loop, cyc_step, &c, NULL);
        run1(loop);
        CHECK(c.gather != NULL);
        CHECK(afut_cancel(which ? c.gather : t, "cycle"));
        CHECK(afut_cancelled(c.gather));
        CHECK(afut_cancelled(c.other));
        CHECK_EQ_INT(afut_loop_run_until_complete(loop, t), AFUT_ERR_CANCELLED);
        afut_unref(c.gather);
        afut_unref(c.other);
        afut_unref(t);
        afut_loop_free(loop);
    }
}

int main(void) {
    RUN_T(test_gather_empty);
    RUN_T(test_gather_order_and_duplicates);
    RUN_T(test_gather_one_exception);
    RUN_T(test_gather_one_cancellation);
    RUN_T(test_gather_return_exceptions);
    RUN_T(test_gather_cancel);
    RUN_T(test_gather_children_already_done);
    RUN_T(test_gather_loopless_and_bad_input);
    RUN_T(test_gather_tasks);
    RUN_T(test_cancel_cycle_task_gather);
    RUN_T(test_wait_for_no_timeout);
    RUN_T(test_wait_for_result_in_time);
    RUN_T(test_wait_for_timeout);
    RUN_T(test_wait_for_zero_timeout);
    RUN_T(test_wait_for_waits_for_inner);
    RUN_T(test_wait_for_race_condition);
    RUN_T(test_cancel_wait_for);
    RUN_T(test_wait_for_shielded_timeout);
    RUN_T(test_shield_shortcut_result_exception);
    RUN_T(test_shield_cancel);
    RUN_T(test_shield_and_gather);
    RUN_T(test_wait_bad_args);
    RUN_T(test_wait_all_completed);
    RUN_T(test_wait_first_completed);
    RUN_T(test_wait_first_exception);
    RUN_T(test_wait_timeout_and_cancel);
    RUN_T(test_as_completed);
    RUN_T(test_as_completed_outcomes);
    TEST_END();
}
