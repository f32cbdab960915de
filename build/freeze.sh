#!/bin/sh
# Freeze the service into one static executable: PyInstaller, then staticx.
#
#   build/freeze.sh [OUTPUT]        (default dist/long-poll)
#
# PYTHON: the interpreter that has the project, PyInstaller and staticx installed (a venv).
# PROFILE: "small" (default) or "fast" (see README, "Which build to pick").
set -eu
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
PROFILE=${PROFILE:-small}
out=${1:-dist/long-poll}
work=build/work  # PyInstaller's work files; ignored by git, removed by `make clean`

case "$PROFILE" in
    # small: a PyInstaller onedir folder that staticx packs and xz-compresses once
    # (build/staticx_onedir.py): the smallest file, extracted once at start-up. The Python
    # modules are zlib-compressed (level 9) inside it: Python inflates only those it imports, much
    # faster than the bootloader would decode them from xz, for about 0.6 MB more file.
    small) zlib_level=9 ;;
    # fast: a PyInstaller onefile with its zlib archive, no xz: a bigger file that starts faster.
    fast) zlib_level=6 ;;
    *) echo "freeze.sh: PROFILE must be small or fast, not '$PROFILE'" >&2; exit 2 ;;
esac

for tool in ldd objcopy strip patchelf readelf $( [ "$PROFILE" = small ] && echo musl-gcc ); do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "freeze.sh: '$tool' is missing: apt-get install binutils patchelf musl-tools (or: make binary-docker)" >&2
        exit 1
    }
done

mkdir -p "$(dirname "$out")" "$work"
# 1. PyInstaller: the interpreter, the app and its libraries (the spec reads PROFILE).
PROFILE=$PROFILE PYINSTALLER_ZLIB_COMPRESSION_LEVEL=$zlib_level "$PYTHON" -m PyInstaller \
    --noconfirm --clean --log-level WARN \
    --distpath "$work/pyinstaller-$PROFILE" --workpath "$work/pyinstaller-work" \
    build/long-poll.spec
# 2. staticx: bundle the C library and loader too, so that the file runs on an empty root.
#    Written beside the target and renamed, so that a failed build leaves no half file.
rm -f "$out.partial"
if [ "$PROFILE" = small ]; then
    # staticx's bootloader built with -O2 (build/bootloader.sh): it decodes the archive faster.
    PYTHON=$PYTHON build/bootloader.sh "$work/staticx-bootloader"
    "$PYTHON" build/staticx_onedir.py --bootloader "$work/staticx-bootloader" \
        "$work/pyinstaller-$PROFILE/long-poll" "$out.partial"
else
    "$PYTHON" -m staticx --strip --no-compress "$work/pyinstaller-$PROFILE/long-poll" "$out.partial"
fi
chmod 0755 "$out.partial"  # staticx writes 0700; the image's non-root user must run it
mv -f "$out.partial" "$out"
echo "freeze.sh: built $out ($PROFILE, $(wc -c <"$out") bytes)"
