#!/usr/bin/env python3
"""Load for the "events" figure of scripts/bench.py: many pollers following channels of
GET /events while a publisher POSTs events at a fixed rate; delivery latency and losses.

    python scripts/bench_events_load.py --port P [--pollers 10000] [--channels 100]
        [--rate 1000] [--seconds 10] [--processes 4] [--publishers 1000] [--grace 5] [--server-pid PID]

Pollers are spread over `--processes` worker processes (so that the load, not the server, is
not the bottleneck), each an asyncio loop of raw keep-alive sockets on 127.0.0.1. Every event
carries its publish time (wall clock, same machine); a poller records receipt - publish for
every event it gets, in 0.1 ms buckets. Prints progress lines, then one JSON line: latency
p50/p99/max in ms, deliveries, expected deliveries, duplicates, gaps, statuses and errors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import resource
import sys
import time

BUCKET = 10000  # buckets per second: 0.1 ms


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time of a process so far (/proc/PID/stat), None without one."""
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except (OSError, IndexError, TypeError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def raise_open_files(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(needed, soft)), hard))


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    return status, await reader.readexactly(length)


async def poller_loop(port: int, channel: str, stats: dict, ready: list, stop: asyncio.Event) -> None:
    cursor = 0
    last_id = 0
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError as exc:
        stats["errors"][type(exc).__name__] = stats["errors"].get(type(exc).__name__, 0) + 1
        ready.append(False)
        return
    first = True
    try:
        while not stop.is_set():
            writer.write(f"GET /events/{channel}?cursor={cursor}&timeout=30 HTTP/1.1\r\nHost: b\r\n\r\n".encode())
            if first:
                ready.append(True)
                first = False
            status, body = await read_answer(reader)
            now = time.time()
            stats["statuses"][status] = stats["statuses"].get(status, 0) + 1
            if status != 200:
                stats["errors"][f"HTTP {status}"] = stats["errors"].get(f"HTTP {status}", 0) + 1
                await asyncio.sleep(0.1)
                continue
            answer = json.loads(body)
            histogram = stats["histogram"]
            for event in answer["events"]:
                if event["id"] <= last_id:
                    stats["duplicates"] += 1
                    continue
                if event["id"] != last_id + 1:
                    stats["gaps"] += 1
                last_id = event["id"]
                stats["delivered"] += 1
                bucket = int((now - event["data"]["t"]) * BUCKET)
                histogram[bucket] = histogram.get(bucket, 0) + 1
            cursor = answer["cursor"]
    except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
        if not stop.is_set():
            stats["errors"][type(exc).__name__] = stats["errors"].get(type(exc).__name__, 0) + 1
    finally:
        writer.close()


def worker(port: int, channels: list[str], ready_queue, stop_event, result_queue) -> None:
    raise_open_files(len(channels) + 64)

    async def run() -> dict:
        stats = {"delivered": 0, "duplicates": 0, "gaps": 0, "histogram": {}, "statuses": {}, "errors": {}}
        stop = asyncio.Event()
        ready: list = []
        tasks = []
        for i, channel in enumerate(channels):
            tasks.append(asyncio.create_task(poller_loop(port, channel, stats, ready, stop)))
            if i % 200 == 199:
                await asyncio.sleep(0.01)  # do not overflow the listen backlog
        while len(ready) < len(channels):
            await asyncio.sleep(0.05)
        ready_queue.put(sum(1 for r in ready if r))
        while not stop_event.is_set():
            await asyncio.sleep(0.1)
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return stats

    result_queue.put(asyncio.run(run()))


async def publisher(port: int, channels: int, rate: int, seconds: float, connections: int) -> tuple[dict[str, int], dict, float, float, dict[int, int], dict[int, int]]:
    """`connections` publishers, each on its own keep-alive connection, together `rate` events/s
    round-robin over the channels for `seconds`. Each publisher waits for its 201 before its next
    POST (as a real one would) and sends late rather than skipping when the server falls
    behind: the achieved rate is reported. Returns events per channel, errors, seconds to the
    last answer, seconds to the last POST sent, the histogram of the time from each POST to its
    answer, and the histogram of how late each POST was sent against its schedule (a server
    that keeps up keeps that bounded; one that does not makes it grow with the run's length)."""
    published = {f"ch{c}": 0 for c in range(channels)}
    errors: dict[str, int] = {}
    answered: dict[int, int] = {}  # POST to 201 latency, in the same buckets as deliveries
    behind: dict[int, int] = {}  # POST sent after its scheduled time, same buckets
    total = int(rate * seconds)
    streams = await asyncio.gather(*(asyncio.open_connection("127.0.0.1", port) for _ in range(connections)))
    started = time.monotonic()
    last_sent = started

    async def one_publisher(k: int) -> None:
        nonlocal last_sent
        reader, writer = streams[k]
        for n in range(k, total, connections):
            delay = started + n / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            late = int(max(0.0, time.monotonic() - (started + n / rate)) * BUCKET)
            behind[late] = behind.get(late, 0) + 1
            channel = f"ch{n % channels}"
            body = json.dumps({"t": time.time(), "n": n}).encode()
            sent = last_sent = max(last_sent, time.monotonic())
            writer.write(
                f"POST /events/{channel} HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n".encode() + body
            )
            try:
                status, _ = await read_answer(reader)
            except (OSError, asyncio.IncompleteReadError) as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                return
            bucket = int((time.monotonic() - sent) * BUCKET)
            answered[bucket] = answered.get(bucket, 0) + 1
            if status == 201:
                published[channel] += 1
            else:
                errors[f"HTTP {status}"] = errors.get(f"HTTP {status}", 0) + 1
        writer.close()

    try:
        await asyncio.wait_for(asyncio.gather(*(one_publisher(k) for k in range(connections))), seconds * 10 + 60)
    except asyncio.TimeoutError:
        errors["publishers timed out"] = 1
    return published, errors, time.monotonic() - started, last_sent - started, answered, behind


