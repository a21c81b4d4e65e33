"""VLANs on the kernel: vlan and vlanTrunk as `bridge vlan show` sees them.

This machine's kernel lacks bridge VLAN filtering (creating a filtering
bridge fails with EOPNOTSUPP): there a VLAN config must fail cleanly, code
104 and nothing left.  Where the kernel has it, the real VLANs are checked.
"""

import json
import subprocess

import pytest

from cni_bridge.tests.bridgeenv import IFNAME, config, difference, links, veths

pytestmark = pytest.mark.root


def vlan_filtering_supported(netns) -> bool:
    probe = netns("p")
    proc = subprocess.run(["ip", "-n", probe.name, "link", "add", "cnitprobe0", "type", "bridge", "vlan_filtering", "1"], capture_output=True)
    if proc.returncode == 0:
        return True
    assert b"Operation not supported" in proc.stderr, proc.stderr  # anything else is a broken test set-up
    return False


def port_vlans(node, port: str) -> dict[int, set[str]]:
    entries = json.loads(node.exec("bridge", "-j", "vlan", "show", "dev", port) or "[]")
    return {v["vlan"]: set(v.get("flags", [])) for entry in entries for v in entry.get("vlans", [])}


VLAN_CONFIGS = {
    "access port, layer 3": {"vlan": 100, "isGateway": True},
    "trunk, layer 2": {"vlanTrunk": [{"id": 101}, {"minID": 200, "maxID": 202}]},
}


@pytest.mark.parametrize("case", list(VLAN_CONFIGS))
def test_vlan_config_on_this_kernel(case, bench, netns, tmp_path):
    keys = VLAN_CONFIGS[case]
    conf_ = config(tmp_path, name="vl", bridge="cnitvl0", subnets=("10.97.0.0/24",) if keys.get("isGateway") else (), **keys)
    pod = bench.container()
    if not vlan_filtering_supported(netns):
        before = bench.snapshot(pod)
        out = bench.run("ADD", conf_, pod, "c1")
        assert out.rc == 1 and out.json["code"] == 104, out
        assert "VLAN filtering" in out.json["details"]
        after = bench.snapshot(pod)
        assert after == before, difference(before, after)
        return
    result = bench.add(conf_, pod, "c1")
    port = result["interfaces"][1]["name"]
    vlans = port_vlans(bench.node, port)
    if "vlan" in keys:
        assert vlans == {100: {"PVID", "Egress Untagged"}}
        assert [i["name"] for i in result["interfaces"]][3:] == ["cnitvl0.100"]
        assert any(a["local"] == "10.97.0.1" for a in bench.node.ipj("addr", "show", "dev", "cnitvl0.100")[0]["addr_info"])
    else:
        assert vlans == {1: {"PVID", "Egress Untagged"}, 101: set(), 200: set(), 201: set(), 202: set()}
    assert bench.run("DEL", conf_, pod, "c1").ok
    assert port not in links(bench.node)


def test_vlan_on_an_existing_bridge_without_filtering(bench, netns, tmp_path):
    """The bridge exists (a layer-2 pod made it), so creation cannot refuse: the port's VLANs must, cleanly."""
    plain = config(tmp_path, name="vl", bridge="cnitvl0", subnets=())
    bench.add(plain, bench.container(), "c0")
    pod = bench.container()
    witness = veths(bench.node)
    before = bench.snapshot(pod)
    out = bench.run("ADD", {**plain, "vlan": 100}, pod, "c1")
    if vlan_filtering_supported(netns):
        # the reference's behaviour: VLAN entries on the port of a bridge that does not filter
        assert out.ok, out
        assert 100 in port_vlans(bench.node, out.json["interfaces"][1]["name"])
        return
    assert out.rc == 1 and out.json["code"] == 104, out
    assert veths(bench.node) == witness and IFNAME not in links(pod)
    after = bench.snapshot(pod)
    assert after == before, difference(before, after)
