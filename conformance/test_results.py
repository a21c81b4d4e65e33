"""Result types (SPEC 'Result Types', 'Version considerations'): the ADD result in every version the plugin advertises.

0.1.0/0.2.0: ip4/ip6 blocks.  0.3.x/0.4.0: interfaces, ips with "version".  1.x: no
"version".  The container interface carries "sandbox" = CNI_NETNS and every ips[]
entry's "interface" points at it; an IPAM plugin's result is abbreviated (no
interfaces, no interface index).
"""
import pytest

from conformance.configs import PLUGIN_TYPES, config
from conformance.helpers import (SPEC_VERSIONS, allocations, assert_ok, assert_result_shape, assert_silent_ok, container_addresses, host_ips,
                                 prepare_node, result_addresses, vkey)
from conformance.netenv import run_plugin

pytestmark = pytest.mark.conformance
DUAL = {"type": "host-local", "ranges": [[{"subnet": "10.77.0.0/24"}], [{"subnet": "fd77::/64"}]]}


@pytest.fixture(params=PLUGIN_TYPES)
def kind(request, plugins, node):
    plugins.path(request.param)
    prepare_node(request.param, node)
    return request.param


@pytest.mark.parametrize("version", SPEC_VERSIONS)
def test_add_result_in_the_requested_version(kind, version, plugins, node, netns, data_dir):
    plugins.need_version(kind, version)
    c = netns("c")
    conf = config(kind, version, data_dir=data_dir)
    out = run_plugin(plugins.path(kind), "ADD", conf, node=node, netns=c.path, container_id="res1")
    assert_ok(out, f"{kind} ADD {version}")
    result = out.json
    subnet = conf["ipam"].get("subnet") if kind != "vxlan" else None
    assert_result_shape(result, version, ifname="eth0", netns=c.path, ipam_only=(kind == "host-local"), subnet=subnet)
    if kind != "host-local":
        assert sorted(container_addresses(c, "eth0")) == sorted(result_addresses(result))
    assert set(allocations(data_dir, conf["name"])) == set(host_ips(result))
    if vkey(version) >= (0, 4, 0):
        assert_silent_ok(run_plugin(plugins.path(kind), "CHECK", dict(conf, prevResult=result), node=node, netns=c.path, container_id="res1"))
        conf = dict(conf, prevResult=result)
    assert_silent_ok(run_plugin(plugins.path(kind), "DEL", conf, node=node, netns=c.path, container_id="res1"), f"{kind} DEL {version}")
    assert allocations(data_dir, conf["name"]) == {}


@pytest.mark.parametrize("version", SPEC_VERSIONS)
@pytest.mark.parametrize("kind", ["host-local", "bridge"])
def test_dual_stack_result(kind, version, plugins, node, netns, data_dir):
    plugins.need_version(kind, version)
    c = netns("c")
    conf = config(kind, version, data_dir=data_dir)
    conf["ipam"] = dict(DUAL, dataDir=data_dir)
    out = run_plugin(plugins.path(kind), "ADD", conf, node=node, netns=c.path, container_id="dual1")
    assert_ok(out, f"{kind} ADD {version}")
    result = out.json
    assert_result_shape(result, version, ifname="eth0", netns=c.path, ipam_only=(kind == "host-local"))
    families = sorted(":" in a for a in result_addresses(result))
    assert families == [False, True], f"one IPv4 and one IPv6 address: {result}"
    if version not in ("0.1.0", "0.2.0"):
        assert sorted(ip.get("version", "") for ip in result["ips"]) == (["4", "6"] if vkey(version) < (1, 0, 0) else ["", ""])
    if vkey(version) >= (0, 4, 0):
        conf = dict(conf, prevResult=result)
        assert_silent_ok(run_plugin(plugins.path(kind), "CHECK", conf, node=node, netns=c.path, container_id="dual1"))
    assert_silent_ok(run_plugin(plugins.path(kind), "DEL", conf, node=node, netns=c.path, container_id="dual1"))
    assert allocations(data_dir, conf["name"]) == {}


@pytest.mark.parametrize("version", ["0.3.1", "0.4.0", "1.0.0"])
def test_bridge_result_names_host_and_container_interfaces(version, plugins, node, netns, data_dir):
    """Host-side interfaces have no sandbox; the MACs reported are the links' real MACs."""
    plugins.need_version("bridge", version)
    c = netns("c")
    conf = config("bridge", version, data_dir=data_dir)
    out = run_plugin(plugins.path("bridge"), "ADD", conf, node=node, netns=c.path, container_id="ifs1")
    assert_ok(out)
    result = out.json
    by_name = {i["name"]: i for i in result["interfaces"]}
    assert conf["bridge"] in by_name and not by_name[conf["bridge"]].get("sandbox"), result
    container_mac = c.ipj("link", "show", "eth0")[0]["address"]
    assert by_name["eth0"].get("mac", container_mac) == container_mac
    node_links = {l["ifname"]: l["address"] for l in node.ipj("link", "show")}
    for name, iface in by_name.items():
        if not iface.get("sandbox"):
            assert name in node_links, f"host interface {name} is on the node"
            if iface.get("mac"):
                assert iface["mac"] == node_links[name]
    if vkey(version) >= (0, 4, 0):
        conf = dict(conf, prevResult=result)
    assert_silent_ok(run_plugin(plugins.path("bridge"), "DEL", conf, node=node, netns=c.path, container_id="ifs1"))


ROUTES = [{"dst": "0.0.0.0/0"}, {"dst": "192.0.2.0/24", "gw": "10.77.0.254"}]


@pytest.mark.parametrize("version", ["0.2.0", "0.4.0", "1.0.0"])
@pytest.mark.parametrize("kind", ["host-local", "bridge"])
def test_ipam_routes_reach_the_result_and_the_container(kind, version, plugins, node, netns, data_dir):
    plugins.need_version(kind, version)
    c = netns("c")
    conf = config(kind, version, data_dir=data_dir)
    conf["ipam"]["routes"] = ROUTES
    out = run_plugin(plugins.path(kind), "ADD", conf, node=node, netns=c.path, container_id="rt1")
    assert_ok(out)
    result = out.json
    routes = result["ip4"].get("routes", []) if version == "0.2.0" else result.get("routes", [])
    assert [(r["dst"], r.get("gw")) for r in routes] == [(r["dst"], r.get("gw")) for r in ROUTES], result
    if kind == "bridge":
        table = {(r["dst"], r.get("gateway")) for r in c.ipj("-4", "route", "show")}
        assert ("default", "10.77.0.1") in table and ("192.0.2.0/24", "10.77.0.254") in table, table
        if vkey(version) >= (0, 4, 0):
            assert_silent_ok(run_plugin(plugins.path(kind), "CHECK", dict(conf, prevResult=result), node=node, netns=c.path, container_id="rt1"))
    if vkey(version) >= (0, 4, 0):
        conf = dict(conf, prevResult=result)
    assert_silent_ok(run_plugin(plugins.path(kind), "DEL", conf, node=node, netns=c.path, container_id="rt1"))
