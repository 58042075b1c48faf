/* W2 and W4: futures completed from other threads.
 *
 * W2 throughput: N loop futures (each with one done-callback) are created up front; 1, 2, 4
 *   or 8 producer threads complete them (afut_set_result) as fast as they can while the loop
 *   thread runs afut_loop_run_until_complete on a future the last callback completes.
 *   Mops/s from the moment the producers are released until the last callback ran.
 *   Floor: the same futures completed through a mutex-protected queue plus an eventfd
 *   written once per batch (idle -> pending), the loop thread waiting in epoll_wait.
 * W2 ping-pong: the producer completes loop future F[i] and blocks in afut_wait on a
 *   loop-less future G[i]; F[i]'s done-callback (on the loop thread, in run_forever)
 *   completes G[i]. Both threads pinned to one core (sched_setaffinity). p50 / p99 of the
 *   round trip. Floor: raw eventfd ping-pong between two threads, the "loop" thread
 *   waiting in epoll_wait, pinned the same way, measured in the same run.
 * W4 host-driven: like W2 with one producer, but the loop thread is a host's own epoll
 *   loop watching afut_loop_fd() and calling afut_loop_run_once(loop, 0, &ran) when it is
 *   readable. Floor: the W2 floor (it already is an epoll loop).
 *
 * Usage: bench_threads [all|w2|pp|w4|afut-w2|afut-w4|floor-w2]
 *        (afut-*, floor-*: one side only, once, one producer, for profiles; the measured
 *        phase is bracketed by callgrind's collection toggle)
 */
#include "bench.h"
#include "floor.h"

#include "afut.h"

/* W2 runs with 1, 2, 4 and 8 producer threads (on 2 cores, more producers measure contention). */
#define MAX_PRODUCERS 8
static const size_t producer_counts[] = {1, 2, 4, 8};
#define N_COUNTS (sizeof producer_counts / sizeof producer_counts[0])

static void check(int ok, const char *what) {
    if (!ok) {
        fprintf(stderr, "bench_threads: check failed: %s\n", what);
        exit(1);
    }
}

/* ---- W2 / W4 with afut ----------------------------------------------------------- */

typedef struct {
    afut_t **futs;
    size_t n, producers, index;
    pthread_barrier_t *start;
} producer_arg;

/* Callgrind's collection toggle is per thread: each producer brackets its own work. */
static void *afut_producer(void *p) {
    producer_arg *a = p;
    pthread_barrier_wait(a->start);
    PROFILE_TOGGLE();
    for (size_t j = a->index; j < a->n; j += a->producers)
        if (afut_set_result(a->futs[j], NULL, NULL) != AFUT_OK) abort();
    PROFILE_TOGGLE();
    return NULL;
}

typedef struct {
    size_t count, n;
    afut_t *all_done;
} w2_ctx;

static void w2_on_done(afut_t *fut, void *userdata) {
    (void)fut;
    w2_ctx *c = userdata;
    if (++c->count == c->n && c->all_done) afut_set_result(c->all_done, NULL, NULL);
}

enum driver { RUN_UNTIL_COMPLETE, HOST_EPOLL };

