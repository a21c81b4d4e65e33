"""make demo: one dual-stack pod network across four nodes, over VXLAN, with etcd as the shared store.

Three node namespaces on an (IPv4) underlay switch, etcd in a namespace of its
own, the plugins copied into a temporary CNI_PATH, two pods per node, each with
an IPv4 and an IPv6 address, a `vxlan sync --watch` per node; every pod pings
every other pod over both families; a fourth node joins and is reached; a
summary table; every pod is deleted and checked gone; everything is removed.
"""
import itertools
import json
import os
import shutil
import sys
import tempfile
import time
from ipaddress import ip_address

from conformance.testbed import Testbed, ping

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NETWORK = "10.244.0.0/16"
NETWORK6 = "fd00:10:244::/48"


def plugin_dir() -> str:
    """The built single-file plugins when present (make build), else the source wrappers."""
    built = os.path.join(REPO, "dist", "cni-bin")
    source = os.path.join(REPO, "dist", "src-bin")
    src = built if os.path.exists(os.path.join(built, "vxlan")) else source
    dst = tempfile.mkdtemp(prefix="cni-demo-bin-")
    for name in ("vxlan", "bridge", "host-local"):
        shutil.copy2(os.path.realpath(os.path.join(src, name)), os.path.join(dst, name))
    return dst


def _is_address(name: str) -> bool:
    try:
        ip_address(name)
    except ValueError:
        return False
    return True


def say(text: str) -> None:
    print(text, flush=True)


class Demo:
    def __init__(self, bed: Testbed, bin_dir: str):
        self.bed, self.bin_dir, self.vxlan = bed, bin_dir, os.path.join(bin_dir, "vxlan")
        self.pods: dict[str, tuple] = {}  # pod -> (node, IPv4 address, IPv6 address)

    def conf(self, node) -> dict:
        return {"cniVersion": "1.1.0", "name": "demo-overlay", "type": "vxlan", "network": NETWORK, "ipv6Network": NETWORK6,
                "nodeName": node.name,
                "dataDir": f"{self.bed.tmp}/{node.name}/vxlan", "ipam": {"dataDir": f"{self.bed.tmp}/{node.name}/ipam"},
                "etcd": {"endpoints": [self.bed.etcd_endpoint], "prefix": "/cni-demo"}}

    def join(self, name: str):
        node = self.bed.add_node(name)
        path = f"{self.bed.tmp}/{name}.conflist"
        with open(path, "w") as f:
            json.dump({"cniVersion": "1.1.0", "name": "demo-overlay", "plugins": [self.conf(node)]}, f)
        for suffix in ("a", "b"):
            pod = f"{name}-pod{suffix}"
            node.pod(pod)
            out = node.run(self.vxlan, "ADD", self.conf(node), pod, self.bin_dir)
            if not out.ok:
                raise SystemExit(f"ADD {pod} failed: {out}")
            v4, v6 = (ip["address"] for ip in out.json["ips"])
            self.pods[pod] = (node, v4.split("/")[0], v6.split("/")[0])
            say(f"  {name}: ADD {pod:9} -> {v4}, {v6}")
        node.start([self.vxlan, "sync", "--watch", "--conf", path], f"{self.bed.tmp}/{name}.sync.log")
        return node

    def mesh(self) -> dict[str, list[int]]:
        """Per pod, how many other pods it reached over IPv4 and over IPv6."""
        reached = {pod: [0, 0] for pod in self.pods}
        for src, dst in itertools.permutations(self.pods, 2):
            node = self.pods[src][0]
            for family, address in enumerate(self.pods[dst][1:]):
                reached[src][family] += ping(node.pods[src], address, wait=1)
        return reached

    def subnets(self, node) -> tuple[str, str]:
        with open(f"{self.bed.tmp}/{node.name}/vxlan/demo-overlay/lease.json") as f:
            lease = json.load(f)
        return lease["subnet"], lease["subnet6"]

    def leftovers(self) -> list[str]:
        """What the DELs left behind: pod interfaces, host veths, reserved addresses."""
        left = []
        for pod, (node, _, _) in self.pods.items():
            left += [f"{pod}: {link['ifname']}" for link in node.pods[pod].ipj("link", "show") if link["ifname"] != "lo"]
        for node in {node for node, _, _ in self.pods.values()}:
            left += [f"{node.name}: {link['ifname']}" for link in node.ns.ipj("link", "show") if link["ifname"].startswith("veth")]
            ipam = f"{self.bed.tmp}/{node.name}/ipam/demo-overlay"
            left += [f"{node.name}: {name} reserved" for name in os.listdir(ipam) if _is_address(name)]
        return left


def main() -> None:
    started = time.monotonic()
    bin_dir = plugin_dir()
    try:
        with Testbed() as bed:
            say(f"plugins in {bin_dir}; underlay 192.0.2.0/24; overlay {NETWORK} and {NETWORK6}")
            bed.start_etcd()
            say(f"etcd {bed.etcd_endpoint} in namespace {bed.etcd_ns.name}\n")
            demo = Demo(bed, bin_dir)
            for name in ("node1", "node2", "node3"):
                demo.join(name)
            time.sleep(0.5)  # the earlier nodes' `sync --watch` learn of node3
            reached = demo.mesh()
            total = len(demo.pods) - 1
            answered = [sum(r[family] for r in reached.values()) for family in (0, 1)]
            say(f"\nfull mesh over 3 nodes: {answered[0]}/{len(demo.pods) * total} IPv4 and "
                f"{answered[1]}/{len(demo.pods) * total} IPv6 pod-to-pod pings answered")
            say("\nnode4 joins:")
            node4 = demo.join("node4")
            t0 = time.monotonic()
            first = demo.pods["node1-poda"][0]
            targets = demo.pods["node4-poda"][1:]
            while not all(ping(first.pods["node1-poda"], t, wait=0.2) for t in targets) and time.monotonic() - t0 < 10:
                pass
            say(f"  node1-poda reaches node4-poda over IPv4 and IPv6 {time.monotonic() - t0:.2f}s after node4's ADDs returned (sync --watch)")
            reached = demo.mesh()
            total = len(demo.pods) - 1
            say("")
            say(f"{'node':6} {'subnets':38} {'pod':10} {'IPv4':12} {'IPv6':22} reached v4 v6")
            for pod, (node, v4, v6) in demo.pods.items():
                subnet, subnet6 = demo.subnets(node)
                say(f"{node.name:6} {subnet + ' ' + subnet6:38} {pod:10} {v4:12} {v6:22} {reached[pod][0]}/{total} {reached[pod][1]}/{total}")
            ok = all(r == [total, total] for r in reached.values())
            say(f"\n{'every pod reached every other pod over IPv4 and IPv6' if ok else 'SOME PINGS FAILED'}; cleaning up "
                f"(DEL every pod, stop sync, etcd, namespaces) after {time.monotonic() - started:.1f}s")
            for pod, (node, _, _) in demo.pods.items():
                node.run(demo.vxlan, "DEL", demo.conf(node), pod, bin_dir)
            left = demo.leftovers()
            say("after DEL: " + ("nothing left (no pod interface, host veth or reserved address)" if not left else "LEFT: " + ", ".join(left)))
            del node4
            if not ok or left:
                sys.exit(1)
    finally:
        shutil.rmtree(bin_dir, ignore_errors=True)
    say(f"done in {time.monotonic() - started:.1f}s")
