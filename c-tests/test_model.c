/* Model-based random test of afut's Future, loop, tasks, combinators and executor.
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
 *
 * Further classes:
 *   - Host mode: a third of the loops are host-mode loops (afut_loop_fd). After every step
 *     the host fd is polled: readable iff the model has work ready or a timer due (L2; afut.h
 *     afut_loop_fd). afut_loop_timeout_ms is checked against the model (every step on host
 *     loops, every 4th on the others): -1 no timer, 0 work ready, else the ms until the next
 *     timer rounded up, bounded by the clock read just before and just after the call (no
 *     slack: a readable fd on an idle loop is a failure, and so is a timeout of 0 without
 *     work). A due timer makes the fd readable once the kernel timer behind it expired: half
 *     of the time the check waits for that (500 ms at most); the other half the next step may
 *     run the loop first, and a host that wakes up exactly at a deadline is tried too.
 *   - Re-entrant destructors: some userdata_free / value_free / detail_free functions call
 *     back into the API on the same future, task and loop (afut_done, afut_describe,
 *     afut_cancel, afut_task_cancelling, afut_loop_call_soon_threadsafe), each call checked
 *     against the model (see "Destructors"); a destructor phase runs them on other threads,
 *     racing afut_cancel(task) against the completion of the future the task awaits.
 *   - Times from the edges: +-0, denormals, +-INFINITY, NaN (-> 0 / NULL /
 *     AFUT_ERR_INVALID_ARGUMENT, afut.h "Bad input"), DBL_MAX, 1e19, and the values around
 *     the representable deadline (2^63 and 2^64 seconds), for call_later, call_at,
 *     afut_sleep, afut_wait_for, afut_wait_many, afut_as_completed and afut_wait (on a future
 *     that is done, or that another thread completes).
 *   - Combinators in the model: gather (both return_exceptions values), wait_for, shield,
 *     afut_wait_many and afut_as_completed, and tasks awaiting tasks and combinators, each
 *     event in the iteration it must happen in (SEMANTICS.md G1-G6, WF1-WF2, S1, W1-W4,
 *     T1-T6, F21-F22; afut.h's deliberate differences are rules of the model, cited where
 *     they apply).
 *   - Deep structures: chains thousands of links deep of wrap_future (across two loops),
 *     shield, gather and tasks awaiting tasks, completed, cancelled and dropped in random
 *     order, every link checked against the model; the deep phase runs on a 256 KiB thread
 *     stack, and a stack overflow is reported (SIGSEGV handler) with the operation and depth.
 *
 * The aux engine (tasks, sleeps, wrappers, combinators) models afut's internal done-callbacks
 * and scheduled calls one by one (each is asyncio's: Task.__wakeup, sleep's h.cancel,
 * _chain_future's callbacks, gather's _done_callback, shield's _inner/_outer_done_callback,
 * wait's _on_completion, ...), so run_once's count and the host fd's readiness are exact.
 *
 * A thread phase completes futures, schedules callbacks and schedules timers that are due at
 * once (-INFINITY, -0.0, 5e-324, -1e19) from another thread, and checks the order the loop ran
 * them in and that every submission woke the loop, standalone or as a host polling the fd
 * (API.md "Threads"); a race phase completes and cancels the same futures from two threads
 * while a third waits on them with timeouts from the edges.
 *
 * A third of the loops run on a manual virtual clock (afut_loop_set_virtual_clock): the waits
 * that let a timer become due advance it instead of spinning, a random action advances it
 * (by edge amounts too), and every run_once checks that it moved only by
 * afut_loop_advance_time. Host mode and the virtual clock are drawn independently, so some
 * host loops run on a virtual clock (their fd is readable exactly when work is ready or a
 * timer is due: no timerfd is armed; afut_loop_timeout_ms is 0 or -1).
 * A separate test (model_executor) checks the executor against a model of concurrent.futures'
 * states, see there.
 *
 * The same engine is the fuzz target (fuzz/fuzz_model.c includes this file with
 * AFUT_MODEL_NO_MAIN): there the random choices come from the fuzzer's bytes and a
 * violation aborts.
 *
 * Environment: AFUT_SEED=<n> replays one seed (else a fixed seed, then a fresh one, both
 * printed); AFUT_MODEL_CALLS=<n> sets the calls per seed (default 9.2e5 in total over the two
 * seeds; 20x fewer when AFUT_UNDER_VALGRIND=1, 5x fewer under sanitizers);
 * AFUT_MODEL_DP_ROUNDS=<n> sets the rounds of the destructor phase (160 per seed; a long
 * race: AFUT_SEED=77 AFUT_MODEL_CALLS=1000 AFUT_MODEL_DP_ROUNDS=20000, about 25 s);
 * AFUT_MODEL_TRACE=1 prints every action (with AFUT_SEED, to see how a violation came about).
 *
 * Figures printed at the end: API calls tried (actions; the verification reads are counted
 * apart), callbacks run, frees and reports matched, loop close/free cycles, host-fd and
 * timeout checks, re-entrant destructor calls, edge values tried, combinators, maximum
 * depth built; then one summary line:
 *   model: N calls, H host-fd checks, R re-entrant destructor calls (L loop thread, O other
 *   threads), depth D, E edge times
 * (E: distinct edge time values passed to the functions that take a double). */
#define _GNU_SOURCE

#include <float.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
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
static uint64_t g_replay_seed; /* the AFUT_SEED that replays this run (phases use derived seeds) */
static unsigned long long g_step;
static unsigned long long g_calls;  /* API calls made by actions (verification reads excluded) */
static unsigned long long g_checks; /* API calls made to verify the state */
static bool g_fuzz_mode;
#ifndef AFUT_MODEL_NO_MAIN
static unsigned long long g_stat_race_main, g_stat_race_thread;
#endif
static unsigned long long g_stat_callbacks, g_stat_cycles, g_stat_frees, g_stat_reports, g_stat_runs;
static unsigned long long g_stat_host_checks, g_stat_timeout_checks, g_stat_fd_waits, g_stat_reent, g_stat_reent_calls;
static unsigned long long g_stat_edge, g_stat_max_depth, g_stat_chains, g_stat_chain_links;
static bool g_trace; /* AFUT_MODEL_TRACE=1: print every action */
#define TRACE(...)                                   \
    do {                                             \
        if (g_trace) fprintf(stderr, __VA_ARGS__);   \
    } while (0)

static void model_fail(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "MODEL VIOLATION at %s:%d, step %llu, AFUT_SEED=%llu: ", file, line, g_step,
            (unsigned long long)g_replay_seed);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n  replay: AFUT_SEED=%llu\n", (unsigned long long)g_replay_seed);
    fflush(stderr);
    if (g_fuzz_mode) abort();
    printf("FAIL model (seed %llu, step %llu)\n0 passed, 1 failed\n", (unsigned long long)g_replay_seed,
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
 * Edge times: the doubles every time argument is drawn from now and then. */

#define T_2P63 9223372036854775808.0  /* 2^63 s: past it, Instant/timespec seconds overflow */
#define T_2P64 18446744073709551616.0 /* 2^64 s: past it, Duration's u64 seconds overflow */
static double edge_below(double x) { return nextafter(x, 0.0); }
static double edge_above(double x) { return nextafter(x, INFINITY); }

/* Edge values, by what they mean as a delay / timeout. */
enum { EDGE_NOW, EDGE_TINY, EDGE_NEVER, EDGE_HUGE, EDGE_NAN };
typedef struct {
    double v;
    int cls;
    const char *name;
} edge_t;
#define N_EDGES 24
static edge_t g_edges[N_EDGES];

static void edges_init(void) {
    int n = 0;
#define E(val, c) g_edges[n++] = (edge_t){(val), (c), #val}
    E(0.0, EDGE_NOW);
    E(-0.0, EDGE_NOW);
    E(-DBL_TRUE_MIN, EDGE_NOW);
    E(-DBL_MIN, EDGE_NOW);
    E(-1.0, EDGE_NOW);
    E(-1e19, EDGE_NOW);
    E(-DBL_MAX, EDGE_NOW);
    E(-INFINITY, EDGE_NOW);
    E(DBL_TRUE_MIN, EDGE_TINY); /* > 0: a timer, due at once (now + 5e-324 == now) */
    E(DBL_MIN, EDGE_TINY);
    E(INFINITY, EDGE_NEVER);
    E(DBL_MAX, EDGE_HUGE);
    E(1e19, EDGE_HUGE);
    E(1e300, EDGE_HUGE);
    E(T_2P63, EDGE_HUGE);
    E(edge_below(T_2P63), EDGE_HUGE);
    E(edge_above(T_2P63), EDGE_HUGE);
    E(T_2P64, EDGE_HUGE);
    E(edge_below(T_2P64), EDGE_HUGE);
    E(edge_above(T_2P64), EDGE_HUGE);
    E(2147483.648, EDGE_HUGE); /* INT_MAX ms + 1 */
    E(86400.0005, EDGE_HUGE);  /* just past asyncio's one-day clamp */
    E(NAN, EDGE_NAN);
    E(-NAN, EDGE_NAN);
#undef E
    if (n != N_EDGES) abort();
}

/* Distinct edge values tried (by bit pattern: -0.0 and 0.0 differ, so do NaN and -NaN). */
#define MAX_EDGE_SEEN 128
static uint64_t g_edge_seen[MAX_EDGE_SEEN];
static int g_nedge_seen;

static void edge_note(double v) {
    uint64_t b;
    memcpy(&b, &v, sizeof b);
    g_stat_edge++;
    for (int i = 0; i < g_nedge_seen; i++)
        if (g_edge_seen[i] == b) return;
    if (g_nedge_seen < MAX_EDGE_SEEN) g_edge_seen[g_nedge_seen++] = b;
}

static const edge_t *pick_edge(void) {
    const edge_t *e = &g_edges[rnd(N_EDGES)];
    edge_note(e->v);
    return e;
}

/* Order of deadlines as the library sorts them: by value, so -0.0 and +0.0 are one deadline
 * and FIFO breaks the tie (asyncio compares `when` with <, where -0.0 == 0.0). */
static int dl_cmp(double a, double b) {
    if (a < b) return -1;
    if (a > b) return 1;
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Ids: every userdata / value / detail the test hands the library is a small integer cast to
 * a pointer; the free function counts calls per id. */

enum { ID_CB = 1, ID_VALUE, ID_DETAIL, ID_HANDLER };

typedef struct {
    uint8_t kind;
    uint8_t used;
    uint8_t reent;    /* its free function re-enters the API (see "Destructors") */
    int32_t regs;     /* successful hand-overs to the library (model) */
    int32_t mfrees;   /* frees the model expects by now */
    int32_t frees;    /* frees that happened (atomic in the thread phase) */
    int rslot;        /* ID_CB reent: the slot whose future it holds a reference to */
    int rloop;        /* ID_VALUE / ID_DETAIL reent: the loop of its future, -1 */
    uint64_t repoch;  /* that loop's epoch */
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

#define GROW(arr, n, cap, init)                                          \
    do {                                                                 \
        if ((n) >= (cap)) {                                              \
            (cap) = (cap) ? (cap) * 2 : (init);                          \
            (arr) = xrealloc((arr), (size_t)(cap) * sizeof *(arr));      \
        }                                                                \
    } while (0)

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
    g_ids[id] = (idrec_t){.kind = (uint8_t)kind, .used = 1, .rslot = -1, .rloop = -1};
    return id;
}

static void id_recycle(uint32_t id) {
    g_ids[id].used = 0;
    GROW(g_idfree, g_nidfree, g_capidfree, 1024);
    g_idfree[g_nidfree++] = id;
}

static void *idp(uint32_t id) { return (void *)(uintptr_t)id; }

static void reent_destructor(uint32_t id);

static void ud_free(void *p) {
    uintptr_t id = (uintptr_t)p;
    if (id == 0 || id >= g_nids || !g_ids[id].used) MFAIL("userdata_free(%p): not a live id", p);
    int32_t n = __atomic_add_fetch(&g_ids[id].frees, 1, __ATOMIC_SEQ_CST);
    __atomic_add_fetch(&g_actual_frees, 1, __ATOMIC_SEQ_CST);
    if (n > g_ids[id].regs) MFAIL("id %lu freed %d times, handed over %d times", (unsigned long)id, n, g_ids[id].regs);
    if (g_ids[id].reent) reent_destructor((uint32_t)id);
}

/* The model says: the library frees `id` (once) during this step. */
static void model_free(uint32_t id) {
    g_ids[id].mfrees++;
    g_model_frees++;
    GROW(g_verify, g_nverify, g_capverify, 256);
    g_verify[g_nverify++] = id;
}

/* A hand-over the library refused: it must not have freed it; the id is ours again. */
static void id_refused(uint32_t id) {
    if (!id) return;
    MCHECK_EQ(g_ids[id].frees, g_ids[id].mfrees);
    if (g_ids[id].regs == 0) id_recycle(id);
}

static bool fd_readable(int fd, int ms) {
    struct pollfd p = {.fd = fd, .events = POLLIN, .revents = 0};
    int n = poll(&p, 1, ms);
    return n == 1 && (p.revents & POLLIN);
}

/* ------------------------------------------------------------------------------------------
 * The model. */

#define MAXF 24   /* future slots */
#define MAXCB 12  /* callbacks registered on one pending future */
#define MAXL 8    /* model loops (current, old, freed ones still referenced, deep-chain ones) */

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
    int drefs; /* references held by re-entrant callback userdata (see "Destructors") */
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

/* Deadline classes: due (deadline behind us), far (finite, days away at least), never. */
enum { DC_DUE = 1, DC_FAR, DC_NEVER };

typedef struct {
    afut_handle_t h;
    uint32_t id;
    int loop;
    bool live;
    bool in_batch;
    int cls;    /* timer class (act_schedule); -1 for call_soon */
    uint8_t dc; /* deadline class */
    bool minf;  /* deadline -INFINITY */
    double dl;  /* deadline, exact or bounded by [lo, hi] (order key for due timers) */
    double lo, hi;
    uint64_t seq;
    size_t lpos;
} hrec_t;

/* Aux engine types (see the aux section). */
typedef struct {
    uint64_t run;
    uint32_t pos;
    uint64_t seq;
} akey_t;

typedef struct {
    akey_t key;
    uint8_t kind;
    int ent, arg;
    uint32_t oid;
} aitem_t;

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
    unsigned long long runs; /* run_once calls on it */
    bool aux;                /* tasks, sleeps, wrappers and combinators run on this loop */
    bool host;               /* host mode: afut_loop_fd was called */
    int fd;
    /* aux engine: internal callbacks queued for the next iteration, and aux timers */
    aitem_t *aq;
    size_t naq, capaq;
    int *atm; /* aux timer indices */
    size_t natm, capatm;
    bool virt;               /* on a manual virtual clock (afut_loop_set_virtual_clock) */
    bool timer_gone;         /* a timer was cancelled (or ran) since the last run_once */
} mloop_t;

/* The poll() fallback (scripts/test.sh's poll-backend stage sets AFUT_TEST_POLL_BACKEND=1):
 * its relay leaves the fd raised for a timer cancelled after it came due, until the next
 * run_once (the exception afut.h documents at afut_loop_fd). */
static bool g_relay_backend;
static unsigned long long g_stat_relay_excused;

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
    GROW(q->v, q->n, q->cap, 32);
    q->v[q->n++] = it;
}

static int h_new(void) {
    int i;
    if (g_nhfree) {
        i = g_hfree[--g_nhfree];
    } else {
        GROW(g_h, g_nh, g_caph, 256);
        i = g_nh++;
    }
    memset(&g_h[i], 0, sizeof g_h[i]);
    return i;
}

static void h_release(int i) {
    GROW(g_hfree, g_nhfree, g_caphfree, 256);
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
    GROW(L->liveh, L->nliveh, L->capliveh, 64);
    g_h[i].live = true;
    g_h[i].lpos = L->nliveh;
    L->liveh[L->nliveh++] = i;
}

