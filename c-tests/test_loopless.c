/* Loop-less futures (afut_new(NULL)), afut_wrap_future and afut_ensure_future.
 *
 * A loop-less future follows concurrent.futures (SEMANTICS.md section 4): callbacks run
 * in the completing thread, synchronously inside set_result / set_exception / cancel,
 * in registration order (CF4); adding one to a done future runs it at once in the
 * caller's thread (CF5); afut_wait blocks (CF6). afut_wrap_future mirrors such a future
 * (or one of another loop) onto a loop, both directions of cancellation chained
 * (SEMANTICS F21, F22: asyncio's _chain_future / wrap_future).
 *
 * ThreadSanitizer: see test_threads.c. Here data written inside callbacks is mostly read
 * after pthread_join, and values are compared as pointers, never dereferenced across
 * threads; the one heap hand-off between threads (cnt_ud_t) carries a "published" flag. */
#define _GNU_SOURCE
#include "test.h"

#include <afut.h>

#include "thread_helpers.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ helpers */













/* Counting free functions. */
static atomic_int value_frees;
static atomic_int detail_frees;
static atomic_int ud_frees;
static void count_value_free(void *p) { (void)p; atomic_fetch_add(&value_frees, 1); }
static void count_detail_free(void *p) { (void)p; atomic_fetch_add(&detail_frees, 1); }
static void count_ud_free(void *p) { (void)p; atomic_fetch_add(&ud_frees, 1); }
static void reset_counts(void) {
    atomic_store(&value_frees, 0);
    atomic_store(&detail_frees, 0);
    atomic_store(&ud_frees, 0);
}

/* Values handed to set_result: only their addresses matter. */
static int V1, V2, D1;

/* ------------------------------------------------------- callback recorder */

#define MAXREC 64

typedef struct rec {
    int n;
    int ids[MAXREC];
    pthread_t threads[MAXREC];
    int done_seen[MAXREC];    /* afut_done(fut) inside the callback */
    int state_seen[MAXREC];   /* afut_result() status inside the callback */
    void *value_seen[MAXREC];
} rec_t;

typedef struct slot {
    rec_t *r;
    int id;
} slot_t;

static void rec_cb(afut_t *fut, void *ud) {
    slot_t *s = ud;
    rec_t *r = s->r;
    if (r->n >= MAXREC) return;
    int i = r->n++;
    r->ids[i] = s->id;
    r->threads[i] = pthread_self();
    r->done_seen[i] = afut_done(fut);
    void *v = NULL;
    r->state_seen[i] = afut_result(fut, &v);
    r->value_seen[i] = v;
}

/* ------------------------------------------------------------- completer */

enum op { OP_RESULT, OP_EXCEPTION, OP_CANCEL, OP_ADD };

typedef struct actor {
    afut_t *fut;
    enum op op;
    double delay;
    rec_t *r;             /* to read r->n right after the call returned */
    slot_t *add_slot;     /* OP_ADD */
    int rc;
    int n_after;          /* r->n when the call returned */
    pthread_t self;
    pthread_t th;
} actor_t;

static void *actor_main(void *p) {
    actor_t *a = p;
    a->self = pthread_self();
    sleep_s(a->delay);
    switch (a->op) {
    case OP_RESULT: a->rc = afut_set_result(a->fut, &V1, count_value_free); break;
    case OP_EXCEPTION:
        a->rc = afut_set_exception(a->fut, 7, "boom", &D1, count_detail_free);
        break;
    case OP_CANCEL: a->rc = afut_cancel(a->fut, "stop it"); break;
    case OP_ADD: a->rc = afut_add_done_callback(a->fut, rec_cb, a->add_slot, count_ud_free); break;
    }
    if (a->r) a->n_after = a->r->n;
    return NULL;
}

static void actor_run(actor_t *a) {
    pthread_create(&a->th, NULL, actor_main, a);
    pthread_join(a->th, NULL);
}

/* ====================================================== loop-less futures */

/* API.md afut_new(NULL) + afut_get_loop NULL for loop-less; F1 initial state. */
TEST(loopless_initial_state) {
    afut_t *f = afut_new(NULL);
    CHECK(f != NULL);
    CHECK(afut_get_loop(f) == NULL);
    CHECK(!afut_done(f));
    CHECK(!afut_cancelled(f));
    CHECK(afut_isfuture(f));
    CHECK_EQ_INT(afut_result(f, NULL), AFUT_ERR_INVALID_STATE);
    afut_unref(f);
}

/* CF4 [T: test_done_callback_with_result]: set_result from a thread runs the callbacks
 * in that thread, synchronously (all ran before set_result returned), in registration
 * order, after the state change. userdata_free once each, value_free once, by unref. */
