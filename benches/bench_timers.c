/* W3: 1e5 call_later with random delays up to 10 ms, run until all fired.
 *
 * Figure: process CPU time (CLOCK_PROCESS_CPUTIME_ID) per timer, scheduling included, from
 * the first call_later until the last callback ran. Waiting costs no CPU, so this is the
 * work the library does per timer.
 * afut:  afut_loop_call_later(loop, delay, ...) per timer, then run_forever; the last
 *        callback stops the loop.
 * Floor: a binary min-heap of (deadline, callback, userdata) in one array, and a loop that
 *        runs what is due and otherwise sleeps (clock_nanosleep, absolute) until the next
 *        deadline.
 * libuv: one uv_timer_t per timer (uv_timer_init + uv_timer_start, millisecond delays),
 *        uv_run(UV_RUN_DEFAULT). Built only with -DHAVE_LIBUV.
 * Every implementation gets the same delays (one seeded generator).
 *
 * Usage: bench_timers [afut-w3|floor-w3|libuv-w3]   (one side only, once: for profiles)
 */
#include "bench.h"

#include "afut.h"

#ifdef HAVE_LIBUV
#include <uv.h>
#endif

static void check(int ok, const char *what) {
    if (!ok) {
        fprintf(stderr, "bench_timers: check failed: %s\n", what);
        exit(1);
    }
}

/* xorshift64*: the same sequence everywhere, uniform in [0, 1). */
static double *make_delays(size_t n) {
    double *d = malloc(n * sizeof *d);
    check(d != NULL, "malloc");
    uint64_t s = 0x9e3779b97f4a7c15u;
    for (size_t i = 0; i < n; i++) {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        d[i] = (double)((s * 0x2545f4914f6cdd1du) >> 11) / 9007199254740992.0 * 0.010;
    }
    return d;
}

/* ---- afut ---- */

typedef struct {
    afut_loop_t *loop;
    size_t count, n;
} afut_ctx;

static void afut_tick(void *userdata) {
    afut_ctx *c = userdata;
    if (++c->count == c->n) afut_loop_stop(c->loop);
}

static double w3_afut(const double *delays, size_t n) {
    afut_loop_t *loop = afut_loop_new();
    check(loop != NULL, "afut_loop_new");
    afut_ctx c = {.loop = loop, .count = 0, .n = n};
    uint64_t c0 = cpu_ns();
    for (size_t i = 0; i < n; i++) check(afut_loop_call_later(loop, delays[i], afut_tick, &c, NULL) != 0, "call_later");
    check(afut_loop_run_forever(loop) == AFUT_OK, "run_forever");
    uint64_t c1 = cpu_ns();
    check(c.count == n, "every afut timer fired");
    afut_loop_free(loop);
    return (double)(c1 - c0) / (double)n;
}

/* ---- floor: binary heap ---- */

typedef struct {
    uint64_t deadline;
    void (*cb)(void *);
    void *userdata;
} heap_entry;

typedef struct {
    heap_entry *v;
    size_t len;
} heap;

static NOINLINE void heap_push(heap *h, heap_entry e) {
    size_t i = h->len++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h->v[p].deadline <= e.deadline) break;
        h->v[i] = h->v[p];
        i = p;
    }
    h->v[i] = e;
}

static NOINLINE heap_entry heap_pop(heap *h) {
    heap_entry top = h->v[0], last = h->v[--h->len];
    size_t i = 0, n = h->len;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && h->v[c + 1].deadline < h->v[c].deadline) c++;
        if (last.deadline <= h->v[c].deadline) break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (n) h->v[i] = last;
    return top;
}

static size_t floor_count;
static void floor_tick(void *userdata) {
    (void)userdata;
    floor_count++;
}

