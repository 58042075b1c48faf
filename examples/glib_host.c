/*
 * glib_host.c: afut inside a GLib main loop.
 *
 * The integration is one small GSource (afut_source_new below), attached to
 * the GMainContext that should run afut's callbacks:
 *
 *   prepare()  tells GLib how long it may sleep: afut_loop_timeout_ms(loop)
 *              (-1 no afut timer, 0 work ready now, >0 ms to the next timer,
 *              rounded up so GLib never wakes early and spins). GLib calls
 *              prepare before every poll, so the timeout is re-armed for free.
 *   the fd     afut_loop_fd(loop), added with g_source_add_unix_fd for G_IO_IN.
 *              It is readable whenever afut has work (due timers included), so
 *              work completed by other threads wakes GLib's poll. GLib polls
 *              level-triggered; afut is fine with that. Never read or close it.
 *   check()    after the poll: ready if the fd said so or a timer fell due.
 *   dispatch() afut_loop_run_once(loop, 0, NULL): one iteration, no blocking.
 *              What afut's callbacks schedule runs in the next iteration, and
 *              the fd stays readable until then.
 *
 * (A shorter alternative is g_unix_fd_add(fd, G_IO_IN, ...) for the fd plus a
 * g_timeout_add re-armed from afut_loop_timeout_ms after each dispatch; the
 * GSource does both in one place.)
 *
 * Worker GThreads complete futures with a plain afut_set_result from their own
 * thread; every afut callback runs in the GLib main loop's thread.
 *
 * Build: gcc -std=c11 -Wall -Wextra -O2 -Iinclude examples/glib_host.c \
 *            $(pkg-config --cflags --libs glib-2.0) -Ltarget/release -lafut ...
 * (Debian: apt-get install libglib2.0-dev pkg-config; scripts/install-deps.sh does it.)
 */
#define _GNU_SOURCE
#include <glib-unix.h>
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>

#include "afut.h"

/* ---------------- the integration: an afut GSource ---------------- */

typedef struct {
    GSource source; /* must be first */
    afut_loop_t *loop; /* borrowed: the application frees the loop after destroying the source */
    gpointer fd_tag;
} AfutSource;

static gboolean afut_source_prepare(GSource *source, gint *timeout) {
    AfutSource *s = (AfutSource *)source;
    *timeout = afut_loop_timeout_ms(s->loop);
    return *timeout == 0; /* ready without polling */
}

static gboolean afut_source_check(GSource *source) {
    AfutSource *s = (AfutSource *)source;
    return (g_source_query_unix_fd(source, s->fd_tag) & G_IO_IN) != 0 ||
           afut_loop_timeout_ms(s->loop) == 0;
}

static gboolean afut_source_dispatch(GSource *source, GSourceFunc callback, gpointer user_data) {
    AfutSource *s = (AfutSource *)source;
    size_t ran = 0;
    afut_status_t rc = afut_loop_run_once(s->loop, 0, &ran);
    if (rc != AFUT_OK) {
        g_printerr("glib_host: afut_loop_run_once failed: %s\n", afut_status_str(rc));
        return G_SOURCE_REMOVE;
    }
    /* Optional per-dispatch hook, set with g_source_set_callback. */
    return callback != NULL ? callback(user_data) : G_SOURCE_CONTINUE;
}

static GSourceFuncs afut_source_funcs = {
    .prepare = afut_source_prepare,
    .check = afut_source_check,
    .dispatch = afut_source_dispatch,
};

/* Returns a new source (one reference, release with g_source_unref) or NULL with errno set. */
static GSource *afut_source_new(afut_loop_t *loop) {
    int fd = afut_loop_fd(loop);
    if (fd < 0) return NULL;
    GSource *source = g_source_new(&afut_source_funcs, sizeof(AfutSource));
    AfutSource *s = (AfutSource *)source;
    s->loop = loop;
    s->fd_tag = g_source_add_unix_fd(source, fd, G_IO_IN);
    g_source_set_name(source, "afut");
    return source;
}

/* ---------------- the application ---------------- */

enum { N_WORKERS = 3 };

struct app {
    GMainLoop *main_loop;
    afut_loop_t *loop;
    GThread *main_thread;
    int outstanding;
    unsigned ticks, dispatches;
    gboolean failed;
};

struct job {
    int id;
    unsigned delay_ms;
    afut_t *fut; /* the worker's reference */
    struct app *app;
};

static void die(const char *what, afut_status_t rc) {
    g_printerr("glib_host: %s failed: %s (%d)\n", what, afut_status_str(rc), (int)rc);
    exit(EXIT_FAILURE);
}