static void complete_in_thread(enum op op) {
    reset_counts();
    afut_t *f = afut_new(NULL);
    rec_t r;
    memset(&r, 0, sizeof r);
    slot_t slots[3] = {{&r, 0}, {&r, 1}, {&r, 2}};
    for (int i = 0; i < 3; i++)
        CHECK_EQ_INT(afut_add_done_callback(f, rec_cb, &slots[i], count_ud_free), AFUT_OK);
    actor_t a = {.fut = f, .op = op, .delay = 0.01, .r = &r};
    actor_run(&a);
    CHECK_EQ_INT(a.n_after, 3);
    CHECK_EQ_INT(r.n, 3);
    for (int i = 0; i < 3 && i < r.n; i++) {
        CHECK_EQ_INT(r.ids[i], i);
        CHECK(pthread_equal(r.threads[i], a.self));
        CHECK_EQ_INT(r.done_seen[i], 1);
        if (op == OP_RESULT) {
            CHECK_EQ_INT(r.state_seen[i], AFUT_OK);
            CHECK(r.value_seen[i] == &V1);
        } else if (op == OP_EXCEPTION) {
            CHECK_EQ_INT(r.state_seen[i], AFUT_ERR_EXCEPTION);
        } else {
            CHECK_EQ_INT(r.state_seen[i], AFUT_ERR_CANCELLED);
        }
    }
    CHECK_EQ_INT(atomic_load(&ud_frees), 3);
    if (op == OP_CANCEL) {
        CHECK_EQ_INT(a.rc, 1);
        CHECK(afut_cancelled(f));
        CHECK_STR(afut_cancel_message(f), "stop it");
    } else {
        CHECK_EQ_INT(a.rc, AFUT_OK);
    }
    if (op == OP_EXCEPTION) {
        afut_exception_t e;
        memset(&e, 0, sizeof e);
        CHECK_EQ_INT(afut_exception(f, &e), AFUT_OK);
        CHECK_EQ_INT(e.code, 7);
        CHECK_STR(e.message, "boom");
        CHECK(e.detail == &D1);
    }
    /* a second completion is refused and leaves the value with the caller (CF4, F2) */
    CHECK_EQ_INT(afut_set_result(f, &V2, count_value_free), AFUT_ERR_INVALID_STATE);
    CHECK_EQ_INT(afut_set_exception(f, 9, "x", &V2, count_detail_free), AFUT_ERR_INVALID_STATE);
    CHECK(!afut_cancel(f, NULL));
    CHECK_EQ_INT(afut_remove_done_callback(f, rec_cb, &slots[0]), 0);
    CHECK_EQ_INT(atomic_load(&value_frees), 0);
    CHECK_EQ_INT(atomic_load(&detail_frees), 0);
    afut_unref(f);
    CHECK_EQ_INT(atomic_load(&value_frees), op == OP_RESULT ? 1 : 0);
    CHECK_EQ_INT(atomic_load(&detail_frees), op == OP_EXCEPTION ? 1 : 0);
    CHECK_EQ_INT(r.n, 3);
}

TEST(loopless_set_result_runs_callbacks_in_completing_thread) { complete_in_thread(OP_RESULT); }
TEST(loopless_set_exception_runs_callbacks_in_completing_thread) { complete_in_thread(OP_EXCEPTION); }
TEST(loopless_cancel_runs_callbacks_in_completing_thread) { complete_in_thread(OP_CANCEL); }

/* CF5 [T: test_done_callback_already_successful / _failed / _cancelled]: adding a
 * callback to a done loop-less future calls it at once, in the caller's thread, and
 * its userdata_free right after. */
TEST(loopless_add_done_callback_on_done_runs_at_once) {
    reset_counts();
    afut_t *f = afut_new(NULL);
    CHECK_EQ_INT(afut_set_result(f, &V1, NULL), AFUT_OK);
    rec_t r;
    memset(&r, 0, sizeof r);
    slot_t s0 = {&r, 10}, s1 = {&r, 11};
    CHECK_EQ_INT(afut_add_done_callback(f, rec_cb, &s0, count_ud_free), AFUT_OK);
    CHECK_EQ_INT(r.n, 1);
    CHECK(pthread_equal(r.threads[0], pthread_self()));
    CHECK_EQ_INT(r.value_seen[0] == &V1, 1);
    CHECK_EQ_INT(atomic_load(&ud_frees), 1);
    /* from another thread: runs in that thread, before add_done_callback returns */
    actor_t a = {.fut = f, .op = OP_ADD, .r = &r, .add_slot = &s1};
    actor_run(&a);
    CHECK_EQ_INT(a.rc, AFUT_OK);
    CHECK_EQ_INT(a.n_after, 2);
    CHECK_EQ_INT(r.n, 2);
    CHECK_EQ_INT(r.ids[1], 11);
    CHECK(pthread_equal(r.threads[1], a.self));
    CHECK_EQ_INT(atomic_load(&ud_frees), 2);
    /* cancelled and failed futures too */
    afut_t *c = afut_new(NULL);
    CHECK(afut_cancel(c, NULL));
    CHECK_EQ_INT(afut_add_done_callback(c, rec_cb, &s0, count_ud_free), AFUT_OK);
    CHECK_EQ_INT(r.n, 3);
    CHECK_EQ_INT(r.state_seen[2], AFUT_ERR_CANCELLED);
    afut_t *e = afut_new(NULL);
    CHECK_EQ_INT(afut_set_exception(e, 3, NULL, NULL, NULL), AFUT_OK);
    CHECK_EQ_INT(afut_add_done_callback(e, rec_cb, &s0, count_ud_free), AFUT_OK);
    CHECK_EQ_INT(r.n, 4);
    CHECK_EQ_INT(r.state_seen[3], AFUT_ERR_EXCEPTION);
    CHECK_EQ_INT(atomic_load(&ud_frees), 4);
    afut_unref(f);
    afut_unref(c);
    afut_unref(e);
}

/* API.md Threads: "No lock is held while C code runs, so every function may be called
 * from inside a callback": a loop-less callback that adds another callback to the same
 * (now done) future runs it nested, at once; remove_done_callback finds nothing. */
typedef struct reenter {
    rec_t *r;
    slot_t *inner;
    int add_rc;
    int n_after_add;
    size_t removed;
} reenter_t;

static void reenter_cb(afut_t *fut, void *ud) {
    reenter_t *x = ud;
    x->add_rc = afut_add_done_callback(fut, rec_cb, x->inner, count_ud_free);
    x->n_after_add = x->r->n;
    x->removed = afut_remove_done_callback(fut, rec_cb, x->inner);
}