/* Returns Mops/s. */
static double w2_afut(size_t n, size_t producers, enum driver how) {
    afut_loop_t *loop = afut_loop_new();
    check(loop != NULL, "afut_loop_new");
    afut_t **futs = malloc(n * sizeof *futs);
    check(futs != NULL, "malloc");
    w2_ctx ctx = {.count = 0, .n = n, .all_done = NULL};
    if (how == RUN_UNTIL_COMPLETE) ctx.all_done = afut_loop_create_future(loop);
    for (size_t i = 0; i < n; i++) {
        futs[i] = afut_loop_create_future(loop);
        afut_add_done_callback(futs[i], w2_on_done, &ctx, NULL);
    }
    int hep = -1;
    if (how == HOST_EPOLL) {
        hep = epoll_create1(EPOLL_CLOEXEC);
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = afut_loop_fd(loop)};
        if (hep < 0 || ev.data.fd < 0 || epoll_ctl(hep, EPOLL_CTL_ADD, ev.data.fd, &ev) != 0)
            die("host epoll setup");
    }
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, (unsigned)producers + 1);
    pthread_t th[MAX_PRODUCERS];
    producer_arg args[MAX_PRODUCERS];
    for (size_t k = 0; k < producers; k++) {
        args[k] = (producer_arg){.futs = futs, .n = n, .producers = producers, .index = k, .start = &start};
        pthread_create(&th[k], NULL, afut_producer, &args[k]);
    }
    PROFILE_TOGGLE();
    pthread_barrier_wait(&start);
    uint64_t t0 = now_ns();
    if (how == RUN_UNTIL_COMPLETE) {
        check(afut_loop_run_until_complete(loop, ctx.all_done) == AFUT_OK, "run_until_complete");
    } else {
        while (ctx.count < n) {
            struct epoll_event ev;
            int r = epoll_wait(hep, &ev, 1, -1);
            if (r < 0 && errno != EINTR) die("epoll_wait");
            if (r > 0) check(afut_loop_run_once(loop, 0, NULL) == AFUT_OK, "run_once");
        }
    }
    uint64_t t1 = now_ns();
    PROFILE_TOGGLE();
    for (size_t k = 0; k < producers; k++) pthread_join(th[k], NULL);
    check(ctx.count == n, "every callback ran");
    pthread_barrier_destroy(&start);
    if (hep >= 0) close(hep);
    for (size_t i = 0; i < n; i++) afut_unref(futs[i]);
    afut_unref(ctx.all_done);
    afut_loop_free(loop);
    free(futs);
    return (double)n / ((double)(t1 - t0) / 1e9) / 1e6;
}

/* ---- W2 floor --------------------------------------------------------------------- */

typedef struct {
    xq *q;
    ffut **futs;
    size_t n, producers, index;
    pthread_barrier_t *start;
} floor_producer_arg;

static void *floor_producer(void *p) {
    floor_producer_arg *a = p;
    pthread_barrier_wait(a->start);
    PROFILE_TOGGLE();
    for (size_t j = a->index; j < a->n; j += a->producers) xq_complete(a->q, a->futs[j], NULL);
    PROFILE_TOGGLE();
    return NULL;
}

static void floor_on_done(ffut *f, void *userdata) {
    (void)f;
    ++*(size_t *)userdata;
}

static double w2_floor(size_t n, size_t producers, double *writes_per_op) {
    xq q;
    xq_init(&q, 64);
    ffut **futs = malloc(n * sizeof *futs);
    check(futs != NULL, "malloc");
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        futs[i] = ffut_new();
        ffut_add_done_callback(futs[i], floor_on_done, &count);
    }
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, (unsigned)producers + 1);
    pthread_t th[MAX_PRODUCERS];
    floor_producer_arg args[MAX_PRODUCERS];
    for (size_t k = 0; k < producers; k++) {
        args[k] = (floor_producer_arg){.q = &q, .futs = futs, .n = n, .producers = producers, .index = k, .start = &start};
        pthread_create(&th[k], NULL, floor_producer, &args[k]);
    }
    PROFILE_TOGGLE();
    pthread_barrier_wait(&start);
    uint64_t t0 = now_ns();
    xq_run(&q, &count, n);
    uint64_t t1 = now_ns();
    PROFILE_TOGGLE();
    for (size_t k = 0; k < producers; k++) pthread_join(th[k], NULL);
    pthread_barrier_destroy(&start);
    if (writes_per_op) *writes_per_op = (double)q.writes / (double)n;
    for (size_t i = 0; i < n; i++) ffut_free(futs[i]);
    free(futs);
    xq_destroy(&q);
    return (double)n / ((double)(t1 - t0) / 1e9) / 1e6;
}

/* ---- ping-pong -------------------------------------------------------------------- */

typedef struct {
    afut_loop_t *loop;
    afut_t **f, **g;
    size_t rounds;
    double *lat_us;
    int cpu;
} pp_afut_arg;

