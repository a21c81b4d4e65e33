"""Configurations ADD must refuse before it touches anything.

Each case gets its code, and the node, the pod and every file under the
test's directory are byte-for-byte what they were (the reference creates the
bridge first and validates later, so a bad config leaves a bridge behind).
"""

import pytest

from cni_bridge.tests.bridgeenv import config, difference, links

pytestmark = pytest.mark.root

BRIDGE = "cnitbad0"


def good(tmp_path) -> dict:
    return config(tmp_path, name="bad", bridge=BRIDGE, subnets=("10.95.0.0/24",), isGateway=True, ipMasq=True)


def keys(**changes):
    return lambda conf: conf.update(changes)


def ipam(**changes):
    return lambda conf: conf["ipam"].update(changes)


def without_ipam_type(conf):
    del conf["ipam"]["type"]


def trunk(*items):
    return keys(vlanTrunk=list(items))


BAD_MACS = {"multicast": "01:00:5e:00:00:01", "all-zero": "00:00:00:00:00:00", "garbage": "not-a-mac", "too short": "02:00:00:00:00"}

# name: (change to the good config, CNI_ARGS, expected code)
CASES = {
    "vlan 5000": (keys(vlan=5000), "", 7),
    "vlan -1": (keys(vlan=-1), "", 7),
    "vlan as a string": (keys(vlan="100"), "", 7),
    "mtu 10": (keys(mtu=10), "", 7),
    "mtu 70000": (keys(mtu=70000), "", 7),
    "mtu -1": (keys(mtu=-1), "", 7),
    "bridge name of 16 bytes": (keys(bridge="cnitbad0bad0bad0"), "", 7),
    "bridge name of 17 bytes in 10 characters": (keys(bridge="cnitbäd€€€"), "", 7),
    "bridge name with %": (keys(bridge="cnit%d"), "", 7),
    "bridge name too long for its VLAN gateway": (keys(bridge="cnitbad0bad0bad", vlan=100), "", 7),
    "bridge name too long for its VLAN gateway in bytes, not characters": (keys(bridge="cnitää€", vlan=4094), "", 7),
    "bridge name with /": (keys(bridge="cnit/0"), "", 7),
    "ipam settings without a type": (without_ipam_type, "", 7),
    "hairpinMode and promiscMode": (keys(hairpinMode=True, promiscMode=True), "", 7),
    "portIsolation as a string (cni.dev's example; Go refuses it too)": (keys(portIsolation="true"), "", 7),
    "unknown ipMasqBackend": (keys(ipMasqBackend="ipfw"), "", 7),
    "ipam.type with a relative path": (ipam(type="../host-local"), "", 7),
    "ipam.type with an absolute path": (ipam(type="/usr/lib/cni/host-local"), "", 7),
    "ipam.type not in CNI_PATH": (ipam(type="cnit-no-such-ipam"), "", 7),
    "disableContainerInterface with ipam": (keys(disableContainerInterface=True), "", 7),
    "vlanTrunk minID without maxID": (trunk({"minID": 10}), "", 7),
    "vlanTrunk maxID without minID": (trunk({"maxID": 10}), "", 7),
    "vlanTrunk minID negative": (trunk({"minID": -1, "maxID": 10}), "", 7),
    "vlanTrunk minID 0": (trunk({"minID": 0, "maxID": 10}), "", 7),
    "vlanTrunk minID over 4094": (trunk({"minID": 4095, "maxID": 4096}), "", 7),
    "vlanTrunk maxID over 4094": (trunk({"minID": 1, "maxID": 4095}), "", 7),
    "vlanTrunk maxID not a number": (trunk({"minID": 1, "maxID": "10"}), "", 7),
    "vlanTrunk minID over maxID": (trunk({"minID": 20, "maxID": 10}), "", 7),
    "vlanTrunk id over 4094": (trunk({"id": 4095}), "", 7),
    "vlanTrunk id negative": (trunk({"id": -1}), "", 7),
    "vlanTrunk bad item after a good one": (trunk({"id": 100}, {"id": 5000}), "", 7),
    "vlanTrunk item not an object": (trunk(100), "", 7),
    "vlanTrunk not a list": (keys(vlanTrunk={"id": 100}), "", 7),
}
for what, mac in BAD_MACS.items():
    CASES[f"runtimeConfig.mac {what}"] = (keys(runtimeConfig={"mac": mac}), "", 7)
    CASES[f"args.cni.mac {what}"] = (keys(args={"cni": {"mac": mac}}), "", 7)
    CASES[f"CNI_ARGS MAC {what}"] = (lambda conf: None, f"IgnoreUnknown=1;MAC={mac}", 7)


@pytest.mark.parametrize("case", list(CASES))
def test_refused_with_nothing_touched(case, bench, tmp_path):
    change, cni_args, code = CASES[case]
    conf = good(tmp_path)
    change(conf)
    pod = bench.container()
    before = bench.snapshot(pod)
    out = bench.run("ADD", conf, pod, "c1", args=cni_args)
    assert out.rc == 1 and out.json["code"] == code, out
    after = bench.snapshot(pod)
    assert after == before, difference(before, after)


def test_bridge_name_of_a_non_bridge_device_is_103(bench, tmp_path):
    bench.node.ip("link", "add", BRIDGE, "type", "veth", "peer", "name", "cnitbadpeer")
    pod = bench.container()
    before = bench.snapshot(pod)
    out = bench.run("ADD", good(tmp_path), pod, "c1")
    assert out.rc == 1 and out.json["code"] == 103, out
    assert "not a bridge" in out.json["msg"]
    after = bench.snapshot(pod)
    assert after == before, difference(before, after)
    assert links(bench.node)[BRIDGE]["linkinfo"]["info_kind"] == "veth"


def test_only_the_winning_mac_source_is_parsed(bench, tmp_path):
    """As in the reference: a good runtimeConfig.mac over a broken CNI_ARGS MAC is used, not refused."""
    conf = good(tmp_path)
    conf["runtimeConfig"] = {"mac": "02:00:00:00:95:01"}
    pod = bench.container()
    out = bench.run("ADD", conf, pod, "c1", args="IgnoreUnknown=1;MAC=not-a-mac")
    assert out.ok, out
    assert links(pod)["eth0"]["address"] == "02:00:00:00:95:01"


def test_the_good_config_is_accepted(bench, tmp_path):
    """The control: every case above differs from a config that works in one key."""
    pod = bench.container()
    out = bench.run("ADD", good(tmp_path), pod, "c1")
    assert out.ok, out
    assert BRIDGE in links(bench.node) and "eth0" in links(pod)
