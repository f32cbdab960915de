#!/usr/bin/env python3
"""The benchmark (`make bench`): size, cold start, idle footprint, held polls and throughput.

    .venv/bin/python scripts/bench.py [--quick] [--polls 1000,10000] [--runs 5] [--binary dist/long-poll]

Prints a Markdown table and writes the same figures as JSON to $BENCH_JSON (default
dist/bench.json). Every timing is the median of several runs, with min and max; every figure
that depends on the machine is also given as a ratio to a reference measured in the same run:
the same server run from source (`python -m longpoll`, this interpreter).

1. size of the binary, and of the Docker image long-poll:scratch (only this figure needs Docker;
   the image is not built unless --build-image is given);
2. cold start: exec of the binary to the first 200 on /healthz;
3. footprint at idle: Pss_Anon (smaps_rollup) of every process of the binary, plus the bytes it
   extracted into its temp dir (a tmpfs: those bytes are memory too);
4. held polls: N concurrent long polls from a separate process (scripts/bench_load.py), all held
   at once, all answered, zero errors; RSS growth per held poll;
5. throughput with immediate answers: wrk, 64 connections, 10 s; requests/s, p50 and p99;
6. events: 10,000 pollers following 100 channels of GET /events while 1,000 events/s are
   published for 10 s (scripts/bench_events_load.py); delivery latency from publish to
   receipt p50/p99, every delivery checked (no loss, no duplicate, no gap), and the server's RSS.

As root (the normal case, and CI), the binary runs as the tests run it: alone in an empty root
directory with a tmpfs /tmp, as user 65534, in its own PID and mount namespaces. Without root it
runs directly, with TMPDIR pointing to a scratch directory (the figures then say so).
Traffic goes to 127.0.0.1 only; every load is bounded in count and time.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOAD = Path(__file__).resolve().with_name("bench_load.py")
EVENTS_LOAD = Path(__file__).resolve().with_name("bench_events_load.py")
DEFAULT_BINARY = ROOT / "dist" / "long-poll"
DEFAULT_JSON = ROOT / "dist" / "bench.json"
IMAGE = "long-poll:scratch"
IMAGE_ALIASES = ("long-poll:Dockerfile.multi.scratch",)  # the same image as `make images` tags it
IMAGE_DOCKERFILE = "Dockerfile.multi.scratch"
GO_IMAGE_MB = 7.1  # the Go original's scratch image, from its write-up
MB = 1_000_000
FIGURES = ("size", "start", "footprint", "held", "throughput", "events")


# ---------------------------------------------------------------- small helpers


def stats(values: list[float], digits: int = 3) -> dict:
    """Median, min and max of several runs (and the runs themselves)."""
    values = [v for v in values if v is not None]
    if not values:
        return {"median": None, "min": None, "max": None, "runs": []}
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
        "runs": [round(v, digits) for v in values],
    }


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 2)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_get(port: int, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """A minimal GET on 127.0.0.1 (raw socket: no client library in the measured path)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def wait_healthy(port: int, proc: subprocess.Popen, deadline: float) -> float | None:
    """Poll /healthz every millisecond until it answers 200; the time it did, or None."""
    while time.perf_counter() < deadline:
        try:
            status, _ = http_get(port, "/healthz", timeout=1.0)
            if status == 200:
                return time.perf_counter()
        except (OSError, ValueError, IndexError):
            pass
        if proc.poll() is not None:
            return None
        time.sleep(0.001)
    return None


def held_count(port: int) -> int:
    try:
        return int(json.loads(http_get(port, "/healthz")[1])["held_polls"])
    except (OSError, ValueError, KeyError, IndexError):
        return -1


def descendants(pid: int) -> list[int]:
    """The process tree under pid, parents before children."""
    found: list[int] = []
    todo = [pid]
    while todo:
        current = todo.pop(0)
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                children = Path(f"/proc/{current}/task/{task}/children").read_text().split()
            except OSError:
                continue
            for child in children:
                found.append(int(child))
                todo.append(int(child))
    return found


