#!/bin/sh
# Install what the suite needs on a Debian 12 machine, as root, idempotently:
# Debian packages (kernel tools, the reference plugins as an oracle, etcd,
# podman) and a virtualenv with the pinned Python dependencies.
set -eu
cd "$(dirname "$0")/.."
VENV=.venv
STAMP=$VENV/.deps-$(cat requirements.txt setup.cfg | sha256sum | cut -c1-16)

PKGS="iproute2 iputils-ping nftables iptables ethtool procps util-linux containernetworking-plugins etcd-server etcd-client podman runc busybox-static hyperfine python3 python3-venv python3-dev libpython3.11 binutils gcc libc6-dev zlib1g-dev patch containerd"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "setup: installing Debian packages:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

[ -f "$STAMP" ] && exit 0
PY=${PYTHON:-$(command -v python3)}
[ -x $VENV/bin/python ] || "$PY" -m venv $VENV
$VENV/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt
# the source tree on sys.path of the virtualenv (an editable install without a build step)
$VENV/bin/python -c 'import site,sys; open(site.getsitepackages()[0] + "/cni-python-suite.pth", "w").write(sys.argv[1] + "\n")' "$PWD"
rm -f $VENV/.deps-*
touch "$STAMP"
echo "setup: virtualenv ready ($($VENV/bin/python --version))"
