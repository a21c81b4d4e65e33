"""Features the differential test cannot cover: Debian's reference (1.1.1) predates them.

portIsolation, disableContainerInterface, the nftables masquerade layout
(upstream's, so either implementation removes the other's rules), a bridge
MAC that does not follow its ports, and accept_ra=0 where router
advertisements could reach the node (CVE-2020-10749).
"""

import json

import pytest

from cni_bridge.tests.bridgeenv import (
    IFNAME,
    config,
    hash16,
    links,
    nft_comment,
    ping,
    records,
    settle,
    sysctl,
    veths,
    wait_carrier,
)

pytestmark = pytest.mark.root

NET, BRIDGE = "feat", "cnitfeat0"


def conf_of(tmp_path, subnets=("10.96.0.0/24",), **keys) -> dict:
    return config(tmp_path, name=NET, bridge=BRIDGE, subnets=subnets, **keys)


def host_veth(bench, result: dict) -> dict:
    return links(bench.node)[result["interfaces"][1]["name"]]


def port_flag(link: dict, flag: str):
    return link["linkinfo"]["info_slave_data"][flag]


# --- portIsolation ------------------------------------------------------------------


@pytest.mark.parametrize("isolated", [True, False])
def test_port_isolation_sets_the_flag_and_separates_pods(isolated, bench, tmp_path):
    conf = conf_of(tmp_path, isGateway=True, portIsolation=isolated)
    pods = [bench.container(), bench.container()]
    results = [bench.add(conf, pod, f"c{i}") for i, pod in enumerate(pods)]
    for result in results:
        assert port_flag(host_veth(bench, result), "isolated") is isolated
    for i, (pod, result) in enumerate(zip(pods, results, strict=True)):
        assert bench.run("CHECK", {**conf, "prevResult": result}, pod, f"c{i}").ok
    # isolated ports reach the bridge (the gateway) but not each other
    ping(pods[0], "10.96.0.1")
    other = results[1]["ips"][0]["address"].split("/")[0]
    reached = pods[0].exec("ping", "-c1", "-W2", other, check=False)
    assert ("1 received" in reached) is not isolated, reached


def test_check_notices_a_changed_isolation_flag(bench, tmp_path):
    conf = conf_of(tmp_path, isGateway=True, portIsolation=True)
    pod = bench.container()
    result = bench.add(conf, pod)
    bench.node.exec("bridge", "link", "set", "dev", result["interfaces"][1]["name"], "isolated", "off")
    out = bench.run("CHECK", {**conf, "prevResult": result}, pod)
    assert out.rc == 1 and out.json["code"] == 107, out


# --- disableContainerInterface ------------------------------------------------------


def test_disable_container_interface_leaves_the_pod_link_down(bench, tmp_path):
    conf = conf_of(tmp_path, subnets=(), disableContainerInterface=True)
    pod = bench.container()
    result = bench.add(conf, pod)
    assert "ips" not in result
    eth0 = links(pod)[IFNAME]
    assert "UP" not in eth0["flags"], eth0["flags"]
    veth = host_veth(bench, result)
    assert veth["master"] == BRIDGE and "UP" in veth["flags"]
    assert bench.run("DEL", conf, pod).ok
    assert IFNAME not in links(pod) and veths(bench.node) == []


def test_layer2_without_the_flag_brings_the_pod_link_up_and_checks(bench, tmp_path):
    """The contrast, so the test above cannot pass by a link that is never brought up.

    Its CHECK passes too: the reference's runs IPAM CHECK even without IPAM and fails (plugins#987).
    """
    conf = conf_of(tmp_path, subnets=())
    pod = bench.container()
    result = bench.add(conf, pod)
    assert "UP" in links(pod)[IFNAME]["flags"]
    out = bench.run("CHECK", {**conf, "prevResult": result}, pod)
    assert out.ok, out


# --- nftables masquerading ----------------------------------------------------------


def test_default_masquerade_backend_is_upstreams_nftables_layout(bench, tmp_path):
    conf = conf_of(tmp_path, subnets=("10.96.1.0/24", "2001:db8:96::/64"), isGateway=True, ipMasq=True)
    pod = bench.container()
    result = bench.add(conf, pod, "c1")
    table = json.loads(bench.node.exec("nft", "-j", "list", "table", "inet", "cni_plugins_masquerade"))["nftables"]
    chains = {item["chain"]["name"]: item["chain"] for item in table if "chain" in item}
    rules = [item["rule"] for item in table if "rule" in item]
    assert set(chains) == {"masq_checks", "postrouting"}
    post = chains["postrouting"]
    assert (post["type"], post["hook"], post["prio"]) == ("nat", "postrouting", 100)
    assert "type" not in chains["masq_checks"]  # a regular chain, reached by goto
    masq = [r for r in rules if r["chain"] == "masq_checks"]
    assert [r["comment"] for r in masq] == [nft_comment(NET, "c1")] * 2
    assert nft_comment(NET, "c1").startswith(f"{hash16(NET)}-{hash16(IFNAME + ':c1')}, net: {NET}, if: {IFNAME}, id: c1")
    text = bench.node.exec("nft", "list", "chain", "inet", "cni_plugins_masquerade", "masq_checks")
    v4, v6 = (ip["address"].split("/")[0] for ip in result["ips"])
    assert f"ip saddr {v4} ip daddr != 10.96.1.0/24 masquerade" in text
    assert f"ip6 saddr {v6} ip6 daddr != 2001:db8:96::/64 masquerade" in text
    post_text = bench.node.exec("nft", "list", "chain", "inet", "cni_plugins_masquerade", "postrouting")
    for line in ("ip daddr 224.0.0.0/4 return", "ip6 daddr ff00::/8 return", "goto masq_checks"):
        assert line in post_text
    assert "CNI-" not in bench.node.exec("iptables-save", "-t", "nat") + bench.node.exec("ip6tables-save", "-t", "nat")


