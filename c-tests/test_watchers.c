/* I/O watchers: afut_loop_add_reader / add_writer / remove_reader / remove_writer (issue 12,
 * API.md "I/O watchers").
 *
 * asyncio's semantics, item by item (checked against CPython 3.13's selector loop):
 *   - level-triggered: a watcher runs once per iteration while its fd is ready, until removed;
 *   - a ready reader runs in the same run_once that saw it; the order inside one iteration is
 *     asyncio's _run_once: callbacks queued before it, then the I/O callbacks, then the timers
 *     that came due (for one fd: the reader before the writer);
 *   - one reader and one writer per fd: adding again replaces the watcher, the old userdata is
 *     freed once, and a callback may remove or replace its own watcher or another one; a
 *     watcher removed or replaced while its callback is already queued for this iteration is
 *     cancelled (asyncio's handle.cancel()), and the userdata of a callback that removes itself
 *     stays valid until that callback returns;
 *   - a hangup or EOF counts as readable (an error on a pipe's write end as writable);
 *   - registration from any thread, which wakes a loop blocked in run_forever;
 *   - close and free release every watcher's userdata, once;
 *   - host mode: afut_loop_fd is readable while a watched fd is ready and not while idle
 *     (also for edge-triggered hosts: a fresh edge while a watched fd stays ready), and
 *     afut_loop_timeout_ms leaves watchers to the fd (-1 with nothing else scheduled);
 *   - bad input returns a status and takes nothing (userdata_free is never called for a
 *     refused add). The library's decisions where asyncio has none or differs: a NULL loop or
 *     cb and a negative fd are AFUT_ERR_INVALID_ARGUMENT; a regular file or a directory is
 *     refused on every backend with AFUT_ERR_OS and errno EPERM (what epoll, and so asyncio's
 *     default loop on Linux, answers); an fd number that is not open is AFUT_ERR_OS with errno
 *     EBADF (asyncio raises OSError EBADF).
 *   - many fds at once (1000 socketpairs, fd numbers past FD_SETSIZE, RLIMIT_NOFILE raised to
 *     what the hard limit allows).
 *
 * Positive host-fd checks wait a little (test_readable(fd, budget)) instead of polling with 0:
 * on a poller without a pollable fd of its own (the poll() backend) a helper thread turns the
 * watched fds' readiness into the host fd's, which takes a thread switch. */
#define _GNU_SOURCE
#include "test.h"

#include <afut.h>

#include "thread_helpers.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ fd helpers */

/* A non-blocking AF_UNIX stream socketpair; aborts the program if the kernel refuses. */
static void make_pair(int sv[2]) {
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0) {
        perror("socketpair");
        exit(2);
    }
}

static void close_pair(int sv[2]) {
    close(sv[0]);
    close(sv[1]);
}

/* Writes n bytes 'x' (MSG_NOSIGNAL: a closed peer must not kill the test). */
static void send_bytes(int fd, int n) {
    char buf[64];
    memset(buf, 'x', sizeof buf);
    while (n > 0) {
        int k = n < (int)sizeof buf ? n : (int)sizeof buf;
        ssize_t w = send(fd, buf, (size_t)k, MSG_NOSIGNAL);
        if (w <= 0) return;
        n -= (int)w;
    }
}

/* Reads everything available; returns the byte count (0 on EOF or nothing). */
static long drain_fd(int fd) {
    char buf[4096];
    long total = 0;
    for (;;) {
        ssize_t r = read(fd, buf, sizeof buf);
        if (r <= 0) return total;
        total += r;
    }
}

/* Fills fd's send buffer until the kernel says EAGAIN. */
static void fill_fd(int fd) {
    char buf[4096];
    memset(buf, 'f', sizeof buf);
    while (send(fd, buf, sizeof buf, MSG_NOSIGNAL | MSG_DONTWAIT) > 0) {
    }
}

/* How long a positive host-fd check may wait. */
static int soon_ms(void) { return (int)(budget(3.0) * 1000); }

/* ------------------------------------------------------------------ probes */

/* What a probe's callback does besides counting. */
enum action {
    ACT_NONE,
    ACT_REMOVE_SELF,
    ACT_REPLACE_SELF,
    ACT_REMOVE_OTHER,  /* removes `other`'s watcher, once */
    ACT_REPLACE_OTHER, /* replaces `other`'s watcher with `replacement`, once */
    ACT_REMOVE_OTHER_THEN_ADD, /* removes `other`'s watcher, then adds `replacement` on its fd */
    ACT_STOP,          /* afut_loop_stop */
    ACT_CLOSE_LOOP,    /* afut_loop_close (refused: running) */
    ACT_REMOVE_WRITER_SAME_FD,
};

/* One watcher's userdata: counts its calls and its frees, and checks it is never called after
 * it was freed, nor on another thread than the loop's. */
typedef struct probe {
    char tag;
    afut_loop_t *loop;
    int fd;
    bool writer;
    enum action action;
    bool consume; /* the callback reads everything available */
    struct probe *other;
    struct probe *replacement;
    bool action_done;
    int action_rc;           /* what the remove / add inside the callback returned */
    int frees_seen_in_cb;    /* own frees observed right after the action, inside the cb */
    pthread_t loop_thread;
    atomic_int calls;
    atomic_int frees;
    atomic_int after_free; /* calls after the free: a bug */
    atomic_int wrong_thread;
} probe_t;

static char g_log[512];
static int g_nlog;

static void log_reset(void) {
    g_nlog = 0;
    g_log[0] = 0;
}

static void log_tag(char c) {
    if (g_nlog < (int)sizeof g_log - 1) {
        g_log[g_nlog++] = c;
        g_log[g_nlog] = 0;
    }
}

static void probe_init(probe_t *p, afut_loop_t *loop, int fd, bool writer, char tag) {
    memset(p, 0, sizeof *p);
    p->tag = tag;
    p->loop = loop;
    p->fd = fd;
    p->writer = writer;
    p->loop_thread = pthread_self();
    atomic_init(&p->calls, 0);
    atomic_init(&p->frees, 0);
    atomic_init(&p->after_free, 0);
    atomic_init(&p->wrong_thread, 0);
}

static void probe_free(void *ud) {
    probe_t *p = ud;
    atomic_fetch_add(&p->frees, 1);
}

static void probe_cb(void *ud);

static afut_status_t watch(probe_t *p) {
    return p->writer ? afut_loop_add_writer(p->loop, p->fd, probe_cb, p, probe_free)
                     : afut_loop_add_reader(p->loop, p->fd, probe_cb, p, probe_free);
}

static bool unwatch(probe_t *p) {
    return p->writer ? afut_loop_remove_writer(p->loop, p->fd) : afut_loop_remove_reader(p->loop, p->fd);
}

static void probe_cb(void *ud) {
    probe_t *p = ud;
    if (atomic_load(&p->frees) > 0) atomic_fetch_add(&p->after_free, 1);
    if (!pthread_equal(pthread_self(), p->loop_thread)) atomic_fetch_add(&p->wrong_thread, 1);
    atomic_fetch_add(&p->calls, 1);
    log_tag(p->tag);
    if (p->consume) drain_fd(p->fd);
    switch (p->action) {
    case ACT_NONE:
        break;
    case ACT_REMOVE_SELF:
        if (!p->action_done) {
            p->action_done = true;
            p->action_rc = unwatch(p);
            p->frees_seen_in_cb = atomic_load(&p->frees);
        }
        break;
    case ACT_REPLACE_SELF:
        if (!p->action_done) {
            p->action_done = true;
            p->action_rc = watch(p->replacement);
            p->frees_seen_in_cb = atomic_load(&p->frees);
        }
        break;
    case ACT_REMOVE_OTHER:
        if (!p->action_done && !p->other->action_done) {
            p->action_done = true;
            p->action_rc = unwatch(p->other);
        }
        break;
    case ACT_REPLACE_OTHER:
        if (!p->action_done && !p->other->action_done) {
            p->action_done = true;
            p->action_rc = watch(p->replacement);
        }
        break;
    case ACT_REMOVE_OTHER_THEN_ADD:
        if (!p->action_done && !p->other->action_done) {
            p->action_done = true;
            p->action_rc = unwatch(p->other) && watch(p->replacement) == AFUT_OK;
        }
        break;
    case ACT_STOP:
        afut_loop_stop(p->loop);
        break;
    case ACT_CLOSE_LOOP:
        p->action_rc = afut_loop_close(p->loop);
        break;
    case ACT_REMOVE_WRITER_SAME_FD:
        if (!p->action_done) {
            p->action_done = true;
            p->action_rc = afut_loop_remove_writer(p->loop, p->fd);
        }
        break;
    }
}

/* Every probe check shared by the tests: never called after its free, never off the loop
 * thread, freed at most once. */
static void check_probe(const probe_t *p) {
    CHECK_EQ_INT(atomic_load(&p->after_free), 0);
    CHECK_EQ_INT(atomic_load(&p->wrong_thread), 0);
    CHECK(atomic_load(&p->frees) <= 1);
}

/* run_once(loop, 0): the number of callbacks it ran, or -1000 - status on an error. */
static long once(afut_loop_t *loop) {
    size_t ran = 0;
    afut_status_t rc = afut_loop_run_once(loop, 0, &ran);
    return rc == AFUT_OK ? (long)ran : -1000 + rc;
}

static void log_cb(void *ud) { log_tag(*(const char *)ud); }

/* ============================================================ basics */

/* A ready reader runs in the run_once that saw it (one callback, counted in ran_out); an
 * idle one never runs; removal returns true once and frees the userdata once. */
