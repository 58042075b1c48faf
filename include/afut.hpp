/*
 * afut.hpp: C++20 coroutines over afut's C API (header-only; needs afut.h and libafut).
 *
 *   afut::loop loop;                                   // RAII afut_loop_t
 *   afut::task<std::string> hello(double delay) {      // an afut task underneath
 *       co_await afut::sleep(delay);
 *       co_return "... world";
 *   }
 *   std::cout << loop.run_until_complete(hello(1.0)) << "\n";
 *
 * Handles
 *   - afut::loop owns an afut_loop_t (afut_loop_free in its destructor); not copyable. While
 *     it lives it is the thread's current loop (afut::current_loop()), like asyncio's
 *     set_event_loop; the innermost one wins.
 *   - afut::future_base owns one reference to an afut_t: copying it is afut_ref, destroying it
 *     afut_unref. afut::future<T> is a future whose value is a heap `T` created with `new` and
 *     freed by the future (its value_free), so any movable T can be stored; C code sees it as
 *     a `T *` through afut_result. afut::future<void> has no value (NULL).
 *   - afut::task<T> is the return type of a coroutine. Calling the coroutine function creates
 *     an afut task at once (asyncio create_task(coro()) in one step): it starts on the next
 *     iteration of its loop. The loop is the first `afut::loop &` / `afut_loop_t *` parameter
 *     of the coroutine, else the current loop (the running task's loop, or the innermost
 *     afut::loop of the thread). task<T> is a future<T>: C code can await it, cancel it,
 *     gather it (`t.get()` is the afut_t *). The loop keeps the task alive until it is done,
 *     so dropping the task<T> object does not stop it. ~loop() cancels the C++ tasks still
 *     pending and runs the loop until they are done (asyncio.run's last step).
 *
 * Awaiting
 *   - Inside a task<T> coroutine, `co_await f` works on any afut::future<T>, task<U>,
 *     future_base (the raw `void *` value) or a shielded / wait_for future. The coroutine
 *     resumes on the loop's thread, one iteration after f is done (through afut_task_await);
 *     a future that is already done does not suspend. A future of another loop or a loop-less
 *     one is wrapped first (afut_ensure_future).
 *   - The result: `co_await lvalue` gives `T &` (owned by the future); `co_await rvalue` (a
 *     temporary, e.g. `co_await child()`) gives a `T` moved out of the future.
 *   - `co_await afut::yield()` gives up one iteration (asyncio `await asyncio.sleep(0)`).
 *
 * Errors (C++ exceptions never cross into C: the step and every callback catch them)
 *   - A failed future throws afut::exception_error (code(), what() = its message, detail()),
 *     afut::timeout_error for code AFUT_ERR_TIMEOUT (a timed-out wait_for), or the original
 *     C++ exception when the future failed with one (see below).
 *   - A cancelled future throws afut::cancelled_error carrying the cancel message. Like
 *     asyncio's CancelledError (a BaseException) it does NOT derive from std::exception, so
 *     `catch (const std::exception &)` does not swallow cancellations.
 *   - A C++ exception escaping a task<T> coroutine fails the task with code
 *     afut::cpp_exception_code, message what() (or "unknown C++ exception") and, as detail, a
 *     heap std::exception_ptr (freed by the future). C++ awaiters rethrow the original. An
 *     afut::exception_error escaping keeps its code and message (no detail). A
 *     cancelled_error escaping ends the task CANCELLED (with its message).
 *   - Cancelling a task (afut::future_base::cancel or afut_cancel from C) cancels what it
 *     awaits; the coroutine sees afut::cancelled_error at that co_await. If it catches it and
 *     goes on (awaits again or co_returns), the task is not cancelled (asyncio semantics).
 *     A task cancelled before it started never runs its body.
 *   - API misuse (a C call failing with a status) throws afut::error (status()).
 *
 * Combinators, thread pools, virtual time
 *   - afut::gather(f1, f2, ...) over typed futures and tasks: `auto [a, b] = co_await
 *     afut::gather(fa, fb);` gives a std::tuple (T & for a future you pass as an lvalue, T moved
 *     out of a temporary, std::monostate for future<void>); the first failure is thrown.
 *     afut::gather({...}, return_exceptions) is the untyped form (children read one by one).
 *   - afut::executor (concurrent.futures' ThreadPoolExecutor): pool.submit(fn) gives a loop-less
 *     future<R> completed on a worker; loop.run_in_executor(pool, fn) a future of the loop (co_await
 *     it in a task). An exception thrown by fn fails the future; awaiting rethrows it.
 *   - loop.set_virtual_clock(auto_advance) / advance_time(s): time() starts at 0 and timers,
 *     afut::sleep and afut::wait_for follow the virtual clock (see afut_loop_set_virtual_clock).
 *
 * Threads: handles may be copied and destroyed on any thread (afut_ref / afut_unref are
 * thread-safe). Coroutines run on the thread running their loop.
 */
#ifndef AFUT_HPP
#define AFUT_HPP

#include <cerrno>
#include <coroutine>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <initializer_list>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <system_error>
#include <type_traits>
#include <tuple>
#include <utility>
#include <variant>
#include <vector>

#include "afut.h"

