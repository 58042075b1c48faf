#!/usr/bin/env python3
"""echo_client.py: drives examples/echo_server.c with many concurrent connections and checks
every echoed byte.

    echo_client.py [--conns 100] [--idle 0] [--max-bytes 262144] [--seed 1] -- SERVER_COMMAND...

Starts SERVER_COMMAND (for example `target/examples/echo_server --max-conns 100`), reads the
port from its first line ("echo_server: listening on 127.0.0.1:PORT"), then opens --conns
connections at once. Each sends its own pseudo-random payload (0 to --max-bytes bytes, in
chunks of random sizes, some tiny) while reading concurrently, half-closes its side after the
last byte, and reads until the server closes: what comes back must be the payload exactly,
byte for byte, in order. With --idle N, N more connections are opened first and stay silent;
once the echo connections are done the client sends SIGTERM to the server, which must cancel
them (each then sees EOF, no data) and exit. Then it waits for the server to exit and relays its
output.

Last line on success: "client: N connections, B bytes sent, every byte echoed back in order".
Exit status 0 only if every connection was echoed exactly and the server exited with 0.
"""

import argparse
import asyncio
import random
import signal
import sys


async def one_connection(port, index, payload, seed, timeout):
    rng = random.Random(seed * 100003 + index)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def send_all():
        pos = 0
        while pos < len(payload):
            n = rng.choice((1, 7, 100, 1500, 16384, 65536))
            writer.write(payload[pos : pos + n])
            pos += n
            await writer.drain()
        writer.write_eof()  # the server echoes what is left, then closes

    async def receive_all():
        chunks = []
        while True:
            data = await reader.read(65536)
            if not data:
                return b"".join(chunks)
            chunks.append(data)

    sender = asyncio.ensure_future(send_all())
    try:
        echoed = await asyncio.wait_for(receive_all(), timeout)
        await sender
    finally:
        sender.cancel()
        writer.close()
    if echoed != payload:
        same = next((i for i, (a, b) in enumerate(zip(echoed, payload)) if a != b), min(len(echoed), len(payload)))
        raise AssertionError(
            f"connection {index}: sent {len(payload)} bytes, got {len(echoed)} back, first difference at byte {same}"
        )
    return len(payload)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--conns", type=int, default=100)
    ap.add_argument("--idle", type=int, default=0)
    ap.add_argument("--max-bytes", type=int, default=256 * 1024)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("server", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    server_cmd = [a for a in args.server if a != "--"]
    if not server_cmd:
        ap.error("give the server command after --")

    server = await asyncio.create_subprocess_exec(*server_cmd, stdout=asyncio.subprocess.PIPE)
    first = (await asyncio.wait_for(server.stdout.readline(), args.timeout)).decode()
    print(first, end="", flush=True)
    prefix = "echo_server: listening on 127.0.0.1:"
    if not first.startswith(prefix):
        print("client: the server did not say where it listens", flush=True)
        server.kill()
        await server.wait()
        return 1
    port = int(first[len(prefix) :])

    idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(args.idle)]

    rng = random.Random(args.seed)
    sizes = [0, 1, args.max_bytes] + [rng.randint(0, args.max_bytes) for _ in range(args.conns - 3)]
    payloads = [rng.randbytes(n) for n in sizes[: args.conns]]
    results = await asyncio.gather(
        *(one_connection(port, i, p, args.seed, args.timeout) for i, p in enumerate(payloads)),
        return_exceptions=True,
    )
    failures = [r for r in results if isinstance(r, BaseException)]

    if idle:
        server.send_signal(signal.SIGTERM)
        for i, (reader, writer) in enumerate(idle):
            try:
                data = await asyncio.wait_for(reader.read(), args.timeout)
                if data:
                    failures.append(AssertionError(f"idle connection {i} received {len(data)} bytes"))
            except (OSError, asyncio.TimeoutError) as e:
                failures.append(e)
            writer.close()
    for f in failures[:10]:
        print(f"client: {type(f).__name__}: {f}", flush=True)

    try:
        rest = await asyncio.wait_for(server.stdout.read(), args.timeout)
        status = await asyncio.wait_for(server.wait(), args.timeout)
    except asyncio.TimeoutError:
        print("client: the server did not exit; killing it", flush=True)
        server.kill()
        rest, status = b"", await server.wait()
    print(rest.decode(), end="", flush=True)
    if status != 0:
        print(f"client: the server exited with status {status}", flush=True)
    if failures:
        print(f"client: {len(failures)} of {len(payloads)} connections FAILED", flush=True)
        return 1
    total = sum(results)
    print(f"client: {len(payloads)} connections, {total} bytes sent, every byte echoed back in order", flush=True)
    if idle:
        print(f"client: {len(idle)} idle connections closed by the server after SIGTERM", flush=True)
    return 0 if status == 0 else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
