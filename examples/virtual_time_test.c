/*
 * virtual_time_test.c: unit-testing code that waits, without waiting.
 *
 * The code under test is a retry-with-backoff routine, the kind every client library has:
 * try an operation; on failure sleep 1 s, 2 s, 4 s, ... (capped at 5 minutes) and try again;
 * give each attempt 10 s before it counts as failed; give up once the next attempt would start
 * more than an hour after the first. Tested on a real clock, the last case would take an hour.
 *
 * With afut_loop_set_virtual_clock(loop, true) the loop's clock starts at 0 and, whenever
 * nothing is ready to run, jumps straight to the next timer (tokio's time::pause, trio's
 * autojump). afut_sleep and afut_wait_for follow that clock, so the routine runs unchanged,
 * the test checks the exact second of every attempt, and an hour passes in about a millisecond.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "afut.h"

/* ------------------------------------------------------------------ the code under test */

/* Starts one attempt of the operation: a future of `loop`. */
typedef afut_t *(*attempt_fn)(afut_loop_t *loop, void *ctx);

struct retry {
    afut_loop_t *loop;
    attempt_fn attempt;
    void *ctx;
    double delay;      /* the next backoff, seconds */
    double max_delay;  /* the cap on the backoff */
    double timeout;    /* per attempt */
    double give_up_at; /* loop time after which no attempt starts */
    int attempts;
    afut_t *current; /* the attempt (under its wait_for) or the sleep being awaited */
    int sleeping;
};

static void retry_step(afut_t *task, afut_t *awaited, void *userdata) {
    struct retry *r = userdata;
    if (awaited != NULL && !r->sleeping) {
        void *value;
        if (afut_result(awaited, &value) == AFUT_OK) { /* success: the task's result */
            afut_set_result(task, value, NULL);
            goto out;
        }
        double now = afut_loop_time(r->loop);
        if (now + r->delay > r->give_up_at) {
            char msg[64];
            snprintf(msg, sizeof msg, "gave up after %d attempts", r->attempts);
            afut_set_exception(task, ETIMEDOUT, msg, NULL, NULL);
            goto out;
        }
        afut_unref(r->current);
        r->current = afut_sleep(r->loop, r->delay, NULL, NULL);
        r->sleeping = 1;
        r->delay = r->delay * 2 < r->max_delay ? r->delay * 2 : r->max_delay;
        afut_task_await(task, r->current);
        return;
    }
    /* first step, or the backoff sleep is over: one more attempt, at most `timeout` long */
    r->sleeping = 0;
    r->attempts++;
    afut_t *op = r->attempt(r->loop, r->ctx);
    afut_unref(r->current);
    r->current = afut_wait_for(r->loop, op, r->timeout);
    afut_unref(op);
    afut_task_await(task, r->current);
    return;
out:
    afut_unref(r->current);
    r->current = NULL;
}

/* retry(op): a task that completes with op's first successful result, or fails. */
static afut_t *retry(afut_loop_t *loop, attempt_fn attempt, void *ctx, struct retry *state) {
    *state = (struct retry){.loop = loop, .attempt = attempt, .ctx = ctx, .delay = 1, .max_delay = 300,
                            .timeout = 10, .give_up_at = afut_loop_time(loop) + 3600};
    return afut_task_new(loop, retry_step, state, NULL);
}

/* ------------------------------------------------------------------ a fake server */

enum behaviour { FAIL, HANG, SUCCEED };

struct server {
    enum behaviour script[64]; /* what attempt i does; after the script: the last entry */
    int len;
    int calls;
    double at[64]; /* loop time of each call */
};

static afut_t *call_server(afut_loop_t *loop, void *ctx) {
    struct server *s = ctx;
    int i = s->calls++;
    if (i < 64) s->at[i] = afut_loop_time(loop);
    afut_t *f = afut_loop_create_future(loop);
    switch (s->script[i < s->len ? i : s->len - 1]) {
    case FAIL: afut_set_exception(f, ECONNREFUSED, "connection refused", NULL, NULL); break;
    case HANG: break; /* never answers: the attempt's wait_for times out */
    case SUCCEED: afut_set_result(f, "200 OK", NULL); break;
    }
    return f;
}

/* ------------------------------------------------------------------ the tests */

static int passed, failed;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Runs retry() against `s` on a fresh virtual-clock loop; checks the attempt times and the
 * outcome. */
static void check(const char *name, struct server *s, const double *want_at, int want_calls, const char *want) {
    afut_loop_t *loop = afut_loop_new();
    afut_loop_set_virtual_clock(loop, true);
    struct retry state;
    double t0 = now_s();
    afut_t *task = retry(loop, call_server, s, &state);
    afut_status_t rc = afut_loop_run_until_complete(loop, task);
    double real_ms = (now_s() - t0) * 1000;
    double end = afut_loop_time(loop);

    char got[96];
    void *value;
    afut_exception_t e;
    if (rc == AFUT_OK && afut_result(task, &value) == AFUT_OK)
        snprintf(got, sizeof got, "%s", (const char *)value);
    else if (rc == AFUT_ERR_EXCEPTION && afut_exception(task, &e) == AFUT_OK)
        snprintf(got, sizeof got, "error: %s", e.message);
    else
        snprintf(got, sizeof got, "%s", afut_status_str(rc));

    int ok = strcmp(got, want) == 0 && s->calls == want_calls;
    for (int i = 0; ok && i < want_calls; i++) ok = s->at[i] == want_at[i];
    if (ok) {
        passed++;
        printf("ok   %s: %s at t = %.0f s after %d attempts (%.3f ms of real time)\n", name, got, end, s->calls,
               real_ms);
    } else {
        failed++;
        printf("FAIL %s: got \"%s\" after %d attempts; attempts at:", name, got, s->calls);
        for (int i = 0; i < s->calls && i < 64; i++) printf(" %g", s->at[i]);
        printf("\n");
    }
    afut_unref(task);
    afut_loop_free(loop);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);

    /* Fails 5 times: backoff 1, 2, 4, 8, 16 s between the attempts. */
    struct server flaky = {.script = {FAIL, FAIL, FAIL, FAIL, FAIL, SUCCEED}, .len = 6};
    const double flaky_at[] = {0, 1, 3, 7, 15, 31};
    check("recovers after 5 failures", &flaky, flaky_at, 6, "200 OK");

    /* Hangs twice: each attempt times out after 10 s, then the backoff. */
    struct server hangs = {.script = {HANG, HANG, SUCCEED}, .len = 3};
    const double hangs_at[] = {0, 11, 23};
    check("times out hanging attempts", &hangs, hangs_at, 3, "200 OK");

    /* Never answers well: backoff doubles up to the 300 s cap, and it gives up within the hour. */
    struct server down = {.script = {FAIL}, .len = 1};
    const double down_at[] = {0, 1, 3, 7, 15, 31, 63, 127, 255, 511, 811, 1111, 1411, 1711, 2011, 2311, 2611, 2911, 3211, 3511};
    check("gives up after an hour", &down, down_at, 20, "error: gave up after 20 attempts");

    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
