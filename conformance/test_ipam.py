"""IPAM under load (SPEC 'Lifecycle & ordering': plugins must handle concurrent calls for different containers).

N parallel ADDs on one network get N distinct addresses; a range with F free
addresses grants exactly F of more parallel ADDs and fails the rest with a CNI
error; DELs free addresses for reuse.  Run through host-local directly and
through the bridge delegating to it.
"""
import ipaddress
from concurrent.futures import ThreadPoolExecutor

import pytest

from conformance.configs import config
from conformance.helpers import allocations, assert_cni_error, assert_ok, assert_silent_ok, has_link, host_ips
from conformance.netenv import run_plugin

pytestmark = pytest.mark.conformance
N = 12
SUBNET = "10.77.0.0/24"
POOL = {"rangeStart": "10.77.0.10", "rangeEnd": "10.77.0.14"}  # five addresses
FREE = 5


@pytest.fixture(params=["host-local", "bridge"])
def kind(request, plugins):
    plugins.path(request.param)
    return request.param


def parallel(fn, items):
    with ThreadPoolExecutor(max_workers=len(items)) as pool:
        return list(pool.map(fn, items))


def test_parallel_adds_get_distinct_addresses(kind, plugins, node, netns, data_dir):
    conf = config(kind, "1.0.0", data_dir=data_dir)
    containers = [netns("c") for _ in range(N)]
    binary = plugins.path(kind)

    outs = parallel(lambda i: run_plugin(binary, "ADD", conf, node=node, netns=containers[i].path, container_id=f"par{i}"), range(N))
    for out in outs:
        assert_ok(out, f"{kind} parallel ADD")
    ips = [host_ips(out.json)[0] for out in outs]
    assert len(set(ips)) == N, f"duplicate addresses handed out: {sorted(ips)}"
    assert all(ipaddress.ip_address(ip) in ipaddress.ip_network(SUBNET) for ip in ips)
    assert "10.77.0.1" not in ips, "the gateway is never allocated"
    owners = allocations(data_dir, conf["name"])
    assert {ip: owners.get(ip) for ip in ips} == {ip: f"par{i}" for i, ip in enumerate(ips)}

    dels = parallel(lambda i: run_plugin(binary, "DEL", dict(conf, prevResult=outs[i].json), node=node, netns=containers[i].path,
                                         container_id=f"par{i}"), range(N))
    for out in dels:
        assert_silent_ok(out, f"{kind} parallel DEL")
    assert allocations(data_dir, conf["name"]) == {}


def test_parallel_adds_beyond_the_pool(kind, plugins, node, netns, data_dir):
    conf = config(kind, "1.0.0", data_dir=data_dir)
    conf["ipam"].update(POOL)
    extra = 4
    containers = [netns("c") for _ in range(FREE + extra)]
    binary = plugins.path(kind)

    outs = parallel(lambda i: run_plugin(binary, "ADD", conf, node=node, netns=containers[i].path, container_id=f"ex{i}"),
                    range(FREE + extra))
    granted = [i for i, out in enumerate(outs) if out.rc == 0]
    refused = [i for i, out in enumerate(outs) if out.rc != 0]
    assert len(granted) == FREE, f"exactly the {FREE} free addresses are granted: {[str(o) for o in outs if o.rc]}"
    ips = sorted(host_ips(outs[i].json)[0] for i in granted)
    assert ips == [f"10.77.0.{n}" for n in range(10, 15)]
    for i in refused:
        assert_cni_error(outs[i])
        if kind == "bridge":
            # the runtime DELs a failed ADD; afterwards nothing of it is left in the container
            assert_silent_ok(run_plugin(binary, "DEL", conf, node=node, netns=containers[i].path, container_id=f"ex{i}"))
            assert not has_link(containers[i], "eth0")
    assert set(allocations(data_dir, conf["name"])) == set(ips), "failed ADDs and their DELs touched no granted address"

    # a DEL frees an address for the next ADD
    first = granted[0]
    assert_silent_ok(run_plugin(binary, "DEL", dict(conf, prevResult=outs[first].json), node=node, netns=containers[first].path,
                                container_id=f"ex{first}"))
    late = netns("c")
    again = run_plugin(binary, "ADD", conf, node=node, netns=late.path, container_id="late")
    assert_ok(again)
    assert host_ips(again.json) == host_ips(outs[first].json)
    for i in granted[1:]:
        assert_silent_ok(run_plugin(binary, "DEL", dict(conf, prevResult=outs[i].json), node=node, netns=containers[i].path,
                                    container_id=f"ex{i}"))
    assert_silent_ok(run_plugin(binary, "DEL", dict(conf, prevResult=again.json), node=node, netns=late.path, container_id="late"))
    assert allocations(data_dir, conf["name"]) == {}


