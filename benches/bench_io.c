/* I/O ping-pong over a socketpair (issue 12): fd watchers against libuv's uv_poll_t.
 *
 * One thread, one loop, one AF_UNIX stream socketpair, a reader on each end. An 8-byte message
 * bounces: the reader on end A reads it and writes it back on A, the reader on end B reads it,
 * records the round trip and writes the next one. Every hop is a real wait in the poller, a
 * read and a write, so this measures what a loop adds per I/O event: dispatching a readiness to
 * its callback.
 *
 * Figures: latency of a round trip (two hops) p50 and p99, in us, over the round trips of the
 * median repetition; throughput in messages (hops) per second, median of the repetitions.
 * afut:   afut_loop_add_reader on both ends, afut_loop_run_forever; stopped by the last hop.
 * Floor:  a hand-written level-triggered epoll loop (epoll_wait, then the callback of each event).
 * libuv:  uv_poll_t with UV_READABLE on each end, uv_run(UV_RUN_DEFAULT); built with -DHAVE_LIBUV.
 * asyncio (benches/asyncio_bench.py io): loop.add_reader on both ends, os.read / os.write.
 * The sides alternate repetition by repetition.
 *
 * Usage: bench_io [afut-io|floor-io|libuv-io]   (one side only, once: for profiles)
 */
#include "bench.h"

#include "afut.h"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#ifdef HAVE_LIBUV
#include <uv.h>
#endif

static void check(int ok, const char *what) {
    if (!ok) {
        fprintf(stderr, "bench_io: check failed: %s\n", what);
        exit(1);
    }
}

/* One run's state, shared by every implementation. */
typedef struct pingpong {
    int fd[2];
    size_t rounds, done;
    uint64_t sent_at;
    double *lat_us; /* rounds entries */
    void (*stop)(struct pingpong *);
    void *impl;
} pingpong_t;

static void pp_open(pingpong_t *p, size_t rounds, double *lat) {
    memset(p, 0, sizeof *p);
    check(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, p->fd) == 0, "socketpair");
    p->rounds = rounds;
    p->lat_us = lat;
}

static void pp_close(pingpong_t *p) {
    close(p->fd[0]);
    close(p->fd[1]);
}

static void send_msg(int fd, uint64_t v) { check(write(fd, &v, sizeof v) == sizeof v, "write"); }

static uint64_t recv_msg(int fd) {
    uint64_t v = 0;
    check(read(fd, &v, sizeof v) == sizeof v, "read");
    return v;
}

/* Start: B sends the first message. */
static void pp_start(pingpong_t *p) {
    p->sent_at = now_ns();
    send_msg(p->fd[1], 0);
}

/* End A: echo. */
static void on_a(pingpong_t *p) { send_msg(p->fd[0], recv_msg(p->fd[0])); }

/* End B: a round trip is complete; send the next or stop. */
static void on_b(pingpong_t *p) {
    uint64_t v = recv_msg(p->fd[1]);
    uint64_t t = now_ns();
    p->lat_us[p->done++] = (double)(t - p->sent_at) / 1000.0;
    if (p->done == p->rounds) {
        p->stop(p);
        return;
    }
    p->sent_at = t;
    send_msg(p->fd[1], v + 1);
}

/* ---- afut ---- */

static void afut_a(void *ud) { on_a(ud); }
static void afut_b(void *ud) { on_b(ud); }
static void afut_stop(pingpong_t *p) { afut_loop_stop(p->impl); }

static void run_afut(pingpong_t *p) {
    afut_loop_t *loop = afut_loop_new();
    check(loop != NULL, "afut_loop_new");
    p->impl = loop;
    p->stop = afut_stop;
    check(afut_loop_add_reader(loop, p->fd[0], afut_a, p, NULL) == AFUT_OK, "add_reader A");
    check(afut_loop_add_reader(loop, p->fd[1], afut_b, p, NULL) == AFUT_OK, "add_reader B");
    pp_start(p);
    check(afut_loop_run_forever(loop) == AFUT_OK, "run_forever");
    afut_loop_free(loop);
}

/* ---- floor: a level-triggered epoll loop ---- */

typedef struct {
    int ep;
    int stop;
} floor_loop;

static void floor_stop(pingpong_t *p) { ((floor_loop *)p->impl)->stop = 1; }

static void run_floor(pingpong_t *p) {
    floor_loop fl = {.ep = epoll_create1(EPOLL_CLOEXEC)};
    check(fl.ep >= 0, "epoll_create1");
    p->impl = &fl;
    p->stop = floor_stop;
    for (int i = 0; i < 2; i++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        check(epoll_ctl(fl.ep, EPOLL_CTL_ADD, p->fd[i], &ev) == 0, "epoll_ctl");
    }
    pp_start(p);
    while (!fl.stop) {
        struct epoll_event evs[8];
        int n = epoll_wait(fl.ep, evs, 8, -1);
        for (int i = 0; i < n && !fl.stop; i++) {
            if (evs[i].data.u32 == 0) on_a(p);
            else on_b(p);
        }
    }
    close(fl.ep);
}

/* ---- libuv ---- */

#ifdef HAVE_LIBUV
typedef struct {
    uv_loop_t loop;
    uv_poll_t poll[2];
} uv_side;