namespace afut {

/// Exception code of a task that failed with a C++ exception ("CPPX"); its detail is a
/// `std::exception_ptr *` owned by the future. Reserved: C code must not use it.
inline constexpr int32_t cpp_exception_code = 0x43505058;

/// A C API call failed with `status()` (misuse: a wrong state, a closed loop, ...).
class error : public std::runtime_error {
public:
    explicit error(afut_status_t status, const char *where = nullptr)
        : std::runtime_error(std::string(where ? where : "afut") + ": " + afut_status_str(status)),
          status_(status) {}
    afut_status_t status() const noexcept { return status_; }

private:
    afut_status_t status_;
};

/// A future holds an afut exception: its code, message (what()) and detail (borrowed from the
/// future, which may be gone by the time this is caught: compare, do not dereference, unless
/// you hold the future).
class exception_error : public std::runtime_error {
public:
    exception_error(int32_t code, const char *message, void *detail = nullptr)
        : std::runtime_error(message ? message : ""), code_(code), detail_(detail),
          has_message_(message != nullptr) {}
    int32_t code() const noexcept { return code_; }
    void *detail() const noexcept { return detail_; }
    bool has_message() const noexcept { return has_message_; }

private:
    int32_t code_;
    void *detail_;
    bool has_message_;
};

/// The exception of a timed-out afut::wait_for (code AFUT_ERR_TIMEOUT).
class timeout_error : public exception_error {
public:
    using exception_error::exception_error;
};

/// A cancelled future or task (asyncio CancelledError). Not a std::exception, on purpose.
class cancelled_error {
public:
    cancelled_error() = default;
    explicit cancelled_error(const char *message)
        : message_(message ? message : ""), has_message_(message != nullptr) {}
    explicit cancelled_error(std::string message) : message_(std::move(message)), has_message_(true) {}
    /// The cancel message ("" when there was none: see has_message()).
    const std::string &message() const noexcept { return message_; }
    bool has_message() const noexcept { return has_message_; }
    const char *what() const noexcept { return has_message_ ? message_.c_str() : "cancelled"; }

private:
    std::string message_;
    bool has_message_ = false;
};

namespace detail {

inline thread_local afut_loop_t *tls_loop = nullptr;
inline thread_local afut_t *tls_task = nullptr;

/// Sets the thread's current loop for a scope.
class loop_scope {
public:
    explicit loop_scope(afut_loop_t *l) noexcept : prev_(tls_loop) { tls_loop = l; }
    ~loop_scope() { tls_loop = prev_; }
    loop_scope(const loop_scope &) = delete;
    loop_scope &operator=(const loop_scope &) = delete;

private:
    afut_loop_t *prev_;
};

template <class T>
void delete_value(void *p) noexcept {
    delete static_cast<T *>(p);
}

inline void delete_exception_ptr(void *p) noexcept { delete static_cast<std::exception_ptr *>(p); }

/// Throws what a done, unsuccessful future holds. `rc` is afut_result's status.
[[noreturn]] inline void throw_outcome(afut_t *f, afut_status_t rc) {
    if (rc == AFUT_ERR_CANCELLED) throw cancelled_error(afut_cancel_message(f));
    afut_exception_t e{};
    if (rc == AFUT_ERR_EXCEPTION && afut_exception(f, &e) == AFUT_OK && e.code != 0) {
        if (e.code == cpp_exception_code && e.detail)
            std::rethrow_exception(*static_cast<std::exception_ptr *>(e.detail));
        if (e.code == AFUT_ERR_TIMEOUT) throw timeout_error(e.code, e.message, e.detail);
        throw exception_error(e.code, e.message, e.detail);
    }
    throw error(rc, "afut_result");
}

/// Completes `f` with the exception `ep` (see "Errors" above). Returns the status.
inline afut_status_t set_exception_ptr(afut_t *f, std::exception_ptr ep) noexcept {
    try {
        std::rethrow_exception(ep);
    } catch (const exception_error &e) {
        return afut_set_exception(f, e.code() ? e.code() : cpp_exception_code,
                                  e.has_message() ? e.what() : nullptr, nullptr, nullptr);
    } catch (...) {
        std::string what = "unknown C++ exception";
        try {
            std::rethrow_exception(ep);
        } catch (const std::exception &e) {
            what = e.what();
        } catch (const cancelled_error &c) {
            what = c.what();
        } catch (...) {
        }
        auto *holder = new (std::nothrow) std::exception_ptr(ep);
        afut_status_t rc = afut_set_exception(f, cpp_exception_code, what.c_str(), holder,
                                              holder ? &delete_exception_ptr : nullptr);
        if (rc != AFUT_OK) delete holder;
        return rc;
    }
}

/// A heap-stored callable for the C callbacks; exceptions stop here.
template <class F>
struct callable {
    F fn;
    static void run(void *p) noexcept {
        try {
            static_cast<callable *>(p)->fn();
        } catch (...) {
            std::fputs("afut.hpp: an exception escaped a loop callback; ignored\n", stderr);
        }
    }
    static void free(void *p) noexcept { delete static_cast<callable *>(p); }
};

struct promise_base;

/// The C++ tasks alive, per loop, so that ~loop() can cancel the pending ones and let them
/// finish (asyncio.run's final cancel_all_tasks). Entries are borrowed: a task removes itself
/// when its coroutine frame is destroyed. Leaked on purpose (frames may die at exit).
struct task_registry {
    std::mutex m;
    std::vector<std::pair<afut_loop_t *, afut_t *>> items;