/* The model releases a reference; at zero the future is freed. */
static void mf_maybe_free(int s) {
    mfut_t *F = &g_f[s];
    if (F->urefs + F->irefs + F->drefs > 0) return;
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

static bool chain_report(afut_t *f);

static void on_report(afut_loop_t *loop, const afut_error_context_t *ctx, void *ud) {
    (void)loop;
    (void)ud;
    if (ctx && ctx->message && strcmp(ctx->message, "Task was destroyed but it is pending!") == 0) {
        if (!ctx->future) MFAIL("\"Task was destroyed\" report without the task");
        g_destroyed_actual++;
        return;
    }
    if (ctx && ctx->future && chain_report(ctx->future)) return;
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

static bool on_loop_thread(void) { return pthread_equal(pthread_self(), g_main_thread); }

/* Destructors may re-enter the API (see "Destructors") only on the model's thread, outside
 * the thread phases. */
static bool reent_allowed(void) { return !g_in_thread_phase && on_loop_thread(); }

static int pick_slot(bool with_ref) {
    int start = (int)rnd(MAXF);
    for (int k = 0; k < MAXF; k++) {
        int s = (start + k) % MAXF;
        if (g_f[s].live && (!with_ref || g_f[s].urefs > 0)) return s;
    }
    return -1;
}

static void act_cancel(int s);

static void act_new(void) {
    int s = -1;
    for (int i = 0; i < MAXF; i++)
        if (!g_f[i].live) { s = i; break; }
    if (s < 0) {
        /* every slot is live: a pending future that only re-entrant callback userdata still
         * holds (the application dropped it) would stay forever; cancel one through that
         * reference, which runs or drops the callbacks and so releases it */
        for (int i = 0; i < MAXF; i++)
            if (g_f[i].urefs == 0 && g_f[i].drefs > 0 && g_f[i].st == ST_P) {
                act_cancel(i);
                break;
            }
        return;
    }
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

/* A value or detail id whose free function re-enters the API now and then. */
static uint32_t new_payload_id(int kind, int s) {
    uint32_t id = id_new(kind);
    if (reent_allowed() && rnd(6) == 0) {
        g_ids[id].reent = 1;
        g_ids[id].rloop = g_f[s].loop;
        g_ids[id].repoch = g_f[s].loop >= 0 ? g_loops[g_f[s].loop].epoch : 0;
    }
    return id;
}

static void act_set_result(int s) {
    TRACE("%*sact_set_result(slot %d, loop %d, st %d, urefs %d, irefs %d)\n", g_depth * 2, "", s, g_f[s].loop, g_f[s].st, g_f[s].urefs, g_f[s].irefs);
    mfut_t *F = &g_f[s];
    uint32_t vid = rnd(4) ? new_payload_id(ID_VALUE, s) : 0;
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
    uint32_t did = rnd(3) ? new_payload_id(ID_DETAIL, s) : 0;
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
        if (reent_allowed() && rnd(8) == 0) {
            /* Its userdata_free re-enters the API on this very future: the userdata holds a
             * reference to it (one per hand-over), released by the free function. */
            g_ids[id].reent = 1;
            g_ids[id].rslot = s;
        }
    }
    if (F->st == ST_P && F->ncb == MAXCB) {
        id_refused(id);
        return;
    }
    bool reent = g_ids[id].reent;
    if (reent) {
        /* Taken before the call: a done loop-less future runs the callback, and frees its
         * userdata, inside afut_add_done_callback. */
        g_calls++;
        if (afut_ref(F->f) != F->f) MFAIL("afut_ref");
        F->drefs++;
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
    afut_t *f = F->f;
    g_calls++;
    afut_status_t rc = afut_add_done_callback(f, k_done_fns[fn], idp(id), ud_free);
    pop_inline_frame(pushed);
    MCHECK_EQ(rc, expect);
    if (rc != AFUT_OK) {
        if (reent) {
            g_f[s].drefs--; /* others hold it: never the last reference */
            afut_unref(f);
        }
        id_refused(id);
    }
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

static bool g_near_defer;          /* act_near_timer: class 12's spin happens in act_run_once */
static double g_spin_until = NAN;  /* act_run_once spins to this loop time before its call */

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

/* Waits until the loop's clock is at `t` or past it (spin or advance, as spin_past). */
static void spin_until(mloop_t *L, double t) {
    if (!L->virt) {
        while (afut_loop_time(L->l) < t) {
        }
        return;
    }
    while (afut_loop_time(L->l) < t) {
        g_calls++;
        g_stat_advances++;
        MCHECK_EQ(afut_loop_advance_time(L->l, t - afut_loop_time(L->l)), AFUT_OK);
    }
}

/* call_soon (cls -1) or one of the timer classes, whose deadlines the model knows (exactly,
 * or bounded by the loop clock read before and after the call):
 *  0: call_later(-INFINITY)                         due, deadline -inf (FIFO)
 *  1: call_later(-1e6)                              due, deadline now-1e6
 *  2: call_at(-1000 - k)                            due, deadline exact
 *  3: call_later(0 / -0.0 / 1e-9), call_at(now)     due (the clock is spun past it)
 *  4: edges that are due: call_later(+-5e-324 / -DBL_MAX / -1e19), call_at(-INFINITY /
 *     -DBL_MAX / 5e-324 / -0.0)
 *  9: call_later(INFINITY / 1e6), call_at(INFINITY / 1e9)   never, or days away
 * 10: edges that are days away: call_later / call_at(DBL_MAX / 1e19 / 1e300 / 2^63-ulp /
 *     2^63 / 2^63+ulp / 2^64 / 2^64+ulp)
 * 11: between 1000 s and ~5 days away (call_at exact, call_later bounded): timeout_ms's
 *     rounding and its one-day clamp
 * 12: 30 us to 2 ms away, the clock spun to the deadline: due, sometimes before the kernel
 *     timer expired (the fd must not stay readable after the run)
 * 13: NaN (call_later(NaN / -NaN), call_at(NaN)): refused, 0, userdata kept */
static void act_schedule(int loopi, int cls) {
    TRACE("%*sschedule(loop %d, class %d)\n", g_depth * 2, "", loopi, cls);
    mloop_t *L = &g_loops[loopi];
    uint32_t id = id_new(ID_CB);
    afut_handle_t h = 0;
    double delay = 0, when = 0;
    bool at = false, spin = false, minf = false, nan_arg = false;
    uint8_t dc = DC_DUE;
    double exact = NAN; /* the deadline, when the argument gives it exactly */
    uint32_t v = rnd(cls == 4 || cls == 10 ? 9 : 4);
    double tb = cls >= 0 ? afut_loop_time(L->l) : 0;
    switch (cls) {
    case 0: delay = -INFINITY; minf = true; exact = -INFINITY; break;
    case 1: delay = -1e6; break;
    case 2: at = true; when = exact = -1000.0 - (double)v; break;
    case 3:
        spin = true;
        if (v == 0) delay = 0.0;
        else if (v == 1) delay = -0.0;
        else if (v == 2) delay = 1e-9;
        else { at = true; when = tb; }
        break;
    case 4:
        switch (v) {
        case 0: delay = DBL_TRUE_MIN; spin = true; break;
        case 1: delay = -DBL_TRUE_MIN; spin = true; break;
        case 2: delay = -DBL_MAX; exact = -DBL_MAX; break;
        case 3: delay = -1e19; exact = -1e19; break;
        case 4: at = true; when = exact = -INFINITY; minf = true; break;
        case 5: at = true; when = exact = -DBL_MAX; break;
        case 6: at = true; when = exact = DBL_TRUE_MIN; spin = true; break; /* a virtual clock may be at 0 */
        case 7: at = true; when = exact = -0.0; break;
        default: at = true; when = exact = 0.0; break;
        }
        break;
    case 9:
        if (v == 0) { delay = INFINITY; dc = DC_NEVER; }
        else if (v == 1) { delay = 1e6; dc = DC_FAR; }
        else if (v == 2) { at = true; when = INFINITY; dc = DC_NEVER; }
        else { at = true; when = exact = 1e9; dc = DC_FAR; }
        break;
    case 10: {
        static const double far[] = {DBL_MAX, 1e19, 1e300, 0, T_2P63, 0, T_2P64, 0, 0};
        double x = far[v];
        if (v == 3) x = edge_below(T_2P63);
        if (v == 5) x = edge_above(T_2P63);
        if (v == 7) x = edge_below(T_2P64);
        if (v == 8) x = edge_above(T_2P64);
        dc = DC_FAR;
        at = rnd(2) != 0;
        if (at) when = exact = x;
        else { delay = x; exact = x; } /* now + x == x: now is far below x's ulp */
        break;
    }
    case 11: {
        static const double mid[] = {2147483.647, 2147483.648, 86399.9995, 86400.0005};
        double x = rnd(5) == 0 ? mid[rnd(4)] : 1000.0 + (double)rnd(1u << 20) * 0.4375 + (double)rnd(1000) * 1e-6;
        dc = DC_FAR;
        at = rnd(2) != 0;
        if (at) when = exact = tb + x;
        else delay = x;
        break;
    }
    case 12: {
        /* how late the kernel timer fires varies with the machine: several distances */
        static const double near_d[] = {3e-5, 1e-4, 3e-4, 1e-3, 2e-3};
        at = true; /* an exact deadline: the spin below ends right at it */
        when = exact = tb + near_d[rnd(g_near_defer ? 5 : 2)];
        break;
    }
    case 13:
        nan_arg = true;
        if (v == 0) delay = NAN;
        else if (v == 1) delay = -NAN;
        else { at = true; when = NAN; }
        break;
    default: break;
    }
    if (cls == 4 || cls == 10 || cls == 13) edge_note(at ? when : delay);
    g_calls++;
    if (cls < 0)
        h = rnd(2) ? afut_loop_call_soon(L->l, loop_cb, idp(id), ud_free)
                   : afut_loop_call_soon_threadsafe(L->l, loop_cb, idp(id), ud_free);
    else if (at)
        h = afut_loop_call_at(L->l, when, loop_cb, idp(id), ud_free);
    else
        h = afut_loop_call_later(L->l, delay, loop_cb, idp(id), ud_free);
    double ta = cls >= 0 ? afut_loop_time(L->l) : 0;
    if (L->closed || nan_arg) {
        if (h != 0)
            MFAIL("%s returned handle %llu, expected 0", nan_arg ? "scheduling at NaN" : "scheduling on a closed loop",
                  (unsigned long long)h);
        id_refused(id);
        return;
    }
    if (h == 0) MFAIL("scheduling (class %d, delay %g, when %g, at %d) returned 0", cls, delay, when, at);
    TRACE("%*s  -> id %u handle %llu (delay %.17g, when %.17g, at %d, clock %.17g..%.17g)\n", g_depth * 2, "", id,
          (unsigned long long)h, delay, when, at, tb, ta);
    g_ids[id].regs++;
    int hi = h_new();
    hrec_t *H = &g_h[hi];
    H->h = h;
    H->id = id;
    H->loop = loopi;
    H->cls = cls;
    H->seq = L->seq++;
    H->dc = dc;
    H->minf = minf;
    h_live(hi);
    if (cls < 0) {
        q_push(&L->q, (item_t){.kind = IT_CALL, .hr = hi, .id = id});
        return;
    }
    if (dc == DC_NEVER) {
        H->dl = H->lo = H->hi = INFINITY;
    } else if (!isnan(exact)) {
        H->dl = H->lo = H->hi = exact;
    } else if (at) {
        H->dl = H->lo = H->hi = when;
    } else {
        H->lo = tb + delay;
        H->hi = ta + delay;
        H->dl = H->hi;
    }
    if (cls == 12) {
        /* Spin to the deadline, not past it: run_once may then run the timer before the
         * kernel timer behind the host fd expired (the fd must not stay readable after the
         * run, which ran the timer). act_near_timer spins in
         * act_run_once instead, right before the real call. */
        if (g_near_defer) g_spin_until = H->hi;
        else
            spin_until(L, H->hi);
    } else if (spin) {
        /* Make sure the deadline is behind us before anything else is scheduled, so that
         * deadline order is scheduling order among these. */
        spin_past(L, H->hi + 1e-9);
    }
    GROW(L->timers, L->ntimers, L->captimers, 64);
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
        if (g_h[hi].cls >= 0) L->timer_gone = true;
        h_dead(hi);
    }
    TRACE("%*s  -> handle %llu (id %u)\n", g_depth * 2, "", (unsigned long long)h, expect ? g_h[hi].id : 0);
    g_calls++;
    bool rc = afut_loop_cancel(L->l, h);
    MCHECK_EQ(rc, expect);
}

/* ------------------------------------------------------------------------------------------
 * The aux engine: tasks, sleeps, wrappers and combinators (afut.h afut_task_new,
 * afut_task_await, afut_sleep, afut_wrap_future, afut_gather, afut_wait_for, afut_shield,
 * afut_wait_many, afut_as_completed; SEMANTICS.md F21-F22, T1-T6, G1-G6, WF1-WF2, S1, W1-W4,
 * SL1).
 *
 * Each entry is a future the model follows (or an as_completed group). Everything that
 * happens to it goes through the loop's ready queue as afut's internal done-callbacks and
 * scheduled calls, asyncio's own structure: a task's step (Task.__step / __wakeup), a sleep's
 * timer and its cancel-the-timer callback, _chain_future's two callbacks, gather's
 * _done_callback, shield's _inner_done_callback / _outer_done_callback, wait's
 * _on_completion and its timer, as_completed's callbacks and timer. The model queues each of
 * them as an item with the key (global run, position of the item that queued it, sequence),
 * which is the real queue order; after run_once it plays the batch's items in that order.
 * Task steps run for real during the batch (they are C code): they are checked as they run,
 * and what they queue gets the key of their own item. So run_once's count is exact on every
 * loop, and so is "work ready" for the host fd and afut_loop_timeout_ms.
 *
 * Rules the model follows where afut.h deliberately differs from asyncio:
 *   - afut_cancel on a pending gather cancels the children and ends the gather CANCELLED at
 *     once, with the message (gh-85071; SEMANTICS.md G5, B10);
 *   - a wrapper copies the cancel message both ways (afut.h afut_wrap_future; asyncio's
 *     _copy_future_state drops it, F21);
 *   - the cancel message of a task is stable (T4);
 *   - a fire-and-forget task is kept alive by the loop (gh-91887, T1);
 *   - a cancel propagates depth-first through at most 64 nested futures, deeper ones are
 *     queued (see aux_cancel). */

#define AUX_BASE 0x40000000u
#define AUX_RAND_MAX 28  /* live entries of the random model */
#define AUX_CAP 20000    /* entries in all (deep chains included) */

enum { AK_TASK = 1, AK_GATE, AK_SLEEP, AK_SRC, AK_WRAP, AK_GATHER, AK_WAITFOR, AK_SHIELD, AK_WAITMANY, AK_ACG, AK_SLOT, AK_NKINDS };
static const char *const k_kind[AK_NKINDS] = {"?", "task", "gate", "sleep", "source", "wrap", "gather", "wait_for",
                                              "shield", "wait_many", "as_completed", "as_completed slot"};
enum { OP_YIELD, OP_GATE, OP_SLEEP, OP_WRAP, OP_RESULT, OP_EXC, OP_SELFCANCEL, OP_AWAIT, OP_ECHO };
enum { AI_STEP = 1, AI_WAKE, AI_SFIRE, AI_SCT, AI_WCS, AI_WCOPY, AI_WMIR, AI_GCH, AI_WFD, AI_SHC, AI_SHO, AI_WMM, AI_ACM, AI_OBS, AI_TIMER };
enum { AT_SLEEP = 1, AT_WF, AT_WM, AT_AC };
/* Aux ids (values, details, task userdata, observers). */
enum { AXK_VALUE = 1, AXK_DETAIL, AXK_TASKUD, AXK_SLEEPVAL, AXK_OBS };
enum { OBS_REG = 1, OBS_QUEUED, OBS_RAN, OBS_DROPPED };

typedef struct {
    uint8_t kind;
    bool removed;
    int ent, arg;
    uint32_t oid;
} lsn_t;

typedef struct {
    int kind;
    bool live, held, orphan, chain;
    afut_t *f;
    int loop;        /* its loop (a loop-less source: its wrapper's, for bookkeeping) */
    bool loopless;
    uint64_t serial;
    int st;
    void *val;       /* the result pointer */
    int val_of;      /* the gather / wait_many whose array `val` is, or -1 */
    int32_t code;
    const char *emsg;
    void *detail;
    const char *cmsg;
    uint32_t vid;    /* the aux id this entry owns (its result value or exception detail) */
    int mirror_of;   /* a result or exception mirrored from this entry, which it keeps alive */
    uint64_t mirror_serial;
    akey_t done_key;
    lsn_t *lsn;
    int nlsn, caplsn;
    uint64_t maybe_done_run; /* a reaction in this global run may complete it */
    int pins;        /* items, listeners and timers naming it */
    int nwaiters;    /* tasks awaiting it */
    int nlisten;     /* combinators listening to it (it must stay held while they may read it) */
    /* task */
    uint32_t udid;
    uint8_t script[8];
    int nscript, pos;
    int awaited;
    bool pend;
    const char *pmsg;
    int ncancel;
    long long step_run;
    uint32_t step_pos;
    bool stepped;
    long long ended_at;
    int defer_target;  /* OP_AWAIT: registration played at the step's position */
    bool defer_cancel;
    bool defer_drain;  /* completed by its step: callbacks scheduled at the step's position */
    /* sleep */
    int timer;
    long long free_by;
    bool close_free;
    /* wrap: peer = its source; source: peer = its wrapper; shield / wait_for: peer = inner */
    int peer;
    /* gather / wait_many / as_completed group: unique inputs; gather: argument -> input */
    int *kids;
    int nkids;
    int *args;
    int nargs;
    bool retexc;
    int remaining;
    bool timed_out;  /* wait_for */
    int rw;          /* wait_many */
    int *dset;
    int ndset;
    int *slots;      /* as_completed group: its slots */
    int group;       /* as_completed slot: its group */
    void *arr;       /* gather / wait_many: the array first seen through afut_result */
} aux_t;

typedef struct {
    uint8_t kind, dc;
    bool live;
    int ent, loop;
    double lo, hi;
    uint64_t seq;
} atimer_t;

typedef struct {
    int32_t frees;
    bool refused;
    uint8_t kind;
    bool reent;      /* its free function re-enters the API (see "Destructors") */
    int ent;         /* the entry it belongs to */
    uint64_t serial; /* ... checked by serial */
    int loop;
    uint64_t epoch;
    afut_t *ref;     /* reent task userdata / observer: the future it holds a reference to */
    uint8_t obs;     /* observer state */
    long long ran_run;
} auxid_t;

static aux_t *g_a;
static int g_na, g_nalive;
static int *g_afree;
static int g_nafree;
static int g_rand[AUX_RAND_MAX];
static int g_nrand;
static uint64_t g_serial;
static atimer_t *g_tm;
static int g_ntm, g_captm;
static int *g_tmfree;
static int g_ntmfree, g_captmfree;
static auxid_t *g_ax;
static uint32_t g_nax, g_capax;
static uint64_t g_grun;   /* global run counter (all loops) */
static akey_t g_parent;   /* the key context: the item being played, or top level */
static uint64_t g_aseq;
static unsigned long long g_stat_tasks, g_stat_steps, g_stat_sleeps, g_stat_wraps, g_stat_task_cancels;
static unsigned long long g_stat_task_end[4], g_stat_closed_tasks, g_stat_value_frees[3], g_stat_mirrors[4];
static unsigned long long g_stat_gathers, g_stat_waitfors, g_stat_shields, g_stat_shortcuts, g_stat_waitmanys;
static unsigned long long g_stat_ascompleted, g_stat_awaits_other, g_stat_observers, g_stat_items;
static unsigned long long g_stat_gather_end[4], g_stat_wf_timeouts, g_stat_wm_timeouts, g_stat_ac_timeouts;

/* Tasks whose step ended them in the running batch: their userdata must be freed before
 * the next callback starts ("right after the step that ended the task"). */
#define MAXJUST 64
static uint32_t g_just_ended[MAXJUST];
static int g_njust_ended;
static void aux_check_just_ended(void);

/* Entries played or stepped in this run: checked after it. */
static int *g_touched;
static int g_ntouched, g_captouched;

static void touch(int i) {
    GROW(g_touched, g_ntouched, g_captouched, 64);
    g_touched[g_ntouched++] = i;
}

static int key_cmp(akey_t a, akey_t b) {
    if (a.run != b.run) return a.run < b.run ? -1 : 1;
    if (a.pos != b.pos) return a.pos < b.pos ? -1 : 1;
    return a.seq < b.seq ? -1 : a.seq > b.seq ? 1 : 0;
}

static akey_t key_now(void) {
    akey_t k = g_parent;
    k.seq = ++g_aseq;
    return k;
}

static void key_top(void) { g_parent = (akey_t){g_grun, UINT32_MAX, 0}; }

/* ----- aux ids ----- */

static uint32_t ax_new(int kind, int ent) {
    if (g_nax == 0) g_nax = 1;
    GROW(g_ax, g_nax, g_capax, 256);
    g_ax[g_nax] = (auxid_t){.kind = (uint8_t)kind, .ent = ent, .serial = ent >= 0 ? g_a[ent].serial : 0,
                            .loop = ent >= 0 ? g_a[ent].loop : -1, .ran_run = -1};
    if (ent >= 0) g_ax[g_nax].epoch = g_loops[g_a[ent].loop].epoch;
    return g_nax++;
}

static void *axp(uint32_t k) { return k ? (void *)(uintptr_t)(AUX_BASE + k) : NULL; }

static void aux_reent_destructor(uint32_t k);

static void ax_free(void *p) {
    uintptr_t v = (uintptr_t)p;
    if (v <= AUX_BASE || v - AUX_BASE >= g_nax) MFAIL("aux free(%p): not an aux id", p);
    uint32_t k = (uint32_t)(v - AUX_BASE);
    if (g_ax[k].refused) MFAIL("aux id %u freed though its hand-over was refused", k);
    if (++g_ax[k].frees > 1) MFAIL("aux id %u freed %d times", k, g_ax[k].frees);
    if (g_ax[k].kind == AXK_OBS) {
        uint8_t s = g_ax[k].obs;
        if (s == OBS_REG || s == OBS_QUEUED) {
            int i = g_ax[k].ent;
            aux_t *X = &g_a[i];
            MFAIL("observer %u (state %d) of entry %d (%s) freed before it ran", k, s, i, k_kind[X->kind]);
            g_ax[k].obs = OBS_DROPPED;
        }
    }
    if (g_ax[k].reent) aux_reent_destructor(k);
}

static void ax_expect_freed(uint32_t k, const char *what) {
    if (k && g_ax[k].frees != 1) MFAIL("%s: aux id %u freed %d times, expected once", what, k, g_ax[k].frees);
}

static void aux_check_just_ended(void) {
    for (int k = 0; k < g_njust_ended; k++) ax_expect_freed(g_just_ended[k], "task userdata at the next callback");
    g_njust_ended = 0;
}

/* ----- entries ----- */

static int ent_new(int kind, int loopi, bool chain) {
    int i;
    if (!g_a) {
        g_a = xrealloc(NULL, AUX_CAP * sizeof *g_a);
        memset(g_a, 0, AUX_CAP * sizeof *g_a);
        g_afree = xrealloc(NULL, AUX_CAP * sizeof *g_afree);
    }
    if (g_nafree) {
        i = g_afree[--g_nafree];
    } else {
        if (g_na == AUX_CAP) MFAIL("model: aux table full");
        i = g_na++;
    }
    aux_t *E = &g_a[i];
    memset(E, 0, sizeof *E);
    E->kind = kind;
    E->live = true;
    E->loop = loopi;
    E->st = ST_P;
    E->serial = ++g_serial;
    E->awaited = E->peer = E->group = E->timer = E->val_of = E->defer_target = E->mirror_of = -1;
    E->step_run = E->ended_at = E->free_by = -1;
    E->maybe_done_run = UINT64_MAX;
    E->chain = chain;
    g_loops[loopi].nfuts++;
    g_nalive++;
    if (!chain) {
        if (g_nrand == AUX_RAND_MAX) MFAIL("model: too many random aux entries");
        g_rand[g_nrand++] = i;
    }
    return i;
}

static int aux_free_slots(void) { return AUX_RAND_MAX - g_nrand; }

static void aux_remove_maybe(int i);

static void ent_forget(int i) {
    aux_t *E = &g_a[i];
    if (!E->live) return;
    int released[8], nrel = 0;
    if (!E->chain) {
        for (int k = 0; k < g_nrand; k++)
            if (g_rand[k] == i) {
                g_rand[k] = g_rand[--g_nrand];
                break;
            }
        /* the inputs it listened to may go now; mirrors of its array keep the pointer */
        if (E->kind == AK_GATHER || E->kind == AK_WAITMANY || E->kind == AK_ACG)
            for (int k = 0; k < E->nkids; k++) {
                g_a[E->kids[k]].nlisten--;
                if (nrel < 8) released[nrel++] = E->kids[k];
            }
        if ((E->kind == AK_WAITFOR || E->kind == AK_SHIELD) && E->peer >= 0) {
            g_a[E->peer].nlisten--;
            if (nrel < 8) released[nrel++] = E->peer;
        }
        if (E->kind == AK_GATHER || E->kind == AK_WAITMANY)
            for (int k = 0; k < g_nrand; k++) {
                aux_t *M = &g_a[g_rand[k]];
                if (M->val_of != i) continue;
                if (E->arr) {
                    M->val = E->arr;
                    M->val_of = -1;
                } else {
                    M->val_of = -2; /* an array nobody saw: not checked any more */
                }
            }
    }
    mloop_t *L = &g_loops[E->loop];
    free(E->lsn);
    free(E->kids);
    free(E->args);
    free(E->dset);
    free(E->slots);
    memset(E, 0, sizeof *E);
    L->nfuts--;
    if (L->freed && L->nfuts == 0) L->used = false;
    g_nalive--;
    g_afree[g_nafree++] = i;
    for (int k = 0; k < nrel; k++)
        if (g_a[released[k]].live) aux_remove_maybe(released[k]);
}

static void pin(int i) {
    if (i >= 0) g_a[i].pins++;
}

static void unpin(int i) {
    if (i >= 0) g_a[i].pins--;
}

/* Forgets an entry once nothing about it is left to check. */
static void aux_remove_maybe(int i) {
    aux_t *E = &g_a[i];
    if (!E->live || E->chain || E->held || E->pins > 0 || E->nwaiters > 0 || E->nlisten > 0 || E->free_by >= 0 ||
        E->close_free)
        return;
    if (E->kind == AK_TASK && (E->ended_at >= 0 || E->awaited >= 0)) return;
    if (E->kind == AK_ACG) {
        for (int k = 0; k < E->nkids; k++)
            if (E->slots[k] >= 0 && g_a[E->slots[k]].live && g_a[E->slots[k]].group == i) return;
    } else if (E->st == ST_P && !E->orphan) {
        return;
    }
    if (E->kind == AK_SLOT && E->group >= 0 && g_a[E->group].live) {
        aux_t *G = &g_a[E->group];
        for (int k = 0; k < G->nkids; k++)
            if (G->slots[k] == i) G->slots[k] = -1;
    }
    if (E->kind == AK_WRAP && E->peer >= 0 && g_a[E->peer].live && g_a[E->peer].peer == i) g_a[E->peer].peer = -1;
    if (E->kind == AK_SRC && E->peer >= 0 && g_a[E->peer].live && g_a[E->peer].peer == i) g_a[E->peer].peer = -1;
    ent_forget(i);
}

static bool msg_eq(const char *a, const char *b) {
    if (!a || !b) return a == b;
    return strcmp(a, b) == 0;
}

/* ----- timers ----- */

static int tm_new(int kind, int ent, int loopi, uint8_t dc, double lo, double hi) {
    int t;
    if (g_ntmfree) {
        t = g_tmfree[--g_ntmfree];
    } else {
        GROW(g_tm, g_ntm, g_captm, 64);
        t = g_ntm++;
    }
    static uint64_t seq;
    g_tm[t] = (atimer_t){.kind = (uint8_t)kind, .dc = dc, .live = true, .ent = ent, .loop = loopi, .lo = lo, .hi = hi, .seq = ++seq};
    mloop_t *L = &g_loops[loopi];
    GROW(L->atm, L->natm, L->capatm, 16);
    L->atm[L->natm++] = t;
    pin(ent);
    return t;
}

/* The timer's handle was cancelled (or it ran, or the loop closed). */
static void tm_kill(int t) {
    if (t < 0 || !g_tm[t].live) return;
    g_tm[t].live = false;
    if (g_tm[t].loop >= 0) g_loops[g_tm[t].loop].timer_gone = true;
    unpin(g_tm[t].ent);
}

/* Drops dead timers from a loop's list (they go back to the pool). */
static void tm_compact(int loopi) {
    mloop_t *L = &g_loops[loopi];
    size_t k = 0;
    for (size_t j = 0; j < L->natm; j++) {
        int t = L->atm[j];
        if (g_tm[t].live) {
            L->atm[k++] = t;
        } else {
            GROW(g_tmfree, g_ntmfree, g_captmfree, 64);
            g_tmfree[g_ntmfree++] = t;
        }
    }
    L->natm = k;
}

/* A delay (timeout) as a timer class, and the clock spun past the deadline when it is due
 * now: afut_sleep / wait_for / wait_many / as_completed schedule `now + d` (wait_many and
 * as_completed `now + max(d, 0)`). */
static int aux_timer_for(int kind, int ent, int loopi, double tb, double ta, double d) {
    mloop_t *L = &g_loops[loopi];
    if (d == INFINITY) return tm_new(kind, ent, loopi, DC_NEVER, INFINITY, INFINITY);
    double lo = tb + d, hi = ta + d;
    uint8_t dc = (d > 1000.0) ? DC_FAR : DC_DUE;
    if (dc == DC_DUE) spin_past(L, hi + 1e-9);
    return tm_new(kind, ent, loopi, dc, lo, hi);
}

/* ----- queue ----- */

static void aux_item_dropped(uint8_t kind, int ent, int arg, uint32_t oid);

/* Queues an internal callback on `loopi` (dropped if the loop is closed). */
static void aux_push(int loopi, uint8_t kind, int ent, int arg, uint32_t oid) {
    mloop_t *L = &g_loops[loopi];
    if (L->closed) {
        aux_item_dropped(kind, ent, arg, oid);
        return;
    }
    GROW(L->aq, L->naq, L->capaq, 32);
    L->aq[L->naq++] = (aitem_t){.key = key_now(), .kind = kind, .ent = ent, .arg = arg, .oid = oid};
    pin(ent);
    pin(arg);
    if (kind == AI_OBS) g_ax[oid].obs = OBS_QUEUED;
}

static void aux_item_dropped(uint8_t kind, int ent, int arg, uint32_t oid) {
    (void)ent;
    (void)arg;
    if (kind == AI_OBS) g_ax[oid].obs = OBS_DROPPED; /* its userdata is freed with it */
}

static void aux_wrap_copy(int w, int s);

/* Registers a done-callback of the library (or an observer) on entry `x`: appended while
 * it is pending, queued at once when it is done (F6; a loop-less source runs it inline). */
static void lsn_add(int x, uint8_t kind, int ent, int arg, uint32_t oid) {
    aux_t *X = &g_a[x];
    if (X->st != ST_P && !X->defer_drain) {
        if (X->loopless) {
            if (kind == AI_WCOPY) aux_wrap_copy(ent, x);
            return;
        }
        aux_push(X->loop, kind, ent, arg, oid);
        return;
    }
    GROW(X->lsn, X->nlsn, X->caplsn, 4);
    X->lsn[X->nlsn++] = (lsn_t){.kind = kind, .ent = ent, .arg = arg, .oid = oid};
    pin(ent);
    if (kind == AI_OBS) g_ax[oid].obs = OBS_REG;
}

/* Removes the library's callback `kind` of `ent` from `x` (remove_done_callback by token). */
static void lsn_remove(int x, uint8_t kind, int ent) {
    aux_t *X = &g_a[x];
    for (int k = 0; k < X->nlsn; k++)
        if (!X->lsn[k].removed && X->lsn[k].kind == kind && X->lsn[k].ent == ent) {
            X->lsn[k].removed = true;
            unpin(ent);
        }
}

/* Entry `i` just completed (its outcome is set): when, in queue order. */
static void aux_mark_done(int i) {
    g_a[i].done_key = key_now();
    touch(i);
}

/* ... and its callbacks are scheduled, in order. A task completed by its step (C code that
 * runs for real during the batch) has this played at its step's position after the run
 * (defer_drain), so that reactions earlier in the batch that detach callbacks from it (a
 * shield's outer, wait's cleanup, as_completed's timeout) come first, as they really did. */
static void aux_drain(int i) {
    aux_t *E = &g_a[i];
    E->defer_drain = false;
    int n = E->nlsn;
    lsn_t *v = E->lsn;
    E->lsn = NULL;
    E->nlsn = E->caplsn = 0;
    for (int k = 0; k < n; k++) {
        if (v[k].removed) continue;
        if (g_a[i].loopless) {
            if (v[k].kind == AI_WCOPY) aux_wrap_copy(v[k].ent, i);
        } else {
            aux_push(g_a[i].loop, v[k].kind, v[k].ent, v[k].arg, v[k].oid);
        }
        unpin(v[k].ent);
    }
    free(v);
}

static void aux_done(int i) {
    aux_mark_done(i);
    aux_drain(i);
}

static void aux_set_result(int i, void *val, int val_of) {
    aux_t *E = &g_a[i];
    E->st = ST_R;
    E->val = val;
    E->val_of = val_of;
    aux_done(i);
}

static void aux_set_exception(int i, int32_t code, const char *msg, void *detail) {
    aux_t *E = &g_a[i];
    E->st = ST_E;
    E->code = code;
    E->emsg = msg;
    E->detail = detail;
    aux_done(i);
}

static void aux_cancel_plain(int i, const char *msg) {
    aux_t *E = &g_a[i];
    E->st = ST_C;
    E->cmsg = msg;
    aux_done(i);
}

/* Future.mirror / _copy_future_state (F21): nothing if `dst` is done; a cancellation is
 * copied with its message (afut.h afut_wrap_future). */
static void aux_mirror(int dst, int src) {
    aux_t *D = &g_a[dst], *S = &g_a[src];
    if (D->st != ST_P) return;
    if (S->st == ST_R || S->st == ST_E) {
        D->mirror_of = src;
        D->mirror_serial = S->serial;
    }
    if (S->st == ST_R) {
        aux_set_result(dst, S->val, S->val_of);
    } else if (S->st == ST_E) {
        aux_set_exception(dst, S->code, S->emsg, S->detail);
    } else if (S->st == ST_C) {
        aux_cancel_plain(dst, S->cmsg);
    }
}

static void aux_wm_cleanup(int w);

/* afut_cancel on entry `i` (the model side), with each kind's behaviour; iterative, because
 * chains thousands of links deep cancel down through every link in one call. Returns what
 * afut_cancel returns.
 * Depth: a cancel that propagates (a task to what it awaits, a gather to its children, a
 * wait_for to its inner) recurses in afut up to 64 nested cancels; a deeper one is queued,
 * and the outermost call runs the queue, first in first out, each from depth 2 again (the
 * parent does not wait for it: a gather or wait_for ends CANCELLED first, a task learns
 * later whether its awaited future took the cancel). Within 64 levels that is asyncio's
 * depth-first order; the model follows both, since the order is visible in the order the
 * done-callbacks run. */
#define CANCEL_DEPTH_LIMIT 64
typedef struct {
    int ent;
    const char *msg;
    int stage, k, depth;
} cframe_t;
typedef struct {
    int ent;
    const char *msg;
    int task; /* the task whose awaited future it is (its pending request depends on it), or -1 */
} cdefer_t;
static cframe_t *g_cst;
static int g_ncst, g_capcst;
static cdefer_t *g_cdef;
static int g_ncdef, g_capcdef, g_cdef_head;
static int g_cancel_nest;
static unsigned long long g_stat_cancel_deferred;

/* Cancels `child` for the frame on top of the stack: pushes its frame, or queues it when the
 * frame is at the depth limit. Returns whether it was queued. */
static bool aux_cancel_child(int child, const char *m, int task) {
    cframe_t *F = &g_cst[g_ncst - 1];
    if (F->depth >= CANCEL_DEPTH_LIMIT) {
        GROW(g_cdef, g_ncdef, g_capcdef, 64);
        g_cdef[g_ncdef++] = (cdefer_t){child, m, task};
        g_stat_cancel_deferred++;
        return true;
    }
    int d = F->depth + 1;
    GROW(g_cst, g_ncst, g_capcst, 64);
    g_cst[g_ncst++] = (cframe_t){child, m, 0, 0, d};
    return false;
}

static bool aux_cancel_run(int i, const char *msg, int depth) {
    int base = g_ncst;
    bool ret = false;
    GROW(g_cst, g_ncst, g_capcst, 64);
    g_cst[g_ncst++] = (cframe_t){i, msg, 0, 0, depth};
    while (g_ncst > base) {
        cframe_t *F = &g_cst[g_ncst - 1];
        aux_t *E = &g_a[F->ent];
        int e = F->ent;
        const char *m = F->msg;
        switch (F->stage) {
        case 0:
            if (E->st != ST_P) {
                ret = false;
                g_ncst--;
                break;
            }
            if (E->kind == AK_TASK) {
                /* T4: the awaited future is cancelled at once; else the request stays pending */
                E->ncancel++;
                if (E->awaited >= 0 && g_a[E->awaited].st == ST_P) {
                    F->stage = 1;
                    if (aux_cancel_child(g_a[e].awaited, m, e)) {
                        ret = true; /* decided when the queued cancel runs */
                        g_ncst--;
                    }
                    break;
                }
                E->pend = true;
                E->pmsg = m;
                ret = true;
                g_ncst--;
                break;
            }
            if (E->kind == AK_GATHER) {
                F->stage = 2; /* G5, with afut's deliberate CANCELLED at once (gh-85071) */
                break;
            }
            if (E->kind == AK_WAITFOR) {
                /* WF2: cancelling the wait_for cancels the inner (bpo-23219); then the
                 * wait_for ends CANCELLED at once (afut.h afut_wait_for) */
                tm_kill(E->timer);
                E->timer = -1;
                F->stage = 3;
                aux_cancel_child(g_a[e].peer, m, -1);
                break;
            }
            if (E->kind == AK_WAITMANY) {
                aux_cancel_plain(e, m); /* the inputs are untouched */
                aux_wm_cleanup(e);
                ret = true;
                g_ncst--;
                break;
            }
            aux_cancel_plain(e, m);
            ret = true;
            g_ncst--;
            break;
        case 1: /* a task, after cancelling what it awaits */
            if (!ret) {
                E->pend = true;
                E->pmsg = m;
            }
            ret = true;
            g_ncst--;
            break;
        case 2: /* a gather: its children, one by one, then itself */
            if (F->k < E->nkids) {
                int kid = E->kids[F->k++];
                aux_cancel_child(kid, m, -1);
                break;
            }
            aux_cancel_plain(e, m);
            ret = true;
            g_ncst--;
            break;
        case 3: /* a wait_for, after its inner */
            aux_cancel_plain(e, m);
            ret = true;
            g_ncst--;
            break;
        }
    }
    return ret;
}

static bool aux_cancel(int i, const char *msg) {
    bool outer = g_cancel_nest++ == 0;
    bool ret = aux_cancel_run(i, msg, 1);
    if (outer) {
        while (g_cdef_head < g_ncdef) {
            cdefer_t d = g_cdef[g_cdef_head++];
            bool r = aux_cancel_run(d.ent, d.msg, 2);
            if (d.task >= 0 && !r) {
                g_a[d.task].pend = true;
                g_a[d.task].pmsg = d.msg;
            }
        }
        g_ncdef = g_cdef_head = 0;
    }
    g_cancel_nest--;
    return ret;
}

/* ----- reactions: what each internal callback does when it runs ----- */

/* _chain_future's _call_set_state on the source side: the copy goes through the wrapper's
 * loop (call_soon), even if the source was done already (F22); the source's callback holds
 * the wrapper until then, so the copy is queued even for a wrapper nobody else holds. */
static void aux_wrap_copy(int w, int s) {
    aux_push(g_a[w].loop, AI_WMIR, w, s, 0);
}

/* gather's _done_callback for child `c` (G3, G4, with afut's CANCELLED gather). */
static void aux_gather_child(int g, int c) {
    aux_t *G = &g_a[g], *C = &g_a[c];
    if (G->st != ST_P) return; /* G3: a later child's exception counts as retrieved */
    if (!G->retexc) {
        if (C->st == ST_C) {
            /* G3: FINISHED with a CancelledError carrying the child's message */
            aux_set_exception(g, AFUT_ERR_CANCELLED, C->cmsg, NULL);
            g_stat_gather_end[ST_C - ST_R]++;
            return;
        }
        if (C->st == ST_E) {
            aux_set_exception(g, C->code, C->emsg, C->detail);
            g_stat_gather_end[ST_E - ST_R]++;
            return;
        }
    }
    if (--G->remaining == 0) {
        aux_set_result(g, NULL, g); /* G2: the children, in argument order */
        g_stat_gather_end[0]++;
    }
}

/* wait_for's done-callback on its inner (WF1, WF2). */
static void aux_wf_done(int w) {
    aux_t *W = &g_a[w];
    tm_kill(W->timer);
    W->timer = -1;
    if (W->st != ST_P) return;
    aux_t *I = &g_a[W->peer];
    if (W->timed_out && I->st == ST_C) {
        aux_set_exception(w, AFUT_ERR_TIMEOUT, "timed out", NULL);
        g_stat_wf_timeouts++;
    } else if (I->st == ST_E && I->code == AFUT_ERR_CANCELLED) {
        /* the inner failed with a CancelledError (a gather whose child was cancelled):
         * asyncio's wait_for awaits it, so it cancels the wait_for, with its message */
        aux_cancel_plain(w, I->emsg);
    } else {
        aux_mirror(w, W->peer); /* also a result that won the race, or a swallowed cancel */
    }
}

/* wait_for's timer (WF2): a result already there wins; else cancel the inner and wait. */
static void aux_wf_expire(int w) {
    aux_t *W = &g_a[w];
    W->timer = -1;
    if (W->st == ST_P && g_a[W->peer].st == ST_P) {
        W->timed_out = true;
        aux_cancel(W->peer, NULL);
    }
}

/* shield's _inner_done_callback (S1). */
static void aux_shield_copy(int o, int in) {
    aux_t *O = &g_a[o], *I = &g_a[in];
    if (O->st == ST_C) return; /* the inner's exception counts as retrieved */
    if (O->st != ST_P) return;
    if (I->st == ST_C) {
        /* asyncio: outer.cancel(), no message (S1) */
        aux_cancel_plain(o, NULL);
        return;
    }
    aux_mirror(o, in);
}

/* shield's _outer_done_callback (S1): detaches the inner's callback whatever ended the outer
 * (cancelled, or completed by the application). */
static void aux_shield_outer(int o) {
    lsn_remove(g_a[o].peer, AI_SHC, o);
}

static void aux_wm_cleanup(int w) {
    aux_t *W = &g_a[w];
    tm_kill(W->timer);
    W->timer = -1;
    for (int k = 0; k < W->nkids; k++) lsn_remove(W->kids[k], AI_WMM, w);
}

/* wait's completion (W2-W4): the done / pending sets at this moment, in input order. */
static void aux_wm_finish(int w) {
    aux_t *W = &g_a[w];
    if (W->st != ST_P) return;
    aux_wm_cleanup(w);
    akey_t now = key_now();
    W->dset = xrealloc(W->dset, (size_t)(W->nkids ? W->nkids : 1) * sizeof *W->dset);
    W->ndset = 0;
    for (int k = 0; k < W->nkids; k++) {
        aux_t *M = &g_a[W->kids[k]];
        if (M->st != ST_P && key_cmp(M->done_key, now) < 0) W->dset[W->ndset++] = k;
    }
    aux_set_result(w, NULL, w);
}

/* wait's _on_completion for member `m`. */
static void aux_wm_member(int w, int m) {
    aux_t *W = &g_a[w], *M = &g_a[m];
    if (W->st != ST_P) return;
    W->remaining--;
    bool finish;
    if (W->rw == AFUT_FIRST_COMPLETED) finish = true;
    else if (W->rw == AFUT_FIRST_EXCEPTION) finish = M->st == ST_E || W->remaining == 0;
    else finish = W->remaining == 0;
    if (finish) aux_wm_finish(w);
}

/* as_completed: member `m` completed; it goes to the first slot nobody completed or
 * cancelled. */
static void aux_ac_member(int g, int m) {
    aux_t *G = &g_a[g];
    G->remaining--;
    for (int k = 0; k < G->nkids; k++) {
        int s = G->slots[k];
        if (s >= 0 && g_a[s].st == ST_P) {
            aux_mirror(s, m);
            break;
        }
    }
    if (G->remaining == 0) {
        tm_kill(G->timer);
        G->timer = -1;
    }
}

static void aux_ac_expire(int g) {
    aux_t *G = &g_a[g];
    G->timer = -1;
    for (int k = 0; k < G->nkids; k++) lsn_remove(G->kids[k], AI_ACM, g);
    for (int k = 0; k < G->nkids; k++) {
        int s = G->slots[k];
        if (s >= 0 && g_a[s].st == ST_P) {
            aux_set_exception(s, AFUT_ERR_TIMEOUT, "timed out", NULL);
            g_stat_ac_timeouts++;
        }
    }
}

/* A sleep's timer (or its call_soon for a delay <= 0) fires. */
static void aux_sleep_fire(int s, long long r) {
    aux_t *S = &g_a[s];
    S->timer = -1;
    if (S->st == ST_P) {
        aux_set_result(s, axp(S->vid), -1);
    } else if (S->vid) {
        S->free_by = r; /* cancelled meanwhile: the value is freed now */
    }
}

/* The sleep's own done-callback: a cancelled sleep cancels its timer (SL1), which frees the
 * value with the timer's callback. */
static void aux_sleep_ct(int s, long long r) {
    aux_t *S = &g_a[s];
    if (S->st != ST_C) return;
    if (S->timer >= 0 && g_tm[S->timer].live) {
        tm_kill(S->timer);
        S->timer = -1;
        if (S->vid) S->free_by = r;
    }
}

/* _chain_future's _call_check_cancel on the wrapper: a cancelled wrapper cancels its source
 * (afut: directly, its cancel is thread-safe; message included). */
static void aux_wrap_cs(int w) {
    aux_t *W = &g_a[w];
    if (W->st != ST_C || W->peer < 0) return;
    int s = W->peer;
    aux_t *S = &g_a[s];
    if (S->loopless) {
        if (S->st == ST_P) {
            aux_cancel_plain(s, W->cmsg);
            g_stat_mirrors[3]++;
        }
    } else {
        aux_cancel(s, W->cmsg);
    }
}

/* ----- a run of a loop: the batch, played in queue order ----- */

static aitem_t *g_batch;
static size_t g_nbatch, g_capbatch;
static int g_batch_loop = -1;
static long long g_batch_r;
static uint32_t g_last_obs_pos;
static bool g_any_obs_ran;

static int item_cmp(const void *a, const void *b) {
    return key_cmp(((const aitem_t *)a)->key, ((const aitem_t *)b)->key);
}

static int tmseq_cmp(const void *a, const void *b) {
    uint64_t x = g_tm[*(const int *)a].seq, y = g_tm[*(const int *)b].seq;
    return x < y ? -1 : x > y;
}

static void mark_maybe_done(int i) {
    if (i < 0) return;
    aux_t *E = &g_a[i];
    E->maybe_done_run = g_grun;
    if (E->kind == AK_ACG)
        for (int k = 0; k < E->nkids; k++)
            if (E->slots[k] >= 0) g_a[E->slots[k]].maybe_done_run = g_grun;
}

/* `i` and what cancelling it cancels too. */
static void mark_cascade(int i, int depth) {
    if (i < 0 || depth > 48) return;
    mark_maybe_done(i);
    aux_t *E = &g_a[i];
    if (E->st != ST_P) return;
    if (E->kind == AK_TASK) mark_cascade(E->awaited, depth + 1);
    if (E->kind == AK_WAITFOR) mark_cascade(E->peer, depth + 1);
    if (E->kind == AK_GATHER)
        for (int k = 0; k < E->nkids; k++) mark_cascade(E->kids[k], depth + 1);
}

/* Before the real run_once: the ready queue is the batch, then the due timers (deadline
 * order: creation order, the clock was spun past each). Steps and observers learn their
 * position. */
static void aux_run_begin(int loopi) {
    mloop_t *L = &g_loops[loopi];
    long long r = (long long)L->runs;
    g_nbatch = 0;
    if (L->naq > g_capbatch) {
        g_capbatch = L->naq * 2 + 16;
        g_batch = xrealloc(g_batch, g_capbatch * sizeof *g_batch);
    }
    if (L->naq) memcpy(g_batch, L->aq, L->naq * sizeof *g_batch);
    g_nbatch = L->naq;
    L->naq = 0;
    if (g_nbatch > 1) qsort(g_batch, g_nbatch, sizeof *g_batch, item_cmp);
    tm_compact(loopi);
    int due[64], ndue = 0;
    int *duev = due;
    if (L->natm > 64) duev = xrealloc(NULL, L->natm * sizeof *duev);
    for (size_t j = 0; j < L->natm; j++)
        if (g_tm[L->atm[j]].dc == DC_DUE) duev[ndue++] = L->atm[j];
    if (ndue > 1) qsort(duev, (size_t)ndue, sizeof *duev, tmseq_cmp);
    for (int j = 0; j < ndue; j++) {
        GROW(g_batch, g_nbatch, g_capbatch, 64);
        g_batch[g_nbatch++] = (aitem_t){.kind = AI_TIMER, .ent = duev[j], .arg = -1};
    }
    if (duev != due) free(duev);
    for (size_t p = 0; p < g_nbatch; p++) {
        aitem_t *it = &g_batch[p];
        switch (it->kind) {
        case AI_STEP:
        case AI_WAKE: {
            aux_t *E = &g_a[it->ent];
            E->step_run = r;
            E->step_pos = (uint32_t)p;
            E->stepped = false;
            break;
        }
        case AI_OBS: g_ax[it->oid].ran_run = -2 - (long long)p; break; /* expected at position p */
        case AI_TIMER: break; /* timers run after every ready item, steps included */
        case AI_WCS: mark_cascade(g_a[it->ent].peer, 0); break; /* cancels the source */
        case AI_SHO: /* detaches the copy callback from the inner */
            mark_maybe_done(it->ent);
            mark_maybe_done(g_a[it->ent].peer);
            break;
        case AI_WMM: /* may finish: detaches its callbacks from every member */
        case AI_ACM:
            mark_maybe_done(it->ent);
            for (int k = 0; k < g_a[it->ent].nkids; k++) mark_maybe_done(g_a[it->ent].kids[k]);
            break;
        case AI_SCT:
        case AI_WCOPY: break;
        default: mark_maybe_done(it->ent); break;
        }
    }
    if (g_trace)
        for (size_t p = 0; p < g_nbatch; p++)
            TRACE("  batch %zu: kind %d ent %d arg %d oid %u\n", p, g_batch[p].kind, g_batch[p].ent, g_batch[p].arg,
                  g_batch[p].oid);
    g_batch_loop = loopi;
    g_batch_r = r;
    g_last_obs_pos = 0;
    g_any_obs_ran = false;
}

/* After the real run_once: plays the batch; returns how many items ran. */
static size_t aux_run_end(int loopi) {
    long long r = g_batch_r;
    size_t ran = 0;
    for (size_t p = 0; p < g_nbatch; p++) {
        aitem_t it = g_batch[p];
        g_parent = (akey_t){g_grun, (uint32_t)p, 0};
        g_stat_items++;
        TRACE("  item %zu: kind %d ent %d (%s) arg %d\n", p, it.kind, it.kind == AI_TIMER ? g_tm[it.ent].ent : it.ent,
              k_kind[g_a[it.kind == AI_TIMER ? g_tm[it.ent].ent : it.ent].kind], it.arg);
        switch (it.kind) {
        case AI_STEP:
        case AI_WAKE: {
            aux_t *E = &g_a[it.ent];
            if (!E->stepped && E->st == ST_P)
                MFAIL("task %d: its step (%s, position %zu of iteration %lld) did not run", it.ent,
                      it.kind == AI_STEP ? "first step or yield" : "wakeup", p, r);
            if (E->defer_target >= 0) {
                /* afut_task_await on an existing entry, in queue order: the wakeup callback,
                 * then the cancel of a pending request (it stays pending if that is done) */
                int t = E->defer_target;
                E->defer_target = -1;
                lsn_add(t, AI_WAKE, it.ent, t, 0);
                if (E->defer_cancel && aux_cancel(t, E->pmsg)) g_a[it.ent].pend = false;
            }
            if (E->defer_drain) aux_drain(it.ent);
            break;
        }
        case AI_OBS:
            if (g_ax[it.oid].ran_run != r)
                MFAIL("observer %u of entry %d (%s) did not run in iteration %lld", it.oid, it.ent, k_kind[g_a[it.ent].kind], r);
            g_ax[it.oid].obs = OBS_RAN;
            break;
        case AI_SFIRE: aux_sleep_fire(it.ent, r); break;
        case AI_SCT: aux_sleep_ct(it.ent, r); break;
        case AI_WCS: aux_wrap_cs(it.ent); break;
        case AI_WCOPY: aux_wrap_copy(it.ent, it.arg); break;
        case AI_WMIR:
            if (g_a[it.ent].st == ST_P) g_stat_mirrors[g_a[it.arg].st - ST_R]++;
            aux_mirror(it.ent, it.arg);
            break;
        case AI_GCH: aux_gather_child(it.ent, it.arg); break;
        case AI_WFD: aux_wf_done(it.ent); break;
        case AI_SHC: aux_shield_copy(it.ent, it.arg); break;
        case AI_SHO: aux_shield_outer(it.ent); break;
        case AI_WMM: aux_wm_member(it.ent, it.arg); break;
        case AI_ACM: aux_ac_member(it.ent, it.arg); break;
        case AI_TIMER: {
            int t = it.ent;
            if (!g_tm[t].live) continue; /* cancelled earlier in this batch: skipped, not counted */
            int e = g_tm[t].ent;
            tm_kill(t);
            switch (g_tm[t].kind) {
            case AT_SLEEP: aux_sleep_fire(e, r); break;
            case AT_WF: aux_wf_expire(e); break;
            case AT_WM:
                g_a[e].timer = -1;
                if (g_a[e].st == ST_P) g_stat_wm_timeouts++;
                aux_wm_finish(e);
                break;
            case AT_AC: aux_ac_expire(e); break;
            default: break;
            }
            touch(e);
            ran++;
            continue;
        }
        default: MFAIL("model: item kind %d", it.kind);
        }
        touch(it.ent);
        if (it.arg >= 0 && it.kind != AI_OBS) touch(it.arg);
        unpin(it.ent);
        unpin(it.arg);
        ran++;
    }
    g_nbatch = 0;
    g_batch_loop = -1;
    key_top();
    (void)loopi;
    return ran;
}

/* ----- the real callbacks of the aux engine: task steps and observers ----- */

static void aux_check(int i);

/* An observer: a done-callback the application adds to an aux future. */
static void aux_obs_cb(afut_t *fut, void *ud) {
    uint32_t k = (uint32_t)((uintptr_t)ud - AUX_BASE);
    if (!on_loop_thread()) MFAIL("observer off the loop thread");
    aux_check_just_ended();
    if (k == 0 || k >= g_nax || g_ax[k].kind != AXK_OBS) MFAIL("observer with a bad id");
    int i = g_ax[k].ent;
    long long want = g_ax[k].ran_run;
    if (g_batch_loop < 0 || want > -2) MFAIL("observer %u ran outside the iteration the model expects", k);
    uint32_t pos = (uint32_t)(-2 - want);
    if (g_any_obs_ran && pos <= g_last_obs_pos)
        MFAIL("observers ran out of queue order: observer %u of entry %d (%s) at position %u of the batch, after one at %u", k,
              i, k_kind[g_a[i].kind], pos, g_last_obs_pos);
    g_last_obs_pos = pos;
    g_any_obs_ran = true;
    g_ax[k].ran_run = g_batch_r;
    g_ax[k].obs = OBS_RAN; /* its userdata is freed right after it returns */
    aux_t *X = &g_a[i];
    if (X->f != fut) MFAIL("observer %u got future %p, expected %p", k, (void *)fut, (void *)X->f);
    g_checks++;
    if (!afut_done(fut) || X->st == ST_P) MFAIL("observer %u of a pending %s", k, k_kind[X->kind]);
    MCHECK_EQ(afut_cancelled(fut), X->st == ST_C);
    g_stat_callbacks++;
}

static int aux_pick_await(int task);

/* May a reaction of this batch (an item other than a step) change `i`, or anything that
 * cancelling `i` cancels too? Steps run for real during the batch and reactions are played
 * after it: a step must not act on what a reaction earlier in the batch changed. */
static bool cascade_busy(int i, int depth) {
    if (i < 0) return false;
    if (depth > 48) return true;
    aux_t *E = &g_a[i];
    if (E->maybe_done_run == g_grun) return true;
    if (E->st != ST_P) return false;
    if (E->kind == AK_TASK) return cascade_busy(E->awaited, depth + 1);
    if (E->kind == AK_WAITFOR) return cascade_busy(E->peer, depth + 1);
    if (E->kind == AK_GATHER)
        for (int k = 0; k < E->nkids; k++)
            if (cascade_busy(E->kids[k], depth + 1)) return true;
    return false;
}

/* A task's step: does what its script says (one op per step) and checks what it is told. */
static void aux_step(afut_t *task, afut_t *awaited, void *ud) {
    uint32_t k = (uint32_t)((uintptr_t)ud - AUX_BASE);
    if (k == 0 || k >= g_nax || g_ax[k].kind != AXK_TASKUD) MFAIL("step with a bad userdata");
    int i = g_ax[k].ent;
    aux_t *E = &g_a[i];
    if (!E->live || E->kind != AK_TASK || E->f != task || E->serial != g_ax[k].serial)
        MFAIL("step of a task the model does not know (%p)", (void *)task);
    if (!on_loop_thread()) MFAIL("task step off the loop thread");
    aux_check_just_ended();
    if (g_batch_loop != E->loop) MFAIL("task %d: step outside a run of its loop", i);
    mloop_t *L = &g_loops[E->loop];
    long long r = (long long)L->runs;
    if (E->step_run != r || E->stepped) MFAIL("task %d: step ran in iteration %lld, expected %lld", i, r, E->step_run);
    if (E->st != ST_P) MFAIL("task %d: step of a finished task", i);
    if (g_ax[E->udid].frees) MFAIL("task %d: userdata freed before the task ended", i);
    E->stepped = true;
    g_parent = (akey_t){g_grun, E->step_pos, 0};
    touch(i);
    g_stat_steps++;
    TRACE("%*stask %d step (iteration %lld, awaited %d, pend %d)\n", g_depth * 2, "", i, r, E->awaited, E->pend);
    bool aw_c = false;
    const char *aw_msg = NULL;
    int aw = E->awaited;
    g_checks++;
    if (aw >= 0) {
        aux_t *A = &g_a[aw];
        if (awaited != A->f) MFAIL("task %d: step got awaited %p, expected %p", i, (void *)awaited, (void *)A->f);
        g_checks += 2;
        if (A->st == ST_P) MFAIL("task %d: woken up while %s %d is pending", i, k_kind[A->kind], aw);
        MCHECK(afut_done(awaited));
        if (afut_cancelled(awaited) != (A->st == ST_C)) {
            char d[160];
            afut_describe(awaited, d, sizeof d);
            MFAIL("task %d: awaited %s %d is \"%s\", the model says state %d", i, k_kind[A->kind], aw, d, A->st);
        }
        if (A->st == ST_C) {
            aw_c = true;
            aw_msg = A->cmsg;
        } else if (A->st == ST_E) {
            afut_exception_t e;
            g_checks++;
            MCHECK_EQ(afut_exception(awaited, &e), AFUT_OK);
            MCHECK_EQ(e.code, A->code);
        }
        E->awaited = -1;
        A->nwaiters--;
        touch(aw);
    } else if (awaited) {
        MFAIL("task %d: step got awaited %p, expected NULL", i, (void *)awaited);
    }
    const char *pm = (const char *)0x1;
    g_checks++;
    bool req = afut_task_cancel_requested(task, &pm);
    MCHECK_EQ(req, E->pend);
    if (req && !msg_eq(pm, E->pmsg)) MFAIL("task %d: pending cancel message \"%s\"", i, pm ? pm : "(null)");
    int op = E->pos < E->nscript ? E->script[E->pos++] : OP_RESULT;
    if (!E->chain && rnd(8) == 0) {
        /* a task cannot await itself, nor a loop-less future (afut_task_await) */
        afut_t *lf = afut_new(NULL);
        g_calls += 4;
        MCHECK_EQ(afut_task_await(task, task), AFUT_ERR_INVALID_ARGUMENT);
        MCHECK_EQ(afut_task_await(task, lf), AFUT_ERR_INVALID_ARGUMENT);
        afut_unref(lf);
    }
    if ((op == OP_GATE || op == OP_SLEEP) && aux_free_slots() < 1) op = OP_YIELD;
    if (op == OP_WRAP && aux_free_slots() < 2) op = OP_YIELD;
    int target = -1;
    if (op == OP_AWAIT) {
        target = E->chain ? E->peer : aux_pick_await(i);
        if (target < 0) op = OP_YIELD;
    }
    if (op == OP_ECHO && aw < 0) op = OP_YIELD;
    TRACE("%*stask %d op %d target %d (%s, state %d)\n", g_depth * 2, "", i, op, target, target >= 0 ? k_kind[g_a[target].kind] : "-",
          target >= 0 ? g_a[target].st : 0);
    bool ended = false, awaiting = false;
    int newaw = -1;
    switch (op) {
    case OP_GATE: {
        int g = ent_new(AK_GATE, E->loop, false);
        aux_t *G = &g_a[g];
        G->held = true;
        g_calls++;
        G->f = afut_loop_create_future(L->l);
        if (!G->f) MFAIL("afut_loop_create_future");
        if (!E->pend && rnd(4) == 0) { /* awaiting a done future: the step comes next iteration */
            g_calls++;
            MCHECK_EQ(afut_set_result(G->f, NULL, NULL), AFUT_OK);
            aux_set_result(g, NULL, -1);
        }
        newaw = g;
        break;
    }
    case OP_SLEEP: {
        int s = ent_new(AK_SLEEP, E->loop, false);
        aux_t *S = &g_a[s];
        uint32_t dv = rnd(6);
        double delay = dv == 0 ? 1e-6 : dv == 1 ? INFINITY : 0.0; /* INFINITY: until cancelled or closed */
        S->vid = rnd(4) ? ax_new(AXK_SLEEPVAL, s) : 0;
        double tb = afut_loop_time(L->l);
        g_calls++;
        S->f = afut_sleep(L->l, delay, axp(S->vid), S->vid ? ax_free : NULL);
        double ta = afut_loop_time(L->l);
        if (!S->f) MFAIL("afut_sleep");
        g_stat_sleeps++;
        lsn_add(s, AI_SCT, s, -1, 0);
        if (delay <= 0) aux_push(E->loop, AI_SFIRE, s, -1, 0);
        else S->timer = aux_timer_for(AT_SLEEP, s, E->loop, tb, ta, delay);
        S->held = rnd(2) != 0;
        newaw = s;
        break;
    }
    case OP_WRAP: {
        int s = ent_new(AK_SRC, E->loop, false), w = ent_new(AK_WRAP, E->loop, false);
        aux_t *S = &g_a[s], *W = &g_a[w];
        S->held = W->held = true;
        S->loopless = true;
        S->peer = w;
        W->peer = s;
        g_calls += 2;
        S->f = afut_new(NULL);
        if (!E->pend && rnd(4) == 0) {
            S->vid = rnd(2) ? ax_new(AXK_VALUE, s) : 0;
            g_calls++;
            MCHECK_EQ(afut_set_result(S->f, axp(S->vid), S->vid ? ax_free : NULL), AFUT_OK);
            aux_set_result(s, axp(S->vid), -1);
        }
        W->f = afut_wrap_future(L->l, S->f);
        if (!S->f || !W->f || W->f == S->f) MFAIL("afut_wrap_future");
        g_stat_wraps++;
        lsn_add(w, AI_WCS, w, -1, 0);
        lsn_add(s, AI_WCOPY, w, s, 0);
        newaw = w;
        break;
    }
    case OP_AWAIT:
        newaw = target;
        g_stat_awaits_other++;
        break;
    case OP_ECHO: {
        /* a chain task: ends like the future it awaited */
        aux_t *A = &g_a[aw];
        if (aw_c || E->pend) break; /* returns: cancelled */
        if (A->st == ST_R) {
            void *v = (void *)0x5a5a;
            g_calls += 2;
            MCHECK_EQ(afut_result(awaited, &v), AFUT_OK);
            MCHECK_EQ(afut_set_result(task, v, NULL), AFUT_OK);
            E->st = ST_R;
            E->val = A->val;
            E->val_of = A->val_of;
            if (A->val_of >= 0 && g_a[A->val_of].arr == NULL) g_a[A->val_of].arr = v;
            if (A->val_of < 0 && v != A->val) MFAIL("task %d: awaited result %p, expected %p", i, v, A->val);
        } else {
            g_calls++;
            MCHECK_EQ(afut_set_exception(task, A->code, A->emsg, NULL, NULL), AFUT_OK);
            E->st = ST_E;
            E->code = A->code;
            E->emsg = A->emsg;
            E->detail = NULL;
        }
        ended = true;
        break;
    }
    case OP_RESULT: {
        uint32_t vid = rnd(2) ? ax_new(AXK_VALUE, i) : 0;
        g_calls++;
        afut_status_t rc = afut_set_result(task, axp(vid), vid ? ax_free : NULL);
        if (E->pend) {
            MCHECK_EQ(rc, AFUT_ERR_CANCELLED);
            if (vid) g_ax[vid].refused = true;
        } else {
            MCHECK_EQ(rc, AFUT_OK);
            E->st = ST_R;
            E->vid = vid;
            E->val = axp(vid);
            ended = true;
        }
        break;
    }
    case OP_EXC: {
        uint32_t did = rnd(2) ? ax_new(AXK_DETAIL, i) : 0;
        int32_t code = 1 + (int32_t)rnd(500);
        const char *msg = rnd(3) ? k_msgs[rnd(4)] : NULL;
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
            E->detail = axp(did);
            ended = true;
        }
        break;
    }
    case OP_SELFCANCEL:
        if (!E->pend) {
            const char *msg = k_msgs[rnd(4)];
            g_calls++;
            MCHECK(afut_cancel(task, msg));
            E->ncancel++;
            E->pend = true;
            E->pmsg = msg;
        }
        break;
    default: break; /* OP_YIELD */
    }
    if (newaw >= 0) {
        aux_t *A = &g_a[newaw];
        E->awaited = newaw;
        A->nwaiters++;
        g_calls++;
        MCHECK_EQ(afut_task_await(task, A->f), AFUT_OK);
        if (op == OP_AWAIT && (E->pend ? cascade_busy(newaw, 0) : g_a[newaw].maybe_done_run == g_grun)) {
            /* (a chain task) an entry that reactions of this batch may touch: its wakeup
             * registration (and cancel) are played at this step's position, in queue order
             * (aux_run_end) */
            E->defer_target = newaw;
            E->defer_cancel = E->pend;
        } else {
            lsn_add(newaw, AI_WAKE, i, newaw, 0);
            /* a pending request cancels the new awaited future at once; it stays pending if
             * that future is done already */
            if (E->pend && aux_cancel(newaw, E->pmsg)) E->pend = false;
        }
        if (A->kind == AK_SLEEP && !A->held) {
            g_calls++;
            afut_unref(A->f); /* the task keeps its own reference */
        }
        awaiting = true;
    }
    if (ended) {
        aux_mark_done(i);
        g_a[i].defer_drain = true;
    }
    if ((awaiting || ended) && rnd(4) == 0) {
        /* one await or completion per step */
        afut_t *other = afut_loop_create_future(L->l);
        g_calls += 3;
        MCHECK_EQ(afut_task_await(task, awaiting ? g_a[E->awaited].f : other), AFUT_ERR_INVALID_STATE);
        afut_unref(other);
    }
    if (!ended && !awaiting) {
        if (E->pend || aw_c) {
            E->st = ST_C;
            E->cmsg = E->pend ? E->pmsg : aw_msg;
            aux_mark_done(i);
            E->defer_drain = true;
            ended = true;
        } else {
            aux_push(E->loop, AI_STEP, i, -1, 0); /* yields */
        }
    }
    if (ended) {
        E = &g_a[i];
        E->pend = false;
        E->ended_at = r; /* userdata freed right after this step */
        if (g_njust_ended < MAXJUST) g_just_ended[g_njust_ended++] = E->udid;
        g_stat_task_end[E->st - ST_R]++;
        TRACE("%*stask %d ended, state %d\n", g_depth * 2, "", i, E->st);
    }
    key_top();
}

/* ----- checks ----- */

static void aux_check_value(int i, void *v) {
    aux_t *E = &g_a[i];
    if (E->val_of == -2) {
        if (!v) MFAIL("%s %d: NULL result, expected an array", k_kind[E->kind], i);
        return;
    }
    if (E->val_of < 0) {
        if (v != E->val) MFAIL("%s %d: result %p, expected %p", k_kind[E->kind], i, v, E->val);
        uintptr_t x = (uintptr_t)v;
        if (x > AUX_BASE && x - AUX_BASE < g_nax && g_ax[x - AUX_BASE].frees)
            MFAIL("%s %d: its result %p was freed while a future still lends it", k_kind[E->kind], i, v);
        return;
    }
    aux_t *G = &g_a[E->val_of];
    if (!v) MFAIL("%s %d: NULL result, expected the array of %s %d", k_kind[E->kind], i, k_kind[G->kind], E->val_of);
    if (G->arr == NULL) G->arr = v;
    if (v != G->arr) MFAIL("%s %d: result %p, expected the array %p of %s %d", k_kind[E->kind], i, v, G->arr, k_kind[G->kind], E->val_of);
}

/* Compares a future we hold with the model. */
static void aux_check(int i) {
    aux_t *E = &g_a[i];
    if (!E->live || !E->held || E->orphan || E->kind == AK_ACG) return;
    g_checks += 3;
    MCHECK_EQ(afut_done(E->f), E->st != ST_P);
    if (afut_cancelled(E->f) != (E->st == ST_C))
        MFAIL("%s %d: afut_cancelled %d, the model says state %d", k_kind[E->kind], i, afut_cancelled(E->f), E->st);
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
            MFAIL("%s %d: cancel message \"%s\", expected \"%s\"", k_kind[E->kind], i, m ? m : "(null)",
                  E->cmsg ? E->cmsg : "(null)");
    } else if (E->st == ST_R) {
        void *v = (void *)0x5a5a;
        MCHECK_EQ(afut_result(E->f, &v), AFUT_OK);
        aux_check_value(i, v);
        if (E->kind == AK_GATHER && E->val_of == i) {
            /* G2: the children in argument order, the same child at each of its positions */
            afut_t **arr = v;
            g_checks += (unsigned long long)E->nargs;
            for (int k = 0; k < E->nargs; k++) {
                afut_t *want = g_a[E->args[k]].f;
                if (arr[k] != want || afut_gather_child(E->f, (size_t)k) != want)
                    MFAIL("gather %d: child %d is %p (gather_child %p), expected %p", i, k, (void *)arr[k],
                          (void *)afut_gather_child(E->f, (size_t)k), (void *)want);
            }
            MCHECK(afut_gather_child(E->f, (size_t)E->nargs) == NULL);
        }
        if (E->kind == AK_WAITMANY && E->val_of == i) {
            const afut_wait_result_t *res = afut_wait_many_result(E->f);
            g_checks++;
            if (res != v) MFAIL("wait_many %d: afut_wait_many_result %p, afut_result %p", i, (const void *)res, v);
            if (res->n_done != (size_t)E->ndset || res->n_pending != (size_t)(E->nkids - E->ndset))
                MFAIL("wait_many %d: %zu done, %zu pending; expected %d done, %d pending", i, res->n_done, res->n_pending,
                      E->ndset, E->nkids - E->ndset);
            int d = 0, pd = 0;
            for (int k = 0; k < E->nkids; k++) {
                afut_t *m = g_a[E->kids[k]].f;
                if (d < E->ndset && E->dset[d] == k) {
                    if (res->done[d] != m) MFAIL("wait_many %d: done[%d] is not input %d", i, d, k);
                    d++;
                } else {
                    if (res->pending[pd] != m) MFAIL("wait_many %d: pending[%d] is not input %d", i, pd, k);
                    pd++;
                }
            }
        }
    } else if (E->st == ST_E) {
        afut_exception_t e;
        MCHECK_EQ(afut_exception(E->f, &e), AFUT_OK); /* also marks it retrieved */
        if (e.code != E->code) MFAIL("%s %d: exception code %d, expected %d", k_kind[E->kind], i, e.code, E->code);
        if (e.detail != E->detail) MFAIL("%s %d: detail %p, expected %p", k_kind[E->kind], i, e.detail, E->detail);
        if (!msg_eq(e.message, E->emsg))
            MFAIL("%s %d: exception message \"%s\", expected \"%s\"", k_kind[E->kind], i, e.message ? e.message : "(null)",
                  E->emsg ? E->emsg : "(null)");
    } else if (E->kind == AK_WAITMANY) {
        MCHECK(afut_wait_many_result(E->f) == NULL);
    }
}

/* After run_once `r` of loop `loopi`: what must have been freed, and the entries touched. */
static void aux_after_run(int loopi, long long r) {
    (void)loopi;
    for (int k = 0; k < g_ntouched; k++) {
        int i = g_touched[k];
        aux_t *E = &g_a[i];
        if (!E->live) continue;
        if (E->free_by >= 0 && E->free_by <= r) {
            ax_expect_freed(E->vid, "sleep value");
            g_stat_value_frees[E->st == ST_C]++;
            E->free_by = -1;
            E->close_free = false;
            E->vid = E->st == ST_R ? E->vid : 0;
        }
        if (E->kind == AK_TASK && E->ended_at >= 0 && E->ended_at <= r) {
            ax_expect_freed(E->udid, "task userdata after its last step");
            E->ended_at = -1;
        }
        aux_check(i);
    }
    for (int k = 0; k < g_ntouched; k++) {
        int i = g_touched[k];
        if (g_a[i].live) aux_remove_maybe(i);
    }
    g_ntouched = 0;
}

/* ----- actions ----- */

static bool aux_is_input_kind(int kind) { return kind != AK_SRC && kind != AK_ACG; }

/* A random held entry of `loopi` (kinds: a bit mask), or -1. */
static int aux_pick(int loopi, unsigned kinds, bool want_pending) {
    if (g_nrand == 0) return -1;
    int start = (int)rnd((uint32_t)g_nrand);
    for (int k = 0; k < g_nrand; k++) {
        int i = g_rand[(start + k) % g_nrand];
        aux_t *E = &g_a[i];
        if (!E->live || !E->held || E->orphan || E->loop != loopi || !(kinds & (1u << E->kind))) continue;
        if (want_pending && E->st != ST_P) continue;
        return i;
    }
    return -1;
}

#define K_INPUTS ((1u << AK_TASK) | (1u << AK_GATE) | (1u << AK_SLEEP) | (1u << AK_WRAP) | (1u << AK_GATHER) | \
                  (1u << AK_WAITFOR) | (1u << AK_SHIELD) | (1u << AK_WAITMANY) | (1u << AK_SLOT))

