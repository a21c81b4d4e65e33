"""STATUS and GC (CNI 1.1.0), for plugins that advertise 1.1.0; skipped with the reason otherwise.

GC gets `cni.dev/valid-attachments` (libcni also sends the older `cni.dev/attachments`)
and releases what belongs to attachments not in it, for this network only;
plugins forward GC and STATUS to their IPAM.  Success prints nothing.
"""
import pytest

from conformance.configs import PLUGIN_TYPES, config
from conformance.helpers import allocations, assert_cni_error, assert_ok, assert_silent_ok, firewall_mentions, host_ips, prepare_node
from conformance.netenv import run_plugin

pytestmark = pytest.mark.conformance
V = "1.1.0"


@pytest.fixture(params=PLUGIN_TYPES)
def kind(request, plugins, node):
    plugins.path(request.param)
    plugins.need_version(request.param, V)
    prepare_node(request.param, node)
    return request.param


def gc_conf(conf: dict, valid, key: str = "cni.dev/valid-attachments") -> dict:
    out = dict(conf)
    if valid is not None:
        out[key] = [{"containerID": cid, "ifname": ifname} for cid, ifname in valid]
    return out


def gc(plugins, kind, conf, node):
    # libcni sends GC with CNI_CONTAINERID, CNI_NETNS and CNI_IFNAME empty
    return run_plugin(plugins.path(kind), "GC", conf, node=node, container_id="", netns="", ifname="")


def attach(plugins, kind, conf, node, netns, cids):
    results = {}
    for cid in cids:
        c = netns("c")
        out = run_plugin(plugins.path(kind), "ADD", conf, node=node, netns=c.path, container_id=cid)
        assert_ok(out, f"{kind} ADD {cid}")
        results[cid] = (c, out.json)
    return results


def test_status_of_a_usable_network(kind, plugins, node, data_dir):
    out = run_plugin(plugins.path(kind), "STATUS", config(kind, V, data_dir=data_dir), node=node, container_id="", netns="", ifname="")
    assert_silent_ok(out, f"{kind} STATUS")


def test_status_forwards_to_the_ipam(plugins, node, data_dir, tmp_path):
    """'If the plugin relies on a delegated plugin for ADD it must also execute a STATUS request to that plugin'."""
    plugins.path("bridge")
    plugins.need_version("bridge", V)
    conf = config("bridge", V, data_dir=data_dir)
    conf["ipam"]["type"] = "no-such-ipam"
    out = run_plugin(plugins.path("bridge"), "STATUS", conf, node=node, container_id="", netns="", ifname="")
    assert_cni_error(out)


@pytest.mark.parametrize("kind", ["host-local", "bridge"])
def test_status_reports_an_exhausted_range(kind, plugins, node, netns, data_dir):
    """SPEC STATUS: 'the plugin is not available' (50) when it cannot service ADD, e.g. its addresses are exhausted;
    a plugin that delegates to an IPAM passes the IPAM's STATUS on."""
    plugins.path(kind)
    plugins.need_version(kind, V)
    conf = config(kind, V, data_dir=data_dir)
    conf["ipam"].update({"rangeStart": "10.77.0.10", "rangeEnd": "10.77.0.11"})
    assert_silent_ok(run_plugin(plugins.path(kind), "STATUS", conf, node=node, container_id="", netns="", ifname=""))
    attach(plugins, kind, conf, node, netns, ["s1", "s2"])
    out = run_plugin(plugins.path(kind), "STATUS", conf, node=node, container_id="", netns="", ifname="")
    assert_cni_error(out, 50)


@pytest.mark.parametrize("key", ["cni.dev/valid-attachments", "cni.dev/attachments"])
def test_gc_releases_what_is_not_valid(kind, key, plugins, node, netns, data_dir):
    conf = config(kind, V, data_dir=data_dir)
    results = attach(plugins, kind, conf, node, netns, ["keep", "stale1", "stale2"])
    assert len(allocations(data_dir, conf["name"])) == 3
    assert_silent_ok(gc(plugins, kind, gc_conf(conf, [("keep", "eth0")], key), node), f"{kind} GC")
    owners = allocations(data_dir, conf["name"])
    assert sorted(owners.values()) == ["keep"], f"GC kept only the valid attachment's addresses: {owners}"
    assert set(owners) == set(host_ips(results["keep"][1]))
    c, result = results["keep"]
    assert_silent_ok(run_plugin(plugins.path(kind), "CHECK", dict(conf, prevResult=result), node=node, netns=c.path, container_id="keep"),
                     "the valid attachment still passes CHECK")
    # GC again is a no-op
    assert_silent_ok(gc(plugins, kind, gc_conf(conf, [("keep", "eth0")], key), node))
    assert allocations(data_dir, conf["name"]) == owners
    assert_silent_ok(run_plugin(plugins.path(kind), "DEL", dict(conf, prevResult=result), node=node, netns=c.path, container_id="keep"))


