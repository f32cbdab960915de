#!/usr/bin/env python3
"""Build the Dockerfiles and compare their images with the Go recipe's (`make sizes`).

    scripts/image_sizes.py [--strict] [--no-run] [--out-dir dist] [DOCKERFILE...]

For each Dockerfile (default: all six) it builds the image with scripts/docker-build.sh (as
`make images` does), reads its size, and, when the image has a HEALTHCHECK, runs it hardened
(read-only, tmpfs /tmp with exec, no capabilities, no-new-privileges) to time `docker run` to
healthy and read the container's idle memory. It prints a Markdown table, writes the figures to
OUT_DIR/image-sizes.json and draws OUT_DIR/image-sizes.png (with Pillow, when installed).

Sizes are in MB of 10^6 bytes, as `docker images` shows them (the Go recipe's figures are
`docker images` output too). A Dockerfile that cannot be built (its base image is missing and
cannot be pulled, say) gets a row that says why; the exit status is 0 all the same, unless
--strict. Only the standard library and the docker command line are used (no docker SDK).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCKER = os.environ.get("DOCKER", "docker")
STAND_IN_LABEL = "org.long-poll.stand-in"

# The Go recipe's table ("Long Polling Recipe in Go ... as a Docker Container"), in its order.
GO_MB = {
    "Dockerfile.single.ubuntu": 880.0,
    "Dockerfile.single.alpine": 382.0,
    "Dockerfile.multi.ubuntu": 107.0,
    "Dockerfile.multi.alpine": 15.4,
    "Dockerfile.multi.distroless": 7.6,
    "Dockerfile.multi.scratch": 7.1,
}
HARDENING = ["--read-only", "--tmpfs", "/tmp:exec,mode=1777", "--cap-drop", "ALL",
             "--security-opt", "no-new-privileges"]
PULL_TIMEOUT = 60
HEALTHY_TIMEOUT = 90.0


def log(message: str) -> None:
    print(f"sizes: {message}", file=sys.stderr, flush=True)


def docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=timeout, check=check)


def image_tag(dockerfile: str) -> str:
    return f"long-poll:{dockerfile}"


# --- base images -------------------------------------------------------------------------


def base_images(dockerfile: Path) -> list[str]:
    """The images the Dockerfile's FROM lines name, with ARG defaults (or env overrides) applied."""
    args: dict[str, str] = {}
    stages: set[str] = set()
    images: list[str] = []
    for line in dockerfile.read_text().splitlines():
        line = line.strip()
        if match := re.match(r"ARG\s+(\w+)(?:=(\S*))?$", line):
            name, default = match.group(1), match.group(2) or ""
            args.setdefault(name, os.environ.get(name) or default)
        elif match := re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, re.IGNORECASE):
            image = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), ""), match.group(1))
            if image != "scratch" and image not in stages and image not in images:
                images.append(image)
            if match.group(2):
                stages.add(match.group(2))
    return images


