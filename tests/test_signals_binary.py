"""Signals through the binary's process tree, and what it says when /tmp is unusable.

The tree is: staticx's bootloader (PID 1 in the namespace, as in a container) -> Python (the
PyInstaller onedir program, which replaces itself with exec and forks nothing). staticx catches
only SIGINT and SIGTERM and forwards them; Python handles SIGINT and SIGTERM. As PID 1, staticx
never receives a signal it has no handler for: SIGHUP and SIGQUIT sent to it are dropped.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import EmptyRoot, ServiceProcess, answer_of, get, hold_polls

pytestmark = pytest.mark.binary

HOLD = ("--immediate-ratio", "0", "--min-delay", "30", "--max-delay", "30", "--timeout", "60")
HELD = int(os.environ.get("LONGPOLL_TEST_HELD", "1000"))


def tree(service: ServiceProcess) -> dict[str, int]:
    """PIDs (as seen from here) of staticx and Python; there is nothing else."""
    staticx = service.target_pid()
    (python,) = map(int, Path(f"/proc/{staticx}/task/{staticx}/children").read_text().split())
    assert Path(f"/proc/{python}/task/{python}/children").read_text().split() == []
    return {"staticx": staticx, "python": python}


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_stop_signal_to_pid_1_answers_every_held_poll(empty_root, signum):
    service = empty_root.start("--port", "0", *HOLD)
    port = service.port()
    connections = await hold_polls(port, HELD)
    sent = time.monotonic()
    service.send(signum)
    answers = await asyncio.gather(*(answer_of(reader) for reader, _ in connections))
    code = await asyncio.to_thread(service.wait, 5)
    seconds = time.monotonic() - sent
    for _, writer in connections:
        writer.close()
    print(f"\n{signal.Signals(signum).name} with {HELD} held polls: tree exited {code} after {seconds:.3f} s")
    assert answers.count(b"HTTP/1.1 304 Not Modified\r\n") == HELD, set(answers)
    assert code == 0
    assert seconds < 1.0
    assert empty_root.tmp_entries() == []
    assert service.count("Traceback") == 0


async def test_second_sigterm_during_shutdown_exits_at_once(empty_root):
    service = empty_root.start("--port", "0", *HOLD)
    port = service.port()
    connections = await hold_polls(port, HELD)  # answering them keeps Python's shutdown busy a moment
    sent = time.monotonic()
    service.send(signal.SIGTERM)
    await asyncio.to_thread(service.wait_for_line, "stopping signal=SIGTERM")
    second = time.monotonic()
    service.send(signal.SIGTERM)
    code = await asyncio.to_thread(service.wait, 5)
    done = time.monotonic()
    for _, writer in connections:
        writer.close()
    print(f"\nsecond SIGTERM {second - sent:.3f} s after the first: exit {code}, {done - second:.3f} s later")
    if service.count("second signal, exiting now") == 1:
        assert code == 128 + signal.SIGTERM
    else:  # Python's shutdown finished before the second signal reached it
        assert code == 0 and service.count("stopped") == 1, service.lines[-3:]
    assert done - second < 0.5
    assert empty_root.tmp_entries() == []


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGQUIT])
def test_hup_and_quit_to_pid_1_are_ignored(empty_root, signum):
    service = empty_root.start("--port", "0")
    port = service.port()
    service.send(signum)
    # The signal is dropped by the kernel (PID 1 without a handler): nothing to wait for but
    # proof that the server still answers after the signal was surely delivered.
    for _ in range(5):
        assert get(port, "/healthz")[0] == 200
    assert service.proc.poll() is None
    assert _signal_mask(tree(service)["staticx"], "SigCgt") == {signal.SIGINT, signal.SIGTERM}
    service.send(signal.SIGTERM)
    assert service.wait(5) == 0
    assert empty_root.tmp_entries() == []


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGQUIT])
def test_hup_and_quit_to_python_kill_it_and_staticx_cleans_tmp(empty_root, signum):
    service = empty_root.start("--port", "0")
    service.port()
    os.kill(tree(service)["python"], signum)
    # Python dies of it (default action); staticx removes its directory and exits 2.
    assert service.wait(5) == 2
    assert service.lines[-1] == f"long-poll: Child exited for unknown reason! (wstatus == {int(signum)})"
    assert empty_root.tmp_entries() == []


def _signal_mask(pid: int, field: str) -> set[int]:
    text = Path(f"/proc/{pid}/status").read_text()
    mask = int(re.search(rf"^{field}:\s*([0-9a-f]+)$", text, re.M).group(1), 16)
    return {bit + 1 for bit in range(64) if mask >> bit & 1}


def test_who_handles_which_signal(empty_root):
    service = empty_root.start("--port", "0")
    service.port()
    pids = tree(service)
    assert _signal_mask(pids["staticx"], "SigCgt") == {signal.SIGINT, signal.SIGTERM}
    assert _signal_mask(pids["python"], "SigCgt") == {signal.SIGINT, signal.SIGTERM}
    # Python ignores these two itself; the rest of its ignore mask is inherited from whoever
    # started the test (a background shell job ignores more), so only these are asserted.
    ignored = _signal_mask(pids["python"], "SigIgn")
    assert {signal.SIGPIPE, signal.SIGXFSZ} <= ignored
    assert not {signal.SIGINT, signal.SIGTERM} & ignored
    service.send(signal.SIGTERM)
    assert service.wait(5) == 0


async def test_ctrl_c_to_the_process_group_still_answers_held_polls(tmp_path, binary):
    service = ServiceProcess(["/usr/bin/setsid", str(binary), "--port", "0", *HOLD], env={"TMPDIR": str(tmp_path)})
    try:
        port = service.port()
        connections = await hold_polls(port, 20)
        os.killpg(service.proc.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
        answers = await asyncio.gather(*(answer_of(reader) for reader, _ in connections))
        code = await asyncio.to_thread(service.wait, 5)
        for _, writer in connections:
            writer.close()
        assert (code, set(answers)) == (0, {b"HTTP/1.1 304 Not Modified\r\n"})
        assert os.listdir(tmp_path) == []
    finally:
        service.stop()


# --- /tmp missing, read-only, noexec, full --------------------------------------------------


def _run_with_tmp_mounted(root: EmptyRoot, mount: str) -> subprocess.CompletedProcess[str]:
    """Run `long-poll --version` after `mount` (a shell command) in the root's mount namespace."""
    argv = root.argv("--version")
    at = argv.index(shutil.which("chroot") or "/usr/sbin/chroot")
    argv = argv[:at] + ["/bin/sh", "-c", mount + ' && exec "$@"', "sh"] + argv[at:]
    return subprocess.run(argv, env={}, capture_output=True, text=True, timeout=30)


