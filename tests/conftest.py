"""Shared test helpers: run the service as a process and talk HTTP to it on loopback."""

from __future__ import annotations

import asyncio
import http.client
import io
import json
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from longpoll.logsetup import configure_logging
from longpoll.server import create_app
from longpoll.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
BINARY = ROOT / "dist" / "long-poll"
LISTENING = re.compile(r'listening.*url"?[=:] ?"?http://[^ "]+:(\d+)/')


class ServiceProcess:
    """A long-poll process whose stderr lines are collected as they come."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None, signal_child: bool = False) -> None:
        self.argv = argv
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self.proc = subprocess.Popen(
            argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self._signal_child = signal_child
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for_line(self, pattern: str | re.Pattern[str], timeout: float = 10.0) -> re.Match[str]:
        """Wait until a line matches; fail with the output so far if it does not come."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        seen = 0
        with self._changed:
            while True:
                for line in self.lines[seen:]:
                    match = regex.search(line)
                    if match:
                        return match
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"no line matching {regex.pattern!r}; output:\n" + "\n".join(self.lines))
                self._changed.wait(left)

    def count(self, pattern: str) -> int:
        regex = re.compile(pattern)
        with self._changed:
            return sum(1 for line in self.lines if regex.search(line))

    def port(self, timeout: float = 15.0) -> int:
        return int(self.wait_for_line(LISTENING, timeout).group(1))

    def target_pid(self) -> int:
        """The process that should get signals: the service itself, not unshare around it."""
        if not self._signal_child:
            return self.proc.pid
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        return int(children[0])

    def send(self, signum: int) -> None:
        os.kill(self.target_pid(), signum)

    def wait(self, timeout: float) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(timeout)
        return code

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send(signal.SIGKILL)
            except (OSError, IndexError, ValueError):
                pass
            self.proc.kill()
            self.proc.wait(10)


def get(port: int, path: str = "/", timeout: float = 15.0) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def wait_until_held(port: int, count: int, timeout: float = 10.0) -> None:
    """Poll /healthz until the server reports `count` held polls (no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    held = None
    while time.monotonic() < deadline:
        held = json.loads(get(port, "/healthz")[2])["held_polls"]
        if held >= count:
            return
        time.sleep(0.01)
    raise AssertionError(f"server holds {held} polls, expected {count}")


async def hold_polls(port: int, count: int):
    """Open `count` connections, each with a poll the server holds; return their streams."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    connections = await asyncio.gather(*(asyncio.open_connection("127.0.0.1", port) for _ in range(count)))
    for _, writer in connections:
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    deadline = time.monotonic() + 20
    while (held := json.loads((await asyncio.to_thread(get, port, "/healthz"))[2])["held_polls"]) < count:
        assert time.monotonic() < deadline, f"only {held} polls held"
        await asyncio.sleep(0.02)
    return connections


async def answer_of(reader: asyncio.StreamReader) -> bytes:
    """The status line the held poll got, or what went wrong instead."""
    try:
        return await asyncio.wait_for(reader.readline(), 5)
    except (ConnectionResetError, asyncio.TimeoutError) as exc:
        return type(exc).__name__.encode()


@pytest.fixture
def log_stream():
    """Where the app under test logs, to assert on its lines."""
    return io.StringIO()


@pytest.fixture
def make_client(aiohttp_client, log_stream):
    """An aiohttp test client for create_app(Settings(**overrides)), seeded, logging to log_stream."""

    async def make(**overrides):
        settings = Settings(**overrides)
        app = create_app(settings, configure_logging("text", log_stream).getChild("server"), random.Random(1))
        return await aiohttp_client(app, server_kwargs={"handler_cancellation": True})

    return make


@pytest.fixture
def source_service():
    """Start `python -m longpoll ARGS...` and stop it after the test."""
    started: list[ServiceProcess] = []

    def start(*args: str, env: dict[str, str] | None = None) -> ServiceProcess:
        environ = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT)}
        environ.update(env or {})
        service = ServiceProcess([sys.executable, "-m", "longpoll", *args], env=environ)
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()


class EmptyRoot:
    """A root directory with only the binary, an empty /tmp (mode 1777) and /proc."""

    def __init__(self, path: Path, binary: Path) -> None:
        self.path = path
        self.services: list[ServiceProcess] = []
        path.mkdir()
        (path / "tmp").mkdir()
        (path / "tmp").chmod(0o1777)
        (path / "proc").mkdir()
        shutil.copy2(binary, path / "long-poll")

    def tmp_entries(self) -> list[str]:
        return sorted(os.listdir(self.path / "tmp"))

    def argv(self, *args: str, uid: int = 65534) -> list[str]:
        return [
            shutil.which("unshare") or "/usr/bin/unshare",
            "--fork", "--pid", "--mount", f"--mount-proc={self.path}/proc",
            shutil.which("chroot") or "/usr/sbin/chroot", f"--userspec={uid}:{uid}",
            str(self.path), "/long-poll", *args,
        ]  # fmt: skip

    def run(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(*args), env={}, capture_output=True, text=True, timeout=timeout)

    def start(self, *args: str, env: dict[str, str] | None = None) -> ServiceProcess:
        # env -i: the binary sees exactly `env`, by default nothing at all.
        argv = ["/usr/bin/env", "-i", *(f"{k}={v}" for k, v in (env or {}).items()), *self.argv(*args)]
        service = ServiceProcess(argv, env={}, signal_child=True)
        self.services.append(service)
        return service

    def close(self) -> None:
        for service in self.services:
            service.stop()


@pytest.fixture(scope="session")
def binary() -> Path:
    """dist/long-poll, built by `make binary` (which `make test` runs first)."""
    if not BINARY.exists():
        subprocess.run(["make", "binary"], cwd=ROOT, check=True)
    return BINARY


@pytest.fixture
def empty_root(tmp_path: Path, binary: Path):
    if os.geteuid() != 0:
        pytest.fail("the empty-root tests need root (chroot, unshare)")
    root = EmptyRoot(tmp_path / "root", binary)
    yield root
    root.close()
