/* Threads: completions, scheduling, stop and afut_wait across threads.
 *
 * Mirrors SEMANTICS.md L8 (call_soon_threadsafe wakes a blocked loop), L9 and B11
 * (closing while other threads submit), B12 (coalesced wakeups, none lost), and the
 * API.md "Threads" rules: every afut_t function and call_soon / call_later / stop may
 * be called from any thread, the loop wakes by itself (no timer needed), and callbacks
 * of loop-bound futures always run on the loop's thread. afut_wait per API.md.
 *
 * ThreadSanitizer note: the library (Rust) is not instrumented, so TSan cannot see
 * the synchronisation inside it. Every heap object handed from one thread to another
 * through afut therefore carries an atomic "published" flag, stored with release by
 * the producer and loaded with acquire (and checked) by whoever consumes it. The load
 * must see 1 because of the library's own synchronisation; the atomic only makes that
 * hand-off visible to TSan. Nothing is hidden: a missing hand-off fails a CHECK. */
#define _GNU_SOURCE
#include "test.h"

#include <afut.h>

#include "thread_helpers.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ helpers */





/* Divide loop counts by this under valgrind (valgrind is 10-50x slower). */

/* A generous upper bound for "the loop noticed promptly". */



/* A watchdog thread: if the test has not called watchdog_finish() after `secs`
 * seconds, it calls afut_loop_stop(loop) (thread-safe) so that a blocked run_* returns
 * and the test fails instead of hanging. The alarm() in main() is the last resort if
 * even stop() cannot wake the loop. */




/* ------------------------------------------------ single-shot observations */

/* Filled on the loop thread by a callback; read by the loop thread (main) later. */
typedef struct seen {
    afut_loop_t *loop;
    pthread_t loop_thread;
    int stop_loop;   /* the callback calls afut_loop_stop */
    int calls;
    int on_loop;     /* calls made on loop_thread */
    int saw_done;    /* done callbacks: afut_done(fut) was true */
    double t;        /* when the (last) call happened */
    atomic_int frees;
} seen_t;

static void seen_init(seen_t *s, afut_loop_t *loop, int stop_loop) {
    memset(s, 0, sizeof *s);
    s->loop = loop;
    s->loop_thread = pthread_self();
    s->stop_loop = stop_loop;
    atomic_init(&s->frees, 0);
}

static void seen_cb(void *ud) {
    seen_t *s = ud;
    s->calls++;
    s->on_loop += pthread_equal(pthread_self(), s->loop_thread) != 0;
    s->t = now_s();
    if (s->stop_loop) afut_loop_stop(s->loop);
}

static void seen_done_cb(afut_t *fut, void *ud) {
    seen_t *s = ud;
    s->saw_done += afut_done(fut);
    seen_cb(ud);
}

static void seen_free(void *ud) {
    seen_t *s = ud;
    atomic_fetch_add(&s->frees, 1);
}

/* ------------------------------------------------ counted, published tokens */

#define MAX_SRC 8

typedef struct tally {
    afut_loop_t *loop;
    pthread_t loop_thread;
    long stop_at; /* afut_loop_stop when `ran` reaches this; 0: never */
    atomic_long ran, freed, freed_unran, wrong_thread, unpublished, not_done;
    long last_seq[MAX_SRC]; /* loop thread only */
    long order_violations;  /* loop thread only */
} tally_t;

typedef struct token {
    atomic_int published;
    atomic_int ran;
    tally_t *t;
    int src;
    long seq;
} token_t;

static void tally_init(tally_t *t, afut_loop_t *loop, long stop_at) {
    memset(t, 0, sizeof *t);
    t->loop = loop;
    t->loop_thread = pthread_self();
    t->stop_at = stop_at;
    atomic_init(&t->ran, 0);
    atomic_init(&t->freed, 0);
    atomic_init(&t->freed_unran, 0);
    atomic_init(&t->wrong_thread, 0);
    atomic_init(&t->unpublished, 0);
    atomic_init(&t->not_done, 0);
    for (int i = 0; i < MAX_SRC; i++) t->last_seq[i] = -1;
}

static token_t *token_new(tally_t *t, int src, long seq) {
    token_t *k = calloc(1, sizeof *k);
    if (!k) abort();
    k->t = t;
    k->src = src;
    k->seq = seq;
    atomic_init(&k->ran, 0);
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
    tally_t *t = k->t;
    if (!pthread_equal(pthread_self(), t->loop_thread)) {
        atomic_fetch_add(&t->wrong_thread, 1);
    } else if (k->src >= 0 && k->src < MAX_SRC) {
        /* per-submitter FIFO (one MPSC queue, as asyncio's single _ready deque) */
        if (k->seq <= t->last_seq[k->src]) t->order_violations++;
        t->last_seq[k->src] = k->seq;
    }
    atomic_store(&k->ran, 1);
    long n = atomic_fetch_add(&t->ran, 1) + 1;
    if (t->stop_at && n == t->stop_at) afut_loop_stop(t->loop);
}

static void token_done_cb(afut_t *fut, void *ud) {
    token_t *k = ud;
    token_check(k);
    if (!afut_done(fut)) atomic_fetch_add(&k->t->not_done, 1);
    token_cb(ud);
}

static void token_free(void *ud) {
    token_t *k = ud;
    token_check(k);
    tally_t *t = k->t;
    atomic_fetch_add(&t->freed, 1);
    if (!atomic_load(&k->ran)) atomic_fetch_add(&t->freed_unran, 1);
    free(k);
}

/* ------------------------------------------------------------- the actor */

