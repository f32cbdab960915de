"""The images built and run with a real Docker engine (marker `docker`).

The scratch image is built once (scripts/docker-build.sh, as `make images` does), run hardened
with a port published on 127.0.0.1, and checked: it answers, becomes healthy, runs read-only as
non-root and stops on `docker stop` with exit code 0. docker-compose starts server and client
and the client logs events; the size script prints its table and writes JSON and PNG.

Base images: when debian:trixie-slim is missing, scripts/make-stand-in-images.sh makes a local
stand-in (CI runs it before the tests). In CI (CI=true) a missing Docker fails these tests;
elsewhere they are skipped when no Docker engine answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from conftest import answer_of, hold_polls

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[1]
DOCKER = os.environ.get("DOCKER", "docker")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
TAG = "long-poll:test"
HARDENED = ["--read-only", "--tmpfs", "/tmp:exec,mode=1777", "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges"]
NON_ROOT_UID = 65532


def docker(*args: str, timeout: float = 120, check: bool = True, env=None) -> subprocess.CompletedProcess:
    result = subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=timeout, env=env)
    if check and result.returncode != 0:
        pytest.fail(f"docker {' '.join(args)} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
    return result


def wait_for(condition, timeout: float, interval: float = 0.1, what: str = "condition"):
    """Poll until condition() returns a true value; fail after timeout with what was last seen."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def http_get(port: int, path: str, timeout: float = 10.0) -> tuple[int, bytes, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read(), response.getheader("Content-Type", "")
    finally:
        connection.close()


@contextlib.contextmanager
def serving_container(image: str, *args: str, options: tuple[str, ...] = (), what: str = "/healthz"):
    """Run `image` hardened with port 8000 published on 127.0.0.1; yield (name, port) once
    /healthz answers; remove the container afterwards."""
    name, port = unique("long-poll-test"), free_port()
    docker("run", "--detach", "--name", name, *HARDENED, *options,
           "--publish", f"127.0.0.1:{port}:8000", image, *args)
    try:
        def healthy():
            try:
                return http_get(port, "/healthz", timeout=2)[0] == 200
            except OSError:
                return False

        wait_for(healthy, 30, what=what)
        yield name, port
    finally:
        docker("rm", "--force", name, check=False)


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def engine() -> None:
    """A Docker engine that answers; fail in CI, skip elsewhere, when there is none."""
    why = None
    if shutil.which(DOCKER) is None:
        why = f"no {DOCKER} command"
    else:
        try:
            result = subprocess.run([DOCKER, "version", "--format", "{{.Server.Version}}"],
                                    capture_output=True, text=True, timeout=30)
            if result.returncode != 0:
                why = f"no Docker engine answers: {result.stderr.strip()[:200]}"
        except subprocess.TimeoutExpired:
            why = "docker version timed out"
    if why:
        if IN_CI:
            pytest.fail(f"{why} (CI=true: the Docker tests are required)")
        pytest.skip(why)


