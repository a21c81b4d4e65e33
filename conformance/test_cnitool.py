"""conformance.cnitool, the cnitool-compatible runner, driving the plugins under test.

The runner itself runs inside a node namespace (`ip netns exec NODE python -m
conformance.cnitool ...`), with NETCONFPATH, CNI_PATH and its cache in the test's
temporary directory.  CNI_PATH points at wrappers that record every call, so the
tests see exactly what the runner sent.
"""
import hashlib
import json
import os
import subprocess
import sys

import pytest

from conformance import libcni
from conformance.cnitool import container_id_for
from conformance.configs import config
from conformance.helpers import (allocations, container_addresses, eventually, firewall_mentions, has_link, host_ips, logged_calls,
                                 logging_plugin_dir)

pytestmark = pytest.mark.conformance
HERE = os.path.dirname(os.path.abspath(__file__))
PORTS = [{"hostPort": 18081, "containerPort": 81, "protocol": "tcp"}]


class Runner:
    def __init__(self, tmp_path, node, bin_dir, reference_dir):
        self.node = node
        self.netdir = tmp_path / "net.d"
        self.netdir.mkdir()
        self.cache = str(tmp_path / "cache")
        self.log = str(tmp_path / "calls")
        self.path = logging_plugin_dir(str(tmp_path / "plugins"), self.log, [bin_dir, reference_dir])
        self.data_dir = str(tmp_path / "state")
        os.makedirs(self.data_dir, mode=0o700)

    def write(self, filename: str, doc: dict) -> None:
        (self.netdir / filename).write_text(json.dumps(doc))

    def __call__(self, command, network, netns, env=None, check=False):
        full = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "NETCONFPATH": str(self.netdir), "CNI_PATH": self.path,
                "CNI_CACHE_DIR": self.cache, "PYTHONPATH": os.path.dirname(HERE)}
        full.update(env or {})
        proc = subprocess.run(["ip", "netns", "exec", self.node.name, sys.executable, "-m", "conformance.cnitool", command, network, netns],
                              env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120, cwd=os.path.dirname(HERE))
        if check:
            assert proc.returncode == 0, f"cnitool {command}: rc={proc.returncode} {proc.stderr.decode()}"
        return proc

    def calls(self, command=None, plugin=None):
        return [c for c in logged_calls(self.log) if (command is None or c["command"] == command) and (plugin is None or c["type"] == plugin)]

    def cache_file(self, network, netns, ifname="eth0"):
        return os.path.join(self.cache, "results", f"{network}-{container_id_for(netns)}-{ifname}")


@pytest.fixture
def runner(tmp_path, node, bin_dir, reference_dir, plugins):
    plugins.path("bridge")
    return Runner(tmp_path, node, bin_dir, reference_dir)


def bridge_list(runner, version, name, *more, **bridge_keys):
    bridge = config("bridge", version, data_dir=runner.data_dir, **bridge_keys)
    del bridge["name"], bridge["cniVersion"]
    return {"cniVersion": version, "name": name, "plugins": [bridge, *more]}


def test_container_id_is_cnitool_s():
    path = "/run/netns/example"
    assert container_id_for(path) == "cnitool-" + hashlib.sha512(path.encode()).hexdigest()[:20]
    assert len(container_id_for(path)) == len("cnitool-") + 20


