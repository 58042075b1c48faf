// C++ tests for afut::executor, the virtual clock of afut::loop and the typed afut::gather
// (include/afut.hpp; issue 13). Compiled with g++ -std=c++20 and run by tests/cpp_suite.rs,
// with the C suite's harness (c-tests/test.h).
#include <atomic>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <vector>

#include "afut.hpp"
#include "test.h"

// Counts live instances, to check that values stored in futures are freed exactly once.
struct tracker {
    static inline std::atomic<int> live{0};
    int v;
    explicit tracker(int x) : v(x) { live++; }
    tracker(tracker &&o) noexcept : v(o.v) { live++; }
    tracker(const tracker &) = delete;
    ~tracker() { live--; }
};

// ------------------------------------------------------------------------------------------
// afut::executor

// submit(fn): a loop-less future<R> completed on a worker; values of any movable type.
TEST(test_executor_submit_values) {
    tracker::live = 0;
    {
        afut::executor pool(2);
        auto caller = std::this_thread::get_id();
        auto f = pool.submit([caller] { return std::this_thread::get_id() != caller; });
        auto g = pool.submit([] { return std::make_unique<tracker>(7); });
        auto v = pool.submit([] {});
        static_assert(std::is_same_v<decltype(f), afut::future<bool>>);
        static_assert(std::is_same_v<decltype(v), afut::future<void>>);
        CHECK(f.get_loop() == nullptr);
        CHECK_EQ_INT(afut_wait(f.get(), 10), AFUT_OK);
        CHECK_EQ_INT(afut_wait(g.get(), 10), AFUT_OK);
        CHECK_EQ_INT(afut_wait(v.get(), 10), AFUT_OK);
        CHECK(f.result());
        CHECK_EQ_INT(g.result()->v, 7);
        v.result();
        CHECK_EQ_INT(tracker::live.load(), 1);
    }
    CHECK_EQ_INT(tracker::live.load(), 0);  // the value freed once, with its future
}

// A job that throws fails its future; awaiting (or result()) rethrows the original exception.
TEST(test_executor_exception_crosses) {
    afut::executor pool(1);
    auto f = pool.submit([]() -> int { throw std::out_of_range("no such key"); });
    CHECK_EQ_INT(afut_wait(f.get(), 10), AFUT_OK);
    bool caught = false;
    try {
        (void)f.result();
    } catch (const std::out_of_range &e) {
        caught = std::string(e.what()) == "no such key";
    }
    CHECK(caught);
}