enum op {
    OP_RESULT,
    OP_EXCEPTION,
    OP_CANCEL,
    OP_CALL_SOON,
    OP_CALL_SOON_TS,
    OP_CALL_LATER,
    OP_CALL_LATER0,
    OP_ADD_CB,
    OP_ADD_CB_THEN_RESULT,
    OP_STOP,
};

/* A thread that sleeps `delay` seconds, then does one thing. */
typedef struct actor {
    afut_loop_t *loop;
    afut_t *fut;
    enum op op;
    double delay;
    void *arg;
    double t_act; /* when it acted (read after join) */
    long long rc;
    long long rc2;
    pthread_t th;
} actor_t;

static void *actor_main(void *p) {
    actor_t *a = p;
    sleep_s(a->delay);
    a->t_act = now_s();
    switch (a->op) {
    case OP_RESULT: a->rc = afut_set_result(a->fut, a->arg, NULL); break;
    case OP_EXCEPTION:
        a->rc = afut_set_exception(a->fut, 42, "boom from a thread", NULL, NULL);
        break;
    case OP_CANCEL: a->rc = afut_cancel(a->fut, "cancelled from a thread"); break;
    case OP_CALL_SOON:
        a->rc = (long long)afut_loop_call_soon(a->loop, seen_cb, a->arg, seen_free);
        break;
    case OP_CALL_SOON_TS:
        a->rc = (long long)afut_loop_call_soon_threadsafe(a->loop, seen_cb, a->arg, seen_free);
        break;
    case OP_CALL_LATER:
        a->rc = (long long)afut_loop_call_later(a->loop, 0.05, seen_cb, a->arg, seen_free);
        break;
    case OP_CALL_LATER0:
        a->rc = (long long)afut_loop_call_later(a->loop, 0.0, seen_cb, a->arg, seen_free);
        break;
    case OP_ADD_CB:
        a->rc = afut_add_done_callback(a->fut, seen_done_cb, a->arg, seen_free);
        break;
    case OP_ADD_CB_THEN_RESULT:
        a->rc = afut_add_done_callback(a->fut, seen_done_cb, a->arg, seen_free);
        sleep_s(a->delay);
        a->t_act = now_s();
        a->rc2 = afut_set_result(a->fut, NULL, NULL);
        break;
    case OP_STOP:
        afut_loop_stop(a->loop);
        a->rc = 0;
        break;
    }
    return NULL;
}

static void actor_start(actor_t *a) {
    if (pthread_create(&a->th, NULL, actor_main, a) != 0) abort();
}

static void actor_join(actor_t *a) { pthread_join(a->th, NULL); }

/* ======================================================= cross-thread wakeups */

/* L8 [X]: a threadsafe set_result from a thread resumes the loop promptly; API.md
 * Threads: completing from another thread wakes the loop, the callbacks still run on
 * the loop thread. No timer is scheduled, so only the wakeup can end the wait. */
static void complete_from_thread_dbg(enum op op, int expected, bool debug) {
    afut_loop_t *loop = afut_loop_new();
    if (debug) afut_loop_set_debug(loop, true);
    afut_t *fut = afut_loop_create_future(loop);
    CHECK(loop && fut);
    if (!loop || !fut) return;
    seen_t s;
    seen_init(&s, loop, 0);
    CHECK_EQ_INT(afut_add_done_callback(fut, seen_done_cb, &s, seen_free), AFUT_OK);
    CHECK_EQ_INT(afut_loop_timeout_ms(loop), -1);
    static int value;
    actor_t a = {.loop = loop, .fut = fut, .op = op, .delay = 0.05, .arg = &value};
    watchdog_t w;
    watchdog_start(&w, loop, 5.0);
    actor_start(&a);
    int rc = afut_loop_run_until_complete(loop, fut);
    double t_ret = now_s();
    actor_join(&a);
    CHECK(!watchdog_finish(&w));
    CHECK_EQ_INT(rc, expected);
    CHECK(t_ret >= a.t_act);
    CHECK(t_ret - a.t_act < max_latency());
    /* sibling done-callbacks queued in the same batch run before run_until_complete
     * returns (SEMANTICS L6/L7 [X]) */
    CHECK_EQ_INT(s.calls, 1);
    CHECK_EQ_INT(s.on_loop, 1);
    CHECK_EQ_INT(s.saw_done, 1);
    CHECK_EQ_INT(atomic_load(&s.frees), 1);
    void *v = NULL;
    afut_exception_t e;
    switch (op) {
    case OP_RESULT:
        CHECK_EQ_INT(a.rc, AFUT_OK);
        CHECK_EQ_INT(afut_result(fut, &v), AFUT_OK);
        CHECK(v == &value);
        break;
    case OP_EXCEPTION:
        CHECK_EQ_INT(a.rc, AFUT_OK);
        memset(&e, 0, sizeof e);
        CHECK_EQ_INT(afut_exception(fut, &e), AFUT_OK);
        CHECK_EQ_INT(e.code, 42);
        CHECK_STR(e.message, "boom from a thread");
        break;
    case OP_CANCEL:
        CHECK_EQ_INT(a.rc, 1);
        CHECK(afut_cancelled(fut));
        CHECK_STR(afut_cancel_message(fut), "cancelled from a thread");
        break;
    default: break;
    }
    afut_unref(fut);
    afut_loop_free(loop);
}

static void complete_from_thread(enum op op, int expected) {
    complete_from_thread_dbg(op, expected, false);
}

/* L10 trap: in asyncio debug mode, set_result from a foreign thread changes the state
 * and then raises, losing the callbacks. afut is thread-safe by design: debug mode
 * changes nothing here. */
