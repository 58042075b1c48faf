/* C tests for the "Future exception was never retrieved" report (SEMANTICS.md F14, F15,
 * B7, B8, R6) as specified by API.md and the header:
 *
 * - the report is made synchronously on the thread that drops the LAST reference
 *   (afut_unref, or the loop dropping its internal reference after the last queued
 *   callback ran);
 * - context->message is exactly "Future exception was never retrieved",
 *   context->future is non-NULL (valid only during the call; afut_ref on it returns
 *   NULL), context->exception is the stored exception;
 * - only FINISHED-with-exception futures still unretrieved; afut_result, afut_exception
 *   (also with a NULL out), afut_cancel (even returning false) and run_until_complete
 *   returning ERR_EXCEPTION count as retrieving it.
 *
 * Every test uses a fresh loop with a recording exception handler and names the CPython
 * test (Lib/test/test_asyncio/test_futures.py unless said otherwise) or rule it mirrors. */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <unistd.h>

#include "afut.h"
#include "test.h"

#define NEVER_MSG "Future exception was never retrieved"

typedef struct rec {
    int calls;
    int frees;
} rec_t;

static void rec_free(void *p) { ((rec_t *)p)->frees++; }

static void rec_done(afut_t *fut, void *ud) {
    (void)fut;
    ((rec_t *)ud)->calls++;
}

/* A done-callback that retrieves the exception (like awaiting the future would). */
static void retrieve_done(afut_t *fut, void *ud) {
    ((rec_t *)ud)->calls++;
    afut_exception_t e;
    (void)afut_exception(fut, &e);
}

/* What the exception handler saw. */
typedef struct report {
    int calls;
    int never_calls;            /* calls whose message starts with NEVER_MSG */
    char message[160];          /* first call's message */
    afut_loop_t *loop;
    bool future_non_null;
    bool exception_non_null;
    int32_t code;
    char exc_message[64];
    bool exc_message_null;
    void *detail;
    int detail_frees_at_report; /* detail (a rec_t) frees when the handler ran */
    bool done_in_handler;
    bool cancelled_in_handler;
    bool try_ref;               /* call afut_ref(context->future) and friends */
    bool ref_returned_null;
    afut_status_t add_rc;       /* afut_add_done_callback(context->future, ...) */
    int add_frees;              /* its userdata's frees */
    int *unref_in_progress;     /* set by the test around afut_unref */
    bool during_unref;          /* the report came from inside afut_unref */
    pthread_t thread;           /* the thread the (first) report ran on */
} report_t;

static void recording_handler(afut_loop_t *loop, const afut_error_context_t *ctx, void *ud) {
    report_t *r = ud;
    r->calls++;
    const char *msg = ctx && ctx->message ? ctx->message : "(null)";
    if (strncmp(msg, NEVER_MSG, strlen(NEVER_MSG)) == 0) r->never_calls++;
    if (r->calls > 1) {
        if (strncmp(msg, NEVER_MSG, strlen(NEVER_MSG)) != 0)
            fprintf(stderr, "  extra report #%d: %s\n", r->calls, msg);
        return;
    }
    r->thread = pthread_self();
    snprintf(r->message, sizeof r->message, "%s", msg);
    r->loop = loop;
    r->future_non_null = ctx && ctx->future != NULL;
    r->exception_non_null = ctx && ctx->exception != NULL;
    if (ctx && ctx->exception) {
        r->code = ctx->exception->code;
        r->exc_message_null = ctx->exception->message == NULL;
        snprintf(r->exc_message, sizeof r->exc_message, "%s",
                 ctx->exception->message ? ctx->exception->message : "");
        r->detail = ctx->exception->detail;
        if (r->detail) r->detail_frees_at_report = ((rec_t *)r->detail)->frees;
    }
    if (ctx && ctx->future) {
        r->done_in_handler = afut_done(ctx->future);
        r->cancelled_in_handler = afut_cancelled(ctx->future);
        if (r->try_ref) {
            afut_t *again = afut_ref(ctx->future);
            r->ref_returned_null = again == NULL;
            /* a (buggy) non-NULL reference is deliberately leaked: giving it back would
               re-enter the finalizer */
            static rec_t cb;
            cb = (rec_t){0};
            r->add_rc = afut_add_done_callback(ctx->future, rec_done, &cb, rec_free);
            r->add_frees = cb.frees;
            afut_unref(ctx->future); /* header: a no-op while the report runs */
        }
    }
    if (r->unref_in_progress) r->during_unref = *r->unref_in_progress != 0;
}

