"""loopback (SPEC 'Result Types', DEL, CHECK; the reference plugins/main/loopback): lo up in the pod, reported in each version.

Runs against any plugin directory, the reference's too.  A pod's namespace
starts with lo down and without addresses; ADD brings lo up, the kernel gives
it 127.0.0.1/8 and ::1/128, and the result names lo (sandbox = CNI_NETNS) with
those addresses.  The reference labels its 1.x-shaped result with older
versions, so the pre-1.0 result forms are a deliberate difference; so is DEL
of a namespace whose lo was renamed, which the reference fails.  containerd's
use is exercised through libcni: its own loopback network, a second DEL with
CNI_NETNS empty, and loopback after the bridge in a chain.
"""

import json
import os

import pytest

from conformance.configs import config
from conformance.helpers import (
    LEGACY,
    SPEC_VERSIONS,
    assert_cni_error,
    assert_ok,
    assert_result_shape,
    assert_silent_ok,
    eventually,
    result_addresses,
    vkey,
)
from conformance.libcni import CNIConfig, NetworkConfigList, RuntimeConf
from conformance.netenv import Netns, run_plugin

pytestmark = pytest.mark.conformance
SPEC_FORM = "the reference labels a 1.x-shaped result with pre-1.0 versions (no ip4/ip6, no ips[].version)"
CONTAINERD_LOOPBACK = {"cniVersion": "0.3.1", "name": "cni-loopback", "plugins": [{"type": "loopback"}]}  # what containerd's CRI adds


@pytest.fixture
def pod():
    """A pod namespace as a runtime hands it over: lo down, no address."""
    ns = Netns("c", lo_up=False)
    yield ns
    ns.close()


def lo(ns: Netns) -> tuple[bool, list[str]]:
    link = ns.ipj("addr", "show", "dev", "lo")[0]
    return "UP" in link["flags"], sorted(f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", []))


def run(plugins, command, conf, node, netns, cid="lo1", **kw):
    return run_plugin(plugins.path("loopback"), command, conf, node=node, netns=netns, container_id=cid, **kw)


@pytest.mark.parametrize("version", [v if vkey(v) >= (1, 0, 0) else pytest.param(v, marks=pytest.mark.deliberate(SPEC_FORM)) for v in SPEC_VERSIONS])
def test_add_reports_lo_in_the_requested_version(version, plugins, node, pod):
    plugins.need_version("loopback", version)
    assert lo(pod) == (False, [])
    out = run(plugins, "ADD", config("loopback", version), node, pod.path)
    assert_ok(out, f"loopback ADD {version}")
    result = out.json
    assert_result_shape(result, version, ifname="lo", netns=pod.path, ipam_only=False)
    assert sorted(result_addresses(result)) == ["127.0.0.1/8", "::1/128"]
    if version not in LEGACY:
        assert result["interfaces"] == [{"name": "lo", "mac": "00:00:00:00:00:00", "sandbox": pod.path}]
    assert lo(pod) == (True, ["127.0.0.1/8", "::1/128"])


def test_add_check_del_del(plugins, node, pod):
    conf = config("loopback", "1.0.0")
    out = run(plugins, "ADD", conf, node, pod.path)
    assert_ok(out)
    checked = dict(conf, prevResult=out.json)
    assert_silent_ok(run(plugins, "CHECK", checked, node, pod.path), "CHECK right after ADD")
    assert_silent_ok(run(plugins, "DEL", checked, node, pod.path), "DEL")
    assert lo(pod)[0] is False, "DEL brought lo down"
    assert_cni_error(run(plugins, "CHECK", checked, node, pod.path))
    assert_silent_ok(run(plugins, "DEL", checked, node, pod.path), "second DEL")
    assert_silent_ok(run(plugins, "DEL", conf, node, pod.path), "DEL without prevResult")
    assert_silent_ok(run(plugins, "DEL", conf, node, ""), "DEL with CNI_NETNS empty")
    path = pod.path
    pod.close()
    assert_silent_ok(run(plugins, "DEL", checked, node, path), "DEL with the namespace gone")


def test_check_fails_when_lo_is_down(plugins, node, pod):
    conf = config("loopback", "0.4.0")
    out = run(plugins, "ADD", conf, node, pod.path)
    assert_ok(out)
    pod.ip("link", "set", "lo", "down")
    assert_cni_error(run(plugins, "CHECK", dict(conf, prevResult=out.json), node, pod.path))


def test_del_never_touches_another_namespace(plugins, node, pod):
    assert_ok(run(plugins, "ADD", config("loopback"), node, pod.path))
    assert_silent_ok(run(plugins, "DEL", config("loopback"), node, ""))
    assert lo(pod)[0] and lo(node)[0], "a DEL without CNI_NETNS leaves the pod's and the node's lo up"


@pytest.mark.parametrize("version", ["0.3.1", "0.4.0", "1.0.0"])
def test_chained_after_the_bridge_passes_its_result_on(version, plugins, bin_dir, node, pod, data_dir):
    """libcni runs bridge then loopback: the final result is the bridge's, and lo is up too."""
    plugins.path("bridge")
    plugins.path("loopback")
    bridge = config("bridge", version, data_dir=data_dir)
    conf = {
        "cniVersion": version,
        "name": "lochain",
        "plugins": [{k: v for k, v in bridge.items() if k not in ("cniVersion", "name")}, {"type": "loopback"}],
    }
    conflist = NetworkConfigList.from_bytes(json.dumps(conf).encode())
    calls = []
    cni = CNIConfig(
        [bin_dir],
        cache_dir=os.path.join(data_dir, "cache"),
        exec_prefix=["ip", "netns", "exec", node.name],
        env={"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")},
        log=lambda command, kind, env, stdin: calls.append((command, kind, json.loads(stdin))),
    )
    rt = RuntimeConf(container_id="lochain1", netns=pod.path)
    final = cni.add(conflist, rt)
    bridge_result = next(conf["prevResult"] for command, kind, conf in calls if command == "ADD" and kind == "loopback")
    assert {k: v for k, v in final.items() if k != "dns" or v} == {k: v for k, v in bridge_result.items() if k != "dns" or v}
    assert any(i["name"] == "eth0" and i.get("sandbox") == pod.path for i in final["interfaces"])
    assert lo(pod) == (True, ["127.0.0.1/8", "::1/128"])
    if vkey(version) >= (0, 4, 0):
        cni.check(conflist, rt)
    cni.delete(conflist, rt)
    assert [kind for command, kind, _ in calls if command == "DEL"] == ["loopback", "bridge"]
    assert lo(pod)[0] is False
    cni.delete(conflist, rt)


