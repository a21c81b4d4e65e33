"""Lifecycle (SPEC 'Lifecycle & ordering', DEL): ADD -> CHECK -> DEL -> DEL, DEL without the netns, DEL with CNI_NETNS empty.

For every plugin type in the directory under test (host-local, bridge, vxlan in
static-peers mode).  Plugins run in a node namespace, containers are separate
namespaces; state goes to the test's own data directory.
"""
import pytest

from conformance.configs import PLUGIN_TYPES, config
from conformance.helpers import (allocations, assert_cni_error, assert_ok, assert_silent_ok, container_addresses, eventually, firewall_mentions,
                                 has_link, host_ips, link_names, prepare_node, result_addresses)
from conformance.netenv import run_plugin

pytestmark = pytest.mark.conformance
CID = "lifecycle1"


@pytest.fixture(params=PLUGIN_TYPES)
def kind(request, plugins, node):
    plugins.path(request.param)
    prepare_node(request.param, node)
    return request.param


def add(plugins, kind, conf, node, netns, cid=CID, **kw):
    out = run_plugin(plugins.path(kind), "ADD", conf, node=node, netns=netns, container_id=cid, **kw)
    assert_ok(out, f"{kind} ADD")
    return out.json


def run(plugins, kind, command, conf, node, netns, cid=CID, **kw):
    return run_plugin(plugins.path(kind), command, conf, node=node, netns=netns, container_id=cid, **kw)


def host_side_links(result: dict, netns: str) -> list[str]:
    """Host veths the result names (interfaces without a sandbox that are not shared devices like the bridge)."""
    return [i["name"] for i in result.get("interfaces", []) if not i.get("sandbox") and i["name"].startswith("veth")]


def test_add_check_del_del(kind, plugins, node, netns, data_dir):
    c = netns("c")
    conf = config(kind, "1.0.0", data_dir=data_dir)
    result = add(plugins, kind, conf, node, c.path)
    addresses = result_addresses(result)
    assert addresses
    assert set(allocations(data_dir, conf["name"])) == set(host_ips(result)), "ADD reserved the addresses it returned"
    if kind != "host-local":
        assert sorted(container_addresses(c, "eth0")) == sorted(addresses), "the result's addresses are on the container interface"
    veths = host_side_links(result, c.path)
    for veth in veths:
        assert has_link(node, veth), f"the host veth {veth} of the result exists on the node"

    checked = dict(conf, prevResult=result)
    assert_silent_ok(run(plugins, kind, "CHECK", checked, node, c.path), f"{kind} CHECK right after ADD")

    assert_silent_ok(run(plugins, kind, "DEL", checked, node, c.path), f"{kind} DEL")
    assert allocations(data_dir, conf["name"]) == {}, "DEL released every address"
    if kind != "host-local":
        assert not has_link(c, "eth0"), "DEL removed the container interface"
    for veth in veths:
        assert not has_link(node, veth), f"DEL removed the host veth {veth}"

    assert_silent_ok(run(plugins, kind, "DEL", checked, node, c.path), f"{kind} second DEL")
    assert_silent_ok(run(plugins, kind, "DEL", conf, node, c.path), f"{kind} DEL without prevResult")


def test_check_fails_when_the_attachment_is_gone(kind, plugins, node, netns, data_dir):
    """CHECK must report a resource it created and listed in prevResult that is missing."""
    c = netns("c")
    conf = config(kind, "1.0.0", data_dir=data_dir)
    result = add(plugins, kind, conf, node, c.path)
    checked = dict(conf, prevResult=result)
    if kind == "host-local":
        # the address reservation is host-local's resource: release it behind its back
        assert_silent_ok(run(plugins, kind, "DEL", conf, node, c.path))
    else:
        c.ip("link", "del", "eth0")
    assert_cni_error(run(plugins, kind, "CHECK", checked, node, c.path))
    assert_silent_ok(run(plugins, kind, "DEL", checked, node, c.path))