TEST(set_result_from_thread_in_debug_mode_loses_nothing) {
    complete_from_thread_dbg(OP_RESULT, AFUT_OK, true);
}

TEST(set_result_from_thread_wakes_run_until_complete) {
    complete_from_thread(OP_RESULT, AFUT_OK);
}

TEST(set_exception_from_thread_wakes_run_until_complete) {
    complete_from_thread(OP_EXCEPTION, AFUT_ERR_EXCEPTION);
}

TEST(cancel_from_thread_wakes_run_until_complete) {
    complete_from_thread(OP_CANCEL, AFUT_ERR_CANCELLED);
}

/* L8: call_soon_threadsafe from another thread wakes a loop blocked in run_forever;
 * API.md: call_soon from another thread does the same (asyncio's call_soon_threadsafe,
 * done for you). call_later from another thread must shorten the loop's wait. */
static void schedule_from_thread(enum op op) {
    afut_loop_t *loop = afut_loop_new();
    CHECK(loop != NULL);
    if (!loop) return;
    seen_t s;
    seen_init(&s, loop, 1);
    actor_t a = {.loop = loop, .op = op, .delay = 0.05, .arg = &s};
    CHECK_EQ_INT(afut_loop_timeout_ms(loop), -1);
    watchdog_t w;
    watchdog_start(&w, loop, 5.0);
    actor_start(&a);
    int rc = afut_loop_run_forever(loop);
    double t_ret = now_s();
    actor_join(&a);
    CHECK(!watchdog_finish(&w));
    CHECK_EQ_INT(rc, AFUT_OK);
    CHECK(a.rc != 0); /* a handle */
    CHECK_EQ_INT(s.calls, 1);
    CHECK_EQ_INT(s.on_loop, 1);
    CHECK_EQ_INT(atomic_load(&s.frees), 1);
    CHECK(s.t >= a.t_act);
    double due = op == OP_CALL_LATER ? 0.05 : 0.0;
    CHECK(s.t - a.t_act < due + max_latency());
    if (op == OP_CALL_LATER) CHECK(s.t - a.t_act >= 0.045);
    CHECK(t_ret - a.t_act < due + max_latency());
    afut_loop_free(loop);
}

TEST(call_soon_from_thread_wakes_run_forever) { schedule_from_thread(OP_CALL_SOON); }

TEST(call_soon_threadsafe_from_thread_wakes_run_forever) {
    schedule_from_thread(OP_CALL_SOON_TS);
}

TEST(call_later_from_thread_wakes_run_forever) { schedule_from_thread(OP_CALL_LATER); }

TEST(call_later_zero_from_thread_wakes_run_forever) { schedule_from_thread(OP_CALL_LATER0); }

/* F2 (add_done_callback on a done future = loop.call_soon right away) from another
 * thread: the loop must wake for it. */
TEST(add_done_callback_from_thread_on_done_future_wakes_loop) {
    afut_loop_t *loop = afut_loop_new();
    afut_t *fut = afut_loop_create_future(loop);
    CHECK_EQ_INT(afut_set_result(fut, NULL, NULL), AFUT_OK);
    seen_t s;
    seen_init(&s, loop, 1);
    actor_t a = {.loop = loop, .fut = fut, .op = OP_ADD_CB, .delay = 0.05, .arg = &s};
    watchdog_t w;
    watchdog_start(&w, loop, 5.0);
    actor_start(&a);
    int rc = afut_loop_run_forever(loop);
    actor_join(&a);
    CHECK(!watchdog_finish(&w));
    CHECK_EQ_INT(rc, AFUT_OK);
    CHECK_EQ_INT(a.rc, AFUT_OK);
    CHECK_EQ_INT(s.calls, 1);
    CHECK_EQ_INT(s.on_loop, 1);
    CHECK_EQ_INT(s.saw_done, 1);
    CHECK_EQ_INT(atomic_load(&s.frees), 1);
    CHECK(s.t - a.t_act < max_latency());
    afut_unref(fut);
    afut_loop_free(loop);
}

/* A callback added from a thread to a pending future, then the same thread completes
 * it: the callback runs on the loop thread. */
TEST(add_done_callback_then_set_result_from_thread) {
    afut_loop_t *loop = afut_loop_new();
    afut_t *fut = afut_loop_create_future(loop);
    seen_t s;
    seen_init(&s, loop, 1);
    actor_t a = {.loop = loop, .fut = fut, .op = OP_ADD_CB_THEN_RESULT, .delay = 0.03, .arg = &s};
    watchdog_t w;
    watchdog_start(&w, loop, 5.0);
    actor_start(&a);
    int rc = afut_loop_run_forever(loop);
    actor_join(&a);
    CHECK(!watchdog_finish(&w));
    CHECK_EQ_INT(rc, AFUT_OK);
    CHECK_EQ_INT(a.rc, AFUT_OK);
    CHECK_EQ_INT(a.rc2, AFUT_OK);
    CHECK_EQ_INT(s.calls, 1);
    CHECK_EQ_INT(s.on_loop, 1);
    CHECK_EQ_INT(s.saw_done, 1);
    CHECK_EQ_INT(atomic_load(&s.frees), 1);
    CHECK(s.t - a.t_act < max_latency());
    afut_unref(fut);
    afut_loop_free(loop);
}

/* API.md: afut_loop_stop is thread-safe and wakes the loop. */
TEST(stop_from_thread_wakes_idle_run_forever) {
    afut_loop_t *loop = afut_loop_new();
    actor_t a = {.loop = loop, .op = OP_STOP, .delay = 0.05};
    watchdog_t w;
    watchdog_start(&w, loop, 5.0);
    actor_start(&a);
    int rc = afut_loop_run_forever(loop);
    double t_ret = now_s();
    actor_join(&a);
    CHECK(!watchdog_finish(&w));
    CHECK_EQ_INT(rc, AFUT_OK);
    CHECK(t_ret >= a.t_act);
    CHECK(t_ret - a.t_act < max_latency());
    CHECK(!afut_loop_is_running(loop));
    afut_loop_free(loop);
}

