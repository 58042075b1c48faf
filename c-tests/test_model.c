/* Model-based random test of afut's Future and loop (issue 7, item 2).
 *
 * A generator draws random sequences of API calls: create futures (bound to the loop or
 * loop-less), complete them (set_result / set_exception / cancel, with and without a
 * message), add and remove done-callbacks (duplicates included), run callbacks that re-enter
 * the API on their own future (add, remove, cancel, drop the last reference, read the result)
 * or on others, call_soon / call_later / call_at and cancel their handles, run_once, and now
 * and then close the loop and start a new one (futures outliving their loop). After every
 * step the library is checked against a small reference model of asyncio's rules:
 *
 *   - states, results, exceptions, cancel messages          (SEMANTICS.md F1, F2, F12, F13)
 *   - the exact order callbacks ran, iteration by iteration: the ready queue is FIFO, the
 *     callbacks of one completion are one contiguous run, work scheduled during a batch
 *     waits for the next iteration, due timers follow in deadline order with FIFO ties
 *     (F4-F7, R2, R9, API.md "Time"; loop-less futures run their callbacks inline: brief)
 *   - every userdata_free / value_free / detail_free called exactly once, at the right step
 *     (API.md "User data", R8)
 *   - "Future exception was never retrieved" reports: which future, when (F14, F15, R6, B8)
 *   - bad states: completing a done future (R3), removing from a done future (F9), nested
 *     run_once / close from a callback (LOOP_RUNNING), afut_wait on the loop thread.
 * On half of the loops, tasks (afut_task_new, with a small random script per task: yield,
 * await a loop future / an afut_sleep / a wrapped loop-less future, complete with a result
 * or an exception, cancel itself and return), afut_cancel on tasks, afut_sleep and
 * afut_wrap_future run too, each event checked in the iteration it must happen in
 * (SEMANTICS.md F22, T1-T4; afut.h afut_task_new, afut_sleep, afut_wrap_future): see the
 * "aux" section below.
 * A second phase completes futures and schedules callbacks from another thread and checks
 * the order the loop ran them in (API.md "Threads").
 * A third of the loops run on a manual virtual clock (afut_loop_set_virtual_clock): the waits
 * that let a timer become due advance it instead of spinning, a random action advances it,
 * and every run_once checks that it moved only by afut_loop_advance_time.
 * A separate test (model_executor) checks the executor against a model of concurrent.futures'
 * states, see there.
 *
 * The same engine is the fuzz target (fuzz/fuzz_model.c includes this file with
 * AFUT_MODEL_NO_MAIN): there the random choices come from the fuzzer's bytes and a
 * violation aborts.
 *
 * Environment: AFUT_SEED=<n> replays one seed (else a fixed seed, then a fresh one, both
 * printed); AFUT_MODEL_CALLS=<n> sets the calls per seed (default 1e6 in total over the two
 * seeds; 20x fewer when AFUT_UNDER_VALGRIND=1, 5x fewer under sanitizers);
 * AFUT_MODEL_TRACE=1 prints every action (with AFUT_SEED, to see how a violation came about).
 *
 * Figures printed at the end: API calls tried (actions; the verification reads are counted
 * apart), callbacks run, frees and reports matched, loop close/free cycles. */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "afut.h"

/* ------------------------------------------------------------------------------------------
 * Random source: a PRNG (the test) or the fuzzer's bytes. */

static uint64_t g_rng;
static const uint8_t *g_bytes;
static size_t g_nbytes, g_bpos;
static bool g_exhausted;