/* For the calls that return a handle: 0 or NULL means failure (closed loop, NULL or
 * invalid argument, out of memory); nothing was taken from us. */
static void die_null(const char *what) {
    g_printerr("glib_host: %s failed\n", what);
    exit(EXIT_FAILURE);
}

static gpointer worker_main(gpointer data) {
    struct job *job = data;
    g_usleep(job->delay_ms * 1000UL);
    char *text = g_strdup_printf("worker %d slept %u ms", job->id, job->delay_ms);
    /* From this foreign thread: afut wakes the GLib loop through the fd. */
    afut_status_t rc = afut_set_result(job->fut, text, g_free);
    if (rc != AFUT_OK) {
        g_free(text); /* not taken */
        g_printerr("glib_host: afut_set_result: %s\n", afut_status_str(rc));
    }
    afut_unref(job->fut);
    job->fut = NULL;
    return NULL;
}

static void finish_one(struct app *app) {
    if (--app->outstanding == 0) g_main_loop_quit(app->main_loop);
}

static void on_job_done(afut_t *fut, void *userdata) {
    struct job *job = userdata;
    struct app *app = job->app;
    if (g_thread_self() != app->main_thread) app->failed = TRUE; /* never happens: afut promises it */
    void *value;
    afut_status_t rc = afut_result(fut, &value);
    if (rc == AFUT_OK) {
        printf("done-callback in the GLib thread: %s\n", (const char *)value);
    } else {
        printf("job %d failed: %s\n", job->id, afut_status_str(rc));
        app->failed = TRUE;
    }
    finish_one(app);
}

static void on_afut_timer(void *userdata) {
    struct app *app = userdata;
    printf("afut call_later(0.15) fired after %u GLib ticks\n", app->ticks);
    finish_one(app);
}

static gboolean on_tick(gpointer data) {
    struct app *app = data;
    app->ticks++;
    return G_SOURCE_CONTINUE;
}

static gboolean count_dispatch(gpointer data) {
    struct app *app = data;
    app->dispatches++;
    return G_SOURCE_CONTINUE;
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct app app = {0};
    app.main_thread = g_thread_self();
    app.main_loop = g_main_loop_new(NULL, FALSE);
    app.loop = afut_loop_new();
    if (app.loop == NULL) {
        perror("glib_host: afut_loop_new");
        return EXIT_FAILURE;
    }

    GSource *afut_src = afut_source_new(app.loop);
    if (afut_src == NULL) {
        perror("glib_host: afut_loop_fd");
        return EXIT_FAILURE;
    }
    g_source_set_callback(afut_src, count_dispatch, &app, NULL);
    g_source_attach(afut_src, NULL); /* the default GMainContext */

    guint tick_id = g_timeout_add(20, on_tick, &app); /* the host's own periodic work */

    static const unsigned delays[N_WORKERS] = {120, 40, 80};
    struct job jobs[N_WORKERS];
    afut_t *futs[N_WORKERS];
    GThread *threads[N_WORKERS];
    for (int i = 0; i < N_WORKERS; i++) {
        futs[i] = afut_loop_create_future(app.loop);
        if (futs[i] == NULL) die_null("afut_loop_create_future");
        jobs[i] = (struct job){.id = i, .delay_ms = delays[i], .fut = afut_ref(futs[i]), .app = &app};
        afut_status_t rc = afut_add_done_callback(futs[i], on_job_done, &jobs[i], NULL);
        if (rc != AFUT_OK) die("afut_add_done_callback", rc);
        app.outstanding++;
    }
    if (afut_loop_call_later(app.loop, 0.15, on_afut_timer, &app, NULL) == 0) die_null("afut_loop_call_later");
    app.outstanding++;
    for (int i = 0; i < N_WORKERS; i++) threads[i] = g_thread_new("worker", worker_main, &jobs[i]);

    g_main_loop_run(app.main_loop);

    for (int i = 0; i < N_WORKERS; i++) g_thread_join(threads[i]);
    g_source_remove(tick_id);
    g_source_destroy(afut_src); /* detach before the loop (and its fd) go away */
    g_source_unref(afut_src);
    g_main_loop_unref(app.main_loop);
    for (int i = 0; i < N_WORKERS; i++) afut_unref(futs[i]);
    afut_loop_free(app.loop);
    printf("glib_host: %u afut dispatches, %s\n", app.dispatches, app.failed ? "FAILED" : "all done");
    return app.failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