TEST(reader_runs_in_the_run_once_that_sees_it) {
    afut_loop_t *loop = afut_loop_new();
    int sv[2];
    make_pair(sv);
    probe_t r;
    probe_init(&r, loop, sv[0], false, 'r');
    r.consume = true;
    CHECK_EQ_INT(watch(&r), AFUT_OK);
    CHECK_EQ_INT(once(loop), 0);
    CHECK_EQ_INT(atomic_load(&r.calls), 0);
    send_bytes(sv[1], 3);
    CHECK_EQ_INT(once(loop), 1);
    CHECK_EQ_INT(atomic_load(&r.calls), 1);
    CHECK_EQ_INT(once(loop), 0); /* consumed: not ready any more */
    CHECK_EQ_INT(atomic_load(&r.calls), 1);
    send_bytes(sv[1], 1);
    CHECK_EQ_INT(once(loop), 1);
    CHECK_EQ_INT(atomic_load(&r.calls), 2);
    CHECK_EQ_INT(atomic_load(&r.frees), 0);
    CHECK(afut_loop_remove_reader(loop, sv[0]));
    CHECK_EQ_INT(atomic_load(&r.frees), 1);
    CHECK(!afut_loop_remove_reader(loop, sv[0]));
    CHECK(!afut_loop_remove_writer(loop, sv[0]));
    send_bytes(sv[1], 1);
    CHECK_EQ_INT(once(loop), 0);
    CHECK_EQ_INT(atomic_load(&r.calls), 2);
    check_probe(&r);
    afut_loop_free(loop);
    CHECK_EQ_INT(atomic_load(&r.frees), 1);
    close_pair(sv);
}

/* Level-triggered: a reader that does not consume runs once in every iteration, exactly
 * once per iteration, as long as the data is there. */
TEST(reader_is_level_triggered_once_per_iteration) {
    afut_loop_t *loop = afut_loop_new();
    int sv[2];
    make_pair(sv);
    probe_t r;
    probe_init(&r, loop, sv[0], false, 'r');
    CHECK_EQ_INT(watch(&r), AFUT_OK);
    send_bytes(sv[1], 1);
    for (int i = 1; i <= 5; i++) {
        CHECK_EQ_INT(once(loop), 1);
        CHECK_EQ_INT(atomic_load(&r.calls), i);
    }
    drain_fd(sv[0]);
    CHECK_EQ_INT(once(loop), 0);
    CHECK_EQ_INT(atomic_load(&r.calls), 5);
    check_probe(&r);
    afut_loop_free(loop);
    CHECK_EQ_INT(atomic_load(&r.frees), 1);
    close_pair(sv);
}

typedef struct delayed_write {
    int fd;
    double delay;
    double t_write;
    pthread_t th;
} delayed_write_t;

static void *delayed_write_main(void *arg) {
    delayed_write_t *d = arg;
    sleep_s(d->delay);
    d->t_write = now_s();
    send_bytes(d->fd, 1);
    return NULL;
}

/* run_once with a timeout waits for the watched fd: it returns when the data arrives (not at
 * the timeout), having run the reader; with an idle watched fd it waits the whole timeout
 * (no spinning on a watcher that is not ready). */
TEST(run_once_waits_for_a_watched_fd) {
    afut_loop_t *loop = afut_loop_new();
    int sv[2];
    make_pair(sv);
    probe_t r;
    probe_init(&r, loop, sv[0], false, 'r');
    r.consume = true;
    CHECK_EQ_INT(watch(&r), AFUT_OK);

    double t0 = now_s();
    size_t ran = 99;
    CHECK_EQ_INT(afut_loop_run_once(loop, 150, &ran), AFUT_OK);
    double took = now_s() - t0;
    CHECK_EQ_INT(ran, 0);
    CHECK(took >= 0.14);

    delayed_write_t d = {.fd = sv[1], .delay = 0.05};
    pthread_create(&d.th, NULL, delayed_write_main, &d);
    CHECK_EQ_INT(afut_loop_run_once(loop, (int)(budget(5.0) * 1000), &ran), AFUT_OK);
    double woke = now_s();
    pthread_join(d.th, NULL);
    CHECK_EQ_INT(ran, 1);
    CHECK_EQ_INT(atomic_load(&r.calls), 1);
    CHECK(woke - d.t_write < max_latency());

    /* -1: until there is work; a writer is ready at once */
    probe_t w;
    probe_init(&w, loop, sv[0], true, 'w');
    CHECK_EQ_INT(watch(&w), AFUT_OK);
    CHECK_EQ_INT(afut_loop_run_once(loop, -1, &ran), AFUT_OK);
    CHECK_EQ_INT(ran, 1);
    CHECK_EQ_INT(atomic_load(&w.calls), 1);
    check_probe(&r);
    check_probe(&w);
    afut_loop_free(loop);
    CHECK_EQ_INT(atomic_load(&r.frees), 1);
    CHECK_EQ_INT(atomic_load(&w.frees), 1);
    close_pair(sv);
}

/* A writer runs while its fd is writable, and not while the send buffer is full. */
TEST(writer_runs_while_writable) {
    afut_loop_t *loop = afut_loop_new();
    int sv[2];
    make_pair(sv);
    probe_t w;
    probe_init(&w, loop, sv[0], true, 'w');
    CHECK_EQ_INT(watch(&w), AFUT_OK);
    CHECK_EQ_INT(once(loop), 1);
    CHECK_EQ_INT(once(loop), 1);
    CHECK_EQ_INT(atomic_load(&w.calls), 2);
    fill_fd(sv[0]);
    CHECK_EQ_INT(once(loop), 0);
    CHECK_EQ_INT(once(loop), 0);
    CHECK_EQ_INT(atomic_load(&w.calls), 2);
    drain_fd(sv[1]);
    CHECK_EQ_INT(once(loop), 1);
    CHECK_EQ_INT(atomic_load(&w.calls), 3);
    CHECK(afut_loop_remove_writer(loop, sv[0]));
    CHECK_EQ_INT(atomic_load(&w.frees), 1);
    CHECK_EQ_INT(once(loop), 0);
    check_probe(&w);
    afut_loop_free(loop);
    CHECK_EQ_INT(atomic_load(&w.frees), 1);
    close_pair(sv);
}

/* One reader and one writer on the same fd are independent: both run in one iteration (the
 * reader first, as asyncio's _process_events queues them), and removing one keeps the other. */
TEST(reader_and_writer_on_one_fd) {
    afut_loop_t *loop = afut_loop_new();
    int sv[2];
    make_pair(sv);
    probe_t r, w;
    probe_init(&r, loop, sv[0], false, 'r');
    probe_init(&w, loop, sv[0], true, 'w');
    CHECK_EQ_INT(watch(&w), AFUT_OK);
    CHECK_EQ_INT(watch(&r), AFUT_OK);
    CHECK_EQ_INT(once(loop), 1); /* writable only */
    CHECK_EQ_INT(atomic_load(&w.calls), 1);
    CHECK_EQ_INT(atomic_load(&r.calls), 0);
    send_bytes(sv[1], 1);
    log_reset();
    CHECK_EQ_INT(once(loop), 2);
    CHECK_STR(g_log, "rw");
    CHECK(afut_loop_remove_reader(loop, sv[0]));
    CHECK_EQ_INT(atomic_load(&r.frees), 1);
    CHECK_EQ_INT(atomic_load(&w.frees), 0);
    log_reset();
    CHECK_EQ_INT(once(loop), 1);
    CHECK_STR(g_log, "w");
    /* and the other way round */
    probe_t r2;
    probe_init(&r2, loop, sv[0], false, 'R');
    CHECK_EQ_INT(watch(&r2), AFUT_OK);
    CHECK(afut_loop_remove_writer(loop, sv[0]));
    CHECK_EQ_INT(atomic_load(&w.frees), 1);
    log_reset();
    CHECK_EQ_INT(once(loop), 1);
    CHECK_STR(g_log, "R");
    CHECK(!afut_loop_remove_writer(loop, sv[0]));
    CHECK_EQ_INT(atomic_load(&r2.frees), 0);
    check_probe(&r);
    check_probe(&w);
    check_probe(&r2);
    afut_loop_free(loop);
    CHECK_EQ_INT(atomic_load(&r2.frees), 1);
    close_pair(sv);
}

/* The reader of an fd that removes the writer of the same fd, queued right after it in the
 * same iteration: the writer does not run. */
TEST(reader_removes_queued_writer_of_its_fd) {
    afut_loop_t *loop = afut_loop_new();
    int sv[2];
    make_pair(sv);
    probe_t r, w;
    probe_init(&r, loop, sv[0], false, 'r');
    probe_init(&w, loop, sv[0], true, 'w');
    r.action = ACT_REMOVE_WRITER_SAME_FD;
    CHECK_EQ_INT(watch(&r), AFUT_OK);
    CHECK_EQ_INT(watch(&w), AFUT_OK);
    send_bytes(sv[1], 1);
    log_reset();
    CHECK_EQ_INT(once(loop), 1);
    CHECK_STR(g_log, "r");
    CHECK_EQ_INT(r.action_rc, 1);
    CHECK_EQ_INT(atomic_load(&w.calls), 0);
    CHECK_EQ_INT(atomic_load(&w.frees), 1);
    check_probe(&r);
    check_probe(&w);
    afut_loop_free(loop);
    CHECK_EQ_INT(atomic_load(&r.frees), 1);
    close_pair(sv);
}

/* A peer's close (EOF) and a pipe's hangup count as readable; an error on a pipe whose
 * reader is gone counts as writable. */
