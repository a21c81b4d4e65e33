"""A multi-node network on one machine: an underlay switch, node namespaces, pods, and etcd.

  fabric ns: bridge "sw0" ── veth ── node ns N: eth0 192.0.2.N/24, default via 192.0.2.254
                         └─ veth ── etcd ns: eth0 192.0.2.100/24, etcd on 192.0.2.100:2379
or, with start_etcd_cluster(), member K in its own ns at 192.0.2.(100+K), client
port 2379, peer port 2380.  Everything lives in namespaces created here and is
deleted by close(); etcd listens only inside its namespaces and is stopped by PID.
"""
import json
import os
import shutil
import subprocess
import tempfile
import time

from conformance.netenv import Netns, run_plugin, sh

UNDERLAY = "192.0.2"
ETCD_HOST = f"{UNDERLAY}.100"
MEMBER_BASE = 100  # cluster member K (1..) at UNDERLAY.(100+K)


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
        self.members: dict[str, Member] = {}

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
        wait_healthy(self.etcd_ns, self.etcd_endpoint, self.etcd_proc, f"{self.tmp}/etcd.log")

    def stop_etcd(self) -> None:
        if self.etcd_proc is not None and self.etcd_proc.poll() is None:
            self.etcd_proc.terminate()
            try:
                self.etcd_proc.wait(15)
            except subprocess.TimeoutExpired:
                self.etcd_proc.kill()
                self.etcd_proc.wait()
        self.etcd_proc = None

    # --- a replicated etcd --------------------------------------------------------

    def start_etcd_cluster(self, size: int = 3) -> list[str]:
        """`size` members, each in its own namespace on the underlay; their client endpoints."""
        cluster = ",".join(f"m{k}=http://{UNDERLAY}.{MEMBER_BASE + k}:2380" for k in range(1, size + 1))
        for k in range(1, size + 1):
            member = Member(self, f"m{k}", f"{UNDERLAY}.{MEMBER_BASE + k}", cluster)
            self.members[member.name] = member
        for member in self.members.values():  # together: a member waits for a quorum to start
            member.start()
        for member in self.members.values():
            member.wait_healthy()
        return self.etcd_endpoints

    @property
    def etcd_endpoints(self) -> list[str]:
        return [m.endpoint for m in self.members.values()]

    def etcdctl(self, *args: str, endpoints: list[str] | None = None, check: bool = True) -> str:
        """etcdctl from the first member's namespace (every member is on the underlay)."""
        first = next(iter(self.members.values()))
        argv = ["ip", "netns", "exec", first.ns.name, "etcdctl", f"--endpoints={','.join(endpoints or self.etcd_endpoints)}", *args]
        proc = subprocess.run(argv, env={"ETCDCTL_API": "3", "PATH": os.environ.get("PATH", "/usr/bin:/bin")}, capture_output=True, timeout=30)
        if check and proc.returncode != 0:
            raise RuntimeError(f"etcdctl {' '.join(args)}: {proc.stderr.decode(errors='replace')}")
        return proc.stdout.decode(errors="replace")

    def leader(self) -> "Member":
        """The member that leads now, asked of the live members."""
        live = [m.endpoint for m in self.members.values() if m.running and not m.vanished]
        for status in json.loads(self.etcdctl("endpoint", "status", "-w", "json", endpoints=live)):
            if status["Status"]["header"]["member_id"] == status["Status"]["leader"]:
                return next(m for m in self.members.values() if m.endpoint == status["Endpoint"])
        raise RuntimeError("no member leads")

    # --- teardown ---------------------------------------------------------------

    def close(self) -> None:
        for node in list(self.nodes.values()):
            node.close()
        self.nodes.clear()
        for member in self.members.values():
            member.close()
        self.stop_etcd()
        if self.etcd_ns is not None:
            self.etcd_ns.close()
        self.fabric.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> "Testbed":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def wait_healthy(ns: Netns, endpoint: str, proc: subprocess.Popen, log: str, timeout: float = 30) -> None:
    """Until etcd at endpoint (in ns) says it is healthy; RuntimeError naming its log if it does not, or exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        probe = subprocess.run(["ip", "netns", "exec", ns.name, "etcdctl", f"--endpoints={endpoint}", "endpoint", "health"],
                               env={"ETCDCTL_API": "3", "PATH": os.environ.get("PATH", "/usr/bin:/bin")}, capture_output=True)
        if probe.returncode == 0:
            return
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    raise RuntimeError(f"etcd at {endpoint} is not healthy; see {log}")


class Member:
    """One etcd member in its own namespace: started, SIGKILLed, restarted, or made to vanish (every packet dropped)."""

    def __init__(self, bed: Testbed, name: str, host: str, cluster: str):
        self.name, self.host, self.cluster = name, host, cluster
        self.endpoint = f"http://{host}:2379"
        self.data = os.path.join(bed.tmp, f"etcd-{name}")
        self.log = os.path.join(bed.tmp, f"etcd-{name}.log")
        self.ns = Netns("em")
        bed.plug(self.ns, host)
        self.proc: subprocess.Popen | None = None
        self.vanished = False

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        peer = f"http://{self.host}:2380"
        log = open(self.log, "ab")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns.name, "etcd", "--name", self.name, "--data-dir", self.data,
             "--listen-client-urls", self.endpoint, "--advertise-client-urls", self.endpoint,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--initial-cluster", self.cluster, "--initial-cluster-state", "new", "--initial-cluster-token", "cnit"],
            stdout=log, stderr=log,
        )
        log.close()

    def wait_healthy(self) -> None:
        assert self.proc is not None
        wait_healthy(self.ns, self.endpoint, self.proc, self.log)

    def kill(self) -> None:
        """SIGKILL, as a crash: no goodbye to its peers or clients."""
        if self.running:
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait()

    def vanish(self) -> None:
        """The host goes silent: nothing in or out, no reset, no refusal (established streams hang half-open)."""
        rules = (
            "table inet cnitvanish {\n chain i { type filter hook input priority -300; policy drop; }\n"
            " chain o { type filter hook output priority -300; policy drop; }\n}\n"
        )
        sh("ip", "netns", "exec", self.ns.name, "nft", "-f", "-", input=rules.encode())
        self.vanished = True

    def reappear(self) -> None:
        sh("ip", "netns", "exec", self.ns.name, "nft", "delete table inet cnitvanish")
        self.vanished = False

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.ns.close()


def ping(src: Netns, address: str, size: int = 56, dont_fragment: bool = False, count: int = 1, wait: float = 2) -> bool:
    argv = ["ping", "-n", "-c", str(count), "-W", str(wait), "-s", str(size)]
    if dont_fragment:
        argv += ["-M", "do"]
    return subprocess.run(["ip", "netns", "exec", src.name, *argv, address], capture_output=True).returncode == 0


__all__ = ["Testbed", "Node", "Member", "ping", "sh"]