TEST(loopless_callback_may_reenter_the_future) {
    reset_counts();
    afut_t *f = afut_new(NULL);
    rec_t r;
    memset(&r, 0, sizeof r);
    slot_t inner = {&r, 5};
    reenter_t x = {.r = &r, .inner = &inner, .add_rc = 99};
    CHECK_EQ_INT(afut_add_done_callback(f, reenter_cb, &x, NULL), AFUT_OK);
    CHECK_EQ_INT(afut_set_result(f, &V1, NULL), AFUT_OK);
    CHECK_EQ_INT(x.add_rc, AFUT_OK);
    CHECK_EQ_INT(x.n_after_add, 1);
    CHECK_EQ_INT(x.removed, 0);
    CHECK_EQ_INT(atomic_load(&ud_frees), 1);
    afut_unref(f);
}

/* F9/R4 on a loop-less future: remove_done_callback removes every (fn, userdata) match,
 * returns the count and frees their userdata; the rest still run. */
TEST(loopless_remove_done_callback) {
    reset_counts();
    afut_t *f = afut_new(NULL);
    rec_t r;
    memset(&r, 0, sizeof r);
    slot_t a = {&r, 1}, b = {&r, 2};
    CHECK_EQ_INT(afut_add_done_callback(f, rec_cb, &a, count_ud_free), AFUT_OK);
    CHECK_EQ_INT(afut_add_done_callback(f, rec_cb, &b, count_ud_free), AFUT_OK);
    CHECK_EQ_INT(afut_add_done_callback(f, rec_cb, &a, count_ud_free), AFUT_OK);
    CHECK_EQ_INT(afut_remove_done_callback(f, rec_cb, &a), 2);
    CHECK_EQ_INT(atomic_load(&ud_frees), 2);
    CHECK_EQ_INT(afut_set_result(f, NULL, NULL), AFUT_OK);
    CHECK_EQ_INT(r.n, 1);
    CHECK_EQ_INT(r.ids[0], 2);
    CHECK_EQ_INT(atomic_load(&ud_frees), 3);
    afut_unref(f);
}

/* CF6 [T: test_result_with_timeout, test_result_with_success]: afut_wait on a loop-less
 * future: poll (0) and short timeouts give AFUT_ERR_TIMEOUT; INFINITY returns once
 * another thread completes it. */
TEST(loopless_wait) {
    afut_t *f = afut_new(NULL);
    double t0 = now_s();
    CHECK_EQ_INT(afut_wait(f, 0.0), AFUT_ERR_TIMEOUT);
    CHECK(now_s() - t0 < 0.2 * max_latency());
    t0 = now_s();
    CHECK_EQ_INT(afut_wait(f, 0.03), AFUT_ERR_TIMEOUT);
    CHECK(now_s() - t0 >= 0.025);
    actor_t a = {.fut = f, .op = OP_RESULT, .delay = 0.05};
    pthread_create(&a.th, NULL, actor_main, &a);
    t0 = now_s();
    CHECK_EQ_INT(afut_wait(f, INFINITY), AFUT_OK);
    double took = now_s() - t0;
    pthread_join(a.th, NULL);
    CHECK(took >= 0.03);
    CHECK(took < 0.05 + max_latency());
    CHECK_EQ_INT(afut_wait(f, 0.0), AFUT_OK);
    void *v = NULL;
    CHECK_EQ_INT(afut_result(f, &v), AFUT_OK);
    CHECK(v == &V1);
    afut_unref(f);
}

/* CF4 + F2 under contention: several threads race to complete one loop-less future
 * with callbacks; exactly one wins, every callback runs exactly once, in the winner's
 * thread, and only the winner's value is ever freed (losers keep theirs). */
typedef struct racer {
    afut_t *fut;
    pthread_barrier_t *bar;
    int kind; /* 0 result, 1 exception, 2 cancel */
    int won;
    pthread_t self;
    pthread_t th;
} racer_t;

static atomic_int loser_value_frees;

static void loser_value_free(void *p) {
    (void)p;
    atomic_fetch_add(&loser_value_frees, 1);
}

static void *racer_main(void *p) {
    racer_t *x = p;
    x->self = pthread_self();
    pthread_barrier_wait(x->bar);
    switch (x->kind) {
    case 0: x->won = afut_set_result(x->fut, &V2, loser_value_free) == AFUT_OK; break;
    case 1: x->won = afut_set_exception(x->fut, 4, "e", &D1, loser_value_free) == AFUT_OK; break;
    default: x->won = afut_cancel(x->fut, "c"); break;
    }
    return NULL;
}

TEST(loopless_completion_race_has_one_winner) {
    enum { NT = 4, NCB = 4 };
    long rounds = scaled(300);
    long bad = 0;
    for (long round = 0; round < rounds; round++) {
        atomic_store(&loser_value_frees, 0);
        afut_t *f = afut_new(NULL);
        rec_t r;
        memset(&r, 0, sizeof r);
        slot_t slots[NCB];
        for (int i = 0; i < NCB; i++) {
            slots[i] = (slot_t){&r, i};
            afut_add_done_callback(f, rec_cb, &slots[i], NULL);
        }
        pthread_barrier_t bar;
        pthread_barrier_init(&bar, NULL, NT);
        racer_t xs[NT];
        for (int i = 0; i < NT; i++) {
            xs[i] = (racer_t){.fut = f, .bar = &bar, .kind = (int)((i + round) % 3)};
            pthread_create(&xs[i].th, NULL, racer_main, &xs[i]);
        }
        int winners = 0, winner = -1;
        for (int i = 0; i < NT; i++) {
            pthread_join(xs[i].th, NULL);
            if (xs[i].won) {
                winners++;
                winner = i;
            }
        }
        pthread_barrier_destroy(&bar);
        int ok = winners == 1 && r.n == NCB;
        for (int i = 0; ok && i < NCB; i++)
            ok = r.ids[i] == i && pthread_equal(r.threads[i], xs[winner].self);
        ok = ok && atomic_load(&loser_value_frees) == 0;
        afut_unref(f);
        int winner_frees = winner >= 0 && xs[winner].kind != 2 ? 1 : 0;
        ok = ok && atomic_load(&loser_value_frees) == winner_frees;
        if (!ok) {
            if (bad < 3)
                fprintf(stderr, "  round %ld: winners %d, callbacks %d, frees %d\n", round,
                        winners, r.n, atomic_load(&loser_value_frees));
            bad++;
        }
    }
    CHECK_EQ_INT(bad, 0);
}

