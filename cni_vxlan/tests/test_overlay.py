"""The overlay on a multi-node testbed: real kernel, real namespaces, a real etcd (Debian's 3.4)."""

import json
import os
import subprocess
import time

import pytest

from conformance.testbed import Testbed, ping

pytestmark = pytest.mark.root
NETWORK = "198.18.0.0/16"
CONVERGE = 2.0  # seconds: the bound for `sync --watch` to follow a change


@pytest.fixture
def bed():
    with Testbed() as b:
        yield b


def conf(bed: Testbed, node, **kw) -> dict:
    c = {
        "cniVersion": "1.1.0",
        "name": "overlay",
        "type": "vxlan",
        "network": NETWORK,
        "nodeName": node.name,
        "dataDir": f"{bed.tmp}/{node.name}/vxlan",
        "ipam": {"dataDir": f"{bed.tmp}/{node.name}/ipam"},
        "etcd": {"endpoints": [bed.etcd_endpoint], "prefix": "/cnit", "timeout": 2},
    }
    c.update(kw)
    return c


def conflist(bed: Testbed, node, **kw) -> str:
    path = f"{bed.tmp}/{node.name}.conflist"
    with open(path, "w") as f:
        json.dump({"cniVersion": "1.1.0", "name": "overlay", "plugins": [conf(bed, node, **kw)]}, f)
    return path


def add_pod(bed, node, pod_id, bin_dir, **kw):
    node.pod(pod_id)
    out = node.run(os.path.join(bin_dir, "vxlan"), "ADD", conf(bed, node, **kw), pod_id, bin_dir)
    assert out.ok, out
    return out.json["ips"][0]["address"].split("/")[0], out.json


def vxlan(node, bin_dir, *args, check=True):
    return node.ns.exec(os.path.join(bin_dir, "vxlan"), *args, check=check)


def overlay_entries(node) -> tuple[list, list, list]:
    routes = [r for r in node.ns.ipj("route", "show", "dev", "cnivx.1") if r.get("protocol") == "241"]
    neigh = node.ns.ipj("neigh", "show", "dev", "cnivx.1", "nud", "permanent")
    fdb = [f for f in json.loads(node.ns.exec("bridge", "-j", "fdb", "show", "dev", "cnivx.1") or "[]") if f.get("dst")]
    return routes, neigh, fdb


def until(predicate, timeout: float) -> float | None:
    """Seconds until predicate() held, or None if it did not within timeout."""
    start = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            return None
        time.sleep(0.05)


def test_pods_on_three_nodes_reach_each_other_with_full_size_frames(bed, bin_dir):
    bed.start_etcd()
    nodes = [bed.add_node(f"n{i}") for i in (1, 2, 3)]
    pods = {}
    for node in nodes:
        for suffix in ("a", "b"):
            pods[(node, node.name + suffix)], _ = add_pod(bed, node, node.name + suffix, bin_dir)
    for node in nodes:  # nodes that joined earlier learn of later ones
        vxlan(node, bin_dir, "sync", "--once", "--conf", conflist(bed, node))
    subnets = {node.ns.ipj("addr", "show", "cnivx.1")[0]["addr_info"][0]["local"] for node in nodes}
    assert len(subnets) == 3
    for (src_node, src), _ in pods.items():
        for (_, dst), address in pods.items():
            if src != dst:
                assert ping(src_node.pods[src], address), f"{src} -> {dst} ({address})"
    n1a, n3a = nodes[0].pods["n1a"], pods[(nodes[2], "n3a")]
    assert ping(n1a, n3a, size=1450 - 28, dont_fragment=True), "a full-size frame with DF set must pass"
    assert not ping(n1a, n3a, size=1450 - 27, dont_fragment=True), "one byte more must not fit"
    for node in nodes:  # state grows with nodes, not pods: one route, neighbour and FDB entry per peer
        assert [len(entries) for entries in overlay_entries(node)] == [2, 2, 2]
        link = node.ns.ipj("-d", "link", "show", "cnivx.1")[0]
        info = link["linkinfo"]["info_data"]
        assert (info["id"], info["port"], info["learning"], link["mtu"]) == (1, 4789, False, 1450)
        assert link["address"].startswith("0e:56:c6:12:")