    void add(afut_loop_t *l, afut_t *t) {
        std::lock_guard<std::mutex> g(m);
        items.emplace_back(l, t);
    }
    void remove(afut_t *t) noexcept {
        std::lock_guard<std::mutex> g(m);
        for (auto &it : items)
            if (it.second == t) {
                it = items.back();
                items.pop_back();
                return;
            }
    }
    /// New references to the pending tasks of `l`.
    std::vector<afut_t *> pending_of(afut_loop_t *l) {
        std::lock_guard<std::mutex> g(m);
        std::vector<afut_t *> out;
        for (auto &it : items)
            if (it.first == l && !afut_done(it.second)) out.push_back(afut_ref(it.second));
        return out;
    }
};

inline task_registry &registry() {
    static task_registry *r = new task_registry;
    return *r;
}

}  // namespace detail

/// The thread's current loop: the running task's loop, else the innermost afut::loop alive on
/// this thread, else NULL.
inline afut_loop_t *current_loop() noexcept { return detail::tls_loop; }

/// The afut::task running on this thread (asyncio.current_task()), borrowed; NULL outside one.
/// Use it with the C task functions, e.g. afut_task_cancelling(afut::current_task()).
inline afut_t *current_task() noexcept { return detail::tls_task; }

class future_base;
template <class T>
class future;
class executor;
template <class... E>
class gathered;

/// An owned afut_loop_t.
class loop {
public:
    loop() : loop_(afut_loop_new()) {
        if (!loop_) throw std::system_error(errno, std::generic_category(), "afut_loop_new");
        prev_ = detail::tls_loop;
        detail::tls_loop = loop_;
    }
    /// Cancels the C++ tasks of this loop that are still pending and runs the loop until they
    /// are done (asyncio.run does the same), then frees the loop. Without that, a task awaiting
    /// a future that never completes would keep itself (and its coroutine frame) alive.
    ~loop() {
        std::vector<afut_t *> pending = detail::registry().pending_of(loop_);
        if (!pending.empty() && !afut_loop_is_running(loop_) && !afut_loop_is_closed(loop_)) {
            for (afut_t *t : pending) afut_cancel(t, nullptr);
            afut_t *all = afut_gather(loop_, pending.data(), pending.size(), true);
            if (all) (void)afut_loop_run_until_complete(loop_, all);
            afut_unref(all);
        }
        for (afut_t *t : pending) afut_unref(t);
        if (detail::tls_loop == loop_) detail::tls_loop = prev_;
        afut_loop_free(loop_);
    }
    loop(const loop &) = delete;
    loop &operator=(const loop &) = delete;

    afut_loop_t *get() const noexcept { return loop_; }
    operator afut_loop_t *() const noexcept { return loop_; }

    /// Runs until `f` is done and returns its value (T & for future<T>), or throws its
    /// exception / cancelled_error; afut::error if stop() ended the run first.
    template <class T>
    decltype(auto) run_until_complete(const future<T> &f);
    /// For a temporary (e.g. `run_until_complete(main())`): the value is moved out (T).
    template <class T>
    T run_until_complete(future<T> &&f);
    /// For a typed gather (afut::gather(f1, f2, ...)): the tuple of results.
    template <class... E>
    std::tuple<E...> run_until_complete(const gathered<E...> &g);

    void run_forever() {
        afut_status_t rc = afut_loop_run_forever(loop_);
        if (rc != AFUT_OK) throw error(rc, "afut_loop_run_forever");
    }
    void stop() noexcept { afut_loop_stop(loop_); }
    /// One iteration (afut_loop_run_once); returns how many callbacks ran.
    std::size_t run_once(int timeout_ms = 0) {
        std::size_t ran = 0;
        afut_status_t rc = afut_loop_run_once(loop_, timeout_ms, &ran);
        if (rc != AFUT_OK) throw error(rc, "afut_loop_run_once");
        return ran;
    }
    double time() const noexcept { return afut_loop_time(loop_); }

    /// Virtual time for tests (afut_loop_set_virtual_clock): time() starts at 0 and moves only by
    /// advance_time(), or, with auto_advance, by jumping to the next timer whenever nothing is
    /// ready. Throws afut::error (AFUT_ERR_INVALID_STATE while a timer exists).
    void set_virtual_clock(bool auto_advance = true) {
        afut_status_t rc = afut_loop_set_virtual_clock(loop_, auto_advance);
        if (rc != AFUT_OK) throw error(rc, "afut_loop_set_virtual_clock");
    }
    /// Moves a virtual clock forward; due timers run in the next iteration.
    void advance_time(double seconds) {
        afut_status_t rc = afut_loop_advance_time(loop_, seconds);
        if (rc != AFUT_OK) throw error(rc, "afut_loop_advance_time");
    }

    /// asyncio loop.run_in_executor(ex, fn): runs fn() on a worker of `ex`; a future<R> of this
    /// loop (R = what fn returns). See afut::executor.
    template <class F>
    auto run_in_executor(executor &ex, F &&fn);

    /// call_soon with any callable; it runs on the loop's thread. Returns the handle.
    template <class F>
    afut_handle_t call_soon(F &&fn) {
        return schedule(std::forward<F>(fn), [this](afut_callback_fn cb, void *ud, afut_free_fn fr) {
            return afut_loop_call_soon(loop_, cb, ud, fr);
        });
    }
    template <class F>
    afut_handle_t call_later(double delay_s, F &&fn) {
        return schedule(std::forward<F>(fn), [this, delay_s](afut_callback_fn cb, void *ud, afut_free_fn fr) {
            return afut_loop_call_later(loop_, delay_s, cb, ud, fr);
        });
    }
    bool cancel(afut_handle_t h) noexcept { return afut_loop_cancel(loop_, h); }