/* CF4 + CF5 under contention: threads add callbacks while another completes the
 * future. Each callback runs exactly once: in the completer's thread if it was added
 * in time, else at once in the adder's thread. userdata_free once per callback. */
typedef struct adder {
    afut_t *fut;
    pthread_barrier_t *bar;
    int n;
    atomic_int *ran;
    atomic_int *ran_in_adder;
    pthread_t th;
} adder_t;

static _Thread_local int tl_is_adder;

/* Allocated by an adder, consumed (callback, free) by whichever thread runs it: the
 * "published" flag makes the library's hand-off visible to ThreadSanitizer. */
typedef struct cnt_ud {
    atomic_int published;
    atomic_int *ran;
    atomic_int *ran_in_adder;
} cnt_ud_t;

static atomic_int unpublished;

static void cnt_check(cnt_ud_t *c) {
    if (atomic_load_explicit(&c->published, memory_order_acquire) != 1) atomic_fetch_add(&unpublished, 1);
}

static void cnt_cb(afut_t *fut, void *ud) {
    cnt_ud_t *c = ud;
    (void)fut;
    cnt_check(c);
    atomic_fetch_add(c->ran, 1);
    if (tl_is_adder) atomic_fetch_add(c->ran_in_adder, 1);
}

static void cnt_free(void *ud) {
    cnt_check(ud);
    atomic_fetch_add(&ud_frees, 1);
    free(ud);
}

static void *adder_main(void *p) {
    adder_t *a = p;
    tl_is_adder = 1;
    pthread_barrier_wait(a->bar);
    for (int i = 0; i < a->n; i++) {
        cnt_ud_t *c = malloc(sizeof *c);
        c->ran = a->ran;
        c->ran_in_adder = a->ran_in_adder;
        atomic_store_explicit(&c->published, 1, memory_order_release);
        if (afut_add_done_callback(a->fut, cnt_cb, c, cnt_free) != AFUT_OK) free(c);
    }
    return NULL;
}

typedef struct finisher {
    afut_t *fut;
    pthread_barrier_t *bar;
    int rc;
    pthread_t th;
} finisher_t;

static void *finisher_main(void *p) {
    finisher_t *f = p;
    pthread_barrier_wait(f->bar);
    sleep_s(0.0005);
    f->rc = afut_set_result(f->fut, NULL, NULL);
    return NULL;
}

TEST(loopless_add_races_with_completion) {
    enum { NA = 3 };
    int per = (int)scaled(2000);
    reset_counts();
    atomic_int ran, ran_in_adder;
    atomic_init(&ran, 0);
    atomic_init(&ran_in_adder, 0);
    afut_t *f = afut_new(NULL);
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, NA + 1);
    adder_t as[NA];
    for (int i = 0; i < NA; i++) {
        as[i] = (adder_t){.fut = f, .bar = &bar, .n = per, .ran = &ran, .ran_in_adder = &ran_in_adder};
        pthread_create(&as[i].th, NULL, adder_main, &as[i]);
    }
    finisher_t fin = {.fut = f, .bar = &bar, .rc = 99};
    pthread_create(&fin.th, NULL, finisher_main, &fin);
    for (int i = 0; i < NA; i++) pthread_join(as[i].th, NULL);
    pthread_join(fin.th, NULL);
    pthread_barrier_destroy(&bar);
    CHECK_EQ_INT(fin.rc, AFUT_OK);
    CHECK_EQ_INT(atomic_load(&ran), NA * per);
    CHECK_EQ_INT(atomic_load(&ud_frees), NA * per);
    CHECK_EQ_INT(atomic_load(&unpublished), 0);
    afut_unref(f);
    CHECK_EQ_INT(atomic_load(&ud_frees), NA * per);
}

/* ========================================================= wrap_future */

static pthread_t main_thread;

static void seen_loop_cb(afut_t *fut, void *ud) {
    /* counts a wrapper's done-callback if it ran on the loop's thread (main) */
    int *on_main = ud;
    (void)fut;
    if (pthread_equal(pthread_self(), main_thread)) *on_main += 1;
    else *on_main += 1000;
}

/* F22 [T: test_wrap_future]: wrap_future(loop, loopless) gives a different future bound
 * to loop; a result set by another thread shows on the wrapper (run_until_complete
 * wakes); the value is borrowed: value_free runs once, when the source goes, and the
 * wrapper keeps the source alive. */
