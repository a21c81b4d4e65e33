"""make demo: one pod network across four nodes, over VXLAN, with etcd as the shared store.

Three node namespaces on an underlay switch, etcd in a namespace of its own,
the plugins copied into a temporary CNI_PATH, two pods per node, a
`vxlan sync --watch` per node; every pod pings every other pod; a fourth
node joins and is reached; a summary table; everything is removed.
"""
import itertools
import json
import os
import shutil
import sys
import tempfile
import time

from conformance.testbed import Testbed, ping

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NETWORK = "10.244.0.0/16"


def plugin_dir() -> str:
    """The built single-file plugins when present (make build), else the source wrappers."""
    built = os.path.join(REPO, "dist", "cni-bin")
    source = os.path.join(REPO, "dist", "src-bin")
    src = built if os.path.exists(os.path.join(built, "vxlan")) else source
    dst = tempfile.mkdtemp(prefix="cni-demo-bin-")
    for name in ("vxlan", "bridge", "host-local"):
        shutil.copy2(os.path.realpath(os.path.join(src, name)), os.path.join(dst, name))
    return dst


def say(text: str) -> None:
    print(text, flush=True)


class Demo:
    def __init__(self, bed: Testbed, bin_dir: str):
        self.bed, self.bin_dir, self.vxlan = bed, bin_dir, os.path.join(bin_dir, "vxlan")
        self.pods: dict[str, tuple] = {}  # pod -> (node, address)

    def conf(self, node) -> dict:
        return {"cniVersion": "1.1.0", "name": "demo-overlay", "type": "vxlan", "network": NETWORK, "nodeName": node.name,
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
            self.pods[pod] = (node, out.json["ips"][0]["address"].split("/")[0])
            say(f"  {name}: ADD {pod:9} -> {out.json['ips'][0]['address']}")
        node.start([self.vxlan, "sync", "--watch", "--conf", path], f"{self.bed.tmp}/{name}.sync.log")
        return node

    def mesh(self) -> dict[str, int]:
        reached = {}
        for src, dst in itertools.permutations(self.pods, 2):
            node, _ = self.pods[src]
            ok = ping(node.pods[src], self.pods[dst][1], wait=1)
            reached[src] = reached.get(src, 0) + ok
        return reached

    def subnet(self, node) -> str:
        lease = json.load(open(f"{self.bed.tmp}/{node.name}/vxlan/demo-overlay/lease.json"))
        return lease["subnet"]


def main() -> None:
    started = time.monotonic()
    bin_dir = plugin_dir()
    try:
        with Testbed() as bed:
            say(f"plugins in {bin_dir}; underlay 192.0.2.0/24; overlay {NETWORK}")
            bed.start_etcd()
            say(f"etcd {bed.etcd_endpoint} in namespace {bed.etcd_ns.name}\n")
            demo = Demo(bed, bin_dir)
            for name in ("node1", "node2", "node3"):
                demo.join(name)
            time.sleep(0.5)
            reached = demo.mesh()
            total = len(demo.pods) - 1
            say(f"\nfull mesh over 3 nodes: {sum(reached.values())}/{len(demo.pods) * total} pod-to-pod pings answered")
            say("\nnode4 joins:")
            t0 = time.monotonic()
            node4 = demo.join("node4")
            target = demo.pods["node4-poda"][1]
            first = demo.pods["node1-poda"][0]
            while not ping(first.pods["node1-poda"], target, wait=0.2) and time.monotonic() - t0 < 10:
                pass
            say(f"  node1-poda reaches node4-poda {time.monotonic() - t0:.2f}s after node4's first ADD (sync --watch)")
            reached = demo.mesh()
            total = len(demo.pods) - 1
            say("")
            say(f"{'node':6} {'subnet':16} {'pod':10} {'address':14} peers reached")
            for pod, (node, address) in demo.pods.items():
                say(f"{node.name:6} {demo.subnet(node):16} {pod:10} {address:14} {reached[pod]}/{total}")
            ok = all(v == total for v in reached.values())
            say(f"\n{'every pod reached every other pod' if ok else 'SOME PINGS FAILED'}; cleaning up "
                f"(DEL every pod, stop sync, etcd, namespaces) after {time.monotonic() - started:.1f}s")
            for pod, (node, _) in demo.pods.items():
                node.run(demo.vxlan, "DEL", demo.conf(node), pod, bin_dir)
            del node4
            if not ok:
                sys.exit(1)
    finally:
        shutil.rmtree(bin_dir, ignore_errors=True)
    say(f"done in {time.monotonic() - started:.1f}s")
