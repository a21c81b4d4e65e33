"""The README's "Using with containerd", tried as a new user would: `make install` into a DESTDIR, then the
section's containerd settings and conflist, copied from the README itself, and its `cni-suite doctor` check.

The install is build/install.sh from dist/cni-bin (what `make install DESTDIR=...` runs after `make build`).
The node is conformance/containerd/node.py's: containerd in its own namespaces, where /opt/cni/bin and
/etc/cni/net.d are the node's own (logging wrappers of the installed plugins, and the README's conflist),
and /usr/lib/cni is empty, so nothing falls back to the reference plugins.
"""
from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import subprocess
import tempfile

import pytest

from conformance.containerd import image
from conformance.containerd import node as cnode
from conformance.fixtures import REPO
from conformance.helpers import eventually
from conformance.test_containerd import assert_from_dir_under_test, containerd_installed, fetch, pod_addresses, pod_uid  # noqa: F401

pytestmark = pytest.mark.conformance
BUILT = os.path.join(REPO, "dist", "cni-bin")
CRI_CNI = '[plugins."io.containerd.grpc.v1.cri".cni]'


def readme_section() -> str:
    with open(os.path.join(REPO, "README.md")) as f:
        text = f.read()
    start = text.index("## Using with containerd\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def blocks(section: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", section, re.S)


def test_the_readme_section_says_what_this_test_does():
    section = readme_section()
    assert "make install" in blocks(section, "sh")[0]
    toml = blocks(section, "toml")[0]
    assert CRI_CNI in toml and 'bin_dir = "/opt/cni/bin"' in toml and 'conf_dir = "/etc/cni/net.d"' in toml
    pods, overlay = (json.loads(b) for b in blocks(section, "json"))
    assert [p["type"] for p in pods["plugins"]] == ["bridge", "portmap"] and pods["plugins"][0]["ipam"]["type"] == "host-local"
    assert [p["type"] for p in overlay["plugins"]] == ["vxlan", "portmap"]
    assert "cni-suite doctor --cni-path /opt/cni/bin:/usr/lib/cni" in blocks(section, "sh")[1]


@pytest.fixture(scope="module")
def installed(containerd_installed):  # noqa: F811
    if not os.path.isfile(os.path.join(BUILT, "cni-multi")):
        pytest.fail("dist/cni-bin is not built: run make build (make test does)")
    destdir = tempfile.mkdtemp(prefix="cnitreadme", dir="/var/tmp")  # not /tmp: the node has a /tmp of its own
    try:
        bindir = os.path.join(destdir, "opt", "cni", "bin")
        subprocess.run([os.path.join(REPO, "build", "install.sh"), bindir], check=True, capture_output=True, timeout=300)
        yield bindir
    finally:
        shutil.rmtree(destdir, ignore_errors=True)


def test_the_readme_containerd_setup_runs_a_pod_with_a_host_port(installed):
    section = readme_section()
    toml = blocks(section, "toml")[0]
    cni = toml.split(CRI_CNI, 1)[1].strip("\n")
    conflist = json.loads(blocks(section, "json")[0])
    for kind in ("bridge", "host-local", "portmap", "loopback", "vxlan", "cni-suite"):
        assert os.path.islink(os.path.join(installed, kind)), f"make install did not install {kind}"
    node = cnode.Node(installed, conflist=conflist, cni_section=cni)
    try:
        from conformance.containerd.cri import RuntimeClient

        cri = RuntimeClient(node.socket)
        try:
            sandbox_id = cri.run_pod("readme", pod_uid(), port_mappings=[(18080, 80)])
            pod = cri.status(sandbox_id)
            assert pod.ready and ipaddress.ip_address(pod.ip) in ipaddress.ip_network("10.88.0.0/16"), pod
            assert pod_addresses(node, pod.netns) == [f"{pod.ip}/16"]
            assert_from_dir_under_test(node, node.calls(), "loopback", "bridge", "portmap")
            got = []
            assert eventually(lambda: got.append(fetch(node, 18080)) or got[-1].stdout == image.PAGE.decode(), 20), got[-1:]
            # the README's check of the node, as written there (in the node, /usr/lib/cni is empty)
            doctor = node.run(os.path.join(installed, "cni-suite"), "doctor", "--cni-path", "/opt/cni/bin:/usr/lib/cni", check=False)
            assert doctor.returncode == 0 and "healthy" in doctor.stdout, doctor.stdout + doctor.stderr
            cri.stop_pod(sandbox_id)
            cri.remove_pod(sandbox_id)
            assert cri.list_pods() == []
            assert fetch(node, 18080).returncode != 0
        finally:
            cri.close()
    finally:
        node.close()