TEST(hangup_and_eof_count_as_readable) {
    afut_loop_t *loop = afut_loop_new();
    int sv[2];
    make_pair(sv);
    probe_t r;
    probe_init(&r, loop, sv[0], false, 'r');
    CHECK_EQ_INT(watch(&r), AFUT_OK);
    CHECK_EQ_INT(once(loop), 0);
    close(sv[1]);
    CHECK_EQ_INT(once(loop), 1);
    char c;
    CHECK_EQ_INT(read(sv[0], &c, 1), 0); /* EOF */
    CHECK_EQ_INT(once(loop), 1);         /* EOF stays readable: level-triggered */
    CHECK(afut_loop_remove_reader(loop, sv[0]));
    close(sv[0]);

    int p[2];
    CHECK_EQ_INT(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    probe_t pr;
    probe_init(&pr, loop, p[0], false, 'p');
    CHECK_EQ_INT(watch(&pr), AFUT_OK);
    CHECK_EQ_INT(once(loop), 0);
    close(p[1]); /* POLLHUP on the read end */
    CHECK_EQ_INT(once(loop), 1);
    CHECK_EQ_INT(atomic_load(&pr.calls), 1);
    CHECK(afut_loop_remove_reader(loop, p[0]));
    close(p[0]);

    int q[2];
    CHECK_EQ_INT(pipe2(q, O_NONBLOCK | O_CLOEXEC), 0);
    { /* fill the pipe (send() is for sockets) */
        char buf[4096];
        memset(buf, 'f', sizeof buf);
        while (write(q[1], buf, sizeof buf) > 0) {
        }
    }
    probe_t qw;
    probe_init(&qw, loop, q[1], true, 'q');
    CHECK_EQ_INT(watch(&qw), AFUT_OK);
    CHECK_EQ_INT(once(loop), 0); /* full */
    close(q[0]);                 /* POLLERR on the write end */
    CHECK_EQ_INT(once(loop), 1);
    CHECK_EQ_INT(atomic_load(&qw.calls), 1);
    CHECK(afut_loop_remove_writer(loop, q[1]));
    close(q[1]);
    check_probe(&r);
    check_probe(&pr);
    check_probe(&qw);
    afut_loop_free(loop);
    CHECK_EQ_INT(atomic_load(&r.frees), 1);
    CHECK_EQ_INT(atomic_load(&pr.frees), 1);
    CHECK_EQ_INT(atomic_load(&qw.frees), 1);
}

/* asyncio's _run_once order in one iteration: what was queued before it (call_soon), then
 * the I/O callbacks, then the timers that came due. What a reader schedules runs in the next
 * iteration. */
static char tag_s = 's', tag_t = 't', tag_x = 'x';
static void soon_from_reader(void *ud) {
    probe_t *p = ud;
    probe_cb(p);
    afut_loop_call_soon(p->loop, log_cb, &tag_x, NULL);
}

TEST(one_iteration_runs_soon_then_io_then_timers) {
    afut_loop_t *loop = afut_loop_new();
    int sv[2];
    make_pair(sv);
    probe_t r;
    probe_init(&r, loop, sv[0], false, 'r');
    r.consume = true;
    CHECK_EQ_INT(afut_loop_add_reader(loop, sv[0], soon_from_reader, &r, probe_free), AFUT_OK);
    send_bytes(sv[1], 1);
    CHECK(afut_loop_call_soon(loop, log_cb, &tag_s, NULL) != 0);
    CHECK(afut_loop_call_at(loop, afut_loop_time(loop) - 1.0, log_cb, &tag_t, NULL) != 0);
    log_reset();
    CHECK_EQ_INT(once(loop), 3);
    CHECK_STR(g_log, "srt");
    CHECK_EQ_INT(once(loop), 1);
    CHECK_STR(g_log, "srtx");
    check_probe(&r);
    afut_loop_free(loop);
    CHECK_EQ_INT(atomic_load(&r.frees), 1);
    close_pair(sv);
}

/* ============================================================ replace / remove */

/* Adding again replaces: the old userdata is freed once, during the call (the loop is not
 * running it), and only the new watcher runs. */
TEST(adding_again_replaces_and_frees_the_old_once) {
    afut_loop_t *loop = afut_loop_new();
    int sv[2];
    make_pair(sv);
    probe_t a, b, wa, wb;
    probe_init(&a, loop, sv[0], false, 'a');
    probe_init(&b, loop, sv[0], false, 'b');
    probe_init(&wa, loop, sv[0], true, 'A');
    probe_init(&wb, loop, sv[0], true, 'B');
    CHECK_EQ_INT(watch(&a), AFUT_OK);
    CHECK_EQ_INT(watch(&wa), AFUT_OK);
    CHECK_EQ_INT(watch(&b), AFUT_OK);
    CHECK_EQ_INT(atomic_load(&a.frees), 1);
    CHECK_EQ_INT(atomic_load(&wa.frees), 0); /* the writer is another slot */
    CHECK_EQ_INT(watch(&wb), AFUT_OK);
    CHECK_EQ_INT(atomic_load(&wa.frees), 1);
    send_bytes(sv[1], 1);
    log_reset();
    CHECK_EQ_INT(once(loop), 2);
    CHECK_STR(g_log, "bB");
    CHECK_EQ_INT(atomic_load(&a.calls), 0);
    CHECK_EQ_INT(atomic_load(&wa.calls), 0);
    /* re-adding the very same userdata: the old registration's free still runs once */
    probe_t c;
    probe_init(&c, loop, sv[0], false, 'c');
    CHECK_EQ_INT(watch(&c), AFUT_OK);
    CHECK_EQ_INT(watch(&c), AFUT_OK);
    CHECK_EQ_INT(atomic_load(&b.frees), 1);
    CHECK_EQ_INT(atomic_load(&c.frees), 1);
    CHECK(afut_loop_remove_reader(loop, sv[0]));
    CHECK_EQ_INT(atomic_load(&c.frees), 2);
    CHECK(afut_loop_remove_writer(loop, sv[0]));
    CHECK_EQ_INT(atomic_load(&wb.frees), 1);
    CHECK_EQ_INT(atomic_load(&a.after_free), 0);
    CHECK_EQ_INT(atomic_load(&b.after_free), 0);
    afut_loop_free(loop);
    CHECK_EQ_INT(atomic_load(&a.frees), 1);
    CHECK_EQ_INT(atomic_load(&b.frees), 1);
    CHECK_EQ_INT(atomic_load(&wa.frees), 1);
    CHECK_EQ_INT(atomic_load(&wb.frees), 1);
    CHECK_EQ_INT(atomic_load(&c.frees), 2);
    close_pair(sv);
}

/* A callback that removes its own watcher: remove returns true, the userdata stays valid (not
 * freed) until the callback returns, then is freed once; the reader never runs again. */
TEST(callback_removes_its_own_watcher) {
    afut_loop_t *loop = afut_loop_new();
    int sv[2];
    make_pair(sv);
    probe_t r, w;
    probe_init(&r, loop, sv[0], false, 'r');
    probe_init(&w, loop, sv[1], true, 'w');
    r.action = ACT_REMOVE_SELF;
    w.action = ACT_REMOVE_SELF;
    CHECK_EQ_INT(watch(&r), AFUT_OK);
    CHECK_EQ_INT(watch(&w), AFUT_OK);
    send_bytes(sv[1], 1);
    CHECK_EQ_INT(once(loop), 2);
    CHECK_EQ_INT(r.action_rc, 1);
    CHECK_EQ_INT(r.frees_seen_in_cb, 0);
    CHECK_EQ_INT(w.action_rc, 1);
    CHECK_EQ_INT(w.frees_seen_in_cb, 0);
    CHECK_EQ_INT(atomic_load(&r.frees), 1);
    CHECK_EQ_INT(atomic_load(&w.frees), 1);
    CHECK_EQ_INT(once(loop), 0); /* data still there, nobody watches */
    CHECK_EQ_INT(atomic_load(&r.calls), 1);
    CHECK_EQ_INT(atomic_load(&w.calls), 1);
    check_probe(&r);
    check_probe(&w);
    afut_loop_free(loop);
    CHECK_EQ_INT(atomic_load(&r.frees), 1);
    CHECK_EQ_INT(atomic_load(&w.frees), 1);
    close_pair(sv);
}

/* A callback that replaces its own watcher: the new one does not run in this iteration
 * (asyncio: the events were queued before the callbacks ran), and runs from the next on;
 * the old userdata is freed after the callback returned. */
TEST(callback_replaces_its_own_watcher) {
    afut_loop_t *loop = afut_loop_new();
    int sv[2];
    make_pair(sv);
    probe_t a, b;
    probe_init(&a, loop, sv[0], false, 'a');
    probe_init(&b, loop, sv[0], false, 'b');
    a.action = ACT_REPLACE_SELF;
    a.replacement = &b;
    CHECK_EQ_INT(watch(&a), AFUT_OK);
    send_bytes(sv[1], 1);
    log_reset();
    CHECK_EQ_INT(once(loop), 1);
    CHECK_STR(g_log, "a");
    CHECK_EQ_INT(a.action_rc, AFUT_OK);
    CHECK_EQ_INT(a.frees_seen_in_cb, 0);
    CHECK_EQ_INT(atomic_load(&a.frees), 1);
    CHECK_EQ_INT(once(loop), 1);
    CHECK_STR(g_log, "ab");
    CHECK_EQ_INT(once(loop), 1);
    CHECK_STR(g_log, "abb");
    check_probe(&a);
    check_probe(&b);
    afut_loop_free(loop);
    CHECK_EQ_INT(atomic_load(&a.frees), 1);
    CHECK_EQ_INT(atomic_load(&b.frees), 1);
    close_pair(sv);
}

/* Two ready readers queued in the same iteration; whichever runs first removes the other:
 * the other is cancelled (never runs) and freed once, at once. */
TEST(removing_a_queued_watcher_cancels_it) {
    afut_loop_t *loop = afut_loop_new();
    int s1[2], s2[2];
    make_pair(s1);
    make_pair(s2);
    probe_t a, b;
    probe_init(&a, loop, s1[0], false, 'a');
    probe_init(&b, loop, s2[0], false, 'b');
    a.action = b.action = ACT_REMOVE_OTHER;
    a.other = &b;
    b.other = &a;
    CHECK_EQ_INT(watch(&a), AFUT_OK);
    CHECK_EQ_INT(watch(&b), AFUT_OK);
    send_bytes(s1[1], 1);
    send_bytes(s2[1], 1);
    CHECK_EQ_INT(once(loop), 1);
    CHECK_EQ_INT(atomic_load(&a.calls) + atomic_load(&b.calls), 1);
    probe_t *first = atomic_load(&a.calls) ? &a : &b, *second = first == &a ? &b : &a;
    CHECK_EQ_INT(first->action_rc, 1);
    CHECK_EQ_INT(atomic_load(&second->frees), 1);
    CHECK_EQ_INT(atomic_load(&first->frees), 0);
    CHECK_EQ_INT(once(loop), 1); /* the survivor goes on (its data is still there) */
    CHECK_EQ_INT(atomic_load(&first->calls), 2);
    CHECK_EQ_INT(atomic_load(&second->calls), 0);
    check_probe(&a);
    check_probe(&b);
    afut_loop_free(loop);
    CHECK_EQ_INT(atomic_load(&a.frees), 1);
    CHECK_EQ_INT(atomic_load(&b.frees), 1);
    close_pair(s1);
    close_pair(s2);
}

/* The same with replacement: the queued old callback is cancelled, and the new watcher does
 * not run in this iteration either, only from the next one. */
TEST(replacing_a_queued_watcher_cancels_it) {
    afut_loop_t *loop = afut_loop_new();
    int s1[2], s2[2];
    make_pair(s1);
    make_pair(s2);
    probe_t a, b, ra, rb;
    probe_init(&a, loop, s1[0], false, 'a');
    probe_init(&b, loop, s2[0], false, 'b');
    probe_init(&ra, loop, s1[0], false, 'A'); /* replaces a */
    probe_init(&rb, loop, s2[0], false, 'B'); /* replaces b */
    a.action = b.action = ACT_REPLACE_OTHER;
    a.other = &b;
    a.replacement = &rb;
    b.other = &a;
    b.replacement = &ra;
    CHECK_EQ_INT(watch(&a), AFUT_OK);
    CHECK_EQ_INT(watch(&b), AFUT_OK);
    send_bytes(s1[1], 1);
    send_bytes(s2[1], 1);
    log_reset();
    CHECK_EQ_INT(once(loop), 1);
    CHECK(strcmp(g_log, "a") == 0 || strcmp(g_log, "b") == 0);
    probe_t *first = g_log[0] == 'a' ? &a : &b, *second = first == &a ? &b : &a;
    probe_t *newer = first == &a ? &rb : &ra;
    CHECK_EQ_INT(first->action_rc, AFUT_OK);
    CHECK_EQ_INT(atomic_load(&second->frees), 1);
    CHECK_EQ_INT(atomic_load(&newer->calls), 0);
    CHECK_EQ_INT(once(loop), 2);
    CHECK_EQ_INT(atomic_load(&newer->calls), 1);
    CHECK_EQ_INT(atomic_load(&first->calls), 2);
    CHECK_EQ_INT(atomic_load(&second->calls), 0);
    check_probe(&a);
    check_probe(&b);
    check_probe(&ra);
    check_probe(&rb);
    afut_loop_free(loop);
    CHECK_EQ_INT(atomic_load(&a.frees), 1);
    CHECK_EQ_INT(atomic_load(&b.frees), 1);
    CHECK_EQ_INT(atomic_load(&newer->frees), 1);
    close_pair(s1);
    close_pair(s2);
}

/* Removed and re-added within one iteration, after its event was queued: neither the
 * removed callback nor the new one runs in this iteration. */
TEST(remove_then_add_in_one_iteration_waits_for_the_next) {
    afut_loop_t *loop = afut_loop_new();
    int s1[2], s2[2];
    make_pair(s1);
    make_pair(s2);
    probe_t a, b, ra, rb;
    probe_init(&a, loop, s1[0], false, 'a');
    probe_init(&b, loop, s2[0], false, 'b');
    probe_init(&ra, loop, s1[0], false, 'A');
    probe_init(&rb, loop, s2[0], false, 'B');
    a.action = b.action = ACT_REMOVE_OTHER_THEN_ADD;
    a.other = &b;
    a.replacement = &rb;
    b.other = &a;
    b.replacement = &ra;
    CHECK_EQ_INT(watch(&a), AFUT_OK);
    CHECK_EQ_INT(watch(&b), AFUT_OK);
    send_bytes(s1[1], 1);
    send_bytes(s2[1], 1);
    log_reset();
    CHECK_EQ_INT(once(loop), 1);
    CHECK_EQ_INT(g_nlog, 1);
    probe_t *first = g_log[0] == 'a' ? &a : &b;
    probe_t *newer = first == &a ? &rb : &ra;
    CHECK_EQ_INT(first->action_rc, 1);
    CHECK_EQ_INT(atomic_load(&newer->calls), 0);
    CHECK_EQ_INT(once(loop), 2);
    CHECK_EQ_INT(atomic_load(&newer->calls), 1);
    check_probe(&a);
    check_probe(&b);
    check_probe(&ra);
    check_probe(&rb);
    afut_loop_free(loop);
    CHECK_EQ_INT(atomic_load(&a.frees) + atomic_load(&b.frees), 2);
    CHECK_EQ_INT(atomic_load(&newer->frees), 1);
    close_pair(s1);
    close_pair(s2);
}

/* Removal works after the application closed the fd (the kernel dropped it from the poller
 * already); and a watcher on an fd number that was closed and reused for another file can be
 * replaced, the new file then being watched. */
TEST(closed_and_reused_fd_numbers) {
    afut_loop_t *loop = afut_loop_new();
    int sv[2];
    make_pair(sv);
    probe_t r;
    probe_init(&r, loop, sv[0], false, 'r');
    CHECK_EQ_INT(watch(&r), AFUT_OK);
    close(sv[0]);
    CHECK(afut_loop_remove_reader(loop, sv[0]));
    CHECK_EQ_INT(atomic_load(&r.frees), 1);
    close(sv[1]);

    int a[2], b[2];
    make_pair(a);
    probe_t old;
    probe_init(&old, loop, a[0], false, 'o');
    CHECK_EQ_INT(watch(&old), AFUT_OK);
    CHECK_EQ_INT(once(loop), 0);
    int num = a[0];
    close(a[0]); /* without removing the watcher */
    close(a[1]);
    make_pair(b);
    if (b[0] != num) {
        CHECK_EQ_INT(dup2(b[0], num), num);
        close(b[0]);
        b[0] = num;
    }
    probe_t neu;
    probe_init(&neu, loop, num, false, 'n');
    neu.consume = true;
    CHECK_EQ_INT(watch(&neu), AFUT_OK);
    CHECK_EQ_INT(atomic_load(&old.frees), 1);
    CHECK_EQ_INT(once(loop), 0);
    send_bytes(b[1], 1);
    CHECK_EQ_INT(once(loop), 1);
    CHECK_EQ_INT(atomic_load(&neu.calls), 1);
    CHECK_EQ_INT(atomic_load(&old.calls), 0);
    check_probe(&r);
    check_probe(&old);
    check_probe(&neu);
    afut_loop_free(loop);
    CHECK_EQ_INT(atomic_load(&neu.frees), 1);
    close_pair(b);
}

/* ============================================================ run_forever, threads */

/* A reader may stop the loop; run_forever returns at the end of that iteration. */
TEST(reader_stops_run_forever) {
    afut_loop_t *loop = afut_loop_new();
    int sv[2];
    make_pair(sv);
    probe_t r;
    probe_init(&r, loop, sv[0], false, 'r');
    r.action = ACT_STOP;
    r.consume = true;
    CHECK_EQ_INT(watch(&r), AFUT_OK);
    send_bytes(sv[1], 1);
    watchdog_t wd;
    watchdog_start(&wd, loop, 5.0);
    CHECK_EQ_INT(afut_loop_run_forever(loop), AFUT_OK);
    CHECK(!watchdog_finish(&wd));
    CHECK_EQ_INT(atomic_load(&r.calls), 1);
    check_probe(&r);
    afut_loop_free(loop);
    CHECK_EQ_INT(atomic_load(&r.frees), 1);
    close_pair(sv);
}

typedef struct registrar {
    afut_loop_t *loop;
    probe_t *p;
    int write_fd;    /* >= 0: write a byte here */
    bool write_first; /* write before registering (else after) */
    double delay;
    double t_act;
    afut_status_t rc;
    pthread_t th;
} registrar_t;

static void *registrar_main(void *arg) {
    registrar_t *g = arg;
    sleep_s(g->delay);
    g->t_act = now_s();
    if (g->write_fd >= 0 && g->write_first) send_bytes(g->write_fd, 1);
    g->rc = watch(g->p);
    if (g->write_fd >= 0 && !g->write_first) {
        sleep_s(g->delay);
        g->t_act = now_s();
        send_bytes(g->write_fd, 1);
    }
    return NULL;
}

/* Registration from another thread while the loop is blocked in run_forever (nothing else
 * scheduled): the loop wakes and runs the watcher on its own thread, whether the fd was ready
 * before the registration (the registration must wake it), became ready after it, or is a
 * writer (ready at once). */
TEST(registration_from_another_thread_wakes_run_forever) {
    for (int mode = 0; mode < 3; mode++) {
        afut_loop_t *loop = afut_loop_new();
        int sv[2];
        make_pair(sv);
        probe_t p;
        probe_init(&p, loop, sv[0], mode == 2, mode == 2 ? 'w' : 'r');
        p.action = ACT_STOP;
        p.consume = true;
        registrar_t g = {.loop = loop, .p = &p, .write_fd = mode == 2 ? -1 : sv[1],
                         .write_first = mode == 0, .delay = 0.05};
        watchdog_t wd;
        watchdog_start(&wd, loop, 5.0);
        pthread_create(&g.th, NULL, registrar_main, &g);
        CHECK_EQ_INT(afut_loop_run_forever(loop), AFUT_OK);
        double woke = now_s();
        pthread_join(g.th, NULL);
        if (watchdog_finish(&wd)) fprintf(stderr, "  mode %d: the loop never woke\n", mode);
        CHECK_EQ_INT(g.rc, AFUT_OK);
        CHECK_EQ_INT(atomic_load(&p.calls), 1);
        CHECK(woke - g.t_act < max_latency());
        check_probe(&p);
        afut_loop_free(loop);
        CHECK_EQ_INT(atomic_load(&p.frees), 1);
        close_pair(sv);
    }
}

typedef struct remover {
    afut_loop_t *loop;
    probe_t *p;
    double delay;
    bool removed;
    pthread_t th;
} remover_t;

static void *remover_main(void *arg) {
    remover_t *m = arg;
    sleep_s(m->delay);
    m->removed = unwatch(m->p);
    /* give the loop a few iterations to prove the watcher is gone, then stop it */
    sleep_s(0.02);
    afut_loop_stop(m->loop);
    return NULL;
}

/* Removal from another thread while the loop runs the (always ready) watcher in every
 * iteration: the watcher stops being called and its userdata is freed once, never while its
 * callback runs. */
TEST(removal_from_another_thread) {
    afut_loop_t *loop = afut_loop_new();
    int sv[2];
    make_pair(sv);
    probe_t w;
    probe_init(&w, loop, sv[0], true, 'w'); /* writable: runs every iteration */
    CHECK_EQ_INT(watch(&w), AFUT_OK);
    remover_t m = {.loop = loop, .p = &w, .delay = 0.03};
    watchdog_t wd;
    watchdog_start(&wd, loop, 5.0);
    pthread_create(&m.th, NULL, remover_main, &m);
    CHECK_EQ_INT(afut_loop_run_forever(loop), AFUT_OK);
    pthread_join(m.th, NULL);
    CHECK(!watchdog_finish(&wd));
    CHECK(m.removed);
    CHECK(atomic_load(&w.calls) > 0);
    CHECK_EQ_INT(atomic_load(&w.frees), 1);
    int calls = atomic_load(&w.calls);
    CHECK_EQ_INT(once(loop), 0);
    CHECK_EQ_INT(atomic_load(&w.calls), calls);
    check_probe(&w);
    afut_loop_free(loop);
    CHECK_EQ_INT(atomic_load(&w.frees), 1);
    close_pair(sv);
}

/* Many threads adding, replacing and removing watchers on shared fds (always ready, so the
 * loop runs them in every iteration) while the loop runs: every accepted registration's
 * userdata is freed exactly once, never used after that, and callbacks only run on the loop's
 * thread. */
enum { CHURN_FDS = 8, CHURN_THREADS = 2 };

/* ThreadSanitizer: the library is not instrumented, so TSan cannot see that a token's free
 * (on whichever thread drops the last reference) comes after its callbacks. `runs` makes that
 * edge visible: each callback ends with a release increment, the free starts with an acquire
 * load. A free that really overlapped a callback would read an older value and still be
 * reported against the callback's earlier accesses. */
typedef struct churn_token {
    atomic_int published;
    atomic_int runs;
    int fd;
} churn_token_t;

static atomic_long churn_accepted, churn_freed, churn_ran, churn_unpublished, churn_wrong_thread;
static pthread_t churn_loop_thread;

static void churn_cb(void *ud) {
    churn_token_t *k = ud;
    if (atomic_load_explicit(&k->published, memory_order_acquire) != 1)
        atomic_fetch_add(&churn_unpublished, 1);
    if (!pthread_equal(pthread_self(), churn_loop_thread)) atomic_fetch_add(&churn_wrong_thread, 1);
    atomic_fetch_add(&churn_ran, 1);
    atomic_fetch_add_explicit(&k->runs, 1, memory_order_acq_rel);
}

static void churn_free(void *ud) {
    churn_token_t *k = ud;
    if (atomic_load_explicit(&k->published, memory_order_acquire) != 1)
        atomic_fetch_add(&churn_unpublished, 1);
    (void)atomic_load_explicit(&k->runs, memory_order_acquire);
    atomic_store(&k->published, 2);
    atomic_fetch_add(&churn_freed, 1);
    free(k);
}

typedef struct churner {
    afut_loop_t *loop;
    int *fds;
    long n;
    unsigned seed;
    long removed, refused;
    pthread_t th;
} churner_t;

static void *churner_main(void *arg) {
    churner_t *c = arg;
    for (long i = 0; i < c->n; i++) {
        int fd = c->fds[rand_r(&c->seed) % CHURN_FDS];
        int kind = rand_r(&c->seed) % 2;
        if (rand_r(&c->seed) % 3 != 0) {
            churn_token_t *k = malloc(sizeof *k);
            if (!k) abort();
            k->fd = fd;
            atomic_init(&k->runs, 0);
            atomic_store_explicit(&k->published, 1, memory_order_release);
            afut_status_t rc = kind ? afut_loop_add_writer(c->loop, fd, churn_cb, k, churn_free)
                                    : afut_loop_add_reader(c->loop, fd, churn_cb, k, churn_free);
            if (rc == AFUT_OK) {
                atomic_fetch_add(&churn_accepted, 1);
            } else {
                c->refused++;
                free(k);
            }
        } else if (kind ? afut_loop_remove_writer(c->loop, fd) : afut_loop_remove_reader(c->loop, fd)) {
            c->removed++;
        }
        if ((i & 31) == 31) sched_yield();
    }
    return NULL;
}

typedef struct joiner {
    afut_loop_t *loop;
    churner_t *c;
    pthread_t th;
} joiner_t;

/* Joins the churners, then stops the loop. */
static void *joiner_main(void *arg) {
    joiner_t *j = arg;
    for (int i = 0; i < CHURN_THREADS; i++) pthread_join(j->c[i].th, NULL);
    afut_loop_stop(j->loop);
    return NULL;
}

TEST(threads_add_replace_remove_while_the_loop_runs) {
    afut_loop_t *loop = afut_loop_new();
    int pairs[CHURN_FDS][2], fds[CHURN_FDS];
    for (int i = 0; i < CHURN_FDS; i++) {
        make_pair(pairs[i]);
        send_bytes(pairs[i][1], 1); /* readable forever (nobody reads) */
        fds[i] = pairs[i][0];
    }
    atomic_store(&churn_accepted, 0);
    atomic_store(&churn_freed, 0);
    atomic_store(&churn_ran, 0);
    atomic_store(&churn_unpublished, 0);
    atomic_store(&churn_wrong_thread, 0);
    churn_loop_thread = pthread_self();
    churner_t c[CHURN_THREADS];
    for (int i = 0; i < CHURN_THREADS; i++) {
        c[i] = (churner_t){.loop = loop, .fds = fds, .n = scaled(20000), .seed = 1234u + (unsigned)i};
        pthread_create(&c[i].th, NULL, churner_main, &c[i]);
    }
    joiner_t j = {.loop = loop, .c = c};
    pthread_create(&j.th, NULL, joiner_main, &j);
    watchdog_t wd;
    watchdog_start(&wd, loop, 60.0);
    CHECK_EQ_INT(afut_loop_run_forever(loop), AFUT_OK);
    pthread_join(j.th, NULL);
    CHECK(!watchdog_finish(&wd));
    long removed = 0, refused = 0;
    for (int i = 0; i < CHURN_THREADS; i++) {
        removed += c[i].removed;
        refused += c[i].refused;
    }
    CHECK_EQ_INT(refused, 0);
    CHECK(removed > 0);
    CHECK(atomic_load(&churn_ran) > 0);
    /* what is still registered is freed by the close, once */
    CHECK(atomic_load(&churn_freed) <= atomic_load(&churn_accepted));
    afut_loop_free(loop);
    CHECK_EQ_INT(atomic_load(&churn_freed), atomic_load(&churn_accepted));
    CHECK_EQ_INT(atomic_load(&churn_unpublished), 0);
    CHECK_EQ_INT(atomic_load(&churn_wrong_thread), 0);
    for (int i = 0; i < CHURN_FDS; i++) close_pair(pairs[i]);
}

/* ============================================================ close / free */

static void never_cb(void *ud) { (void)ud; }

/* Close releases every watcher once (readers and writers, on several fds); afterwards adds
 * return AFUT_ERR_LOOP_CLOSED (the userdata stays the caller's) and removes return false. */
TEST(close_releases_every_watcher_once) {
    afut_loop_t *loop = afut_loop_new();
    int s1[2], s2[2];
    make_pair(s1);
    make_pair(s2);
    probe_t p[4];
    probe_init(&p[0], loop, s1[0], false, 'a');
    probe_init(&p[1], loop, s1[0], true, 'b');
    probe_init(&p[2], loop, s2[0], false, 'c');
    probe_init(&p[3], loop, s2[1], true, 'd');
    for (int i = 0; i < 4; i++) CHECK_EQ_INT(watch(&p[i]), AFUT_OK);
    send_bytes(s1[1], 1);
    CHECK(once(loop) >= 2);
    CHECK_EQ_INT(afut_loop_close(loop), AFUT_OK);
    for (int i = 0; i < 4; i++) CHECK_EQ_INT(atomic_load(&p[i].frees), 1);
    CHECK(!afut_loop_remove_reader(loop, s1[0]));
    CHECK(!afut_loop_remove_writer(loop, s1[0]));
    probe_t late;
    probe_init(&late, loop, s1[0], false, 'l');
    CHECK_EQ_INT(watch(&late), AFUT_ERR_LOOP_CLOSED);
    late.writer = true;
    CHECK_EQ_INT(watch(&late), AFUT_ERR_LOOP_CLOSED);
    CHECK_EQ_INT(atomic_load(&late.frees), 0);
    CHECK_EQ_INT(afut_loop_close(loop), AFUT_OK);
    afut_loop_free(loop);
    for (int i = 0; i < 4; i++) {
        CHECK_EQ_INT(atomic_load(&p[i].frees), 1);
        check_probe(&p[i]);
    }
    CHECK_EQ_INT(atomic_load(&late.frees), 0);
    close_pair(s1);
    close_pair(s2);
}

/* afut_loop_free without a close releases them too. */
TEST(free_releases_every_watcher_once) {
    afut_loop_t *loop = afut_loop_new();
    int sv[2];
    make_pair(sv);
    probe_t r, w;
    probe_init(&r, loop, sv[0], false, 'r');
    probe_init(&w, loop, sv[1], true, 'w');
    CHECK_EQ_INT(watch(&r), AFUT_OK);
    CHECK_EQ_INT(watch(&w), AFUT_OK);
    afut_loop_free(loop);
    CHECK_EQ_INT(atomic_load(&r.frees), 1);
    CHECK_EQ_INT(atomic_load(&w.frees), 1);
    close_pair(sv);
}

/* A userdata_free that calls back into the loop while close releases the watchers: no
 * deadlock, the loop is closed for it (remove false, add refused, nothing taken). */
typedef struct reentrant {
    afut_loop_t *loop;
    int fd;
    bool removed;
    afut_status_t add_rc;
    int frees;
    probe_t late;
} reentrant_t;

static void reentrant_free(void *ud) {
    reentrant_t *e = ud;
    e->frees++;
    e->removed = afut_loop_remove_reader(e->loop, e->fd);
    probe_init(&e->late, e->loop, e->fd, false, 'l');
    e->add_rc = watch(&e->late);
}

TEST(userdata_free_reentering_the_loop_during_close) {
    afut_loop_t *loop = afut_loop_new();
    int sv[2];
    make_pair(sv);
    reentrant_t e = {.loop = loop, .fd = sv[0]};
    CHECK_EQ_INT(afut_loop_add_reader(loop, sv[0], never_cb, &e, reentrant_free), AFUT_OK);
    CHECK_EQ_INT(afut_loop_close(loop), AFUT_OK);
    CHECK_EQ_INT(e.frees, 1);
    CHECK(!e.removed);
    CHECK_EQ_INT(e.add_rc, AFUT_ERR_LOOP_CLOSED);
    CHECK_EQ_INT(atomic_load(&e.late.frees), 0);
    afut_loop_free(loop);
    CHECK_EQ_INT(e.frees, 1);

    /* and while replacing on a live loop: the old userdata's free adds a watcher of its own */
    loop = afut_loop_new();
    reentrant_t f = {.loop = loop, .fd = sv[1]};
    CHECK_EQ_INT(afut_loop_add_reader(loop, sv[1], never_cb, &f, reentrant_free), AFUT_OK);
    probe_t repl;
    probe_init(&repl, loop, sv[1], false, 'r');
    CHECK_EQ_INT(watch(&repl), AFUT_OK); /* frees f: which removes repl, then adds f.late */
    CHECK_EQ_INT(f.frees, 1);
    CHECK(f.removed);
    CHECK_EQ_INT(atomic_load(&repl.frees), 1);
    CHECK_EQ_INT(f.add_rc, AFUT_OK);
    CHECK(afut_loop_remove_reader(loop, sv[1])); /* f.late */
    CHECK_EQ_INT(atomic_load(&f.late.frees), 1);
    afut_loop_free(loop);
    CHECK_EQ_INT(f.frees, 1);
    close_pair(sv);
}

/* afut_loop_close from inside a watcher is refused (the loop runs), the watchers stay. */
TEST(close_from_a_watcher_is_refused) {
    afut_loop_t *loop = afut_loop_new();
    int sv[2];
    make_pair(sv);
    probe_t r;
    probe_init(&r, loop, sv[0], false, 'r');
    r.action = ACT_CLOSE_LOOP;
    CHECK_EQ_INT(watch(&r), AFUT_OK);
    send_bytes(sv[1], 1);
    CHECK_EQ_INT(once(loop), 1);
    CHECK_EQ_INT(r.action_rc, AFUT_ERR_LOOP_RUNNING);
    CHECK(!afut_loop_is_closed(loop));
    CHECK_EQ_INT(once(loop), 1);
    CHECK_EQ_INT(atomic_load(&r.frees), 0);
    afut_loop_free(loop);
    CHECK_EQ_INT(atomic_load(&r.frees), 1);
    close_pair(sv);
}

/* ============================================================ a task awaiting readiness */

/* The pattern of examples/echo_server.c: a future completed by a one-shot reader (which
 * removes itself), awaited by a task. */
typedef struct readable_fut {
    afut_loop_t *loop;
    int fd;
    afut_t *fut;
} readable_fut_t;

static void readable_fut_free(void *ud) {
    readable_fut_t *w = ud;
    afut_unref(w->fut);
    free(w);
}

static void readable_fut_cb(void *ud) {
    readable_fut_t *w = ud;
    afut_t *fut = w->fut; /* w stays valid until this callback returns */
    afut_loop_remove_reader(w->loop, w->fd);
    if (!afut_done(fut)) afut_set_result(fut, NULL, NULL);
}

/* A future of `loop` done when fd is readable. */
static afut_t *wait_readable(afut_loop_t *loop, int fd) {
    readable_fut_t *w = malloc(sizeof *w);
    if (!w) abort();
    w->loop = loop;
    w->fd = fd;
    w->fut = afut_loop_create_future(loop);
    afut_t *ret = afut_ref(w->fut);
    if (afut_loop_add_reader(loop, fd, readable_fut_cb, w, readable_fut_free) != AFUT_OK) {
        afut_cancel(ret, "add_reader failed");
        readable_fut_free(w);
    }
    return ret;
}

typedef struct reader_task {
    int fd;
    int wakeups;
    long got;
    long want;
} reader_task_t;

static void reader_step(afut_t *task, afut_t *awaited, void *ud) {
    reader_task_t *t = ud;
    if (awaited && afut_cancelled(awaited)) return;
    if (awaited) t->wakeups++;
    t->got += drain_fd(t->fd);
    if (t->got >= t->want) {
        afut_set_result(task, NULL, NULL);
        return;
    }
    afut_t *fut = wait_readable(afut_get_loop(task), t->fd);
    afut_task_await(task, fut);
    afut_unref(fut);
}

typedef struct trickle {
    int fd;
    int n;
    pthread_t th;
} trickle_t;

static void *trickle_main(void *arg) {
    trickle_t *t = arg;
    for (int i = 0; i < t->n; i++) {
        sleep_s(0.005);
        send_bytes(t->fd, 10);
    }
    return NULL;
}

TEST(task_awaits_readable_futures) {
    afut_loop_t *loop = afut_loop_new();
    int sv[2];
    make_pair(sv);
    reader_task_t rt = {.fd = sv[0], .want = 200};
    afut_t *task = afut_task_new(loop, reader_step, &rt, NULL);
    trickle_t tr = {.fd = sv[1], .n = 20};
    pthread_create(&tr.th, NULL, trickle_main, &tr);
    watchdog_t wd;
    watchdog_start(&wd, loop, 10.0);
    CHECK_EQ_INT(afut_loop_run_until_complete(loop, task), AFUT_OK);
    CHECK(!watchdog_finish(&wd));
    pthread_join(tr.th, NULL);
    CHECK_EQ_INT(rt.got, 200);
    CHECK(rt.wakeups >= 1);
    CHECK(!afut_loop_remove_reader(loop, sv[0])); /* each one-shot reader removed itself */
    afut_unref(task);

    /* cancelling the task while it awaits: the reader stays until it fires or the loop closes,
     * and closing frees it */
    reader_task_t rt2 = {.fd = sv[0], .want = 1000};
    afut_t *t2 = afut_task_new(loop, reader_step, &rt2, NULL);
    CHECK_EQ_INT(once(loop), 1); /* first step: awaits */
    CHECK(afut_cancel(t2, "bye"));
    CHECK_EQ_INT(afut_loop_run_until_complete(loop, t2), AFUT_ERR_CANCELLED);
    afut_unref(t2);
    afut_loop_free(loop); /* frees the pending one-shot reader (and its future reference) */
    close_pair(sv);
}

/* ============================================================ host mode */

/* The loop's fd is readable while a watched fd is ready and not while idle; run_once(0) runs
 * the reader; afut_loop_timeout_ms leaves watchers to the fd. */
TEST(host_fd_follows_watched_fds) {
    afut_loop_t *loop = afut_loop_new();
    int lfd = afut_loop_fd(loop);
    int sv[2];
    make_pair(sv);
    probe_t r;
    probe_init(&r, loop, sv[0], false, 'r');
    r.consume = true;
    CHECK_EQ_INT(watch(&r), AFUT_OK);
    CHECK_EQ_INT(test_readable(lfd, 0), 0);
    CHECK_EQ_INT(test_readable(lfd, 30), 0);
    CHECK_EQ_INT(afut_loop_timeout_ms(loop), -1);
    send_bytes(sv[1], 1);
    CHECK_EQ_INT(test_readable(lfd, soon_ms()), 1);
    CHECK_EQ_INT(afut_loop_timeout_ms(loop), -1); /* nothing scheduled: the fd covers it */
    CHECK_EQ_INT(once(loop), 1);
    CHECK_EQ_INT(atomic_load(&r.calls), 1);
    CHECK_EQ_INT(test_readable(lfd, 0), 0);
    CHECK_EQ_INT(test_readable(lfd, 30), 0);
    /* a timer beside the watcher: timeout_ms follows the timer */
    CHECK(afut_loop_call_later(loop, 100.0, never_cb, NULL, NULL) != 0);
    int t = afut_loop_timeout_ms(loop);
    CHECK(t >= 99000 && t <= 100000);
    CHECK_EQ_INT(test_readable(lfd, 0), 0);
    /* added while the data is already there: readable right after the registration */
    send_bytes(sv[1], 1);
    CHECK(afut_loop_remove_reader(loop, sv[0]));
    CHECK_EQ_INT(atomic_load(&r.frees), 1);
    /* Removed while ready: the fd goes quiet. On a poller without an fd of its own the relay
     * may have raised the fd already; then one run_once (running nothing) quiets it. */
    if (test_readable(lfd, 30)) CHECK_EQ_INT(once(loop), 0);
    CHECK_EQ_INT(test_readable(lfd, 30), 0);
    probe_t r2;
    probe_init(&r2, loop, sv[0], false, 'R');
    r2.consume = true;
    CHECK_EQ_INT(watch(&r2), AFUT_OK);
    CHECK_EQ_INT(test_readable(lfd, soon_ms()), 1);
    CHECK_EQ_INT(once(loop), 1);
    CHECK_EQ_INT(atomic_load(&r2.calls), 1);
    CHECK_EQ_INT(test_readable(lfd, 30), 0);
    /* a writer: ready at once */
    probe_t w;
    probe_init(&w, loop, sv[0], true, 'w');
    w.action = ACT_REMOVE_SELF;
    CHECK_EQ_INT(watch(&w), AFUT_OK);
    CHECK_EQ_INT(test_readable(lfd, soon_ms()), 1);
    CHECK_EQ_INT(once(loop), 1);
    CHECK_EQ_INT(atomic_load(&w.calls), 1);
    CHECK_EQ_INT(test_readable(lfd, 30), 0);
    check_probe(&r);
    check_probe(&r2);
    check_probe(&w);
    afut_loop_free(loop);
    CHECK_EQ_INT(atomic_load(&r.frees), 1);
    CHECK_EQ_INT(atomic_load(&r2.frees), 1);
    CHECK_EQ_INT(atomic_load(&w.frees), 1);
    close_pair(sv);
}

/* Level-triggered through the host fd: a reader that does not consume keeps the loop's fd
 * readable after each run_once. */
TEST(host_fd_stays_readable_while_data_is_left) {
    afut_loop_t *loop = afut_loop_new();
    int lfd = afut_loop_fd(loop);
    int sv[2];
    make_pair(sv);
    probe_t r;
    probe_init(&r, loop, sv[0], false, 'r');
    CHECK_EQ_INT(watch(&r), AFUT_OK);
    send_bytes(sv[1], 1);
    for (int i = 1; i <= 3; i++) {
        CHECK_EQ_INT(test_readable(lfd, soon_ms()), 1);
        CHECK_EQ_INT(once(loop), 1);
        CHECK_EQ_INT(atomic_load(&r.calls), i);
    }
    drain_fd(sv[0]);
    CHECK_EQ_INT(once(loop), 0);
    CHECK_EQ_INT(test_readable(lfd, 30), 0);
    check_probe(&r);
    afut_loop_free(loop);
    close_pair(sv);
}

/* An edge-triggered host (EPOLLET on the loop's fd) calling run_once once per event: a reader
 * that takes one byte per call must get a fresh edge while bytes are left, or the host stalls.
 * Every byte is delivered with events alone (an epoll_wait that times out is a stall). */
typedef struct one_byte {
    int fd;
    int got;
} one_byte_t;

static void one_byte_cb(void *ud) {
    one_byte_t *o = ud;
    char c;
    if (read(o->fd, &c, 1) == 1) o->got++;
}

TEST(edge_triggered_host_gets_a_fresh_edge_while_ready) {
    afut_loop_t *loop = afut_loop_new();
    int lfd = afut_loop_fd(loop);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.fd = lfd};
    CHECK_EQ_INT(epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev), 0);
    int sv[2];
    make_pair(sv);
    one_byte_t o = {.fd = sv[0]};
    CHECK_EQ_INT(afut_loop_add_reader(loop, sv[0], one_byte_cb, &o, NULL), AFUT_OK);
    send_bytes(sv[1], 10);
    int stalls = 0, events = 0;
    double deadline = now_s() + budget(5.0);
    while (o.got < 10 && now_s() < deadline) {
        struct epoll_event got;
        int n = epoll_wait(ep, &got, 1, 1000);
        if (n <= 0) {
            stalls++;
            if (stalls > 3) break;
            continue;
        }
        events++;
        afut_loop_run_once(loop, 0, NULL);
    }
    if (o.got != 10) fprintf(stderr, "  got %d of 10 bytes; %d events, %d stalls\n", o.got, events, stalls);
    CHECK_EQ_INT(o.got, 10);
    CHECK_EQ_INT(stalls, 0);
    /* all consumed: the host goes quiet */
    struct epoll_event got;
    int quiet_events = 0;
    for (int i = 0; i < 3; i++) {
        if (epoll_wait(ep, &got, 1, 30) > 0) {
            quiet_events++;
            afut_loop_run_once(loop, 0, NULL);
        }
    }
    CHECK(quiet_events <= 1); /* at most the edge of the last byte's iteration */
    CHECK_EQ_INT(test_readable(lfd, 0), 0);
    close(ep);
    afut_loop_free(loop);
    close_pair(sv);
}

