#!/bin/sh
# Print the first Python that can be frozen into a static binary, or explain why none can.
#
# staticx refuses libraries that carry RUNPATH/RPATH (pyenv and some official images build
# Python that way), and PyInstaller needs the shared libpython. Candidates, in order: $PYTHON
# if set, then Debian's /usr/bin/python3, then python3 on PATH.
set -eu

problem() {
    # $1: interpreter; prints why it cannot be used, nothing when it can.
    info=$("$1" -c 'import sys, sysconfig as c; print(sys.executable); print(c.get_config_var("LIBDIR") or ""); print(c.get_config_var("INSTSONAME") or ""); print(c.get_config_var("DESTSHARED") or "")' 2>/dev/null) \
        || { echo "cannot run it"; return; }
    exe=$(echo "$info" | sed -n 1p); libdir=$(echo "$info" | sed -n 2p)
    soname=$(echo "$info" | sed -n 3p); dynload=$(echo "$info" | sed -n 4p)
    command -v readelf >/dev/null 2>&1 || { echo "readelf (binutils) is missing"; return; }
    [ -e "$libdir/$soname" ] || { echo "its shared library $libdir/$soname is missing (Debian: apt-get install libpython3-dev)"; return; }
    for file in "$exe" "$libdir/$soname" "$dynload"/*.so; do
        [ -e "$file" ] || continue
        if readelf -d "$file" 2>/dev/null | grep -qE '\((RUNPATH|RPATH)\)'; then
            echo "$file carries RUNPATH/RPATH, which staticx refuses"
            return
        fi
    done
}

tried=""
for candidate in ${PYTHON:-} /usr/bin/python3 python3; do
    path=$(command -v "$candidate" 2>/dev/null) || continue
    why=$(problem "$path")
    if [ -z "$why" ]; then
        echo "$path"
        exit 0
    fi
    tried="$tried
  $path: $why"
    [ -n "${PYTHON:-}" ] && [ "$candidate" = "$PYTHON" ] && break
done
cat >&2 <<MSG
long-poll: no Python here can be frozen with staticx.$tried
Use a Python built without RUNPATH and with its shared library, for example Debian's:
  apt-get install python3 python3-venv libpython3-dev binutils patchelf
  make binary PYTHON=/usr/bin/python3
or build inside Docker, which needs nothing else on this machine: make binary-docker
MSG
exit 1