/* What a task's step may await (OP_AWAIT): an entry of its loop created before the task (so
 * no cycle), not completed by a reaction of this very iteration. */
static int aux_pick_await(int task) {
    aux_t *T = &g_a[task];
    if (g_nrand == 0) return -1;
    int start = (int)rnd((uint32_t)g_nrand);
    for (int k = 0; k < g_nrand; k++) {
        int i = g_rand[(start + k) % g_nrand];
        aux_t *E = &g_a[i];
        if (!E->live || E->orphan || E->loop != T->loop || !aux_is_input_kind(E->kind) || E->serial >= T->serial) continue;
        if (!E->held) continue; /* only what we hold is surely alive */
        if (T->pend ? cascade_busy(i, 0) : E->maybe_done_run == g_grun) continue;
        return i;
    }
    return -1;
}

static void aux_new_task(int loopi) {
    mloop_t *L = &g_loops[loopi];
    if (aux_free_slots() < 3) return;
    int i = ent_new(AK_TASK, loopi, false);
    aux_t *E = &g_a[i];
    static const uint8_t ops[] = {OP_YIELD, OP_YIELD, OP_GATE, OP_GATE, OP_SLEEP, OP_SLEEP, OP_WRAP, OP_WRAP,
                                  OP_RESULT, OP_EXC, OP_SELFCANCEL, OP_AWAIT, OP_AWAIT};
    E->nscript = 1 + (int)rnd(6);
    for (int k = 0; k < E->nscript; k++) E->script[k] = ops[rnd(sizeof ops)];
    E->udid = ax_new(AXK_TASKUD, i);
    E->held = true;
    g_calls++;
    E->f = afut_task_new(L->l, aux_step, axp(E->udid), ax_free);
    if (!E->f) MFAIL("afut_task_new failed");
    if (reent_allowed() && rnd(6) == 0) {
        /* its userdata_free re-enters the API on the task (and its loop) */
        g_ax[E->udid].reent = true;
        g_ax[E->udid].ref = afut_ref(E->f);
    }
    aux_push(loopi, AI_STEP, i, -1, 0);
    g_stat_tasks++;
    TRACE("aux: new task %d (script of %d)\n", i, E->nscript);
    aux_check(i);
}

