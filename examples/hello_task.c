/*
 * hello_task.c: asyncio's "hello ... world" written as an afut task in C.
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
 *     asyncio.run(main())
 *
 * C has no coroutines, so the body of main() becomes a step function that the loop
 * calls: first with awaited == NULL (the code before `await fut`), then, once fut is done,
 * with awaited == fut (the code after it). See afut_task_new in afut.h for the protocol.
 *
 * Build and run (linked statically):
 *     cargo build --release
 *     gcc -std=c11 -Wall -Wextra -O2 -Iinclude examples/hello_task.c target/release/libafut.a \
 *         -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc -o hello_task && ./hello_task
 */
#include <stdio.h>
#include <stdlib.h>

#include "afut.h"

/* The timer owns one reference to the future: released after the callback ran. */
static void unref_future(void *fut) { afut_unref(fut); }

static void set_after(void *fut) { afut_set_result(fut, "... world", NULL); }

/* main()'s body. `awaited` is NULL on the first step, then the future it awaited. */
static void main_step(afut_t *task, afut_t *awaited, void *userdata) {
    (void)userdata;
    if (awaited == NULL) {
        afut_loop_t *loop = afut_get_loop(task);
        afut_t *fut = afut_loop_create_future(loop);                        /* fut = loop.create_future() */
        afut_loop_call_later(loop, 1.0, set_after, afut_ref(fut), unref_future); /* loop.call_later(...) */
        puts("hello ...");                                                   /* print("hello ...") */
        afut_task_await(task, fut);                                          /* await fut */
        afut_unref(fut); /* the task holds its own reference while it awaits */
        return;
    }
    void *value;
    afut_exception_t exc;
    switch (afut_result(awaited, &value)) {
    case AFUT_OK:
        puts(value);                                                         /* print(...) */
        afut_set_result(task, NULL, NULL);                                   /* return None */
        break;
    case AFUT_ERR_EXCEPTION: /* re-raise: the task fails like the future */
        afut_exception(awaited, &exc);
        afut_set_exception(task, exc.code, exc.message, NULL, NULL);
        break;
    default: /* cancelled: returning without completing ends the task CANCELLED */
        break;
    }
}

int main(void) {
    afut_loop_t *loop = afut_loop_new();
    if (loop == NULL) {
        perror("hello_task: afut_loop_new");
        return EXIT_FAILURE;
    }
    afut_t *task = afut_task_new(loop, main_step, NULL, NULL);             /* asyncio.run(main()) */
    afut_status_t rc = afut_loop_run_until_complete(loop, task);
    if (rc != AFUT_OK)
        fprintf(stderr, "hello_task: the task failed: %s\n", afut_status_str(rc));
    afut_unref(task);
    afut_loop_free(loop);
    return rc == AFUT_OK ? EXIT_SUCCESS : EXIT_FAILURE;
}