/* A host's poll() loop on the loop's fd and timeout_ms, echoing messages that another thread
 * sends over a socketpair and reads back: the whole host contract with watchers. */
typedef struct echo_peer {
    int fd;
    int n;
    atomic_int echoed;
    atomic_int bad;
    pthread_t th;
} echo_peer_t;

static void *echo_peer_main(void *arg) {
    echo_peer_t *e = arg;
    for (int i = 0; i < e->n; i++) {
        unsigned char out = (unsigned char)i, in = 0;
        if (send(e->fd, &out, 1, MSG_NOSIGNAL) != 1) {
            atomic_fetch_add(&e->bad, 1);
            return NULL;
        }
        struct pollfd p = {.fd = e->fd, .events = POLLIN};
        if (poll(&p, 1, 10000) != 1 || read(e->fd, &in, 1) != 1) {
            atomic_fetch_add(&e->bad, 1);
            return NULL;
        }
        if (in != out) atomic_fetch_add(&e->bad, 1);
        atomic_fetch_add(&e->echoed, 1);
    }
    return NULL;
}

static void echo_back_cb(void *ud) {
    int fd = *(int *)ud;
    unsigned char buf[64];
    ssize_t r = read(fd, buf, sizeof buf);
    if (r > 0) send(fd, buf, (size_t)r, MSG_NOSIGNAL);
}

