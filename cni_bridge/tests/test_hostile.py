"""Regression tests of the hostile review (issue 11): inputs that changed the node before
they were refused, and a host veth that vanishes under a running ADD.

Each runs on a fresh node, so the bridge itself is something a refused ADD
could leave behind; the whole node, the pod and the state tree must be
exactly as they were.
"""

import pytest

from cni_bridge.tests.bridgeenv import IFNAME, allocations, calls, config, difference, fake_ipam, ipt_chain, ipt_nat, links, records, veths

pytestmark = pytest.mark.root

NET, BRIDGE = "hb", "cnithb0"
SUBNET = "10.95.0.0/24"


def conf_with(tmp_path, **ipam_keys) -> dict:
    conf = config(tmp_path, name=NET, bridge=BRIDGE, subnets=(SUBNET,), isGateway=True, ipMasq=True)
    conf["ipam"].update(ipam_keys)
    return conf


# (ipam keys, CNI_ARGS, CNI_IFNAME, expected code)
REFUSED = {
    "a /40 IPv4 subnet": ({"ranges": [[{"subnet": "10.95.0.0/40"}]]}, "", IFNAME, 7),
    "rangeStart outside its subnet": ({"ranges": [[{"subnet": SUBNET, "rangeStart": "10.96.0.10"}]]}, "", IFNAME, 7),
    "a malformed IP= in CNI_ARGS": ({}, "IP=10.95.0.300", IFNAME, 4),
    "CNI_IFNAME all": ({}, "", "all", 4),
    "CNI_IFNAME default": ({}, "", "default", 4),
    "CNI_IFNAME with a zero-width space": ({}, "", "eth\u200b0", 4),
    "CNI_IFNAME with a right-to-left override": ({}, "", "eth\u202e0", 4),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_refused_input_leaves_the_node_unchanged(case, bench, tmp_path):
    ipam_keys, cni_args, ifname, code = REFUSED[case]
    pod = bench.container()
    before = bench.snapshot(pod)
    out = bench.run("ADD", conf_with(tmp_path, **ipam_keys), pod, "c1", ifname=ifname, args=cni_args)
    assert out.rc == 1 and out.json["code"] == code, out
    assert BRIDGE not in links(bench.node), "a bridge was created for a refused ADD"
    after = bench.snapshot(pod)
    assert after == before, difference(before, after)


def test_requested_ip_outside_the_range_leaves_no_bridge(bench, tmp_path):
    pod = bench.container()
    before = bench.snapshot(pod)
    out = bench.run("ADD", conf_with(tmp_path), pod, "c1", args="IP=10.99.0.5")
    assert out.rc == 1 and out.json["code"] not in (0, 999), out
    assert BRIDGE not in links(bench.node)
    after = bench.snapshot(pod)
    assert after == before, difference(before, after)


def test_a_bridge_this_add_created_goes_with_its_rollback(bench, tmp_path):
    """An IPAM we cannot judge beforehand (exec'd, foreign) refuses: the bridge made for this ADD is removed."""
    fakes = tmp_path / "fakes"
    log = fake_ipam(fakes, "fakeipam", 'printf \'{"cniVersion":"1.1.0","code":7,"msg":"fake: bad config"}\'; exit 1')
    conf = config(tmp_path, name=NET, bridge=BRIDGE, subnets=(), isGateway=True)
    conf["ipam"] = {"type": "fakeipam"}
    pod = bench.container()
    before = bench.snapshot(pod)
    out = bench.run("ADD", conf, pod, "c1", path=str(fakes))
    assert out.rc == 1 and out.json["code"] == 7, out
    assert calls(log) == [("ADD", "c1"), ("DEL", "c1")]  # not vacuous: the bridge existed while IPAM ran
    assert BRIDGE not in links(bench.node)
    after = bench.snapshot(pod)
    after["files"] = {k: v for k, v in after["files"].items() if not k.startswith("fakes")}
    before["files"] = {k: v for k, v in before["files"].items() if not k.startswith("fakes")}
    assert after == before, difference(before, after)


def test_a_bridge_with_another_pods_port_stays_after_a_rollback(bench, tmp_path):
    healthy = config(tmp_path, name=NET, bridge=BRIDGE, subnets=(SUBNET,), isGateway=True)
    witness = bench.container()
    bench.add(healthy, witness, "c0")
    fakes = tmp_path / "fakes"
    fake_ipam(fakes, "fakeipam", 'printf \'{"cniVersion":"1.1.0","code":7,"msg":"fake"}\'; exit 1')
    conf = dict(healthy, ipam={"type": "fakeipam"})
    out = bench.run("ADD", conf, bench.container(), "c1", path=str(fakes))
    assert out.rc == 1 and out.json["code"] == 7, out
    assert BRIDGE in links(bench.node) and len(veths(bench.node)) == 1


def test_host_veth_vanishing_during_ipam_is_not_999(bench, tmp_path):
    """Someone deletes the new host veth while IPAM runs: a documented code, and a complete rollback."""
    healthy = config(tmp_path, name=NET, bridge=BRIDGE, subnets=(SUBNET,), isGateway=True)
    bench.add(healthy, bench.container(), "c0")
    witness_veths = veths(bench.node)
    keep = "|".join(witness_veths)
    fakes = tmp_path / "fakes"
    body = (
        f"for l in $(ip -o link show type veth | sed -E 's/^[0-9]+: ([^@:]+).*/\\1/' | grep -Ev '^({keep})$'); do ip link del \"$l\"; done; "
        'echo \'{"cniVersion":"1.1.0","ips":[{"address":"10.95.0.9/24"}]}\''
    )
    log = fake_ipam(fakes, "fakeipam", body)
    conf = dict(healthy, ipam={"type": "fakeipam"})
    pod = bench.container()
    out = bench.run("ADD", conf, pod, "c1", path=str(fakes))
    assert out.rc == 1 and out.json["code"] == 11, out
    assert calls(log) == [("ADD", "c1"), ("DEL", "c1")]
    assert veths(bench.node) == witness_veths and IFNAME not in links(pod)
    assert records(healthy) == ["c0:eth0.json"]
    assert [a for a in allocations(healthy) if not a.startswith(".")] == ["10.95.0.2"]  # c0's alone


def test_iptables_chains_shared_by_two_networks_are_torn_down_by_comment(bench, tmp_path):
    """The reference's chain name hashes network + containerID: ("a", "bc") and ("ab", "c") share one.

    One pod's DEL must leave the other's masquerade rules and chain in place.
    """
    first = config(tmp_path, name="a", bridge="cnithba0", subnets=("10.96.1.0/24",), isGateway=True, ipMasq=True, ipMasqBackend="iptables")
    second = config(tmp_path, name="ab", bridge="cnithbb0", subnets=("10.96.2.0/24",), isGateway=True, ipMasq=True, ipMasqBackend="iptables")
    chain = ipt_chain("a", "bc")
    assert chain == ipt_chain("ab", "c")  # not vacuous: the two attachments share the chain name
    bench.add(first, bench.container(), "bc")
    bench.add(second, bench.container(), "c")
    assert bench.run("DEL", first, None, "bc").ok
    left = [line for line in ipt_nat(bench.node).splitlines() if chain in line]
    assert left and all('name: \\"ab\\" id: \\"c\\"' in line or line.startswith(":") for line in left), left
    assert any("MASQUERADE" in line for line in left) and any("POSTROUTING" in line and "10.96.2." in line for line in left), left
    assert bench.run("DEL", second, None, "c").ok
    assert chain not in ipt_nat(bench.node)