static afut_loop_t *new_loop(report_t *r) {
    memset(r, 0, sizeof *r);
    afut_loop_t *loop = afut_loop_new();
    CHECK(loop != NULL);
    afut_loop_set_exception_handler(loop, recording_handler, r, NULL);
    return loop;
}

static size_t run1(afut_loop_t *loop) {
    size_t ran = (size_t)12345;
    CHECK_EQ_INT(afut_loop_run_once(loop, 0, &ran), AFUT_OK);
    return ran;
}

/* Captures what the library writes to fd 2 between begin and end. */
typedef struct {
    int saved;
    FILE *tmp;
} capture_t;

static void capture_begin(capture_t *c) {
    fflush(stderr);
    c->tmp = tmpfile();
    CHECK(c->tmp != NULL);
    c->saved = dup(2);
    if (c->tmp) dup2(fileno(c->tmp), 2);
}

static void capture_end(capture_t *c, char *out, size_t n) {
    fflush(stderr);
    dup2(c->saved, 2);
    close(c->saved);
    out[0] = '\0';
    if (!c->tmp) return;
    rewind(c->tmp);
    size_t k = fread(out, 1, n - 1, c->tmp);
    out[k] = '\0';
    fclose(c->tmp);
}


/* ------------------------------------------------------------------------------------ */

/* test_futures.py BaseFutureTests.test_tb_logger_exception_unretrieved and
 * test_future_exception_never_retrieved (logged once, with the original exception):
 * the report is made inside the last afut_unref, exactly once, with the exact message,
 * the future and the exception; the detail is freed once, after the report. */
TEST(test_tb_logger_exception_unretrieved) {
    report_t r;
    afut_loop_t *loop = new_loop(&r);
    afut_t *f = afut_loop_create_future(loop);
    rec_t det = {0};
    char msg[16];
    strcpy(msg, "boom");
    CHECK_EQ_INT(afut_set_exception(f, 42, msg, &det, rec_free), AFUT_OK);
    memset(msg, 'X', sizeof msg - 1);
    msg[sizeof msg - 1] = '\0';
    CHECK_EQ_INT(r.calls, 0);
    int in_unref = 1;
    r.unref_in_progress = &in_unref;
    afut_unref(f);
    in_unref = 0;
    CHECK_EQ_INT(r.calls, 1);
    CHECK(r.during_unref);
    CHECK_STR(r.message, NEVER_MSG);
    CHECK(r.loop == loop);
    CHECK(r.future_non_null);
    CHECK(r.exception_non_null);
    CHECK_EQ_INT(r.code, 42);
    CHECK_STR(r.exc_message, "boom");
    CHECK(r.detail == &det);
    CHECK_EQ_INT(r.detail_frees_at_report, 0);
    CHECK(r.done_in_handler);
    CHECK(!r.cancelled_in_handler);
    CHECK_EQ_INT(det.frees, 1);
    CHECK_EQ_INT(run1(loop), 0);
    afut_loop_free(loop);
    CHECK_EQ_INT(r.calls, 1);
    CHECK_EQ_INT(det.frees, 1);
}

/* F15: an exception without message or detail is reported the same way */
TEST(test_unretrieved_without_message) {
    report_t r;
    afut_loop_t *loop = new_loop(&r);
    afut_t *f = afut_new(loop);
    CHECK_EQ_INT(afut_set_exception(f, -7, NULL, NULL, NULL), AFUT_OK);
    afut_unref(f);
    CHECK_EQ_INT(r.calls, 1);
    CHECK_STR(r.message, NEVER_MSG);
    CHECK(r.future_non_null);
    CHECK(r.exception_non_null);
    CHECK_EQ_INT(r.code, -7);
    CHECK(r.exc_message_null);
    CHECK(r.detail == NULL);
    afut_loop_free(loop);
    CHECK_EQ_INT(r.calls, 1);
}

