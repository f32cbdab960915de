"""The client against a server that dies and comes back: it never exits, reconnects within its
backoff cap, logs one line per failed attempt, and many clients do not come back in lockstep.

scripts/soak_client_restarts.py is the long form (more restarts, random outage lengths).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import re
import signal
import sys
import time

from conftest import ROOT, ServiceProcess
from longpoll.client import Backoff, run_client

BACKOFF_INITIAL, BACKOFF_MAX = 0.05, 0.5
RESTARTS = int(os.environ.get("LONGPOLL_TEST_RESTARTS", "10"))
SUCCESS = r"client: (event received|no event, polling again)"
FAILURE = re.compile(r"client: poll failed, retrying .*attempt=(\d+)")


def _env() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT)}


def start_server(port: int, *args: str) -> ServiceProcess:
    server = ServiceProcess(
        [sys.executable, "-m", "longpoll", "--host", "127.0.0.1", "--port", str(port), *args], env=_env()
    )
    server.port()  # wait until it listens
    return server


def wait_for_count(service: ServiceProcess, pattern: str, count: int, timeout: float) -> float:
    """Wait until `pattern` has matched `count` lines; return when that was seen."""
    deadline = time.monotonic() + timeout
    while service.count(pattern) < count:
        assert time.monotonic() < deadline, f"fewer than {count} lines matching {pattern!r}:\n" + "\n".join(service.lines[-30:])
        assert service.proc.poll() is None, "the client exited:\n" + "\n".join(service.lines[-30:])
        with service._changed:  # woken by the next output line, or after 50 ms
            service._changed.wait(0.05)
    return time.monotonic()


def test_client_survives_ten_server_restarts(unused_tcp_port):
    port = unused_tcp_port
    server_args = ("--immediate-ratio", "0.5", "--min-delay", "0.05", "--max-delay", "0.3", "--timeout", "1")
    server = start_server(port, *server_args)
    client = ServiceProcess(
        [sys.executable, "-m", "longpoll", "client", "--url", f"http://127.0.0.1:{port}/", "--timeout", "1",
         "--backoff-initial", str(BACKOFF_INITIAL), "--backoff-max", str(BACKOFF_MAX), "--seed", "3"],
        env=_env(),
    )  # fmt: skip
    servers = [server]
    reconnects, outages = [], []
    try:
        wait_for_count(client, SUCCESS, 1, timeout=15)
        for _ in range(RESTARTS):
            failures_before = len(_failure_attempts(client))
            server.stop()  # SIGKILL: no goodbye, held polls are cut off
            killed = time.monotonic()
            wait_for_count(client, FAILURE.pattern, failures_before + 1, timeout=5)
            time.sleep(0.3)  # the outage: the client keeps retrying meanwhile
            server = start_server(port, *server_args)
            servers.append(server)
            listening = time.monotonic()
            successes = client.count(SUCCESS)
            back = wait_for_count(client, SUCCESS, successes + 1, timeout=10)
            reconnects.append(back - listening)
            attempts = _failure_attempts(client)[failures_before:]
            outages.append((time.monotonic() - killed, attempts))
        assert client.proc.poll() is None, "the client exited"
        client.send(signal.SIGTERM)
        assert client.wait(timeout=3) == 0
    finally:
        client.stop()
        for each in servers:
            each.stop()
    print(f"\n{RESTARTS} restarts: reconnected {min(reconnects):.3f}..{max(reconnects):.3f} s after the server listened; "
          f"failed attempts per outage {[len(a) for _, a in outages]}")
    # Back within the cap: the wait in progress when the server came back is at most BACKOFF_MAX,
    # then one poll (at most --max-delay 0.3 s) must answer; 0.5 s of slack for two processes' logging.
    assert max(reconnects) <= BACKOFF_MAX + 0.3 + 0.5
    for seconds, attempts in outages:
        # One line per attempt, numbered 1, 2, 3...: the count restarts after each success.
        assert attempts == list(range(1, len(attempts) + 1)), attempts
        # Not a tight loop: with full jitter the mean wait is half the cap, which reaches
        # BACKOFF_MAX after 4 attempts; an outage of `seconds` allows only a few dozen tries.
        assert 1 <= len(attempts) <= 10 + 4 * seconds / BACKOFF_MAX, (seconds, attempts)
    assert client.count("Traceback") == 0


def _failure_attempts(client: ServiceProcess) -> list[int]:
    return [int(m.group(1)) for line in list(client.lines) if (m := FAILURE.search(line))]


# --- many clients: full jitter spreads them -------------------------------------------------


class _Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[tuple[str, str, float]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((record.name, record.getMessage(), time.monotonic()))


async def test_two_hundred_clients_do_not_reconnect_in_lockstep(unused_tcp_port):
    clients, initial, maximum = 200, 1.0, 2.0
    port = unused_tcp_port
    server_args = ("--immediate-ratio", "0", "--min-delay", "0.3", "--max-delay", "0.3", "--timeout", "5")
    server = await asyncio.to_thread(start_server, port, *server_args)
    recorder = _Recorder()
    parent = logging.getLogger("lockstep")
    parent.handlers[:] = [recorder]
    parent.setLevel(logging.INFO)
    parent.propagate = False
    seeds = random.Random(1)
    tasks = [
        asyncio.create_task(
            run_client(
                f"http://127.0.0.1:{port}/",
                timeout=6,
                backoff=Backoff(initial, maximum, random.Random(seeds.random())),
                logger=parent.getChild(f"c{i}"),
            )
        )
        for i in range(clients)
    ]
    restarted = None
    try:
        deadline = time.monotonic() + 15
        while len({name for name, message, _ in recorder.records if message == "event received"}) < clients:
            assert time.monotonic() < deadline, "not every client got an event before the restart"
            await asyncio.sleep(0.05)
        server.stop()  # every client loses its held poll at the same moment
        killed = time.monotonic()
        server = await asyncio.to_thread(start_server, port, *server_args)
        restarted = time.monotonic()
        deadline = restarted + maximum + 10
        while True:
            first_back = _first_success_after(recorder.records, killed)
            if len(first_back) == clients:
                break
            assert time.monotonic() < deadline, f"only {len(first_back)} clients came back"
            await asyncio.sleep(0.05)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        server.stop()
    # A poll is held 0.3 s, so the request that succeeds was sent 0.3 s before its answer.
    sent = sorted(t - 0.3 - restarted for t in first_back.values())
    p10, p50, p90 = (sent[int(len(sent) * q)] for q in (0.1, 0.5, 0.9))
    busiest = max(sum(1 for t in sent if start <= t < start + 0.1) for start in sent)
    print(f"\n{clients} clients after a restart (server down {restarted - killed:.2f} s): first successful polls "
          f"sent {sent[0]:+.3f}..{sent[-1]:+.3f} s after it listened; p10 {p10:.3f} p50 {p50:.3f} p90 {p90:.3f}; "
          f"busiest 100 ms window: {busiest} clients")
    # Lockstep would put them all within a few ms. Full jitter spreads them over the cap:
    assert p90 - p10 >= 0.3 * initial
    assert busiest <= clients * 0.25


def _first_success_after(records, since: float) -> dict[str, float]:
    first: dict[str, float] = {}
    for name, message, at in list(records):
        if at > since and message == "event received" and name not in first:
            first[name] = at
    return first


def test_backoff_full_jitter_spreads_and_is_capped():
    rng = random.Random(0)
    delays = [Backoff(1.0, 30.0, rng).next_delay() for _ in range(2000)]
    assert 0 <= min(delays) < 0.01 and 0.99 < max(delays) <= 1.0
    assert 0.45 < sum(delays) / len(delays) < 0.55  # uniform over [0, cap]
    backoff = Backoff(0.05, 0.5, rng)
    caps = []
    for _ in range(10):
        caps.append(backoff.cap())
        assert backoff.next_delay() <= BACKOFF_MAX
    assert caps == [0.05, 0.1, 0.2, 0.4] + [0.5] * 6
