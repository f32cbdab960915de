"""Pack a PyInstaller onedir folder into one static executable with staticx.

    python build/staticx_onedir.py FOLDER OUTPUT

staticx's command line takes one program and bundles the libraries `ldd` finds for it. A onedir
program loads libpython and the extension modules from its folder at run time, so here the whole
folder goes into staticx's archive, at the same relative paths, and the system libraries that the
folder's libraries need (libm, libc...) are added by name as staticx adds the program's own.
At run time staticx extracts the archive once into its temp dir and runs the program there; the
program finds its folder beside itself (contents_directory="." in build/long-poll.spec).

The xz stream carries no check (staticx writes CRC32): verifying 19 MB byte by byte was 8 % of
the start's CPU here, and a bare executable carries no checksum anyway (a Go binary neither); a
file's integrity is what image digests and `sha256sum` are for.

This uses staticx's generator class and two of its attributes (`sxar`, `_added_libs`), which
its command line does not expose; staticx's version is pinned in constraints.txt and
tests/test_binary.py runs every feature of the result.
"""

from __future__ import annotations

import argparse
import lzma
import os
import sys

from staticx.api import StaticxGenerator
from staticx.elf import get_shobj_deps, is_dynamic_elf, verify_tools

PROGRAM = "long-poll"


def folder_files(folder: str) -> list[str]:
    """Every regular file under `folder`, relative, in a stable order."""
    found = []
    for top, dirs, files in os.walk(folder):
        dirs.sort()
        found += [os.path.relpath(os.path.join(top, name), folder) for name in sorted(files)]
    return found


def pack(folder: str, output: str) -> None:
    folder = os.path.abspath(folder)  # staticx's ldd parser wants absolute library paths
    program = os.path.join(folder, PROGRAM)
    if not os.path.isfile(program):
        raise SystemExit(f"staticx_onedir: {program} is missing: not a PyInstaller onedir folder")
    verify_tools()
    files = [name for name in folder_files(folder) if name != PROGRAM]
    crc32 = lzma.CHECK_CRC32
    lzma.CHECK_CRC32 = lzma.CHECK_NONE  # read once, when the generator opens its xz stream
    try:
        generator = StaticxGenerator(prog=program, strip=True, compress=True)
    finally:
        lzma.CHECK_CRC32 = crc32
    with generator:
        for name in files:
            generator.sxar.add_file(os.path.join(folder, name), arcname=name)
            if os.sep not in name:  # a library at the top: staticx must not add a system copy
                generator._added_libs[name] = os.path.join(folder, name)
        for name in files:
            path = os.path.join(folder, name)
            if is_dynamic_elf(path):
                for dependency in get_shobj_deps(path, libpath=[folder]):
                    generator.add_library(dependency, exist_ok=True)
        generator.generate(output=output)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder")
    parser.add_argument("output")
    args = parser.parse_args(argv)
    pack(args.folder, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