static void pp_on_done(afut_t *fut, void *userdata) {
    (void)fut;
    afut_set_result(userdata, NULL, NULL); /* G[i], loop-less: the producer's afut_wait returns */
}

static void *pp_afut_producer(void *p) {
    pp_afut_arg *a = p;
    pin_to(a->cpu);
    for (size_t i = 0; i < a->rounds; i++) {
        uint64_t t0 = now_ns();
        afut_set_result(a->f[i], NULL, NULL);
        afut_wait(a->g[i], INFINITY);
        a->lat_us[i] = (double)(now_ns() - t0) / 1000.0;
    }
    afut_loop_stop(a->loop);
    return NULL;
}

static void pp_afut(size_t rounds, int cpu, double *p50, double *p99) {
    afut_loop_t *loop = afut_loop_new();
    afut_t **f = malloc(rounds * sizeof *f), **g = malloc(rounds * sizeof *g);
    double *lat = malloc(rounds * sizeof *lat);
    check(loop && f && g && lat, "setup");
    for (size_t i = 0; i < rounds; i++) {
        f[i] = afut_loop_create_future(loop);
        g[i] = afut_new(NULL);
        afut_add_done_callback(f[i], pp_on_done, g[i], NULL);
    }
    pp_afut_arg a = {.loop = loop, .f = f, .g = g, .rounds = rounds, .lat_us = lat, .cpu = cpu};
    pthread_t th;
    pthread_create(&th, NULL, pp_afut_producer, &a);
    check(afut_loop_run_forever(loop) == AFUT_OK, "run_forever");
    pthread_join(th, NULL);
    for (size_t i = 0; i < rounds; i++) {
        afut_unref(f[i]);
        afut_unref(g[i]);
    }
    afut_loop_free(loop);
    *p50 = percentile(lat, rounds, 50);
    *p99 = percentile(lat, rounds, 99);
    free(f);
    free(g);
    free(lat);
}

typedef struct {
    int to_loop, to_producer, epfd;
    size_t rounds;
    double *lat_us;
    int cpu;
} pp_floor_arg;

static void *pp_floor_producer(void *p) {
    pp_floor_arg *a = p;
    pin_to(a->cpu);
    for (size_t i = 0; i < a->rounds; i++) {
        uint64_t t0 = now_ns(), v = 1;
        if (write(a->to_loop, &v, 8) != 8) die("write");
        if (read(a->to_producer, &v, 8) != 8) die("read");
        a->lat_us[i] = (double)(now_ns() - t0) / 1000.0;
    }
    return NULL;
}

static void pp_floor(size_t rounds, int cpu, double *p50, double *p99) {
    pp_floor_arg a = {.rounds = rounds, .cpu = cpu};
    a.to_loop = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    a.to_producer = eventfd(0, EFD_CLOEXEC); /* the producer blocks in read() */
    a.epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = a.to_loop};
    if (a.to_loop < 0 || a.to_producer < 0 || a.epfd < 0 || epoll_ctl(a.epfd, EPOLL_CTL_ADD, a.to_loop, &ev) != 0)
        die("floor ping-pong setup");
    a.lat_us = malloc(rounds * sizeof *a.lat_us);
    check(a.lat_us != NULL, "malloc");
    pthread_t th;
    pthread_create(&th, NULL, pp_floor_producer, &a);
    for (size_t i = 0; i < rounds; i++) {
        uint64_t v;
        while (epoll_wait(a.epfd, &ev, 1, -1) < 0)
            if (errno != EINTR) die("epoll_wait");
        if (read(a.to_loop, &v, 8) != 8) die("read");
        v = 1;
        if (write(a.to_producer, &v, 8) != 8) die("write");
    }
    pthread_join(th, NULL);
    *p50 = percentile(a.lat_us, rounds, 50);
    *p99 = percentile(a.lat_us, rounds, 99);
    free(a.lat_us);
    close(a.to_loop);
    close(a.to_producer);
    close(a.epfd);
}

