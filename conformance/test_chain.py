"""prevResult in conflist chains (SPEC 'Chained plugins', 'Deriving request configuration').

The bridge under test, followed by the reference `tuning` and `portmap` plugins
(--reference-dir), run the way libcni runs a list: ADD in order with each plugin's
result threaded into the next one's prevResult, CHECK in order and DEL in reverse
with the final result.  Everything runs inside a node namespace.
"""
import json
import os

import pytest

from conformance.configs import config
from conformance.helpers import allocations, container_addresses, eventually, firewall_mentions, has_link, host_ips
from conformance.libcni import CNIConfig, CNIError, NetworkConfigList, RuntimeConf

pytestmark = pytest.mark.conformance
MAC = "0e:00:00:c0:ff:ee"
HOST_PORT, CONTAINER_PORT = 18080, 80


class Recorder:
    def __init__(self):
        self.calls = []

    def __call__(self, command, plugin_type, env, stdin):
        self.calls.append((command, plugin_type, json.loads(stdin)))

    def of(self, command):
        return [(t, conf) for c, t, conf in self.calls if c == command]


def chain(bin_dir, reference_dir, node, data_dir, version):
    bridge = config("bridge", version, data_dir=data_dir)
    for key in ("cniVersion", "name"):
        del bridge[key]
    conf = {
        "cniVersion": version,
        "name": "chainnet",
        "plugins": [
            bridge,
            {"type": "tuning", "capabilities": {"mac": True}, "sysctl": {"net.ipv4.conf.eth0.arp_notify": "1"}},
            {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True},
        ],
    }
    conflist = NetworkConfigList.from_bytes(json.dumps(conf).encode())
    recorder = Recorder()
    # the plugins under test first: bridge and host-local come from bin_dir, tuning and portmap from the reference
    cni = CNIConfig([bin_dir, reference_dir], cache_dir=os.path.join(data_dir, "cache"), exec_prefix=["ip", "netns", "exec", node.name],
                    env={"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")}, log=recorder)
    return cni, conflist, recorder


@pytest.fixture
def reference_meta(reference_dir):
    for name in ("tuning", "portmap"):
        if not os.access(os.path.join(reference_dir, name), os.X_OK):
            pytest.fail(f"the reference {name} plugin is missing from {reference_dir}")
    return reference_dir