static void aux_new_gate(int loopi) {
    if (aux_free_slots() < 1) return;
    int i = ent_new(AK_GATE, loopi, false);
    g_a[i].held = true;
    g_calls++;
    g_a[i].f = afut_loop_create_future(g_loops[loopi].l);
    if (!g_a[i].f) MFAIL("afut_loop_create_future");
}

/* afut_sleep with a delay from the edges now and then (SL1: <= 0 is exactly one iteration,
 * NaN is refused; a positive denormal is a timer due at once; huge ones never come). */
static void aux_new_sleep(int loopi) {
    mloop_t *L = &g_loops[loopi];
    if (aux_free_slots() < 1) return;
    double delay;
    uint32_t v = rnd(6);
    if (v == 5) {
        delay = pick_edge()->v;
    } else {
        static const double d[] = {1e-6, INFINITY, -1.0, 0.0, 1e6};
        delay = d[v];
    }
    uint32_t vid = rnd(4) ? ax_new(AXK_SLEEPVAL, -1) : 0;
    double tb = afut_loop_time(L->l);
    g_calls++;
    afut_t *f = afut_sleep(L->l, delay, axp(vid), vid ? ax_free : NULL);
    double ta = afut_loop_time(L->l);
    if (isnan(delay)) {
        if (f) MFAIL("afut_sleep(NaN) returned a future");
        if (vid) g_ax[vid].refused = true;
        return;
    }
    if (!f) MFAIL("afut_sleep(%g) failed", delay);
    int i = ent_new(AK_SLEEP, loopi, false);
    aux_t *E = &g_a[i];
    E->f = f;
    E->vid = vid;
    if (vid) {
        g_ax[vid].ent = i;
        g_ax[vid].serial = E->serial;
        g_ax[vid].loop = loopi;
        g_ax[vid].epoch = L->epoch;
        if (reent_allowed() && rnd(5) == 0) g_ax[vid].reent = true;
    }
    E->held = true;
    g_stat_sleeps++;
    lsn_add(i, AI_SCT, i, -1, 0);
    if (delay <= 0) aux_push(loopi, AI_SFIRE, i, -1, 0);
    else E->timer = aux_timer_for(AT_SLEEP, i, loopi, tb, ta, delay);
    TRACE("aux: new sleep %d (delay %g)\n", i, delay);
    aux_check(i);
}

/* Completes a gate, a loop-less source, a shield outer or an as_completed slot (model and
 * real): how 0 result, 1 exception, 2 cancel. */
static void aux_complete(int i, uint32_t how) {
    aux_t *E = &g_a[i];
    TRACE("aux: complete %s %d (state %d) how %u\n", k_kind[E->kind], i, E->st, how);
    bool pending = E->st == ST_P;
    if (E->kind == AK_SLOT) how = 2;
    if (how == 0) {
        uint32_t vid = rnd(2) ? ax_new(AXK_VALUE, i) : 0;
        g_calls++;
        afut_status_t rc = afut_set_result(E->f, axp(vid), vid ? ax_free : NULL);
        MCHECK_EQ(rc, pending ? AFUT_OK : AFUT_ERR_INVALID_STATE);
        if (!pending) {
            if (vid) g_ax[vid].refused = true;
            return;
        }
        E->vid = vid;
        aux_set_result(i, axp(vid), -1);
    } else if (how == 1) {
        uint32_t did = rnd(2) ? ax_new(AXK_DETAIL, i) : 0;
        int32_t code = 1 + (int32_t)rnd(500);
        const char *msg = rnd(3) ? k_msgs[rnd(4)] : NULL;
        g_calls++;
        afut_status_t rc = afut_set_exception(E->f, code, msg, axp(did), did ? ax_free : NULL);
        MCHECK_EQ(rc, pending ? AFUT_OK : AFUT_ERR_INVALID_STATE);
        if (!pending) {
            if (did) g_ax[did].refused = true;
            return;
        }
        E->vid = did;
        aux_set_exception(i, code, msg, axp(did));
    } else {
        const char *msg = rnd(3) ? k_msgs[rnd(4)] : NULL;
        bool expect = aux_cancel(i, msg);
        g_calls++;
        MCHECK_EQ(afut_cancel(E->f, msg), expect);
    }
    aux_check(i);
}

