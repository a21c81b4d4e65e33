"""ADD, CHECK, DEL, DEL again: two dual-stack pods on one bridge, with both masquerade backends.

Also the DELs a runtime sends when it has lost the container: after its
namespace was deleted (the path is gone) and with CNI_NETNS empty.  Both must
remove that container's masquerade rules and free its addresses, which the
reference cannot do once the namespace is gone (plugins#810).
"""

import os

import pytest

from cni_bridge.tests.bridgeenv import (
    IFNAME,
    addresses,
    allocations,
    any_masquerade,
    config,
    ipt_chain,
    ipt_nat,
    links,
    masq_rules,
    ping,
    records,
    settle,
    veths,
    with_prev,
)
from conformance.helpers import eventually
from conformance.netenv import run_plugin

pytestmark = pytest.mark.root

BACKENDS = {"nftables (default)": {}, "iptables": {"ipMasqBackend": "iptables"}}


def dual_stack(tmp_path, backend: dict) -> dict:
    return config(
        tmp_path, name="life", bridge="cnitlife0", subnets=("10.91.0.0/24", "2001:db8:91::/64"), isDefaultGateway=True, ipMasq=True, **backend
    )


def spoofcheck_rules(node, cid: str) -> list[str]:
    return [line for line in node.exec("nft", "list", "table", "bridge", "nat").splitlines() if f"macspoofchk-{cid}-{IFNAME}" in line]


def ips_of(result: dict) -> list[str]:
    return sorted(ip["address"] for ip in result["ips"])


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_two_pods_add_ping_check_del_twice(backend, bench, tmp_path):
    conf = dual_stack(tmp_path, BACKENDS[backend])
    pods = {"c1": bench.container(), "c2": bench.container()}
    results = {cid: bench.add(conf, ns, cid) for cid, ns in pods.items()}

    for cid, ns in pods.items():
        result = results[cid]
        assert [i["name"] for i in result["interfaces"]][::2] == ["cnitlife0", IFNAME]
        assert result["interfaces"][2]["sandbox"] == ns.path
        assert addresses(ns) == ips_of(result) and len(result["ips"]) == 2
        gateways = {r["dst"]: r["gw"] for r in result["routes"]}
        assert gateways == {"0.0.0.0/0": "10.91.0.1", "::/0": "2001:db8:91::1"}
        assert len(masq_rules(bench.node, "life", cid)) >= 2, f"{backend}: no masquerade rules for {cid}"
    if backend.startswith("nftables"):
        assert "table inet cni_plugins_masquerade" in bench.node.exec("nft", "list", "ruleset")
    else:
        assert ipt_chain("life", "c1") in ipt_nat(bench.node)
    assert len(veths(bench.node)) == 2 and len(any_masquerade(bench.node)) >= 4
    assert len(records(conf)) == 2
    assert len([f for f in allocations(conf) if not f.startswith(".")]) == 4

    settle(bench.node, *pods.values())
    c1_ips = [a.split("/")[0] for a in ips_of(results["c1"])]
    c2_ips = [a.split("/")[0] for a in ips_of(results["c2"])]
    for addr in c2_ips + ["10.91.0.1", "2001:db8:91::1"]:
        ping(pods["c1"], addr)
    for addr in c1_ips:
        ping(pods["c2"], addr)

    for cid, ns in pods.items():
        out = bench.run("CHECK", with_prev(conf, results[cid]), ns, cid)
        assert out.ok, out
        assert out.stdout == b""

    for cid, ns in pods.items():
        for attempt in (1, 2):
            out = bench.run("DEL", conf, ns, cid)
            assert out.ok, f"DEL #{attempt} of {cid}: {out}"
            assert out.stdout == b""

    assert veths(bench.node) == []
    for ns in pods.values():
        assert IFNAME not in links(ns)
    assert allocations(conf) == []
    assert records(conf) == []
    assert any_masquerade(bench.node) == []
    assert "cnitlife0" in links(bench.node)  # the bridge is shared and stays, as in the reference