def test_del_with_the_netns_gone(kind, plugins, node, netns, data_dir):
    c = netns("c")
    conf = config(kind, "1.0.0", data_dir=data_dir)
    result = add(plugins, kind, conf, node, c.path)
    veths = host_side_links(result, c.path)
    path = c.path
    c.close()
    checked = dict(conf, prevResult=result)
    assert_silent_ok(run(plugins, kind, "DEL", checked, node, path), f"{kind} DEL with {path} gone")
    assert allocations(data_dir, conf["name"]) == {}, "DEL released the addresses although the netns is gone"
    for veth in veths:  # the kernel deletes the pair with the namespace, asynchronously
        assert eventually(lambda: not has_link(node, veth)), f"the host veth {veth} outlived its container namespace"
    assert_silent_ok(run(plugins, kind, "DEL", checked, node, path), f"{kind} second DEL with the netns gone")


def test_del_with_cni_netns_empty(kind, plugins, node, netns, data_dir):
    """Runtimes DEL with CNI_NETNS empty after a reboot (containerd/cri#948): the addresses must still be released."""
    c = netns("c")
    conf = config(kind, "1.0.0", data_dir=data_dir)
    result = add(plugins, kind, conf, node, c.path)
    checked = dict(conf, prevResult=result)
    assert_silent_ok(run(plugins, kind, "DEL", checked, node, ""), f"{kind} DEL with CNI_NETNS empty")
    assert allocations(data_dir, conf["name"]) == {}, "DEL released the addresses without a netns"
    assert_silent_ok(run(plugins, kind, "DEL", checked, node, ""), f"{kind} second DEL with CNI_NETNS empty")
    assert_silent_ok(run(plugins, kind, "DEL", checked, node, c.path), f"{kind} DEL with the netns after a DEL without")


def test_del_before_any_add(kind, plugins, node, netns, data_dir):
    """'A delete must still be executed even if the add fails': DEL of something never added succeeds."""
    c = netns("c")
    conf = config(kind, "1.0.0", data_dir=data_dir)
    assert_silent_ok(run(plugins, kind, "DEL", conf, node, c.path, cid="neveradded"))
    assert_silent_ok(run(plugins, kind, "DEL", conf, node, "", cid="neveradded"))


def test_two_containers_get_distinct_addresses(kind, plugins, node, netns, data_dir):
    c1, c2 = netns("c"), netns("c")
    conf = config(kind, "1.0.0", data_dir=data_dir)
    r1 = add(plugins, kind, conf, node, c1.path, cid="one")
    r2 = add(plugins, kind, conf, node, c2.path, cid="two")
    assert set(host_ips(r1)).isdisjoint(host_ips(r2))
    owners = allocations(data_dir, conf["name"])
    assert {owners[ip] for ip in host_ips(r1)} == {"one"} and {owners[ip] for ip in host_ips(r2)} == {"two"}
    assert_silent_ok(run(plugins, kind, "DEL", dict(conf, prevResult=r1), node, c1.path, cid="one"))
    assert set(allocations(data_dir, conf["name"])) == set(host_ips(r2)), "DEL of one container leaves the other's addresses"
    assert_silent_ok(run(plugins, kind, "CHECK", dict(conf, prevResult=r2), node, c2.path, cid="two"))
    assert_silent_ok(run(plugins, kind, "DEL", dict(conf, prevResult=r2), node, c2.path, cid="two"))


def test_add_with_existing_interface_name_fails(plugins, node, netns, data_dir):
    """'If an interface of the requested name already exists in the container, the CNI plugin MUST return with an error.'"""
    plugins.path("bridge")
    c = netns("c")
    c.ip("link", "add", "eth0", "type", "veth", "peer", "name", "eth0peer")
    conf = config("bridge", "1.0.0", data_dir=data_dir)
    assert_cni_error(run(plugins, "bridge", "ADD", conf, node, c.path))
    assert allocations(data_dir, conf["name"]) == {}, "a failed ADD keeps no address"
    assert_silent_ok(run(plugins, "bridge", "DEL", conf, node, c.path))