static void aux_new_wrap(int loopi) {
    mloop_t *L = &g_loops[loopi];
    if (aux_free_slots() < 2) return;
    int s = ent_new(AK_SRC, loopi, false), w = ent_new(AK_WRAP, loopi, false);
    aux_t *S = &g_a[s], *W = &g_a[w];
    S->held = W->held = true;
    S->loopless = true;
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
    lsn_add(w, AI_WCS, w, -1, 0);
    lsn_add(s, AI_WCOPY, w, s, 0);
    g_stat_wraps++;
    TRACE("aux: new wrap %d of source %d\n", w, s);
    aux_check(s);
    aux_check(w);
}

/* Up to `max` inputs (duplicates now and then) for a combinator on `loopi`. */
static int aux_pick_inputs(int loopi, int *in, int max) {
    int n = (int)rnd((uint32_t)max + 1);
    int got = 0;
    for (int k = 0; k < n; k++) {
        if (got && rnd(5) == 0) {
            in[got] = in[rnd((uint32_t)got)];
            got++;
            continue;
        }
        int i = aux_pick(loopi, K_INPUTS, rnd(3) != 0);
        if (i < 0) break;
        in[got++] = i;
    }
    return got;
}

/* Unique inputs in order of first appearance (asyncio's set() / gather's one child per
 * object); `map` gets each argument's unique index. */
static int aux_unique(const int *in, int n, int *uniq, int *map) {
    int nu = 0;
    for (int k = 0; k < n; k++) {
        int j = 0;
        while (j < nu && uniq[j] != in[k]) j++;
        if (j == nu) uniq[nu++] = in[k];
        if (map) map[k] = j;
    }
    return nu;
}

static void aux_listen(int comb, const int *kids, int n) {
    aux_t *C = &g_a[comb];
    C->kids = xrealloc(NULL, (size_t)(n ? n : 1) * sizeof *C->kids);
    C->nkids = n;
    for (int k = 0; k < n; k++) {
        C->kids[k] = kids[k];
        g_a[kids[k]].nlisten++;
    }
}

static void aux_new_gather(int loopi) {
    mloop_t *L = &g_loops[loopi];
    if (aux_free_slots() < 1) return;
    int in[6], uniq[6], map[6];
    int n = aux_pick_inputs(loopi, in, 5);
    afut_t *fs[6];
    for (int k = 0; k < n; k++) fs[k] = g_a[in[k]].f;
    bool retexc = rnd(2) != 0;
    g_calls++;
    afut_t *f = afut_gather(L->l, n ? fs : NULL, (size_t)n, retexc);
    if (!f) MFAIL("afut_gather(%d inputs) failed", n);
    int g = ent_new(AK_GATHER, loopi, false);
    aux_t *G = &g_a[g];
    G->f = f;
    G->held = true;
    G->retexc = retexc;
    int nu = aux_unique(in, n, uniq, map);
    aux_listen(g, uniq, nu);
    G->args = xrealloc(NULL, (size_t)(n ? n : 1) * sizeof *G->args);
    G->nargs = n;
    for (int k = 0; k < n; k++) G->args[k] = in[k];
    G->remaining = nu;
    g_stat_gathers++;
    if (nu == 0) {
        aux_set_result(g, NULL, -1); /* G1: done at once; afut: a NULL result */
        aux_check(g);
        return;
    }
    /* callbacks on the pending children first, then G6: the done ones processed now */
    for (int k = 0; k < nu; k++)
        if (g_a[uniq[k]].st == ST_P) lsn_add(uniq[k], AI_GCH, g, uniq[k], 0);
    for (int k = 0; k < nu; k++)
        if (g_a[uniq[k]].st != ST_P) aux_gather_child(g, uniq[k]);
    TRACE("aux: new gather %d of %d inputs (%d unique, return_exceptions %d):", g, n, nu, retexc);
    for (int k = 0; k < n; k++) TRACE(" %s %d", k_kind[g_a[in[k]].kind], in[k]);
    TRACE("\n");
    aux_check(g);
}

/* A timeout for wait_for / wait_many / as_completed: edges now and then. */
static double aux_timeout(void) {
    static const double t[] = {INFINITY, 1e-6, 0.0, -1.0, 1e6, INFINITY};
    uint32_t v = rnd(8);
    if (v >= 6) return pick_edge()->v;
    return t[v];
}

static void aux_new_waitfor(int loopi) {
    mloop_t *L = &g_loops[loopi];
    if (aux_free_slots() < 1) return;
    int in = aux_pick(loopi, K_INPUTS, rnd(4) != 0);
    if (in < 0) return;
    double t = aux_timeout();
    double tb = afut_loop_time(L->l);
    g_calls++;
    afut_t *f = afut_wait_for(L->l, g_a[in].f, t);
    double ta = afut_loop_time(L->l);
    if (isnan(t)) {
        if (f) MFAIL("afut_wait_for(NaN) returned a future");
        return;
    }
    if (!f) MFAIL("afut_wait_for(%g) failed", t);
    int w = ent_new(AK_WAITFOR, loopi, false);
    aux_t *W = &g_a[w];
    W->f = f;
    W->held = true;
    W->peer = in;
    g_a[in].nlisten++;
    lsn_add(in, AI_WFD, w, in, 0);
    g_stat_waitfors++;
    if (t == INFINITY) {
        /* WF1: a plain await */
    } else if (t <= 0) {
        /* WF1: a done inner gives its result next iteration; else it is cancelled now and
         * the wait_for waits until it is really done */
        if (g_a[in].st == ST_P) {
            W->timed_out = true;
            aux_cancel(in, NULL);
        }
    } else {
        W->timer = aux_timer_for(AT_WF, w, loopi, tb, ta, t);
    }
    TRACE("aux: new wait_for %d of %d (timeout %g)\n", w, in, t);
    aux_check(w);
}

static void aux_new_shield(int loopi) {
    mloop_t *L = &g_loops[loopi];
    if (aux_free_slots() < 1) return;
    int in = aux_pick(loopi, K_INPUTS, rnd(5) != 0);
    if (in < 0) return;
    g_calls++;
    afut_t *f = afut_shield(L->l, g_a[in].f);
    if (!f) MFAIL("afut_shield failed");
    g_stat_shields++;
    if (g_a[in].st != ST_P) {
        /* S1, test_shield_shortcut: a done inner is returned itself */
        if (f != g_a[in].f) MFAIL("afut_shield(done) returned %p, expected the inner %p", (void *)f, (void *)g_a[in].f);
        g_calls++;
        afut_unref(f);
        g_stat_shortcuts++;
        return;
    }
    int o = ent_new(AK_SHIELD, loopi, false);
    aux_t *O = &g_a[o];
    O->f = f;
    O->held = true;
    O->peer = in;
    g_a[in].nlisten++;
    lsn_add(in, AI_SHC, o, in, 0);
    lsn_add(o, AI_SHO, o, -1, 0);
    TRACE("aux: new shield %d of %d\n", o, in);
    aux_check(o);
}

static void aux_new_waitmany(int loopi) {
    mloop_t *L = &g_loops[loopi];
    if (aux_free_slots() < 1) return;
    int in[6], uniq[6];
    int n = aux_pick_inputs(loopi, in, 5);
    afut_t *fs[6];
    for (int k = 0; k < n; k++) fs[k] = g_a[in[k]].f;
    int32_t rw = (int32_t)rnd(3);
    double t = aux_timeout();
    double tb = afut_loop_time(L->l);
    g_calls++;
    afut_t *f = afut_wait_many(L->l, n ? fs : NULL, (size_t)n, t, rw);
    double ta = afut_loop_time(L->l);
    if (n == 0 || isnan(t)) { /* W1: an empty set is a ValueError; NaN is refused */
        if (f) MFAIL("afut_wait_many(n %d, timeout %g) returned a future", n, t);
        return;
    }
    if (!f) MFAIL("afut_wait_many failed");
    int w = ent_new(AK_WAITMANY, loopi, false);
    aux_t *W = &g_a[w];
    W->f = f;
    W->held = true;
    W->rw = rw;
    int nu = aux_unique(in, n, uniq, NULL);
    aux_listen(w, uniq, nu);
    W->remaining = nu;
    /* W2: a callback on every member, done ones included: at least one iteration */
    for (int k = 0; k < nu; k++) lsn_add(uniq[k], AI_WMM, w, uniq[k], 0);
    if (t != INFINITY) W->timer = aux_timer_for(AT_WM, w, loopi, tb, ta, t > 0 ? t : 0.0);
    g_stat_waitmanys++;
    TRACE("aux: new wait_many %d (%d members, return_when %d, timeout %g):", w, nu, rw, t);
    for (int k = 0; k < nu; k++) TRACE(" %s %d", k_kind[g_a[uniq[k]].kind], uniq[k]);
    TRACE("\n");
    aux_check(w);
}

static void aux_new_ascompleted(int loopi) {
    mloop_t *L = &g_loops[loopi];
    int in[6], uniq[6];
    int n = aux_pick_inputs(loopi, in, 4);
    int nu = aux_unique(in, n, uniq, NULL);
    if (aux_free_slots() < nu + 1) return;
    afut_t *fs[6], *out[6];
    for (int k = 0; k < n; k++) fs[k] = g_a[in[k]].f;
    double t = aux_timeout();
    double tb = afut_loop_time(L->l);
    g_calls++;
    size_t got = afut_as_completed(L->l, n ? fs : NULL, (size_t)n, t, out);
    double ta = afut_loop_time(L->l);
    if (isnan(t)) {
        if (got) MFAIL("afut_as_completed(NaN) wrote %zu futures", got);
        return;
    }
    if (got != (size_t)nu) MFAIL("afut_as_completed: %zu futures, expected %d (distinct inputs)", got, nu);
    g_stat_ascompleted++;
    if (nu == 0) return;
    int g = ent_new(AK_ACG, loopi, false);
    aux_listen(g, uniq, nu);
    aux_t *G = &g_a[g];
    G->slots = xrealloc(NULL, (size_t)nu * sizeof *G->slots);
    G->remaining = nu;
    for (int k = 0; k < nu; k++) {
        int s = ent_new(AK_SLOT, loopi, false);
        g_a[s].f = out[k];
        g_a[s].held = true;
        g_a[s].group = g;
        g_a[g].slots[k] = s;
    }
    for (int k = 0; k < nu; k++) {
        lsn_add(uniq[k], AI_ACM, g, uniq[k], 0);
    }
    if (t != INFINITY) g_a[g].timer = aux_timer_for(AT_AC, g, loopi, tb, ta, t > 0 ? t : 0.0);
    TRACE("aux: new as_completed group %d (%d members, timeout %g):", g, nu, t);
    for (int k = 0; k < nu; k++) TRACE(" %s %d -> slot %d", k_kind[g_a[uniq[k]].kind], uniq[k], g_a[g].slots[k]);
    TRACE("\n");
}

/* An observer: a done-callback on an aux future we hold. */
static void aux_add_observer(int i, bool may_reent) {
    aux_t *E = &g_a[i];
    uint32_t k = ax_new(AXK_OBS, i);
    bool reent = may_reent && reent_allowed() && rnd(4) == 0 &&
                 (E->kind == AK_TASK || E->kind == AK_GATHER || E->kind == AK_WAITFOR || E->kind == AK_WAITMANY);
    if (reent) {
        /* it re-enters the API on this future: it holds a reference until it is freed */
        g_ax[k].reent = true;
        g_ax[k].ref = afut_ref(E->f);
    }
    lsn_add(i, AI_OBS, i, i, k);
    g_calls++;
    afut_status_t rc = afut_add_done_callback(E->f, aux_obs_cb, axp(k), ax_free);
    MCHECK_EQ(rc, AFUT_OK);
    g_stat_observers++;
}

/* afut_cancel on any future we hold. */
static void aux_cancel_any(int i) {
    aux_t *E = &g_a[i];
    TRACE("aux: cancel %s %d (state %d)\n", k_kind[E->kind], i, E->st);
    const char *msg = (E->kind == AK_TASK || rnd(3)) ? k_msgs[rnd(4)] : NULL;
    bool was_task_pending = E->kind == AK_TASK && E->st == ST_P;
    bool expect = aux_cancel(i, msg);
    g_calls++;
    bool rc = afut_cancel(E->f, msg);
    if (rc != expect) MFAIL("afut_cancel(%s %d) returned %d, expected %d", k_kind[E->kind], i, rc, expect);
    if (was_task_pending) g_stat_task_cancels++;
    aux_check(i);
    if (E->peer >= 0 && (E->kind == AK_WAITFOR || E->kind == AK_TASK)) aux_check(E->peer);
}

/* Gives up our reference. */
static void aux_release(int i) {
    aux_t *E = &g_a[i];
    if (!E->held) return;
    TRACE("aux: release %s %d (state %d)\n", k_kind[E->kind], i, E->st);
    if (E->st == ST_E) {
        g_calls++;
        MCHECK_EQ(afut_exception(E->f, NULL), AFUT_OK);
    }
    if (E->st == ST_P && E->kind == AK_GATE && E->nwaiters == 0 && E->nlisten == 0) {
        /* nobody else holds it: it goes away, its observers are freed unrun */
        for (int k = 0; k < E->nlsn; k++)
            if (!E->lsn[k].removed && E->lsn[k].kind == AI_OBS) g_ax[E->lsn[k].oid].obs = OBS_DROPPED;
        E->orphan = true;
    }
    E->held = false;
    g_calls++;
    afut_unref(E->f);
    aux_remove_maybe(i);
}

static bool aux_may_release(int i) {
    aux_t *E = &g_a[i];
    if (!E->held) return false;
    if (E->orphan || E->st != ST_P) return true;
    if (E->kind == AK_TASK) {
        for (int k = E->pos; k < E->nscript; k++)
            if (E->script[k] == OP_EXC) return false;
        return true;
    }
    if (E->kind == AK_GATE) {
        /* with observers, only if it surely goes away (the model cannot tell whether a
         * combinator that listened to it still holds it) */
        for (int k = 0; k < E->nlsn; k++)
            if (!E->lsn[k].removed && E->lsn[k].kind == AI_OBS && (g_ax[E->lsn[k].oid].reent || E->nlisten || E->nwaiters))
                return false;
        return true;
    }
    return E->kind == AK_SLEEP || E->kind == AK_SRC; /* the others could still fail */
}

static void aux_action(int loopi) {
    int i;
    switch (rnd(24)) {
    case 0:
    case 1: aux_new_task(loopi); break;
    case 2: aux_new_sleep(loopi); break;
    case 3: aux_new_wrap(loopi); break;
    case 4: aux_new_gate(loopi); break;
    case 5:
    case 6:
        i = aux_pick(loopi, (1u << AK_GATE) | (1u << AK_SRC) | (1u << AK_SHIELD) | (1u << AK_SLOT), rnd(4) != 0);
        if (i >= 0) aux_complete(i, rnd(3));
        break;
    case 7:
    case 8:
        i = aux_pick(loopi, K_INPUTS, rnd(4) != 0);
        if (i >= 0) aux_cancel_any(i);
        break;
    case 9: aux_new_gather(loopi); break;
    case 10: aux_new_waitfor(loopi); break;
    case 11: aux_new_shield(loopi); break;
    case 12: aux_new_waitmany(loopi); break;
    case 13: aux_new_ascompleted(loopi); break;
    case 14:
        i = aux_pick(loopi, K_INPUTS, true);
        if (i >= 0) aux_add_observer(i, true);
        break;
    case 15:
        i = aux_pick(loopi, 1u << AK_TASK, false);
        if (i >= 0 && rnd(2)) {
            /* only a step may complete its own task */
            uint32_t vid = ax_new(AXK_VALUE, i);
            g_calls++;
            MCHECK_EQ(afut_set_result(g_a[i].f, axp(vid), ax_free), AFUT_ERR_INVALID_STATE);
            g_ax[vid].refused = true;
            aux_check(i);
            break;
        }
        for (int k = 0; k < g_nrand; k++) aux_check(g_rand[k]);
        break;
    case 16:
    case 17:
    case 18: {
        if (g_nrand == 0) break;
        int start = (int)rnd((uint32_t)g_nrand);
        for (int k = 0; k < g_nrand; k++) {
            int j = g_rand[(start + k) % g_nrand];
            if (g_a[j].loop == loopi && aux_may_release(j)) {
                aux_release(j);
                break;
            }
        }
        break;
    }
    default: break;
    }
}

/* ----- the loop's close ----- */

/* Model side of closing loop `loopi` (the loop is marked closed first, so that whatever
 * completes now drops its callbacks). */
static void aux_close_model(int loopi) {
    mloop_t *L = &g_loops[loopi];
    /* the queue and the timers go */
    for (size_t j = 0; j < L->naq; j++) {
        aitem_t *it = &L->aq[j];
        aux_item_dropped(it->kind, it->ent, it->arg, it->oid);
        if (it->kind == AI_SFIRE) g_a[it->ent].timer = -1;
        unpin(it->ent);
        unpin(it->arg);
    }
    L->naq = 0;
    for (size_t j = 0; j < L->natm; j++) tm_kill(L->atm[j]);
    tm_compact(loopi);
    for (int i = 0; i < g_na; i++) {
        aux_t *E = &g_a[i];
        if (!E->live || E->loop != loopi || E->orphan) continue;
        /* observers of what is still pending can never run now: they are freed whenever
         * their future goes (at this close, or later) */
        for (int k = 0; k < E->nlsn; k++)
            if (!E->lsn[k].removed && E->lsn[k].kind == AI_OBS) g_ax[E->lsn[k].oid].obs = OBS_DROPPED;
        if (E->kind == AK_SLEEP && E->vid && E->st != ST_R && E->free_by < 0) E->close_free = true;
        if (E->kind == AK_TASK && E->st == ST_P) {
            if (E->awaited >= 0) g_a[E->awaited].nwaiters--;
            E->awaited = -1;
            E->step_run = -1;
            E->pend = false;
            E->close_free = true;
            if (E->held || k_strict_released_task_report) g_destroyed_expected++;
            else g_destroyed_maybe++;
            aux_cancel_plain(i, "the loop was closed");
            TRACE("aux: close ends task %d (held %d, pos %d/%d)\n", i, E->held, E->pos, E->nscript);
        }
    }
}

/* After the real close (or free) of loop `loopi`. */
static void aux_after_close(int loopi) {
    for (int i = 0; i < g_na; i++) {
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
        if (E->kind == AK_TASK) E->ended_at = -1;
        E->free_by = -1;
        E->orphan = true;
    }
    g_ntouched = 0;
    for (int i = 0; i < g_na; i++)
        if (g_a[i].live && g_a[i].loop == loopi) aux_remove_maybe(i);
}

/* Cancels (model and real) pending futures that a re-entrant observer keeps alive through
 * its reference: nothing else would ever complete them. */
static void aux_break_cycles(void) {
    for (uint32_t k = 1; k < g_nax; k++) {
        auxid_t *X = &g_ax[k];
        if (X->kind != AXK_OBS || !X->reent || X->frees || (X->obs != OBS_REG && X->obs != OBS_DROPPED)) continue;
        int i = X->ent;
        g_calls++;
        if (g_a[i].live && g_a[i].serial == X->serial) {
            if (g_a[i].st != ST_P) continue; /* its callback is queued or was dropped: freed with it */
            bool expect = aux_cancel(i, "teardown");
            MCHECK_EQ(afut_cancel(X->ref, "teardown"), expect);
        } else {
            afut_cancel(X->ref, "teardown"); /* the model forgot it: its loop is gone */
        }
    }
}

/* Releases what we hold of loop `loopi` (freed) so that its slot can be reused. */
static void aux_release_loop(int loopi) {
    for (int i = 0; i < g_na; i++)
        if (g_a[i].live && g_a[i].loop == loopi) aux_release(i);
    for (int i = 0; i < g_na; i++)
        if (g_a[i].live && g_a[i].loop == loopi) {
            g_a[i].orphan = true;
            g_a[i].pins = 0;
            g_a[i].nwaiters = g_a[i].nlisten = 0;
            g_a[i].free_by = -1;
            g_a[i].close_free = false;
            ent_forget(i);
        }
}

static void aux_teardown(void) {
    for (int i = 0; i < g_na; i++)
        if (g_a[i].live) MFAIL("aux %d (%s) still live after teardown", i, k_kind[g_a[i].kind]);
    for (uint32_t k = 1; k < g_nax; k++) {
        if (g_ax[k].refused ? g_ax[k].frees != 0 : g_ax[k].frees != 1)
            MFAIL("aux id %u (kind %d, of entry %d, observer state %d, re-entrant %d): freed %d times (refused %d)", k,
                  g_ax[k].kind, g_ax[k].ent, g_ax[k].obs, g_ax[k].reent, g_ax[k].frees, g_ax[k].refused);
    }
    free(g_ax);
    g_ax = NULL;
    g_nax = g_capax = 0;
    free(g_tm);
    g_tm = NULL;
    g_ntm = g_captm = 0;
    free(g_tmfree);
    g_tmfree = NULL;
    g_ntmfree = g_captmfree = 0;
    free(g_cst);
    g_cst = NULL;
    g_ncst = g_capcst = 0;
    free(g_batch);
    g_batch = NULL;
    g_nbatch = g_capbatch = 0;
    free(g_touched);
    g_touched = NULL;
    g_ntouched = g_captouched = 0;
}

/* ------------------------------------------------------------------------------------------
 * run_once, and what the host sees between runs. */

static int *g_due; /* run_once's due timers */
static size_t g_capdue;

static int timer_cmp(const void *a, const void *b) {
    const hrec_t *x = &g_h[*(const int *)a], *y = &g_h[*(const int *)b];
    int c = dl_cmp(x->dl, y->dl);
    if (c) return c;
    return x->seq < y->seq ? -1 : x->seq > y->seq ? 1 : 0;
}

/* Frees a handle record once nothing refers to it any more. */
static void h_forget(int hi) {
    if (g_h[hi].live) MFAIL("model: forgetting a live handle");
    h_release(hi);
}

static void check_loop_io(int loopi);

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
        if (g_h[hi].dc == DC_DUE) due[nt++] = hi;
        else L->timers[keep++] = hi;
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
    g_grun++;
    key_top();
    aux_run_begin(loopi);
    g_njust_ended = 0;
    if (!isnan(g_spin_until)) {
        spin_until(L, g_spin_until);
        g_spin_until = NAN;
    }
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
    size_t aran = aux_run_end(loopi);
    if (ran != g_ran + aran)
        MFAIL("run_once ran %zu callbacks; the model: %zu of the application's and %zu internal ones (tasks, "
              "sleeps, wrappers, combinators), on loop %d", ran, g_ran, aran, loopi);
    aux_after_run(loopi, (long long)L->runs);
    L->timer_gone = false;
}

/* What the model says the host should see on loop `loopi`: work ready, timers due, and the
 * bounds of the earliest finite timer that is not due. */
typedef struct {
    bool ready;
    int due;
    bool minf_first;     /* the earliest live deadline is -INFINITY */
    bool far;
    double far_lo, far_hi;
} mwork_t;

static mwork_t model_work(int loopi) {
    mloop_t *L = &g_loops[loopi];
    mwork_t w = {.ready = L->q.n > 0, .far_lo = INFINITY, .far_hi = INFINITY};
    if (L->naq > 0) w.ready = true;
    double first = INFINITY;
    for (size_t i = 0; i < L->ntimers; i++) {
        hrec_t *H = &g_h[L->timers[i]];
        if (!H->live) continue;
        if (H->dc == DC_DUE) {
            w.due++;
            if (dl_cmp(H->dl, first) < 0) first = H->dl;
        } else if (H->dc == DC_FAR) {
            w.far = true;
            if (H->lo < w.far_lo) w.far_lo = H->lo;
            if (H->hi < w.far_hi) w.far_hi = H->hi;
        }
    }
    for (size_t j = 0; j < L->natm; j++) {
        atimer_t *T = &g_tm[L->atm[j]];
        if (!T->live) continue;
        if (T->dc == DC_DUE) {
            w.due++;
            if (dl_cmp(T->lo, first) < 0) first = T->lo;
        } else if (T->dc == DC_FAR) {
            w.far = true;
            if (T->lo < w.far_lo) w.far_lo = T->lo;
            if (T->hi < w.far_hi) w.far_hi = T->hi;
        }
    }
    w.minf_first = first == -INFINITY;
    return w;
}

static int ms_bound(double delta_s) {
    double ms = ceil(delta_s * 1000.0);
    if (ms > 86400000.0) ms = 86400000.0; /* asyncio's one-day clamp (afut src/clock.rs) */
    return (int)ms;
}

/* afut_loop_timeout_ms against the model on every loop, and the host fd on host loops
 * (afut.h afut_loop_fd / afut_loop_timeout_ms; SEMANTICS.md L2 step 2). */
