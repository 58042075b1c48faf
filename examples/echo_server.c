/*
 * echo_server.c: a TCP echo server on afut alone: afut_loop_run_forever, fd watchers
 * (afut_loop_add_reader / add_writer) and non-blocking sockets, one afut task per connection.
 *
 * The Python it mirrors (asyncio's low-level socket API, which is built the same way: a future
 * completed by a one-shot reader or writer, awaited by the connection's coroutine):
 *
 *     async def handle(loop, conn):
 *         with conn:
 *             while data := await loop.sock_recv(conn, 65536):
 *                 await loop.sock_sendall(conn, data)
 *
 *     async def main():
 *         srv = socket.create_server(("127.0.0.1", port)); srv.setblocking(False)
 *         loop = asyncio.get_running_loop()
 *         while True:
 *             conn, _ = await loop.sock_accept(srv)
 *             loop.create_task(handle(loop, conn))
 *
 * C has no coroutines, so handle() becomes a step function (see afut_task_new in afut.h). A step
 * reads and writes until the socket would block, then awaits a future that a one-shot watcher
 * completes when the socket is readable (or writable) again: fd_ready() below is the whole bridge
 * between fd watchers and futures. Accepting runs in a plain reader callback on the listening
 * socket. SIGINT / SIGTERM arrive through a self-pipe, watched like any other fd: the server stops
 * accepting and cancels every connection task, which closes its socket.
 *
 * Usage: echo_server [--port N] [--max-conns N]
 *   --port N       listen on 127.0.0.1:N (default 0: a free port, printed on the first line)
 *   --max-conns N  stop after N connections were served (default: run until SIGINT / SIGTERM)
 * First line printed: "echo_server: listening on 127.0.0.1:PORT". Last line: the summary.
 *
 * Build and run (scripts/examples.sh does this and drives it with 100 concurrent Python clients,
 * examples/python/echo_client.py, checking every echoed byte):
 *     cargo build --release
 *     gcc -std=c11 -Wall -Wextra -O2 -Iinclude examples/echo_server.c target/release/libafut.a \
 *         -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc -o echo_server && ./echo_server --port 7777
 *     # elsewhere: nc 127.0.0.1 7777
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "afut.h"

/* ------------------------------------------------------------------ fd_ready: fd -> future */

/* A one-shot watcher that completes `fut` when `fd` is ready. */
typedef struct fd_waiter {
    afut_loop_t *loop;
    int fd;
    bool writable;
    afut_t *fut; /* the waiter's own reference */
} fd_waiter_t;

static void fd_waiter_free(void *ud) {
    fd_waiter_t *w = ud;
    afut_unref(w->fut);
    free(w);
}

/* Runs on the loop's thread when the fd is ready. Removing its own watcher frees `w`, but only
 * once this callback has returned, so `w` may still be used below. */
static void fd_waiter_ready(void *ud) {
    fd_waiter_t *w = ud;
    if (w->writable)
        afut_loop_remove_writer(w->loop, w->fd);
    else
        afut_loop_remove_reader(w->loop, w->fd);
    if (!afut_done(w->fut)) afut_set_result(w->fut, NULL, NULL);
}

/* A new future of `loop` that is done as soon as `fd` is readable (or writable); NULL if the
 * watcher could not be added. Whoever cancels the future removes the watcher (here: the
 * connection closes its socket, removing both watchers first). */
static afut_t *fd_ready(afut_loop_t *loop, int fd, bool writable) {
    fd_waiter_t *w = malloc(sizeof *w);
    afut_t *fut = afut_loop_create_future(loop);
    if (w == NULL || fut == NULL) {
        free(w);
        if (fut) afut_unref(fut);
        return NULL;
    }
    *w = (fd_waiter_t){.loop = loop, .fd = fd, .writable = writable, .fut = afut_ref(fut)};
    afut_status_t rc = writable ? afut_loop_add_writer(loop, fd, fd_waiter_ready, w, fd_waiter_free)
                                : afut_loop_add_reader(loop, fd, fd_waiter_ready, w, fd_waiter_free);
    if (rc != AFUT_OK) {
        fprintf(stderr, "echo_server: watching fd %d: %s\n", fd, afut_status_str(rc));
        fd_waiter_free(w); /* refused: the userdata is still ours */
        afut_unref(fut);
        return NULL;
    }
    return fut;
}

/* ------------------------------------------------------------------ the server */

typedef struct conn conn_t;

