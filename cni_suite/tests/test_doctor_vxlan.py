"""cni-suite doctor on a vxlan network: etcd reachability and MTU agreement across peers."""

import json
import os

import pytest

from conformance.testbed import Testbed

pytestmark = pytest.mark.root


def write_conf(bed, node, conf_dir) -> None:
    os.makedirs(conf_dir, exist_ok=True)
    plugin = {
        "type": "vxlan",
        "network": "198.18.0.0/16",
        "nodeName": node.name,
        "dataDir": f"{bed.tmp}/{node.name}/vxlan",
        "ipam": {"dataDir": f"{bed.tmp}/{node.name}/ipam"},
        "etcd": {"endpoints": [bed.etcd_endpoint], "prefix": "/doc", "timeout": 1},
    }
    with open(os.path.join(conf_dir, "10-overlay.conflist"), "w") as f:
        json.dump({"cniVersion": "1.1.0", "name": "overlay", "plugins": [plugin]}, f)


def findings(node, bin_dir, conf_dir) -> list[dict]:
    out = node.ns.exec("sh", "-c", f"{os.path.join(bin_dir, 'cni-suite')} --conf-dir {conf_dir} doctor --json --bin-dir {bin_dir}; true")
    return json.loads(out)["findings"]


def test_doctor_finds_mtu_mismatch_and_etcd_down(bin_dir):
    with Testbed() as bed:
        bed.start_etcd()
        n1, n2 = bed.add_node("n1"), bed.add_node("n2")
        n2.ns.ip("link", "set", "eth0", "mtu", "1400")
        for node in (n1, n2):
            conf_dir = f"{bed.tmp}/{node.name}/net.d"
            write_conf(bed, node, conf_dir)
            node.ns.exec(os.path.join(bin_dir, "vxlan"), "sync", "--once", "--conf", f"{conf_dir}/10-overlay.conflist")
        got = findings(n1, bin_dir, f"{bed.tmp}/n1/net.d")
        assert [f["check"] for f in got] == ["vxlan-mtu"]
        assert "1400: n2" in got[0]["problem"] and "1500: n1" in got[0]["problem"] and "1350" in got[0]["fix"]
        n2.ns.ip("link", "set", "eth0", "mtu", "1500")
        n2.ns.exec(os.path.join(bin_dir, "vxlan"), "sync", "--once", "--conf", f"{bed.tmp}/n2/net.d/10-overlay.conflist")
        assert findings(n1, bin_dir, f"{bed.tmp}/n1/net.d") == []
        bed.stop_etcd()
        got = findings(n1, bin_dir, f"{bed.tmp}/n1/net.d")
        assert [f["check"] for f in got] == ["etcd"] and "etcd unreachable" in got[0]["problem"]
