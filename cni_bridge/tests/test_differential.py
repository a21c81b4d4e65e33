"""Ours against the reference bridge (Debian's containernetworking-plugins 1.1.1).

Each scenario runs in fresh namespaces twice, once per implementation:
ADD two containers, snapshot, DEL one, snapshot.  The results, the
containers' links, addresses, routes and sysctls, the bridge and its port
flags, the node's sysctls and the firewall rules must match after
normalising what is random by design (veth names, kernel-chosen MACs).
Deliberate differences (README, "Deliberate differences") are not compared:
the bridge's MAC is set explicitly at creation in ours.
"""

import copy
import json
import os
import re

import pytest

from conformance.netenv import Netns, ns_state, run_plugin

pytestmark = pytest.mark.root

MAC = re.compile(r"\b[0-9a-f]{2}(:[0-9a-f]{2}){5}\b")
VETH = re.compile(r"\bveth[0-9a-f]{8}\b")
FIXED_MAC = "02:11:22:33:44:55"


def base(**kw):
    conf = {"cniVersion": "1.0.0", "name": "diffbr", "type": "bridge", "bridge": "cnitdbr0"}
    conf.update(kw)
    return conf


def hl(*subnets, **kw):
    return {"type": "host-local", "ranges": [[{"subnet": s}] for s in subnets], **kw}


SCENARIOS = {
    "layer 2": base(),
    "v4, no gateway": base(ipam=hl("10.90.0.0/24")),
    "v4 isGateway": base(isGateway=True, ipam=hl("10.90.1.0/24")),
    "v4 isDefaultGateway": base(isDefaultGateway=True, ipam=hl("10.90.2.0/24")),
    "v6 isDefaultGateway": base(isDefaultGateway=True, ipam=hl("2001:db8:90::/64")),
    "dual-stack": base(isDefaultGateway=True, ipam=hl("10.90.3.0/24", "2001:db8:91::/64")),
    "mtu 1400": base(isGateway=True, mtu=1400, ipam=hl("10.90.4.0/24")),
    "hairpin": base(isGateway=True, hairpinMode=True, ipam=hl("10.90.5.0/24")),
    "promiscuous bridge": base(isGateway=True, promiscMode=True, ipam=hl("10.90.6.0/24")),
    "ipMasq (iptables)": base(isGateway=True, ipMasq=True, ipMasqBackend="iptables", ipam=hl("10.90.7.0/24", "2001:db8:92::/64")),
    "IPAM routes and gateway": base(
        isDefaultGateway=True,
        ipam={
            "type": "host-local",
            "ranges": [[{"subnet": "10.90.8.0/24", "gateway": "10.90.8.254"}]],
            "routes": [{"dst": "0.0.0.0/0", "gw": "10.90.8.254"}, {"dst": "192.0.2.0/24"}],
        },
    ),
    "enabledad, v6": base(isDefaultGateway=True, enabledad=True, ipam=hl("2001:db8:93::/64")),
    "macspoofchk": base(isGateway=True, macspoofchk=True, ipam=hl("10.90.9.0/24")),
    "container MAC from runtimeConfig": base(isGateway=True, ipam=hl("10.90.10.0/24"), runtimeConfig={"mac": FIXED_MAC}),
    "container MAC from args": base(isGateway=True, ipam=hl("10.90.11.0/24"), args={"cni": {"mac": FIXED_MAC}}),
    "DNS override": base(isGateway=True, ipam=hl("10.90.12.0/24"), dns={"nameservers": ["192.0.2.53"], "search": ["example.org"]}),
    "result 0.3.1": base(cniVersion="0.3.1", isGateway=True, ipam=hl("10.90.13.0/24")),
    "result 0.2.0": base(cniVersion="0.2.0", isDefaultGateway=True, ipam=hl("10.90.14.0/24")),
    "vlan 100 (no VLAN filtering in this kernel)": base(vlan=100, ipam=hl("10.90.15.0/24")),
}


def normalize(value):
    text = json.dumps(value, sort_keys=True)
    veths = {}
    for name in VETH.findall(text):
        veths.setdefault(name, f"VETH{len(veths)}")
    for name, alias in veths.items():
        text = text.replace(name, alias)
    text = MAC.sub(lambda m: m.group(0) if m.group(0) in (FIXED_MAC, "ff:ff:ff:ff:ff:ff", "00:00:00:00:00:00") else "MAC", text)
    return json.loads(text)


def outcome(out) -> dict:
    if not out.ok:
        return {"error": True}
    data = out.json or {}
    data.pop("cniVersion", None)
    if not data.get("dns"):
        data.pop("dns", None)
    return data


