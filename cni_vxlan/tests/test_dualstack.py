"""The dual-stack overlay on the multi-node testbed: real kernel, real namespaces, a real etcd.

Pods get an IPv4 and an IPv6 address; the one VXLAN device per node carries both
families over a single-stack underlay (IPv4 here, IPv6 in the last tests).
"""

import json
import os
from ipaddress import ip_address

import pytest

from cni_vxlan.tests.test_overlay import CONVERGE, until, vxlan
from cni_vxlan.tests.test_overlay import conf as overlay_conf
from conformance.testbed import Testbed, ping

pytestmark = pytest.mark.root
NETWORK6 = "fd42:198:18::/48"


@pytest.fixture
def bed():
    with Testbed() as b:
        yield b


def conf(bed: Testbed, node, **kw) -> dict:
    """test_overlay's network, dual-stack."""
    return overlay_conf(bed, node, **{"ipv6Network": NETWORK6, **kw})


def conflist(bed: Testbed, node, **kw) -> str:
    path = f"{bed.tmp}/{node.name}.conflist"
    with open(path, "w") as f:
        json.dump({"cniVersion": "1.1.0", "name": "overlay", "plugins": [conf(bed, node, **kw)]}, f)
    return path


def add_pod(bed, node, pod_id, bin_dir, **kw) -> tuple[str, str, dict]:
    """(IPv4 address, IPv6 address, result) of a new pod."""
    node.pod(pod_id)
    out = node.run(os.path.join(bin_dir, "vxlan"), "ADD", conf(bed, node, **kw), pod_id, bin_dir)
    assert out.ok, out
    ips = [ip["address"].split("/")[0] for ip in out.json["ips"]]
    assert len(ips) == 2 and "." in ips[0] and ":" in ips[1], out.json["ips"]
    return ips[0], ips[1], out.json


def entries(node) -> dict:
    """The overlay's entries on the node's device, per kind and family."""
    ns = node.ns
    return {
        "routes4": sorted(r["dst"] for r in ns.ipj("-4", "route", "show", "dev", "cnivx.1") if r.get("protocol") == "241"),
        "routes6": sorted(r["dst"] for r in ns.ipj("-6", "route", "show", "dev", "cnivx.1") if r.get("protocol") == "241"),
        "neigh4": sorted(n["dst"] for n in ns.ipj("-4", "neigh", "show", "dev", "cnivx.1", "nud", "permanent")),
        "neigh6": sorted(n["dst"] for n in ns.ipj("-6", "neigh", "show", "dev", "cnivx.1", "nud", "permanent")),
        "fdb": sorted(f["dst"] for f in json.loads(ns.exec("bridge", "-j", "fdb", "show", "dev", "cnivx.1") or "[]") if f.get("dst")),
    }


def is_address(name: str) -> bool:
    try:
        ip_address(name)
    except ValueError:
        return False
    return True


def etcd_get(bed, *args: str) -> str:
    return bed.etcd_ns.exec("etcdctl", f"--endpoints={bed.etcd_endpoint}", "get", *args)


def lease(bed, node) -> dict:
    with open(f"{bed.tmp}/{node.name}/vxlan/overlay/lease.json") as f:
        return json.load(f)


def full_mesh(pods: dict) -> list[str]:
    """The pings that failed, over both families, between every two pods."""
    failed = []
    for src_node, src in pods:
        for (_, dst), (dst4, dst6) in pods.items():
            if src != dst:
                failed += [f"{src} -> {dst} ({a})" for a in (dst4, dst6) if not ping(src_node.pods[src], a)]
    return failed


