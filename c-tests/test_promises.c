/* Regression tests for issue 10: the ten broken promises / divergences from asyncio, the two
 * smaller findings (tasks awaiting each other in a cycle; fork() with a live loop) and the
 * stale-stopper line. One TEST per item; each names the issue item, the promise of
 * include/afut.h it checks, and the SEMANTICS.md rule / CPython test it mirrors.
 *
 * Written from the descriptions, not from the implementation. Where asyncio is the
 * reference, the expected behaviour was first run in CPython 3.13.0 (the scenarios are
 * quoted in each test's comment, "[X]").
 *
 * Tests that can crash, hang or deadlock the process when the bug is present (items 1, 5, 6)
 * run their body in a forked child with its own watchdog (alarm() -> _exit(124)), so a
 * crash or a deadlock fails the test instead of the program. The other blocking steps have a
 * watchdog thread (thread_helpers.h) that stops a loop left blocked.
 *
 * Sub-cases print one line each on stdout ("    sub-case ... ok|FAILED"); the reason of a
 * failure goes to stderr. Durations are printed, never asserted. */
#define _GNU_SOURCE
#include "test.h"

#include <afut.h>

#define AFUT_SANITIZED_DIVISOR 4
#define AFUT_SANITIZED_BUDGET 4
#include "thread_helpers.h"

#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ======================================================================== helpers */

/* Sub-case bookkeeping: one line on stdout per sub-case, the failure count of the TEST. */
static int sub_fail_before;
static void sub_begin(void) { sub_fail_before = test_current_failures_; }
static int sub_end(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sub_end(const char *fmt, ...) {
    int ok = test_current_failures_ == sub_fail_before;
    char buf[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    printf("    %-60s %s\n", buf, ok ? "ok" : "FAILED");
    fflush(stdout);
    return ok;
}

/* Waits until *flag != 0, at most `secs` seconds (budget-scaled). Returns 1 if it was set. */
static int wait_flag(atomic_int *flag, double secs) {
    double end = now_s() + budget(secs);
    while (!atomic_load(flag)) {
        if (now_s() > end) return 0;
        sleep_s(0.0002);
    }
    return 1;
}

/* A counter bumped by a callback. */
static void count_cb(void *ud) { atomic_fetch_add((atomic_int *)ud, 1); }

/* ------------------------------------------------------------ forked children */

/* What a child is doing, for its watchdog message. */
static const char *volatile child_what = "";

static void child_on_alarm(int sig) {
    (void)sig;
    static const char a[] = "\n  watchdog: ";
    static const char b[] = " still running (hang or deadlock): killed\n";
    ssize_t r = write(2, a, sizeof a - 1);
    r = write(2, (const char *)child_what, strlen((const char *)child_what));
    r = write(2, b, sizeof b - 1);
    (void)r;
    _exit(124);
}

/* What the child is doing now, for its crash message (a stack overflow says where). */
static const char *volatile child_phase = "";

static void child_on_crash(int sig) {
    static const char a[] = "\n  [";
    static const char b[] = "] crashed (stack overflow?) during: ";
    ssize_t r = write(2, a, sizeof a - 1);
    r = write(2, (const char *)child_what, strlen((const char *)child_what));
    r = write(2, b, sizeof b - 1);
    r = write(2, (const char *)child_phase, strlen((const char *)child_phase));
    r = write(2, "\n", 1);
    (void)r;
    raise(sig); /* SA_RESETHAND: the default action now, so the parent sees the signal */
}

/* Reports a crash of this thread (on an alternate stack, as the thread's own may be gone).
 * Not under a sanitizer, which reports a stack overflow itself and owns the thread's
 * alternate stack. */
static void catch_crashes_on_this_thread(void) {
    if (AFUT_TEST_SANITIZED) return;
    static char alt[64 * 1024];
    stack_t ss = {.ss_sp = alt, .ss_size = sizeof alt, .ss_flags = 0};
    sigaltstack(&ss, NULL);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = child_on_crash;
    sa.sa_flags = SA_ONSTACK | SA_RESETHAND;
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGBUS, &sa, NULL);
}

typedef int (*child_fn)(void *arg);

typedef struct stack_job {
    child_fn fn;
    void *arg;
    int rc;
} stack_job_t;

static void *stack_job_main(void *p) {
    stack_job_t *j = p;
    catch_crashes_on_this_thread();
    j->rc = j->fn(j->arg);
    return NULL;
}

/* The small thread stack: 256 KiB (4x under a sanitizer, whose frames are larger). */
static size_t small_stack(void) { return (size_t)256 * 1024 * (AFUT_TEST_SANITIZED ? 4 : 1); }

/* Runs fn(arg) in a forked child: on a thread with a `stack`-byte stack (0: on the child's
 * main thread), killed by its watchdog after `alarm_s` seconds. fn returns 0 on success.
 * Returns 1 iff the child exited normally with status 0; says why not on stderr. */
static int run_in_child(const char *what, child_fn fn, void *arg, size_t stack, double alarm_s, double *took) {
    fflush(stdout);
    fflush(stderr);
    double t0 = now_s();
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "  %s: fork failed: %s\n", what, strerror(errno));
        return 0;
    }
    if (pid == 0) {
        child_what = what;
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = child_on_alarm;
        sigaction(SIGALRM, &sa, NULL);
        alarm((unsigned)ceil(alarm_s));
        int rc;
        if (stack == 0) {
            catch_crashes_on_this_thread();
            rc = fn(arg);
        } else {
            pthread_attr_t attr;
            pthread_attr_init(&attr);
            if (pthread_attr_setstacksize(&attr, stack) != 0) _exit(90);
            stack_job_t job = {fn, arg, 99};
            pthread_t th;
            if (pthread_create(&th, &attr, stack_job_main, &job) != 0) _exit(91);
            pthread_join(th, NULL);
            pthread_attr_destroy(&attr);
            rc = job.rc;
        }
        fflush(stdout);
        fflush(stderr);
        _exit(rc == 0 ? 0 : 1);
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    if (took) *took = now_s() - t0;
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) return 1;
    if (WIFEXITED(st) && WEXITSTATUS(st) == 124)
        fprintf(stderr, "  %s: did not finish within %.0f s: killed by its watchdog\n", what, alarm_s);
    else if (WIFEXITED(st))
        fprintf(stderr, "  %s: child exited with status %d (its checks failed)\n", what, WEXITSTATUS(st));
    else if (WIFSIGNALED(st))
        fprintf(stderr, "  %s: child killed by signal %d (%s)\n", what, WTERMSIG(st), strsignal(WTERMSIG(st)));
    return 0;
}

/* A child's CHECK: counts failures in the child, reports them on stderr. */
static int child_failures;
#define CCHECK(cond)                                                                           \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            child_failures++;                                                                  \
            fprintf(stderr, "  [%s] %s:%d: CHECK(%s) failed\n", (const char *)child_what,     \
                    __FILE__, __LINE__, #cond);                                                \
        }                                                                                      \
    } while (0)
