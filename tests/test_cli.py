"""The command line from source: exit codes, signals, ENABLE_CLIENT, and the same in the binary."""

import concurrent.futures
import signal
import subprocess
import sys

import pytest

from conftest import ROOT, get, wait_until_held
from longpoll.cli import main

HOLD = ("--immediate-ratio", "0", "--min-delay", "30", "--max-delay", "30", "--timeout", "60")


def test_bad_flag_is_one_line_and_exit_2(capsys):
    assert main(["--port", "x"], {}) == 2
    assert capsys.readouterr().err == "long-poll: error: --port='x' is not a whole number\n"


def test_bad_environment_is_exit_2(capsys):
    assert main([], {"LONGPOLL_TIMEOUT": "-3"}) == 2
    assert "LONGPOLL_TIMEOUT='-3' must be greater than 0" in capsys.readouterr().err


def test_healthcheck_against_nothing_is_exit_1(unused_tcp_port, capsys):
    assert main(["healthcheck", "--port", str(unused_tcp_port)], {}) == 1


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_answers_held_polls_and_exits_0(source_service, signum):
    service = source_service("--port", "0", *HOLD)
    port = service.port()
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        polls = [pool.submit(get, port, "/") for _ in range(3)]
        wait_until_held(port, 3)
        service.send(signum)
        assert [p.result(timeout=2)[0] for p in polls] == [304, 304, 304]
    assert service.wait(timeout=1.5) == 0
    service.wait_for_line(r"stopping signal=" + signal.Signals(signum).name)
    assert service.count("Traceback") == 0


def test_second_signal_exits_at_once(source_service):
    service = source_service("--port", "0", *HOLD)
    service.port()
    service.send(signal.SIGTERM)
    service.send(signal.SIGTERM)
    code = service.wait(timeout=2)
    assert code in (0, 128 + signal.SIGTERM)  # the first may already have finished


def test_enable_client_runs_client_once_server_listens(source_service):
    service = source_service(
        "--port", "0", "--timeout", "0.3", "--min-delay", "0.05", "--max-delay", "0.6",
        env={"ENABLE_CLIENT": "1"},
    )  # fmt: skip
    service.wait_for_line(r"client: event received event=\w+ took=\d")
    service.wait_for_line(r"client: no event, polling again")
    first_lines = "\n".join(service.lines)
    assert first_lines.index("listening") < first_lines.index("client polling")
    assert service.count("poll failed") == 0  # never polled before the server was up
    service.send(signal.SIGTERM)
    assert service.wait(timeout=2) == 0


def test_client_only_mode_retries_then_stops_cleanly(source_service, unused_tcp_port):
    service = source_service("client", "--url", f"http://127.0.0.1:{unused_tcp_port}/", "--backoff-initial", "0.01", "--backoff-max", "0.05")
    service.wait_for_line(r"poll failed, retrying .*attempt=3")
    service.send(signal.SIGTERM)
    assert service.wait(timeout=2) == 0


def test_port_in_use_is_a_clear_error(source_service):
    first = source_service("--port", "0")
    port = first.port()
    second = source_service("--port", str(port), "--host", "0.0.0.0")
    assert second.wait(timeout=10) == 1
    second.wait_for_line(r"cannot listen .*port=%d" % port)


def test_python_m_longpoll_version():
    result = subprocess.run([sys.executable, "-m", "longpoll", "--version"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("long-poll ")


def test_publish_demo_with_enable_client_follows_the_demo_channel(source_service):
    service = source_service(
        "--port", "0", "--timeout", "0.5", "--min-delay", "0.05", "--max-delay", "0.2", "--publish-demo", "demo",
        env={"ENABLE_CLIENT": "true"},
    )  # fmt: skip
    service.wait_for_line(r"client: following url=http://127.0.0.1:\d+/events/demo")
    service.wait_for_line(r'^\{"channel":"demo","id":3,"time":[0-9.]+,"data":\{"event":"(empty|full|new|removed)"\}\}$')
    assert service.count("poll failed") == 0
    service.send(signal.SIGTERM)
    assert service.wait(timeout=2) == 0


def test_client_follow_prints_events_from_a_cursor(source_service):
    server = source_service("--port", "0")
    port = server.port()
    import http.client
    import json

    for i in range(3):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        connection.request("POST", "/events/news", body=json.dumps({"i": i}))
        assert connection.getresponse().status == 201
        connection.close()
    client = source_service("client", "--url", f"http://127.0.0.1:{port}/", "--follow", "news", "--cursor", "1", "--timeout", "1")
    client.wait_for_line(r'^\{"channel":"news","id":3,.*"data":\{"i":2\}\}$')
    assert client.count(r'"id":1,') == 0 and client.count(r'"id":2,') == 1
    client.send(signal.SIGTERM)
    assert client.wait(timeout=2) == 0
