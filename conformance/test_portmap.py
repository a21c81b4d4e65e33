"""portmap chained after bridge + host-local, checked with real connections (black box, any plugin directory).

Topology, all in throw-away namespaces (the fixtures delete them, and the
session guard checks the machine's own namespace is unchanged):

    remote ns  up0 192.0.2.2/24 fd00:2::2/64 ─ veth ─ node ns  up0 192.0.2.1/24 192.0.2.3/24 fd00:2::1/64
                                                      node ns  pmbr0 10.99.0.1/24 fd00:99::1/64 (bridge, gateway)
                                                        └─ pods 10.99.0.x fd00:99::x, each serving TCP and UDP

Plugins run in the node namespace through conformance.libcni, as a runtime
runs a conflist.  A probe is a short-lived client in some namespace: the
remote host, the node itself (127.0.0.1 and its own addresses), a pod to its
own hostPort (hairpin) or another pod; the server answers with its name and
the peer address it saw, so a test sees both where a connection landed and
whether it was masqueraded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from conformance.helpers import firewall_text, host_ips
from conformance.libcni import CNIConfig, CNIError, NetworkConfigList, RuntimeConf

pytestmark = pytest.mark.conformance

NODE_V4, NODE_V4_EXTRA, REMOTE_V4 = "192.0.2.1", "192.0.2.3", "192.0.2.2"
NODE_V6, REMOTE_V6 = "fd00:2::1", "fd00:2::2"
GATEWAY_V4 = "10.99.0.1"
# Debian's reference 1.1.1 has no nftables backend (upstream's came later): it runs iptables whatever `backend` says
NO_NFT = "Debian's reference portmap 1.1.1 has no nftables backend"
BACKENDS = (pytest.param("nftables", marks=pytest.mark.deliberate(NO_NFT)), "iptables")
# the reference's CHECK (1.1.1) fails on pods it set up itself ("could not check ipv6 dnat: chain ... not found", and a
# rule mismatch with IPv6): tests whose subject is not CHECK skip that step for it (Bed.check)
REFERENCE_CHECK = "the reference's CHECK fails on pods it set up itself (1.1.1: 'could not check ipv6 dnat')"

SERVER = r"""
import selectors, socket, sys
token, sel = sys.argv[1].encode(), selectors.DefaultSelector()
for spec in sys.argv[2:]:
    proto, port = spec.split("/")
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::", int(port)))
    if proto == "tcp":
        s.listen(16)
    sel.register(s, selectors.EVENT_READ, proto)
print("ready", flush=True)
while True:
    for key, _ in sel.select():
        if key.data == "tcp":
            conn, peer = key.fileobj.accept()
            conn.sendall(token + b" " + peer[0].encode())
            conn.close()
        else:
            data, peer = key.fileobj.recvfrom(2048)
            key.fileobj.sendto(token + b" " + peer[0].encode(), peer)
"""

CLIENT = r"""
import socket, sys
host, port, proto, wait = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
s.settimeout(wait)
try:
    s.connect((host, port))
    if proto == "udp":
        s.send(b"hello")
    print(s.recv(2048).decode())
except OSError as err:
    print("FAIL", err)