def test_masquerade_rules_of_another_implementation_are_removed_by_del(bench, tmp_path):
    """A rule in upstream's format that ADD did not make (the reference wrote it) is found by its comment."""
    conf = conf_of(tmp_path, isGateway=True, ipMasq=True)
    pod = bench.container()
    bench.add(conf, pod, "c1")
    comment = nft_comment(NET, "c1")
    bench.node.exec(
        "nft",
        "add",
        "rule",
        "inet",
        "cni_plugins_masquerade",
        "masq_checks",
        "ip",
        "saddr",
        "10.96.0.250",
        "ip",
        "daddr",
        "!=",
        "10.96.0.0/24",
        "masquerade",
        "comment",
        f'"{comment}"',
    )
    assert bench.run("DEL", conf, pod, "c1").ok
    assert comment not in bench.node.exec("nft", "list", "ruleset")


# --- the bridge's MAC ------------------------------------------------------------------


def bridge_mac(bench) -> str:
    return links(bench.node)[BRIDGE]["address"]


def test_bridge_mac_is_stable_across_ports(bench, tmp_path):
    conf = conf_of(tmp_path, subnets=("10.96.2.0/24", "2001:db8:97::/64"), isGateway=True)
    pods = [bench.container() for _ in range(3)]
    first = bench.add(conf, pods[0], "c0")
    mac = first["interfaces"][0]["mac"]
    assert mac == bridge_mac(bench) and mac != first["interfaces"][1]["mac"]
    seen = {mac}
    for i in (1, 2):
        seen.add(bench.add(conf, pods[i], f"c{i}")["interfaces"][0]["mac"])
        seen.add(bridge_mac(bench))
    for i in range(3):
        assert bench.run("DEL", conf, pods[i], f"c{i}").ok
        seen.add(bridge_mac(bench))
    seen.add(bench.add(conf, bench.container(), "c3")["interfaces"][0]["mac"])
    assert seen == {mac}


def test_an_admins_bridge_keeps_its_mac_when_ports_come_and_go(bench, tmp_path):
    """A bridge whose MAC was never set takes its lowest port's, and 00:00:00:00:00:00 once empty."""
    bench.node.ip("link", "add", BRIDGE, "type", "bridge")
    bench.node.ip("link", "set", BRIDGE, "up")
    mac = bridge_mac(bench)
    conf = conf_of(tmp_path, subnets=())
    pods = [bench.container(), bench.container()]
    for i, pod in enumerate(pods):
        assert bench.add(conf, pod, f"c{i}")["interfaces"][0]["mac"] == mac
    for i, pod in enumerate(pods):
        assert bench.run("DEL", conf, pod, f"c{i}").ok
        assert bridge_mac(bench) == mac
    assert records(conf) == []


# --- router advertisements ---------------------------------------------------------------


def test_accept_ra_is_off_on_the_bridge_and_host_veths(bench, tmp_path):
    assert sysctl(bench.node, "ipv6/conf/default/accept_ra") != "0"  # new links would accept them
    conf = conf_of(tmp_path, subnets=("2001:db8:98::/64",), isDefaultGateway=True)
    results = [bench.add(conf, bench.container(), f"c{i}") for i in range(2)]
    assert sysctl(bench.node, f"ipv6/conf/{BRIDGE}/accept_ra") == "0"
    for result in results:
        assert sysctl(bench.node, f"ipv6/conf/{result['interfaces'][1]['name']}/accept_ra") == "0"


def test_accept_ra_is_turned_off_on_an_existing_bridge(bench, tmp_path):
    bench.node.ip("link", "add", BRIDGE, "type", "bridge")
    assert sysctl(bench.node, f"ipv6/conf/{BRIDGE}/accept_ra") != "0"
    pod = bench.container()
    bench.add(conf_of(tmp_path, isGateway=True), pod)
    assert sysctl(bench.node, f"ipv6/conf/{BRIDGE}/accept_ra") == "0"
    wait_carrier(bench.node, BRIDGE)
    settle(bench.node, pod)
    ping(pod, "10.96.0.1")