    template <class T = void>
    future<T> create_future();

private:
    template <class F, class S>
    afut_handle_t schedule(F &&fn, S &&submit) {
        using C = detail::callable<std::decay_t<F>>;
        auto *c = new C{std::forward<F>(fn)};
        afut_handle_t h = submit(&C::run, c, &C::free);
        if (h == 0) {
            delete c;
            throw error(AFUT_ERR_LOOP_CLOSED, "afut_loop_call");
        }
        return h;
    }

    afut_loop_t *loop_;
    afut_loop_t *prev_ = nullptr;
};

/// One reference to any afut future or task (value seen as a raw `void *`).
class future_base {
public:
    future_base() noexcept = default;
    /// Takes over a reference the caller owns (e.g. from afut_*_new). NULL gives an empty handle.
    static future_base adopt(afut_t *f) noexcept { return future_base(f); }
    /// Adds a reference to a borrowed handle.
    static future_base ref(afut_t *f) noexcept { return future_base(afut_ref(f)); }

    future_base(const future_base &o) noexcept : f_(afut_ref(o.f_)) {}
    future_base(future_base &&o) noexcept : f_(std::exchange(o.f_, nullptr)) {}
    future_base &operator=(future_base o) noexcept {
        std::swap(f_, o.f_);
        return *this;
    }
    ~future_base() { afut_unref(f_); }

    afut_t *get() const noexcept { return f_; }
    /// Gives the reference to the caller (who must afut_unref it).
    afut_t *release() noexcept { return std::exchange(f_, nullptr); }
    explicit operator bool() const noexcept { return f_ != nullptr; }

    bool done() const noexcept { return afut_done(f_); }
    bool cancelled() const noexcept { return afut_cancelled(f_); }
    bool cancel(const char *msg = nullptr) noexcept { return afut_cancel(f_, msg); }
    bool cancel(const std::string &msg) noexcept { return afut_cancel(f_, msg.c_str()); }
    /// NULL if not cancelled or cancelled without a message.
    const char *cancel_message() const noexcept { return afut_cancel_message(f_); }
    afut_loop_t *get_loop() const noexcept { return afut_get_loop(f_); }
    bool is_task() const noexcept { return afut_is_task(f_); }
    std::string describe() const {
        char buf[128];
        std::size_t n = afut_describe(f_, buf, sizeof buf);
        if (n < sizeof buf) return std::string(buf, n);
        std::string s(n + 1, '\0');
        afut_describe(f_, s.data(), s.size());
        s.resize(n);
        return s;
    }

    /// The raw value; throws the future's exception / cancelled_error, or afut::error
    /// (AFUT_ERR_INVALID_STATE) while pending.
    void *result_ptr() const {
        void *v = nullptr;
        afut_status_t rc = afut_result(f_, &v);
        if (rc == AFUT_ERR_INVALID_STATE || rc == AFUT_ERR_INVALID_ARGUMENT) throw error(rc, "afut_result");
        if (rc != AFUT_OK) detail::throw_outcome(f_, rc);
        return v;
    }

    /// Runs `fn(future_base &)` on the loop's thread once the future is done.
    template <class F>
    void add_done_callback(F &&fn) {
        struct holder {
            std::decay_t<F> fn;
            static void run(afut_t *f, void *p) noexcept {
                try {
                    future_base h = future_base::ref(f);
                    static_cast<holder *>(p)->fn(h);
                } catch (...) {
                    std::fputs("afut.hpp: an exception escaped a done-callback; ignored\n", stderr);
                }
            }
            static void free(void *p) noexcept { delete static_cast<holder *>(p); }
        };
        auto *h = new holder{std::forward<F>(fn)};
        afut_status_t rc = afut_add_done_callback(f_, &holder::run, h, &holder::free);
        if (rc != AFUT_OK) {
            delete h;
            throw error(rc, "afut_add_done_callback");
        }
    }

protected:
    explicit future_base(afut_t *f) noexcept : f_(f) {}
    afut_t *f_ = nullptr;
};

/// A future whose value is a `T` owned by the future.
template <class T>
class future : public future_base {
public:
    using value_type = T;
    future() noexcept = default;
    /// A new pending future of `l`.
    explicit future(afut_loop_t *l) : future_base(afut_loop_create_future(l)) {
        if (!f_) throw error(AFUT_ERR_INVALID_ARGUMENT, "afut_loop_create_future");
    }
    /// Takes over / adds a reference to a C handle whose value (if any) is a `T *` made by
    /// this header (or a borrowed one, e.g. from afut_wait_for / afut_shield of such a future).
    static future adopt(afut_t *f) noexcept { return future(f, 0); }
    static future ref(afut_t *f) noexcept { return future(afut_ref(f), 0); }