"""


def bridge_plugin(tmp: str, v6: bool) -> dict:
    ranges = [[{"subnet": "10.99.0.0/24"}]] + ([[{"subnet": "fd00:99::/64"}]] if v6 else [])
    return {
        "type": "bridge",
        "bridge": "pmbr0",
        "isGateway": True,
        "isDefaultGateway": True,
        "hairpinMode": True,
        "dataDir": os.path.join(tmp, "bridge"),
        "ipam": {"type": "host-local", "ranges": ranges, "dataDir": os.path.join(tmp, "ipam")},
    }


def portmap_plugin(tmp: str, **keys) -> dict:
    return {"type": "portmap", "capabilities": {"portMappings": True}, "dataDir": os.path.join(tmp, "portmap"), **keys}


class Bed:
    """A node with an uplink to a remote host, its pods, and a libcni over one plugin directory."""

    def __init__(self, netns, tmp: str, bin_dir: str, v6: bool = False, reference: bool = False):
        self.tmp, self.v6, self.bin_dir, self.reference = tmp, v6, bin_dir, reference
        self.node, self.remote = netns("pn"), netns("pr")
        self.make_ns = netns
        self.pods: dict[str, object] = {}
        self.servers: list[subprocess.Popen] = []
        self.node.ip("link", "add", "up0", "type", "veth", "peer", "name", "up0", "netns", self.remote.name)
        for ns, addrs in ((self.node, [NODE_V4, NODE_V4_EXTRA]), (self.remote, [REMOTE_V4])):
            for addr in addrs:
                ns.ip("addr", "add", f"{addr}/24", "dev", "up0")
            ns.ip("link", "set", "up0", "up")
        if v6:
            self.node.ip("addr", "add", f"{NODE_V6}/64", "dev", "up0", "nodad")
            self.remote.ip("addr", "add", f"{REMOTE_V6}/64", "dev", "up0", "nodad")
        # the remote host can route to the pods (to try traffic that is not addressed to the node)
        self.remote.ip("route", "add", "10.99.0.0/24", "via", NODE_V4)
        self.cni = CNIConfig(
            [bin_dir],
            cache_dir=os.path.join(tmp, "cache"),
            exec_prefix=["ip", "netns", "exec", self.node.name],
            env={"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")},
        )

    def conflist(self, version: str = "1.0.0", **portmap_keys) -> NetworkConfigList:
        doc = {"cniVersion": version, "name": "pmnet", "plugins": [bridge_plugin(self.tmp, self.v6), portmap_plugin(self.tmp, **portmap_keys)]}
        return NetworkConfigList.from_bytes(json.dumps(doc).encode())

    def check(self, conflist: NetworkConfigList, rt: RuntimeConf) -> None:
        """libcni's CHECK of the list; not asked of the reference, whose CHECK is broken (REFERENCE_CHECK)."""
        if not self.reference:
            self.cni.check(conflist, rt)

    def runtime(self, cid: str, mappings: list[dict] | None, ifname: str = "eth0", netns: str | None = None) -> RuntimeConf:
        if cid not in self.pods:
            self.pods[cid] = self.make_ns("pp")
        caps = {"portMappings": mappings} if mappings is not None else {}
        return RuntimeConf(cid, self.pods[cid].path if netns is None else netns, ifname, capability_args=caps)

    def portmap(self, command: str, conflist: NetworkConfigList, rt: RuntimeConf | None, prev: dict | None = None):
        """portmap alone, as the list would run it (the bridge's result as prevResult)."""
        stdin = self.cni.build_config(conflist.plugins[-1], conflist.name, conflist.cni_version, prev, rt)
        return self.cni.exec_plugin("portmap", command, stdin, rt, command == "ADD", conflist.cni_version)

    def serve(self, cid: str, *specs: str) -> None:
        """A server in the pod, answering "<cid> <peer address>" on each proto/port."""
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.pods[cid].name, sys.executable, "-I", "-S", "-c", SERVER, cid, *specs],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self.servers.append(proc)
        assert proc.stdout.readline().strip() == b"ready"
        if self.v6:
            self.settle()

    def settle(self, limit: float = 10) -> None:
        """Wait until no IPv6 address of the node or a pod is tentative (DAD): masquerading picks its source among
        the usable ones, so a tentative gateway address would make the answers depend on timing."""
        deadline = time.monotonic() + limit
        while any(ns.ip("-6", "addr", "show", "tentative").strip() for ns in [self.node, *self.pods.values()]):
            assert time.monotonic() < deadline, "IPv6 addresses still tentative"
            time.sleep(0.1)

    def probe(self, src, host: str, port: int, proto: str = "tcp", wait: float = 1.5) -> str | None:
        """The answer to a connection from namespace `src`: "<pod> <peer it saw>", or None."""
        out = (
            subprocess.run(
                ["ip", "netns", "exec", src.name, sys.executable, "-I", "-S", "-c", CLIENT, host, str(port), proto, str(wait)],
                capture_output=True,
                timeout=30,
            )
            .stdout.decode()
            .strip()
        )
        return None if not out or out.startswith("FAIL") else out.replace("::ffff:", "")

    def reach(self, src, host: str, port: int, proto: str = "tcp") -> str | None:
        """probe(), retried for a few seconds while it fails (addresses may still be tentative)."""
        deadline = time.monotonic() + 6
        while True:
            answer = self.probe(src, host, port, proto)
            if answer is not None or time.monotonic() > deadline:
                return answer
            time.sleep(0.3)

    def close(self) -> None:
        for proc in self.servers:
            proc.kill()
            proc.wait()


