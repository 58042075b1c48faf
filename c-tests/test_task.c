/* C tests for tasks (SEMANTICS.md section 3: T1-T6 and SL1; API.md "Tasks and combinators").
 *
 * Each test names the CPython test it mirrors (Lib/test/test_asyncio/test_tasks.py unless
 * said otherwise) or the SEMANTICS.md rule. One afut_loop_run_once(loop, 0, NULL) is one
 * asyncio iteration. A task's step is a C function; each test scripts its step through a
 * `script_t` userdata, which also counts how often the library freed it. */
#define _POSIX_C_SOURCE 200809L

#include <stdbool.h>
#include <stdint.h>
#include <math.h>
#include <pthread.h>

#include "afut.h"
#include "test.h"

/* ------------------------------------------------------------------------------------ */
/* Helpers                                                                              */

typedef struct script script_t;
typedef void (*script_fn)(script_t *s, afut_t *task, afut_t *awaited);

struct script {
    script_fn fn;
    int steps;              /* how many times the step ran */
    int frees;              /* userdata_free calls */
    int step_iter[16];      /* g_iter at each step */
    bool awaited_null[16];  /* awaited == NULL at each step */
    bool awaited_cancelled[16];
    afut_t *fut;            /* a future the script awaits (borrowed from the test) */
    afut_t *fut2;
    afut_t *other;          /* another task, for tests with two */
    afut_status_t rc[8];    /* statuses seen inside the step */
    const char *seen_msg;
    int value;
    int value_frees;
};

static int g_iter;
static int g_reports;
static char g_report_msg[128];
static int g_report_code;

static void script_free(void *p) { ((script_t *)p)->frees++; }
static void value_free(void *p) { ((script_t *)p)->value_frees++; }

static void step(afut_t *task, afut_t *awaited, void *userdata) {
    script_t *s = userdata;
    if (s->steps < 16) {
        s->step_iter[s->steps] = g_iter;
        s->awaited_null[s->steps] = awaited == NULL;
        s->awaited_cancelled[s->steps] = awaited && afut_cancelled(awaited);
    }
    s->steps++;
    if (s->fn) s->fn(s, task, awaited);
}

static void run1(afut_loop_t *loop) {
    g_iter++;
    afut_loop_run_once(loop, 0, NULL);
}

static void runn(afut_loop_t *loop, int n) {
    for (int i = 0; i < n; i++) run1(loop);
}

static void handler(afut_loop_t *loop, const afut_error_context_t *ctx, void *ud) {
    (void)loop;
    (void)ud;
    g_reports++;
    snprintf(g_report_msg, sizeof g_report_msg, "%s", ctx->message ? ctx->message : "");
    g_report_code = ctx->exception ? ctx->exception->code : 0;
}

static afut_loop_t *new_loop(void) {
    g_iter = 0;
    g_reports = 0;
    g_report_msg[0] = 0;
    g_report_code = 0;
    afut_loop_t *loop = afut_loop_new();
    afut_loop_set_exception_handler(loop, handler, NULL, NULL);
    return loop;
}

/* step scripts */
static void s_nothing(script_t *s, afut_t *t, afut_t *a) { (void)s; (void)t; (void)a; }

static void s_result_42(script_t *s, afut_t *t, afut_t *a) {
    (void)a;
    s->value = 42;
    s->rc[0] = afut_set_result(t, &s->value, NULL);
}

static void s_exception(script_t *s, afut_t *t, afut_t *a) {
    (void)a;
    s->rc[0] = afut_set_exception(t, 7, "boom", NULL, NULL);
}

/* Awaits s->fut on the first step; on the next: a result completes the task with it, a
 * cancellation ends the task (returns doing nothing). */
static void s_await_fut(script_t *s, afut_t *t, afut_t *a) {
    if (!a) {
        s->rc[0] = afut_task_await(t, s->fut);
        return;
    }
    void *v;
    if (afut_result(a, &v) == AFUT_OK) s->rc[1] = afut_set_result(t, v, NULL);
}

/* ------------------------------------------------------------------------------------ */
/* T1: creation                                                                         */

/* T1: the first step runs on the next iteration, not inline, with awaited == NULL
 * (test_task_basic / Task(coro) schedules __step with call_soon). */
TEST(test_first_step_next_iteration) {
    afut_loop_t *loop = new_loop();
    script_t s = {.fn = s_result_42};
    afut_t *t = afut_task_new(loop, step, &s, script_free);
    CHECK(t != NULL);
    CHECK_EQ_INT(s.steps, 0);
    CHECK(!afut_done(t));
    run1(loop);
    CHECK_EQ_INT(s.steps, 1);
    CHECK(s.awaited_null[0]);
    CHECK_EQ_INT(s.rc[0], AFUT_OK);
    CHECK(afut_done(t));
    CHECK_EQ_INT(s.frees, 1); /* userdata freed once the task is done */
    void *v = NULL;
    CHECK_EQ_INT(afut_result(t, &v), AFUT_OK);
    CHECK(v == &s.value);
    afut_unref(t);
    afut_loop_free(loop);
    CHECK_EQ_INT(s.frees, 1);
}

/* API.md: a task is a future: afut_isfuture and afut_is_task (test_isfuture /
 * test_task_class). */