def test_dual_stack_pods_on_three_nodes_check_del_and_node_remove(bed, bin_dir):
    bed.start_etcd()
    nodes = [bed.add_node(f"n{i}") for i in (1, 2, 3)]
    pods, results = {}, {}
    for node in nodes:
        for suffix in ("a", "b"):
            v4, v6, results[node.name + suffix] = add_pod(bed, node, node.name + suffix, bin_dir)
            pods[(node, node.name + suffix)] = (v4, v6)
    for node in nodes:  # nodes that joined earlier learn of later ones
        vxlan(node, bin_dir, "sync", "--once", "--conf", conflist(bed, node))
    assert full_mesh(pods) == []
    leases = {node.name: lease(bed, node) for node in nodes}
    assert len({lease["subnet6"] for lease in leases.values()}) == 3
    for node in nodes:
        others = [leases[n.name] for n in nodes if n is not node]
        assert entries(node) == {
            "routes4": sorted(o["subnet"] for o in others),
            "routes6": sorted(o["subnet6"] for o in others),
            "neigh4": sorted(o["subnet"].split("/")[0] for o in others),
            "neigh6": sorted(o["subnet6"].split("/")[0] for o in others),
            "fdb": sorted(o["vtep"] for o in others),  # one FDB entry per node serves both families
        }
        own = leases[node.name]["subnet6"].split("/")[0]
        assert own + "/128" in [f"{a['local']}/{a['prefixlen']}" for a in node.ns.ipj("-6", "addr", "show", "cnivx.1")[0]["addr_info"]]
    claims = etcd_get(bed, "--prefix", "--keys-only", "/cnit/overlay/subnets6/").split()
    assert sorted(claims) == sorted(f"/cnit/overlay/subnets6/{lease['subnet6'].replace('/', '-')}" for lease in leases.values())
    config = json.loads(etcd_get(bed, "--print-value-only", "/cnit/overlay/config"))
    assert (config["ipv6Network"], config["ipv6SubnetLen"]) == (NETWORK6, 64)

    # CHECK: ok, then failing when one IPv6 route is removed, ok again after sync
    n1, n2, n3 = nodes
    binary = os.path.join(bin_dir, "vxlan")
    checked = dict(conf(bed, n1), prevResult=results["n1a"])
    assert n1.run(binary, "CHECK", checked, "n1a", bin_dir).ok
    n1.ns.ip("-6", "route", "del", leases["n2"]["subnet6"], "dev", "cnivx.1")
    broken = n1.run(binary, "CHECK", checked, "n1a", bin_dir)
    assert broken.rc != 0 and broken.json["code"] == 107 and leases["n2"]["subnet6"] in broken.json["msg"], broken
    show = json.loads(vxlan(n1, bin_dir, "show", "--json", "--conf", conflist(bed, n1)))
    flags = {p["node"]: p["programmed"] for p in show["peers"]}
    assert flags["n2"] == {"route": True, "neighbour": True, "fdb": True, "route6": False, "neighbour6": True}
    assert show["lease"]["subnet6"] == leases["n1"]["subnet6"] and show["overlay6"] == NETWORK6
    text = vxlan(n1, bin_dir, "show", "--conf", conflist(bed, n1))
    assert f"{leases['n2']['subnet6']} " in text and "route6:MISSING" in text and NETWORK6 in text, text
    vxlan(n1, bin_dir, "sync", "--once", "--conf", conflist(bed, n1))
    assert n1.run(binary, "CHECK", checked, "n1a", bin_dir).ok
    base6 = leases["n1"]["subnet6"].split("/")[0]
    n1.ns.ip("-6", "addr", "del", f"{base6}/128", "dev", "cnivx.1")
    broken = n1.run(binary, "CHECK", checked, "n1a", bin_dir)
    assert broken.rc != 0 and broken.json["code"] == 107 and f"lacks its IPv6 address {base6}" in broken.json["msg"], broken
    vxlan(n1, bin_dir, "sync", "--once", "--conf", conflist(bed, n1))
    assert n1.run(binary, "CHECK", checked, "n1a", bin_dir).ok

    # DEL twice leaves nothing of the pod, of either family
    for _ in range(2):
        out = n1.run(binary, "DEL", checked, "n1a", bin_dir)
        assert out.ok and out.stdout.strip() == b"", out
    assert [link["ifname"] for link in n1.pods["n1a"].ipj("link", "show")] == ["lo"]
    held = [f for f in os.listdir(f"{bed.tmp}/n1/ipam/overlay") if is_address(f)]
    assert sorted(held) == sorted(pods[(n1, "n1b")]), "only the other pod's two addresses stay reserved"

    # node-remove: both families' entries for the node go from its peers after sync
    bed.remove_node("n3")
    vxlan(n1, bin_dir, "node-remove", "n3", "--conf", conflist(bed, n1))
    for node in (n1, n2):
        vxlan(node, bin_dir, "sync", "--once", "--conf", conflist(bed, node))
        left = entries(node)
        flat = " ".join(v for values in left.values() for v in values)
        assert leases["n3"]["subnet"].split("/")[0] not in flat and leases["n3"]["subnet6"].split("/")[0] not in flat, left
        assert leases["n3"]["vtep"] not in left["fdb"] and len(left["routes6"]) == len(left["neigh6"]) == 1
    keys = etcd_get(bed, "--prefix", "--keys-only", "/cnit/overlay/").split()
    assert not [k for k in keys if k.endswith("/n3") or k.endswith(leases["n3"]["subnet6"].replace("/", "-"))], keys
    assert ping(n2.pods["n2a"], pods[(n1, "n1b")][1]), "the nodes left still reach each other over IPv6"