@pytest.fixture
def bed_factory(netns, tmp_path, request):
    beds = []
    reference_dir = request.config.getoption("reference_dir")

    def make(bin_dir: str, v6: bool = False, sub: str = "") -> Bed:
        tmp = str(tmp_path / (sub or f"bed{len(beds)}"))
        os.makedirs(tmp)
        reference = os.path.realpath(bin_dir) == os.path.realpath(reference_dir)
        bed = Bed(netns, tmp, bin_dir, v6, reference)
        beds.append(bed)
        return bed

    yield make
    for bed in beds:
        bed.close()


def mappings(*specs: tuple, caps: bool = False) -> list[dict]:
    """(hostPort, containerPort, protocol[, hostIP]) -> portMappings; caps: containerd's capitalised keys."""
    keys = ("HostPort", "ContainerPort", "Protocol", "HostIP") if caps else ("hostPort", "containerPort", "protocol", "hostIP")
    return [dict(zip(keys, spec, strict=False)) for spec in specs]


def pod_ip(result: dict, version: int = 4) -> str:
    return next(ip for ip in host_ips(result) if (":" in ip) == (version == 6))


# --- reachability --------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_hostport_reachability_lifecycle(backend, bin_dir, plugins, bed_factory):
    """DNAT from another host, from the node (127.0.0.1 and its own address), hairpin; CHECK; DEL twice, without netns."""
    plugins.path("portmap")
    bed = bed_factory(bin_dir)
    conflist = bed.conflist(backend=backend)
    rt = bed.runtime("pm-a", mappings((18080, 80, "tcp"), (18053, 53, "udp"), caps=True))  # containerd's capitalised keys
    result = bed.cni.add(conflist, rt)
    ip = pod_ip(result)
    bed.serve("pm-a", "tcp/80", "udp/53", "tcp/18081")
    bed.check(conflist, rt)

    assert bed.reach(bed.remote, NODE_V4, 18080) == f"pm-a {REMOTE_V4}", "another host reaches the hostPort, its address kept"
    assert bed.reach(bed.remote, NODE_V4, 18053, "udp") == f"pm-a {REMOTE_V4}", "UDP too"
    assert bed.reach(bed.node, "127.0.0.1", 18080) == f"pm-a {GATEWAY_V4}", "the node reaches 127.0.0.1:hostPort, masqueraded"
    assert bed.reach(bed.node, NODE_V4, 18080) is not None, "the node reaches its own address"
    assert bed.reach(bed.pods["pm-a"], NODE_V4, 18080) == f"pm-a {GATEWAY_V4}", "hairpin: the pod reaches its own hostPort"
    assert bed.reach(bed.pods["pm-a"], GATEWAY_V4, 18080) == f"pm-a {GATEWAY_V4}", "hairpin through the gateway address"
    # what must not be reached: an unmapped port, and traffic not addressed to the node (CVE-2025-67499's lesson)
    assert bed.probe(bed.remote, NODE_V4, 18081) is None, "an unmapped port is not forwarded"
    assert bed.probe(bed.remote, ip, 18080) is None, "a connection to the pod's address on the hostPort is not DNATed"
    assert bed.reach(bed.remote, ip, 18081) == f"pm-a {REMOTE_V4}", "(the pod itself is reachable: the probe above could have succeeded)"

    bed.cni.delete(conflist, rt)
    assert bed.probe(bed.remote, NODE_V4, 18080) is None, "DEL removed the mapping"
    assert bed.probe(bed.node, "127.0.0.1", 18080) is None
    assert ip not in firewall_text(bed.node), "no rule names the pod's address"
    # containerd's second DEL: no netns, no prevResult; then again
    bare = bed.runtime("pm-a", rt.capability_args["portMappings"], netns="")
    bed.cni.delete(conflist, bare, use_cache=False)
    bed.cni.delete(conflist, bed.runtime("pm-a", None, netns=""), use_cache=False)