SLAVE_KEYS = ("state", "hairpin", "isolated", "learning", "flood", "guard", "root_block", "fastleave", "proxy_arp", "mcast_flood", "bcast_flood")


def settle(namespaces: list[Netns], timeout: float = 5.0) -> None:
    """Let IPv6 DAD finish everywhere: the kernel adds anycast routes only afterwards."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any("tentative" in ns.ip("-6", "addr", "show", "scope", "global") for ns in namespaces):
            return
        time.sleep(0.1)


def observe(node: Netns, containers: list[Netns]) -> dict:
    settle([node] + containers)
    state = ns_state(node)
    for link in state["links"].values():
        link["slave"] = {k: v for k, v in link.get("slave", {}).items() if k in SLAVE_KEYS}
        link.pop("address", None) if link.get("kind") == "bridge" else None  # ours is set at creation, by design
    state["iptables"] = re.sub(r"\[\d+:\d+\]", "[0:0]", state["iptables"])
    state["containers"] = [ns_state(c) for c in containers]
    for c in state["containers"]:
        for key in ("nft", "iptables"):
            c.pop(key)
    return state


def host_veth(node: Netns, container: Netns) -> str:
    """The node-side peer of the container's eth0 (legacy results do not name it)."""
    links = container.ipj("link", "show")
    peer = next((link.get("link_index") for link in links if link["ifname"] == "eth0"), None)
    return next((link["ifname"] for link in node.ipj("link", "show") if peer and link["ifindex"] == peer), "")


def run(binary_dir: str, config: dict, tmp: str) -> list:
    conf = copy.deepcopy(config)
    conf["dataDir"] = os.path.join(tmp, "bridge")
    if "ipam" in conf:
        conf["ipam"]["dataDir"] = os.path.join(tmp, "ipam")
    binary = os.path.join(binary_dir, "bridge")
    with Netns("dn") as node, Netns("dc") as c1, Netns("dc") as c2:
        seen = []
        for cid, ns in (("c1", c1), ("c2", c2)):
            seen.append(outcome(run_plugin(binary, "ADD", conf, node=node, netns=ns.path, container_id=cid, path=binary_dir)))
        veths = [host_veth(node, c1), host_veth(node, c2)]
        seen.append(observe(node, [c1, c2]))
        seen.append(outcome(run_plugin(binary, "DEL", conf, node=node, netns=c1.path, container_id="c1", path=binary_dir)))
        seen.append(observe(node, [c1, c2]))
        text = json.dumps(seen)
        for ns, alias in ((c1, "C1"), (c2, "C2"), (node, "NODE")):
            text = text.replace(ns.name, alias)
        for veth, alias in zip(veths, ("VETH-C1", "VETH-C2"), strict=True):
            if veth:  # name each host veth after the container it serves
                text = text.replace(veth, alias)
        return normalize(json.loads(text))


def first_difference(a, b, path="") -> str:
    if type(a) is not type(b):
        return f"{path}: {a!r} != {b!r}"
    if isinstance(a, dict):
        for key in sorted(set(a) | set(b), key=str):
            if a.get(key) != b.get(key):
                return first_difference(a.get(key), b.get(key), f"{path}.{key}")
    if isinstance(a, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if x != y:
                return first_difference(x, y, f"{path}[{i}]")
    return f"{path}: ref {a!r}\n  ours {b!r}"


KEEP_ADDR = "ipv6/conf/eth0/keep_addr_on_down"


def documented_differences(ref: list, ours: list) -> None:
    """Upstream sets keep_addr_on_down=1 with IPv6 (Debian's 1.1.1 predates it): ours follows upstream."""
    for i in (2, 4):
        for ref_c, our_c in zip(ref[i]["containers"], ours[i]["containers"], strict=False):
            ref_v, our_v = ref_c["sysctls"].pop(KEEP_ADDR, None), our_c["sysctls"].pop(KEEP_ADDR, None)
            has_v6 = any(":" in a[1] for a in our_c["addresses"] if a[0] == "eth0")
            assert our_v == ("1" if has_v6 else ref_v), (our_v, ref_v)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_same_outcome_as_the_reference(name, bin_dir, reference_dir, tmp_path):
    config = SCENARIOS[name]
    ref = run(reference_dir, config, str(tmp_path / "ref"))
    ours = run(bin_dir, config, str(tmp_path / "ours"))
    if "error" not in ref[0]:
        documented_differences(ref, ours)
    assert ours == ref, first_difference(ref, ours)
    if name.startswith("vlan"):
        assert ref[0] == {"error": True}  # both refuse: the kernel has no VLAN filtering
    else:
        assert "error" not in ref[0], ref[0]
