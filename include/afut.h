/*
 * afut: Python's asyncio Future, done right for C.
 *
 * An `afut_t` is a future with asyncio's exact semantics: you create it, complete it with a
 * `void *` result or an exception, cancel it with a message, and attach done-callbacks, which
 * always run later on the loop's thread, never inline. The loop (`afut_loop_t`) runs
 * standalone (`afut_loop_run_until_complete`, `afut_loop_run_forever`) or inside the host's own
 * poll loop through one pollable fd (`afut_loop_fd`), a timeout (`afut_loop_timeout_ms`) and a
 * non-blocking `afut_loop_run_once`.
 *
 * ---------------------------------------------------------------------------------------------
 * Status codes
 *   Every fallible function returns `afut_status_t` (int32_t): AFUT_OK (0) or a negative
 *   AFUT_ERR_* code, so both `if (rc < 0)` and `if (rc)` test for failure. Outputs are written
 *   through pointer arguments, only on success. Functions returning a handle return NULL (or 0
 *   for `afut_handle_t`, false for bool) on failure. `afut_status_str` names every code. Codes
 *   are never renumbered.
 *
 * Ownership
 *   - `afut_loop_new`, `afut_new`, `afut_loop_create_future`, `afut_sleep`, `afut_wrap_future`,
 *     `afut_ensure_future`, `afut_executor_submit`, `afut_loop_run_in_executor` return a new
 *     reference owned by the caller; `afut_executor_new` an executor the caller releases with
 *     `afut_executor_free`.
 *   - Futures are reference counted (`afut_ref` / `afut_unref`). The loop holds its own
 *     reference to a future while its callbacks are queued, so a callback may drop the last
 *     reference the application held.
 *   - The loop is owned by its creator and released with `afut_loop_free`. Futures may outlive
 *     their loop: completing them still works; scheduling on a closed loop fails.
 *   - Every `void *userdata` comes with an `afut_free_fn userdata_free` (may be NULL). When the
 *     call succeeds the library calls it exactly once: after the callback ran, or when the
 *     callback is removed, cancelled, or dropped because its loop closed or its future was
 *     freed. When the call fails, nothing is freed: the userdata stays the caller's. The same
 *     holds for result values (`value_free`) and exception details (`detail_free`), which the
 *     future frees when it is freed.
 *   - Strings passed in (exception and cancel messages) are copied. Pointers handed out (result
 *     values, messages, details) are borrowed from the future and live as long as it does.
 *
 * Threading model
 *   - Every `afut_t` function may be called from any thread.
 *   - Every loop function may be called from any thread except `afut_loop_run_until_complete`,
 *     `afut_loop_run_forever`, `afut_loop_run_once`, `afut_loop_close` and `afut_loop_free`,
 *     which belong to the loop's thread: the thread running it, or any one thread while it is
 *     not running. Called while the loop runs (from a callback, or from another thread) they
 *     return AFUT_ERR_LOOP_RUNNING (`afut_loop_free` reports the misuse on stderr).
 *   - Callbacks of a future bound to a loop, and everything scheduled with `afut_loop_call_*`,
 *     run on the thread running that loop, through its ready queue, never inline in the call
 *     that completed the future or added the callback. Done-callbacks of a loop-less future
 *     (`afut_new(NULL)`) run in the thread that completes it.
 *   - Completing a future or scheduling a callback from a thread other than the one running
 *     the loop wakes the loop (asyncio's `call_soon_threadsafe`, done for you). A call made on
 *     the loop's own thread inside a callback costs no system call.
 *   - Wakeups are coalesced: N submissions before a dispatch may produce one readable state
 *     of the fd and one `wakeup_fn` call. Every item submitted before a wakeup is handled by a
 *     dispatch (a `run_once` / iteration) that starts after it. None is ever lost.
 *   - No lock is held while C code runs (callbacks, `*_free` functions, the exception handler,
 *     the wakeup hook), so every function may be called from inside a callback.
 *   - `afut_loop_close` racing with submissions from other threads: each submission either is
 *     accepted (and then runs or is freed by the close) or fails with 0 / AFUT_ERR_LOOP_CLOSED,
 *     its userdata still the caller's. None is silently dropped.
 *
 * Bad input
 *   A NULL handle or function pointer, a NaN time, a zero exception code, a call from the
 *   wrong thread, a call on a closed loop: each returns its status code (or NULL / false / 0,
 *   as documented on the function) and changes nothing. Each function's comment says what it
 *   returns on bad input (`Bad input:`), which threads may call it (`Thread:`), and who owns
 *   what (`Ownership:`). An internal bug is caught at the boundary and returned as
 *   AFUT_ERR_PANIC (never an abort); a loop it happened in is poisoned.
 *
 * Time
 *   Seconds as `double` on the loop's monotonic clock (`afut_loop_time`). Delays <= 0 and past
 *   deadlines are due at once, in deadline order; INFINITY means never; equal deadlines run
 *   in the order they were scheduled. For tests, a loop can run on a virtual clock that moves
 *   only when told to, or jumps to the next timer when idle (`afut_loop_set_virtual_clock`).
 *
 * Contents, in the order the functions appear below
 *   Library         afut_version, afut_status_str
 *   Loop            afut_loop_new, afut_loop_free, afut_loop_close, afut_loop_is_running,
 *                   afut_loop_is_closed, afut_loop_time, afut_loop_run_until_complete,
 *                   afut_loop_run_forever, afut_loop_stop
 *   Scheduling      afut_loop_call_soon, afut_loop_call_soon_threadsafe, afut_loop_call_later,
 *                   afut_loop_call_at, afut_loop_cancel
 *   Host loops      afut_loop_fd, afut_loop_timeout_ms, afut_loop_run_once,
 *                   afut_loop_set_wakeup_fn, afut_loop_fork
 *   I/O watchers    afut_loop_add_reader, afut_loop_add_writer, afut_loop_remove_reader,
 *                   afut_loop_remove_writer
 *   Futures         afut_new, afut_loop_create_future, afut_ref, afut_unref, afut_set_result,
 *                   afut_set_exception, afut_result, afut_exception, afut_done, afut_cancelled,
 *                   afut_cancel, afut_cancel_message, afut_add_done_callback,
 *                   afut_remove_done_callback, afut_get_loop, afut_wait, afut_describe
 *   Future helpers  afut_isfuture, afut_ensure_future, afut_wrap_future, afut_sleep
 *   Tasks           afut_task_new, afut_task_await, afut_is_task, afut_task_cancelling,
 *                   afut_task_uncancel, afut_task_cancel_requested, afut_task_take_cancel
 *   Combinators     afut_gather, afut_gather_child, afut_wait_for, afut_shield,
 *                   afut_wait_many, afut_wait_many_result, afut_as_completed
 *   Executor        afut_executor_new, afut_executor_submit, afut_loop_run_in_executor,
 *                   afut_executor_shutdown, afut_executor_free
 *   Virtual time    afut_loop_set_virtual_clock, afut_loop_advance_time
 *   Errors, debug   afut_loop_set_exception_handler, afut_loop_set_debug
 * ---------------------------------------------------------------------------------------------
 */

#ifndef AFUT_H
#define AFUT_H

/* Generated by cbindgen from afut's Rust sources: do not edit. Regenerate with scripts/bless-header.sh. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** The library version this header belongs to; afut_version() returns it as a string. */
#define AFUT_VERSION_MAJOR 0
#define AFUT_VERSION_MINOR 1
#define AFUT_VERSION_PATCH 0
#define AFUT_VERSION_STRING "0.1.0"


// `asyncio.ALL_COMPLETED`.
#define AFUT_ALL_COMPLETED 0

// `asyncio.FIRST_COMPLETED`.
#define AFUT_FIRST_COMPLETED 1

// `asyncio.FIRST_EXCEPTION`.
#define AFUT_FIRST_EXCEPTION 2

// A thread-pool executor (concurrent.futures' `ThreadPoolExecutor`). Opaque; created by
// `afut_executor_new`, released by `afut_executor_free`.
typedef struct afut_executor_t afut_executor_t;

// An event loop. Opaque; created by `afut_loop_new`, released by `afut_loop_free`.
typedef struct afut_loop_t afut_loop_t;

// A future (a task is also one). Opaque; reference counted with `afut_ref` / `afut_unref`.
typedef struct afut_t afut_t;

// The result of every fallible afut function: `AFUT_OK` (0) or a negative `AFUT_ERR_*` code.
typedef int32_t afut_status_t;

// A scheduled callback; 0 means none. Valid until it ran or was cancelled.
typedef uint64_t afut_handle_t;

// `void (*)(void *userdata)`: a scheduled callback.
typedef void (*afut_callback_fn)(void *userdata);

// `void (*)(void *)`: frees a userdata, value or exception detail.
typedef void (*afut_free_fn)(void *ptr);

// An exception stored in a future, as C sees it.
typedef struct {
  // The application's error code; never 0 for a set exception (0 in `afut_exception()`'s
  // output means "the future has a result").
  int32_t code;
  // NUL-terminated text owned by the future (copied at `afut_set_exception`), or NULL.
  const char *message;
  // The application's payload, owned by the future (freed with its `detail_free` when the
  // future is freed), or NULL.
  void *detail;
} afut_exception_t;

// `void (*)(afut_t *fut, void *userdata)`: a done-callback; `fut` is borrowed for the call.
typedef void (*afut_done_fn)(afut_t *fut, void *userdata);

