#!/usr/bin/env python3
"""Soak test: kill and restart the server many times under a running client (long form of
tests/test_client_resilience.py::test_client_survives_ten_server_restarts).

    .venv/bin/python scripts/soak_client_restarts.py --restarts 100 [--binary dist/long-poll]

For each restart it prints how long the client took to get an answer after the server listened,
and how many failed attempts it logged during the outage. Exits 1 if the client ever exited,
took longer than its backoff cap plus one poll to come back, or logged attempts out of order.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUCCESS = re.compile(r"client: (event received|no event, polling again)")
FAILURE = re.compile(r"client: poll failed, retrying .*attempt=(\d+)")


class Proc:
    def __init__(self, argv: list[str]) -> None:
        env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self.changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:  # type: ignore[union-attr]
            with self.changed:
                self.lines.append(line.rstrip("\n"))
                self.changed.notify_all()

    def wait_count(self, regex: re.Pattern[str], count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.changed:
            while sum(1 for line in self.lines if regex.search(line)) < count:
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    return False
                self.changed.wait(min(left, 0.1))
        return True

    def count(self, regex: re.Pattern[str]) -> int:
        with self.changed:
            return sum(1 for line in self.lines if regex.search(line))

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--restarts", type=int, default=100)
    parser.add_argument("--backoff-initial", type=float, default=0.05)
    parser.add_argument("--backoff-max", type=float, default=0.5)
    parser.add_argument("--max-outage", type=float, default=3.0, help="longest outage, seconds (random up to this)")
    parser.add_argument("--binary", help="run this executable instead of python -m longpoll")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    command = [args.binary] if args.binary else [sys.executable, "-m", "longpoll"]
    port = free_port()
    server_args = ["--host", "127.0.0.1", "--port", str(port), "--immediate-ratio", "0.5",
                   "--min-delay", "0.05", "--max-delay", "0.3", "--timeout", "1"]
    listening = re.compile(r"listening")

    def start_server() -> Proc:
        server = Proc(command + server_args)
        if not server.wait_count(listening, 1, 30):
            raise SystemExit("server did not start:\n" + "\n".join(server.lines))
        return server

    server = start_server()
    client = Proc(command + ["client", "--url", f"http://127.0.0.1:{port}/", "--timeout", "1",
                             "--backoff-initial", str(args.backoff_initial), "--backoff-max", str(args.backoff_max)])
    bad = 0
    worst = 0.0
    try:
        if not client.wait_count(SUCCESS, 1, 15):
            raise SystemExit("client never got an answer:\n" + "\n".join(client.lines))
        for n in range(1, args.restarts + 1):
            failures_before = client.count(FAILURE)
            server.kill()
            outage = rng.uniform(0, args.max_outage)
            time.sleep(outage)  # the outage itself: the client retries meanwhile
            server = start_server()
            up = time.monotonic()
            successes = client.count(SUCCESS)
            back = client.wait_count(SUCCESS, successes + 1, args.backoff_max + 10)
            took = time.monotonic() - up
            worst = max(worst, took)
            with client.changed:
                attempts = [int(m.group(1)) for line in client.lines if (m := FAILURE.search(line))][failures_before:]
            ok = back and took <= args.backoff_max + 0.3 + 0.5 and attempts == list(range(1, len(attempts) + 1))
            bad += not ok
            print(f"restart {n:4d}: outage {outage:5.2f} s, {len(attempts):3d} failed attempts, "
                  f"back {took:.3f} s after listening{'' if ok else '  <-- FAIL'}", flush=True)
            if client.proc.poll() is not None:
                print("the client exited", file=sys.stderr)
                return 1
        client.proc.send_signal(signal.SIGTERM)
        code = client.proc.wait(5)
    finally:
        client.kill()
        server.kill()
    print(f"{args.restarts} restarts: worst reconnect {worst:.3f} s, {bad} failures, client exit {code}")
    return 0 if bad == 0 and code == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
