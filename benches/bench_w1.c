/* W1 and W1b: the single-threaded future round trip.
 *
 * W1:  create a future, add one done-callback, set_result, dispatch it (one loop iteration:
 *      afut_loop_run_once(loop, 0, NULL)), free it. One future per iteration.
 * W1r: W1 with the loop running (run_forever): each future's done-callback creates,
 *      completes and releases the next one, so each is dispatched by the next iteration,
 *      all from the loop's own thread (no wakeup needed). Compared with W1's floor.
 * W1b: N futures created with a callback each, all completed, then ONE dispatch, then all
 *      freed. Cost per future.
 * Floor: a malloc'd struct with one callback slot and a ring-buffer ready queue (floor.h).
 * asyncio: loop.create_future(), add_done_callback, set_result, loop._run_once().
 *
 * Usage: bench_w1 [all|w1|w1b|afut-w1|afut-w1r|afut-w1b|floor-w1|floor-w1b]
 *        (afut-*, floor-*: one side only, once, for profilers)
 */
#include "bench.h"
#include "floor.h"

#include "afut.h"

#define W1B_BATCH 1000

static void afut_on_done(afut_t *fut, void *userdata) {
    (void)fut;
    ++*(size_t *)userdata;
}

static void floor_on_done(ffut *fut, void *userdata) {
    (void)fut;
    ++*(size_t *)userdata;
}

static void check(int ok, const char *what) {
    if (!ok) {
        fprintf(stderr, "bench_w1: check failed: %s\n", what);
        exit(1);
    }
}

/* ---- W1 ---- */

static double w1_afut(afut_loop_t *loop, size_t n) {
    size_t count = 0;
    PROFILE_TOGGLE();
    uint64_t t0 = now_ns();
    for (size_t i = 0; i < n; i++) {
        afut_t *f = afut_loop_create_future(loop);
        afut_add_done_callback(f, afut_on_done, &count, NULL);
        afut_set_result(f, NULL, NULL);
        afut_loop_run_once(loop, 0, NULL);
        afut_unref(f);
    }
    uint64_t t1 = now_ns();
    PROFILE_TOGGLE();
    check(count == n, "afut W1: every callback ran");
    return (double)(t1 - t0) / (double)n;
}

static double w1_floor(size_t n) {
    ring r;
    ring_init(&r, 1024);
    size_t count = 0;
    PROFILE_TOGGLE();
    uint64_t t0 = now_ns();
    for (size_t i = 0; i < n; i++) {
        ffut *f = ffut_new();
        ffut_add_done_callback(f, floor_on_done, &count);
        ffut_set_result(&r, f, NULL);
        ring_dispatch(&r);
        ffut_free(f);
    }
    uint64_t t1 = now_ns();
    PROFILE_TOGGLE();
    check(count == n, "floor W1: every callback ran");
    ring_destroy(&r);
    return (double)(t1 - t0) / (double)n;
}

/* ---- W1r: W1 inside a running loop ---- */

typedef struct {
    afut_loop_t *loop;
    size_t count, n;
} chain_ctx;

/* Each future's done-callback makes the next future, so every future is dispatched by the
 * next iteration of the running loop (run_forever), from the loop's own thread. */
static void chain_on_done(afut_t *fut, void *userdata) {
    chain_ctx *c = userdata;
    afut_unref(fut); /* the chain's reference; the loop holds its own while the callback runs */
    if (++c->count == c->n) {
        afut_loop_stop(c->loop);
        return;
    }
    afut_t *next = afut_loop_create_future(c->loop);
    afut_add_done_callback(next, chain_on_done, c, NULL);
    afut_set_result(next, NULL, NULL);
}

static double w1r_afut(afut_loop_t *loop, size_t n) {
    chain_ctx c = {.loop = loop, .count = 0, .n = n};
    uint64_t t0 = now_ns();
    afut_t *first = afut_loop_create_future(loop);
    afut_add_done_callback(first, chain_on_done, &c, NULL);
    afut_set_result(first, NULL, NULL);
    check(afut_loop_run_forever(loop) == AFUT_OK, "run_forever");
    uint64_t t1 = now_ns();
    check(c.count == n, "afut W1r: every callback ran");
    return (double)(t1 - t0) / (double)n;
}

/* ---- W1b ---- */

static double w1b_afut(afut_loop_t *loop, size_t rounds) {
    static afut_t *futs[W1B_BATCH];
    size_t count = 0;
    uint64_t t0 = now_ns();
    for (size_t r = 0; r < rounds; r++) {
        for (size_t i = 0; i < W1B_BATCH; i++) {
            futs[i] = afut_loop_create_future(loop);
            afut_add_done_callback(futs[i], afut_on_done, &count, NULL);
        }
        for (size_t i = 0; i < W1B_BATCH; i++) afut_set_result(futs[i], NULL, NULL);
        afut_loop_run_once(loop, 0, NULL);
        for (size_t i = 0; i < W1B_BATCH; i++) afut_unref(futs[i]);
    }
    uint64_t t1 = now_ns();
    check(count == rounds * W1B_BATCH, "afut W1b: every callback ran");
    return (double)(t1 - t0) / (double)(rounds * W1B_BATCH);
}