TEST(wrap_future_mirrors_result_from_thread) {
    reset_counts();
    afut_loop_t *loop = afut_loop_new();
    afut_t *lf = afut_new(NULL);
    afut_t *w = afut_wrap_future(loop, lf);
    CHECK(w != NULL);
    CHECK(w != lf);
    if (!w) {
        afut_unref(lf);
        afut_loop_free(loop);
        return;
    }
    CHECK(afut_get_loop(w) == loop);
    CHECK(!afut_done(w));
    int on_main = 0;
    CHECK_EQ_INT(afut_add_done_callback(w, seen_loop_cb, &on_main, NULL), AFUT_OK);
    actor_t a = {.fut = lf, .op = OP_RESULT, .delay = 0.03};
    pthread_create(&a.th, NULL, actor_main, &a);
    watchdog_t wd;
    watchdog_start(&wd, loop, 5.0);
    CHECK_EQ_INT(afut_loop_run_until_complete(loop, w), AFUT_OK);
    CHECK(!watchdog_finish(&wd));
    pthread_join(a.th, NULL);
    CHECK_EQ_INT(a.rc, AFUT_OK);
    CHECK_EQ_INT(on_main, 1);
    void *v = NULL;
    CHECK_EQ_INT(afut_result(w, &v), AFUT_OK);
    CHECK(v == &V1);
    afut_loop_run_once(loop, 0, NULL);
    CHECK_EQ_INT(atomic_load(&value_frees), 0);
    afut_unref(lf); /* the wrapper still holds the source */
    CHECK_EQ_INT(atomic_load(&value_frees), 0);
    CHECK_EQ_INT(afut_result(w, &v), AFUT_OK);
    CHECK(v == &V1);
    afut_unref(w);
    afut_loop_run_once(loop, 0, NULL);
    afut_loop_free(loop);
    CHECK_EQ_INT(atomic_load(&value_frees), 1);
}

/* The other order: the wrapper goes first, the source still owns the value. */
TEST(wrap_future_value_freed_once_by_source) {
    reset_counts();
    afut_loop_t *loop = afut_loop_new();
    afut_t *lf = afut_new(NULL);
    afut_t *w = afut_wrap_future(loop, lf);
    CHECK(w != NULL);
    CHECK_EQ_INT(afut_set_result(lf, &V1, count_value_free), AFUT_OK);
    watchdog_t wd;
    watchdog_start(&wd, loop, 5.0);
    CHECK_EQ_INT(afut_loop_run_until_complete(loop, w), AFUT_OK);
    CHECK(!watchdog_finish(&wd));
    afut_loop_run_once(loop, 0, NULL);
    afut_unref(w);
    afut_loop_run_once(loop, 0, NULL);
    CHECK_EQ_INT(atomic_load(&value_frees), 0);
    afut_unref(lf);
    CHECK_EQ_INT(atomic_load(&value_frees), 1);
    afut_loop_free(loop);
    CHECK_EQ_INT(atomic_load(&value_frees), 1);
}

/* F22 [X]: wrapping a future that is already done still completes the wrapper only on
 * the next iteration (CPython: done after exactly one _run_once). */
TEST(wrap_future_already_done_completes_next_iteration) {
    reset_counts();
    afut_loop_t *loop = afut_loop_new();
    /* result */
    afut_t *lf = afut_new(NULL);
    CHECK_EQ_INT(afut_set_result(lf, &V1, count_value_free), AFUT_OK);
    afut_t *w = afut_wrap_future(loop, lf);
    CHECK(w != NULL);
    CHECK(!afut_done(w));
    CHECK_EQ_INT(afut_loop_timeout_ms(loop), 0); /* work is queued for the loop */
    CHECK_EQ_INT(afut_loop_run_once(loop, 0, NULL), AFUT_OK);
    CHECK(afut_done(w));
    void *v = NULL;
    CHECK_EQ_INT(afut_result(w, &v), AFUT_OK);
    CHECK(v == &V1);
    /* exception: code, message and the very same detail pointer (borrowed) */
    afut_t *le = afut_new(NULL);
    CHECK_EQ_INT(afut_set_exception(le, 7, "boom", &D1, count_detail_free), AFUT_OK);
    afut_t *we = afut_wrap_future(loop, le);
    CHECK(we != NULL);
    CHECK(!afut_done(we));
    CHECK_EQ_INT(afut_loop_run_once(loop, 0, NULL), AFUT_OK);
    CHECK(afut_done(we));
    afut_exception_t e;
    memset(&e, 0, sizeof e);
    CHECK_EQ_INT(afut_exception(we, &e), AFUT_OK);
    CHECK_EQ_INT(e.code, 7);
    CHECK_STR(e.message, "boom");
    CHECK(e.detail == &D1);
    CHECK_EQ_INT(afut_result(we, NULL), AFUT_ERR_EXCEPTION);
    /* cancelled */
    afut_t *lc = afut_new(NULL);
    CHECK(afut_cancel(lc, NULL));
    afut_t *wc = afut_wrap_future(loop, lc);
    CHECK(wc != NULL);
    CHECK(!afut_done(wc));
    CHECK_EQ_INT(afut_loop_run_once(loop, 0, NULL), AFUT_OK);
    CHECK(afut_cancelled(wc));
    CHECK_EQ_INT(afut_loop_run_until_complete(loop, wc), AFUT_ERR_CANCELLED);
    afut_unref(w);
    afut_unref(we);
    afut_unref(wc);
    afut_unref(lf);
    afut_unref(le);
    afut_unref(lc);
    afut_loop_run_once(loop, 0, NULL);
    afut_loop_free(loop);
    CHECK_EQ_INT(atomic_load(&value_frees), 1);
    CHECK_EQ_INT(atomic_load(&detail_frees), 1);
}

/* F22: an exception set from another thread is mirrored; run_until_complete returns
 * AFUT_ERR_EXCEPTION (which counts as retrieving it). */
