/* The smallest useful afut program, built by scripts/consumers.sh in every way a
 * user would build it (find_package, add_subdirectory, pkg-config + cc; shared
 * and static). It runs one loop iteration that completes a future and prints
 * "consumer ok <version>"; anything else is a failure (exit 1). */
#include <afut.h>

#include <stdio.h>
#include <string.h>

static int answer = 42;

/* Scheduled with call_soon: completes the future passed as userdata. */
static void set_answer(void *fut) {
    if (afut_set_result((afut_t *)fut, &answer, NULL) != AFUT_OK)
        fprintf(stderr, "consumer: afut_set_result failed\n");
}

int main(void) {
    /* The header and the library that was loaded must be the same release. */
    if (strcmp(afut_version(), AFUT_VERSION_STRING) != 0) {
        fprintf(stderr, "consumer: header %s, library %s\n", AFUT_VERSION_STRING, afut_version());
        return 1;
    }
    afut_loop_t *loop = afut_loop_new();
    if (loop == NULL) {
        fprintf(stderr, "consumer: afut_loop_new failed\n");
        return 1;
    }
    int ok = 0;
    afut_t *fut = afut_loop_create_future(loop);
    if (fut != NULL && afut_loop_call_soon(loop, set_answer, fut, NULL) != 0) {
        void *value = NULL;
        afut_status_t rc = afut_loop_run_until_complete(loop, fut);
        if (rc == AFUT_OK && afut_result(fut, &value) == AFUT_OK && value == &answer)
            ok = 1;
        else
            fprintf(stderr, "consumer: run_until_complete: %s\n", afut_status_str(rc));
    } else {
        fprintf(stderr, "consumer: could not create or schedule the future\n");
    }
    afut_unref(fut);
    afut_loop_free(loop);
    if (!ok)
        return 1;
    printf("consumer ok %s\n", afut_version());
    return 0;
}
