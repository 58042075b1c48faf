/*
 * hello_coro.cpp: asyncio's "hello ... world" with C++20 coroutines over afut (afut.hpp).
 *
 * The Python it mirrors, line for line:
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
 * Build and run (linked statically):
 *     cargo build --release
 *     g++ -std=c++20 -Wall -Wextra -O2 -Iinclude examples/hello_coro.cpp target/release/libafut.a \
 *         -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc -o hello_coro && ./hello_coro
 */
#include <iostream>
#include <string>

#include "afut.hpp"

afut::task<> amain(afut::loop &loop) {
    auto fut = loop.create_future<std::string>();
    loop.call_later(1.0, [fut]() mutable { fut.set_result("... world"); });
    std::cout << "hello ..." << std::endl;
    std::cout << co_await fut << std::endl;
}

int main() {
    afut::loop loop;
    try {
        loop.run_until_complete(amain(loop));
    } catch (const std::exception &e) {
        std::cerr << "hello_coro: " << e.what() << std::endl;
        return 1;
    }
    return 0;
}