TEST(test_task_is_future) {
    afut_loop_t *loop = new_loop();
    script_t s = {.fn = s_result_42};
    afut_t *t = afut_task_new(loop, step, &s, NULL);
    afut_t *f = afut_loop_create_future(loop);
    CHECK(afut_isfuture(t));
    CHECK(afut_is_task(t));
    CHECK(!afut_is_task(f));
    CHECK(!afut_is_task(NULL));
    char buf[64];
    afut_describe(t, buf, sizeof buf);
    CHECK_STR(buf, "<Task pending>");
    CHECK_EQ_INT(afut_loop_run_until_complete(loop, t), AFUT_OK);
    afut_describe(f, buf, sizeof buf);
    CHECK_STR(buf, "<Future pending>");
    afut_unref(f);
    afut_unref(t);
    afut_loop_free(loop);
}

/* T1: Task.set_result / set_exception raise from outside the task (test_task_set_methods):
 * refused with AFUT_ERR_INVALID_STATE, the value and detail stay the caller's. */
TEST(test_task_set_methods) {
    afut_loop_t *loop = new_loop();
    script_t s = {.fn = s_nothing};
    afut_t *t = afut_task_new(loop, step, &s, NULL);
    CHECK_EQ_INT(afut_set_result(t, &s, value_free), AFUT_ERR_INVALID_STATE);
    CHECK_EQ_INT(afut_set_exception(t, 3, "x", &s, value_free), AFUT_ERR_INVALID_STATE);
    CHECK_EQ_INT(s.value_frees, 0);
    CHECK(!afut_done(t));
    run1(loop); /* yields */
    CHECK_EQ_INT(afut_set_result(t, &s, value_free), AFUT_ERR_INVALID_STATE);
    CHECK(afut_cancel(t, NULL));
    run1(loop);
    CHECK(afut_cancelled(t));
    CHECK_EQ_INT(s.value_frees, 0);
    afut_unref(t);
    afut_loop_free(loop);
}

