/* C tests for asyncio Future semantics (SEMANTICS.md section 1: F1-F20, the same-loop
 * case of F23, and the checklist R1-R6), written against API.md and the rules the header
 * states on each function.
 *
 * Every test uses a fresh loop and names, in a comment, the CPython test
 * (Lib/test/test_asyncio/test_futures.py unless said otherwise) or the SEMANTICS.md /
 * API.md rule it mirrors. One afut_loop_run_once(loop, 0, &ran) call is one asyncio
 * iteration (BaseEventLoop._run_once). The never-retrieved report (F14, F15, R6) is
 * tested in test_never_retrieved.c.
 *
 * Counters instead of real allocations: a rec_t is used as userdata, value or detail,
 * and rec_free only counts how often the library released it, so "exactly once" and
 * "not at all" can be checked on every path. */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include "afut.h"
#include "test.h"

/* ------------------------------------------------------------------------------------ */
/* Helpers                                                                              */

typedef struct rec {
    int id;            /* logged in g_log when the callback runs */
    int calls;         /* callback invocations */
    int frees;         /* userdata_free / value_free / detail_free invocations */
    int frees_at_call; /* frees seen when the callback last ran (must be 0: freed after) */
    int iter;          /* g_iter when the callback last ran */
    int saw_done;      /* afut_done(fut) inside the callback */
    afut_t *fut;       /* the future the callback last received */
} rec_t;

#define REC(n) {.id = (n)}

static int g_iter;       /* number of run1() calls so far in this test */
static int g_log[128];   /* ids of the callbacks in the order they ran */
static int g_log_len;
static int g_reports;    /* exception-handler calls (none expected in this file) */
static void *g_seen_ud;  /* last userdata seen by capture_done */
static afut_t *g_seen_fut;
static int g_sentinel;   /* address used to detect untouched outputs */

static void log_id(int id) {
    if (g_log_len < (int)(sizeof g_log / sizeof g_log[0])) g_log[g_log_len++] = id;
}

static void reset_log(void) {
    g_log_len = 0;
    g_iter = 0;
    g_seen_ud = NULL;
    g_seen_fut = NULL;
}

static void rec_free(void *p) { ((rec_t *)p)->frees++; }

static void rec_done(afut_t *fut, void *ud) {
    rec_t *r = ud;
    r->calls++;
    r->frees_at_call = r->frees;
    r->iter = g_iter;
    r->fut = fut;
    r->saw_done = afut_done(fut);
    log_id(r->id);
}

/* A second done-callback function, so (fn, userdata) identity can be checked. */
static void rec_done_other(afut_t *fut, void *ud) {
    rec_t *r = ud;
    r->calls++;
    r->iter = g_iter;
    r->fut = fut;
    log_id(r->id + 1000);
}

static void rec_soon(void *ud) {
    rec_t *r = ud;
    r->calls++;
    r->frees_at_call = r->frees;
    r->iter = g_iter;
    log_id(r->id);
}

static void capture_done(afut_t *fut, void *ud) {
    g_seen_fut = fut;
    g_seen_ud = ud;
}

static void quiet_handler(afut_loop_t *loop, const afut_error_context_t *ctx, void *ud) {
    (void)loop;
    (void)ud;
    g_reports++;
    fprintf(stderr, "  (exception handler: %s)\n", ctx && ctx->message ? ctx->message : "?");
}

/* A fresh loop whose exception handler only counts, so no test here prints noise. */
static afut_loop_t *new_loop(void) {
    afut_loop_t *loop = afut_loop_new();
    CHECK(loop != NULL);
    afut_loop_set_exception_handler(loop, quiet_handler, NULL, NULL);
    reset_log();
    g_reports = 0;
    return loop;
}

/* One loop iteration, no waiting; returns *ran_out. */
static size_t run1(afut_loop_t *loop) {
    size_t ran = (size_t)12345;
    g_iter++;
    CHECK_EQ_INT(afut_loop_run_once(loop, 0, &ran), AFUT_OK);
    return ran;
}

#define CHECK_LOG(...)                                                           \
    do {                                                                         \
        const int exp_[] = {__VA_ARGS__};                                        \
        int n_ = (int)(sizeof exp_ / sizeof exp_[0]);                            \
        CHECK_EQ_INT(g_log_len, n_);                                             \
        for (int i_ = 0; i_ < n_ && i_ < g_log_len; i_++) CHECK_EQ_INT(g_log[i_], exp_[i_]); \
    } while (0)

#define CHECK_DESC(fut, want)                                                    \
    do {                                                                         \
        char b_[200];                                                            \
        memset(b_, 'Z', sizeof b_);                                              \
        size_t n_ = afut_describe((fut), b_, sizeof b_);                         \
        CHECK_STR(b_, (want));                                                   \
        CHECK_EQ_INT(n_, strlen(want));                                          \
    } while (0)

/* ------------------------------------------------------------------------------------ */
/* 1.1 State machine                                                                    */

/* test_futures.py BaseFutureTests.test_initial_state (F1) */
TEST(test_initial_state) {
    afut_loop_t *loop = new_loop();
    afut_t *f = afut_loop_create_future(loop);
    CHECK(f != NULL);
    CHECK(!afut_done(f));
    CHECK(!afut_cancelled(f));
    CHECK(afut_cancel_message(f) == NULL);
    CHECK(afut_cancel(f, NULL));
    CHECK(afut_cancelled(f));
    CHECK(afut_done(f));
    afut_unref(f);
    afut_loop_free(loop);
}

/* F16: Future(loop=loop) and loop.create_future(); API.md: afut_new(NULL) is loop-less,
 * afut_loop_create_future(NULL) is NULL (header). */
TEST(test_constructors) {
    afut_loop_t *loop = new_loop();
    afut_t *a = afut_new(loop);
    afut_t *b = afut_loop_create_future(loop);
    afut_t *c = afut_new(NULL);
    CHECK(a != NULL && b != NULL && c != NULL);
    CHECK(a != b);
    CHECK(afut_get_loop(a) == loop);
    CHECK(afut_get_loop(b) == loop);
    CHECK(afut_get_loop(c) == NULL);
    CHECK(!afut_done(a) && !afut_done(b) && !afut_done(c));
    CHECK(!afut_cancelled(a) && !afut_cancelled(b) && !afut_cancelled(c));
    CHECK(afut_loop_create_future(NULL) == NULL);
    afut_unref(a);
    afut_unref(b);
    afut_unref(c);
    afut_loop_free(loop);
}

/* test_futures.py BaseFutureTests.test_cancel (F2 cancel row, F12) */
TEST(test_cancel) {
    afut_loop_t *loop = new_loop();
    afut_t *f = afut_loop_create_future(loop);
    rec_t val = REC(1), det = REC(2);
    CHECK(afut_cancel(f, NULL));
    CHECK(afut_cancelled(f));
    CHECK(afut_done(f));
    void *out = NULL;
    CHECK_EQ_INT(afut_result(f, &out), AFUT_ERR_CANCELLED);
    afut_exception_t e;
    CHECK_EQ_INT(afut_exception(f, &e), AFUT_ERR_CANCELLED);
    CHECK_EQ_INT(afut_set_result(f, &val, rec_free), AFUT_ERR_INVALID_STATE);
    CHECK_EQ_INT(afut_set_exception(f, 3, "x", &det, rec_free), AFUT_ERR_INVALID_STATE);
    CHECK(!afut_cancel(f, NULL));
    CHECK(afut_cancelled(f));
    afut_unref(f);
    afut_loop_free(loop);
    CHECK_EQ_INT(val.frees, 0);
    CHECK_EQ_INT(det.frees, 0);
}

/* test_futures.py BaseFutureTests.test_result (F2 result row) */
TEST(test_result) {
    afut_loop_t *loop = new_loop();
    afut_t *f = afut_loop_create_future(loop);
    rec_t val = REC(42), other = REC(2), det = REC(3);
    void *out = &g_sentinel;
    CHECK_EQ_INT(afut_result(f, &out), AFUT_ERR_INVALID_STATE);
    CHECK(out == &g_sentinel);
    CHECK_EQ_INT(afut_set_result(f, &val, rec_free), AFUT_OK);
    CHECK(!afut_cancelled(f));
    CHECK(afut_done(f));
    CHECK_EQ_INT(afut_result(f, &out), AFUT_OK);
    CHECK(out == &val);
    afut_exception_t e = {.code = 99, .message = "sentinel", .detail = &g_sentinel};
    CHECK_EQ_INT(afut_exception(f, &e), AFUT_OK);
    CHECK_EQ_INT(e.code, 0);
    CHECK(e.message == NULL); /* header: "(and NULL message and detail)" */
    CHECK(e.detail == NULL);
    CHECK_EQ_INT(afut_set_result(f, &other, rec_free), AFUT_ERR_INVALID_STATE);
    CHECK_EQ_INT(afut_set_exception(f, 3, "x", &det, rec_free), AFUT_ERR_INVALID_STATE);
    CHECK(!afut_cancel(f, NULL));
    CHECK(!afut_cancelled(f));
    out = NULL;
    CHECK_EQ_INT(afut_result(f, &out), AFUT_OK);
    CHECK(out == &val);
    CHECK_EQ_INT(val.frees, 0);
    afut_unref(f);
    CHECK_EQ_INT(val.frees, 1);
    afut_loop_free(loop);
    CHECK_EQ_INT(val.frees, 1);
    CHECK_EQ_INT(other.frees, 0);
    CHECK_EQ_INT(det.frees, 0);
}

/* test_futures.py BaseFutureTests.test_exception (F2 exception row) */
TEST(test_exception) {
    afut_loop_t *loop = new_loop();
    afut_t *f = afut_loop_create_future(loop);
    rec_t det = REC(1), val = REC(2), det2 = REC(3);
    afut_exception_t e = {.code = 99};
    CHECK_EQ_INT(afut_exception(f, &e), AFUT_ERR_INVALID_STATE);
    CHECK_EQ_INT(e.code, 99);
    CHECK_EQ_INT(afut_set_exception(f, 7, "boom", &det, rec_free), AFUT_OK);
    CHECK(!afut_cancelled(f));
    CHECK(afut_done(f));
    void *out = &g_sentinel;
    CHECK_EQ_INT(afut_result(f, &out), AFUT_ERR_EXCEPTION);
    CHECK(out == &g_sentinel);
    CHECK_EQ_INT(afut_exception(f, &e), AFUT_OK);
    CHECK_EQ_INT(e.code, 7);
    CHECK_STR(e.message, "boom");
    CHECK(e.detail == &det);
    CHECK_EQ_INT(afut_set_result(f, &val, rec_free), AFUT_ERR_INVALID_STATE);
    CHECK_EQ_INT(afut_set_exception(f, 8, "other", &det2, rec_free), AFUT_ERR_INVALID_STATE);
    CHECK(!afut_cancel(f, NULL));
    CHECK(!afut_cancelled(f));
    memset(&e, 0, sizeof e);
    CHECK_EQ_INT(afut_exception(f, &e), AFUT_OK);
    CHECK_EQ_INT(e.code, 7);
    CHECK_STR(e.message, "boom");
    CHECK(e.detail == &det);
    CHECK_EQ_INT(det.frees, 0);
    afut_unref(f);
    CHECK_EQ_INT(det.frees, 1);
    afut_loop_free(loop);
    CHECK_EQ_INT(det.frees, 1);
    CHECK_EQ_INT(val.frees, 0);
    CHECK_EQ_INT(det2.frees, 0);
    CHECK_EQ_INT(g_reports, 0);
}

