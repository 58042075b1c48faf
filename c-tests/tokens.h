/* Counted tokens: the fixture of the loop and timer tests (test_loop.c, test_timers.c).
 *
 * Each test runs on a fresh loop, g_loop (tokens_setup() / tokens_teardown()). Every userdata
 * it schedules is a heap token whose id (0 .. NTOK-1) it chose; log_cb (and any callback that
 * calls record()) appends the id to g_log, counts the run and notes its loop time, and
 * tok_free counts frees. tokens_teardown() frees the loop and checks that every token was
 * freed exactly once and never before its callback ran.
 *
 * soon(id), later(delay, id) and at(when, id) schedule log_cb with a new token (the *_with
 * forms take another callback); a refused call releases its token uncounted (tok_discard)
 * and returns 0. CHECK_LOG(ids...) compares g_log with the ids given. */
#ifndef AFUT_TOKENS_H
#define AFUT_TOKENS_H

#include <afut.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"

#define NTOK 1024
#define LOGMAX 4096

static afut_loop_t *g_loop;
static int g_log[LOGMAX];
static int g_nlog;
static int g_runs[NTOK];
static int g_frees[NTOK];
static int g_allocs[NTOK];
static double g_ran_at[NTOK];
static int g_freed_before_run; /* a userdata freed before its callback ran */

typedef struct tok {
    int id;
} tok_t;

static inline tok_t *tok_new(int id) {
    tok_t *t = (tok_t *)malloc(sizeof *t);
    if (!t) abort();
    t->id = id;
    g_allocs[id]++;
    return t;
}

static inline void tok_free(void *p) {
    tok_t *t = (tok_t *)p;
    g_frees[t->id]++;
    free(t);
}

/* The caller keeps a token the library refused: release it without counting. */
static inline void tok_discard(tok_t *t) {
    g_allocs[t->id]--;
    free(t);
}

static inline void record(int id) {
    if (id >= 0 && id < NTOK) {
        if (g_frees[id]) g_freed_before_run++;
        g_runs[id]++;
        g_ran_at[id] = afut_loop_time(g_loop);
    }
    if (g_nlog < LOGMAX) g_log[g_nlog++] = id;
}

static inline void log_cb(void *p) { record(((tok_t *)p)->id); }

static inline afut_handle_t soon_with(afut_callback_fn cb, int id) {
    tok_t *t = tok_new(id);
    afut_handle_t h = afut_loop_call_soon(g_loop, cb, t, tok_free);
    if (!h) tok_discard(t);
    return h;
}

static inline afut_handle_t soon(int id) { return soon_with(log_cb, id); }

static inline afut_handle_t later_with(afut_callback_fn cb, double delay, int id) {
    tok_t *t = tok_new(id);
    afut_handle_t h = afut_loop_call_later(g_loop, delay, cb, t, tok_free);
    if (!h) tok_discard(t);
    return h;
}

static inline afut_handle_t later(double delay, int id) { return later_with(log_cb, delay, id); }

static inline afut_handle_t at_with(afut_callback_fn cb, double when, int id) {
    tok_t *t = tok_new(id);
    afut_handle_t h = afut_loop_call_at(g_loop, when, cb, t, tok_free);
    if (!h) tok_discard(t);
    return h;
}

static inline afut_handle_t at(double when, int id) { return at_with(log_cb, when, id); }

static inline void check_log_(const char *file, int line, const int *exp, int n) {
    bool ok = g_nlog == n;
    for (int i = 0; ok && i < n; i++) ok = g_log[i] == exp[i];
    if (ok) return;
    test_current_failures_++;
    fprintf(stderr, "  %s:%d: log is [", file, line);
    for (int i = 0; i < g_nlog; i++) fprintf(stderr, i ? ", %d" : "%d", g_log[i]);
    fprintf(stderr, "], expected [");
    for (int i = 0; i < n; i++) fprintf(stderr, i ? ", %d" : "%d", exp[i]);
    fprintf(stderr, "]\n");
}
#define CHECK_LOG(...)                                                           \
    check_log_(__FILE__, __LINE__, (const int[]){__VA_ARGS__},                   \
               (int)(sizeof((const int[]){__VA_ARGS__}) / sizeof(int)))
#define CHECK_LOG_ARRAY(arr, n) check_log_(__FILE__, __LINE__, (arr), (n))

/* A fresh loop in g_loop and zeroed counts. */
static inline void tokens_setup(void) {
    g_nlog = 0;
    memset(g_runs, 0, sizeof g_runs);
    memset(g_frees, 0, sizeof g_frees);
    memset(g_allocs, 0, sizeof g_allocs);
    memset(g_ran_at, 0, sizeof g_ran_at);
    g_freed_before_run = 0;
    g_loop = afut_loop_new();
    CHECK(g_loop != NULL);
}

/* Frees the loop (if the test did not) and checks that every token was freed exactly once
 * and never before its callback ran. */
static inline void tokens_teardown(void) {
    afut_loop_free(g_loop);
    g_loop = NULL;
    CHECK_EQ_INT(g_freed_before_run, 0);
    for (int i = 0; i < NTOK; i++) {
        if (g_frees[i] != g_allocs[i]) {
            test_current_failures_++;
            fprintf(stderr, "  token %d: freed %d times, allocated %d times\n", i, g_frees[i],
                    g_allocs[i]);
        }
    }
}

#endif