def ensure_base(image: str) -> tuple[bool, str]:
    """(available, note): present locally (say if a stand-in) or pulled now, or why not."""
    found = docker("image", "inspect", "--format", f'{{{{index .Config.Labels "{STAND_IN_LABEL}"}}}}',
                   image, check=False)
    if found.returncode == 0:
        return True, "stand-in" if found.stdout.strip() == "true" else "present"
    log(f"base image {image} is not here: docker pull (up to {PULL_TIMEOUT} s)")
    try:
        pulled = docker("pull", "--quiet", image, timeout=PULL_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        return False, f"base image {image} is not here and `docker pull` timed out"
    if pulled.returncode == 0:
        return True, "pulled"
    error = (pulled.stderr.strip().splitlines() or ["failed"])[-1]
    error = re.sub(r"^Error response from daemon:\s*", "", error)
    error = re.sub(r'^Get "[^"]*":\s*', "", error)  # the registry URL adds nothing
    if len(error) > 120:
        error = error[:117] + "..."
    return False, f"base image {image} is not here and cannot be pulled ({error})"


# --- build, run, measure ------------------------------------------------------------------


def build(dockerfile: str, tag: str, log_path: Path) -> tuple[bool, float, str]:
    """Build with scripts/docker-build.sh; show its steps; return (ok, seconds, last error line)."""
    started = time.monotonic()
    lines: list[str] = []
    with log_path.open("w") as out, subprocess.Popen(
        [str(ROOT / "scripts" / "docker-build.sh"), dockerfile, tag],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            out.write(line)
            lines.append(line.rstrip())
            # Legacy builder: "Step 5/17 : RUN ..."; BuildKit: "#7 [builder 3/9] RUN ...".
            if re.match(r"(Step \d+/\d+ :|#\d+ \[)", line):
                step = line.strip()
                log(f"  {time.monotonic() - started:5.0f} s  {step[:100]}")
    seconds = time.monotonic() - started
    error = next((l for l in reversed(lines) if l.strip()), "no output")
    return process.returncode == 0, seconds, error[:160]


def health_config(tag: str) -> bool:
    result = docker("image", "inspect", "--format", "{{json .Config.Healthcheck}}", tag)
    value = json.loads(result.stdout or "null")
    return bool(value and value.get("Test") and value["Test"][0] != "NONE")


def parse_size(text: str) -> float:
    """'12.5MiB' or '900kB' -> bytes."""
    match = re.match(r"([\d.]+)\s*([KMGT]?i?B)", text.strip(), re.IGNORECASE)
    if not match:
        raise ValueError(text)
    number, unit = float(match.group(1)), match.group(2)
    power = "BKMGT".index(unit[0].upper()) if unit[0].upper() in "KMGT" else 0
    base = 1024 if "i" in unit else 1000
    return number * base**power


def run_and_measure(tag: str) -> tuple[float | None, int | None, str]:
    """Run hardened; (seconds from `docker run` to healthy, idle memory bytes, note)."""
    name = f"long-poll-sizes-{uuid.uuid4().hex[:10]}"
    started = time.monotonic()
    try:
        docker("run", "--detach", "--name", name, *HARDENING, tag, timeout=60)
        deadline = started + HEALTHY_TIMEOUT
        status = "starting"
        while time.monotonic() < deadline:
            state = docker("inspect", "--format", "{{.State.Status}} {{.State.Health.Status}}", name, check=False)
            running, _, status = state.stdout.strip().partition(" ")
            if status == "healthy":
                break
            if running not in ("created", "running"):
                return None, None, f"container {running} before it was healthy"
            time.sleep(0.1)
        else:
            return None, None, f"not healthy within {HEALTHY_TIMEOUT:.0f} s (last: {status})"
        to_healthy = time.monotonic() - started
        stats = docker("stats", "--no-stream", "--format", "{{.MemUsage}}", name, timeout=60)
        memory = int(parse_size(stats.stdout.split("/")[0]))
        return to_healthy, memory, ""
    finally:
        docker("rm", "--force", name, check=False, timeout=60)


def measure(dockerfile: str, logs: Path, run: bool) -> dict:
    path = ROOT / dockerfile
    tag = image_tag(dockerfile)
    row: dict = {"dockerfile": dockerfile, "image": tag, "go_mb": GO_MB.get(dockerfile), "built": False,
                 "reason": "", "size_bytes": None, "size_mb": None, "build_seconds": None,
                 "seconds_to_healthy": None, "idle_memory_bytes": None, "idle_memory_mb": None,
                 "base_images": [], "stand_in_bases": []}
    if not path.is_file():
        row["reason"] = f"{dockerfile} does not exist"
        return row
    for image in base_images(path):
        ok, note = ensure_base(image)
        row["base_images"].append(image)
        if not ok:
            row["reason"] = note
            return row
        if note == "stand-in":
            row["stand_in_bases"].append(image)
    log_path = logs / f"{dockerfile}.log"
    log(f"building {dockerfile} as {tag} (log: {log_path.relative_to(ROOT) if log_path.is_relative_to(ROOT) else log_path})")
    ok, seconds, error = build(dockerfile, tag, log_path)
    row["build_seconds"] = round(seconds, 1)
    if not ok:
        row["reason"] = f"build failed: {error}"
        return row
    row["built"] = True
    size = int(docker("image", "inspect", "--format", "{{.Size}}", tag).stdout.strip())
    row["size_bytes"], row["size_mb"] = size, round(size / 1e6, 2)
    log(f"built {dockerfile} in {seconds:.0f} s: {size / 1e6:.2f} MB")
    if run and health_config(tag):
        log(f"running {tag} until healthy")
        to_healthy, memory, note = run_and_measure(tag)
        if note:
            row["reason"] = note
        else:
            row["seconds_to_healthy"] = round(to_healthy, 2)
            row["idle_memory_bytes"], row["idle_memory_mb"] = memory, round(memory / 1e6, 1)
            log(f"healthy after {to_healthy:.1f} s, idle memory {memory / 1e6:.1f} MB")
    return row


# --- report ---------------------------------------------------------------------------------


def machine() -> dict:
    cpu = ""
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    version = docker("version", "--format", "{{.Server.Version}}", check=False).stdout.strip()
    return {"system": platform.platform(), "cpu": cpu, "cpus": os.cpu_count(), "docker_server": version}


def fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def table(rows: list[dict]) -> str:
    lines = ["| Dockerfile | ours (MB) | Go original (MB) | `docker run` to healthy (s) | idle memory (MB) | notes |",
             "|---|---:|---:|---:|---:|---|"]
    for row in rows:
        notes = []
        if not row["built"]:
            notes.append(f"not built: {row['reason']}")
        else:
            if row["stand_in_bases"]:
                notes.append("built on local stand-in " + ", ".join(row["stand_in_bases"]))
            if row["reason"]:
                notes.append(row["reason"])
        lines.append(f"| {row['dockerfile']} | {fmt(row['size_mb'], 2)} | {fmt(row['go_mb'])} | "
                     f"{fmt(row['seconds_to_healthy'])} | {fmt(row['idle_memory_mb'])} | {'; '.join(notes)} |")
    return "\n".join(lines)


def chart(rows: list[dict], path: Path, measured: str) -> str:
    """A bar chart (log scale) of ours vs Go's sizes; returns '' or why it was not drawn."""
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError:
        return "Pillow is not installed (pip install -c constraints.txt -e '.[test]'): no chart"
    import math

    width, row_h, left, right, top = 1100, 64, 250, 40, 90
    height = top + row_h * len(rows) + 70
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)

    def font(size: int):
        try:
            return ImageFont.load_default(size=size)
        except TypeError:  # Pillow < 10.1: one small bitmap font
            return ImageFont.load_default()

    title, text, small = font(22), font(16), font(13)
    ours_colour, go_colour = (32, 110, 200), (170, 170, 170)
    draw.text((20, 14), "long-poll image sizes (MB, log scale): ours vs the Go recipe", fill="black", font=title)
    draw.text((20, 44), f"measured {measured}", fill=(90, 90, 90), font=small)
    draw.rectangle((width - 330, 44, width - 316, 58), fill=ours_colour)
    draw.text((width - 310, 43), "ours (Python, static binary)", fill="black", font=small)
    draw.rectangle((width - 330, 64, width - 316, 78), fill=go_colour)
    draw.text((width - 310, 63), "Go original", fill="black", font=small)
    low, high = 1.0, 1000.0
    span = width - left - right - 60

    def x_of(mb: float) -> int:
        mb = min(max(mb, low), high)
        return left + int(span * math.log10(mb / low) / math.log10(high / low))

    axis_y = top + row_h * len(rows) + 4
    for tick in (1, 10, 100, 1000):
        x = x_of(tick)
        draw.line((x, top - 4, x, axis_y), fill=(225, 225, 225))
        draw.text((x - 10, axis_y + 6), str(tick), fill=(90, 90, 90), font=small)
    for i, row in enumerate(rows):
        y = top + i * row_h
        draw.text((20, y + 18), row["dockerfile"], fill="black", font=text)
        bars = [(row["size_mb"], ours_colour, y + 6), (row["go_mb"], go_colour, y + 32)]
        for value, colour, bar_y in bars:
            if value is None:
                draw.text((left + 4, bar_y + 2), "not built here", fill=(180, 40, 40), font=small)
                continue
            draw.rectangle((left, bar_y, max(x_of(value), left + 2), bar_y + 22), fill=colour)
            draw.text((max(x_of(value), left + 2) + 6, bar_y + 4), f"{value:g}", fill="black", font=small)
    draw.line((left, top - 4, left, axis_y), fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dockerfiles", nargs="*", metavar="DOCKERFILE", help="default: all six")
    parser.add_argument("--strict", action="store_true", help="exit 1 when any Dockerfile cannot be built or run")
    parser.add_argument("--no-run", action="store_true", help="build and size only; do not run the images")
    parser.add_argument("--out-dir", default=str(ROOT / "dist"), help="where to write image-sizes.json/.png")
    options = parser.parse_args(argv)
    dockerfiles = [Path(d).name for d in options.dockerfiles] or list(GO_MB)
    order = list(GO_MB)
    dockerfiles.sort(key=lambda d: order.index(d) if d in order else len(order))
    out_dir = Path(options.out_dir)
    logs = out_dir / "image-sizes-logs"
    logs.mkdir(parents=True, exist_ok=True)

    try:
        docker("version", "--format", "{{.Server.Version}}", timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        log(f"no docker engine answers: {exc}")
        return 1

    measured = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    rows = []
    for number, dockerfile in enumerate(dockerfiles, 1):
        log(f"[{number}/{len(dockerfiles)}] {dockerfile}")
        rows.append(measure(dockerfile, logs, run=not options.no_run))
        if not rows[-1]["built"]:
            log(f"{dockerfile}: not built: {rows[-1]['reason']}")

    host = machine()
    report = {"measured_at": measured, "machine": host,
              "units": "MB = 10^6 bytes, as `docker images` shows; memory from `docker stats`",
              "run_options": HARDENING, "rows": rows}
    (out_dir / "image-sizes.json").write_text(json.dumps(report, indent=2) + "\n")
    why_not = chart(rows, out_dir / "image-sizes.png", f"{measured} on {host['cpus']} x {host['cpu'] or host['system']}")
    print(table(rows))
    print(f"\nMeasured {measured} on {host['system']}, {host['cpus']} CPUs ({host['cpu']}), "
          f"Docker {host['docker_server']}. MB = 10^6 bytes.")
    print(f"Written: {out_dir / 'image-sizes.json'}" + (f"; {why_not}" if why_not else f", {out_dir / 'image-sizes.png'}"))
    failed = [row for row in rows if not row["built"] or row["reason"]]
    return 1 if options.strict and failed else 0


if __name__ == "__main__":
    sys.exit(main())
