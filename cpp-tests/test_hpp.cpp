// C++ tests for include/afut.hpp (the C++20 coroutine layer over afut's C API).
//
// Compiled with g++ -std=c++20 -Wall -Wextra -Werror and run by tests/cpp_suite.rs. Each test
// names the API rule (the header's doc comment, API.md) or the asyncio test it mirrors. Uses
// the C suite's harness (c-tests/test.h).
#include <atomic>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>

#include "afut.hpp"
#include "test.h"

// Counts live instances, to check that values stored in futures are freed exactly once.
struct tracker {
    static inline int live = 0;
    static inline int destroyed = 0;
    int v;
    explicit tracker(int x) : v(x) { live++; }
    tracker(tracker &&o) noexcept : v(o.v) { live++; }
    tracker(const tracker &) = delete;
    ~tracker() {
        live--;
        destroyed++;
    }
};

static_assert(!std::is_base_of_v<std::exception, afut::cancelled_error>,
              "cancelled_error must not be caught by catch (std::exception &), like BaseException");

// ------------------------------------------------------------------------------------------
// Handles

// RAII: copy = afut_ref, destructor = afut_unref; the value is a T owned by the future.
TEST(test_future_handles_and_values) {
    tracker::live = 0;
    {
        afut::loop loop;
        CHECK(afut::current_loop() == loop.get());
        auto f = loop.create_future<tracker>();
        afut::future<tracker> copy = f;  // afut_ref
        CHECK(copy.get() == f.get());
        CHECK(!f.done());
        f.set_result(tracker(5));
        CHECK(copy.done());
        CHECK_EQ_INT(loop.run_until_complete(copy).v, 5);
        CHECK_EQ_INT(tracker::live, 1);
        bool threw = false;
        try {
            f.set_result(tracker(6));
        } catch (const afut::error &e) {
            threw = e.status() == AFUT_ERR_INVALID_STATE;
        }
        CHECK(threw);
        CHECK_EQ_INT(tracker::live, 1);  // the refused value was freed by the header
        std::string d = f.describe().substr(0, 24);
        CHECK_STR(d.c_str(), "<Future finished result=");
    }
    CHECK_EQ_INT(tracker::live, 0);  // freed by the future, once
    CHECK(afut::current_loop() == nullptr);
}

// future<T> stores move-only types; future<void> has no value.
TEST(test_move_only_and_void_futures) {
    afut::loop loop;
    auto f = loop.create_future<std::unique_ptr<int>>();
    f.set_result(std::make_unique<int>(9));
    CHECK_EQ_INT(*f.result(), 9);
    auto v = loop.create_future<void>();
    v.set_result();
    loop.run_until_complete(v);
    v.result();
    auto e = loop.create_future<int>();
    e.set_exception(4, "four");
    bool caught = false;
    try {
        loop.run_until_complete(e);
    } catch (const afut::exception_error &x) {
        caught = x.code() == 4 && std::string(x.what()) == "four";
    }
    CHECK(caught);
}

// Callbacks with any callable; an exception in one never crosses into C.
TEST(test_callbacks_and_escaping_exceptions) {
    afut::loop loop;
    int n = 0;
    loop.call_soon([&] { n++; });
    loop.call_soon([] { throw std::runtime_error("ignored"); });
    loop.call_later(0.001, [&] { n += 10; });
    auto f = loop.create_future<int>();
    f.add_done_callback([&](afut::future_base &d) { n += d.done() ? 100 : 0; });
    f.add_done_callback([](afut::future_base &) { throw 42; });
    f.set_result(1);
    auto stop = afut::sleep(0.01);
    loop.run_until_complete(stop);
    CHECK_EQ_INT(n, 111);
}

// ------------------------------------------------------------------------------------------
// Tasks

static afut::task<int> add_later(afut::loop &loop, int a, int b) {
    (void)loop;
    co_await afut::sleep(0.001);
    co_return a + b;
}

// A task<T> coroutine is an afut task (afut_is_task, afut_isfuture) and starts on the next
// iteration (T1).
static int g_started = 0;
static afut::task<int> mark_started() {
    g_started++;
    co_return 1;
}

