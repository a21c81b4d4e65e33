"""GC and STATUS (CNI 1.1.0), which the reference bridge does not implement.

GC removes every attachment of the network that the runtime does not list
in cni.dev/valid-attachments: masquerade and macspoofchk rules, the record,
a host veth still alive, and (through host-local's GC) the addresses.  The
listed ones are not touched.  STATUS asks host-local whether an address can
still be allocated.
"""

import pytest

from cni_bridge.tests.bridgeenv import (
    IFNAME,
    allocations,
    any_masquerade,
    config,
    links,
    masq_rules,
    nft_ruleset,
    ping,
    records,
    settle,
    veths,
    with_prev,
)
from conformance.netenv import run_plugin

pytestmark = pytest.mark.root

NET, BRIDGE = "gcnet", "cnitgc0"
BACKENDS = {"nftables (default)": {}, "iptables": {"ipMasqBackend": "iptables"}}


def gc_conf(tmp_path, backend: dict, name: str = NET, subnet: str = "10.98.0.0/24") -> dict:
    return config(tmp_path, name=name, bridge=BRIDGE, subnets=(subnet,), isDefaultGateway=True, ipMasq=True, macspoofchk=True, **backend)


def addresses_held(conf) -> list[str]:
    return [f for f in allocations(conf) if not f.startswith(".")]


def owned(bench, conf, cid: str) -> dict:
    """What the node holds for one attachment."""
    return {
        "masquerade": masq_rules(bench.node, conf["name"], cid),
        "macspoofchk": [line for line in nft_ruleset(bench.node).splitlines() if f"macspoofchk-{cid}-{IFNAME}" in line],
        "record": f"{cid}:{IFNAME}.json" in records(conf),
    }


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_gc_keeps_the_valid_attachment_and_removes_the_stale_ones(backend, bench, tmp_path):
    conf = gc_conf(tmp_path, BACKENDS[backend])
    gone, valid, forgotten = bench.container(), bench.container(), bench.container()
    results = {cid: bench.add(conf, ns, cid) for cid, ns in (("c1", gone), ("c2", valid), ("c3", forgotten))}
    for cid in results:
        state = owned(bench, conf, cid)
        assert state["masquerade"] and state["macspoofchk"] and state["record"], (cid, state)
    c2_veth = results["c2"]["interfaces"][1]["name"]
    c2_state, c2_addr = owned(bench, conf, "c2"), results["c2"]["ips"][0]["address"]
    gone.close()  # the runtime lost c1 with its namespace; c3's namespace lives on, but the runtime forgot it

    out = bench.gc(conf, valid=[("c2", IFNAME)])
    assert out.ok, out
    for cid in ("c1", "c3"):
        assert owned(bench, conf, cid) == {"masquerade": [], "macspoofchk": [], "record": False}, cid
    assert IFNAME not in links(forgotten)  # c3's host veth was deleted, and the pair with it
    assert veths(bench.node) == [c2_veth]
    assert addresses_held(conf) == [c2_addr.split("/")[0]]
    assert owned(bench, conf, "c2") == c2_state
    settle(bench.node, valid)
    ping(valid, "10.98.0.1")
    assert bench.run("CHECK", with_prev(conf, results["c2"]), valid, "c2").ok
    assert bench.gc(conf, valid=[("c2", IFNAME)]).ok  # again: nothing left to do, and no error


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_gc_without_the_list_removes_everything_of_the_network_only(backend, bench, tmp_path):
    conf = gc_conf(tmp_path, BACKENDS[backend])
    other = gc_conf(tmp_path, BACKENDS[backend], name="othernet", subnet="10.98.1.0/24")
    other["bridge"] = "cnitgc1"
    pods = {cid: bench.container() for cid in ("c1", "c2")}
    for cid, ns in pods.items():
        bench.add(conf, ns, cid)
    neighbour = bench.container()
    bench.add(other, neighbour, "n1")
    neighbour_state = owned(bench, other, "n1")

    out = bench.gc(conf)
    assert out.ok, out
    for cid, ns in pods.items():
        assert owned(bench, conf, cid) == {"masquerade": [], "macspoofchk": [], "record": False}, cid
        assert IFNAME not in links(ns)
    assert addresses_held(conf) == []
    assert [links(bench.node)[v]["master"] for v in veths(bench.node)] == ["cnitgc1"]
    assert owned(bench, other, "n1") == neighbour_state and len(addresses_held(other)) == 1
    assert any_masquerade(bench.node)  # the other network's rules


def test_gc_keeps_the_record_of_an_attachment_it_could_not_remove(bench, tmp_path):
    """A step that fails leaves the record, so the next GC still knows what to remove."""
    conf = gc_conf(tmp_path, {})
    pod = bench.container()
    bench.add(conf, pod, "c1")
    # someone else's rule jumping to the pod's macspoofchk chain: the chain cannot be deleted while it is there
    bench.node.exec("nft", "add", "chain", "bridge", "nat", "foreign")
    bench.node.exec("nft", "add", "rule", "bridge", "nat", "foreign", "jump", f"cni-br-iface-c1-{IFNAME}")
    out = bench.gc(conf)
    assert out.rc == 1 and out.json["code"] == 104 and "macspoofchk" in out.json["details"], out
    assert owned(bench, conf, "c1")["record"]
    assert addresses_held(conf) == [] and veths(bench.node) == []  # the other steps went ahead
    bench.node.exec("nft", "flush", "chain", "bridge", "nat", "foreign")
    assert bench.gc(conf).ok
    assert owned(bench, conf, "c1") == {"masquerade": [], "macspoofchk": [], "record": False}
    assert f"cni-br-iface-c1-{IFNAME}" not in nft_ruleset(bench.node)


# --- STATUS ---------------------------------------------------------------------------


def status(bench, conf):
    return run_plugin(bench.bridge, "STATUS", conf, node=bench.node, ifname="", path=bench.bin_dir)


def test_status_reports_an_exhausted_range_as_50(bench, tmp_path):
    conf = config(tmp_path, name="st", bridge="cnitst0", subnets=("10.98.9.0/30",), isGateway=True)
    out = status(bench, conf)
    assert out.ok and out.stdout == b"", out
    pod = bench.container()
    bench.add(conf, pod)  # .1 is the gateway, .2 the only address left
    out = status(bench, conf)
    assert out.rc == 1 and out.json["code"] == 50, out
    assert bench.run("ADD", conf, bench.container(), "c2").json["code"] == 100  # what STATUS warned of
    assert bench.run("DEL", conf, pod).ok
    out = status(bench, conf)
    assert out.ok and out.stdout == b"", out


def test_status_of_a_layer2_bridge_succeeds(bench, tmp_path):
    out = status(bench, config(tmp_path, name="st", bridge="cnitst0", subnets=()))
    assert out.ok and out.stdout == b"", out