/* test_futures.py BaseFutureTests.test_tb_logger_exception_retrieved: exception()
 * suppresses the report. */
TEST(test_tb_logger_exception_retrieved) {
    report_t r;
    afut_loop_t *loop = new_loop(&r);
    afut_t *f = afut_loop_create_future(loop);
    rec_t det = {0};
    CHECK_EQ_INT(afut_set_exception(f, 1, "boom", &det, rec_free), AFUT_OK);
    afut_exception_t e = {0};
    CHECK_EQ_INT(afut_exception(f, &e), AFUT_OK);
    CHECK_EQ_INT(e.code, 1);
    afut_unref(f);
    CHECK_EQ_INT(det.frees, 1);
    afut_loop_free(loop);
    CHECK_EQ_INT(r.calls, 0);
}

/* test_futures.py BaseFutureTests.test_tb_logger_exception_result_retrieved: result()
 * (which returns ERR_EXCEPTION) suppresses the report. */
TEST(test_tb_logger_exception_result_retrieved) {
    report_t r;
    afut_loop_t *loop = new_loop(&r);
    afut_t *f = afut_loop_create_future(loop);
    CHECK_EQ_INT(afut_set_exception(f, 1, "boom", NULL, NULL), AFUT_OK);
    void *out = NULL;
    CHECK_EQ_INT(afut_result(f, &out), AFUT_ERR_EXCEPTION);
    afut_unref(f);
    afut_loop_free(loop);
    CHECK_EQ_INT(r.calls, 0);
}

/* header: afut_result(fut, NULL) / afut_exception(fut, NULL) still mark it retrieved */
TEST(test_retrieved_with_null_out) {
    report_t r;
    afut_loop_t *loop = new_loop(&r);
    afut_t *f = afut_loop_create_future(loop);
    afut_t *g = afut_loop_create_future(loop);
    CHECK_EQ_INT(afut_set_exception(f, 1, "a", NULL, NULL), AFUT_OK);
    CHECK_EQ_INT(afut_set_exception(g, 2, "b", NULL, NULL), AFUT_OK);
    CHECK_EQ_INT(afut_result(f, NULL), AFUT_ERR_EXCEPTION);
    CHECK_EQ_INT(afut_exception(g, NULL), AFUT_OK);
    afut_unref(f);
    afut_unref(g);
    afut_loop_free(loop);
    CHECK_EQ_INT(r.calls, 0);
}

/* test_futures.py BaseFutureTests.test_tb_logger_not_called_after_cancel (F12, B8, R3):
 * cancel() after set_exception returns false but clears the unretrieved mark. */
TEST(test_tb_logger_not_called_after_cancel) {
    report_t r;
    afut_loop_t *loop = new_loop(&r);
    afut_t *f = afut_loop_create_future(loop);
    rec_t det = {0};
    CHECK_EQ_INT(afut_set_exception(f, 1, "boom", &det, rec_free), AFUT_OK);
    CHECK(!afut_cancel(f, "too late"));
    CHECK(!afut_cancelled(f));
    afut_unref(f);
    CHECK_EQ_INT(det.frees, 1);
    afut_loop_free(loop);
    CHECK_EQ_INT(r.calls, 0);
}

/* test_futures.py BaseFutureTests.test_tb_logger_result_unretrieved: never for a result */
TEST(test_tb_logger_result_unretrieved) {
    report_t r;
    afut_loop_t *loop = new_loop(&r);
    afut_t *f = afut_loop_create_future(loop);
    rec_t val = {0};
    CHECK_EQ_INT(afut_set_result(f, &val, rec_free), AFUT_OK);
    afut_unref(f);
    CHECK_EQ_INT(val.frees, 1);
    afut_loop_free(loop);
    CHECK_EQ_INT(r.calls, 0);
}

/* test_futures.py BaseFutureTests.test_tb_logger_abandoned: never for a pending future
 * (F15: a plain Future destroyed while pending is silent) */