TEST(test_task_basics) {
    afut::loop loop;
    auto t = add_later(loop, 2, 3);
    CHECK(afut_is_task(t.get()));
    CHECK(afut_isfuture(t.get()));
    CHECK(t.is_task());
    CHECK_EQ_INT(loop.run_until_complete(t), 5);
    g_started = 0;
    auto m = mark_started();  // uses the thread's current loop
    CHECK_EQ_INT(g_started, 0);
    loop.run_once();
    CHECK_EQ_INT(g_started, 1);
    CHECK(m.done());
}

// co_await on an rvalue task moves the value out; nested tasks; a done future does not
// suspend.
static afut::task<std::unique_ptr<int>> make_box(int v) {
    co_await afut::yield();
    co_return std::make_unique<int>(v);
}

static afut::task<int> unbox_sum() {
    std::unique_ptr<int> a = co_await make_box(20);
    auto b = make_box(22);
    int sum = *a + *(co_await b);  // lvalue: a reference into b's value
    auto done = afut::future<int>(afut::current_loop());
    done.set_result(0);
    sum += co_await done;  // no suspension
    co_return sum;
}

TEST(test_nested_tasks_and_move_only_results) {
    afut::loop loop;
    CHECK_EQ_INT(loop.run_until_complete(unbox_sum()), 42);
}

// C++ exceptions become afut exceptions (code afut::cpp_exception_code, message what()) and
// C++ awaiters get the original exception back.
static afut::task<int> thrower() {
    co_await afut::yield();
    throw std::out_of_range("bad index");
}

static afut::task<std::string> catcher() {
    try {
        co_await thrower();
    } catch (const std::out_of_range &e) {
        co_return std::string("caught ") + e.what();
    }
    co_return "not caught";
}

TEST(test_exceptions_cross_as_afut_exceptions) {
    afut::loop loop;
    auto t = thrower();
    CHECK_EQ_INT(afut_loop_run_until_complete(loop.get(), t.get()), AFUT_ERR_EXCEPTION);
    afut_exception_t e;
    CHECK_EQ_INT(afut_exception(t.get(), &e), AFUT_OK);
    CHECK_EQ_INT(e.code, afut::cpp_exception_code);
    CHECK_STR(e.message, "bad index");
    std::string s = loop.run_until_complete(catcher());
    CHECK_STR(s.c_str(), "caught bad index");
}

// An afut exception set by C code surfaces as afut::exception_error; escaping a coroutine it
// keeps its code and message.
static afut::task<int> await_c_failure(afut::future<int> f) { co_return co_await f; }

TEST(test_c_exception_surfaces) {
    afut::loop loop;
    auto f = loop.create_future<int>();
    auto t = await_c_failure(f);
    loop.run_once();
    afut_set_exception(f.get(), 5, "boom", nullptr, nullptr);
    CHECK_EQ_INT(afut_loop_run_until_complete(loop.get(), t.get()), AFUT_ERR_EXCEPTION);
    afut_exception_t e;
    afut_exception(t.get(), &e);
    CHECK_EQ_INT(e.code, 5);
    CHECK_STR(e.message, "boom");
}

// Cancellation: C code cancels the task while it awaits; the coroutine sees cancelled_error
// with the message; not caught, the task ends CANCELLED with it (T4).
static int g_cleanup = 0;
struct cleanup {
    ~cleanup() { g_cleanup++; }
};

static afut::task<int> wait_forever(afut::future<int> f, std::string *seen) {
    cleanup c;
    try {
        co_return co_await f;
    } catch (const afut::cancelled_error &e) {
        *seen = e.message();
        throw;
    }
}

TEST(test_cancel_from_c) {
    afut::loop loop;
    auto f = loop.create_future<int>();
    std::string seen;
    g_cleanup = 0;
    auto t = wait_forever(f, &seen);
    loop.run_once();
    CHECK(afut_cancel(t.get(), "stop it"));  // from C
    CHECK(f.cancelled());                    // the awaited future, at once
    bool caught = false;
    try {
        loop.run_until_complete(t);
    } catch (const afut::cancelled_error &e) {
        caught = e.has_message() && e.message() == "stop it";
    }
    CHECK(caught);
    CHECK(t.cancelled());
    CHECK_STR(t.cancel_message(), "stop it");
    CHECK_STR(seen.c_str(), "stop it");
    CHECK_EQ_INT(g_cleanup, 1);  // the frame was destroyed
}

