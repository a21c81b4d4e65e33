"""A multi-node network on one machine: an underlay switch, node namespaces, pods, and etcd.

  fabric ns: bridge "sw0" ── veth ── node ns N: eth0 192.0.2.N/24, default via 192.0.2.254
                         └─ veth ── etcd ns: eth0 192.0.2.100/24, etcd on 192.0.2.100:2379
Everything lives in namespaces created here and is deleted by close(); etcd
listens only inside its namespace and is stopped by PID.
"""
import os
import shutil
import subprocess
import tempfile
import time

from conformance.netenv import Netns, run_plugin, sh

UNDERLAY = "192.0.2"
ETCD_HOST = f"{UNDERLAY}.100"


class Node:
    def __init__(self, bed: "Testbed", name: str, index: int, tag: str):
        self.name = name
        self.address = f"{UNDERLAY}.{index}"
        self.ns = Netns(tag)
        self.pods: dict[str, Netns] = {}
        self.procs: list[subprocess.Popen] = []
        bed.plug(self.ns, self.address)
        self.ns.ip("route", "add", "default", "via", f"{UNDERLAY}.254")

    def pod(self, pod_id: str) -> Netns:
        self.pods[pod_id] = Netns("pd")
        return self.pods[pod_id]

    def run(self, binary: str, command: str, conf: dict, pod_id: str, bin_dir: str, **kw):
        pod = self.pods[pod_id]
        return run_plugin(binary, command, conf, node=self.ns, netns=pod.path, container_id=pod_id, path=bin_dir, **kw)

    def start(self, argv: list[str], log_path: str) -> subprocess.Popen:
        """A long-running process inside the node (e.g. `vxlan sync --watch`), stopped by close()."""
        log = open(log_path, "ab")
        proc = subprocess.Popen(["ip", "netns", "exec", self.ns.name, *argv], stdout=log, stderr=log)
        log.close()
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc in self.procs:
            self.procs.remove(proc)

    def close(self) -> None:
        for proc in list(self.procs):
            self.stop(proc)
        for pod in self.pods.values():
            pod.close()
        self.ns.close()


class Testbed:
    __test__ = False  # a fixture, not a test class
    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="cnit-bed-")
        self.fabric = Netns("fb")
        self.fabric.ip("link", "add", "sw0", "type", "bridge")
        self.fabric.ip("link", "set", "sw0", "up")
        self.ports = 0
        self.nodes: dict[str, Node] = {}
        self.etcd_ns: Netns | None = None
        self.etcd_proc: subprocess.Popen | None = None

    def plug(self, ns: Netns, address: str, mtu: int = 1500) -> None:
        """Connect a namespace to the switch: its eth0 gets `address`/24."""
        self.ports += 1
        port = f"p{self.ports}"
        self.fabric.ip("link", "add", port, "mtu", str(mtu), "type", "veth", "peer", "name", "eth0", "mtu", str(mtu), "netns", ns.name)
        self.fabric.ip("link", "set", port, "master", "sw0", "up")
        ns.ip("addr", "add", f"{address}/24", "dev", "eth0")
        ns.ip("link", "set", "eth0", "up")

    def add_node(self, name: str) -> Node:
        node = Node(self, name, len(self.nodes) + 1, "nd")
        self.nodes[name] = node
        return node

    def remove_node(self, name: str) -> None:
        self.nodes.pop(name).close()

    # --- etcd -----------------------------------------------------------------

    @property
    def etcd_endpoint(self) -> str:
        return f"http://{ETCD_HOST}:2379"

    def start_etcd(self) -> None:
        if self.etcd_ns is None:
            self.etcd_ns = Netns("et")
            self.plug(self.etcd_ns, ETCD_HOST)
        data = os.path.join(self.tmp, "etcd")
        log = open(os.path.join(self.tmp, "etcd.log"), "ab")
        peer = "http://127.0.0.1:2380"
        self.etcd_proc = subprocess.Popen(
            ["ip", "netns", "exec", self.etcd_ns.name, "etcd", "--name", "bed", "--data-dir", data,
             "--listen-client-urls", self.etcd_endpoint, "--advertise-client-urls", self.etcd_endpoint,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", f"bed={peer}"],
            stdout=log, stderr=log,
        )
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            probe = subprocess.run(["ip", "netns", "exec", self.etcd_ns.name, "etcdctl", f"--endpoints={self.etcd_endpoint}", "endpoint", "health"],
                                   env={"ETCDCTL_API": "3", "PATH": os.environ.get("PATH", "/usr/bin:/bin")}, capture_output=True)
            if probe.returncode == 0:
                return
            if self.etcd_proc.poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError(f"etcd did not come up; see {self.tmp}/etcd.log")

    def stop_etcd(self) -> None:
        if self.etcd_proc is not None and self.etcd_proc.poll() is None:
            self.etcd_proc.terminate()
            try:
                self.etcd_proc.wait(15)
            except subprocess.TimeoutExpired:
                self.etcd_proc.kill()
                self.etcd_proc.wait()
        self.etcd_proc = None

    # --- teardown ---------------------------------------------------------------

    def close(self) -> None:
        for node in list(self.nodes.values()):
            node.close()
        self.nodes.clear()
        self.stop_etcd()
        if self.etcd_ns is not None:
            self.etcd_ns.close()
        self.fabric.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> "Testbed":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def ping(src: Netns, address: str, size: int = 56, dont_fragment: bool = False, count: int = 1, wait: float = 2) -> bool:
    argv = ["ping", "-n", "-c", str(count), "-W", str(wait), "-s", str(size)]
    if dont_fragment:
        argv += ["-M", "do"]
    return subprocess.run(["ip", "netns", "exec", src.name, *argv, address], capture_output=True).returncode == 0


__all__ = ["Testbed", "Node", "ping", "sh"]
