#!/bin/sh
# PyInstaller's onefile bootloader, rebuilt from its pinned source with two
# changes (docs/build.md):
# - "Run in place" (build/bootloader-src/pyi_cni_cache.c, hooked in by
#   build/bootloader-cache.patch): the bundle is extracted once per build into
#   a verified, root-only cache and Python runs in the bootloader's process;
# - the per-start fallback keeps a fix (build/bootloader-pdeathsig.patch): the
#   forked child asks for SIGKILL when the bootloader dies *before* it waits on
#   the start-up semaphore.  Unpatched, a runtime's SIGKILL of the bootloader
#   in that window leaves the child blocked in sem_wait() forever, holding the
#   runtime's stdout pipe ("Runtime hygiene").
# Idempotent: a stamp beside the installed bootloader names what it was built from.
set -eu
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
VERSION=6.22.3
URL=https://files.pythonhosted.org/packages/63/41/f90302845945abd4ed647933ff5ee7c6ac93983187be67f897b6cb613331/pyinstaller-$VERSION.tar.gz
SHA256=05eb2f5615503e72939a7224d68b4aff572c6b0438ee4a17d0a4b481f399362d
PATCHES="build/bootloader-pdeathsig.patch build/bootloader-cache.patch"
SOURCES="build/bootloader-src/pyi_cni_cache.c build/bootloader-src/pyi_cni_cache.h"
work=build/work/bootloader

pkg=$("$PY" -c 'import os, PyInstaller; print(os.path.dirname(PyInstaller.__file__))')
target="$pkg/bootloader/Linux-64bit-intel/run"
if [ "$(uname -m)" != x86_64 ]; then
    # the Python-level parent check still runs there; only the window before Python stays open
    echo "bootloader: not rebuilt on $(uname -m) (this script knows Linux-64bit-intel only): upstream bootloader kept" >&2
    exit 0
fi
want=$(cat "$0" $PATCHES $SOURCES | sha256sum | cut -c1-16)
[ -f "$target.cni-$want" ] && exit 0

mkdir -p "$work"
tarball="$work/pyinstaller-$VERSION.tar.gz"
if ! echo "$SHA256  $tarball" | sha256sum -c --status 2>/dev/null; then
    echo "bootloader: fetching the PyInstaller $VERSION source"
    "$PY" -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])' "$URL" "$tarball.part"
    echo "$SHA256  $tarball.part" | sha256sum -c --status || { echo "bootloader: checksum mismatch for $URL" >&2; exit 1; }
    mv "$tarball.part" "$tarball"
fi
rm -rf "$work/src"
mkdir -p "$work/src"
tar xzf "$tarball" -C "$work/src" --strip-components=1 "pyinstaller-$VERSION/bootloader" "pyinstaller-$VERSION/PyInstaller/_shared_with_waf.py"
for p in $PATCHES; do patch -s -d "$work/src/bootloader" -p1 < "$p"; done
cp $SOURCES "$work/src/bootloader/src/"
pyabs=$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")
log=$PWD/$work/waf.log
(cd "$work/src/bootloader" && "$pyabs" ./waf --no-universal2 --target-arch=64bit configure build_release >"$log" 2>&1) \
    || { tail -20 "$log" >&2; exit 1; }
[ -f "$target.upstream" ] || cp "$target" "$target.upstream"
cp "$work/src/bootloader/build/release/run" "$target.new"
mv -f "$target.new" "$target"
rm -f "$target".cni-*
touch "$target.cni-$want"
echo "bootloader: patched bootloader installed ($want)"