def test_tmp_missing(empty_root):
    (empty_root.path / "tmp").rmdir()
    result = empty_root.run("--version")
    assert result.returncode == 2
    assert result.stderr == "long-poll: Failed to create temporary directory in /tmp: No such file or directory\n"


def test_tmp_read_only(empty_root):
    (empty_root.path / "tmp").chmod(0o555)
    result = empty_root.run("--version")  # as uid 65534
    assert result.returncode == 2
    assert result.stderr == "long-poll: Failed to create temporary directory in /tmp: Permission denied\n"


def test_tmp_noexec(empty_root):
    tmp = empty_root.path / "tmp"
    result = _run_with_tmp_mounted(empty_root, f"mount --bind {tmp} {tmp} && mount -o remount,bind,noexec {tmp}")
    assert result.returncode == 3
    assert re.fullmatch(r"Failed to execv\(\) /tmp/staticx-\w+/long-poll: Permission denied\n", result.stderr)
    assert empty_root.tmp_entries() == []  # staticx removed what it extracted


def test_tmpdir_is_honoured_and_named(empty_root):
    result = subprocess.run(["/usr/bin/env", "TMPDIR=/nowhere", *empty_root.argv("--version")], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert result.stderr == "long-poll: Failed to create temporary directory in /nowhere: No such file or directory\n"


def test_tmp_too_small(empty_root):
    tmp = empty_root.path / "tmp"
    result = _run_with_tmp_mounted(empty_root, f"mount -t tmpfs -o size=4m,mode=1777 tmpfs {tmp}")
    assert result.returncode == 2
    assert result.stderr == "long-poll: tar_extract_all() failed: Invalid argument\n"  # staticx's unpacking