def test_check_fails_when_the_attachment_changed(bench, tmp_path):
    """CHECK is not vacuous: a missing address, then a missing masquerade rule, is reported (107)."""
    conf = dual_stack(tmp_path, {})
    pod = bench.container()
    result = bench.add(conf, pod)
    check = with_prev(conf, result)
    assert bench.run("CHECK", check, pod).ok
    v4 = ips_of(result)[0]
    pod.ip("addr", "del", v4, "dev", IFNAME)
    out = bench.run("CHECK", check, pod)
    assert out.rc == 1 and out.json["code"] == 107 and v4 in out.json["msg"], out
    pod.ip("addr", "add", v4, "dev", IFNAME)
    out = bench.run("CHECK", check, pod)
    assert out.rc == 1 and "Route 0.0.0.0/0" in out.json["msg"], out  # the default route went with the address
    pod.ip("route", "add", "default", "via", "10.91.0.1")
    assert bench.run("CHECK", check, pod).ok
    bench.node.exec("nft", "flush", "chain", "inet", "cni_plugins_masquerade", "masq_checks")
    out = bench.run("CHECK", check, pod)
    assert out.rc == 1 and out.json["code"] == 107 and "masquerade" in out.json["msg"], out


# --- DEL when the runtime has lost the container ------------------------------


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_del_after_the_netns_is_gone_cleans_everything(backend, bench, tmp_path):
    conf = {**dual_stack(tmp_path, BACKENDS[backend]), "macspoofchk": True}
    gone, kept = bench.container(), bench.container()
    bench.add(conf, gone, "c1")
    bench.add(conf, kept, "c2")
    assert masq_rules(bench.node, "life", "c1") and spoofcheck_rules(bench.node, "c1")
    path = gone.path
    gone.close()  # ip netns del: the pair dies with the namespace
    assert not os.path.exists(path)

    for attempt in (1, 2):
        out = bench.run("DEL", conf, netns=path, cid="c1")
        assert out.ok, f"DEL #{attempt}: {out}"
    assert masq_rules(bench.node, "life", "c1") == []
    assert spoofcheck_rules(bench.node, "c1") == [] and len(spoofcheck_rules(bench.node, "c2")) == 4
    assert len(masq_rules(bench.node, "life", "c2")) >= 2  # the other pod's rules stay
    assert [f for f in allocations(conf) if not f.startswith(".")] == sorted(["10.91.0.3", "2001:db8:91::3"])
    assert records(conf) == ["c2:eth0.json"]
    assert len(veths(bench.node)) == 1


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_del_without_netns_cleans_everything(backend, bench, tmp_path):
    conf = {**dual_stack(tmp_path, BACKENDS[backend]), "macspoofchk": True}
    pod, kept = bench.container(), bench.container()
    bench.add(conf, pod, "c1")
    bench.add(conf, kept, "c2")
    veth_c2 = set(veths(bench.node))
    assert masq_rules(bench.node, "life", "c1") and spoofcheck_rules(bench.node, "c1")

    for attempt in (1, 2):
        out = bench.run("DEL", conf, netns="", cid="c1")
        assert out.ok, f"DEL #{attempt}: {out}"
    assert masq_rules(bench.node, "life", "c1") == []
    assert spoofcheck_rules(bench.node, "c1") == [] and len(spoofcheck_rules(bench.node, "c2")) == 4
    assert len(masq_rules(bench.node, "life", "c2")) >= 2
    assert [f for f in allocations(conf) if not f.startswith(".")] == sorted(["10.91.0.3", "2001:db8:91::3"])
    assert records(conf) == ["c2:eth0.json"]
    # the namespace still exists: the host veth (and with it the pod's eth0) must go all the same
    assert len(veths(bench.node)) == 1 and set(veths(bench.node)) < veth_c2
    assert IFNAME not in links(pod)
    assert IFNAME in links(kept)


def test_reference_leaks_its_iptables_chain_when_the_netns_is_gone(reference_dir, netns, tmp_path):
    """The contrast: the reference bridge (Debian 1.1.1) tears masquerading down from the pod's addresses,

    which it reads in the namespace; with the namespace gone its chain stays (plugins#810).
    """
    conf = config(tmp_path, name="refleak", bridge="cnitref0", version="1.0.0", isGateway=True, ipMasq=True)
    binary = os.path.join(reference_dir, "bridge")
    node, pod = netns("n"), netns("c")
    out = run_plugin(binary, "ADD", conf, node=node, netns=pod.path, container_id="c1", path=reference_dir)
    assert out.ok, out
    chain = ipt_chain("refleak", "c1")
    assert chain in ipt_nat(node)
    path = pod.path
    pod.close()
    out = run_plugin(binary, "DEL", conf, node=node, netns=path, container_id="c1", path=reference_dir)
    assert out.ok, out
    assert allocations(conf) == []  # the address is freed ...
    nat = ipt_nat(node)
    assert f":{chain} - " in nat and f"-j {chain}" in nat  # ... but the chain and its POSTROUTING jump leak