def percentile(histogram: dict[int, int], q: float) -> float | None:
    total = sum(histogram.values())
    if not total:
        return None
    rank = q * (total - 1)
    seen = 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        if seen > rank:
            return round(bucket * 1000 / BUCKET, 1)  # ms
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pollers", type=int, default=10000)
    parser.add_argument("--channels", type=int, default=100)
    parser.add_argument("--rate", type=int, default=1000, help="events per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--publishers", type=int, help="publisher connections (default: rate, at most 1000)")
    parser.add_argument("--grace", type=float, default=5.0, help="seconds left after the last publish")
    parser.add_argument("--server-pid", type=int, help="the server's process: report its CPU while publishing")
    args = parser.parse_args()
    raise_open_files(args.pollers + 256)
    names = [f"ch{i % args.channels}" for i in range(args.pollers)]
    parts = [names[k :: args.processes] for k in range(args.processes)]
    ctx = multiprocessing.get_context("fork")
    ready_queue, result_queue, stop_event = ctx.Queue(), ctx.Queue(), ctx.Event()
    workers = [ctx.Process(target=worker, args=(args.port, part, ready_queue, stop_event, result_queue)) for part in parts if part]
    started = time.monotonic()
    for process in workers:
        process.start()
    connected = sum(ready_queue.get(timeout=120) for _ in workers)
    print(f"pollers {connected} in {time.monotonic() - started:.1f} s", flush=True)
    time.sleep(1.0)  # let the last polls reach the server
    publishers = args.publishers or min(args.rate, 1000)
    cpu_before = cpu_seconds(args.server_pid)
    published, publish_errors, publish_seconds, send_seconds, answered, behind = asyncio.run(publisher(args.port, args.channels, args.rate, args.seconds, publishers))
    cpu_after = cpu_seconds(args.server_pid)
    print(f"published {sum(published.values())} in {publish_seconds:.1f} s", flush=True)
    time.sleep(args.grace)
    stop_event.set()
    results = [result_queue.get(timeout=60) for _ in workers]
    for process in workers:
        process.join(10)
    histogram: dict[int, int] = {}
    total = {"delivered": 0, "duplicates": 0, "gaps": 0}
    statuses: dict[str, int] = {}
    errors: dict[str, int] = dict(publish_errors)
    for stats in results:
        for key in total:
            total[key] += stats[key]
        for bucket, count in stats["histogram"].items():
            histogram[bucket] = histogram.get(bucket, 0) + count
        for status, count in stats["statuses"].items():
            statuses[str(status)] = statuses.get(str(status), 0) + count
        for error, count in stats["errors"].items():
            errors[error] = errors.get(error, 0) + count
    expected = sum(published[name] for name in names)
    result = {
        "pollers": args.pollers,
        "connected": connected,
        "channels": args.channels,
        "rate": args.rate,
        "seconds": args.seconds,
        "publishers": publishers,
        "published": sum(published.values()),
        "publish_seconds": round(publish_seconds, 2),
        # 201s per second, to the last one; both rates count one interval per event (n events
        # sent on schedule take (n - 1) / rate seconds from first to last, plus one interval)
        "achieved_rate": round(sum(published.values()) / (publish_seconds + 1 / args.rate), 1) if publish_seconds else None,
        # POSTs sent per second, first to last: whether the offered load was kept up
        "sent_rate": round(sum(behind.values()) / (send_seconds + 1 / args.rate), 1) if behind else None,
        "publish_p50_ms": percentile(answered, 0.50),
        "publish_p99_ms": percentile(answered, 0.99),
        "behind_p50_ms": percentile(behind, 0.50),
        "behind_p99_ms": percentile(behind, 0.99),
        "behind_max_ms": percentile(behind, 1.0),
        # the last 201 after the last POST's scheduled time: what the achieved rate lost at the end
        "tail_ms": round((publish_seconds - (int(args.rate * args.seconds) - 1) / args.rate) * 1000, 1) if publish_seconds else None,
        "answers": sum(statuses.values()),
        "expected_deliveries": expected,
        **total,
        "missing": expected - total["delivered"],
        "p50_ms": percentile(histogram, 0.50),
        "p99_ms": percentile(histogram, 0.99),
        "max_ms": percentile(histogram, 1.0),
        "statuses": statuses,
        "errors": errors,
        # the server's share of one core while publishing: near 1.0, the server is the limit
        "server_cpu": round((cpu_after - cpu_before) / publish_seconds, 2) if cpu_before is not None and cpu_after is not None and publish_seconds else None,
    }
    print(json.dumps(result), flush=True)
    return 0 if not errors and result["missing"] == 0 and not total["duplicates"] and not total["gaps"] else 1


if __name__ == "__main__":
    sys.exit(main())
