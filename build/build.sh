#!/bin/sh
# make build: the multi-call single-file binary and its plugin-name links in
# dist/cni-bin (docs/build.md).  Needs the virtualenv from build/setup-deps.sh.
set -eu
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
out=dist/cni-bin
work=build/work

"$PY" -c 'import PyInstaller, sys; v = PyInstaller.__version__; sys.exit(0 if v == "6.22.3" else "build: PyInstaller %s, the spec needs 6.22.3 (requirements.txt)" % v)'
# the onefile bootloader with the child's parent-death signal set before it waits (bootloader.sh)
PY="$PY" ./build/bootloader.sh
# the plugin table, precompiled dataclass methods and the marker, in a fresh interpreter
"$PY" build/gen.py "$work/cni-multi/gen"
# PYTHONHASHSEED: reproducible .pyc; no -O: asserts stay in
PYINSTALLER_ZLIB_COMPRESSION_LEVEL=${PYZ_LEVEL:-0} PYTHONHASHSEED=0 "$PY" -m PyInstaller --noconfirm --log-level WARN \
    --distpath "$work/dist" --workpath "$work" build/cni-multi.spec

# publish: the new binary and its links appear in dist/cni-bin by rename only
mkdir -p "$out"
cp "$work/dist/cni-multi" "$out/.cni-multi.new"
chmod 755 "$out/.cni-multi.new"
mv -f "$out/.cni-multi.new" "$out/cni-multi"
names=$("$PY" -c 'import sys; sys.path.insert(0, sys.argv[1]); from cni_multi_table import PLUGINS; print(" ".join(sorted(PLUGINS)))' "$work/cni-multi/gen")
for name in $names; do
    ln -sfn cni-multi "$out/.$name.new"
    mv -Tf "$out/.$name.new" "$out/$name"
done
# a plugin dropped from the build must not linger as a dangling name
for link in "$out"/*; do
    [ -L "$link" ] || continue
    case " $names " in *" $(basename "$link") "*) ;; *) rm -f "$link" ;; esac
done
size=$(stat -c %s "$out/cni-multi")
echo "build: $out/cni-multi ($((size / 1024)) KiB) as: $names"