@pytest.fixture(scope="session")
def base_images(engine) -> None:
    """debian:trixie-slim (the builder), pulled or made as a local stand-in."""
    if docker("image", "inspect", "debian:trixie-slim", check=False).returncode == 0:
        return
    result = subprocess.run([str(ROOT / "scripts" / "make-stand-in-images.sh"), "debian:trixie-slim"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="session")
def scratch_image(base_images) -> str:
    """long-poll:test from Dockerfile.multi.scratch, built as `make images` builds it."""
    started = time.monotonic()
    result = subprocess.run([str(ROOT / "scripts" / "docker-build.sh"), "Dockerfile.multi.scratch", TAG],
                            cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    print(f"built {TAG} in {time.monotonic() - started:.0f} s")
    return TAG


class Container:
    def __init__(self, name: str, port: int) -> None:
        self.name, self.port = name, port

    def inspect(self, template: str) -> str:
        return docker("inspect", "--format", template, self.name).stdout.strip()

    def logs(self) -> str:
        result = docker("logs", self.name, check=False)
        return result.stdout + result.stderr


@pytest.fixture(scope="module")
def server(scratch_image):
    """The scratch image running hardened, port 8000 published on 127.0.0.1."""
    container = Container(unique("long-poll-test"), free_port())
    docker("run", "--detach", "--name", container.name, *HARDENED,
           "--publish", f"127.0.0.1:{container.port}:8000", scratch_image)
    try:
        def answers():
            try:
                return http_get(container.port, "/healthz", timeout=2)[0] == 200
            except OSError:
                if container.inspect("{{.State.Running}}") != "true":
                    pytest.fail(f"container exited:\n{container.logs()}")
                return False

        wait_for(answers, 30, what="/healthz through the published port")
        yield container
    finally:
        docker("rm", "--force", container.name, check=False)


# --- the scratch image ------------------------------------------------------------------------


def test_scratch_image_answers_root_and_healthz(server):
    status, body, content_type = http_get(server.port, "/healthz")
    assert status == 200
    status, body, content_type = http_get(server.port, "/", timeout=30)
    assert status in (200, 304), body
    if status == 200:
        assert content_type.startswith("application/json")
        assert isinstance(json.loads(body), dict)


def test_scratch_image_becomes_healthy(server):
    wait_for(lambda: server.inspect("{{.State.Health.Status}}") == "healthy", 60, interval=0.2,
             what="Docker's healthcheck to report healthy")


def test_scratch_image_runs_read_only_as_non_root(server, scratch_image):
    assert docker("image", "inspect", "--format", "{{.Config.User}}", scratch_image).stdout.strip() == "65532:65532"
    assert server.inspect("{{.HostConfig.ReadonlyRootfs}}") == "true"
    pid = server.inspect("{{.State.Pid}}")
    status = Path(f"/proc/{pid}/status")
    if status.exists():  # the engine runs on this machine: read the process's real uid
        uids = next(line for line in status.read_text().splitlines() if line.startswith("Uid:")).split()[1:]
        assert {int(u) for u in uids} == {NON_ROOT_UID}
    else:  # a remote engine: ask it
        table = docker("top", server.name, "-o", "uid").stdout.split()[1:]
        assert table and set(table) == {str(NON_ROOT_UID)}


def test_scratch_image_holds_no_shell(scratch_image):
    result = docker("run", "--rm", "--entrypoint", "/bin/sh", scratch_image, "-c", "true", check=False)
    assert result.returncode != 0


def test_docker_stop_exits_0_quickly(scratch_image):
    name = unique("long-poll-test-stop")
    docker("run", "--detach", "--name", name, *HARDENED, scratch_image)
    try:
        wait_for(lambda: "listening" in docker("logs", name, check=False).stderr + docker("logs", name, check=False).stdout,
                 30, what="the server to listen")
        started = time.monotonic()
        docker("stop", "--time", "10", name)
        took = time.monotonic() - started
        assert docker("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip() == "0"
        assert took < 3, f"docker stop took {took:.1f} s"
    finally:
        docker("rm", "--force", name, check=False)


def test_builds_with_buildkit_too(base_images):
    """scripts/docker-build.sh picked one builder; the Dockerfile must build with BuildKit too."""
    candidates = [DOCKER] + [d for d in ("/usr/bin/docker",) if d != DOCKER and os.access(d, os.X_OK)]
    for candidate in candidates:
        env = dict(os.environ, DOCKER_BUILDKIT="1", DOCKER=candidate)
        probe = subprocess.run([candidate, "build", "--help"], capture_output=True, text=True, env=env, timeout=30)
        if probe.returncode != 0 or "buildx" in probe.stderr.lower():
            continue
        result = subprocess.run([str(ROOT / "scripts" / "docker-build.sh"), "Dockerfile.multi.scratch",
                                 "long-poll:test-buildkit"], cwd=ROOT, capture_output=True, text=True,
                                env=env, timeout=1200)
        if "buildx component is missing" in result.stderr or "buildx" in result.stderr and result.returncode:
            continue
        try:
            assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
            assert "docker-build: Dockerfile.multi.scratch -> long-poll:test-buildkit (builder: default)" in result.stderr
        finally:
            docker("image", "rm", "long-poll:test-buildkit", check=False)
        return
    pytest.skip("no docker client here can build with BuildKit (no buildx plugin, no built-in BuildKit)")


# --- docker-compose -----------------------------------------------------------------------


def compose_commands() -> list[list[str]]:
    found = []
    if shutil.which("docker-compose"):
        found.append(["docker-compose"])
    if shutil.which(DOCKER) and subprocess.run([DOCKER, "compose", "version"], capture_output=True).returncode == 0:
        found.append([DOCKER, "compose"])
    return found


def _has_compose_v2() -> bool:
    try:
        return subprocess.run([DOCKER, "compose", "version"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


# docker-compose (v1, Debian's package) always; `docker compose` (v2) where this client has it
# (Debian 12 has no package for it, so CI runs v1 only; the README says so).
COMPOSE_VARIANTS = ["docker-compose"] + (["docker compose"] if _has_compose_v2() else [])


@pytest.mark.parametrize("variant", COMPOSE_VARIANTS)
def test_compose_up_shows_client_events_and_down_stops_both_with_0(scratch_image, variant, tmp_path):
    command = next((c for c in compose_commands() if " ".join(c).endswith(variant)), None)
    if command is None:
        pytest.fail(f"{variant} is missing: apt-get install docker-compose")
    project = unique("long-poll-test")
    env = dict(os.environ, LONG_POLL_PUBLISH=f"127.0.0.1:{free_port()}", COMPOSE_PROJECT_NAME=project)
    env.pop("DOCKERFILE", None)

    # The server's demo events are random; a seed whose first polls answer at once makes "events
    # within 20 s" a property of the stack, not of the dice (seed 7: three immediate events).
    seeded = tmp_path / "seed.yaml"
    seeded.write_text('services:\n  server:\n    environment:\n      LONGPOLL_SEED: "7"\n')

    def compose(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([*command, "--project-directory", str(ROOT), "-f", str(ROOT / "docker-compose.yaml"),
                               "-f", str(seeded), "-p", project, *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=timeout)

    try:
        built = compose("build", timeout=1200)
        assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
        started = time.monotonic()
        up = compose("up", "--detach", timeout=120)
        assert up.returncode == 0, up.stdout + up.stderr

        def client_events():
            logs = compose("logs", "--no-color", "client")
            return len(re.findall(r"event received", logs.stdout + logs.stderr)) >= 2

        wait_for(client_events, max(1.0, 20 - (time.monotonic() - started)), interval=0.5,
                 what="two 'event received' lines in the client's log (20 s from `up`)")
        ids = compose("ps", "-q").stdout.split()
        assert len(ids) == 2, ids
        for cid in ids:
            assert docker("inspect", "--format", "{{.HostConfig.ReadonlyRootfs}} {{.Config.User}}", cid).stdout.split() \
                == ["true", "65532:65532"]
        # `docker wait` reports each container's exit code even after `down` removes it.
        waiter = subprocess.Popen([DOCKER, "wait", *ids], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        started = time.monotonic()
        down = compose("down", timeout=60)
        took = time.monotonic() - started
        codes, errors = waiter.communicate(timeout=30)
        assert down.returncode == 0, down.stdout + down.stderr
        assert codes.split() == ["0", "0"], codes + errors
        assert took < 5, f"down took {took:.1f} s"
    finally:
        compose("down", "--volumes", "--remove-orphans", timeout=120)


# --- the size script -----------------------------------------------------------------------


def test_sizes_script_writes_table_json_and_png(scratch_image, tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "image_sizes.py"), "--out-dir", str(tmp_path),
                             "Dockerfile.multi.scratch", "Dockerfile.multi.alpine"],
                            cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "| Dockerfile | ours (MB) | Go original (MB) |" in result.stdout
    row = re.search(r"^\| Dockerfile\.multi\.scratch \| ([\d.]+) \| 7\.1 \| ([\d.]+) \| ([\d.]+) \|", result.stdout, re.M)
    assert row, result.stdout
    report = json.loads((tmp_path / "image-sizes.json").read_text())
    rows = {r["dockerfile"]: r for r in report["rows"]}
    scratch = rows["Dockerfile.multi.scratch"]
    assert scratch["built"] and 1_000_000 < scratch["size_bytes"] < 50_000_000
    assert scratch["size_mb"] == round(scratch["size_bytes"] / 1e6, 2)
    assert scratch["seconds_to_healthy"] > 0 and scratch["idle_memory_bytes"] > 0
    alpine = rows["Dockerfile.multi.alpine"]
    assert alpine["built"] or alpine["reason"], "a row that could not be built says why"
    if not alpine["built"]:
        assert "| Dockerfile.multi.alpine | – | 15.4 |" in result.stdout and "not built" in result.stdout
    assert (tmp_path / "image-sizes.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sizes_script_strict_fails_on_an_image_it_cannot_build(engine, tmp_path):
    if docker("image", "inspect", "alpine:3.22", check=False).returncode == 0:
        pytest.skip("alpine:3.22 is available here, so every row can be built")
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "image_sizes.py"), "--strict", "--no-run",
                             "--out-dir", str(tmp_path), "Dockerfile.multi.alpine"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "not built" in result.stdout


# --- hardening (reliability and security) ------------------------------------------------------


def image_files(image: str) -> set[str]:
    """Every path in the image's layers, from `docker save` (what the image holds, not what
    a running container adds such as /etc/hosts)."""
    import io
    import tarfile

    saved = subprocess.run([DOCKER, "save", image], capture_output=True, timeout=120, check=True).stdout
    paths: set[str] = set()
    with tarfile.open(fileobj=io.BytesIO(saved)) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))
        for layer in manifest[0]["Layers"]:
            with tarfile.open(fileobj=outer.extractfile(layer)) as inner:
                for member in inner.getmembers():
                    paths.add(member.name.rstrip("/") + ("/" if member.isdir() else ""))
                    if member.isfile() and member.mode & 0o111:
                        paths.add("executable:" + member.name)
    return paths


def test_scratch_image_holds_exactly_the_expected_files(scratch_image):
    assert image_files(scratch_image) == {
        "long-poll", "executable:long-poll", "etc/", "etc/passwd", "etc/group", "tmp/",
    }


@pytest.mark.parametrize("user", ["12345:12345", "65534:65534"])
def test_scratch_image_runs_hardened_as_any_non_root_uid(scratch_image, user):
    with serving_container(scratch_image, options=("--user", user), what=f"/healthz as uid {user}") as (name, _):
        assert docker("exec", name, "/long-poll", "healthcheck").returncode == 0
        docker("stop", "--time", "10", name)
        assert docker("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip() == "0"


def test_tmp_that_is_missing_noexec_or_read_only_fails_with_a_clear_message(scratch_image):
    # Docker's --tmpfs is noexec unless told: the binary cannot run what it unpacks there.
    noexec = docker("run", "--rm", "--read-only", "--tmpfs", "/tmp:mode=1777", scratch_image, "--version",
                    check=False)
    assert noexec.returncode != 0
    assert "/tmp" in noexec.stdout + noexec.stderr
    # A read-only root without any tmpfs: nothing can be unpacked at all.
    read_only = docker("run", "--rm", "--read-only", scratch_image, "--version", check=False)
    assert read_only.returncode != 0
    assert "/tmp" in read_only.stdout + read_only.stderr


def test_docker_stop_answers_a_thousand_held_polls_and_exits_0(scratch_image):
    """SIGTERM to the container's PID 1 (staticx): every held poll gets its 304, exit 0."""
    hold = ("--immediate-ratio", "0", "--min-delay", "30", "--max-delay", "30", "--timeout", "60")
    with serving_container(scratch_image, *hold) as (name, port):
        async def scenario():
            connections = await hold_polls(port, 1000)
            started = time.monotonic()
            stop = asyncio.create_task(asyncio.to_thread(docker, "stop", "--time", "10", name))
            answers = await asyncio.gather(*(answer_of(reader) for reader, _ in connections))
            await stop
            for _, writer in connections:
                writer.close()
            return answers, time.monotonic() - started

        answers, took = asyncio.run(scenario())
        assert answers.count(b"HTTP/1.1 304 Not Modified\r\n") == 1000, set(answers)
        assert docker("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip() == "0"
        assert took < 3, f"docker stop took {took:.2f} s"
        print(f"docker stop with 1,000 held polls: all answered 304, exit 0, {took:.2f} s")