TEST(test_tb_logger_abandoned) {
    report_t r;
    afut_loop_t *loop = new_loop(&r);
    afut_t *f = afut_loop_create_future(loop);
    rec_t cb = {0};
    CHECK_EQ_INT(afut_add_done_callback(f, rec_done, &cb, rec_free), AFUT_OK);
    afut_unref(f);
    CHECK_EQ_INT(cb.frees, 1);
    CHECK_EQ_INT(run1(loop), 0);
    afut_loop_free(loop);
    CHECK_EQ_INT(r.calls, 0);
    CHECK_EQ_INT(cb.calls, 0);
}

/* F14/F15: never for a cancelled future (with or without message, with callbacks) */
TEST(test_cancelled_never_reported) {
    report_t r;
    afut_loop_t *loop = new_loop(&r);
    afut_t *f = afut_loop_create_future(loop);
    afut_t *g = afut_loop_create_future(loop);
    rec_t cb = {0};
    CHECK(afut_cancel(f, NULL));
    CHECK_EQ_INT(afut_add_done_callback(g, rec_done, &cb, rec_free), AFUT_OK);
    CHECK(afut_cancel(g, "msg"));
    afut_unref(f);
    afut_unref(g);
    CHECK_EQ_INT(run1(loop), 1);
    CHECK_EQ_INT(cb.calls, 1);
    afut_loop_free(loop);
    CHECK_EQ_INT(r.calls, 0);
}

/* R6 / B13: only the LAST reference reports, not an earlier unref */
TEST(test_report_on_last_reference_only) {
    report_t r;
    afut_loop_t *loop = new_loop(&r);
    afut_t *f = afut_loop_create_future(loop);
    CHECK_EQ_INT(afut_set_exception(f, 3, "boom", NULL, NULL), AFUT_OK);
    afut_t *g = afut_ref(f);
    afut_t *h = afut_ref(f);
    CHECK(g == f && h == f);
    afut_unref(f);
    afut_unref(g);
    CHECK_EQ_INT(r.calls, 0);
    afut_unref(h);
    CHECK_EQ_INT(r.calls, 1);
    CHECK_STR(r.message, NEVER_MSG);
    CHECK_EQ_INT(r.code, 3);
    afut_loop_free(loop);
    CHECK_EQ_INT(r.calls, 1);
}

/* header (Ownership): the loop holds its own reference while callbacks are queued: the
 * report waits until the loop ran the callbacks and let go of the future, then comes once,
 * during that run_once. */
TEST(test_pending_callback_delays_report) {
    report_t r;
    afut_loop_t *loop = new_loop(&r);
    afut_t *f = afut_loop_create_future(loop);
    rec_t a = {0}, b = {0}, det = {0};
    CHECK_EQ_INT(afut_add_done_callback(f, rec_done, &a, rec_free), AFUT_OK);
    CHECK_EQ_INT(afut_add_done_callback(f, rec_done, &b, rec_free), AFUT_OK);
    CHECK_EQ_INT(afut_set_exception(f, 9, "late", &det, rec_free), AFUT_OK);
    afut_unref(f);
    CHECK_EQ_INT(r.calls, 0);
    CHECK_EQ_INT(det.frees, 0);
    CHECK_EQ_INT(run1(loop), 2);
    CHECK_EQ_INT(a.calls + b.calls, 2);
    CHECK_EQ_INT(r.calls, 1);
    CHECK_STR(r.message, NEVER_MSG);
    CHECK(r.future_non_null);
    CHECK_EQ_INT(r.code, 9);
    CHECK_STR(r.exc_message, "late");
    CHECK(r.detail == &det);
    CHECK_EQ_INT(det.frees, 1);
    CHECK_EQ_INT(run1(loop), 0);
    afut_loop_free(loop);
    CHECK_EQ_INT(r.calls, 1);
    CHECK_EQ_INT(det.frees, 1);
}

/* F14: a done-callback that retrieves the exception (what awaiting does) suppresses it */
TEST(test_callback_retrieval_suppresses) {
    report_t r;
    afut_loop_t *loop = new_loop(&r);
    afut_t *f = afut_loop_create_future(loop);
    rec_t a = {0};
    CHECK_EQ_INT(afut_add_done_callback(f, retrieve_done, &a, rec_free), AFUT_OK);
    CHECK_EQ_INT(afut_set_exception(f, 9, "seen", NULL, NULL), AFUT_OK);
    afut_unref(f);
    CHECK_EQ_INT(run1(loop), 1);
    CHECK_EQ_INT(a.calls, 1);
    afut_loop_free(loop);
    CHECK_EQ_INT(r.calls, 0);
}

