"""Pack a PyInstaller onedir folder into one static executable with staticx.

    python build/staticx_onedir.py [--bootloader FILE] FOLDER OUTPUT

staticx's command line takes one program and bundles the libraries `ldd` finds for it. A onedir
program loads libpython and the extension modules from its folder at run time, so here the whole
folder goes into staticx's archive, at the same relative paths, and the system libraries that the
folder's libraries need (libm, libc...) are added by name as staticx adds the program's own.
At run time staticx extracts the archive once into its temp dir and runs the program there; the
program finds its folder beside itself (contents_directory="." in build/long-poll.spec).

Two things differ from staticx's own output, both for the start-up time (decoding the archive
is most of it):
- The archive is compressed by build/xz_blocks.py instead of staticx: stretches that are already
  compressed (the zlib-compressed Python modules) are stored rather than LZMA-coded, and the
  stream carries no check (staticx writes CRC32: verifying 16 MB byte by byte was 8 % of the
  start's CPU here; a bare executable carries no checksum anyway, a Go binary neither; a file's
  integrity is what image digests and `sha256sum` are for).
- With --bootloader, the bootloader is that file (build/bootloader.sh builds staticx's with -O2).

This uses staticx's generator class and three of its attributes (`sxar`, `_added_libs`,
`tmpoutput`), which its command line does not expose; staticx's version is pinned in
constraints.txt and tests/test_binary.py runs every feature of the result.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

from staticx.api import StaticxGenerator
from staticx.archive import get_bcj_filter
from staticx.constants import ARCHIVE_SECTION
from staticx.elf import elf_dump_section, get_shobj_deps, is_dynamic_elf, verify_tools

import xz_blocks

PROGRAM = "long-poll"


def folder_files(folder: str) -> list[str]:
    """Every regular file under `folder`, relative, in a stable order."""
    found = []
    for top, dirs, files in os.walk(folder):
        dirs.sort()
        found += [os.path.relpath(os.path.join(top, name), folder) for name in sorted(files)]
    return found


class Generator(StaticxGenerator):
    """staticx's generator, with another bootloader when one is given."""

    def __init__(self, prog: str, bootloader: str | None) -> None:
        super().__init__(prog=prog, strip=True, compress=False)  # xz_blocks compresses afterwards
        self.bootloader = bootloader

    def _get_bootloader(self) -> None:
        super()._get_bootloader()  # staticx's own copy, checked against the program's machine
        if self.bootloader:
            shutil.copyfile(self.bootloader, self.tmpoutput)


def compress_archive(output: str) -> None:
    """Replace the output's uncompressed tar archive by its xz_blocks stream."""
    with tempfile.TemporaryDirectory(prefix="staticx-onedir-") as work:
        tar, packed = os.path.join(work, "archive.tar"), os.path.join(work, "archive.tar.xz")
        elf_dump_section(output, ARCHIVE_SECTION, tar)
        with open(tar, "rb") as source:
            data = source.read()
        with open(packed, "wb") as target:
            target.write(xz_blocks.compress(data, bcj=get_bcj_filter()[0]))
        subprocess.run(["objcopy", "--update-section", f"{ARCHIVE_SECTION}={packed}", output], check=True)


def pack(folder: str, output: str, bootloader: str | None = None) -> None:
    folder = os.path.abspath(folder)  # staticx's ldd parser wants absolute library paths
    program = os.path.join(folder, PROGRAM)
    if not os.path.isfile(program):
        raise SystemExit(f"staticx_onedir: {program} is missing: not a PyInstaller onedir folder")
    verify_tools()
    files = [name for name in folder_files(folder) if name != PROGRAM]
    with Generator(program, bootloader) as generator:
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
    compress_archive(output)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootloader", help="staticx's bootloader to use instead of its wheel's")
    parser.add_argument("folder")
    parser.add_argument("output")
    args = parser.parse_args(argv)
    pack(args.folder, args.output, args.bootloader)
    return 0


if __name__ == "__main__":
    sys.exit(main())