typedef struct spinner {
    afut_loop_t *loop;
    long n;
} spinner_t;

static void spin_cb(void *ud) {
    spinner_t *s = ud;
    s->n++;
    afut_loop_call_soon(s->loop, spin_cb, s, NULL);
}

/* L6: stop() lets the current batch finish; from another thread it ends a busy loop. */
TEST(stop_from_thread_ends_busy_run_forever) {
    afut_loop_t *loop = afut_loop_new();
    spinner_t sp = {.loop = loop};
    CHECK(afut_loop_call_soon(loop, spin_cb, &sp, NULL) != 0);
    actor_t a = {.loop = loop, .op = OP_STOP, .delay = 0.03};
    watchdog_t w;
    watchdog_start(&w, loop, 5.0);
    actor_start(&a);
    int rc = afut_loop_run_forever(loop);
    double t_ret = now_s();
    actor_join(&a);
    CHECK(!watchdog_finish(&w));
    CHECK_EQ_INT(rc, AFUT_OK);
    CHECK(sp.n > 0);
    CHECK(t_ret - a.t_act < max_latency());
    afut_loop_free(loop); /* frees the still-queued spin_cb (NULL userdata_free) */
}

/* API.md decision: a stop before run_forever makes it do one iteration; a stop from
 * another thread while the loop is not running counts the same. */
TEST(stop_from_thread_before_run_forever) {
    afut_loop_t *loop = afut_loop_new();
    actor_t a = {.loop = loop, .op = OP_STOP, .delay = 0};
    actor_start(&a);
    actor_join(&a);
    watchdog_t w;
    watchdog_start(&w, loop, 5.0);
    CHECK_EQ_INT(afut_loop_run_forever(loop), AFUT_OK);
    CHECK(!watchdog_finish(&w));
    afut_loop_free(loop);
}

/* ------------------------------------------------- many submitters at once */

typedef struct submitter {
    afut_loop_t *loop;
    tally_t *t;
    int src;
    long n;                /* submissions to make (upper bound when until_closed) */
    int until_closed;      /* keep going until refused this many times after *closed */
    atomic_int *closed;
    double give_up_at;     /* safety: stop after this time */
    long submitted, accepted, refused;
    pthread_t th;
} submitter_t;

static void *submitter_main(void *p) {
    submitter_t *s = p;
    for (long i = 0; i < s->n; i++) {
        token_t *k = token_new(s->t, s->src, i);
        afut_handle_t h = (i & 1) ? afut_loop_call_soon_threadsafe(s->loop, token_cb, k, token_free)
                                  : afut_loop_call_soon(s->loop, token_cb, k, token_free);
        s->submitted++;
        if (h) {
            s->accepted++;
        } else {
            /* refused: the token is still ours (ASan would catch a double free) */
            s->refused++;
            free(k);
        }
        if (s->until_closed) {
            if (s->refused >= s->until_closed && atomic_load(s->closed)) break;
            if ((i & 1023) == 1023 && now_s() > s->give_up_at) break;
        }
    }
    return NULL;
}

/* L8 + R7: N threads x M call_soon / call_soon_threadsafe: exact counts, every callback
 * on the loop thread, per-thread FIFO, userdata_free once per accepted submission. */
TEST(many_threads_call_soon_exact_counts) {
    enum { NT = 4 };
    long m = scaled(5000);
    afut_loop_t *loop = afut_loop_new();
    tally_t t;
    tally_init(&t, loop, NT * m);
    submitter_t subs[NT];
    watchdog_t w;
    watchdog_start(&w, loop, 8.0);
    for (int i = 0; i < NT; i++) {
        subs[i] = (submitter_t){.loop = loop, .t = &t, .src = i, .n = m};
        pthread_create(&subs[i].th, NULL, submitter_main, &subs[i]);
    }
    int rc = afut_loop_run_forever(loop);
    for (int i = 0; i < NT; i++) pthread_join(subs[i].th, NULL);
    CHECK(!watchdog_finish(&w));
    CHECK_EQ_INT(rc, AFUT_OK);
    long accepted = 0;
    for (int i = 0; i < NT; i++) {
        CHECK_EQ_INT(subs[i].accepted, m);
        accepted += subs[i].accepted;
    }
    CHECK_EQ_INT(atomic_load(&t.ran), NT * m);
    CHECK_EQ_INT(atomic_load(&t.wrong_thread), 0);
    CHECK_EQ_INT(atomic_load(&t.unpublished), 0);
    CHECK_EQ_INT(t.order_violations, 0);
    afut_loop_free(loop);
    CHECK_EQ_INT(atomic_load(&t.freed), accepted);
    CHECK_EQ_INT(atomic_load(&t.freed_unran), 0);
}

/* L9 + B11 + R7: closing the loop while threads submit. Each submission either runs
 * (ran), or is refused with 0 and stays the submitter's (refused), or was accepted and
 * then freed by close (freed_unran). ran + refused + freed_unran == submitted, and
 * userdata_free runs exactly once per accepted submission. */
