/* The hand-written C floor: the callback plumbing a C engineer would write instead of afut,
 * kept as small as it can be while doing the same job.
 *
 * - ffut: a malloc'd future with one done-callback slot (no refcount, no lock, one thread).
 * - ring: a power-of-two ring buffer of (callback, future, userdata) entries: the ready
 *   queue; set_result pushes the future's callback, dispatch runs what was queued.
 * - xq: the cross-thread variant: a mutex-protected growable array plus an eventfd written
 *   only on the idle -> pending transition (once per batch), waited on with epoll. The loop
 *   swaps the array with a spare one to take a whole batch in O(1).
 *
 * The single-thread floor (ffut, ring) is inline, as a C engineer would write it in their own
 * code: malloc, a few stores, a ring-buffer push and pop, free, with no call beyond malloc and
 * free. The callbacks themselves are called through a pointer read back from memory, as in a
 * real program. The cross-thread functions (xq_*) stay NOINLINE: they lock, write an eventfd
 * and wait, and a call is noise beside that.
 */
#ifndef AFUT_BENCH_FLOOR_H
#define AFUT_BENCH_FLOOR_H

#include "bench.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

typedef struct ffut ffut;
typedef void (*ffut_cb)(ffut *f, void *userdata);

struct ffut {
    int done;
    void *result;
    ffut_cb cb;
    void *userdata;
};

typedef struct {
    ffut_cb cb;
    ffut *fut;
    void *userdata;
} ring_item;

typedef struct {
    ring_item *items;
    size_t mask, head, tail;
} ring;

static UNUSED void ring_init(ring *r, size_t cap_pow2) {
    r->items = malloc(cap_pow2 * sizeof *r->items);
    if (!r->items) die("malloc");
    r->mask = cap_pow2 - 1;
    r->head = r->tail = 0;
}

static UNUSED void ring_destroy(ring *r) { free(r->items); }

static inline ffut *ffut_new(void) {
    ffut *f = malloc(sizeof *f);
    if (!f) die("malloc");
    f->done = 0;
    f->result = NULL;
    f->cb = NULL;
    f->userdata = NULL;
    return f;
}

static inline void ffut_add_done_callback(ffut *f, ffut_cb cb, void *userdata) {
    f->cb = cb;
    f->userdata = userdata;
}

static inline int ffut_set_result(ring *r, ffut *f, void *value) {
    if (f->done) return -1;
    f->done = 1;
    f->result = value;
    if (f->cb) {
        ring_item *it = &r->items[r->tail++ & r->mask];
        it->cb = f->cb;
        it->fut = f;
        it->userdata = f->userdata;
    }
    return 0;
}

/* Runs the callbacks queued when it starts; returns how many ran. */
static inline size_t ring_dispatch(ring *r) {
    size_t end = r->tail, n = 0;
    while (r->head != end) {
        ring_item it = r->items[r->head++ & r->mask];
        it.cb(it.fut, it.userdata);
        n++;
    }
    return n;
}

static inline void ffut_free(ffut *f) { free(f); }

/* ---- cross-thread queue ----------------------------------------------------------- */

typedef struct {
    pthread_mutex_t mu;
    ffut **items, **spare;  /* the queue, and the previous batch's buffer (swapped) */
    size_t len, cap, spare_cap;
    int signalled; /* an eventfd write is outstanding (idle -> pending happened) */
    int efd, epfd;
    long writes;   /* eventfd writes, for the report */
} xq;

/* cap: the initial capacity of the queue; it grows by doubling. */
static UNUSED void xq_init(xq *q, size_t cap) {
    pthread_mutex_init(&q->mu, NULL);
    q->items = malloc(cap * sizeof *q->items);
    q->spare = malloc(cap * sizeof *q->spare);
    if (!q->items || !q->spare) die("malloc");
    q->len = 0;
    q->cap = q->spare_cap = cap;
    q->signalled = 0;
    q->writes = 0;
    q->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    q->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (q->efd < 0 || q->epfd < 0) die("eventfd/epoll_create1");
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = q->efd};
    if (epoll_ctl(q->epfd, EPOLL_CTL_ADD, q->efd, &ev) != 0) die("epoll_ctl");
}

static UNUSED void xq_destroy(xq *q) {
    close(q->efd);
    close(q->epfd);
    free(q->items);
    free(q->spare);
    pthread_mutex_destroy(&q->mu);
}

/* Producer side: complete f and queue it; writes the eventfd only if the loop had no
 * pending signal (once per batch). */
static UNUSED NOINLINE void xq_complete(xq *q, ffut *f, void *value) {
    pthread_mutex_lock(&q->mu);
    f->done = 1;
    f->result = value;
    if (q->len == q->cap) {
        /* Grow both buffers (the loop swaps them), as a growable queue would. */
        size_t cap = q->cap * 2;
        ffut **items = realloc(q->items, cap * sizeof *items);
        if (!items) die("realloc");
        q->items = items;
        q->cap = cap;
    }
    q->items[q->len++] = f;
    int wake = !q->signalled;
    q->signalled = 1;
    pthread_mutex_unlock(&q->mu);
    if (wake) {
        uint64_t one = 1;
        if (write(q->efd, &one, 8) != 8) die("write(eventfd)");
        __atomic_fetch_add(&q->writes, 1, __ATOMIC_RELAXED);
    }
}

/* Loop side: takes the pending batch; if there is none, clears the signal and returns 0
 * (the caller then waits for the eventfd). */
static UNUSED NOINLINE size_t xq_take(xq *q, ffut ***batch) {
    pthread_mutex_lock(&q->mu);
    size_t n = q->len;
    if (n) {
        ffut **t = q->items;
        if (q->spare_cap < q->cap) {
            /* The spare buffer becomes the queue: make it as large as the queue grew. */
            free(q->spare);
            q->spare = malloc(q->cap * sizeof *q->spare);
            if (!q->spare) die("malloc");
            q->spare_cap = q->cap;
        }
        q->items = q->spare;
        q->spare = t;
        size_t c = q->cap;
        q->cap = q->spare_cap;
        q->spare_cap = c;
        q->len = 0;
        *batch = t;
    } else {
        q->signalled = 0;
    }
    pthread_mutex_unlock(&q->mu);
    return n;
}

/* Loop side: blocks in epoll_wait until the eventfd is readable, then drains it. */
static UNUSED NOINLINE void xq_wait(xq *q) {
    struct epoll_event ev;
    while (epoll_wait(q->epfd, &ev, 1, -1) < 0 && errno == EINTR) {
    }
    uint64_t v;
    if (read(q->efd, &v, 8) < 0 && errno != EAGAIN) die("read(eventfd)");
}

/* Loop side: runs until `*count` reaches `target`: batch after batch, waiting when idle. */
static UNUSED void xq_run(xq *q, const size_t *count, size_t target) {
    while (*count < target) {
        ffut **batch;
        size_t n = xq_take(q, &batch);
        if (!n) {
            xq_wait(q);
            continue;
        }
        for (size_t i = 0; i < n; i++) batch[i]->cb(batch[i], batch[i]->userdata);
    }
}

#endif
