"""End-to-end tests of dist/long-poll in an empty root: only the binary, /tmp and /proc,
an unprivileged user and an empty environment. They also prove that the modules the
freezing recipe leaves out are not needed by any feature."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import stat
import subprocess

import pytest

from conftest import get, wait_until_held

pytestmark = pytest.mark.binary


def test_binary_is_one_executable_file_with_mode_0755(binary):
    mode = stat.S_IMODE(binary.stat().st_mode)
    assert mode == 0o755
    with binary.open("rb") as f:
        assert f.read(4) == b"\x7fELF"


def test_version_and_help_in_empty_root(empty_root):
    version = empty_root.run("--version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith("long-poll ")
    for command in ("serve", "client", "healthcheck"):
        result = empty_root.run(command, "--help")
        assert result.returncode == 0, result.stderr
        assert "usage: long-poll" in result.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (("--port", "abc"), "--port='abc' is not a whole number"),
        (("--timeout", "-1"), "--timeout='-1' must be greater than 0"),
        (("--min-delay", "5", "--max-delay", "2"), "must not be greater than --max-delay"),
        (("--immediate-ratio", "1.5"), "--immediate-ratio='1.5' must be between 0 and 1"),
        (("--frobnicate",), "unrecognized arguments: --frobnicate"),
    ],
)
def test_bad_flags_exit_2_with_one_line(empty_root, args, message):
    result = empty_root.run(*args)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr
    assert empty_root.tmp_entries() == []


def test_serves_immediate_delayed_and_timed_out_polls(empty_root):
    # Seeded, with short delays: immediate answers, delayed events and 304s all happen.
    service = empty_root.start(
        "--port", "0", "--timeout", "0.3", "--min-delay", "0.05", "--max-delay", "0.5", "--seed", "7"
    )
    port = service.port()
    answers = [get(port, "/") for _ in range(40)]
    statuses = {status for status, _, _ in answers}
    assert statuses == {200, 304}
    events = {json.loads(body)["event"] for status, _, body in answers if status == 200}
    assert events == {"empty", "full", "new", "removed"}
    assert all(headers["content-type"] == "application/json" for status, headers, _ in answers if status == 200)
    assert service.count(r"outcome=timeout") >= 1
    assert service.count(r"status=200 outcome=\w+ seconds=0\.[0-9]*[1-9]") >= 1  # a delayed event
    status, _, body = get(port, "/healthz")
    assert (status, json.loads(body)["status"]) == (200, "ok")
    status, _, body = get(port, "/nope")
    assert status == 404 and json.loads(body)["error"] == "not found"


def test_sigterm_answers_held_polls_exits_0_and_cleans_tmp(empty_root):
    service = empty_root.start("--port", "0", "--immediate-ratio", "0", "--min-delay", "30", "--max-delay", "30", "--timeout", "60")
    port = service.port()
    # One extraction (the onedir layout): staticx's directory holds the program and its folder,
    # and nothing else is unpacked beside it (no PyInstaller _MEI directory).
    (extracted,) = empty_root.tmp_entries()
    assert extracted.startswith("staticx-")
    assert {"long-poll", "libc.so.6", "base_library.zip"} <= set(os.listdir(empty_root.path / "tmp" / extracted))
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        polls = [pool.submit(get, port, "/") for _ in range(4)]
        wait_until_held(port, 4)
        service.send(signal.SIGTERM)
        answers = [poll.result(timeout=5) for poll in polls]
    assert [status for status, _, _ in answers] == [304] * 4
    assert service.wait(timeout=5) == 0
    service.wait_for_line(r"stopped")
    assert empty_root.tmp_entries() == []


def test_healthcheck_exit_codes(empty_root):
    down = empty_root.run("healthcheck", "--port", "1")
    assert down.returncode == 1
    assert "connection refused" in down.stderr.lower()
    service = empty_root.start("--port", "0")
    port = service.port()
    up = empty_root.run("healthcheck", "--port", str(port))
    assert up.returncode == 0, up.stderr


def test_enable_client_logs_events(empty_root):
    service = empty_root.start(
        "--port", "0", "--timeout", "0.5", "--min-delay", "0.1", "--max-delay", "1",
        env={"ENABLE_CLIENT": "true"},
    )  # fmt: skip
    service.wait_for_line(r"client: event received event=(empty|full|new|removed) took=", timeout=15)
    service.wait_for_line(r"client: no event, polling again status=304", timeout=15)
    service.send(signal.SIGINT)
    assert service.wait(timeout=5) == 0
    assert empty_root.tmp_entries() == []


def test_json_logs_are_one_object_per_line(empty_root):
    service = empty_root.start("--port", "0", "--log-format", "json", "--immediate-ratio", "1")
    port = service.port()
    get(port, "/")
    service.wait_for_line(r'"outcome": "(empty|full|new|removed)"')
    service.send(signal.SIGTERM)
    assert service.wait(timeout=5) == 0
    for line in service.lines:
        assert isinstance(json.loads(line), dict)


def test_bad_environment_variable_is_a_clear_error(empty_root):
    service = empty_root.start(env={"ENABLE_CLIENT": "yes"})
    assert service.wait(timeout=30) == 2
    assert service.lines == ["long-poll: error: ENABLE_CLIENT='yes' must be one of 1/t/true/TRUE/True or 0/f/false/FALSE/False"]


def test_runs_as_any_unprivileged_uid(empty_root):
    result = empty_root.run("--version")
    assert result.returncode == 0
    other = empty_root.argv("--version", uid=12345)
    assert subprocess.run(other, env={}, capture_output=True, timeout=30).returncode == 0
    assert os.listdir(empty_root.path / "tmp") == []


def post(port: int, path: str, body: bytes) -> tuple[int, bytes]:
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        connection.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_events_publish_read_by_cursor_410_and_follow(empty_root):
    service = empty_root.start("--port", "0", "--retention-count", "3", "--max-poll-timeout", "1")
    port = service.port()
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        held = pool.submit(get, port, "/events/news?cursor=0")
        wait_until_held(port, 1)
        status, body = post(port, "/events/news", b'{"n": 0}')
        assert status == 201 and json.loads(body)["id"] == 1
        status, _, body = held.result(timeout=5)
    answer = json.loads(body)
    assert status == 200 and [e["data"] for e in answer["events"]] == [{"n": 0}] and answer["cursor"] == 1
    for n in range(1, 5):
        assert post(port, "/events/news", json.dumps({"n": n}).encode())[0] == 201
    status, _, body = get(port, "/events/news?cursor=0")
    assert status == 410 and json.loads(body)["oldest_cursor"] == 2
    status, _, body = get(port, "/events?channel=news&cursor=3")
    assert status == 200 and [e["id"] for e in json.loads(body)["events"]] == [4, 5]
    status, _, body = get(port, "/events/news?cursor=5&timeout=0.2")
    assert status == 200 and json.loads(body)["events"] == [] and json.loads(body)["cursor"] == 5
    status, headers, body = get(port, "/metrics")
    assert status == 200 and "longpoll_events_published_total 5" in body.decode()
    client = empty_root.start("client", "--url", f"http://127.0.0.1:{port}/", "--follow", "news", "--cursor", "0", "--timeout", "1")
    client.wait_for_line(r"missed 2 events")
    client.wait_for_line(r'^\{"channel":"news","id":5,')
    assert client.count(r'^\{"channel":"news","id":') == 3
    client.send(signal.SIGTERM)
    assert client.wait(timeout=5) == 0
    service.send(signal.SIGTERM)
    assert service.wait(timeout=5) == 0
    assert empty_root.tmp_entries() == []
