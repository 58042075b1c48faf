"""The asyncio side of the afut benchmark suite.

Each workload mirrors the C program that runs it (benches/bench_*.c) as closely as asyncio
allows, and prints "@ key value" lines that the C program records next to its own figures.

    python3 asyncio_bench.py w1|w1r|w1b|w2|pp|w3|idle|mem|io

Environment: BENCH_REPS (default 5), BENCH_SCALE (default 1), BENCH_CPU (default: the
lowest-numbered core the process may use), as for the C programs.
"""

import asyncio
import os
import random
import resource
import socket
import statistics
import sys
import threading
import time
import tracemalloc


def reps(default=5):
    return max(1, min(31, int(os.environ.get("BENCH_REPS", default))))


def scaled(n, minimum=1):
    f = float(os.environ.get("BENCH_SCALE", "1") or 1)
    return max(minimum, int(n * (f if f > 0 else 1)))


def emit(key, value):
    print(f"@ {key} {value:.6g}", flush=True)


def new_loop():
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    return loop


# ---- W1 / W1b -------------------------------------------------------------------------

def w1_once(loop, n):
    count = [0]

    def on_done(fut):
        count[0] += 1

    run_once = loop._run_once  # one iteration, as afut_loop_run_once(loop, 0)
    t0 = time.perf_counter_ns()
    for _ in range(n):
        f = loop.create_future()
        f.add_done_callback(on_done)
        f.set_result(None)
        run_once()
        del f
    t1 = time.perf_counter_ns()
    assert count[0] == n
    return (t1 - t0) / n