TEST(wrap_future_mirrors_exception_from_thread) {
    reset_counts();
    afut_loop_t *loop = afut_loop_new();
    afut_t *lf = afut_new(NULL);
    afut_t *w = afut_wrap_future(loop, lf);
    CHECK(w != NULL);
    actor_t a = {.fut = lf, .op = OP_EXCEPTION, .delay = 0.03};
    pthread_create(&a.th, NULL, actor_main, &a);
    watchdog_t wd;
    watchdog_start(&wd, loop, 5.0);
    CHECK_EQ_INT(afut_loop_run_until_complete(loop, w), AFUT_ERR_EXCEPTION);
    CHECK(!watchdog_finish(&wd));
    pthread_join(a.th, NULL);
    afut_exception_t e;
    memset(&e, 0, sizeof e);
    CHECK_EQ_INT(afut_exception(w, &e), AFUT_OK);
    CHECK_EQ_INT(e.code, 7);
    CHECK_STR(e.message, "boom");
    CHECK(e.detail == &D1);
    afut_unref(w);
    afut_unref(lf);
    afut_loop_run_once(loop, 0, NULL);
    afut_loop_free(loop);
    CHECK_EQ_INT(atomic_load(&detail_frees), 1);
}

/* F22 [X]: cancelling the source (from a thread) cancels the wrapper one iteration
 * later; run_until_complete wakes and returns AFUT_ERR_CANCELLED. */
TEST(wrap_future_source_cancel_cancels_wrapper) {
    afut_loop_t *loop = afut_loop_new();
    afut_t *lf = afut_new(NULL);
    afut_t *w = afut_wrap_future(loop, lf);
    CHECK(w != NULL);
    /* synchronously on this thread first: not cancelled until the loop iterates */
    afut_t *lf2 = afut_new(NULL);
    afut_t *w2 = afut_wrap_future(loop, lf2);
    CHECK(afut_cancel(lf2, NULL));
    CHECK(!afut_cancelled(w2));
    CHECK_EQ_INT(afut_loop_run_once(loop, 0, NULL), AFUT_OK);
    CHECK(afut_cancelled(w2));
    /* then from a thread, while the loop waits */
    actor_t a = {.fut = lf, .op = OP_CANCEL, .delay = 0.03};
    pthread_create(&a.th, NULL, actor_main, &a);
    watchdog_t wd;
    watchdog_start(&wd, loop, 5.0);
    CHECK_EQ_INT(afut_loop_run_until_complete(loop, w), AFUT_ERR_CANCELLED);
    CHECK(!watchdog_finish(&wd));
    pthread_join(a.th, NULL);
    CHECK_EQ_INT(a.rc, 1);
    CHECK(afut_cancelled(w));
    /* header (afut_wrap_future): "the cancel message included" (afut differs from F21) */
    CHECK_STR(afut_cancel_message(w), "stop it");
    afut_unref(w);
    afut_unref(lf);
    afut_unref(w2);
    afut_unref(lf2);
    afut_loop_run_once(loop, 0, NULL);
    afut_loop_free(loop);
}

/* F22 [T: test_wrap_future_cancel]: cancelling the wrapper cancels the source, not
 * synchronously but when the loop runs the wrapper's callbacks (next iteration); a
 * later set_result on the source is then refused. */
TEST(wrap_future_wrapper_cancel_cancels_source) {
    reset_counts();
    afut_loop_t *loop = afut_loop_new();
    afut_t *lf = afut_new(NULL);
    afut_t *w = afut_wrap_future(loop, lf);
    CHECK(w != NULL);
    CHECK(afut_cancel(w, "stop"));
    CHECK(afut_cancelled(w));
    CHECK(!afut_cancelled(lf));
    CHECK_EQ_INT(afut_loop_run_once(loop, 0, NULL), AFUT_OK);
    CHECK(afut_cancelled(lf));
    CHECK_STR(afut_cancel_message(lf), "stop"); /* header: message included */
    CHECK_EQ_INT(afut_set_result(lf, &V1, count_value_free), AFUT_ERR_INVALID_STATE);
    afut_loop_run_once(loop, 0, NULL);
    CHECK(afut_cancelled(w));
    CHECK_STR(afut_cancel_message(w), "stop");
    afut_unref(w);
    afut_unref(lf);
    afut_loop_free(loop);
    CHECK_EQ_INT(atomic_load(&value_frees), 0);
}

/* F14/F15 for a wrapper: the wrapper is a loop future, so an exception mirrored onto
 * it and never retrieved is reported once (asyncio logs "Future exception was never
 * retrieved" for the asyncio side of wrap_future); the loop-less source never reports
 * (lead decision: only futures bound to a loop). */
typedef struct reports {
    int n;
    int code;
    int had_future;
    char msg[80];
} reports_t;

static void count_handler(afut_loop_t *loop, const afut_error_context_t *ctx, void *ud) {
    reports_t *r = ud;
    (void)loop;
    r->n++;
    snprintf(r->msg, sizeof r->msg, "%s", ctx->message ? ctx->message : "(null)");
    r->code = ctx->exception ? ctx->exception->code : 0;
    r->had_future = ctx->future != NULL;
}