def memory(pid: int) -> dict:
    """Pss_Anon, Pss and Rss of a process in bytes (smaps_rollup), {} if it is gone."""
    fields = {}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                fields[parts[0].rstrip(":")] = int(parts[1]) * 1024
    except OSError:
        return {}
    return {"pss_anon": fields.get("Pss_Anon", 0), "pss": fields.get("Pss", 0), "rss": fields.get("Rss", 0)}


def tree_bytes(path: Path) -> dict[str, int]:
    """Bytes of the files under each entry of path (what the binary extracted)."""
    sizes: dict[str, int] = {}
    if not path.is_dir():
        return sizes
    for entry in sorted(path.iterdir()):
        total = 0
        if entry.is_dir() and not entry.is_symlink():
            for dirpath, _, files in os.walk(entry):
                for name in files:
                    try:
                        total += os.lstat(os.path.join(dirpath, name)).st_size
                    except OSError:
                        pass
        else:
            try:
                total = entry.lstat().st_size
            except OSError:
                pass
        key = re.sub(r"^(staticx-|_MEI).*", r"\1*", entry.name)
        sizes[key] = sizes.get(key, 0) + total
    return sizes


# ---------------------------------------------------------------- the server under test


class Service:
    """One server process: the binary (in an empty root when root) or the source."""

    def __init__(self, kind: str, binary: Path, workdir: Path, args: list[str]) -> None:
        self.kind = kind
        self.port = free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=workdir))
        self.log = open(self.workdir / "server.log", "wb")
        self.isolated = False
        self.mounted = False
        args = ["--port", str(self.port), "--host", "127.0.0.1", *args]
        if kind == "source":
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT)}
            argv = [sys.executable, "-m", "longpoll", *args]
            self.tmp = None
        elif os.geteuid() == 0 and shutil.which("unshare") and shutil.which("chroot"):
            root = self.workdir / "root"
            (root / "tmp").mkdir(parents=True)
            (root / "proc").mkdir()
            shutil.copy2(binary, root / "long-poll")
            # A tmpfs /tmp, as in the image with --tmpfs /tmp: what is extracted there is memory.
            subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=1777,size=1g", "bench-tmp", str(root / "tmp")], check=True)
            self.mounted = True
            self.tmp = root / "tmp"
            self.isolated = True
            env = {}
            argv = [
                shutil.which("unshare"), "--fork", "--pid", "--mount", f"--mount-proc={root}/proc",
                shutil.which("chroot"), "--userspec=65534:65534", str(root), "/long-poll", *args,
            ]  # fmt: skip
        else:
            self.tmp = self.workdir / "tmp"
            self.tmp.mkdir()
            env = {"TMPDIR": str(self.tmp)}
            argv = [str(binary), *args]
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)

    def wait_healthy(self, timeout: float = 30.0) -> float:
        """Seconds from exec to the first 200 on /healthz."""
        ready = wait_healthy(self.port, self.proc, time.perf_counter() + timeout)
        if ready is None:
            raise RuntimeError(f"{self.kind} server did not answer /healthz; log:\n{self.log_text()}")
        return ready - self.started

    def processes(self) -> list[int]:
        """The service's processes, outermost first (unshare itself excluded)."""
        tree = descendants(self.proc.pid)
        if self.kind == "source" or not self.isolated:
            return [self.proc.pid, *tree]
        return tree

    def python_pid(self) -> int:
        """The process that runs Python (and holds the polls): the innermost one."""
        return self.processes()[-1]

    def footprint(self) -> dict:
        pids = self.processes()
        known = {1: ["python"], 2: ["staticx", "python"], 3: ["staticx", "pyinstaller", "python"]}  # small, fast build
        names = known.get(len(pids)) or [f"process{i}" for i in range(len(pids) - 1)] + ["python"]
        procs = {name: memory(pid) for name, pid in zip(names, pids)}
        private = sum(p.get("pss_anon", 0) for p in procs.values())
        extracted = tree_bytes(self.tmp) if self.tmp is not None else {}
        return {
            "processes": procs,
            "private_bytes": private,
            "extracted": extracted,
            "extracted_bytes": sum(extracted.values()),
            "total_bytes": private + sum(extracted.values()),
        }

    def log_text(self) -> str:
        self.log.flush()
        return (self.workdir / "server.log").read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            target = self.processes()[0] if self.isolated and self.processes() else self.proc.pid
            try:
                os.kill(target, signal.SIGTERM)
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                pass
        if self.proc.poll() is None:
            for pid in reversed(self.processes()):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.tmp)], check=False)
            self.mounted = False
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---------------------------------------------------------------- the figures


