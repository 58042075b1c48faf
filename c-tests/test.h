/* Minimal C test harness for afut's C suite (and the C++ suite in cpp-tests/).
 *
 * Each c-tests/<name>.c is one program. It defines test functions with TEST(),
 * lists them in main() with RUN() (or RUN_T(), with a deadline), and ends with
 * TEST_END(), which prints the closing "N passed, N failed" line and returns
 * non-zero on any failure. CHECK() records a failure (file:line and the
 * expression) and carries on, so a single run reports every broken assertion.
 *
 * What every program may also use:
 *   test_under_valgrind()  true when the driver runs the program under valgrind
 *   test_now_s()           seconds on CLOCK_MONOTONIC
 *   test_sleep_s(s), test_sleep_ms(ms)   sleeps the whole time, even when signals arrive
 *   test_readable(fd, ms)  1 if fd is readable within ms (0: now), 0 if not, -1 on error
 *   test_deadline(s)       ends the program (status 3, with a line naming the test that
 *                          was running) if it still runs `s` seconds from now; 0 cancels
 *   RUN_T(name)            RUN() under a per-test deadline of TEST_DEADLINE_S seconds
 *                          (default 60; four times that under valgrind), so that a hung
 *                          test (a deadlock in the library) fails the program instead of
 *                          hanging the suite
 *
 * The helpers need POSIX: a program defines _POSIX_C_SOURCE (or _GNU_SOURCE) before its
 * first #include, or includes this header first. */
#ifndef AFUT_TEST_H
#define AFUT_TEST_H

#if !defined(_POSIX_C_SOURCE) && !defined(_GNU_SOURCE) && !defined(__cplusplus)
#define _POSIX_C_SOURCE 200809L
#endif

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int test_passed_;
static int test_failed_;
static int test_current_failures_;
/* The test running now (set by RUN), for the deadline's message and watchdogs. */
static const char *volatile test_current_name_ = "(before the first test)";

#define TEST(name) static void name(void)

#define CHECK(cond)                                                              \
    do {                                                                         \
        if (!(cond)) {                                                           \
            test_current_failures_++;                                            \
            fprintf(stderr, "  %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
        }                                                                        \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                       \
    do {                                                                         \
        long long a_ = (long long)(a), b_ = (long long)(b);                      \
        if (a_ != b_) {                                                          \
            test_current_failures_++;                                            \
            fprintf(stderr, "  %s:%d: %s == %lld, expected %s == %lld\n",        \
                    __FILE__, __LINE__, #a, a_, #b, b_);                         \
        }                                                                        \
    } while (0)

#define CHECK_STR(a, b)                                                          \
    do {                                                                         \
        const char *a_ = (a), *b_ = (b);                                         \
        if (!a_ || !b_ || strcmp(a_, b_) != 0) {                                 \
            test_current_failures_++;                                            \
            fprintf(stderr, "  %s:%d: %s == \"%s\", expected \"%s\"\n",          \
                    __FILE__, __LINE__, #a, a_ ? a_ : "(null)", b_ ? b_ : "(null)"); \
        }                                                                        \
    } while (0)

#define RUN(name)                                                                \
    do {                                                                         \
        test_current_name_ = #name;                                              \
        test_current_failures_ = 0;                                              \
        name();                                                                  \
        if (test_current_failures_) {                                            \
            test_failed_++;                                                      \
            printf("FAIL %s\n", #name);                                          \
        } else {                                                                 \
            test_passed_++;                                                      \
            printf("ok   %s\n", #name);                                          \
        }                                                                        \
        fflush(stdout);                                                          \
    } while (0)

#define TEST_END()                                                               \
    do {                                                                         \
        printf("%d passed, %d failed\n", test_passed_, test_failed_);            \
        return test_failed_ ? 1 : 0;                                             \
    } while (0)

/* ------------------------------------------------------------------ helpers */

static inline bool test_under_valgrind(void) {
    const char *v = getenv("AFUT_UNDER_VALGRIND");
    return v && strcmp(v, "1") == 0;
}

static inline double test_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline void test_sleep_s(double s) {
    if (s <= 0) return;
    struct timespec ts;
    ts.tv_sec = (time_t)s;
    ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static inline void test_sleep_ms(int ms) { test_sleep_s(ms / 1000.0); }

/* 1 if fd is readable within timeout_ms (0: just look), 0 if not, -1 on a poll error. */
static inline int test_readable(int fd, int timeout_ms) {
    struct pollfd p;
    int r;
    memset(&p, 0, sizeof p);
    p.fd = fd;
    p.events = POLLIN;
    do {
        r = poll(&p, 1, timeout_ms);
    } while (r < 0 && errno == EINTR);
    if (r < 0) return -1;
    return r > 0 && (p.revents & POLLIN) ? 1 : 0;
}

/* SIGALRM: the deadline passed. Only async-signal-safe calls. */
static inline void test_on_deadline_(int sig) {
    (void)sig;
    static const char msg[] = "\nFATAL: deadline exceeded (a hung test?), in test ";
    const char *name = (const char *)test_current_name_;
    ssize_t r = write(2, msg, sizeof msg - 1);
    r = write(2, name, strlen(name));
    r = write(2, "\n", 1);
    (void)r;
    _exit(3);
}

static inline void test_deadline(unsigned seconds) {
    signal(SIGALRM, test_on_deadline_);
    alarm(seconds);
}

#ifndef TEST_DEADLINE_S
#define TEST_DEADLINE_S 60
#endif

#define RUN_T(name)                                                              \
    do {                                                                         \
        test_deadline(test_under_valgrind() ? 4 * (TEST_DEADLINE_S) : (TEST_DEADLINE_S)); \
        RUN(name);                                                               \
        test_deadline(0);                                                        \
    } while (0)

#endif