#define CCHECK_EQ(a, b)                                                                        \
    do {                                                                                       \
        long long a_ = (long long)(a), b_ = (long long)(b);                                    \
        if (a_ != b_) {                                                                        \
            child_failures++;                                                                  \
            fprintf(stderr, "  [%s] %s:%d: %s == %lld, expected %lld\n", (const char *)child_what, \
                    __FILE__, __LINE__, #a, a_, b_);                                           \
        }                                                                                      \
    } while (0)

/* ------------------------------------------------------- a recording handler */

#define NEVER_MSG "exception was never retrieved"
#define DESTROYED_MSG "Task was destroyed but it is pending!"

typedef struct reports {
    atomic_int never;      /* "... exception was never retrieved" */
    atomic_int destroyed;  /* "Task was destroyed but it is pending!" */
    atomic_int other;
    int codes[16];         /* exception codes of the never-retrieved reports */
    atomic_int ncodes;
} reports_t;

static void reports_handler(afut_loop_t *loop, const afut_error_context_t *ctx, void *ud) {
    (void)loop;
    reports_t *r = ud;
    const char *m = ctx && ctx->message ? ctx->message : "";
    if (strstr(m, NEVER_MSG)) {
        atomic_fetch_add(&r->never, 1);
        int i = atomic_fetch_add(&r->ncodes, 1);
        if (i < 16) r->codes[i] = ctx->exception ? ctx->exception->code : 0;
    } else if (strstr(m, DESTROYED_MSG)) {
        atomic_fetch_add(&r->destroyed, 1);
    } else {
        atomic_fetch_add(&r->other, 1);
    }
}

static int reports_count_code(reports_t *r, int code) {
    int n = 0, k = atomic_load(&r->ncodes);
    for (int i = 0; i < k && i < 16; i++) n += r->codes[i] == code;
    return n;
}

static afut_loop_t *new_loop_with(reports_t *r) {
    afut_loop_t *loop = afut_loop_new();
    if (r) {
        memset(r, 0, sizeof *r);
        afut_loop_set_exception_handler(loop, reports_handler, r, NULL);
    }
    return loop;
}

/* Runs `loop` until an iteration runs nothing (at most `max` iterations). */
static void spin(afut_loop_t *loop, int max) {
    for (int i = 0; i < max; i++) {
        size_t ran = 0;
        if (afut_loop_run_once(loop, 0, &ran) != AFUT_OK || ran == 0) return;
    }
}

/* ============================================================================ item 1 */

/* Item 1 (deadlock). Promise: "No lock is held while C code runs (callbacks, *_free
 * functions, the exception handler, the wakeup hook), so every function may be called from
 * inside a callback." Scenario of the issue: afut_cancel(task) on one thread while another
 * thread completes the future the task awaits; the cancel's copy of the awaited future turns
 * out to be its last reference, and releasing it runs C code inside afut_cancel: the
 * future's value_free (variant A) or a never-retrieved report (variant B), which calls a task
 * function.
 *
 * The race is forced, not left to chance. afut_cancel(task) first cancels what the awaited
 * future is made of (variant A: the awaited future is a gather of one pending future; variant
 * B: a wait_for of a pending wait_many); that completion raises the loop's wakeup signal,
 * which calls the wakeup hook on the cancelling thread, inside afut_cancel, with no lock held
 * (a documented promise). The hook has another thread complete the awaited future, then lets
 * the host thread run the task's step (which ends the task and releases the awaited future)
 * before afut_cancel carries on. Its cancel of the awaited future then finds it done, and its
 * copy is the last reference:
 *   A. the gather completed with a value whose value_free calls afut_task_cancelling(task);
 *   B. the wait_for completed; releasing it releases the wait_many and its input M1, which
 *      failed and which nobody retrieved (wait ALL_COMPLETED does not read it): M1's
 *      never-retrieved report calls afut_cancel(task) from the exception handler.
 * With a lock held around that release, the destructor's call into the task deadlocks the
 * cancelling thread on itself; the child's watchdog turns that into a failure.
 *
 * asyncio has no locks; Task.cancel (SEMANTICS.md T4) and a re-entrant __del__ /
 * call_exception_handler are the reference (B7, R1). */
typedef struct dl {
    afut_loop_t *loop;
    afut_t *task;
    afut_t *awaited; /* A: the gather; B: the wait_for. Borrowed once the set-up is over */
    afut_t *child;   /* A: the gather's input */
    afut_t *m2;      /* B: the wait_many's pending input */
    int variant;     /* 0: A, 1: B */
    pthread_t canceller;
    atomic_int armed, fired;
    atomic_int gate_open, host_paused, quit;
    atomic_int first_step, step_saw_awaited, settled;
    atomic_int complete_req, complete_done, complete_rc;
    atomic_int value_freed, never_reports, reentered, reentrant_rc;
} dl_t;

static void dl_step(afut_t *task, afut_t *awaited, void *ud) {
    dl_t *d = ud;
    if (!awaited) {
        if (afut_task_await(task, d->awaited) == AFUT_OK) atomic_store(&d->first_step, 1);
        return;
    }
    if (awaited == d->awaited) atomic_store(&d->step_saw_awaited, 1);
    if (!afut_cancelled(awaited)) (void)afut_set_result(task, NULL, NULL);
}

/* Variant A: the gather's value_free re-enters the task API. */
static void dl_value_free(void *p) {
    dl_t *d = p;
    atomic_fetch_add(&d->value_freed, 1);
    atomic_store(&d->reentrant_rc, afut_task_cancelling(d->task));
    atomic_store(&d->reentered, 1);
}

/* Variant B: M1's never-retrieved report re-enters the task API. */
static void dl_handler(afut_loop_t *loop, const afut_error_context_t *ctx, void *ud) {
    (void)loop;
    dl_t *d = ud;
    if (!ctx->message || !strstr(ctx->message, NEVER_MSG) || !ctx->exception || ctx->exception->code != 4242) return;
    atomic_fetch_add(&d->never_reports, 1);
    atomic_store(&d->reentrant_rc, afut_cancel(d->task, "from the handler") ? 1 : 0);
    atomic_store(&d->reentered, 1);
}

/* The wakeup hook: on the cancelling thread, inside afut_cancel, it forces the interleaving. */
static void dl_hook(void *ud) {
    dl_t *d = ud;
    if (!pthread_equal(pthread_self(), d->canceller) || !atomic_load(&d->armed) || atomic_exchange(&d->fired, 1))
        return;
    atomic_store(&d->complete_req, 1); /* another thread completes the awaited future now */
    if (!wait_flag(&d->complete_done, 2.0)) fprintf(stderr, "  item1: the completer did not run\n");
    atomic_store(&d->gate_open, 1); /* the host runs the task's step, which releases it */
    if (!wait_flag(&d->settled, 2.0)) fprintf(stderr, "  item1: the host did not run the task's step\n");
}

static void *dl_host(void *p) {
    dl_t *d = p;
    while (!atomic_load(&d->quit)) {
        if (!atomic_load(&d->gate_open)) {
            atomic_store(&d->host_paused, 1);
            sleep_s(0.0002);
            continue;
        }
        atomic_store(&d->host_paused, 0);
        (void)afut_loop_run_once(d->loop, 5, NULL);
        if (atomic_load(&d->step_saw_awaited)) atomic_store(&d->settled, 1);
    }
    return NULL;
}

static void *dl_completer(void *p) {
    dl_t *d = p;
    while (!atomic_load(&d->complete_req) && !atomic_load(&d->quit)) sleep_s(0.0001);
    if (atomic_load(&d->quit)) return NULL;
    int rc = d->variant == 0 ? afut_set_result(d->awaited, d, dl_value_free) : afut_set_result(d->awaited, NULL, NULL);
    atomic_store(&d->complete_rc, rc);
    atomic_store(&d->complete_done, 1);
    return NULL;
}

static int dl_child(void *arg) {
    dl_t *d = calloc(1, sizeof *d);
    d->variant = *(int *)arg;
    d->loop = afut_loop_new();
    afut_loop_set_exception_handler(d->loop, dl_handler, d, NULL);
    afut_loop_set_wakeup_fn(d->loop, dl_hook, d, NULL);
    if (d->variant == 0) {
        d->child = afut_loop_create_future(d->loop);
        d->awaited = afut_gather(d->loop, &d->child, 1, false);
    } else {
        afut_t *m[2] = {afut_loop_create_future(d->loop), afut_loop_create_future(d->loop)};
        afut_t *wm = afut_wait_many(d->loop, m, 2, INFINITY, AFUT_ALL_COMPLETED);
        d->awaited = afut_wait_for(d->loop, wm, INFINITY);
        CCHECK_EQ(afut_set_exception(m[0], 4242, "M1", NULL, NULL), AFUT_OK);
        afut_unref(m[0]); /* the wait_many holds it */
        afut_unref(wm);   /* the wait_for holds it */
        d->m2 = m[1];
    }
    d->task = afut_task_new(d->loop, dl_step, d, NULL);
    d->canceller = pthread_self();
    atomic_store(&d->gate_open, 1);
    pthread_t host, completer;
    pthread_create(&host, NULL, dl_host, d);
    pthread_create(&completer, NULL, dl_completer, d);
    CCHECK(wait_flag(&d->first_step, 2.0));
    sleep_s(0.02); /* the host goes idle: the wakeup signal is down */
    atomic_store(&d->gate_open, 0);
    CCHECK(wait_flag(&d->host_paused, 2.0));
    afut_unref(d->awaited); /* the task's reference is the only one left */

    atomic_store(&d->armed, 1);
    bool cancelled = afut_cancel(d->task, "racing a completion"); /* deadlocks with the bug */
    atomic_store(&d->armed, 0);

    atomic_store(&d->gate_open, 1);
    double end = now_s() + budget(2.0);
    while (!afut_done(d->task) && now_s() < end) sleep_s(0.001);
    atomic_store(&d->quit, 1);
    pthread_join(host, NULL);
    pthread_join(completer, NULL);

    if (!atomic_load(&d->fired)) {
        /* Not a failure of the library: the forced interleaving did not happen (a changed
         * wakeup path?). The test then checked a plain cancel only. */
        fprintf(stderr, "  [%s] note: the interleaving was not forced (hook not reached inside afut_cancel)\n",
                (const char *)child_what);
    } else {
        CCHECK_EQ(atomic_load(&d->complete_rc), AFUT_OK);
        CCHECK(atomic_load(&d->step_saw_awaited));
        if (d->variant == 0) CCHECK_EQ(atomic_load(&d->value_freed), 1);
        else CCHECK_EQ(atomic_load(&d->never_reports), 1);
        CCHECK(atomic_load(&d->reentered));
        /* afut_task_cancelling returns the task's count (never -1 for a task) */
        if (d->variant == 0) CCHECK(atomic_load(&d->reentrant_rc) >= 0);
    }
    CCHECK(afut_done(d->task));
    printf("      (afut_cancel returned %s; task %s)\n", cancelled ? "true" : "false",
           afut_cancelled(d->task) ? "cancelled" : afut_done(d->task) ? "finished" : "pending");
    afut_unref(d->task);
    if (d->child) afut_unref(d->child);
    if (d->m2) afut_unref(d->m2);
    afut_loop_free(d->loop);
    free(d);
    return child_failures;
}

TEST(item1_no_lock_held_while_destructors_reenter_the_task_api) {
    const char *names[2] = {"item1 A: value_free calls afut_task_cancelling",
                            "item1 B: never-retrieved handler calls afut_cancel"};
    for (int v = 0; v < 2; v++) {
        sub_begin();
        double took = 0;
        int ok = run_in_child(names[v], dl_child, &v, 0, budget(5), &took);
        CHECK(ok);
        sub_end("%s (%.2f s)", names[v], took);
    }
}

/* ============================================================================ item 2 */

/* Items 2 and 4 drive the same submissions with edge values of time. */
enum sub_kind { SK_CALL_LATER, SK_CALL_AT, SK_SLEEP, SK_WAIT_FOR, SK_WAIT_MANY, SK_COUNT };
static const char *const sk_name[SK_COUNT] = {"call_later", "call_at", "afut_sleep", "afut_wait_for",
                                              "afut_wait_many"};

typedef struct sub {
    afut_loop_t *loop;
    int kind;
    double v;
    afut_callback_fn fire; /* called when the submission comes due / completes */
    void *fire_ud;
    afut_handle_t h;
    afut_t *fut;   /* sleep / wait_for / wait_many */
    afut_t *input; /* the pending input of wait_for / wait_many */
    int accepted;
    atomic_int published; /* see fire_stop_t */
} sub_t;

static void sub_done(afut_t *f, void *ud) {
    (void)f;
    sub_t *s = ud;
    (void)atomic_load_explicit(&s->published, memory_order_acquire);
    s->fire(s->fire_ud);
}

/* Submits; returns 1 if the library accepted it. */
static int submit(sub_t *s) {
    atomic_store_explicit(&s->published, 1, memory_order_release);
    switch (s->kind) {
    case SK_CALL_LATER:
        s->h = afut_loop_call_later(s->loop, s->v, s->fire, s->fire_ud, NULL);
        return s->accepted = s->h != 0;
    case SK_CALL_AT:
        s->h = afut_loop_call_at(s->loop, s->v, s->fire, s->fire_ud, NULL);
        return s->accepted = s->h != 0;
    case SK_SLEEP:
        s->fut = afut_sleep(s->loop, s->v, NULL, NULL);
        break;
    case SK_WAIT_FOR:
        s->input = afut_loop_create_future(s->loop);
        s->fut = afut_wait_for(s->loop, s->input, s->v);
        break;
    case SK_WAIT_MANY:
        s->input = afut_loop_create_future(s->loop);
        s->fut = afut_wait_many(s->loop, &s->input, 1, s->v, AFUT_ALL_COMPLETED);
        break;
    }
    if (!s->fut) return s->accepted = 0;
    return s->accepted = afut_add_done_callback(s->fut, sub_done, s, NULL) == AFUT_OK;
}

/* Releases what submit() made (the loop must not be running). */
static void sub_release(sub_t *s) {
    if (s->h) (void)afut_loop_cancel(s->loop, s->h);
    if (s->input) {
        (void)afut_cancel(s->input, NULL);
        afut_unref(s->input);
    }
    if (s->fut) {
        (void)afut_cancel(s->fut, NULL);
        afut_unref(s->fut);
    }
    s->h = 0;
    s->fut = s->input = NULL;
}

static void *submit_main(void *p) {
    submit(p);
    return NULL;
}

/* Submits from a new thread (another thread than the loop's) and waits for it. */
static void submit_from_thread(sub_t *s) {
    pthread_t th;
    pthread_create(&th, NULL, submit_main, s);
    pthread_join(th, NULL);
}

typedef struct runner {
    afut_loop_t *loop;
    int once;       /* 1: one afut_loop_run_once(loop, -1) instead of run_forever */
    int rc;
    size_t ran;
    atomic_int done;
    pthread_t th;
} runner_t;

static void *runner_main(void *p) {
    runner_t *r = p;
    r->rc = r->once ? afut_loop_run_once(r->loop, -1, &r->ran) : afut_loop_run_forever(r->loop);
    atomic_store(&r->done, 1);
    return NULL;
}

/* Starts a thread blocked in run_forever / run_once(-1) on `loop`, and waits until it is. */
static void runner_start(runner_t *r, afut_loop_t *loop, int once) {
    memset(r, 0, sizeof *r);
    r->loop = loop;
    r->once = once;
    pthread_create(&r->th, NULL, runner_main, r);
    double end = now_s() + budget(2.0);
    while (!afut_loop_is_running(loop) && now_s() < end) sleep_s(0.0005);
    sleep_s(0.03); /* let it reach its wait */
}

/* What a submission does when it fires. `published` (release by the submitting thread,
 * acquire by the callback) makes the library's hand-off visible to ThreadSanitizer, which
 * cannot see the library's own synchronisation (as in test_threads.c). */
typedef struct fire_stop {
    afut_loop_t *loop;
    atomic_int ran, published;
} fire_stop_t;

static void fire_stop_init(fire_stop_t *f, afut_loop_t *loop) {
    f->loop = loop;
    atomic_init(&f->ran, 0);
    atomic_init(&f->published, 0);
    atomic_store_explicit(&f->published, 1, memory_order_release);
}

static void fire_and_stop(void *ud) {
    fire_stop_t *f = ud;
    (void)atomic_load_explicit(&f->published, memory_order_acquire);
    atomic_fetch_add(&f->ran, 1);
    afut_loop_stop(f->loop);
}

static void fire_count(void *ud) { atomic_fetch_add(&((fire_stop_t *)ud)->ran, 1); }

/* The values of time that are "due at once" (delays <= 0, past deadlines; a denormal delay
 * is due within a clock tick). */
static const double due_values[] = {-INFINITY, -DBL_MAX, -1e300, -1.0, -0.0, 0.0, DBL_TRUE_MIN, -DBL_TRUE_MIN, DBL_MIN};
static const char *const due_names[] = {"-INFINITY", "-DBL_MAX", "-1e300", "-1.0", "-0.0", "0.0", "DBL_TRUE_MIN",
                                        "-DBL_TRUE_MIN", "DBL_MIN"};
#define N_DUE (sizeof due_values / sizeof due_values[0])

/* A standalone loop blocked in run_forever (or run_once(-1)) on another thread; this thread
 * submits a due-at-once timer / sleep / wait_for / wait_many. It must wake the loop and run:
 * "delays <= 0 are due at once"; "a submission from another thread wakes the loop". */
static void due_standalone(int kind, size_t vi, int once) {
    afut_loop_t *loop = afut_loop_new();
    runner_t r;
    runner_start(&r, loop, once);
    fire_stop_t f;
    fire_stop_init(&f, loop);
    sub_t s = {.loop = loop, .kind = kind, .v = due_values[vi], .fire = once ? fire_count : fire_and_stop, .fire_ud = &f};
    watchdog_t w;
    watchdog_start(&w, loop, 2.0);
    CHECK(submit(&s));
    double t0 = now_s();
    while (!atomic_load(&r.done) && now_s() < t0 + budget(4.0)) sleep_s(0.001);
    int fired = watchdog_finish(&w);
    pthread_join(r.th, NULL);
    if (fired || (!once && !atomic_load(&f.ran)))
        fprintf(stderr, "  item2: %s(%s) from another thread did not wake a loop blocked in %s\n", sk_name[kind],
                due_names[vi], once ? "run_once(-1)" : "run_forever");
    CHECK(!fired);
    CHECK_EQ_INT(r.rc, AFUT_OK);
    if (once) {
        /* the first dispatch may be an empty wake for sleep/wait_for/wait_many; the timer
         * kinds are due in the iteration that wakes */
        if (kind == SK_CALL_LATER || kind == SK_CALL_AT) CHECK_EQ_INT(atomic_load(&f.ran), 1);
        spin(loop, 10);
    }
    CHECK_EQ_INT(atomic_load(&f.ran), 1);
    sub_release(&s);
    afut_loop_free(loop);
}

/* Host mode: the submission comes from another thread (cross == 1) or from a callback on the
 * loop's thread during run_once (cross == 0). Afterwards the fd must be readable at once
 * (poll with a 0 timeout), afut_loop_timeout_ms 0, and run_once(loop, 0) must have work, until
 * the submission fired; then the loop is idle: fd silent, timeout -1. */
typedef struct in_cb_submit {
    sub_t *s;
} in_cb_submit_t;

static void submit_in_cb(void *ud) { submit(((in_cb_submit_t *)ud)->s); }

static void due_host(int kind, size_t vi, int cross) {
    afut_loop_t *loop = afut_loop_new();
    int fd = afut_loop_fd(loop);
    fire_stop_t f;
    fire_stop_init(&f, loop);
    sub_t s = {.loop = loop, .kind = kind, .v = due_values[vi], .fire = fire_count, .fire_ud = &f};
    if (cross) {
        submit_from_thread(&s);
    } else {
        in_cb_submit_t c = {&s};
        CHECK(afut_loop_call_soon(loop, submit_in_cb, &c, NULL) != 0);
        size_t ran = 0;
        CHECK_EQ_INT(afut_loop_run_once(loop, 0, &ran), AFUT_OK);
        CHECK_EQ_INT(ran, 1);
    }
    CHECK(s.accepted);
    int silent = 0;
    for (int i = 0; i < 10 && !atomic_load(&f.ran); i++) {
        /* From another thread the kernel timer may be armed on that thread's CPU, which may
         * take a few microseconds to fire once it is idle: the first look allows 100 ms (a
         * host blocked in poll would be woken as well). Afterwards, and from the loop
         * thread, the fd must be readable at once. */
        int rd = test_readable(fd, cross && i == 0 ? 100 : 0);
        int to = afut_loop_timeout_ms(loop);
        if (rd != 1) {
            silent = 1;
            fprintf(stderr, "  item2: host %s(%s) from %s: fd not readable while work is due (timeout_ms %d)\n",
                    sk_name[kind], due_names[vi], cross ? "another thread" : "the loop thread", to);
            break;
        }
        CHECK_EQ_INT(to, 0);
        size_t ran = 0;
        CHECK_EQ_INT(afut_loop_run_once(loop, 0, &ran), AFUT_OK);
        CHECK(ran > 0);
    }
    CHECK(!silent);
    if (silent) {
        /* what a host honouring timeout_ms would do anyway: run it, to leave the loop clean */
        spin(loop, 10);
    }
    CHECK_EQ_INT(atomic_load(&f.ran), 1);
    spin(loop, 10);
    CHECK_EQ_INT(test_readable(fd, 0), 0);
    CHECK_EQ_INT(afut_loop_timeout_ms(loop), -1);
    sub_release(&s);
    spin(loop, 10);
    afut_loop_free(loop);
}

/* Item 2 (lost wakeup at -INFINITY). Promises: "Delays <= 0 and past deadlines are due at
 * once"; "a submission from another thread wakes the loop"; afut_loop_fd "is readable
 * (level-triggered) whenever afut_loop_run_once(loop, 0, ...) has work, due timers
 * included". asyncio: call_later with a negative delay is due at once (SEMANTICS.md L3,
 * test_call_later_negative_delays); call_soon_threadsafe wakes a blocked loop (L8). Every
 * due-at-once value (+-0, denormals, negatives down to -DBL_MAX and -INFINITY) through
 * call_later, call_at, afut_sleep, afut_wait_for and afut_wait_many, on a standalone loop
 * blocked in run_forever and in run_once(-1), and in host mode from another thread and from
 * the loop thread. */
TEST(item2_due_at_once_values_wake_the_loop) {
    for (int kind = 0; kind < SK_COUNT; kind++) {
        for (size_t vi = 0; vi < N_DUE; vi++) {
            for (int mode = 0; mode < 4; mode++) {
                static const char *const modes[4] = {"standalone run_forever, other thread",
                                                     "standalone run_once(-1), other thread",
                                                     "host fd, other thread", "host fd, loop thread"};
                sub_begin();
                switch (mode) {
                case 0: due_standalone(kind, vi, 0); break;
                case 1: due_standalone(kind, vi, 1); break;
                case 2: due_host(kind, vi, 1); break;
                case 3: due_host(kind, vi, 0); break;
                }
                /* one line per failing sub-case, and one per (kind, value) otherwise */
                if (test_current_failures_ != sub_fail_before)
                    sub_end("item2 %s(%s): %s", sk_name[kind], due_names[vi], modes[mode]);
            }
        }
        printf("    item2 %-54s done\n", sk_name[kind]);
    }
}

/* ============================================================================ item 3 */

/* Item 3 (an idle host spins). Promise: the fd "is readable (level-triggered) whenever
 * afut_loop_run_once(loop, 0, ...) has work ... and not readable when the loop is idle".
 * Scenario of the issue: run_once runs a timer at its deadline but before the kernel timer
 * has expired; the kernel timer expires later and the idle loop's fd stays readable while
 * afut_loop_timeout_ms says -1, and run_once(loop, 0) cannot clear it: a level-triggered host
 * (poll, libuv, GLib) spins.
 *
 * Making run_once beat the kernel timer: the timer is scheduled (call_at, which arms the
 * kernel timer) from a helper thread pinned to another CPU, which then exits, leaving that
 * CPU idle; this thread, pinned to a CPU of its own, spins to the deadline on the loop's clock
 * and calls run_once at once. A timer armed on an idle CPU fires tens of microseconds late
 * (measured here: 99% of 1000 raw timerfd trials), so run_once usually runs the timer first.
 * Each trial then waits past the kernel expiry and checks the idle loop. No CPython
 * counterpart (asyncio has no pollable loop fd); the rule is libuv's uv_backend_fd /
 * uv_backend_timeout contract that API.md adopts. */
typedef struct arm_at {
    afut_loop_t *loop;
    int cpu;
    double when;
    atomic_int *counter;
    afut_handle_t h;
} arm_at_t;

static void pin_to(int cpu) {
    if (cpu < 0) return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    (void)pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

static void *arm_at_main(void *p) {
    arm_at_t *a = p;
    pin_to(a->cpu);
    a->when = afut_loop_time(a->loop) + 0.001;
    a->h = afut_loop_call_at(a->loop, a->when, count_cb, a->counter, NULL);
    return NULL;
}

TEST(item3_idle_host_fd_silent_after_a_timer_ran_at_its_deadline) {
    cpu_set_t saved, avail;
    int cpus[2] = {-1, -1};
    pthread_getaffinity_np(pthread_self(), sizeof saved, &saved);
    if (sched_getaffinity(0, sizeof avail, &avail) == 0)
        for (int c = 0, k = 0; c < CPU_SETSIZE && k < 2; c++)
            if (CPU_ISSET(c, &avail)) cpus[k++] = c;
    if (cpus[1] < 0) cpus[0] = -1; /* one CPU: no pinning (the trials are then left to chance) */
    pin_to(cpus[0]);

    afut_loop_t *loop = afut_loop_new();
    int fd = afut_loop_fd(loop);
    atomic_int ran_cb;
    atomic_init(&ran_cb, 0);
    int trials = 0, stuck = 0, ran_now = 0;
    double end = now_s() + budget(3.0);
    for (; trials < 200 && now_s() < end && !stuck; trials++) {
        arm_at_t a = {loop, cpus[1], 0, &ran_cb, 0};
        pthread_t th;
        pthread_create(&th, NULL, arm_at_main, &a);
        pthread_join(th, NULL);
        CHECK(a.h != 0);
        while (afut_loop_time(loop) < a.when) {
        }
        size_t ran = 0;
        CHECK_EQ_INT(afut_loop_run_once(loop, 0, &ran), AFUT_OK);
        ran_now += ran == 1;
        spin(loop, 5); /* if the clock read raced the deadline: the timer runs now */
        int to = afut_loop_timeout_ms(loop);
        if (test_readable(fd, 3) == 1) { /* waits past the kernel timer's expiry */
            /* a level-triggered host calls run_once(loop, 0) now */
            size_t r2 = 99;
            CHECK_EQ_INT(afut_loop_run_once(loop, 0, &r2), AFUT_OK);
            if (r2 == 0 && test_readable(fd, 0) == 1) {
                stuck = 1;
                fprintf(stderr,
                        "  item3: trial %d: idle loop (timeout_ms %d), fd still readable after run_once(loop, 0) ran "
                        "nothing: a level-triggered host spins\n",
                        trials + 1, to);
            }
        }
        if (!stuck) CHECK_EQ_INT(to, -1);
    }
    CHECK(!stuck);
    CHECK_EQ_INT(atomic_load(&ran_cb), trials);
    printf("    item3: %d trial(s), %d ran the timer in the run_once at its deadline; stuck fd: %s%s\n", trials, ran_now,
           stuck ? "yes" : "no", cpus[0] < 0 ? " (one CPU: not pinned)" : "");
    afut_loop_free(loop);
    pthread_setaffinity_np(pthread_self(), sizeof saved, &saved);
}

/* ============================================================================ item 4 */

/* Values of time too far to reach: huge finite ones (the deadline of some is not
 * representable as a kernel time: ~9.2e18 s is where a 64-bit seconds count ends) and
 * INFINITY. */
static const double huge_values[] = {1e19, 1e300, DBL_MAX, 9.3e18, 9.2e18, 2e19, INFINITY};
static const char *const huge_names[] = {"1e19", "1e300", "DBL_MAX", "9.3e18", "9.2e18", "2e19", "INFINITY"};
#define N_HUGE (sizeof huge_values / sizeof huge_values[0])

typedef struct completer {
    afut_t *fut;
    double after;
    atomic_int quit;
    int rc;
    pthread_t th;
} completer_t;

static void *completer_main(void *p) {
    completer_t *c = p;
    double end = now_s() + c->after;
    while (now_s() < end && !atomic_load(&c->quit)) sleep_s(0.001);
    if (!atomic_load(&c->quit)) c->rc = afut_set_result(c->fut, NULL, NULL);
    return NULL;
}

static void completer_start(completer_t *c, afut_t *fut, double after) {
    memset(c, 0, sizeof *c);
    c->fut = fut;
    c->after = after;
    c->rc = 12345;
    atomic_init(&c->quit, 0);
    pthread_create(&c->th, NULL, completer_main, c);
}

static void completer_join(completer_t *c) {
    atomic_store(&c->quit, 1);
    pthread_join(c->th, NULL);
}

/* afut_wait: "timeout_s: 0 polls, INFINITY waits forever, a negative value acts as 0". A huge
 * finite timeout waits (for a completion made by another thread 50 ms later); a due value
 * times out at once. CPython: concurrent.futures.Future.result(timeout) (SEMANTICS.md CF6). */
static void wait_values(void) {
    afut_loop_t *loop = afut_loop_new();
    for (int loopless = 0; loopless < 2; loopless++) {
        for (size_t vi = 0; vi < N_HUGE; vi++) {
            sub_begin();
            afut_t *f = afut_new(loopless ? NULL : loop);
            completer_t c;
            completer_start(&c, f, 0.05);
            double t0 = now_s();
            int rc = afut_wait(f, huge_values[vi]);
            double took = now_s() - t0;
            completer_join(&c);
            if (rc != AFUT_OK)
                fprintf(stderr, "  item4: afut_wait(%s future, %s) returned %s after %.3f s instead of waiting\n",
                        loopless ? "loop-less" : "loop", huge_names[vi], afut_status_str(rc), took);
            CHECK_EQ_INT(rc, AFUT_OK);
            CHECK(afut_done(f));
            afut_unref(f);
            sub_end("item4 afut_wait(%s future, %s)", loopless ? "loop-less" : "loop", huge_names[vi]);
        }
        /* due values: a pending future times out at once (a completion 3 s later would
         * make a wrong wait return AFUT_OK) */
        sub_begin();
        afut_t *f = afut_new(loopless ? NULL : loop);
        completer_t c;
        completer_start(&c, f, 3.0);
        for (size_t vi = 0; vi < N_DUE; vi++) {
            int rc = afut_wait(f, due_values[vi]);
            if (rc != AFUT_ERR_TIMEOUT)
                fprintf(stderr, "  item4: afut_wait(pending, %s) returned %s\n", due_names[vi], afut_status_str(rc));
            CHECK_EQ_INT(rc, AFUT_ERR_TIMEOUT);
        }
        completer_join(&c);
        CHECK(!afut_done(f));
        CHECK_EQ_INT(afut_set_result(f, NULL, NULL), AFUT_OK);
        for (size_t vi = 0; vi < N_HUGE; vi++) CHECK_EQ_INT(afut_wait(f, huge_values[vi]), AFUT_OK);
        for (size_t vi = 0; vi < N_DUE; vi++) CHECK_EQ_INT(afut_wait(f, due_values[vi]), AFUT_OK);
        afut_unref(f);
        sub_end("item4 afut_wait(%s future, due values / done future)", loopless ? "loop-less" : "loop");
    }
    afut_loop_free(loop);
}

/* A huge delay / timeout in host mode: never due, so the fd stays silent, timeout_ms is never
 * 0 (-1 or at least a second), run_once(loop, 0) and run_once(loop, 30) run nothing, and
 * wait_for / wait_many still complete with their input. */
static void huge_host(int kind, size_t vi) {
    afut_loop_t *loop = afut_loop_new();
    int fd = afut_loop_fd(loop);
    fire_stop_t f;
    fire_stop_init(&f, loop);
    double v = huge_values[vi];
    sub_t s = {.loop = loop, .kind = kind, .v = v, .fire = fire_count, .fire_ud = &f};
    CHECK(submit(&s));
    size_t ran = 99;
    CHECK_EQ_INT(afut_loop_run_once(loop, 0, &ran), AFUT_OK);
    CHECK_EQ_INT(ran, 0);
    CHECK_EQ_INT(test_readable(fd, 0), 0);
    int to = afut_loop_timeout_ms(loop);
    if (!(to == -1 || to >= 1000))
        fprintf(stderr, "  item4: host %s(%s): timeout_ms %d\n", sk_name[kind], huge_names[vi], to);
    CHECK(to == -1 || to >= 1000);
    ran = 99;
    CHECK_EQ_INT(afut_loop_run_once(loop, 30, &ran), AFUT_OK);
    CHECK_EQ_INT(ran, 0);
    CHECK_EQ_INT(test_readable(fd, 20), 0);
    CHECK_EQ_INT(atomic_load(&f.ran), 0);
    if (s.input) {
        /* the input completes: the wait_for / wait_many completes with it */
        CHECK_EQ_INT(afut_set_result(s.input, NULL, NULL), AFUT_OK);
        for (int i = 0; i < 10 && !atomic_load(&f.ran); i++) {
            CHECK_EQ_INT(test_readable(fd, 0), 1);
            CHECK_EQ_INT(afut_loop_run_once(loop, 0, NULL), AFUT_OK);
        }
        CHECK_EQ_INT(atomic_load(&f.ran), 1);
        if (kind == SK_WAIT_FOR) CHECK_EQ_INT(afut_result(s.fut, NULL), AFUT_OK);
    }
    sub_release(&s);
    spin(loop, 10);
    CHECK_EQ_INT(test_readable(fd, 0), 0);
    CHECK_EQ_INT(afut_loop_timeout_ms(loop), -1);
    afut_loop_free(loop);
}

/* A huge delay submitted from another thread to a loop blocked in run_forever: it does not
 * fire, and a near timer submitted after it still wakes the loop on time. */
static void huge_standalone(int kind, size_t vi) {
    afut_loop_t *loop = afut_loop_new();
    runner_t r;
    runner_start(&r, loop, 0);
    fire_stop_t never, near;
    fire_stop_init(&never, loop);
    fire_stop_init(&near, loop);
    sub_t s = {.loop = loop, .kind = kind, .v = huge_values[vi], .fire = fire_count, .fire_ud = &never};
    watchdog_t w;
    watchdog_start(&w, loop, 2.0);
    CHECK(submit(&s));
    sleep_s(0.02);
    CHECK(afut_loop_call_later(loop, 0.02, fire_and_stop, &near, NULL) != 0);
    double t0 = now_s();
    while (!atomic_load(&r.done) && now_s() < t0 + budget(4.0)) sleep_s(0.001);
    int fired = watchdog_finish(&w);
    pthread_join(r.th, NULL);
    CHECK(!fired);
    CHECK_EQ_INT(atomic_load(&near.ran), 1);
    CHECK_EQ_INT(atomic_load(&never.ran), 0);
    sub_release(&s);
    spin(loop, 10);
    afut_loop_free(loop);
}

/* Item 4 (afut_wait with a huge finite timeout returns at once), and the "check every
 * other place where a double becomes a deadline or duration" (wait_for, wait_many,
 * call_later, call_at, sleep, timeout_ms, run_once). Promises: afut_wait "INFINITY waits
 * forever" and nothing shorter than the timeout; call_later "INFINITY never fires"; a timeout
 * that has not passed does not time out. CPython: huge finite delays are fine in call_later
 * (the select timeout is clamped, MAXIMUM_SELECT_TIMEOUT, SEMANTICS.md L2) and in
 * concurrent.futures.Future.result(timeout) (CF6). */
TEST(item4_huge_timeouts_never_come_due) {
    wait_values();
    for (int kind = 0; kind < SK_COUNT; kind++) {
        for (size_t vi = 0; vi < N_HUGE; vi++) {
            sub_begin();
            huge_host(kind, vi);
            huge_standalone(kind, vi);
            if (test_current_failures_ != sub_fail_before) sub_end("item4 %s(%s)", sk_name[kind], huge_names[vi]);
        }
        printf("    item4 %-54s done\n", sk_name[kind]);
    }
}

/* ============================================================================ item 5 */

/* Item 5 (deep chains crash, and complete in quadratic time). Promise: "Bad input must get a
 * status code ... never a crash", and the functions' own contracts (freeing, cancelling and
 * completing work at any depth). Each structure is 1e5 links deep (1/20 under valgrind),
 * built, then freed pending / cancelled / completed with a result / completed with an
 * exception, all on a thread with a 256 KiB stack, in a forked child: a stack overflow is a
 * SIGSEGV of the child, a quadratic completion is a child that its watchdog kills (100,000
 * wrap links would take minutes; linear work takes well under a second). Durations are only
 * printed. A child that fails its checks exits 1 and says which on stderr; a crash names the
 * phase it happened in.
 *
 * "Free pending" drops every reference the application holds (the tail, then the head) while
 * the chain is pending: every link must then be freed, each done-callback's userdata exactly
 * once (no crash, no leak). Pending tasks, shields and gathers are kept alive by design (by
 * their loop, and by their inputs as asyncio's callbacks keep outer futures alive: item 9),
 * so for them it is the loop's close that releases the chain (each task then reports "Task
 * was destroyed but it is pending!").
 *
 * Structures: afut_wrap_future across two loops (alternating) from a loop-less head
 * (asyncio wrap_future / _chain_future, F22); afut_shield of afut_shield (S1); afut_gather of
 * one afut_gather (G2); tasks awaiting tasks (T2/T3). Cancel: from the outer end for wrap
 * (propagates back to the head, F22), gather (G5) and tasks (T4); from the head for shield
 * (an outer's cancel does not reach the inner, S1). */
enum { K_WRAP, K_SHIELD, K_GATHER, K_TASK, K_COUNT };
enum { OP_FREE, OP_CANCEL, OP_RESULT, OP_EXCEPTION, OP_COUNT };
static const char *const k_name[K_COUNT] = {"wrap_future x2 loops", "shield", "gather", "task awaits task"};
static const char *const op_name[OP_COUNT] = {"free pending", "cancel", "complete (result)", "complete (exception)"};

typedef struct deep_arg {
    int kind, op;
    long n;
} deep_arg_t;

static atomic_long deep_cb_ran, deep_cb_freed, deep_ud_freed, deep_value_freed, deep_awaits;
static int deep_marker, deep_tag;

static void deep_cb(afut_t *f, void *ud) {
    (void)f;
    (void)ud;
    atomic_fetch_add(&deep_cb_ran, 1);
}
static void deep_cb_free(void *ud) {
    (void)ud;
    atomic_fetch_add(&deep_cb_freed, 1);
}
static void deep_value_free(void *p) {
    (void)p;
    atomic_fetch_add(&deep_value_freed, 1);
}
static void deep_ud_free(void *p) {
    free(p);
    atomic_fetch_add(&deep_ud_freed, 1);
}

typedef struct deep_task_ud {
    afut_t *prev; /* what the first step awaits (borrowed until then) */
} deep_task_ud_t;

static void deep_step(afut_t *task, afut_t *awaited, void *ud) {
    deep_task_ud_t *u = ud;
    if (!awaited) {
        if (afut_task_await(task, u->prev) == AFUT_OK) atomic_fetch_add(&deep_awaits, 1);
        return;
    }
    if (afut_cancelled(awaited)) return; /* ends this task CANCELLED */
    afut_exception_t e;
    if (afut_exception(awaited, &e) == AFUT_OK && e.code != 0) {
        (void)afut_set_exception(task, e.code, e.message, NULL, NULL);
        return;
    }
    void *v = NULL;
    (void)afut_result(awaited, &v);
    (void)afut_set_result(task, v, NULL);
}

/* Runs both loops until `target` is done; -1 if it is not after `max` rounds. */
static long pump_until_done(afut_loop_t *a, afut_loop_t *b, afut_t *target, long max) {
    for (long i = 0; i < max; i++) {
        if (afut_done(target)) return i;
        (void)afut_loop_run_once(a, 0, NULL);
        if (b) (void)afut_loop_run_once(b, 0, NULL);
    }
    return afut_done(target) ? max : -1;
}

/* Runs both loops until a round runs nothing. */
static void pump_idle(afut_loop_t *a, afut_loop_t *b) {
    for (long i = 0; i < 10000000; i++) {
        size_t ra = 0, rb = 0;
        (void)afut_loop_run_once(a, 0, &ra);
        if (b) (void)afut_loop_run_once(b, 0, &rb);
        if (ra + rb == 0) return;
    }
}

static int deep_child(void *p) {
    deep_arg_t *d = p;
    long n = d->n;
    reports_t rep;
    afut_loop_t *a = new_loop_with(&rep);
    afut_loop_t *b = NULL;
    if (d->kind == K_WRAP) {
        b = afut_loop_new();
        afut_loop_set_exception_handler(b, reports_handler, &rep, NULL);
    }
    afut_t *head = afut_new(d->kind == K_WRAP ? NULL : a);
    afut_t *tail = NULL;
    double t0 = now_s();

    /* ---- build */
    child_phase = "building the chain";
    if (d->kind == K_TASK) {
        afut_t **tasks = malloc(sizeof *tasks * (size_t)n);
        afut_t *prev = head;
        for (long i = 0; i < n; i++) {
            deep_task_ud_t *u = malloc(sizeof *u);
            u->prev = prev;
            tasks[i] = afut_task_new(a, deep_step, u, deep_ud_free);
            if (!tasks[i]) {
                CCHECK(tasks[i] != NULL);
                return 1;
            }
            prev = tasks[i];
        }
        (void)afut_loop_run_once(a, 0, NULL); /* every first step: each task awaits the previous */
        CCHECK_EQ(atomic_load(&deep_awaits), n);
        tail = tasks[n - 1];
        for (long i = 0; i < n - 1; i++) afut_unref(tasks[i]);
        free(tasks);
    } else {
        afut_t *cur = afut_ref(head);
        for (long i = 1; i <= n; i++) {
            afut_t *next = NULL;
            switch (d->kind) {
            case K_WRAP: next = afut_wrap_future((i & 1) ? a : b, cur); break;
            case K_SHIELD: next = afut_shield(a, cur); break;
            case K_GATHER: next = afut_gather(a, &cur, 1, false); break;
            }
            if (!next || next == cur) {
                CCHECK(next != NULL && next != cur);
                return 1;
            }
            CCHECK_EQ(afut_add_done_callback(next, deep_cb, &deep_tag, deep_cb_free), AFUT_OK);
            afut_unref(cur);
            cur = next;
        }
        tail = cur;
    }
    double built = now_s();
    long links_with_cb = d->kind == K_TASK ? 0 : n;

    /* ---- the operation */
    long rounds = 0;
    child_phase = d->op == OP_FREE     ? "dropping every reference to the pending chain"
                  : d->op == OP_CANCEL ? "afut_cancel and running the loops"
                                       : "completing the head and running the loops";
    switch (d->op) {
    case OP_FREE:
        if (d->kind == K_TASK) {
            /* pending tasks are kept alive by their loop: closing it releases the chain */
            CCHECK_EQ(afut_loop_close(a), AFUT_OK);
            CCHECK_EQ(atomic_load(&rep.destroyed), n);
            CCHECK(afut_cancelled(tail));
            afut_unref(tail);
        } else {
            /* every reference the application holds: tail, then head. A pending wrapper,
             * shield or gather is held by its input (asyncio's callbacks hold their outer
             * future the same way: item 9 and its wrap_future finding), as a pending task is
             * held by its loop, so closing the loops is what releases such a chain. Every
             * link must go then, each callback's userdata once (no leak, no crash) */
            afut_unref(tail);
            afut_unref(head);
            head = NULL;
            CCHECK_EQ(atomic_load(&deep_cb_freed), 0);
            CCHECK_EQ(afut_loop_close(a), AFUT_OK);
            if (b) CCHECK_EQ(afut_loop_close(b), AFUT_OK);
            CCHECK_EQ(atomic_load(&deep_cb_freed), n);
            CCHECK_EQ(atomic_load(&deep_cb_ran), 0);
        }
        tail = NULL;
        break;
    case OP_CANCEL:
        if (d->kind == K_SHIELD) {
            CCHECK(afut_cancel(head, "deep"));
            rounds = pump_until_done(a, b, tail, 4 * n + 100);
        } else {
            CCHECK(afut_cancel(tail, "deep"));
            rounds = pump_until_done(a, b, d->kind == K_TASK ? tail : head, 4 * n + 100);
        }
        CCHECK(rounds >= 0);
        pump_idle(a, b);
        CCHECK(afut_cancelled(head));
        CCHECK(afut_cancelled(tail));
        CCHECK_EQ(atomic_load(&deep_cb_ran), links_with_cb);
        break;
    case OP_RESULT:
        CCHECK_EQ(afut_set_result(head, &deep_marker, deep_value_free), AFUT_OK);
        rounds = pump_until_done(a, b, tail, 4 * n + 100);
        CCHECK(rounds >= 0);
        pump_idle(a, b);
        child_phase = "reading the outcome of the tail";
        {
            void *v = NULL;
            CCHECK_EQ(afut_result(tail, &v), AFUT_OK);
            if (d->kind == K_GATHER) CCHECK(afut_gather_child(tail, 0) != NULL);
            else CCHECK(v == &deep_marker);
        }
        CCHECK_EQ(atomic_load(&deep_cb_ran), links_with_cb);
        break;
    case OP_EXCEPTION:
        CCHECK_EQ(afut_set_exception(head, 99, "deep", &deep_marker, deep_value_free), AFUT_OK);
        rounds = pump_until_done(a, b, tail, 4 * n + 100);
        CCHECK(rounds >= 0);
        pump_idle(a, b);
        child_phase = "reading the outcome of the tail";
        {
            afut_exception_t e = {0};
            CCHECK_EQ(afut_exception(tail, &e), AFUT_OK);
            CCHECK_EQ(e.code, 99);
            CCHECK(e.message && strcmp(e.message, "deep") == 0);
            if (d->kind != K_TASK) CCHECK(e.detail == &deep_marker);
        }
        CCHECK_EQ(atomic_load(&deep_cb_ran), links_with_cb);
        break;
    }
    double operated = now_s();

    /* ---- free what is left: every link goes, each callback's userdata once */
    child_phase = "reading the outcome done; freeing the done chain";
    if (tail) afut_unref(tail);
    if (head) afut_unref(head);
    pump_idle(a, b);
    double freed = now_s();
    CCHECK_EQ(atomic_load(&deep_cb_freed), links_with_cb);
    if (d->kind == K_TASK) CCHECK_EQ(atomic_load(&deep_ud_freed), n);
    if (d->op == OP_RESULT || d->op == OP_EXCEPTION) CCHECK_EQ(atomic_load(&deep_value_freed), 1);
    /* each link's exception is read by the next one; the tail's by this test */
    CCHECK_EQ(atomic_load(&rep.never), 0);
    afut_loop_free(a);
    if (b) afut_loop_free(b);
    printf("      build %.2f s, %s %.2f s (%ld rounds), free %.2f s\n", built - t0, op_name[d->op], operated - built,
           rounds, freed - operated);
    return child_failures;
}

TEST(item5_deep_chains_on_a_small_stack) {
    long n = scaled(100000);
    for (int k = 0; k < K_COUNT; k++) {
        for (int op = 0; op < OP_COUNT; op++) {
            char name[120];
            snprintf(name, sizeof name, "item5 %s, %s, n=%ld", k_name[k], op_name[op], n);
            deep_arg_t arg = {k, op, n};
            sub_begin();
            double took = 0;
            int ok = run_in_child(name, deep_child, &arg, small_stack(), budget(20), &took);
            CHECK(ok);
            sub_end("%s (%.2f s)", name, took);
        }
    }
}

/* ============================================================================ item 6 */

/* Item 6 (use-after-free in afut_loop_run_until_complete). Promise: "The loop holds its own
 * reference to a future while its callbacks are queued, so a callback may drop the last
 * reference the application held"; asyncio's run_until_complete holds the future for the
 * whole call (SEMANTICS.md L7: `future` stays referenced until `return future.result()`).
 * Here the application's only reference is handed to a done-callback that drops it. The
 * future must outlive the run: its value_free must not run while the loop is still running
 * (the run would read freed memory afterwards), and the run returns the outcome AFUT_OK.
 * Forked: with the bug the run reads freed memory, which may crash or hang. */
static afut_loop_t *uaf_loop;
static atomic_int uaf_freed, uaf_freed_while_running;

static void uaf_value_free(void *p) {
    (void)p;
    atomic_fetch_add(&uaf_freed, 1);
    if (afut_loop_is_running(uaf_loop)) atomic_store(&uaf_freed_while_running, 1);
}
static void uaf_drop_last_ref(afut_t *f, void *ud) {
    (void)ud;
    afut_unref(f); /* the application's only reference */
}
static void uaf_complete(void *ud) { (void)afut_set_result(ud, &deep_marker, uaf_value_free); }

static int uaf_child(void *arg) {
    int variant = *(int *)arg;
    uaf_loop = afut_loop_new();
    afut_t *f = afut_loop_create_future(uaf_loop);
    if (variant == 0) {
        /* completed by a callback in the run */
        CCHECK_EQ(afut_add_done_callback(f, uaf_drop_last_ref, NULL, NULL), AFUT_OK);
        CCHECK(afut_loop_call_soon(uaf_loop, uaf_complete, f, NULL) != 0);
    } else {
        /* already done when the run starts */
        CCHECK_EQ(afut_set_result(f, &deep_marker, uaf_value_free), AFUT_OK);
        CCHECK_EQ(afut_add_done_callback(f, uaf_drop_last_ref, NULL, NULL), AFUT_OK);
    }
    int rc = afut_loop_run_until_complete(uaf_loop, f);
    CCHECK_EQ(rc, AFUT_OK);
    CCHECK_EQ(atomic_load(&uaf_freed), 1);
    if (atomic_load(&uaf_freed_while_running))
        fprintf(stderr, "  [%s] the future was freed while run_until_complete was still running it\n",
                (const char *)child_what);
    CCHECK(!atomic_load(&uaf_freed_while_running));
    afut_loop_free(uaf_loop);
    return child_failures;
}

TEST(item6_run_until_complete_keeps_its_future) {
    const char *names[2] = {"item6 completed in the run, last ref dropped by a callback",
                            "item6 done before the run, last ref dropped by a callback"};
    for (int v = 0; v < 2; v++) {
        sub_begin();
        CHECK(run_in_child(names[v], uaf_child, &v, 0, budget(10), NULL));
        sub_end("%s", names[v]);
    }
}

/* ============================================================================ item 7 */

/* Item 7 (afut_shield copies the inner's cancel message onto the outer). asyncio's shield:
 * `if inner.cancelled(): outer.cancel()`, without the message [X: inner.cancel("boom") ->
 * outer.cancelled() True, outer._cancel_message None, outer.result() raises
 * CancelledError()]. SEMANTICS.md S1, test_shield_cancel_inner. Note: test_combinators.c
 * test_shield_cancel asserts the current behaviour (the outer's message is "in"); one of the
 * two changes with the fix (or, if the copy is kept as a documented deliberate difference,
 * this test does). */
TEST(item7_shield_outer_cancelled_without_the_inner_message) {
    reports_t rep;
    afut_loop_t *loop = new_loop_with(&rep);
    afut_t *inner = afut_loop_create_future(loop);
    afut_t *outer = afut_shield(loop, inner);
    CHECK(outer != NULL && outer != inner);
    CHECK(afut_cancel(inner, "boom"));
    CHECK_EQ_INT(afut_loop_run_until_complete(loop, outer), AFUT_ERR_CANCELLED);
    CHECK(afut_cancelled(outer));
    const char *m = afut_cancel_message(outer);
    if (m) fprintf(stderr, "  item7: outer's cancel message is \"%s\", asyncio's is None\n", m);
    CHECK(m == NULL);
    CHECK_STR(afut_cancel_message(inner), "boom");
    afut_unref(outer);
    afut_unref(inner);
    afut_loop_free(loop);
}

/* ============================================================================ item 8 */

/* Item 8 (a shield outer completed or cancelled by its caller stays attached to the inner).
 * asyncio's shield detaches in the outer's done-callback: `if not inner.done():
 * inner.remove_done_callback(_inner_done_callback)` (SEMANTICS.md S1). So what the inner does
 * later no longer touches anything [X, CPython 3.13.0; the outer's callback runs in the
 * iteration after the outer completes, the inner completes after that]:
 *   a. outer.set_result by the caller, inner.set_exception later: the inner's exception is
 *      reported ("Future exception was never retrieved", ValueError('inner'));
 *   b. outer.set_exception by the caller, inner.cancel() later: the outer's exception is
 *      reported (KeyError('outer'));
 *   c. outer.cancel() by the caller, inner.set_exception later: the inner's is reported;
 *   d. outer.set_exception, inner.set_exception later: both are reported. */
static void shield_detach_case(char which) {
    reports_t rep;
    afut_loop_t *loop = new_loop_with(&rep);
    afut_t *inner = afut_loop_create_future(loop);
    afut_t *outer = afut_shield(loop, inner);
    CHECK(outer != NULL && outer != inner);
    switch (which) {
    case 'a': CHECK_EQ_INT(afut_set_result(outer, NULL, NULL), AFUT_OK); break;
    case 'b':
    case 'd': CHECK_EQ_INT(afut_set_exception(outer, 802, "outer", NULL, NULL), AFUT_OK); break;
    case 'c': CHECK(afut_cancel(outer, NULL)); break;
    }
    spin(loop, 5);
    switch (which) {
    case 'a':
    case 'c':
    case 'd': CHECK_EQ_INT(afut_set_exception(inner, 801, "inner", NULL, NULL), AFUT_OK); break;
    case 'b': CHECK(afut_cancel(inner, NULL)); break;
    }
    spin(loop, 5);
    afut_unref(inner);
    afut_unref(outer);
    spin(loop, 5);
    int want_inner = which != 'b', want_outer = which == 'b' || which == 'd';
    int got_inner = reports_count_code(&rep, 801), got_outer = reports_count_code(&rep, 802);
    if (got_inner != want_inner || got_outer != want_outer)
        fprintf(stderr, "  item8%c: never-retrieved reports: inner %d (asyncio %d), outer %d (asyncio %d)\n", which,
                got_inner, want_inner, got_outer, want_outer);
    CHECK_EQ_INT(got_inner, want_inner);
    CHECK_EQ_INT(got_outer, want_outer);
    afut_loop_free(loop);
}

TEST(item8_shield_outer_done_by_its_caller_detaches) {
    static const char *const what[4] = {
        "item8a outer set_result by caller, inner fails later",
        "item8b outer set_exception by caller, inner cancelled later",
        "item8c outer cancelled by caller, inner fails later",
        "item8d outer set_exception by caller, inner fails later",
    };
    for (int i = 0; i < 4; i++) {
        sub_begin();
        shield_detach_case((char)('a' + i));
        sub_end("%s", what[i]);
    }
}

/* ============================================================================ item 9 */

/* Item 9 (gather and shield outers held only weakly by their inputs). asyncio: the children's
 * done-callbacks reference the outer, so it lives until it completes, and a done-callback
 * added to it runs even after the caller dropped its reference [X: gather(f) / shield(f),
 * add_done_callback, del, gc.collect(), f.set_result(7): the callback ran with [7] / 7]. afut
 * already does so for tasks (gh-91887, SEMANTICS.md B13). */
typedef struct kept {
    atomic_int ran, freed;
    int result_rc;
} kept_t;

static void kept_done(afut_t *f, void *ud) {
    kept_t *k = ud;
    k->result_rc = afut_result(f, NULL);
    atomic_fetch_add(&k->ran, 1);
}
static void kept_free(void *ud) { atomic_fetch_add(&((kept_t *)ud)->freed, 1); }

/* kind: 0 gather, 1 shield, 2 wait_for, 3 wait_many */
static void kept_alive_case(int kind) {
    reports_t rep;
    afut_loop_t *loop = new_loop_with(&rep);
    afut_t *f = afut_loop_create_future(loop);
    afut_t *outer = NULL;
    switch (kind) {
    case 0: outer = afut_gather(loop, &f, 1, false); break;
    case 1: outer = afut_shield(loop, f); break;
    case 2: outer = afut_wait_for(loop, f, INFINITY); break;
    case 3: outer = afut_wait_many(loop, &f, 1, INFINITY, AFUT_ALL_COMPLETED); break;
    }
    CHECK(outer != NULL && outer != f);
    kept_t k;
    memset(&k, 0, sizeof k);
    CHECK_EQ_INT(afut_add_done_callback(outer, kept_done, &k, kept_free), AFUT_OK);
    afut_unref(outer); /* the caller's reference goes; its input still leads to it */
    spin(loop, 3);
    CHECK_EQ_INT(atomic_load(&k.freed), 0);
    CHECK_EQ_INT(afut_set_result(f, NULL, NULL), AFUT_OK);
    spin(loop, 10);
    if (atomic_load(&k.ran) != 1) fprintf(stderr, "  item9: the dropped outer's done-callback did not run\n");
    CHECK_EQ_INT(atomic_load(&k.ran), 1);
    CHECK_EQ_INT(k.result_rc, AFUT_OK);
    CHECK_EQ_INT(atomic_load(&k.freed), 1);
    afut_unref(f);
    spin(loop, 5);
    afut_loop_free(loop);
}

TEST(item9_gather_and_shield_outers_live_until_done) {
    sub_begin();
    kept_alive_case(0);
    sub_end("item9 gather: dropped outer still runs its done-callback");
    sub_begin();
    kept_alive_case(1);
    sub_end("item9 shield: dropped outer still runs its done-callback");
}

/* The same class, not named in the issue: asyncio's wait_for and wait are coroutines run by a
 * task that its awaited future's callback keeps alive (T3), so a done-callback added to them
 * runs too. */
TEST(item9_same_class_wait_for_and_wait_many) {
    sub_begin();
    kept_alive_case(2);
    sub_end("item9 (same class) wait_for: dropped outer runs its callback");
    sub_begin();
    kept_alive_case(3);
    sub_end("item9 (same class) wait_many: dropped outer runs its callback");
}

/* ============================================================================ item 10 */

/* Item 10 (gather(return_exceptions=true) marks each child's exception retrieved as soon as
 * that child fails). asyncio marks them only when the gather completes (its _done_callback
 * reads every child's exception() once the last child is done, SEMANTICS.md G4). So a child
 * that failed inside a gather that never completes is reported [X, CPython 3.13.0: f1 fails,
 * f2 pending, gather(f1, f2, return_exceptions=True); after the iterations
 * f1._log_traceback is still True; the loop is closed, f2 completed afterwards (its callbacks
 * can no longer run), everything dropped: one "Future exception was never retrieved" report,
 * for f1's ValueError]. The same with the gather dropped and never completed (no close). */
TEST(item10_gather_return_exceptions_retrieves_only_at_completion) {
    reports_t rep;
    afut_loop_t *loop = new_loop_with(&rep);
    afut_t *kids[2] = {afut_loop_create_future(loop), afut_loop_create_future(loop)};
    afut_t *g = afut_gather(loop, kids, 2, true);
    CHECK(g != NULL);
    CHECK_EQ_INT(afut_set_exception(kids[0], 1001, "f1", NULL, NULL), AFUT_OK);
    spin(loop, 5);
    CHECK(!afut_done(g));
    CHECK_EQ_INT(afut_loop_close(loop), AFUT_OK);
    CHECK_EQ_INT(afut_set_result(kids[1], NULL, NULL), AFUT_OK); /* its callbacks are dropped */
    CHECK(!afut_done(g));
    afut_unref(g);
    afut_unref(kids[0]);
    afut_unref(kids[1]);
    int got = reports_count_code(&rep, 1001);
    if (got != 1)
        fprintf(stderr, "  item10: %d never-retrieved report(s) for the failed child of a gather that never "
                "completed; asyncio makes 1\n", got);
    CHECK_EQ_INT(got, 1);
    afut_loop_free(loop);
}

/* ============================================================== smaller finding: cycle */

/* Tasks awaiting each other in a cycle (A awaits B, B awaits A), then afut_cancel(A).
 * CPython 3.13.0 [X, both the C Task and the pure-Python one]: A.cancel() propagates to its
 * waiter B, whose cancel propagates back to A, and so on: it raises RecursionError; both tasks
 * stay PENDING through any number of iterations (a later B.cancel() does the same); when the
 * loop is closed and they are collected, "Task was destroyed but it is pending!" is reported
 * for each. So the cancel must return (no hang, no crash; its bool is the nearest C analogue
 * of the raise and is not checked), the tasks stay pending while the loop runs, and closing
 * the loop ends both with one such report each (afut_task_new's documented close). */
typedef struct cyc {
    afut_t *gate;  /* each task first awaits it, so that both exist before the cycle forms */
    afut_t *other; /* the task it then awaits */
    atomic_int steps;
} cyc_t;

static void cyc_step(afut_t *task, afut_t *awaited, void *ud) {
    cyc_t *c = ud;
    atomic_fetch_add(&c->steps, 1);
    if (!awaited) {
        (void)afut_task_await(task, c->gate);
        return;
    }
    if (awaited == c->gate) {
        (void)afut_task_await(task, c->other);
        return;
    }
    /* the other task is done: finish (never happens in a cycle) */
    (void)afut_set_result(task, NULL, NULL);
}

TEST(finding_cycle_of_tasks_cancel_matches_asyncio) {
    reports_t rep;
    afut_loop_t *loop = new_loop_with(&rep);
    cyc_t ca, cb;
    memset(&ca, 0, sizeof ca);
    memset(&cb, 0, sizeof cb);
    ca.gate = afut_loop_create_future(loop);
    cb.gate = afut_loop_create_future(loop);
    afut_t *a = afut_task_new(loop, cyc_step, &ca, NULL);
    afut_t *b = afut_task_new(loop, cyc_step, &cb, NULL);
    ca.other = b;
    cb.other = a;
    spin(loop, 5);
    CHECK_EQ_INT(afut_set_result(ca.gate, NULL, NULL), AFUT_OK);
    CHECK_EQ_INT(afut_set_result(cb.gate, NULL, NULL), AFUT_OK);
    spin(loop, 5); /* A awaits B, B awaits A */
    CHECK(!afut_done(a) && !afut_done(b));
    bool r = afut_cancel(a, "m");
    for (int i = 0; i < 20; i++) CHECK_EQ_INT(afut_loop_run_once(loop, 0, NULL), AFUT_OK);
    CHECK(!afut_done(a));
    CHECK(!afut_done(b));
    (void)afut_cancel(b, NULL);
    for (int i = 0; i < 5; i++) CHECK_EQ_INT(afut_loop_run_once(loop, 0, NULL), AFUT_OK);
    CHECK(!afut_done(a));
    CHECK(!afut_done(b));
    CHECK(afut_task_cancelling(a) >= 1);
    CHECK(afut_task_cancelling(b) >= 1);
    CHECK_EQ_INT(afut_loop_close(loop), AFUT_OK);
    CHECK(afut_done(a) && afut_done(b));
    CHECK_EQ_INT(atomic_load(&rep.destroyed), 2);
    printf("    cycle: afut_cancel(A) returned %s; cancelling A=%d B=%d (CPython: RecursionError, both pending)\n",
           r ? "true" : "false", afut_task_cancelling(a), afut_task_cancelling(b));
    afut_unref(a);
    afut_unref(b);
    afut_unref(ca.gate);
    afut_unref(cb.gate);
    afut_loop_free(loop);
}

/* ====================================================== smaller finding: stale stopper */

/* The stale-stopper line: asyncio's run_until_complete leaves its stop callback queued when
 * the future completed in the same batch as a loop.stop() (the run ends before the stopper
 * runs; `remove_done_callback` cannot remove a callback that is already queued), and that
 * stopper ends the NEXT run after one iteration [X, CPython 3.13.0: a callback does
 * f.set_result(1); loop.stop(); run_until_complete(f) returns 1; the next run_forever of a
 * 3-step callback chain ends after step 1 (bpo-22429 / test_run_until_complete_loop_orphan_
 * future_close_loop, SEMANTICS.md B14)]. afut makes the stale stopper inert, a deliberate
 * difference: the next run runs to its own stop. */
typedef struct chain3 {
    afut_loop_t *loop;
    int steps;
} chain3_t;

static void chain3_cb(void *ud) {
    chain3_t *c = ud;
    if (++c->steps < 3) afut_loop_call_soon(c->loop, chain3_cb, c, NULL);
    else afut_loop_stop(c->loop);
}

typedef struct stale {
    afut_loop_t *loop;
    afut_t *f;
} stale_t;

static void complete_and_stop(void *ud) {
    stale_t *s = ud;
    (void)afut_set_result(s->f, NULL, NULL);
    afut_loop_stop(s->loop);
}

static void stopper_leftover_case(int next_run_kind) {
    afut_loop_t *loop = afut_loop_new();
    stale_t s = {loop, afut_loop_create_future(loop)};
    CHECK(afut_loop_call_soon(loop, complete_and_stop, &s, NULL) != 0);
    CHECK_EQ_INT(afut_loop_run_until_complete(loop, s.f), AFUT_OK);
    chain3_t c = {loop, 0};
    if (next_run_kind == 0) {
        CHECK(afut_loop_call_soon(loop, chain3_cb, &c, NULL) != 0);
        CHECK_EQ_INT(afut_loop_run_forever(loop), AFUT_OK);
        CHECK_EQ_INT(c.steps, 3);
    } else {
        /* the next run_until_complete runs until its own future is done */
        afut_t *g = afut_sleep(loop, 0.01, NULL, NULL);
        CHECK_EQ_INT(afut_loop_run_until_complete(loop, g), AFUT_OK);
        CHECK(afut_done(g));
        afut_unref(g);
    }
    afut_unref(s.f);
    afut_loop_free(loop);
}

TEST(stale_stopper_does_not_end_the_next_run) {
    sub_begin();
    stopper_leftover_case(0);
    sub_end("stale stopper: next run_forever runs its 3-step chain");
    sub_begin();
    stopper_leftover_case(1);
    sub_end("stale stopper: next run_until_complete waits for its future");
}

/* ====================================================== smaller finding: fork() */

/* fork() in a process with a live loop: the child must be able to start over, as libuv's
 * uv_loop_fork does: afut_loop_fork, called in the child (on a poller it cannot renew it
 * refuses with AFUT_ERR_OS and ENOTSUP, as the header says, and the test accepts only that).
 * After it the child has fresh kernel objects:
 *   - a timer scheduled before the fork fires in the child (through the child's own fd) AND
 *     in the parent, even though the child consumed its expiry first (shared objects would
 *     let the child eat the parent's timer expiry, and the parent's fd would stay silent);
 *   - a cross-thread submission in the child makes only the child's fd readable, and one in
 *     the parent only the parent's. */
typedef struct fork_sub {
    afut_loop_t *loop;
    atomic_int *counter;
} fork_sub_t;

static void *fork_submit_main(void *p) {
    fork_sub_t *s = p;
    afut_loop_call_soon(s->loop, count_cb, s->counter, NULL);
    return NULL;
}

static void fork_submit_from_thread(afut_loop_t *loop, atomic_int *counter) {
    fork_sub_t s = {loop, counter};
    pthread_t th;
    pthread_create(&th, NULL, fork_submit_main, &s);
    pthread_join(th, NULL);
}

/* Waits for the fd, runs one iteration; returns how many callbacks ran (-1: fd stayed silent). */
static long host_step(afut_loop_t *loop, int fd, double secs) {
    if (test_readable(fd, (int)(budget(secs) * 1000)) != 1) return -1;
    size_t ran = 0;
    if (afut_loop_run_once(loop, 0, &ran) != AFUT_OK) return -2;
    return (long)ran;
}

TEST(finding_fork_child_starts_over_with_afut_loop_fork) {
    CHECK_EQ_INT(afut_loop_fork(NULL), AFUT_ERR_INVALID_ARGUMENT);
    afut_loop_t *closed = afut_loop_new();
    CHECK_EQ_INT(afut_loop_close(closed), AFUT_OK);
    CHECK_EQ_INT(afut_loop_fork(closed), AFUT_ERR_LOOP_CLOSED);
    afut_loop_free(closed);
    afut_loop_t *loop = afut_loop_new();
    int fd = afut_loop_fd(loop);
    atomic_int timer_ran, soon_ran;
    atomic_init(&timer_ran, 0);
    atomic_init(&soon_ran, 0);
    CHECK(afut_loop_call_later(loop, 0.15, count_cb, &timer_ran, NULL) != 0);
    CHECK_EQ_INT(test_readable(fd, 0), 0);
    int c2p[2];
    CHECK_EQ_INT(pipe(c2p), 0);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        close(c2p[0]);
        alarm((unsigned)ceil(budget(10)));
        int fails = 0;
        int rc = afut_loop_fork(loop);
        if (rc == AFUT_ERR_OS && errno == ENOTSUP) _exit(77); /* documented: not this poller */
        if (rc != AFUT_OK) fails |= 1;
        int cfd = afut_loop_fd(loop);
        if (cfd < 0) fails |= 2;
        /* the inherited timer fires in the child, through the child's fd */
        if (host_step(loop, cfd, 2.0) != 1 || atomic_load(&timer_ran) != 1) fails |= 4;
        char ok = 'k';
        if (write(c2p[1], &ok, 1) != 1) fails |= 8; /* the parent may look now */
        /* a cross-thread submission wakes the child's fd */
        fork_submit_from_thread(loop, &soon_ran);
        if (host_step(loop, cfd, 2.0) != 1 || atomic_load(&soon_ran) != 1) fails |= 16;
        /* a new timer in the child */
        afut_loop_call_later(loop, 0.01, count_cb, &timer_ran, NULL);
        if (host_step(loop, cfd, 2.0) != 1 || atomic_load(&timer_ran) != 2) fails |= 32;
        if (test_readable(cfd, 0) != 0) fails |= 64;
        afut_loop_free(loop);
        if (fails) fprintf(stderr, "  fork child: failures 0x%x\n", fails);
        _exit(fails ? 1 : 0);
    }
    CHECK(pid > 0);
    close(c2p[1]);
    /* wait until the child consumed its copy of the timer */
    struct pollfd p = {.fd = c2p[0], .events = POLLIN};
    CHECK_EQ_INT(poll(&p, 1, (int)(budget(3) * 1000)), 1);
    char ok = 0;
    ssize_t got = read(c2p[0], &ok, 1);
    close(c2p[0]);
    if (got == 0) {
        /* the child left without a word: afut_loop_fork is unsupported on this poller (the
         * header says so: ENOTSUP), which is the only early exit it is allowed */
        int st0 = 0;
        while (waitpid(pid, &st0, 0) < 0 && errno == EINTR) {
        }
        CHECK(WIFEXITED(st0) && WEXITSTATUS(st0) == 77);
        printf("    fork: afut_loop_fork unsupported by this poller (ENOTSUP), as documented\n");
        afut_loop_free(loop);
        return;
    }
    CHECK_EQ_INT(got, 1);
    /* the parent's timer still makes the parent's fd readable */
    long ran = host_step(loop, fd, 2.0);
    if (ran != 1) fprintf(stderr, "  fork: the parent's timer did not make its fd readable (host_step %ld)\n", ran);
    CHECK_EQ_INT(ran, 1);
    CHECK_EQ_INT(atomic_load(&timer_ran), 1);
    /* the child's submissions did not touch the parent's fd; the parent's own do */
    CHECK_EQ_INT(test_readable(fd, 0), 0);
    fork_submit_from_thread(loop, &soon_ran);
    CHECK_EQ_INT(host_step(loop, fd, 2.0), 1);
    CHECK_EQ_INT(atomic_load(&soon_ran), 1);
    CHECK_EQ_INT(test_readable(fd, 0), 0);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    afut_loop_free(loop);
}


/* ================================================================== later findings */

/* Found by the extended model (host fd checked after every step): a timer cancelled before
 * it ran left the kernel timer armed for its deadline, so an idle host's fd turned readable
 * once with nothing to do (afut_loop_timeout_ms said -1): a level-triggered host woke for
 * nothing. Promise: the fd is readable exactly when run_once(loop, 0) has work. Cancelling the
 * earliest of two timers must leave the fd armed for the other one only. */
static void *cancel_from_thread_main(void *p) {
    void **a = p;
    afut_loop_cancel((afut_loop_t *)a[0], *(afut_handle_t *)a[1]);
    return NULL;
}

/* afut_loop_cancel(loop, h) on a thread of its own (joined before it returns). */
static void cancel_on_another_thread(afut_loop_t *loop, afut_handle_t h) {
    pthread_t t;
    void *args[2] = {loop, &h};
    CHECK_EQ_INT(pthread_create(&t, NULL, cancel_from_thread_main, args), 0);
    pthread_join(t, NULL);
}

static void cancelled_timer_case(double delay, int second, int cross, int relay) {
    afut_loop_t *loop = afut_loop_new();
    int fd = afut_loop_fd(loop);
    atomic_int ran;
    atomic_init(&ran, 0);
    double t0 = now_s();
    afut_handle_t h = afut_loop_call_later(loop, delay, count_cb, &ran, NULL);
    CHECK(h != 0);
    if (second) CHECK(afut_loop_call_later(loop, 3600.0, count_cb, &ran, NULL) != 0);
    if (cross) {
        cancel_on_another_thread(loop, h);
    } else {
        CHECK(afut_loop_cancel(loop, h));
    }
    /* The documented exception of the poll() fallback: a timer that came due before its
     * cancel has raised the relay's fd, which stays so until the next run_once. */
    int excused = relay && now_s() - t0 >= delay;
    test_sleep_s(delay + 0.005);
    int r = test_readable(fd, 0);
    int tmo = afut_loop_timeout_ms(loop);
    if (r != 0 && !excused) fprintf(stderr, "  cancelled timer %g: idle fd readable (timeout_ms %d)\n", delay, tmo);
    if (!excused) CHECK_EQ_INT(r, 0);
    if (second) CHECK(tmo > 3000 * 1000);
    else CHECK_EQ_INT(tmo, -1);
    size_t n = 9;
    CHECK_EQ_INT(afut_loop_run_once(loop, 0, &n), AFUT_OK);
    CHECK_EQ_INT(n, 0);
    CHECK_EQ_INT(atomic_load(&ran), 0);
    CHECK_EQ_INT(test_readable(fd, 0), 0);
    afut_loop_free(loop);
}

/* The same on a virtual clock: a timer due when scheduled raises the fd at once (no timerfd
 * there), and its cancel between runs must lower it again, from the host's thread or another
 * one; a later timer keeps the fd quiet until it is due. */
static void cancelled_virtual_timer_case(int second, int cross) {
    afut_loop_t *loop = afut_loop_new();
    CHECK_EQ_INT(afut_loop_set_virtual_clock(loop, false), AFUT_OK);
    int fd = afut_loop_fd(loop);
    atomic_int ran;
    atomic_init(&ran, 0);
    afut_handle_t h = afut_loop_call_later(loop, -1.0, count_cb, &ran, NULL);
    CHECK(h != 0);
    if (second) CHECK(afut_loop_call_later(loop, 10.0, count_cb, &ran, NULL) != 0);
    CHECK_EQ_INT(test_readable(fd, 0), 1);
    CHECK_EQ_INT(afut_loop_timeout_ms(loop), 0);
    if (cross) {
        cancel_on_another_thread(loop, h);
    } else {
        CHECK(afut_loop_cancel(loop, h));
    }
    int r = test_readable(fd, 0);
    if (r != 0) fprintf(stderr, "  cancelled virtual timer: idle fd readable\n");
    CHECK_EQ_INT(r, 0);
    CHECK_EQ_INT(afut_loop_timeout_ms(loop), -1);
    if (second) {
        CHECK_EQ_INT(afut_loop_advance_time(loop, 10.0), AFUT_OK);
        CHECK_EQ_INT(test_readable(fd, 0), 1);
        CHECK_EQ_INT(afut_loop_timeout_ms(loop), 0);
    }
    size_t n = 9;
    CHECK_EQ_INT(afut_loop_run_once(loop, 0, &n), AFUT_OK);
    CHECK_EQ_INT(n, (size_t)second);
    CHECK_EQ_INT(atomic_load(&ran), second);
    CHECK_EQ_INT(test_readable(fd, 0), 0);
    afut_loop_free(loop);
}

TEST(finding_cancelled_timer_leaves_the_host_fd_idle) {
    static const double delays[] = {1e-9, 0.001, 0.01};
    /* The documented exception (afut_loop_fd): behind the poll() fallback's relay, a timer
     * that came due before its cancel leaves the fd raised until the next run_once; such
     * cases are excused there. scripts/test.sh's poll-backend stage sets
     * AFUT_TEST_POLL_BACKEND=1. */
    const char *pb = getenv("AFUT_TEST_POLL_BACKEND");
    int relay = pb && *pb == '1';
    for (size_t i = 0; i < sizeof delays / sizeof delays[0]; i++) {
        for (int second = 0; second < 2; second++) {
            for (int cross = 0; cross < 2; cross++) {
                sub_begin();
                cancelled_timer_case(delays[i], second, cross, relay);
                sub_end("cancelled timer %g s%s%s: host fd idle", delays[i], second ? ", a later one left" : "",
                        cross ? ", cancelled from another thread" : "");
            }
        }
    }
    for (int second = 0; second < 2; second++) {
        for (int cross = 0; cross < 2; cross++) {
            if (relay) continue; /* the same documented exception */
            sub_begin();
            cancelled_virtual_timer_case(second, cross);
            sub_end("cancelled due virtual timer%s%s: host fd idle", second ? ", a later one left" : "",
                    cross ? ", cancelled from another thread" : "");
        }
    }
}

/* Found by the extended model: afut_as_completed with an input that never completes leaked
 * its state, the inputs and the slots: the state held the inputs and each input's callback
 * held the state, and the loop's close did not break that cycle. Promise: afut_loop_free
 * (close) drops everything the loop's pending work holds; each userdata_free runs once.
 * Here the caller releases every future it got, then frees the loop: every userdata given to
 * the input and to the slots must be freed. */
static void freed_cb(afut_t *f, void *ud) {
    (void)f;
    (void)ud;
}
static void count_free(void *ud) { atomic_fetch_add((atomic_int *)ud, 1); }

static void as_completed_leak_case(double timeout, int close_first) {
    afut_loop_t *loop = afut_loop_new();
    afut_t *in[2] = {afut_loop_create_future(loop), afut_loop_create_future(loop)};
    atomic_int freed;
    atomic_init(&freed, 0);
    CHECK_EQ_INT(afut_add_done_callback(in[1], freed_cb, &freed, count_free), AFUT_OK);
    afut_t *out[2] = {NULL, NULL};
    CHECK_EQ_INT(afut_as_completed(loop, in, 2, timeout, out), 2);
    for (int i = 0; i < 2; i++) CHECK_EQ_INT(afut_add_done_callback(out[i], freed_cb, &freed, count_free), AFUT_OK);
    CHECK_EQ_INT(afut_set_result(in[0], NULL, NULL), AFUT_OK);
    spin(loop, 5); /* out[0] completes; in[1] never does */
    CHECK(afut_done(out[0]));
    CHECK(!afut_done(out[1]));
    CHECK_EQ_INT(atomic_load(&freed), 1); /* out[0]'s callback ran */
    if (close_first) CHECK_EQ_INT(afut_loop_close(loop), AFUT_OK);
    for (int i = 0; i < 2; i++) afut_unref(in[i]);
    for (int i = 0; i < 2; i++) afut_unref(out[i]);
    afut_loop_free(loop);
    if (atomic_load(&freed) != 3) fprintf(stderr, "  as_completed: %d of 3 userdata freed\n", atomic_load(&freed));
    CHECK_EQ_INT(atomic_load(&freed), 3);
}

TEST(finding_as_completed_with_a_pending_input_frees_at_close) {
    for (int t = 0; t < 2; t++) {
        for (int close_first = 0; close_first < 2; close_first++) {
            sub_begin();
            as_completed_leak_case(t ? 3600.0 : INFINITY, close_first);
            sub_end("as_completed, input never done, timeout %s, %s", t ? "1 h" : "none",
                    close_first ? "closed, then released" : "released, then freed");
        }
    }
}

/* Found by the extended model, the class of item 9: a pending afut_wrap_future wrapper that
 * its caller dropped after adding a done-callback was freed (its source held it weakly), so
 * the callback never ran. asyncio's _chain_future: the source's done-callback holds the
 * destination, which completes and runs its callbacks [X: wrap_future(cf) with a
 * concurrent.futures.Future, add_done_callback, del, gc.collect(), cf.set_result(7): the
 * callback ran with 7]. Sources: a future of another loop, and a loop-less one. And when
 * the source never completes, the loop's close breaks the cycle: nothing leaks. */
static void wrap_kept_case(int loopless) {
    reports_t rep;
    afut_loop_t *loop = new_loop_with(&rep);
    afut_loop_t *other = loopless ? NULL : afut_loop_new();
    afut_t *src = loopless ? afut_new(NULL) : afut_loop_create_future(other);
    afut_t *w = afut_wrap_future(loop, src);
    CHECK(w != NULL && w != src);
    kept_t k;
    memset(&k, 0, sizeof k);
    CHECK_EQ_INT(afut_add_done_callback(w, kept_done, &k, kept_free), AFUT_OK);
    afut_unref(w);
    spin(loop, 3);
    CHECK_EQ_INT(atomic_load(&k.freed), 0);
    CHECK_EQ_INT(afut_set_result(src, NULL, NULL), AFUT_OK);
    if (other) spin(other, 5);
    spin(loop, 10);
    if (atomic_load(&k.ran) != 1) fprintf(stderr, "  wrap_future: the dropped wrapper's done-callback did not run\n");
    CHECK_EQ_INT(atomic_load(&k.ran), 1);
    CHECK_EQ_INT(k.result_rc, AFUT_OK);
    CHECK_EQ_INT(atomic_load(&k.freed), 1);
    afut_unref(src);
    afut_loop_free(loop);
    if (other) afut_loop_free(other);
}

static void wrap_never_done_case(int loopless, int close_first) {
    afut_loop_t *loop = afut_loop_new();
    afut_loop_t *other = loopless ? NULL : afut_loop_new();
    afut_t *src = loopless ? afut_new(NULL) : afut_loop_create_future(other);
    atomic_int freed;
    atomic_init(&freed, 0);
    CHECK_EQ_INT(afut_add_done_callback(src, freed_cb, &freed, count_free), AFUT_OK);
    afut_t *w = afut_wrap_future(loop, src);
    afut_t *w2 = afut_wrap_future(loop, src);
    CHECK_EQ_INT(afut_add_done_callback(w, freed_cb, &freed, count_free), AFUT_OK);
    if (close_first) CHECK_EQ_INT(afut_loop_close(loop), AFUT_OK);
    afut_unref(w);
    afut_unref(w2);
    afut_unref(src);
    afut_loop_free(loop);
    if (other) afut_loop_free(other);
    if (atomic_load(&freed) != 2) fprintf(stderr, "  wrap_future never done: %d of 2 userdata freed\n", atomic_load(&freed));
    CHECK_EQ_INT(atomic_load(&freed), 2);
}

TEST(finding_dropped_wrap_future_wrapper_lives_until_done) {
    for (int loopless = 0; loopless < 2; loopless++) {
        sub_begin();
        wrap_kept_case(loopless);
        sub_end("wrap_future of a %s future: dropped wrapper runs its callback", loopless ? "loop-less" : "other loop's");
        for (int close_first = 0; close_first < 2; close_first++) {
            sub_begin();
            wrap_never_done_case(loopless, close_first);
            sub_end("wrap_future of a %s future never done: freed at %s", loopless ? "loop-less" : "other loop's",
                    close_first ? "close" : "free");
        }
    }
}

/* ============================================================================ main */

int main(void) {
    signal(SIGALRM, on_alarm);
    alarm(under_valgrind() ? 1200 : 600);
    RUNT(item1_no_lock_held_while_destructors_reenter_the_task_api);
    RUNT(item2_due_at_once_values_wake_the_loop);
    RUNT(item3_idle_host_fd_silent_after_a_timer_ran_at_its_deadline);
    RUNT(item4_huge_timeouts_never_come_due);
    RUNT(item5_deep_chains_on_a_small_stack);
    RUNT(item6_run_until_complete_keeps_its_future);
    RUNT(item7_shield_outer_cancelled_without_the_inner_message);
    RUNT(item8_shield_outer_done_by_its_caller_detaches);
    RUNT(item9_gather_and_shield_outers_live_until_done);
    RUNT(item9_same_class_wait_for_and_wait_many);
    RUNT(item10_gather_return_exceptions_retrieves_only_at_completion);
    RUNT(finding_cycle_of_tasks_cancel_matches_asyncio);
    RUNT(stale_stopper_does_not_end_the_next_run);
    RUNT(finding_fork_child_starts_over_with_afut_loop_fork);
    RUNT(finding_cancelled_timer_leaves_the_host_fd_idle);
    RUNT(finding_as_completed_with_a_pending_input_frees_at_close);
    RUNT(finding_dropped_wrap_future_wrapper_lives_until_done);
    TEST_END();
}