TEST(host_poll_loop_serves_a_watched_socket) {
    afut_loop_t *loop = afut_loop_new();
    int lfd = afut_loop_fd(loop);
    int sv[2];
    make_pair(sv);
    CHECK_EQ_INT(afut_loop_add_reader(loop, sv[0], echo_back_cb, &sv[0], NULL), AFUT_OK);
    echo_peer_t e = {.fd = sv[1], .n = (int)scaled(2000)};
    atomic_init(&e.echoed, 0);
    atomic_init(&e.bad, 0);
    pthread_create(&e.th, NULL, echo_peer_main, &e);
    double deadline = now_s() + budget(20.0);
    long dispatches = 0;
    while (now_s() < deadline) {
        int t = afut_loop_timeout_ms(loop);
        struct pollfd p = {.fd = lfd, .events = POLLIN};
        int wait = t < 0 || t > 50 ? 50 : t;
        poll(&p, 1, wait);
        afut_loop_run_once(loop, 0, NULL);
        dispatches++;
        if (atomic_load(&e.echoed) >= e.n || atomic_load(&e.bad)) break;
    }
    pthread_join(e.th, NULL);
    CHECK_EQ_INT(atomic_load(&e.bad), 0);
    CHECK_EQ_INT(atomic_load(&e.echoed), e.n);
    CHECK(dispatches >= e.n);
    CHECK(afut_loop_remove_reader(loop, sv[0]));
    afut_loop_free(loop);
    close_pair(sv);
}