@pytest.mark.deliberate("our DEL finds an attachment's rules by its identity, without prevResult or mappings; the reference's needs the mappings")
@pytest.mark.parametrize("backend", BACKENDS)
def test_del_without_netns_removes_the_rules(backend, bin_dir, plugins, bed_factory):
    """The namespace is gone: DEL (no netns, no prevResult, no portMappings) still removes the mapping."""
    plugins.path("portmap")
    bed = bed_factory(bin_dir)
    conflist = bed.conflist(backend=backend)
    rt = bed.runtime("pm-gone", mappings((18080, 80, "tcp")))
    ip = pod_ip(bed.cni.add(conflist, rt))
    assert ip in firewall_text(bed.node)
    bed.portmap("DEL", conflist, bed.runtime("pm-gone", None, netns=""))
    assert ip not in firewall_text(bed.node), "portmap's DEL alone removed every rule of the attachment"
    bed.cni.delete(conflist, rt)


@pytest.mark.parametrize("backend", BACKENDS)
def test_host_ip_scopes_the_mapping(backend, bin_dir, plugins, bed_factory):
    """hostIP: only connections to that address are forwarded; another address of the node is left alone."""
    plugins.path("portmap")
    bed = bed_factory(bin_dir)
    conflist = bed.conflist(backend=backend)
    rt = bed.runtime("pm-hip", mappings((18080, 80, "tcp", NODE_V4_EXTRA), (18090, 80, "tcp", "0.0.0.0")))
    bed.cni.add(conflist, rt)
    bed.serve("pm-hip", "tcp/80")
    assert bed.reach(bed.remote, NODE_V4_EXTRA, 18080) == f"pm-hip {REMOTE_V4}"
    assert bed.probe(bed.remote, NODE_V4, 18080) is None, "the node's other address is not forwarded"
    assert bed.reach(bed.remote, NODE_V4, 18090) == f"pm-hip {REMOTE_V4}", "hostIP 0.0.0.0 means every IPv4 address"
    bed.check(conflist, rt)
    bed.cni.delete(conflist, rt)
    assert bed.probe(bed.remote, NODE_V4_EXTRA, 18080) is None


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_pods_and_identity(backend, bin_dir, plugins, bed_factory):
    """Two pods with their own hostPorts; one pod's DEL leaves the other's mapping; re-ADD replaces, never doubles."""
    plugins.path("portmap")
    bed = bed_factory(bin_dir)
    conflist = bed.conflist(backend=backend)
    rt_a, rt_b = bed.runtime("pm-1", mappings((18080, 80, "tcp"))), bed.runtime("pm-1b", mappings((18081, 80, "tcp")))
    bed.cni.add(conflist, rt_a)
    result_b = bed.cni.add(conflist, rt_b)
    ip_b = pod_ip(result_b)
    bed.serve("pm-1", "tcp/80")
    bed.serve("pm-1b", "tcp/80")
    assert bed.reach(bed.remote, NODE_V4, 18080) == f"pm-1 {REMOTE_V4}"
    assert bed.reach(bed.remote, NODE_V4, 18081) == f"pm-1b {REMOTE_V4}"
    assert bed.reach(bed.pods["pm-1b"], NODE_V4, 18080) is not None, "a pod reaches another pod's hostPort"
    before = firewall_text(bed.node)
    assert bed.portmap("ADD", conflist, rt_b, result_b) == result_b, "ADD passes prevResult through"
    # the same attachment again: its rules replaced
    assert firewall_text(bed.node).count(f"{ip_b}:80") == before.count(f"{ip_b}:80")
    bed.cni.delete(conflist, rt_a)
    assert bed.probe(bed.remote, NODE_V4, 18080) is None
    assert bed.reach(bed.remote, NODE_V4, 18081) == f"pm-1b {REMOTE_V4}", "the other pod's mapping stays"
    bed.check(conflist, rt_b)
    bed.cni.delete(conflist, rt_b)


