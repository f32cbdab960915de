#!/bin/sh
# Build staticx's bootloader from staticx's own source, with -O2 instead of its release -Os.
#
#   build/bootloader.sh OUTPUT        (PYTHON: the venv whose staticx the bootloader must match)
#
# Why: the bootloader decodes the xz archive on every start of dist/long-poll, and the wheel's
# copy is built for size (-Os); built with -O2 the same decoder took about 30 ms less per start
# here, for 4 KB more. It is linked statically against musl, as the wheel's is (apt-get install
# musl-tools). The source is the sdist of the installed staticx version, checked against the
# digest below, so that the archive format and the bootloader always come from one release.
set -eu
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
out=${1:?usage: build/bootloader.sh OUTPUT}
version=$("$PYTHON" -c 'import importlib.metadata as m; print(m.version("staticx"))')
case "$version" in
    0.14.2) digest=bf7d5d35d5777a72b2d4c408eb25f9c61049b28b94a388a012122dba00fffa93 ;;
    *) echo "bootloader.sh: no digest for staticx $version: add the sdist's sha256 here" >&2; exit 1 ;;
esac
command -v musl-gcc >/dev/null 2>&1 || {
    echo "bootloader.sh: musl-gcc is missing: apt-get install musl-tools (or: make binary-docker)" >&2
    exit 1
}
# The BCJ filter staticx uses for this machine (x86, ARM...) is the one the decoder must know.
bcj=$("$PYTHON" -c 'from staticx.bcjfilter import get_bcj_filter_arch as a; print(a() or "")')

work=build/work/bootloader
rm -rf "$work" && mkdir -p "$work"
"$PYTHON" -m pip download --quiet --no-deps --no-binary :all: "staticx==$version" -d "$work"
sdist="$work/staticx-$version.tar.gz"
echo "$digest  $sdist" | sha256sum -c --quiet - || { echo "bootloader.sh: $sdist does not match its digest" >&2; exit 1; }
tar -xzf "$sdist" -C "$work"
src="$work/staticx-$version"
# The sources and defines of staticx's SConstruct (release mode), with -O2 in place of -Os.
musl-gcc -std=gnu99 -O2 -static -DNDEBUG ${bcj:+-DXZ_DEC_$bcj=1} \
    -DSTATICX_VERSION="\"$version\"" -DCOMPILER_PATH='"musl-gcc"' \
    -I"$src/libtar" -I"$src/libtar/compat" -I"$src/libxz" \
    "$src"/bootloader/error.c "$src"/bootloader/elfutil.c "$src"/bootloader/extract.c \
    "$src"/bootloader/main.c "$src"/bootloader/mmap.c "$src"/bootloader/util.c \
    "$src"/libtar/block.c "$src"/libtar/decode.c "$src"/libtar/extract.c "$src"/libtar/handle.c \
    "$src"/libtar/output.c "$src"/libtar/util.c "$src"/libtar/compat/strlcpy.c "$src"/libtar/compat/strmode.c \
    "$src"/libxz/xz_crc32.c "$src"/libxz/xz_dec_lzma2.c "$src"/libxz/xz_dec_stream.c "$src"/libxz/xz_dec_bcj.c \
    -o "$out.partial"
# It must run here, as staticx checks its own copy (a release bootloader exits 0 at once).
STATICX_BOOTLOADER_IDENTIFY=1 "$out.partial" \
    || { echo "bootloader.sh: the built bootloader does not run" >&2; exit 1; }
mv -f "$out.partial" "$out"
echo "bootloader.sh: built $out (staticx $version, -O2, $(wc -c <"$out") bytes)"
