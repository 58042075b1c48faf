/*
 * executor.c: hash files on a thread pool, print each result as soon as it is ready.
 *
 *   ./executor FILE...
 *
 * Reading and hashing a file blocks, so each file becomes a job of an afut executor
 * (concurrent.futures' ThreadPoolExecutor): afut_loop_run_in_executor gives one loop future per
 * file, and afut_as_completed turns them into futures that complete in completion order
 * (asyncio's `for f in as_completed(...)`). The loop thread waits for each in turn; a big file
 * does not hold back the small ones behind it. A file that cannot be read fails its future
 * with the errno as the exception code.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "afut.h"

/* The result of one job: owned by its future (value_free = free). */
struct digest {
    const char *path; /* borrowed from argv */
    uint64_t bytes;
    uint64_t fnv1a; /* 64-bit FNV-1a of the contents */
};

/* Runs on a worker thread: reads the whole file and completes the future. */
static void hash_file(afut_t *fut, void *userdata) {
    const char *path = userdata;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        int err = errno;
        char msg[512];
        snprintf(msg, sizeof msg, "%s: %s", path, strerror(err));
        afut_set_exception(fut, err ? err : EIO, msg, NULL, NULL); /* the message is copied */
        return;
    }
    struct digest *d = malloc(sizeof *d);
    if (d == NULL) {
        fclose(f);
        afut_set_exception(fut, ENOMEM, "out of memory", NULL, NULL);
        return;
    }
    *d = (struct digest){.path = path, .bytes = 0, .fnv1a = 0xcbf29ce484222325ull};
    unsigned char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
        for (size_t i = 0; i < n; i++) d->fnv1a = (d->fnv1a ^ buf[i]) * 0x100000001b3ull;
        d->bytes += n;
    }
    int failed = ferror(f);
    fclose(f);
    if (failed) {
        free(d);
        afut_set_exception(fut, EIO, "read error", NULL, NULL);
        return;
    }
    if (afut_set_result(fut, d, free) != AFUT_OK) free(d); /* cancelled meanwhile */
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE...\n", argv[0]);
        return 2;
    }
    size_t n = (size_t)argc - 1;
    afut_loop_t *loop = afut_loop_new();
    afut_executor_t *ex = afut_executor_new(0); /* as many workers as CPUs, started on demand */
    afut_t **jobs = calloc(n, sizeof *jobs);
    afut_t **in_order = calloc(n, sizeof *in_order);
    if (!loop || !ex || !jobs || !in_order) {
        fprintf(stderr, "executor: out of memory\n");
        return 1;
    }

    for (size_t i = 0; i < n; i++) {
        jobs[i] = afut_loop_run_in_executor(loop, ex, hash_file, argv[i + 1], NULL);
        if (jobs[i] == NULL) {
            fprintf(stderr, "executor: afut_loop_run_in_executor failed\n");
            return 1;
        }
    }

    size_t got = afut_as_completed(loop, jobs, n, INFINITY, in_order);
    int failures = 0;
    for (size_t k = 0; k < got; k++) {
        afut_status_t rc = afut_loop_run_until_complete(loop, in_order[k]);
        void *value;
        afut_exception_t e;
        if (rc == AFUT_OK && afut_result(in_order[k], &value) == AFUT_OK) {
            const struct digest *d = value;
            printf("#%zu %s: %" PRIu64 " bytes, fnv1a-64 %016" PRIx64 "\n", k + 1, d->path, d->bytes, d->fnv1a);
        } else if (rc == AFUT_ERR_EXCEPTION && afut_exception(in_order[k], &e) == AFUT_OK) {
            printf("#%zu failed: %s (errno %d)\n", k + 1, e.message ? e.message : "?", (int)e.code);
            failures++;
        } else {
            printf("#%zu: %s\n", k + 1, afut_status_str(rc));
            failures++;
        }
    }
    printf("executor: %zu files, %d failed\n", got, failures);

    afut_executor_free(ex); /* every job is done: returns at once */
    for (size_t i = 0; i < n; i++) {
        afut_unref(in_order[i]);
        afut_unref(jobs[i]);
    }
    free(in_order);
    free(jobs);
    afut_loop_free(loop);
    return 0;
}