@pytest.mark.parametrize("backend", BACKENDS)
def test_ipv6(backend, bin_dir, plugins, bed_factory):
    """Dual-stack: the hostPort over IPv6 from another host, from the node's own address, and hairpin."""
    plugins.path("portmap")
    bed = bed_factory(bin_dir, v6=True)
    conflist = bed.conflist(backend=backend)
    rt = bed.runtime("pm-v6", mappings((18080, 80, "tcp"), (18053, 53, "udp")))
    result = bed.cni.add(conflist, rt)
    ip6 = pod_ip(result, 6)
    bed.serve("pm-v6", "tcp/80", "udp/53")
    bed.check(conflist, rt)
    assert bed.reach(bed.remote, NODE_V6, 18080) == f"pm-v6 {REMOTE_V6}"
    assert bed.reach(bed.remote, NODE_V6, 18053, "udp") == f"pm-v6 {REMOTE_V6}"
    assert bed.reach(bed.remote, NODE_V4, 18080) == f"pm-v6 {REMOTE_V4}", "IPv4 at the same time"
    assert bed.reach(bed.node, NODE_V6, 18080) is not None, "the node reaches its own IPv6 address"
    assert bed.reach(bed.pods["pm-v6"], NODE_V6, 18080) == "pm-v6 fd00:99::1", "IPv6 hairpin, masqueraded to the gateway"
    bed.cni.delete(conflist, rt)
    assert bed.probe(bed.remote, NODE_V6, 18080) is None
    assert ip6 not in firewall_text(bed.node)


# --- CHECK, GC, refusals ---------------------------------------------------------------------------


@pytest.mark.deliberate(REFERENCE_CHECK)
@pytest.mark.parametrize("backend", BACKENDS)
def test_check_finds_missing_rules(backend, bin_dir, plugins, bed_factory):
    plugins.path("portmap")
    bed = bed_factory(bin_dir)
    conflist = bed.conflist(backend=backend)
    rt = bed.runtime("pm-chk", mappings((18080, 80, "tcp")))
    bed.cni.add(conflist, rt)
    bed.check(conflist, rt)
    if backend == "nftables":
        bed.node.exec("nft", "flush", "chain", "ip", "cni_hostport", "hostports")
    else:
        bed.node.exec("iptables", "-t", "nat", "-F", "CNI-HOSTPORT-DNAT")
    with pytest.raises(CNIError) as err:
        bed.check(conflist, rt)
    assert err.value.code == 107, err.value
    bed.cni.delete(conflist, rt)


@pytest.mark.deliberate("ADD and CHECK without prevResult are code 7 (the reference: 999)")
def test_check_needs_prev_result(bin_dir, plugins, bed_factory):
    plugins.path("portmap")
    bed = bed_factory(bin_dir)
    conflist = bed.conflist()
    stdin = bed.cni.build_config(conflist.plugins[1], "pmnet", "1.0.0", None, bed.runtime("pm-np", mappings((18080, 80, "tcp"))))
    for command in ("ADD", "CHECK"):
        with pytest.raises(CNIError) as err:
            bed.cni.exec_plugin("portmap", command, stdin, bed.runtime("pm-np", None), command == "ADD")
        assert err.value.code == 7, err.value


@pytest.mark.deliberate("GC and CNI 1.1.0 (the reference has neither)")
@pytest.mark.parametrize("backend", BACKENDS)
def test_gc_removes_invalid_attachments(backend, bin_dir, plugins, bed_factory):
    plugins.path("portmap")
    bed = bed_factory(bin_dir)
    conflist = bed.conflist("1.1.0", backend=backend)
    keep, stale = bed.runtime("pm-keep", mappings((18080, 80, "tcp"))), bed.runtime("pm-stale", mappings((18081, 80, "tcp")))
    ip_keep, ip_stale = pod_ip(bed.cni.add(conflist, keep)), pod_ip(bed.cni.add(conflist, stale))
    gc_conf = dict(
        conflist.plugins[1], name="pmnet", cniVersion="1.1.0", **{"cni.dev/valid-attachments": [{"containerID": "pm-keep", "ifname": "eth0"}]}
    )
    bed.cni.exec_plugin("portmap", "GC", json.dumps(gc_conf).encode(), None, False)
    text = firewall_text(bed.node)
    assert ip_stale not in text, "GC removed the stale attachment's rules"
    assert f"{ip_keep}:80" in text, "and kept the valid one's"
    bed.serve("pm-keep", "tcp/80")
    assert bed.reach(bed.remote, NODE_V4, 18080) == f"pm-keep {REMOTE_V4}"
    bed.cni.delete(conflist, keep)
    bed.cni.delete(conflist, stale)


