/* The bad-input matrix: every exported function of include/afut.h with NULL
 * in each pointer argument, NaN / INFINITY / -INFINITY / negative times, calls on a closed
 * loop, on futures that outlived afut_loop_free, double completion, unknown status codes,
 * run_* / close / free / afut_wait from inside a callback, and calls from the wrong thread;
 * and every function that takes a double with times from the edges.
 *
 * Rule (API.md "Bad input never crashes", the header's `Bad input:` lines and the helper
 * brief's decisions): each returns its documented status (or NULL / false / 0 / -1) and
 * changes nothing; whatever the caller passed (userdata, value, detail) stays the caller's,
 * which every row checks by counting free-function calls.
 *
 * One table, one test: each row is a case function; the test prints one line per row. */
#define _GNU_SOURCE

#include <errno.h>
#include <float.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "afut.h"
#include "test.h"

/* ------------------------------------------------------------------------------------------
 * Per-row bookkeeping. */

static int g_frees;          /* calls of count_free */
static int g_row_failed;
static char g_row_msg[256];

static void count_free(void *p) {
    (void)p;
    g_frees++;
}

#define EXPECT(cond)                                                                     \
    do {                                                                                 \
        if (!(cond) && !g_row_failed) {                                                  \
            g_row_failed = 1;                                                            \
            snprintf(g_row_msg, sizeof g_row_msg, "line %d: %s", __LINE__, #cond);       \
        }                                                                                \
    } while (0)

#define EXPECT_EQ(a, b)                                                                  \
    do {                                                                                 \
        long long a_ = (long long)(a), b_ = (long long)(b);                              \
        if (a_ != b_ && !g_row_failed) {                                                 \
            g_row_failed = 1;                                                            \
            snprintf(g_row_msg, sizeof g_row_msg, "line %d: %s == %lld, expected %lld",  \
                     __LINE__, #a, a_, b_);                                              \
        }                                                                                \
    } while (0)

/* Fixtures, released after each row. */
static afut_loop_t *g_loops[4];
static int g_nloops;
static afut_t *g_futs[16];
static int g_nfuts;

static afut_loop_t *new_loop(void) {
    afut_loop_t *l = afut_loop_new();
    if (l) g_loops[g_nloops++] = l;
    return l;
}

static afut_t *keep(afut_t *f) {
    if (f) g_futs[g_nfuts++] = f;
    return f;
}

static afut_t *new_fut(afut_loop_t *l) { return keep(l ? afut_loop_create_future(l) : afut_new(NULL)); }

static void release_fixtures(void) {
    for (int i = 0; i < g_nfuts; i++) afut_unref(g_futs[i]);
    g_nfuts = 0;
    for (int i = 0; i < g_nloops; i++) afut_loop_free(g_loops[i]);
    g_nloops = 0;
}

static int g_token; /* a userdata / value / detail the rows hand out */
#define UD ((void *)&g_token)

static int g_cb_runs;
static void cb(void *ud) {
    (void)ud;
    g_cb_runs++;
}
static void done_cb(afut_t *f, void *ud) {
    (void)f;
    (void)ud;
    g_cb_runs++;
}
static void step_fn(afut_t *task, afut_t *awaited, void *ud) {
    (void)awaited;
    (void)ud;
    afut_set_result(task, NULL, NULL);
}
static void handler(afut_loop_t *l, const afut_error_context_t *c, void *ud) {
    (void)l;
    (void)c;
    (void)ud;
}

/* A closed loop (kept open as a handle: closed, not freed). */
static afut_loop_t *closed_loop(void) {
    afut_loop_t *l = new_loop();
    afut_loop_close(l);
    return l;
}

/* ------------------------------------------------------------------------------------------
 * Library */

static void c_status_str_unknown(void) {
    const int32_t codes[] = {1, 2, -12, -13, 100, -100, INT32_MAX, INT32_MIN, -1000000};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        const char *s = afut_status_str(codes[i]);
        EXPECT(s != NULL);
        if (s) EXPECT(strcmp(s, "unknown status") == 0);
    }
}

static void c_status_str_known_distinct(void) {
    const char *s[12];
    for (int i = 0; i < 12; i++) {
        s[i] = afut_status_str(-i);
        EXPECT(s[i] != NULL && s[i][0] != '\0');
        if (s[i]) EXPECT(strcmp(s[i], "unknown status") != 0);
    }
    for (int i = 0; i < 12; i++)
        for (int j = i + 1; j < 12; j++)
            if (s[i] && s[j]) EXPECT(strcmp(s[i], s[j]) != 0);
}

static void c_version(void) {
    const char *v = afut_version();
    EXPECT(v != NULL);
    if (v) EXPECT(strcmp(v, AFUT_VERSION_STRING) == 0);
}

/* ------------------------------------------------------------------------------------------
 * Loop: NULL handles */

static void c_loop_free_null(void) { afut_loop_free(NULL); }
static void c_loop_close_null(void) { EXPECT_EQ(afut_loop_close(NULL), AFUT_ERR_INVALID_ARGUMENT); }
static void c_loop_is_running_null(void) { EXPECT(!afut_loop_is_running(NULL)); }
static void c_loop_is_closed_null(void) { EXPECT(!afut_loop_is_closed(NULL)); }
static void c_loop_time_null(void) { EXPECT(isnan(afut_loop_time(NULL))); }
static void c_run_until_complete_null_loop(void) {
    afut_t *f = new_fut(new_loop());
    EXPECT_EQ(afut_loop_run_until_complete(NULL, f), AFUT_ERR_INVALID_ARGUMENT);
    EXPECT(!afut_done(f));
}
static void c_run_until_complete_null_fut(void) {
    EXPECT_EQ(afut_loop_run_until_complete(new_loop(), NULL), AFUT_ERR_INVALID_ARGUMENT);
}
static void c_run_until_complete_other_loop(void) {
    afut_loop_t *a = new_loop(), *b = new_loop();
    afut_t *f = new_fut(b);
    afut_set_result(f, NULL, NULL);
    EXPECT_EQ(afut_loop_run_until_complete(a, f), AFUT_ERR_INVALID_ARGUMENT);
}
static void c_run_forever_null(void) { EXPECT_EQ(afut_loop_run_forever(NULL), AFUT_ERR_INVALID_ARGUMENT); }
static void c_stop_null(void) { afut_loop_stop(NULL); }
static void c_run_once_null(void) {
    size_t ran = 99;
    EXPECT_EQ(afut_loop_run_once(NULL, 0, &ran), AFUT_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(ran, 99);
}
static void c_run_once_null_ran_out(void) { EXPECT_EQ(afut_loop_run_once(new_loop(), 0, NULL), AFUT_OK); }
static void c_loop_fd_null(void) {
    errno = 0;
    EXPECT_EQ(afut_loop_fd(NULL), -1);
    EXPECT_EQ(errno, EINVAL);
}
static void c_timeout_ms_null(void) { EXPECT_EQ(afut_loop_timeout_ms(NULL), -1); }
static void c_set_handler_null_loop(void) {
    afut_loop_set_exception_handler(NULL, handler, UD, count_free);
    EXPECT_EQ(g_frees, 0);
}
static void c_set_handler_null_fn(void) {
    /* documented: NULL handler restores the default and frees the userdata at once */
    afut_loop_set_exception_handler(new_loop(), NULL, UD, count_free);
    EXPECT_EQ(g_frees, 1);
}
static void c_set_debug_null(void) { afut_loop_set_debug(NULL, true); }
static void c_set_wakeup_null_loop(void) {
    afut_loop_set_wakeup_fn(NULL, cb, UD, count_free);
    EXPECT_EQ(g_frees, 0);
}
static void c_set_wakeup_null_fn(void) {
    afut_loop_set_wakeup_fn(new_loop(), NULL, UD, count_free);
    EXPECT_EQ(g_frees, 1);
}

/* Loop: scheduling with bad arguments */

static void c_call_soon_null_loop(void) {
    EXPECT_EQ(afut_loop_call_soon(NULL, cb, UD, count_free), 0);
    EXPECT_EQ(g_frees, 0);
}
static void c_call_soon_null_cb(void) {
    EXPECT_EQ(afut_loop_call_soon(new_loop(), NULL, UD, count_free), 0);
    EXPECT_EQ(g_frees, 0);
}
static void c_call_soon_ts_null_loop(void) {
    EXPECT_EQ(afut_loop_call_soon_threadsafe(NULL, cb, UD, count_free), 0);
    EXPECT_EQ(g_frees, 0);
}
static void c_call_soon_ts_null_cb(void) {
    EXPECT_EQ(afut_loop_call_soon_threadsafe(new_loop(), NULL, UD, count_free), 0);
    EXPECT_EQ(g_frees, 0);
}
static void c_call_later_null_loop(void) {
    EXPECT_EQ(afut_loop_call_later(NULL, 0, cb, UD, count_free), 0);
    EXPECT_EQ(g_frees, 0);
}
static void c_call_later_null_cb(void) {
    EXPECT_EQ(afut_loop_call_later(new_loop(), 0, NULL, UD, count_free), 0);
    EXPECT_EQ(g_frees, 0);
}
static void c_call_later_nan(void) {
    afut_loop_t *l = new_loop();
    EXPECT_EQ(afut_loop_call_later(l, NAN, cb, UD, count_free), 0);
    EXPECT_EQ(afut_loop_call_later(l, -NAN, cb, UD, count_free), 0);
    EXPECT_EQ(g_frees, 0);
    EXPECT_EQ(afut_loop_timeout_ms(l), -1); /* nothing scheduled */
}
static void c_call_later_inf(void) {
    /* API.md Time: INFINITY means never */
    afut_loop_t *l = new_loop();
    afut_handle_t h = afut_loop_call_later(l, INFINITY, cb, UD, count_free);
    EXPECT(h != 0);
    size_t ran = 99;
    EXPECT_EQ(afut_loop_run_once(l, 0, &ran), AFUT_OK);
    EXPECT_EQ(ran, 0);
    EXPECT_EQ(g_cb_runs, 0);
    EXPECT(afut_loop_cancel(l, h));
    EXPECT_EQ(g_frees, 1);
}
static void c_call_later_neg_inf(void) {
    afut_loop_t *l = new_loop();
    EXPECT(afut_loop_call_later(l, -INFINITY, cb, UD, count_free) != 0);
    size_t ran = 0;
    EXPECT_EQ(afut_loop_run_once(l, 0, &ran), AFUT_OK);
    EXPECT_EQ(ran, 1);
    EXPECT_EQ(g_cb_runs, 1);
    EXPECT_EQ(g_frees, 1);
}
static void c_call_later_negative(void) {
    afut_loop_t *l = new_loop();
    EXPECT(afut_loop_call_later(l, -5.0, cb, UD, count_free) != 0);
    EXPECT_EQ(afut_loop_timeout_ms(l), 0);
    size_t ran = 0;
    EXPECT_EQ(afut_loop_run_once(l, 0, &ran), AFUT_OK);
    EXPECT_EQ(ran, 1);
    EXPECT_EQ(g_frees, 1);
}
static void c_call_later_huge(void) {
    afut_loop_t *l = new_loop();
    afut_handle_t h = afut_loop_call_later(l, 1e300, cb, UD, count_free);
    EXPECT(h != 0);
    int t = afut_loop_timeout_ms(l);
    EXPECT(t == -1 || t > 0);
    EXPECT_EQ(afut_loop_run_once(l, 0, NULL), AFUT_OK);
    EXPECT_EQ(g_cb_runs, 0);
    /* freed by the loop's close */
}
static void c_call_at_null_loop(void) {
    EXPECT_EQ(afut_loop_call_at(NULL, 0, cb, UD, count_free), 0);
    EXPECT_EQ(g_frees, 0);
}
static void c_call_at_null_cb(void) {
    EXPECT_EQ(afut_loop_call_at(new_loop(), 0, NULL, UD, count_free), 0);
    EXPECT_EQ(g_frees, 0);
}
static void c_call_at_nan(void) {
    EXPECT_EQ(afut_loop_call_at(new_loop(), NAN, cb, UD, count_free), 0);
    EXPECT_EQ(g_frees, 0);
}
static void c_call_at_inf(void) {
    afut_loop_t *l = new_loop();
    afut_handle_t h = afut_loop_call_at(l, INFINITY, cb, UD, count_free);
    EXPECT(h != 0);
    EXPECT_EQ(afut_loop_timeout_ms(l), -1);
    EXPECT_EQ(afut_loop_run_once(l, 0, NULL), AFUT_OK);
    EXPECT_EQ(g_cb_runs, 0);
    EXPECT(afut_loop_cancel(l, h));
    EXPECT_EQ(g_frees, 1);
}
static void c_call_at_neg_inf(void) {
    afut_loop_t *l = new_loop();
    EXPECT(afut_loop_call_at(l, -INFINITY, cb, UD, count_free) != 0);
    EXPECT_EQ(afut_loop_run_once(l, 0, NULL), AFUT_OK);
    EXPECT_EQ(g_cb_runs, 1);
    EXPECT_EQ(g_frees, 1);
}
static void c_call_at_negative(void) {
    afut_loop_t *l = new_loop();
    EXPECT(afut_loop_call_at(l, -1.0, cb, UD, count_free) != 0);
    EXPECT_EQ(afut_loop_run_once(l, 0, NULL), AFUT_OK);
    EXPECT_EQ(g_cb_runs, 1);
    EXPECT_EQ(g_frees, 1);
}
static void c_cancel_null_loop(void) {
    afut_loop_t *l = new_loop();
    afut_handle_t h = afut_loop_call_soon(l, cb, UD, count_free);
    EXPECT(!afut_loop_cancel(NULL, h));
    EXPECT_EQ(g_frees, 0);
    EXPECT_EQ(afut_loop_run_once(l, 0, NULL), AFUT_OK);
    EXPECT_EQ(g_cb_runs, 1);
}
static void c_cancel_zero(void) { EXPECT(!afut_loop_cancel(new_loop(), 0)); }
static void c_cancel_garbage(void) {
    afut_loop_t *l = new_loop();
    afut_handle_t h = afut_loop_call_soon(l, cb, UD, count_free);
    EXPECT(!afut_loop_cancel(l, h + 1));
    EXPECT(!afut_loop_cancel(l, h ^ (1ull << 32)));
    EXPECT(!afut_loop_cancel(l, UINT64_MAX));
    EXPECT_EQ(g_frees, 0);
}
static void c_cancel_twice(void) {
    afut_loop_t *l = new_loop();
    afut_handle_t h = afut_loop_call_soon(l, cb, UD, count_free);
    EXPECT(afut_loop_cancel(l, h));
    EXPECT(!afut_loop_cancel(l, h));
    EXPECT_EQ(g_frees, 1);
    EXPECT_EQ(afut_loop_run_once(l, 0, NULL), AFUT_OK);
    EXPECT_EQ(g_cb_runs, 0);
}
static void c_cancel_after_run(void) {
    afut_loop_t *l = new_loop();
    afut_handle_t h = afut_loop_call_soon(l, cb, UD, count_free);
    afut_loop_run_once(l, 0, NULL);
    EXPECT(!afut_loop_cancel(l, h));
    EXPECT_EQ(g_frees, 1);
}
static void c_cancel_other_loops_handle(void) {
    afut_loop_t *a = new_loop(), *b = new_loop();
    afut_handle_t h = afut_loop_call_soon(a, cb, UD, count_free);
    afut_loop_cancel(b, h); /* another loop's table: must not cancel a's callback */
    EXPECT_EQ(afut_loop_run_once(a, 0, NULL), AFUT_OK);
    EXPECT_EQ(g_cb_runs, 1);
    EXPECT_EQ(g_frees, 1);
}

/* Loop: closed */

static void c_closed_call_soon(void) {
    afut_loop_t *l = closed_loop();
    EXPECT_EQ(afut_loop_call_soon(l, cb, UD, count_free), 0);
    EXPECT_EQ(afut_loop_call_soon_threadsafe(l, cb, UD, count_free), 0);
    EXPECT_EQ(g_frees, 0);
}
static void c_closed_call_later(void) {
    afut_loop_t *l = closed_loop();
    EXPECT_EQ(afut_loop_call_later(l, 0, cb, UD, count_free), 0);
    EXPECT_EQ(afut_loop_call_at(l, 0, cb, UD, count_free), 0);
    EXPECT_EQ(g_frees, 0);
}
static void c_closed_run(void) {
    afut_loop_t *l = closed_loop();
    afut_t *f = new_fut(l);
    size_t ran = 99;
    EXPECT_EQ(afut_loop_run_once(l, 0, &ran), AFUT_ERR_LOOP_CLOSED);
    EXPECT_EQ(ran, 99);
    EXPECT_EQ(afut_loop_run_forever(l), AFUT_ERR_LOOP_CLOSED);
    EXPECT_EQ(afut_loop_run_until_complete(l, f), AFUT_ERR_LOOP_CLOSED);
    EXPECT(!afut_loop_is_running(l));
}
static void c_closed_close_again(void) {
    afut_loop_t *l = closed_loop();
    EXPECT_EQ(afut_loop_close(l), AFUT_OK);
    EXPECT(afut_loop_is_closed(l));
}
static void c_closed_timeout_ms(void) { EXPECT_EQ(afut_loop_timeout_ms(closed_loop()), -1); }
static void c_closed_cancel(void) {
    afut_loop_t *l = new_loop();
    afut_handle_t h = afut_loop_call_soon(l, cb, UD, count_free);
    afut_loop_close(l);
    EXPECT_EQ(g_frees, 1); /* close dropped it */
    EXPECT(!afut_loop_cancel(l, h));
    EXPECT_EQ(g_frees, 1);
}
static void c_closed_add_cb_done(void) {
    afut_loop_t *l = new_loop();
    afut_t *f = new_fut(l);
    afut_set_result(f, NULL, NULL);
    afut_loop_close(l);
    EXPECT_EQ(afut_add_done_callback(f, done_cb, UD, count_free), AFUT_ERR_LOOP_CLOSED);
    EXPECT_EQ(g_frees, 0);
}
static void c_closed_complete_drops_cbs(void) {
    afut_loop_t *l = new_loop();
    afut_t *f = new_fut(l);
    EXPECT_EQ(afut_add_done_callback(f, done_cb, UD, count_free), AFUT_OK);
    afut_loop_close(l);
    EXPECT_EQ(afut_set_result(f, UD, count_free), AFUT_OK);
    EXPECT_EQ(g_frees, 1); /* the callback's userdata; the value is the future's */
    EXPECT_EQ(g_cb_runs, 0);
    void *v = NULL;
    EXPECT_EQ(afut_result(f, &v), AFUT_OK);
    EXPECT(v == UD);
}
static void c_closed_create_future(void) {
    afut_loop_t *l = closed_loop();
    afut_t *f = keep(afut_loop_create_future(l)); /* asyncio allows it */
    EXPECT(f != NULL);
    if (f) EXPECT_EQ(afut_cancel(f, NULL), true);
}
static void c_closed_sleep(void) {
    EXPECT(afut_sleep(closed_loop(), 0, UD, count_free) == NULL);
    EXPECT_EQ(g_frees, 0);
}
static void c_closed_task_new(void) {
    EXPECT(afut_task_new(closed_loop(), step_fn, UD, count_free) == NULL);
    EXPECT_EQ(g_frees, 0);
}
static void c_closed_loop_queued_freed_once(void) {
    afut_loop_t *l = new_loop();
    afut_loop_call_soon(l, cb, UD, count_free);
    afut_loop_call_later(l, 10, cb, UD, count_free);
    afut_loop_call_at(l, INFINITY, cb, UD, count_free);
    afut_t *f = new_fut(l);
    afut_add_done_callback(f, done_cb, UD, count_free);
    afut_set_result(f, NULL, NULL); /* queued done-callback */
    EXPECT_EQ(afut_loop_close(l), AFUT_OK);
    EXPECT_EQ(g_frees, 4);
    EXPECT_EQ(afut_loop_close(l), AFUT_OK);
    EXPECT_EQ(g_frees, 4);
    EXPECT_EQ(g_cb_runs, 0);
}

/* Loop: freed while futures live (they outlive it) */

static afut_t *orphan(bool with_cb) {
    afut_loop_t *l = afut_loop_new();
    afut_t *f = keep(afut_loop_create_future(l));
    if (with_cb) afut_add_done_callback(f, done_cb, UD, count_free);
    afut_loop_free(l);
    return f;
}
static void c_freed_get_loop(void) { EXPECT(afut_get_loop(orphan(false)) == NULL); }
static void c_freed_complete(void) {
    afut_t *f = orphan(true);
    EXPECT_EQ(g_frees, 0);
    EXPECT_EQ(afut_set_result(f, NULL, NULL), AFUT_OK);
    EXPECT_EQ(g_frees, 1);
    EXPECT_EQ(g_cb_runs, 0);
    EXPECT(afut_done(f));
}
static void c_freed_cancel(void) {
    afut_t *f = orphan(true);
    EXPECT(afut_cancel(f, "late"));
    EXPECT_EQ(g_frees, 1);
    EXPECT(afut_cancel_message(f) && strcmp(afut_cancel_message(f), "late") == 0);
}
static void c_freed_set_exception(void) {
    afut_t *f = orphan(false);
    EXPECT_EQ(afut_set_exception(f, 5, "late", UD, count_free), AFUT_OK);
    afut_exception_t e;
    EXPECT_EQ(afut_exception(f, &e), AFUT_OK); /* retrieved: no stderr report */
    EXPECT_EQ(e.code, 5);
}
static void c_freed_add_cb_done(void) {
    afut_t *f = orphan(false);
    afut_set_result(f, NULL, NULL);
    EXPECT_EQ(afut_add_done_callback(f, done_cb, UD, count_free), AFUT_ERR_LOOP_CLOSED);
    EXPECT_EQ(g_frees, 0);
}
static void c_freed_add_cb_pending(void) {
    afut_t *f = orphan(false);
    EXPECT_EQ(afut_add_done_callback(f, done_cb, UD, count_free), AFUT_OK);
    EXPECT_EQ(afut_remove_done_callback(f, done_cb, UD), 1);
    EXPECT_EQ(g_frees, 1);
}
static void c_freed_sleep_wrap(void) {
    afut_t *f = orphan(false);
    afut_t *l = keep(afut_new(NULL));
    EXPECT(afut_get_loop(l) == NULL);
    EXPECT_EQ(afut_wait(f, 0), AFUT_ERR_TIMEOUT);
    EXPECT(afut_cancel(f, NULL));
    EXPECT_EQ(afut_wait(f, 0), AFUT_OK);
}
static void c_freed_pending_unref(void) {
    /* dropping the last reference of a pending orphan frees its callbacks' userdata */
    afut_loop_t *l = afut_loop_new();
    afut_t *f = afut_loop_create_future(l);
    afut_add_done_callback(f, done_cb, UD, count_free);
    afut_loop_free(l);
    afut_unref(f);
    EXPECT_EQ(g_frees, 1);
}

/* brief: "If the loop was freed, [the never-retrieved report] goes to stderr." */
static void c_freed_unretrieved_to_stderr(void) {
    afut_t *f = orphan(false);
    afut_set_exception(f, 12, "orphaned", UD, count_free);
    fflush(stderr);
    FILE *tmp = tmpfile();
    int saved = dup(2);
    EXPECT(tmp != NULL && saved >= 0);
    if (!tmp || saved < 0) return;
    dup2(fileno(tmp), 2);
    g_nfuts--; /* released here, not by release_fixtures */
    afut_unref(f);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    char text[512] = {0};
    rewind(tmp);
    size_t n = fread(text, 1, sizeof text - 1, tmp);
    fclose(tmp);
    text[n] = '\0';
    EXPECT(strstr(text, "exception was never retrieved") != NULL);
    EXPECT_EQ(g_frees, 1); /* the detail, with the future */
}

/* ------------------------------------------------------------------------------------------
 * Future: NULL handles and functions */

static void c_create_future_null(void) { EXPECT(afut_loop_create_future(NULL) == NULL); }
static void c_new_null_loop(void) {
    afut_t *f = keep(afut_new(NULL)); /* valid: a loop-less future */
    EXPECT(f != NULL);
    EXPECT(afut_get_loop(f) == NULL);
}
static void c_ref_null(void) { EXPECT(afut_ref(NULL) == NULL); }
static void c_unref_null(void) { afut_unref(NULL); }
static void c_set_result_null(void) {
    EXPECT_EQ(afut_set_result(NULL, UD, count_free), AFUT_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(g_frees, 0);
}
static void c_set_exception_null(void) {
    EXPECT_EQ(afut_set_exception(NULL, 1, "m", UD, count_free), AFUT_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(g_frees, 0);
}
static void c_set_exception_code0(void) {
    afut_t *f = new_fut(new_loop());
    EXPECT_EQ(afut_set_exception(f, 0, "m", UD, count_free), AFUT_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(g_frees, 0);
    EXPECT(!afut_done(f));
}
static void c_set_exception_code0_done(void) {
    afut_t *f = new_fut(new_loop());
    afut_set_result(f, NULL, NULL);
    afut_status_t rc = afut_set_exception(f, 0, "m", UD, count_free);
    EXPECT(rc == AFUT_ERR_INVALID_ARGUMENT || rc == AFUT_ERR_INVALID_STATE);
    EXPECT_EQ(g_frees, 0);
    EXPECT_EQ(afut_result(f, NULL), AFUT_OK);
}
static void c_set_exception_null_msg(void) {
    afut_t *f = new_fut(new_loop());
    EXPECT_EQ(afut_set_exception(f, -3, NULL, NULL, NULL), AFUT_OK);
    afut_exception_t e;
    EXPECT_EQ(afut_exception(f, &e), AFUT_OK);
    EXPECT(e.message == NULL && e.code == -3);
}
static void c_result_null(void) {
    void *v = UD;
    EXPECT_EQ(afut_result(NULL, &v), AFUT_ERR_INVALID_ARGUMENT);
    EXPECT(v == UD);
}
static void c_result_null_out(void) {
    afut_t *f = new_fut(new_loop());
    EXPECT_EQ(afut_result(f, NULL), AFUT_ERR_INVALID_STATE);
    afut_set_exception(f, 9, NULL, NULL, NULL);
    EXPECT_EQ(afut_result(f, NULL), AFUT_ERR_EXCEPTION); /* and retrieved: no report */
}
static void c_exception_null(void) {
    afut_exception_t e = {.code = 77};
    EXPECT_EQ(afut_exception(NULL, &e), AFUT_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(e.code, 77);
}
static void c_exception_null_out(void) {
    afut_t *f = new_fut(new_loop());
    EXPECT_EQ(afut_exception(f, NULL), AFUT_ERR_INVALID_STATE);
    afut_set_exception(f, 9, NULL, NULL, NULL);
    EXPECT_EQ(afut_exception(f, NULL), AFUT_OK);
}
static void c_done_null(void) { EXPECT(!afut_done(NULL)); }
static void c_cancelled_null(void) { EXPECT(!afut_cancelled(NULL)); }
static void c_cancel_null_fut(void) { EXPECT(!afut_cancel(NULL, "m")); }
static void c_cancel_message_null(void) { EXPECT(afut_cancel_message(NULL) == NULL); }
static void c_add_cb_null_fut(void) {
    EXPECT_EQ(afut_add_done_callback(NULL, done_cb, UD, count_free), AFUT_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(g_frees, 0);
}
static void c_add_cb_null_fn(void) {
    afut_t *f = new_fut(new_loop());
    EXPECT_EQ(afut_add_done_callback(f, NULL, UD, count_free), AFUT_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(g_frees, 0);
    char buf[64];
    afut_describe(f, buf, sizeof buf);
    EXPECT(strcmp(buf, "<Future pending>") == 0);
}
static void c_add_cb_null_fn_loopless_done(void) {
    afut_t *f = new_fut(NULL);
    afut_set_result(f, NULL, NULL);
    EXPECT_EQ(afut_add_done_callback(f, NULL, UD, count_free), AFUT_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(g_frees, 0);
}
static void c_remove_cb_null_fut(void) { EXPECT_EQ(afut_remove_done_callback(NULL, done_cb, UD), 0); }
static void c_remove_cb_null_fn(void) {
    afut_t *f = new_fut(new_loop());
    afut_add_done_callback(f, done_cb, UD, count_free);
    EXPECT_EQ(afut_remove_done_callback(f, NULL, UD), 0);
    EXPECT_EQ(g_frees, 0);
    EXPECT_EQ(afut_remove_done_callback(f, done_cb, UD), 1);
    EXPECT_EQ(g_frees, 1);
}
static void c_remove_cb_done(void) {
    afut_loop_t *l = new_loop();
    afut_t *f = new_fut(l);
    afut_add_done_callback(f, done_cb, UD, count_free);
    afut_set_result(f, NULL, NULL);
    EXPECT_EQ(afut_remove_done_callback(f, done_cb, UD), 0); /* F9: cannot unschedule */
    EXPECT_EQ(g_frees, 0);
    afut_loop_run_once(l, 0, NULL);
    EXPECT_EQ(g_cb_runs, 1);
    EXPECT_EQ(g_frees, 1);
}
static void c_get_loop_null(void) { EXPECT(afut_get_loop(NULL) == NULL); }
static void c_describe_null(void) {
    char buf[16];
    memset(buf, 'x', sizeof buf);
    EXPECT_EQ(afut_describe(NULL, buf, sizeof buf), 6);
    EXPECT(strcmp(buf, "<NULL>") == 0);
    memset(buf, 'x', sizeof buf);
    EXPECT_EQ(afut_describe(NULL, buf, 3), 6);
    EXPECT(strcmp(buf, "<N") == 0);
}
static void c_describe_null_buf(void) {
    afut_t *f = new_fut(new_loop());
    EXPECT_EQ(afut_describe(f, NULL, 0), strlen("<Future pending>"));
    EXPECT_EQ(afut_describe(f, NULL, 100), strlen("<Future pending>"));
}
static void c_describe_len0(void) {
    afut_t *f = new_fut(new_loop());
    char buf[4] = "abc";
    EXPECT_EQ(afut_describe(f, buf, 0), strlen("<Future pending>"));
    EXPECT(strcmp(buf, "abc") == 0);
}
static void c_describe_truncate(void) {
    afut_t *f = new_fut(new_loop());
    char buf[8];
    memset(buf, 'x', sizeof buf);
    EXPECT_EQ(afut_describe(f, buf, 5), strlen("<Future pending>"));
    EXPECT(strcmp(buf, "<Fut") == 0);
    EXPECT_EQ(buf[5], 'x');
}
static void c_wait_null(void) { EXPECT_EQ(afut_wait(NULL, 0), AFUT_ERR_INVALID_ARGUMENT); }
static void c_wait_nan(void) { EXPECT_EQ(afut_wait(new_fut(new_loop()), NAN), AFUT_ERR_INVALID_ARGUMENT); }
static void c_wait_negative(void) {
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    EXPECT_EQ(afut_wait(new_fut(new_loop()), -1.0), AFUT_ERR_TIMEOUT);
    EXPECT_EQ(afut_wait(new_fut(NULL), -INFINITY), AFUT_ERR_TIMEOUT);
    clock_gettime(CLOCK_MONOTONIC, &b);
    EXPECT(b.tv_sec - a.tv_sec < 2);
}
static void c_wait_done(void) {
    afut_t *f = new_fut(NULL);
    afut_cancel(f, NULL);
    EXPECT_EQ(afut_wait(f, INFINITY), AFUT_OK);
}
static void c_isfuture_null(void) { EXPECT(!afut_isfuture(NULL)); }
static void c_isfuture_other(void) {
    uint64_t words[4] = {0, 0, 0, 0};
    EXPECT(!afut_isfuture(words));
    afut_loop_t *l = new_loop();
    EXPECT(!afut_isfuture(l));
    EXPECT(afut_isfuture(new_fut(l)));
}
static void c_ensure_future_null(void) {
    afut_loop_t *l = new_loop();
    EXPECT(afut_ensure_future(NULL, new_fut(l)) == NULL);
    EXPECT(afut_ensure_future(l, NULL) == NULL);
}
static void c_wrap_future_null(void) {
    afut_loop_t *l = new_loop();
    EXPECT(afut_wrap_future(NULL, new_fut(NULL)) == NULL);
    EXPECT(afut_wrap_future(l, NULL) == NULL);
}
static void c_sleep_null(void) {
    EXPECT(afut_sleep(NULL, 0, UD, count_free) == NULL);
    EXPECT_EQ(g_frees, 0);
}
static void c_sleep_nan(void) {
    EXPECT(afut_sleep(new_loop(), NAN, UD, count_free) == NULL);
    EXPECT_EQ(g_frees, 0);
}
static void c_sleep_inf(void) {
    afut_loop_t *l = new_loop();
    afut_t *f = keep(afut_sleep(l, INFINITY, UD, count_free));
    EXPECT(f != NULL);
    EXPECT_EQ(afut_loop_timeout_ms(l), -1);
    EXPECT_EQ(afut_loop_run_once(l, 0, NULL), AFUT_OK);
    EXPECT(!afut_done(f));
    EXPECT(afut_cancel(f, NULL));
    /* header: cancelled first, value_free runs "then"; src/sleep.rs: on the next iteration */
    EXPECT(g_frees <= 1);
    EXPECT_EQ(afut_loop_run_once(l, 0, NULL), AFUT_OK);
    EXPECT_EQ(g_frees, 1);
    EXPECT_EQ(afut_loop_timeout_ms(l), -1);
}
static void c_sleep_neg_inf(void) {
    afut_loop_t *l = new_loop();
    afut_t *f = keep(afut_sleep(l, -INFINITY, UD, count_free));
    EXPECT(f != NULL);
    EXPECT_EQ(afut_loop_run_once(l, 0, NULL), AFUT_OK);
    EXPECT(afut_done(f));
    void *v = NULL;
    EXPECT_EQ(afut_result(f, &v), AFUT_OK);
    EXPECT(v == UD);
}

/* Double completion (R3): an error with no side effects, the value stays the caller's. */

static void c_double_set_result(void) {
    afut_t *f = new_fut(new_loop());
    afut_set_result(f, NULL, NULL);
    EXPECT_EQ(afut_set_result(f, UD, count_free), AFUT_ERR_INVALID_STATE);
    EXPECT_EQ(g_frees, 0);
    void *v = UD;
    EXPECT_EQ(afut_result(f, &v), AFUT_OK);
    EXPECT(v == NULL);
}
static void c_exception_after_result(void) {
    afut_t *f = new_fut(new_loop());
    afut_set_result(f, NULL, NULL);
    EXPECT_EQ(afut_set_exception(f, 3, "x", UD, count_free), AFUT_ERR_INVALID_STATE);
    EXPECT_EQ(g_frees, 0);
    EXPECT_EQ(afut_result(f, NULL), AFUT_OK);
}
static void c_result_after_exception(void) {
    afut_t *f = new_fut(new_loop());
    afut_set_exception(f, 3, "x", NULL, NULL);
    EXPECT_EQ(afut_set_result(f, UD, count_free), AFUT_ERR_INVALID_STATE);
    EXPECT_EQ(g_frees, 0);
    EXPECT_EQ(afut_result(f, NULL), AFUT_ERR_EXCEPTION);
}
static void c_result_after_cancel(void) {
    afut_t *f = new_fut(new_loop());
    afut_cancel(f, "first");
    EXPECT_EQ(afut_set_result(f, UD, count_free), AFUT_ERR_INVALID_STATE);
    EXPECT_EQ(afut_set_exception(f, 1, NULL, UD, count_free), AFUT_ERR_INVALID_STATE);
    EXPECT(!afut_cancel(f, "second"));
    EXPECT_EQ(g_frees, 0);
    EXPECT(strcmp(afut_cancel_message(f), "first") == 0);
}
static void c_cancel_after_result(void) {
    afut_t *f = new_fut(new_loop());
    afut_set_result(f, UD, count_free);
    EXPECT(!afut_cancel(f, "late"));
    EXPECT(!afut_cancelled(f));
    EXPECT(afut_cancel_message(f) == NULL);
    EXPECT_EQ(g_frees, 0);
}
static void c_double_complete_loopless(void) {
    afut_t *f = new_fut(NULL);
    afut_set_exception(f, 2, NULL, NULL, NULL);
    EXPECT_EQ(afut_set_result(f, UD, count_free), AFUT_ERR_INVALID_STATE);
    EXPECT_EQ(afut_set_exception(f, 2, NULL, UD, count_free), AFUT_ERR_INVALID_STATE);
    EXPECT_EQ(g_frees, 0);
    afut_exception(f, NULL);
}

/* ------------------------------------------------------------------------------------------
 * From inside a callback (the loop's own thread while it runs) */

typedef struct {
    afut_loop_t *l;
    afut_t *f;
    int rc[8];
    int done;
} inside_t;

static void inside_run(void *p) {
    inside_t *c = p;
    size_t ran = 99;
    c->rc[0] = afut_loop_run_once(c->l, 0, &ran);
    c->rc[1] = afut_loop_run_forever(c->l);
    c->rc[2] = afut_loop_run_until_complete(c->l, c->f);
    c->rc[3] = afut_loop_close(c->l);
    c->rc[4] = afut_wait(c->f, 0);
    c->rc[5] = afut_wait(c->f, 1.0); /* must not block for a second */
    c->rc[6] = (int)ran;
    afut_loop_free(c->l); /* does nothing but report on stderr */
    c->rc[7] = afut_loop_is_closed(c->l) ? 1 : 0;
    c->done = 1;
}
static void c_inside_callback(void) {
    inside_t c = {0};
    c.l = new_loop();
    c.f = new_fut(c.l);
    afut_loop_call_soon(c.l, inside_run, &c, NULL);
    EXPECT_EQ(afut_loop_run_once(c.l, 0, NULL), AFUT_OK);
    EXPECT(c.done);
    EXPECT_EQ(c.rc[0], AFUT_ERR_LOOP_RUNNING);
    EXPECT_EQ(c.rc[1], AFUT_ERR_LOOP_RUNNING);
    EXPECT_EQ(c.rc[2], AFUT_ERR_LOOP_RUNNING);
    EXPECT_EQ(c.rc[3], AFUT_ERR_LOOP_RUNNING);
    EXPECT_EQ(c.rc[4], AFUT_ERR_WRONG_THREAD);
    EXPECT_EQ(c.rc[5], AFUT_ERR_WRONG_THREAD);
    EXPECT_EQ(c.rc[6], 99);
    EXPECT_EQ(c.rc[7], 0);
    /* the loop still works */
    EXPECT(!afut_loop_is_closed(c.l));
    EXPECT(afut_loop_call_soon(c.l, cb, NULL, NULL) != 0);
    EXPECT_EQ(afut_loop_run_once(c.l, 0, NULL), AFUT_OK);
    EXPECT_EQ(g_cb_runs, 1);
}

static void inside_done(afut_t *f, void *p) {
    inside_t *c = p;
    c->rc[0] = afut_loop_run_until_complete(c->l, f);
    c->rc[1] = afut_loop_close(c->l);
    c->rc[2] = afut_wait(f, 0); /* done, but on its loop's thread: WRONG_THREAD (brief) */
    c->done = 1;
}
static void c_inside_done_callback(void) {
    inside_t c = {0};
    c.l = new_loop();
    afut_t *f = new_fut(c.l);
    afut_add_done_callback(f, inside_done, &c, NULL);
    afut_set_result(f, NULL, NULL);
    EXPECT_EQ(afut_loop_run_until_complete(c.l, f), AFUT_OK);
    EXPECT(c.done);
    EXPECT_EQ(c.rc[0], AFUT_ERR_LOOP_RUNNING);
    EXPECT_EQ(c.rc[1], AFUT_ERR_LOOP_RUNNING);
    EXPECT_EQ(c.rc[2], AFUT_ERR_WRONG_THREAD);
}

/* From the wrong thread: another thread is inside run_once; this one may not run or close. */
static void *runner(void *p) {
    afut_loop_t *l = p;
    afut_loop_run_once(l, 5000, NULL);
    return NULL;
}
static void c_wrong_thread_run_close(void) {
    afut_loop_t *l = new_loop();
    pthread_t th;
    pthread_create(&th, NULL, runner, l);
    for (int i = 0; i < 2000 && !afut_loop_is_running(l); i++) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    EXPECT(afut_loop_is_running(l));
    EXPECT_EQ(afut_loop_run_once(l, 0, NULL), AFUT_ERR_LOOP_RUNNING);
    EXPECT_EQ(afut_loop_run_forever(l), AFUT_ERR_LOOP_RUNNING);
    EXPECT_EQ(afut_loop_close(l), AFUT_ERR_LOOP_RUNNING);
    EXPECT(!afut_loop_is_closed(l));
    afut_t *f = new_fut(l);
    EXPECT_EQ(afut_loop_run_until_complete(l, f), AFUT_ERR_LOOP_RUNNING);
    /* wake it */
    EXPECT(afut_loop_call_soon(l, cb, UD, count_free) != 0);
    pthread_join(th, NULL);
    EXPECT_EQ(g_cb_runs, 1);
    EXPECT_EQ(g_frees, 1);
}

/* ------------------------------------------------------------------------------------------
 * Tasks and combinators */

static void c_task_new_null(void) {
    afut_loop_t *l = new_loop();
    EXPECT(afut_task_new(NULL, step_fn, UD, count_free) == NULL);
    EXPECT(afut_task_new(l, NULL, UD, count_free) == NULL);
    EXPECT_EQ(g_frees, 0);
}
static void c_task_await_null(void) {
    afut_loop_t *l = new_loop();
    afut_t *t = keep(afut_task_new(l, step_fn, NULL, NULL));
    afut_t *f = new_fut(l);
    EXPECT_EQ(afut_task_await(NULL, f), AFUT_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(afut_task_await(t, NULL), AFUT_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(afut_task_await(f, t), AFUT_ERR_INVALID_ARGUMENT); /* f is not a task */
    EXPECT_EQ(afut_loop_run_until_complete(l, t), AFUT_OK);
}
static void c_task_await_outside_step(void) {
    afut_loop_t *l = new_loop();
    afut_t *t = keep(afut_task_new(l, step_fn, NULL, NULL));
    afut_t *f = new_fut(l);
    EXPECT_EQ(afut_task_await(t, f), AFUT_ERR_INVALID_STATE);
    EXPECT_EQ(afut_loop_run_until_complete(l, t), AFUT_OK);
}
static void c_task_queries_null(void) {
    afut_t *f = new_fut(new_loop());
    const char *m = "untouched";
    EXPECT(!afut_is_task(NULL));
    EXPECT(!afut_is_task(f));
    EXPECT_EQ(afut_task_cancelling(NULL), -1);
    EXPECT_EQ(afut_task_cancelling(f), -1);
    EXPECT_EQ(afut_task_uncancel(NULL), -1);
    EXPECT_EQ(afut_task_uncancel(f), -1);
    EXPECT(!afut_task_cancel_requested(NULL, &m));
    EXPECT(!afut_task_cancel_requested(f, &m));
    EXPECT(strcmp(m, "untouched") == 0);
}
static void c_task_take_cancel_bad(void) {
    afut_loop_t *l = new_loop();
    afut_t *f = new_fut(l);
    afut_t *t = keep(afut_task_new(l, step_fn, NULL, NULL));
    const char *m = "untouched";
    EXPECT(!afut_task_take_cancel(NULL, &m));
    EXPECT(!afut_task_take_cancel(f, &m));
    EXPECT(afut_cancel(t, "pending")); /* before the first step: a pending request */
    EXPECT(!afut_task_take_cancel(t, &m)); /* outside its step: takes nothing */
    EXPECT(strcmp(m, "untouched") == 0);
    EXPECT_EQ(afut_loop_run_until_complete(l, t), AFUT_ERR_CANCELLED);
}
static void c_task_complete_from_outside(void) {
    afut_loop_t *l = new_loop();
    afut_t *t = keep(afut_task_new(l, step_fn, NULL, NULL));
    EXPECT_EQ(afut_set_result(t, UD, count_free), AFUT_ERR_INVALID_STATE);
    EXPECT_EQ(afut_set_exception(t, 1, NULL, UD, count_free), AFUT_ERR_INVALID_STATE);
    EXPECT_EQ(g_frees, 0);
    EXPECT_EQ(afut_loop_run_until_complete(l, t), AFUT_OK);
}
static void c_gather_null(void) {
    afut_loop_t *l = new_loop();
    afut_t *a = new_fut(l);
    afut_t *arr[2] = {a, NULL};
    EXPECT(afut_gather(NULL, arr, 1, false) == NULL);
    EXPECT(afut_gather(l, NULL, 1, false) == NULL);
    EXPECT(afut_gather(l, arr, 2, false) == NULL);
    afut_t *g = keep(afut_gather(l, NULL, 0, false)); /* n == 0: done at once */
    EXPECT(g != NULL && afut_done(g));
    char buf[64];
    afut_describe(a, buf, sizeof buf);
    EXPECT(strcmp(buf, "<Future pending>") == 0); /* nothing attached to a */
}
static void c_gather_child_bad(void) {
    afut_loop_t *l = new_loop();
    afut_t *a = new_fut(l);
    afut_t *g = keep(afut_gather(l, &a, 1, false));
    EXPECT(afut_gather_child(NULL, 0) == NULL);
    EXPECT(afut_gather_child(a, 0) == NULL);
    EXPECT(afut_gather_child(g, 1) == NULL);
    EXPECT(afut_gather_child(g, SIZE_MAX) == NULL);
    EXPECT(afut_gather_child(g, 0) == a);
    afut_cancel(g, NULL);
}
static void c_wait_for_bad(void) {
    afut_loop_t *l = new_loop();
    afut_t *a = new_fut(l);
    EXPECT(afut_wait_for(NULL, a, 1) == NULL);
    EXPECT(afut_wait_for(l, NULL, 1) == NULL);
    EXPECT(afut_wait_for(l, a, NAN) == NULL);
    EXPECT(!afut_done(a));
}
static void c_wait_for_neg(void) {
    afut_loop_t *l = new_loop();
    afut_t *a = new_fut(l);
    afut_t *w = keep(afut_wait_for(l, a, -INFINITY)); /* <= 0: checks at once, cancels a */
    EXPECT(w != NULL);
    EXPECT(afut_cancelled(a));
    if (w) {
        EXPECT_EQ(afut_loop_run_until_complete(l, w), AFUT_ERR_EXCEPTION);
        afut_exception_t e;
        EXPECT_EQ(afut_exception(w, &e), AFUT_OK);
        EXPECT_EQ(e.code, AFUT_ERR_TIMEOUT);
    }
}
static void c_shield_null(void) {
    afut_loop_t *l = new_loop();
    EXPECT(afut_shield(NULL, new_fut(l)) == NULL);
    EXPECT(afut_shield(l, NULL) == NULL);
}
static void c_wait_many_bad(void) {
    afut_loop_t *l = new_loop();
    afut_t *a = new_fut(l);
    afut_t *arr[2] = {a, NULL};
    EXPECT(afut_wait_many(NULL, arr, 1, 1, AFUT_ALL_COMPLETED) == NULL);
    EXPECT(afut_wait_many(l, NULL, 1, 1, AFUT_ALL_COMPLETED) == NULL);
    EXPECT(afut_wait_many(l, arr, 0, 1, AFUT_ALL_COMPLETED) == NULL);
    EXPECT(afut_wait_many(l, arr, 2, 1, AFUT_ALL_COMPLETED) == NULL);
    EXPECT(afut_wait_many(l, arr, 1, NAN, AFUT_ALL_COMPLETED) == NULL);
    EXPECT(afut_wait_many(l, arr, 1, 1, 3) == NULL);
    EXPECT(afut_wait_many(l, arr, 1, 1, -1) == NULL);
    EXPECT(afut_wait_many_result(NULL) == NULL);
    EXPECT(afut_wait_many_result(a) == NULL);
}
static void c_as_completed_bad(void) {
    afut_loop_t *l = new_loop();
    afut_t *a = new_fut(l);
    afut_t *arr[2] = {a, NULL};
    afut_t *out[2] = {(afut_t *)UD, (afut_t *)UD};
    EXPECT_EQ(afut_as_completed(NULL, arr, 1, 1, out), 0);
    EXPECT_EQ(afut_as_completed(l, NULL, 1, 1, out), 0);
    EXPECT_EQ(afut_as_completed(l, arr, 1, 1, NULL), 0);
    EXPECT_EQ(afut_as_completed(l, arr, 2, 1, out), 0);
    EXPECT_EQ(afut_as_completed(l, arr, 1, NAN, out), 0);
    EXPECT(out[0] == (afut_t *)UD && out[1] == (afut_t *)UD);
}


/* ------------------------------------------------------------------------------------------
 * Times from the edges, for every function that takes a double: +-0,
 * denormals, +-DBL_MIN, +-INFINITY, NaN, +-DBL_MAX, +-1e19, 1e300, and the values around the
 * representable deadline (2^63 s overflows a timespec / Instant, 2^64 s a Duration). The rules
 * (afut.h "Time" and each function's comment): NaN is bad input (0 / NULL /
 * AFUT_ERR_INVALID_ARGUMENT, nothing kept); a delay <= 0 (or a past `when`) is due at once;
 * a positive denormal delay is a timer due at once (now + 5e-324 == now); INFINITY never;
 * a huge finite time is days away: never due in a test, but it is a timer (timeout_ms > 0).
 * Loops are in host mode, and the fd must agree: readable once something is due (a due
 * timer may take the kernel a moment), not readable while nothing is. Each row tries every
 * value and reports the first failure with the value's name.
 * afut_loop_advance_time, the one more function that takes a double, has its own row below
 * (a virtual clock). */

enum { EK_NAN, EK_NOW, EK_TINY, EK_NEVER, EK_HUGE };
typedef struct {
    double v;
    int kind;
    const char *name;
} edge_t;
#define T_2P63 9223372036854775808.0
#define T_2P64 18446744073709551616.0
static edge_t g_edges[32];
static int g_nedges;
static const char *g_edge_name = "";

static void edges_init(void) {
    if (g_nedges) return;
#define E(val, k) g_edges[g_nedges++] = (edge_t){(val), (k), #val}
    E(0.0, EK_NOW);
    E(-0.0, EK_NOW);
    E(-DBL_TRUE_MIN, EK_NOW);
    E(-DBL_MIN, EK_NOW);
    E(-1.0, EK_NOW);
    E(-1e19, EK_NOW);
    E(-DBL_MAX, EK_NOW);
    E(-INFINITY, EK_NOW);
    E(DBL_TRUE_MIN, EK_TINY);
    E(DBL_MIN, EK_TINY);
    E(INFINITY, EK_NEVER);
    E(DBL_MAX, EK_HUGE);
    E(1e19, EK_HUGE);
    E(1e300, EK_HUGE);
    E(nextafter(T_2P63, 0), EK_HUGE);
    E(T_2P63, EK_HUGE);
    E(nextafter(T_2P63, INFINITY), EK_HUGE);
    E(nextafter(T_2P64, 0), EK_HUGE);
    E(T_2P64, EK_HUGE);
    E(nextafter(T_2P64, INFINITY), EK_HUGE);
    E(NAN, EK_NAN);
    E(-NAN, EK_NAN);
#undef E
}

#define EDGE_EXPECT(cond)                                                                      \
    do {                                                                                       \
        if (!(cond) && !g_row_failed) {                                                        \
            g_row_failed = 1;                                                                  \
            snprintf(g_row_msg, sizeof g_row_msg, "%s: line %d: %s", g_edge_name, __LINE__, #cond); \
        }                                                                                      \
    } while (0)


static int g_efrees, g_eruns;
static void efree(void *p) {
    (void)p;
    g_efrees++;
}
static void ecb(void *ud) {
    (void)ud;
    g_eruns++;
}

/* A due timer makes the fd readable once the kernel timer behind it expired. */
static bool fd_becomes_readable(int fd) {
    struct pollfd p = {.fd = fd, .events = POLLIN, .revents = 0};
    return poll(&p, 1, 200) == 1;
}
static bool fd_readable_now(int fd) {
    struct pollfd p = {.fd = fd, .events = POLLIN, .revents = 0};
    return poll(&p, 1, 0) == 1;
}

/* call_later (at == false) or call_at. */
static void edge_schedule(bool at) {
    edges_init();
    for (int i = 0; i < g_nedges && !g_row_failed; i++) {
        const edge_t *e = &g_edges[i];
        g_edge_name = e->name;
        g_efrees = g_eruns = 0;
        afut_loop_t *l = afut_loop_new();
        int fd = afut_loop_fd(l);
        afut_handle_t h = at ? afut_loop_call_at(l, e->v, ecb, UD, efree) : afut_loop_call_later(l, e->v, ecb, UD, efree);
        size_t ran = 99;
        switch (e->kind) {
        case EK_NAN:
            EDGE_EXPECT(h == 0);
            EDGE_EXPECT(afut_loop_timeout_ms(l) == -1);
            EDGE_EXPECT(!fd_readable_now(fd));
            break;
        case EK_NOW:
        case EK_TINY:
            /* call_at: every one of these is in the past; call_later: <= 0, or now + tiny */
            EDGE_EXPECT(h != 0);
            EDGE_EXPECT(afut_loop_timeout_ms(l) == 0);
            EDGE_EXPECT(fd_becomes_readable(fd)); /* due at once: the fd says so */
            EDGE_EXPECT(afut_loop_run_once(l, 0, &ran) == AFUT_OK);
            EDGE_EXPECT(ran == 1 && g_eruns == 1 && g_efrees == 1);
            EDGE_EXPECT(afut_loop_timeout_ms(l) == -1);
            EDGE_EXPECT(!fd_readable_now(fd));
            break;
        case EK_NEVER:
        case EK_HUGE: {
            EDGE_EXPECT(h != 0);
            int t = afut_loop_timeout_ms(l);
            /* INFINITY: nothing will ever fire (-1); a finite deadline days away: > 0 */
            if (e->kind == EK_NEVER) EDGE_EXPECT(t == -1);
            else EDGE_EXPECT(t > 0);
            EDGE_EXPECT(!fd_readable_now(fd));
            EDGE_EXPECT(afut_loop_run_once(l, 0, &ran) == AFUT_OK && ran == 0 && g_eruns == 0);
            EDGE_EXPECT(afut_loop_cancel(l, h));
            EDGE_EXPECT(g_efrees == 1);
            EDGE_EXPECT(afut_loop_timeout_ms(l) == -1);
            break;
        }
        default: break;
        }
        afut_loop_free(l);
        if (e->kind == EK_NAN) EDGE_EXPECT(g_efrees == 0); /* still the caller's */
        else EDGE_EXPECT(g_efrees == 1);
    }
}
static void c_edge_call_later(void) { edge_schedule(false); }
static void c_edge_call_at(void) { edge_schedule(true); }

static void c_edge_sleep(void) {
    edges_init();
    for (int i = 0; i < g_nedges && !g_row_failed; i++) {
        const edge_t *e = &g_edges[i];
        g_edge_name = e->name;
        g_efrees = 0;
        afut_loop_t *l = afut_loop_new();
        int fd = afut_loop_fd(l);
        afut_t *f = afut_sleep(l, e->v, UD, efree);
        void *v = NULL;
        if (e->kind == EK_NAN) {
            EDGE_EXPECT(f == NULL);
            EDGE_EXPECT(g_efrees == 0);
        } else if (e->kind == EK_NOW || e->kind == EK_TINY) {
            /* SL1: done after exactly one iteration */
            EDGE_EXPECT(f != NULL);
            EDGE_EXPECT(afut_loop_timeout_ms(l) == 0);
            EDGE_EXPECT(fd_becomes_readable(fd));
            EDGE_EXPECT(afut_loop_run_once(l, 0, NULL) == AFUT_OK);
            EDGE_EXPECT(afut_done(f) && afut_result(f, &v) == AFUT_OK && v == UD);
            afut_unref(f);
            afut_loop_run_once(l, 0, NULL);
            EDGE_EXPECT(g_efrees == 1); /* freed with the future */
        } else {
            EDGE_EXPECT(f != NULL);
            int t = afut_loop_timeout_ms(l);
            if (e->kind == EK_NEVER) EDGE_EXPECT(t == -1);
            else EDGE_EXPECT(t > 0);
            EDGE_EXPECT(afut_loop_run_once(l, 0, NULL) == AFUT_OK);
            EDGE_EXPECT(!afut_done(f));
            EDGE_EXPECT(afut_cancel(f, NULL));
            EDGE_EXPECT(afut_loop_run_once(l, 0, NULL) == AFUT_OK);
            EDGE_EXPECT(g_efrees == 1); /* the timer was cancelled: the value freed */
            afut_unref(f);
        }
        afut_loop_free(l);
    }
}

/* Runs until `f` is done (at most `max` iterations); returns the iterations it took. */
static int run_until_done(afut_loop_t *l, afut_t *f, int max) {
    int k = 0;
    while (!afut_done(f) && k < max) {
        afut_loop_run_once(l, 0, NULL);
        k++;
    }
    return k;
}

static void c_edge_wait_for(void) {
    edges_init();
    for (int i = 0; i < g_nedges && !g_row_failed; i++) {
        const edge_t *e = &g_edges[i];
        g_edge_name = e->name;
        afut_loop_t *l = afut_loop_new();
        afut_t *inner = afut_loop_create_future(l);
        afut_t *w = afut_wait_for(l, inner, e->v);
        afut_exception_t ex;
        void *v = NULL;
        if (e->kind == EK_NAN) {
            EDGE_EXPECT(w == NULL);
            EDGE_EXPECT(!afut_done(inner));
        } else if (e->kind == EK_NOW || e->kind == EK_TINY) {
            /* WF1: <= 0 cancels the inner at once; a tiny positive one at the first iteration */
            EDGE_EXPECT(w != NULL);
            if (e->kind == EK_NOW) EDGE_EXPECT(afut_cancelled(inner));
            run_until_done(l, w, 5);
            EDGE_EXPECT(afut_cancelled(inner));
            EDGE_EXPECT(afut_done(w) && afut_exception(w, &ex) == AFUT_OK && ex.code == AFUT_ERR_TIMEOUT);
        } else {
            EDGE_EXPECT(w != NULL);
            afut_loop_run_once(l, 0, NULL);
            afut_loop_run_once(l, 0, NULL);
            EDGE_EXPECT(!afut_done(w) && !afut_done(inner));
            int t = afut_loop_timeout_ms(l);
            if (e->kind == EK_NEVER) EDGE_EXPECT(t == -1);
            else EDGE_EXPECT(t > 0);
            EDGE_EXPECT(afut_set_result(inner, UD, NULL) == AFUT_OK);
            run_until_done(l, w, 5);
            EDGE_EXPECT(afut_done(w) && afut_result(w, &v) == AFUT_OK && v == UD);
            EDGE_EXPECT(afut_loop_timeout_ms(l) == -1); /* its timer was cancelled */
        }
        afut_unref(w);
        afut_unref(inner);
        afut_loop_free(l);
    }
}

static void c_edge_wait_many(void) {
    edges_init();
    for (int i = 0; i < g_nedges && !g_row_failed; i++) {
        const edge_t *e = &g_edges[i];
        g_edge_name = e->name;
        afut_loop_t *l = afut_loop_new();
        afut_t *f = afut_loop_create_future(l);
        afut_t *w = afut_wait_many(l, &f, 1, e->v, AFUT_ALL_COMPLETED);
        if (e->kind == EK_NAN) {
            EDGE_EXPECT(w == NULL);
        } else if (e->kind == EK_NOW || e->kind == EK_TINY) {
            /* W4: the timeout passes at once; nothing is cancelled */
            EDGE_EXPECT(w != NULL);
            run_until_done(l, w, 5);
            const afut_wait_result_t *r = afut_wait_many_result(w);
            EDGE_EXPECT(r && r->n_done == 0 && r->n_pending == 1 && r->pending[0] == f);
            EDGE_EXPECT(!afut_done(f));
        } else {
            EDGE_EXPECT(w != NULL);
            afut_loop_run_once(l, 0, NULL);
            afut_loop_run_once(l, 0, NULL);
            EDGE_EXPECT(!afut_done(w));
            EDGE_EXPECT(afut_set_result(f, NULL, NULL) == AFUT_OK);
            run_until_done(l, w, 5);
            const afut_wait_result_t *r = afut_wait_many_result(w);
            EDGE_EXPECT(r && r->n_done == 1 && r->n_pending == 0 && r->done[0] == f);
        }
        afut_unref(w);
        afut_unref(f);
        afut_loop_free(l);
    }
}

static void c_edge_as_completed(void) {
    edges_init();
    for (int i = 0; i < g_nedges && !g_row_failed; i++) {
        const edge_t *e = &g_edges[i];
        g_edge_name = e->name;
        afut_loop_t *l = afut_loop_new();
        afut_t *f = afut_loop_create_future(l);
        afut_t *out[1] = {(afut_t *)UD};
        size_t n = afut_as_completed(l, &f, 1, e->v, out);
        afut_exception_t ex;
        void *v = NULL;
        if (e->kind == EK_NAN) {
            EDGE_EXPECT(n == 0 && out[0] == (afut_t *)UD);
        } else if (e->kind == EK_NOW || e->kind == EK_TINY) {
            EDGE_EXPECT(n == 1);
            run_until_done(l, out[0], 5);
            EDGE_EXPECT(afut_done(out[0]) && afut_exception(out[0], &ex) == AFUT_OK && ex.code == AFUT_ERR_TIMEOUT);
            EDGE_EXPECT(!afut_done(f));
            EDGE_EXPECT(afut_set_result(f, NULL, NULL) == AFUT_OK); /* releases what it holds */
            afut_loop_run_once(l, 0, NULL);
        } else {
            EDGE_EXPECT(n == 1);
            afut_loop_run_once(l, 0, NULL);
            afut_loop_run_once(l, 0, NULL);
            EDGE_EXPECT(!afut_done(out[0]));
            EDGE_EXPECT(afut_set_result(f, UD, NULL) == AFUT_OK);
            run_until_done(l, out[0], 5);
            EDGE_EXPECT(afut_done(out[0]) && afut_result(out[0], &v) == AFUT_OK && v == UD);
        }
        if (n) afut_unref(out[0]);
        afut_unref(f);
        afut_loop_free(l);
    }
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void *complete_later(void *arg) {
    struct timespec d = {0, 4000000}; /* 4 ms */
    nanosleep(&d, NULL);
    afut_set_result(arg, NULL, NULL);
    return NULL;
}

static void c_edge_wait(void) {
    edges_init();
    for (int i = 0; i < g_nedges && !g_row_failed; i++) {
        const edge_t *e = &g_edges[i];
        g_edge_name = e->name;
        afut_t *done = afut_new(NULL);
        afut_set_result(done, NULL, NULL);
        afut_t *f = afut_new(NULL);
        if (e->kind == EK_NAN) {
            EDGE_EXPECT(afut_wait(done, e->v) == AFUT_ERR_INVALID_ARGUMENT);
            EDGE_EXPECT(afut_wait(f, e->v) == AFUT_ERR_INVALID_ARGUMENT);
        } else if (e->kind == EK_NOW || e->kind == EK_TINY) {
            double t0 = now_s();
            EDGE_EXPECT(afut_wait(done, e->v) == AFUT_OK);
            EDGE_EXPECT(afut_wait(f, e->v) == AFUT_ERR_TIMEOUT); /* polls */
            EDGE_EXPECT(now_s() - t0 < 1.0);
        } else {
            EDGE_EXPECT(afut_wait(done, e->v) == AFUT_OK);
            pthread_t th;
            pthread_create(&th, NULL, complete_later, f);
            double t0 = now_s();
            afut_status_t rc = afut_wait(f, e->v);
            double took = now_s() - t0;
            /* waits for the other thread: a deadline too far to represent is "never", not "now" */
            EDGE_EXPECT(rc == AFUT_OK && took >= 0.002);
            pthread_join(th, NULL);
            EDGE_EXPECT(afut_done(f));
        }
        afut_unref(done);
        afut_unref(f);
    }
}

/* afut_loop_advance_time (a virtual clock, host mode) by each edge amount, with a timer 1e6 s
 * ahead: negative, NaN and infinite amounts are refused with AFUT_ERR_INVALID_ARGUMENT and
 * change nothing; +-0 and the denormals are accepted and move the clock by that much (not at
 * all, at 1 s); a huge finite amount carries the clock there, so the timer is due: timeout_ms
 * 0, the fd readable at once (no timerfd on a virtual clock), one run_once runs it. The
 * callback's userdata is freed once either way. */
static void c_edge_advance_time(void) {
    edges_init();
    for (int i = 0; i < g_nedges && !g_row_failed; i++) {
        const edge_t *e = &g_edges[i];
        g_edge_name = e->name;
        g_efrees = g_eruns = 0;
        afut_loop_t *l = afut_loop_new();
        EDGE_EXPECT(afut_loop_set_virtual_clock(l, false) == AFUT_OK);
        int fd = afut_loop_fd(l);
        EDGE_EXPECT(afut_loop_advance_time(l, 1.0) == AFUT_OK);
        EDGE_EXPECT(afut_loop_call_later(l, 1e6, ecb, UD, efree) != 0);
        afut_status_t rc = afut_loop_advance_time(l, e->v);
        double now = afut_loop_time(l);
        size_t ran = 99;
        if (!(e->v >= 0.0 && isfinite(e->v))) {
            EDGE_EXPECT(rc == AFUT_ERR_INVALID_ARGUMENT);
            EDGE_EXPECT(now == 1.0);
            EDGE_EXPECT(afut_loop_timeout_ms(l) == -1);
            EDGE_EXPECT(!fd_readable_now(fd));
            EDGE_EXPECT(afut_loop_run_once(l, 0, &ran) == AFUT_OK && ran == 0);
        } else {
            EDGE_EXPECT(rc == AFUT_OK);
            EDGE_EXPECT(now == 1.0 + e->v);
            bool due = e->kind == EK_HUGE;
            EDGE_EXPECT(afut_loop_timeout_ms(l) == (due ? 0 : -1));
            EDGE_EXPECT(fd_readable_now(fd) == due);
            EDGE_EXPECT(afut_loop_run_once(l, 0, &ran) == AFUT_OK && ran == (due ? 1u : 0u));
            EDGE_EXPECT(g_eruns == (due ? 1 : 0));
            EDGE_EXPECT(!fd_readable_now(fd));
        }
        afut_loop_close(l);
        afut_loop_free(l);
        EDGE_EXPECT(g_efrees == 1);
    }
}

/* ------------------------------------------------------------------------------------------
 * Executor and virtual time */

static void job_fn(afut_t *f, void *ud) {
    (void)ud;
    afut_set_result(f, NULL, NULL);
}

static void c_executor_submit_null(void) {
    afut_executor_t *ex = afut_executor_new(1);
    EXPECT(ex != NULL);
    EXPECT(afut_executor_submit(NULL, job_fn, UD, count_free) == NULL);
    EXPECT(afut_executor_submit(ex, NULL, UD, count_free) == NULL);
    afut_executor_free(ex);
    EXPECT_EQ(g_frees, 0);
}
static void c_executor_submit_after_shutdown(void) {
    afut_executor_t *ex = afut_executor_new(1);
    afut_executor_shutdown(ex, false, false);
    EXPECT(afut_executor_submit(ex, job_fn, UD, count_free) == NULL);
    EXPECT(afut_loop_run_in_executor(new_loop(), ex, job_fn, UD, count_free) == NULL);
    afut_executor_free(ex);
    EXPECT_EQ(g_frees, 0);
}
static void c_run_in_executor_null(void) {
    afut_executor_t *ex = afut_executor_new(1);
    afut_loop_t *l = new_loop();
    EXPECT(afut_loop_run_in_executor(NULL, ex, job_fn, UD, count_free) == NULL);
    EXPECT(afut_loop_run_in_executor(l, NULL, job_fn, UD, count_free) == NULL);
    EXPECT(afut_loop_run_in_executor(l, ex, NULL, UD, count_free) == NULL);
    EXPECT(afut_loop_run_in_executor(closed_loop(), ex, job_fn, UD, count_free) == NULL);
    afut_executor_free(ex);
    EXPECT_EQ(g_frees, 0);
}
static void c_executor_shutdown_free_null(void) {
    afut_executor_shutdown(NULL, true, true);
    afut_executor_shutdown(NULL, false, false);
    afut_executor_free(NULL);
    afut_executor_t *ex = afut_executor_new(0);
    EXPECT(ex != NULL);
    afut_executor_shutdown(ex, true, true);
    afut_executor_shutdown(ex, true, true);
    afut_executor_free(ex);
}
static void c_set_virtual_clock_bad(void) {
    EXPECT_EQ(afut_loop_set_virtual_clock(NULL, true), AFUT_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(afut_loop_set_virtual_clock(closed_loop(), true), AFUT_ERR_LOOP_CLOSED);
    afut_loop_t *l = new_loop();
    EXPECT(afut_loop_call_later(l, 1, cb, UD, count_free) != 0);
    EXPECT_EQ(afut_loop_set_virtual_clock(l, false), AFUT_ERR_INVALID_STATE);
    EXPECT(afut_loop_time(l) > 0);
    EXPECT_EQ(g_frees, 0);
}
static void c_advance_time_bad(void) {
    EXPECT_EQ(afut_loop_advance_time(NULL, 1), AFUT_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(afut_loop_advance_time(new_loop(), 1), AFUT_ERR_INVALID_STATE);
    afut_loop_t *l = new_loop();
    EXPECT_EQ(afut_loop_set_virtual_clock(l, false), AFUT_OK);
    const double bad[] = {-1, -1e-300, NAN, -NAN, INFINITY, -INFINITY};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        EXPECT_EQ(afut_loop_advance_time(l, bad[i]), AFUT_ERR_INVALID_ARGUMENT);
    EXPECT(afut_loop_time(l) == 0.0);
    afut_loop_close(l);
    EXPECT_EQ(afut_loop_advance_time(l, 1), AFUT_ERR_LOOP_CLOSED);
}

/* ------------------------------------------------------------------------------------------
 * The table */

typedef struct {
    const char *call;
    const char *expect;
    void (*run)(void);
} row_t;

static const row_t k_rows[] = {
    {"afut_status_str(unknown codes)", "\"unknown status\"", c_status_str_unknown},
    {"afut_status_str(0..-11)", "distinct, non-empty", c_status_str_known_distinct},
    {"afut_version()", "AFUT_VERSION_STRING", c_version},
    {"afut_loop_free(NULL)", "no-op", c_loop_free_null},
    {"afut_loop_close(NULL)", "INVALID_ARGUMENT", c_loop_close_null},
    {"afut_loop_is_running(NULL)", "false", c_loop_is_running_null},
    {"afut_loop_is_closed(NULL)", "false", c_loop_is_closed_null},
    {"afut_loop_time(NULL)", "NaN", c_loop_time_null},
    {"afut_loop_run_until_complete(NULL, fut)", "INVALID_ARGUMENT", c_run_until_complete_null_loop},
    {"afut_loop_run_until_complete(loop, NULL)", "INVALID_ARGUMENT", c_run_until_complete_null_fut},
    {"afut_loop_run_until_complete(loop, other loop's fut)", "INVALID_ARGUMENT", c_run_until_complete_other_loop},
    {"afut_loop_run_forever(NULL)", "INVALID_ARGUMENT", c_run_forever_null},
    {"afut_loop_stop(NULL)", "no-op", c_stop_null},
    {"afut_loop_run_once(NULL, 0, &ran)", "INVALID_ARGUMENT, ran untouched", c_run_once_null},
    {"afut_loop_run_once(loop, 0, NULL)", "OK", c_run_once_null_ran_out},
    {"afut_loop_fd(NULL)", "-1, errno EINVAL", c_loop_fd_null},
    {"afut_loop_timeout_ms(NULL)", "-1", c_timeout_ms_null},
    {"afut_loop_set_exception_handler(NULL, h, ud, free)", "nothing freed", c_set_handler_null_loop},
    {"afut_loop_set_exception_handler(loop, NULL, ud, free)", "ud freed at once", c_set_handler_null_fn},
    {"afut_loop_set_debug(NULL, true)", "no-op", c_set_debug_null},
    {"afut_loop_set_wakeup_fn(NULL, fn, ud, free)", "nothing freed", c_set_wakeup_null_loop},
    {"afut_loop_set_wakeup_fn(loop, NULL, ud, free)", "ud freed at once", c_set_wakeup_null_fn},
    {"afut_loop_call_soon(NULL, cb, ud, free)", "0, ud kept", c_call_soon_null_loop},
    {"afut_loop_call_soon(loop, NULL, ud, free)", "0, ud kept", c_call_soon_null_cb},
    {"afut_loop_call_soon_threadsafe(NULL, cb, ud, free)", "0, ud kept", c_call_soon_ts_null_loop},
    {"afut_loop_call_soon_threadsafe(loop, NULL, ud, free)", "0, ud kept", c_call_soon_ts_null_cb},
    {"afut_loop_call_later(NULL, 0, cb, ud, free)", "0, ud kept", c_call_later_null_loop},
    {"afut_loop_call_later(loop, 0, NULL, ud, free)", "0, ud kept", c_call_later_null_cb},
    {"afut_loop_call_later(loop, NaN / -NaN, ...)", "0, ud kept", c_call_later_nan},
    {"afut_loop_call_later(loop, INFINITY, ...)", "handle, never runs", c_call_later_inf},
    {"afut_loop_call_later(loop, -INFINITY, ...)", "due at once", c_call_later_neg_inf},
    {"afut_loop_call_later(loop, -5, ...)", "due at once", c_call_later_negative},
    {"afut_loop_call_later(loop, 1e300, ...)", "handle, never runs here", c_call_later_huge},
    {"afut_loop_call_at(NULL, 0, cb, ud, free)", "0, ud kept", c_call_at_null_loop},
    {"afut_loop_call_at(loop, 0, NULL, ud, free)", "0, ud kept", c_call_at_null_cb},
    {"afut_loop_call_at(loop, NaN, ...)", "0, ud kept", c_call_at_nan},
    {"afut_loop_call_at(loop, INFINITY, ...)", "handle, never runs", c_call_at_inf},
    {"afut_loop_call_at(loop, -INFINITY, ...)", "due at once", c_call_at_neg_inf},
    {"afut_loop_call_at(loop, -1, ...)", "due at once", c_call_at_negative},
    {"afut_loop_cancel(NULL, h)", "false, still runs", c_cancel_null_loop},
    {"afut_loop_cancel(loop, 0)", "false", c_cancel_zero},
    {"afut_loop_cancel(loop, unknown handles)", "false, nothing freed", c_cancel_garbage},
    {"afut_loop_cancel twice", "true then false, freed once", c_cancel_twice},
    {"afut_loop_cancel after it ran", "false, freed once", c_cancel_after_run},
    {"afut_loop_cancel(other loop, h)", "a's callback untouched", c_cancel_other_loops_handle},
    {"closed: afut_loop_call_soon(_threadsafe)", "0, ud kept", c_closed_call_soon},
    {"closed: afut_loop_call_later / call_at", "0, ud kept", c_closed_call_later},
    {"closed: run_once / run_forever / run_until_complete", "LOOP_CLOSED", c_closed_run},
    {"closed: afut_loop_close again", "OK (idempotent)", c_closed_close_again},
    {"closed: afut_loop_timeout_ms", "-1", c_closed_timeout_ms},
    {"closed: afut_loop_cancel(handle dropped by close)", "false, freed once", c_closed_cancel},
    {"closed: afut_add_done_callback(done fut)", "LOOP_CLOSED, ud kept", c_closed_add_cb_done},
    {"closed: afut_set_result(pending fut with callback)", "OK, callback dropped+freed", c_closed_complete_drops_cbs},
    {"closed: afut_loop_create_future", "a future", c_closed_create_future},
    {"closed: afut_sleep", "NULL, value kept", c_closed_sleep},
    {"closed: afut_task_new", "NULL, ud kept", c_closed_task_new},
    {"afut_loop_close with queued work", "each ud freed once", c_closed_loop_queued_freed_once},
    {"freed loop: afut_get_loop(fut)", "NULL", c_freed_get_loop},
    {"freed loop: afut_set_result(fut with callback)", "OK, callback freed", c_freed_complete},
    {"freed loop: afut_cancel(fut with callback)", "true, callback freed", c_freed_cancel},
    {"freed loop: afut_set_exception + afut_exception", "OK", c_freed_set_exception},
    {"freed loop: afut_add_done_callback(done fut)", "LOOP_CLOSED, ud kept", c_freed_add_cb_done},
    {"freed loop: add + remove on pending fut", "OK, 1, freed once", c_freed_add_cb_pending},
    {"freed loop: afut_wait(fut, 0) / cancel", "TIMEOUT then OK", c_freed_sleep_wrap},
    {"freed loop: last unref of pending fut with callback", "callback ud freed", c_freed_pending_unref},
    {"freed loop: last unref of a fut with unretrieved exception", "report on stderr", c_freed_unretrieved_to_stderr},
    {"afut_loop_create_future(NULL)", "NULL", c_create_future_null},
    {"afut_new(NULL)", "loop-less future", c_new_null_loop},
    {"afut_ref(NULL)", "NULL", c_ref_null},
    {"afut_unref(NULL)", "no-op", c_unref_null},
    {"afut_set_result(NULL, v, free)", "INVALID_ARGUMENT, v kept", c_set_result_null},
    {"afut_set_exception(NULL, ...)", "INVALID_ARGUMENT, detail kept", c_set_exception_null},
    {"afut_set_exception(fut, 0, ...)", "INVALID_ARGUMENT, detail kept, pending", c_set_exception_code0},
    {"afut_set_exception(done fut, 0, ...)", "error, detail kept", c_set_exception_code0_done},
    {"afut_set_exception(fut, code, NULL msg, NULL detail)", "OK, message NULL", c_set_exception_null_msg},
    {"afut_result(NULL, &v)", "INVALID_ARGUMENT, v untouched", c_result_null},
    {"afut_result(fut, NULL)", "status only", c_result_null_out},
    {"afut_exception(NULL, &e)", "INVALID_ARGUMENT, e untouched", c_exception_null},
    {"afut_exception(fut, NULL)", "status only", c_exception_null_out},
    {"afut_done(NULL)", "false", c_done_null},
    {"afut_cancelled(NULL)", "false", c_cancelled_null},
    {"afut_cancel(NULL, msg)", "false", c_cancel_null_fut},
    {"afut_cancel_message(NULL)", "NULL", c_cancel_message_null},
    {"afut_add_done_callback(NULL, cb, ud, free)", "INVALID_ARGUMENT, ud kept", c_add_cb_null_fut},
    {"afut_add_done_callback(fut, NULL, ud, free)", "INVALID_ARGUMENT, ud kept", c_add_cb_null_fn},
    {"afut_add_done_callback(done loop-less fut, NULL, ...)", "INVALID_ARGUMENT, ud kept", c_add_cb_null_fn_loopless_done},
    {"afut_remove_done_callback(NULL, cb, ud)", "0", c_remove_cb_null_fut},
    {"afut_remove_done_callback(fut, NULL, ud)", "0, entry kept", c_remove_cb_null_fn},
    {"afut_remove_done_callback(done fut, ...)", "0, queued cb still runs", c_remove_cb_done},
    {"afut_get_loop(NULL)", "NULL", c_get_loop_null},
    {"afut_describe(NULL, buf, len)", "\"<NULL>\", snprintf rules", c_describe_null},
    {"afut_describe(fut, NULL, len)", "full length, nothing written", c_describe_null_buf},
    {"afut_describe(fut, buf, 0)", "full length, buf untouched", c_describe_len0},
    {"afut_describe(fut, buf, 5)", "\"<Fut\" + NUL", c_describe_truncate},
    {"afut_wait(NULL, 0)", "INVALID_ARGUMENT", c_wait_null},
    {"afut_wait(fut, NaN)", "INVALID_ARGUMENT", c_wait_nan},
    {"afut_wait(pending, -1 / -INFINITY)", "TIMEOUT at once", c_wait_negative},
    {"afut_wait(done, INFINITY)", "OK", c_wait_done},
    {"afut_isfuture(NULL)", "false", c_isfuture_null},
    {"afut_isfuture(zeroed memory / a loop)", "false", c_isfuture_other},
    {"afut_ensure_future(NULL, f) / (loop, NULL)", "NULL", c_ensure_future_null},
    {"afut_wrap_future(NULL, f) / (loop, NULL)", "NULL", c_wrap_future_null},
    {"afut_sleep(NULL, 0, v, free)", "NULL, v kept", c_sleep_null},
    {"afut_sleep(loop, NaN, v, free)", "NULL, v kept", c_sleep_nan},
    {"afut_sleep(loop, INFINITY, v, free) + cancel", "never done; v freed once cancelled", c_sleep_inf},
    {"afut_sleep(loop, -INFINITY, v, free)", "done after one iteration", c_sleep_neg_inf},
    {"afut_set_result twice", "INVALID_STATE, v kept", c_double_set_result},
    {"afut_set_exception after set_result", "INVALID_STATE, detail kept", c_exception_after_result},
    {"afut_set_result after set_exception", "INVALID_STATE, v kept", c_result_after_exception},
    {"set_result / set_exception / cancel after cancel", "INVALID_STATE / false", c_result_after_cancel},
    {"afut_cancel after set_result", "false, value kept by fut", c_cancel_after_result},
    {"double completion, loop-less", "INVALID_STATE, kept", c_double_complete_loopless},
    {"callback: run_once/run_forever/run_until_complete/close/wait/free", "LOOP_RUNNING, WRONG_THREAD, no-op", c_inside_callback},
    {"done-callback: run_until_complete / close / wait(own fut)", "LOOP_RUNNING, WRONG_THREAD", c_inside_done_callback},
    {"other thread runs the loop: run_* / close here", "LOOP_RUNNING", c_wrong_thread_run_close},
    {"afut_task_new(NULL, ...) / (loop, NULL, ...)", "NULL, ud kept", c_task_new_null},
    {"afut_task_await(NULL, f) / (t, NULL) / (non-task, t)", "INVALID_ARGUMENT", c_task_await_null},
    {"afut_task_await outside the task's step", "INVALID_STATE", c_task_await_outside_step},
    {"afut_is_task / cancelling / uncancel / cancel_requested(NULL or non-task)", "false / -1", c_task_queries_null},
    {"afut_task_take_cancel(NULL / non-task / outside the step)", "false, msg untouched", c_task_take_cancel_bad},
    {"afut_set_result / set_exception on a task from outside", "INVALID_STATE, kept", c_task_complete_from_outside},
    {"afut_gather(NULL loop / NULL futs / NULL entry)", "NULL", c_gather_null},
    {"afut_gather_child(NULL / non-gather / out of range)", "NULL", c_gather_child_bad},
    {"afut_wait_for(NULL / NULL / NaN)", "NULL, fut untouched", c_wait_for_bad},
    {"afut_wait_for(loop, fut, -INFINITY)", "timed out at once", c_wait_for_neg},
    {"afut_shield(NULL, f) / (loop, NULL)", "NULL", c_shield_null},
    {"afut_wait_many(bad loop/futs/n/timeout/return_when) + _result(NULL)", "NULL", c_wait_many_bad},
    {"afut_as_completed(bad loop/futs/out/n/timeout)", "0, out untouched", c_as_completed_bad},
    {"afut_executor_submit(NULL, fn, ...) / (ex, NULL, ...)", "NULL, ud kept", c_executor_submit_null},
    {"afut_executor_submit / run_in_executor after shutdown", "NULL, ud kept", c_executor_submit_after_shutdown},
    {"afut_loop_run_in_executor(NULL loop / NULL ex / NULL fn / closed loop)", "NULL, ud kept", c_run_in_executor_null},
    {"afut_executor_shutdown(NULL) / free(NULL) / shutdown twice", "no-op", c_executor_shutdown_free_null},
    {"afut_loop_set_virtual_clock(NULL / closed / with a timer)", "INVALID_ARGUMENT / LOOP_CLOSED / INVALID_STATE", c_set_virtual_clock_bad},
    {"afut_loop_advance_time(NULL / real clock / <0, NaN, inf / closed)", "INVALID_ARGUMENT / INVALID_STATE / LOOP_CLOSED", c_advance_time_bad},
    {"afut_loop_call_later(host loop, each edge time)", "NaN 0; <=0/denormal due; INF never; huge > 0 ms", c_edge_call_later},
    {"afut_loop_call_at(host loop, each edge time)", "NaN 0; past due; INF never; huge > 0 ms", c_edge_call_at},
    {"afut_sleep(host loop, each edge time, v, free)", "NaN NULL; one iteration; never; cancel frees v", c_edge_sleep},
    {"afut_wait_for(loop, fut, each edge time)", "NaN NULL; timed out; plain await", c_edge_wait_for},
    {"afut_wait_many(loop, [fut], 1, each edge time, ALL)", "NaN NULL; timed out (pending); waits", c_edge_wait_many},
    {"afut_as_completed(loop, [fut], 1, each edge time)", "NaN 0; TIMEOUT; waits", c_edge_as_completed},
    {"afut_wait(done / pending fut, each edge time)", "NaN INVALID_ARGUMENT; poll; waits for the thread", c_edge_wait},
    {"afut_loop_advance_time(virtual host loop, each edge amount)", "<0/NaN/inf INVALID_ARGUMENT; else moves", c_edge_advance_time},
};

/* API.md "Bad input never crashes"; the header's `Bad input:` lines. */
TEST(bad_input_matrix) {
    size_t n = sizeof k_rows / sizeof k_rows[0];
    int failed = 0;
    for (size_t i = 0; i < n; i++) {
        g_frees = 0;
        g_cb_runs = 0;
        g_row_failed = 0;
        g_row_msg[0] = '\0';
        k_rows[i].run();
        release_fixtures();
        printf("  %-4s %-72s -> %s%s%s\n", g_row_failed ? "FAIL" : "ok", k_rows[i].call, k_rows[i].expect,
               g_row_failed ? "  :: " : "", g_row_msg);
        if (g_row_failed) {
            failed++;
            fprintf(stderr, "  bad input row failed: %s: %s\n", k_rows[i].call, g_row_msg);
        }
    }
    printf("bad inputs covered: %zu rows (%d edge time values for each of the 8 functions that take a double), "
           "%d failed\n", n, g_nedges, failed);
    CHECK_EQ_INT(failed, 0);
}

int main(void) {
    RUN(bad_input_matrix);
    TEST_END();
}
