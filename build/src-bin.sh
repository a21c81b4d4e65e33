#!/bin/sh
# dist/src-bin: each plugin from the source tree under its CNI type name, so
# runtimes, cnitool and the black-box tests can exec it from CNI_PATH.
set -eu
cd "$(dirname "$0")/.."
out=dist/src-bin
mkdir -p $out
py="$PWD/.venv/bin/python"
for pair in host-local:cni_hostlocal_ipam bridge:cni_bridge vxlan:cni_vxlan cni-suite:cni_suite; do
    name=${pair%%:*} module=${pair#*:}
    [ -f "$module/__main__.py" ] || continue
    # -I: ignore PYTHON* variables and the working directory (podman passes its env through)
    printf '#!/bin/sh\nexec %s -I -m %s "$@"\n' "$py" "$module" > "$out/$name.tmp"
    chmod 755 "$out/$name.tmp"
    mv "$out/$name.tmp" "$out/$name"
done
