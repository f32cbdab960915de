"""The benchmark (scripts/bench.py) must not rot: its parsers, and a smoke run with tiny sizes.

No test here asserts a timing: the figures depend on the machine. The smoke run takes
about 15-20 s (a few starts of the binary and of the source, 50 held polls, 1 s of wrk).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT

SCRIPTS = ROOT / "scripts"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


bench = load("bench")

WRK_OUTPUT = """\
Running 10s test @ http://127.0.0.1:8000/
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     7.11ms    1.02ms  40.16ms   93.20%
    Req/Sec     4.52k   311.17     4.90k    88.00%
  Latency Distribution
     50%    6.94ms
     75%    7.21ms
     90%    7.63ms
     99%  850.00us
  90001 requests in 10.00s, 14.42MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:   8998.52
Transfer/sec:      1.44MB
"""


def test_parse_wrk():
    parsed = bench.parse_wrk(WRK_OUTPUT)
    assert parsed == {"rps": 8998.52, "p50_ms": 6.94, "p99_ms": 0.85, "errors": 7}


def test_parse_wrk_garbage():
    assert bench.parse_wrk("wrk: connection refused") == {"rps": None, "p50_ms": None, "p99_ms": None, "errors": 0}


def test_stats_and_ratio():
    assert bench.stats([3.0, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0, "runs": [3.0, 1.0, 2.0]}
    assert bench.stats([])["median"] is None
    assert bench.ratio(3, 2) == 1.5
    assert bench.ratio(1, 0) is None
    assert bench.fmt_stats(bench.stats([1000.0, 2000.0, 3000.0]), " KB", 1000, 1) == "2.0 KB (1.0–3.0)"


def test_options():
    args = bench.parse_args(["--quick"])
    assert (args.runs, args.poll_sizes, args.wrk_seconds) == (3, [1000], 3)
    args = bench.parse_args(["--polls", "1000,10_000"])
    assert args.poll_sizes == [1000, 10000] and args.runs == 5
    with pytest.raises(SystemExit):
        bench.parse_args(["--skip", "nonsense"])


def test_events_load_generator_against_the_source(source_service):
    """bench_events_load.py: pollers on channels get every published event once, in order."""
    service = source_service("--port", "0")
    port = service.port()
    done = subprocess.run(
        [sys.executable, str(SCRIPTS / "bench_events_load.py"), "--port", str(port), "--pollers", "30",
         "--channels", "3", "--rate", "60", "--seconds", "1", "--processes", "2", "--grace", "1"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["published"] == 60 and result["expected_deliveries"] == result["delivered"] == 600
    assert result["missing"] == result["duplicates"] == result["gaps"] == 0
    assert result["answers"] >= 30 and result["publish_p50_ms"] is not None  # every poller was answered
    assert result["behind_max_ms"] is not None and result["tail_ms"] is not None
    assert 0 < result["sent_rate"] <= 60.1  # never above the rate asked for


def test_load_generator_against_the_source(source_service):
    """bench_load.py: N polls held at once, all answered, a JSON summary."""
    service = source_service("--port", "0", "--immediate-ratio", "0", "--min-delay", "0.5", "--max-delay", "0.5", "--timeout", "0.5")
    port = service.port()
    done = subprocess.run(
        [sys.executable, str(SCRIPTS / "bench_load.py"), "--port", str(port), "--polls", "20", "--deadline", "20"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    lines = done.stdout.strip().splitlines()
    assert lines[0] == "sent 20", done.stdout + done.stderr
    result = json.loads(lines[-1])
    assert result["statuses"] == {"304": 20} and result["error_count"] == 0
    assert done.returncode == 0


@pytest.mark.binary
def test_smoke_run(binary, tmp_path):
    """The whole benchmark with tiny sizes, as `make bench` runs it (BENCH_JSON, from the repo root)."""
    out = tmp_path / "bench.json"
    argv = [
        sys.executable, "scripts/bench.py", "--binary", str(binary), "--runs", "1", "--polls", "50",
        "--held-runs", "1", "--hold-seconds", "1", "--wrk-seconds", "1", "--wrk-runs", "1",
        "--connections", "4", "--settle", "0.2",
        "--event-pollers", "40", "--event-channels", "4", "--event-rate", "40", "--event-seconds", "1",
    ]  # fmt: skip
    env = {**os.environ, "BENCH_JSON": str(out)}
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "| figure | binary | reference: from source | ratio |" in done.stdout
    report = json.loads(out.read_text())
    assert report["markdown"] in done.stdout
    assert report["size"]["binary_bytes"] == binary.stat().st_size
    assert report["size"]["image"]["status"]  # a size, "not built" or "Docker not available"
    for kind in ("binary", "source"):
        assert report["cold_start"][kind]["median"] > 0
        assert report["footprint"][kind]["total_bytes"]["median"] > 0
    if os.geteuid() == 0:
        assert report["footprint"]["binary"]["extracted_bytes"]["median"] > 0
    held = report["held_polls"][0]
    assert held["polls"] == 50
    for kind in ("binary", "source"):
        assert held[kind]["errors"] == 0 and held[kind]["all_held_at_once"] and held[kind]["all_answered"]
    events = report["events"]
    assert events["status"] == "ok" and events["connected"] == 40 and events["published"] == 40
    assert events["delivered"] == events["expected_deliveries"] == 400
    assert events["missing"] == events["duplicates"] == events["gaps"] == 0 and events["errors"] == {}
    assert events["p50_ms"] is not None and events["peak_rss"] > 0
    assert 0 < events["server_cpu"] <= 1.2  # one event loop: at most one core, give or take sampling
    if shutil.which("wrk"):
        assert report["throughput"]["binary"]["rps"]["median"] > 0
    else:
        assert "wrk" in report["throughput"]["status"]
