"""Write an xz stream that stores incompressible stretches instead of LZMA-coding them.

Why: staticx's bootloader decodes its xz archive at every start, at about 75 ms per MB of LZMA
data here. Data that is already compressed (the zlib-compressed Python modules inside the
PyInstaller program) gains nothing from LZMA, yet LZMA-coding it made each start about 15 ms
slower. An xz stream may hold several blocks, each with its own filters, and an LZMA2 chunk may
be stored as it is: so the stretches that LZMA cannot shrink go into blocks of stored chunks,
which the decoder only copies, and the rest into ordinary BCJ + LZMA2 blocks. Any xz decoder
reads the result (compress() checks it with Python's lzma module on every build).

The container follows the xz file format specification (tukaani.org/xz/xz-file-format.txt);
it carries no integrity check, like the stream it replaces (see build/staticx_onedir.py).
"""

from __future__ import annotations

import lzma
import struct
import zlib

PIECE = 64 * 1024  # the unit of the stored-or-compressed decision (an LZMA2 stored chunk's maximum)
STORE_ABOVE = 0.9  # store a piece whose zlib-compressed size is above this share of its size
MAGIC = b"\xfd7zXZ\x00"
FLAGS = b"\x00\x00"  # stream flags: no check
FILTER_LZMA2 = 0x21  # filter ids are the xz format's, which Python's lzma.FILTER_* constants equal
MAX_DICT = 8 << 20  # staticx's own choice (xz preset 6): the decoder allocates this much at most


def varint(n: int) -> bytes:
    """The xz format's multibyte integer."""
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    return bytes(out + bytes([n]))


def pad4(data: bytes) -> bytes:
    return data + b"\x00" * (-len(data) % 4)


def crc(data: bytes) -> bytes:
    return struct.pack("<I", zlib.crc32(data))


def dict_byte(size: int) -> tuple[int, int]:
    """The smallest LZMA2 dictionary of the form 2**n that holds `size` (at most MAX_DICT), and its property byte."""
    n = 12
    while (1 << n) < min(size, MAX_DICT):
        n += 1
    return 1 << n, 2 * (n - 12)


def plan(data: bytes) -> list[tuple[bool, int, int]]:
    """Split `data` into runs of (stored, start, end): a run is stored when zlib cannot shrink it."""
    runs: list[tuple[bool, int, int]] = []
    for start in range(0, len(data), PIECE):
        piece = data[start:start + PIECE]
        stored = len(zlib.compress(piece, 1)) > STORE_ABOVE * len(piece)
        if runs and runs[-1][0] == stored:
            runs[-1] = (stored, runs[-1][1], start + len(piece))
        else:
            runs.append((stored, start, start + len(piece)))
    return runs


def stored_chunks(data: bytes) -> bytes:
    """LZMA2 data made of stored chunks only: the decoder copies them."""
    out = bytearray()
    for i, start in enumerate(range(0, len(data), PIECE)):
        piece = data[start:start + PIECE]
        out += bytes([0x01 if i == 0 else 0x02]) + struct.pack(">H", len(piece) - 1) + piece
    return bytes(out + b"\x00")


def block(data: bytes, stored: bool, bcj: int | None) -> tuple[bytes, int]:
    """One xz block (header, LZMA2 data, padding) and its unpadded size for the index.

    `bcj`: the branch filter for the machine code in `data` (lzma.FILTER_X86...), or None.
    """
    dict_size, prop = dict_byte(len(data) if not stored else PIECE)
    if stored:
        filters = [(FILTER_LZMA2, bytes([prop]))]
        body = stored_chunks(data)
    else:
        chain = [{"id": bcj}] if bcj else []
        chain.append({"id": lzma.FILTER_LZMA2, "preset": 6, "dict_size": dict_size})
        body = lzma.compress(data, format=lzma.FORMAT_RAW, filters=chain)
        filters = ([(bcj, b"")] if bcj else []) + [(FILTER_LZMA2, bytes([prop]))]
    flags = bytes([len(filters) - 1])  # no compressed or uncompressed size in the header
    spec = b"".join(varint(fid) + varint(len(props)) + props for fid, props in filters)
    size = len(pad4(b"\x00" + flags + spec)) + 4
    header = pad4(bytes([size // 4 - 1]) + flags + spec)
    header += crc(header)
    return pad4(header + body), len(header) + len(body)


def compress(data: bytes, bcj: int | None) -> bytes:
    """An xz stream of `data`: stored blocks where zlib cannot shrink it, BCJ + LZMA2 elsewhere."""
    out = bytearray(MAGIC + FLAGS + crc(FLAGS))
    records = []
    for stored, start, end in plan(data):
        encoded, unpadded = block(data[start:end], stored, bcj)
        out += encoded
        records.append(varint(unpadded) + varint(end - start))
    index = pad4(b"\x00" + varint(len(records)) + b"".join(records))
    index += crc(index)
    out += index
    tail = struct.pack("<I", len(index) // 4 - 1) + FLAGS
    out += crc(tail) + tail + b"YZ"
    if lzma.decompress(bytes(out), format=lzma.FORMAT_XZ) != data:  # never ship a stream no decoder reads back
        raise RuntimeError("xz_blocks: the stream does not decode to its input")
    return bytes(out)