static void check_loop_io(int loopi) {
    if (loopi < 0) return;
    mloop_t *L = &g_loops[loopi];
    if (!L->used || L->freed) return;
    g_stat_timeout_checks++;
    if (L->closed) {
        g_checks++;
        MCHECK_EQ(afut_loop_timeout_ms(L->l), -1); /* a closed loop: -1 */
        return;
    }
    mwork_t w = model_work(loopi);
    bool bounds = !w.ready && !w.due && w.far; /* the clock matters only then */
    double t0 = bounds ? afut_loop_time(L->l) : 0;
    bool rd = L->host && fd_readable(L->fd, 0);
    int tm = afut_loop_timeout_ms(L->l);
    double t1 = bounds ? afut_loop_time(L->l) : 0;
    g_checks += bounds ? 3 : 1;
    if (L->virt) {
        /* A virtual clock without auto-advance: 0 if work is ready or a timer due, else -1
         * (waiting in real time never makes a virtual timer due); the host fd is readable
         * exactly then, at once: no timerfd is armed (afut.h afut_loop_set_virtual_clock). */
        bool work = w.ready || w.due;
        if (tm != (work ? 0 : -1))
            MFAIL("loop %d (virtual clock at %.17g): afut_loop_timeout_ms %d; the model has %d items ready and %d timers "
                  "due, so %d", loopi, afut_loop_time(L->l), tm, (int)(L->q.n + L->naq), w.due, work ? 0 : -1);
        if (!L->host) return;
        g_stat_host_checks++;
        if (work && !rd)
            MFAIL("loop %d (virtual clock at %.17g): the host fd is not readable; the model has %d items ready and %d "
                  "timers due (a lost wakeup)", loopi, afut_loop_time(L->l), (int)(L->q.n + L->naq), w.due);
        if (work || !rd) return;
        /* readable while idle: as below */
    }
    if (L->virt) {
        /* afut_loop_timeout_ms checked above */
    } else if (w.ready || w.due) {
        if (tm != 0)
            MFAIL("loop %d: afut_loop_timeout_ms %d; the model has work ready (%d items) and %d timers due, so 0", loopi, tm,
                  (int)(L->q.n + L->naq), w.due);
    } else if (w.far) {
        int lo = ms_bound(w.far_lo - t1), hi = ms_bound(w.far_hi - t0);
        if (tm < lo || tm > hi)
            MFAIL("loop %d: afut_loop_timeout_ms %d; the next timer is due in [%d, %d] ms (rounded up, clamped to a "
                  "day), nothing before it", loopi, tm, lo, hi);
    } else if (tm != -1) {
        MFAIL("loop %d: afut_loop_timeout_ms %d; the model has nothing ready and no timer that can fire, so -1", loopi, tm);
    }
    if (!L->host) return;
    if (!L->virt) g_stat_host_checks++; /* counted above on a virtual clock (idle and readable here) */
    if (w.ready) {
        /* work queued: the eventfd was written (or the run that left it re-raised it) */
        if (!rd) MFAIL("loop %d: the host fd is not readable though %d callbacks are ready (a lost wakeup)", loopi,
                       (int)(L->q.n + L->naq));
        return;
    }
    if (w.due) {
        /* a due timer makes the fd readable once the kernel timer behind it expired; wait
         * for it half of the time (the other half, run_once may come first, before the
         * kernel timer expired: the fd must then not stay readable, checked below) */
        bool wait = rnd(2) != 0; /* drawn whatever the fd says: a seed replays the same steps */
        if (rd || !wait) return;
        g_stat_fd_waits++;
        if (fd_readable(L->fd, 500)) return;
        fprintf(stderr, "  earliest due deadline is -INFINITY: %d\n", w.minf_first);
        for (size_t i = 0; i < L->ntimers; i++) {
            hrec_t *H = &g_h[L->timers[i]];
            if (H->live && H->dc == DC_DUE)
                fprintf(stderr, "  due timer: class %d, deadline %.17g [%.17g, %.17g], seq %llu\n", H->cls, H->dl, H->lo, H->hi,
                        (unsigned long long)H->seq);
        }
        for (size_t j = 0; j < L->natm; j++) {
            atimer_t *T = &g_tm[L->atm[j]];
            if (T->live && T->dc == DC_DUE)
                fprintf(stderr, "  due aux timer: kind %d of %s %d, deadline [%.17g, %.17g]\n", T->kind, k_kind[g_a[T->ent].kind],
                        T->ent, T->lo, T->hi);
        }
        fprintf(stderr, "  now %.17g\n", afut_loop_time(L->l));
        MFAIL("loop %d: %d timers are due (timeout_ms %d) but the host fd is not readable after 500 ms", loopi, w.due, tm);
    }
    if (!rd) return;
    /* Readable while idle: a level-triggered host would spin. */
    bool excused = g_relay_backend && L->timer_gone;
    act_run_once(loopi); /* it runs nothing (the model checks that) */
    if (fd_readable(L->fd, 0))
        MFAIL("loop %d: the host fd is readable while the loop is idle (the model has nothing ready and no timer due; "
              "afut_loop_timeout_ms %d), and afut_loop_run_once(loop, 0), which ran nothing, leaves it readable: a "
              "level-triggered host spins (afut.h afut_loop_fd: not readable when the loop is idle)", loopi, tm);
    if (excused) {
        g_stat_relay_excused++;
        return;
    }
    MFAIL("loop %d (%s clock): the host fd is readable while the loop is idle (nothing ready, no timer due; "
          "afut_loop_timeout_ms %d); one afut_loop_run_once that ran nothing cleared it: a spurious wakeup of the host "
          "(afut.h afut_loop_fd: not readable when the loop is idle)",
          loopi, L->virt ? "virtual" : "real", tm);
}

/* ------------------------------------------------------------------------------------------
 * Loops. */