// `void (*)(afut_t *task, afut_t *awaited, void *userdata)`: a task's step (see `afut_task_new`).
typedef void (*afut_step_fn)(afut_t *task, afut_t *awaited, void *userdata);

// The result of `afut_wait_many`: the futures done and still pending when it completed.
// Both arrays and the futures in them are borrowed from the wait future.
typedef struct {
  // The futures done at that time (`n_done` entries; NULL when 0).
  afut_t *const *done;
  size_t n_done;
  // The futures still pending (`n_pending` entries; NULL when 0).
  afut_t *const *pending;
  size_t n_pending;
} afut_wait_result_t;

// `void (*)(afut_t *fut, void *userdata)`: an executor job (see `afut_executor_submit`); it
// completes `fut`, borrowed for the call.
typedef void (*afut_job_fn)(afut_t *fut, void *userdata);

// What the exception handler is told. Every pointer is borrowed for the duration of the call.
typedef struct {
  // "Future exception was never retrieved" (for a future whose exception nobody read),
  // or "Executing <callback> took 0.123 seconds" (debug mode), ...
  const char *message;
  // The future concerned, or NULL. During a never-retrieved report the future is being
  // destroyed: it may be inspected (`afut_exception`, `afut_describe`, ...) but not kept
  // (`afut_ref` on it returns NULL).
  afut_t *future;
  // The exception concerned, or NULL.
  const afut_exception_t *exception;
} afut_error_context_t;

// `void (*)(afut_loop_t *loop, const afut_error_context_t *context, void *userdata)`.
typedef void (*afut_exception_handler_fn)(afut_loop_t *loop, const afut_error_context_t *context, void *userdata);

// Success.
#define AFUT_OK 0

// The future is not in a state that allows the call (asyncio `InvalidStateError`): completing a
// done future, reading the result of a pending one, or a run stopped before its future was done.
#define AFUT_ERR_INVALID_STATE -1

// The future was cancelled (asyncio `CancelledError`).
#define AFUT_ERR_CANCELLED -2

// The future holds an exception; read it with `afut_exception()`.
#define AFUT_ERR_EXCEPTION -3

// A NULL handle or function, a NaN time, a zero exception code, a future of another loop, ...
#define AFUT_ERR_INVALID_ARGUMENT -4

// The call would deadlock on this thread (for example `afut_wait()` on the loop's own thread).
#define AFUT_ERR_WRONG_THREAD -5

// The loop is closed: nothing new can be scheduled on it.
#define AFUT_ERR_LOOP_CLOSED -6

// The loop is running (a `run_*` call while it runs, also from inside a callback; `close` while it runs).
#define AFUT_ERR_LOOP_RUNNING -7

// The wait timed out (`afut_wait`), or the exception code of a timed-out `afut_wait_for`.
#define AFUT_ERR_TIMEOUT -8

// Reserved for an allocation failure; no function returns it in this version. The library
// allocates through Rust's global allocator, which aborts the process when memory runs out.
#define AFUT_ERR_NO_MEMORY -9

// Reserved for a failed system call (`errno` would hold its error); no function returns it
// in this version. The one function whose system calls can fail, `afut_loop_new`, returns a
// handle: it reports the failure as NULL with `errno` set.
#define AFUT_ERR_OS -10

// An internal bug was caught at the API boundary. It was reported once on stderr; a loop it
// happened in is poisoned and its `run_*` functions return this code from then on.
#define AFUT_ERR_PANIC -11