TEST(close_while_threads_submit) {
    enum { NT = 4 };
    afut_loop_t *loop = afut_loop_new();
    tally_t t;
    tally_init(&t, loop, 0);
    atomic_int closed;
    atomic_init(&closed, 0);
    submitter_t subs[NT];
    double give_up = now_s() + (under_valgrind() ? 30.0 : 5.0);
    for (int i = 0; i < NT; i++) {
        subs[i] = (submitter_t){.loop = loop, .t = &t, .src = i, .n = 4000000, .until_closed = 20,
                                .closed = &closed, .give_up_at = give_up};
        pthread_create(&subs[i].th, NULL, submitter_main, &subs[i]);
    }
    double end = now_s() + 0.1;
    while (now_s() < end) afut_loop_run_once(loop, 5, NULL);
    CHECK_EQ_INT(afut_loop_close(loop), AFUT_OK);
    atomic_store(&closed, 1);
    CHECK(afut_loop_is_closed(loop));
    long submitted = 0, accepted = 0, refused = 0;
    for (int i = 0; i < NT; i++) {
        pthread_join(subs[i].th, NULL);
        submitted += subs[i].submitted;
        accepted += subs[i].accepted;
        refused += subs[i].refused;
        CHECK(subs[i].refused >= 20); /* each saw the close (else it gave up on time) */
    }
    long ran = atomic_load(&t.ran), freed_unran = atomic_load(&t.freed_unran);
    CHECK(ran > 0);
    CHECK_EQ_INT(ran + freed_unran, accepted);
    CHECK_EQ_INT(ran + refused + freed_unran, submitted);
    CHECK_EQ_INT(atomic_load(&t.freed), accepted);
    CHECK_EQ_INT(atomic_load(&t.wrong_thread), 0);
    CHECK_EQ_INT(atomic_load(&t.unpublished), 0);
    CHECK_EQ_INT(t.order_violations, 0);
    /* and afterwards scheduling keeps failing, leaving the userdata with the caller */
    seen_t s;
    seen_init(&s, loop, 0);
    CHECK(afut_loop_call_soon(loop, seen_cb, &s, seen_free) == 0);
    CHECK(afut_loop_call_soon_threadsafe(loop, seen_cb, &s, seen_free) == 0);
    CHECK(afut_loop_call_later(loop, 0.0, seen_cb, &s, seen_free) == 0);
    CHECK_EQ_INT(atomic_load(&s.frees), 0);
    afut_loop_free(loop);
    CHECK_EQ_INT(atomic_load(&t.freed), accepted);
    CHECK_EQ_INT(s.calls, 0);
}

/* Completers for close_while_threads_complete. */
typedef struct completer {
    afut_t **futs;
    long n;
    long ok;
    long late_add_rc_closed; /* add_done_callback on a done future after close */
    tally_t *t;
    atomic_int *closed;
    pthread_t th;
} completer_t;

static void *completer_main(void *p) {
    completer_t *c = p;
    for (long i = 0; i < c->n; i++) {
        if (afut_set_result(c->futs[i], NULL, NULL) == AFUT_OK) c->ok++;
        if ((i & 15) == 15) sleep_s(0.0002);
    }
    /* once the loop is closed, adding a callback to a done future fails and leaves the
     * userdata with us (API.md "A closed loop") */
    while (!atomic_load(c->closed)) sleep_s(0.001);
    token_t *k = token_new(c->t, -1, 0);
    int rc = afut_add_done_callback(c->futs[0], token_done_cb, k, token_free);
    if (rc == AFUT_ERR_LOOP_CLOSED) c->late_add_rc_closed = 1;
    if (rc != AFUT_OK) free(k); /* refused: still ours */
    return NULL;
}

/* API.md "A closed loop" + L9 + B11: threads completing futures while the loop closes:
 * set_result always returns AFUT_OK; each done-callback either ran on the loop thread
 * or was freed (once) without running. */
TEST(close_while_threads_complete_futures) {
    enum { NT = 4 };
    long per = scaled(1000);
    afut_loop_t *loop = afut_loop_new();
    tally_t t;
    tally_init(&t, loop, 0);
    atomic_int closed;
    atomic_init(&closed, 0);
    completer_t cs[NT];
    for (int i = 0; i < NT; i++) {
        cs[i] = (completer_t){.n = per, .t = &t, .closed = &closed};
        cs[i].futs = calloc((size_t)per, sizeof(afut_t *));
        for (long j = 0; j < per; j++) {
            cs[i].futs[j] = afut_loop_create_future(loop);
            afut_add_done_callback(cs[i].futs[j], token_done_cb, token_new(&t, -1, j), token_free);
        }
    }
    for (int i = 0; i < NT; i++) pthread_create(&cs[i].th, NULL, completer_main, &cs[i]);
    double end = now_s() + 0.02;
    while (now_s() < end) afut_loop_run_once(loop, 2, NULL);
    CHECK_EQ_INT(afut_loop_close(loop), AFUT_OK);
    atomic_store(&closed, 1);
    for (int i = 0; i < NT; i++) {
        pthread_join(cs[i].th, NULL);
        CHECK_EQ_INT(cs[i].ok, per);
        CHECK_EQ_INT(cs[i].late_add_rc_closed, 1);
    }
    long ran = atomic_load(&t.ran), unran = atomic_load(&t.freed_unran);
    CHECK_EQ_INT(ran + unran, NT * per);
    CHECK_EQ_INT(atomic_load(&t.freed), NT * per);
    CHECK_EQ_INT(atomic_load(&t.wrong_thread), 0);
    CHECK_EQ_INT(atomic_load(&t.unpublished), 0);
    CHECK_EQ_INT(atomic_load(&t.not_done), 0);
    for (int i = 0; i < NT; i++) {
        for (long j = 0; j < per; j++) {
            CHECK(afut_done(cs[i].futs[j]));
            afut_unref(cs[i].futs[j]);
        }
        free(cs[i].futs);
    }
    afut_loop_free(loop);
    CHECK_EQ_INT(atomic_load(&t.freed), NT * per);
}