def test_bridge_del_removes_masquerade_rules(plugins, node, netns, data_dir):
    plugins.path("bridge")
    c = netns("c")
    conf = config("bridge", "1.0.0", data_dir=data_dir, ipMasq=True)
    result = add(plugins, "bridge", conf, node, c.path)
    ip = host_ips(result)[0]
    assert firewall_mentions(node, ip), "ipMasq installs rules for the container's address"
    assert_silent_ok(run(plugins, "bridge", "DEL", dict(conf, prevResult=result), node, c.path))
    assert firewall_mentions(node, ip, CID) == [], "DEL removed every rule of the container"


@pytest.mark.deliberate("the reference finds masquerade rules through the netns and leaks them when it is gone (plugins#810)")
def test_bridge_del_with_the_netns_gone_removes_masquerade_rules(plugins, node, netns, data_dir):
    plugins.path("bridge")
    c = netns("c")
    conf = config("bridge", "1.0.0", data_dir=data_dir, ipMasq=True)
    result = add(plugins, "bridge", conf, node, c.path)
    ip = host_ips(result)[0]
    path = c.path
    c.close()
    assert_silent_ok(run(plugins, "bridge", "DEL", dict(conf, prevResult=result), node, path))
    assert firewall_mentions(node, ip, CID) == [], "DEL removed every rule of the container without its netns"
    assert allocations(data_dir, conf["name"]) == {}
    assert eventually(lambda: [l for l in link_names(node) if l.startswith("veth")] == [])