    void set_result(T value) {
        T *p = new T(std::move(value));
        afut_status_t rc = afut_set_result(f_, p, &detail::delete_value<T>);
        if (rc != AFUT_OK) {
            delete p;
            throw error(rc, "afut_set_result");
        }
    }
    void set_exception(int32_t code, const char *message = nullptr) {
        afut_status_t rc = afut_set_exception(f_, code, message, nullptr, nullptr);
        if (rc != AFUT_OK) throw error(rc, "afut_set_exception");
    }
    void set_exception(std::exception_ptr ep) {
        afut_status_t rc = detail::set_exception_ptr(f_, std::move(ep));
        if (rc != AFUT_OK) throw error(rc, "afut_set_exception");
    }
    /// The value (owned by the future), or throws.
    T &result() const { return *static_cast<T *>(result_ptr()); }

protected:
    future(afut_t *f, int) noexcept : future_base(f) {}
};

template <>
class future<void> : public future_base {
public:
    using value_type = void;
    future() noexcept = default;
    explicit future(afut_loop_t *l) : future_base(afut_loop_create_future(l)) {
        if (!f_) throw error(AFUT_ERR_INVALID_ARGUMENT, "afut_loop_create_future");
    }
    static future adopt(afut_t *f) noexcept { return future(f, 0); }
    static future ref(afut_t *f) noexcept { return future(afut_ref(f), 0); }
    void set_result() {
        afut_status_t rc = afut_set_result(f_, nullptr, nullptr);
        if (rc != AFUT_OK) throw error(rc, "afut_set_result");
    }
    void set_exception(int32_t code, const char *message = nullptr) {
        afut_status_t rc = afut_set_exception(f_, code, message, nullptr, nullptr);
        if (rc != AFUT_OK) throw error(rc, "afut_set_exception");
    }
    void set_exception(std::exception_ptr ep) {
        afut_status_t rc = detail::set_exception_ptr(f_, std::move(ep));
        if (rc != AFUT_OK) throw error(rc, "afut_set_exception");
    }
    void result() const { (void)result_ptr(); }

protected:
    future(afut_t *f, int) noexcept : future_base(f) {}
};

template <class T>
future<T> loop::create_future() {
    return future<T>(loop_);
}

template <class T>
decltype(auto) loop::run_until_complete(const future<T> &f) {
    afut_status_t rc = afut_loop_run_until_complete(loop_, f.get());
    if (rc == AFUT_ERR_INVALID_STATE || rc == AFUT_ERR_INVALID_ARGUMENT || rc == AFUT_ERR_LOOP_RUNNING ||
        rc == AFUT_ERR_LOOP_CLOSED || rc == AFUT_ERR_PANIC)
        throw error(rc, "afut_loop_run_until_complete");
    return f.result();
}

template <class T>
T loop::run_until_complete(future<T> &&f) {
    const future<T> &keep = f;
    if constexpr (std::is_void_v<T>) {
        run_until_complete(keep);
    } else {
        return T(std::move(run_until_complete(keep)));
    }
}

namespace detail {

/// What every task<T> promise shares with the awaiters.
struct promise_base {
    afut_t *task = nullptr;  // borrowed: the frame lives only while the task does
    afut_loop_t *loop = nullptr;
    bool started = false;
    bool cancel_taken = false;  // a pending request taken at this step, not yet thrown
    std::string cancel_msg;
    bool cancel_has_msg = false;
    bool escaped_cancel = false;     // a cancelled_error left the coroutine body
    std::string escaped_msg;
    bool escaped_has_msg = false;

    /// Throws the cancel request taken at the start of this step (once).
    void check_cancel() {
        if (!cancel_taken) return;
        cancel_taken = false;
        if (cancel_has_msg) throw cancelled_error(cancel_msg);
        throw cancelled_error();
    }
};

template <class P>
concept task_promise = std::is_base_of_v<promise_base, P>;

inline afut_loop_t *loop_of(const loop &l) noexcept { return l.get(); }
inline afut_loop_t *loop_of(loop &l) noexcept { return l.get(); }
inline afut_loop_t *loop_of(afut_loop_t *l) noexcept { return l; }
template <class A>
afut_loop_t *loop_of(const A &) noexcept {
    return nullptr;
}

template <class... A>
afut_loop_t *find_loop(const A &...args) noexcept {
    afut_loop_t *found = nullptr;
    ((found = found ? found : loop_of(args)), ...);
    return found ? found : tls_loop;
}

/// The awaiter behind `co_await` on a future. `Mode`: 0 lvalue (T &), 1 rvalue (T), 2 raw.
template <class T, int Mode>
struct awaiter {
    future_base fut;
    future_base wrapped;  // for a future of another loop / loop-less: what the task awaits
    promise_base *p = nullptr;

    bool await_ready() const noexcept { return afut_done(fut.get()); }

    template <task_promise P>
    void await_suspend(std::coroutine_handle<P> h) {
        p = &h.promise();
        afut_t *w = fut.get();
        if (afut_get_loop(w) != p->loop) {
            wrapped = future_base::adopt(afut_ensure_future(p->loop, w));
            if (!wrapped) throw error(AFUT_ERR_INVALID_ARGUMENT, "afut_ensure_future");
            w = wrapped.get();
        }
        afut_status_t rc = afut_task_await(p->task, w);
        if (rc != AFUT_OK) throw error(rc, "afut_task_await");
    }