static double w3_floor(const double *delays, size_t n) {
    heap h = {.v = malloc(n * sizeof(heap_entry)), .len = 0};
    check(h.v != NULL, "malloc");
    floor_count = 0;
    uint64_t c0 = cpu_ns();
    for (size_t i = 0; i < n; i++)
        heap_push(&h, (heap_entry){.deadline = now_ns() + (uint64_t)(delays[i] * 1e9), .cb = floor_tick, .userdata = NULL});
    while (h.len) {
        uint64_t now = now_ns();
        while (h.len && h.v[0].deadline <= now) {
            heap_entry e = heap_pop(&h);
            e.cb(e.userdata);
        }
        if (h.len) {
            struct timespec ts = {.tv_sec = (time_t)(h.v[0].deadline / 1000000000u),
                                  .tv_nsec = (long)(h.v[0].deadline % 1000000000u)};
            clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
        }
    }
    uint64_t c1 = cpu_ns();
    check(floor_count == n, "every floor timer fired");
    free(h.v);
    return (double)(c1 - c0) / (double)n;
}

/* ---- libuv ---- */

#ifdef HAVE_LIBUV
static size_t uv_count;
static void uv_tick(uv_timer_t *t) {
    (void)t;
    uv_count++;
}

static double w3_libuv(const double *delays, size_t n) {
    uv_loop_t loop;
    check(uv_loop_init(&loop) == 0, "uv_loop_init");
    uv_timer_t *timers = malloc(n * sizeof *timers);
    check(timers != NULL, "malloc");
    uv_count = 0;
    uint64_t c0 = cpu_ns();
    for (size_t i = 0; i < n; i++) {
        uv_timer_init(&loop, &timers[i]);
        uv_timer_start(&timers[i], uv_tick, (uint64_t)(delays[i] * 1000.0 + 0.5), 0);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    uint64_t c1 = cpu_ns();
    check(uv_count == n, "every libuv timer fired");
    for (size_t i = 0; i < n; i++) uv_close((uv_handle_t *)&timers[i], NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    check(uv_loop_close(&loop) == 0, "uv_loop_close");
    free(timers);
    return (double)(c1 - c0) / (double)n;
}
#endif

int main(int argc, char **argv) {
    int reps = bench_reps();
    size_t n = scaled(100000, 1000);
    double *delays = make_delays(n);
    if (argc > 1 && strcmp(argv[1], "afut-w3") == 0) {
        /* One side only, once: for profiles (callgrind). */
        printf("afut W3: %.1f ns CPU per timer over %zu timers\n", w3_afut(delays, n), n);
        free(delays);
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "floor-w3") == 0) {
        printf("floor W3: %.1f ns CPU per timer over %zu timers\n", w3_floor(delays, n), n);
        free(delays);
        return 0;
    }
#ifdef HAVE_LIBUV
    if (argc > 1 && strcmp(argv[1], "libuv-w3") == 0) {
        printf("libuv W3: %.1f ns CPU per timer over %zu timers\n", w3_libuv(delays, n), n);
        free(delays);
        return 0;
    }
#endif
    double a[32], f[32];
#ifdef HAVE_LIBUV
    double u[32];
    w3_libuv(delays, n / 10);
#endif
    w3_afut(delays, n / 10); /* warm-up */
    w3_floor(delays, n / 10);
    for (int i = 0; i < reps; i++) {
        f[i] = w3_floor(delays, n);
        a[i] = w3_afut(delays, n);
#ifdef HAVE_LIBUV
        u[i] = w3_libuv(delays, n);
#endif
    }
    emit("w3.afut", median(a, reps));
    emit("w3.floor", median(f, reps));
#ifdef HAVE_LIBUV
    emit("w3.libuv", median(u, reps));
#endif
    run_asyncio("w3");
    free(delays);

    printf("\n");
    summary_cost("W3 CPU per timer", "w3", "ns");
#ifdef HAVE_LIBUV
    printf("%-34s libuv %8.1f ns | afut/libuv %5.2fx\n", "W3 libuv uv_timer_t", result("w3.libuv"),
           result("w3.afut") / result("w3.libuv"));
#else
    printf("W3 libuv: not built (install libuv1-dev: scripts/install-deps.sh)\n");
#endif
    return 0;
}