#ifdef __cplusplus
extern "C" {
#endif // __cplusplus

// The library version, "MAJOR.MINOR.PATCH" (equal to `AFUT_VERSION_STRING` of the header the
// program was compiled with, when header and library match).
//
// Thread: any. Ownership: a static string.
const char *afut_version(void);

// A static description of a status code; never NULL ("unknown status" for codes this version
// does not know).
//
// Thread: any. Ownership: a static string.
const char *afut_status_str(int32_t status);

// Creates an event loop (asyncio `new_event_loop()`).
//
// Thread: any; the loop then belongs to whichever thread runs it (see "Threading model").
// Ownership: the caller owns the loop and releases it with `afut_loop_free`.
// Returns: NULL with `errno` set if the kernel refused one of its file descriptors (the
// epoll fd, eventfd and timerfd behind `afut_loop_fd`; for example `EMFILE` when the process
// is out of descriptors). Nothing is leaked then.
afut_loop_t *afut_loop_new(void);

// Closes the loop if needed (see `afut_loop_close`), releases its exception handler and
// wakeup hook (their `userdata_free` runs), and gives up the caller's reference. Futures
// bound to the loop may outlive it: completing them still works (their callbacks are dropped),
// `afut_get_loop` returns NULL for them, and their reports go to stderr. The loop's fd stays
// open until the last such future is freed.
//
// Thread: the loop's thread. Called while the loop runs (from one of its callbacks) it does
// nothing but report the misuse on stderr.
// Bad input: NULL is a no-op.
//
// # Safety
// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
void afut_loop_free(afut_loop_t *loop);

// Closes the loop (asyncio `close()`): every queued callback and timer is dropped, each
// `userdata_free` called once, and every task still pending ends CANCELLED (see
// `afut_task_new`); afterwards nothing can be scheduled (`AFUT_ERR_LOOP_CLOSED`, or 0 for the
// `call_*` functions) and the `run_*` functions return `AFUT_ERR_LOOP_CLOSED`. Idempotent.
//
// Thread: the loop's thread.
// Returns: `AFUT_OK`; `AFUT_ERR_LOOP_RUNNING` while the loop runs (from a callback or from
// another thread).
// Bad input: NULL returns `AFUT_ERR_INVALID_ARGUMENT`.
//
// # Safety
// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
afut_status_t afut_loop_close(afut_loop_t *loop);

// True while a `run_*` call is executing the loop (on whichever thread).
//
// Thread: any. Bad input: NULL returns false.
//
// # Safety
// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
bool afut_loop_is_running(const afut_loop_t *loop);

// True once the loop was closed.
//
// Thread: any. Bad input: NULL returns false.
//
// # Safety
// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
bool afut_loop_is_closed(const afut_loop_t *loop);

// The loop's clock (asyncio `loop.time()`): monotonic seconds, the time base of
// `afut_loop_call_at`; with a virtual clock (`afut_loop_set_virtual_clock`), the virtual time.
//
// Thread: any. Bad input: NULL returns NaN.
//
// # Safety
// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
double afut_loop_time(const afut_loop_t *loop);

// Runs the loop until `fut` is done (asyncio `run_until_complete`). A loop-less `fut` is
// wrapped first (`afut_wrap_future`). The run ends at the end of the iteration in which `fut`'s
// done-callbacks ran. If `fut` is already done by the time its own done-callback runs, the
// stop that callback requests belongs to this run only: unlike asyncio, where such a stale
// stop ends the next run after one iteration, afut makes it inert.
//
// Ownership: the run holds its own reference to `fut` until it returns, so a callback may
// drop the caller's last one meanwhile.
// Thread: the loop's thread (any thread while the loop is not running).
// Returns: the outcome: `AFUT_OK` (read the value with `afut_result`), `AFUT_ERR_EXCEPTION`
// (which counts as retrieving it), `AFUT_ERR_CANCELLED`; `AFUT_ERR_INVALID_STATE` if
// `afut_loop_stop` ended the run before `fut` was done; `AFUT_ERR_LOOP_RUNNING` if the loop is
// already running (also from inside a callback); `AFUT_ERR_LOOP_CLOSED`; `AFUT_ERR_PANIC` on a
// poisoned loop.
// Bad input: NULL `loop` or `fut`, or a `fut` bound to another loop, returns
// `AFUT_ERR_INVALID_ARGUMENT`.
//
// # Safety
// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
// `fut` is NULL or a future handle the caller holds a reference to (or is lent for a callback).
afut_status_t afut_loop_run_until_complete(afut_loop_t *loop, afut_t *fut);

// Runs the loop until `afut_loop_stop` (asyncio `run_forever`). A stop requested before the
// call makes it run exactly one iteration.
//
// Thread: the loop's thread (any thread while the loop is not running).
// Returns: `AFUT_OK` after a stop; `AFUT_ERR_LOOP_RUNNING`; `AFUT_ERR_LOOP_CLOSED`;
// `AFUT_ERR_PANIC` on a poisoned loop.
// Bad input: NULL returns `AFUT_ERR_INVALID_ARGUMENT`.
//
// # Safety
// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
afut_status_t afut_loop_run_forever(afut_loop_t *loop);

// Asks the running loop to stop (asyncio `stop()`): the current batch of callbacks finishes,
// then `run_forever` / `run_until_complete` return; what that batch scheduled runs on the next
// run. A stop requested while the loop is not running applies to its next run (one iteration).
// `afut_loop_run_once` ignores it.
//
// Thread: any; from another thread it also wakes the loop.
// Bad input: NULL is a no-op.
//
// # Safety
// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
void afut_loop_stop(afut_loop_t *loop);

// Schedules `cb(userdata)` to run in the loop's next iteration (asyncio `call_soon`).
// Callbacks run in the order they were scheduled; one scheduled while a batch runs waits for
// the next iteration. Called from a thread other than the one running the loop, it wakes the
// loop (asyncio's `call_soon_threadsafe`, done for you).
//
// Thread: any.
// Ownership: on success the library owns `userdata` and calls `userdata_free(userdata)` (if not
// NULL) exactly once: after `cb` ran, or when it is cancelled, or dropped by `afut_loop_close`.
// On failure (0) it stays the caller's and nothing is freed.
// Returns: a handle for `afut_loop_cancel`; 0 if the loop is closed.
// Bad input: NULL `loop` or `cb` returns 0.
//
// # Safety
// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
// `cb` is NULL or a function with the documented signature, callable as this documentation says.
// `userdata_free` is NULL or a function with the documented signature, callable as this documentation says.
afut_handle_t afut_loop_call_soon(afut_loop_t *loop, afut_callback_fn cb, void *userdata, afut_free_fn userdata_free);

// Exactly `afut_loop_call_soon` (every afut scheduling function is thread-safe); kept for
// asyncio's name. A closed loop is refused atomically: 0, and `userdata` stays the caller's.
//
// Thread: any. Ownership and bad input: as `afut_loop_call_soon`.
//
// # Safety
// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
// `cb` is NULL or a function with the documented signature, callable as this documentation says.
// `userdata_free` is NULL or a function with the documented signature, callable as this documentation says.
afut_handle_t afut_loop_call_soon_threadsafe(afut_loop_t *loop, afut_callback_fn cb, void *userdata, afut_free_fn userdata_free);

// Schedules `cb(userdata)` after `delay_s` seconds (asyncio `call_later`). A delay <= 0 is due
// at once (in deadline order with other due timers); `INFINITY` never fires. Timers with equal
// deadlines run in the order they were scheduled. Due timers run after the callbacks already
// ready in the same iteration.
//
// Thread: any. Ownership: as `afut_loop_call_soon`.
// Returns: a handle; 0 if the loop is closed.
// Bad input: NULL `loop` or `cb`, or NaN `delay_s`, returns 0.
//
// # Safety
// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
// `cb` is NULL or a function with the documented signature, callable as this documentation says.
// `userdata_free` is NULL or a function with the documented signature, callable as this documentation says.
afut_handle_t afut_loop_call_later(afut_loop_t *loop, double delay_s, afut_callback_fn cb, void *userdata, afut_free_fn userdata_free);

// Schedules `cb(userdata)` at `when` on the loop's clock (`afut_loop_time`) (asyncio
// `call_at`). A past `when` is due at once.
//
// Thread: any. Ownership: as `afut_loop_call_soon`.
// Returns: a handle; 0 if the loop is closed.
// Bad input: NULL `loop` or `cb`, or NaN `when`, returns 0.
//
// # Safety
// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
// `cb` is NULL or a function with the documented signature, callable as this documentation says.
// `userdata_free` is NULL or a function with the documented signature, callable as this documentation says.
afut_handle_t afut_loop_call_at(afut_loop_t *loop, double when, afut_callback_fn cb, void *userdata, afut_free_fn userdata_free);

// Cancels a scheduled callback that has not started (asyncio `Handle.cancel()`); its
// `userdata_free` runs now, on this thread.
//
// Thread: any.
// Returns: true iff this call cancelled it; false for 0, unknown, running, already-run or
// already-cancelled handles.
// Bad input: NULL `loop` returns false.
//
// # Safety
// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
bool afut_loop_cancel(afut_loop_t *loop, afut_handle_t handle);

// The loop's pollable fd, for hosts that own the wait (epoll, poll, libuv, GLib, asyncio).
//
// It is readable (level-triggered) whenever `afut_loop_run_once(loop, 0, ...)` has work,
// due timers and ready watched fds (`afut_loop_add_reader` / `add_writer`) included, and not
// readable when the loop is idle. After a `run_once` that leaves work pending (or a watched fd
// still ready), the library makes it readable anew, so edge-triggered hosts that call
// `run_once` once per event never stall. The same fd is returned for the loop's life; do not
// close it or read from it. The first call switches the loop to host mode, in which it keeps
// the fd exact.
//
// Timers: on Linux a timerfd behind this fd tracks the next deadline, so the fd alone covers
// timers. Other platforms have no pollable timer: there the host must also wait no longer
// than `afut_loop_timeout_ms` (which every host should do anyway). On a platform whose poller
// has no fd of its own (the `poll()` fallback), the fd is the loop's wakeup pipe, and a helper
// thread, started by the first call, raises it when a watched fd is ready or a timer comes
// due; there a timer cancelled after it came due but before the next `run_once` leaves the
// fd readable until that `run_once`, which runs nothing (the one exception to "not readable
// when idle"; epoll, kqueue and event ports have none). On a virtual clock
// (`afut_loop_set_virtual_clock`) a timer makes the fd readable once it is due; an
// auto-advance jump is announced by `afut_loop_timeout_ms` instead.
//
// Thread: any.
// Returns: the fd; -1 with `errno` = EINVAL for a NULL loop.
//
// # Safety
// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
int afut_loop_fd(afut_loop_t *loop);

// How long a host may wait before calling `afut_loop_run_once`: -1 if nothing is scheduled
// (wait for the fd alone), 0 if work is ready now, else the milliseconds until the next timer,
// rounded up (a host that waits this long finds the timer due: never a busy spin). On a
// virtual clock: 0 if a timer is due, or, with auto-advance, while a finite timer is pending
// and no executor job holds the clock; else -1 (see `afut_loop_set_virtual_clock`).
//
// Thread: any.
// Bad input: NULL returns -1; so does a closed loop.
//
// # Safety
// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
int afut_loop_timeout_ms(const afut_loop_t *loop);

// Runs one iteration: waits up to `timeout_ms` for work (0: no wait, -1: until there is
// some), then runs the due timers and the callbacks that were ready at its start; callbacks
// they schedule run in the next iteration. `afut_loop_is_running` is true during the call.
//
// Thread: the loop's thread (any thread while the loop is not running).
// Returns: `AFUT_OK` and, in `*ran_out` (may be NULL), how many callbacks and timers ran
// (cancelled ones not counted); `AFUT_ERR_LOOP_RUNNING` (also from inside a callback);
// `AFUT_ERR_LOOP_CLOSED`; `AFUT_ERR_PANIC` on a poisoned loop. `*ran_out` is written only on
// `AFUT_OK`.
// Bad input: NULL `loop` returns `AFUT_ERR_INVALID_ARGUMENT`.
//
// # Safety
// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
// `ran_out` is NULL or valid for one write of its type.
afut_status_t afut_loop_run_once(afut_loop_t *loop, int timeout_ms, size_t *ran_out);

// For hosts with no fd to poll (a GUI message loop, another language's runtime): `wakeup`
// is called whenever the loop goes from idle to having work, coalesced like the fd (several
// submissions before the next `run_once` may give one call), on the submitting thread, or on
// the loop's thread at the end of a `run_once` that leaves work. It must not call afut except
// the thread-safe functions; typically it posts a message that makes the host call
// `afut_loop_run_once(loop, 0, NULL)`. Timers do not call it: the host also waits no longer
// than `afut_loop_timeout_ms`. Watched fds (`afut_loop_add_reader` / `add_writer`) do not
// call it either: a host that uses watchers must also poll `afut_loop_fd`. NULL `wakeup`
// removes the hook.
//
// Thread: any.
// Ownership: `userdata_free(userdata)` is called once when the hook is replaced or the loop
// freed (at once for a NULL `wakeup`).
// Bad input: NULL `loop` does nothing (and frees nothing).
//
// # Safety
// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
// `wakeup` is NULL or a function with the documented signature, callable as this documentation says.
// `userdata_free` is NULL or a function with the documented signature, callable as this documentation says.
void afut_loop_set_wakeup_fn(afut_loop_t *loop, afut_callback_fn wakeup, void *userdata, afut_free_fn userdata_free);

// Gives a loop inherited through `fork()` kernel objects of its own, in the child (libuv's
// `uv_loop_fork`). After `fork()` the parent and the child share the loop's poller, its
// wakeup signal and its timer fd: the child could consume the parent's timer expiry or
// wakeups, and leave the parent's host fd silent. Call this in the child before it uses the
// loop again: fresh objects are put behind the same fd numbers (so `afut_loop_fd` keeps its
// value), watched fds are registered anew, the timer is re-armed for the next deadline, and
// the fd is made readable if work is ready. The parent needs nothing.
//
// Everything else is inherited as `fork()` copies memory: futures, callbacks, timers and
// watchers. The usual rule of forking a multi-threaded process applies: only the calling
// thread exists in the child, so a loop the parent ran on another thread, or futures other
// threads were completing, must not be used in the child.
//
// Thread: the child's only thread, while the loop is not running.
// Returns: `AFUT_OK`; `AFUT_ERR_LOOP_RUNNING` from inside a callback of the loop;
// `AFUT_ERR_LOOP_CLOSED`; `AFUT_ERR_OS` with `errno` set if a system call failed, or with
// `errno` = `ENOTSUP` where the poller is not a kernel object the loop can renew (only the
// Linux epoll backend supports this today; elsewhere create a new loop in the child).
// Bad input: NULL returns `AFUT_ERR_INVALID_ARGUMENT`.
//
// # Safety
// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
afut_status_t afut_loop_fork(afut_loop_t *loop);

// Watches `fd` for reading (asyncio `loop.add_reader`): `cb(userdata)` runs on the loop's
// thread, through its ready queue, once in every iteration in which `fd` is readable, until
// the reader is removed (level-triggered, as asyncio's). A hangup, an EOF or an error on `fd`
// counts as readable. An fd found ready runs its reader in the same iteration (the same
// `afut_loop_run_once`): after the callbacks that were already ready, before the timers that
// came due, and, for one fd, before its writer.
//
// One reader per fd: adding again replaces the reader, and the old one's `userdata_free` runs
// once (see Ownership). A reader and a writer of the same fd are independent. A callback may
// add or remove any watcher, its own included; removing or replacing a watcher whose callback
// is already queued for this iteration cancels that call (asyncio's `handle.cancel()`), and a
// watcher added during an iteration runs from the next one on. Called from another thread,
// the registration wakes the loop if `fd` is ready (also a host's `afut_loop_fd`).
//
// What can be watched: sockets, pipes, FIFOs, terminals, eventfds, signalfds, and any fd the
// platform's poller accepts. Regular files and directories are refused on every platform
// (`AFUT_ERR_OS`, `errno` = EPERM, as Linux's epoll, and so asyncio, refuses them), since
// they are always "ready". Watch the fd, not the file: close an fd only after removing its
// watchers (removing after the close still works and frees the userdata).
//
// Thread: any, a callback included.
// Ownership: on `AFUT_OK` the library owns `userdata` and calls `userdata_free(userdata)` (if
// not NULL) exactly once: when the reader is removed or replaced (during that call, or once
// the iteration that had its callback queued, or the callback itself, is over: a callback that
// removes its own watcher may still use its userdata until it returns), or when the loop is
// closed or freed. On error it stays the caller's, and a reader already registered for `fd`
// is kept.
// Returns: `AFUT_OK`; `AFUT_ERR_LOOP_CLOSED`; `AFUT_ERR_OS` with `errno` set when `fd` cannot
// be watched: EBADF (not open), EPERM (a regular file or a directory), or the poller's own
// error (for example EINVAL for the loop's own fd on Linux).
// Bad input: NULL `loop` or `cb`, or a negative `fd`, returns `AFUT_ERR_INVALID_ARGUMENT`.
//
// # Safety
// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
// `cb` is NULL or a function with the documented signature, callable as this documentation says.
// `userdata_free` is NULL or a function with the documented signature, callable as this documentation says.
afut_status_t afut_loop_add_reader(afut_loop_t *loop, int fd, afut_callback_fn cb, void *userdata, afut_free_fn userdata_free);

// Watches `fd` for writing (asyncio `loop.add_writer`): `cb(userdata)` runs on the loop's
// thread once in every iteration in which `fd` is writable (an error counts as writable),
// until the writer is removed. Everything else is as for `afut_loop_add_reader`: one writer
// per fd, replaced by a new add; independent of the fd's reader, which runs first when both
// are ready.
//
// Thread: any, a callback included.
// Ownership: as `afut_loop_add_reader`.
// Returns: as `afut_loop_add_reader`.
// Bad input: NULL `loop` or `cb`, or a negative `fd`, returns `AFUT_ERR_INVALID_ARGUMENT`.
//
// # Safety
// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
// `cb` is NULL or a function with the documented signature, callable as this documentation says.
// `userdata_free` is NULL or a function with the documented signature, callable as this documentation says.
afut_status_t afut_loop_add_writer(afut_loop_t *loop, int fd, afut_callback_fn cb, void *userdata, afut_free_fn userdata_free);

// Stops watching `fd` for reading (asyncio `loop.remove_reader`). A call of the reader already
// queued for this iteration is cancelled; removed from another thread while its callback runs,
// the callback finishes (and may be starting at that very moment), and its userdata is freed
// after it returns.
//
// Thread: any, a callback included (its own reader too).
// Ownership: the removed reader's `userdata_free(userdata)` runs once: during this call, or
// once the batch that had it queued (or its running callback) is over.
// Returns: true iff a reader was removed; false if `fd` had none, or the loop is closed.
// Bad input: NULL `loop` or a negative `fd` returns false.
//
// # Safety
// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
bool afut_loop_remove_reader(afut_loop_t *loop, int fd);

// Stops watching `fd` for writing (asyncio `loop.remove_writer`); as `afut_loop_remove_reader`.
//
// Thread: any, a callback included.
// Ownership: as `afut_loop_remove_reader`.
// Returns: true iff a writer was removed; false if `fd` had none, or the loop is closed.
// Bad input: NULL `loop` or a negative `fd` returns false.
//
// # Safety
// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
bool afut_loop_remove_writer(afut_loop_t *loop, int fd);

// Creates a future (asyncio `Future(loop=loop)`).
//
// With a loop, the same as `afut_loop_create_future`. With `loop == NULL`, a loop-less,
// concurrent.futures-style future: its done-callbacks run in the thread that completes it,
// right after the state changes, and a callback added to it once it is done runs at once in
// the adding thread. No "never retrieved" report is made for a loop-less future.
//
// Thread: any.
// Ownership: returns a new reference owned by the caller.
// Bad input: none (NULL is a valid `loop`).
//
// # Safety
// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
afut_t *afut_new(afut_loop_t *loop);

// Creates a future bound to `loop` (asyncio `loop.create_future()`).
//
// Thread: any.
// Ownership: returns a new reference owned by the caller (release it with `afut_unref`).
// Bad input: NULL `loop` returns NULL.
//
// # Safety
// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
afut_t *afut_loop_create_future(afut_loop_t *loop);

// Adds a reference to `fut` and returns `fut`.
//
// Thread: any.
// Bad input: NULL returns NULL. A future whose never-retrieved report is running (see
// `afut_error_context_t`) cannot be kept: returns NULL and adds nothing.
//
// # Safety
// `fut` is NULL or a future handle the caller holds a reference to (or is lent for a callback).
afut_t *afut_ref(afut_t *fut);

// Releases one reference. When the last one goes, the future is freed: its value's
// `value_free` or its exception's `detail_free` runs, the `userdata_free` of callbacks still
// registered runs, and if it holds an exception that nobody retrieved, the loop's exception
// handler is told "Future exception was never retrieved" first, on this thread.
// A future with queued callbacks is also referenced by its loop until they ran.
//
// Thread: any.
// Bad input: NULL is a no-op; so is a future whose never-retrieved report is running.
//
// # Safety
// `fut` is NULL or a future handle the caller holds a reference to (or is lent for a callback).
void afut_unref(afut_t *fut);

// Completes `fut` with `value` (asyncio `set_result`). Its done-callbacks are scheduled on
// its loop (they run in a later iteration, never inside this call); a thread other than the
// loop's wakes the loop.
//
// Thread: any.
// Ownership: on `AFUT_OK` the future owns `value` and calls `value_free(value)` (if not NULL)
// once when it is freed; `afut_result` lends it out meanwhile. On any error `value` stays the
// caller's and `value_free` is not called.
// Returns: `AFUT_OK`; `AFUT_ERR_INVALID_STATE` if `fut` is already done (cancelled included).
// If the loop is closed the future still completes (`AFUT_OK`) and its callbacks are dropped.
// Bad input: NULL `fut` returns `AFUT_ERR_INVALID_ARGUMENT`.
//
// # Safety
// `fut` is NULL or a future handle the caller holds a reference to (or is lent for a callback).
// `value_free` is NULL or a function with the documented signature, callable as this documentation says.
afut_status_t afut_set_result(afut_t *fut, void *value, afut_free_fn value_free);

// Completes `fut` with an exception (asyncio `set_exception`): `code` (the application's, not
// 0), a `message` (copied; may be NULL) and a `detail` payload (may be NULL). Callbacks are
// scheduled as for `afut_set_result`. The exception is marked "unretrieved" until
// `afut_result`, `afut_exception` or `afut_cancel` is called on the future.
//
// Thread: any.
// Ownership: on `AFUT_OK` the future owns `detail` and calls `detail_free(detail)` (if not
// NULL) once when freed. On any error `detail` stays the caller's.
// Returns: `AFUT_OK`; `AFUT_ERR_INVALID_STATE` if already done.
// Bad input: NULL `fut` or `code == 0` returns `AFUT_ERR_INVALID_ARGUMENT`, changing nothing.
//
// # Safety
// `fut` is NULL or a future handle the caller holds a reference to (or is lent for a callback).
// `message` is NULL or a NUL-terminated string, read only during the call.
// `detail_free` is NULL or a function with the documented signature, callable as this documentation says.
afut_status_t afut_set_exception(afut_t *fut, int32_t code, const char *message, void *detail, afut_free_fn detail_free);

// Reads the outcome (asyncio `result()`).
//
// Thread: any.
// Ownership: `*value_out` is borrowed from the future and valid as long as it lives.
// Returns: `AFUT_OK` (and the value in `*value_out`, if `value_out` is not NULL);
// `AFUT_ERR_EXCEPTION` if it holds an exception (now counted as retrieved; read it with
// `afut_exception`); `AFUT_ERR_CANCELLED`; `AFUT_ERR_INVALID_STATE` while pending.
// Bad input: NULL `fut` returns `AFUT_ERR_INVALID_ARGUMENT`. `value_out` may be NULL.
//
// # Safety
// `fut` is NULL or a future handle the caller holds a reference to (or is lent for a callback).
// `value_out` is NULL or valid for one write of its type.
afut_status_t afut_result(afut_t *fut, void **value_out);

// Reads the exception (asyncio `exception()`), marking it retrieved.
//
// Thread: any.
// Ownership: `out->message` and `out->detail` are borrowed from the future, valid as long as
// it lives.
// Returns: `AFUT_OK` with `out->code == 0` (and NULL message and detail) if the future has a
// result; `AFUT_OK` with the exception if it has one; `AFUT_ERR_CANCELLED`;
// `AFUT_ERR_INVALID_STATE` while pending. `*out` is written only on `AFUT_OK`.
// Bad input: NULL `fut` returns `AFUT_ERR_INVALID_ARGUMENT`. `out` may be NULL.
//
// # Safety
// `fut` is NULL or a future handle the caller holds a reference to (or is lent for a callback).
// `out` is NULL or valid for one write of its type.
afut_status_t afut_exception(afut_t *fut, afut_exception_t *out);

// True once the future is finished or cancelled.
//
// Thread: any. Bad input: NULL returns false.
//
// # Safety
// `fut` is NULL or a future handle the caller holds a reference to (or is lent for a callback).
bool afut_done(const afut_t *fut);

// True if the future was cancelled.
//
// Thread: any. Bad input: NULL returns false.
//
// # Safety
// `fut` is NULL or a future handle the caller holds a reference to (or is lent for a callback).
bool afut_cancelled(const afut_t *fut);

// Cancels a pending future (asyncio `cancel(msg)`), storing a copy of `msg` (may be NULL),
// and schedules its callbacks. Whatever the state, it also marks a stored exception as
// retrieved (so a failed future that is cancelled is never reported); the one exception is a
// done gather, which asyncio's `_GatheringFuture.cancel` leaves reportable.
//
// A cancel passes on through a task to what it awaits and through a gather or `wait_for` to
// its inputs, at any depth with constant stack: past 64 nested levels on one thread the
// deeper ones are queued and cancelled by this call before it returns, in blocks of 64, so
// the order in which their callbacks are scheduled then differs from asyncio's strictly
// depth-first order (each future's own callbacks keep their order).
//
// Thread: any.
// Returns: true if this call cancelled the future; false if it was already done.
// Bad input: NULL `fut` returns false.
//
// # Safety
// `fut` is NULL or a future handle the caller holds a reference to (or is lent for a callback).
// `msg` is NULL or a NUL-terminated string, read only during the call.
bool afut_cancel(afut_t *fut, const char *msg);

// The message given to the `afut_cancel` call that cancelled the future.
//
// Thread: any.
// Ownership: borrowed from the future; the same pointer on every call, valid as long as the
// future lives.
// Returns: NULL if the future is not cancelled or was cancelled without a message.
// Bad input: NULL returns NULL.
//
// # Safety
// `fut` is NULL or a future handle the caller holds a reference to (or is lent for a callback).
const char *afut_cancel_message(const afut_t *fut);

// Registers `cb(fut, userdata)` to run once the future is done.
//
// For a future bound to a loop, `cb` always runs on the loop's thread in a later iteration,
// never inside this call or inside the call that completes the future: callbacks of one
// completion run in registration order, as one contiguous run of the loop's ready queue.
// Adding to a done future schedules `cb` at once (asyncio `call_soon`). For a loop-less future
// see `afut_new`.
//
// Thread: any. `cb` may call any afut function, including on `fut` itself (even dropping
// the last reference to it).
// Ownership: on `AFUT_OK` the library owns `userdata` and calls `userdata_free(userdata)`
// (if not NULL) exactly once: after `cb` ran, or when the entry is removed, or dropped because
// the loop closed or the future was freed first. On error it stays the caller's.
// Returns: `AFUT_OK`; `AFUT_ERR_LOOP_CLOSED` if the future is done and its loop closed.
// Bad input: NULL `fut` or `cb` returns `AFUT_ERR_INVALID_ARGUMENT`; a future whose
// never-retrieved report is running returns `AFUT_ERR_INVALID_STATE`.
//
// # Safety
// `fut` is NULL or a future handle the caller holds a reference to (or is lent for a callback).
// `cb` is NULL or a function with the documented signature, callable as this documentation says.
// `userdata_free` is NULL or a function with the documented signature, callable as this documentation says.
afut_status_t afut_add_done_callback(afut_t *fut, afut_done_fn cb, void *userdata, afut_free_fn userdata_free);

// Removes every registered entry equal to `(cb, userdata)` (asyncio `remove_done_callback`),
// calling each removed entry's `userdata_free` once. Callbacks already queued because the
// future is done cannot be removed.
//
// Thread: any.
// Returns: how many entries were removed (0 once the future is done).
// Bad input: NULL `fut` or `cb` returns 0.
//
// # Safety
// `fut` is NULL or a future handle the caller holds a reference to (or is lent for a callback).
// `cb` is NULL or a function with the documented signature, callable as this documentation says.
size_t afut_remove_done_callback(afut_t *fut, afut_done_fn cb, void *userdata);

// The loop the future is bound to.
//
// Thread: any.
// Ownership: borrowed; the caller's `afut_loop_new` reference is what keeps it valid.
// Returns: NULL for a loop-less future, or once the loop was freed with `afut_loop_free`.
// Bad input: NULL returns NULL.
//
// # Safety
// `fut` is NULL or a future handle the caller holds a reference to (or is lent for a callback).
afut_loop_t *afut_get_loop(const afut_t *fut);

// Blocks the calling thread until the future is done, whatever its outcome.
// `timeout_s`: 0 polls, `INFINITY` waits forever, a negative value acts as 0.
//
// Thread: any thread except the one running the future's loop (the future could never
// complete): that returns `AFUT_ERR_WRONG_THREAD` without waiting.
// Returns: `AFUT_OK` when done; `AFUT_ERR_TIMEOUT`.
// Bad input: NULL `fut` or NaN `timeout_s` returns `AFUT_ERR_INVALID_ARGUMENT`.
//
// # Safety
// `fut` is NULL or a future handle the caller holds a reference to (or is lent for a callback).
afut_status_t afut_wait(afut_t *fut, double timeout_s);

// Writes an asyncio-style description into `buf`, with snprintf's rules: at most `len - 1`
// characters and a NUL (nothing when `len == 0`). Formats: `<Future pending>`,
// `<Future pending cb=[2]>`, `<Future cancelled>`, `<Future finished result=0x1f2e>`
// (`result=NULL` for a NULL value), `<Future finished exception=code 5: boom>` (without
// `: message` when there is none). A task says `Task`, and `cancelling` instead of `pending`
// while cancel requests are pending (`<Task cancelling>`, as asyncio's Task repr).
//
// Thread: any.
// Returns: the length of the full description (excluding the NUL), as snprintf does.
// Bad input: NULL `fut` describes as `<NULL>`; NULL `buf` writes nothing.
//
// # Safety
// `fut` is NULL or a future handle the caller holds a reference to (or is lent for a callback).
// `buf` is NULL or valid for writes of `len` bytes.
size_t afut_describe(const afut_t *fut, char *buf, size_t len);

// True iff `obj` is a live future or task handle of this library.
//
// A debugging and binding aid, not a safety guarantee: `obj` must be NULL or point to at
// least 16 readable bytes. A handle's tag is cleared when it is freed, so a freed handle
// answers false while its memory is not reused.
//
// Thread: any. Bad input: NULL returns false.
//
// # Safety
// `obj` is NULL or points to at least 16 readable bytes.
bool afut_isfuture(const void *obj);

// asyncio `ensure_future` for futures: `obj` itself (as a new reference) if it is bound to
// `loop`, else `afut_wrap_future(loop, obj)`.
//
// Thread: any.
// Ownership: returns a new reference owned by the caller.
// Bad input: NULL `loop` or `obj` returns NULL.
//
// # Safety
// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
// `obj` is NULL or a future handle the caller holds a reference to (or is lent for a callback).
afut_t *afut_ensure_future(afut_loop_t *loop, afut_t *obj);

// A future bound to `loop` that mirrors `other` (a loop-less future or one of another loop;
// for a future of `loop` itself, `other` is returned as a new reference). When `other` is
// done, its outcome is copied onto the wrapper in a later iteration of `loop` (even if it was
// done already); cancelling either side cancels the other (asyncio `_chain_future`), the
// cancel message included.
//
// Thread: any.
// Ownership: returns a new reference owned by the caller. The mirrored value or detail is
// borrowed from `other`, which the wrapper keeps a reference to until it is freed. `other`
// holds the wrapper until `other` is done (asyncio's chain does too), so a wrapper the caller
// released still completes and runs its done-callbacks; if `other` never completes, closing
// `loop` lets the wrapper go.
// Bad input: NULL `loop` or `other` returns NULL.
//
// # Safety
// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
// `other` is NULL or a future handle the caller holds a reference to (or is lent for a callback).
afut_t *afut_wrap_future(afut_loop_t *loop, afut_t *other);

// A future of `loop` that a timer completes with `value` after `delay_s` seconds (asyncio
// `sleep(delay, result)`). `delay_s <= 0` completes it after exactly one iteration;
// `INFINITY` never. Cancelling the future cancels the timer.
//
// Thread: any.
// Ownership: returns a new reference owned by the caller. On success the library owns
// `value`: once the timer completes the future, the future owns it (and frees it when it is
// freed). If the future is cancelled first, the timer is cancelled on the loop's next
// iteration and `value_free(value)` runs then; if the loop closes first, at the close.
// On failure `value` stays the caller's. The loop holds a reference to the future until that
// next iteration, so its last `afut_unref` may come one iteration after yours.
// Bad input: NULL `loop` or NaN `delay_s` returns NULL; so does a closed loop.
//
// # Safety
// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
// `value_free` is NULL or a function with the documented signature, callable as this documentation says.
afut_t *afut_sleep(afut_loop_t *loop, double delay_s, void *value, afut_free_fn value_free);

// Creates a task (asyncio `loop.create_task()`): a future driven by `step`.
//
// A task is an `afut_t`: every function that takes a future takes a task (await it, cancel
// it, add done-callbacks, run the loop until it completes, gather it...). `afut_isfuture`
// is true for it, and `afut_is_task` tells it apart.
//
// The protocol (asyncio's `Task.__step`, with a C function instead of a coroutine):
//   - `step(task, awaited, userdata)` runs on the loop's thread: first on the iteration
//     after this call (never inside it) with `awaited == NULL`; then one iteration after the
//     future it awaits is done, with `awaited` that future (borrowed for the call: take a
//     reference with `afut_ref` to keep it).
//   - Each step does exactly one of:
//     1. complete the task: `afut_set_result(task, ...)` or `afut_set_exception(task, ...)`
//        (only a step may complete its own task: from anywhere else these return
//        `AFUT_ERR_INVALID_STATE`, like asyncio's `Task.set_result`);
//     2. await one future of the same loop: `afut_task_await(task, fut)` (the task holds a
//        reference to `fut` until the next step, so the caller may `afut_unref` it at once);
//     3. return doing neither. Then, if a cancel request is pending or `awaited` was
//        cancelled, the task ends CANCELLED with the pending cancel message (or `awaited`'s);
//        otherwise it yields: the next step runs on the next iteration with `awaited == NULL`.
//   - Cancellation (`afut_cancel(task, msg)`, asyncio `Task.cancel`): a task that is
//     awaiting gets its awaited future cancelled at once (same message) and returns true;
//     the next step sees `awaited` cancelled: returning without awaiting or completing ends
//     the task CANCELLED. A request that finds no awaited future (before the first step,
//     during a yield, or after the awaited future is done) stays pending:
//     `afut_task_cancel_requested` tells the step, `afut_task_await` then cancels the new
//     awaited future at once, and `afut_set_result` / `afut_set_exception` return
//     `AFUT_ERR_CANCELLED`. A step swallows a cancellation by awaiting or completing after
//     seeing its awaited future cancelled, or by `afut_task_take_cancel` or
//     `afut_task_uncancel` for a pending request (asyncio's `except CancelledError` /
//     `uncancel()`). Each request counts in
//     `afut_task_cancelling`. The cancel message of a task is stable: every
//     `afut_cancel_message` returns it (asyncio loses it after the first retrieval).
//   - Lifetime: the loop keeps a pending task alive (through its queued step or the awaited
//     future's callback), so a fire-and-forget task may be `afut_unref`ed at once and still
//     runs to the end (unlike asyncio, gh-91887). `userdata_free(userdata)` runs once, right
//     after the step that ended the task (or when the task ends without a step because its
//     loop closed). A task that fails and whose exception nobody retrieves is reported as
//     "Task exception was never retrieved".
//   - If the loop is closed (or freed) while a task is pending, its step can never run
//     again: `afut_loop_close` ends it CANCELLED with the message "the loop was closed"
//     (its done-callbacks are dropped, its userdata freed, the future it awaited released)
//     and reports "Task was destroyed but it is pending!" to the exception handler, as
//     asyncio reports a pending task that goes away. To end tasks on your own terms, cancel
//     them and run the loop until they are done before closing it.
//
// Worked example: a task that sleeps twice, then finishes with a string.
// ```c
// struct counter { int n; };
// static void step(afut_t *task, afut_t *awaited, void *userdata) {
//     struct counter *c = userdata;
//     if (awaited && afut_cancelled(awaited))
//         return;                                  /* ends the task CANCELLED */
//     if (c->n++ < 2) {
//         afut_t *nap = afut_sleep(afut_get_loop(task), 0.01, NULL, NULL);
//         afut_task_await(task, nap);              /* resumes when nap is done */
//         afut_unref(nap);                         /* the task keeps its own reference */
//         return;
//     }
//     afut_set_result(task, "slept twice", NULL);  /* done: userdata is freed now */
// }
// ...
//     struct counter *c = calloc(1, sizeof *c);
//     afut_t *t = afut_task_new(loop, step, c, free);
//     void *value;
//     if (afut_loop_run_until_complete(loop, t) == AFUT_OK && afut_result(t, &value) == AFUT_OK)
//         puts(value);
//     afut_unref(t);
// ```
//
// Thread: any (the steps run on the loop's thread).
// Ownership: returns a new reference owned by the caller. On success the task owns
// `userdata` (see Lifetime); on failure it stays the caller's.
// Returns: NULL if the loop is closed.
// Bad input: NULL `loop` or `step` returns NULL.
//
// # Safety
// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
// `step` is NULL or a function with the documented signature, callable as this documentation says.
// `userdata_free` is NULL or a function with the documented signature, callable as this documentation says.
afut_t *afut_task_new(afut_loop_t *loop, afut_step_fn step, void *userdata, afut_free_fn userdata_free);

// Makes `task` await `fut` (asyncio `await fut` inside the coroutine): the task's next step
// runs one iteration after `fut` is done, with `awaited == fut`. If a cancel request is
// pending, `fut` is cancelled at once (with its message) and the request counts as delivered.
//
// Thread: only from inside `task`'s own step (on the loop's thread).
// Ownership: the task takes its own reference to `fut` (until its next step starts).
// Returns: `AFUT_OK`; `AFUT_ERR_INVALID_STATE` if called outside the task's step, a second
// time in the same step, or after the step completed the task; `AFUT_ERR_INVALID_ARGUMENT`
// if `fut` is the task itself (asyncio "Task cannot await on itself") or is not bound to the
// task's loop (a loop-less future or one of another loop: wrap it with `afut_wrap_future`
// first); `AFUT_ERR_LOOP_CLOSED` if `fut` is done and the loop closed.
// Bad input: NULL `task` or `fut`, or a `task` that is not a task, returns
// `AFUT_ERR_INVALID_ARGUMENT`.
//
// # Safety
// `task` is NULL or a future handle the caller holds a reference to (or is lent for a callback).
// `fut` is NULL or a future handle the caller holds a reference to (or is lent for a callback).
afut_status_t afut_task_await(afut_t *task, afut_t *fut);

// True iff `fut` is a task (created by `afut_task_new`).
//
// Thread: any. Bad input: NULL returns false.
//
// # Safety
// `fut` is NULL or a future handle the caller holds a reference to (or is lent for a callback).
bool afut_is_task(const afut_t *fut);

// The number of cancel requests of the task not withdrawn with `afut_task_uncancel` (asyncio
// `Task.cancelling()`). Each `afut_cancel` on a pending task adds one (and returns true).
//
// Thread: any.
// Bad input: NULL or a future that is not a task returns -1.
//
// # Safety
// `task` is NULL or a future handle the caller holds a reference to (or is lent for a callback).
int afut_task_cancelling(const afut_t *task);

// Withdraws one cancel request (asyncio 3.13 `Task.uncancel()`): decrements the count
// (never below 0); when it reaches 0 a pending request is withdrawn too. No effect on a
// task that is already done, except on the count.
//
// Thread: any (normally the task's own step).
// Returns: the remaining count.
// Bad input: NULL or a future that is not a task returns -1.
//
// # Safety
// `task` is NULL or a future handle the caller holds a reference to (or is lent for a callback).
int afut_task_uncancel(afut_t *task);

// True while a cancel request of the task is pending: one that found no awaited future to
// cancel (made before the first step, during a yield, or after the awaited future was done,
// or by the step itself). If the step returns without awaiting or completing, the task then
// ends CANCELLED. Requests delivered to an awaited future are not pending: the step sees
// `afut_cancelled(awaited)` instead.
//
// Thread: any (normally the task's own step).
// Ownership: `*msg_out` (may be NULL) receives the pending message or NULL; it is borrowed
// from the task and valid as long as the task lives. Written only when returning true.
// Bad input: NULL or a future that is not a task returns false.
//
// # Safety
// `task` is NULL or a future handle the caller holds a reference to (or is lent for a callback).
// `msg_out` is NULL or valid for one write of its type.
bool afut_task_cancel_requested(const afut_t *task, const char **msg_out);

// Takes the pending cancel request of the task (see `afut_task_cancel_requested`), for
// bindings that deliver it as an exception, the way asyncio throws CancelledError into the
// coroutine and clears `_must_cancel`. The rest of the step then runs as if the request had
// been swallowed: `afut_task_await` no longer cancels the awaited future, `afut_set_result`
// is allowed, returning doing neither yields. To end the task cancelled after all (the
// exception was not caught), call `afut_cancel(task, msg)` and return. The count
// (`afut_task_cancelling`) is unchanged.
//
// Thread: only from inside the task's own step; elsewhere it takes nothing.
// Ownership: `*msg_out` (may be NULL) receives the message or NULL, borrowed from the task
// and valid as long as the task lives. Written only when returning true.
// Returns: true if a request was pending and is now taken.
// Bad input: NULL or a future that is not a task returns false.
//
// # Safety
// `task` is NULL or a future handle the caller holds a reference to (or is lent for a callback).
// `msg_out` is NULL or valid for one write of its type.
bool afut_task_take_cancel(afut_t *task, const char **msg_out);

// asyncio `gather(*futs, return_exceptions=...)`: a future of `loop` that completes when
// every input is done.
//
// Inputs not bound to `loop` (loop-less, or of another loop) are wrapped
// (`afut_ensure_future`). The same future passed twice is one child that appears at both
// positions. Children that are already done are processed during this call, so the gather
// may be done on return, as asyncio's is; with `n == 0` it is done at once, with a NULL
// result.
//
// Results: on success the gather's value (`afut_result`) is an array of `n` `afut_t *`, the
// children in argument order (borrowed from the gather, like the array): read each with
// `afut_result` / `afut_exception`, or use `afut_gather_child(gather, i)`.
//   - `return_exceptions == false`: the first child that fails completes the gather with that
//     exception (code, message and a borrowed detail); a cancelled child completes it with an
//     exception whose code is `AFUT_ERR_CANCELLED` and whose message is the child's cancel
//     message (the gather is FINISHED, not cancelled, as in asyncio). The other children keep
//     running; their later exceptions count as retrieved.
//   - `return_exceptions == true`: the gather always succeeds once every child is done; the
//     children's exceptions count as retrieved when the gather completes (they are part of
//     the result). A gather cancelled or dropped before that leaves them to be reported.
//
// Cancelling the gather (`afut_cancel`) cancels every child that is still pending, at once,
// with the same message, and the gather ends CANCELLED at once with that message: a
// deliberate improvement over asyncio, where the gather ends FINISHED with a CancelledError
// and `cancelled()` is never true (gh-85071).
//
// Thread: any.
// Ownership: returns a new reference owned by the caller; the gather keeps a reference to each
// child until it is freed. The caller keeps its own references to the inputs. While a child
// is pending it keeps the gather alive (as in asyncio): a gather completes and runs its
// done-callbacks even if the caller has released it. Closing the loop ends that hold.
// Bad input: NULL `loop`, NULL `futs` with `n > 0`, or a NULL entry returns NULL.
//
// # Safety
// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
// `futs` is NULL or points to `n` readable handles, each NULL or a future handle as above.
afut_t *afut_gather(afut_loop_t *loop, afut_t *const *futs, size_t n, bool return_exceptions);

// The child at argument position `index` of a gather (see `afut_gather`), whatever the
// gather's state.
//
// Thread: any.
// Ownership: borrowed from the gather; valid as long as the gather lives.
// Bad input: NULL, a future that is not a gather, or `index >= n` returns NULL.
//
// # Safety
// `gather` is NULL or a future handle the caller holds a reference to (or is lent for a callback).
afut_t *afut_gather_child(const afut_t *gather, size_t index);

// asyncio `wait_for(fut, timeout)`: a future of `loop` that completes like `fut`, unless
// `timeout_s` seconds pass first.
//
// On timeout `fut` is cancelled, and the wait_for waits until `fut` is really done: if `fut`
// ends cancelled, the wait_for ends FINISHED with an exception whose code is
// `AFUT_ERR_TIMEOUT` (message "timed out"), so `afut_result` on it returns
// `AFUT_ERR_EXCEPTION`; if `fut` swallowed the cancellation, its result (or its other
// exception) is the wait_for's. A result that is already there when the timeout fires wins,
// as in asyncio. `timeout_s <= 0` checks at once (a done `fut` gives its result, else it is
// cancelled now); `INFINITY` never times out. The wait_for completes one iteration after
// `fut` (its value and detail are borrowed from `fut`, which it keeps alive). Cancelling the
// wait_for cancels `fut` at once (same message) and ends the wait_for CANCELLED at once. A
// `fut` of another loop or loop-less is wrapped first (`afut_ensure_future`).
//
// Thread: any.
// Ownership: returns a new reference owned by the caller; the caller keeps its own on `fut`.
// While `fut` is pending it keeps the returned future alive, which therefore completes and
// runs its done-callbacks even if the caller has released it (until the loop is closed).
// Bad input: NULL `loop` or `fut`, or NaN `timeout_s`, returns NULL.
//
// # Safety
// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
// `fut` is NULL or a future handle the caller holds a reference to (or is lent for a callback).
afut_t *afut_wait_for(afut_loop_t *loop, afut_t *fut, double timeout_s);

// asyncio `shield(fut)`: protects `fut` from cancellation. If `fut` (after
// `afut_ensure_future`) is already done, it is returned itself. Otherwise a new future of
// `loop` completes like `fut` (one iteration after it). Cancelling that outer future leaves
// `fut` running, untouched; once the outer future is done (cancelled, or completed by its
// caller) the shield lets go of `fut`, whose later outcome is its own: an exception nobody
// reads is reported as never retrieved, as in asyncio. Cancelling `fut` itself cancels the
// outer future, without a message (as asyncio does). While both are pending, `fut` keeps the
// outer future alive: it completes and runs its done-callbacks even if the caller has
// released it (until the loop is closed).
//
// Thread: any.
// Ownership: returns a new reference owned by the caller; values and details are borrowed
// from `fut`, which the outer future keeps alive.
// Bad input: NULL `loop` or `fut` returns NULL.
//
// # Safety
// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
// `fut` is NULL or a future handle the caller holds a reference to (or is lent for a callback).
afut_t *afut_shield(afut_loop_t *loop, afut_t *fut);

// asyncio `wait(futs, timeout=..., return_when=...)`: a future of `loop` that completes with
// the sets of done and pending inputs once `return_when` holds or `timeout_s` passes.
//
// `return_when`: `AFUT_FIRST_COMPLETED` (any input done, whatever its outcome),
// `AFUT_FIRST_EXCEPTION` (an input fails; a cancellation is not an exception; if none fails
// it is ALL_COMPLETED), `AFUT_ALL_COMPLETED`. Its value (`afut_result`) is an
// `afut_wait_result_t *` whose `done` array holds every input done at that moment (several may
// finish in the same iteration) and `pending` the others, each in input order; the struct,
// the arrays and the futures are borrowed from the wait future. It never fails: a timeout is
// not an error and cancels nothing. Even when every input is already done, it takes one
// iteration, as asyncio's does. Duplicates count once; inputs not bound to `loop` are
// wrapped. Cancelling the wait future leaves the inputs untouched. The FIRST_EXCEPTION check reads the inputs'
// exceptions, which marks each one retrieved (asyncio skips the read for the last input).
//
// Thread: any.
// Ownership: returns a new reference owned by the caller; it keeps a reference to each input.
// While it is pending the inputs keep it alive, so it completes and runs its done-callbacks
// even if the caller has released it (until the loop is closed).
// Bad input: NULL `loop`, `n == 0` (asyncio ValueError), NULL `futs` or a NULL entry, an
// unknown `return_when`, or a NaN `timeout_s` returns NULL. `INFINITY`: no timeout.
//
// # Safety
// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
// `futs` is NULL or points to `n` readable handles, each NULL or a future handle as above.
afut_t *afut_wait_many(afut_loop_t *loop, afut_t *const *futs, size_t n, double timeout_s, int32_t return_when);

// The done / pending sets of a completed `afut_wait_many` future: the same pointer as its
// `afut_result` value.
//
// Thread: any.
// Ownership: borrowed from the wait future; valid as long as it lives.
// Returns: NULL while the wait is pending, if it was cancelled, or if `wait` is not one.
// Bad input: NULL returns NULL.
//
// # Safety
// `wait` is NULL or a future handle the caller holds a reference to (or is lent for a callback).
const afut_wait_result_t *afut_wait_many_result(const afut_t *wait);

// asyncio `as_completed(futs, timeout=...)`: writes to `out` one new future per distinct
// input; `out[0]` completes like the first input to complete, `out[1]` like the second, and
// so on (each one iteration after that input; values and details borrowed from it). When
// `timeout_s` passes, every `out[i]` still pending fails with an exception whose code is
// `AFUT_ERR_TIMEOUT` (asyncio raises TimeoutError from the remaining awaits). An `out[i]` the
// caller cancels is skipped. `INFINITY`: no timeout.
//
// Thread: any.
// Ownership: each `out[i]` is a new reference owned by the caller (`afut_unref` each). Inputs
// are kept alive until they are done, the timeout passes or `loop` is closed (the close lets
// go of inputs that never complete).
// Returns: the number of futures written (the number of distinct inputs, at most `n`).
// Bad input: NULL `loop` or `out`, NULL `futs` with `n > 0`, a NULL entry, or a NaN
// `timeout_s` returns 0 and writes nothing.
//
// # Safety
// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
// `futs` is NULL or points to `n` readable handles, each NULL or a future handle as above.
size_t afut_as_completed(afut_loop_t *loop, afut_t *const *futs, size_t n, double timeout_s, afut_t **out);

// Creates a thread-pool executor (concurrent.futures `ThreadPoolExecutor(max_workers)`): at most
// `max_workers` jobs run at once, each on a worker thread; 0 means the number of CPUs this
// process may run on (its affinity mask and CPU quota). No thread starts here: a worker is
// started by a submit that finds no available worker for its job, up to `max_workers`; idle
// workers wait (no spinning) and are reused, and run until shutdown. Workers have 8 MiB stacks.
//
// Thread: any.
// Ownership: the caller owns the executor and releases it with `afut_executor_free`.
// Returns: the executor; NULL only if memory ran out.
afut_executor_t *afut_executor_new(size_t max_workers);

// Submits a job (concurrent.futures `submit`): `fn(fut, userdata)` runs on a worker and
// completes `fut` with `afut_set_result` / `afut_set_exception`; if it returns without
// completing it, `fut` gets a NULL result. Jobs start in submission order.
//
// `fut` is a loop-less future in concurrent.futures' states:
//   - queued (`afut_describe`: "<Future pending>"): `afut_cancel` cancels it, and the job never
//     runs; its `userdata_free` runs inside that `afut_cancel`, after the done-callbacks;
//   - running ("<Future running>"): `afut_cancel` returns false, also from inside the job
//     (`set_running_or_notify_cancel`);
//   - done: as any future. A future completed by someone else before its job started skips
//     the job.
//
// Its done-callbacks follow the loop-less rule: they run on the thread that completes or
// cancels it (the worker, when the job completes it), and at once on the adding thread once it
// is done. A worker counts as available again as soon as the job function returns; so a
// done-callback that the executor itself runs (the job returned without completing `fut`)
// must not block waiting for another job of a full executor. To wait for a job's result on a
// loop, use `afut_loop_run_in_executor` (or `afut_wrap_future`).
//
// Thread: any, a job of this executor included.
// Ownership: returns a new reference owned by the caller; the executor keeps its own until the
// job is done, so the caller may drop it at once. On success the library owns `userdata` and
// calls `userdata_free(userdata)` (if not NULL) exactly once, never before the job started
// unless it was cancelled: on the worker right after `fn` returned (before `fut` gets a NULL
// result), or inside the `afut_cancel` (or the `afut_executor_shutdown` with `cancel_futures`)
// that cancelled the queued job, or, for a queued job whose future someone else completed, in
// the first of a later `afut_cancel` (which returns false) or the worker skipping it; at the latest when `afut_executor_shutdown(ex, true, ...)` or
// `afut_executor_free` returns. On failure (NULL) it stays the caller's and nothing is freed.
// Returns: the job's future; NULL after `afut_executor_shutdown`, or if the executor has no
// worker and the kernel refused to start one.
// Bad input: NULL `ex` or `fn` returns NULL.
//
// # Safety
// `ex` is NULL or an executor handle not yet passed to `afut_executor_free`.
// `fn` is NULL or a function with the documented signature, callable as this documentation says.
// `userdata_free` is NULL or a function with the documented signature, callable as this documentation says.
afut_t *afut_executor_submit(afut_executor_t *ex, afut_job_fn fn, void *userdata, afut_free_fn userdata_free);

// Runs a job on `ex` as a future of `loop` (asyncio `loop.run_in_executor(ex, fn)`): the
// job's future (see `afut_executor_submit`) wrapped with `afut_wrap_future`. The loop future
// completes one iteration after the job's future, with its outcome (the value or detail
// borrowed from it); its done-callbacks run on the loop's thread. Cancellation is chained both
// ways: cancelling the loop future (true while it is pending, as asyncio's wrapper) cancels
// the job's future on the loop's next iteration, so a queued job never runs, while a running
// one runs to its end and the loop future stays cancelled; a job cancelled on the executor side
// (`afut_executor_shutdown` with `cancel_futures`) cancels the loop future. With a virtual clock
// (`afut_loop_set_virtual_clock`), the job holds auto-advance until it is done.
//
// Thread: any.
// Ownership: returns a new reference owned by the caller; the library keeps the loop future
// alive until the job is done, so the caller may drop it at once and its done-callbacks still
// run. `userdata` as for `afut_executor_submit`. On failure (NULL) it stays the caller's and
// nothing is freed.
// Returns: the loop future; NULL if the loop is closed or the executor shut down.
// Bad input: NULL `loop`, `ex` or `fn` returns NULL.
//
// # Safety
// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
// `ex` is NULL or an executor handle not yet passed to `afut_executor_free`.
// `fn` is NULL or a function with the documented signature, callable as this documentation says.
// `userdata_free` is NULL or a function with the documented signature, callable as this documentation says.
afut_t *afut_loop_run_in_executor(afut_loop_t *loop, afut_executor_t *ex, afut_job_fn fn, void *userdata, afut_free_fn userdata_free);

// Shuts the executor down (concurrent.futures `shutdown(wait, cancel_futures=...)`): later
// submits return NULL. Jobs already queued still run, unless `cancel_futures`: then every
// queued job's future is cancelled here (its done-callbacks run on this thread, its userdata
// is freed before this returns); running jobs always run to their end. With `wait`, returns
// once every job is done (its userdata freed, its future completed) and every worker thread
// has exited; without, at once (the workers exit once the queue is empty). A second call is
// harmless: `wait` then waits for what the first left running. Called from one of this
// executor's own jobs, `wait` waits for the other workers only (jobs still queued then run
// after that job returns).
//
// Thread: any, a job of this executor included.
// Bad input: NULL is a no-op.
//
// # Safety
// `ex` is NULL or an executor handle not yet passed to `afut_executor_free`.
void afut_executor_shutdown(afut_executor_t *ex, bool wait, bool cancel_futures);

// Shuts the executor down with `wait` (`afut_executor_shutdown(ex, true, false)`: queued jobs
// still run), then frees it. Futures of its jobs outlive it.
//
// Thread: any, a job of this executor included (then it waits for the other workers only).
// Bad input: NULL is a no-op.
//
// # Safety
// `ex` is NULL or an executor handle not yet passed to `afut_executor_free`, and no other
// thread uses it during or after this call.
void afut_executor_free(afut_executor_t *ex);

// Switches the loop to a virtual clock, for tests of code that waits (asyncio's
// `test_utils.TestLoop`, tokio's `time::pause`, trio's `MockClock`). `afut_loop_time` is then
// 0 and moves only by `afut_loop_advance_time`, or, with `auto_advance`, by jumps: whenever an
// iteration finds nothing ready (work queued from other threads included), no timer due, and
// the loop not stopping, the clock jumps exactly to the earliest live deadline (never to
// `INFINITY`) and that timer runs in the same iteration. This also holds for
// `afut_loop_run_once(loop, 0, ...)`. A job of `afut_loop_run_in_executor` holds the clock
// until it is done: the loop waits for it instead of jumping. Without a timer to jump to, an
// idle loop blocks until another thread submits work (no spinning); a timer scheduled from
// another thread wakes it.
//
// Everything that takes a delay follows the virtual clock: `afut_loop_call_later`, `afut_sleep`,
// the timeouts of `afut_wait_for`, `afut_wait_many`, `afut_as_completed`, and debug mode's
// slow-callback report (callbacks are timed in loop time, as asyncio does: a callback that
// advances the clock by 0.2 s is slow; one that blocks 0.2 s of real time is not).
// `afut_wait` (a thread blocking on a future) keeps waiting in real time.
//
// Host mode (`afut_loop_fd`): the fd becomes readable for a virtual timer only once it is due
// (after `afut_loop_advance_time`, or scheduled at or before the current time). The timerfd is
// never armed. `afut_loop_timeout_ms` returns 0 if work is ready or a timer is due; with
// `auto_advance`, also 0 while a live finite timer is pending and no executor job holds the
// clock (the host's next `run_once` jumps to it; the fd is not readable for it); otherwise -1
// (waiting in real time would never make a virtual timer due).
//
// Called again (with no timer), it only changes `auto_advance`; the clock keeps its value.
//
// Thread: the loop's thread: from inside a callback, or any one thread while the loop is not
// running; from another thread while it runs: `AFUT_ERR_WRONG_THREAD`.
// Returns: `AFUT_OK`; `AFUT_ERR_INVALID_STATE` while a timer exists (`call_later`, `call_at`, a
// pending `afut_sleep`, a timeout of a pending `wait_for` / `wait_many` / `as_completed`; a
// cancelled timer does not count); `AFUT_ERR_LOOP_CLOSED` on a closed loop.
// Bad input: NULL returns `AFUT_ERR_INVALID_ARGUMENT`.
//
// # Safety
// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
afut_status_t afut_loop_set_virtual_clock(afut_loop_t *loop, bool auto_advance);

// Moves a virtual clock (`afut_loop_set_virtual_clock`) forward by `seconds`. Every timer due
// then (a deadline equal to the clock is due) runs in the loop's next single iteration, in
// deadline order; a loop or host waiting on another thread is woken for them.
//
// Thread: any, a callback of the loop included.
// Returns: `AFUT_OK`; `AFUT_ERR_INVALID_STATE` on a loop with a real clock;
// `AFUT_ERR_LOOP_CLOSED` on a closed loop.
// Bad input: NULL `loop`, or `seconds` negative, NaN or infinite, returns
// `AFUT_ERR_INVALID_ARGUMENT` (checked first) and changes nothing; so does an amount that
// would take the clock past `DBL_MAX`.
//
// # Safety
// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
afut_status_t afut_loop_advance_time(afut_loop_t *loop, double seconds);

// Installs the handler for errors that have no caller to return to (asyncio
// `set_exception_handler`). NULL `handler` restores the default, which writes to stderr.
// The handler runs on the thread where the error happened: the loop's thread for callback
// reports, the thread dropping the last reference for "never retrieved" reports. It may call
// any afut function.
//
// Thread: any.
// Ownership: the library owns `userdata` and calls `userdata_free(userdata)` once when the
// handler is replaced or the loop freed (after any call in flight returns). With a NULL
// `handler`, `userdata_free(userdata)` (if any) is called at once.
// Bad input: NULL `loop` does nothing (and frees nothing).
//
// # Safety
// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
// `handler` is NULL or a function with the documented signature, callable as this documentation says.
// `userdata_free` is NULL or a function with the documented signature, callable as this documentation says.
void afut_loop_set_exception_handler(afut_loop_t *loop, afut_exception_handler_fn handler, void *userdata, afut_free_fn userdata_free);

// Debug mode (asyncio `set_debug`): also report callbacks that take 0.1 s or more, as
// "Executing <callback> took 0.123 seconds", through the exception handler. The
// never-retrieved report is made whatever the mode.
//
// Thread: any. Bad input: NULL is a no-op.
//
// # Safety
// `loop` is NULL or a loop handle not yet passed to `afut_loop_free`.
void afut_loop_set_debug(afut_loop_t *loop, bool enabled);

#ifdef __cplusplus
}  // extern "C"
#endif  // __cplusplus

#endif  /* AFUT_H */