@pytest.mark.parametrize("broken", ["vlan 5000", "mtu 10", "hairpin and promisc"])
def test_del_with_a_config_that_no_longer_parses_still_cleans_everything(broken, bench, tmp_path):
    """An upgrade may refuse a config that ADD took: DEL must still undo the attachment, not half of it."""
    conf = dual_stack(tmp_path, {})
    conf["macspoofchk"] = True
    pod = bench.container()
    bench.add(conf, pod)
    assert masq_rules(bench.node, "life", "c1") and "macspoofchk-c1-eth0" in bench.node.exec("nft", "list", "ruleset")
    bad = {**conf, **{"vlan 5000": {"vlan": 5000}, "mtu 10": {"mtu": 10}, "hairpin and promisc": {"hairpinMode": True, "promiscMode": True}}[broken]}
    assert bench.run("ADD", bad, bench.container(), "c9").json["code"] == 7  # it is refused as a config
    for attempt in (1, 2):
        out = bench.run("DEL", bad, pod)
        assert out.ok, f"DEL #{attempt}: {out}"
    assert veths(bench.node) == [] and IFNAME not in links(pod)
    assert allocations(conf) == [] and records(conf) == []
    assert any_masquerade(bench.node) == []
    assert "macspoofchk" not in bench.node.exec("nft", "list", "ruleset")


def test_del_with_a_broken_ipam_section_fails_rather_than_leak_the_address(bench, tmp_path):
    conf = dual_stack(tmp_path, {})
    pod = bench.container()
    bench.add(conf, pod)
    bad = {**conf, "ipam": {k: v for k, v in conf["ipam"].items() if k != "type"}}
    out = bench.run("DEL", bad, pod)
    assert out.rc == 1 and out.json["code"] == 7, out
    assert len([f for f in allocations(conf) if not f.startswith(".")]) == 2  # still held: a fixed config's DEL releases it
    assert bench.run("DEL", conf, pod).ok and allocations(conf) == []


def test_a_second_add_of_a_live_attachment_is_refused_and_changes_nothing(bench, tmp_path):
    """102 before anything is touched: the live pod keeps its record, veth and address."""
    conf = dual_stack(tmp_path, {})
    pod, other = bench.container(), bench.container()
    first = bench.add(conf, pod, "c1")
    held, recs, pairs = allocations(conf), records(conf), veths(bench.node)
    out = bench.run("ADD", conf, other, "c1")
    assert out.json["code"] == 102 and "already has eth0" in out.json["msg"], out
    assert first["interfaces"][1]["name"] in out.json["details"]
    assert (allocations(conf), records(conf), veths(bench.node)) == (held, recs, pairs)
    assert addresses(other) == [] and addresses(pod) == ips_of(first)
    # the next pod gets a fresh address, not the live pod's
    third = bench.add(conf, bench.container(), "c3")
    assert not set(ips_of(third)) & set(ips_of(first))


def test_an_add_after_a_lost_attachment_keeps_the_address_until_del(bench, tmp_path):
    """The pod's namespace died without a DEL: its record and address remain.  A new ADD of the same
    ID is refused by the IPAM (102) and must not release the address on rollback; DEL then ADD works."""
    conf = dual_stack(tmp_path, {})
    pod = bench.container()
    bench.add(conf, pod, "c1")
    held = allocations(conf)
    pod.close()  # the veth pair dies with the namespace, which the kernel destroys asynchronously
    assert eventually(lambda: veths(bench.node) == []), "the dead pod's veth never went away"
    retry = bench.container()
    out = bench.run("ADD", conf, retry, "c1")
    assert out.json["code"] == 102, out
    assert allocations(conf) == held and veths(bench.node) == []
    assert bench.run("DEL", conf, retry, "c1").ok
    second = bench.add(conf, retry, "c1")
    assert addresses(retry) == ips_of(second) and records(conf) == ["c1:eth0.json"]