static void uv_cb(uv_poll_t *h, int status, int events) {
    (void)events;
    check(status == 0, "uv_poll status");
    pingpong_t *p = h->data;
    uv_side *u = p->impl;
    if (h == &u->poll[0]) on_a(p);
    else on_b(p);
}

static void uv_stop_pp(pingpong_t *p) {
    uv_side *u = p->impl;
    uv_poll_stop(&u->poll[0]);
    uv_poll_stop(&u->poll[1]);
    uv_stop(&u->loop);
}

static void run_libuv(pingpong_t *p) {
    uv_side u;
    check(uv_loop_init(&u.loop) == 0, "uv_loop_init");
    p->impl = &u;
    p->stop = uv_stop_pp;
    for (int i = 0; i < 2; i++) {
        check(uv_poll_init(&u.loop, &u.poll[i], p->fd[i]) == 0, "uv_poll_init");
        u.poll[i].data = p;
        check(uv_poll_start(&u.poll[i], UV_READABLE, uv_cb) == 0, "uv_poll_start");
    }
    pp_start(p);
    uv_run(&u.loop, UV_RUN_DEFAULT);
    for (int i = 0; i < 2; i++) uv_close((uv_handle_t *)&u.poll[i], NULL);
    uv_run(&u.loop, UV_RUN_DEFAULT);
    check(uv_loop_close(&u.loop) == 0, "uv_loop_close");
}
#endif

/* ---- driver ---- */

typedef struct side {
    const char *name;
    void (*run)(pingpong_t *);
    double rate[31];    /* messages (hops) per second, per repetition */
    double p50[31], p99[31];
} side_t;

static void one_rep(side_t *s, size_t rounds, double *lat, int rep) {
    pingpong_t p;
    pp_open(&p, rounds, lat);
    uint64_t t0 = now_ns();
    s->run(&p);
    uint64_t t1 = now_ns();
    check(p.done == rounds, "every round trip completed");
    pp_close(&p);
    s->rate[rep] = 2.0 * (double)rounds / ((double)(t1 - t0) / 1e9);
    s->p50[rep] = percentile(lat, rounds, 50);
    s->p99[rep] = percentile(lat, rounds, 99);
}

int main(int argc, char **argv) {
    size_t rounds = scaled(100000, 1000);
    double *lat = malloc(rounds * sizeof *lat);
    check(lat != NULL, "malloc");
    side_t sides[] = {
        {.name = "afut", .run = run_afut},
        {.name = "floor", .run = run_floor},
#ifdef HAVE_LIBUV
        {.name = "libuv", .run = run_libuv},
#endif
    };
    int nsides = (int)(sizeof sides / sizeof sides[0]);

    if (argc == 2) { /* one side, once */
        for (int i = 0; i < nsides; i++) {
            char want[32];
            snprintf(want, sizeof want, "%s-io", sides[i].name);
            if (strcmp(argv[1], want) == 0) {
                one_rep(&sides[i], rounds, lat, 0);
                printf("%s: %.0f msgs/s, round trip p50 %.2f us, p99 %.2f us\n", sides[i].name, sides[i].rate[0],
                       sides[i].p50[0], sides[i].p99[0]);
                free(lat);
                return 0;
            }
        }
        fprintf(stderr, "usage: %s [afut-io|floor-io|libuv-io]\n", argv[0]);
        return 2;
    }

    int reps = bench_reps();
    printf("I/O ping-pong: %zu round trips over a socketpair, %d repetitions, sides alternating\n", rounds, reps);
    for (int r = 0; r < reps; r++)
        for (int i = 0; i < nsides; i++) one_rep(&sides[i], rounds, lat, r);
    for (int i = 0; i < nsides; i++) {
        /* the median repetition by throughput gives the latency figures too */
        int order[31];
        for (int r = 0; r < reps; r++) order[r] = r;
        for (int a = 0; a < reps; a++)
            for (int b = a + 1; b < reps; b++)
                if (sides[i].rate[order[b]] < sides[i].rate[order[a]]) {
                    int t = order[a];
                    order[a] = order[b];
                    order[b] = t;
                }
        int m = order[reps / 2];
        char key[48];
        snprintf(key, sizeof key, "io_rate.%s", sides[i].name);
        emit(key, sides[i].rate[m] / 1000.0); /* thousands of messages per second */
        snprintf(key, sizeof key, "io_p50.%s", sides[i].name);
        emit(key, sides[i].p50[m]);
        snprintf(key, sizeof key, "io_p99.%s", sides[i].name);
        emit(key, sides[i].p99[m]);
    }
    free(lat);
    run_asyncio("io");
    for (int i = 0; i < nsides; i++) {
        char k[48];
        snprintf(k, sizeof k, "io_rate.%s", sides[i].name);
        double rate = result(k);
        snprintf(k, sizeof k, "io_p50.%s", sides[i].name);
        double p50 = result(k);
        snprintf(k, sizeof k, "io_p99.%s", sides[i].name);
        printf("%-8s %9.1f k msgs/s | round trip p50 %7.2f us, p99 %7.2f us\n", sides[i].name, rate, p50, result(k));
    }
    double pr = result("io_rate.asyncio");
    if (pr == pr)
        printf("%-8s %9.1f k msgs/s | round trip p50 %7.2f us, p99 %7.2f us\n", "asyncio", pr, result("io_p50.asyncio"),
               result("io_p99.asyncio"));
    return 0;
}