typedef struct server {
    afut_loop_t *loop;
    int listen_fd;
    int signal_fd; /* the self-pipe's read end */
    long max_conns; /* 0: unlimited */
    long accepted, served, failed, cancelled;
    unsigned long long bytes;
    bool shutting_down;
    conn_t *conns; /* open connections (a doubly linked list) */
} server_t;

struct conn {
    server_t *srv;
    afut_t *task; /* the server's reference, released when the task is done */
    int fd;
    size_t len, off; /* buf[off..len) is still to be sent */
    unsigned long long bytes;
    int error; /* errno of a failed read or write, 0 if none */
    conn_t *prev, *next;
    char buf[64 * 1024];
};

/* Removes the socket's watchers (a pending fd_ready future's waiter is freed with them), then
 * closes it. Idempotent. */
static void conn_close(conn_t *c) {
    if (c->fd < 0) return;
    afut_loop_remove_reader(c->srv->loop, c->fd);
    afut_loop_remove_writer(c->srv->loop, c->fd);
    close(c->fd);
    c->fd = -1;
}

static void maybe_stop(server_t *srv) {
    if (srv->shutting_down && srv->conns == NULL) afut_loop_stop(srv->loop);
}

static void stop_accepting(server_t *srv) {
    if (srv->shutting_down) return;
    srv->shutting_down = true;
    afut_loop_remove_reader(srv->loop, srv->listen_fd);
}

/* The connection's protocol, one step per wakeup (asyncio's handle() above). */
static void conn_step(afut_t *task, afut_t *awaited, void *userdata) {
    conn_t *c = userdata;
    if ((awaited && afut_cancelled(awaited)) || afut_task_cancel_requested(task, NULL)) {
        conn_close(c); /* returning now ends the task CANCELLED */
        return;
    }
    /* Echo until the socket would block, but yield after a few rounds so that one fast client
     * cannot starve the others (the next step then runs in the next iteration). */
    for (int round = 0; round < 16; round++) {
        if (c->off < c->len) { /* data left to send */
            ssize_t w = send(c->fd, c->buf + c->off, c->len - c->off, MSG_NOSIGNAL);
            if (w > 0) {
                c->off += (size_t)w;
                c->bytes += (unsigned long long)w;
                continue;
            }
            if (w < 0 && errno == EINTR) continue;
            if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                afut_t *fut = fd_ready(afut_get_loop(task), c->fd, true); /* await writable */
                if (fut == NULL) {
                    c->error = EIO;
                    break;
                }
                afut_task_await(task, fut);
                afut_unref(fut); /* the task holds its own reference while it awaits */
                return;
            }
            c->error = errno;
            break;
        }
        ssize_t r = recv(c->fd, c->buf, sizeof c->buf, 0);
        if (r > 0) {
            c->len = (size_t)r;
            c->off = 0;
            continue;
        }
        if (r == 0) { /* EOF after everything was echoed: done */
            conn_close(c);
            afut_set_result(task, NULL, NULL);
            return;
        }
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            afut_t *fut = fd_ready(afut_get_loop(task), c->fd, false); /* await readable */
            if (fut == NULL) {
                c->error = EIO;
                break;
            }
            afut_task_await(task, fut);
            afut_unref(fut);
            return;
        }
        c->error = errno;
        break;
    }
    if (c->error) {
        conn_close(c);
        afut_set_exception(task, c->error ? c->error : EIO, strerror(c->error ? c->error : EIO), NULL, NULL);
        return;
    }
    /* 16 rounds done: return without awaiting, which yields to the other tasks */
}

/* Done-callback of a connection's task, on the loop's thread: account for it, release it. */
static void conn_done(afut_t *task, void *userdata) {
    conn_t *c = userdata;
    server_t *srv = c->srv;
    conn_close(c);
    if (afut_cancelled(task)) {
        srv->cancelled++;
    } else {
        afut_exception_t exc;
        if (afut_exception(task, &exc) == AFUT_OK && exc.code != 0) {
            fprintf(stderr, "echo_server: a connection failed: %s\n", exc.message ? exc.message : "?");
            srv->failed++;
        } else {
            srv->served++;
        }
    }
    srv->bytes += c->bytes;
    if (c->prev) c->prev->next = c->next;
    else srv->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    afut_unref(c->task);
    free(c);
    if (srv->max_conns > 0 && srv->served + srv->failed + srv->cancelled >= srv->max_conns)
        stop_accepting(srv);
    maybe_stop(srv);
}