    decltype(auto) await_resume() {
        if (p) p->check_cancel();
        afut_t *src = wrapped ? wrapped.get() : fut.get();
        void *v = nullptr;
        afut_status_t rc = afut_result(src, &v);
        if (rc != AFUT_OK) throw_outcome(src, rc);
        if constexpr (Mode == 2) {
            return v;
        } else if constexpr (std::is_void_v<T>) {
            return;
        } else if constexpr (Mode == 1) {
            return T(std::move(*static_cast<T *>(v)));
        } else {
            return static_cast<T &>(*static_cast<T *>(v));
        }
    }
};

struct yield_awaiter {
    promise_base *p = nullptr;
    bool await_ready() const noexcept { return false; }
    template <task_promise P>
    void await_suspend(std::coroutine_handle<P> h) noexcept {
        p = &h.promise();
    }
    void await_resume() {
        if (p) p->check_cancel();
    }
};

template <class P>
void destroy_frame(void *address) noexcept {
    std::coroutine_handle<P>::from_address(address).destroy();
}

/// The C step of every task<T>: resumes the coroutine.
template <class P>
void step(afut_t *task, afut_t *awaited, void *address) noexcept {
    auto h = std::coroutine_handle<P>::from_address(address);
    P &p = h.promise();
    if (h.done()) {  // cannot happen; never resume a finished coroutine
        if (!afut_done(task)) afut_cancel(task, nullptr);
        return;
    }
    p.escaped_cancel = false;
    if (!p.started) {
        if (afut_task_cancel_requested(task, nullptr)) return;  // never started: ends cancelled
        p.started = true;
    } else {
        const char *m = nullptr;
        if (afut_task_take_cancel(task, &m)) {
            p.cancel_taken = true;
            p.cancel_has_msg = m != nullptr;
            p.cancel_msg = m ? m : "";
        }
    }
    {
        loop_scope scope(p.loop);
        afut_t *outer_task = std::exchange(tls_task, task);
        try {
            h.resume();
        } catch (...) {
            // unhandled_exception() catches everything the body throws; nothing gets here.
        }
        tls_task = outer_task;
    }
    p.cancel_taken = false;
    if (h.done() && !afut_done(task)) {
        // The body ended without a result: a cancelled_error escaped it (or a result was refused
        // because a cancel is pending). The C side ends the task CANCELLED by itself when a
        // cancel is pending or the awaited future was cancelled; otherwise (a request taken at
        // this step and rethrown, or a cancelled_error of the coroutine's own) cancel it here.
        bool ends_cancelled = afut_task_cancel_requested(task, nullptr) || (awaited && afut_cancelled(awaited));
        if (!ends_cancelled)
            afut_cancel(task, p.escaped_cancel && p.escaped_has_msg ? p.escaped_msg.c_str() : nullptr);
    }
}

template <class T, class Derived>
struct return_part {
    void return_value(T value) {
        auto *self = static_cast<Derived *>(this);
        T *v = new T(std::move(value));
        if (afut_set_result(self->task, v, &delete_value<T>) != AFUT_OK) delete v;  // a cancel is pending
    }
};

template <class Derived>
struct return_part<void, Derived> {
    void return_void() { (void)afut_set_result(static_cast<Derived *>(this)->task, nullptr, nullptr); }
};

}  // namespace detail

/// The return type of an afut coroutine: an afut task (see the top of this header).
template <class T = void>
class task : public future<T> {
public:
    struct promise_type : detail::promise_base, detail::return_part<T, promise_type> {
        template <class... A>
        explicit promise_type(const A &...args) noexcept {
            loop = detail::find_loop(args...);
        }
        promise_type() noexcept { loop = detail::tls_loop; }

        afut::task<T> get_return_object() {
            if (!loop) throw std::logic_error("afut::task: no loop (pass an afut::loop & or create one first)");
            auto h = std::coroutine_handle<promise_type>::from_promise(*this);
            afut_t *t = afut_task_new(loop, &detail::step<promise_type>, h.address(),
                                      &detail::destroy_frame<promise_type>);
            if (!t) throw error(AFUT_ERR_LOOP_CLOSED, "afut_task_new");
            this->task = t;
            detail::registry().add(loop, t);
            return afut::task<T>(t);
        }
        ~promise_type() {
            if (this->task) detail::registry().remove(this->task);
        }
        std::suspend_always initial_suspend() noexcept { return {}; }
        std::suspend_always final_suspend() noexcept { return {}; }
        void unhandled_exception() noexcept {
            std::exception_ptr ep = std::current_exception();
            try {
                std::rethrow_exception(ep);
            } catch (const cancelled_error &c) {
                escaped_cancel = true;
                escaped_has_msg = c.has_message();
                escaped_msg = c.message();
            } catch (...) {
                (void)detail::set_exception_ptr(this->task, ep);
            }
        }
    };