/* F2, the PENDING column: every row; the three completion cells each move to their end
 * state and schedule (not run) the callbacks. */
TEST(test_f2_pending_column) {
    afut_loop_t *loop = new_loop();
    afut_t *f = afut_loop_create_future(loop);
    CHECK(!afut_done(f));
    CHECK(!afut_cancelled(f));
    void *out = &g_sentinel;
    CHECK_EQ_INT(afut_result(f, &out), AFUT_ERR_INVALID_STATE);
    CHECK(out == &g_sentinel);
    afut_exception_t e = {.code = 12345, .message = "sentinel", .detail = &g_sentinel};
    CHECK_EQ_INT(afut_exception(f, &e), AFUT_ERR_INVALID_STATE);
    CHECK_EQ_INT(e.code, 12345);
    CHECK_STR(e.message, "sentinel");
    CHECK(e.detail == &g_sentinel);
    /* add_done_callback: appended; remove_done_callback: removes, returns the count */
    rec_t cb = REC(1);
    CHECK_EQ_INT(afut_add_done_callback(f, rec_done, &cb, rec_free), AFUT_OK);
    CHECK_EQ_INT(afut_remove_done_callback(f, rec_done, &cb), 1);
    CHECK_EQ_INT(cb.frees, 1);
    CHECK_EQ_INT(afut_remove_done_callback(f, rec_done, &cb), 0);
    CHECK_EQ_INT(run1(loop), 0);
    CHECK_EQ_INT(cb.calls, 0);
    CHECK(!afut_done(f));

    /* set_result / set_exception / cancel on three pending futures */
    afut_t *fr = afut_loop_create_future(loop);
    afut_t *fe = afut_loop_create_future(loop);
    afut_t *fc = afut_loop_create_future(loop);
    rec_t cr = REC(10), ce = REC(11), cc = REC(12), val = REC(20), det = REC(21);
    CHECK_EQ_INT(afut_add_done_callback(fr, rec_done, &cr, rec_free), AFUT_OK);
    CHECK_EQ_INT(afut_add_done_callback(fe, rec_done, &ce, rec_free), AFUT_OK);
    CHECK_EQ_INT(afut_add_done_callback(fc, rec_done, &cc, rec_free), AFUT_OK);
    CHECK_EQ_INT(afut_set_result(fr, &val, rec_free), AFUT_OK);
    CHECK_EQ_INT(afut_set_exception(fe, 4, "err", &det, rec_free), AFUT_OK);
    CHECK(afut_cancel(fc, NULL));
    CHECK(afut_done(fr) && !afut_cancelled(fr));
    CHECK(afut_done(fe) && !afut_cancelled(fe));
    CHECK(afut_done(fc) && afut_cancelled(fc));
    CHECK_EQ_INT(cr.calls + ce.calls + cc.calls, 0);
    CHECK_EQ_INT(run1(loop), 3);
    CHECK_LOG(10, 11, 12);
    CHECK(cr.fut == fr && ce.fut == fe && cc.fut == fc);
    CHECK_EQ_INT(afut_exception(fe, NULL), AFUT_OK);
    afut_unref(f);
    afut_unref(fr);
    afut_unref(fe);
    afut_unref(fc);
    afut_loop_free(loop);
    CHECK_EQ_INT(val.frees, 1);
    CHECK_EQ_INT(det.frees, 1);
    CHECK_EQ_INT(cr.frees + ce.frees + cc.frees, 3);
    CHECK_EQ_INT(g_reports, 0);
}

enum fstate { ST_RESULT, ST_EXCEPTION, ST_CANCELLED };

/* F2, one done column: done()/cancelled()/result()/exception() give the table's answer
 * with the exact status codes, outputs are untouched on error, set_result/set_exception
 * give ERR_INVALID_STATE without taking ownership, cancel() is false, add_done_callback
 * schedules (not inline) and remove_done_callback returns 0. */
static void check_done_column(enum fstate st) {
    afut_loop_t *loop = new_loop();
    afut_t *f = afut_loop_create_future(loop);
    rec_t val = REC(1), det = REC(2);
    switch (st) {
    case ST_RESULT: CHECK_EQ_INT(afut_set_result(f, &val, rec_free), AFUT_OK); break;
    case ST_EXCEPTION: CHECK_EQ_INT(afut_set_exception(f, 7, "boom", &det, rec_free), AFUT_OK); break;
    case ST_CANCELLED: CHECK(afut_cancel(f, "stop")); break;
    }
    char before[200], after[200];
    afut_describe(f, before, sizeof before);

    CHECK(afut_done(f));
    CHECK_EQ_INT(afut_cancelled(f), st == ST_CANCELLED);

    void *out = &g_sentinel;
    int32_t want_res = st == ST_RESULT      ? AFUT_OK
                       : st == ST_EXCEPTION ? AFUT_ERR_EXCEPTION
                                            : AFUT_ERR_CANCELLED;
    CHECK_EQ_INT(afut_result(f, &out), want_res);
    CHECK(out == (st == ST_RESULT ? (void *)&val : (void *)&g_sentinel));

    afut_exception_t e = {.code = 12345, .message = "sentinel", .detail = &g_sentinel};
    int32_t want_exc = st == ST_CANCELLED ? AFUT_ERR_CANCELLED : AFUT_OK;
    CHECK_EQ_INT(afut_exception(f, &e), want_exc);
    if (st == ST_RESULT) {
        CHECK_EQ_INT(e.code, 0);
    } else if (st == ST_EXCEPTION) {
        CHECK_EQ_INT(e.code, 7);
        CHECK_STR(e.message, "boom");
        CHECK(e.detail == &det);
    } else {
        CHECK_EQ_INT(e.code, 12345);
        CHECK_STR(e.message, "sentinel");
        CHECK(e.detail == &g_sentinel);
    }

    rec_t v2 = REC(3), d2 = REC(4);
    CHECK_EQ_INT(afut_set_result(f, &v2, rec_free), AFUT_ERR_INVALID_STATE);
    CHECK_EQ_INT(afut_set_exception(f, 9, "no", &d2, rec_free), AFUT_ERR_INVALID_STATE);
    CHECK(!afut_cancel(f, "late"));
    CHECK_EQ_INT(afut_cancelled(f), st == ST_CANCELLED);
    if (st == ST_CANCELLED) CHECK_STR(afut_cancel_message(f), "stop");
    else CHECK(afut_cancel_message(f) == NULL);

    rec_t cb = REC(5);
    CHECK_EQ_INT(afut_add_done_callback(f, rec_done, &cb, rec_free), AFUT_OK);
    CHECK_EQ_INT(cb.calls, 0);
    CHECK_EQ_INT(afut_remove_done_callback(f, rec_done, &cb), 0);
    CHECK_EQ_INT(cb.frees, 0);
    afut_describe(f, after, sizeof after);
    CHECK_STR(after, before);

    CHECK_EQ_INT(run1(loop), 1);
    CHECK_EQ_INT(cb.calls, 1);
    CHECK(cb.fut == f);
    CHECK_EQ_INT(cb.frees, 1);

    /* nothing changed: the same outcome again */
    out = NULL;
    CHECK_EQ_INT(afut_result(f, &out), want_res);
    if (st == ST_RESULT) CHECK(out == &val);
    if (st == ST_EXCEPTION) {
        memset(&e, 0, sizeof e);
        CHECK_EQ_INT(afut_exception(f, &e), AFUT_OK);
        CHECK_EQ_INT(e.code, 7);
        CHECK(e.detail == &det);
    }
    afut_unref(f);
    afut_loop_free(loop);
    CHECK_EQ_INT(val.frees, st == ST_RESULT);
    CHECK_EQ_INT(det.frees, st == ST_EXCEPTION);
    CHECK_EQ_INT(v2.frees, 0);
    CHECK_EQ_INT(d2.frees, 0);
    CHECK_EQ_INT(cb.frees, 1);
    CHECK_EQ_INT(g_reports, 0);
}

/* F2, FINISHED (result) column */
TEST(test_f2_finished_result_column) { check_done_column(ST_RESULT); }
/* F2, FINISHED (exception) column */
TEST(test_f2_finished_exception_column) { check_done_column(ST_EXCEPTION); }
/* F2, CANCELLED column */
TEST(test_f2_cancelled_column) { check_done_column(ST_CANCELLED); }

/* R3 / API.md set_result: a completion call on a done future is ERR_INVALID_STATE with
 * no side effect; value_free / detail_free of the rejected call are never called, the
 * caller still owns them (here: frees them itself afterwards). */
TEST(test_rejected_completion_keeps_ownership) {
    afut_loop_t *loop = new_loop();
    for (int st = ST_RESULT; st <= ST_CANCELLED; st++) {
        afut_t *f = afut_loop_create_future(loop);
        rec_t orig = REC(1);
        if (st == ST_RESULT) CHECK_EQ_INT(afut_set_result(f, &orig, rec_free), AFUT_OK);
        if (st == ST_EXCEPTION) CHECK_EQ_INT(afut_set_exception(f, 2, "first", &orig, rec_free), AFUT_OK);
        if (st == ST_CANCELLED) CHECK(afut_cancel(f, NULL));
        /* heap values, as a real caller would pass: the caller frees them on error */
        rec_t *v = calloc(1, sizeof *v);
        rec_t *d = calloc(1, sizeof *d);
        CHECK(v && d);
        for (int i = 0; i < 3; i++) {
            CHECK_EQ_INT(afut_set_result(f, v, rec_free), AFUT_ERR_INVALID_STATE);
            CHECK_EQ_INT(afut_set_exception(f, 3, "second", d, rec_free), AFUT_ERR_INVALID_STATE);
            CHECK(!afut_cancel(f, "third"));
        }
        CHECK_EQ_INT(afut_cancelled(f), st == ST_CANCELLED);
        CHECK(afut_cancel_message(f) == NULL);
        void *out = NULL;
        afut_exception_t e = {0};
        if (st == ST_RESULT) {
            CHECK_EQ_INT(afut_result(f, &out), AFUT_OK);
            CHECK(out == &orig);
        } else if (st == ST_EXCEPTION) {
            CHECK_EQ_INT(afut_exception(f, &e), AFUT_OK);
            CHECK_EQ_INT(e.code, 2);
            CHECK_STR(e.message, "first");
            CHECK(e.detail == &orig);
        } else {
            CHECK_EQ_INT(afut_result(f, &out), AFUT_ERR_CANCELLED);
        }
        afut_unref(f);
        CHECK_EQ_INT(orig.frees, st != ST_CANCELLED);
        CHECK_EQ_INT(v->frees, 0);
        CHECK_EQ_INT(d->frees, 0);
        free(v);
        free(d);
    }
    afut_loop_free(loop);
    CHECK_EQ_INT(g_reports, 0);
}