def run_with_env(binary, command, conf, node, env):
    """Run a plugin with exactly `env` (nothing inherited), inside the node."""
    import json
    import subprocess

    from conformance.netenv import Outcome

    argv = ["ip", "netns", "exec", node.name, "/usr/bin/env", "-i", *[f"{k}={v}" for k, v in env.items()], binary]
    proc = subprocess.run(argv, input=json.dumps(conf).encode(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    return Outcome(proc.returncode, proc.stdout, proc.stderr)


@pytest.mark.parametrize("kind", ["host-local", "bridge"])
def test_del_with_conmons_minimal_environment(kind, plugins, node, netns, data_dir):
    """podman's DEL mostly comes from conmon's cleanup process: PATH, HOME, TMPDIR and the CNI variables, nothing else."""
    binary = plugins.path(kind)
    c = netns("c")
    conf = config(kind, "1.0.0", data_dir=data_dir, **({"ipMasq": True} if kind == "bridge" else {}))
    result = add(plugins, kind, conf, node, c.path)
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "TMPDIR": "/var/tmp", "PWD": "/",
           "CNI_COMMAND": "DEL", "CNI_CONTAINERID": CID, "CNI_NETNS": c.path, "CNI_IFNAME": "eth0", "CNI_PATH": plugins.dir,
           "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAME=x"}
    assert_silent_ok(run_with_env(binary, "DEL", dict(conf, prevResult=result), node, env))
    assert allocations(data_dir, conf["name"]) == {}
    assert firewall_mentions(node, *host_ips(result), CID) == []


@pytest.mark.parametrize("kind", ["host-local", pytest.param("bridge", marks=pytest.mark.deliberate(
    "the reference bridge finds iptables through PATH and fails DEL without it"))])
def test_del_with_an_empty_environment(kind, plugins, node, netns, data_dir):
    """Only the CNI variables: no PATH, no HOME (self-contained plugins and wrappers with absolute paths)."""
    binary = plugins.path(kind)
    c = netns("c")
    conf = config(kind, "1.0.0", data_dir=data_dir, **({"ipMasq": True} if kind == "bridge" else {}))
    result = add(plugins, kind, conf, node, c.path)
    env = {"CNI_COMMAND": "DEL", "CNI_CONTAINERID": CID, "CNI_NETNS": c.path, "CNI_IFNAME": "eth0", "CNI_PATH": plugins.dir}
    assert_silent_ok(run_with_env(binary, "DEL", dict(conf, prevResult=result), node, env))
    assert allocations(data_dir, conf["name"]) == {}
    assert firewall_mentions(node, *host_ips(result), CID) == []


@pytest.mark.deliberate("on DEL, a CNI_NETNS path that is not a namespace counts as gone; the reference fails (cri-o#438)")
def test_del_with_a_netns_path_that_is_not_a_namespace(plugins, node, netns, data_dir, tmp_path):
    plugins.path("bridge")
    c = netns("c")
    conf = config("bridge", "1.0.0", data_dir=data_dir)
    result = add(plugins, "bridge", conf, node, c.path)
    stale = tmp_path / "stale-netns"
    stale.write_text("")
    assert_silent_ok(run(plugins, "bridge", "DEL", dict(conf, prevResult=result), node, str(stale)))
    assert allocations(data_dir, conf["name"]) == {}


@pytest.mark.deliberate("CNI_NETNS naming the plugin's own namespace is refused before any work; the reference 1.1.1 goes ahead")
def test_add_into_the_plugins_own_namespace_is_refused_cleanly(plugins, node, data_dir):
    plugins.path("bridge")
    conf = config("bridge", "1.0.0", data_dir=data_dir)
    before = link_names(node)
    assert_cni_error(run(plugins, "bridge", "ADD", conf, node, node.path), 4)
    assert link_names(node) == before, "nothing was created on the node"
    assert allocations(data_dir, conf["name"]) == {}


@pytest.mark.deliberate("the reference bridge CHECKs an empty IPAM type and fails in L2 mode (plugins#987)")
def test_l2_bridge_check(plugins, node, netns, data_dir):
    plugins.path("bridge")
    c = netns("c")
    conf = config("bridge", "1.0.0", data_dir=data_dir, isGateway=False)
    del conf["ipam"]
    result = add(plugins, "bridge", conf, node, c.path)
    assert_silent_ok(run(plugins, "bridge", "CHECK", dict(conf, prevResult=result), node, c.path))
    assert_silent_ok(run(plugins, "bridge", "DEL", dict(conf, prevResult=result), node, c.path))
    assert not has_link(c, "eth0")


def test_bridge_name_taken_by_another_device(plugins, node, netns, data_dir):
    """A `bridge` name that names a non-bridge device is an error, and the failed ADD reserves nothing."""
    plugins.path("bridge")
    c = netns("c")
    conf = config("bridge", "1.0.0", data_dir=data_dir)
    node.ip("link", "add", conf["bridge"], "type", "veth", "peer", "name", "cnitpeer0")
    assert_cni_error(run(plugins, "bridge", "ADD", conf, node, c.path))
    assert allocations(data_dir, conf["name"]) == {}
    assert not has_link(c, "eth0")
    assert_silent_ok(run(plugins, "bridge", "DEL", conf, node, c.path))


@pytest.mark.deliberate("the reference bridge creates the veth before asking its IPAM and leaves it behind when that fails (plugins#29)")
def test_failed_add_leaves_nothing_behind(plugins, node, netns, data_dir):
    plugins.path("bridge")
    c = netns("c")
    conf = config("bridge", "1.0.0", data_dir=data_dir)
    conf["ipam"]["type"] = "no-such-ipam"
    before = link_names(node)
    assert_cni_error(run(plugins, "bridge", "ADD", conf, node, c.path))
    assert link_names(c) == {"lo"}, "nothing in the container"
    assert [l for l in link_names(node) - before if l.startswith("veth")] == [], "no host veth"


def test_check_tolerates_later_chained_changes(plugins, node, netns, data_dir):
    """CHECK 'must allow for a later chained plugin to have modified networking resources, e.g. routes'."""
    plugins.path("bridge")
    c = netns("c")
    conf = config("bridge", "1.0.0", data_dir=data_dir)
    result = add(plugins, "bridge", conf, node, c.path)
    c.ip("route", "add", "198.51.100.0/24", "via", "10.77.0.1", "dev", "eth0")
    c.ip("link", "set", "eth0", "mtu", "1400")
    c.exec("sh", "-c", "echo 1 > /proc/sys/net/ipv4/conf/eth0/arp_notify")
    assert_silent_ok(run(plugins, "bridge", "CHECK", dict(conf, prevResult=result), node, c.path))
    assert_silent_ok(run(plugins, "bridge", "DEL", dict(conf, prevResult=result), node, c.path))