    task() noexcept = default;

private:
    explicit task(afut_t *t) noexcept : future<T>(future<T>::adopt(t)) {}
};

// ----- co_await -----

template <class T>
detail::awaiter<T, 0> operator co_await(const future<T> &f) {
    return {f, {}, nullptr};
}
template <class T>
detail::awaiter<T, 1> operator co_await(future<T> &&f) {
    return {std::move(f), {}, nullptr};
}
inline detail::awaiter<void, 2> operator co_await(const future_base &f) { return {f, {}, nullptr}; }

/// `co_await afut::yield()`: give up one iteration (asyncio `await asyncio.sleep(0)`).
inline detail::yield_awaiter yield() noexcept { return {}; }

// ----- futures of the loop and combinators -----

namespace detail {
inline afut_loop_t *need_loop(afut_loop_t *l, const char *what) {
    if (!l) l = tls_loop;
    if (!l) throw std::logic_error(std::string(what) + ": no loop");
    return l;
}
}  // namespace detail

/// asyncio.sleep(delay): a future<void> done after `delay_s` seconds (0: one iteration).
inline future<void> sleep(double delay_s, afut_loop_t *l = nullptr) {
    afut_t *f = afut_sleep(detail::need_loop(l, "afut::sleep"), delay_s, nullptr, nullptr);
    if (!f) throw error(AFUT_ERR_INVALID_ARGUMENT, "afut_sleep");
    return future<void>::adopt(f);
}

/// asyncio.wait_for: completes like `f`, or fails with afut::timeout_error after `timeout_s`
/// (the inner is cancelled and waited for). The value is borrowed from `f`.
template <class T>
future<T> wait_for(const future<T> &f, double timeout_s, afut_loop_t *l = nullptr) {
    afut_t *w = afut_wait_for(detail::need_loop(l ? l : f.get_loop(), "afut::wait_for"), f.get(), timeout_s);
    if (!w) throw error(AFUT_ERR_INVALID_ARGUMENT, "afut_wait_for");
    return future<T>::adopt(w);
}

/// asyncio.shield: cancelling the result leaves `f` running.
template <class T>
future<T> shield(const future<T> &f, afut_loop_t *l = nullptr) {
    afut_t *s = afut_shield(detail::need_loop(l ? l : f.get_loop(), "afut::shield"), f.get());
    if (!s) throw error(AFUT_ERR_INVALID_ARGUMENT, "afut_shield");
    return future<T>::adopt(s);
}

/// asyncio.gather over futures of any types: `co_await` gives the raw children array; read
/// each child with `child(i)` (a new handle) once it is done.
class gather_future : public future_base {
public:
    static gather_future adopt(afut_t *g) noexcept {
        gather_future r;
        r.f_ = g;
        return r;
    }
    /// The child at argument position i (empty handle if out of range).
    future_base child(std::size_t i) const noexcept { return future_base::ref(afut_gather_child(f_, i)); }
    template <class T>
    future<T> child_as(std::size_t i) const noexcept {
        return future<T>::ref(afut_gather_child(f_, i));
    }
};

inline gather_future gather(std::initializer_list<future_base> futs, bool return_exceptions = false,
                            afut_loop_t *l = nullptr) {
    std::vector<afut_t *> v;
    v.reserve(futs.size());
    for (const auto &f : futs) v.push_back(f.get());
    if (!l && !v.empty()) l = afut_get_loop(v.front());
    afut_t *g = afut_gather(detail::need_loop(l, "afut::gather"), v.data(), v.size(), return_exceptions);
    if (!g) throw error(AFUT_ERR_INVALID_ARGUMENT, "afut_gather");
    return gather_future::adopt(g);
}

// ----- the executor -----

namespace detail {
/// A job of afut::executor: calls the callable on a worker and completes the future with its
/// result (a heap R), or with the exception it threw (see "Errors" above).
template <class F>
struct job {
    F fn;
    using result_type = std::invoke_result_t<F &>;
    static void run(afut_t *f, void *p) noexcept {
        auto *j = static_cast<job *>(p);
        try {
            if constexpr (std::is_void_v<result_type>) {
                j->fn();
                (void)afut_set_result(f, nullptr, nullptr);
            } else {
                auto *v = new result_type(j->fn());
                if (afut_set_result(f, v, &delete_value<result_type>) != AFUT_OK) delete v;
            }
        } catch (...) {
            (void)set_exception_ptr(f, std::current_exception());
        }
    }
    static void free(void *p) noexcept { delete static_cast<job *>(p); }
};
}  // namespace detail

/// An owned afut_executor_t: concurrent.futures' ThreadPoolExecutor. Jobs are callables run on
/// worker threads (started on demand, at most max_workers; 0: one per CPU); the destructor
/// shuts down and waits for every job (afut_executor_free). Not copyable.
///
///   afut::executor pool(4);
///   auto f = pool.submit([] { return expensive(); });          // loop-less future<R>
///   R r = co_await loop.run_in_executor(pool, [] { ... });     // inside a task
///
/// A job that throws fails its future with the exception (awaiting it rethrows the original).
/// Cancelling a queued job's future means it never runs; a running one cannot be cancelled
/// (its loop future from run_in_executor can: it stays cancelled while the job finishes).
class executor {
public:
    explicit executor(std::size_t max_workers = 0) : ex_(afut_executor_new(max_workers)) {
        if (!ex_) throw std::bad_alloc();
    }
    ~executor() { afut_executor_free(ex_); }
    executor(const executor &) = delete;
    executor &operator=(const executor &) = delete;

    afut_executor_t *get() const noexcept { return ex_; }

    /// concurrent.futures submit(fn): a loop-less future<R> completed on a worker. Throws
    /// afut::error(AFUT_ERR_INVALID_STATE) after shutdown.
    template <class F>
    future<typename detail::job<std::decay_t<F>>::result_type> submit(F &&fn) {
        using J = detail::job<std::decay_t<F>>;
        auto *j = new J{std::forward<F>(fn)};
        afut_t *f = afut_executor_submit(ex_, &J::run, j, &J::free);
        if (!f) {
            delete j;
            throw error(AFUT_ERR_INVALID_STATE, "afut_executor_submit");
        }
        return future<typename J::result_type>::adopt(f);
    }