def figure_size(binary: Path, build_image: bool) -> dict:
    result = {"binary_bytes": binary.stat().st_size, "binary_mb": round(binary.stat().st_size / MB, 2), "go_image_mb": GO_IMAGE_MB}
    image = {"tag": IMAGE, "bytes": None, "mb": None}
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "info"], capture_output=True, timeout=30).returncode != 0:
        image["status"] = "Docker not available (only this figure needs it)"
    else:
        def inspect(tag: str) -> int | None:
            found = subprocess.run([docker, "image", "inspect", "--format", "{{.Size}}", tag], capture_output=True, text=True, timeout=60)
            return int(found.stdout.strip()) if found.returncode == 0 else None

        size, tag = None, IMAGE
        for tag in (IMAGE, *IMAGE_ALIASES):
            size = inspect(tag)
            if size is not None:
                break
        if size is None and build_image:
            print(f"bench: building {IMAGE} from {IMAGE_DOCKERFILE}", file=sys.stderr)
            subprocess.run([docker, "build", "-f", IMAGE_DOCKERFILE, "-t", IMAGE, "."], cwd=ROOT, check=True)
            tag, size = IMAGE, inspect(IMAGE)
        if size is None:
            image["status"] = f"not built (docker build -f {IMAGE_DOCKERFILE} -t {IMAGE} ., or --build-image)"
        else:
            image.update(tag=tag, bytes=size, mb=round(size / MB, 2), status="ok", ratio_to_go=ratio(size / MB, GO_IMAGE_MB))
    result["image"] = image
    return result