int main(int argc, char **argv) {
    const char *what = argc > 1 ? argv[1] : "all";
    int all = strcmp(what, "all") == 0;
    int reps = bench_reps();
    size_t n = scaled(400000, 1000);
    if (strcmp(what, "afut-w2") == 0 || strcmp(what, "afut-w4") == 0) {
        /* Only afut, one producer, once: for profiles (callgrind). */
        int host = strcmp(what, "afut-w4") == 0;
        printf("afut %s: %.3f Mops/s over %zu ops\n", what + 5, w2_afut(n, 1, host ? HOST_EPOLL : RUN_UNTIL_COMPLETE), n);
        return 0;
    }
    if (strcmp(what, "floor-w2") == 0) {
        printf("floor w2: %.3f Mops/s over %zu ops\n", w2_floor(n, 1, NULL), n);
        return 0;
    }

    if (all || strcmp(what, "w2") == 0 || strcmp(what, "w4") == 0) {
        int w2 = all || strcmp(what, "w2") == 0, w4 = all || strcmp(what, "w4") == 0;
        double a[N_COUNTS][32], f[N_COUNTS][32], h[32], wr[N_COUNTS][32];
        w2_afut(n / 10, 1, RUN_UNTIL_COMPLETE); /* warm-up */
        w2_floor(n / 10, 1, NULL);
        for (int i = 0; i < reps; i++) {
            for (size_t c = 0; c < N_COUNTS; c++) {
                if (!w2 && c > 0) break;
                f[c][i] = w2_floor(n, producer_counts[c], &wr[c][i]);
                if (w2) a[c][i] = w2_afut(n, producer_counts[c], RUN_UNTIL_COMPLETE);
                if (w4 && c == 0) h[i] = w2_afut(n, 1, HOST_EPOLL);
            }
        }
        if (w2) {
            for (size_t c = 0; c < N_COUNTS; c++) {
                char key[32];
                snprintf(key, sizeof key, "w2_%zup.afut", producer_counts[c]);
                emit(key, median(a[c], reps));
                snprintf(key, sizeof key, "w2_%zup.floor", producer_counts[c]);
                emit(key, median(f[c], reps));
                printf("floor eventfd writes per op, %zu producer(s): %.4f\n", producer_counts[c], median(wr[c], reps));
            }
        }
        if (w4) {
            emit("w4.afut", median(h, reps));
            emit("w4.floor", median(f[0], reps));
        }
        if (w2) run_asyncio("w2");
    }
    if (all || strcmp(what, "pp") == 0) {
        size_t rounds = scaled(20000, 200);
        int cpu = bench_cpu();
        /* Main thread = the loop thread: pin it too (restored afterwards). */
        cpu_set_t saved;
        sched_getaffinity(0, sizeof saved, &saved);
        pin_to(cpu);
        double ap50[32], ap99[32], fp50[32], fp99[32];
        int r = reps < 3 ? reps : 3;
        for (int i = 0; i < r; i++) {
            pp_floor(rounds, cpu, &fp50[i], &fp99[i]);
            pp_afut(rounds, cpu, &ap50[i], &ap99[i]);
        }
        sched_setaffinity(0, sizeof saved, &saved);
        emit("pp_p50.afut", median(ap50, r));
        emit("pp_p99.afut", median(ap99, r));
        emit("pp_p50.floor", median(fp50, r));
        emit("pp_p99.floor", median(fp99, r));
        run_asyncio("pp");
    }

    printf("\n");
    if (all || strcmp(what, "w2") == 0) {
        summary_rate("W2 1 producer", "w2_1p", "Mops/s");
        summary_rate("W2 2 producers", "w2_2p", "Mops/s");
        summary_rate("W2 4 producers", "w2_4p", "Mops/s");
        summary_rate("W2 8 producers", "w2_8p", "Mops/s");
    }
    if (all || strcmp(what, "w4") == 0) summary_rate("W4 host epoll, 1 producer", "w4", "Mops/s");
    if (all || strcmp(what, "pp") == 0) {
        summary_cost("W2 ping-pong p50 (one core)", "pp_p50", "us");
        summary_cost("W2 ping-pong p99 (one core)", "pp_p99", "us");
    }
    return 0;
}
