/* Idle loop and memory per future.
 *
 * Idle: a loop holding 1000 timers an hour away, driven by
 *   afut_loop_run_once(loop, remaining_ms, &ran) until 0.5 s have passed (after one
 *   run_once(loop, 0) that consumes the signal the setup's call_later calls raised).
 *   Reported:
 *   - wakeups: run_once calls that returned with ran == 0 before the 0.5 s were over (an
 *     idle loop should sleep through: 0);
 *   - kernel sleeps: the loop thread's voluntary context switches (getrusage RUSAGE_THREAD)
 *     over the wait: 1 means it slept once, for the whole wait;
 *   - CPU time used over the wait (expect ~0).
 *   Done twice: standalone, and in host mode (afut_loop_fd() requested first, so the
 *   library keeps its timerfd armed).
 *   Floor: 1000 deadlines in a heap, one epoll_wait for the remaining time.
 *
 * Memory: bytes per pending loop future with one done-callback: mallinfo2() delta
 *   (uordblks + hblkhd, glibc malloc, which the Rust library uses too) over 100000 futures
 *   created with afut_loop_create_future + afut_add_done_callback (and, for reference,
 *   without the callback).
 *   Floor: the floor's malloc'd future with its callback slot (floor.h).
 *
 * Usage: bench_idle [all|idle|mem]
 */
#include "bench.h"
#include "floor.h"

#include <malloc.h>

#include "afut.h"

static void check(int ok, const char *what) {
    if (!ok) {
        fprintf(stderr, "bench_idle: check failed: %s\n", what);
        exit(1);
    }
}

static void noop(void *userdata) { (void)userdata; }
static void noop_done(afut_t *fut, void *userdata) {
    (void)fut;
    (void)userdata;
}

/* ---- idle ---- */

typedef struct {
    double early_returns, nvcsw, cpu_us;
} idle_result;