/* Reader of the listening socket: accept what is pending, one task per connection. */
static void on_accept(void *userdata) {
    server_t *srv = userdata;
    for (int i = 0; i < 64 && !srv->shutting_down; i++) {
        int fd = accept4(srv->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED)
                perror("echo_server: accept4");
            return;
        }
        conn_t *c = malloc(sizeof *c);
        if (c == NULL) {
            close(fd);
            continue;
        }
        c->srv = srv;
        c->fd = fd;
        c->len = c->off = 0;
        c->bytes = 0;
        c->error = 0;
        c->task = afut_task_new(srv->loop, conn_step, c, NULL);
        if (c->task == NULL || afut_add_done_callback(c->task, conn_done, c, NULL) != AFUT_OK) {
            /* cannot happen on a live loop; be tidy anyway */
            if (c->task) {
                afut_cancel(c->task, "not tracked");
                afut_unref(c->task);
            }
            close(fd);
            free(c);
            continue;
        }
        c->prev = NULL;
        c->next = srv->conns;
        if (srv->conns) srv->conns->prev = c;
        srv->conns = c;
        srv->accepted++;
        if (srv->max_conns > 0 && srv->accepted >= srv->max_conns) {
            /* enough: accept no more (the open ones finish) */
            afut_loop_remove_reader(srv->loop, srv->listen_fd);
            return;
        }
    }
}

/* ------------------------------------------------------------------ signals: a self-pipe */

static int signal_pipe_w = -1;

static void on_signal(int sig) {
    int saved = errno;
    unsigned char b = (unsigned char)sig;
    ssize_t r = write(signal_pipe_w, &b, 1);
    (void)r;
    errno = saved;
}

/* Reader of the self-pipe: stop accepting, cancel every connection. */
static void on_signal_pipe(void *userdata) {
    server_t *srv = userdata;
    unsigned char b[16];
    while (read(srv->signal_fd, b, sizeof b) > 0) {
    }
    fprintf(stderr, "echo_server: signal received, shutting down\n");
    afut_loop_remove_reader(srv->loop, srv->signal_fd);
    stop_accepting(srv);
    for (conn_t *c = srv->conns; c; c = c->next) afut_cancel(c->task, "server shutting down");
    maybe_stop(srv);
}

/* ------------------------------------------------------------------ main */

int main(int argc, char **argv) {
    int port = 0;
    long max_conns = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--port") == 0 && i + 1 < argc)
            port = atoi(argv[++i]);
        else if (strcmp(argv[i], "--max-conns") == 0 && i + 1 < argc)
            max_conns = atol(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--port N] [--max-conns N]\n", argv[0]);
            return EXIT_FAILURE;
        }
    }

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof addr;
    if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(lfd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(lfd, 512) != 0 ||
        getsockname(lfd, (struct sockaddr *)&addr, &alen) != 0) {
        perror("echo_server: listening socket");
        return EXIT_FAILURE;
    }
    int sp[2];
    if (pipe2(sp, O_NONBLOCK | O_CLOEXEC) != 0) {
        perror("echo_server: pipe2");
        return EXIT_FAILURE;
    }
    signal_pipe_w = sp[1];
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    afut_loop_t *loop = afut_loop_new();
    if (loop == NULL) {
        perror("echo_server: afut_loop_new");
        return EXIT_FAILURE;
    }
    server_t srv = {.loop = loop, .listen_fd = lfd, .signal_fd = sp[0], .max_conns = max_conns};
    afut_status_t rc = afut_loop_add_reader(loop, lfd, on_accept, &srv, NULL);
    if (rc == AFUT_OK) rc = afut_loop_add_reader(loop, sp[0], on_signal_pipe, &srv, NULL);
    if (rc != AFUT_OK) {
        fprintf(stderr, "echo_server: add_reader: %s\n", afut_status_str(rc));
        afut_loop_free(loop);
        return EXIT_FAILURE;
    }
    printf("echo_server: listening on 127.0.0.1:%d\n", ntohs(addr.sin_port));
    fflush(stdout);

    rc = afut_loop_run_forever(loop);
    if (rc != AFUT_OK) fprintf(stderr, "echo_server: run_forever: %s\n", afut_status_str(rc));

    printf("echo_server: %ld connections served, %llu bytes echoed, %ld failed, %ld cancelled\n",
           srv.served, srv.bytes, srv.failed, srv.cancelled);
    afut_loop_free(loop); /* drops the remaining watchers (the self-pipe's, if no signal came) */
    close(lfd);
    close(sp[0]);
    close(sp[1]);
    return rc == AFUT_OK && srv.failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
