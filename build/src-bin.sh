#!/bin/sh
# dist/src-bin: each plugin from the source tree under its CNI type name, so
# runtimes, cnitool and the black-box tests can exec it from CNI_PATH.
set -eu
cd "$(dirname "$0")/.."
out=dist/src-bin
mkdir -p $out
py="$PWD/.venv/bin/python"
# name:package of every declared plugin and CLI (the plugin table, common/plugins.py)
pairs=$("$py" -I -c 'import sys; sys.path.insert(0, sys.argv[1])
from common.plugins import discover
print(*(name + ":" + e["package"] for name, e in sorted(discover().items())))' "$PWD")
[ -n "$pairs" ]
for pair in $pairs; do
    name=${pair%%:*} module=${pair#*:}
    [ -f "$module/__main__.py" ] || { echo "src-bin: $module has no __main__.py" >&2; exit 1; }
    # -I: ignore PYTHON* variables and the working directory (podman passes its env through)
    printf '#!/bin/sh\nexec %s -I -m %s "$@"\n' "$py" "$module" > "$out/$name.tmp"
    chmod 755 "$out/$name.tmp"
    mv "$out/$name.tmp" "$out/$name"
done