def test_gc_matches_the_interface_name_too(plugins, node, netns, data_dir):
    plugins.path("host-local")
    plugins.need_version("host-local", V)
    conf = config("host-local", V, data_dir=data_dir)
    c = netns("c")
    for ifname in ("eth0", "net1"):
        assert_ok(run_plugin(plugins.path("host-local"), "ADD", conf, node=node, netns=c.path, container_id="multi", ifname=ifname))
    assert_silent_ok(gc(plugins, "host-local", gc_conf(conf, [("multi", "net1")]), node))
    assert list(allocations(data_dir, conf["name"]).values()) == ["multi"]
    assert_silent_ok(run_plugin(plugins.path("host-local"), "DEL", conf, node=node, netns=c.path, container_id="multi", ifname="net1"))
    assert allocations(data_dir, conf["name"]) == {}


@pytest.mark.parametrize("valid", [None, []], ids=["no-key", "empty-list"])
def test_gc_with_nothing_valid_releases_everything(kind, valid, plugins, node, netns, data_dir):
    """An absent list reads as an empty one (Go decodes both to nil): cnitool's `gc` relies on that."""
    conf = config(kind, V, data_dir=data_dir)
    attach(plugins, kind, conf, node, netns, ["a1", "a2"])
    assert_silent_ok(gc(plugins, kind, gc_conf(conf, valid), node))
    assert allocations(data_dir, conf["name"]) == {}


def test_gc_leaves_other_networks_alone(kind, plugins, node, netns, data_dir):
    """'Only resources owned by this network may be removed' -- two networks share one dataDir."""
    conf = config(kind, V, data_dir=data_dir)
    other = dict(config(kind, V, data_dir=data_dir), name="othernet")
    if kind == "bridge":
        other["bridge"] = "cnitconf1"
        other["ipam"] = dict(other["ipam"], subnet="10.79.0.0/24")
    if kind == "vxlan":
        other.update(vni=2, network="10.80.0.0/16", delegate={"bridge": "cnitvx1"},
                     peers=[{"node": "n1", "vtep": "192.0.2.1", "subnet": "10.80.1.0/24"}])
    attach(plugins, kind, conf, node, netns, ["mine"])
    theirs = attach(plugins, kind, other, node, netns, ["theirs"])
    assert_silent_ok(gc(plugins, kind, gc_conf(conf, []), node))
    assert allocations(data_dir, conf["name"]) == {}
    assert list(allocations(data_dir, "othernet").values()) == ["theirs"]
    c, result = theirs["theirs"]
    assert_silent_ok(run_plugin(plugins.path(kind), "DEL", dict(other, prevResult=result), node=node, netns=c.path, container_id="theirs"))


def test_bridge_gc_removes_stale_masquerade_rules(plugins, node, netns, data_dir):
    plugins.path("bridge")
    plugins.need_version("bridge", V)
    conf = config("bridge", V, data_dir=data_dir, ipMasq=True)
    results = attach(plugins, "bridge", conf, node, netns, ["keep", "gone"])
    gone_ip = host_ips(results["gone"][1])[0]
    keep_ip = host_ips(results["keep"][1])[0]
    results["gone"][0].close()  # the stale container's namespace is gone, as GC may assume
    assert firewall_mentions(node, gone_ip)
    assert_silent_ok(gc(plugins, "bridge", gc_conf(conf, [("keep", "eth0")]), node))
    assert firewall_mentions(node, gone_ip, "gone") == [], "GC removed the stale attachment's masquerade rules"
    assert firewall_mentions(node, keep_ip), "GC kept the valid attachment's rules"
    c, result = results["keep"]
    assert_silent_ok(run_plugin(plugins.path("bridge"), "DEL", dict(conf, prevResult=result), node=node, netns=c.path, container_id="keep"))
    assert firewall_mentions(node, keep_ip, "keep") == []


def test_gc_and_status_are_refused_below_1_1_0_only(plugins, node, data_dir):
    """A 1.1.0 plugin accepts GC and STATUS for 1.1.0 configs (the protocol tests check the refusal below)."""
    plugins.path("host-local")
    plugins.need_version("host-local", V)
    conf = config("host-local", V, data_dir=data_dir)
    for command in ("GC", "STATUS"):
        assert_silent_ok(run_plugin(plugins.path("host-local"), command, conf, node=node, container_id="", netns="", ifname=""))