def test_containerd_loopback_network(plugins, bin_dir, node, pod, data_dir):
    """containerd's CRI: its own cni-loopback network (0.3.1), ADD and DEL, then a second DEL with CNI_NETNS empty."""
    plugins.path("loopback")
    conflist = NetworkConfigList.from_bytes(json.dumps(CONTAINERD_LOOPBACK).encode())
    cni = CNIConfig(
        [bin_dir],
        cache_dir=os.path.join(data_dir, "cache"),
        exec_prefix=["ip", "netns", "exec", node.name],
        env={"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")},
    )
    rt = RuntimeConf(
        container_id="ctrd1",
        netns=pod.path,
        args=[("IgnoreUnknown", "1"), ("K8S_POD_NAMESPACE", "default"), ("K8S_POD_NAME", "pod-1"), ("K8S_POD_INFRA_CONTAINER_ID", "ctrd1")],
    )
    result = cni.add(conflist, rt)
    assert result["cniVersion"] == "0.3.1"
    assert sorted(result_addresses(result)) == ["127.0.0.1/8", "::1/128"]
    assert lo(pod)[0]
    cni.delete(conflist, rt)
    cni.delete(conflist, RuntimeConf(container_id="ctrd1", netns="", args=rt.args), use_cache=False)
    assert lo(pod)[0] is False


@pytest.mark.deliberate("the reference's DEL fails (999) when the namespace has no lo")
def test_del_of_a_namespace_whose_lo_was_renamed(plugins, node, pod):
    pod.ip("link", "set", "lo", "name", "lo9")
    assert_cni_error(run(plugins, "ADD", config("loopback"), node, pod.path))
    assert_silent_ok(run(plugins, "DEL", config("loopback"), node, pod.path))


@pytest.mark.parametrize("command", ["GC", "STATUS"])
def test_gc_and_status_have_nothing_to_do(command, plugins, node, pod):
    plugins.need_version("loopback", "1.1.0")
    assert_ok(run(plugins, "ADD", config("loopback", "1.1.0"), node, pod.path))
    conf = config("loopback", "1.1.0", **{"cni.dev/valid-attachments": []})
    assert_silent_ok(run_plugin(plugins.path("loopback"), command, conf, node=node, container_id="", netns="", ifname=""))
    assert eventually(lambda: lo(pod)[0], 1), "GC leaves the pods' lo alone"
