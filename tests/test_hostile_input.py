"""Hostile and broken input against a real server process (python -m longpoll), over raw sockets.

Every answer to bad input is a 4xx, never a 5xx; the server keeps answering good requests
throughout, and its log never shows a traceback or an ERROR line. Also: each explicit limit
(--max-held-polls, --max-header-size, --keepalive-timeout, --header-timeout) is tested,
clients that vanish mid-poll free their held poll and its memory, and slow clients are cut off.

LONGPOLL_TEST_DISCONNECTS (default 10000) sets how many clients vanish mid-poll in the RSS test,
LONGPOLL_TEST_FUZZ_EXAMPLES (default 400) how many requests Hypothesis generates.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import re
import resource
import socket
import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ROOT, ServiceProcess, get, wait_until_held

STATUS_LINE = re.compile(rb"HTTP/(\d)\.(\d) (\d{3}) ")
HEAD_END = b"\r\n\r\n"
HEADER_TIMEOUT = 2.0


# --- raw HTTP over a socket -----------------------------------------------------------------


def read_answers(sock: socket.socket, expected: int | None = None, timeout: float = 5.0) -> tuple[list[int], bool]:
    """Read responses until `expected` of them came, the peer closed, or `timeout` passed.

    Returns the status codes and whether the server closed the connection.
    """
    sock.settimeout(0.2)
    buffer = b""
    statuses: list[int] = []
    closed = False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (expected is None or len(statuses) < expected):
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            closed = True
            break
        if not chunk:
            closed = True
            break
        buffer += chunk
        while True:  # take every complete response off the front of the buffer
            head, found, rest = buffer.partition(HEAD_END)
            if not found:
                break
            match = STATUS_LINE.match(head)
            assert match, f"not an HTTP response: {buffer[:200]!r}"
            length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
            size = int(length.group(1)) if length else 0
            if len(rest) < size:
                break
            statuses.append(int(match.group(3)))
            buffer = rest[size:]
    return statuses, closed


def exchange(port: int, data: bytes, expected: int | None = None, half_close: bool = False, timeout: float = 5.0):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        try:
            sock.sendall(data)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may close as soon as it has seen enough
        return read_answers(sock, expected, timeout)


def request(path: bytes = b"/", method: bytes = b"GET", headers: bytes = b"", version: bytes = b"HTTP/1.1") -> bytes:
    return method + b" " + path + b" " + version + b"\r\nHost: 127.0.0.1\r\n" + headers + b"\r\n"


def assert_healthy(service: ServiceProcess, port: int) -> None:
    assert service.proc.poll() is None, "\n".join(service.lines)
    status, _, _ = get(port, "/healthz", timeout=5)
    assert status == 200


def assert_clean_log(service: ServiceProcess) -> None:
    assert service.count(r"Traceback|ERROR|status=5\d\d") == 0, "\n".join(service.lines[-50:])


def rss_kib(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def start_server(*args: str) -> ServiceProcess:
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT)}
    return ServiceProcess([sys.executable, "-m", "longpoll", "--port", "0", *args], env=env)


@pytest.fixture(scope="module")
def hostile():
    """One server for the whole barrage: answers at once, cuts slow heads after 2 s."""
    service = start_server("--immediate-ratio", "1", "--header-timeout", str(HEADER_TIMEOUT), "--seed", "5")
    port = service.port()
    yield service, port
    try:
        assert_healthy(service, port)
        assert_clean_log(service)
    finally:
        service.stop()


@pytest.fixture
def servers():
    started: list[ServiceProcess] = []

    def start(*args: str) -> tuple[ServiceProcess, int]:
        service = start_server(*args)
        started.append(service)
        return service, service.port()

    yield start
    for service in started:
        service.stop()


# --- hostile requests, one by one -----------------------------------------------------------

BAD = b"4xx"  # any 4xx
CASES = {
    "random bytes": (bytes(range(256)) * 8, [BAD]),
    "random bytes after a method": (b"GET " + os.urandom(2000), [BAD]),
    "header line over 8 KB": (request(headers=b"X-Big: " + b"a" * 9000 + b"\r\n"), [BAD]),
    "request line over 8 KB": (request(path=b"/" + b"a" * 9000), [BAD]),
    "10,000 headers": (request(headers=b"".join(b"X-H%d: v\r\n" % i for i in range(10000))), [BAD]),
    "header without colon": (request(headers=b"no colon here\r\n"), [BAD]),
    "NUL in a header": (request(headers=b"X-A: a\x00b\r\n"), [BAD]),
    "control byte in method": (request(method=b"GE\x01T"), [BAD]),
    "unknown method": (request(method=b"FROBNICATE"), [BAD]),
    "lower-case method": (request(method=b"get"), [BAD]),
    "POST": (request(method=b"POST", headers=b"Content-Length: 0\r\n"), [405]),
    "DELETE": (request(method=b"DELETE"), [405]),
    "HTTP/9.9": (request(version=b"HTTP/9.9"), [BAD]),
    "no version": (b"GET /\r\n\r\n", None),  # aiohttp takes it as HTTP/0.9: any non-5xx
    "body on GET": (request(headers=b"Content-Length: 11\r\n") + b"hello world", [200]),
    "chunked body on GET": (request(headers=b"Transfer-Encoding: chunked\r\n") + b"5\r\nhello\r\n0\r\n\r\n", [200]),
    "bad chunk size": (request(method=b"POST", headers=b"Transfer-Encoding: chunked\r\n") + b"zz\r\n", [BAD]),
    "negative Content-Length": (request(headers=b"Content-Length: -1\r\n"), [BAD]),
    "two Content-Lengths": (request(headers=b"Content-Length: 1\r\nContent-Length: 2\r\n"), [BAD]),
    "invalid percent-encoding in path": (request(path=b"/%zz%%/%C0%AF"), [404]),
    "invalid percent-encoding in query": (request(path=b"/?a=%zz&%%=1"), [200]),
    "very long path under the limit": (request(path=b"/" + b"x" * 8000), [404]),
    "path with dot segments": (request(path=b"/../../etc/passwd"), [404]),
    "absolute-form target": (request(path=b"http://evil.example/healthz"), None),
    "HTTP/1.0": (request(version=b"HTTP/1.0"), [200]),
    "pipelined": (request() + request(path=b"/healthz") + request(path=b"/nope"), [200, 200, 404]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_request_gets_a_4xx_and_server_stays_up(hostile, name):
    service, port = hostile
    data, expected = CASES[name]
    statuses, _ = exchange(port, data, expected=len(expected) if expected else None, timeout=3)
    if expected is None:
        assert all(s < 500 for s in statuses), statuses
    else:
        assert len(statuses) == len(expected), (name, statuses)
        for got, want in zip(statuses, expected):
            assert (400 <= got < 500) if want == BAD else got == want, (name, statuses)
    assert_healthy(service, port)


def test_truncated_request_lines_are_dropped_or_timed_out(hostile):
    service, port = hostile
    for cut in (b"G", b"GET", b"GET /", b"GET / HTT", b"GET / HTTP/1.1\r\nHost: x"):
        statuses, closed = exchange(port, cut, half_close=True)  # client gives up: server drops it
        assert closed and all(400 <= s < 500 for s in statuses), (cut, statuses)
    started = time.monotonic()
    statuses, closed = exchange(port, b"GET / HTT", timeout=HEADER_TIMEOUT + 3)  # client waits: 408
    assert statuses == [408] and closed
    assert HEADER_TIMEOUT - 0.1 <= time.monotonic() - started <= HEADER_TIMEOUT + 1.5
    assert_healthy(service, port)


def test_good_requests_are_answered_during_a_barrage(hostile):
    service, port = hostile
    garbage = [data for data, _ in CASES.values()]
    for i in range(200):
        with socket.create_connection(("127.0.0.1", port)) as sock:
            try:
                sock.sendall(garbage[i % len(garbage)])
            except OSError:
                pass
        if i % 20 == 0:
            started = time.monotonic()
            assert_healthy(service, port)
            assert time.monotonic() - started < 1.0


# --- fuzzing --------------------------------------------------------------------------------

FUZZ_EXAMPLES = int(os.environ.get("LONGPOLL_TEST_FUZZ_EXAMPLES", "400"))
TOKEN = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=20)
ANY_BYTES = st.binary(max_size=300)
PRINTABLE = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=60)
FUZZ_RESULTS = {"examples": 0, "statuses": {}}


def _mostly(draw, good, bad):
    """Draw from `good` 9 times in 10, else from `bad`: valid-looking requests reach the app."""
    return draw(bad) if draw(st.integers(0, 9)) == 0 else draw(good)


@st.composite
def fuzzed_requests(draw) -> bytes:
    if draw(st.integers(0, 9)) == 0:
        return draw(ANY_BYTES)  # plain garbage, 1 in 10
    method = _mostly(draw, st.sampled_from([b"GET", b"GET", b"GET", b"HEAD", b"POST", b"PUT", b"OPTIONS", b"PATCH"]), TOKEN.map(str.encode) | ANY_BYTES)
    path = _mostly(
        draw,
        st.sampled_from([b"/", b"/healthz", b"/nope", b"*"]) | PRINTABLE.map(lambda t: b"/" + t.encode()),
        st.binary(max_size=200).map(lambda b: b"/" + b),
    )
    version = _mostly(draw, st.sampled_from([b"HTTP/1.1", b"HTTP/1.0"]), st.sampled_from([b"HTTP/2.0", b"HTTP/1.1x", b""]) | ANY_BYTES)
    header = st.tuples(TOKEN.map(str.encode), PRINTABLE.map(str.encode)).map(lambda kv: kv[0] + b": " + kv[1])
    odd_header = st.tuples(ANY_BYTES, st.binary(max_size=100)).map(lambda kv: kv[0] + b": " + kv[1])
    headers = draw(st.lists(header, max_size=12))
    if draw(st.integers(0, 4)) == 0:
        headers.insert(draw(st.integers(0, len(headers))), draw(odd_header))
    if draw(st.booleans()):
        headers.append(draw(st.sampled_from([b"Content-Length: 5", b"Content-Length: x", b"Transfer-Encoding: chunked", b"Connection: close", b"Expect: 100-continue", b"Upgrade: websocket", b"Connection: keep-alive"])))
    body = draw(ANY_BYTES) if draw(st.booleans()) else b""
    return method + b" " + path + b" " + version + b"\r\n" + b"".join(h + b"\r\n" for h in headers) + b"\r\n" + body


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(data=fuzzed_requests())
def _fuzz_one(port: int, data: bytes) -> None:
    FUZZ_RESULTS["examples"] += 1
    statuses, closed = exchange(port, data, half_close=True, timeout=HEADER_TIMEOUT + 3)
    for status in statuses:
        FUZZ_RESULTS["statuses"][status] = FUZZ_RESULTS["statuses"].get(status, 0) + 1
    assert all(s < 500 for s in statuses), (data, statuses)
    assert closed, "a half-closed connection must be closed by the server"


def test_fuzzed_requests_never_get_a_5xx(hostile):
    service, port = hostile
    _fuzz_one(port)
    print(f"\nfuzz: {FUZZ_RESULTS['examples']} generated requests, answers by status: {sorted(FUZZ_RESULTS['statuses'].items())}")
    assert FUZZ_RESULTS["examples"] >= min(FUZZ_EXAMPLES, 50)
    assert_healthy(service, port)


# --- the explicit limits --------------------------------------------------------------------


def test_max_held_polls_answers_503_with_retry_after(servers):
    service, port = servers("--max-held-polls", "5", "--immediate-ratio", "0", "--min-delay", "30", "--max-delay", "30", "--timeout", "60")
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(5)]
    try:
        for sock in socks:
            sock.sendall(request())
        wait_until_held(port, 5)
        status, headers, _ = get(port, "/")
        assert (status, headers.get("retry-after")) == (503, "1")
        assert_healthy(service, port)
    finally:
        for sock in socks:
            sock.close()


def test_max_header_size_is_enforced(servers):
    service, port = servers("--max-header-size", "1024", "--immediate-ratio", "1")
    ok, _ = exchange(port, request(headers=b"X-A: " + b"a" * 1000 + b"\r\n"), expected=1)
    too_big, _ = exchange(port, request(headers=b"X-A: " + b"a" * 1100 + b"\r\n"), expected=1)
    long_line, _ = exchange(port, request(path=b"/" + b"a" * 1100), expected=1)
    assert (ok, too_big, long_line) == ([200], [400], [400])
    service.wait_for_line(r"WARNING server: bad request status=400 error=LineTooLong")
    assert_clean_log(service)


def test_keepalive_timeout_closes_idle_connections(servers):
    _, port = servers("--keepalive-timeout", "1", "--immediate-ratio", "1")
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(request())
        answered = time.monotonic()
        statuses, closed = read_answers(sock, expected=1)
        assert statuses == [200] and not closed
        statuses, closed = read_answers(sock, timeout=5)  # now idle: the server closes it
        idle = time.monotonic() - answered
    assert closed and statuses == []
    assert 0.9 <= idle <= 2.5, idle


def test_keepalive_connection_is_reused_within_the_timeout(servers):
    _, port = servers("--keepalive-timeout", "3", "--header-timeout", "1", "--immediate-ratio", "1")
    with socket.create_connection(("127.0.0.1", port)) as sock:
        for pause in (0, 1.5, 0.2):  # idle longer than --header-timeout: still served
            time.sleep(pause)
            sock.sendall(request())
            statuses, closed = read_answers(sock, expected=1)
            assert statuses == [200] and not closed


def test_header_timeout_does_not_cut_held_polls_or_slow_but_timely_heads(servers):
    service, port = servers("--header-timeout", "1", "--immediate-ratio", "0", "--min-delay", "2", "--max-delay", "2", "--timeout", "5")
    with socket.create_connection(("127.0.0.1", port)) as sock:
        for part in (b"GET / HT", b"TP/1.1\r\nHost: x\r\n", b"\r\n"):
            sock.sendall(part)
            time.sleep(0.3)
        statuses, closed = read_answers(sock, expected=1, timeout=5)  # held 2 s > 1 s head deadline
    assert statuses == [200] and not closed
    assert service.count("request head timed out") == 0


def _slow_client(port: int, results: list, stop_at: float) -> None:
    """Send a request head one byte per second until the server closes the connection."""
    head = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"s" * 100
    with socket.create_connection(("127.0.0.1", port)) as sock:
        started = time.monotonic()
        sock.settimeout(1.0)
        answer = b""
        for byte in head:
            try:
                sock.sendall(bytes([byte]))
                chunk = sock.recv(4096)  # waits up to the 1 s between bytes
                answer += chunk
                if not chunk or time.monotonic() > stop_at:
                    break
            except socket.timeout:
                continue
            except OSError:
                break
        results.append((time.monotonic() - started, answer))


async def test_slow_header_clients_are_cut_off_and_cannot_exhaust_the_server(servers):
    count = 200
    service, port = servers("--header-timeout", "2", "--immediate-ratio", "1")
    stop_at = time.monotonic() + 20
    results: list = []
    asyncio.get_running_loop().set_default_executor(concurrent.futures.ThreadPoolExecutor(count + 8))
    attack = asyncio.gather(*(asyncio.to_thread(_slow_client, port, results, stop_at) for _ in range(count)))
    latencies = []
    while not attack.done():  # good requests keep being answered quickly during the attack
        started = time.monotonic()
        status, _, _ = await asyncio.to_thread(get, port, "/", 5)
        latencies.append(time.monotonic() - started)
        assert status == 200
        await asyncio.wait([attack], timeout=0.2)
    await attack
    cut_after = sorted(seconds for seconds, _ in results)
    print(f"\nslow clients: {count}, cut off after {cut_after[0]:.2f}..{cut_after[-1]:.2f} s; good requests: "
          f"{len(latencies)}, slowest {max(latencies):.3f} s")
    assert len(results) == count
    assert all(answer.startswith(b"HTTP/1.1 408 ") for _, answer in results)
    assert 1.9 <= cut_after[0] and cut_after[-1] <= 4.0
    assert max(latencies) < 1.0
    assert service.count("request head timed out") == count
    assert_clean_log(service)


# --- clients that vanish mid-poll -----------------------------------------------------------

DISCONNECTS = int(os.environ.get("LONGPOLL_TEST_DISCONNECTS", "10000"))
BATCH = int(os.environ.get("LONGPOLL_TEST_DISCONNECT_BATCH", "1000"))


async def _healthz_held(port: int) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = await reader.read()
    writer.close()
    return int(re.search(rb'"held_polls": (\d+)', data).group(1))


async def _wait_held(port: int, condition, timeout: float = 30.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        held = await _healthz_held(port)
        if condition(held):
            return held
        assert time.monotonic() < deadline, f"held polls stuck at {held}"
        await asyncio.sleep(0.02)


async def _vanishing_batch(port: int, size: int) -> None:
    """`size` clients each start a poll, wait until all are held, then go away."""
    connections = await asyncio.gather(*(asyncio.open_connection("127.0.0.1", port) for _ in range(size)))
    for _, writer in connections:
        writer.write(request())
    await _wait_held(port, lambda held: held >= size)
    for _, writer in connections:
        writer.transport.abort()  # RST, as a killed client would
    await _wait_held(port, lambda held: held == 0)


async def test_clients_vanishing_mid_poll_free_their_memory(servers):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    service, port = servers("--immediate-ratio", "0", "--min-delay", "60", "--max-delay", "60", "--timeout", "120")
    pid = service.proc.pid
    fresh = rss_kib(pid)
    await _vanishing_batch(port, BATCH)  # warm up: the allocator's pools, the parser, logging
    before = rss_kib(pid)
    started = time.monotonic()
    peak = before
    for done in range(0, DISCONNECTS, BATCH):
        await _vanishing_batch(port, min(BATCH, DISCONNECTS - done))
        peak = max(peak, rss_kib(pid))
    seconds = time.monotonic() - started
    after = rss_kib(pid)
    deadline = time.monotonic() + 10
    while (gone := service.count("outcome=client-gone")) < DISCONNECTS + BATCH and time.monotonic() < deadline:
        await asyncio.sleep(0.05)  # the log reader thread may lag behind the server
    print(f"\n{DISCONNECTS} clients vanished mid-poll in {seconds:.1f} s: RSS fresh {fresh} KiB, after warm-up {before} KiB, "
          f"peak {peak} KiB, after {after} KiB ({100 * (after - before) / before:+.1f} %); client-gone lines {gone}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert gone == DISCONNECTS + BATCH  # one line per vanished client, warm-up included
    assert after <= before * 1.10
    assert_healthy(service, port)
    assert_clean_log(service)
