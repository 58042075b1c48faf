/* Shared helpers of the afut benchmark suite.
 *
 * Every bench program measures afut and a hand-written C floor in the same process,
 * alternating them repetition by repetition, then runs the same workload in Python's
 * asyncio (benches/asyncio_bench.py) and prints all three with their ratios.
 *
 * Machine-readable results are lines "@ key value"; scripts/bench.sh collects them
 * into its Markdown table. Human-readable lines start with anything else.
 *
 * Environment:
 *   BENCH_REPS      repetitions per measurement (default 5, at most 31; the median is reported)
 *   BENCH_SCALE     multiplies the operation counts (default 1; e.g. 0.05 under valgrind)
 *   BENCH_CPU       the core the ping-pong pins both of its threads to (default: the
 *                   lowest-numbered core the process may use)
 *   BENCH_PYTHON    the interpreter for the asyncio side ("" or "none": skipped)
 *   BENCH_DIR       where asyncio_bench.py lives (default: the directory of argv[0]'s source)
 */
#ifndef AFUT_BENCH_H
#define AFUT_BENCH_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define NOINLINE __attribute__((noinline))
#define UNUSED __attribute__((unused))

/* Brackets a measured phase for `scripts/bench.sh --profile`, which runs callgrind with
 * --collect-atstart=no: instructions are counted only between two toggles, so setup and
 * teardown stay out of the per-operation figures. Outside valgrind this is a few no-op
 * instructions per measurement (not per operation). */
#if defined(__has_include)
#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#define PROFILE_TOGGLE() CALLGRIND_TOGGLE_COLLECT
#endif
#endif
#ifndef PROFILE_TOGGLE
#define PROFILE_TOGGLE() ((void)0)
#endif

static UNUSED uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* CPU time of the whole process (all threads), user + system. */
static UNUSED uint64_t cpu_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Voluntary context switches of the calling thread: each one is a sleep in the kernel,
 * so the difference over an interval counts the thread's wakeups. */
static UNUSED long thread_nvcsw(void) {
    struct rusage ru;
    getrusage(RUSAGE_THREAD, &ru);
    return ru.ru_nvcsw;
}

static UNUSED int bench_reps(void) {
    const char *s = getenv("BENCH_REPS");
    int r = s ? atoi(s) : 5;
    return r < 1 ? 1 : r > 31 ? 31 : r;
}

/* n scaled by BENCH_SCALE, at least `min`. */
static UNUSED size_t scaled(size_t n, size_t min) {
    const char *s = getenv("BENCH_SCALE");
    double f = s ? atof(s) : 1.0;
    if (!(f > 0)) f = 1.0;
    size_t v = (size_t)((double)n * f);
    return v < min ? min : v;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of v[0..n) (sorts v). */
static UNUSED double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* The p-th percentile (0..100) of v[0..n) (sorts v; nearest rank). */
static UNUSED double percentile(double *v, size_t n, double p) {
    qsort(v, n, sizeof *v, cmp_double);
    size_t k = (size_t)ceil(p / 100.0 * (double)n);
    if (k < 1) k = 1;
    if (k > n) k = n;
    return v[k - 1];
}

static UNUSED void die(const char *what) {
    fprintf(stderr, "bench: %s failed (errno %d: %s)\n", what, errno, strerror(errno));
    exit(1);
}

/* ---- results --------------------------------------------------------------------- */

#define MAX_RESULTS 64
static struct {
    char key[48];
    double value;
} results[MAX_RESULTS];
static int n_results;

/* Records and prints "@ key value". */
static UNUSED void emit(const char *key, double value) {
    if (n_results < MAX_RESULTS) {
        snprintf(results[n_results].key, sizeof results[n_results].key, "%s", key);
        results[n_results].value = value;
        n_results++;
    }
    printf("@ %s %.6g\n", key, value);
    fflush(stdout);
}

/* A recorded value, NAN if absent. */
static UNUSED double result(const char *key) {
    for (int i = n_results - 1; i >= 0; i--)
        if (strcmp(results[i].key, key) == 0) return results[i].value;
    return NAN;
}

/* Runs `python asyncio_bench.py <workload>` and records its "@ key value" lines.
 * Returns 0 on success, -1 if Python is unavailable (the asyncio columns stay empty). */
static UNUSED int run_asyncio(const char *workload) {
    const char *py = getenv("BENCH_PYTHON");
    if (py && (!*py || strcmp(py, "none") == 0)) return -1;
    if (!py) py = "python3";
    const char *dir = getenv("BENCH_DIR");
    if (!dir) dir = "benches";
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' '%s/asyncio_bench.py' %s", py, dir, workload);
    fflush(stdout);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    char line[256];
    while (fgets(line, sizeof line, p)) {
        char key[64];
        double v;
        if (sscanf(line, "@ %63s %lf", key, &v) == 2)
            emit(key, v);
        else
            fputs(line, stdout);
    }
    int rc = pclose(p);
    if (rc != 0) {
        fprintf(stderr, "bench: asyncio side '%s' exited with %d\n", cmd, rc);
        return -1;
    }
    return 0;
}

/* Prints "label: afut X, floor Y, asyncio Z unit; afut/floor R1, asyncio/afut R2" for a
 * cost (lower is better: ns per op, us latency). */
static UNUSED void summary_cost(const char *label, const char *key, const char *unit) {
    char k[64];
    snprintf(k, sizeof k, "%s.afut", key);
    double a = result(k);
    snprintf(k, sizeof k, "%s.floor", key);
    double f = result(k);
    snprintf(k, sizeof k, "%s.asyncio", key);
    double p = result(k);
    printf("%-34s afut %9.1f %s | floor %9.1f %s | asyncio %9.1f %s | afut/floor %6.2fx | asyncio/afut %7.1fx\n",
           label, a, unit, f, unit, p, unit, a / f, p / a);
}

/* The same for a throughput (higher is better): ratios are still cost ratios. */
static UNUSED void summary_rate(const char *label, const char *key, const char *unit) {
    char k[64];
    snprintf(k, sizeof k, "%s.afut", key);
    double a = result(k);
    snprintf(k, sizeof k, "%s.floor", key);
    double f = result(k);
    snprintf(k, sizeof k, "%s.asyncio", key);
    double p = result(k);
    printf("%-34s afut %9.3f %s | floor %9.3f %s | asyncio %9.3f %s | afut/floor %5.2fx of floor throughput | afut/asyncio %7.1fx\n",
           label, a, unit, f, unit, p, unit, a / f, a / p);
    /* The same as time per operation (rates in Mops/s: ns/op = 1000 / rate). */
    printf("%-34s afut %9.1f ns/op | floor %9.1f ns/op | asyncio %9.1f ns/op\n", "", 1000 / a, 1000 / f, 1000 / p);
}

static UNUSED void pin_to(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0) die("sched_setaffinity");
}

/* BENCH_CPU, else the lowest-numbered core this process may run on. */
static UNUSED int bench_cpu(void) {
    const char *s = getenv("BENCH_CPU");
    if (s) return atoi(s);
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0)
        for (int c = 0; c < CPU_SETSIZE; c++)
            if (CPU_ISSET(c, &set)) return c;
    return 0;
}

#endif