TEST(wrap_future_unretrieved_exception_reported_once) {
    afut_loop_t *loop = afut_loop_new();
    reports_t rep;
    memset(&rep, 0, sizeof rep);
    afut_loop_set_exception_handler(loop, count_handler, &rep, NULL);
    afut_t *lf = afut_new(NULL);
    CHECK_EQ_INT(afut_set_exception(lf, 9, "lost", NULL, NULL), AFUT_OK);
    afut_t *w = afut_wrap_future(loop, lf);
    CHECK(w != NULL);
    for (int i = 0; i < 3; i++) afut_loop_run_once(loop, 0, NULL);
    CHECK(afut_done(w));
    CHECK_EQ_INT(rep.n, 0);
    afut_unref(w);
    for (int i = 0; i < 2; i++) afut_loop_run_once(loop, 0, NULL);
    CHECK_EQ_INT(rep.n, 1);
    CHECK_STR(rep.msg, "Future exception was never retrieved");
    CHECK_EQ_INT(rep.code, 9);
    CHECK_EQ_INT(rep.had_future, 1);
    afut_unref(lf);
    afut_loop_run_once(loop, 0, NULL);
    CHECK_EQ_INT(rep.n, 1);
    afut_loop_free(loop);
}

/* F23 / API.md afut_ensure_future: a future of this loop is returned itself (a new
 * reference); a loop-less one (or one of another loop) is wrapped. Bad input: NULL. */
TEST(ensure_future_wraps_foreign_returns_own) {
    afut_loop_t *loop = afut_loop_new();
    afut_loop_t *loop2 = afut_loop_new();
    afut_t *own = afut_loop_create_future(loop);
    afut_t *e = afut_ensure_future(loop, own);
    CHECK(e == own);
    afut_unref(e); /* the extra reference */
    CHECK(!afut_done(own));
    CHECK(afut_isfuture(own));

    afut_t *lf = afut_new(NULL);
    afut_t *el = afut_ensure_future(loop, lf);
    CHECK(el != NULL);
    CHECK(el != lf);
    CHECK(afut_get_loop(el) == loop);
    CHECK_EQ_INT(afut_set_result(lf, &V1, NULL), AFUT_OK);
    watchdog_t wd;
    watchdog_start(&wd, loop, 5.0);
    CHECK_EQ_INT(afut_loop_run_until_complete(loop, el), AFUT_OK);
    CHECK(!watchdog_finish(&wd));
    void *v = NULL;
    CHECK_EQ_INT(afut_result(el, &v), AFUT_OK);
    CHECK(v == &V1);

    /* a future of loop2, ensured on loop: a wrapper on loop (both loops on this thread) */
    afut_t *f2 = afut_loop_create_future(loop2);
    afut_t *e2 = afut_ensure_future(loop, f2);
    CHECK(e2 != NULL);
    CHECK(e2 != f2);
    CHECK(afut_get_loop(e2) == loop);
    CHECK_EQ_INT(afut_set_result(f2, &V2, NULL), AFUT_OK);
    CHECK_EQ_INT(afut_loop_run_once(loop2, 0, NULL), AFUT_OK); /* f2's callbacks */
    watchdog_start(&wd, loop, 5.0);
    CHECK_EQ_INT(afut_loop_run_until_complete(loop, e2), AFUT_OK);
    CHECK(!watchdog_finish(&wd));
    v = NULL;
    CHECK_EQ_INT(afut_result(e2, &v), AFUT_OK);
    CHECK(v == &V2);

    CHECK(afut_ensure_future(loop, NULL) == NULL);
    CHECK(afut_ensure_future(NULL, lf) == NULL); /* header: NULL loop -> NULL */
    CHECK(afut_wrap_future(loop, NULL) == NULL);
    CHECK(afut_wrap_future(NULL, lf) == NULL);
    /* header: wrapping a future of the same loop returns it (new reference), as
     * asyncio's wrap_future returns an asyncio future as is [T: test_wrap_future_future] */
    afut_t *same = afut_wrap_future(loop, own);
    CHECK(same == own);
    if (same) afut_unref(same);

    afut_unref(own);
    afut_unref(el);
    afut_unref(lf);
    afut_unref(e2);
    afut_unref(f2);
    afut_loop_run_once(loop, 0, NULL);
    afut_loop_run_once(loop2, 0, NULL);
    afut_loop_free(loop);
    afut_loop_free(loop2);
}

/* F22 across two loops on two threads: loop B runs on a worker, loop A on main.
 * A result set on B's future reaches A's wrapper (through B's thread, then A's wakeup);
 * cancelling A's wrapper cancels B's future on B's thread. */
typedef struct loop_thread {
    afut_loop_t *loop;
    int rc;
    pthread_t th;
} loop_thread_t;

static _Thread_local int tl_is_loop_b;

static void *loop_b_main(void *p) {
    loop_thread_t *lt = p;
    tl_is_loop_b = 1;
    lt->rc = afut_loop_run_forever(lt->loop);
    return NULL;
}

typedef struct where {
    atomic_int on_b;
    atomic_int elsewhere;
} where_t;

static void where_cb(afut_t *fut, void *ud) {
    where_t *w = ud;
    (void)fut;
    if (tl_is_loop_b) atomic_fetch_add(&w->on_b, 1);
    else atomic_fetch_add(&w->elsewhere, 1);
}

