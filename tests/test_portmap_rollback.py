"""portmap's ADD is a transaction: a failure after the rules went in (route_localnet here) takes them out again.

The plugin runs from source in a throw-away node namespace, with one step
replaced by a failure through a wrapper (no test hook in the plugin itself).
"""

import json
import os
import sys

import pytest

from conformance.helpers import firewall_text, host_ips
from conformance.libcni import NetworkConfigList
from conformance.netenv import run_plugin
from conformance.test_portmap import NODE_V4, Bed, mappings

pytestmark = pytest.mark.root

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC_BIN = os.path.join(REPO, "dist", "src-bin")
WRAPPER = """#!{python} -I
import sys
sys.path.insert(0, {repo!r})
from cni_portmap import plugin
from common.errors import CNIError, Code


def refused(ifname, undo):
    raise CNIError(Code.KERNEL_REFUSED, "injected: route_localnet refused on " + ifname)


def terminated(ifname, undo):
    import os, signal, time

    os.kill(os.getpid(), signal.SIGTERM)  # as a runtime's timeout would, mid-ADD
    time.sleep(5)


plugin._enable_localnet = {failure}
plugin.main()
"""


def broken_portmap(tmp_path, failure: str) -> str:
    path = tmp_path / f"portmap-{failure}"
    path.write_text(WRAPPER.format(python=sys.executable, repo=REPO, failure=failure))
    path.chmod(0o755)
    return str(path)


@pytest.mark.parametrize("failure, code", [("refused", 104), ("terminated", 11)])
@pytest.mark.parametrize("backend", ["nftables", "iptables"])
def test_rules_undone_when_route_localnet_fails(backend, failure, code, netns, tmp_path):
    """route_localnet refused, or SIGTERM while it is set: the rules already installed are removed."""
    if not os.access(os.path.join(SRC_BIN, "bridge"), os.X_OK):
        pytest.skip("dist/src-bin is not built (make deps)")
    bed = Bed(netns, str(tmp_path), SRC_BIN)
    try:
        conflist = bed.conflist(backend=backend)
        rt = bed.runtime("pm-rb", mappings((18080, 80, "tcp")))
        bridge_only = NetworkConfigList.from_bytes(json.dumps(dict(json.loads(conflist.raw), plugins=conflist.plugins[:1])).encode())
        prev = bed.cni.add(bridge_only, rt)
        stdin = json.loads(bed.cni.build_config(conflist.plugins[1], conflist.name, conflist.cni_version, prev, rt))
        before = bed.node.exec("cat", "/proc/sys/net/ipv4/conf/pmbr0/route_localnet").strip()
        out = run_plugin(broken_portmap(tmp_path, failure), "ADD", stdin, node=bed.node, netns=rt.netns, container_id=rt.container_id, path=SRC_BIN)
        assert out.rc != 0 and json.loads(out.stdout)["code"] == code, out
        text = firewall_text(bed.node)
        assert host_ips(prev)[0] not in text, f"the rules were undone: {text}"
        assert bed.node.exec("cat", "/proc/sys/net/ipv4/conf/pmbr0/route_localnet").strip() == before
        # the same ADD through the real plugin works: the failure left nothing in its way
        assert bed.portmap("ADD", conflist, rt, prev) == prev
        bed.serve("pm-rb", "tcp/80")
        assert bed.reach(bed.remote, NODE_V4, 18080) is not None
        bed.cni.delete(conflist, rt)
    finally:
        bed.close()