def test_sync_watch_reaches_a_joining_node_over_both_families(bed, bin_dir):
    bed.start_etcd()
    n1, n2 = bed.add_node("n1"), bed.add_node("n2")
    add_pod(bed, n1, "p1", bin_dir)
    add_pod(bed, n2, "p2", bin_dir)
    binary = os.path.join(bin_dir, "vxlan")
    for node in (n1, n2):
        node.start([binary, "sync", "--watch", "--conf", conflist(bed, node)], f"{bed.tmp}/{node.name}.sync.log")
    n3 = bed.add_node("n3")
    v4, v6, _ = add_pod(bed, n3, "p3", bin_dir)

    def reached() -> bool:
        return all(ping(n.pods[p], a, wait=0.2) for n, p in ((n1, "p1"), (n2, "p2")) for a in (v4, v6))

    # a liveness bound, not a measurement: test_overlay's watch test holds the figure for IPv4
    assert until(reached, CONVERGE * 5) is not None, "the new node was not reached over both families"


def test_static_peers_dual_stack(bed, bin_dir):
    n1, n2 = bed.add_node("n1"), bed.add_node("n2")
    peers = [
        {"node": "n1", "vtep": n1.address, "subnet": "198.18.1.0/24", "subnet6": "fd42:198:18:1::/64"},
        {"node": "n2", "vtep": n2.address, "subnet": "198.18.2.0/24", "subnet6": "fd42:198:18:2::/64"},
    ]
    static = {"peerSource": "static", "peers": peers}
    a1, b1, _ = add_pod(bed, n1, "p1", bin_dir, **static)
    a2, b2, _ = add_pod(bed, n2, "p2", bin_dir, **static)
    assert b1.startswith("fd42:198:18:1::") and b2.startswith("fd42:198:18:2::")
    assert ping(n1.pods["p1"], a2) and ping(n1.pods["p1"], b2) and ping(n2.pods["p2"], b1)
    assert entries(n1)["routes6"] == ["fd42:198:18:2::/64"] and entries(n1)["neigh6"] == ["fd42:198:18:2::"]

    # cni-suite status: both range sets, and the peer's IPv6 entries
    conf_dir = f"{bed.tmp}/n1/net.d"
    os.makedirs(conf_dir)
    conflist(bed, n1, **static)
    os.rename(f"{bed.tmp}/n1.conflist", f"{conf_dir}/10-overlay.conflist")
    report = json.loads(n1.ns.exec(os.path.join(bin_dir, "cni-suite"), "--conf-dir", conf_dir, "status", "--json"))["networks"][0]
    assert [r["ranges"].split("-")[0] for r in report["ranges"]] == ["198.18.1.1", "fd42:198:18:1::1"]
    assert [r["used"] for r in report["ranges"]] == [1, 1]
    assert sorted(a["ip"] for a in report["allocations"]) == sorted([a1, b1])
    (peer,) = report["vxlan"]["peers"]
    assert peer["subnet6"] == "fd42:198:18:2::/64"
    assert peer["programmed"] == dict.fromkeys(("route", "neighbour", "fdb", "route6", "neighbour6"), True)

    # GC: an attachment the runtime forgot loses both its addresses
    gc = dict(conf(bed, n1, **static), **{"cni.dev/valid-attachments": []})
    assert n1.run(os.path.join(bin_dir, "vxlan"), "GC", gc, "p1", bin_dir).ok
    assert [f for f in os.listdir(f"{bed.tmp}/n1/ipam/overlay") if is_address(f)] == []
    assert [link["ifname"] for link in n1.pods["p1"].ipj("link", "show")] == ["lo"]