/* ============================================================ bad input */

TEST(bad_input_returns_a_status_and_takes_nothing) {
    afut_loop_t *loop = afut_loop_new();
    int sv[2];
    make_pair(sv);
    probe_t p;
    probe_init(&p, loop, sv[0], false, 'p');

    CHECK_EQ_INT(afut_loop_add_reader(NULL, sv[0], probe_cb, &p, probe_free), AFUT_ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(afut_loop_add_writer(NULL, sv[0], probe_cb, &p, probe_free), AFUT_ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(afut_loop_add_reader(loop, sv[0], NULL, &p, probe_free), AFUT_ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(afut_loop_add_writer(loop, sv[0], NULL, &p, probe_free), AFUT_ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(afut_loop_add_reader(loop, -1, probe_cb, &p, probe_free), AFUT_ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(afut_loop_add_writer(loop, -1, probe_cb, &p, probe_free), AFUT_ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(afut_loop_add_reader(loop, INT_MIN, probe_cb, &p, probe_free), AFUT_ERR_INVALID_ARGUMENT);
    CHECK(!afut_loop_remove_reader(NULL, sv[0]));
    CHECK(!afut_loop_remove_writer(NULL, sv[0]));
    CHECK(!afut_loop_remove_reader(loop, -1));
    CHECK(!afut_loop_remove_writer(loop, INT_MIN));
    CHECK(!afut_loop_remove_reader(loop, sv[0])); /* nothing registered */
    CHECK(!afut_loop_remove_writer(loop, sv[0]));

    /* a regular file: refused on every backend, EPERM as epoll says */
    char path[] = "/tmp/afut-watchers-XXXXXX";
    int file = mkstemp(path);
    CHECK(file >= 0);
    unlink(path);
    errno = 0;
    CHECK_EQ_INT(afut_loop_add_reader(loop, file, probe_cb, &p, probe_free), AFUT_ERR_OS);
    CHECK_EQ_INT(errno, EPERM);
    errno = 0;
    CHECK_EQ_INT(afut_loop_add_writer(loop, file, probe_cb, &p, probe_free), AFUT_ERR_OS);
    CHECK_EQ_INT(errno, EPERM);
    CHECK(!afut_loop_remove_reader(loop, file));
    CHECK(!afut_loop_remove_writer(loop, file));
    close(file);
    /* a directory: the same */
    int dir = open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    CHECK(dir >= 0);
    errno = 0;
    CHECK_EQ_INT(afut_loop_add_reader(loop, dir, probe_cb, &p, probe_free), AFUT_ERR_OS);
    CHECK_EQ_INT(errno, EPERM);
    close(dir);

    /* an fd number that is not open: EBADF */
    int gone = dup(sv[0]);
    CHECK(gone >= 0);
    close(gone);
    errno = 0;
    CHECK_EQ_INT(afut_loop_add_reader(loop, gone, probe_cb, &p, probe_free), AFUT_ERR_OS);
    CHECK_EQ_INT(errno, EBADF);
    errno = 0;
    CHECK_EQ_INT(afut_loop_add_writer(loop, 1 << 28, probe_cb, &p, probe_free), AFUT_ERR_OS);
    CHECK_EQ_INT(errno, EBADF);
    CHECK(!afut_loop_remove_reader(loop, gone));

    /* the loop's own fd: refused with a status by every backend (a poller cannot watch itself) */
    int lfd = afut_loop_fd(loop);
    afut_status_t self_rc = afut_loop_add_reader(loop, lfd, probe_cb, &p, probe_free);
    CHECK(self_rc < 0);
    CHECK(!afut_loop_remove_reader(loop, lfd));

    CHECK_EQ_INT(atomic_load(&p.frees), 0);
    CHECK_EQ_INT(atomic_load(&p.calls), 0);

    /* a refused replacement leaves the registered watcher as it was */
    probe_t keep;
    probe_init(&keep, loop, sv[0], false, 'k');
    CHECK_EQ_INT(watch(&keep), AFUT_OK);
    CHECK_EQ_INT(afut_loop_add_reader(loop, sv[0], NULL, &p, probe_free), AFUT_ERR_INVALID_ARGUMENT);
    send_bytes(sv[1], 1);
    CHECK_EQ_INT(once(loop), 1);
    CHECK_EQ_INT(atomic_load(&keep.calls), 1);
    CHECK_EQ_INT(atomic_load(&keep.frees), 0);

    /* a closed loop */
    CHECK_EQ_INT(afut_loop_close(loop), AFUT_OK);
    CHECK_EQ_INT(atomic_load(&keep.frees), 1);
    CHECK_EQ_INT(afut_loop_add_reader(loop, sv[0], probe_cb, &p, probe_free), AFUT_ERR_LOOP_CLOSED);
    CHECK_EQ_INT(afut_loop_add_writer(loop, sv[0], probe_cb, &p, probe_free), AFUT_ERR_LOOP_CLOSED);
    CHECK(!afut_loop_remove_reader(loop, sv[0]));
    CHECK_EQ_INT(atomic_load(&p.frees), 0);
    afut_loop_free(loop);
    CHECK_EQ_INT(atomic_load(&p.frees), 0);
    CHECK_EQ_INT(atomic_load(&keep.frees), 1);
    close_pair(sv);
}

/* ============================================================ many fds */

typedef struct many {
    int fd;
    int calls;
} many_t;

static void many_cb(void *ud) {
    many_t *m = ud;
    m->calls++;
    drain_fd(m->fd);
}

static atomic_int many_frees;
static void many_free(void *ud) {
    (void)ud;
    atomic_fetch_add(&many_frees, 1);
}

/* 1000 socketpairs watched at once (fd numbers past FD_SETSIZE), RLIMIT_NOFILE raised as far
 * as the hard limit allows: every ready reader runs in the one run_once that sees them all,
 * then every writer; removal and free release each userdata once. */
TEST(a_thousand_socketpairs) {
    struct rlimit rl;
    CHECK_EQ_INT(getrlimit(RLIMIT_NOFILE, &rl), 0);
    rlim_t want = 2 * 1000 + 64;
    if (rl.rlim_cur < want) {
        struct rlimit nl = rl;
        nl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= want ? want : rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &nl) == 0) rl = nl;
    }
    long n = (long)((rl.rlim_cur - 64) / 2);
    if (n > 1000) n = 1000;
    if (under_valgrind() && n > 200) n = 200;
    if (n < 100) {
        fprintf(stderr, "  RLIMIT_NOFILE %lu: only %ld pairs\n", (unsigned long)rl.rlim_cur, n);
    }
    int (*pairs)[2] = calloc((size_t)n, sizeof *pairs);
    many_t *m = calloc((size_t)n, sizeof *m);
    if (!pairs || !m) abort();
    afut_loop_t *loop = afut_loop_new();
    atomic_store(&many_frees, 0);
    int max_fd = 0;
    for (long i = 0; i < n; i++) {
        make_pair(pairs[i]);
        m[i].fd = pairs[i][0];
        if (pairs[i][1] > max_fd) max_fd = pairs[i][1];
        CHECK_EQ_INT(afut_loop_add_reader(loop, pairs[i][0], many_cb, &m[i], many_free), AFUT_OK);
    }
    if (n == 1000) CHECK(max_fd >= 1024);
    CHECK_EQ_INT(once(loop), 0);
    for (long i = 0; i < n; i++) send_bytes(pairs[i][1], 1);
    CHECK_EQ_INT(once(loop), n);
    long bad = 0;
    for (long i = 0; i < n; i++) bad += m[i].calls != 1;
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(once(loop), 0);
    /* every other one ready again */
    for (long i = 0; i < n; i += 2) send_bytes(pairs[i][1], 1);
    CHECK_EQ_INT(once(loop), (n + 1) / 2);
    /* writers on the peers: all writable at once */
    for (long i = 0; i < n; i++)
        CHECK_EQ_INT(afut_loop_add_writer(loop, pairs[i][1], never_cb, NULL, many_free), AFUT_OK);
    CHECK_EQ_INT(once(loop), n);
    /* remove half of the readers, free the loop with the rest */
    long removed = 0;
    for (long i = 0; i < n; i += 2) removed += afut_loop_remove_reader(loop, pairs[i][0]);
    CHECK_EQ_INT(removed, (n + 1) / 2);
    CHECK_EQ_INT(atomic_load(&many_frees), removed);
    afut_loop_free(loop);
    CHECK_EQ_INT(atomic_load(&many_frees), 2 * n);
    for (long i = 0; i < n; i++) close_pair(pairs[i]);
    free(pairs);
    free(m);
}

int main(void) {
    signal(SIGALRM, on_alarm);
    signal(SIGPIPE, SIG_IGN);
    alarm(under_valgrind() ? 240 : 90);
    RUNT(reader_runs_in_the_run_once_that_sees_it);
    RUNT(reader_is_level_triggered_once_per_iteration);
    RUNT(run_once_waits_for_a_watched_fd);
    RUNT(writer_runs_while_writable);
    RUNT(reader_and_writer_on_one_fd);
    RUNT(reader_removes_queued_writer_of_its_fd);
    RUNT(hangup_and_eof_count_as_readable);
    RUNT(one_iteration_runs_soon_then_io_then_timers);
    RUNT(adding_again_replaces_and_frees_the_old_once);
    RUNT(callback_removes_its_own_watcher);
    RUNT(callback_replaces_its_own_watcher);
    RUNT(removing_a_queued_watcher_cancels_it);
    RUNT(replacing_a_queued_watcher_cancels_it);
    RUNT(remove_then_add_in_one_iteration_waits_for_the_next);
    RUNT(closed_and_reused_fd_numbers);
    RUNT(reader_stops_run_forever);
    RUNT(registration_from_another_thread_wakes_run_forever);
    RUNT(removal_from_another_thread);
    RUNT(threads_add_replace_remove_while_the_loop_runs);
    RUNT(close_releases_every_watcher_once);
    RUNT(free_releases_every_watcher_once);
    RUNT(userdata_free_reentering_the_loop_during_close);
    RUNT(close_from_a_watcher_is_refused);
    RUNT(task_awaits_readable_futures);
    RUNT(host_fd_follows_watched_fds);
    RUNT(host_fd_stays_readable_while_data_is_left);
    RUNT(edge_triggered_host_gets_a_fresh_edge_while_ready);
    RUNT(host_poll_loop_serves_a_watched_socket);
    RUNT(bad_input_returns_a_status_and_takes_nothing);
    RUNT(a_thousand_socketpairs);
    TEST_END();
}