/* B12: "a completion that races with the loop going to sleep is always seen". The loop
 * thread starts run_until_complete on a fresh future while a worker completes it after
 * a varying, tiny delay; many rounds. A lost wakeup blocks the round until the
 * watchdog stops the loop. */
typedef struct racer {
    sem_t go;
    afut_t *_Atomic slot;
    long rounds;
    pthread_t th;
} racer_t;

static void *racer_main(void *p) {
    racer_t *r = p;
    for (long i = 0; i < r->rounds; i++) {
        while (sem_wait(&r->go) != 0 && errno == EINTR) {
        }
        afut_t *fut = atomic_load(&r->slot); /* a reference of our own */
        if (!fut) break;
        /* spin a varying few microseconds to land on different points of the loop's
         * way to sleep */
        volatile long spin = (i * 7919) % 2000;
        while (spin > 0) spin--;
        afut_set_result(fut, (void *)(uintptr_t)(i + 1), NULL);
        afut_unref(fut);
    }
    return NULL;
}

TEST(completion_racing_with_sleep_is_never_lost) {
    long rounds = scaled(2000);
    afut_loop_t *loop = afut_loop_new();
    racer_t r;
    memset(&r, 0, sizeof r);
    sem_init(&r.go, 0, 0);
    atomic_init(&r.slot, NULL);
    r.rounds = rounds;
    pthread_create(&r.th, NULL, racer_main, &r);
    watchdog_t w;
    watchdog_start(&w, loop, 8.0);
    long ok = 0;
    long i;
    for (i = 0; i < rounds; i++) {
        afut_t *fut = afut_loop_create_future(loop);
        atomic_store(&r.slot, afut_ref(fut)); /* the worker's reference */
        sem_post(&r.go);
        int rc = afut_loop_run_until_complete(loop, fut);
        void *v = NULL;
        if (rc == AFUT_OK && afut_result(fut, &v) == AFUT_OK && v == (void *)(uintptr_t)(i + 1)) ok++;
        if (rc != AFUT_OK) {
            fprintf(stderr, "  round %ld: run_until_complete -> %d (%s)\n", i, rc,
                    afut_status_str(rc));
            afut_wait(fut, 5.0); /* let the worker finish this round */
            afut_unref(fut);
            i++;
            break;
        }
        afut_unref(fut);
    }
    if (i < rounds) { /* stopped early: release the worker */
        atomic_store(&r.slot, NULL);
        sem_post(&r.go);
    }
    pthread_join(r.th, NULL);
    CHECK(!watchdog_finish(&w));
    CHECK_EQ_INT(ok, rounds);
    sem_destroy(&r.go);
    afut_loop_free(loop);
}

/* API.md Threads: the loop may be driven by any one thread. Created on main, run on a
 * worker: callbacks run on the worker; run_* and close from main while it runs are
 * AFUT_ERR_LOOP_RUNNING (lead decision); is_running is visible from main. */
static _Thread_local int i_am_runner;

typedef struct runner {
    afut_loop_t *loop;
    afut_t *fut;
    int rc;
    pthread_t th;
} runner_t;

static void *runner_main(void *p) {
    runner_t *r = p;
    i_am_runner = 1;
    r->rc = afut_loop_run_until_complete(r->loop, r->fut);
    return NULL;
}

typedef struct started {
    atomic_int flag;
    atomic_int on_runner; /* 1 when the callback ran on the runner thread, 2 if not */
} started_t;

static void started_cb(void *ud) {
    started_t *s = ud;
    atomic_store(&s->on_runner, i_am_runner ? 1 : 2);
    atomic_store(&s->flag, 1);
}

TEST(loop_driven_by_another_thread) {
    afut_loop_t *loop = afut_loop_new();
    runner_t r = {.loop = loop, .fut = afut_loop_create_future(loop), .rc = 99};
    started_t st;
    atomic_init(&st.flag, 0);
    atomic_init(&st.on_runner, 0);
    watchdog_t w;
    watchdog_start(&w, loop, 5.0);
    pthread_create(&r.th, NULL, runner_main, &r);
    /* call_soon from main while the worker may or may not be running it yet */
    CHECK(afut_loop_call_soon(loop, started_cb, &st, NULL) != 0);
    double dl = now_s() + 5.0 * (under_valgrind() ? 6 : 1);
    while (!atomic_load(&st.flag) && now_s() < dl) sleep_s(0.001);
    CHECK(atomic_load(&st.flag));
    CHECK_EQ_INT(atomic_load(&st.on_runner), 1);
    CHECK(afut_loop_is_running(loop));
    CHECK_EQ_INT(afut_loop_run_forever(loop), AFUT_ERR_LOOP_RUNNING);
    CHECK_EQ_INT(afut_loop_run_once(loop, 0, NULL), AFUT_ERR_LOOP_RUNNING);
    CHECK_EQ_INT(afut_loop_close(loop), AFUT_ERR_LOOP_RUNNING);
    CHECK(!afut_loop_is_closed(loop));
    CHECK_EQ_INT(afut_set_result(r.fut, NULL, NULL), AFUT_OK);
    pthread_join(r.th, NULL);
    CHECK(!watchdog_finish(&w));
    CHECK_EQ_INT(r.rc, AFUT_OK);
    CHECK(!afut_loop_is_running(loop));
    afut_unref(r.fut);
    afut_loop_free(loop);
}

/* ============================================================== afut_wait */