def test_check_and_del_twice(bed, bin_dir):
    bed.start_etcd()
    n1, n2 = bed.add_node("n1"), bed.add_node("n2")
    _, result = add_pod(bed, n1, "p1", bin_dir)
    add_pod(bed, n2, "p2", bin_dir)
    vxlan(n1, bin_dir, "sync", "--once", "--conf", conflist(bed, n1))
    binary = os.path.join(bin_dir, "vxlan")
    checked = dict(conf(bed, n1), prevResult=result)
    assert n1.run(binary, "CHECK", checked, "p1", bin_dir).ok
    n1.ns.ip("route", "del", n2.ns.ipj("addr", "show", "cnivx.1")[0]["addr_info"][0]["local"] + "/24")
    broken = n1.run(binary, "CHECK", checked, "p1", bin_dir)
    assert broken.rc != 0 and broken.json["code"] == 107 and "missing" in broken.json["msg"]
    vxlan(n1, bin_dir, "sync", "--once", "--conf", conflist(bed, n1))
    assert n1.run(binary, "CHECK", checked, "p1", bin_dir).ok
    for _ in range(2):
        out = n1.run(binary, "DEL", checked, "p1", bin_dir)
        assert out.ok and out.stdout.strip() == b"", out
    assert [link["ifname"] for link in n1.pods["p1"].ipj("link", "show")] == ["lo"]
    assert not [link for link in n1.ns.ipj("link", "show") if link["ifname"].startswith("veth")]
    assert not os.listdir(f"{bed.tmp}/n1/vxlan/overlay/containers")
    assert [f for f in os.listdir(f"{bed.tmp}/n1/ipam/overlay") if f[0].isdigit()] == []
    assert n1.ns.ip("link", "show", "cnivx.1"), "the shared device stays after the last DEL"


def test_sync_watch_follows_nodes_joining_and_leaving(bed, bin_dir):
    bed.start_etcd()
    n1, n2 = bed.add_node("n1"), bed.add_node("n2")
    add_pod(bed, n1, "p1", bin_dir)
    add_pod(bed, n2, "p2", bin_dir)
    binary = os.path.join(bin_dir, "vxlan")
    for node in (n1, n2):
        node.start([binary, "sync", "--watch", "--conf", conflist(bed, node)], f"{bed.tmp}/{node.name}.sync.log")
    n3 = bed.add_node("n3")
    address, _ = add_pod(bed, n3, "p3", bin_dir)
    waited = until(lambda: ping(n1.pods["p1"], address, wait=0.2) and ping(n2.pods["p2"], address, wait=0.2), CONVERGE)
    assert waited is not None, f"the new node was not reached within {CONVERGE}s"
    subnet3 = n3.ns.ipj("addr", "show", "cnivx.1")[0]["addr_info"][0]["local"]
    bed.remove_node("n3")  # the node is gone; retire its lease
    vxlan(n1, bin_dir, "node-remove", "n3", "--conf", conflist(bed, n1))
    gone = until(lambda: all(not any(r["dst"].startswith(subnet3) for r in overlay_entries(n)[0]) for n in (n1, n2)), CONVERGE)
    assert gone is not None, "the removed node's routes are still programmed"
    assert all(len(overlay_entries(n)[1]) == 1 and len(overlay_entries(n)[2]) == 1 for n in (n1, n2))
    for node in (n1, n2):
        assert all(p.poll() is None for p in node.procs), "sync --watch died"