// The coroutine catches the cancellation and returns a value: not cancelled
// (test_cancel_task_catching).
static afut::task<int> swallow(afut::future<int> f) {
    try {
        co_await f;
    } catch (const afut::cancelled_error &) {
        co_return 42;
    }
    co_return 0;
}

TEST(test_cancel_swallowed) {
    afut::loop loop;
    auto f = loop.create_future<int>();
    auto t = swallow(f);
    loop.run_once();
    CHECK(t.cancel());
    CHECK_EQ_INT(loop.run_until_complete(t), 42);
    CHECK(!t.cancelled());
}

// A task cancelled before it started never runs its body
// (test_cancel_with_message_before_starting_task).
TEST(test_cancel_before_start) {
    afut::loop loop;
    g_started = 0;
    auto t = mark_started();
    CHECK(t.cancel("early"));
    CHECK_EQ_INT(afut_loop_run_until_complete(loop.get(), t.get()), AFUT_ERR_CANCELLED);
    CHECK_EQ_INT(g_started, 0);
    CHECK_STR(t.cancel_message(), "early");
}

// A cancel request made while the coroutine yields is thrown at its co_await; once caught the
// coroutine goes on normally (asyncio clears _must_cancel when it throws).
static afut::task<int> yield_and_catch(int *phase) {
    *phase = 1;
    if (!afut_is_task(afut::current_task())) co_return -1;
    try {
        co_await afut::yield();
    } catch (const afut::cancelled_error &e) {
        *phase = e.message() == "during yield" ? 2 : 3;
    }
    co_await afut::yield();
    co_return 7;
}

TEST(test_pending_cancel_thrown_at_yield) {
    afut::loop loop;
    int phase = 0;
    auto t = yield_and_catch(&phase);
    loop.run_once();
    CHECK_EQ_INT(phase, 1);
    CHECK(t.cancel("during yield"));
    CHECK_EQ_INT(loop.run_until_complete(t), 7);
    CHECK_EQ_INT(phase, 2);
    CHECK_EQ_INT(afut_task_cancelling(t.get()), 1);
    CHECK(afut::current_task() == nullptr);
}

// A cancelled_error raised by the coroutine itself ends the task CANCELLED with its message.
static afut::task<void> cancel_myself() {
    co_await afut::yield();
    throw afut::cancelled_error("by myself");
}

TEST(test_cancelled_error_raised_inside) {
    afut::loop loop;
    auto t = cancel_myself();
    CHECK_EQ_INT(afut_loop_run_until_complete(loop.get(), t.get()), AFUT_ERR_CANCELLED);
    CHECK_STR(t.cancel_message(), "by myself");
}

// C code awaits a C++ task (its value is a `T *`), and a C++ coroutine awaits a C task.
static void c_step(afut_t *task, afut_t *awaited, void *userdata) {
    afut_t *cpp = static_cast<afut_t *>(userdata);
    if (!awaited) {
        afut_task_await(task, cpp);
        return;
    }
    void *v = nullptr;
    afut_result(awaited, &v);
    afut_set_result(task, static_cast<int *>(v), nullptr);  // borrow: the C++ task lives on
}

static void c_answer(afut_t *task, afut_t *, void *) {
    static int answer = 41;
    afut_set_result(task, &answer, nullptr);
}

static afut::task<int> await_c_task() {
    afut::future_base c = afut::future_base::adopt(afut_task_new(afut::current_loop(), c_answer, nullptr, nullptr));
    void *v = co_await c;
    co_return *static_cast<int *>(v) + 1;
}

TEST(test_c_and_cpp_tasks_await_each_other) {
    afut::loop loop;
    auto cpp = add_later(loop, 40, 2);
    afut_t *c = afut_task_new(loop.get(), c_step, cpp.get(), nullptr);
    CHECK_EQ_INT(afut_loop_run_until_complete(loop.get(), c), AFUT_OK);
    void *v = nullptr;
    afut_result(c, &v);
    CHECK_EQ_INT(*static_cast<int *>(v), 42);
    afut_unref(c);
    CHECK_EQ_INT(loop.run_until_complete(await_c_task()), 42);
}

