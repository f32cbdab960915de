"""build/xz_blocks.py: the xz stream that stores what LZMA cannot shrink.

Every stream here is read back by Python's lzma module (liblzma); tests/test_binary.py runs the
binary whose archive it wrote, which staticx's bootloader (XZ Embedded) decodes.
"""

from __future__ import annotations

import lzma
import random
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "build"))
import xz_blocks  # noqa: E402

PIECE = xz_blocks.PIECE


def noise(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


def text(size: int) -> bytes:
    line = b"GET /events/news?cursor=41&timeout=30 HTTP/1.1 200 {\"events\": []}\n"
    return (line * (size // len(line) + 1))[:size]


def test_plan_stores_noise_and_compresses_text() -> None:
    data = text(3 * PIECE) + noise(2 * PIECE) + text(PIECE + 100)
    assert xz_blocks.plan(data) == [
        (False, 0, 3 * PIECE),
        (True, 3 * PIECE, 5 * PIECE),
        (False, 5 * PIECE, len(data)),
    ]


@pytest.mark.parametrize("bcj", [lzma.FILTER_X86, None], ids=["x86", "no-bcj"])
@pytest.mark.parametrize("size", [0, 1, PIECE - 1, PIECE, 5 * PIECE + 7])
def test_round_trip(size: int, bcj: int | None) -> None:
    half = size // 2
    data = text(half) + noise(size - half)
    assert lzma.decompress(xz_blocks.compress(data, bcj=bcj), format=lzma.FORMAT_XZ) == data


def test_stored_stretch_is_copied_not_coded() -> None:
    stretch = noise(3 * PIECE, seed=7)
    packed = xz_blocks.compress(text(4 * PIECE) + stretch, bcj=lzma.FILTER_X86)
    # Stored chunks hold the bytes verbatim, 64 KiB at a time behind a 3-byte chunk header.
    for start in range(0, len(stretch), PIECE):
        assert stretch[start:start + PIECE] in packed
    assert len(packed) < len(stretch) + 4 * PIECE // 10  # the text part still compressed


def test_stream_has_no_check_and_one_block_per_run(tmp_path) -> None:
    xz = shutil.which("xz")
    if xz is None:
        pytest.fail("xz (xz-utils) is missing: it lists the blocks of the stream")
    data = text(2 * PIECE) + noise(PIECE) + text(PIECE)
    packed = tmp_path / "data.xz"
    packed.write_bytes(xz_blocks.compress(data, bcj=lzma.FILTER_X86))
    listing = subprocess.run([xz, "--robot", "-lvv", str(packed)], capture_output=True, check=True).stdout.decode()
    blocks = [line.split("\t") for line in listing.splitlines() if line.startswith("block\t")]
    assert len(blocks) == 3
    assert all(row[9] == "None" for row in blocks)  # check type
    assert [row[-1] for row in blocks] == ["--x86 --lzma2=dict=128KiB", "--lzma2=dict=64KiB", "--x86 --lzma2=dict=64KiB"]


def test_a_stream_that_does_not_decode_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    real = xz_blocks.stored_chunks
    monkeypatch.setattr(xz_blocks, "stored_chunks", lambda data: real(data[:-1] + b"?"))
    with pytest.raises(RuntimeError, match="does not decode to its input"):
        xz_blocks.compress(text(PIECE) + noise(PIECE), bcj=None)