/* B7 / header: the future in the context is valid only during the call and cannot be
 * resurrected: afut_ref on it returns NULL; per the header afut_add_done_callback on it is
 * ERR_INVALID_STATE (userdata stays the caller's) and afut_unref a no-op. */
TEST(test_ref_in_handler_returns_null) {
    report_t r;
    afut_loop_t *loop = new_loop(&r);
    r.try_ref = true;
    afut_t *f = afut_loop_create_future(loop);
    CHECK_EQ_INT(afut_set_exception(f, 4, "dying", NULL, NULL), AFUT_OK);
    afut_unref(f);
    CHECK_EQ_INT(r.calls, 1);
    CHECK(r.future_non_null);
    CHECK(r.ref_returned_null);
    CHECK_EQ_INT(r.add_rc, AFUT_ERR_INVALID_STATE); /* header afut_add_done_callback */
    CHECK_EQ_INT(r.add_frees, 0);
    CHECK_EQ_INT(run1(loop), 0);
    afut_loop_free(loop);
    CHECK_EQ_INT(r.calls, 1);
}

/* F14: the mark is set by set_exception; an exception() call made while still pending
 * (ERR_INVALID_STATE) does not count as retrieving the later exception. */
TEST(test_exception_before_set_does_not_suppress) {
    report_t r;
    afut_loop_t *loop = new_loop(&r);
    afut_t *f = afut_loop_create_future(loop);
    CHECK_EQ_INT(afut_exception(f, NULL), AFUT_ERR_INVALID_STATE);
    CHECK_EQ_INT(afut_result(f, NULL), AFUT_ERR_INVALID_STATE);
    CHECK_EQ_INT(afut_set_exception(f, 5, "later", NULL, NULL), AFUT_OK);
    afut_unref(f);
    CHECK_EQ_INT(r.calls, 1);
    CHECK_STR(r.message, NEVER_MSG);
    afut_loop_free(loop);
}

/* F2 / R3: a rejected set_exception on a finished-with-result future changes nothing:
 * no report; a rejected second set_exception does not re-arm a retrieved exception. */
TEST(test_rejected_set_exception_no_report) {
    report_t r;
    afut_loop_t *loop = new_loop(&r);
    afut_t *f = afut_loop_create_future(loop);
    afut_t *g = afut_loop_create_future(loop);
    rec_t d1 = {0}, d2 = {0};
    CHECK_EQ_INT(afut_set_result(f, NULL, NULL), AFUT_OK);
    CHECK_EQ_INT(afut_set_exception(f, 1, "no", &d1, rec_free), AFUT_ERR_INVALID_STATE);
    CHECK_EQ_INT(afut_set_exception(g, 2, "first", NULL, NULL), AFUT_OK);
    CHECK_EQ_INT(afut_exception(g, NULL), AFUT_OK);
    CHECK_EQ_INT(afut_set_exception(g, 3, "second", &d2, rec_free), AFUT_ERR_INVALID_STATE);
    afut_unref(f);
    afut_unref(g);
    afut_loop_free(loop);
    CHECK_EQ_INT(r.calls, 0);
    CHECK_EQ_INT(d1.frees, 0);
    CHECK_EQ_INT(d2.frees, 0);
}

static void set_exception_cb(void *ud) {
    (void)afut_set_exception(ud, 8, "from callback", NULL, NULL);
}

/* API.md run_until_complete: ERR_EXCEPTION "counts as retrieving it" (header) */
TEST(test_run_until_complete_exception_suppresses) {
    report_t r;
    afut_loop_t *loop = new_loop(&r);
    afut_t *f = afut_loop_create_future(loop);
    CHECK(afut_loop_call_soon(loop, set_exception_cb, f, NULL) != 0);
    CHECK_EQ_INT(afut_loop_run_until_complete(loop, f), AFUT_ERR_EXCEPTION);
    afut_unref(f);
    afut_loop_free(loop);
    CHECK_EQ_INT(r.calls, 0);
}