/* Closes a loop: everything queued is dropped (model side); then the real close. */
static void model_close(int loopi) {
    mloop_t *L = &g_loops[loopi];
    L->closed = true;
    aux_close_model(loopi);
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

static void cancel_cycles_of_loop(int loopi);

/* A new model loop in a free slot (host mode half of the time); `aux`: tasks and
 * combinators run on it. */
static int new_loop_slot(bool aux) {
    int i;
    for (i = 0; i < MAXL; i++)
        if (!g_loops[i].used) break;
    for (int j = 0; i == MAXL && j < MAXL; j++) {
        /* Every slot holds a freed loop that futures outlive: let one loop's futures go
         * (found by the fuzzer: fuzz/corpus/regress-out-of-loops). */
        if (!g_loops[j].freed) continue;
        cancel_cycles_of_loop(j);
        aux_break_cycles();
        for (int s = 0; s < MAXF; s++)
            while (g_f[s].live && g_f[s].loop == j && g_f[s].urefs > 0) act_unref(s);
        aux_release_loop(j);
        if (!g_loops[j].used) i = j;
    }
    if (i == MAXL) MFAIL("model: out of loops");
    mloop_t *L = &g_loops[i];
    itemq_t q = L->q;
    int *timers = L->timers, *liveh = L->liveh, *atm = L->atm;
    aitem_t *aq = L->aq;
    size_t ct = L->captimers, cl = L->capliveh, caq = L->capaq, catm = L->capatm;
    memset(L, 0, sizeof *L);
    L->q = q;
    L->q.n = 0;
    L->timers = timers;
    L->captimers = ct;
    L->liveh = liveh;
    L->capliveh = cl;
    L->aq = aq;
    L->capaq = caq;
    L->atm = atm;
    L->capatm = catm;
    L->used = true;
    L->epoch = ++g_epoch;
    L->aux = aux;
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
    L->fd = -1;
    if (rnd(3) == 0) {
        /* host mode: the host owns the wait; the model polls the fd after every step */
        g_calls++;
        L->fd = afut_loop_fd(L->l);
        if (L->fd < 0) MFAIL("afut_loop_fd failed");
        L->host = true;
    }
    return i;
}

static void new_loop(void) {
    bool aux = rnd(2) != 0;
    g_cur = new_loop_slot(aux);
}

/* afut_loop_free on a (closed or open) loop: futures of it become orphans. */
static void free_loop(int loopi) {
    mloop_t *L = &g_loops[loopi];
    if (!L->closed) {
        model_close(loopi);
    }
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
 * Destructors: some userdata_free / value_free / detail_free functions call
 * back into the API, on the model's thread, and each call is checked against the model:
 *   - a done-callback's userdata that holds a reference to its own future (one per
 *     hand-over): afut_done and afut_describe on it, afut_cancel on it (false once it ran;
 *     true when the callback was removed from a pending future, which then completes from
 *     inside remove_done_callback), afut_loop_call_soon_threadsafe on its loop; then it
 *     releases the reference (possibly the last one: the future is freed from inside the
 *     free function of one of its own callbacks);
 *   - a value or detail (its future is being freed): afut_loop_call_soon_threadsafe on the
 *     future's loop (refused once the loop is closed), the state of another future, and
 *     afut_cancel on it;
 *   - a task's userdata (it holds a reference to the task): afut_done, afut_task_cancelling,
 *     afut_describe, afut_cancel (false: done) on the task, afut_loop_call_soon_threadsafe on
 *     its loop; an observer's userdata the same on the future it observed; a sleep's value:
 *     afut_loop_call_soon_threadsafe.
 * API.md: "No lock is held while C code runs ... so every function may be called from inside
 * a callback" (destructors included). The destructor phase below runs them on other threads. */

static void reent_destructor(uint32_t id) {
    idrec_t R = g_ids[id]; /* g_ids may move below */
    if (R.kind == ID_CB && R.rslot >= 0) {
        int s = R.rslot;
        mfut_t *F = &g_f[s];
        if (!F->live || F->drefs <= 0) MFAIL("model: re-entrant userdata %u of slot %d, which it does not hold", id, s);
        afut_t *f = F->f;
        if (reent_allowed()) {
            g_stat_reent++;
            g_depth++;
            if (g_depth < 6) {
                uint32_t what = rnd(16);
                if (what & 1) {
                    g_stat_reent_calls++;
                    g_checks++;
                    MCHECK_EQ(afut_done(f), g_f[s].st != ST_P);
                }
                if (what & 2) {
                    g_stat_reent_calls++;
                    check_describe(s);
                }
                if (what & 4) {
                    g_stat_reent_calls++;
                    act_cancel(s);
                }
                if ((what & 8) && g_f[s].loop >= 0 && !g_loops[g_f[s].loop].freed) {
                    g_stat_reent_calls++;
                    act_schedule(g_f[s].loop, -1);
                }
            }
            g_depth--;
        }
        F = &g_f[s];
        F->drefs--;
        mf_maybe_free(s);
        g_calls++;
        afut_unref(f);
        return;
    }
    if (!reent_allowed()) return;
    g_stat_reent++;
    g_depth++;
    if (g_depth < 6) {
        int l = R.rloop;
        if (l >= 0 && g_loops[l].used && g_loops[l].epoch == R.repoch && !g_loops[l].freed && rnd(2)) {
            g_stat_reent_calls++;
            act_schedule(l, -1);
        }
        int o = pick_slot(true);
        if (o >= 0) {
            g_stat_reent_calls++;
            check_future(o);
            if (g_f[o].st == ST_P && rnd(3) == 0) {
                g_stat_reent_calls++;
                act_cancel(o);
            }
        }
    }
    g_depth--;
}

static void aux_reent_destructor(uint32_t k) {
    auxid_t X = g_ax[k];
    if (!reent_allowed()) {
        if (X.ref) afut_unref(X.ref);
        return;
    }
    g_stat_reent++;
    g_depth++;
    int i = X.ent;
    bool same = i >= 0 && i < g_na && g_a[i].live && g_a[i].serial == X.serial;
    if (X.ref && same && g_depth < 6) {
        aux_t *E = &g_a[i];
        g_checks += 2;
        g_stat_reent_calls += 3;
        MCHECK_EQ(afut_done(X.ref), E->st != ST_P);
        if (E->kind == AK_TASK && afut_task_cancelling(X.ref) != E->ncancel)
            MFAIL("task %d: afut_task_cancelling %d from its userdata's free function, expected %d", i,
                  afut_task_cancelling(X.ref), E->ncancel);
        char got[160];
        afut_describe(X.ref, got, sizeof got);
        const char *word = E->st == ST_C ? "cancelled" : E->st != ST_P ? "finished" : NULL;
        const char *kind = E->kind == AK_TASK ? "<Task " : "<Future ";
        if (strncmp(got, kind, strlen(kind)) != 0 || (word && strncmp(got + strlen(kind), word, strlen(word)) != 0))
            MFAIL("%s %d: describe \"%s\" from a free function", k_kind[E->kind], i, got);
        bool expect = aux_cancel(i, "from a destructor");
        g_calls++;
        MCHECK_EQ(afut_cancel(X.ref, "from a destructor"), expect);
    }
    int l = X.loop;
    if (g_depth < 6 && l >= 0 && g_loops[l].used && g_loops[l].epoch == X.epoch && !g_loops[l].freed && rnd(2)) {
        g_stat_reent_calls++;
        act_schedule(l, -1);
    }
    if (X.ref) {
        g_calls++;
        afut_unref(X.ref);
    }
    g_depth--;
}

/* Futures the model still holds through re-entrant callback userdata: cancel the pending
 * ones of loop `loopi` (its callbacks are then dropped or run, which releases them). */
static void cancel_cycles_of_loop(int loopi) {
    for (int s = 0; s < MAXF; s++)
        if (g_f[s].live && g_f[s].drefs > 0 && g_f[s].st == ST_P && (loopi == -2 || g_f[s].loop == loopi)) act_cancel(s);
}

/* ------------------------------------------------------------------------------------------
 * afut_wait with edge timeouts, on a future that is done or that another
 * thread completes. */

static pthread_mutex_t g_hmu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_hcv = PTHREAD_COND_INITIALIZER;
static afut_t *g_hjob;
static bool g_hstarted;
static long long g_hdone;

static void *helper_main(void *arg) {
    (void)arg;
    pthread_mutex_lock(&g_hmu);
    for (;;) {
        while (!g_hjob) pthread_cond_wait(&g_hcv, &g_hmu);
        afut_t *f = g_hjob;
        g_hjob = NULL;
        pthread_mutex_unlock(&g_hmu);
        struct timespec d = {0, 300000};
        nanosleep(&d, NULL);
        afut_set_result(f, NULL, NULL);
        afut_unref(f);
        pthread_mutex_lock(&g_hmu);
        g_hdone++;
        pthread_cond_broadcast(&g_hcv);
    }
    return NULL;
}

/* Another thread completes `f` (its own reference) in about 0.3 ms. */
static void helper_complete(afut_t *f) {
    pthread_mutex_lock(&g_hmu);
    if (!g_hstarted) {
        pthread_t th;
        if (pthread_create(&th, NULL, helper_main, NULL) != 0) MFAIL("pthread_create");
        pthread_detach(th);
        g_hstarted = true;
    }
    while (g_hjob) pthread_cond_wait(&g_hcv, &g_hmu);
    g_hjob = afut_ref(f);
    pthread_cond_broadcast(&g_hcv);
    pthread_mutex_unlock(&g_hmu);
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void act_wait_edge(void) {
    const edge_t *e = pick_edge();
    uint32_t how = rnd(3);
    if (how == 0) {
        /* a done future: done whatever the timeout; NaN is bad input */
        int s = -1, start = (int)rnd(MAXF);
        for (int k = 0; k < MAXF && s < 0; k++)
            if (g_f[(start + k) % MAXF].live && g_f[(start + k) % MAXF].st != ST_P) s = (start + k) % MAXF;
        if (s < 0) return;
        g_calls++;
        afut_status_t rc = afut_wait(g_f[s].f, e->v);
        if (rc != (e->cls == EDGE_NAN ? AFUT_ERR_INVALID_ARGUMENT : AFUT_OK))
            MFAIL("afut_wait(done future, %s) returned %d", e->name, rc);
        return;
    }
    mloop_t *L = cur_loop();
    g_calls += 2;
    afut_t *f = (how == 2 && L && !L->closed) ? afut_loop_create_future(L->l) : afut_new(NULL);
    if (e->cls == EDGE_NAN || e->cls == EDGE_NOW || e->cls == EDGE_TINY) {
        /* nobody completes it: NaN is bad input; <= 0 (and 5e-324 s) polls */
        double t0 = now_s();
        afut_status_t rc = afut_wait(f, e->v);
        double t1 = now_s();
        if (rc != (e->cls == EDGE_NAN ? AFUT_ERR_INVALID_ARGUMENT : AFUT_ERR_TIMEOUT))
            MFAIL("afut_wait(pending future, %s) returned %d", e->name, rc);
        if (t1 - t0 > 1.0) MFAIL("afut_wait(pending future, %s) took %.3f s", e->name, t1 - t0);
        afut_unref(f);
        return;
    }
    /* INFINITY and the huge ones: wait until another thread completes it */
    helper_complete(f);
    double t0 = now_s();
    g_calls++;
    afut_status_t rc = afut_wait(f, e->v);
    double t1 = now_s();
    if (rc != AFUT_OK)
        MFAIL("afut_wait(pending future, %s = %.17g) returned %d after %.6f s; another thread completes it (about 0.3 ms "
              "later), and a deadline too far to represent means \"never\" (afut.h afut_wait)", e->name, e->v, rc, t1 - t0);
    g_checks++;
    MCHECK(afut_done(f));
    afut_unref(f);
}

/* ------------------------------------------------------------------------------------------
 * Callbacks. */

/* What a callback does to the API while it runs; `s` is its own future or -1. */
static void reenter(int s) {
    g_depth++;
    uint32_t r = rnd(g_depth > 3 ? 8 : 26);
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
            /* afut_wait on the loop's own thread while it runs (any timeout, edges included);
             * which of WRONG_THREAD and INVALID_ARGUMENT (NaN) comes first is not specified */
            const edge_t *e = rnd(4) ? NULL : pick_edge();
            double t = e ? e->v : 0.0;
            bool same = F->loop >= 0 && F->loop == g_run_loop;
            g_calls++;
            afut_status_t rc = afut_wait(F->f, t);
            bool nan_t = isnan(t);
            if (same ? !(rc == AFUT_ERR_WRONG_THREAD || (nan_t && rc == AFUT_ERR_INVALID_ARGUMENT))
                     : rc != (nan_t ? AFUT_ERR_INVALID_ARGUMENT : AFUT_OK))
                MFAIL("afut_wait(own future, %g) from its callback returned %d", t, rc);
        }
        break;
    case 15: if (L) act_schedule(g_cur, -1); break;
    case 16: {
        static const int classes[] = {0, 1, 2, 3, 4, 9, 10, 11, 13};
        if (L) act_schedule(g_cur, classes[rnd(rnd(4) ? 4 : 9)]);
        break;
    }
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
    case 24:
        if (g_run_loop >= 0 && g_loops[g_run_loop].host) {
            /* the host's queries from inside a callback: 0 if work is queued for the next
             * iteration, and the fd stays the same */
            g_checks += 2;
            MCHECK_EQ(afut_loop_fd(g_loops[g_run_loop].l), g_loops[g_run_loop].fd);
            int tm = afut_loop_timeout_ms(g_loops[g_run_loop].l);
            if (g_loops[g_run_loop].q.n + g_loops[g_run_loop].naq > 0 && tm != 0)
                MFAIL("afut_loop_timeout_ms %d inside a callback, with work queued for the next iteration", tm);
        }
        break;
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

/* afut_loop_advance_time. On a virtual clock: by a random amount, keeping the clock below
 * 500 s, far below the "days away" deadlines (classes 9-11 and the aux timeouts over 1000 s,
 * all scheduled at a clock >= 0), so nothing becomes due that the model does not already
 * count as due; or, a quarter of the time, by an edge value: +-0 and the denormals are
 * accepted (the clock moves by that much, or not at all once it is past 0), negative, NaN
 * and infinite amounts are refused with AFUT_ERR_INVALID_ARGUMENT before anything else is
 * checked and change nothing. (Huge amounts would carry the clock past every deadline the
 * model keeps as "days away": test_bad_input.c tries those.) On a real clock:
 * AFUT_ERR_INVALID_STATE; on a closed loop: AFUT_ERR_LOOP_CLOSED (or INVALID_STATE, for a
 * real clock: afut.h does not order the two). */
static void act_advance(int loopi) {
    mloop_t *L = &g_loops[loopi];
    static const double k_steps[] = {0.0, 1e-9, 0.25, 3.0};
    double by = k_steps[rnd(4)];
    if (rnd(4) == 0) {
        const edge_t *e = pick_edge();
        if (e->cls != EDGE_HUGE) by = e->v;
    }
    bool bad = !(by >= 0.0 && isfinite(by));
    if (!bad && afut_loop_time(L->l) > 500.0) by = 0.0;
    double before = afut_loop_time(L->l);
    TRACE("advance(loop %d, %g)\n", loopi, by);
    g_calls++;
    g_stat_advances++;
    afut_status_t rc = afut_loop_advance_time(L->l, by);
    if (bad) MCHECK_EQ(rc, AFUT_ERR_INVALID_ARGUMENT);
    else if (L->virt) MCHECK_EQ(rc, L->closed ? AFUT_ERR_LOOP_CLOSED : AFUT_OK);
    else if (!L->closed) MCHECK_EQ(rc, AFUT_ERR_INVALID_STATE);
    else if (rc != AFUT_ERR_INVALID_STATE && rc != AFUT_ERR_LOOP_CLOSED)
        MFAIL("afut_loop_advance_time(closed loop with a real clock, %g) returned %d", by, rc);
    if (L->closed) return;
    double after = afut_loop_time(L->l);
    if (L->virt && !bad) {
        if (after != before + by) MFAIL("advance_time(%g) moved a virtual clock from %.17g to %.17g", by, before, after);
    } else if (L->virt && after != before) {
        MFAIL("a refused advance_time(%g) moved the virtual clock from %.17g to %.17g", by, before, after);
    }
}

/* ------------------------------------------------------------------------------------------
 * Deep structures: a chain of `depth` links over a base future, each link a
 * wrap_future (onto the other of two loops), a shield, a gather or a task awaiting the link
 * below, built on two fresh aux loops; then, in random order: the base completed (result,
 * exception or cancel), links cancelled anywhere in the chain (a gather or a task cancels
 * down through every link below it in one call; a wrapper one link per iteration), the
 * application's references dropped, observers added; the loops run; every link checked
 * against the model as it completes (observers check the iteration), all of them at the
 * end; then everything released and the loops freed. A strict run drops a pending top link
 * too (asyncio keeps it alive through its input's callback). */

static char g_deep_what[256]; /* the operation in progress, for the stack-overflow report */
static const int *g_deep_links;
static int g_deep_nlinks;
static unsigned long long g_stat_chain_reports;

/* A never-retrieved report of a chain link: a link dropped while pending whose exception no
 * link above it read (a cancelled wrapper or shield above it does not: F21, S1). The model
 * does not follow which link reads what, so these are counted, not predicted. */
static bool chain_report(afut_t *f) {
    for (int k = 0; k < g_deep_nlinks; k++)
        if (g_a[g_deep_links[k]].f == f) {
            g_stat_chain_reports++;
            return true;
        }
    return false;
}
static volatile int g_deep_active;

static void deep_set_what(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_deep_what, sizeof g_deep_what, fmt, ap);
    va_end(ap);
}

static void deep_run_both(int A, int B, int rounds) {
    for (int k = 0; k < rounds; k++) {
        act_run_once(A);
        act_run_once(B);
    }
    check_loop_io(A);
    check_loop_io(B);
}

static bool deep_busy(int A, int B) {
    int ls[2] = {A, B};
    for (int j = 0; j < 2; j++) {
        mwork_t w = model_work(ls[j]);
        if (w.ready || w.due) return true;
    }
    return false;
}

/* May a pending chain link be dropped? Anything but the base (the application completes it)
 * and, unless `top_ok`, the top (a pending link's input holds it, as asyncio's callbacks do). */
static bool deep_may_drop(const int *link, int depth, int k, bool top_ok) {
    aux_t *E = &g_a[link[k]];
    if (!E->held || k == 0) return false;
    if (E->st != ST_P) return true;
    return k != depth || top_ok;
}

static void act_deep(int depth, bool deep_phase) {
    int A = new_loop_slot(true), B = new_loop_slot(true);
    int *link = xrealloc(NULL, (size_t)(depth + 1) * sizeof *link);
    int nk[AK_NKINDS] = {0};
    /* the base: a loop future of A; how it will end is planned */
    int base = ent_new(AK_GATE, A, true);
    g_a[base].held = true;
    g_calls++;
    g_a[base].f = afut_loop_create_future(g_loops[A].l);
    if (!g_a[base].f) MFAIL("afut_loop_create_future");
    link[0] = base;
    g_deep_links = link;
    g_deep_nlinks = 1;
    uint32_t plan = rnd(3); /* 0 result, 1 exception, 2 cancel */
    int homog = rnd(4) == 0 ? (int)rnd(4) : -1;
    static const int kinds[] = {AK_WRAP, AK_SHIELD, AK_GATHER, AK_TASK};
    deep_set_what("building a chain of %d links", depth);
    for (int k = 1; k <= depth; k++) {
        int p = link[k - 1];
        int X = g_a[p].loop;
        int kind = kinds[homog >= 0 ? homog : (int)rnd(4)];
        int i;
        if (kind == AK_WRAP) {
            int Y = X == A ? B : A;
            i = ent_new(AK_WRAP, Y, true);
            g_calls++;
            g_a[i].f = afut_wrap_future(g_loops[Y].l, g_a[p].f);
            g_a[i].peer = p;
            lsn_add(i, AI_WCS, i, -1, 0);
            lsn_add(p, AI_WCOPY, i, p, 0);
        } else if (kind == AK_SHIELD) {
            i = ent_new(AK_SHIELD, X, true);
            g_calls++;
            g_a[i].f = afut_shield(g_loops[X].l, g_a[p].f);
            g_a[i].peer = p;
            lsn_add(p, AI_SHC, i, p, 0);
            lsn_add(i, AI_SHO, i, -1, 0);
        } else if (kind == AK_GATHER) {
            i = ent_new(AK_GATHER, X, true);
            bool retexc = rnd(2) != 0;
            afut_t *pf = g_a[p].f;
            g_calls++;
            g_a[i].f = afut_gather(g_loops[X].l, &pf, 1, retexc);
            aux_t *G = &g_a[i];
            G->retexc = retexc;
            G->kids = xrealloc(NULL, sizeof *G->kids);
            G->kids[0] = p;
            G->nkids = 1;
            G->args = xrealloc(NULL, sizeof *G->args);
            G->args[0] = p;
            G->nargs = 1;
            G->remaining = 1;
            lsn_add(p, AI_GCH, i, p, 0);
        } else {
            i = ent_new(AK_TASK, X, true);
            aux_t *T = &g_a[i];
            T->peer = p;
            T->nscript = 2;
            T->script[0] = OP_AWAIT;
            T->script[1] = OP_ECHO;
            T->udid = ax_new(AXK_TASKUD, i);
            g_calls++;
            T->f = afut_task_new(g_loops[X].l, aux_step, axp(T->udid), ax_free);
            aux_push(X, AI_STEP, i, -1, 0);
        }
        if (!g_a[i].f) MFAIL("building link %d (%s) of a chain failed", k, k_kind[kind]);
        g_a[i].held = true;
        nk[kind]++;
        link[k] = i;
        g_deep_nlinks = k + 1;
        if (rnd(16) == 0) aux_add_observer(i, false);
    }
    g_stat_chains++;
    g_stat_chain_links += (unsigned long long)depth;
    if ((unsigned long long)depth > g_stat_max_depth) g_stat_max_depth = (unsigned long long)depth;
    TRACE("deep: chain of %d (wrap %d, shield %d, gather %d, task %d), plan %u\n", depth, nk[AK_WRAP], nk[AK_SHIELD],
          nk[AK_GATHER], nk[AK_TASK], plan);
    char shape[128];
    snprintf(shape, sizeof shape, "%d links (wrap_future %d, shield %d, gather %d, task %d)", depth, nk[AK_WRAP],
             nk[AK_SHIELD], nk[AK_GATHER], nk[AK_TASK]);
    bool top_ok = deep_phase && plan != 1;
    int nops = 2 + (int)rnd(8);
    for (int op = 0; op < nops; op++) {
        switch (rnd(7)) {
        case 0:
        case 1: {
            int rounds = 1 + (int)rnd((uint32_t)(depth / 3 + 2));
            deep_set_what("running the loops %d rounds over a chain of %s", rounds, shape);
            deep_run_both(A, B, rounds);
            break;
        }
        case 2: {
            int k = (int)rnd((uint32_t)depth + 1);
            aux_t *E = &g_a[link[k]];
            if (!E->held || E->st != ST_P) break;
            deep_set_what("afut_cancel on link %d (%s) of a chain of %s", k, k_kind[E->kind], shape);
            const char *msg = k_msgs[rnd(4)];
            bool expect = aux_cancel(link[k], msg);
            g_calls++;
            bool rc = afut_cancel(E->f, msg);
            if (rc != expect) MFAIL("deep chain: afut_cancel(link %d, %s) returned %d, expected %d", k, k_kind[E->kind], rc, expect);
            break;
        }
        case 3: {
            int k = 1 + (int)rnd((uint32_t)depth);
            if (!deep_may_drop(link, depth, k, top_ok)) break;
            aux_t *E = &g_a[link[k]];
            deep_set_what("dropping the reference to link %d (%s, %s) of a chain of %s", k, k_kind[E->kind],
                          E->st == ST_P ? "pending" : "done", shape);
            if (E->st == ST_P) aux_add_observer(link[k], false); /* sees a discard */
            aux_release(link[k]);
            break;
        }
        case 4: {
            int k = (int)rnd((uint32_t)depth + 1);
            if (g_a[link[k]].held && g_a[link[k]].st == ST_P) aux_add_observer(link[k], false);
            break;
        }
        case 5: {
            /* the top: asyncio keeps it alive through its input's callback */
            if (!deep_may_drop(link, depth, depth, top_ok)) break;
            aux_t *E = &g_a[link[depth]];
            deep_set_what("dropping the reference to the top link (%s, %s) of a chain of %s", k_kind[E->kind],
                          E->st == ST_P ? "pending" : "done", shape);
            if (E->st == ST_P) aux_add_observer(link[depth], false);
            aux_release(link[depth]);
            break;
        }
        default:
            break;
        }
    }
    /* the base completes as planned, then the loops run until nothing is left */
    deep_set_what("completing the base of a chain of %s", shape);
    if (g_a[base].st == ST_P) aux_complete(base, plan);
    int rounds = 0, limit = 3 * depth + 50;
    deep_set_what("running the loops until a chain of %s is complete", shape);
    while (deep_busy(A, B)) {
        if (++rounds > limit) MFAIL("deep chain: still busy after %d rounds", limit);
        deep_run_both(A, B, 1);
    }
    deep_set_what("checking every link of a chain of %s", shape);
    for (int k = 0; k <= depth; k++) {
        aux_t *E = &g_a[link[k]];
        if (E->st == ST_P) MFAIL("deep chain: link %d (%s) still pending after the base completed", k, k_kind[E->kind]);
        aux_check(link[k]);
    }
    /* top down, bottom up (the last release then frees every link in one cascade), or in
     * random order */
    uint32_t order = rnd(3);
    deep_set_what("releasing a complete chain of %s (%s)", shape, order == 0 ? "top down" : order == 1 ? "bottom up" : "random order");
    if (order == 0) {
        for (int k = depth; k >= 0; k--) aux_release(link[k]);
    } else if (order == 1) {
        for (int k = 0; k <= depth; k++) aux_release(link[k]);
    } else {
        int *perm = xrealloc(NULL, (size_t)(depth + 1) * sizeof *perm);
        for (int k = 0; k <= depth; k++) perm[k] = k;
        for (int k = depth; k > 0; k--) {
            int j = (int)rnd((uint32_t)k + 1), x = perm[k];
            perm[k] = perm[j];
            perm[j] = x;
        }
        for (int k = 0; k <= depth; k++) aux_release(link[perm[k]]);
        free(perm);
    }
    deep_run_both(A, B, 2);
    deep_set_what("freeing the two loops of a chain of %s", shape);
    aux_break_cycles();
    free_loop(A);
    free_loop(B);
    for (int k = 0; k <= depth; k++) {
        aux_t *E = &g_a[link[k]];
        if (E->kind == AK_TASK) ax_expect_freed(E->udid, "chain task userdata");
        E->pins = 0;
        E->nwaiters = E->nlisten = 0;
        ent_forget(link[k]);
    }
    g_deep_links = NULL;
    g_deep_nlinks = 0;
    free(link);
    deep_set_what("idle");
}

/* A host that wakes up exactly at a timer's deadline: a timer 30-100 us away, the clock
 * spun to its deadline, run_once at once; the kernel timer behind the fd may not have
 * expired yet (the fd must not be readable on the idle loop afterwards). */
static void act_near_timer(int loopi) {
    mloop_t *L = &g_loops[loopi];
    {
        /* the near timer alone: a later timer would re-arm the timerfd at the end of the
         * run and hide the stale expiry */
        for (size_t j = 0; j < L->natm; j++)
            if (g_tm[L->atm[j]].live && g_tm[L->atm[j]].dc == DC_FAR) return;
        for (size_t k = 0; k < L->nliveh;) {
            int hi = L->liveh[k];
            if (g_h[hi].cls >= 0 && g_h[hi].dc == DC_FAR) {
                model_free(g_h[hi].id);
                h_dead(hi); /* moves another handle into slot k */
                g_calls++;
                MCHECK(afut_loop_cancel(L->l, g_h[hi].h));
            } else {
                k++;
            }
        }
    }
    g_near_defer = true;
    act_schedule(loopi, 12);
    g_near_defer = false;
    act_run_once(loopi);
}

/* ------------------------------------------------------------------------------------------
 * One random top-level step. */

static void step(void) {
    g_step++;
    uint32_t r = rnd(100);
    int s = pick_slot(true);
    mloop_t *L = cur_loop();
    if (L && L->aux && rnd(5) == 0) {
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
        static const int classes[] = {0, 1, 2, 3, 3, 3, 9, 4, 10, 11, 13, 12};
        int c = classes[rnd(rnd(8) ? 7 : 12)];
        if (c == 12 && (!L || !L->host || rnd(4))) c = 3; /* spins up to 0.1 ms: on host loops, rarely */
        if (L) act_schedule(g_cur, c);
    } else if (r < 80) {
        if (L) act_cancel_handle(g_cur);
    } else if (r < 96) {
        if (L && rnd(L->virt ? 8 : 128) == 0) act_advance(g_cur);
        else if (L) act_run_once(g_cur);
        else if (g_old >= 0) act_run_once(g_old);
    } else if (r < 98) {
        check_describe(s);
    } else if (rnd(64) == 0) {
        act_loop_cycle();
    } else if (rnd(64) == 0) {
        act_wait_edge();
    } else if (rnd(g_bytes ? 64 : 2048) == 0) {
        act_deep(8 + (int)rnd(g_bytes ? 120 : 400), false);
    } else if (L && L->host && rnd(32) == 0) {
        act_near_timer(g_cur);
    } else if (g_old >= 0 && rnd(2)) {
        /* the closed loop: scheduling refused, run refused */
        if (rnd(2)) act_schedule(g_old, rnd(2) ? -1 : 3);
        else if (rnd(16) == 0) act_advance(g_old);
        else act_run_once(g_old);
    }
    if (s >= 0) check_future(s);
    if ((g_step & 63) == 0)
        for (int i = 0; i < MAXF; i++) check_future(i);
    if (L && (L->host || (g_step & 3) == 0)) check_loop_io(g_cur);
    if ((g_step & 15) == 0) check_loop_io(g_old);
    check_step();
}

/* Releases everything: the model's references, then the loops. */
static void teardown(void) {
    g_step++;
    cancel_cycles_of_loop(-2);
    for (int s = 0; s < MAXF; s++) {
        while (g_f[s].live && g_f[s].urefs > 0) act_unref(s);
    }
    aux_break_cycles();
    /* everything goes now, pending futures too: their observers are freed unrun */
    for (uint32_t k = 1; k < g_nax; k++)
        if (g_ax[k].kind == AXK_OBS && (g_ax[k].obs == OBS_REG || g_ax[k].obs == OBS_QUEUED)) g_ax[k].obs = OBS_DROPPED;
    for (int k = g_nrand - 1; k >= 0; k--) aux_release(g_rand[k]);
    check_step();
    if (g_old >= 0) free_loop(g_old);
    if (g_cur >= 0) free_loop(g_cur);
    g_old = g_cur = -1;
    check_step();
    for (int s = 0; s < MAXF; s++)
        if (g_f[s].live) MFAIL("slot %d still live after teardown (urefs %d irefs %d drefs %d)", s, g_f[s].urefs, g_f[s].irefs,
                               g_f[s].drefs);
    for (int i = 0; i < MAXL; i++)
        if (g_loops[i].used) aux_release_loop(i);
    aux_teardown();
    for (int i = 0; i < MAXL; i++) {
        free(g_loops[i].q.v);
        free(g_loops[i].timers);
        free(g_loops[i].liveh);
        free(g_loops[i].aq);
        free(g_loops[i].atm);
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
    free(g_a);
    g_a = NULL;
    free(g_afree);
    g_afree = NULL;
}

static void model_reset(uint64_t seed, const uint8_t *bytes, size_t n) {
    g_stat_frees += (unsigned long long)g_model_frees;
    g_stat_reports += (unsigned long long)g_reports_expected;
    memset(g_f, 0, sizeof g_f);
    g_a = NULL; /* allocated by the first ent_new */
    g_afree = NULL;
    g_na = g_nafree = g_nalive = g_nrand = 0;
    g_ax = NULL;
    g_nax = g_capax = 0;
    g_tm = NULL;
    g_ntm = g_captm = 0;
    g_tmfree = NULL;
    g_ntmfree = g_captmfree = 0;
    g_cst = NULL;
    g_ncst = g_capcst = 0;
    g_batch = NULL;
    g_nbatch = g_capbatch = 0;
    g_batch_loop = -1;
    g_touched = NULL;
    g_ntouched = g_captouched = 0;
    g_grun = 0;
    g_aseq = 0;
    key_top();
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
    edges_init();
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
 * Thread phase: another thread completes futures, schedules callbacks and timers that are
 * due at once (call_later(-INFINITY / -0.0 / 5e-324), call_at(-INFINITY)); the loop thread
 * runs them, as a standalone loop (run_once waiting up to 1 s) or as a host polling the fd
 * (poll up to 1 s, then run_once(0)). The callbacks run in the order they were submitted
 * (one FIFO queue), each completion's callbacks contiguous and in registration order; the
 * timers run once each, on the loop thread, and wake the loop: a wait that lasts the whole
 * second is a lost wakeup (API.md "Threads"; afut.h: "a submission from another thread wakes
 * the loop"). */

#ifndef AFUT_MODEL_NO_MAIN
#define TP_FUTS 16
#define TP_MAXLOG 256
#define TP_TIMERS 4

typedef struct {
    int kind;      /* 0 complete future `fut`, 1 call_soon `id`, 2 a timer due at once `id` */
    int fut;
    int how;       /* 0 result, 1 exception, 2 cancel; timers: which edge */
    uint32_t id;   /* call_soon / timer id, or value/detail id */
    bool unref;    /* the thread gives up the reference it was handed */
} tp_op_t;

typedef struct {
    afut_loop_t *loop;
    afut_t *futs[TP_FUTS];
    tp_op_t ops[TP_FUTS * 2 + TP_TIMERS];
    int nops;
    int bad;
    uint64_t last_submit; /* the clock at the thread's latest submission (double bits) */
} tp_t;

static uint32_t g_tp_log[TP_MAXLOG];
static int g_tp_nlog;
static uint32_t g_tp_timer_ids[TP_TIMERS];
static int g_tp_timer_ran[TP_TIMERS], g_tp_ntimers;

static void tp_done(afut_t *fut, void *ud) {
    (void)fut;
    if (!on_loop_thread()) MFAIL("thread phase: done-callback off the loop thread");
    if (g_tp_nlog < TP_MAXLOG) g_tp_log[g_tp_nlog++] = (uint32_t)(uintptr_t)ud;
}

static void tp_call(void *ud) {
    if (!on_loop_thread()) MFAIL("thread phase: callback off the loop thread");
    uint32_t id = (uint32_t)(uintptr_t)ud;
    for (int k = 0; k < g_tp_ntimers; k++)
        if (g_tp_timer_ids[k] == id) {
            g_tp_timer_ran[k]++;
            return;
        }
    if (g_tp_nlog < TP_MAXLOG) g_tp_log[g_tp_nlog++] = id;
}

static const double k_tp_edges[] = {-INFINITY, -0.0, DBL_TRUE_MIN, -1e19};

static void tp_submitted(tp_t *t) {
    double now = now_s();
    uint64_t bits;
    memcpy(&bits, &now, sizeof bits);
    __atomic_store_n(&t->last_submit, bits, __ATOMIC_RELEASE);
}

static double tp_last_submit(tp_t *t) {
    uint64_t bits = __atomic_load_n(&t->last_submit, __ATOMIC_ACQUIRE);
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
}

static void *tp_thread(void *arg) {
    tp_t *t = arg;
    for (int i = 0; i < t->nops; i++) {
        tp_submitted(t);
        tp_op_t *op = &t->ops[i];
        if (op->kind == 1) {
            if (afut_loop_call_soon(t->loop, tp_call, idp(op->id), ud_free) == 0) t->bad++;
            continue;
        }
        if (op->kind == 2) {
            afut_handle_t h = op->how == 4 ? afut_loop_call_at(t->loop, -INFINITY, tp_call, idp(op->id), ud_free)
                                           : afut_loop_call_later(t->loop, k_tp_edges[op->how], tp_call, idp(op->id), ud_free);
            if (h == 0) t->bad++;
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
    tp_submitted(t);
    return NULL;
}

/* One wait of the loop thread: up to 1 s for work, then what was ready ran. Returns false
 * if the wait went on for half a second after the thread's latest submission (a lost
 * wakeup: a woken loop returns at once). */
static bool tp_wait_and_run(tp_t *t, afut_loop_t *loop, int fd, int *lost_timer_only) {
    int before = g_tp_nlog, tbefore = 0;
    for (int k = 0; k < g_tp_ntimers; k++) tbefore += g_tp_timer_ran[k];
    double t0 = now_s();
    size_t ran = 0;
    if (fd >= 0) {
        if (!fd_readable(fd, 1000) && afut_loop_timeout_ms(loop) == 0 && now_s() - tp_last_submit(t) > 0.5) {
            *lost_timer_only = 1;
            MCHECK_EQ(afut_loop_run_once(loop, 0, &ran), AFUT_OK);
            return false;
        }
        MCHECK_EQ(afut_loop_run_once(loop, 0, &ran), AFUT_OK);
    } else {
        MCHECK_EQ(afut_loop_run_once(loop, 1000, &ran), AFUT_OK);
    }
    double t1 = now_s();
    int tafter = 0;
    for (int k = 0; k < g_tp_ntimers; k++) tafter += g_tp_timer_ran[k];
    if (t1 - t0 >= 0.95 && ran > 0 && t1 - tp_last_submit(t) > 0.5) {
        *lost_timer_only = g_tp_nlog == before && tafter > tbefore;
        return false;
    }
    return true;
}

static void thread_phase(int rounds) {
    for (int round = 0; round < rounds; round++) {
        tp_t t;
        memset(&t, 0, sizeof t);
        g_step++;
        t.loop = afut_loop_new();
        if (!t.loop) MFAIL("afut_loop_new");
        afut_loop_set_exception_handler(t.loop, on_report, NULL, NULL);
        int fd = rnd(2) ? afut_loop_fd(t.loop) : -1;
        /* Everything the thread may free is allocated now: the id table must not move. */
        ids_reserve(TP_FUTS * 8 + TP_TIMERS);
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
        g_tp_ntimers = 0;
        int ntimers = (int)rnd(TP_TIMERS + 1);
        for (int i = 0; i < TP_FUTS; i++) {
            if (rnd(2)) {
                uint32_t id = id_new(ID_CB);
                g_ids[id].regs++;
                model_free(id);
                t.ops[t.nops++] = (tp_op_t){.kind = 1, .id = id};
                expect[nexpect++] = id;
            }
            if (g_tp_ntimers < ntimers && rnd(4) == 0) {
                uint32_t id = id_new(ID_CB);
                g_ids[id].regs++;
                model_free(id);
                int how = (int)rnd(5);
                edge_note(how == 4 ? -INFINITY : k_tp_edges[how]);
                t.ops[t.nops++] = (tp_op_t){.kind = 2, .id = id, .how = how};
                g_tp_timer_ran[g_tp_ntimers] = 0;
                g_tp_timer_ids[g_tp_ntimers++] = id;
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
        bool minf = false;
        for (int i = 0; i < t.nops; i++)
            if (t.ops[i].kind == 2 && (t.ops[i].how == 0 || t.ops[i].how == 4)) minf = true;
        g_calls += (unsigned long long)t.nops;
        g_tp_nlog = 0;
        g_in_thread_phase = true;
        pthread_t th;
        if (pthread_create(&th, NULL, tp_thread, &t) != 0) MFAIL("pthread_create");
        double start = now_s();
        for (;;) {
            int timers_ran = 0;
            for (int k = 0; k < g_tp_ntimers; k++) timers_ran += g_tp_timer_ran[k];
            if (g_tp_nlog >= nexpect && timers_ran >= g_tp_ntimers) break;
            int timer_only = 0;
            g_calls++;
            if (!tp_wait_and_run(&t, t.loop, fd, &timer_only)) {
                const char *mode = fd >= 0 ? "a host polling the fd" : "afut_loop_run_once(loop, 1000)";
                MFAIL("thread phase: %s slept a whole second with work submitted from another thread (a lost wakeup%s)",
                      mode, minf && (timer_only || fd >= 0) ? "; a timer with deadline -INFINITY was among it" : "");
            }
            if (now_s() - start > 30) MFAIL("thread phase: %d of %d callbacks ran in 30 s", g_tp_nlog, nexpect);
        }
        pthread_join(th, NULL);
        MCHECK_EQ(t.bad, 0);
        MCHECK_EQ(g_tp_nlog, nexpect);
        for (int i = 0; i < nexpect; i++)
            if (g_tp_log[i] != expect[i]) MFAIL("thread phase: callback #%d was id %u, expected %u", i, g_tp_log[i], expect[i]);
        for (int k = 0; k < g_tp_ntimers; k++)
            if (g_tp_timer_ran[k] != 1) MFAIL("thread phase: timer %d ran %d times", k, g_tp_timer_ran[k]);
        /* Drop the rest: every exception that nobody read is reported once. */
        for (int i = 0; i < TP_FUTS; i++) {
            if (!thread_unrefs[i]) afut_unref(t.futs[i]);
        }
        g_calls += TP_FUTS + 2;
        size_t ran = 0;
        MCHECK_EQ(afut_loop_run_once(t.loop, 0, &ran), AFUT_OK);
        MCHECK_EQ(ran, 0);
        if (fd >= 0 && fd_readable(fd, 0)) {
            int tmo = afut_loop_timeout_ms(t.loop);
            MFAIL("thread phase: the host fd is readable on an idle loop (timeout_ms %d) after every timer ran", tmo);
        }
        afut_loop_free(t.loop);
        g_reports_expected += exc_futs;
        if (__atomic_load_n(&g_reports_actual, __ATOMIC_SEQ_CST) != g_reports_expected)
            MFAIL("thread phase: %lld reports, expected %lld", g_reports_actual, g_reports_expected);
        g_in_thread_phase = false;
        g_tp_ntimers = 0;
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
    int wait_failures, early_timeouts;
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
 * AFUT_OK once the future is done, whoever completed it (timeouts from the edges that mean
 * "wait": INFINITY, DBL_MAX, 1e19, 2^63, 2^64, ...). */
static const double k_race_waits[] = {20.0, INFINITY, DBL_MAX, 1e19, T_2P63, T_2P64, 1e300};
static int g_race_wait_kind;

static void *race_waiter(void *arg) {
    race_t *r = arg;
    double t = k_race_waits[g_race_wait_kind];
    for (int i = 0; i < TP_FUTS; i++) {
        double t0 = now_s();
        afut_status_t rc = afut_wait(r->futs[i], t);
        if (rc != AFUT_OK) {
            if (rc == AFUT_ERR_TIMEOUT && g_race_wait_kind >= 2 && now_s() - t0 < 1.0) {
                __atomic_add_fetch(&r->early_timeouts, 1, __ATOMIC_SEQ_CST);
                afut_wait(r->futs[i], INFINITY);
                continue;
            }
            __atomic_add_fetch(&r->wait_failures, 1, __ATOMIC_SEQ_CST);
        }
    }
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
        int ncbs[TP_FUTS], total = 0;
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
        g_race_wait_kind = (int)rnd(sizeof k_race_waits / sizeof k_race_waits[0]);
        if (g_race_wait_kind >= 2) edge_note(k_race_waits[g_race_wait_kind]);
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
        double t0 = now_s();
        while (g_tp_nlog < total) {
            g_calls++;
            MCHECK_EQ(afut_loop_run_once(r.loop, 50, NULL), AFUT_OK);
            if (now_s() - t0 > 20) MFAIL("race phase: %d of %d callbacks ran in 20 s", g_tp_nlog, total);
        }
        pthread_join(th, NULL);
        pthread_join(waiter, NULL);
        g_calls += TP_FUTS;
        if (r.early_timeouts)
            MFAIL("race phase: %d afut_wait(fut, %.17g) calls on futures that another thread completes returned "
                  "AFUT_ERR_TIMEOUT at once: a deadline too far to represent became \"now\"", r.early_timeouts,
                  k_race_waits[g_race_wait_kind]);
        if (r.wait_failures)
            MFAIL("race phase: %d afut_wait(fut, %g) calls failed on futures another thread completes", r.wait_failures,
                  k_race_waits[g_race_wait_kind]);
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

/* ------------------------------------------------------------------------------------------
 * Destructor phase: destructors that re-enter the API run on other
 * threads. Tasks await futures of the loop; one thread cancels the tasks while another
 * completes the awaited futures with values (or exception details) whose free functions
 * call task functions on the task that awaited the future (afut_task_cancelling,
 * afut_describe, afut_done, afut_cancel) and afut_loop_call_soon_threadsafe on the loop, and
 * drops its references, while the loop thread runs the loop; the exception handler (the
 * never-retrieved reports of futures nobody read) does the same. Whichever thread drops the
 * last reference runs the free function: the canceller, the completer, the loop thread.
 * Checked: every value and detail freed exactly once, every callback they scheduled run
 * exactly once on the loop thread, every task done, and no deadlock (a watchdog thread ends
 * the program with a diagnosis if a round makes no progress for 10 s: API.md "No lock is
 * held while C code runs"). */

#define DP_TASKS 8

typedef struct {
    afut_loop_t *loop;
    afut_t *task[DP_TASKS];
    afut_t *fut[DP_TASKS];
    afut_t *tref[DP_TASKS]; /* the destructor's reference to the task */
    int how[DP_TASKS];      /* 0 result, 1 exception */
    afut_status_t rc[DP_TASKS];
    int frees[DP_TASKS];
    int calls_ran;
    int calls_made;
    int reports;
    int stepped[DP_TASKS];
    volatile int go;
    int a_done, b_done, a_items, b_items;
    unsigned jit;
    int bad;
} dp_t;

static dp_t *g_dp;
static volatile const char *g_dp_where[4]; /* what each thread is doing, for the watchdog */
static volatile int g_dp_progress, g_dp_round_done;
static unsigned long long g_stat_dp_rounds, g_stat_dp_frees_other;

static int dp_index_of_payload(void *p) {
    uintptr_t v = (uintptr_t)p;
    if (v < 0x7000 || v >= 0x7000 + DP_TASKS) return -1;
    return (int)(v - 0x7000);
}

static void dp_cb(void *ud) {
    (void)ud;
    if (!on_loop_thread()) __atomic_add_fetch(&g_dp->bad, 1, __ATOMIC_SEQ_CST);
    __atomic_add_fetch(&g_dp->calls_ran, 1, __ATOMIC_SEQ_CST);
}

/* Calls back into the API on the task that awaited the future being freed, and its loop. */
static void dp_reenter(int i, int slot) {
    dp_t *d = g_dp;
    afut_t *t = d->tref[i];
    g_dp_where[slot] = slot == 1 ? "inside afut_cancel(task): a free function (or the exception handler) it ran "
                                   "calls afut_task_cancelling / afut_describe / afut_cancel on that task"
                                 : "a free function (or the exception handler) calling afut_task_cancelling / "
                                   "afut_describe / afut_cancel on the task that awaited the future being freed";
    if (afut_task_cancelling(t) < 0) __atomic_add_fetch(&d->bad, 1, __ATOMIC_SEQ_CST);
    char buf[64];
    afut_describe(t, buf, sizeof buf);
    (void)afut_done(t);
    (void)afut_cancel(t, "from a destructor");
    const char *was = (const char *)g_dp_where[slot];
    g_dp_where[slot] = "a free function calling afut_loop_call_soon_threadsafe";
    if (afut_loop_call_soon_threadsafe(d->loop, dp_cb, NULL, NULL) != 0) __atomic_add_fetch(&d->calls_made, 1, __ATOMIC_SEQ_CST);
    g_dp_where[slot] = was;
    __atomic_add_fetch(&g_stat_reent_calls, 5, __ATOMIC_SEQ_CST);
}

static __thread int g_dp_tslot; /* 0 the loop thread, 1 the canceller, 2 the completer */

static int dp_slot(void) { return g_dp_tslot; }

static void dp_free(void *p) {
    int i = dp_index_of_payload(p);
    if (i < 0) {
        __atomic_add_fetch(&g_dp->bad, 1, __ATOMIC_SEQ_CST);
        return;
    }
    __atomic_add_fetch(&g_dp->frees[i], 1, __ATOMIC_SEQ_CST);
    __atomic_add_fetch(&g_stat_reent, 1, __ATOMIC_SEQ_CST);
    if (!on_loop_thread()) __atomic_add_fetch(&g_stat_dp_frees_other, 1, __ATOMIC_SEQ_CST);
    dp_reenter(i, dp_slot());
}

static void dp_handler(afut_loop_t *loop, const afut_error_context_t *ctx, void *ud) {
    (void)loop;
    (void)ud;
    if (!ctx || !ctx->message || strcmp(ctx->message, "Future exception was never retrieved") != 0) return;
    __atomic_add_fetch(&g_dp->reports, 1, __ATOMIC_SEQ_CST);
    int i = ctx->exception ? dp_index_of_payload(ctx->exception->detail) : -1;
    if (i >= 0) dp_reenter(i, dp_slot());
}

/* Step 1 awaits the future; step 2 ends the task (cancelled if it was, else a result). The
 * awaited future's exception is not read: its report comes when the future is freed. */
static void dp_step(afut_t *task, afut_t *awaited, void *ud) {
    int i = (int)(intptr_t)ud;
    dp_t *d = g_dp;
    d->stepped[i]++;
    if (!awaited) {
        if (afut_task_await(task, d->fut[i]) != AFUT_OK) d->bad++;
        return;
    }
    if (afut_cancelled(awaited) || afut_task_cancel_requested(task, NULL)) return;
    /* a cancel from the other thread may come in between: then it is refused */
    afut_status_t rc = afut_set_result(task, NULL, NULL);
    if (rc != AFUT_OK && rc != AFUT_ERR_CANCELLED) d->bad++;
}

/* Up to some tens of microseconds, different each time: varies the interleavings. */
static void dp_jitter(unsigned seed) {
    volatile unsigned x = 0;
    unsigned n = (seed * 2654435761u) >> 18;
    if (seed & 1) n >>= 6;
    for (unsigned k = 0; k < n; k++) x += k;
}

static void *dp_canceller(void *arg) {
    dp_t *d = arg;
    g_dp_tslot = 1;
    for (int i = 0; i < DP_TASKS; i++) {
        while (__atomic_load_n(&d->go, __ATOMIC_ACQUIRE) <= i) sched_yield();
        dp_jitter((unsigned)(i * 7 + d->jit));
        g_dp_where[1] = "afut_cancel(task)";
        afut_cancel(d->task[i], "dp");
        g_dp_where[1] = "between tasks";
        __atomic_add_fetch(&d->a_items, 1, __ATOMIC_SEQ_CST);
        __atomic_add_fetch(&g_dp_progress, 1, __ATOMIC_SEQ_CST);
    }
    g_dp_where[1] = "done";
    __atomic_store_n(&d->a_done, 1, __ATOMIC_RELEASE);
    return NULL;
}

static void *dp_completer(void *arg) {
    dp_t *d = arg;
    g_dp_tslot = 2;
    for (int i = 0; i < DP_TASKS; i++) {
        while (__atomic_load_n(&d->go, __ATOMIC_ACQUIRE) <= i) sched_yield();
        dp_jitter((unsigned)(i * 13 + d->jit * 3));
        void *payload = (void *)(uintptr_t)(0x7000 + i);
        g_dp_where[2] = "completing the awaited future";
        if (d->how[i] == 0) d->rc[i] = afut_set_result(d->fut[i], payload, dp_free);
        else d->rc[i] = afut_set_exception(d->fut[i], 9, "dp", payload, dp_free);
        dp_jitter((unsigned)(i * 31 + d->jit * 5)); /* sometimes the loop thread's step comes first */
        g_dp_where[2] = "dropping its reference to the awaited future";
        afut_unref(d->fut[i]);
        g_dp_where[2] = "between tasks";
        __atomic_add_fetch(&d->b_items, 1, __ATOMIC_SEQ_CST);
        __atomic_add_fetch(&g_dp_progress, 1, __ATOMIC_SEQ_CST);
    }
    g_dp_where[2] = "done";
    __atomic_store_n(&d->b_done, 1, __ATOMIC_RELEASE);
    return NULL;
}

static pthread_mutex_t g_wd_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_wd_cv = PTHREAD_COND_INITIALIZER;
static bool g_wd_stop;

static void *dp_watchdog(void *arg) {
    (void)arg;
    pthread_mutex_lock(&g_wd_mu);
    int last = -1;
    while (!g_wd_stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 10;
        int rc = pthread_cond_timedwait(&g_wd_cv, &g_wd_mu, &ts);
        if (g_wd_stop) break;
        int now = __atomic_load_n(&g_dp_progress, __ATOMIC_SEQ_CST);
        if (rc != 0 && now == last) {
            fprintf(stderr,
                    "MODEL VIOLATION: destructor phase: no progress for 10 s, a deadlock. Loop thread: %s; "
                    "canceller thread: %s; completer thread: %s. A free function (or the exception handler) called a "
                    "task function on the task that awaited the future being freed, while the library held that task's "
                    "lock: afut_cancel(task) on one thread dropped the last reference to the awaited future that "
                    "another thread had just completed (API.md: no lock is held while C code runs). replay: "
                    "AFUT_SEED=%llu\n",
                    (const char *)g_dp_where[0], (const char *)g_dp_where[1], (const char *)g_dp_where[2],
                    (unsigned long long)g_replay_seed);
            fflush(stderr);
            printf("FAIL model (deadlock in the destructor phase, seed %llu)\n0 passed, 1 failed\n", (unsigned long long)g_replay_seed);
            fflush(stdout);
            _exit(1);
        }
        last = now;
    }
    pthread_mutex_unlock(&g_wd_mu);
    return NULL;
}

static void destructor_phase(int rounds) {
    pthread_t wd;
    g_wd_stop = false;
    if (pthread_create(&wd, NULL, dp_watchdog, NULL) != 0) MFAIL("pthread_create");
    for (int round = 0; round < rounds; round++) {
        dp_t d;
        memset(&d, 0, sizeof d);
        g_dp = &d;
        g_step++;
        d.loop = afut_loop_new();
        if (!d.loop) MFAIL("afut_loop_new");
        afut_loop_set_exception_handler(d.loop, dp_handler, NULL, NULL);
        int fd = rnd(2) ? afut_loop_fd(d.loop) : -1;
        for (int i = 0; i < DP_TASKS; i++) {
            d.fut[i] = afut_loop_create_future(d.loop);
            d.task[i] = afut_task_new(d.loop, dp_step, (void *)(intptr_t)i, NULL);
            d.tref[i] = afut_ref(d.task[i]);
            d.how[i] = (int)rnd(2);
        }
        g_calls += DP_TASKS * 3;
        for (int k = 0; k < 3; k++) afut_loop_run_once(d.loop, 0, NULL); /* first steps: awaiting */
        /* the completer takes its own references; ours go: the tasks hold theirs */
        for (int i = 0; i < DP_TASKS; i++) afut_ref(d.fut[i]);
        afut_t *mine[DP_TASKS];
        memcpy(mine, d.fut, sizeof mine);
        pthread_t a, b;
        g_dp_where[0] = "running the loop";
        g_dp_where[1] = g_dp_where[2] = g_dp_where[3] = "starting";
        if (pthread_create(&a, NULL, dp_canceller, &d) != 0 || pthread_create(&b, NULL, dp_completer, &d) != 0)
            MFAIL("pthread_create");
        for (int i = 0; i < DP_TASKS; i++) afut_unref(mine[i]);
        d.jit = (unsigned)rnd(1000);
        __atomic_store_n(&d.go, 1, __ATOMIC_RELEASE);
        double t0 = now_s();
        for (;;) {
            /* one task at a time: both threads on it at once, the loop running meanwhile */
            int go = __atomic_load_n(&d.go, __ATOMIC_ACQUIRE);
            if (go <= DP_TASKS && __atomic_load_n(&d.a_items, __ATOMIC_ACQUIRE) >= go &&
                __atomic_load_n(&d.b_items, __ATOMIC_ACQUIRE) >= go)
                __atomic_store_n(&d.go, go + 1, __ATOMIC_RELEASE);
            bool all = true;
            for (int i = 0; i < DP_TASKS; i++) all = all && afut_done(d.task[i]);
            int made = __atomic_load_n(&d.calls_made, __ATOMIC_SEQ_CST);
            if (all && __atomic_load_n(&d.a_done, __ATOMIC_ACQUIRE) && __atomic_load_n(&d.b_done, __ATOMIC_ACQUIRE) &&
                __atomic_load_n(&d.calls_ran, __ATOMIC_SEQ_CST) >= made)
                break;
            if (fd >= 0) fd_readable(fd, 0);
            g_dp_where[0] = "afut_loop_run_once";
            afut_loop_run_once(d.loop, 0, NULL); /* busy: wakeups run as soon as they come */
            g_dp_where[0] = "running the loop";
            sched_yield(); /* 2 cores, 3 busy threads: let the others run now */
            if (now_s() - t0 > 60) MFAIL("destructor phase: round did not finish in 60 s");
        }
        pthread_join(a, NULL);
        pthread_join(b, NULL);
        for (int k = 0; k < 3; k++) afut_loop_run_once(d.loop, 0, NULL);
        g_calls += DP_TASKS * 4;
        for (int i = 0; i < DP_TASKS; i++) {
            afut_unref(d.task[i]);
            afut_unref(d.tref[i]);
        }
        afut_loop_run_once(d.loop, 0, NULL);
        g_dp_where[0] = "freeing the loop";
        afut_loop_free(d.loop);
        g_dp_where[0] = "idle";
        int made = d.calls_made, ran = d.calls_ran;
        for (int i = 0; i < DP_TASKS; i++) {
            /* a completion that lost against the cancel leaves the payload with the completer */
            int want = d.rc[i] == AFUT_OK ? 1 : 0;
            if (d.rc[i] != AFUT_OK && d.rc[i] != AFUT_ERR_INVALID_STATE)
                MFAIL("destructor phase: completing future %d returned %d", i, d.rc[i]);
            if (d.frees[i] != want)
                MFAIL("destructor phase: payload %d freed %d times, expected %d (completion rc %d)", i, d.frees[i], want,
                      d.rc[i]);
        }
        if (ran != made) MFAIL("destructor phase: %d callbacks scheduled from free functions, %d ran", made, ran);
        if (d.bad) MFAIL("destructor phase: %d bad calls (a callback off the loop thread, a failed call)", d.bad);
        g_stat_dp_rounds++;
        g_dp = NULL;
    }
    pthread_mutex_lock(&g_wd_mu);
    g_wd_stop = true;
    pthread_cond_broadcast(&g_wd_cv);
    pthread_mutex_unlock(&g_wd_mu);
    pthread_join(wd, NULL);
}

/* ------------------------------------------------------------------------------------------
 * Deep phase: chains of 1000 to 2500 links, on a thread with a 256 KiB stack (the library
 * keeps the stack flat however deep a structure is). A stack overflow there is reported by a
 * SIGSEGV handler on an alternate stack, with the operation and the depth. */

static char *g_deep_stack_lo, *g_deep_stack_hi;
static int g_deep_chains;

static void deep_write(const char *s) {
    ssize_t n = write(2, s, strlen(s));
    (void)n;
}

static void deep_segv(int sig, siginfo_t *si, void *uc) {
    (void)uc;
    char buf[64];
    uintptr_t a = (uintptr_t)si->si_addr;
    bool overflow = g_deep_active && (char *)a >= g_deep_stack_lo - 65536 && (char *)a < g_deep_stack_lo + 8192;
    deep_write(overflow ? "MODEL VIOLATION: stack overflow (SIGSEGV at the guard page of the 256 KiB "
                          "deep-phase thread stack) while "
                        : "MODEL VIOLATION: SIGSEGV in the deep phase (not at the stack guard: a crash) while ");
    deep_write(g_deep_what);
    deep_write(": the library recurses once per link (freeing, cancelling or completing a chain), so a deep "
               "structure crashes instead of returning a status. fault address 0x");
    int n = 0;
    char hex[32];
    do {
        hex[n++] = "0123456789abcdef"[a & 15];
        a >>= 4;
    } while (a && n < 30);
    for (int k = 0; k < n; k++) buf[k] = hex[n - 1 - k];
    buf[n] = 0;
    deep_write(buf);
    deep_write("\n  replay with the same AFUT_SEED\n");
    static const char tail[] = "FAIL model (deep phase)\n0 passed, 1 failed\n";
    ssize_t w = write(1, tail, sizeof tail - 1);
    (void)w;
    (void)sig;
    _exit(1);
}

typedef struct {
    uint64_t seed;
    int chains;
    int min_depth, max_depth;
} deep_arg_t;

static void *deep_thread(void *arg) {
    deep_arg_t *da = arg;
    static char altstack[65536];
    stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0}, old_ss;
    sigaltstack(&ss, &old_ss); /* given back at the end (a sanitizer frees its own) */
    pthread_attr_t at;
    void *lo;
    size_t sz;
    pthread_getattr_np(pthread_self(), &at);
    pthread_attr_getstack(&at, &lo, &sz);
    pthread_attr_destroy(&at);
    g_deep_stack_lo = lo;
    g_deep_stack_hi = (char *)lo + sz;
    model_reset(da->seed, NULL, 0);
    for (int c = 0; c < da->chains; c++) {
        g_step++;
        int depth = da->min_depth + (int)rnd((uint32_t)(da->max_depth - da->min_depth + 1));
        g_deep_active = 1;
        act_deep(depth, true);
        g_deep_active = 0;
        check_step();
        g_deep_chains++;
    }
    teardown();
    sigaltstack(&old_ss, NULL);
    return NULL;
}

static void deep_phase(uint64_t seed, int chains, int min_depth, int max_depth) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = deep_segv;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    struct sigaction old;
    sigaction(SIGSEGV, &sa, &old);
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setstacksize(&at, (size_t)256 << 10);
    deep_arg_t da = {seed, chains, min_depth, max_depth};
    pthread_t th;
    if (pthread_create(&th, &at, deep_thread, &da) != 0) MFAIL("pthread_create (deep phase)");
    pthread_join(th, NULL);
    pthread_attr_destroy(&at);
    sigaction(SIGSEGV, &old, NULL);
}
#endif

#ifndef AFUT_MODEL_NO_MAIN

#include "test.h"

static unsigned long long g_total_calls, g_total_checks;
static bool g_under_valgrind;

static void run_seed(uint64_t seed, unsigned long long calls) {
    printf("model: seed %llu, %llu calls (replay with AFUT_SEED=%llu)\n", (unsigned long long)seed, calls,
           (unsigned long long)seed);
    fflush(stdout);
    g_replay_seed = seed;
    g_calls = g_checks = 0;
    double t[7];
    t[0] = now_s();
    model_reset(seed, NULL, 0);
    model_run(calls);
    t[1] = now_s();
    model_reset(seed ^ 0x5eed, NULL, 0);
    thread_phase(calls >= 100000 ? 20 : 4);
    t[2] = now_s();
    race_phase(calls >= 100000 ? 20 : 4);
    t[3] = now_s();
    const char *dpr = getenv("AFUT_MODEL_DP_ROUNDS");
    destructor_phase(dpr && *dpr ? atoi(dpr) : calls >= 100000 ? 160 : 4);
    teardown();
    t[4] = now_s();
    bool small = calls < 100000 || g_under_valgrind;
    deep_phase(seed ^ 0xdee9, small ? 1 : 2, small ? 300 : 1000, small ? 600 : 2500);
    t[5] = now_s();
    g_total_calls += g_calls;
    g_total_checks += g_checks;
    printf("model: seed %llu took %.2f s: random sequences %.2f, thread phase %.2f, race phase %.2f, destructor "
           "phase %.2f, deep phase %.2f\n", (unsigned long long)seed, t[5] - t[0], t[1] - t[0], t[2] - t[1], t[3] - t[2],
           t[4] - t[3], t[5] - t[4]);
}

/* SEMANTICS.md 1-5 against a reference model. */
TEST(model_random_sequences) {
    const char *relay = getenv("AFUT_TEST_POLL_BACKEND");
    g_relay_backend = relay && strcmp(relay, "1") == 0;
    const char *env_seed = getenv("AFUT_SEED");
    const char *env_calls = getenv("AFUT_MODEL_CALLS");
    const char *vg = getenv("AFUT_UNDER_VALGRIND");
    unsigned long long per_seed = 460000; /* two seeds: about 1e6 calls per run (host-fd, timeout and
                                           * combinator checks make each call dearer than it was) */
    g_under_valgrind = vg && strcmp(vg, "1") == 0;
    if (g_under_valgrind) per_seed /= 20;
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
    printf("model: %llu host-fd checks (%llu waited for a due timer's kernel expiry), %llu afut_loop_timeout_ms "
           "checks\n", g_stat_host_checks, g_stat_fd_waits, g_stat_timeout_checks);
    printf("model: %llu re-entrant destructor calls (%llu API calls from inside them; %llu ran on another thread "
           "than the loop's, in %llu destructor-phase rounds)\n",
           g_stat_reent, g_stat_reent_calls, g_stat_dp_frees_other, g_stat_dp_rounds);
    printf("model: %llu edge time values tried, %d distinct (+-0, denormals, +-INFINITY, NaN, DBL_MAX, 1e19, 2^63, "
           "2^64, ...)\n", g_stat_edge, g_nedge_seen);
    printf("model: %llu tasks (%llu steps, %llu cancelled from outside, %llu awaiting other tasks or "
           "combinators), %llu sleeps, %llu wrapped loop-less futures\n",
           g_stat_tasks, g_stat_steps, g_stat_task_cancels, g_stat_awaits_other, g_stat_sleeps, g_stat_wraps);
    printf("model: combinators: %llu gathers (ended with a result %llu, an exception %llu, a cancelled child %llu), "
           "%llu wait_fors (%llu timed out), %llu shields (%llu returned the done inner), %llu wait_manys (%llu "
           "timed out), %llu as_completeds (%llu slots timed out), %llu observers; %llu internal callbacks modelled\n",
           g_stat_gathers, g_stat_gather_end[0], g_stat_gather_end[1], g_stat_gather_end[2], g_stat_waitfors,
           g_stat_wf_timeouts, g_stat_shields, g_stat_shortcuts, g_stat_waitmanys, g_stat_wm_timeouts, g_stat_ascompleted,
           g_stat_ac_timeouts, g_stat_observers, g_stat_items);
    printf("model: tasks ended by their step with a result %llu, an exception %llu, cancelled %llu; "
           "%llu pending at a close ended CANCELLED; values of cancelled sleeps freed at the iteration "
           "after the cancel %llu, at the close %llu; wrappers mirrored %llu results, %llu exceptions, %llu "
           "cancels, cancelled %llu sources\n",
           g_stat_task_end[0], g_stat_task_end[1], g_stat_task_end[2], g_stat_closed_tasks,
           g_stat_value_frees[0] + g_stat_value_frees[1], g_stat_value_frees[2], g_stat_mirrors[0],
           g_stat_mirrors[1], g_stat_mirrors[2], g_stat_mirrors[3]);
    printf("model: %llu deep chains (%llu links in all), maximum depth built %llu; %llu cancels queued past the "
           "propagation depth limit\n", g_stat_chains, g_stat_chain_links, g_stat_max_depth, g_stat_cancel_deferred);
    printf("model: completion races with another thread: cancel won %llu, the thread won %llu\n",
           g_stat_race_main, g_stat_race_thread);
    printf("model: %llu loops on a virtual clock, %llu afut_loop_advance_time calls\n", g_stat_virtual_loops,
           g_stat_advances);
    if (g_relay_backend)
        printf("model: poll() backend: %llu idle fds readable once after a timer's cancel (documented exception)\n",
               g_stat_relay_excused);
    printf("model: %llu calls tried, %llu verification calls\n", g_total_calls, g_total_checks);
    printf("model: %llu calls, %llu host-fd checks, %llu re-entrant destructor calls (%llu loop thread, %llu other "
           "threads), depth %llu, %d edge times\n",
           g_total_calls, g_stat_host_checks, g_stat_reent, g_stat_reent - g_stat_dp_frees_other, g_stat_dp_frees_other,
           g_stat_max_depth, g_nedge_seen);
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