@pytest.mark.parametrize(
    "bad",
    [
        [{"hostPort": 0, "containerPort": 80, "protocol": "tcp"}],
        [{"hostPort": 70000, "containerPort": 80, "protocol": "tcp"}],
        [{"hostPort": 8080, "containerPort": 80, "protocol": "icmp"}],
        [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": "not-an-ip"}],
        [{"hostPort": "8080", "containerPort": 80, "protocol": "tcp"}],
    ],
    ids=["port-0", "port-70000", "protocol", "hostIP", "port-string"],
)
@pytest.mark.deliberate("mappings validated before anything is touched, code 7 (the reference: 999, or an accepted hostIP)")
def test_invalid_mappings_touch_nothing(bad, bin_dir, plugins, bed_factory):
    """Refused before the node is touched (code 7): no firewall change at all."""
    plugins.path("portmap")
    bed = bed_factory(bin_dir)
    conflist = bed.conflist()
    rt = bed.runtime("pm-bad", mappings((18080, 80, "tcp")))
    prev = bed.cni.add(NetworkConfigList.from_bytes(json.dumps(dict(json.loads(conflist.raw), plugins=conflist.plugins[:1])).encode()), rt)
    before = firewall_text(bed.node)
    stdin = json.loads(bed.cni.build_config(conflist.plugins[1], "pmnet", "1.0.0", prev, rt))
    stdin["runtimeConfig"] = {"portMappings": bad}
    with pytest.raises(CNIError) as err:
        bed.cni.exec_plugin("portmap", "ADD", json.dumps(stdin).encode(), rt, True)
    assert err.value.code == 7, err.value
    assert firewall_text(bed.node) == before
    bed.cni.delete(conflist, rt)


@pytest.mark.deliberate("a failed ADD undoes what it applied; the reference leaves the IPv4 rules of a failed IPv6 step")
@pytest.mark.parametrize("backend, bad", [("nftables", ["meta nosuchkey 1"]), ("iptables", ["-m", "nosuchmatch"])])
def test_failed_add_leaves_no_rules(backend, bad, bin_dir, plugins, bed_factory):
    """IPv6 rules the kernel refuses (after IPv4's were accepted, with iptables): code 104, and no rule of the pod stays."""
    plugins.path("portmap")
    bed = bed_factory(bin_dir, v6=True)
    conflist = bed.conflist(backend=backend, conditionsV6=bad)
    rt = bed.runtime("pm-fail", mappings((18080, 80, "tcp")))
    bridge_only = NetworkConfigList.from_bytes(json.dumps(dict(json.loads(conflist.raw), plugins=conflist.plugins[:1])).encode())
    prev = bed.cni.add(bridge_only, rt)
    with pytest.raises(CNIError) as err:
        bed.portmap("ADD", conflist, rt, prev)
    assert err.value.code == 104, err.value
    text = firewall_text(bed.node)
    assert not [ip for ip in host_ips(prev) if ip in text], text
    bed.serve("pm-fail", "tcp/80")
    assert bed.probe(bed.remote, NODE_V4, 18080) is None
    bed.cni.delete(conflist, rt)


@pytest.mark.deliberate("ADDs and DELs of one node take a lock: shared rules exist once (the reference, without one, can duplicate them)")
@pytest.mark.parametrize("backend", BACKENDS)
def test_concurrent_adds_and_dels(backend, bin_dir, plugins, bed_factory):
    """Pods added and deleted at the same time: each gets its rules exactly once, the shared ones exist once."""
    from concurrent.futures import ThreadPoolExecutor

    plugins.path("portmap")
    bed = bed_factory(bin_dir)
    conflist = bed.conflist(backend=backend)
    bridge_only = NetworkConfigList.from_bytes(json.dumps(dict(json.loads(conflist.raw), plugins=conflist.plugins[:1])).encode())
    runtimes = [bed.runtime(f"pm-c{i}", mappings((18100 + i, 80, "tcp"))) for i in range(6)]
    prevs = [bed.cni.add(bridge_only, rt) for rt in runtimes]
    with ThreadPoolExecutor(len(runtimes)) as pool:
        assert list(pool.map(lambda pair: bed.portmap("ADD", conflist, *pair), zip(runtimes, prevs, strict=True))) == prevs
    if backend == "nftables":
        text = bed.node.exec("nft", "list", "table", "ip", "cni_hostport")
        assert text.count("fib daddr type local jump hostports_all") == 2, text  # prerouting and output, once each
    else:
        text = bed.node.exec("iptables-save", "-t", "nat")
        assert text.count("-j CNI-HOSTPORT-DNAT") == 2 and text.count("-j CNI-HOSTPORT-MASQ") == 1, text
        assert text.count("-j MARK") == 1 and text.count("-j MASQUERADE") == 1, text
    for prev in prevs:
        assert text.count(f"{pod_ip(prev)}:80") == 1, text
    bed.serve("pm-c3", "tcp/80")
    assert bed.reach(bed.remote, NODE_V4, 18103) == f"pm-c3 {REMOTE_V4}"
    with ThreadPoolExecutor(len(runtimes)) as pool:
        list(pool.map(lambda rt: bed.portmap("DEL", conflist, rt), runtimes))
    text = firewall_text(bed.node)
    assert not [prev for prev in prevs if pod_ip(prev) in text], text
    for rt in runtimes:
        bed.cni.delete(bridge_only, rt)


def test_chained_after_vxlan(bin_dir, plugins, bed_factory):
    """portmap after vxlan (static peers; this node is the sample's 192.0.2.1): the pod's hostPort from another host and the node."""
    from conformance.configs import config

    plugins.path("portmap")
    plugins.path("vxlan")
    bed = bed_factory(bin_dir)
    bed.node.ip("route", "add", "default", "via", REMOTE_V4)
    vxlan = {k: v for k, v in config("vxlan", "1.0.0", data_dir=bed.tmp).items() if k not in ("name", "cniVersion")}
    doc = {"cniVersion": "1.0.0", "name": "pmvx", "plugins": [vxlan, portmap_plugin(bed.tmp)]}
    conflist = NetworkConfigList.from_bytes(json.dumps(doc).encode())
    rt = bed.runtime("pm-vx", mappings((18080, 80, "tcp")))
    ip = pod_ip(bed.cni.add(conflist, rt))
    bed.serve("pm-vx", "tcp/80")
    bed.check(conflist, rt)
    assert bed.reach(bed.remote, NODE_V4, 18080) == f"pm-vx {REMOTE_V4}"
    assert bed.reach(bed.node, "127.0.0.1", 18080) is not None, "route_localnet on vxlan's bridge"
    bed.cni.delete(conflist, rt)
    assert bed.probe(bed.remote, NODE_V4, 18080) is None
    assert ip not in firewall_text(bed.node)


@pytest.mark.deliberate("masqAll (Debian's reference 1.1.1 predates it)")
@pytest.mark.parametrize("backend", BACKENDS)
def test_masq_all(backend, bin_dir, plugins, bed_factory):
    """masqAll: every connection to the hostPort is masqueraded (upstream's meaning; Debian's 1.1.1 predates the key)."""
    plugins.path("portmap")
    bed = bed_factory(bin_dir, v6=True)
    conflist = bed.conflist(backend=backend, masqAll=True)
    rt = bed.runtime("pm-ma", mappings((18080, 80, "tcp")))
    bed.cni.add(conflist, rt)
    bed.serve("pm-ma", "tcp/80")
    bed.check(conflist, rt)
    assert bed.reach(bed.remote, NODE_V4, 18080) == f"pm-ma {GATEWAY_V4}", "the remote host's connection arrives masqueraded"
    assert bed.reach(bed.remote, NODE_V6, 18080) == "pm-ma fd00:99::1", "over IPv6 too"
    assert bed.reach(bed.node, "127.0.0.1", 18080) == f"pm-ma {GATEWAY_V4}"
    bed.cni.delete(conflist, rt)


@pytest.mark.parametrize("backend", BACKENDS)
def test_without_snat(backend, bin_dir, plugins, bed_factory):
    """snat false: nothing is masqueraded, so 127.0.0.1 and hairpin do not work; other hosts keep working."""
    plugins.path("portmap")
    bed = bed_factory(bin_dir)
    conflist = bed.conflist(backend=backend, snat=False)
    rt = bed.runtime("pm-ns", mappings((18080, 80, "tcp")))
    bed.cni.add(conflist, rt)
    bed.serve("pm-ns", "tcp/80")
    bed.check(conflist, rt)
    assert bed.reach(bed.remote, NODE_V4, 18080) == f"pm-ns {REMOTE_V4}"
    assert bed.probe(bed.node, "127.0.0.1", 18080) is None
    assert bed.probe(bed.pods["pm-ns"], NODE_V4, 18080) is None
    assert bed.node.exec("cat", "/proc/sys/net/ipv4/conf/pmbr0/route_localnet").strip() == "0", "route_localnet left alone"
    bed.cni.delete(conflist, rt)


@pytest.mark.parametrize(
    "backend, conditions",
    [pytest.param("nftables", ["ip saddr != 192.0.2.2"], marks=pytest.mark.deliberate(NO_NFT)), ("iptables", ["!", "-s", "192.0.2.2"])],
)
def test_conditions_v4(backend, conditions, bin_dir, plugins, bed_factory):
    """conditionsV4 narrow the entry rules: the excluded host is not forwarded, the node still is."""
    plugins.path("portmap")
    bed = bed_factory(bin_dir)
    conflist = bed.conflist(backend=backend, conditionsV4=conditions)
    rt = bed.runtime("pm-cond", mappings((18080, 80, "tcp")))
    bed.cni.add(conflist, rt)
    bed.serve("pm-cond", "tcp/80")
    assert bed.reach(bed.node, "127.0.0.1", 18080) == f"pm-cond {GATEWAY_V4}"
    assert bed.probe(bed.remote, NODE_V4, 18080) is None, "192.0.2.2 is excluded"
    bed.cni.delete(conflist, rt)


def test_iptables_mark_bit_and_external_chain(bin_dir, plugins, bed_factory):
    """markMasqBit sets the mark the shared chains use; externalSetMarkChain replaces CNI-HOSTPORT-SETMARK."""
    plugins.path("portmap")
    bed = bed_factory(bin_dir)
    conflist = bed.conflist(backend="iptables", markMasqBit=14)
    rt = bed.runtime("pm-mark", mappings((18080, 80, "tcp")))
    bed.cni.add(conflist, rt)
    bed.serve("pm-mark", "tcp/80")
    saved = bed.node.exec("iptables-save", "-t", "nat")
    assert "--set-xmark 0x4000/0x4000" in saved and "--mark 0x4000/0x4000 -j MASQUERADE" in saved, saved
    assert bed.reach(bed.pods["pm-mark"], NODE_V4, 18080) == f"pm-mark {GATEWAY_V4}", "hairpin masqueraded through bit 14"
    bed.cni.delete(conflist, rt)

    other = bed_factory(bin_dir)
    other.node.exec("iptables", "-t", "nat", "-N", "MY-MARK")
    conflist = other.conflist(backend="iptables", externalSetMarkChain="MY-MARK")
    rt = other.runtime("pm-ext", mappings((18080, 80, "tcp")))
    other.cni.add(conflist, rt)
    saved = other.node.exec("iptables-save", "-t", "nat")
    assert "-j MY-MARK" in saved and "CNI-HOSTPORT-SETMARK" not in saved and "CNI-HOSTPORT-MASQ" not in saved, saved
    other.check(conflist, rt)
    other.cni.delete(conflist, rt)
    assert "-j MY-MARK" not in other.node.exec("iptables-save", "-t", "nat")