/* test_futures.py BaseFutureTests.test_future_exception_never_retrieved_debug: the report
 * is made whatever the mode (API.md set_debug), once; debug may add to the message. */
TEST(test_future_exception_never_retrieved_debug) {
    report_t r;
    afut_loop_t *loop = new_loop(&r);
    afut_loop_set_debug(loop, true);
    afut_t *f = afut_loop_create_future(loop);
    CHECK_EQ_INT(afut_set_exception(f, 6, "dbg", NULL, NULL), AFUT_OK);
    afut_unref(f);
    CHECK_EQ_INT(r.calls, 1);
    CHECK_EQ_INT(r.never_calls, 1);
    CHECK(r.future_non_null);
    CHECK_EQ_INT(r.code, 6);
    afut_loop_free(loop);
    CHECK_EQ_INT(r.calls, 1);
}

/* F15: "Reporting ... goes to the future's loop even when that loop is closed or not
 * running" (the loop is closed, not yet freed). */
TEST(test_report_after_loop_closed) {
    report_t r;
    afut_loop_t *loop = new_loop(&r);
    afut_t *f = afut_loop_create_future(loop);
    CHECK_EQ_INT(afut_set_exception(f, 12, "closed", NULL, NULL), AFUT_OK);
    CHECK_EQ_INT(afut_loop_close(loop), AFUT_OK);
    CHECK_EQ_INT(r.calls, 0);
    afut_unref(f);
    CHECK_EQ_INT(r.calls, 1);
    CHECK_STR(r.message, NEVER_MSG);
    CHECK_EQ_INT(r.code, 12);
    afut_loop_free(loop);
    CHECK_EQ_INT(r.calls, 1);
}

/* the loop dropping its internal reference: queued callbacks dropped by
 * afut_loop_close release the future; with no user reference left, that is the last
 * release and the report comes then, once. */
TEST(test_report_when_close_drops_queued_callbacks) {
    report_t r;
    afut_loop_t *loop = new_loop(&r);
    afut_t *f = afut_loop_create_future(loop);
    rec_t a = {0}, det = {0};
    CHECK_EQ_INT(afut_add_done_callback(f, rec_done, &a, rec_free), AFUT_OK);
    CHECK_EQ_INT(afut_set_exception(f, 13, "queued", &det, rec_free), AFUT_OK);
    afut_unref(f);
    CHECK_EQ_INT(r.calls, 0);
    CHECK_EQ_INT(afut_loop_close(loop), AFUT_OK);
    CHECK_EQ_INT(a.calls, 0);
    CHECK_EQ_INT(a.frees, 1);
    CHECK_EQ_INT(r.calls, 1);
    CHECK_STR(r.message, NEVER_MSG);
    CHECK_EQ_INT(r.code, 13);
    CHECK_EQ_INT(det.frees, 1);
    afut_loop_free(loop);
    CHECK_EQ_INT(r.calls, 1);
    CHECK_EQ_INT(det.frees, 1);
}

/* R6: reports are per future: two unretrieved futures give two reports, a retrieved one
 * none. */
TEST(test_one_report_per_future) {
    report_t r;
    afut_loop_t *loop = new_loop(&r);
    afut_t *f[3];
    for (int i = 0; i < 3; i++) {
        f[i] = afut_loop_create_future(loop);
        CHECK_EQ_INT(afut_set_exception(f[i], 20 + i, "x", NULL, NULL), AFUT_OK);
    }
    CHECK_EQ_INT(afut_exception(f[1], NULL), AFUT_OK);
    for (int i = 0; i < 3; i++) afut_unref(f[i]);
    CHECK_EQ_INT(r.calls, 2);
    CHECK_EQ_INT(r.never_calls, 2);
    CHECK_EQ_INT(r.code, 20);
    afut_loop_free(loop);
    CHECK_EQ_INT(r.calls, 2);
}

static void *unref_thread(void *fut) {
    afut_unref(fut);
    return NULL;
}