typedef struct waiter {
    afut_t *fut;
    double timeout;
    int rc;
    double took;
    pthread_t th;
} waiter_t;

static void *waiter_main(void *p) {
    waiter_t *w = p;
    double t0 = now_s();
    w->rc = afut_wait(w->fut, w->timeout);
    w->took = now_s() - t0;
    return NULL;
}

static void waiter_start(waiter_t *w, afut_t *fut, double timeout) {
    w->fut = fut;
    w->timeout = timeout;
    w->rc = 99;
    pthread_create(&w->th, NULL, waiter_main, w);
}

/* Runs a sequence of afut_wait calls on a worker thread. */
typedef struct wait_script {
    afut_t *pending;
    afut_t *done;
    int rc_done0, rc_done_inf, rc_done_neg;
    int rc_pend0, rc_pend_short, rc_pend_neg, rc_nan, rc_null;
    double took_pend0, took_pend_short, took_pend_neg;
} wait_script_t;

static void *wait_script_main(void *p) {
    wait_script_t *s = p;
    s->rc_done0 = afut_wait(s->done, 0.0);
    s->rc_done_inf = afut_wait(s->done, INFINITY);
    s->rc_done_neg = afut_wait(s->done, -1.0);
    double t0 = now_s();
    s->rc_pend0 = afut_wait(s->pending, 0.0);
    s->took_pend0 = now_s() - t0;
    t0 = now_s();
    s->rc_pend_short = afut_wait(s->pending, 0.05);
    s->took_pend_short = now_s() - t0;
    t0 = now_s();
    s->rc_pend_neg = afut_wait(s->pending, -5.0);
    s->took_pend_neg = now_s() - t0;
    s->rc_nan = afut_wait(s->pending, NAN);
    s->rc_null = afut_wait(NULL, 0.0);
    return NULL;
}

/* API.md afut_wait: done -> AFUT_OK at once (whatever the timeout), pending ->
 * AFUT_ERR_TIMEOUT after the timeout, 0 polls, negative acts as 0, NaN and NULL are
 * AFUT_ERR_INVALID_ARGUMENT (Conventions: bad input). CF6: timeout=0 means poll. */