def test_ipv6_underlay_carries_both_families(bed, bin_dir):
    """VTEPs on IPv6 (etcd still reached over IPv4): pods of both families reach each other."""
    bed.start_etcd()
    n1, n2 = bed.add_node("n1"), bed.add_node("n2")
    for i, node in enumerate((n1, n2), 1):
        node.ns.ip("-6", "addr", "add", f"2001:db8:ffff::{i}/64", "dev", "eth0", "nodad")
    a1, b1, _ = add_pod(bed, n1, "p1", bin_dir, vtepAddress="2001:db8:ffff::1")
    a2, b2, _ = add_pod(bed, n2, "p2", bin_dir, vtepAddress="2001:db8:ffff::2")
    vxlan(n1, bin_dir, "sync", "--once", "--conf", conflist(bed, n1, vtepAddress="2001:db8:ffff::1"))
    link = n1.ns.ipj("-d", "link", "show", "cnivx.1")[0]
    assert link["mtu"] == 1430 and link["linkinfo"]["info_data"].get("local6", link["linkinfo"]["info_data"].get("local")) == "2001:db8:ffff::1"
    assert entries(n1)["fdb"] == ["2001:db8:ffff::2"]
    assert ping(n1.pods["p1"], a2) and ping(n1.pods["p1"], b2) and ping(n2.pods["p2"], a1) and ping(n2.pods["p2"], b1)
    assert ping(n1.pods["p1"], b2, size=1430 - 48, dont_fragment=True), "a full-size IPv6 frame must pass"


def test_a_second_overlay_overlapping_the_ipv6_range_is_refused(bed, bin_dir):
    n1, n2 = bed.add_node("n1"), bed.add_node("n2")
    peers = [
        {"node": "n1", "vtep": n1.address, "subnet": "198.18.1.0/24", "subnet6": "fd42:198:18:1::/64"},
        {"node": "n2", "vtep": n2.address, "subnet": "198.18.2.0/24", "subnet6": "fd42:198:18:2::/64"},
    ]
    add_pod(bed, n1, "a", bin_dir, peerSource="static", peers=peers)
    second = {"name": "second", "network": "198.19.0.0/16", "vni": 2, "delegate": {"bridge": "cnivx2"}, "peerSource": "static"}
    # disjoint IPv4, but its IPv6 range holds the first overlay's route to n2
    own = {"node": "n1", "vtep": n1.address, "subnet": "198.19.1.0/24", "subnet6": "fd42:198:18:2:8000::/80"}
    n1.pod("b")
    overlapping = conf(bed, n1, ipv6Network="fd42:198:18:2::/64", ipv6SubnetLen=80, peers=[own], **second)
    out = n1.run(os.path.join(bin_dir, "vxlan"), "ADD", overlapping, "b", bin_dir)
    assert out.rc != 0 and out.json["code"] == 103, out
    assert out.json["msg"] == "network fd42:198:18:2::/64 overlaps fd42:198:18:2::/64 of VXLAN device cnivx.1", out
    assert "cnivx.2" not in [link["ifname"] for link in n1.ns.ipj("link", "show")]
    own6 = dict(own, subnet6="fd42:199:0:1::/64")
    ok = n1.run(os.path.join(bin_dir, "vxlan"), "ADD", conf(bed, n1, ipv6Network="fd42:199::/48", peers=[own6], **second), "b", bin_dir)
    assert ok.ok and [ip["address"] for ip in ok.json["ips"]] == ["198.19.1.2/24", "fd42:199:0:1::2/64"], ok