/* header: the report is made synchronously on the thread that drops the last reference */
TEST(test_report_on_last_unref_thread) {
    report_t r;
    afut_loop_t *loop = new_loop(&r);
    afut_t *f = afut_loop_create_future(loop);
    CHECK_EQ_INT(afut_set_exception(f, 31, "elsewhere", NULL, NULL), AFUT_OK);
    pthread_t t;
    CHECK_EQ_INT(pthread_create(&t, NULL, unref_thread, f), 0);
    CHECK_EQ_INT(pthread_join(t, NULL), 0);
    CHECK_EQ_INT(r.calls, 1);
    CHECK_STR(r.message, NEVER_MSG);
    CHECK(r.calls == 1 && pthread_equal(r.thread, t));
    CHECK_EQ_INT(r.code, 31);
    afut_loop_free(loop);
    CHECK_EQ_INT(r.calls, 1);
}

/* header: the default exception handler (NULL handler) writes the report to stderr */
TEST(test_default_handler_writes_stderr) {
    afut_loop_t *loop = afut_loop_new();
    afut_loop_set_exception_handler(loop, NULL, NULL, NULL);
    afut_t *f = afut_loop_create_future(loop);
    CHECK_EQ_INT(afut_set_exception(f, 32, "to stderr", NULL, NULL), AFUT_OK);
    capture_t c;
    char out[2048];
    capture_begin(&c);
    afut_unref(f);
    capture_end(&c, out, sizeof out);
    CHECK(strstr(out, NEVER_MSG) != NULL);
    afut_loop_free(loop);
}

/* header (afut_loop_free): reports go to stderr once the loop was freed (the future outlived it) */
TEST(test_report_to_stderr_after_loop_freed) {
    report_t r;
    afut_loop_t *loop = new_loop(&r);
    afut_t *f = afut_loop_create_future(loop);
    CHECK_EQ_INT(afut_set_exception(f, 33, "orphan", NULL, NULL), AFUT_OK);
    afut_loop_free(loop);
    capture_t c;
    char out[2048];
    capture_begin(&c);
    afut_unref(f);
    capture_end(&c, out, sizeof out);
    CHECK(strstr(out, NEVER_MSG) != NULL);
    CHECK_EQ_INT(r.calls, 0);
}

/* header afut_new: no never-retrieved report for a loop-less future (nothing on stderr) */
TEST(test_loopless_never_reported) {
    afut_t *f = afut_new(NULL);
    CHECK_EQ_INT(afut_set_exception(f, 34, "loop-less", NULL, NULL), AFUT_OK);
    capture_t c;
    char out[2048];
    capture_begin(&c);
    afut_unref(f);
    capture_end(&c, out, sizeof out);
    CHECK(strstr(out, NEVER_MSG) == NULL);
}

int main(void) {
    RUN_T(test_tb_logger_exception_unretrieved);
    RUN_T(test_unretrieved_without_message);
    RUN_T(test_tb_logger_exception_retrieved);
    RUN_T(test_tb_logger_exception_result_retrieved);
    RUN_T(test_retrieved_with_null_out);
    RUN_T(test_tb_logger_not_called_after_cancel);
    RUN_T(test_tb_logger_result_unretrieved);
    RUN_T(test_tb_logger_abandoned);
    RUN_T(test_cancelled_never_reported);
    RUN_T(test_report_on_last_reference_only);
    RUN_T(test_pending_callback_delays_report);
    RUN_T(test_callback_retrieval_suppresses);
    RUN_T(test_ref_in_handler_returns_null);
    RUN_T(test_exception_before_set_does_not_suppress);
    RUN_T(test_rejected_set_exception_no_report);
    RUN_T(test_run_until_complete_exception_suppresses);
    RUN_T(test_future_exception_never_retrieved_debug);
    RUN_T(test_report_after_loop_closed);
    RUN_T(test_report_when_close_drops_queued_callbacks);
    RUN_T(test_one_report_per_future);
    RUN_T(test_report_on_last_unref_thread);
    RUN_T(test_default_handler_writes_stderr);
    RUN_T(test_report_to_stderr_after_loop_freed);
    RUN_T(test_loopless_never_reported);

    TEST_END();
}