    /// asyncio run_in_executor: the job as a future of `l` (default: the current loop).
    /// Throws afut::error after shutdown or on a closed loop.
    template <class F>
    future<typename detail::job<std::decay_t<F>>::result_type> run_in(afut_loop_t *l, F &&fn) {
        using J = detail::job<std::decay_t<F>>;
        if (!l) l = detail::tls_loop;
        if (!l) throw std::logic_error("afut::executor::run_in: no loop");
        auto *j = new J{std::forward<F>(fn)};
        afut_t *f = afut_loop_run_in_executor(l, ex_, &J::run, j, &J::free);
        if (!f) {
            delete j;
            throw error(afut_loop_is_closed(l) ? AFUT_ERR_LOOP_CLOSED : AFUT_ERR_INVALID_STATE,
                        "afut_loop_run_in_executor");
        }
        return future<typename J::result_type>::adopt(f);
    }

    /// concurrent.futures shutdown(wait, cancel_futures). Later submits throw.
    void shutdown(bool wait = true, bool cancel_futures = false) noexcept {
        afut_executor_shutdown(ex_, wait, cancel_futures);
    }

private:
    afut_executor_t *ex_;
};

template <class F>
auto loop::run_in_executor(executor &ex, F &&fn) {
    return ex.run_in(loop_, std::forward<F>(fn));
}

/// run_in_executor on the current loop.
template <class F>
auto run_in_executor(executor &ex, F &&fn) {
    return ex.run_in(nullptr, std::forward<F>(fn));
}

// ----- typed gather -----

namespace detail {
template <class A>
concept typed_future = std::is_base_of_v<future_base, std::remove_cvref_t<A>> &&
                       requires { typename std::remove_cvref_t<A>::value_type; };

/// What one argument of a typed gather contributes to the result tuple: `T &` for a future the
/// caller keeps (an lvalue: the value stays owned by it), `T` moved out for a temporary,
/// std::monostate for future<void>.
template <class T, bool Lvalue>
struct gather_elem_of {
    using type = std::conditional_t<Lvalue, T &, T>;
};
template <bool Lvalue>
struct gather_elem_of<void, Lvalue> {
    using type = std::monostate;
};
template <class A>
using gather_elem =
    typename gather_elem_of<typename std::remove_cvref_t<A>::value_type, std::is_lvalue_reference_v<A>>::type;
}  // namespace detail

/// The future of afut::gather(f1, f2, ...): co_await (or result()) gives a std::tuple of the
/// children's results, in argument order (see detail::gather_elem for each element's type).
/// The first child that fails makes it throw that failure (the others keep running).
template <class... E>
class gathered : public future_base {
public:
    static gathered adopt(afut_t *g) noexcept {
        gathered r;
        r.f_ = g;
        return r;
    }
    /// The tuple of results; throws the failure, or afut::error while pending.
    std::tuple<E...> result() const {
        (void)result_ptr();
        return build(std::index_sequence_for<E...>{});
    }

private:
    template <std::size_t... I>
    std::tuple<E...> build(std::index_sequence<I...>) const {
        return std::tuple<E...>(element<E>(I)...);
    }
    template <class X>
    X element(std::size_t i) const {
        if constexpr (std::is_same_v<X, std::monostate>) {
            return {};
        } else {
            afut_t *c = afut_gather_child(f_, i);
            void *v = nullptr;
            afut_status_t rc = afut_result(c, &v);
            if (rc != AFUT_OK) detail::throw_outcome(c, rc);
            using T = std::remove_reference_t<X>;
            if constexpr (std::is_lvalue_reference_v<X>) {
                return *static_cast<T *>(v);
            } else {
                return T(std::move(*static_cast<T *>(v)));
            }
        }
    }
};

/// asyncio.gather(f1, f2, ...) over typed futures and tasks: `auto [a, b] = co_await
/// afut::gather(fa, fb);` Children of another loop or loop-less ones (executor jobs) are
/// wrapped; the loop is the first child's, else the current loop.
template <class... A>
    requires(sizeof...(A) > 0 && (detail::typed_future<A> && ...))
gathered<detail::gather_elem<A>...> gather(A &&...futs) {
    afut_t *v[] = {futs.get()...};
    afut_loop_t *l = nullptr;
    for (afut_t *f : v)
        if (!l) l = afut_get_loop(f);
    afut_t *g = afut_gather(detail::need_loop(l, "afut::gather"), v, sizeof...(A), false);
    if (!g) throw error(AFUT_ERR_INVALID_ARGUMENT, "afut_gather");
    return gathered<detail::gather_elem<A>...>::adopt(g);
}

namespace detail {
/// co_await on a typed gather: the raw awaiter, then the tuple.
template <class... E>
struct gathered_awaiter {
    awaiter<void, 2> inner;
    gathered<E...> g;
    bool await_ready() const noexcept { return inner.await_ready(); }
    template <task_promise P>
    void await_suspend(std::coroutine_handle<P> h) {
        inner.await_suspend(h);
    }
    std::tuple<E...> await_resume() {
        (void)inner.await_resume();
        return g.result();
    }
};
}  // namespace detail

template <class... E>
detail::gathered_awaiter<E...> operator co_await(const gathered<E...> &g) {
    return {{g, {}, nullptr}, g};
}

template <class... E>
std::tuple<E...> loop::run_until_complete(const gathered<E...> &g) {
    afut_status_t rc = afut_loop_run_until_complete(loop_, g.get());
    if (rc == AFUT_ERR_INVALID_STATE || rc == AFUT_ERR_INVALID_ARGUMENT || rc == AFUT_ERR_LOOP_RUNNING ||
        rc == AFUT_ERR_LOOP_CLOSED || rc == AFUT_ERR_PANIC)
        throw error(rc, "afut_loop_run_until_complete");
    return g.result();
}

}  // namespace afut

#endif  // AFUT_HPP