def test_add_check_del_bridge_then_portmap(runner, netns):
    c = netns("c")
    runner.write("10-pm.conflist", bridge_list(runner, "1.0.0", "pmnet", {"type": "portmap", "capabilities": {"portMappings": True}},
                                               ipMasq=True))
    add = runner("add", "pmnet", c.path, env={"CAP_ARGS": json.dumps({"portMappings": PORTS})}, check=True)
    result = json.loads(add.stdout)
    ip = host_ips(result)[0]
    assert container_addresses(c, "eth0") == [result["ips"][0]["address"]]
    assert any("18081" in r for r in firewall_mentions(runner.node, f"{ip}:81")), "portmap's DNAT for the CAP_ARGS mapping"

    # the libcni cache entry: kind, ids, the conflist bytes, and the final result
    with open(runner.cache_file("pmnet", c.path)) as f:
        cached = json.load(f)
    assert cached["kind"] == "cniCacheV1" and cached["networkName"] == "pmnet" and cached["ifName"] == "eth0"
    assert cached["containerId"] == container_id_for(c.path) and cached["netns"] == c.path
    assert cached["result"] == result
    assert json.loads(libcni.base64.b64decode(cached["config"]))["name"] == "pmnet"
    assert cached["capabilityArgs"] == {"portMappings": PORTS}
    assert oct(os.stat(runner.cache_file("pmnet", c.path)).st_mode & 0o777) == "0o600"

    # what the plugins got: env as libcni sets it, prevResult threaded, runtimeConfig only where declared
    bridge_add, = runner.calls("ADD", "bridge")
    portmap_add, = runner.calls("ADD", "portmap")
    assert bridge_add["env"]["CNI_CONTAINERID"] == container_id_for(c.path)
    assert bridge_add["env"]["CNI_NETNS"] == c.path and bridge_add["env"]["CNI_IFNAME"] == "eth0"
    assert bridge_add["env"]["CNI_PATH"] == runner.path
    assert "prevResult" not in bridge_add["stdin"] and "runtimeConfig" not in bridge_add["stdin"]
    assert portmap_add["stdin"]["prevResult"]["ips"] == result["ips"]
    assert portmap_add["stdin"]["runtimeConfig"] == {"portMappings": PORTS}

    # DEL: the caller passes no result; the cache supplies prevResult to every plugin, in reverse order
    runner("del", "pmnet", c.path, env={"CAP_ARGS": json.dumps({"portMappings": PORTS})}, check=True)
    dels = [c_ for c_ in runner.calls("DEL") if c_["type"] in ("bridge", "portmap")]
    assert [d["type"] for d in dels] == ["portmap", "bridge"]
    assert all(d["stdin"]["prevResult"] == result for d in dels)
    assert not os.path.exists(runner.cache_file("pmnet", c.path)), "a successful DEL drops the cache entry"
    assert firewall_mentions(runner.node, ip, f"{ip}:81", container_id_for(c.path)) == []
    assert allocations(runner.data_dir, "pmnet") == {}
    assert not has_link(c, "eth0")
    # a second DEL, without any cache entry, still succeeds
    runner("del", "pmnet", c.path, check=True)


def test_check_uses_the_cached_result(runner, netns):
    c = netns("c")
    runner.write("20-tune.conflist", bridge_list(runner, "1.0.0", "tunenet",
                                                 {"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.arp_notify": "1"}}))
    result = json.loads(runner("add", "tunenet", c.path, check=True).stdout)
    runner("check", "tunenet", c.path, check=True)
    checks = [x for x in runner.calls("CHECK") if x["type"] in ("bridge", "tuning")]
    assert [x["type"] for x in checks] == ["bridge", "tuning"]
    assert all(x["stdin"]["prevResult"] == result for x in checks)
    # break the attachment: CHECK must now fail, with the plugin's error on stderr
    c.ip("addr", "flush", "dev", "eth0", "scope", "global")
    broken = runner("check", "tunenet", c.path)
    assert broken.returncode == 1 and broken.stderr.strip()
    runner("del", "tunenet", c.path, check=True)
    assert allocations(runner.data_dir, "tunenet") == {}


def test_ifname_args_and_single_plugin_conf(runner, netns):
    """CNI_IFNAME and CNI_ARGS reach the plugins; a .conf file is loaded by name and up-converted to a list."""
    c = netns("c")
    single = config("bridge", "1.0.0", data_dir=runner.data_dir)
    single["name"] = "singlenet"
    runner.write("30-single.conf", single)
    runner.write("05-decoy.conflist", bridge_list(runner, "1.0.0", "othernet"))
    env = {"CNI_IFNAME": "net1", "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAME=pod1"}
    result = json.loads(runner("add", "singlenet", c.path, env=env, check=True).stdout)
    assert [i for i in result["interfaces"] if i.get("sandbox") == c.path][0]["name"] == "net1"
    assert has_link(c, "net1") and not has_link(c, "eth0")
    call, = runner.calls("ADD", "bridge")
    assert call["env"]["CNI_ARGS"] == "IgnoreUnknown=1;K8S_POD_NAME=pod1" and call["env"]["CNI_IFNAME"] == "net1"
    assert call["stdin"]["name"] == "singlenet"
    assert os.path.exists(runner.cache_file("singlenet", c.path, "net1"))
    owners = allocations(runner.data_dir, "singlenet")
    assert list(owners.values()) == [container_id_for(c.path)], "the container ID is cnitool's hash of the netns path"
    runner("del", "singlenet", c.path, env=env, check=True)
    assert allocations(runner.data_dir, "singlenet") == {}
    missing = runner("add", "nosuchnet", c.path)
    assert missing.returncode == 1 and b"nosuchnet" in missing.stderr