static uint64_t rng_next(void) {
    /* splitmix64 */
    uint64_t z = (g_rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [0, n). */
static uint32_t rnd(uint32_t n) {
    if (n <= 1) return 0;
    if (g_bytes) {
        uint32_t v = 0;
        if (g_bpos < g_nbytes) {
            v = g_bytes[g_bpos++];
            if (n > 256 && g_bpos < g_nbytes) v = (v << 8) | g_bytes[g_bpos++];
        } else {
            g_exhausted = true;
        }
        return v % n;
    }
    return (uint32_t)(rng_next() % n);
}

/* ------------------------------------------------------------------------------------------
 * Failure reporting. */

static uint64_t g_seed;
static unsigned long long g_step;
static unsigned long long g_calls;  /* API calls made by actions (verification reads excluded) */
static unsigned long long g_checks; /* API calls made to verify the state */
static bool g_fuzz_mode;
#ifndef AFUT_MODEL_NO_MAIN
static unsigned long long g_stat_race_main, g_stat_race_thread;
#endif
static unsigned long long g_stat_callbacks, g_stat_cycles, g_stat_frees, g_stat_reports, g_stat_runs;
static bool g_trace; /* AFUT_MODEL_TRACE=1: print every action */
#define TRACE(...)                                   \
    do {                                             \
        if (g_trace) fprintf(stderr, __VA_ARGS__);   \
    } while (0)

static void model_fail(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "MODEL VIOLATION at %s:%d, step %llu, seed %llu: ", file, line, g_step,
            (unsigned long long)g_seed);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n  replay: AFUT_SEED=%llu\n", (unsigned long long)g_seed);
    fflush(stderr);
    if (g_fuzz_mode) abort();
    printf("FAIL model (seed %llu, step %llu)\n0 passed, 1 failed\n", (unsigned long long)g_seed,
           g_step);
    fflush(stdout);
    exit(1);
}

#define MFAIL(...) model_fail(__FILE__, __LINE__, __VA_ARGS__)
#define MCHECK(cond)                                                     \
    do {                                                                 \
        if (!(cond)) MFAIL("%s", #cond);                                 \
    } while (0)
#define MCHECK_EQ(a, b)                                                              \
    do {                                                                             \
        long long a_ = (long long)(a), b_ = (long long)(b);                          \
        if (a_ != b_) MFAIL("%s == %lld, expected %s == %lld", #a, a_, #b, b_);      \
    } while (0)

/* ------------------------------------------------------------------------------------------
 * Ids: every userdata / value / detail the test hands the library is a small integer cast to
 * a pointer; the free function counts calls per id. */

enum { ID_CB = 1, ID_VALUE, ID_DETAIL, ID_HANDLER };

typedef struct {
    uint8_t kind;
    uint8_t used;
    int32_t regs;     /* successful hand-overs to the library (model) */
    int32_t mfrees;   /* frees the model expects by now */
    int32_t frees;    /* frees that happened (atomic in the thread phase) */
} idrec_t;

static idrec_t *g_ids;
static uint32_t g_nids, g_capids;
static uint32_t *g_idfree;
static uint32_t g_nidfree, g_capidfree;
static uint32_t *g_verify;
static uint32_t g_nverify, g_capverify;
static long long g_model_frees, g_actual_frees; /* g_actual_frees updated atomically */

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n);
    if (!q) {
        fprintf(stderr, "out of memory\n");
        abort();
    }
    return q;
}

static void ids_reserve(uint32_t more) {
    if (g_nids + more > g_capids) {
        uint32_t cap = g_capids ? g_capids : 1024;
        while (g_nids + more > cap) cap *= 2;
        g_ids = xrealloc(g_ids, cap * sizeof *g_ids);
        g_capids = cap;
    }
}

static uint32_t id_new(int kind) {
    uint32_t id;
    if (g_nidfree) {
        id = g_idfree[--g_nidfree];
    } else {
        if (g_nids == 0) g_nids = 1; /* id 0 would be NULL */
        ids_reserve(1);
        id = g_nids++;
    }
    g_ids[id] = (idrec_t){.kind = (uint8_t)kind, .used = 1};
    return id;
}

static void id_recycle(uint32_t id) {
    g_ids[id].used = 0;
    if (g_nidfree == g_capidfree) {
        g_capidfree = g_capidfree ? g_capidfree * 2 : 1024;
        g_idfree = xrealloc(g_idfree, g_capidfree * sizeof *g_idfree);
    }
    g_idfree[g_nidfree++] = id;
}

static void *idp(uint32_t id) { return (void *)(uintptr_t)id; }

static void ud_free(void *p) {
    uintptr_t id = (uintptr_t)p;
    if (id == 0 || id >= g_nids || !g_ids[id].used) MFAIL("userdata_free(%p): not a live id", p);
    int32_t n = __atomic_add_fetch(&g_ids[id].frees, 1, __ATOMIC_SEQ_CST);
    __atomic_add_fetch(&g_actual_frees, 1, __ATOMIC_SEQ_CST);
    if (n > g_ids[id].regs) MFAIL("id %lu freed %d times, handed over %d times", (unsigned long)id, n, g_ids[id].regs);
}

/* The model says: the library frees `id` (once) during this step. */
static void model_free(uint32_t id) {
    g_ids[id].mfrees++;
    g_model_frees++;
    if (g_nverify == g_capverify) {
        g_capverify = g_capverify ? g_capverify * 2 : 256;
        g_verify = xrealloc(g_verify, g_capverify * sizeof *g_verify);
    }
    g_verify[g_nverify++] = id;
}

/* A hand-over the library refused: it must not have freed it; the id is ours again. */
static void id_refused(uint32_t id) {
    if (!id) return;
    MCHECK_EQ(g_ids[id].frees, g_ids[id].mfrees);
    if (g_ids[id].regs == 0) id_recycle(id);
}

/* ------------------------------------------------------------------------------------------
 * The model. */

#define MAXF 24   /* future slots */
#define MAXCB 12  /* callbacks registered on one pending future */
#define MAXL 8    /* model loops (current, old, freed ones still referenced) */

enum { ST_P = 1, ST_R, ST_E, ST_C };
enum { IT_CALL = 1, IT_DONE };

typedef struct {
    uint8_t fn;
    uint32_t id;
} cbent_t;

typedef struct {
    afut_t *f;
    bool live;
    int loop; /* index into g_loops, -1 loop-less */
    int st;
    uint32_t vid;
    int32_t code;
    const char *emsg;
    uint32_t did;
    bool unretrieved;
    const char *cmsg;
    const char *cmsg_ptr;
    int urefs, irefs;
    cbent_t cb[MAXCB];
    int ncb;
} mfut_t;

typedef struct {
    uint8_t kind;
    uint8_t fn;
    int slot;   /* IT_DONE */
    int hr;     /* IT_CALL: handle record */
    uint32_t id;
} item_t;

typedef struct {
    item_t *v;
    size_t n, cap, head;
} itemq_t;

typedef struct {
    afut_handle_t h;
    uint32_t id;
    int loop;
    bool live;
    bool in_batch;
    int cls;    /* timer class; -1 for call_soon */
    double key;
    uint64_t seq;
    double ready_at;
    size_t lpos;
} hrec_t;

typedef struct {
    afut_loop_t *l;
    bool used, closed, freed;
    int nfuts;
    itemq_t q;
    int *timers; /* hrec indices (dead ones skipped) */
    size_t ntimers, captimers;
    int *liveh;  /* live hrec indices */
    size_t nliveh, capliveh;
    uint64_t seq;
    uint32_t handler_id;
    uint64_t epoch;
    unsigned long long runs; /* run_once calls that ran a batch */
    bool aux;                /* tasks, sleeps and wrappers run on this loop */
    bool virt;               /* on a manual virtual clock (afut_loop_set_virtual_clock) */
} mloop_t;

static mfut_t g_f[MAXF];
static mloop_t g_loops[MAXL];
static int g_cur = -1, g_old = -1;
static hrec_t *g_h;
static int g_nh, g_caph;
static int *g_hfree;
static int g_nhfree, g_caphfree;
static afut_handle_t g_stale[8];
static uint64_t g_stale_epoch[8];
static uint64_t g_epoch;
static unsigned g_nstale;

/* Expected callback sequences: frame 0 of a run is the loop's batch; loop-less completions
 * push inline frames on top. */
#define MAXFRAMES 64
static itemq_t g_frames[MAXFRAMES];
static bool g_frame_is_loop[MAXFRAMES];
static int g_frame_slot[MAXFRAMES]; /* inline frames: the loop-less future being completed,
                                      * which holds a reference of its own meanwhile */
static int g_nframes;
static int g_run_loop = -1; /* loop inside run_once, or -1 */
static size_t g_ran;        /* callbacks run in the current run_once */
static int g_depth;         /* callback nesting */
static pthread_t g_main_thread;
static bool g_in_thread_phase;

/* Never-retrieved reports expected in this step (futures), and seen. */
static afut_t *g_expect_reports[64];
static int g_nexpect_reports;
static long long g_reports_expected, g_reports_actual;

static const char *const k_msgs[] = {"boom", "cancelled by model", "", "x\xc3\xa9y"};
static long long g_destroyed_expected, g_destroyed_actual; /* "Task was destroyed" reports */
/* Pending tasks at a close that the application had already released (fire-and-forget) are
 * reported too, like the ones it still holds (TEST(task_released_pending_at_close_is_reported)
 * below: the close once dropped them with the queue before telling them). Strict: every
 * pending task at a close must be reported exactly once. */
static const bool k_strict_released_task_report = true;
static long long g_destroyed_maybe;

static void q_push(itemq_t *q, item_t it) {
    if (q->n == q->cap) {
        q->cap = q->cap ? q->cap * 2 : 32;
        q->v = xrealloc(q->v, q->cap * sizeof *q->v);
    }
    q->v[q->n++] = it;
}

static int h_new(void) {
    int i;
    if (g_nhfree) {
        i = g_hfree[--g_nhfree];
    } else {
        if (g_nh == g_caph) {
            g_caph = g_caph ? g_caph * 2 : 256;
            g_h = xrealloc(g_h, g_caph * sizeof *g_h);
        }
        i = g_nh++;
    }
    memset(&g_h[i], 0, sizeof g_h[i]);
    return i;
}

static void h_release(int i) {
    if (g_nhfree == g_caphfree) {
        g_caphfree = g_caphfree ? g_caphfree * 2 : 256;
        g_hfree = xrealloc(g_hfree, g_caphfree * sizeof *g_hfree);
    }
    g_hfree[g_nhfree++] = i;
}

/* A handle that ran or was cancelled: dead from now on (kept to try cancelling it again). */
static void h_dead(int i) {
    hrec_t *h = &g_h[i];
    mloop_t *L = &g_loops[h->loop];
    h->live = false;
    size_t p = h->lpos;
    L->liveh[p] = L->liveh[--L->nliveh];
    g_h[L->liveh[p]].lpos = p;
    g_stale[g_nstale % 8] = h->h;
    g_stale_epoch[g_nstale % 8] = L->epoch;
    g_nstale++;
}

static void h_live(int i) {
    mloop_t *L = &g_loops[g_h[i].loop];
    if (L->nliveh == L->capliveh) {
        L->capliveh = L->capliveh ? L->capliveh * 2 : 64;
        L->liveh = xrealloc(L->liveh, L->capliveh * sizeof *L->liveh);
    }
    g_h[i].live = true;
    g_h[i].lpos = L->nliveh;
    L->liveh[L->nliveh++] = i;
}

/* The model releases a reference; at zero the future is freed. */
static void mf_maybe_free(int s) {
    mfut_t *F = &g_f[s];
    if (F->urefs + F->irefs > 0) return;
    if (F->st == ST_P) {
        for (int i = 0; i < F->ncb; i++) model_free(F->cb[i].id);
    } else if (F->st == ST_R) {
        if (F->vid) model_free(F->vid);
    } else if (F->st == ST_E) {
        if (F->did) model_free(F->did);
        if (F->unretrieved && F->loop >= 0) {
            if (g_loops[F->loop].freed) MFAIL("model: an unretrieved exception would go to stderr");
            if (g_nexpect_reports == 64) MFAIL("model: too many reports in one step");
            g_expect_reports[g_nexpect_reports++] = F->f;
            g_reports_expected++;
        }
    }
    if (F->loop >= 0) {
        mloop_t *L = &g_loops[F->loop];
        L->nfuts--;
        if (L->freed && L->nfuts == 0) L->used = false;
    }
    memset(F, 0, sizeof *F);
}

static void on_report(afut_loop_t *loop, const afut_error_context_t *ctx, void *ud) {
    (void)loop;
    (void)ud;
    if (ctx && ctx->message && strcmp(ctx->message, "Task was destroyed but it is pending!") == 0) {
        if (!ctx->future) MFAIL("\"Task was destroyed\" report without the task");
        g_destroyed_actual++;
        return;
    }
    __atomic_add_fetch(&g_reports_actual, 1, __ATOMIC_SEQ_CST);
    if (!ctx || !ctx->message || strcmp(ctx->message, "Future exception was never retrieved") != 0)
        MFAIL("unexpected report \"%s\"", ctx && ctx->message ? ctx->message : "(null)");
    if (!ctx->future || !ctx->exception || ctx->exception->code == 0) MFAIL("report without future/exception");
    if (afut_ref(ctx->future) != NULL) MFAIL("afut_ref on a finalizing future returned it");
    if (g_in_thread_phase) return; /* counted only */
    for (int i = 0; i < g_nexpect_reports; i++) {
        if (g_expect_reports[i] == ctx->future) {
            g_expect_reports[i] = g_expect_reports[--g_nexpect_reports];
            return;
        }
    }
    MFAIL("never-retrieved report for %p, which the model does not expect", (void *)ctx->future);
}

static void done_cb0(afut_t *fut, void *ud);
static void done_cb1(afut_t *fut, void *ud);
static void loop_cb(void *ud);
static afut_done_fn const k_done_fns[2] = {done_cb0, done_cb1};

/* Schedules a completed future's registered callbacks, model side. Returns true when they
 * run inline (loop-less: a frame was pushed, to be popped after the real call). */
static bool model_dispatch(int s) {
    mfut_t *F = &g_f[s];
    bool inline_frame = false;
    if (F->loop < 0) {
        if (g_nframes == MAXFRAMES) MFAIL("model: frames");
        itemq_t *q = &g_frames[g_nframes];
        q->n = q->head = 0;
        for (int i = 0; i < F->ncb; i++)
            q_push(q, (item_t){.kind = IT_DONE, .fn = F->cb[i].fn, .slot = s, .id = F->cb[i].id});
        /* The completion keeps the future alive until every callback ran, even if one of
         * them drops the caller's last reference (regression_loopless_...). */
        g_frame_slot[g_nframes] = F->ncb ? s : -1;
        if (F->ncb) F->irefs++;
        g_frame_is_loop[g_nframes++] = false;
        inline_frame = true;
    } else if (g_loops[F->loop].closed) {
        for (int i = 0; i < F->ncb; i++) model_free(F->cb[i].id);
    } else {
        mloop_t *L = &g_loops[F->loop];
        for (int i = 0; i < F->ncb; i++) {
            q_push(&L->q, (item_t){.kind = IT_DONE, .fn = F->cb[i].fn, .slot = s, .id = F->cb[i].id});
            F->irefs++;
        }
    }
    F->ncb = 0;
    return inline_frame;
}

static void pop_inline_frame(bool pushed) {
    if (!pushed) return;
    itemq_t *q = &g_frames[g_nframes - 1];
    if (q->head != q->n) MFAIL("%zu inline callbacks did not run", q->n - q->head);
    int slot = g_frame_slot[g_nframes - 1];
    g_nframes--;
    if (slot >= 0) {
        g_f[slot].irefs--;
        mf_maybe_free(slot);
    }
}

/* ------------------------------------------------------------------------------------------
 * Checks. */

static void check_future(int s) {
    mfut_t *F = &g_f[s];
    if (!F->live) return;
    g_checks += 4;
    MCHECK_EQ(afut_done(F->f), F->st != ST_P);
    MCHECK_EQ(afut_cancelled(F->f), F->st == ST_C);
    const char *m = afut_cancel_message(F->f);
    if (F->st == ST_C && F->cmsg) {
        if (!m || strcmp(m, F->cmsg) != 0) MFAIL("cancel message \"%s\", expected \"%s\"", m ? m : "(null)", F->cmsg);
        if (F->cmsg_ptr && m != F->cmsg_ptr) MFAIL("cancel message pointer changed");
        F->cmsg_ptr = m;
    } else if (m) {
        MFAIL("cancel message \"%s\", expected NULL", m);
    }
    afut_loop_t *gl = afut_get_loop(F->f);
    afut_loop_t *el = (F->loop >= 0 && !g_loops[F->loop].freed) ? g_loops[F->loop].l : NULL;
    if (gl != el) MFAIL("afut_get_loop %p, expected %p", (void *)gl, (void *)el);
}

static void check_describe(int s) {
    mfut_t *F = &g_f[s];
    if (!F->live) return;
    char want[160], got[160];
    switch (F->st) {
    case ST_P:
        if (F->ncb) snprintf(want, sizeof want, "<Future pending cb=[%d]>", F->ncb);
        else snprintf(want, sizeof want, "<Future pending>");
        break;
    case ST_R:
        if (F->vid) snprintf(want, sizeof want, "<Future finished result=0x%lx>", (unsigned long)F->vid);
        else snprintf(want, sizeof want, "<Future finished result=NULL>");
        break;
    case ST_E:
        if (F->emsg) snprintf(want, sizeof want, "<Future finished exception=code %d: %s>", (int)F->code, F->emsg);
        else snprintf(want, sizeof want, "<Future finished exception=code %d>", (int)F->code);
        break;
    default:
        snprintf(want, sizeof want, "<Future cancelled>");
    }
    g_checks++;
    size_t n = afut_describe(F->f, got, sizeof got);
    if (strcmp(got, want) != 0 || n != strlen(want)) MFAIL("describe \"%s\" (%zu), expected \"%s\"", got, n, want);
}

/* End of a top-level step: frees and reports must match the model exactly. */
static void check_step(void) {
    long long actual = __atomic_load_n(&g_actual_frees, __ATOMIC_SEQ_CST);
    if (actual != g_model_frees)
        MFAIL("%lld frees happened, the model expects %lld", actual, g_model_frees);
    for (uint32_t i = 0; i < g_nverify; i++) {
        uint32_t id = g_verify[i];
        if (!g_ids[id].used) continue; /* recycled after an earlier entry in this list */
        if (g_ids[id].frees != g_ids[id].mfrees)
            MFAIL("id %u (kind %d) freed %d times, expected %d", id, g_ids[id].kind, g_ids[id].frees, g_ids[id].mfrees);
        if (g_ids[id].mfrees == g_ids[id].regs) id_recycle(id);
    }
    g_nverify = 0;
    if (g_nexpect_reports) MFAIL("%d never-retrieved reports missing", g_nexpect_reports);
    if (g_reports_actual != g_reports_expected)
        MFAIL("%lld reports, expected %lld", g_reports_actual, g_reports_expected);
    if (g_destroyed_actual < g_destroyed_expected || g_destroyed_actual > g_destroyed_expected + g_destroyed_maybe)
        MFAIL("%lld \"Task was destroyed but it is pending!\" reports, expected %lld (+ up to %lld for "
              "released tasks)", g_destroyed_actual, g_destroyed_expected, g_destroyed_maybe);
}

/* ------------------------------------------------------------------------------------------
 * Actions. Each updates the model first (so that callbacks running inside the real call can
 * be checked against it), then makes the real call and compares. */

static int pick_slot(bool with_ref) {
    int start = (int)rnd(MAXF);
    for (int k = 0; k < MAXF; k++) {
        int s = (start + k) % MAXF;
        if (g_f[s].live && (!with_ref || g_f[s].urefs > 0)) return s;
    }
    return -1;
}

static void act_new(void) {
    int s = -1;
    for (int i = 0; i < MAXF; i++)
        if (!g_f[i].live) { s = i; break; }
    if (s < 0) return;
    mfut_t *F = &g_f[s];
    uint32_t r = rnd(8);
    afut_t *f;
    g_calls++;
    if (r == 0 || g_cur < 0) {
        f = afut_new(NULL);
        F->loop = -1;
    } else {
        mloop_t *L = &g_loops[g_cur];
        f = (r & 1) ? afut_loop_create_future(L->l) : afut_new(L->l);
        F->loop = g_cur;
        L->nfuts++;
    }
    if (!f) MFAIL("creating a future failed");
    F->f = f;
    F->live = true;
    F->st = ST_P;
    F->urefs = 1;
}

static bool loop_freed(const mfut_t *F) { return F->loop >= 0 && g_loops[F->loop].freed; }

static void retrieve_now(int s) {
    mfut_t *F = &g_f[s];
    afut_exception_t e;
    g_calls++;
    MCHECK_EQ(afut_exception(F->f, &e), AFUT_OK);
    MCHECK_EQ(e.code, F->code);
    F->unretrieved = false;
}

static void act_set_result(int s) {
    TRACE("%*sact_set_result(slot %d, loop %d, st %d, urefs %d, irefs %d)\n", g_depth * 2, "", s, g_f[s].loop, g_f[s].st, g_f[s].urefs, g_f[s].irefs);
    mfut_t *F = &g_f[s];
    uint32_t vid = rnd(4) ? id_new(ID_VALUE) : 0;
    int expect = F->st == ST_P ? AFUT_OK : AFUT_ERR_INVALID_STATE;
    bool pushed = false;
    if (expect == AFUT_OK) {
        F->st = ST_R;
        F->vid = vid;
        if (vid) g_ids[vid].regs++;
        pushed = model_dispatch(s);
    }
    g_calls++;
    afut_status_t rc = afut_set_result(F->f, idp(vid), vid ? ud_free : NULL);
    pop_inline_frame(pushed);
    MCHECK_EQ(rc, expect);
    if (rc != AFUT_OK) id_refused(vid);
}

static void act_set_exception(int s) {
    TRACE("%*sact_set_exception(slot %d, loop %d, st %d, urefs %d, irefs %d)\n", g_depth * 2, "", s, g_f[s].loop, g_f[s].st, g_f[s].urefs, g_f[s].irefs);
    mfut_t *F = &g_f[s];
    uint32_t did = rnd(3) ? id_new(ID_DETAIL) : 0;
    int32_t code = (int32_t)rnd(2000) - 1000;
    if (code == 0 && F->st != ST_P) code = 7; /* which check comes first is not specified */
    char buf[32];
    const char *msg = NULL;
    if (rnd(3)) {
        msg = k_msgs[rnd(4)];
        snprintf(buf, sizeof buf, "%s", msg);
    }
    afut_t *f = F->f;
    int expect = code == 0 ? AFUT_ERR_INVALID_ARGUMENT : F->st == ST_P ? AFUT_OK : AFUT_ERR_INVALID_STATE;
    bool pushed = false;
    if (expect == AFUT_OK) {
        F->st = ST_E;
        F->code = code;
        F->emsg = msg;
        F->did = did;
        if (did) g_ids[did].regs++;
        pushed = model_dispatch(s);
        F->unretrieved = true; /* set at the end (F14) */
    }
    g_calls++;
    afut_status_t rc = afut_set_exception(F->f, code, msg ? buf : NULL, idp(did), did ? ud_free : NULL);
    if (msg) memset(buf, 'Z', sizeof buf - 1); /* the library copied it */
    pop_inline_frame(pushed);
    MCHECK_EQ(rc, expect);
    if (rc != AFUT_OK) id_refused(did);
    if (rc == AFUT_OK && F->live && F->f == f && loop_freed(F)) retrieve_now(s); /* else stderr */
}

static void act_cancel(int s) {
    TRACE("%*sact_cancel(slot %d, loop %d, st %d, urefs %d, irefs %d)\n", g_depth * 2, "", s, g_f[s].loop, g_f[s].st, g_f[s].urefs, g_f[s].irefs);
    mfut_t *F = &g_f[s];
    char buf[32];
    const char *msg = NULL;
    if (rnd(2)) {
        msg = k_msgs[rnd(4)];
        snprintf(buf, sizeof buf, "%s", msg);
    }
    bool expect = F->st == ST_P;
    F->unretrieved = false; /* whatever the state (F12, B8) */
    bool pushed = false;
    if (expect) {
        F->st = ST_C;
        F->cmsg = msg;
        pushed = model_dispatch(s);
    }
    g_calls++;
    bool rc = afut_cancel(F->f, msg ? buf : NULL);
    if (msg) memset(buf, 'Z', sizeof buf - 1);
    pop_inline_frame(pushed);
    MCHECK_EQ(rc, expect);
}

static void act_add_cb(int s) {
    TRACE("%*sact_add_cb(slot %d, loop %d, st %d, urefs %d, irefs %d)\n", g_depth * 2, "", s, g_f[s].loop, g_f[s].st, g_f[s].urefs, g_f[s].irefs);
    mfut_t *F = &g_f[s];
    uint8_t fn = (uint8_t)rnd(2);
    uint32_t id;
    if (F->st == ST_P && F->ncb && rnd(3) == 0) {
        cbent_t e = F->cb[rnd((uint32_t)F->ncb)]; /* a duplicate */
        id = e.id;
        if (rnd(2)) fn = e.fn;
    } else {
        id = id_new(ID_CB);
    }
    if (F->st == ST_P && F->ncb == MAXCB) {
        id_refused(id);
        return;
    }
    int expect = AFUT_OK;
    bool pushed = false;
    if (F->st == ST_P) {
        F->cb[F->ncb++] = (cbent_t){fn, id};
        g_ids[id].regs++;
    } else if (F->loop < 0) {
        if (g_nframes == MAXFRAMES) MFAIL("model: frames");
        itemq_t *q = &g_frames[g_nframes];
        q->n = q->head = 0;
        q_push(q, (item_t){.kind = IT_DONE, .fn = fn, .slot = s, .id = id});
        g_frame_slot[g_nframes] = -1; /* one callback, run by add_done_callback itself */
        g_frame_is_loop[g_nframes++] = false;
        pushed = true;
        g_ids[id].regs++;
    } else if (g_loops[F->loop].closed) {
        expect = AFUT_ERR_LOOP_CLOSED;
    } else {
        q_push(&g_loops[F->loop].q, (item_t){.kind = IT_DONE, .fn = fn, .slot = s, .id = id});
        F->irefs++;
        g_ids[id].regs++;
    }
    g_calls++;
    afut_status_t rc = afut_add_done_callback(F->f, k_done_fns[fn], idp(id), ud_free);
    pop_inline_frame(pushed);
    MCHECK_EQ(rc, expect);
    if (rc != AFUT_OK) id_refused(id);
}

static void act_remove_cb(int s) {
    TRACE("%*sact_remove_cb(slot %d, loop %d, st %d, urefs %d, irefs %d)\n", g_depth * 2, "", s, g_f[s].loop, g_f[s].st, g_f[s].urefs, g_f[s].irefs);
    mfut_t *F = &g_f[s];
    uint8_t fn = (uint8_t)rnd(2);
    uint32_t id = 0x7fffff00u + rnd(4); /* never an id in use */
    if (F->ncb && rnd(4)) {
        cbent_t e = F->cb[rnd((uint32_t)F->ncb)];
        id = e.id;
        if (rnd(4)) fn = e.fn;
    } else if (rnd(2) && g_nids > 1) {
        id = 1 + rnd(g_nids - 1);
    }
    int n = 0, k = 0;
    for (int i = 0; i < F->ncb; i++) {
        if (F->cb[i].fn == fn && F->cb[i].id == id) {
            model_free(id);
            n++;
        } else {
            F->cb[k++] = F->cb[i];
        }
    }
    F->ncb = k;
    g_calls++;
    size_t rc = afut_remove_done_callback(F->f, k_done_fns[fn], idp(id));
    MCHECK_EQ(rc, n);
}

static void act_result(int s) {
    TRACE("%*sact_result(slot %d, loop %d, st %d, urefs %d, irefs %d)\n", g_depth * 2, "", s, g_f[s].loop, g_f[s].st, g_f[s].urefs, g_f[s].irefs);
    mfut_t *F = &g_f[s];
    void *v = (void *)0x5a5a;
    bool with_out = rnd(4) != 0;
    g_calls++;
    afut_status_t rc = afut_result(F->f, with_out ? &v : NULL);
    switch (F->st) {
    case ST_P: MCHECK_EQ(rc, AFUT_ERR_INVALID_STATE); break;
    case ST_R:
        MCHECK_EQ(rc, AFUT_OK);
        if (with_out && v != idp(F->vid)) MFAIL("result %p, expected %p", v, idp(F->vid));
        break;
    case ST_E: MCHECK_EQ(rc, AFUT_ERR_EXCEPTION); F->unretrieved = false; break;
    default: MCHECK_EQ(rc, AFUT_ERR_CANCELLED);
    }
    if (rc != AFUT_OK && with_out && v != (void *)0x5a5a) MFAIL("afut_result wrote its output on failure");
}

static void act_exception(int s) {
    TRACE("%*sact_exception(slot %d, loop %d, st %d, urefs %d, irefs %d)\n", g_depth * 2, "", s, g_f[s].loop, g_f[s].st, g_f[s].urefs, g_f[s].irefs);
    mfut_t *F = &g_f[s];
    afut_exception_t e = {.code = 4242, .message = "untouched", .detail = (void *)0x5a5a};
    bool with_out = rnd(4) != 0;
    g_calls++;
    afut_status_t rc = afut_exception(F->f, with_out ? &e : NULL);
    switch (F->st) {
    case ST_P: MCHECK_EQ(rc, AFUT_ERR_INVALID_STATE); break;
    case ST_R:
        MCHECK_EQ(rc, AFUT_OK);
        if (with_out) MCHECK(e.code == 0 && e.message == NULL && e.detail == NULL);
        break;
    case ST_E:
        MCHECK_EQ(rc, AFUT_OK);
        F->unretrieved = false;
        if (with_out) {
            MCHECK_EQ(e.code, F->code);
            MCHECK(e.detail == idp(F->did));
            if (F->emsg) MCHECK(e.message && strcmp(e.message, F->emsg) == 0);
            else MCHECK(e.message == NULL);
        }
        break;
    default: MCHECK_EQ(rc, AFUT_ERR_CANCELLED);
    }
    if (rc != AFUT_OK && with_out) MCHECK(e.code == 4242 && e.detail == (void *)0x5a5a);
}

static void act_ref(int s) {
    TRACE("%*sact_ref(slot %d, loop %d, st %d, urefs %d, irefs %d)\n", g_depth * 2, "", s, g_f[s].loop, g_f[s].st, g_f[s].urefs, g_f[s].irefs);
    mfut_t *F = &g_f[s];
    if (F->urefs >= 3) return;
    g_calls++;
    afut_t *r = afut_ref(F->f);
    if (r != F->f) MFAIL("afut_ref returned %p, expected %p", (void *)r, (void *)F->f);
    F->urefs++;
}

static void act_unref(int s) {
    TRACE("%*sact_unref(slot %d, loop %d, st %d, urefs %d, irefs %d)\n", g_depth * 2, "", s, g_f[s].loop, g_f[s].st, g_f[s].urefs, g_f[s].irefs);
    mfut_t *F = &g_f[s];
    if (F->urefs == 0) return;
    afut_t *f = F->f;
    F->urefs--;
    mf_maybe_free(s); /* may clear the slot */
    g_calls++;
    afut_unref(f);
}

static mloop_t *cur_loop(void) { return g_cur >= 0 ? &g_loops[g_cur] : NULL; }

static unsigned long long g_stat_virtual_loops, g_stat_advances;

/* Waits until the loop's clock is past `t`: spins on a real clock, advances a virtual one
 * (whose time moves only by afut_loop_advance_time: checked in act_run_once). */
static void spin_past(mloop_t *L, double t) {
    if (!L->virt) {
        while (afut_loop_time(L->l) <= t) {
        }
        return;
    }
    while (afut_loop_time(L->l) <= t) {
        g_calls++;
        g_stat_advances++;
        MCHECK_EQ(afut_loop_advance_time(L->l, t - afut_loop_time(L->l) + 1e-9), AFUT_OK);
    }
}

/* call_soon (cls -1) or one of the timer classes, whose relative deadlines the model knows:
 *  0: call_later(-INFINITY)          deadline -inf, FIFO
 *  1: call_later(-1e6)               deadline now-1e6 (ordered by scheduling time)
 *  2: call_at(-1000 - k)             deadline exact
 *  3: call_later(0 / -0.0 / 1e-9), call_at(loop time)   deadline ~now (ordered by time)
 *  9: call_later(INFINITY / 1e6), call_at(INFINITY / 1e9)   never due here */
static void act_schedule(int loopi, int cls) {
    TRACE("%*sschedule(loop %d, class %d)\n", g_depth * 2, "", loopi, cls);
    mloop_t *L = &g_loops[loopi];
    uint32_t id = id_new(ID_CB);
    afut_handle_t h = 0;
    double delay = 0, when = 0, key = 0;
    bool at = false;
    uint32_t v = rnd(4);
    switch (cls) {
    case 0: delay = -INFINITY; break;
    case 1: delay = -1e6; break;
    case 2: at = true; when = key = -1000.0 - (double)v; break;
    case 3:
        if (v == 0) delay = 0.0;
        else if (v == 1) delay = -0.0;
        else if (v == 2) delay = 1e-9;
        else { at = true; when = afut_loop_time(L->l); }
        break;
    case 9:
        if (v == 0) delay = INFINITY;
        else if (v == 1) delay = 1e6;
        else if (v == 2) { at = true; when = INFINITY; }
        else { at = true; when = 1e9; }
        break;
    default: break;
    }
    g_calls++;
    if (cls < 0)
        h = rnd(2) ? afut_loop_call_soon(L->l, loop_cb, idp(id), ud_free)
                   : afut_loop_call_soon_threadsafe(L->l, loop_cb, idp(id), ud_free);
    else if (at)
        h = afut_loop_call_at(L->l, when, loop_cb, idp(id), ud_free);
    else
        h = afut_loop_call_later(L->l, delay, loop_cb, idp(id), ud_free);
    if (L->closed) {
        if (h != 0) MFAIL("scheduling on a closed loop returned handle %llu", (unsigned long long)h);
        id_refused(id);
        return;
    }
    if (h == 0) MFAIL("scheduling (class %d) returned 0", cls);
    g_ids[id].regs++;
    int hi = h_new();
    hrec_t *H = &g_h[hi];
    H->h = h;
    H->id = id;
    H->loop = loopi;
    H->cls = cls;
    H->key = key;
    H->seq = L->seq++;
    h_live(hi);
    if (cls < 0) {
        q_push(&L->q, (item_t){.kind = IT_CALL, .hr = hi, .id = id});
        return;
    }
    if (cls == 3) {
        /* Make sure the deadline is behind us before anything else is scheduled, so that
         * deadline order is scheduling order within the class. */
        double t = afut_loop_time(L->l);
        H->ready_at = t + 1e-9;
        spin_past(L, H->ready_at);
    }
    if (L->ntimers == L->captimers) {
        L->captimers = L->captimers ? L->captimers * 2 : 64;
        L->timers = xrealloc(L->timers, L->captimers * sizeof *L->timers);
    }
    L->timers[L->ntimers++] = hi;
}

static void act_cancel_handle(int loopi) {
    TRACE("%*scancel_handle(loop %d)\n", g_depth * 2, "", loopi);
    mloop_t *L = &g_loops[loopi];
    uint32_t r = rnd(8);
    afut_handle_t h;
    bool expect = false;
    int hi = -1;
    if (r < 5 && L->nliveh) {
        hi = L->liveh[rnd((uint32_t)L->nliveh)];
        h = g_h[hi].h;
        expect = true;
    } else if (r < 7 && g_nstale) {
        unsigned k = rnd(g_nstale < 8 ? g_nstale : 8);
        if (g_stale_epoch[k] != L->epoch) return;
        h = g_stale[k];
    } else {
        h = 0;
    }
    if (expect) {
        model_free(g_h[hi].id);
        h_dead(hi);
        if (!g_h[hi].in_batch && g_h[hi].cls < 0) {
            /* still in the ready queue: skipped there (the record stays until then) */
        }
    }
    g_calls++;
    bool rc = afut_loop_cancel(L->l, h);
    MCHECK_EQ(rc, expect);
}

/* ------------------------------------------------------------------------------------------
 * Tasks, sleeps and wrapped loop-less futures ("aux" objects; afut.h afut_task_new,
 * afut_task_await, afut_sleep, afut_wrap_future; SEMANTICS.md F22, T1-T4). They live on
 * loops drawn as "aux loops" (half of them), in their own table, and are driven by their
 * own actions; their internal callbacks share the loop's ready queue with the model's, so
 * on those loops run_once's count is only checked as a lower bound. The model knows the
 * iteration in which each event must happen:
 *   - a task's step runs on the iteration after afut_task_new, after a yield, and one
 *     iteration after the future it awaits is done (also when it was done already);
 *     afut_cancel on an awaiting task cancels the awaited future at once; a request that
 *     finds nothing to cancel stays pending (afut_task_cancel_requested) and is delivered
 *     by the next afut_task_await, refused by afut_set_result / afut_set_exception, or ends
 *     the task CANCELLED when the step returns doing neither;
 *   - afut_sleep(0 or a delay already past) completes after exactly one iteration; a
 *     cancelled sleep frees its value on the next iteration, a pending one at the close;
 *   - a wrapper of a loop-less future mirrors it one iteration after it is done; cancelling
 *     the wrapper cancels the source on the next iteration;
 *   - userdata_free of a task right after the step that ended it; a pending task at the
 *     loop's close ends CANCELLED ("the loop was closed") with one "Task was destroyed but
 *     it is pending!" report; every value, detail and userdata freed exactly once in the
 *     end (teardown). */

#define MAXA 16
#define AUX_BASE 0x40000000u
enum { AK_TASK = 1, AK_GATE, AK_SLEEP, AK_SRC, AK_WRAP };
enum { OP_YIELD, OP_GATE, OP_SLEEP, OP_WRAP, OP_RESULT, OP_EXC, OP_SELFCANCEL };

typedef struct {
    int32_t frees;
    bool refused;
} auxid_t;

typedef struct {
    int kind;
    bool live, held, orphan, close_free;
    afut_t *f;
    int loop;
    int st;
    const char *cmsg;
    uint32_t vid; /* result value or exception detail (aux id), 0: none */
    int32_t code;
    const char *emsg;
    long long due; /* sleep: fires; wrap: mirrors its source; src: cancelled by its wrapper */
    int due_st;
    uint32_t due_vid;
    int32_t due_code;
    const char *due_msg;
    int waiter; /* the task awaiting it, or -1 */
    int peer;   /* src <-> wrap, or -1 */
    long long free_by; /* vid must be freed by the end of this iteration */
    /* tasks */
    uint32_t udid;
    uint8_t script[6];
    int nscript, pos;
    long long next_step, ended_at;
    int awaited;
    bool pend;
    const char *pmsg;
    int ncancel;
} aux_t;

static aux_t g_a[MAXA];
static auxid_t *g_ax;
static uint32_t g_nax, g_capax;
static unsigned long long g_stat_tasks, g_stat_steps, g_stat_sleeps, g_stat_wraps, g_stat_task_cancels;
static unsigned long long g_stat_task_end[4], g_stat_closed_tasks, g_stat_value_frees[3], g_stat_mirrors[4];

static bool on_loop_thread(void);

/* Tasks whose step ended them in the running batch: their userdata must be freed before
 * the next callback starts ("right after the step that ended the task"). */
static uint32_t g_just_ended[MAXA];
static int g_njust_ended;
static void aux_check_just_ended(void);

static uint32_t ax_new(void) {
    if (g_nax == 0) g_nax = 1;
    if (g_nax >= g_capax) {
        g_capax = g_capax ? g_capax * 2 : 256;
        g_ax = xrealloc(g_ax, g_capax * sizeof *g_ax);
    }
    g_ax[g_nax] = (auxid_t){0, false};
    return g_nax++;
}

static void *axp(uint32_t k) { return k ? (void *)(uintptr_t)(AUX_BASE + k) : NULL; }

static void ax_free(void *p) {
    uintptr_t v = (uintptr_t)p;
    if (v <= AUX_BASE || v - AUX_BASE >= g_nax) MFAIL("aux free(%p): not an aux id", p);
    uint32_t k = (uint32_t)(v - AUX_BASE);
    if (g_ax[k].refused) MFAIL("aux id %u freed though its hand-over was refused", k);
    if (++g_ax[k].frees > 1) MFAIL("aux id %u freed %d times", k, g_ax[k].frees);
}

static void ax_expect_freed(uint32_t k, const char *what) {
    if (k && g_ax[k].frees != 1) MFAIL("%s: aux id %u freed %d times, expected once", what, k, g_ax[k].frees);
}

static void aux_check_just_ended(void) {
    for (int k = 0; k < g_njust_ended; k++) ax_expect_freed(g_just_ended[k], "task userdata at the next callback");
    g_njust_ended = 0;
}

static int aux_free_slots(void) {
    int n = 0;
    for (int i = 0; i < MAXA; i++) n += !g_a[i].live;
    return n;
}

static int aux_alloc(int kind, int loopi) {
    for (int i = 0; i < MAXA; i++) {
        if (g_a[i].live) continue;
        aux_t *E = &g_a[i];
        memset(E, 0, sizeof *E);
        E->kind = kind;
        E->live = true;
        E->loop = loopi;
        E->st = ST_P;
        E->due = E->free_by = E->next_step = E->ended_at = -1;
        E->waiter = E->peer = E->awaited = -1;
        g_loops[loopi].nfuts++;
        return i;
    }
    return -1;
}

/* Forgets an entry once nothing about it is left to check. */
static void aux_remove_maybe(int i) {
    aux_t *E = &g_a[i];
    if (!E->live || E->held || E->waiter >= 0 || E->due >= 0 || E->free_by >= 0 || E->close_free) return;
    if (E->kind == AK_TASK && (E->next_step >= 0 || E->ended_at >= 0 || E->awaited >= 0)) return;
    if (E->st == ST_P && !E->orphan) return;
    if (E->peer >= 0) g_a[E->peer].peer = -1;
    mloop_t *L = &g_loops[E->loop];
    memset(E, 0, sizeof *E);
    L->nfuts--;
    if (L->freed && L->nfuts == 0) L->used = false;
}

static bool msg_eq(const char *a, const char *b) {
    if (!a || !b) return a == b;
    return strcmp(a, b) == 0;
}

/* Compares a future we hold with the model. */
static void aux_check(int i) {
    aux_t *E = &g_a[i];
    if (!E->live || !E->held || E->orphan) return;
    g_checks += 3;
    MCHECK_EQ(afut_done(E->f), E->st != ST_P);
    MCHECK_EQ(afut_cancelled(E->f), E->st == ST_C);
    if (E->kind == AK_TASK) {
        g_checks += 3;
        MCHECK(afut_is_task(E->f));
        char got[160];
        const char *word = E->st == ST_C ? "cancelled" : E->st != ST_P ? "finished" : E->ncancel ? "cancelling" : "pending";
        afut_describe(E->f, got, sizeof got);
        if (strncmp(got, "<Task ", 6) != 0 || strncmp(got + 6, word, strlen(word)) != 0)
            MFAIL("task %d: describe \"%s\", expected \"<Task %s...\"", i, got, word);
        if (afut_task_cancelling(E->f) != E->ncancel)
            MFAIL("task %d: afut_task_cancelling %d, expected %d", i, afut_task_cancelling(E->f), E->ncancel);
    }
    if (E->st == ST_C) {
        const char *m = afut_cancel_message(E->f);
        if (!msg_eq(m, E->cmsg))
            MFAIL("aux %d (kind %d): cancel message \"%s\", expected \"%s\"", i, E->kind, m ? m : "(null)",
                  E->cmsg ? E->cmsg : "(null)");
    } else if (E->st == ST_R) {
        void *v = (void *)0x5a5a;
        MCHECK_EQ(afut_result(E->f, &v), AFUT_OK);
        if (v != axp(E->vid)) MFAIL("aux %d (kind %d): result %p, expected %p", i, E->kind, v, axp(E->vid));
    } else if (E->st == ST_E) {
        afut_exception_t e;
        MCHECK_EQ(afut_exception(E->f, &e), AFUT_OK); /* also marks it retrieved */
        MCHECK_EQ(e.code, E->code);
        if (e.detail != axp(E->vid)) MFAIL("aux %d: detail %p, expected %p", i, e.detail, axp(E->vid));
        if (!msg_eq(e.message, E->emsg)) MFAIL("aux %d: exception message \"%s\"", i, e.message ? e.message : "(null)");
    }
}

/* Entry `i` just became done: the task awaiting it steps on iteration `r`. */
static void aux_on_done(int i, long long r) {
    int w = g_a[i].waiter;
    if (w < 0) return;
    if (g_a[w].next_step >= 0) MFAIL("model: task %d already scheduled", w);
    g_a[w].next_step = r;
}

/* Entry `i` was cancelled (model side) while the loop's next iteration is `r`. */
static void aux_cancelled(int i, const char *msg, long long r) {
    aux_t *E = &g_a[i];
    E->st = ST_C;
    E->cmsg = msg;
    if (E->kind == AK_SLEEP) {
        E->due = -1;
        if (E->vid) E->free_by = r; /* the timer is cancelled on the next iteration */
    } else if (E->kind == AK_WRAP) {
        E->due = -1; /* a pending mirror finds it cancelled */
        if (E->peer >= 0 && g_a[E->peer].st == ST_P) {
            g_a[E->peer].due = r;
            g_a[E->peer].due_msg = msg;
        }
    }
    aux_on_done(i, r);
}

/* Random exception / cancel messages; tasks are cancelled with a non-NULL one. */
static const char *aux_msg(bool may_be_null) {
    if (may_be_null && rnd(3) == 0) return NULL;
    return k_msgs[rnd(4)];
}


/* A task's step: does what its script says (one op per step) and checks what it is told. */
static void aux_step(afut_t *task, afut_t *awaited, void *ud) {
    uint32_t k = (uint32_t)((uintptr_t)ud - AUX_BASE);
    int i = -1;
    for (int j = 0; j < MAXA && i < 0; j++)
        if (g_a[j].live && g_a[j].kind == AK_TASK && g_a[j].udid == k && g_a[j].f == task) i = j;
    if (i < 0) MFAIL("step of a task the model does not know (%p)", (void *)task);
    aux_t *E = &g_a[i];
    if (!on_loop_thread()) MFAIL("task step off the loop thread");
    aux_check_just_ended();
    if (g_run_loop != E->loop) MFAIL("task %d: step outside a run of its loop", i);
    mloop_t *L = &g_loops[E->loop];
    long long r = (long long)L->runs, nxt = r + 1;
    if (E->next_step != r) MFAIL("task %d: step ran in iteration %lld, expected %lld", i, r, E->next_step);
    if (E->st != ST_P) MFAIL("task %d: step of a finished task", i);
    if (g_ax[E->udid].frees) MFAIL("task %d: userdata freed before the task ended", i);
    E->next_step = -1;
    g_stat_steps++;
    TRACE("%*stask %d step (iteration %lld, awaited %d, pend %d)\n", g_depth * 2, "", i, r, E->awaited, E->pend);
    bool aw_c = false;
    const char *aw_msg = NULL;
    g_checks++;
    if (E->awaited >= 0) {
        int ai = E->awaited;
        aux_t *A = &g_a[ai];
        if (awaited != A->f) MFAIL("task %d: step got awaited %p, expected %p", i, (void *)awaited, (void *)A->f);
        g_checks += 2;
        MCHECK(afut_done(awaited));
        MCHECK_EQ(afut_cancelled(awaited), A->st == ST_C);
        if (A->st == ST_C) {
            aw_c = true;
            aw_msg = A->cmsg;
        } else if (A->st == ST_E) {
            afut_exception_t e;
            g_checks++;
            MCHECK_EQ(afut_exception(awaited, &e), AFUT_OK);
            MCHECK_EQ(e.code, A->code);
        }
        A->waiter = -1;
        E->awaited = -1;
        aux_remove_maybe(ai);
    } else if (awaited) {
        MFAIL("task %d: step got awaited %p, expected NULL", i, (void *)awaited);
    }
    const char *pm = (const char *)0x1;
    g_checks++;
    bool req = afut_task_cancel_requested(task, &pm);
    MCHECK_EQ(req, E->pend);
    if (req && !msg_eq(pm, E->pmsg)) MFAIL("task %d: pending cancel message \"%s\"", i, pm ? pm : "(null)");
    int op = E->pos < E->nscript ? E->script[E->pos++] : OP_RESULT;
    if (rnd(8) == 0) {
        /* a task cannot await itself, nor a loop-less future (afut_task_await) */
        afut_t *lf = afut_new(NULL);
        g_calls += 4;
        MCHECK_EQ(afut_task_await(task, task), AFUT_ERR_INVALID_ARGUMENT);
        MCHECK_EQ(afut_task_await(task, lf), AFUT_ERR_INVALID_ARGUMENT);
        afut_unref(lf);
    }
    if ((op == OP_GATE || op == OP_SLEEP) && aux_free_slots() < 1) op = OP_YIELD;
    if (op == OP_WRAP && aux_free_slots() < 2) op = OP_YIELD;
    bool ended = false, awaiting = false;
    switch (op) {
    case OP_GATE: {
        int g = aux_alloc(AK_GATE, E->loop);
        aux_t *G = &g_a[g];
        G->held = true;
        g_calls++;
        G->f = afut_loop_create_future(L->l);
        if (!G->f) MFAIL("afut_loop_create_future");
        if (!E->pend && rnd(4) == 0) { /* awaiting a done future: the step comes next iteration */
            g_calls++;
            MCHECK_EQ(afut_set_result(G->f, NULL, NULL), AFUT_OK);
            G->st = ST_R;
        }
        G->waiter = i;
        E->awaited = g;
        g_calls++;
        MCHECK_EQ(afut_task_await(task, G->f), AFUT_OK);
        if (E->pend) aux_cancelled(g, E->pmsg, nxt);
        else if (G->st != ST_P) aux_on_done(g, nxt);
        E->pend = false;
        awaiting = true;
        break;
    }
    case OP_SLEEP: {
        int s = aux_alloc(AK_SLEEP, E->loop);
        aux_t *S = &g_a[s];
        uint32_t dv = rnd(6);
        double delay = dv == 0 ? 1e-6 : dv == 1 ? INFINITY : 0.0; /* INFINITY: until cancelled or closed */
        S->vid = rnd(4) ? ax_new() : 0;
        g_calls++;
        S->f = afut_sleep(L->l, delay, axp(S->vid), S->vid ? ax_free : NULL);
        if (!S->f) MFAIL("afut_sleep");
        g_stat_sleeps++;
        if (delay > 0 && isfinite(delay)) spin_past(L, afut_loop_time(L->l) + delay);
        S->due = isfinite(delay) ? nxt : -1;
        S->waiter = i;
        E->awaited = s;
        g_calls++;
        MCHECK_EQ(afut_task_await(task, S->f), AFUT_OK);
        S->held = rnd(2) != 0;
        if (!S->held) {
            g_calls++;
            afut_unref(S->f); /* the task keeps its own reference */
        }
        if (E->pend) aux_cancelled(s, E->pmsg, nxt);
        E->pend = false;
        awaiting = true;
        break;
    }
    case OP_WRAP: {
        int s = aux_alloc(AK_SRC, E->loop), w = aux_alloc(AK_WRAP, E->loop);
        aux_t *S = &g_a[s], *W = &g_a[w];
        S->held = W->held = true;
        S->peer = w;
        W->peer = s;
        g_calls += 2;
        S->f = afut_new(NULL);
        if (!E->pend && rnd(4) == 0) {
            S->vid = rnd(2) ? ax_new() : 0;
            g_calls++;
            MCHECK_EQ(afut_set_result(S->f, axp(S->vid), S->vid ? ax_free : NULL), AFUT_OK);
            S->st = ST_R;
            W->due = nxt;
            W->due_st = ST_R;
            W->due_vid = S->vid;
        }
        W->f = afut_wrap_future(L->l, S->f);
        if (!S->f || !W->f || W->f == S->f) MFAIL("afut_wrap_future");
        g_stat_wraps++;
        W->waiter = i;
        E->awaited = w;
        g_calls++;
        MCHECK_EQ(afut_task_await(task, W->f), AFUT_OK);
        if (E->pend) aux_cancelled(w, E->pmsg, nxt);
        E->pend = false;
        awaiting = true;
        break;
    }
    case OP_RESULT: {
        uint32_t vid = rnd(2) ? ax_new() : 0;
        g_calls++;
        afut_status_t rc = afut_set_result(task, axp(vid), vid ? ax_free : NULL);
        if (E->pend) {
            MCHECK_EQ(rc, AFUT_ERR_CANCELLED);
            if (vid) g_ax[vid].refused = true;
        } else {
            MCHECK_EQ(rc, AFUT_OK);
            E->st = ST_R;
            E->vid = vid;
            ended = true;
        }
        break;
    }
    case OP_EXC: {
        uint32_t did = rnd(2) ? ax_new() : 0;
        int32_t code = 1 + (int32_t)rnd(500);
        const char *msg = aux_msg(true);
        g_calls++;
        afut_status_t rc = afut_set_exception(task, code, msg, axp(did), did ? ax_free : NULL);
        if (E->pend) {
            MCHECK_EQ(rc, AFUT_ERR_CANCELLED);
            if (did) g_ax[did].refused = true;
        } else {
            MCHECK_EQ(rc, AFUT_OK);
            E->st = ST_E;
            E->vid = did;
            E->code = code;
            E->emsg = msg;
            ended = true;
        }
        break;
    }
    case OP_SELFCANCEL:
        if (!E->pend) {
            const char *msg = aux_msg(false);
            g_calls++;
            MCHECK(afut_cancel(task, msg));
            E->ncancel++;
            E->pend = true;
            E->pmsg = msg;
        }
        break;
    default: break; /* OP_YIELD */
    }
    if ((awaiting || ended) && rnd(4) == 0) {
        /* one await or completion per step */
        afut_t *other = afut_loop_create_future(L->l);
        g_calls += 3;
        MCHECK_EQ(afut_task_await(task, awaiting ? g_a[E->awaited].f : other), AFUT_ERR_INVALID_STATE);
        afut_unref(other);
    }
    if (!ended && !awaiting) {
        if (E->pend) {
            E->st = ST_C;
            E->cmsg = E->pmsg;
            ended = true;
        } else if (aw_c) {
            E->st = ST_C;
            E->cmsg = aw_msg;
            ended = true;
        } else {
            E->next_step = nxt; /* yields */
        }
    }
    if (ended) {
        E->pend = false;
        E->ended_at = r; /* userdata freed right after this step */
        if (g_njust_ended < MAXA) g_just_ended[g_njust_ended++] = E->udid;
        TRACE("%*stask %d ended, state %d\n", g_depth * 2, "", i, E->st);
    }
}

static void aux_new_task(int loopi) {
    mloop_t *L = &g_loops[loopi];
    int i = aux_alloc(AK_TASK, loopi);
    if (i < 0) return;
    aux_t *E = &g_a[i];
    static const uint8_t ops[] = {OP_YIELD, OP_YIELD, OP_GATE, OP_GATE, OP_SLEEP, OP_SLEEP, OP_WRAP, OP_WRAP,
                                  OP_RESULT, OP_EXC, OP_SELFCANCEL};
    E->nscript = 1 + (int)rnd(6);
    for (int k = 0; k < E->nscript; k++) E->script[k] = ops[rnd(sizeof ops)];
    E->udid = ax_new();
    E->held = true;
    g_calls++;
    E->f = afut_task_new(L->l, aux_step, axp(E->udid), ax_free);
    if (!E->f) MFAIL("afut_task_new failed");
    E->next_step = (long long)L->runs + 1;
    g_stat_tasks++;
    TRACE("aux: new task %d (script of %d)\n", i, E->nscript);
    aux_check(i);
}

static void aux_new_sleep(int loopi) {
    mloop_t *L = &g_loops[loopi];
    int i = aux_alloc(AK_SLEEP, loopi);
    if (i < 0) return;
    aux_t *E = &g_a[i];
    uint32_t v = rnd(4);
    double delay = v == 0 ? 1e-6 : v == 1 ? INFINITY : v == 2 ? -1.0 : 0.0;
    E->vid = rnd(4) ? ax_new() : 0;
    E->held = true;
    g_calls++;
    E->f = afut_sleep(L->l, delay, axp(E->vid), E->vid ? ax_free : NULL);
    if (!E->f) MFAIL("afut_sleep failed");
    g_stat_sleeps++;
    if (delay > 0 && isfinite(delay)) spin_past(L, afut_loop_time(L->l) + delay);
    if (isfinite(delay)) E->due = (long long)L->runs + 1;
    TRACE("aux: new sleep %d (delay %g)\n", i, delay);
    aux_check(i);
}

/* Completes a loop-less source (model and real): how 0 result, 1 exception, 2 cancel. */
static void aux_complete(int i, uint32_t how) {
    aux_t *E = &g_a[i];
    mloop_t *L = &g_loops[E->loop];
    long long nxt = (long long)L->runs + 1;
    bool pending = E->st == ST_P;
    if (how == 0) {
        uint32_t vid = rnd(2) ? ax_new() : 0;
        g_calls++;
        afut_status_t rc = afut_set_result(E->f, axp(vid), vid ? ax_free : NULL);
        MCHECK_EQ(rc, pending ? AFUT_OK : AFUT_ERR_INVALID_STATE);
        if (!pending) {
            if (vid) g_ax[vid].refused = true;
            return;
        }
        E->st = ST_R;
        E->vid = vid;
    } else if (how == 1) {
        uint32_t did = rnd(2) ? ax_new() : 0;
        int32_t code = 1 + (int32_t)rnd(500);
        const char *msg = aux_msg(true);
        g_calls++;
        afut_status_t rc = afut_set_exception(E->f, code, msg, axp(did), did ? ax_free : NULL);
        MCHECK_EQ(rc, pending ? AFUT_OK : AFUT_ERR_INVALID_STATE);
        if (!pending) {
            if (did) g_ax[did].refused = true;
            return;
        }
        E->st = ST_E;
        E->vid = did;
        E->code = code;
        E->emsg = msg;
        if (E->kind == AK_GATE) {
            afut_exception_t e;
            g_calls++;
            MCHECK_EQ(afut_exception(E->f, &e), AFUT_OK); /* no never-retrieved report to expect */
        }
    } else {
        const char *msg = aux_msg(true);
        g_calls++;
        MCHECK_EQ(afut_cancel(E->f, msg), pending);
        if (!pending) return;
        if (E->kind != AK_SRC) {
            aux_cancelled(i, msg, nxt);
            return;
        }
        E->st = ST_C;
        E->cmsg = msg;
    }
    if (E->kind == AK_SRC) {
        E->due = -1; /* a cancel from the wrapper now finds it done */
        int w = E->peer;
        if (w >= 0 && !g_a[w].orphan && g_a[w].st == ST_P) {
            aux_t *W = &g_a[w];
            W->due = nxt;
            W->due_st = E->st;
            W->due_vid = E->vid;
            W->due_code = E->code;
            W->due_msg = E->st == ST_C ? E->cmsg : E->emsg;
        }
    } else {
        aux_on_done(i, nxt);
    }
}

static void aux_new_wrap(int loopi) {
    mloop_t *L = &g_loops[loopi];
    if (aux_free_slots() < 2) return;
    int s = aux_alloc(AK_SRC, loopi), w = aux_alloc(AK_WRAP, loopi);
    aux_t *S = &g_a[s], *W = &g_a[w];
    S->held = W->held = true;
    S->peer = w;
    W->peer = s;
    g_calls++;
    S->f = afut_new(NULL);
    if (!S->f) MFAIL("afut_new(NULL)");
    bool pre = rnd(3) == 0;
    if (pre) aux_complete(s, rnd(3)); /* done before it is wrapped: mirrored all the same */
    g_calls++;
    W->f = afut_wrap_future(L->l, S->f);
    if (!W->f || W->f == S->f) MFAIL("afut_wrap_future failed");
    if (pre) {
        W->due = (long long)L->runs + 1;
        W->due_st = S->st;
        W->due_vid = S->vid;
        W->due_code = S->code;
        W->due_msg = S->st == ST_C ? S->cmsg : S->emsg;
    }
    g_stat_wraps++;
    TRACE("aux: new wrap %d of source %d\n", w, s);
    aux_check(s);
    aux_check(w);
}

static void aux_cancel_task(int i) {
    aux_t *E = &g_a[i];
    long long nxt = (long long)g_loops[E->loop].runs + 1;
    const char *msg = E->pend ? E->pmsg : aux_msg(false);
    bool expect = E->st == ST_P;
    g_calls++;
    bool rc = afut_cancel(E->f, msg);
    MCHECK_EQ(rc, expect);
    if (!expect) return;
    g_stat_task_cancels++;
    E->ncancel++;
    if (E->awaited >= 0 && g_a[E->awaited].st == ST_P) {
        aux_cancelled(E->awaited, msg, nxt); /* the awaited future is cancelled at once */
        aux_check(E->awaited);
    } else {
        E->pend = true;
        E->pmsg = msg;
    }
}

/* Gives up our reference. */
static void aux_release(int i) {
    aux_t *E = &g_a[i];
    if (!E->held) return;
    if (E->st == ST_E) {
        g_calls++;
        MCHECK_EQ(afut_exception(E->f, NULL), AFUT_OK);
    }
    E->held = false;
    if (E->kind == AK_SLEEP && E->st == ST_R && E->vid && E->waiter < 0 && !E->orphan)
        E->free_by = (long long)g_loops[E->loop].runs + 1; /* freed with the future, which the loop
                                                            * may hold until its next iteration */
    g_calls++;
    afut_unref(E->f);
    aux_remove_maybe(i);
}

static bool aux_may_release(int i) {
    aux_t *E = &g_a[i];
    if (!E->held) return false;
    if (E->orphan || E->st != ST_P) return true;
    if (E->kind == AK_WRAP) return false; /* it could still get an exception nobody reads */
    if (E->kind == AK_TASK)
        for (int k = E->pos; k < E->nscript; k++)
            if (E->script[k] == OP_EXC) return false;
    return true;
}

static int aux_pick(unsigned kinds, bool want_pending) {
    int start = (int)rnd(MAXA);
    for (int k = 0; k < MAXA; k++) {
        int i = (start + k) % MAXA;
        aux_t *E = &g_a[i];
        if (!E->live || !E->held || E->orphan || !(kinds & (1u << E->kind))) continue;
        if (want_pending && E->st != ST_P) continue;
        return i;
    }
    return -1;
}

static void aux_action(int loopi) {
    int i;
    switch (rnd(12)) {
    case 0:
    case 1: aux_new_task(loopi); break;
    case 2: aux_new_sleep(loopi); break;
    case 3: aux_new_wrap(loopi); break;
    case 4:
    case 5:
        i = aux_pick((1u << AK_GATE) | (1u << AK_SRC), rnd(4) != 0);
        if (i >= 0) aux_complete(i, rnd(3));
        break;
    case 6:
        i = aux_pick((1u << AK_SLEEP) | (1u << AK_WRAP), rnd(4) != 0);
        if (i >= 0) aux_complete(i, 2);
        break;
    case 7:
    case 8:
        i = aux_pick(1u << AK_TASK, rnd(4) != 0);
        if (i >= 0) aux_cancel_task(i);
        break;
    case 11:
        i = aux_pick(1u << AK_TASK, false);
        if (i >= 0 && rnd(2)) {
            /* only a step may complete its own task */
            uint32_t vid = ax_new();
            g_calls++;
            MCHECK_EQ(afut_set_result(g_a[i].f, axp(vid), ax_free), AFUT_ERR_INVALID_STATE);
            g_ax[vid].refused = true;
            aux_check(i);
            break;
        }
        for (i = 0; i < MAXA; i++) aux_check(i);
        break;
    case 9:
    case 10: {
        int start = (int)rnd(MAXA);
        for (int k = 0; k < MAXA; k++)
            if (aux_may_release((start + k) % MAXA)) {
                aux_release((start + k) % MAXA);
                break;
            }
        break;
    }
    default: break;
    }
}

/* After run_once number `r` of loop `loopi`: the events of that iteration. */
static void aux_after_run(int loopi, long long r) {
    for (int i = 0; i < MAXA; i++) {
        aux_t *E = &g_a[i];
        if (!E->live || E->loop != loopi || E->orphan) continue;
        if (E->kind == AK_TASK && E->next_step >= 0 && E->next_step <= r)
            MFAIL("task %d: the step due in iteration %lld did not run", i, E->next_step);
    }
    for (int i = 0; i < MAXA; i++) {
        aux_t *E = &g_a[i];
        if (!E->live || E->loop != loopi || E->orphan || E->due != r) continue;
        E->due = -1;
        if (E->st != ST_P) continue;
        if (E->kind == AK_SLEEP) {
            E->st = ST_R; /* the future owns the value now */
        } else if (E->kind == AK_WRAP) {
            E->st = E->due_st;
            E->vid = E->due_vid;
            E->code = E->due_code;
            if (E->st == ST_C) E->cmsg = E->due_msg;
            else E->emsg = E->due_msg;
            g_stat_mirrors[E->st - ST_R]++;
        } else if (E->kind == AK_SRC) {
            E->st = ST_C; /* its wrapper was cancelled */
            E->cmsg = E->due_msg;
            g_stat_mirrors[3]++;
            continue;
        }
        aux_on_done(i, r + 1);
    }
    for (int i = 0; i < MAXA; i++) {
        aux_t *E = &g_a[i];
        if (!E->live || E->loop != loopi) continue;
        if (E->free_by >= 0 && E->free_by <= r) {
            ax_expect_freed(E->vid, "sleep value");
            g_stat_value_frees[E->st == ST_C]++;
            E->free_by = -1;
        }
        if (E->kind == AK_TASK && E->ended_at >= 0) {
            ax_expect_freed(E->udid, "task userdata after its last step");
            g_stat_task_end[E->st - ST_R]++;
            E->ended_at = -1;
        }
        aux_check(i);
        aux_remove_maybe(i);
    }
}

/* Model side of closing loop `loopi` (before the real close). */
static void aux_close_model(int loopi) {
    for (int i = 0; i < MAXA; i++) {
        aux_t *E = &g_a[i];
        if (!E->live || E->loop != loopi || E->orphan) continue;
        if (E->kind == AK_TASK && E->st == ST_P) {
            E->st = ST_C;
            E->cmsg = "the loop was closed";
            if (E->awaited >= 0) g_a[E->awaited].waiter = -1;
            E->awaited = -1;
            E->next_step = -1;
            E->pend = false;
            E->close_free = true;
            if (E->held || k_strict_released_task_report) g_destroyed_expected++;
            else g_destroyed_maybe++;
            TRACE("aux: close ends task %d (held %d, awaiting kind %d, pos %d/%d)\n", i, E->held,
                  E->awaited >= 0 ? g_a[E->awaited].kind : 0, E->pos, E->nscript);
        }
        if (E->kind == AK_SLEEP && E->vid && (E->st == ST_P || E->free_by >= 0)) E->close_free = true;
        E->free_by = -1;
        E->due = -1;
        E->waiter = -1;
        if (E->kind == AK_WRAP && E->peer >= 0) {
            g_a[E->peer].orphan = true;
            g_a[E->peer].due = -1;
        }
    }
}

/* After the real close (or free) of loop `loopi`. */
static void aux_after_close(int loopi) {
    for (int i = 0; i < MAXA; i++) {
        aux_t *E = &g_a[i];
        if (!E->live || E->loop != loopi) continue;
        if (E->close_free) {
            E->close_free = false;
            if (E->kind == AK_TASK) {
                ax_expect_freed(E->udid, "task userdata at the close");
                aux_check(i); /* CANCELLED, "the loop was closed" */
                g_stat_closed_tasks++;
            } else {
                ax_expect_freed(E->vid, "sleep value at the close");
                g_stat_value_frees[2]++;
            }
        }
        if (E->kind == AK_TASK && E->ended_at >= 0) E->ended_at = -1;
        E->orphan = true;
    }
    for (int i = 0; i < MAXA; i++)
        if (g_a[i].live && g_a[i].loop == loopi) aux_remove_maybe(i);
}

/* Releases what we hold of loop `loopi` (freed) so that its slot can be reused. */
static void aux_release_loop(int loopi) {
    for (int i = 0; i < MAXA; i++)
        if (g_a[i].live && g_a[i].loop == loopi) aux_release(i);
}

static void aux_teardown(void) {
    for (int i = 0; i < MAXA; i++)
        if (g_a[i].live) MFAIL("aux %d (kind %d) still live after teardown", i, g_a[i].kind);
    for (uint32_t k = 1; k < g_nax; k++) {
        if (g_ax[k].refused ? g_ax[k].frees != 0 : g_ax[k].frees != 1)
            MFAIL("aux id %u: freed %d times (refused %d)", k, g_ax[k].frees, g_ax[k].refused);
    }
    free(g_ax);
    g_ax = NULL;
    g_nax = g_capax = 0;
}

static int *g_due; /* run_once's due timers */
static size_t g_capdue;

static int timer_cmp(const void *a, const void *b) {
    const hrec_t *x = &g_h[*(const int *)a], *y = &g_h[*(const int *)b];
    if (x->cls != y->cls) return x->cls < y->cls ? -1 : 1;
    if (x->cls == 2 && x->key != y->key) return x->key < y->key ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq ? 1 : 0;
}

/* Frees a handle record once nothing refers to it any more. */
static void h_forget(int hi) {
    if (g_h[hi].live) MFAIL("model: forgetting a live handle");
    h_release(hi);
}

static void act_run_once(int loopi) {
    TRACE("run_once(loop %d)\n", loopi);
    mloop_t *L = &g_loops[loopi];
    if (L->closed) {
        size_t ran = 777;
        g_calls++;
        MCHECK_EQ(afut_loop_run_once(L->l, 0, &ran), AFUT_ERR_LOOP_CLOSED);
        MCHECK_EQ(ran, 777);
        return;
    }
    /* The batch: the ready queue, then the due timers in deadline order. */
    itemq_t *b = &g_frames[0];
    if (g_nframes != 0) MFAIL("model: run_once with frames");
    b->n = b->head = 0;
    for (size_t i = 0; i < L->q.n; i++) {
        item_t it = L->q.v[i];
        if (it.kind == IT_CALL) {
            if (!g_h[it.hr].live) { h_forget(it.hr); continue; }
            g_h[it.hr].in_batch = true;
        }
        q_push(b, it);
    }
    L->q.n = 0;
    size_t nt = 0, keep = 0;
    if (g_capdue < L->ntimers) {
        g_capdue = L->ntimers * 2;
        g_due = xrealloc(g_due, g_capdue * sizeof *g_due);
    }
    int *due = g_due;
    for (size_t i = 0; i < L->ntimers; i++) {
        int hi = L->timers[i];
        if (!g_h[hi].live) { h_forget(hi); continue; }
        if (g_h[hi].cls != 9) {
            due[nt++] = hi;
        } else {
            L->timers[keep++] = hi;
        }
    }
    L->ntimers = keep;
    if (nt > 1) qsort(due, nt, sizeof due[0], timer_cmp);
    for (size_t i = 0; i < nt; i++) {
        g_h[due[i]].in_batch = true;
        q_push(b, (item_t){.kind = IT_CALL, .hr = due[i], .id = g_h[due[i]].id});
    }
    g_frame_is_loop[0] = true;
    g_nframes = 1;
    g_run_loop = loopi;
    g_ran = 0;
    g_stat_runs++;
    size_t ran = 777;
    g_calls++;
    L->runs++;
    g_njust_ended = 0;
    unsigned long long advances = g_stat_advances;
    double before = afut_loop_time(L->l);
    afut_status_t rc = afut_loop_run_once(L->l, 0, &ran);
    /* A virtual clock moves only by afut_loop_advance_time (the steps of tasks may call it). */
    if (L->virt && advances == g_stat_advances && afut_loop_time(L->l) != before)
        MFAIL("the virtual clock moved from %.17g to %.17g in run_once", before, afut_loop_time(L->l));
    g_run_loop = -1;
    g_njust_ended = 0; /* checked below (aux_after_run) */
    MCHECK_EQ(rc, AFUT_OK);
    if (g_nframes != 1) MFAIL("model: frames after run_once");
    while (b->head < b->n) {
        item_t it = b->v[b->head++];
        if (it.kind == IT_CALL && !g_h[it.hr].live) { h_forget(it.hr); continue; }
        MFAIL("callback id %u (%s) did not run", it.id, it.kind == IT_CALL ? "call" : "done");
    }
    g_nframes = 0;
    if (L->aux) {
        /* task steps, sleep timers and wrapper hops also count */
        if (ran < g_ran) MFAIL("run_once ran %zu callbacks, the model's alone are %zu", ran, g_ran);
        aux_after_run(loopi, (long long)L->runs);
    } else {
        MCHECK_EQ(ran, g_ran);
    }
}

/* Closes a loop: everything queued is dropped (model side); then the real close. */
static void model_close(int loopi) {
    mloop_t *L = &g_loops[loopi];
    aux_close_model(loopi);
    L->closed = true;
    for (size_t i = 0; i < L->q.n; i++) {
        item_t it = L->q.v[i];
        if (it.kind == IT_CALL) {
            if (g_h[it.hr].live) {
                model_free(it.id);
                h_dead(it.hr);
            }
            h_forget(it.hr);
        } else {
            model_free(it.id);
            g_f[it.slot].irefs--;
            mf_maybe_free(it.slot);
        }
    }
    L->q.n = 0;
    for (size_t i = 0; i < L->ntimers; i++) {
        int hi = L->timers[i];
        if (g_h[hi].live) {
            model_free(g_h[hi].id);
            h_dead(hi);
        }
        h_forget(hi);
    }
    L->ntimers = 0;
}

static void new_loop(void) {
    int i;
    for (i = 0; i < MAXL; i++)
        if (!g_loops[i].used) break;
    for (int j = 0; i == MAXL && j < MAXL; j++) {
        /* Every slot holds a freed loop that futures outlive: let one loop's futures go
         * (found by the fuzzer: fuzz/corpus/regress-out-of-loops). */
        if (!g_loops[j].freed) continue;
        for (int s = 0; s < MAXF; s++)
            while (g_f[s].live && g_f[s].loop == j && g_f[s].urefs > 0) act_unref(s);
        aux_release_loop(j);
        if (!g_loops[j].used) i = j;
    }
    if (i == MAXL) MFAIL("model: out of loops");
    mloop_t *L = &g_loops[i];
    itemq_t q = L->q;
    int *timers = L->timers, *liveh = L->liveh;
    size_t ct = L->captimers, cl = L->capliveh;
    memset(L, 0, sizeof *L);
    L->q = q;
    L->q.n = 0;
    L->timers = timers;
    L->captimers = ct;
    L->liveh = liveh;
    L->capliveh = cl;
    L->used = true;
    L->epoch = ++g_epoch;
    L->aux = rnd(2) != 0;
    g_calls++;
    L->l = afut_loop_new();
    if (!L->l) MFAIL("afut_loop_new failed");
    L->virt = rnd(3) == 0;
    if (L->virt) {
        g_calls++;
        MCHECK_EQ(afut_loop_set_virtual_clock(L->l, false), AFUT_OK);
        MCHECK(afut_loop_time(L->l) == 0.0);
        g_stat_virtual_loops++;
    }
    L->handler_id = id_new(ID_HANDLER);
    g_ids[L->handler_id].regs++;
    g_calls++;
    afut_loop_set_exception_handler(L->l, on_report, idp(L->handler_id), ud_free);
    g_cur = i;
}

/* afut_loop_free on a (closed or open) loop: futures of it become orphans. */
static void free_loop(int loopi) {
    mloop_t *L = &g_loops[loopi];
    if (!L->closed) model_close(loopi);
    /* Reports of futures freed later would go to stderr: read those exceptions now. */
    for (int s = 0; s < MAXF; s++)
        if (g_f[s].live && g_f[s].loop == loopi && g_f[s].st == ST_E && g_f[s].unretrieved) {
            if (g_f[s].urefs == 0) continue; /* released by the close, reported to the handler */
            retrieve_now(s);
        }
    model_free(L->handler_id);
    g_calls++;
    afut_loop_free(L->l);
    aux_after_close(loopi);
    L->freed = true;
    if (L->nfuts == 0) L->used = false;
}

static void act_loop_cycle(void) {
    g_stat_cycles++;
    TRACE("loop_cycle\n");
    if (g_old >= 0) {
        free_loop(g_old);
        g_old = -1;
    }
    if (g_cur >= 0) {
        if (rnd(2)) {
            model_close(g_cur);
            g_calls++;
            MCHECK_EQ(afut_loop_close(g_loops[g_cur].l), AFUT_OK);
            aux_after_close(g_cur);
            if (rnd(2)) {
                g_calls++;
                MCHECK_EQ(afut_loop_close(g_loops[g_cur].l), AFUT_OK); /* idempotent */
            }
            g_old = g_cur;
        } else {
            free_loop(g_cur);
        }
    }
    new_loop();
}

/* ------------------------------------------------------------------------------------------
 * Callbacks. */

static bool on_loop_thread(void) { return pthread_equal(pthread_self(), g_main_thread); }

/* What a callback does to the API while it runs; `s` is its own future or -1. */
static void reenter(int s) {
    g_depth++;
    uint32_t r = rnd(g_depth > 3 ? 8 : 24);
    mloop_t *L = cur_loop();
    mfut_t *F = s >= 0 ? &g_f[s] : NULL;
    switch (r) {
    case 8: if (F) act_add_cb(s); break;
    case 9: if (F) act_remove_cb(s); break;
    case 10: if (F) act_cancel(s); break;
    case 11: if (F) act_unref(s); break;
    case 12: if (F) act_result(s); break;
    case 13: if (F) act_exception(s); break;
    case 14:
        if (F) {
            /* afut_wait on the loop's own thread while it runs */
            bool same = F->loop >= 0 && F->loop == g_run_loop;
            g_calls++;
            afut_status_t rc = afut_wait(F->f, 0);
            MCHECK_EQ(rc, same ? AFUT_ERR_WRONG_THREAD : AFUT_OK);
        }
        break;
    case 15: if (L) act_schedule(g_cur, -1); break;
    case 16: if (L) act_schedule(g_cur, (int)rnd(4)); break;
    case 17: if (L) act_cancel_handle(g_cur); break;
    case 18: {
        int o = pick_slot(true);
        if (o >= 0) {
            uint32_t k = rnd(3);
            if (k == 0) act_set_result(o);
            else if (k == 1) act_set_exception(o);
            else act_cancel(o);
        }
        break;
    }
    case 19: {
        int o = pick_slot(true);
        if (o >= 0) act_add_cb(o);
        break;
    }
    case 20:
        if (g_run_loop >= 0) {
            size_t ran = 777;
            g_calls++;
            MCHECK_EQ(afut_loop_run_once(g_loops[g_run_loop].l, 0, &ran), AFUT_ERR_LOOP_RUNNING);
            MCHECK_EQ(ran, 777);
        }
        break;
    case 21:
        if (g_run_loop >= 0) {
            g_calls++;
            MCHECK_EQ(afut_loop_close(g_loops[g_run_loop].l), AFUT_ERR_LOOP_RUNNING);
            MCHECK(!afut_loop_is_closed(g_loops[g_run_loop].l));
            MCHECK(afut_loop_is_running(g_loops[g_run_loop].l));
            if (F && F->loop == g_run_loop) {
                g_calls++;
                MCHECK_EQ(afut_loop_run_until_complete(g_loops[g_run_loop].l, F->f), AFUT_ERR_LOOP_RUNNING);
                g_calls++;
                MCHECK_EQ(afut_loop_run_forever(g_loops[g_run_loop].l), AFUT_ERR_LOOP_RUNNING);
            }
        }
        break;
    case 22: {
        int o = pick_slot(true);
        if (o >= 0) act_unref(o);
        break;
    }
    case 23: {
        int o = pick_slot(true);
        if (o >= 0) act_remove_cb(o);
        break;
    }
    default: break;
    }
    g_depth--;
}

static item_t expect_next(bool done) {
    if (g_nframes == 0) MFAIL("a callback ran outside any run or completion");
    itemq_t *q = &g_frames[g_nframes - 1];
    for (;;) {
        if (q->head == q->n) MFAIL("an unexpected %s callback ran", done ? "done" : "scheduled");
        item_t it = q->v[q->head++];
        if (it.kind == IT_CALL && !g_h[it.hr].live) {
            h_forget(it.hr);
            continue;
        }
        return it;
    }
}

static void on_done(afut_t *fut, void *ud, uint8_t fn) {
    uint32_t id = (uint32_t)(uintptr_t)ud;
    if (!on_loop_thread()) MFAIL("done-callback on another thread");
    aux_check_just_ended();
    item_t it = expect_next(true);
    if (it.kind != IT_DONE || it.id != id || it.fn != fn)
        MFAIL("done-callback (fn %d, id %u) ran; expected %s id %u fn %d", fn, id,
              it.kind == IT_DONE ? "done" : "call", it.id, it.fn);
    mfut_t *F = &g_f[it.slot];
    if (!F->live || F->f != fut) MFAIL("done-callback got future %p, expected %p", (void *)fut, (void *)F->f);
    if (F->st == ST_P || !afut_done(fut)) MFAIL("done-callback of a pending future");
    bool from_loop = g_frame_is_loop[g_nframes - 1];
    if (from_loop) g_ran++;
    int s = it.slot;
    g_stat_callbacks++;
    TRACE("%*sdone-callback id %u slot %d\n", g_depth * 2, "", id, s);
    reenter(s);
    model_free(id); /* right after it returns */
    if (from_loop) {
        g_f[s].irefs--;
        mf_maybe_free(s);
    }
}

static void done_cb0(afut_t *fut, void *ud) { on_done(fut, ud, 0); }
static void done_cb1(afut_t *fut, void *ud) { on_done(fut, ud, 1); }

static void loop_cb(void *ud) {
    uint32_t id = (uint32_t)(uintptr_t)ud;
    if (!on_loop_thread()) MFAIL("callback on another thread");
    aux_check_just_ended();
    if (g_nframes != 1 || !g_frame_is_loop[0]) MFAIL("a scheduled callback ran outside its loop's batch");
    item_t it = expect_next(false);
    if (it.kind != IT_CALL || it.id != id)
        MFAIL("scheduled callback id %u ran; expected %s id %u", id, it.kind == IT_DONE ? "done" : "call", it.id);
    g_ran++;
    g_stat_callbacks++;
    TRACE("%*scallback id %u\n", g_depth * 2, "", id);
    h_dead(it.hr);
    h_forget(it.hr);
    reenter(-1);
    model_free(id);
}

/* Advances a virtual clock by a random amount, staying far below the "never due here"
 * deadlines (class 9: 1e6 s ahead, or at 1e9): nothing becomes due that the model does not
 * already count as due, and nothing runs before the next run_once. */
static void act_advance(int loopi) {
    mloop_t *L = &g_loops[loopi];
    static const double k_steps[] = {0.0, 1e-9, 0.25, 3.0};
    double by = k_steps[rnd(4)];
    if (afut_loop_time(L->l) > 1000.0) by = 0.0;
    double before = afut_loop_time(L->l);
    TRACE("advance(loop %d, %g)\n", loopi, by);
    g_calls++;
    g_stat_advances++;
    MCHECK_EQ(afut_loop_advance_time(L->l, by), L->closed ? AFUT_ERR_LOOP_CLOSED : AFUT_OK);
    if (!L->closed) MCHECK(afut_loop_time(L->l) == before + by);
}

/* ------------------------------------------------------------------------------------------
 * One random top-level step. */

static void step(void) {
    g_step++;
    uint32_t r = rnd(100);
    int s = pick_slot(true);
    mloop_t *L = cur_loop();
    if (L && L->aux && rnd(8) == 0) {
        aux_action(g_cur);
    } else if (r < 8 || s < 0) {
        act_new();
    } else if (r < 16) {
        act_set_result(s);
    } else if (r < 22) {
        act_set_exception(s);
    } else if (r < 28) {
        act_cancel(s);
    } else if (r < 42) {
        act_add_cb(s);
    } else if (r < 48) {
        act_remove_cb(s);
    } else if (r < 52) {
        act_result(s);
    } else if (r < 55) {
        act_exception(s);
    } else if (r < 58) {
        act_ref(s);
    } else if (r < 65) {
        act_unref(s);
    } else if (r < 71) {
        if (L) act_schedule(g_cur, -1);
    } else if (r < 76) {
        static const int classes[] = {0, 1, 2, 3, 3, 3, 9};
        if (L) act_schedule(g_cur, classes[rnd(7)]);
    } else if (r < 80) {
        if (L) act_cancel_handle(g_cur);
    } else if (r < 96) {
        if (L && L->virt && rnd(8) == 0) act_advance(g_cur);
        else if (L) act_run_once(g_cur);
        else if (g_old >= 0) act_run_once(g_old);
    } else if (r < 98) {
        check_describe(s);
    } else if (rnd(64) == 0) {
        act_loop_cycle();
    } else if (g_old >= 0 && rnd(2)) {
        /* the closed loop: scheduling refused, run refused */
        if (rnd(2)) act_schedule(g_old, rnd(2) ? -1 : 3);
        else act_run_once(g_old);
    }
    if (s >= 0) check_future(s);
    if ((g_step & 63) == 0)
        for (int i = 0; i < MAXF; i++) check_future(i);
    check_step();
}

/* Releases everything: the model's references, then the loops. */
static void teardown(void) {
    g_step++;
    for (int s = 0; s < MAXF; s++) {
        while (g_f[s].live && g_f[s].urefs > 0) act_unref(s);
    }
    for (int i = 0; i < MAXA; i++) aux_release(i);
    check_step();
    if (g_old >= 0) free_loop(g_old);
    if (g_cur >= 0) free_loop(g_cur);
    g_old = g_cur = -1;
    check_step();
    for (int s = 0; s < MAXF; s++)
        if (g_f[s].live) MFAIL("slot %d still live after teardown", s);
    aux_teardown();
    for (int i = 0; i < MAXL; i++) {
        free(g_loops[i].q.v);
        free(g_loops[i].timers);
        free(g_loops[i].liveh);
    }
    for (int i = 0; i < MAXFRAMES; i++) free(g_frames[i].v);
    for (uint32_t id = 1; id < g_nids; id++)
        if (g_ids[id].used && g_ids[id].frees != g_ids[id].regs)
            MFAIL("id %u (kind %d): %d frees, %d hand-overs", id, g_ids[id].kind, g_ids[id].frees, g_ids[id].regs);
    free(g_ids);
    free(g_idfree);
    free(g_verify);
    free(g_h);
    free(g_hfree);
    free(g_due);
    g_due = NULL;
    g_capdue = 0;
}

static void model_reset(uint64_t seed, const uint8_t *bytes, size_t n) {
    g_stat_frees += (unsigned long long)g_model_frees;
    g_stat_reports += (unsigned long long)g_reports_expected;
    memset(g_f, 0, sizeof g_f);
    memset(g_a, 0, sizeof g_a);
    g_ax = NULL;
    g_nax = g_capax = 0;
    g_destroyed_expected = g_destroyed_actual = g_destroyed_maybe = 0;
    g_njust_ended = 0;
    memset(g_loops, 0, sizeof g_loops);
    memset(g_frames, 0, sizeof g_frames);
    g_ids = NULL;
    g_nids = g_capids = 0;
    g_idfree = NULL;
    g_nidfree = g_capidfree = 0;
    g_verify = NULL;
    g_nverify = g_capverify = 0;
    g_h = NULL;
    g_nh = g_caph = 0;
    g_hfree = NULL;
    g_nhfree = g_caphfree = 0;
    g_nstale = 0;
    g_nframes = 0;
    g_in_thread_phase = false;
    g_run_loop = -1;
    g_depth = 0;
    g_model_frees = g_actual_frees = 0;
    g_reports_expected = g_reports_actual = 0;
    g_nexpect_reports = 0;
    g_cur = g_old = -1;
    g_step = 0;
    g_seed = seed;
    g_rng = seed;
    g_bytes = bytes;
    g_nbytes = n;
    g_bpos = 0;
    g_exhausted = false;
    g_main_thread = pthread_self();
    g_trace = getenv("AFUT_MODEL_TRACE") && strcmp(getenv("AFUT_MODEL_TRACE"), "1") == 0;

}

#ifndef AFUT_MODEL_NO_MAIN
/* Runs the single-thread model for at least `calls` API calls. */
static void model_run(unsigned long long calls) {
    new_loop();
    unsigned long long stop = g_calls + calls;
    while (g_calls < stop && !g_exhausted) step();
    teardown();
}
#endif

/* ------------------------------------------------------------------------------------------
 * Thread phase: another thread completes futures and schedules callbacks; the loop thread
 * runs them. The order they run in must be the order they were submitted (one FIFO queue),
 * each completion's callbacks contiguous and in registration order. */

#ifndef AFUT_MODEL_NO_MAIN
#define TP_FUTS 16
#define TP_MAXLOG 256

typedef struct {
    int kind;      /* 0 complete future `fut`, 1 call_soon `id` */
    int fut;
    int how;       /* 0 result, 1 exception, 2 cancel */
    uint32_t id;   /* call_soon id, or value/detail id */
    bool unref;    /* the thread gives up the reference it was handed */
} tp_op_t;

typedef struct {
    afut_loop_t *loop;
    afut_t *futs[TP_FUTS];
    tp_op_t ops[TP_FUTS * 2];
    int nops;
    int bad;
} tp_t;

static uint32_t g_tp_log[TP_MAXLOG];
static int g_tp_nlog;

static void tp_done(afut_t *fut, void *ud) {
    (void)fut;
    if (!on_loop_thread()) MFAIL("thread phase: done-callback off the loop thread");
    if (g_tp_nlog < TP_MAXLOG) g_tp_log[g_tp_nlog++] = (uint32_t)(uintptr_t)ud;
}

static void tp_call(void *ud) {
    if (!on_loop_thread()) MFAIL("thread phase: callback off the loop thread");
    if (g_tp_nlog < TP_MAXLOG) g_tp_log[g_tp_nlog++] = (uint32_t)(uintptr_t)ud;
}

static void *tp_thread(void *arg) {
    tp_t *t = arg;
    for (int i = 0; i < t->nops; i++) {
        tp_op_t *op = &t->ops[i];
        if (op->kind == 1) {
            if (afut_loop_call_soon(t->loop, tp_call, idp(op->id), ud_free) == 0) t->bad++;
            continue;
        }
        afut_t *f = t->futs[op->fut];
        afut_status_t rc = AFUT_OK;
        if (op->how == 0) rc = afut_set_result(f, idp(op->id), ud_free);
        else if (op->how == 1) rc = afut_set_exception(f, 3, "from a thread", idp(op->id), ud_free);
        else if (!afut_cancel(f, "thread")) rc = -100;
        if (rc != AFUT_OK) t->bad++;
        if (op->unref) afut_unref(f);
    }
    return NULL;
}

static void thread_phase(int rounds) {
    for (int round = 0; round < rounds; round++) {
        tp_t t;
        memset(&t, 0, sizeof t);
        g_step++;
        t.loop = afut_loop_new();
        if (!t.loop) MFAIL("afut_loop_new");
        afut_loop_set_exception_handler(t.loop, on_report, NULL, NULL);
        /* Everything the thread may free is allocated now: the id table must not move. */
        ids_reserve(TP_FUTS * 8);
        uint32_t expect[TP_MAXLOG];
        int nexpect = 0;
        uint32_t cbs[TP_FUTS][4];
        int ncbs[TP_FUTS];
        bool thread_unrefs[TP_FUTS];
        long long exc_futs = 0;
        for (int i = 0; i < TP_FUTS; i++) {
            t.futs[i] = afut_loop_create_future(t.loop);
            ncbs[i] = (int)rnd(4);
            for (int k = 0; k < ncbs[i]; k++) {
                cbs[i][k] = id_new(ID_CB);
                g_ids[cbs[i][k]].regs++;
                model_free(cbs[i][k]);
                MCHECK_EQ(afut_add_done_callback(t.futs[i], tp_done, idp(cbs[i][k]), ud_free), AFUT_OK);
            }
            g_calls += 1 + (unsigned)ncbs[i];
        }
        int perm[TP_FUTS];
        for (int i = 0; i < TP_FUTS; i++) perm[i] = i;
        for (int i = TP_FUTS - 1; i > 0; i--) {
            int j = (int)rnd((uint32_t)i + 1), x = perm[i];
            perm[i] = perm[j];
            perm[j] = x;
        }
        for (int i = 0; i < TP_FUTS; i++) {
            if (rnd(2)) {
                uint32_t id = id_new(ID_CB);
                g_ids[id].regs++;
                model_free(id);
                t.ops[t.nops++] = (tp_op_t){.kind = 1, .id = id};
                expect[nexpect++] = id;
            }
            int f = perm[i];
            tp_op_t op = {.kind = 0, .fut = f, .how = (int)rnd(3), .unref = rnd(2) != 0};
            if (op.how != 2) {
                op.id = id_new(op.how == 0 ? ID_VALUE : ID_DETAIL);
                g_ids[op.id].regs++;
                model_free(op.id);
            }
            if (op.how == 1) exc_futs++;
            thread_unrefs[f] = op.unref;
            t.ops[t.nops++] = op;
            for (int k = 0; k < ncbs[f]; k++) expect[nexpect++] = cbs[f][k];
        }
        g_calls += (unsigned long long)t.nops;
        g_tp_nlog = 0;
        g_in_thread_phase = true;
        pthread_t th;
        if (pthread_create(&th, NULL, tp_thread, &t) != 0) MFAIL("pthread_create");
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        while (g_tp_nlog < nexpect) {
            g_calls++;
            MCHECK_EQ(afut_loop_run_once(t.loop, 50, NULL), AFUT_OK);
            clock_gettime(CLOCK_MONOTONIC, &t1);
            if (t1.tv_sec - t0.tv_sec > 20) MFAIL("thread phase: %d of %d callbacks ran in 20 s", g_tp_nlog, nexpect);
        }
        pthread_join(th, NULL);
        MCHECK_EQ(t.bad, 0);
        MCHECK_EQ(g_tp_nlog, nexpect);
        for (int i = 0; i < nexpect; i++)
            if (g_tp_log[i] != expect[i]) MFAIL("thread phase: callback #%d was id %u, expected %u", i, g_tp_log[i], expect[i]);
        /* Drop the rest: every exception that nobody read is reported once. */
        for (int i = 0; i < TP_FUTS; i++) {
            if (!thread_unrefs[i]) afut_unref(t.futs[i]);
        }
        g_calls += TP_FUTS + 2;
        size_t ran = 0;
        MCHECK_EQ(afut_loop_run_once(t.loop, 0, &ran), AFUT_OK);
        MCHECK_EQ(ran, 0);
        afut_loop_free(t.loop);
        g_reports_expected += exc_futs;
        if (__atomic_load_n(&g_reports_actual, __ATOMIC_SEQ_CST) != g_reports_expected)
            MFAIL("thread phase: %lld reports, expected %lld", g_reports_actual, g_reports_expected);
        g_in_thread_phase = false;
        check_step();
    }
}

/* Race phase: the other thread completes every future while the loop thread cancels some of
 * them. Whoever comes first wins, exactly once: the loser gets AFUT_ERR_INVALID_STATE (the
 * thread, whose value then stays its own) or false (the cancel). Every callback runs exactly
 * once, on the loop thread, each future's callbacks contiguous and in registration order. */
typedef struct {
    afut_loop_t *loop;
    afut_t *futs[TP_FUTS];
    int order[TP_FUTS];
    int how[TP_FUTS];
    uint32_t vid[TP_FUTS];
    afut_status_t rc[TP_FUTS];
    int wait_failures;
} race_t;

static void *race_thread(void *arg) {
    race_t *r = arg;
    for (int i = 0; i < TP_FUTS; i++) {
        int f = r->order[i];
        if (r->how[f] == 0) r->rc[f] = afut_set_result(r->futs[f], idp(r->vid[f]), ud_free);
        else r->rc[f] = afut_set_exception(r->futs[f], 5, "race", idp(r->vid[f]), ud_free);
    }
    return NULL;
}

/* A third thread blocks in afut_wait on every future of the race: each wait must end with
 * AFUT_OK once the future is done, whoever completed it. */
static void *race_waiter(void *arg) {
    race_t *r = arg;
    for (int i = 0; i < TP_FUTS; i++)
        if (afut_wait(r->futs[i], 20.0) != AFUT_OK) __atomic_add_fetch(&r->wait_failures, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

static void race_phase(int rounds) {
    for (int round = 0; round < rounds; round++) {
        race_t r;
        memset(&r, 0, sizeof r);
        g_step++;
        r.loop = afut_loop_new();
        if (!r.loop) MFAIL("afut_loop_new");
        afut_loop_set_exception_handler(r.loop, on_report, NULL, NULL);
        ids_reserve(TP_FUTS * 8);
        uint32_t cbs[TP_FUTS][4];
        int ncbs[TP_FUTS], owner[TP_MAXLOG] = {0}, total = 0;
        bool main_cancels[TP_FUTS], main_won[TP_FUTS];
        for (int i = 0; i < TP_FUTS; i++) {
            r.futs[i] = afut_loop_create_future(r.loop);
            ncbs[i] = 1 + (int)rnd(3);
            for (int k = 0; k < ncbs[i]; k++) {
                cbs[i][k] = id_new(ID_CB);
                g_ids[cbs[i][k]].regs++;
                model_free(cbs[i][k]);
                MCHECK_EQ(afut_add_done_callback(r.futs[i], tp_done, idp(cbs[i][k]), ud_free), AFUT_OK);
            }
            total += ncbs[i];
            r.how[i] = (int)rnd(2);
            r.vid[i] = id_new(r.how[i] == 0 ? ID_VALUE : ID_DETAIL);
            g_ids[r.vid[i]].regs++; /* the thread hands it over; given back if it loses */
            main_cancels[i] = rnd(2) != 0;
            main_won[i] = false;
            r.order[i] = i;
        }
        for (int i = TP_FUTS - 1; i > 0; i--) {
            int j = (int)rnd((uint32_t)i + 1), x = r.order[i];
            r.order[i] = r.order[j];
            r.order[j] = x;
        }
        g_calls += (unsigned long long)(TP_FUTS * 2 + total);
        g_tp_nlog = 0;
        g_in_thread_phase = true;
        pthread_t th, waiter;
        if (pthread_create(&waiter, NULL, race_waiter, &r) != 0) MFAIL("pthread_create");
        if (pthread_create(&th, NULL, race_thread, &r) != 0) MFAIL("pthread_create");
        for (int i = 0; i < TP_FUTS; i++) {
            if (main_cancels[i]) {
                main_won[i] = afut_cancel(r.futs[i], "main");
                g_calls++;
            }
            if (rnd(2)) {
                g_calls++;
                MCHECK_EQ(afut_loop_run_once(r.loop, 0, NULL), AFUT_OK);
            }
        }
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        while (g_tp_nlog < total) {
            g_calls++;
            MCHECK_EQ(afut_loop_run_once(r.loop, 50, NULL), AFUT_OK);
            clock_gettime(CLOCK_MONOTONIC, &t1);
            if (t1.tv_sec - t0.tv_sec > 20) MFAIL("race phase: %d of %d callbacks ran in 20 s", g_tp_nlog, total);
        }
        pthread_join(th, NULL);
        pthread_join(waiter, NULL);
        g_calls += TP_FUTS;
        MCHECK_EQ(r.wait_failures, 0);
        long long reports = 0;
        for (int i = 0; i < TP_FUTS; i++) {
            bool thread_won = r.rc[i] == AFUT_OK;
            if (thread_won == main_won[i])
                MFAIL("race phase: future %d: thread rc %d, main cancel %d: not exactly one winner", i, r.rc[i], main_won[i]);
            if (!thread_won && r.rc[i] != AFUT_ERR_INVALID_STATE) MFAIL("race phase: loser rc %d", r.rc[i]);
            MCHECK_EQ(afut_cancelled(r.futs[i]), main_won[i]);
            if (main_cancels[i]) {
                if (thread_won) g_stat_race_thread++;
                else g_stat_race_main++;
            }
            if (thread_won) {
                model_free(r.vid[i]); /* with the future, below */
                if (r.how[i] == 1 && !main_cancels[i]) reports++;
            } else {
                MCHECK_EQ(g_ids[r.vid[i]].frees, 0);
                g_ids[r.vid[i]].regs--;
                id_recycle(r.vid[i]);
            }
        }
        /* each callback once, contiguous per future, registration order */
        for (int i = 0; i < TP_FUTS; i++)
            for (int k = 0; k < ncbs[i]; k++) owner[k] = 0;
        int pos = 0;
        while (pos < g_tp_nlog) {
            int f = -1;
            for (int i = 0; i < TP_FUTS && f < 0; i++)
                if (ncbs[i] && cbs[i][0] == g_tp_log[pos]) f = i;
            if (f < 0) MFAIL("race phase: callback id %u out of place (log position %d)", g_tp_log[pos], pos);
            for (int k = 0; k < ncbs[f]; k++, pos++)
                if (pos >= g_tp_nlog || g_tp_log[pos] != cbs[f][k]) MFAIL("race phase: future %d's callbacks not contiguous/in order", f);
            ncbs[f] = 0; /* seen: a second run would not match */
        }
        (void)owner;
        for (int i = 0; i < TP_FUTS; i++) afut_unref(r.futs[i]);
        g_calls += TP_FUTS + 1;
        afut_loop_free(r.loop);
        g_reports_expected += reports;
        if (__atomic_load_n(&g_reports_actual, __ATOMIC_SEQ_CST) != g_reports_expected)
            MFAIL("race phase: %lld reports, expected %lld", g_reports_actual, g_reports_expected);
        g_in_thread_phase = false;
        check_step();
    }
}
#endif

#ifndef AFUT_MODEL_NO_MAIN

#include "test.h"

static unsigned long long g_total_calls, g_total_checks;

static void run_seed(uint64_t seed, unsigned long long calls) {
    printf("model: seed %llu, %llu calls (replay with AFUT_SEED=%llu)\n", (unsigned long long)seed, calls,
           (unsigned long long)seed);
    fflush(stdout);
    model_reset(seed, NULL, 0);
    g_calls = g_checks = 0;
    model_run(calls);
    model_reset(seed ^ 0x5eed, NULL, 0);
    thread_phase(calls >= 100000 ? 20 : 4);
    race_phase(calls >= 100000 ? 20 : 4);
    teardown();
    g_total_calls += g_calls;
    g_total_checks += g_checks;
}

/* SEMANTICS.md 1-3, 5 (R1-R9) against a reference model; issue 7 item 2. */
TEST(model_random_sequences) {
    const char *env_seed = getenv("AFUT_SEED");
    const char *env_calls = getenv("AFUT_MODEL_CALLS");
    const char *vg = getenv("AFUT_UNDER_VALGRIND");
    unsigned long long per_seed = 500000; /* two seeds: 1e6 calls per run */
    if (vg && strcmp(vg, "1") == 0) per_seed /= 20;
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    per_seed /= 5;
#endif
    if (env_calls && *env_calls) per_seed = strtoull(env_calls, NULL, 10);
    unsigned long long seeds = 2;
    if (env_seed && *env_seed) {
        seeds = 1;
        run_seed(strtoull(env_seed, NULL, 10), per_seed);
    } else {
        run_seed(20261125, per_seed);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t fresh = ((uint64_t)ts.tv_sec * 1000003u) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 17);
        run_seed(fresh % 1000000007ull, per_seed);
    }
    model_reset(0, NULL, 0); /* adds up the last seed's figures */
    printf("model: %llu callbacks ran in %llu run_once calls, %llu frees and %llu never-retrieved "
           "reports matched the model, %llu loop close/free cycles\n",
           g_stat_callbacks, g_stat_runs, g_stat_frees, g_stat_reports, g_stat_cycles);
    printf("model: %llu tasks (%llu steps, %llu cancelled from outside), %llu sleeps, %llu wrapped "
           "loop-less futures\n",
           g_stat_tasks, g_stat_steps, g_stat_task_cancels, g_stat_sleeps, g_stat_wraps);
    printf("model: tasks ended by their step with a result %llu, an exception %llu, cancelled %llu; "
           "%llu pending at a close ended CANCELLED; sleep values freed after completion %llu, "
           "cancel %llu, close %llu; wrappers mirrored %llu results, %llu exceptions, %llu "
           "cancels, cancelled %llu sources\n",
           g_stat_task_end[0], g_stat_task_end[1], g_stat_task_end[2], g_stat_closed_tasks,
           g_stat_value_frees[0], g_stat_value_frees[1], g_stat_value_frees[2], g_stat_mirrors[0],
           g_stat_mirrors[1], g_stat_mirrors[2], g_stat_mirrors[3]);
    printf("model: completion races with another thread: cancel won %llu, the thread won %llu\n",
           g_stat_race_main, g_stat_race_thread);
    printf("model: %llu loops on a virtual clock, %llu afut_loop_advance_time calls\n", g_stat_virtual_loops,
           g_stat_advances);
    printf("model: %llu calls tried, %llu verification calls\n", g_total_calls, g_total_checks);
    CHECK(g_total_calls >= seeds * per_seed);
}

/* Regression (found by this model: seed 20261125, step 4335; fixed in src/future.rs dispatch):
 * a loop-less future's done-callback drops the last reference while afut_set_result is still
 * running the remaining callbacks of that completion. API.md: "cb may call any afut function,
 * including on fut itself (even dropping the last reference to it)"; the other callbacks must
 * still get a live future. The library used to free the future inside the first callback and
 * hand the freed pointer to the second (valgrind: invalid read in FutureInner::is_done). */
static int g_reg_calls, g_reg_live;
static void reg_drop(afut_t *fut, void *ud) {
    (void)ud;
    g_reg_calls++;
    afut_unref(fut);
}
static void reg_second(afut_t *fut, void *ud) {
    (void)ud;
    g_reg_calls++;
    g_reg_live = afut_isfuture(fut); /* false once its memory was freed (tag cleared) */
}
TEST(regression_loopless_last_ref_dropped_in_callback) {
    afut_t *f = afut_new(NULL);
    CHECK_EQ_INT(afut_add_done_callback(f, reg_drop, NULL, NULL), AFUT_OK);
    CHECK_EQ_INT(afut_add_done_callback(f, reg_second, NULL, NULL), AFUT_OK);
    CHECK_EQ_INT(afut_set_result(f, NULL, NULL), AFUT_OK); /* reg_drop releases the only ref */
    CHECK_EQ_INT(g_reg_calls, 2);
    CHECK(g_reg_live);
}

/* Found by this model (aux tasks; with k_strict_released_task_report = true, AFUT_SEED=2
 * fails at step 98529): afut.h afut_task_new, "Lifetime": a
 * fire-and-forget task (afut_unref'ed at once, kept alive by the loop) that is still pending
 * when the loop closes ends CANCELLED and is reported "Task was destroyed but it is pending!"
 * to the exception handler, as asyncio reports a pending task that goes away (SEMANTICS.md
 * F15, T1). The library frees it (userdata freed once) but reports it only while the
 * application still holds a reference. */
static int g_td_reports, g_td_frees;
static void td_handler(afut_loop_t *loop, const afut_error_context_t *ctx, void *ud) {
    (void)loop;
    (void)ud;
    if (ctx && ctx->message && strcmp(ctx->message, "Task was destroyed but it is pending!") == 0) g_td_reports++;
}
static void td_step(afut_t *task, afut_t *awaited, void *ud) {
    (void)task;
    (void)awaited;
    (void)ud; /* yields forever */
}
static void td_free(void *p) {
    (void)p;
    g_td_frees++;
}
TEST(task_released_pending_at_close_is_reported) {
    for (int variant = 0; variant < 2; variant++) { /* 0: afut_loop_close, 1: afut_loop_free */
        g_td_reports = g_td_frees = 0;
        afut_loop_t *loop = afut_loop_new();
        afut_loop_set_exception_handler(loop, td_handler, NULL, NULL);
        afut_t *t = afut_task_new(loop, td_step, NULL, td_free);
        CHECK(t != NULL);
        CHECK_EQ_INT(afut_loop_run_once(loop, 0, NULL), AFUT_OK); /* first step: yields */
        afut_unref(t); /* fire and forget: the loop keeps it alive */
        if (variant == 0) CHECK_EQ_INT(afut_loop_close(loop), AFUT_OK);
        else afut_loop_free(loop);
        CHECK_EQ_INT(g_td_frees, 1);
        CHECK_EQ_INT(g_td_reports, 1);
        if (variant == 0) afut_loop_free(loop);
    }
}

/* ------------------------------------------------------------------------------------------
 * The executor against a model of concurrent.futures' states (afut.h afut_executor_submit,
 * afut_executor_shutdown; API.md "Executor"). One worker (max_workers = 1), and every job
 * blocks until the model releases it, so the model knows at each step which job runs and
 * which ones are queued: random submits (completing with a result, an exception, or not at
 * all), cancels (true exactly for a queued job, whose userdata is freed inside the call),
 * completions from outside of queued futures (the worker skips them), releases of the running
 * job, and shutdowns (with or without cancel_futures; later submits refused, nothing freed),
 * then afut_executor_free. Checked after every step: each future's state and describe(), the
 * job function's calls, every userdata freed exactly once and never before its job ended. */

enum { XJ_QUEUED = 1, XJ_RUNNING, XJ_DONE, XJ_CANCELLED, XJ_EXTERNAL };
#define MAXJ 4096

typedef struct xjob {
    afut_t *f;
    int state;
    int script;            /* 0: result, 1: exception, 2: return without completing */
    int calls, returned;   /* of the job function (under g_x.mu) */
    int frees;             /* userdata_free calls (under g_x.mu) */
    bool released;         /* the model lets it finish (under g_x.mu) */
    bool started;          /* (under g_x.mu) */
    bool ext_done;         /* completed from outside while it ran */
} xjob_t;

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    xjob_t jobs[MAXJ];
    int n;
    int value;
    unsigned long long submits, cancels, cancel_true, externals, releases, refused, shutdowns;
} g_x;

static void xjob_fn(afut_t *fut, void *ud) {
    xjob_t *j = &g_x.jobs[(uintptr_t)ud];
    pthread_mutex_lock(&g_x.mu);
    j->calls++;
    j->started = true;
    pthread_cond_broadcast(&g_x.cv);
    while (!j->released) pthread_cond_wait(&g_x.cv, &g_x.mu);
    int script = j->script;
    pthread_mutex_unlock(&g_x.mu);
    if (script == 0) afut_set_result(fut, &g_x.value, NULL);
    else if (script == 1) afut_set_exception(fut, 5, "job failed", NULL, NULL);
    pthread_mutex_lock(&g_x.mu);
    j->returned++;
    pthread_mutex_unlock(&g_x.mu);
}

static void xjob_free(void *ud) {
    xjob_t *j = &g_x.jobs[(uintptr_t)ud];
    pthread_mutex_lock(&g_x.mu);
    j->frees++;
    if (j->calls != j->returned) MFAIL("executor: job %lu freed while it runs", (unsigned long)(uintptr_t)ud);
    pthread_cond_broadcast(&g_x.cv);
    pthread_mutex_unlock(&g_x.mu);
}

/* Waits (bounded) until `cond` holds under g_x.mu. */
#define XWAIT(cond, what)                                                          \
    do {                                                                           \
        struct timespec dl_;                                                       \
        clock_gettime(CLOCK_REALTIME, &dl_);                                       \
        dl_.tv_sec += 30;                                                          \
        pthread_mutex_lock(&g_x.mu);                                               \
        int rc_ = 0;                                                               \
        while (!(cond) && rc_ == 0) rc_ = pthread_cond_timedwait(&g_x.cv, &g_x.mu, &dl_); \
        bool ok_ = (cond);                                                         \
        pthread_mutex_unlock(&g_x.mu);                                             \
        if (!ok_) MFAIL("executor: timed out waiting until %s", what);             \
    } while (0)

/* The job the worker takes next: the first queued one (cancelled and externally completed ones
 * are skipped), now running; -1 if none. */
static int x_promote(void) {
    for (int i = 0; i < g_x.n; i++)
        if (g_x.jobs[i].state == XJ_RUNNING) return i;
    for (int i = 0; i < g_x.n; i++)
        if (g_x.jobs[i].state == XJ_QUEUED) {
            g_x.jobs[i].state = XJ_RUNNING;
            XWAIT(g_x.jobs[i].started, "the next job started");
            return i;
        }
    return -1;
}

static void x_check(int i) {
    xjob_t *j = &g_x.jobs[i];
    if (!j->f) return;
    char buf[64];
    afut_describe(j->f, buf, sizeof buf);
    pthread_mutex_lock(&g_x.mu);
    int calls = j->calls, frees = j->frees;
    pthread_mutex_unlock(&g_x.mu);
    switch (j->state) {
    case XJ_QUEUED:
        MCHECK(!afut_done(j->f));
        MCHECK(strcmp(buf, "<Future pending>") == 0);
        MCHECK_EQ(calls, 0);
        MCHECK_EQ(frees, 0);
        break;
    case XJ_RUNNING:
        MCHECK_EQ(afut_done(j->f), j->ext_done);
        if (!j->ext_done && strcmp(buf, "<Future running>") != 0)
            MFAIL("executor: running job described as %s", buf);
        MCHECK_EQ(calls, 1);
        MCHECK_EQ(frees, 0);
        break;
    case XJ_DONE: {
        MCHECK(afut_done(j->f));
        MCHECK(!afut_cancelled(j->f));
        MCHECK_EQ(calls, 1);
        void *v = NULL;
        afut_status_t rc = afut_result(j->f, &v);
        if (j->ext_done) MCHECK(rc == AFUT_OK && v == NULL); /* the outside result stands */
        else if (j->script == 0) MCHECK(rc == AFUT_OK && v == &g_x.value);
        else if (j->script == 1) MCHECK_EQ(rc, AFUT_ERR_EXCEPTION);
        else MCHECK(rc == AFUT_OK && v == NULL);
        break;
    }
    case XJ_CANCELLED:
        MCHECK(afut_cancelled(j->f));
        MCHECK_EQ(calls, 0);
        MCHECK_EQ(frees, 1);
        break;
    case XJ_EXTERNAL:
        MCHECK(afut_done(j->f) && !afut_cancelled(j->f));
        MCHECK_EQ(calls, 0);
        break;
    }
}

/* One executor's life: `steps` random steps (a shutdown may come in the last fifth), then the
 * remaining jobs run and afut_executor_free. */
static void executor_model_round(int steps) {
    memset(g_x.jobs, 0, sizeof g_x.jobs);
    g_x.n = 0;
    afut_executor_t *ex = afut_executor_new(1);
    if (!ex) MFAIL("afut_executor_new");
    bool shut = false;
    int running = -1;
    for (int k = 0; k < steps && g_x.n < MAXJ; k++) {
        g_step++;
        uint32_t r = rnd(100);
        if (r < 40) { /* submit */
            int i = g_x.n;
            xjob_t *j = &g_x.jobs[i];
            pthread_mutex_lock(&g_x.mu); /* the worker reads it (TSan: the hand-off is ours) */
            j->script = (int)rnd(3);
            pthread_mutex_unlock(&g_x.mu);
            j->f = afut_executor_submit(ex, xjob_fn, (void *)(uintptr_t)i, xjob_free);
            g_x.submits++;
            if (shut) {
                if (j->f) MFAIL("executor: submit after shutdown accepted");
                g_x.refused++;
                continue; /* the slot is reused; nothing was freed (checked at the end) */
            }
            if (!j->f) MFAIL("executor: submit refused");
            g_x.n++;
            j->state = XJ_QUEUED;
            if (running < 0) running = x_promote();
        } else if (r < 60 && g_x.n) { /* cancel */
            int i = (int)rnd((uint32_t)g_x.n);
            xjob_t *j = &g_x.jobs[i];
            bool expect = j->state == XJ_QUEUED;
            bool got = afut_cancel(j->f, rnd(2) ? "model" : NULL);
            g_x.cancels++;
            MCHECK_EQ(got, expect);
            if (expect) {
                g_x.cancel_true++;
                j->state = XJ_CANCELLED;
                pthread_mutex_lock(&g_x.mu);
                int frees = j->frees;
                pthread_mutex_unlock(&g_x.mu);
                MCHECK_EQ(frees, 1); /* freed inside afut_cancel */
            }
        } else if (r < 68 && g_x.n) { /* complete a queued future from outside */
            int i = (int)rnd((uint32_t)g_x.n);
            xjob_t *j = &g_x.jobs[i];
            afut_status_t rc = afut_set_result(j->f, NULL, NULL);
            g_x.externals++;
            bool pending = j->state == XJ_QUEUED || (j->state == XJ_RUNNING && !j->ext_done);
            MCHECK_EQ(rc, pending ? AFUT_OK : AFUT_ERR_INVALID_STATE);
            if (j->state == XJ_QUEUED) {
                j->state = XJ_EXTERNAL;
            } else if (pending) {
                j->ext_done = true;
                pthread_mutex_lock(&g_x.mu);
                j->script = 3; /* its own completion would be refused: it completes nothing */
                pthread_mutex_unlock(&g_x.mu);
            }
        } else if (r < 97 && running >= 0) { /* release the running job */
            xjob_t *j = &g_x.jobs[running];
            pthread_mutex_lock(&g_x.mu);
            j->released = true;
            pthread_cond_broadcast(&g_x.cv);
            pthread_mutex_unlock(&g_x.mu);
            MCHECK_EQ(afut_wait(j->f, 30), AFUT_OK);
            XWAIT(j->returned == 1 && j->frees == 1, "the released job returned and was freed");
            j->state = XJ_DONE;
            g_x.releases++;
            running = x_promote();
        } else if (r >= 97 && !shut && k >= steps * 4 / 5) { /* shutdown, without waiting */
            bool cancel_futures = rnd(2);
            afut_executor_shutdown(ex, false, cancel_futures);
            g_x.shutdowns++;
            shut = true;
            if (cancel_futures)
                for (int i = 0; i < g_x.n; i++)
                    if (g_x.jobs[i].state == XJ_QUEUED) g_x.jobs[i].state = XJ_CANCELLED;
        }
        for (int i = 0; i < g_x.n; i++) x_check(i);
    }
    /* Let every job that will run finish, then free: every userdata freed exactly once. */
    while (running >= 0) {
        xjob_t *j = &g_x.jobs[running];
        pthread_mutex_lock(&g_x.mu);
        j->released = true;
        pthread_cond_broadcast(&g_x.cv);
        pthread_mutex_unlock(&g_x.mu);
        MCHECK_EQ(afut_wait(j->f, 30), AFUT_OK);
        j->state = XJ_DONE;
        running = x_promote();
    }
    afut_executor_free(ex);
    for (int i = 0; i < g_x.n; i++) {
        xjob_t *j = &g_x.jobs[i];
        if (j->state == XJ_DONE) {
            XWAIT(j->returned == 1, "a job returned");
        }
        x_check(i);
        MCHECK_EQ(j->frees, 1);
        MCHECK_EQ(j->calls, j->state == XJ_DONE ? 1 : 0);
        afut_unref(j->f);
    }
}

static void executor_model_seed(uint64_t seed, int rounds) {
    g_seed = seed;
    g_rng = seed;
    g_bytes = NULL;
    for (int k = 0; k < rounds; k++) executor_model_round(40 + (int)rnd(200));
}

/* afut_executor_* against the model above; TSan runs this program too. */
TEST(model_executor) {
    pthread_mutex_init(&g_x.mu, NULL);
    pthread_cond_init(&g_x.cv, NULL);
    const char *vg = getenv("AFUT_UNDER_VALGRIND");
    int rounds = vg && strcmp(vg, "1") == 0 ? 5 : 40;
    const char *env_seed = getenv("AFUT_SEED");
    uint64_t seeds[2] = {20261206, (uint64_t)time(NULL)};
    if (env_seed && *env_seed) seeds[0] = seeds[1] = strtoull(env_seed, NULL, 10);
    for (int k = 0; k < 2; k++) {
        printf("model: executor seed %llu (replay with AFUT_SEED=%llu)\n", (unsigned long long)seeds[k],
               (unsigned long long)seeds[k]);
        executor_model_seed(seeds[k], rounds);
    }
    printf("model: executor: %llu submits (%llu refused after shutdown), %llu cancels (%llu of queued jobs), "
           "%llu outside completions, %llu jobs released, %llu shutdowns\n",
           g_x.submits, g_x.refused, g_x.cancels, g_x.cancel_true, g_x.externals, g_x.releases, g_x.shutdowns);
    pthread_cond_destroy(&g_x.cv);
    pthread_mutex_destroy(&g_x.mu);
}

int main(void) {
    RUN(model_random_sequences);
    RUN(regression_loopless_last_ref_dropped_in_callback);
    RUN(task_released_pending_at_close_is_reported);
    RUN(model_executor);
    TEST_END();
}

#endif