// co_await on a loop-less future completed by another thread: resumes on the loop's thread.
static afut::task<int> await_loopless(afut::future<int> f, std::thread::id *resumed_on) {
    int v = co_await f;
    *resumed_on = std::this_thread::get_id();
    co_return v;
}

TEST(test_await_loopless_future_from_thread) {
    afut::loop loop;
    auto f = afut::future<int>::adopt(afut_new(nullptr));
    std::thread::id resumed_on;
    auto t = await_loopless(f, &resumed_on);
    std::thread th([f]() mutable { f.set_result(8); });
    CHECK_EQ_INT(loop.run_until_complete(t), 8);
    th.join();
    CHECK(resumed_on == std::this_thread::get_id());
}

// Combinators: wait_for times out with afut::timeout_error (WF2); shield protects (S1);
// gather collects (G2).
static afut::task<int> combinators_demo(afut::loop &loop, int *timeouts) {
    auto never = loop.create_future<int>();
    try {
        co_await afut::wait_for(never, 0.005);
    } catch (const afut::timeout_error &e) {
        (*timeouts)++;
        if (e.code() != AFUT_ERR_TIMEOUT) (*timeouts) += 100;
    }
    if (!never.cancelled()) co_return -1;

    auto inner = loop.create_future<int>();
    try {
        co_await afut::wait_for(afut::shield(inner), 0.005);
    } catch (const afut::timeout_error &) {
        (*timeouts)++;
    }
    if (inner.done()) co_return -2;
    inner.set_result(1);

    auto a = add_later(loop, 1, 2);
    auto b = add_later(loop, 3, 4);
    auto g = afut::gather({a, b, inner});
    co_await g;
    co_return g.child_as<int>(0).result() + g.child_as<int>(1).result() + g.child_as<int>(2).result();
}

TEST(test_combinators_from_cpp) {
    afut::loop loop;
    int timeouts = 0;
    CHECK_EQ_INT(loop.run_until_complete(combinators_demo(loop, &timeouts)), 11);
    CHECK_EQ_INT(timeouts, 2);
}

// A fire-and-forget task runs to the end although its handle is gone (gh-91887), and values
// of finished tasks are freed once.
static afut::task<void> background(afut::future<tracker> out) {
    co_await afut::sleep(0.002);
    out.set_result(tracker(3));
}

TEST(test_fire_and_forget) {
    tracker::live = 0;
    {
        afut::loop loop;
        auto out = loop.create_future<tracker>();
        (void)background(out);  // the task<void> object is dropped at once
        CHECK_EQ_INT(loop.run_until_complete(out).v, 3);
    }
    CHECK_EQ_INT(tracker::live, 0);
}

// ~loop() cancels the tasks still pending and lets them finish: their frames are destroyed
// (asyncio.run's cancel_all_tasks); nothing leaks (checked under valgrind / ASan).
static afut::task<int> forever(int *cleaned) {
    struct guard {
        int *c;
        ~guard() { (*c)++; }
    } g{cleaned};
    auto never = afut::future<int>(afut::current_loop());
    co_return co_await never;
}

TEST(test_loop_destructor_cancels_pending_tasks) {
    int cleaned = 0;
    afut::future<int> kept;
    {
        afut::loop loop;
        kept = forever(&cleaned);
        (void)forever(&cleaned);
        loop.run_once();
        loop.run_once();
        CHECK_EQ_INT(cleaned, 0);
    }
    CHECK_EQ_INT(cleaned, 2);
    CHECK(kept.cancelled());
}

int main() {
    RUN(test_future_handles_and_values);
    RUN(test_move_only_and_void_futures);
    RUN(test_callbacks_and_escaping_exceptions);
    RUN(test_task_basics);
    RUN(test_nested_tasks_and_move_only_results);
    RUN(test_exceptions_cross_as_afut_exceptions);
    RUN(test_c_exception_surfaces);
    RUN(test_cancel_from_c);
    RUN(test_cancel_swallowed);
    RUN(test_cancel_before_start);
    RUN(test_pending_cancel_thrown_at_yield);
    RUN(test_cancelled_error_raised_inside);
    RUN(test_c_and_cpp_tasks_await_each_other);
    RUN(test_await_loopless_future_from_thread);
    RUN(test_combinators_from_cpp);
    RUN(test_fire_and_forget);
    RUN(test_loop_destructor_cancels_pending_tasks);
    TEST_END();
}