def figure_start_and_footprint(binary: Path, workdir: Path, runs: int, settle: float, want_start: bool, want_footprint: bool) -> tuple[dict, dict]:
    """Cold starts of binary and source, interleaved; the idle footprint after each start."""
    starts: dict[str, list[float]] = {"binary": [], "source": []}
    prints: dict[str, list[dict]] = {"binary": [], "source": []}
    for _ in range(runs):
        for kind in ("binary", "source"):
            with Service(kind, binary, workdir, []) as service:
                starts[kind].append(service.wait_healthy())
                if want_footprint:
                    time.sleep(settle)
                    prints[kind].append(service.footprint())
    start = {}
    if want_start:
        start = {kind: stats([s * 1000 for s in values], 1) for kind, values in starts.items()}
        start["unit"] = "ms"
        start["ratio"] = ratio(start["binary"]["median"], start["source"]["median"])
    footprint = {}
    if want_footprint:
        for kind, samples in prints.items():
            middle = sorted(samples, key=lambda s: s["total_bytes"])[len(samples) // 2]
            footprint[kind] = {
                "total_bytes": stats([s["total_bytes"] for s in samples], 0),
                "private_bytes": stats([s["private_bytes"] for s in samples], 0),
                "extracted_bytes": stats([s["extracted_bytes"] for s in samples], 0),
                "median_run": middle,
            }
        footprint["ratio"] = ratio(footprint["binary"]["total_bytes"]["median"], footprint["source"]["total_bytes"]["median"])
    return start, footprint


def held_once(kind: str, binary: Path, workdir: Path, polls: int, hold: float) -> dict:
    args = [
        "--immediate-ratio", "0", "--min-delay", str(hold), "--max-delay", str(hold), "--timeout", str(hold),
        "--max-held-polls", str(polls + 100), "--keepalive-timeout", "5",
    ]  # fmt: skip
    with Service(kind, binary, workdir, args) as service:
        service.wait_healthy()
        time.sleep(0.3)
        pid = service.python_pid()
        idle = memory(pid)
        load = subprocess.Popen(
            [sys.executable, str(LOAD), "--port", str(service.port), "--polls", str(polls), "--deadline", str(hold * 3 + polls / 200 + 30)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert load.stdout is not None
        load.stdout.readline()  # "sent N": every request is written
        deadline = time.monotonic() + hold + 10
        most = 0
        while time.monotonic() < deadline:
            most = max(most, held_count(service.port))
            if most >= polls:
                break
            time.sleep(0.02)
        time.sleep(0.2)
        held = memory(pid)
        most = max(most, held_count(service.port))
        out, err = load.communicate(timeout=hold * 3 + polls / 200 + 60)
        try:
            result = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            result = {"error_count": polls, "errors": {f"load generator failed: {err[-500:]}": polls}, "statuses": {}}
    answered = sum(result.get("statuses", {}).values())
    return {
        "polls": polls,
        "max_held_at_once": most,
        "answered": answered,
        "statuses": result.get("statuses", {}),
        "errors": result.get("error_count", 0) + (polls - answered - result.get("error_count", 0)),
        "error_detail": result.get("errors", {}),
        "ramp_seconds": result.get("sent_seconds"),
        "idle_rss": idle.get("rss"),
        "held_rss": held.get("rss"),
        "rss_per_poll": (held.get("rss", 0) - idle.get("rss", 0)) / polls,
        "pss_anon_per_poll": (held.get("pss_anon", 0) - idle.get("pss_anon", 0)) / polls,
    }


def figure_held(binary: Path, workdir: Path, sizes: list[int], runs: int, hold: float | None) -> list[dict]:
    results = []
    for polls in sizes:
        seconds = hold if hold is not None else round(4 + polls / 1000, 1)
        entry: dict = {"polls": polls, "hold_seconds": seconds}
        for kind in ("binary", "source"):
            samples = [held_once(kind, binary, workdir, polls, seconds) for _ in range(runs)]
            entry[kind] = {
                "rss_per_poll": stats([s["rss_per_poll"] for s in samples], 0),
                "pss_anon_per_poll": stats([s["pss_anon_per_poll"] for s in samples], 0),
                "errors": sum(s["errors"] for s in samples),
                "all_held_at_once": all(s["max_held_at_once"] >= polls for s in samples),
                "all_answered": all(s["answered"] == polls for s in samples),
                "samples": samples,
            }
        entry["ratio"] = ratio(entry["binary"]["rss_per_poll"]["median"], entry["source"]["rss_per_poll"]["median"])
        results.append(entry)
    return results


WRK_LATENCY = re.compile(r"^\s*(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s)\s*$", re.M)
WRK_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.M)
WRK_ERRORS = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)|Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


def parse_wrk(text: str) -> dict:
    """Requests/s, p50 and p99 in ms, and errors, from `wrk --latency` output."""
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    latency = {f"p{q}_ms": float(v) * scale[u] for q, v, u in WRK_LATENCY.findall(text)}
    rps = WRK_RPS.search(text)
    errors = 0
    for match in WRK_ERRORS.finditer(text):
        errors += sum(int(g) for g in match.groups() if g)
    return {"rps": float(rps.group(1)) if rps else None, "p50_ms": latency.get("p50_ms"), "p99_ms": latency.get("p99_ms"), "errors": errors}


def figure_throughput(binary: Path, workdir: Path, runs: int, seconds: int, connections: int) -> dict:
    wrk = shutil.which("wrk")
    if wrk is None:
        return {"status": "wrk not installed (apt-get install wrk)"}
    samples: dict[str, list[dict]] = {"binary": [], "source": []}
    for _ in range(runs):
        for kind in ("binary", "source"):
            with Service(kind, binary, workdir, ["--immediate-ratio", "1"]) as service:
                service.wait_healthy()
                url = f"http://127.0.0.1:{service.port}/"
                threads = str(min(2, connections))
                subprocess.run([wrk, "-t", threads, "-c", str(connections), "-d", "1s", url], capture_output=True, timeout=30)  # warm-up
                done = subprocess.run(
                    [wrk, "-t", threads, "-c", str(connections), "-d", f"{seconds}s", "--timeout", "5s", "--latency", url],
                    capture_output=True, text=True, timeout=seconds + 60,
                )  # fmt: skip
                samples[kind].append(parse_wrk(done.stdout))
    result: dict = {"connections": connections, "seconds": seconds, "status": "ok"}
    for kind, runs_ in samples.items():
        result[kind] = {
            "rps": stats([r["rps"] for r in runs_], 0),
            "p50_ms": stats([r["p50_ms"] for r in runs_], 2),
            "p99_ms": stats([r["p99_ms"] for r in runs_], 2),
            "errors": sum(r["errors"] for r in runs_),
        }
    result["ratio"] = ratio(result["binary"]["rps"]["median"], result["source"]["rps"]["median"])
    return result


# ---------------------------------------------------------------- the report


def fmt_stats(s: dict | None, unit: str = "", scale: float = 1.0, digits: int = 1) -> str:
    if not s or s.get("median") is None:
        return "n/a"
    f = lambda v: f"{v / scale:,.{digits}f}"  # noqa: E731
    if len(s["runs"]) == 1:
        return f"{f(s['median'])}{unit}"
    return f"{f(s['median'])}{unit} ({f(s['min'])}–{f(s['max'])})"


def fmt_ratio(r: float | None) -> str:
    return "n/a" if r is None else f"{r:.2f}×"


def figure_events(binary: Path, workdir: Path, pollers: int, channels: int, rate: int, seconds: float) -> dict:
    """The binary under the events load; RSS sampled every 0.2 s while the load runs."""
    # No line per answer: at thousands of answers a second it would be the main cost (README).
    args = ["--max-held-polls", str(pollers + 1000), "--max-channels", str(max(1000, channels)), "--access-log", "errors"]
    with Service("binary", binary, workdir, args) as service:
        service.wait_healthy()
        time.sleep(0.5)
        idle = memory(service.python_pid())
        argv = [
            sys.executable, str(EVENTS_LOAD), "--port", str(service.port), "--pollers", str(pollers),
            "--channels", str(channels), "--rate", str(rate), "--seconds", str(seconds),
            "--processes", str(max(1, min(4, (os.cpu_count() or 2) - 1))), "--grace", str(min(5.0, 2 + seconds / 5)),
            "--server-pid", str(service.python_pid()),
        ]  # fmt: skip
        load = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        peak = dict(idle)
        deadline = time.monotonic() + seconds + 180
        while load.poll() is None and time.monotonic() < deadline:
            now = memory(service.python_pid())
            if now.get("rss", 0) > peak.get("rss", 0):
                peak = now
            time.sleep(0.2)
        if load.poll() is None:
            load.kill()
        out, err = load.communicate(timeout=30)
        lines = out.strip().splitlines()
        try:
            result = json.loads(lines[-1])
        except (IndexError, ValueError):
            return {"status": f"load failed: {(out + err)[-500:]}"}
    return {"status": "ok", **result, "idle_rss": idle.get("rss"), "peak_rss": peak.get("rss"), "load_exit": load.returncode}


def markdown(report: dict) -> str:
    rows = ["| figure | binary | reference: from source | ratio |", "|---|---|---|---|"]
    size = report.get("size")
    if size:
        rows.append(f"| size of `{report['binary']}` | {size['binary_bytes']:,} B ({size['binary_mb']:.2f} MB) | Go's scratch image: {GO_IMAGE_MB} MB | {fmt_ratio(ratio(size['binary_mb'], GO_IMAGE_MB))} |")
        image = size["image"]
        shown = f"{image['bytes']:,} B ({image['mb']:.2f} MB)" if image.get("bytes") else image["status"]
        rows.append(f"| size of image `{image['tag']}` | {shown} | Go's scratch image: {GO_IMAGE_MB} MB | {fmt_ratio(image.get('ratio_to_go'))} |")
    start = report.get("cold_start")
    if start:
        rows.append(f"| cold start, exec to first 200 on /healthz | {fmt_stats(start['binary'], ' ms')} | {fmt_stats(start['source'], ' ms')} | {fmt_ratio(start['ratio'])} |")
    foot = report.get("footprint")
    if foot:
        b, s = foot["binary"], foot["source"]
        procs = b["median_run"]["processes"]
        detail = " + ".join(f"{name} {p.get('pss_anon', 0) / MB:.1f}" for name, p in procs.items())
        extracted = " + ".join(f"{name} {v / MB:.1f}" for name, v in b["median_run"]["extracted"].items()) or "0"
        rows.append(f"| idle footprint: private memory + extracted (MB) | {fmt_stats(b['total_bytes'], ' MB', MB)} | {fmt_stats(s['total_bytes'], ' MB', MB)} | {fmt_ratio(foot['ratio'])} |")
        rows.append(f"| … private memory (Pss_Anon, MB) | {fmt_stats(b['private_bytes'], ' MB', MB)}: {detail} | {fmt_stats(s['private_bytes'], ' MB', MB)} | {fmt_ratio(ratio(b['private_bytes']['median'], s['private_bytes']['median']))} |")
        rows.append(f"| … extracted to the temp dir (MB) | {fmt_stats(b['extracted_bytes'], ' MB', MB)}: {extracted} | 0 | n/a |")
    for entry in report.get("held_polls", []):
        b, s = entry["binary"], entry["source"]

        def verdict(x: dict) -> str:
            ok = x["errors"] == 0 and x["all_held_at_once"] and x["all_answered"]
            return "all held, all answered, 0 errors" if ok else f"{x['errors']} errors, all held at once: {x['all_held_at_once']}"

        rows.append(
            f"| {entry['polls']:,} held polls: RSS per held poll | {fmt_stats(b['rss_per_poll'], ' KB', 1024)}, {verdict(b)} "
            f"| {fmt_stats(s['rss_per_poll'], ' KB', 1024)}, {verdict(s)} | {fmt_ratio(entry['ratio'])} |"
        )
    tp = report.get("throughput")
    if tp:
        if tp.get("status") != "ok":
            rows.append(f"| throughput | {tp['status']} | | |")
        else:
            b, s = tp["binary"], tp["source"]
            label = f"{tp['connections']} connections, {tp['seconds']} s, immediate answers"
            rows.append(f"| requests/s ({label}) | {fmt_stats(b['rps'], '', 1, 0)} | {fmt_stats(s['rps'], '', 1, 0)} | {fmt_ratio(tp['ratio'])} |")
            rows.append(f"| latency p50 | {fmt_stats(b['p50_ms'], ' ms', 1, 2)} | {fmt_stats(s['p50_ms'], ' ms', 1, 2)} | {fmt_ratio(ratio(b['p50_ms']['median'], s['p50_ms']['median']))} |")
            rows.append(f"| latency p99 | {fmt_stats(b['p99_ms'], ' ms', 1, 2)} | {fmt_stats(s['p99_ms'], ' ms', 1, 2)} | {fmt_ratio(ratio(b['p99_ms']['median'], s['p99_ms']['median']))} |")
            if b["errors"] or s["errors"]:
                rows.append(f"| wrk errors (non-2xx/3xx, socket) | {b['errors']} | {s['errors']} | |")
    ev = report.get("events")
    if ev:
        if ev.get("status") != "ok":
            rows.append(f"| events | {ev['status']} | | |")
        else:
            label = f"{ev['pollers']:,} pollers on {ev['channels']} channels, {ev['rate']:,} events/s for {ev['seconds']:g} s"
            ok = "all delivered once, in order" if not (ev["missing"] or ev["duplicates"] or ev["gaps"] or ev["errors"]) else (
                f"{ev['missing']} missing, {ev['duplicates']} duplicates, {ev['gaps']} gaps, errors {ev['errors']}")
            rows.append(f"| events ({label}): delivery latency p50 / p99 | {ev['p50_ms']} ms / {ev['p99_ms']} ms; {ev['delivered']:,} deliveries, {ok} | not measured | |")
            rows.append(f"| … publish rate: POSTs sent; 201s counted to the last one ({ev['publishers']:,} publishers, each waiting for its 201) | {ev['sent_rate']} events/s sent; {ev['achieved_rate']} events/s answered ({ev['published']:,} in {ev['publish_seconds']} s) | | |")
            rows.append(f"| … POST to 201, p50 / p99 | {ev['publish_p50_ms']} ms / {ev['publish_p99_ms']} ms | | |")
            rows.append(f"| … POSTs sent behind their schedule, p50 / p99 / max; last 201 after the last scheduled POST | {ev['behind_p50_ms']} / {ev['behind_p99_ms']} / {ev['behind_max_ms']} ms; {ev['tail_ms']} ms | | |")
            per_answer = ev["delivered"] / ev["answers"] if ev.get("answers") else 0
            rows.append(f"| … poll answers (events per answer) | {ev['answers']:,} ({per_answer:.1f}) | | |")
            rows.append(f"| … server RSS idle → peak under that load | {(ev['idle_rss'] or 0) / MB:.1f} MB → {(ev['peak_rss'] or 0) / MB:.1f} MB | not measured | |")
            rows.append(f"| … server CPU while publishing (share of one core) | {ev['server_cpu']} | | |")
    m = report["machine"]
    head = (
        f"long-poll benchmark, {report['date']}: {m['cpus']} CPUs, {m['memory_gb']} GB, {m['system']}, "
        f"reference Python {m['python']}; binary run {report['isolation']}. "
        f"Medians of {report['settings']['runs']} runs (min–max in brackets)."
    )
    return head + "\n\n" + "\n".join(rows) + "\n"


def machine() -> dict:
    memory_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_kb = int(line.split()[1])
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "memory_gb": round(memory_kb / 1024 / 1024, 1),
        "system": f"{platform.system()} {platform.release()} {platform.machine()}",
        "python": platform.python_version(),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", type=Path, default=DEFAULT_BINARY, help="the binary to measure (default dist/long-poll)")
    parser.add_argument("--quick", action="store_true", help="fewer and shorter runs (3 starts, 1,000 polls once, wrk 3 s)")
    parser.add_argument("--runs", type=int, help="cold starts (and idle footprints) per build (default 5, quick 3)")
    parser.add_argument("--polls", help="held-poll counts, comma-separated (default 1000,10000; quick 1000)")
    parser.add_argument("--held-runs", type=int, help="runs per held-poll count (default 3, quick 1)")
    parser.add_argument("--hold-seconds", type=float, help="how long each poll is held (default 4 s + 1 s per 1,000 polls)")
    parser.add_argument("--wrk-seconds", type=int, help="wrk duration (default 10, quick 3)")
    parser.add_argument("--wrk-runs", type=int, help="wrk runs per build (default 3, quick 1)")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (default 64)")
    parser.add_argument("--settle", type=float, default=1.0, help="seconds idle before the footprint is read (default 1)")
    parser.add_argument("--event-pollers", type=int, help="events figure: pollers (default 10000, quick 1000)")
    parser.add_argument("--event-channels", type=int, default=100, help="events figure: channels (default 100)")
    parser.add_argument("--event-rate", type=int, help="events figure: events published per second (default 1000, quick 200)")
    parser.add_argument("--event-seconds", type=float, help="events figure: seconds of publishing (default 10, quick 3)")
    parser.add_argument("--skip", default="", help=f"figures to leave out, comma-separated: {','.join(FIGURES)}")
    parser.add_argument("--build-image", action="store_true", help=f"build {IMAGE} if it does not exist (needs Docker)")
    parser.add_argument("--json", type=Path, default=Path(os.environ.get("BENCH_JSON") or DEFAULT_JSON), help="where the JSON goes (default $BENCH_JSON or dist/bench.json)")
    args = parser.parse_args(argv)
    args.runs = args.runs or (3 if args.quick else 5)
    args.held_runs = args.held_runs or (1 if args.quick else 3)
    args.wrk_seconds = args.wrk_seconds or (3 if args.quick else 10)
    args.wrk_runs = args.wrk_runs or (1 if args.quick else 3)
    args.event_pollers = args.event_pollers or (1000 if args.quick else 10000)
    args.event_rate = args.event_rate or (200 if args.quick else 1000)
    args.event_seconds = args.event_seconds or (3.0 if args.quick else 10.0)
    try:
        args.poll_sizes = [int(n.replace("_", "")) for n in (args.polls or ("1000" if args.quick else "1000,10000")).split(",") if n]
    except ValueError:
        parser.error(f"--polls wants comma-separated whole numbers, not {args.polls!r}")
    args.skip = {s for s in args.skip.split(",") if s}
    if args.skip - set(FIGURES):
        parser.error(f"--skip: unknown figure(s) {', '.join(sorted(args.skip - set(FIGURES)))}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    binary = args.binary if args.binary.is_absolute() else (Path.cwd() / args.binary)
    if not binary.is_file():
        print(f"bench: {binary} does not exist: run `make binary` first", file=sys.stderr)
        return 2
    needed = max([*args.poll_sizes, args.event_pollers if "events" not in args.skip else 0]) + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:  # the servers inherit this limit (and raise their soft limit to the hard one)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, needed), max(hard, needed)))
        except (ValueError, OSError):
            print(f"bench: cannot raise the open-file limit to {needed} (hard limit {hard})", file=sys.stderr)
    try:
        shown = str(binary.relative_to(ROOT))
    except ValueError:
        shown = str(binary)
    report: dict = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "binary": shown,
        "isolation": "in an empty root with a tmpfs /tmp" if os.geteuid() == 0 else "directly (not root: no empty root), TMPDIR on disk",
        "settings": {
            "runs": args.runs, "held_runs": args.held_runs, "polls": args.poll_sizes,
            "wrk_seconds": args.wrk_seconds, "wrk_runs": args.wrk_runs, "connections": args.connections,
        },  # fmt: skip
    }
    workdir = Path(tempfile.mkdtemp(prefix="long-poll-bench-"))
    try:
        if "size" not in args.skip:
            report["size"] = figure_size(binary, args.build_image)
        if not {"start", "footprint"} <= args.skip:
            start, footprint = figure_start_and_footprint(binary, workdir, args.runs, args.settle, "start" not in args.skip, "footprint" not in args.skip)
            if start:
                report["cold_start"] = start
            if footprint:
                report["footprint"] = footprint
        if "held" not in args.skip:
            report["held_polls"] = figure_held(binary, workdir, args.poll_sizes, args.held_runs, args.hold_seconds)
        if "throughput" not in args.skip:
            report["throughput"] = figure_throughput(binary, workdir, args.wrk_runs, args.wrk_seconds, args.connections)
        if "events" not in args.skip:
            report["events"] = figure_events(binary, workdir, args.event_pollers, args.event_channels, args.event_rate, args.event_seconds)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    table = markdown(report)
    report["markdown"] = table
    print(table)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"bench: figures written to {args.json}", file=sys.stderr)
    failed = [e["polls"] for e in report.get("held_polls", []) if e["binary"]["errors"] or not e["binary"]["all_held_at_once"]]
    if failed:
        print(f"bench: held polls failed for N = {failed}", file=sys.stderr)
        return 1
    ev = report.get("events")
    if ev and (ev.get("status") != "ok" or ev["missing"] or ev["duplicates"] or ev["gaps"]):
        print("bench: events were lost, duplicated or out of order, or the load failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