static idle_result idle_afut(int host_mode) {
    afut_loop_t *loop = afut_loop_new();
    check(loop != NULL, "afut_loop_new");
    for (int i = 0; i < 1000; i++) check(afut_loop_call_later(loop, 3600.0, noop, NULL, NULL) != 0, "call_later");
    if (host_mode) check(afut_loop_fd(loop) >= 0, "afut_loop_fd");
    /* Settle first: the call_later calls above were made while the loop was not running,
     * so they raised its wakeup signal; that one return is setup, not idling. */
    check(afut_loop_run_once(loop, 0, NULL) == AFUT_OK, "run_once");
    const uint64_t span = 500000000u;
    long v0 = thread_nvcsw();
    uint64_t c0 = cpu_ns(), t0 = now_ns(), now;
    int early = 0;
    while ((now = now_ns()) - t0 < span) {
        int remaining_ms = (int)((span - (now - t0) + 999999) / 1000000);
        size_t ran = 0;
        check(afut_loop_run_once(loop, remaining_ms, &ran) == AFUT_OK, "run_once");
        check(ran == 0, "nothing ran");
        if (now_ns() - t0 < span) early++;
    }
    idle_result r = {.early_returns = early,
                     .nvcsw = (double)(thread_nvcsw() - v0),
                     .cpu_us = (double)(cpu_ns() - c0) / 1000.0};
    afut_loop_free(loop);
    return r;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static idle_result idle_floor(void) {
    uint64_t *deadlines = malloc(1000 * sizeof *deadlines);
    check(deadlines != NULL, "malloc");
    for (int i = 0; i < 1000; i++) deadlines[i] = now_ns() + 3600ull * 1000000000u;
    qsort(deadlines, 1000, sizeof *deadlines, cmp_u64); /* a sorted array is a heap */
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1");
    const uint64_t span = 500000000u;
    long v0 = thread_nvcsw();
    uint64_t c0 = cpu_ns(), t0 = now_ns(), now;
    int early = 0;
    while ((now = now_ns()) - t0 < span) {
        uint64_t until = t0 + span < deadlines[0] ? t0 + span : deadlines[0];
        struct epoll_event ev;
        epoll_wait(ep, &ev, 1, (int)((until - now + 999999) / 1000000));
        if (now_ns() - t0 < span) early++;
    }
    idle_result r = {.early_returns = early,
                     .nvcsw = (double)(thread_nvcsw() - v0),
                     .cpu_us = (double)(cpu_ns() - c0) / 1000.0};
    close(ep);
    free(deadlines);
    return r;
}

/* ---- memory ---- */

static size_t heap_in_use(void) {
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

static double mem_afut(size_t n, int with_callback) {
    afut_loop_t *loop = afut_loop_new();
    afut_t **futs = malloc(n * sizeof *futs);
    check(loop && futs, "setup");
    /* Warm up: the loop's lazily allocated parts, malloc's per-thread arena. */
    afut_t *w = afut_loop_create_future(loop);
    afut_add_done_callback(w, noop_done, NULL, NULL);
    afut_unref(w);
    size_t before = heap_in_use();
    for (size_t i = 0; i < n; i++) {
        futs[i] = afut_loop_create_future(loop);
        if (with_callback)
            check(afut_add_done_callback(futs[i], noop_done, NULL, NULL) == AFUT_OK, "add_done_callback");
    }
    size_t after = heap_in_use();
    for (size_t i = 0; i < n; i++) afut_unref(futs[i]);
    free(futs);
    afut_loop_free(loop);
    return (double)(after - before) / (double)n;
}

static void floor_noop(ffut *f, void *userdata) {
    (void)f;
    (void)userdata;
}

static double mem_floor(size_t n) {
    ffut **futs = malloc(n * sizeof *futs);
    check(futs != NULL, "malloc");
    size_t before = heap_in_use();
    for (size_t i = 0; i < n; i++) {
        futs[i] = ffut_new();
        ffut_add_done_callback(futs[i], floor_noop, NULL);
    }
    size_t after = heap_in_use();
    for (size_t i = 0; i < n; i++) ffut_free(futs[i]);
    free(futs);
    return (double)(after - before) / (double)n;
}

int main(int argc, char **argv) {
    const char *what = argc > 1 ? argv[1] : "all";
    int all = strcmp(what, "all") == 0;
    if (all || strcmp(what, "idle") == 0) {
        idle_result fl = idle_floor();
        idle_result a = idle_afut(0);
        idle_result h = idle_afut(1);
        emit("idle_wakeups.afut", a.early_returns);
        emit("idle_sleeps.afut", a.nvcsw);
        emit("idle_cpu.afut", a.cpu_us);
        emit("idle_wakeups.afut_host", h.early_returns);
        emit("idle_sleeps.afut_host", h.nvcsw);
        emit("idle_cpu.afut_host", h.cpu_us);
        emit("idle_wakeups.floor", fl.early_returns);
        emit("idle_sleeps.floor", fl.nvcsw);
        emit("idle_cpu.floor", fl.cpu_us);
        run_asyncio("idle");
    }
    if (all || strcmp(what, "mem") == 0) {
        size_t n = scaled(100000, 1000);
        emit("mem.afut", mem_afut(n, 1));
        emit("mem_nocb.afut", mem_afut(n, 0));
        emit("mem.floor", mem_floor(n));
        run_asyncio("mem");
    }
    printf("\n");
    if (all || strcmp(what, "idle") == 0) {
        printf("%-34s afut: %g early returns, %g sleeps, %.0f us CPU | host mode: %g, %g, %.0f us | "
               "floor: %g, %g, %.0f us | asyncio: %g sleeps, %.0f us CPU\n",
               "Idle 0.5 s, 1000 far timers", result("idle_wakeups.afut"), result("idle_sleeps.afut"),
               result("idle_cpu.afut"), result("idle_wakeups.afut_host"), result("idle_sleeps.afut_host"),
               result("idle_cpu.afut_host"), result("idle_wakeups.floor"), result("idle_sleeps.floor"),
               result("idle_cpu.floor"), result("idle_sleeps.asyncio"), result("idle_cpu.asyncio"));
    }
    if (all || strcmp(what, "mem") == 0) {
        summary_cost("Memory per pending future + 1 cb", "mem", "B");
        printf("%-34s afut %9.1f B (so the first callback costs %.1f B)\n", "Memory per pending future, no cb",
               result("mem_nocb.afut"), result("mem.afut") - result("mem_nocb.afut"));
    }
    return 0;
}