def test_gc_without_a_valid_list_removes_everything(runner, plugins, netns):
    version = "1.1.0" if "1.1.0" in plugins.versions("bridge") else "1.0.0"
    runner.write("10-gc.conflist", bridge_list(runner, version, "gcnet", ipMasq=True))
    containers = [netns("c") for _ in range(2)]
    ips = []
    for c in containers:
        ips += host_ips(json.loads(runner("add", "gcnet", c.path, check=True).stdout))
    assert len(allocations(runner.data_dir, "gcnet")) == 2
    runner("gc", "gcnet", containers[0].path, check=True)
    # every cached attachment got a full DEL with its cached result ...
    dels = runner.calls("DEL", "bridge")
    assert sorted(d["env"]["CNI_CONTAINERID"] for d in dels) == sorted(container_id_for(c.path) for c in containers)
    assert all("prevResult" in d["stdin"] for d in dels)
    assert os.listdir(os.path.join(runner.cache, "results")) == []
    assert allocations(runner.data_dir, "gcnet") == {}
    assert firewall_mentions(runner.node, *ips) == []
    for c in containers:
        assert not has_link(c, "eth0")
    # ... then, for a 1.1.0 list, GC to every plugin, without valid attachments
    gcs = runner.calls("GC", "bridge")
    if version == "1.1.0":
        assert len(gcs) == 1 and "cni.dev/valid-attachments" not in gcs[0]["stdin"]
        assert gcs[0]["env"]["CNI_CONTAINERID"] == "" and gcs[0]["env"]["CNI_NETNS"] == ""
    else:
        assert gcs == [], "libcni sends GC only to 1.1.0 lists"


def test_gc_releases_attachments_the_cache_does_not_know(runner, plugins, netns):
    """An ADD that died before the cache was written is reclaimed only by the plugins' own GC."""
    plugins.need_version("bridge", "1.1.0")
    runner.write("10-gc.conflist", bridge_list(runner, "1.1.0", "gcnet2"))
    c = netns("c")
    runner("add", "gcnet2", c.path, check=True)
    os.unlink(runner.cache_file("gcnet2", c.path))  # as if the runtime crashed before caching
    assert len(allocations(runner.data_dir, "gcnet2")) == 1
    runner("gc", "gcnet2", c.path, check=True)
    assert runner.calls("DEL", "bridge") == []
    assert allocations(runner.data_dir, "gcnet2") == {}


def test_status(runner, plugins, netns):
    version = "1.1.0" if "1.1.0" in plugins.versions("bridge") else "1.0.0"
    runner.write("10-st.conflist", bridge_list(runner, version, "stnet"))
    broken = bridge_list(runner, version, "stbroken")
    broken["plugins"][0]["ipam"]["type"] = "no-such-ipam"
    runner.write("20-st.conflist", broken)
    ok = runner("status", "stnet", "/nonexistent")
    assert ok.returncode == 0, ok.stderr
    bad = runner("status", "stbroken", "/nonexistent")
    if version == "1.1.0":
        assert [x["type"] for x in runner.calls("STATUS") if x["type"] == "bridge"] == ["bridge", "bridge"]
        assert bad.returncode == 1 and bad.stderr.strip(), "STATUS fails when the IPAM cannot be reached"
    else:
        assert runner.calls("STATUS") == [] and bad.returncode == 0, "libcni sends STATUS only to 1.1.0 lists"


def test_runner_refuses_bad_cap_args_and_cni_args(runner, netns):
    c = netns("c")
    runner.write("10-x.conflist", bridge_list(runner, "1.0.0", "xnet"))
    for env in ({"CAP_ARGS": "{not json"}, {"CNI_ARGS": "novalue"}, {"CNI_ARGS": "A=1;;B=2"}):
        out = runner("add", "xnet", c.path, env=env)
        assert out.returncode == 1 and out.stderr.strip(), env
    assert runner.calls("ADD") == [], "nothing ran"


@pytest.mark.parametrize("src,dst", [("1.0.0", "0.4.0"), ("0.4.0", "1.1.0"), ("1.0.0", "0.2.0"), ("0.2.0", "1.0.0")])
def test_cached_result_conversion(src, dst):
    """libcni converts a cached result to the list's version before handing it out as prevResult."""
    rich = {"cniVersion": src, "interfaces": [{"name": "eth0", "sandbox": "/run/netns/x"}],
            "ips": [{"address": "10.1.0.5/24", "gateway": "10.1.0.1", "interface": 0}], "routes": [{"dst": "0.0.0.0/0"}]}
    if src == "0.4.0":
        rich["ips"][0]["version"] = "4"
    if src == "0.2.0":
        rich = {"cniVersion": src, "ip4": {"ip": "10.1.0.5/24", "gateway": "10.1.0.1", "routes": [{"dst": "0.0.0.0/0"}]}}
    out = libcni.convert_result(rich, dst)
    assert out["cniVersion"] == dst
    if dst == "0.2.0":
        assert out["ip4"] == {"ip": "10.1.0.5/24", "gateway": "10.1.0.1", "routes": [{"dst": "0.0.0.0/0"}]}
    else:
        assert out["ips"][0]["address"] == "10.1.0.5/24"
        assert ("version" in out["ips"][0]) == (dst == "0.4.0")