/* header: afut_set_exception with code 0 is ERR_INVALID_ARGUMENT; nothing changes and the
 * detail stays the caller's (API.md Conventions: bad input changes nothing). */
TEST(test_set_exception_code_zero) {
    afut_loop_t *loop = new_loop();
    afut_t *f = afut_loop_create_future(loop);
    rec_t det = REC(1), cb = REC(2);
    CHECK_EQ_INT(afut_add_done_callback(f, rec_done, &cb, rec_free), AFUT_OK);
    CHECK_EQ_INT(afut_set_exception(f, 0, "zero", &det, rec_free), AFUT_ERR_INVALID_ARGUMENT);
    CHECK(!afut_done(f));
    CHECK_EQ_INT(det.frees, 0);
    CHECK_EQ_INT(run1(loop), 0);
    CHECK_EQ_INT(cb.calls, 0);
    /* the future is still usable */
    CHECK_EQ_INT(afut_set_exception(f, -5, "neg", &det, rec_free), AFUT_OK);
    afut_exception_t e = {0};
    CHECK_EQ_INT(afut_exception(f, &e), AFUT_OK);
    CHECK_EQ_INT(e.code, -5);
    CHECK_EQ_INT(run1(loop), 1);
    CHECK_EQ_INT(cb.calls, 1);
    afut_unref(f);
    afut_loop_free(loop);
    CHECK_EQ_INT(det.frees, 1);
    CHECK_EQ_INT(cb.frees, 1);
}

/* API.md Ownership: value_free is called exactly once, when the last reference goes,
 * not at set_result nor at result(); afut_ref returns its argument. */
TEST(test_value_free_once) {
    afut_loop_t *loop = new_loop();
    afut_t *f = afut_loop_create_future(loop);
    rec_t val = REC(1);
    CHECK_EQ_INT(afut_set_result(f, &val, rec_free), AFUT_OK);
    CHECK_EQ_INT(val.frees, 0);
    for (int i = 0; i < 3; i++) {
        void *out = NULL;
        CHECK_EQ_INT(afut_result(f, &out), AFUT_OK);
        CHECK(out == &val);
    }
    CHECK_EQ_INT(val.frees, 0);
    afut_t *g = afut_ref(f);
    CHECK(g == f);
    afut_unref(f);
    CHECK_EQ_INT(val.frees, 0);
    CHECK(afut_done(g));
    afut_unref(g);
    CHECK_EQ_INT(val.frees, 1);
    afut_loop_free(loop);
    CHECK_EQ_INT(val.frees, 1);

    /* value_free NULL: the value is simply not freed */
    loop = new_loop();
    f = afut_loop_create_future(loop);
    CHECK_EQ_INT(afut_set_result(f, &val, NULL), AFUT_OK);
    afut_unref(f);
    afut_loop_free(loop);
    CHECK_EQ_INT(val.frees, 1);
}

/* API.md Ownership: detail_free is called exactly once, when the last reference goes */
TEST(test_detail_free_once) {
    afut_loop_t *loop = new_loop();
    afut_t *f = afut_loop_create_future(loop);
    rec_t det = REC(1);
    CHECK_EQ_INT(afut_set_exception(f, 11, "boom", &det, rec_free), AFUT_OK);
    afut_exception_t e = {0};
    CHECK_EQ_INT(afut_exception(f, &e), AFUT_OK);
    CHECK(e.detail == &det);
    CHECK_EQ_INT(afut_result(f, NULL), AFUT_ERR_EXCEPTION);
    CHECK_EQ_INT(det.frees, 0);
    afut_t *g = afut_ref(f);
    afut_unref(f);
    CHECK_EQ_INT(det.frees, 0);
    afut_unref(g);
    CHECK_EQ_INT(det.frees, 1);
    afut_loop_free(loop);
    CHECK_EQ_INT(det.frees, 1);
    CHECK_EQ_INT(g_reports, 0);
}

/* API.md set_exception: "message is copied"; afut_exception_t.message is owned by the
 * future, may be NULL. */
TEST(test_exception_message_copied) {
    afut_loop_t *loop = new_loop();
    afut_t *f = afut_loop_create_future(loop);
    char buf[32];
    strcpy(buf, "boom");
    CHECK_EQ_INT(afut_set_exception(f, 5, buf, NULL, NULL), AFUT_OK);
    memset(buf, 'X', sizeof buf - 1);
    buf[sizeof buf - 1] = '\0';
    afut_exception_t e = {0};
    CHECK_EQ_INT(afut_exception(f, &e), AFUT_OK);
    CHECK_EQ_INT(e.code, 5);
    CHECK_STR(e.message, "boom");
    CHECK(e.detail == NULL);
    const char *first = e.message;
    for (int i = 0; i < 10; i++) {
        CHECK_EQ_INT(afut_exception(f, &e), AFUT_OK);
        CHECK_STR(e.message, "boom");
    }
    CHECK_STR(first, "boom");
    CHECK_DESC(f, "<Future finished exception=code 5: boom>");

    afut_t *g = afut_loop_create_future(loop);
    CHECK_EQ_INT(afut_set_exception(g, 6, NULL, NULL, NULL), AFUT_OK);
    e.message = "sentinel";
    CHECK_EQ_INT(afut_exception(g, &e), AFUT_OK);
    CHECK_EQ_INT(e.code, 6);
    CHECK(e.message == NULL);
    afut_unref(f);
    afut_unref(g);
    afut_loop_free(loop);
    CHECK_EQ_INT(g_reports, 0);
}

/* header: afut_result(fut, NULL) and afut_exception(fut, NULL) are allowed (status only) */
TEST(test_result_exception_null_out) {
    afut_loop_t *loop = new_loop();
    afut_t *p = afut_loop_create_future(loop);
    afut_t *r = afut_loop_create_future(loop);
    afut_t *x = afut_loop_create_future(loop);
    afut_t *c = afut_loop_create_future(loop);
    CHECK_EQ_INT(afut_set_result(r, NULL, NULL), AFUT_OK);
    CHECK_EQ_INT(afut_set_exception(x, 1, "e", NULL, NULL), AFUT_OK);
    CHECK(afut_cancel(c, NULL));
    CHECK_EQ_INT(afut_result(p, NULL), AFUT_ERR_INVALID_STATE);
    CHECK_EQ_INT(afut_exception(p, NULL), AFUT_ERR_INVALID_STATE);
    CHECK_EQ_INT(afut_result(r, NULL), AFUT_OK);
    CHECK_EQ_INT(afut_exception(r, NULL), AFUT_OK);
    CHECK_EQ_INT(afut_result(x, NULL), AFUT_ERR_EXCEPTION);
    CHECK_EQ_INT(afut_exception(x, NULL), AFUT_OK);
    CHECK_EQ_INT(afut_result(c, NULL), AFUT_ERR_CANCELLED);
    CHECK_EQ_INT(afut_exception(c, NULL), AFUT_ERR_CANCELLED);
    void *out = &g_sentinel;
    CHECK_EQ_INT(afut_result(r, &out), AFUT_OK);
    CHECK(out == NULL); /* a NULL result is a result */
    afut_unref(p);
    afut_unref(r);
    afut_unref(x);
    afut_unref(c);
    afut_loop_free(loop);
    CHECK_EQ_INT(g_reports, 0);
}

/* API.md Conventions "Bad input never crashes" + the header's bad-input returns for the
 * future functions; nothing passed in is taken over. */
