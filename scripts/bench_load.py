"""Load generator for scripts/bench.py: N concurrent long polls, in a process of its own.

    python scripts/bench_load.py --port PORT --polls N [--connect-parallel 256] [--deadline 120]

Opens N connections to 127.0.0.1:PORT, sends one `GET /` on each, and waits for every
answer. It prints `sent N` on stdout once every request is written (the benchmark then
samples the server's memory while all polls are held), and at the end one JSON line:
{"polls", "statuses", "errors", "sent_seconds", "first_answer_seconds", "last_answer_seconds"}.

Bounded in count (N) and time (--deadline): whatever is unanswered by then counts as an error.
Sockets are closed with SO_LINGER 0 so that repeated runs do not leave N ports in TIME_WAIT.
Standard library only (asyncio protocols: far lighter per connection than an HTTP client).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import socket
import struct
import sys
import time
from collections import Counter

REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: long-poll-bench\r\n\r\n"
LINGER_ZERO = struct.pack("ii", 1, 0)


def raise_nofile(needed: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(soft, needed)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
    except (ValueError, OSError):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Poll(asyncio.Protocol):
    """One connection, one request; resolves `done` with the status code (or an error text)."""

    def __init__(self, done: asyncio.Future) -> None:
        self.done = done
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_ZERO)
        self.transport.write(REQUEST)  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        head_end = self.buffer.find(b"\r\n\r\n")
        if head_end < 0:
            return
        head = bytes(self.buffer[:head_end]).decode("latin-1").split("\r\n")
        try:
            status = int(head[0].split(" ", 2)[1])
        except (IndexError, ValueError):
            self._finish(f"bad status line {head[0]!r}")
            return
        length = 0
        for line in head[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        if len(self.buffer) - head_end - 4 >= length:
            self._finish(status)

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish(f"connection lost before the answer ({exc or 'closed'})")

    def _finish(self, result: int | str) -> None:
        if not self.done.done():
            self.done.set_result(result)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


async def one_poll(loop: asyncio.AbstractEventLoop, port: int, gate: asyncio.Semaphore, sent: list[float]) -> tuple[int | str, float]:
    done = loop.create_future()
    async with gate:  # bound the connects in flight (the listen backlog is finite)
        try:
            await loop.create_connection(lambda: Poll(done), "127.0.0.1", port)
        except OSError as exc:
            return f"connect: {exc.strerror or exc}", time.monotonic()
    sent.append(time.monotonic())
    result = await done
    return result, time.monotonic()


async def run(port: int, polls: int, parallel: int, deadline: float) -> dict:
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(parallel)
    sent: list[float] = []
    started = time.monotonic()
    tasks = [asyncio.ensure_future(one_poll(loop, port, gate, sent)) for _ in range(polls)]

    async def announce() -> None:
        while len(sent) < polls and not all(t.done() for t in tasks):
            await asyncio.sleep(0.005)
        print(f"sent {len(sent)}", flush=True)

    announcer = asyncio.ensure_future(announce())
    finished, pending = await asyncio.wait(tasks, timeout=deadline)
    for task in pending:
        task.cancel()
    announcer.cancel()
    statuses: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    answered_at = []
    for task in finished:
        result, when = task.result()
        if isinstance(result, int):
            statuses[str(result)] += 1
            answered_at.append(when)
        else:
            errors[result] += 1
    if pending:
        errors[f"no answer within {deadline:g} s"] += len(pending)
    return {
        "polls": polls,
        "statuses": dict(statuses),
        "errors": dict(errors),
        "error_count": sum(errors.values()),
        "sent_seconds": round(max(sent) - started, 3) if sent else None,
        "first_answer_seconds": round(min(answered_at) - started, 3) if answered_at else None,
        "last_answer_seconds": round(max(answered_at) - started, 3) if answered_at else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--polls", type=int, required=True)
    parser.add_argument("--connect-parallel", type=int, default=256)
    parser.add_argument("--deadline", type=float, default=120.0, help="seconds before unanswered polls count as errors")
    args = parser.parse_args(argv)
    limit = raise_nofile(args.polls + 64)
    if limit < args.polls + 16:
        print(json.dumps({"polls": args.polls, "error_count": args.polls, "errors": {f"open-file limit {limit} < {args.polls}": args.polls}, "statuses": {}}))
        return 1
    result = asyncio.run(run(args.port, args.polls, args.connect_parallel, args.deadline))
    print(json.dumps(result), flush=True)
    return 0 if result["error_count"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