def test_sequential_exhaustion(plugins, node, netns, data_dir):
    """host-local alone: the (FREE+1)th ADD fails with an error structure and reserves nothing."""
    binary = plugins.path("host-local")
    conf = config("host-local", "1.0.0", data_dir=data_dir)
    conf["ipam"].update(POOL)
    c = netns("c")
    for i in range(FREE):
        assert_ok(run_plugin(binary, "ADD", conf, node=node, netns=c.path, container_id=f"seq{i}"))
    before = allocations(data_dir, conf["name"])
    assert len(before) == FREE
    doc = assert_cni_error(run_plugin(binary, "ADD", conf, node=node, netns=c.path, container_id="seqx"))
    assert doc["code"] not in (1, 4, 6, 7), f"exhaustion is not an input error: {doc}"
    assert allocations(data_dir, conf["name"]) == before


def test_requested_address(plugins, node, netns, data_dir):
    """CONVENTIONS 'ips' capability: a requested address is granted, and refused while taken."""
    binary = plugins.path("host-local")
    conf = config("host-local", "1.0.0", data_dir=data_dir, capabilities={"ips": True}, runtimeConfig={"ips": ["10.77.0.42/24"]})
    c = netns("c")
    out = run_plugin(binary, "ADD", conf, node=node, netns=c.path, container_id="req1")
    assert_ok(out)
    assert out.json["ips"][0]["address"] == "10.77.0.42/24"
    assert_cni_error(run_plugin(binary, "ADD", conf, node=node, netns=c.path, container_id="req2"))
    assert allocations(data_dir, conf["name"]) == {"10.77.0.42": "req1"}


def test_second_add_of_the_same_attachment_fails(plugins, node, netns, data_dir):
    """SPEC: no second ADD for one (container, ifname) without a DEL; host-local refuses a duplicate and keeps the first."""
    binary = plugins.path("host-local")
    conf = config("host-local", "1.0.0", data_dir=data_dir)
    c = netns("c")
    first = run_plugin(binary, "ADD", conf, node=node, netns=c.path, container_id="dup1")
    assert_ok(first)
    assert_cni_error(run_plugin(binary, "ADD", conf, node=node, netns=c.path, container_id="dup1"))
    assert allocations(data_dir, conf["name"]) == {host_ips(first.json)[0]: "dup1"}
    other_if = run_plugin(binary, "ADD", conf, node=node, netns=c.path, container_id="dup1", ifname="net1")
    assert_ok(other_if, "the same container on another interface")
    for ifname in ("eth0", "net1"):
        assert_silent_ok(run_plugin(binary, "DEL", conf, node=node, netns=c.path, container_id="dup1", ifname=ifname))
    assert allocations(data_dir, conf["name"]) == {}


@pytest.mark.parametrize("subnet,free", [("10.77.0.0/30", ["10.77.0.2"]), ("fd77::/126", ["fd77::2", "fd77::3"])])
def test_network_broadcast_and_gateway_are_never_allocated(subnet, free, plugins, node, netns, data_dir):
    """The gateway (first host) and the IPv4 broadcast address are never handed out; IPv6 has no broadcast."""
    binary = plugins.path("host-local")
    conf = config("host-local", "1.0.0", data_dir=data_dir)
    conf["ipam"]["subnet"] = subnet
    c = netns("c")
    got = []
    for i in range(len(free)):
        out = run_plugin(binary, "ADD", conf, node=node, netns=c.path, container_id=f"bc{i}")
        assert_ok(out)
        got += host_ips(out.json)
    assert sorted(got) == sorted(free)
    assert_cni_error(run_plugin(binary, "ADD", conf, node=node, netns=c.path, container_id="bcx"))


def test_requesting_the_gateway_fails(plugins, node, netns, data_dir):
    binary = plugins.path("host-local")
    conf = config("host-local", "1.0.0", data_dir=data_dir, capabilities={"ips": True}, runtimeConfig={"ips": ["10.77.0.1/24"]})
    c = netns("c")
    assert_cni_error(run_plugin(binary, "ADD", conf, node=node, netns=c.path, container_id="gw1"))
    assert allocations(data_dir, conf["name"]) == {}