TEST(wait_from_worker_done_timeout_poll) {
    afut_loop_t *loop = afut_loop_new();
    wait_script_t s;
    memset(&s, 0, sizeof s);
    s.pending = afut_loop_create_future(loop);
    s.done = afut_loop_create_future(loop);
    CHECK_EQ_INT(afut_set_result(s.done, NULL, NULL), AFUT_OK);
    pthread_t th;
    pthread_create(&th, NULL, wait_script_main, &s);
    pthread_join(th, NULL);
    CHECK_EQ_INT(s.rc_done0, AFUT_OK);
    CHECK_EQ_INT(s.rc_done_inf, AFUT_OK);
    CHECK_EQ_INT(s.rc_done_neg, AFUT_OK);
    CHECK_EQ_INT(s.rc_pend0, AFUT_ERR_TIMEOUT);
    CHECK(s.took_pend0 < 0.2 * max_latency()); /* a poll returns at once */
    CHECK_EQ_INT(s.rc_pend_short, AFUT_ERR_TIMEOUT);
    CHECK(s.took_pend_short >= 0.045);
    CHECK(s.took_pend_short < 0.05 + max_latency());
    CHECK_EQ_INT(s.rc_pend_neg, AFUT_ERR_TIMEOUT);
    CHECK(s.took_pend_neg < 0.2 * max_latency());
    CHECK_EQ_INT(s.rc_nan, AFUT_ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(s.rc_null, AFUT_ERR_INVALID_ARGUMENT);
    CHECK(!afut_done(s.pending));
    afut_unref(s.pending);
    afut_unref(s.done);
    afut_loop_free(loop);
}

static void set_result_cb(void *fut) { afut_set_result(fut, (void *)(uintptr_t)7, NULL); }

/* afut_wait(INFINITY) on a worker, the future completed by the loop thread inside a
 * callback: the waiter wakes (any outcome -> AFUT_OK). */
TEST(wait_infinity_on_worker_completed_by_loop) {
    afut_loop_t *loop = afut_loop_new();
    afut_t *fut = afut_loop_create_future(loop);
    waiter_t wt;
    waiter_start(&wt, fut, INFINITY);
    CHECK(afut_loop_call_later(loop, 0.05, set_result_cb, fut, NULL) != 0);
    watchdog_t w;
    watchdog_start(&w, loop, 5.0);
    CHECK_EQ_INT(afut_loop_run_until_complete(loop, fut), AFUT_OK);
    CHECK(!watchdog_finish(&w));
    pthread_join(wt.th, NULL); /* the alarm() is the deadline if afut_wait never returns */
    CHECK_EQ_INT(wt.rc, AFUT_OK);
    CHECK(wt.took >= 0.04);
    CHECK(wt.took < 0.05 + max_latency());
    afut_unref(fut);
    afut_loop_free(loop);
}

/* Several waiters on one future, completed (exception, then cancel) from yet another
 * thread while no loop runs at all: afut_wait does not depend on the loop. */
static void waiters_woken_by(enum op op) {
    enum { NW = 4 };
    afut_loop_t *loop = afut_loop_new();
    afut_t *fut = afut_loop_create_future(loop);
    waiter_t ws[NW];
    for (int i = 0; i < NW; i++) waiter_start(&ws[i], fut, i % 2 ? INFINITY : 10.0);
    actor_t a = {.loop = loop, .fut = fut, .op = op, .delay = 0.05};
    actor_start(&a);
    actor_join(&a);
    for (int i = 0; i < NW; i++) {
        pthread_join(ws[i].th, NULL);
        CHECK_EQ_INT(ws[i].rc, AFUT_OK);
        CHECK(ws[i].took < 0.05 + max_latency());
    }
    CHECK(afut_done(fut));
    if (op == OP_EXCEPTION) {
        afut_exception_t e;
        CHECK_EQ_INT(afut_exception(fut, &e), AFUT_OK);
        CHECK_EQ_INT(e.code, 42);
    } else {
        CHECK(afut_cancelled(fut));
    }
    afut_unref(fut);
    afut_loop_free(loop);
}

TEST(wait_many_waiters_exception_from_thread) { waiters_woken_by(OP_EXCEPTION); }

TEST(wait_many_waiters_cancel_from_thread) { waiters_woken_by(OP_CANCEL); }

/* afut_wait inside a callback of the future's own loop: AFUT_ERR_WRONG_THREAD (it
 * would never finish), at once even with a timeout. On a future of another loop, or a
 * loop-less one, it is an ordinary wait. */
typedef struct inside {
    afut_t *own;     /* pending, bound to the running loop */
    afut_t *other;   /* pending, bound to a loop that is not running */
    afut_t *loopless;
    int rc_own0, rc_own_t, rc_other, rc_loopless;
    double took_own_t;
    int rc_done_cb;
    int calls;
} inside_t;

static void inside_cb(void *ud) {
    inside_t *s = ud;
    s->calls++;
    s->rc_own0 = afut_wait(s->own, 0.0);
    double t0 = now_s();
    s->rc_own_t = afut_wait(s->own, 0.3);
    s->took_own_t = now_s() - t0;
    s->rc_other = afut_wait(s->other, 0.0);
    s->rc_loopless = afut_wait(s->loopless, 0.0);
}

static void inside_done_cb(afut_t *fut, void *ud) {
    (void)fut;
    inside_t *s = ud;
    s->rc_done_cb = afut_wait(s->own, 0.01);
}

TEST(wait_inside_callback_of_same_loop_is_wrong_thread) {
    afut_loop_t *loop = afut_loop_new();
    afut_loop_t *loop2 = afut_loop_new();
    inside_t s;
    memset(&s, 0, sizeof s);
    s.own = afut_loop_create_future(loop);
    s.other = afut_loop_create_future(loop2);
    s.loopless = afut_new(NULL);
    afut_t *trigger = afut_loop_create_future(loop);
    CHECK_EQ_INT(afut_add_done_callback(trigger, inside_done_cb, &s, NULL), AFUT_OK);
    CHECK_EQ_INT(afut_set_result(trigger, NULL, NULL), AFUT_OK);
    CHECK(afut_loop_call_soon(loop, inside_cb, &s, NULL) != 0);
    size_t ran = 0;
    watchdog_t w;
    watchdog_start(&w, loop, 5.0);
    CHECK_EQ_INT(afut_loop_run_once(loop, 0, &ran), AFUT_OK);
    CHECK(!watchdog_finish(&w));
    CHECK_EQ_INT(ran, 2);
    CHECK_EQ_INT(s.calls, 1);
    CHECK_EQ_INT(s.rc_own0, AFUT_ERR_WRONG_THREAD);
    CHECK_EQ_INT(s.rc_own_t, AFUT_ERR_WRONG_THREAD);
    CHECK(s.took_own_t < 0.25); /* returned without waiting out the 0.3 s */
    CHECK_EQ_INT(s.rc_done_cb, AFUT_ERR_WRONG_THREAD);
    CHECK_EQ_INT(s.rc_other, AFUT_ERR_TIMEOUT);
    CHECK_EQ_INT(s.rc_loopless, AFUT_ERR_TIMEOUT);
    /* outside run_*, the loop's own thread may wait (it just times out here) */
    CHECK_EQ_INT(afut_wait(s.own, 0.01), AFUT_ERR_TIMEOUT);
    afut_unref(trigger);
    afut_unref(s.own);
    afut_unref(s.other);
    afut_unref(s.loopless);
    afut_loop_free(loop);
    afut_loop_free(loop2);
}

/* ================================================================== main */

int main(void) {
    test_deadline(under_valgrind() ? 110 : 60); /* for the whole program */
    RUN(set_result_from_thread_wakes_run_until_complete);
    RUN(set_result_from_thread_in_debug_mode_loses_nothing);
    RUN(set_exception_from_thread_wakes_run_until_complete);
    RUN(cancel_from_thread_wakes_run_until_complete);
    RUN(call_soon_from_thread_wakes_run_forever);
    RUN(call_soon_threadsafe_from_thread_wakes_run_forever);
    RUN(call_later_from_thread_wakes_run_forever);
    RUN(call_later_zero_from_thread_wakes_run_forever);
    RUN(add_done_callback_from_thread_on_done_future_wakes_loop);
    RUN(add_done_callback_then_set_result_from_thread);
    RUN(stop_from_thread_wakes_idle_run_forever);
    RUN(stop_from_thread_ends_busy_run_forever);
    RUN(stop_from_thread_before_run_forever);
    RUN(many_threads_call_soon_exact_counts);
    RUN(close_while_threads_submit);
    RUN(close_while_threads_complete_futures);
    RUN(completion_racing_with_sleep_is_never_lost);
    RUN(loop_driven_by_another_thread);
    RUN(wait_from_worker_done_timeout_poll);
    RUN(wait_infinity_on_worker_completed_by_loop);
    RUN(wait_many_waiters_exception_from_thread);
    RUN(wait_many_waiters_cancel_from_thread);
    RUN(wait_inside_callback_of_same_loop_is_wrong_thread);
    TEST_END();
}