// The callable (and its captures) is destroyed once, also when the job is cancelled queued.
TEST(test_executor_callable_freed_on_every_path) {
    tracker::live = 0;
    {
        afut::executor pool(1);
        std::atomic<bool> release{false};
        auto blocker = pool.submit([&release] {
            while (!release.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
        });
        auto queued = pool.submit([t = std::make_shared<tracker>(1)] { return t->v; });
        CHECK_EQ_INT(tracker::live.load(), 1);
        CHECK(queued.cancel("not needed"));
        CHECK_EQ_INT(tracker::live.load(), 0);  // freed inside cancel: the job never runs
        release = true;
        pool.shutdown(true);
        CHECK(blocker.done());
        bool threw = false;
        try {
            (void)pool.submit([] { return 1; });
        } catch (const afut::error &e) {
            threw = e.status() == AFUT_ERR_INVALID_STATE;
        }
        CHECK(threw);
    }
    CHECK_EQ_INT(tracker::live.load(), 0);
}

// co_await loop.run_in_executor(pool, fn) inside a task: the coroutine resumes on the loop.
static afut::task<int> sum_on_pool(afut::loop &loop, afut::executor &pool, std::thread::id *resumed_on) {
    int a = co_await loop.run_in_executor(pool, [] { return 40; });
    int b = co_await afut::run_in_executor(pool, [] { return 2; });
    *resumed_on = std::this_thread::get_id();
    co_return a + b;
}

TEST(test_run_in_executor_from_a_task) {
    afut::loop loop;
    afut::executor pool(2);
    std::thread::id resumed_on;
    CHECK_EQ_INT(loop.run_until_complete(sum_on_pool(loop, pool, &resumed_on)), 42);
    CHECK(resumed_on == std::this_thread::get_id());
}

// Cancelling the loop future of a running job: the awaiting task sees cancelled_error.
static afut::task<int> cancel_running(afut::loop &loop, afut::executor &pool, std::atomic<bool> *go) {
    auto f = loop.run_in_executor(pool, [go] {
        while (!go->load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
        return 5;
    });
    loop.call_later(0.01, [f]() mutable { f.cancel("enough"); });
    try {
        co_return co_await f;
    } catch (const afut::cancelled_error &c) {
        go->store(true);
        co_return c.message() == "enough" ? -1 : -2;
    }
}

TEST(test_run_in_executor_cancel) {
    afut::loop loop;
    afut::executor pool(1);
    std::atomic<bool> go{false};
    CHECK_EQ_INT(loop.run_until_complete(cancel_running(loop, pool, &go)), -1);
}

// ------------------------------------------------------------------------------------------
// the virtual clock

static afut::task<double> slow_protocol(afut::loop &loop) {
    co_await afut::sleep(30);
    auto never = loop.create_future<int>();
    try {
        co_await afut::wait_for(never, 3600);
    } catch (const afut::timeout_error &) {
    }
    co_return loop.time();
}

TEST(test_virtual_clock_auto_advance) {
    afut::loop loop;
    loop.set_virtual_clock(true);
    CHECK(loop.time() == 0.0);
    auto t0 = std::chrono::steady_clock::now();
    CHECK(loop.run_until_complete(slow_protocol(loop)) == 3630.0);
    double real = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    CHECK(real < 30);  // an hour of loop time, not of real time
}

TEST(test_virtual_clock_manual) {
    afut::loop loop;
    loop.set_virtual_clock(false);
    int fired = 0;
    loop.call_later(10, [&fired] { fired++; });
    bool threw = false;
    try {
        loop.set_virtual_clock(true);  // a timer exists
    } catch (const afut::error &e) {
        threw = e.status() == AFUT_ERR_INVALID_STATE;
    }
    CHECK(threw);
    loop.run_once(0);
    CHECK_EQ_INT(fired, 0);
    loop.advance_time(10);
    CHECK(loop.time() == 10.0);
    CHECK_EQ_INT((int)loop.run_once(0), 1);
    CHECK_EQ_INT(fired, 1);
    threw = false;
    try {
        loop.advance_time(-1);
    } catch (const afut::error &e) {
        threw = e.status() == AFUT_ERR_INVALID_ARGUMENT;
    }
    CHECK(threw);
}

// ------------------------------------------------------------------------------------------
// typed gather

static afut::task<int> after(double s, int v) {
    co_await afut::sleep(s);
    co_return v;
}

static afut::task<std::unique_ptr<tracker>> make_tracker(int v) {
    co_await afut::yield();
    co_return std::make_unique<tracker>(v);
}

static afut::task<int> gather_demo(afut::loop &loop, afut::executor &pool) {
    auto kept = loop.create_future<std::string>();
    loop.call_soon([kept]() mutable { kept.set_result("kept"); });
    auto done = loop.create_future<void>();
    done.set_result();
    // lvalues give references (owned by the caller's futures), temporaries give values.
    auto [a, s, t, nothing, job] =
        co_await afut::gather(after(0.002, 1), kept, make_tracker(3), done, pool.submit([] { return 4; }));
    static_assert(std::is_same_v<decltype(a), int>);
    static_assert(std::is_same_v<decltype(s), std::string &>);
    static_assert(std::is_same_v<decltype(t), std::unique_ptr<tracker>>);
    static_assert(std::is_same_v<decltype(nothing), std::monostate>);
    (void)nothing;
    co_return a + (s == "kept" ? 10 : 0) + t->v * 100 + job * 1000;
}

TEST(test_typed_gather) {
    tracker::live = 0;
    {
        afut::loop loop;
        afut::executor pool(1);
        CHECK_EQ_INT(loop.run_until_complete(gather_demo(loop, pool)), 4311);
    }
    CHECK_EQ_INT(tracker::live.load(), 0);
}

static afut::task<int> failing(int code) {
    co_await afut::yield();
    throw afut::exception_error(code, "child failed");
}

static afut::task<int> gather_failure() {
    try {
        auto [x, y] = co_await afut::gather(after(0.001, 1), failing(77));
        co_return x + y;
    } catch (const afut::exception_error &e) {
        co_return e.code();
    }
}

TEST(test_typed_gather_failure_and_run_until_complete) {
    afut::loop loop;
    CHECK_EQ_INT(loop.run_until_complete(gather_failure()), 77);
    auto x = after(0.001, 5);
    auto [v, w] = loop.run_until_complete(afut::gather(x, after(0, 6)));
    CHECK_EQ_INT(v, 5);
    CHECK_EQ_INT(w, 6);
}

int main() {
    RUN(test_executor_submit_values);
    RUN(test_executor_exception_crosses);
    RUN(test_executor_callable_freed_on_every_path);
    RUN(test_run_in_executor_from_a_task);
    RUN(test_run_in_executor_cancel);
    RUN(test_virtual_clock_auto_advance);
    RUN(test_virtual_clock_manual);
    RUN(test_typed_gather);
    RUN(test_typed_gather_failure_and_run_until_complete);
    TEST_END();
}