static double w1b_floor(size_t rounds) {
    static ffut *futs[W1B_BATCH];
    ring r;
    ring_init(&r, 1024);
    size_t count = 0;
    uint64_t t0 = now_ns();
    for (size_t k = 0; k < rounds; k++) {
        for (size_t i = 0; i < W1B_BATCH; i++) {
            futs[i] = ffut_new();
            ffut_add_done_callback(futs[i], floor_on_done, &count);
        }
        for (size_t i = 0; i < W1B_BATCH; i++) ffut_set_result(&r, futs[i], NULL);
        ring_dispatch(&r);
        for (size_t i = 0; i < W1B_BATCH; i++) ffut_free(futs[i]);
    }
    uint64_t t1 = now_ns();
    check(count == rounds * W1B_BATCH, "floor W1b: every callback ran");
    ring_destroy(&r);
    return (double)(t1 - t0) / (double)(rounds * W1B_BATCH);
}

int main(int argc, char **argv) {
    const char *what = argc > 1 ? argv[1] : "all";
    int reps = bench_reps();
    size_t n = scaled(200000, 1000);
    size_t rounds = scaled(200, 2);
    afut_loop_t *loop = afut_loop_new();
    check(loop != NULL, "afut_loop_new");

    if (strcmp(what, "afut-w1") == 0) {
        /* Only afut's W1, for instruction-count profiles (callgrind). */
        double ns = w1_afut(loop, n);
        printf("afut W1: %.1f ns/op over %zu ops\n", ns, n);
        afut_loop_free(loop);
        return 0;
    }
    if (strcmp(what, "afut-w1b") == 0) {
        double ns = w1b_afut(loop, rounds);
        printf("afut W1b: %.1f ns/future over %zu futures\n", ns, rounds * W1B_BATCH);
        afut_loop_free(loop);
        return 0;
    }
    if (strcmp(what, "floor-w1b") == 0) {
        double ns = w1b_floor(rounds);
        printf("floor W1b: %.1f ns/future over %zu futures\n", ns, rounds * W1B_BATCH);
        afut_loop_free(loop);
        return 0;
    }
    if (strcmp(what, "floor-w1") == 0) {
        double ns = w1_floor(n);
        printf("floor W1: %.1f ns/op over %zu ops\n", ns, n);
        afut_loop_free(loop);
        return 0;
    }
    if (strcmp(what, "afut-w1r") == 0) {
        double ns = w1r_afut(loop, n);
        printf("afut W1r: %.1f ns/op over %zu ops\n", ns, n);
        afut_loop_free(loop);
        return 0;
    }
    int do_w1 = strcmp(what, "all") == 0 || strcmp(what, "w1") == 0;
    int do_w1b = strcmp(what, "all") == 0 || strcmp(what, "w1b") == 0;

    /* Warm up both (page faults, malloc arenas, the loop's queue capacity). */
    w1_afut(loop, n / 10);
    w1_floor(n / 10);

    if (do_w1) {
        double a[32], f[32];
        for (int i = 0; i < reps && i < 32; i++) {
            f[i] = w1_floor(n);
            a[i] = w1_afut(loop, n);
        }
        emit("w1.afut", median(a, reps));
        emit("w1.floor", median(f, reps));
        run_asyncio("w1");
    }
    if (do_w1) {
        /* W1r: the same round trip with the loop running (run_forever); the floor is W1's. */
        w1r_afut(loop, n / 10);
        double a[32];
        for (int i = 0; i < reps && i < 32; i++) a[i] = w1r_afut(loop, n);
        emit("w1r.afut", median(a, reps));
        emit("w1r.floor", result("w1.floor"));
        run_asyncio("w1r");
    }
    if (do_w1b) {
        w1b_afut(loop, 2);
        w1b_floor(2);
        double a[32], f[32];
        for (int i = 0; i < reps && i < 32; i++) {
            f[i] = w1b_floor(rounds);
            a[i] = w1b_afut(loop, rounds);
        }
        emit("w1b.afut", median(a, reps));
        emit("w1b.floor", median(f, reps));
        run_asyncio("w1b");
    }
    afut_loop_free(loop);

    printf("\n");
    if (do_w1) summary_cost("W1 (one future per iteration)", "w1", "ns");
    if (do_w1) summary_cost("W1r (W1 inside a running loop)", "w1r", "ns");
    if (do_w1b) summary_cost("W1b (1000 futures, one dispatch)", "w1b", "ns");
    return 0;
}