TEST(wrap_future_across_two_loops_on_two_threads) {
    afut_loop_t *a = afut_loop_new();
    afut_loop_t *b = afut_loop_new();
    loop_thread_t lt = {.loop = b, .rc = 99};
    pthread_create(&lt.th, NULL, loop_b_main, &lt);
    where_t wh;
    atomic_init(&wh.on_b, 0);
    atomic_init(&wh.elsewhere, 0);

    afut_t *fb = afut_loop_create_future(b);
    CHECK_EQ_INT(afut_add_done_callback(fb, where_cb, &wh, NULL), AFUT_OK);
    afut_t *w = afut_wrap_future(a, fb);
    CHECK(w != NULL);
    CHECK(w != fb);
    CHECK(afut_get_loop(w) == a);
    int on_main = 0;
    CHECK_EQ_INT(afut_add_done_callback(w, seen_loop_cb, &on_main, NULL), AFUT_OK);
    CHECK_EQ_INT(afut_set_result(fb, &V1, NULL), AFUT_OK);
    watchdog_t wd;
    watchdog_start(&wd, a, 5.0);
    CHECK_EQ_INT(afut_loop_run_until_complete(a, w), AFUT_OK);
    CHECK(!watchdog_finish(&wd));
    void *v = NULL;
    CHECK_EQ_INT(afut_result(w, &v), AFUT_OK);
    CHECK(v == &V1);
    CHECK_EQ_INT(on_main, 1);
    CHECK_EQ_INT(afut_wait(fb, 5.0), AFUT_OK);

    /* cancellation: A's wrapper -> B's future, on B's thread */
    afut_t *fb2 = afut_loop_create_future(b);
    afut_t *w2 = afut_wrap_future(a, fb2);
    CHECK(w2 != NULL);
    CHECK(afut_cancel(w2, NULL));
    CHECK_EQ_INT(afut_loop_run_once(a, 0, NULL), AFUT_OK); /* w2's callbacks */
    CHECK_EQ_INT(afut_wait(fb2, 5.0 * (under_valgrind() ? 6 : 1)), AFUT_OK);
    CHECK(afut_cancelled(fb2));

    /* cancellation: B's future (cancelled from here) -> A's wrapper */
    afut_t *fb3 = afut_loop_create_future(b);
    afut_t *w3 = afut_wrap_future(a, fb3);
    CHECK(w3 != NULL);
    CHECK(afut_cancel(fb3, NULL));
    watchdog_start(&wd, a, 5.0);
    CHECK_EQ_INT(afut_loop_run_until_complete(a, w3), AFUT_ERR_CANCELLED);
    CHECK(!watchdog_finish(&wd));

    afut_loop_stop(b);
    pthread_join(lt.th, NULL);
    CHECK_EQ_INT(lt.rc, AFUT_OK);
    CHECK_EQ_INT(atomic_load(&wh.on_b), 1);
    CHECK_EQ_INT(atomic_load(&wh.elsewhere), 0);
    afut_unref(w);
    afut_unref(fb);
    afut_unref(w2);
    afut_unref(fb2);
    afut_unref(w3);
    afut_unref(fb3);
    afut_loop_run_once(a, 0, NULL);
    afut_loop_run_once(b, 0, NULL);
    afut_loop_free(a);
    afut_loop_free(b);
}

/* API.md lead decision: run_until_complete on a loop-less future wraps it and runs;
 * completed by another thread while the loop waits. */
static void run_until_complete_loopless(enum op op, int expected) {
    afut_loop_t *loop = afut_loop_new();
    afut_t *lf = afut_new(NULL);
    actor_t a = {.fut = lf, .op = op, .delay = 0.03};
    pthread_create(&a.th, NULL, actor_main, &a);
    watchdog_t wd;
    watchdog_start(&wd, loop, 5.0);
    double t0 = now_s();
    CHECK_EQ_INT(afut_loop_run_until_complete(loop, lf), expected);
    double took = now_s() - t0;
    CHECK(!watchdog_finish(&wd));
    pthread_join(a.th, NULL);
    CHECK(took < 0.03 + max_latency());
    CHECK(afut_done(lf));
    if (op == OP_RESULT) {
        void *v = NULL;
        CHECK_EQ_INT(afut_result(lf, &v), AFUT_OK);
        CHECK(v == &V1);
    }
    /* already done: returns at once with the same outcome */
    CHECK_EQ_INT(afut_loop_run_until_complete(loop, lf), expected);
    afut_unref(lf);
    afut_loop_run_once(loop, 0, NULL);
    afut_loop_free(loop);
}

TEST(run_until_complete_loopless_result) { run_until_complete_loopless(OP_RESULT, AFUT_OK); }
TEST(run_until_complete_loopless_exception) {
    run_until_complete_loopless(OP_EXCEPTION, AFUT_ERR_EXCEPTION);
}
TEST(run_until_complete_loopless_cancel) {
    run_until_complete_loopless(OP_CANCEL, AFUT_ERR_CANCELLED);
}

/* ================================================================== main */

int main(void) {
    test_deadline(under_valgrind() ? 110 : 60); /* for the whole program */
    main_thread = pthread_self();
    RUN(loopless_initial_state);
    RUN(loopless_set_result_runs_callbacks_in_completing_thread);
    RUN(loopless_set_exception_runs_callbacks_in_completing_thread);
    RUN(loopless_cancel_runs_callbacks_in_completing_thread);
    RUN(loopless_add_done_callback_on_done_runs_at_once);
    RUN(loopless_callback_may_reenter_the_future);
    RUN(loopless_remove_done_callback);
    RUN(loopless_wait);
    RUN(loopless_completion_race_has_one_winner);
    RUN(loopless_add_races_with_completion);
    RUN(wrap_future_mirrors_result_from_thread);
    RUN(wrap_future_value_freed_once_by_source);
    RUN(wrap_future_already_done_completes_next_iteration);
    RUN(wrap_future_mirrors_exception_from_thread);
    RUN(wrap_future_source_cancel_cancels_wrapper);
    RUN(wrap_future_wrapper_cancel_cancels_source);
    RUN(wrap_future_unretrieved_exception_reported_once);
    RUN(ensure_future_wraps_foreign_returns_own);
    RUN(wrap_future_across_two_loops_on_two_threads);
    RUN(run_until_complete_loopless_result);
    RUN(run_until_complete_loopless_exception);
    RUN(run_until_complete_loopless_cancel);
    TEST_END();
}