def test_racing_nodes_get_different_subnets(bed, bin_dir):
    bed.start_etcd()
    nodes = [bed.add_node(f"n{i}") for i in (1, 2, 3, 4)]
    small = {"network": "198.18.0.0/22"}  # three leasable /24s: the first is never leased
    binary = os.path.join(bin_dir, "vxlan")
    procs = []
    for node in nodes[:3]:
        node.pod("p")
        stdin = json.dumps(conf(bed, node, **small)).encode()
        env = {
            "PATH": os.environ["PATH"],
            "CNI_COMMAND": "ADD",
            "CNI_CONTAINERID": "p",
            "CNI_NETNS": node.pods["p"].path,
            "CNI_IFNAME": "eth0",
            "CNI_PATH": bin_dir,
        }
        proc = subprocess.Popen(["ip", "netns", "exec", node.ns.name, binary], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        procs.append((proc, stdin))
    outs = [proc.communicate(stdin, timeout=60)[0] for proc, stdin in procs]
    assert all(proc.returncode == 0 for proc, _ in procs), outs
    subnets = {json.loads(out)["ips"][0]["address"].rsplit(".", 1)[0] for out in outs}
    assert len(subnets) == 3
    nodes[3].pod("p")
    out = nodes[3].run(binary, "ADD", conf(bed, nodes[3], **small), "p", bin_dir)
    assert out.rc != 0 and out.json["code"] == 100 and "no free /24" in out.json["msg"]


def test_etcd_down(bed, bin_dir):
    bed.start_etcd()
    n1, n2 = bed.add_node("n1"), bed.add_node("n2")
    add_pod(bed, n1, "p1", bin_dir)
    a2, _ = add_pod(bed, n2, "p2", bin_dir)
    vxlan(n1, bin_dir, "sync", "--once", "--conf", conflist(bed, n1))
    before = overlay_entries(n1)
    bed.stop_etcd()
    binary = os.path.join(bin_dir, "vxlan")
    # a node without a lease: code 11, and nothing half-done
    n3 = bed.add_node("n3")
    n3.pod("p3")
    out = n3.run(binary, "ADD", conf(bed, n3), "p3", bin_dir)
    assert out.rc != 0 and out.json["code"] == 11, out
    assert [link["ifname"] for link in n3.ns.ipj("link", "show")] == ["lo", "eth0"]
    assert [link["ifname"] for link in n3.pods["p3"].ipj("link", "show")] == ["lo"]
    assert not os.path.exists(f"{bed.tmp}/n3/ipam/overlay") or not [f for f in os.listdir(f"{bed.tmp}/n3/ipam/overlay") if f[0].isdigit()]
    # a node with a lease: ADD works from local state and keeps its entries
    add_pod(bed, n1, "p1b", bin_dir)
    assert overlay_entries(n1) == before
    assert ping(n1.pods["p1b"], a2)
    assert n1.run(binary, "DEL", conf(bed, n1), "p1b", bin_dir).ok  # DEL never needs etcd
    status = n1.run(binary, "STATUS", conf(bed, n1), "p1", bin_dir)
    assert status.ok, status  # ADD is serviceable from the cached lease
    assert n3.run(binary, "STATUS", conf(bed, n3), "p3", bin_dir).json["code"] == 50
    bed.start_etcd()
    assert n3.run(binary, "ADD", conf(bed, n3), "p3", bin_dir).ok


def test_static_peers_without_a_store(bed, bin_dir):
    n1, n2 = bed.add_node("n1"), bed.add_node("n2")
    peers = [{"node": "n1", "vtep": n1.address, "subnet": "198.18.1.0/24"}, {"node": "n2", "vtep": n2.address, "subnet": "198.18.2.0/24"}]
    static = {"peerSource": "static", "peers": peers}
    a1, _ = add_pod(bed, n1, "p1", bin_dir, **static)
    a2, _ = add_pod(bed, n2, "p2", bin_dir, **static)
    assert a1.startswith("198.18.1.") and a2.startswith("198.18.2.")
    assert ping(n1.pods["p1"], a2) and ping(n2.pods["p2"], a1)


def test_a_moved_vtep_address_is_followed(bed, bin_dir):
    bed.start_etcd()
    n1, n2 = bed.add_node("n1"), bed.add_node("n2")
    add_pod(bed, n1, "p1", bin_dir)
    a2, _ = add_pod(bed, n2, "p2", bin_dir)
    vxlan(n1, bin_dir, "sync", "--once", "--conf", conflist(bed, n1))
    n2.ns.exec("sysctl", "-qw", "net.ipv4.conf.eth0.promote_secondaries=1")
    n2.ns.ip("addr", "add", "192.0.2.22/24", "dev", "eth0")
    n2.ns.ip("addr", "del", f"{n2.address}/24", "dev", "eth0")
    vxlan(n2, bin_dir, "sync", "--once", "--conf", conflist(bed, n2))
    assert n2.ns.ipj("-d", "link", "show", "cnivx.1")[0]["linkinfo"]["info_data"]["local"] == "192.0.2.22"
    vxlan(n1, bin_dir, "sync", "--once", "--conf", conflist(bed, n1))
    assert [f["dst"] for f in overlay_entries(n1)[2]] == ["192.0.2.22"]
    assert ping(n1.pods["p1"], a2)


def test_vni_and_port_clash_is_named(bed, bin_dir):
    n1 = bed.add_node("n1")
    n1.ns.ip("link", "add", "other", "type", "vxlan", "id", "1", "dstport", "4789", "local", n1.address)
    static = {"peerSource": "static", "peers": [{"node": "n1", "vtep": n1.address, "subnet": "198.18.1.0/24"}]}
    n1.pod("p1")
    out = n1.run(os.path.join(bin_dir, "vxlan"), "ADD", conf(bed, n1, **static), "p1", bin_dir)
    assert out.rc != 0 and out.json["code"] == 103 and "other" in out.json["msg"], out
    assert [link["ifname"] for link in n1.pods["p1"].ipj("link", "show")] == ["lo"]


def test_an_incompatible_existing_device_is_not_recreated(bed, bin_dir):
    n1 = bed.add_node("n1")
    n1.ns.ip("link", "add", "cnivx.1", "type", "vxlan", "id", "1", "dstport", "8472", "local", n1.address)
    static = {"peerSource": "static", "peers": [{"node": "n1", "vtep": n1.address, "subnet": "198.18.1.0/24"}]}
    n1.pod("p1")
    out = n1.run(os.path.join(bin_dir, "vxlan"), "ADD", conf(bed, n1, **static), "p1", bin_dir)
    assert out.rc != 0 and out.json["code"] == 7 and "port: 8472 vs 4789" in out.json["details"], out
    assert n1.ns.ipj("-d", "link", "show", "cnivx.1")[0]["linkinfo"]["info_data"]["port"] == 8472


def test_gc_replays_del_for_attachments_the_runtime_forgot(bed, bin_dir):
    n1 = bed.add_node("n1")
    static = {"peerSource": "static", "peers": [{"node": "n1", "vtep": n1.address, "subnet": "198.18.1.0/24"}]}
    add_pod(bed, n1, "keep", bin_dir, **static)
    add_pod(bed, n1, "lost", bin_dir, **static)
    n1.pods["lost"].close()  # the pod died without a DEL
    gc = dict(conf(bed, n1, **static), **{"cni.dev/valid-attachments": [{"containerID": "keep", "ifname": "eth0"}]})
    out = n1.run(os.path.join(bin_dir, "vxlan"), "GC", gc, "keep", bin_dir)
    assert out.ok, out
    assert sorted(os.listdir(f"{bed.tmp}/n1/vxlan/overlay/containers")) == ["keep:eth0.json"]
    assert [f for f in os.listdir(f"{bed.tmp}/n1/ipam/overlay") if f[0].isdigit()] == ["198.18.1.2"]


def test_ttl_leases_expire_without_sync_and_come_back_with_the_same_subnet(bed, bin_dir):
    bed.start_etcd()
    n1 = bed.add_node("n1")
    ttl = {"etcd": {"endpoints": [bed.etcd_endpoint], "prefix": "/cnit", "leaseTTL": 2}}
    add_pod(bed, n1, "p1", bin_dir, **ttl)
    subnet = json.load(open(f"{bed.tmp}/n1/vxlan/overlay/lease.json"))["subnet"]

    def keys():
        out = bed.etcd_ns.exec("etcdctl", f"--endpoints={bed.etcd_endpoint}", "get", "--prefix", "--keys-only", "/cnit/overlay/subnets/")
        return [k for k in out.split() if k]

    assert keys() == [f"/cnit/overlay/subnets/{subnet.replace('/', '-')}"]
    assert until(lambda: not keys(), 10) is not None, "the TTL lease never expired"
    vxlan(n1, bin_dir, "sync", "--once", "--conf", conflist(bed, n1, **ttl))
    assert keys() == [f"/cnit/overlay/subnets/{subnet.replace('/', '-')}"]  # the node got its subnet back


def test_ipv6_underlay(bed, bin_dir):
    n1, n2 = bed.add_node("n1"), bed.add_node("n2")
    for i, node in enumerate((n1, n2), 1):
        node.ns.ip("-6", "addr", "add", f"2001:db8:ffff::{i}/64", "dev", "eth0", "nodad")
    peers = [
        {"node": "n1", "vtep": "2001:db8:ffff::1", "subnet": "198.18.1.0/24"},
        {"node": "n2", "vtep": "2001:db8:ffff::2", "subnet": "198.18.2.0/24"},
    ]
    static = {"peerSource": "static", "peers": peers}
    a1, _ = add_pod(bed, n1, "p1", bin_dir, vtepAddress="2001:db8:ffff::1", **static)
    a2, _ = add_pod(bed, n2, "p2", bin_dir, vtepAddress="2001:db8:ffff::2", **static)
    link = n1.ns.ipj("-d", "link", "show", "cnivx.1")[0]
    info = link["linkinfo"]["info_data"]
    assert link["mtu"] == 1430 and (info.get("local") or info.get("local6")) == "2001:db8:ffff::1", info
    assert ping(n1.pods["p1"], a2) and ping(n2.pods["p2"], a1)
    assert ping(n1.pods["p1"], a2, size=1430 - 28, dont_fragment=True)


def test_gc_keeps_a_valid_attachment_whose_ifname_has_a_dash(bed, bin_dir):
    """GC once split saved names at their last '-': (p1, net-1) read as (p1-net, 1) and was torn down."""
    n1 = bed.add_node("n1")
    static = {"peerSource": "static", "peers": [{"node": "n1", "vtep": n1.address, "subnet": "198.18.1.0/24"}]}
    n1.pod("p1")
    out = n1.run(os.path.join(bin_dir, "vxlan"), "ADD", conf(bed, n1, **static), "p1", bin_dir, ifname="net-1")
    assert out.ok, out
    gc = dict(conf(bed, n1, **static), **{"cni.dev/valid-attachments": [{"containerID": "p1", "ifname": "net-1"}]})
    out = n1.run(os.path.join(bin_dir, "vxlan"), "GC", gc, "p1", bin_dir)
    assert out.ok, out
    assert "net-1" in [link["ifname"] for link in n1.pods["p1"].ipj("link", "show")]
    assert [f for f in os.listdir(f"{bed.tmp}/n1/ipam/overlay") if f[0].isdigit()] == ["198.18.1.2"]


def test_colliding_pairs_keep_their_own_attachments(bed, bin_dir):
    """(pod-1, eth0) and (pod, 1-eth0) once shared one saved config: the second ADD got 102 and its DEL took the first pod."""
    n1 = bed.add_node("n1")
    static = {"peerSource": "static", "peers": [{"node": "n1", "vtep": n1.address, "subnet": "198.18.1.0/24"}]}
    vx = os.path.join(bin_dir, "vxlan")
    n1.pod("pod-1")
    n1.pod("pod")
    assert n1.run(vx, "ADD", conf(bed, n1, **static), "pod-1", bin_dir).ok
    out = n1.run(vx, "ADD", conf(bed, n1, **static), "pod", bin_dir, ifname="1-eth0")
    assert out.ok, out
    assert n1.run(vx, "DEL", conf(bed, n1, **static), "pod", bin_dir, ifname="1-eth0").ok
    assert "eth0" in [link["ifname"] for link in n1.pods["pod-1"].ipj("link", "show")]
    assert [f for f in os.listdir(f"{bed.tmp}/n1/ipam/overlay") if f[0].isdigit()] == ["198.18.1.2"]
    assert n1.run(vx, "DEL", conf(bed, n1, **static), "pod-1", bin_dir).ok
    assert [f for f in os.listdir(f"{bed.tmp}/n1/ipam/overlay") if f[0].isdigit()] == []


def test_sync_watch_with_static_peers_keeps_running_and_repairs(bed, bin_dir):
    """Static peers have nothing to watch: `sync --watch` once crashed reading an etcd setting; it re-converges instead."""
    n1, n2 = bed.add_node("n1"), bed.add_node("n2")
    peers = [{"node": "n1", "vtep": n1.address, "subnet": "198.18.1.0/24"}, {"node": "n2", "vtep": n2.address, "subnet": "198.18.2.0/24"}]
    static = {"peerSource": "static", "peers": peers}
    add_pod(bed, n1, "p1", bin_dir, **static)
    n1.start([os.path.join(bin_dir, "vxlan"), "sync", "--watch", "--resync", "0.5", "--conf", conflist(bed, n1, **static)], f"{bed.tmp}/n1.sync.log")
    routes = lambda: [r["dst"] for r in overlay_entries(n1)[0]]  # noqa: E731
    assert routes() == ["198.18.2.0/24"]
    n1.ns.ip("route", "del", "198.18.2.0/24", "dev", "cnivx.1")
    assert until(lambda: routes() == ["198.18.2.0/24"], 10) is not None, "the deleted peer route was not put back"
    assert all(p.poll() is None for p in n1.procs), open(f"{bed.tmp}/n1.sync.log").read()


def test_add_programs_changes_only_and_sync_repairs_the_rest(bed, bin_dir):
    """issue 14: an ADD plans against the peers it applied last (no dump of the tables), so its cost
    follows what changed, not the node count; `vxlan sync` compares with the kernel and repairs."""
    bed.start_etcd()
    n1, n2 = bed.add_node("n1"), bed.add_node("n2")
    add_pod(bed, n1, "p1", bin_dir)
    a2, _ = add_pod(bed, n2, "p2", bin_dir)
    vxlan(n1, bin_dir, "sync", "--once", "--conf", conflist(bed, n1))
    route = n2.ns.ipj("addr", "show", "cnivx.1")[0]["addr_info"][0]["local"] + "/24"
    n1.ns.ip("route", "del", route)  # someone removes a peer's route by hand
    applied = f"{bed.tmp}/n1/vxlan/overlay/applied.json"
    before = os.stat(applied).st_ino
    add_pod(bed, n1, "p1b", bin_dir)
    assert not ping(n1.pods["p1b"], a2), "the ADD changed no peer, so it left the tables alone"
    assert os.stat(applied).st_ino == before, "the store had not changed: the ADD did not even list the peers"
    vxlan(n1, bin_dir, "sync", "--once", "--conf", conflist(bed, n1))
    assert ping(n1.pods["p1b"], a2), "sync compares with the kernel and puts the route back"
    # a node joins: the next ADD on n1 sees the store changed and programs the newcomer (no sync needed)
    n3 = bed.add_node("n3")
    a3, _ = add_pod(bed, n3, "p3", bin_dir)
    assert not ping(n1.pods["p1b"], a3, wait=0.5)
    add_pod(bed, n1, "p1d", bin_dir)
    assert ping(n1.pods["p1d"], a3) and ping(n1.pods["p1d"], a2)
    assert n1.run(os.path.join(bin_dir, "vxlan"), "DEL", conf(bed, n1), "p1d", bin_dir).ok
    # a device created anew (a reboot, a deleted device) holds none of the applied peers: the ADD programs them all
    for pod in ("p1", "p1b"):
        assert n1.run(os.path.join(bin_dir, "vxlan"), "DEL", conf(bed, n1), pod, bin_dir).ok
    n1.ns.ip("link", "del", "cnivx.1")
    add_pod(bed, n1, "p1c", bin_dir)
    assert [len(entries) for entries in overlay_entries(n1)] == [2, 2, 2]
    assert ping(n1.pods["p1c"], a2) and ping(n1.pods["p1c"], a3)