TEST(test_null_handles) {
    afut_loop_t *loop = new_loop();
    afut_t *f = afut_loop_create_future(loop);
    rec_t v = REC(1), u = REC(2);
    void *out = &g_sentinel;
    afut_exception_t e = {.code = 77};
    CHECK_EQ_INT(afut_set_result(NULL, &v, rec_free), AFUT_ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(afut_set_exception(NULL, 1, "x", &v, rec_free), AFUT_ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(afut_result(NULL, &out), AFUT_ERR_INVALID_ARGUMENT);
    CHECK(out == &g_sentinel);
    CHECK_EQ_INT(afut_exception(NULL, &e), AFUT_ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(e.code, 77);
    CHECK(!afut_done(NULL));
    CHECK(!afut_cancelled(NULL));
    CHECK(!afut_cancel(NULL, "x"));
    CHECK(afut_cancel_message(NULL) == NULL);
    CHECK_EQ_INT(afut_add_done_callback(NULL, rec_done, &u, rec_free), AFUT_ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(afut_add_done_callback(f, NULL, &u, rec_free), AFUT_ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(afut_remove_done_callback(NULL, rec_done, &u), 0);
    CHECK_EQ_INT(afut_remove_done_callback(f, NULL, &u), 0);
    CHECK(afut_get_loop(NULL) == NULL);
    CHECK(afut_ref(NULL) == NULL);
    afut_unref(NULL);
    CHECK(!afut_isfuture(NULL));
    CHECK_DESC(NULL, "<NULL>");
    CHECK_EQ_INT(v.frees, 0);
    CHECK_EQ_INT(u.frees, 0);
    CHECK(!afut_done(f));
    CHECK_DESC(f, "<Future pending>");
    afut_unref(f);
    afut_loop_free(loop);
    CHECK_EQ_INT(u.calls, 0);
    CHECK_EQ_INT(u.frees, 0);
}

/* ------------------------------------------------------------------------------------ */
/* 1.2 Callbacks                                                                        */

/* test_futures.py BaseFutureDoneCallbackTests.test_callbacks_invoked_on_set_result
 * (F4, R2): not inline, next iteration, FIFO, userdata_free after the run. */
TEST(test_callbacks_invoked_on_set_result) {
    afut_loop_t *loop = new_loop();
    afut_t *f = afut_loop_create_future(loop);
    rec_t a = REC(42), b = REC(17), c = REC(100);
    CHECK_EQ_INT(afut_add_done_callback(f, rec_done, &a, rec_free), AFUT_OK);
    CHECK_EQ_INT(afut_add_done_callback(f, rec_done, &b, rec_free), AFUT_OK);
    CHECK_EQ_INT(afut_add_done_callback(f, rec_done, &c, rec_free), AFUT_OK);
    CHECK_EQ_INT(afut_set_result(f, &g_sentinel, NULL), AFUT_OK);
    CHECK_EQ_INT(g_log_len, 0);
    CHECK_EQ_INT(a.calls + b.calls + c.calls, 0);
    CHECK_EQ_INT(a.frees + b.frees + c.frees, 0);
    CHECK_EQ_INT(run1(loop), 3);
    CHECK_LOG(42, 17, 100);
    CHECK(a.fut == f && b.fut == f && c.fut == f);
    CHECK(a.saw_done && b.saw_done && c.saw_done);
    CHECK_EQ_INT(a.frees_at_call + b.frees_at_call + c.frees_at_call, 0);
    CHECK_EQ_INT(a.frees, 1);
    CHECK_EQ_INT(b.frees, 1);
    CHECK_EQ_INT(c.frees, 1);
    CHECK_EQ_INT(run1(loop), 0);
    CHECK_EQ_INT(g_log_len, 3);
    void *out = NULL;
    CHECK_EQ_INT(afut_result(f, &out), AFUT_OK);
    CHECK(out == &g_sentinel);
    afut_unref(f);
    afut_loop_free(loop);
    CHECK_EQ_INT(a.frees + b.frees + c.frees, 3);
}

/* test_futures.py BaseFutureDoneCallbackTests.test_callbacks_invoked_on_set_exception (F4) */
TEST(test_callbacks_invoked_on_set_exception) {
    afut_loop_t *loop = new_loop();
    afut_t *f = afut_loop_create_future(loop);
    rec_t a = REC(1), b = REC(2);
    CHECK_EQ_INT(afut_add_done_callback(f, rec_done, &a, rec_free), AFUT_OK);
    CHECK_EQ_INT(afut_add_done_callback(f, rec_done, &b, rec_free), AFUT_OK);
    CHECK_EQ_INT(afut_set_exception(f, 3, "err", NULL, NULL), AFUT_OK);
    CHECK_EQ_INT(g_log_len, 0);
    CHECK_EQ_INT(run1(loop), 2);
    CHECK_LOG(1, 2);
    CHECK(a.fut == f && b.fut == f);
    afut_exception_t e = {0};
    CHECK_EQ_INT(afut_exception(f, &e), AFUT_OK);
    CHECK_EQ_INT(e.code, 3);
    afut_unref(f);
    afut_loop_free(loop);
    CHECK_EQ_INT(a.frees + b.frees, 2);
    CHECK_EQ_INT(g_reports, 0);
}

/* F2 cancel cell ("schedule callbacks") + F4: cancel() schedules, never inline */
TEST(test_callbacks_invoked_on_cancel) {
    afut_loop_t *loop = new_loop();
    afut_t *f = afut_loop_create_future(loop);
    rec_t a = REC(1), b = REC(2);
    CHECK_EQ_INT(afut_add_done_callback(f, rec_done, &a, rec_free), AFUT_OK);
    CHECK_EQ_INT(afut_add_done_callback(f, rec_done, &b, rec_free), AFUT_OK);
    CHECK(afut_cancel(f, "bye"));
    CHECK_EQ_INT(g_log_len, 0);
    CHECK_EQ_INT(run1(loop), 2);
    CHECK_LOG(1, 2);
    CHECK(a.fut == f && b.fut == f);
    CHECK(a.saw_done && b.saw_done);
    afut_unref(f);
    afut_loop_free(loop);
    CHECK_EQ_INT(a.frees + b.frees, 2);
}

/* F6 [X]: add_done_callback on an already-done future is call_soon(fn, fut): not inline,
 * for every done state. */
TEST(test_add_done_callback_on_done_not_inline) {
    afut_loop_t *loop = new_loop();
    afut_t *fs[3];
    rec_t recs[3] = {REC(1), REC(2), REC(3)};
    for (int i = 0; i < 3; i++) fs[i] = afut_loop_create_future(loop);
    CHECK_EQ_INT(afut_set_result(fs[0], NULL, NULL), AFUT_OK);
    CHECK_EQ_INT(afut_set_exception(fs[1], 9, NULL, NULL, NULL), AFUT_OK);
    CHECK(afut_cancel(fs[2], NULL));
    CHECK_EQ_INT(afut_exception(fs[1], NULL), AFUT_OK);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ_INT(afut_add_done_callback(fs[i], rec_done, &recs[i], rec_free), AFUT_OK);
        CHECK_EQ_INT(recs[i].calls, 0);
        CHECK_EQ_INT(recs[i].frees, 0);
    }
    CHECK_EQ_INT(run1(loop), 3);
    CHECK_LOG(1, 2, 3);
    for (int i = 0; i < 3; i++) {
        CHECK(recs[i].fut == fs[i]);
        CHECK_EQ_INT(recs[i].iter, 1);
        CHECK_EQ_INT(recs[i].frees, 1);
        afut_unref(fs[i]);
    }
    afut_loop_free(loop);
}

/* F10 / API.md afut_done_fn: each callback gets the future pointer and its own userdata */
TEST(test_callback_receives_future_and_userdata) {
    afut_loop_t *loop = new_loop();
    afut_t *f = afut_loop_create_future(loop);
    int token = 7;
    CHECK_EQ_INT(afut_add_done_callback(f, capture_done, &token, NULL), AFUT_OK);
    CHECK_EQ_INT(afut_set_result(f, NULL, NULL), AFUT_OK);
    CHECK(g_seen_fut == NULL);
    run1(loop);
    CHECK(g_seen_fut == f);
    CHECK(g_seen_ud == &token);
    /* NULL userdata is passed through as NULL */
    afut_t *g = afut_loop_create_future(loop);
    g_seen_ud = &g_sentinel;
    CHECK_EQ_INT(afut_add_done_callback(g, capture_done, NULL, NULL), AFUT_OK);
    CHECK(afut_cancel(g, NULL));
    run1(loop);
    CHECK(g_seen_fut == g);
    CHECK(g_seen_ud == NULL);
    afut_unref(f);
    afut_unref(g);
    afut_loop_free(loop);
}

/* F4 FIFO: registration order, duplicates included (each entry runs and is freed) */
TEST(test_callbacks_fifo_with_duplicates) {
    afut_loop_t *loop = new_loop();
    afut_t *f = afut_loop_create_future(loop);
    rec_t a = REC(1), b = REC(2), c = REC(3);
    rec_t *order[] = {&a, &b, &a, &c, &a, &b};
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++)
        CHECK_EQ_INT(afut_add_done_callback(f, rec_done, order[i], rec_free), AFUT_OK);
    CHECK_EQ_INT(afut_set_result(f, NULL, NULL), AFUT_OK);
    CHECK_EQ_INT(run1(loop), 6);
    CHECK_LOG(1, 2, 1, 3, 1, 2);
    CHECK_EQ_INT(a.calls, 3);
    CHECK_EQ_INT(a.frees, 3);
    CHECK_EQ_INT(b.frees, 2);
    CHECK_EQ_INT(c.frees, 1);
    afut_unref(f);
    afut_loop_free(loop);
}

/* F5 [X]: [call_soon before set, A, B, call_soon after set] in one iteration */
TEST(test_f5_completion_is_one_fifo_run) {
    afut_loop_t *loop = new_loop();
    afut_t *f = afut_loop_create_future(loop);
    rec_t x = REC(1), a = REC(2), b = REC(3), y = REC(4);
    CHECK_EQ_INT(afut_add_done_callback(f, rec_done, &a, rec_free), AFUT_OK);
    CHECK_EQ_INT(afut_add_done_callback(f, rec_done, &b, rec_free), AFUT_OK);
    CHECK(afut_loop_call_soon(loop, rec_soon, &x, rec_free) != 0);
    CHECK_EQ_INT(afut_set_result(f, NULL, NULL), AFUT_OK);
    CHECK(afut_loop_call_soon(loop, rec_soon, &y, rec_free) != 0);
    CHECK_EQ_INT(g_log_len, 0);
    CHECK_EQ_INT(run1(loop), 4);
    CHECK_LOG(1, 2, 3, 4);
    afut_unref(f);
    afut_loop_free(loop);
    CHECK_EQ_INT(x.frees + a.frees + b.frees + y.frees, 4);
}

/* F6 [X]: add_done_callback on a done future takes its FIFO place at the moment of the call */
TEST(test_f6_add_on_done_takes_fifo_place) {
    afut_loop_t *loop = new_loop();
    afut_t *f = afut_loop_create_future(loop);
    CHECK_EQ_INT(afut_set_result(f, NULL, NULL), AFUT_OK);
    rec_t x = REC(1), a = REC(2), y = REC(3);
    CHECK(afut_loop_call_soon(loop, rec_soon, &x, rec_free) != 0);
    CHECK_EQ_INT(afut_add_done_callback(f, rec_done, &a, rec_free), AFUT_OK);
    CHECK(afut_loop_call_soon(loop, rec_soon, &y, rec_free) != 0);
    CHECK_EQ_INT(run1(loop), 3);
    CHECK_LOG(1, 2, 3);
    afut_unref(f);
    afut_loop_free(loop);
    CHECK_EQ_INT(x.frees + a.frees + y.frees, 3);
}

/* A done-callback that works on its own future. */
typedef struct {
    rec_t r;              /* first member: rec_free and rec_done work on a mut_t* */
    rec_t *child;         /* add (rec_done, child) to the future */
    rec_t *victim;        /* remove (rec_done, victim) from the future */
    afut_status_t add_rc;
    size_t removed;
    afut_status_t set_rc;
    int cancel_ret;
} mut_t;

static void mut_done(afut_t *fut, void *ud) {
    mut_t *m = ud;
    rec_done(fut, &m->r);
    if (m->victim) m->removed = afut_remove_done_callback(fut, rec_done, m->victim);
    if (m->child) m->add_rc = afut_add_done_callback(fut, rec_done, m->child, rec_free);
    m->set_rc = afut_set_result(fut, NULL, NULL);
    m->cancel_ret = afut_cancel(fut, "late");
}

/* F6 [X: C ran in iteration 2]: a callback added from inside a done-callback of the same
 * future runs one iteration later. */
TEST(test_f6_add_from_inside_callback) {
    afut_loop_t *loop = new_loop();
    afut_t *f = afut_loop_create_future(loop);
    rec_t child = REC(2), sib = REC(3);
    mut_t m = {.r = REC(1), .child = &child, .add_rc = 99};
    CHECK_EQ_INT(afut_add_done_callback(f, mut_done, &m, rec_free), AFUT_OK);
    CHECK_EQ_INT(afut_add_done_callback(f, rec_done, &sib, rec_free), AFUT_OK);
    CHECK_EQ_INT(afut_set_result(f, NULL, NULL), AFUT_OK);
    CHECK_EQ_INT(run1(loop), 2);
    CHECK_LOG(1, 3);
    CHECK_EQ_INT(m.add_rc, AFUT_OK);
    CHECK_EQ_INT(child.calls, 0);
    CHECK_EQ_INT(run1(loop), 1);
    CHECK_LOG(1, 3, 2);
    CHECK_EQ_INT(child.iter, 2);
    CHECK(child.fut == f);
    afut_unref(f);
    afut_loop_free(loop);
    CHECK_EQ_INT(m.r.frees, 1);
    CHECK_EQ_INT(child.frees, 1);
    CHECK_EQ_INT(sib.frees, 1);
}

typedef struct {
    rec_t r;
    afut_t *next;
    afut_status_t rc;
} hop_t;

static void hop_done(afut_t *fut, void *ud) {
    hop_t *h = ud;
    rec_done(fut, &h->r);
    if (h->next) h->rc = afut_set_result(h->next, NULL, NULL);
}

/* F7 [X]: each hop of a chain (a's callback completes b, b's callback runs) costs one
 * iteration. */
TEST(test_f7_chain_hop_per_iteration) {
    afut_loop_t *loop = new_loop();
    afut_t *a = afut_loop_create_future(loop);
    afut_t *b = afut_loop_create_future(loop);
    afut_t *c = afut_loop_create_future(loop);
    hop_t ha = {.r = REC(1), .next = b, .rc = 99};
    hop_t hb = {.r = REC(2), .next = c, .rc = 99};
    rec_t hc = REC(3);
    CHECK_EQ_INT(afut_add_done_callback(a, hop_done, &ha, NULL), AFUT_OK);
    CHECK_EQ_INT(afut_add_done_callback(b, hop_done, &hb, NULL), AFUT_OK);
    CHECK_EQ_INT(afut_add_done_callback(c, rec_done, &hc, rec_free), AFUT_OK);
    CHECK_EQ_INT(afut_set_result(a, NULL, NULL), AFUT_OK);
    CHECK(!afut_done(b));
    CHECK_EQ_INT(run1(loop), 1);
    CHECK_LOG(1);
    CHECK_EQ_INT(ha.rc, AFUT_OK);
    CHECK(afut_done(b));
    CHECK(!afut_done(c));
    CHECK_EQ_INT(run1(loop), 1);
    CHECK_LOG(1, 2);
    CHECK(afut_done(c));
    CHECK_EQ_INT(hc.calls, 0);
    CHECK_EQ_INT(run1(loop), 1);
    CHECK_LOG(1, 2, 3);
    CHECK_EQ_INT(ha.r.iter, 1);
    CHECK_EQ_INT(hb.r.iter, 2);
    CHECK_EQ_INT(hc.iter, 3);
    CHECK_EQ_INT(run1(loop), 0);
    afut_unref(a);
    afut_unref(b);
    afut_unref(c);
    afut_loop_free(loop);
    CHECK_EQ_INT(hc.frees, 1);
}

/* ------------------------------------------------------------------------------------ */
/* remove_done_callback (F9, F11, R4)                                                   */

/* test_futures.py BaseFutureDoneCallbackTests.test_remove_done_callback: 1, 0, then all
 * 6 duplicates removed at once; only the remaining entry runs. */
TEST(test_remove_done_callback) {
    afut_loop_t *loop = new_loop();
    afut_t *f = afut_loop_create_future(loop);
    rec_t c1 = REC(1), c2 = REC(2), c3 = REC(3);
    CHECK_EQ_INT(afut_add_done_callback(f, rec_done, &c1, rec_free), AFUT_OK);
    CHECK_EQ_INT(afut_add_done_callback(f, rec_done, &c2, rec_free), AFUT_OK);
    CHECK_EQ_INT(afut_remove_done_callback(f, rec_done, &c2), 1);
    CHECK_EQ_INT(afut_remove_done_callback(f, rec_done, &c3), 0);
    CHECK_EQ_INT(afut_add_done_callback(f, rec_done, &c2, rec_free), AFUT_OK);
    for (int i = 0; i < 5; i++)
        CHECK_EQ_INT(afut_add_done_callback(f, rec_done, &c1, rec_free), AFUT_OK);
    CHECK_EQ_INT(afut_remove_done_callback(f, rec_done, &c1), 6);
    CHECK_EQ_INT(g_log_len, 0);
    CHECK_EQ_INT(afut_set_result(f, NULL, NULL), AFUT_OK);
    CHECK_EQ_INT(run1(loop), 1);
    CHECK_LOG(2);
    CHECK_EQ_INT(c1.calls, 0);
    CHECK_EQ_INT(c1.frees, 6);
    CHECK_EQ_INT(c2.frees, 2);
    CHECK_EQ_INT(c3.frees, 0);
    afut_unref(f);
    afut_loop_free(loop);
    CHECK_EQ_INT(c1.frees, 6);
    CHECK_EQ_INT(c2.frees, 2);
}

/* F9 / R4: identity is the (fn, userdata) pair: a different userdata or a different
 * function is not removed. */
TEST(test_remove_matches_fn_and_userdata) {
    afut_loop_t *loop = new_loop();
    afut_t *f = afut_loop_create_future(loop);
    rec_t a = REC(1), b = REC(2), c = REC(3);
    CHECK_EQ_INT(afut_add_done_callback(f, rec_done, &a, rec_free), AFUT_OK);
    CHECK_EQ_INT(afut_add_done_callback(f, rec_done, &b, rec_free), AFUT_OK);
    CHECK_EQ_INT(afut_add_done_callback(f, rec_done_other, &a, rec_free), AFUT_OK);
    CHECK_EQ_INT(afut_remove_done_callback(f, rec_done, &c), 0);
    CHECK_EQ_INT(afut_remove_done_callback(f, rec_done_other, &b), 0);
    CHECK_EQ_INT(afut_remove_done_callback(f, rec_done, &a), 1);
    CHECK_EQ_INT(a.frees, 1);
    CHECK_EQ_INT(b.frees, 0);
    CHECK_DESC(f, "<Future pending cb=[2]>");
    CHECK_EQ_INT(afut_set_result(f, NULL, NULL), AFUT_OK);
    CHECK_EQ_INT(run1(loop), 2);
    CHECK_LOG(2, 1001);
    afut_unref(f);
    afut_loop_free(loop);
    CHECK_EQ_INT(a.frees, 2);
    CHECK_EQ_INT(b.frees, 1);
    CHECK_EQ_INT(c.frees, 0);
}

/* API.md User data: removing calls each removed entry's userdata_free once, right away;
 * test_callbacks_remove_first_callback: removing again is harmless (0). */
TEST(test_remove_frees_each_removed_userdata) {
    afut_loop_t *loop = new_loop();
    afut_t *f = afut_loop_create_future(loop);
    rec_t a = REC(1), b = REC(2);
    for (int i = 0; i < 3; i++)
        CHECK_EQ_INT(afut_add_done_callback(f, rec_done, &a, rec_free), AFUT_OK);
    CHECK_EQ_INT(afut_add_done_callback(f, rec_done, &b, NULL), AFUT_OK);
    CHECK_EQ_INT(afut_remove_done_callback(f, rec_done, &a), 3);
    CHECK_EQ_INT(a.frees, 3);
    CHECK_EQ_INT(afut_remove_done_callback(f, rec_done, &a), 0);
    CHECK_EQ_INT(a.frees, 3);
    CHECK_EQ_INT(afut_remove_done_callback(f, rec_done, &b), 1); /* NULL userdata_free */
    CHECK_EQ_INT(b.frees, 0);
    CHECK_EQ_INT(afut_set_result(f, NULL, NULL), AFUT_OK);
    CHECK_EQ_INT(run1(loop), 0);
    CHECK_EQ_INT(a.calls + b.calls, 0);
    afut_unref(f);
    afut_loop_free(loop);
    CHECK_EQ_INT(a.frees, 3);
}

/* test_futures.py BaseFutureDoneCallbackTests.test_callbacks_remove_third_callback and
 * test_callbacks_remove_first_and_second_callback: the others keep their order. */
TEST(test_callbacks_remove_keeps_order) {
    afut_loop_t *loop = new_loop();
    afut_t *f = afut_loop_create_future(loop);
    rec_t r[5] = {REC(1), REC(2), REC(3), REC(4), REC(5)};
    for (int i = 0; i < 5; i++)
        CHECK_EQ_INT(afut_add_done_callback(f, rec_done, &r[i], rec_free), AFUT_OK);
    CHECK_EQ_INT(afut_remove_done_callback(f, rec_done, &r[2]), 1);
    CHECK_EQ_INT(afut_remove_done_callback(f, rec_done, &r[0]), 1);
    CHECK_EQ_INT(afut_remove_done_callback(f, rec_done, &r[1]), 1);
    CHECK_EQ_INT(afut_set_result(f, NULL, NULL), AFUT_OK);
    CHECK_EQ_INT(run1(loop), 2);
    CHECK_LOG(4, 5);
    afut_unref(f);
    afut_loop_free(loop);
    for (int i = 0; i < 5; i++) CHECK_EQ_INT(r[i].frees, 1);
}

/* F9 [X] / R4: once done, remove_done_callback returns 0 and cannot unschedule callbacks
 * already queued; their userdata is not freed by the remove. */
TEST(test_remove_after_done_cannot_unschedule) {
    afut_loop_t *loop = new_loop();
    afut_t *f = afut_loop_create_future(loop);
    rec_t a = REC(1), b = REC(2);
    CHECK_EQ_INT(afut_add_done_callback(f, rec_done, &a, rec_free), AFUT_OK);
    CHECK_EQ_INT(afut_add_done_callback(f, rec_done, &b, rec_free), AFUT_OK);
    CHECK_EQ_INT(afut_set_result(f, NULL, NULL), AFUT_OK);
    CHECK_EQ_INT(afut_remove_done_callback(f, rec_done, &a), 0);
    CHECK_EQ_INT(afut_remove_done_callback(f, rec_done, &b), 0);
    CHECK_EQ_INT(a.frees + b.frees, 0);
    CHECK_EQ_INT(run1(loop), 2);
    CHECK_LOG(1, 2);
    CHECK_EQ_INT(afut_remove_done_callback(f, rec_done, &a), 0);
    afut_unref(f);
    afut_loop_free(loop);
    CHECK_EQ_INT(a.frees, 1);
    CHECK_EQ_INT(b.frees, 1);
}

/* F9 [X]: removal from inside a sibling callback returns 0 and the sibling still runs;
 * the callback may also touch its own (done) future: set_result is ERR_INVALID_STATE,
 * cancel false (test_schedule_callbacks_list_mutation_1, F11). */
TEST(test_callback_mutates_own_future) {
    afut_loop_t *loop = new_loop();
    afut_t *f = afut_loop_create_future(loop);
    rec_t victim = REC(2), child = REC(3);
    mut_t m = {.r = REC(1), .victim = &victim, .child = &child, .removed = 99, .add_rc = 99};
    CHECK_EQ_INT(afut_add_done_callback(f, mut_done, &m, rec_free), AFUT_OK);
    CHECK_EQ_INT(afut_add_done_callback(f, rec_done, &victim, rec_free), AFUT_OK);
    rec_t val = REC(9);
    CHECK_EQ_INT(afut_set_result(f, &val, rec_free), AFUT_OK);
    CHECK_EQ_INT(run1(loop), 2);
    CHECK_LOG(1, 2);
    CHECK_EQ_INT(m.removed, 0);
    CHECK_EQ_INT(m.add_rc, AFUT_OK);
    CHECK_EQ_INT(m.set_rc, AFUT_ERR_INVALID_STATE);
    CHECK_EQ_INT(m.cancel_ret, 0);
    CHECK_EQ_INT(victim.calls, 1);
    CHECK_EQ_INT(run1(loop), 1);
    CHECK_LOG(1, 2, 3);
    void *out = NULL;
    CHECK_EQ_INT(afut_result(f, &out), AFUT_OK);
    CHECK(out == &val);
    CHECK(!afut_cancelled(f));
    afut_unref(f);
    afut_loop_free(loop);
    CHECK_EQ_INT(m.r.frees, 1);
    CHECK_EQ_INT(victim.frees, 1);
    CHECK_EQ_INT(child.frees, 1);
    CHECK_EQ_INT(val.frees, 1);
}

/* A userdata whose destructor re-enters the future it was registered on. */
typedef struct {
    rec_t r;
    afut_t *fut;
    rec_t *victim; /* removed from inside the destructor */
    rec_t *added;  /* added from inside the destructor */
} evil_t;

static void evil_free(void *p) {
    evil_t *e = p;
    e->r.frees++;
    if (e->victim) (void)afut_remove_done_callback(e->fut, rec_done, e->victim);
    if (e->added) (void)afut_add_done_callback(e->fut, rec_done, e->added, rec_free);
}

/* test_remove_done_callbacks_list_mutation, test_remove_done_callbacks_list_clear and
 * test_schedule_callbacks_list_mutation_2 (F11, B2, B3, B5, R1): the userdata_free run by
 * remove_done_callback re-enters the same future (removes and adds entries). Required: no
 * crash, no deadlock, every userdata freed exactly once per registration. */
TEST(test_userdata_free_reenters_future) {
    afut_loop_t *loop = new_loop();
    afut_t *f = afut_loop_create_future(loop);
    rec_t victim = REC(2), keep = REC(3), added = REC(4);
    evil_t e = {.r = REC(1), .fut = f, .victim = &victim, .added = &added};
    CHECK_EQ_INT(afut_add_done_callback(f, rec_done, &e, evil_free), AFUT_OK);
    CHECK_EQ_INT(afut_add_done_callback(f, rec_done, &victim, rec_free), AFUT_OK);
    CHECK_EQ_INT(afut_add_done_callback(f, rec_done, &e, evil_free), AFUT_OK);
    CHECK_EQ_INT(afut_add_done_callback(f, rec_done, &keep, rec_free), AFUT_OK);
    (void)afut_remove_done_callback(f, rec_done, &e); /* return value unspecified (F11) */
    CHECK_EQ_INT(e.r.frees, 2);
    CHECK_EQ_INT(victim.frees, 1);
    CHECK_EQ_INT(afut_set_result(f, NULL, NULL), AFUT_OK);
    run1(loop);
    run1(loop);
    CHECK_EQ_INT(e.r.calls, 0);
    CHECK_EQ_INT(victim.calls, 0);
    CHECK_EQ_INT(keep.calls, 1);
    CHECK_EQ_INT(added.calls, 2);

    /* list_clear flavour: the destructor removes the only other entry */
    afut_t *g = afut_loop_create_future(loop);
    rec_t other = REC(5);
    evil_t e2 = {.r = REC(6), .fut = g, .victim = &other};
    CHECK_EQ_INT(afut_add_done_callback(g, rec_done, &other, rec_free), AFUT_OK);
    CHECK_EQ_INT(afut_add_done_callback(g, rec_done, &e2, evil_free), AFUT_OK);
    (void)afut_remove_done_callback(g, rec_done, &e2);
    CHECK_EQ_INT(e2.r.frees, 1);
    CHECK_EQ_INT(other.frees, 1);
    CHECK_DESC(g, "<Future pending>");
    afut_unref(f);
    afut_unref(g);
    afut_loop_free(loop);
    CHECK_EQ_INT(e.r.frees, 2);
    CHECK_EQ_INT(victim.frees, 1);
    CHECK_EQ_INT(keep.frees, 1);
    CHECK_EQ_INT(added.frees, 2);
    CHECK_EQ_INT(other.frees, 1);
}

static void unref_done(afut_t *fut, void *ud) {
    rec_done(fut, ud);
    afut_unref(fut);
}

/* B13 / R6 / header (Ownership: the loop holds its own reference while callbacks are queued): a callback
 * that drops the last user reference to its own future; its siblings still get a live
 * future; the value is freed once, when the loop lets go. */
TEST(test_callback_drops_last_reference) {
    afut_loop_t *loop = new_loop();
    afut_t *f = afut_loop_create_future(loop);
    rec_t a = REC(1), b = REC(2), val = REC(3);
    CHECK_EQ_INT(afut_add_done_callback(f, unref_done, &a, rec_free), AFUT_OK);
    CHECK_EQ_INT(afut_add_done_callback(f, rec_done, &b, rec_free), AFUT_OK);
    CHECK_EQ_INT(afut_set_result(f, &val, rec_free), AFUT_OK);
    /* the user's reference now belongs to unref_done */
    CHECK_EQ_INT(run1(loop), 2);
    CHECK_LOG(1, 2);
    CHECK(b.saw_done);
    CHECK(b.fut == f);
    CHECK_EQ_INT(val.frees, 1);
    CHECK_EQ_INT(a.frees + b.frees, 2);
    afut_loop_free(loop);
    CHECK_EQ_INT(val.frees, 1);
}

/* B13: the user may drop its reference right after completing; the queued callbacks keep
 * the future alive until they ran. */
TEST(test_queued_callbacks_hold_future) {
    afut_loop_t *loop = new_loop();
    afut_t *f = afut_loop_create_future(loop);
    rec_t a = REC(1), val = REC(2);
    CHECK_EQ_INT(afut_add_done_callback(f, rec_done, &a, rec_free), AFUT_OK);
    CHECK_EQ_INT(afut_set_result(f, &val, rec_free), AFUT_OK);
    afut_unref(f);
    CHECK_EQ_INT(val.frees, 0);
    CHECK_EQ_INT(run1(loop), 1);
    CHECK(a.saw_done);
    CHECK_EQ_INT(val.frees, 1);
    CHECK_EQ_INT(a.frees, 1);
    afut_loop_free(loop);
    CHECK_EQ_INT(val.frees, 1);
}

/* ------------------------------------------------------------------------------------ */
/* 1.3 Cancel message (F12, F13, R5)                                                    */

/* test_futures.py BaseFutureTests.test_future_cancel_message_getter (F13, R5, B9): the
 * message is copied, stable across any number of queries and result()/exception() calls. */
TEST(test_future_cancel_message_getter) {
    afut_loop_t *loop = new_loop();
    afut_t *f = afut_loop_create_future(loop);
    char msg[32];
    strcpy(msg, "my message");
    CHECK(afut_cancel(f, msg));
    memset(msg, 'X', sizeof msg - 1);
    msg[sizeof msg - 1] = '\0';
    const char *first = afut_cancel_message(f);
    CHECK_STR(first, "my message");
    int bad = 0;
    for (int i = 0; i < 100; i++) {
        const char *m = afut_cancel_message(f);
        if (m != first) bad++; /* header: "the same pointer on every call" */
        if (!m || strcmp(m, "my message") != 0) bad++;
        if (afut_result(f, NULL) != AFUT_ERR_CANCELLED) bad++;
        if (afut_exception(f, NULL) != AFUT_ERR_CANCELLED) bad++;
    }
    CHECK_EQ_INT(bad, 0);
    CHECK_STR(first, "my message"); /* the first pointer is still valid */
    CHECK_DESC(f, "<Future cancelled>"); /* F13: repr does not show the message */
    afut_unref(f);
    afut_loop_free(loop);
}

/* F13: no message gives NULL (CancelledError()); pending and finished futures have none;
 * an empty message is a message. */
TEST(test_cancel_message_none) {
    afut_loop_t *loop = new_loop();
    afut_t *f = afut_loop_create_future(loop);
    CHECK(afut_cancel_message(f) == NULL);
    CHECK(afut_cancel(f, NULL));
    CHECK(afut_cancel_message(f) == NULL);
    CHECK_EQ_INT(afut_result(f, NULL), AFUT_ERR_CANCELLED);
    CHECK(afut_cancel_message(f) == NULL);
    afut_t *g = afut_loop_create_future(loop);
    CHECK_EQ_INT(afut_set_result(g, NULL, NULL), AFUT_OK);
    CHECK(afut_cancel_message(g) == NULL);
    afut_t *h = afut_loop_create_future(loop);
    CHECK(afut_cancel(h, ""));
    CHECK_STR(afut_cancel_message(h), "");
    afut_unref(f);
    afut_unref(g);
    afut_unref(h);
    afut_loop_free(loop);
}

/* test_futures.py BaseFutureTests.test_cancel (second cancel is False) + F12: the first
 * message stays. */
TEST(test_cancel_twice_keeps_first_message) {
    afut_loop_t *loop = new_loop();
    afut_t *f = afut_loop_create_future(loop);
    CHECK(afut_cancel(f, "first"));
    CHECK(!afut_cancel(f, "second"));
    CHECK(!afut_cancel(f, NULL));
    CHECK_STR(afut_cancel_message(f), "first");
    void *out = &g_sentinel;
    CHECK_EQ_INT(afut_result(f, &out), AFUT_ERR_CANCELLED);
    CHECK(out == &g_sentinel);
    afut_exception_t e = {.code = 55};
    CHECK_EQ_INT(afut_exception(f, &e), AFUT_ERR_CANCELLED);
    CHECK_EQ_INT(e.code, 55);
    afut_unref(f);
    afut_loop_free(loop);
}

/* ------------------------------------------------------------------------------------ */
/* userdata_free exactly once, on every path (API.md User data)                         */

/* API.md User data: "after the callback ran" (not before, not twice) */
TEST(test_userdata_free_after_run) {
    afut_loop_t *loop = new_loop();
    afut_t *f = afut_loop_create_future(loop);
    rec_t a = REC(1);
    CHECK_EQ_INT(afut_add_done_callback(f, rec_done, &a, rec_free), AFUT_OK);
    CHECK_EQ_INT(afut_set_result(f, NULL, NULL), AFUT_OK);
    CHECK_EQ_INT(a.frees, 0);
    run1(loop);
    CHECK_EQ_INT(a.calls, 1);
    CHECK_EQ_INT(a.frees_at_call, 0);
    CHECK_EQ_INT(a.frees, 1);
    run1(loop);
    afut_unref(f);
    afut_loop_free(loop);
    CHECK_EQ_INT(a.calls, 1);
    CHECK_EQ_INT(a.frees, 1);
}

/* API.md User data: "when the callback is removed" */
TEST(test_userdata_free_on_remove) {
    afut_loop_t *loop = new_loop();
    afut_t *f = afut_loop_create_future(loop);
    rec_t a = REC(1);
    CHECK_EQ_INT(afut_add_done_callback(f, rec_done, &a, rec_free), AFUT_OK);
    CHECK_EQ_INT(afut_remove_done_callback(f, rec_done, &a), 1);
    CHECK_EQ_INT(a.frees, 1);
    CHECK_EQ_INT(afut_set_result(f, NULL, NULL), AFUT_OK);
    run1(loop);
    afut_unref(f);
    afut_loop_free(loop);
    CHECK_EQ_INT(a.calls, 0);
    CHECK_EQ_INT(a.frees, 1);
}

/* API.md User data: "dropped because its loop closed"; header: afut_loop_close frees every
 * queued callback. Done-callbacks queued by a completion, then the loop closed (first
 * loop) or freed (second loop) before they ran. */
TEST(test_userdata_free_on_loop_close) {
    afut_loop_t *loop = new_loop();
    afut_t *f = afut_loop_create_future(loop);
    rec_t a = REC(1), b = REC(2), val = REC(3);
    CHECK_EQ_INT(afut_add_done_callback(f, rec_done, &a, rec_free), AFUT_OK);
    CHECK_EQ_INT(afut_add_done_callback(f, rec_done, &b, rec_free), AFUT_OK);
    CHECK_EQ_INT(afut_set_result(f, &val, rec_free), AFUT_OK);
    CHECK_EQ_INT(afut_loop_close(loop), AFUT_OK);
    CHECK_EQ_INT(a.frees, 1);
    CHECK_EQ_INT(b.frees, 1);
    CHECK_EQ_INT(a.calls + b.calls, 0);
    CHECK(afut_done(f));
    afut_unref(f);
    CHECK_EQ_INT(val.frees, 1);
    afut_loop_free(loop);
    CHECK_EQ_INT(a.frees + b.frees, 2);
    CHECK_EQ_INT(val.frees, 1);

    loop = new_loop();
    f = afut_loop_create_future(loop);
    rec_t c = REC(4), d = REC(5);
    CHECK_EQ_INT(afut_add_done_callback(f, rec_done, &c, rec_free), AFUT_OK);
    CHECK(afut_cancel(f, NULL));
    afut_t *done = afut_loop_create_future(loop);
    CHECK_EQ_INT(afut_set_result(done, NULL, NULL), AFUT_OK);
    CHECK_EQ_INT(afut_add_done_callback(done, rec_done, &d, rec_free), AFUT_OK);
    afut_loop_free(loop);
    CHECK_EQ_INT(c.calls + d.calls, 0);
    CHECK_EQ_INT(c.frees, 1);
    CHECK_EQ_INT(d.frees, 1);
    afut_unref(f);
    afut_unref(done);
    CHECK_EQ_INT(c.frees + d.frees, 2);
}

/* API.md User data: a future freed while pending drops its registered callbacks, each
 * userdata_free once, none run (F15: a pending Future dies silently). */
TEST(test_userdata_free_future_freed_pending) {
    afut_loop_t *loop = new_loop();
    afut_t *f = afut_loop_create_future(loop);
    rec_t a = REC(1), b = REC(2);
    CHECK_EQ_INT(afut_add_done_callback(f, rec_done, &a, rec_free), AFUT_OK);
    CHECK_EQ_INT(afut_add_done_callback(f, rec_done, &b, rec_free), AFUT_OK);
    CHECK_EQ_INT(afut_add_done_callback(f, rec_done, &a, rec_free), AFUT_OK);
    afut_unref(f);
    CHECK_EQ_INT(a.frees, 2);
    CHECK_EQ_INT(b.frees, 1);
    CHECK_EQ_INT(run1(loop), 0);
    afut_loop_free(loop);
    CHECK_EQ_INT(a.calls + b.calls, 0);
    CHECK_EQ_INT(a.frees, 2);
    CHECK_EQ_INT(b.frees, 1);
    CHECK_EQ_INT(g_reports, 0);
}

/* API.md "A closed loop": completing a future of a closed (or freed) loop returns AFUT_OK
 * and drops its callbacks (each userdata_free once); add_done_callback on a done future of
 * a closed loop fails with ERR_LOOP_CLOSED and the userdata stays the caller's. Futures
 * outlive afut_loop_free: afut_get_loop is then NULL (header). */
TEST(test_closed_loop_completion_drops_callbacks) {
    afut_loop_t *loop = new_loop();
    afut_t *f = afut_loop_create_future(loop);
    rec_t a = REC(1), late = REC(2), val = REC(3);
    CHECK_EQ_INT(afut_add_done_callback(f, rec_done, &a, rec_free), AFUT_OK);
    CHECK_EQ_INT(afut_loop_close(loop), AFUT_OK);
    CHECK_EQ_INT(afut_set_result(f, &val, rec_free), AFUT_OK);
    CHECK(afut_done(f));
    CHECK_EQ_INT(a.frees, 1);
    CHECK_EQ_INT(a.calls, 0);
    CHECK_EQ_INT(afut_add_done_callback(f, rec_done, &late, rec_free), AFUT_ERR_LOOP_CLOSED);
    CHECK_EQ_INT(late.frees, 0);
    void *out = NULL;
    CHECK_EQ_INT(afut_result(f, &out), AFUT_OK);
    CHECK(out == &val);
    afut_loop_free(loop);

    loop = new_loop();
    afut_t *g = afut_loop_create_future(loop);
    rec_t b = REC(4), det = REC(5);
    CHECK_EQ_INT(afut_add_done_callback(g, rec_done, &b, rec_free), AFUT_OK);
    afut_loop_free(loop);
    CHECK(afut_get_loop(g) == NULL);
    CHECK(!afut_done(g));
    CHECK_EQ_INT(afut_set_exception(g, 3, "after free", &det, rec_free), AFUT_OK);
    CHECK_EQ_INT(b.frees, 1);
    CHECK_EQ_INT(b.calls, 0);
    CHECK_EQ_INT(afut_exception(g, NULL), AFUT_OK);
    CHECK_EQ_INT(afut_add_done_callback(g, rec_done, &late, rec_free), AFUT_ERR_LOOP_CLOSED);
    CHECK_EQ_INT(late.frees, 0);
    afut_unref(f);
    afut_unref(g);
    CHECK_EQ_INT(val.frees, 1);
    CHECK_EQ_INT(det.frees, 1);
    CHECK_EQ_INT(late.calls, 0);
}

/* ------------------------------------------------------------------------------------ */
/* 1.5 describe, isfuture, ensure_future, get_loop                                      */

/* test_futures.py BaseFutureTests.test_future_repr (F18) with the header's formats */
TEST(test_future_repr) {
    afut_loop_t *loop = new_loop();
    afut_t *f = afut_loop_create_future(loop);
    rec_t a = REC(1), b = REC(2);
    CHECK_DESC(f, "<Future pending>");
    CHECK_EQ_INT(afut_add_done_callback(f, rec_done, &a, rec_free), AFUT_OK);
    CHECK_DESC(f, "<Future pending cb=[1]>");
    CHECK_EQ_INT(afut_add_done_callback(f, rec_done, &b, rec_free), AFUT_OK);
    CHECK_DESC(f, "<Future pending cb=[2]>");
    CHECK_EQ_INT(afut_remove_done_callback(f, rec_done, &b), 1);
    CHECK_EQ_INT(afut_remove_done_callback(f, rec_done, &a), 1);
    CHECK_DESC(f, "<Future pending>");
    CHECK_EQ_INT(afut_add_done_callback(f, rec_done, &a, rec_free), AFUT_OK);
    CHECK_EQ_INT(afut_set_result(f, (void *)(uintptr_t)0x1f2e, NULL), AFUT_OK);
    /* callbacks are listed only while pending */
    CHECK_DESC(f, "<Future finished result=0x1f2e>");
    run1(loop);

    afut_t *n = afut_loop_create_future(loop);
    CHECK_EQ_INT(afut_set_result(n, NULL, NULL), AFUT_OK);
    CHECK_DESC(n, "<Future finished result=NULL>");

    afut_t *c = afut_loop_create_future(loop);
    CHECK(afut_cancel(c, "not shown"));
    CHECK_DESC(c, "<Future cancelled>");

    afut_t *x = afut_loop_create_future(loop);
    CHECK_EQ_INT(afut_set_exception(x, 5, "boom", NULL, NULL), AFUT_OK);
    CHECK_DESC(x, "<Future finished exception=code 5: boom>");
    afut_t *y = afut_loop_create_future(loop);
    CHECK_EQ_INT(afut_set_exception(y, 5, NULL, NULL, NULL), AFUT_OK);
    CHECK_DESC(y, "<Future finished exception=code 5>");
    CHECK_EQ_INT(afut_exception(x, NULL), AFUT_OK);
    CHECK_EQ_INT(afut_exception(y, NULL), AFUT_OK);

    afut_t *l = afut_new(NULL);
    CHECK_DESC(l, "<Future pending>");
    CHECK_DESC(NULL, "<NULL>");
    afut_unref(f);
    afut_unref(n);
    afut_unref(c);
    afut_unref(x);
    afut_unref(y);
    afut_unref(l);
    afut_loop_free(loop);
    CHECK_EQ_INT(a.frees, 2);
    CHECK_EQ_INT(b.frees, 1);
}

/* header: afut_describe follows snprintf: returns the full length, writes at most len-1
 * characters and a NUL when len > 0, nothing when len == 0. */
TEST(test_describe_truncation) {
    afut_loop_t *loop = new_loop();
    afut_t *f = afut_loop_create_future(loop);
    const char *full = "<Future pending>";
    size_t n = strlen(full);
    char buf[64];

    memset(buf, 'Z', sizeof buf);
    CHECK_EQ_INT(afut_describe(f, buf, 0), n);
    CHECK(buf[0] == 'Z');
    CHECK_EQ_INT(afut_describe(f, NULL, 0), n);

    memset(buf, 'Z', sizeof buf);
    CHECK_EQ_INT(afut_describe(f, buf, 1), n);
    CHECK(buf[0] == '\0');
    CHECK(buf[1] == 'Z');

    memset(buf, 'Z', sizeof buf);
    CHECK_EQ_INT(afut_describe(f, buf, 5), n);
    CHECK_STR(buf, "<Fut");
    CHECK(buf[5] == 'Z');

    memset(buf, 'Z', sizeof buf);
    CHECK_EQ_INT(afut_describe(f, buf, n), n); /* one short: last char dropped */
    CHECK(strncmp(buf, full, n - 1) == 0 && buf[n - 1] == '\0');
    CHECK(buf[n] == 'Z');

    memset(buf, 'Z', sizeof buf);
    CHECK_EQ_INT(afut_describe(f, buf, n + 1), n); /* exact fit */
    CHECK_STR(buf, full);
    CHECK(buf[n + 1] == 'Z');

    memset(buf, 'Z', sizeof buf);
    CHECK_EQ_INT(afut_describe(NULL, buf, 3), 6);
    CHECK_STR(buf, "<N");
    CHECK_EQ_INT(afut_describe(NULL, NULL, 0), 6);

    afut_unref(f);
    afut_loop_free(loop);
}

/* test_futures.py BaseFutureTests.test_isfuture (F20) + API.md afut_isfuture */
TEST(test_isfuture) {
    afut_loop_t *loop = new_loop();
    afut_t *f = afut_loop_create_future(loop);
    afut_t *g = afut_new(NULL);
    struct {
        uint64_t a, b;
    } zeroed = {0, 0};
    CHECK(!afut_isfuture(NULL));
    CHECK(afut_isfuture(f));
    CHECK(afut_isfuture(g));
    CHECK(!afut_isfuture(&zeroed));
    CHECK(afut_cancel(f, NULL));
    CHECK(afut_isfuture(f)); /* still a live handle when done */
    afut_unref(f);
    afut_unref(g);
    afut_loop_free(loop);
}

/* F23 same-loop case (test_tasks.py BaseTaskTests.test_ensure_future_future): a future
 * bound to loop is returned as is, with a new reference (two unrefs needed). */
TEST(test_ensure_future_same_loop) {
    afut_loop_t *loop = new_loop();
    afut_t *f = afut_loop_create_future(loop);
    afut_t *g = afut_ensure_future(loop, f);
    CHECK(g == f);
    rec_t val = REC(1);
    CHECK_EQ_INT(afut_set_result(f, &val, rec_free), AFUT_OK);
    afut_unref(f);
    CHECK_EQ_INT(val.frees, 0);
    CHECK(afut_done(g));
    void *out = NULL;
    CHECK_EQ_INT(afut_result(g, &out), AFUT_OK);
    CHECK(out == &val);
    afut_unref(g);
    CHECK_EQ_INT(val.frees, 1);
    /* header afut_wrap_future: a future of loop itself comes back as a new reference */
    afut_t *h = afut_loop_create_future(loop);
    afut_t *w = afut_wrap_future(loop, h);
    CHECK(w == h);
    afut_unref(h);
    CHECK(!afut_done(w));
    afut_unref(w);
    CHECK(afut_ensure_future(NULL, NULL) == NULL);
    afut_loop_free(loop);
}

/* F17 test_get_loop: get_loop returns the bound loop (borrowed); NULL for a loop-less
 * future and, per the header, once the loop has been freed. */
TEST(test_get_loop) {
    afut_loop_t *loop = new_loop();
    afut_loop_t *other = afut_loop_new();
    afut_t *f = afut_loop_create_future(loop);
    afut_t *g = afut_new(other);
    afut_t *h = afut_new(NULL);
    CHECK(afut_get_loop(f) == loop);
    CHECK(afut_get_loop(g) == other);
    CHECK(afut_get_loop(h) == NULL);
    CHECK(afut_get_loop(f) == loop); /* borrowed: asking again changes nothing */
    afut_loop_free(other);
    CHECK(afut_get_loop(g) == NULL);
    CHECK(afut_get_loop(f) == loop);
    afut_unref(f);
    afut_unref(g);
    afut_unref(h);
    afut_loop_free(loop);
}

/* ------------------------------------------------------------------------------------ */
/* afut_sleep                                                                           */

/* API.md Time: "afut_sleep(loop, 0, ...) takes exactly one iteration"; the value becomes
 * the result and is freed once with the future. */
TEST(test_sleep_zero_one_iteration) {
    afut_loop_t *loop = new_loop();
    rec_t v = REC(1);
    afut_t *s = afut_sleep(loop, 0, &v, rec_free);
    CHECK(s != NULL);
    CHECK(!afut_done(s));
    CHECK(afut_get_loop(s) == loop);
    run1(loop);
    CHECK(afut_done(s));
    void *out = NULL;
    CHECK_EQ_INT(afut_result(s, &out), AFUT_OK);
    CHECK(out == &v);
    CHECK_EQ_INT(v.frees, 0);
    afut_unref(s);
    /* The library's own done-callback on the sleep (which cancels the timer on cancel) is
     * queued by the completion and holds the future one more iteration. */
    CHECK(v.frees <= 1);
    run1(loop);
    CHECK_EQ_INT(v.frees, 1);
    /* a negative delay is due at once too */
    rec_t w = REC(2);
    s = afut_sleep(loop, -1.0, &w, rec_free);
    CHECK(s != NULL);
    CHECK(!afut_done(s));
    run1(loop);
    CHECK(afut_done(s));
    afut_unref(s);
    afut_loop_free(loop);
    CHECK_EQ_INT(v.frees, 1);
    CHECK_EQ_INT(w.frees, 1);
}

/* test_tasks.py sleep tests: afut_sleep(loop, 0.05, ...) completes after ~50 ms through
 * run_until_complete with the value as result. */
TEST(test_sleep_timed) {
    afut_loop_t *loop = new_loop();
    rec_t v = REC(1);
    double t0 = test_now_s(), lt0 = afut_loop_time(loop);
    afut_t *s = afut_sleep(loop, 0.05, &v, rec_free);
    CHECK(s != NULL);
    CHECK_EQ_INT(afut_loop_run_until_complete(loop, s), AFUT_OK);
    double took = test_now_s() - t0, ltook = afut_loop_time(loop) - lt0;
    CHECK(took >= 0.049);
    CHECK(ltook >= 0.049);
    CHECK(took < 5.0);
    CHECK(afut_done(s));
    void *out = NULL;
    CHECK_EQ_INT(afut_result(s, &out), AFUT_OK);
    CHECK(out == &v);
    afut_unref(s);
    afut_loop_free(loop);
    CHECK_EQ_INT(v.frees, 1);
}

/* asyncio.sleep cancelled (its timer handle is cancelled): the value never becomes a
 * result and is freed exactly once, after the loop ran; result() is ERR_CANCELLED. */
TEST(test_sleep_cancelled_then_run) {
    afut_loop_t *loop = new_loop();
    rec_t v = REC(1);
    afut_t *s = afut_sleep(loop, 10.0, &v, rec_free);
    CHECK(s != NULL);
    CHECK(afut_cancel(s, "stop"));
    CHECK(afut_cancelled(s));
    CHECK_EQ_INT(afut_result(s, NULL), AFUT_ERR_CANCELLED);
    CHECK_STR(afut_cancel_message(s), "stop");
    CHECK(v.frees <= 1);
    run1(loop);
    run1(loop);
    CHECK_EQ_INT(v.frees, 1); /* header afut_sleep: cancelled first: value_free runs then */
    afut_unref(s);
    CHECK_EQ_INT(v.frees, 1);
    CHECK_EQ_INT(afut_loop_close(loop), AFUT_OK);
    CHECK_EQ_INT(v.frees, 1);
    afut_loop_free(loop);
    CHECK_EQ_INT(v.frees, 1);
}

/* Same, but the loop closes without running after the cancel. */
TEST(test_sleep_cancelled_then_close) {
    afut_loop_t *loop = new_loop();
    rec_t v = REC(1);
    afut_t *s = afut_sleep(loop, 10.0, &v, rec_free);
    CHECK(afut_cancel(s, NULL));
    CHECK(v.frees <= 1);
    CHECK_EQ_INT(afut_loop_close(loop), AFUT_OK);
    CHECK_EQ_INT(v.frees, 1);
    afut_unref(s);
    CHECK_EQ_INT(v.frees, 1);
    afut_loop_free(loop);
    CHECK_EQ_INT(v.frees, 1);
}

/* A zero sleep cancelled before its timer fired: the timer must not set the result
 * (futures._set_result_unless_cancelled) and the value is freed exactly once. */
TEST(test_sleep_zero_cancelled_before_fire) {
    afut_loop_t *loop = new_loop();
    rec_t v = REC(1);
    afut_t *s = afut_sleep(loop, 0, &v, rec_free);
    CHECK(afut_cancel(s, NULL));
    run1(loop);
    run1(loop);
    CHECK(afut_cancelled(s));
    CHECK_EQ_INT(afut_result(s, NULL), AFUT_ERR_CANCELLED);
    CHECK(v.frees <= 1);
    afut_unref(s);
    afut_loop_free(loop);
    CHECK_EQ_INT(v.frees, 1);
    CHECK_EQ_INT(g_reports, 0);
}

/* header: afut_loop_close frees every queued timer: a pending sleep's value is freed
 * exactly once, whether the future goes before or after the loop. */
TEST(test_sleep_loop_close_pending) {
    afut_loop_t *loop = new_loop();
    rec_t v = REC(1), w = REC(2);
    afut_t *s = afut_sleep(loop, INFINITY, &v, rec_free);
    afut_t *t = afut_sleep(loop, 1000.0, &w, rec_free);
    CHECK(s != NULL && t != NULL);
    CHECK(!afut_done(s) && !afut_done(t));
    afut_unref(t);
    CHECK(w.frees <= 1);
    CHECK_EQ_INT(afut_loop_close(loop), AFUT_OK);
    CHECK_EQ_INT(v.frees, 1); /* header afut_sleep: "or the loop closes first" */
    CHECK_EQ_INT(w.frees, 1);
    afut_loop_free(loop);
    CHECK_EQ_INT(v.frees, 1);
    afut_unref(s);
    CHECK_EQ_INT(v.frees, 1);
    CHECK_EQ_INT(w.frees, 1);
}

/* header: afut_sleep(NULL, ...), a NaN delay or a closed loop give NULL and the
 * value stays the caller's */
TEST(test_sleep_bad_args) {
    afut_loop_t *loop = new_loop();
    rec_t v = REC(1);
    CHECK(afut_sleep(NULL, 0, &v, rec_free) == NULL);
    CHECK(afut_sleep(loop, NAN, &v, rec_free) == NULL);
    CHECK_EQ_INT(run1(loop), 0);
    CHECK_EQ_INT(afut_loop_close(loop), AFUT_OK);
    CHECK(afut_sleep(loop, 0, &v, rec_free) == NULL); /* header: a closed loop */
    afut_loop_free(loop);
    CHECK_EQ_INT(v.frees, 0);
}

int main(void) {
    RUN_T(test_initial_state);
    RUN_T(test_constructors);
    RUN_T(test_cancel);
    RUN_T(test_result);
    RUN_T(test_exception);
    RUN_T(test_f2_pending_column);
    RUN_T(test_f2_finished_result_column);
    RUN_T(test_f2_finished_exception_column);
    RUN_T(test_f2_cancelled_column);
    RUN_T(test_rejected_completion_keeps_ownership);
    RUN_T(test_set_exception_code_zero);
    RUN_T(test_value_free_once);
    RUN_T(test_detail_free_once);
    RUN_T(test_exception_message_copied);
    RUN_T(test_result_exception_null_out);
    RUN_T(test_null_handles);

    RUN_T(test_callbacks_invoked_on_set_result);
    RUN_T(test_callbacks_invoked_on_set_exception);
    RUN_T(test_callbacks_invoked_on_cancel);
    RUN_T(test_add_done_callback_on_done_not_inline);
    RUN_T(test_callback_receives_future_and_userdata);
    RUN_T(test_callbacks_fifo_with_duplicates);
    RUN_T(test_f5_completion_is_one_fifo_run);
    RUN_T(test_f6_add_on_done_takes_fifo_place);
    RUN_T(test_f6_add_from_inside_callback);
    RUN_T(test_f7_chain_hop_per_iteration);

    RUN_T(test_remove_done_callback);
    RUN_T(test_remove_matches_fn_and_userdata);
    RUN_T(test_remove_frees_each_removed_userdata);
    RUN_T(test_callbacks_remove_keeps_order);
    RUN_T(test_remove_after_done_cannot_unschedule);
    RUN_T(test_callback_mutates_own_future);
    RUN_T(test_userdata_free_reenters_future);
    RUN_T(test_callback_drops_last_reference);
    RUN_T(test_queued_callbacks_hold_future);

    RUN_T(test_future_cancel_message_getter);
    RUN_T(test_cancel_message_none);
    RUN_T(test_cancel_twice_keeps_first_message);

    RUN_T(test_userdata_free_after_run);
    RUN_T(test_userdata_free_on_remove);
    RUN_T(test_userdata_free_on_loop_close);
    RUN_T(test_userdata_free_future_freed_pending);
    RUN_T(test_closed_loop_completion_drops_callbacks);

    RUN_T(test_future_repr);
    RUN_T(test_describe_truncation);
    RUN_T(test_isfuture);
    RUN_T(test_ensure_future_same_loop);
    RUN_T(test_get_loop);

    RUN_T(test_sleep_zero_one_iteration);
    RUN_T(test_sleep_timed);
    RUN_T(test_sleep_cancelled_then_run);
    RUN_T(test_sleep_cancelled_then_close);
    RUN_T(test_sleep_zero_cancelled_before_fire);
    RUN_T(test_sleep_loop_close_pending);
    RUN_T(test_sleep_bad_args);

    TEST_END();
}
