/*
 * hello.c: the smallest afut program, asyncio's "hello ... world" in C.
 *
 * The Python it mirrors:
 *
 *     async def main():
 *         loop = asyncio.get_running_loop()
 *         fut = loop.create_future()
 *         loop.call_later(1.0, fut.set_result, "... world")
 *         print("hello ...")
 *         print(await fut)
 *
 * Here afut runs its own loop (afut_loop_run_until_complete); the other
 * examples show afut inside a host's loop (epoll, libuv, GLib, asyncio).
 *
 * Build and run: scripts/examples.sh hello does it all. By hand, linked statically:
 *     cargo build --release
 *     gcc -std=c11 -Wall -Wextra -O2 -Iinclude examples/hello.c target/release/libafut.a \
 *         -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc -o hello && ./hello
 * (Linking libafut.so instead: see examples/README.md about its versioned SONAME.)
 */
#include <stdio.h>
#include <stdlib.h>

#include "afut.h"

/* Prints what failed and why, using the library's static description of the code. */
static int fail(const char *what, afut_status_t rc) {
    fprintf(stderr, "hello: %s failed: %s (%d)\n", what, afut_status_str(rc), (int)rc);
    return EXIT_FAILURE;
}

/* userdata_free for the timer: the timer owns one reference to the future. */
static void unref_future(void *fut) { afut_unref(fut); }

/* Timer callback: runs on the loop's thread about 1 s after it was scheduled. */
static void set_after(void *userdata) {
    afut_t *fut = userdata;
    /* A string literal lives forever, so there is nothing to free: value_free NULL. */
    afut_status_t rc = afut_set_result(fut, "... world", NULL);
    if (rc != AFUT_OK) /* e.g. AFUT_ERR_INVALID_STATE if someone cancelled it first */
        fail("afut_set_result", rc);
}

int main(void) {
    int status = EXIT_FAILURE;

    afut_loop_t *loop = afut_loop_new();
    if (loop == NULL) {
        perror("hello: afut_loop_new");
        return EXIT_FAILURE;
    }

    afut_t *fut = afut_loop_create_future(loop);
    if (fut == NULL) {
        fprintf(stderr, "hello: afut_loop_create_future failed\n");
        goto out_loop;
    }

    /* The timer gets its own reference, released by unref_future once the
     * timer ran (or was cancelled, or dropped by afut_loop_free): the future
     * stays valid for the callback whatever main does with its own reference. */
    afut_handle_t timer = afut_loop_call_later(loop, 1.0, set_after, afut_ref(fut), unref_future);
    if (timer == 0) {
        /* On failure the userdata stays ours: give that reference back. */
        afut_unref(fut);
        fprintf(stderr, "hello: afut_loop_call_later failed\n");
        goto out_fut;
    }

    puts("hello ...");
    fflush(stdout); /* show it now, even when stdout is a pipe */

    /* Runs the loop until fut is done and returns its outcome. */
    afut_status_t rc = afut_loop_run_until_complete(loop, fut);
    if (rc != AFUT_OK) {
        fail("afut_loop_run_until_complete", rc);
        goto out_fut;
    }

    void *value; /* borrowed: lives as long as fut */
    rc = afut_result(fut, &value);
    if (rc != AFUT_OK) {
        fail("afut_result", rc);
        goto out_fut;
    }
    puts(value);
    status = EXIT_SUCCESS;

out_fut:
    afut_unref(fut);
out_loop:
    afut_loop_free(loop); /* closes the loop, freeing anything still scheduled */
    return status;
}