def w1():
    loop = new_loop()
    n = scaled(20000, 100)
    w1_once(loop, n // 10)
    emit("w1.asyncio", statistics.median(w1_once(loop, n) for _ in range(reps())))
    loop.close()


def w1r_once(loop, n):
    """W1 inside a running loop: each done-callback makes the next future."""
    count = [0]

    def on_done(fut):
        count[0] += 1
        if count[0] == n:
            loop.stop()
            return
        f = loop.create_future()
        f.add_done_callback(on_done)
        f.set_result(None)

    t0 = time.perf_counter_ns()
    f = loop.create_future()
    f.add_done_callback(on_done)
    f.set_result(None)
    del f
    loop.run_forever()
    t1 = time.perf_counter_ns()
    assert count[0] == n
    return (t1 - t0) / n


def w1r():
    loop = new_loop()
    n = scaled(20000, 100)
    w1r_once(loop, n // 10)
    emit("w1r.asyncio", statistics.median(w1r_once(loop, n) for _ in range(reps())))
    loop.close()


def w1b_once(loop, rounds, batch=1000):
    count = [0]

    def on_done(fut):
        count[0] += 1

    t0 = time.perf_counter_ns()
    for _ in range(rounds):
        futs = [loop.create_future() for _ in range(batch)]
        for f in futs:
            f.add_done_callback(on_done)
        for f in futs:
            f.set_result(None)
        loop._run_once()
        del futs
    t1 = time.perf_counter_ns()
    assert count[0] == rounds * batch
    return (t1 - t0) / (rounds * batch)


def w1b():
    loop = new_loop()
    rounds = scaled(20, 2)
    w1b_once(loop, 2)
    emit("w1b.asyncio", statistics.median(w1b_once(loop, rounds) for _ in range(reps())))
    loop.close()


# ---- W2: producer threads complete loop futures; ping-pong ------------------------------

def w2_once(n, producers):
    loop = new_loop()
    futs = [loop.create_future() for _ in range(n)]
    all_done = loop.create_future()
    count = [0]

    def on_done(fut):
        count[0] += 1
        if count[0] == n:
            all_done.set_result(None)

    for f in futs:
        f.add_done_callback(on_done)
    barrier = threading.Barrier(producers + 1)

    def produce(k):
        barrier.wait()
        threadsafe = loop.call_soon_threadsafe
        for j in range(k, n, producers):
            # The asyncio way to complete a loop future from another thread.
            threadsafe(futs[j].set_result, None)

    threads = [threading.Thread(target=produce, args=(k,)) for k in range(producers)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter_ns()
    loop.run_until_complete(all_done)
    t1 = time.perf_counter_ns()
    for t in threads:
        t.join()
    loop.close()
    return n / ((t1 - t0) / 1e9) / 1e6  # Mops/s


def w2():
    n = scaled(40000, 1000)
    r = min(reps(), 3)
    for p in (1, 2):
        emit(f"w2_{p}p.asyncio", statistics.median(w2_once(n, p) for _ in range(r)))


def pp():
    """Ping-pong: a producer completes a loop future (call_soon_threadsafe), the loop's
    done-callback releases the producer; both threads pinned to one core."""
    rounds = scaled(20000, 200)
    cpu = int(os.environ.get("BENCH_CPU", min(os.sched_getaffinity(0))))
    os.sched_setaffinity(0, {cpu})  # the calling thread; the producer thread inherits it
    loop = new_loop()
    futs = [loop.create_future() for _ in range(rounds)]
    back = threading.Semaphore(0)
    for f in futs:
        f.add_done_callback(lambda fut: back.release())
    lat = []

    def produce():
        threadsafe = loop.call_soon_threadsafe
        clock = time.perf_counter_ns
        for f in futs:
            t0 = clock()
            threadsafe(f.set_result, None)
            back.acquire()
            lat.append(clock() - t0)
        threadsafe(loop.stop)

    t = threading.Thread(target=produce)
    t.start()
    loop.run_forever()
    t.join()
    loop.close()
    lat.sort()

    def pct(p):
        return lat[max(0, min(len(lat) - 1, -(-len(lat) * p // 100) - 1))] / 1000.0

    emit("pp_p50.asyncio", pct(50))
    emit("pp_p99.asyncio", pct(99))


# ---- W3: 1e5 call_later, random delays up to 10 ms --------------------------------------

def w3_once(n):
    loop = new_loop()
    rng = random.Random(12345)
    delays = [rng.random() * 0.010 for _ in range(n)]
    count = [0]

    def tick():
        count[0] += 1
        if count[0] == n:
            loop.stop()

    c0 = time.process_time_ns()
    for d in delays:
        loop.call_later(d, tick)
    loop.run_forever()
    c1 = time.process_time_ns()
    assert count[0] == n
    loop.close()
    return (c1 - c0) / n


def w3():
    n = scaled(100000, 1000)
    emit("w3.asyncio", statistics.median(w3_once(n) for _ in range(min(reps(), 3))))


# ---- idle: 1000 timers an hour away, 0.5 s of waiting -----------------------------------

def idle():
    loop = new_loop()
    for _ in range(1000):
        loop.call_later(3600, lambda: None)
    loop.call_later(0.5, loop.stop)
    ru0 = resource.getrusage(resource.RUSAGE_THREAD)
    c0 = time.process_time_ns()
    loop.run_forever()
    c1 = time.process_time_ns()
    ru1 = resource.getrusage(resource.RUSAGE_THREAD)
    loop.close()
    emit("idle_cpu.asyncio", (c1 - c0) / 1000.0)
    emit("idle_sleeps.asyncio", ru1.ru_nvcsw - ru0.ru_nvcsw)


# ---- memory: bytes per pending future with one callback ----------------------------------

def mem():
    n = scaled(100000, 1000)
    loop = new_loop()

    def on_done(fut):
        pass

    futs = [None] * n
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(n):
        f = loop.create_future()
        f.add_done_callback(on_done)
        futs[i] = f
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    emit("mem.asyncio", (after - before) / n)
    for f in futs:
        f.cancel()
    del futs
    loop.close()


# ---- I/O ping-pong over a socketpair (bench_io.c) -------------------------------------

def io_once(rounds):
    loop = new_loop()
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    fa, fb = a.fileno(), b.fileno()
    lat = []
    clock = time.perf_counter_ns
    state = {"sent": 0, "done": 0}

    def on_a():
        os.write(fa, os.read(fa, 8))

    def on_b():
        v = os.read(fb, 8)
        t = clock()
        lat.append(t - state["sent"])
        state["done"] += 1
        if state["done"] == rounds:
            loop.stop()
            return
        state["sent"] = t
        os.write(fb, v)

    loop.add_reader(fa, on_a)
    loop.add_reader(fb, on_b)
    t0 = clock()
    state["sent"] = t0
    os.write(fb, b"\0" * 8)
    loop.run_forever()
    t1 = clock()
    loop.remove_reader(fa)
    loop.remove_reader(fb)
    loop.close()
    a.close()
    b.close()
    lat.sort()

    def pct(p):
        return lat[max(0, min(len(lat) - 1, -(-len(lat) * p // 100) - 1))] / 1000.0

    return 2 * rounds / ((t1 - t0) / 1e9), pct(50), pct(99)


def io():
    rounds = scaled(20000, 200)
    runs = sorted(io_once(rounds) for _ in range(min(reps(), 3)))
    rate, p50, p99 = runs[len(runs) // 2]
    emit("io_rate.asyncio", rate / 1000.0)
    emit("io_p50.asyncio", p50)
    emit("io_p99.asyncio", p99)


WORKLOADS = {"w1": w1, "w1r": w1r, "w1b": w1b, "w2": w2, "pp": pp, "w3": w3, "idle": idle, "mem": mem, "io": io}

if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in WORKLOADS:
        sys.exit(f"usage: {sys.argv[0]} {'|'.join(WORKLOADS)}")
    WORKLOADS[sys.argv[1]]()