/* API.md bad input; a closed loop refuses the task and leaves the userdata to the caller. */
TEST(test_task_new_bad_input) {
    afut_loop_t *loop = new_loop();
    script_t s = {0};
    CHECK(afut_task_new(NULL, step, &s, script_free) == NULL);
    CHECK(afut_task_new(loop, NULL, &s, script_free) == NULL);
    CHECK_EQ_INT(afut_task_await(NULL, NULL), AFUT_ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(afut_task_cancelling(NULL), -1);
    CHECK_EQ_INT(afut_task_uncancel(NULL), -1);
    CHECK(!afut_task_cancel_requested(NULL, NULL));
    afut_t *f = afut_loop_create_future(loop);
    CHECK_EQ_INT(afut_task_cancelling(f), -1);
    CHECK_EQ_INT(afut_task_uncancel(f), -1);
    CHECK_EQ_INT(afut_task_await(f, f), AFUT_ERR_INVALID_ARGUMENT);
    afut_unref(f);
    CHECK_EQ_INT(afut_loop_close(loop), AFUT_OK);
    CHECK(afut_task_new(loop, step, &s, script_free) == NULL);
    CHECK_EQ_INT(s.frees, 0);
    afut_loop_free(loop);
}

/* T1 / gh-91887: the loop keeps a pending task alive; a fire-and-forget task whose handle was
 * dropped at once still runs to the end. */
static void s_sleep_then_flag(script_t *s, afut_t *t, afut_t *a) {
    if (!a) {
        afut_t *nap = afut_sleep(afut_get_loop(t), 0.01, NULL, NULL);
        s->rc[0] = afut_task_await(t, nap);
        afut_unref(nap); /* only the task holds it now */
        return;
    }
    s->value = 1;
    afut_set_result(t, NULL, NULL);
    afut_set_result(s->fut, NULL, NULL);
}

TEST(test_fire_and_forget_task_survives) {
    afut_loop_t *loop = new_loop();
    script_t s = {.fn = s_sleep_then_flag};
    s.fut = afut_loop_create_future(loop);
    afut_t *t = afut_task_new(loop, step, &s, script_free);
    afut_unref(t); /* nobody holds the task any more */
    CHECK_EQ_INT(afut_loop_run_until_complete(loop, s.fut), AFUT_OK);
    CHECK_EQ_INT(s.rc[0], AFUT_OK);
    CHECK_EQ_INT(s.value, 1);
    CHECK_EQ_INT(s.steps, 2);
    CHECK_EQ_INT(s.frees, 1);
    afut_unref(s.fut);
    afut_loop_free(loop);
}

/* ------------------------------------------------------------------------------------ */
/* T2, T3: steps                                                                        */

/* T2: the step's result / exception become the task's (test_task_repr / test_step_result,
 * run_until_complete returning the outcome). */
TEST(test_task_result_and_exception) {
    afut_loop_t *loop = new_loop();
    script_t s = {.fn = s_exception};
    afut_t *t = afut_task_new(loop, step, &s, NULL);
    CHECK_EQ_INT(afut_loop_run_until_complete(loop, t), AFUT_ERR_EXCEPTION);
    CHECK_EQ_INT(s.rc[0], AFUT_OK);
    afut_exception_t e;
    CHECK_EQ_INT(afut_exception(t, &e), AFUT_OK);
    CHECK_EQ_INT(e.code, 7);
    CHECK_STR(e.message, "boom");
    char buf[80];
    afut_describe(t, buf, sizeof buf);
    CHECK_STR(buf, "<Task finished exception=code 7: boom>");
    afut_unref(t);
    afut_loop_free(loop);
    CHECK_EQ_INT(g_reports, 0);
}

/* T2 + T3: awaiting a future: the step runs again one iteration after it is done, with
 * awaited == that future (test_task_wakeup / __wakeup latency [X]). */
static void complete_fut(void *p) { afut_set_result(p, (void *)(intptr_t)5, NULL); }

TEST(test_await_latency_one_iteration) {
    afut_loop_t *loop = new_loop();
    script_t s = {.fn = s_await_fut};
    s.fut = afut_loop_create_future(loop);
    afut_t *t = afut_task_new(loop, step, &s, NULL);
    run1(loop); /* iteration 1: first step awaits */
    CHECK_EQ_INT(s.steps, 1);
    CHECK_EQ_INT(s.rc[0], AFUT_OK);
    runn(loop, 3);
    CHECK_EQ_INT(s.steps, 1); /* nothing while the future is pending */
    afut_loop_call_soon(loop, complete_fut, s.fut, NULL);
    run1(loop); /* iteration 5: the future completes */
    CHECK(afut_done(s.fut));
    CHECK_EQ_INT(s.steps, 1);
    run1(loop); /* iteration 6: the wakeup runs the step */
    CHECK_EQ_INT(s.steps, 2);
    CHECK_EQ_INT(s.step_iter[1], 6);
    CHECK(!s.awaited_null[1]);
    CHECK(afut_done(t));
    void *v;
    CHECK_EQ_INT(afut_result(t, &v), AFUT_OK);
    CHECK(v == (void *)(intptr_t)5);
    afut_unref(t);
    afut_unref(s.fut);
    afut_loop_free(loop);
}

/* T2: awaiting a future that is already done resumes on the next iteration. */
TEST(test_await_done_future) {
    afut_loop_t *loop = new_loop();
    script_t s = {.fn = s_await_fut};
    s.fut = afut_loop_create_future(loop);
    afut_set_result(s.fut, (void *)(intptr_t)9, NULL);
    afut_t *t = afut_task_new(loop, step, &s, NULL);
    run1(loop);
    CHECK_EQ_INT(s.steps, 1);
    run1(loop);
    CHECK_EQ_INT(s.steps, 2);
    CHECK(afut_done(t));
    afut_unref(t);
    afut_unref(s.fut);
    afut_loop_free(loop);
}

/* T2: 'Task cannot await on itself' (test_task_awaits_on_itself), a future of another loop
 * (test_other_loop_future) and a loop-less one: AFUT_ERR_INVALID_ARGUMENT. Awaiting twice
 * in one step, or after completing: AFUT_ERR_INVALID_STATE. */
static void s_bad_awaits(script_t *s, afut_t *t, afut_t *a) {
    (void)a;
    s->rc[0] = afut_task_await(t, t);
    s->rc[1] = afut_task_await(t, s->fut2);          /* other loop */
    afut_t *loopless = afut_new(NULL);
    s->rc[2] = afut_task_await(t, loopless);
    afut_unref(loopless);
    s->rc[3] = afut_task_await(t, s->fut);            /* ok */
    s->rc[4] = afut_task_await(t, s->fut);            /* twice */
    s->rc[5] = afut_set_result(t, NULL, NULL);        /* while awaiting */
    s->fn = s_nothing;
}

TEST(test_task_awaits_on_itself_and_other_loop) {
    afut_loop_t *loop = new_loop();
    afut_loop_t *loop2 = afut_loop_new();
    script_t s = {.fn = s_bad_awaits};
    s.fut = afut_loop_create_future(loop);
    s.fut2 = afut_loop_create_future(loop2);
    afut_t *t = afut_task_new(loop, step, &s, NULL);
    run1(loop);
    CHECK_EQ_INT(s.rc[0], AFUT_ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(s.rc[1], AFUT_ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(s.rc[2], AFUT_ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(s.rc[3], AFUT_OK);
    CHECK_EQ_INT(s.rc[4], AFUT_ERR_INVALID_STATE);
    CHECK_EQ_INT(s.rc[5], AFUT_ERR_INVALID_STATE);
    /* outside the step */
    CHECK_EQ_INT(afut_task_await(t, s.fut), AFUT_ERR_INVALID_STATE);
    afut_cancel(s.fut, NULL);
    runn(loop, 2);
    CHECK(afut_cancelled(t));
    afut_unref(t);
    afut_unref(s.fut);
    afut_unref(s.fut2);
    afut_loop_free(loop2);
    afut_loop_free(loop);
}

/* T2: a step that neither awaits nor completes yields exactly one iteration (a bare
 * `yield`, as asyncio.sleep(0) does: SleepTests.test_sleep_zero). */
static void s_yield_3(script_t *s, afut_t *t, afut_t *a) {
    (void)a;
    if (s->steps == 4) afut_set_result(t, NULL, NULL);
}

TEST(test_yield_is_one_iteration) {
    afut_loop_t *loop = new_loop();
    script_t s = {.fn = s_yield_3};
    afut_t *t = afut_task_new(loop, step, &s, NULL);
    runn(loop, 6);
    CHECK_EQ_INT(s.steps, 4);
    for (int i = 0; i < 4; i++) {
        CHECK_EQ_INT(s.step_iter[i], i + 1);
        CHECK(s.awaited_null[i]);
    }
    CHECK(afut_done(t));
    afut_unref(t);
    afut_loop_free(loop);
}

/* SL1: afut_sleep(loop, 0) is done after exactly one iteration; awaited from a task, the task
 * resumes one iteration after that (T3) (SleepTests.test_sleep_zero). */
static void s_sleep0(script_t *s, afut_t *t, afut_t *a) {
    if (!a) {
        s->fut = afut_sleep(afut_get_loop(t), 0, &s->value, NULL);
        afut_task_await(t, s->fut);
        return;
    }
    void *v = NULL;
    s->rc[0] = afut_result(a, &v);
    afut_set_result(t, v, NULL);
}

TEST(test_sleep_zero_from_task) {
    afut_loop_t *loop = new_loop();
    script_t s = {.fn = s_sleep0};
    afut_t *t = afut_task_new(loop, step, &s, NULL);
    run1(loop); /* 1: first step */
    CHECK(s.fut != NULL);
    CHECK(!afut_done(s.fut));
    run1(loop); /* 2: the sleep future completes */
    CHECK(afut_done(s.fut));
    CHECK_EQ_INT(s.steps, 1);
    run1(loop); /* 3: the task resumes */
    CHECK_EQ_INT(s.steps, 2);
    CHECK_EQ_INT(s.rc[0], AFUT_OK);
    void *v = NULL;
    CHECK_EQ_INT(afut_result(t, &v), AFUT_OK);
    CHECK(v == &s.value);
    afut_unref(s.fut);
    afut_unref(t);
    /* SL1: NaN delay is refused (test_sleep_when_delay_is_nan) */
    CHECK(afut_sleep(loop, NAN, NULL, NULL) == NULL);
    afut_loop_free(loop);
}

/* SL1: cancelling a task that sleeps cancels the sleep future and its timer
 * (test_task_cancel_sleeping_task, test_sleep_cancel). */
static void s_long_sleep(script_t *s, afut_t *t, afut_t *a) {
    if (!a) {
        s->fut = afut_sleep(afut_get_loop(t), 3600, s, value_free);
        afut_task_await(t, s->fut);
    }
}

TEST(test_cancel_sleeping_task) {
    afut_loop_t *loop = new_loop();
    script_t s = {.fn = s_long_sleep};
    afut_t *t = afut_task_new(loop, step, &s, NULL);
    run1(loop);
    CHECK(afut_loop_timeout_ms(loop) > 1000);
    CHECK(afut_cancel(t, "stop"));
    CHECK(afut_cancelled(s.fut));
    CHECK_EQ_INT(afut_loop_run_until_complete(loop, t), AFUT_ERR_CANCELLED);
    CHECK_STR(afut_cancel_message(t), "stop");
    CHECK_EQ_INT(s.value_frees, 1); /* the timer's value was freed with the timer */
    CHECK_EQ_INT(afut_loop_timeout_ms(loop), -1);
    afut_unref(s.fut);
    afut_unref(t);
    afut_loop_free(loop);
}

/* ------------------------------------------------------------------------------------ */
/* T4: cancellation                                                                     */

/* T4: cancel while awaiting cancels the awaited future at once and returns true; the task
 * is not cancelled until its next step returns (test_cancel, test_task_cancel_waiter_future,
 * test_cancel_with_message_then_future_result: the message reaches the task). */
TEST(test_cancel_awaiting_task) {
    afut_loop_t *loop = new_loop();
    script_t s = {.fn = s_await_fut};
    s.fut = afut_loop_create_future(loop);
    afut_t *t = afut_task_new(loop, step, &s, NULL);
    run1(loop);
    CHECK(afut_cancel(t, "my message"));
    CHECK(afut_cancelled(s.fut)); /* at once */
    CHECK_STR(afut_cancel_message(s.fut), "my message");
    CHECK(!afut_done(t));
    CHECK(!afut_cancelled(t));
    CHECK_EQ_INT(afut_task_cancelling(t), 1);
    CHECK(!afut_task_cancel_requested(t, NULL)); /* delivered to the awaited future */
    run1(loop);
    CHECK_EQ_INT(s.steps, 2);
    CHECK(s.awaited_cancelled[1]);
    CHECK(afut_cancelled(t));
    CHECK_STR(afut_cancel_message(t), "my message");
    /* T4 surprise fixed: the message stays stable */
    CHECK_STR(afut_cancel_message(t), "my message");
    CHECK_EQ_INT(afut_result(t, NULL), AFUT_ERR_CANCELLED);
    CHECK_EQ_INT(afut_exception(t, NULL), AFUT_ERR_CANCELLED);
    CHECK_STR(afut_cancel_message(t), "my message");
    CHECK(!afut_cancel(t, "again")); /* done: false */
    afut_unref(t);
    afut_unref(s.fut);
    afut_loop_free(loop);
}

/* T4: cancelled before its first step, with a message
 * (test_cancel_with_message_before_starting_task): the step sees the pending request; a step
 * that returns ends the task CANCELLED with that message. */
static void s_check_requested(script_t *s, afut_t *t, afut_t *a) {
    (void)a;
    const char *m = NULL;
    s->rc[0] = afut_task_cancel_requested(t, &m) ? 1 : 0;
    s->seen_msg = m;
    s->rc[1] = afut_set_result(t, s, value_free); /* refused: a cancel is pending */
}

TEST(test_cancel_before_start) {
    afut_loop_t *loop = new_loop();
    script_t s = {.fn = s_check_requested};
    afut_t *t = afut_task_new(loop, step, &s, script_free);
    CHECK(afut_cancel(t, "m2"));
    CHECK(!afut_done(t));
    CHECK_EQ_INT(afut_loop_run_until_complete(loop, t), AFUT_ERR_CANCELLED);
    CHECK_EQ_INT(s.steps, 1);
    CHECK_EQ_INT(s.rc[0], 1);
    CHECK_STR(s.seen_msg, "m2");
    CHECK_EQ_INT(s.rc[1], AFUT_ERR_CANCELLED); /* test_cancel_at_end: no result */
    CHECK_EQ_INT(s.value_frees, 0);
    CHECK_STR(afut_cancel_message(t), "m2");
    CHECK_EQ_INT(s.frees, 1);
    afut_unref(t);
    afut_loop_free(loop);
}

/* T4: the step catches the cancellation of its awaited future and returns a value: the task
 * is not cancelled (test_cancel_task_catching). */
static void s_catch(script_t *s, afut_t *t, afut_t *a) {
    if (!a) {
        afut_task_await(t, s->fut);
        return;
    }
    if (afut_cancelled(a)) {
        s->value = 42;
        s->rc[0] = afut_set_result(t, &s->value, NULL);
    }
}

TEST(test_cancel_task_catching) {
    afut_loop_t *loop = new_loop();
    script_t s = {.fn = s_catch};
    s.fut = afut_loop_create_future(loop);
    afut_t *t = afut_task_new(loop, step, &s, NULL);
    run1(loop);
    CHECK(afut_cancel(t, NULL));
    CHECK_EQ_INT(afut_loop_run_until_complete(loop, t), AFUT_OK);
    CHECK_EQ_INT(s.rc[0], AFUT_OK);
    CHECK(!afut_cancelled(t));
    void *v;
    afut_result(t, &v);
    CHECK(v == &s.value);
    CHECK_EQ_INT(afut_task_cancelling(t), 1); /* the count stays, as in asyncio */
    afut_unref(t);
    afut_unref(s.fut);
    afut_loop_free(loop);
}

/* T4: the step ignores the cancellation and awaits something else
 * (test_cancel_task_ignoring). */
static void s_ignore(script_t *s, afut_t *t, afut_t *a) {
    if (!a) {
        afut_task_await(t, s->fut);
        return;
    }
    if (a == s->fut) {
        s->rc[0] = afut_task_await(t, s->fut2);
        return;
    }
    void *v;
    afut_result(a, &v);
    afut_set_result(t, v, NULL);
}

TEST(test_cancel_task_ignoring) {
    afut_loop_t *loop = new_loop();
    script_t s = {.fn = s_ignore};
    s.fut = afut_loop_create_future(loop);
    s.fut2 = afut_loop_create_future(loop);
    afut_t *t = afut_task_new(loop, step, &s, NULL);
    run1(loop);
    CHECK(afut_cancel(t, NULL));
    runn(loop, 2);
    CHECK_EQ_INT(s.rc[0], AFUT_OK);
    CHECK(!afut_cancelled(s.fut2)); /* the cancellation was delivered and swallowed */
    CHECK(!afut_done(t));
    afut_set_result(s.fut2, (void *)(intptr_t)3, NULL);
    CHECK_EQ_INT(afut_loop_run_until_complete(loop, t), AFUT_OK);
    void *v;
    afut_result(t, &v);
    CHECK(v == (void *)(intptr_t)3);
    afut_unref(t);
    afut_unref(s.fut);
    afut_unref(s.fut2);
    afut_loop_free(loop);
}

/* T4: cancelling the inner future cancels the task (test_cancel_inner_future); its message
 * becomes the task's. */
TEST(test_cancel_inner_future) {
    afut_loop_t *loop = new_loop();
    script_t s = {.fn = s_await_fut};
    s.fut = afut_loop_create_future(loop);
    afut_t *t = afut_task_new(loop, step, &s, NULL);
    run1(loop);
    CHECK(afut_cancel(s.fut, "inner"));
    CHECK_EQ_INT(afut_loop_run_until_complete(loop, t), AFUT_ERR_CANCELLED);
    CHECK_STR(afut_cancel_message(t), "inner");
    CHECK_EQ_INT(afut_task_cancelling(t), 0);
    afut_unref(t);
    afut_unref(s.fut);
    afut_loop_free(loop);
}

/* T4: inner cancelled, then the task: the task's request stays pending (the waiter refused
 * it), and the task ends cancelled (test_cancel_both_task_and_inner_future). */
TEST(test_cancel_both_task_and_inner_future) {
    afut_loop_t *loop = new_loop();
    script_t s = {.fn = s_await_fut};
    s.fut = afut_loop_create_future(loop);
    afut_t *t = afut_task_new(loop, step, &s, NULL);
    run1(loop);
    CHECK(afut_cancel(s.fut, "inner"));
    CHECK(afut_cancel(t, "outer"));
    CHECK(afut_task_cancel_requested(t, NULL));
    CHECK_EQ_INT(afut_loop_run_until_complete(loop, t), AFUT_ERR_CANCELLED);
    CHECK_STR(afut_cancel_message(t), "outer");
    afut_unref(t);
    afut_unref(s.fut);
    afut_loop_free(loop);
}

/* T4: a task cancelling itself inside its step (test_cancel_current_task); a result set
 * after that is refused (test_cancel_at_end). */
static void s_cancel_self(script_t *s, afut_t *t, afut_t *a) {
    (void)a;
    s->rc[0] = afut_cancel(t, "self") ? 1 : 0;
    s->rc[1] = afut_set_result(t, s, value_free);
}

TEST(test_cancel_current_task) {
    afut_loop_t *loop = new_loop();
    script_t s = {.fn = s_cancel_self};
    afut_t *t = afut_task_new(loop, step, &s, NULL);
    CHECK_EQ_INT(afut_loop_run_until_complete(loop, t), AFUT_ERR_CANCELLED);
    CHECK_EQ_INT(s.rc[0], 1);
    CHECK_EQ_INT(s.rc[1], AFUT_ERR_CANCELLED);
    CHECK_EQ_INT(s.value_frees, 0);
    CHECK_STR(afut_cancel_message(t), "self");
    afut_unref(t);
    afut_loop_free(loop);
}

/* T4 / T2: a cancel request pending when the step awaits cancels the awaited future at once
 * (asyncio: "if _must_cancel, cancel the waiter now"). */
static void s_yield_then_await(script_t *s, afut_t *t, afut_t *a) {
    if (s->steps == 1) return; /* yield */
    if (!a) {
        s->rc[0] = afut_task_await(t, s->fut);
        s->rc[1] = afut_cancelled(s->fut) ? 1 : 0;
        s->rc[2] = afut_task_cancel_requested(t, NULL) ? 1 : 0;
    }
}

TEST(test_pending_cancel_cancels_next_await) {
    afut_loop_t *loop = new_loop();
    script_t s = {.fn = s_yield_then_await};
    s.fut = afut_loop_create_future(loop);
    afut_t *t = afut_task_new(loop, step, &s, NULL);
    run1(loop); /* yields */
    CHECK(afut_cancel(t, "while yielding"));
    CHECK(afut_task_cancel_requested(t, NULL));
    run1(loop); /* awaits: the future is cancelled at once */
    CHECK_EQ_INT(s.rc[0], AFUT_OK);
    CHECK_EQ_INT(s.rc[1], 1);
    CHECK_EQ_INT(s.rc[2], 0);
    CHECK_STR(afut_cancel_message(s.fut), "while yielding");
    CHECK_EQ_INT(afut_loop_run_until_complete(loop, t), AFUT_ERR_CANCELLED);
    CHECK_STR(afut_cancel_message(t), "while yielding");
    afut_unref(t);
    afut_unref(s.fut);
    afut_loop_free(loop);
}

/* T4: a task awaiting another task: cancelling the outer one cancels the inner task, which
 * cancels what it awaits; both end cancelled (test_cancel_awaited_task, bpo-34872). */
static void s_await_other(script_t *s, afut_t *t, afut_t *a) {
    if (!a) {
        afut_task_await(t, s->other);
        return;
    }
    /* returns: cancelled if `a` was cancelled */
}

TEST(test_cancel_awaited_task) {
    afut_loop_t *loop = new_loop();
    script_t inner = {.fn = s_await_fut};
    inner.fut = afut_loop_create_future(loop);
    afut_t *ti = afut_task_new(loop, step, &inner, NULL);
    script_t outer = {.fn = s_await_other, .other = ti};
    afut_t *to = afut_task_new(loop, step, &outer, NULL);
    run1(loop);
    CHECK(afut_cancel(to, "bye"));
    CHECK(!afut_done(ti));
    CHECK(afut_cancelled(inner.fut)); /* propagated through the inner task, at once */
    CHECK_EQ_INT(afut_loop_run_until_complete(loop, to), AFUT_ERR_CANCELLED);
    CHECK(afut_cancelled(ti));
    CHECK_STR(afut_cancel_message(ti), "bye");
    CHECK_STR(afut_cancel_message(to), "bye");
    afut_unref(to);
    afut_unref(ti);
    afut_unref(inner.fut);
    afut_loop_free(loop);
}

/* T4: repeated cancel on a pending task returns true every time and counts (test_cancelling);
 * T5: cancelling() / uncancel() (test_uncancel_basic, test_uncancel_resets_must_cancel). */
static void s_uncancel(script_t *s, afut_t *t, afut_t *a) {
    (void)a;
    s->rc[0] = afut_task_cancelling(t);
    s->rc[1] = afut_task_uncancel(t);
    s->rc[2] = afut_task_cancel_requested(t, NULL) ? 1 : 0;
    s->rc[3] = afut_task_uncancel(t);
    s->rc[4] = afut_task_cancel_requested(t, NULL) ? 1 : 0;
    s->rc[5] = afut_task_uncancel(t); /* never below 0 */
    s->rc[6] = afut_set_result(t, NULL, NULL); /* the request was withdrawn */
}

TEST(test_cancelling_and_uncancel) {
    afut_loop_t *loop = new_loop();
    script_t s = {.fn = s_uncancel};
    afut_t *t = afut_task_new(loop, step, &s, NULL);
    CHECK_EQ_INT(afut_task_cancelling(t), 0);
    CHECK(afut_cancel(t, NULL));
    CHECK(afut_cancel(t, "second"));
    CHECK_EQ_INT(afut_task_cancelling(t), 2);
    /* T5: the repr says "cancelling" while cancel requests are pending */
    char buf[64];
    afut_describe(t, buf, sizeof buf);
    CHECK_STR(buf, "<Task cancelling>");
    CHECK_EQ_INT(afut_loop_run_until_complete(loop, t), AFUT_OK);
    CHECK_EQ_INT(s.rc[0], 2);
    CHECK_EQ_INT(s.rc[1], 1);
    CHECK_EQ_INT(s.rc[2], 1); /* still pending at 1 */
    CHECK_EQ_INT(s.rc[3], 0);
    CHECK_EQ_INT(s.rc[4], 0); /* reset at 0 (3.13) */
    CHECK_EQ_INT(s.rc[5], 0);
    CHECK_EQ_INT(s.rc[6], AFUT_OK);
    CHECK(!afut_cancelled(t));
    CHECK(!afut_cancel(t, NULL)); /* done */
    CHECK_EQ_INT(afut_task_cancelling(t), 0);
    afut_unref(t);
    afut_loop_free(loop);
}

/* afut_task_take_cancel: a binding takes a pending request (asyncio throws CancelledError into
 * the coroutine and clears _must_cancel); the step then goes on as if it had swallowed it:
 * returning yields, completing works; afut_cancel on itself ends it cancelled after all. */
static void s_take(script_t *s, afut_t *t, afut_t *a) {
    (void)a;
    if (s->steps == 1) return; /* yield */
    if (s->steps == 2) {
        const char *m = NULL;
        s->rc[0] = afut_task_take_cancel(t, &m) ? 1 : 0;
        s->seen_msg = m;
        s->rc[1] = afut_task_cancel_requested(t, NULL) ? 1 : 0;
        s->rc[2] = afut_task_take_cancel(t, NULL) ? 1 : 0; /* nothing left */
        return; /* yields: the request was swallowed */
    }
    if (s->value == 0) {
        s->rc[3] = afut_set_result(t, NULL, NULL);
    } else {
        afut_cancel(t, "after all"); /* "re-raise" */
    }
}

TEST(test_take_cancel) {
    for (int reraise = 0; reraise < 2; reraise++) {
        afut_loop_t *loop = new_loop();
        script_t s = {.fn = s_take, .value = reraise};
        afut_t *t = afut_task_new(loop, step, &s, NULL);
        run1(loop);
        CHECK(afut_cancel(t, "taken"));
        CHECK(!afut_task_take_cancel(t, NULL)); /* only from inside the step */
        CHECK(afut_task_cancel_requested(t, NULL));
        run1(loop);
        CHECK_EQ_INT(s.rc[0], 1);
        CHECK_STR(s.seen_msg, "taken");
        CHECK_EQ_INT(s.rc[1], 0);
        CHECK_EQ_INT(s.rc[2], 0);
        CHECK(!afut_done(t));
        afut_status_t rc = afut_loop_run_until_complete(loop, t);
        if (reraise) {
            CHECK_EQ_INT(rc, AFUT_ERR_CANCELLED);
            CHECK_STR(afut_cancel_message(t), "after all");
        } else {
            CHECK_EQ_INT(rc, AFUT_OK);
            CHECK_EQ_INT(s.rc[3], AFUT_OK);
            CHECK_EQ_INT(afut_task_cancelling(t), 1);
        }
        CHECK(!afut_task_take_cancel(NULL, NULL));
        afut_unref(t);
        afut_loop_free(loop);
    }
}

/* ------------------------------------------------------------------------------------ */
/* T6: never-retrieved                                                                  */

/* T6: "Task exception was never retrieved" (test_exception_traceback / the Task flavour of
 * test_tb_logger_*). */
TEST(test_task_exception_never_retrieved) {
    afut_loop_t *loop = new_loop();
    script_t s = {.fn = s_exception};
    afut_t *t = afut_task_new(loop, step, &s, NULL);
    runn(loop, 2);
    CHECK(afut_done(t));
    CHECK_EQ_INT(g_reports, 0);
    afut_unref(t);
    CHECK_EQ_INT(g_reports, 1);
    CHECK_STR(g_report_msg, "Task exception was never retrieved");
    CHECK_EQ_INT(g_report_code, 7);
    afut_loop_free(loop);
}

/* T6: Task.cancel() on a failed task clears the report (test_cancel_done_future-style), and
 * so does reading the exception. */
TEST(test_task_cancel_clears_never_retrieved) {
    afut_loop_t *loop = new_loop();
    script_t s = {.fn = s_exception};
    afut_t *t = afut_task_new(loop, step, &s, NULL);
    runn(loop, 2);
    CHECK(!afut_cancel(t, NULL));
    afut_unref(t);
    script_t s2 = {.fn = s_exception};
    afut_t *t2 = afut_task_new(loop, step, &s2, NULL);
    CHECK_EQ_INT(afut_loop_run_until_complete(loop, t2), AFUT_ERR_EXCEPTION);
    afut_unref(t2);
    CHECK_EQ_INT(g_reports, 0);
    afut_loop_free(loop);
}

/* API.md threads: set_result on a task from another thread while its step runs is refused
 * (only the step's own thread may complete it). */
typedef struct {
    afut_t *task;
    afut_status_t rc;
} thread_arg_t;

static void *other_thread(void *p) {
    thread_arg_t *a = p;
    a->rc = afut_set_result(a->task, NULL, NULL);
    return NULL;
}

static void s_thread_probe(script_t *s, afut_t *t, afut_t *a) {
    (void)a;
    thread_arg_t arg = {.task = t, .rc = 99};
    pthread_t th;
    pthread_create(&th, NULL, other_thread, &arg);
    pthread_join(th, NULL);
    s->rc[0] = arg.rc;
    s->rc[1] = afut_set_result(t, NULL, NULL);
}

TEST(test_set_result_from_other_thread_during_step) {
    afut_loop_t *loop = new_loop();
    script_t s = {.fn = s_thread_probe};
    afut_t *t = afut_task_new(loop, step, &s, NULL);
    CHECK_EQ_INT(afut_loop_run_until_complete(loop, t), AFUT_OK);
    CHECK_EQ_INT(s.rc[0], AFUT_ERR_INVALID_STATE);
    CHECK_EQ_INT(s.rc[1], AFUT_OK);
    afut_unref(t);
    afut_loop_free(loop);
}

/* API.md threads: afut_cancel(task) from another thread while the loop runs: the awaited future
 * is cancelled at once and the loop is woken (RunCoroutineThreadsafeTests.
 * test_run_coroutine_threadsafe_task_cancelled, in spirit). */
static void *cancel_from_thread(void *p) {
    afut_t *t = p;
    afut_wait(t, 0.05); /* let the loop block first (times out) */
    afut_cancel(t, "from thread");
    return NULL;
}

TEST(test_cancel_task_from_other_thread) {
    afut_loop_t *loop = new_loop();
    script_t s = {.fn = s_await_fut};
    s.fut = afut_loop_create_future(loop);
    afut_t *t = afut_task_new(loop, step, &s, NULL);
    pthread_t th;
    pthread_create(&th, NULL, cancel_from_thread, t);
    CHECK_EQ_INT(afut_loop_run_until_complete(loop, t), AFUT_ERR_CANCELLED);
    pthread_join(th, NULL);
    CHECK(afut_cancelled(s.fut));
    CHECK_STR(afut_cancel_message(t), "from thread");
    afut_unref(t);
    afut_unref(s.fut);
    afut_loop_free(loop);
}

/* A task still pending when its loop closes can never run again. The close ends it
 * CANCELLED (message "the loop was closed") and reports "Task was destroyed but it is
 * pending!" (asyncio's report for a pending task that goes away, F15, gh-91887); that also
 * releases the future it awaited, so no task <-> awaited-future cycle outlives the loop. */
TEST(test_task_pending_at_loop_close) {
    afut_loop_t *loop = new_loop();
    script_t s = {.fn = s_await_fut};
    s.fut = afut_loop_create_future(loop);
    afut_t *t = afut_task_new(loop, step, &s, script_free);
    run1(loop);
    CHECK(!afut_done(t));
    g_reports = 0;
    CHECK_EQ_INT(afut_loop_close(loop), AFUT_OK);
    CHECK(afut_cancelled(t));
    CHECK_STR(afut_cancel_message(t), "the loop was closed");
    CHECK_EQ_INT(g_reports, 1);
    CHECK_STR(g_report_msg, "Task was destroyed but it is pending!");
    CHECK_EQ_INT(s.frees, 1); /* its userdata went with it */
    CHECK(!afut_cancel(t, NULL));
    afut_unref(t);
    afut_unref(s.fut);
    afut_loop_free(loop);
}

/* The leak this prevents: a task awaiting a future that nobody will ever complete, both
 * dropped by the application, then the loop freed. Everything must be freed (the C suite
 * runs under valgrind and LeakSanitizer too). */
TEST(test_task_awaiting_forever_is_freed_with_its_loop) {
    afut_loop_t *loop = new_loop();
    script_t s = {.fn = s_await_fut};
    s.fut = afut_loop_create_future(loop);
    afut_t *t = afut_task_new(loop, step, &s, script_free);
    run1(loop);
    afut_unref(t);
    afut_unref(s.fut);
    CHECK_EQ_INT(s.frees, 0); /* still pending: the awaited future keeps the task */
    afut_loop_free(loop);
    CHECK_EQ_INT(s.frees, 1);
}

/* API.md seed example, task flavour: a task whose first step never ran when the loop
 * closes ends cancelled at the close. */
TEST(test_yielding_task_when_loop_closes) {
    afut_loop_t *loop = new_loop();
    script_t s = {.fn = s_nothing};
    afut_t *t = afut_task_new(loop, step, &s, script_free);
    CHECK_EQ_INT(afut_loop_close(loop), AFUT_OK); /* the queued first step is dropped */
    CHECK(afut_cancelled(t));
    CHECK_EQ_INT(s.steps, 0);
    CHECK_EQ_INT(s.frees, 1);
    afut_unref(t);
    CHECK_EQ_INT(s.frees, 1);
    afut_loop_free(loop);
}

int main(void) {
    RUN_T(test_first_step_next_iteration);
    RUN_T(test_task_is_future);
    RUN_T(test_task_set_methods);
    RUN_T(test_task_new_bad_input);
    RUN_T(test_fire_and_forget_task_survives);
    RUN_T(test_task_result_and_exception);
    RUN_T(test_await_latency_one_iteration);
    RUN_T(test_await_done_future);
    RUN_T(test_task_awaits_on_itself_and_other_loop);
    RUN_T(test_yield_is_one_iteration);
    RUN_T(test_sleep_zero_from_task);
    RUN_T(test_cancel_sleeping_task);
    RUN_T(test_cancel_awaiting_task);
    RUN_T(test_cancel_before_start);
    RUN_T(test_cancel_task_catching);
    RUN_T(test_cancel_task_ignoring);
    RUN_T(test_cancel_inner_future);
    RUN_T(test_cancel_both_task_and_inner_future);
    RUN_T(test_cancel_current_task);
    RUN_T(test_pending_cancel_cancels_next_await);
    RUN_T(test_cancel_awaited_task);
    RUN_T(test_cancelling_and_uncancel);
    RUN_T(test_take_cancel);
    RUN_T(test_task_exception_never_retrieved);
    RUN_T(test_task_cancel_clears_never_retrieved);
    RUN_T(test_set_result_from_other_thread_during_step);
    RUN_T(test_cancel_task_from_other_thread);
    RUN_T(test_task_pending_at_loop_close);
    RUN_T(test_task_awaiting_forever_is_freed_with_its_loop);
    RUN_T(test_yielding_task_when_loop_closes);
    TEST_END();
}