@pytest.mark.parametrize("version", ["0.4.0", "1.0.0"])
def test_bridge_tuning_portmap_chain(version, plugins, bin_dir, reference_meta, node, netns, data_dir):
    plugins.path("bridge")
    plugins.need_version("bridge", version)
    c = netns("c")
    cni, conflist, rec = chain(bin_dir, reference_meta, node, data_dir, version)
    rt = RuntimeConf(container_id="chain1", netns=c.path, ifname="eth0",
                     capability_args={"mac": MAC, "portMappings": [{"hostPort": HOST_PORT, "containerPort": CONTAINER_PORT, "protocol": "tcp"}]})
    final = cni.add(conflist, rt)

    # prevResult threading: no prevResult for the first ADD, then each plugin's output feeds the next
    adds = rec.of("ADD")
    assert [t for t, _ in adds] == ["bridge", "tuning", "portmap"]
    assert "prevResult" not in adds[0][1]
    assert all(conf["cniVersion"] == version and conf["name"] == "chainnet" for _, conf in adds)
    # runtimeConfig only for the declared capabilities
    assert "runtimeConfig" not in adds[0][1]
    assert adds[1][1]["runtimeConfig"] == {"mac": MAC}
    assert adds[2][1]["runtimeConfig"] == {"portMappings": rt.capability_args["portMappings"]}
    bridge_result = adds[1][1]["prevResult"]
    assert bridge_result["cniVersion"] == version
    ip = host_ips(bridge_result)[0]

    # tuning's change: the MAC and the sysctl in the container, and the MAC in the result it passed on
    assert c.ipj("link", "show", "eth0")[0]["address"] == MAC
    assert c.exec("cat", "/proc/sys/net/ipv4/conf/eth0/arp_notify").strip() == "1"
    tuned = adds[2][1]["prevResult"]
    eth0 = [i for i in tuned["interfaces"] if i["name"] == "eth0" and i.get("sandbox") == c.path]
    assert eth0 and eth0[0]["mac"] == MAC
    assert [i["address"] for i in tuned["ips"]] == [i["address"] for i in bridge_result["ips"]], "tuning passed the addresses through"
    # portmap's DNAT for the mapping, and the final result still the bridge's attachment
    rules = firewall_mentions(node, f"{ip}:{CONTAINER_PORT}")
    assert rules and any(str(HOST_PORT) in r for r in rules), "portmap installed a DNAT to the container"
    assert [i["address"] for i in final["ips"]] == [i["address"] for i in bridge_result["ips"]]
    assert container_addresses(c, "eth0") == [i["address"] for i in final["ips"]]

    # CHECK with the cached final result, in order.  The reference portmap 1.1.1 CHECK always fails (it looks for
    # the IPv4 rules in ip6tables), so the list checked here stops before it.
    checked = NetworkConfigList.from_bytes(json.dumps(dict(json.loads(conflist.raw), plugins=json.loads(conflist.raw)["plugins"][:2])).encode())
    cni.check(checked, rt)
    checks = rec.of("CHECK")
    assert [t for t, _ in checks] == ["bridge", "tuning"]
    assert all(conf["prevResult"] == final for _, conf in checks), "CHECK gets the cached final result"

    # DEL in reverse with the final result
    cni.delete(conflist, rt)
    dels = rec.of("DEL")
    assert [t for t, _ in dels] == ["portmap", "tuning", "bridge"]
    assert all(conf["prevResult"] == final for _, conf in dels)
    assert firewall_mentions(node, ip, f"{ip}:{CONTAINER_PORT}", "chain1") == []
    assert allocations(data_dir, "chainnet") == {}
    assert not has_link(c, "eth0")
    assert cni.cached("chainnet", rt) is None, "DEL dropped the cache entry"
    # and DEL again (no cache now) succeeds
    cni.delete(conflist, rt)


def test_check_catches_a_broken_chain(plugins, bin_dir, reference_meta, node, netns, data_dir):
    """A chain's CHECK fails when the bridge's attachment lost its address."""
    plugins.path("bridge")
    c = netns("c")
    cni, conflist, rec = chain(bin_dir, reference_meta, node, data_dir, "1.0.0")
    rt = RuntimeConf(container_id="chain2", netns=c.path, capability_args={"mac": MAC})
    result = cni.add(conflist, rt)
    c.ip("addr", "flush", "dev", "eth0", "scope", "global")
    checked = NetworkConfigList.from_bytes(json.dumps(dict(json.loads(conflist.raw), plugins=json.loads(conflist.raw)["plugins"][:1])).encode())
    with pytest.raises(CNIError) as err:
        cni.check(checked, rt)
    assert err.value.code is not None, "the failure is a CNI error structure"
    cni.delete(conflist, rt)
    assert allocations(data_dir, "chainnet") == {}
    assert firewall_mentions(node, host_ips(result)[0], "chain2") == []


def test_del_of_a_chain_whose_add_failed(plugins, bin_dir, reference_meta, node, netns, data_dir):
    """podman DELs the whole list without prevResult right after a failed ADD: every plugin must accept it."""
    plugins.path("bridge")
    c = netns("c")
    cni, conflist, rec = chain(bin_dir, reference_meta, node, data_dir, "1.0.0")
    rt = RuntimeConf(container_id="chain3", netns=c.path, capability_args={"mac": "not-a-mac"})
    with pytest.raises(CNIError):
        cni.add(conflist, rt)  # tuning rejects the MAC, after the bridge attached the container
    cni.delete(conflist, rt)
    assert [t for t, conf in rec.of("DEL") if "prevResult" not in conf] == ["portmap", "tuning", "bridge"]
    assert allocations(data_dir, "chainnet") == {}
    assert not has_link(c, "eth0")
    assert eventually(lambda: [l for l in node.ipj("link", "show") if l["ifname"].startswith("veth")] == [])
