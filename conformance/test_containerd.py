"""A real client: containerd 1.6 (Debian 12) drives the plugins through its CRI API and `ctr run --cni`.

Each plugin directory under test (ours: dist/src-bin and, when built, dist/cni-bin; and the
reference, --reference-dir) gets its own throw-away node (conformance/containerd/node.py):
containerd in a private network, mount and PID namespace, a locally built busybox image, a
conflist of bridge + host-local (+ portmap when the directory has one) and CRI's own loopback
network, and a CNI bin_dir holding only wrappers of the directory's plugins.  A type the
directory lacks fails the test that needs it ("missing loopback/portmap"): nothing falls back to
the reference.  See docs/containerd-tests.md.
"""
from __future__ import annotations

import importlib
import ipaddress
import json
import os
import re
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from conformance.containerd import image
from conformance.containerd import node as cnode
from conformance.fixtures import REPO, default_bin_dirs
from conformance.helpers import allocations, eventually, firewall_mentions

pytestmark = pytest.mark.conformance
HOST_PORT = 18080
# what must never change on the machine (the node has its own of each)
MACHINE_PATHS = ("/run/containerd", "/var/lib/containerd", "/etc/cni/net.d", "/opt/cni/bin", "/var/lib/cni")


def pytest_generate_tests(metafunc):
    """plugin_dir: the directories under test (--bin-dir, default ours) and the reference (--reference-dir)."""
    if "plugin_dir" not in metafunc.fixturenames:
        return
    dirs, seen = [], set()
    for d in (metafunc.config.getoption("bin_dir") or default_bin_dirs()) + [metafunc.config.getoption("reference_dir")]:
        if os.path.realpath(d) not in seen:
            seen.add(os.path.realpath(d))
            dirs.append(os.path.abspath(d))
    ids = [os.path.relpath(d, REPO) if d.startswith(REPO) else d for d in dirs]
    metafunc.parametrize("plugin_dir", dirs, ids=ids, scope="module")


def _installed() -> str:
    """What is missing to run containerd here ('' when nothing)."""
    lacking = cnode.missing_tools()
    try:
        importlib.invalidate_caches()
        importlib.import_module("grpc")
        importlib.import_module("grpc_tools.protoc")
    except ImportError as e:
        lacking.append(f"python: {e.name}")
    return ", ".join(lacking)


@pytest.fixture(scope="session")
def containerd_installed():
    """Install containerd, runc, busybox-static and grpcio (build/setup-deps.sh, idempotent) when any is missing."""
    if not _installed():
        return
    setup = subprocess.run([os.path.join(REPO, "build", "setup-deps.sh")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900)
    lacking = _installed()
    assert not lacking, f"build/setup-deps.sh did not install {lacking}: exit {setup.returncode}\n{setup.stdout[-3000:]}"


def _machine_state() -> dict:
    """The machine's own containerd and CNI paths: whether each exists, and every name under it (small trees)."""
    state = {}
    for path in MACHINE_PATHS:
        names = []
        for root, dirs, files in os.walk(path):
            names += [os.path.join(root, n) for n in dirs + files]
        state[path] = (os.path.lexists(path), names)
    return state


@pytest.fixture(scope="module")
def cd_node(plugin_dir, containerd_installed):
    before = _machine_state()
    node = cnode.Node(plugin_dir)
    try:
        yield node
    finally:
        node.close()
    after = _machine_state()
    for path in MACHINE_PATHS:
        assert before[path][0] == after[path][0], f"{path} appeared or vanished on the machine during the containerd tests"
        ours = [n for n in after[path][1] if node.network in n or "cnitctr" in n]
        assert not ours, f"the containerd tests left files on the machine: {ours}"
    assert not os.path.exists(node.work), f"{node.work} was not removed"


@pytest.fixture(scope="module")
def cri(cd_node):
    from conformance.containerd.cri import RuntimeClient

    client = RuntimeClient(cd_node.socket)
    assert client.version().runtime_api_version == "v1"
    yield client
    client.close()


@pytest.fixture
def node(cd_node, cri):
    """The node, with the calls of earlier tests forgotten; pods a failed test left are removed afterwards."""
    if cd_node.bin_dir != os.path.realpath(cnode.REFERENCE):
        assert cd_node.listdir(cnode.REFERENCE) == [], f"{cnode.REFERENCE}, go-cni's fallback on CNI_PATH, is hidden in the node"
    cd_node.forget_calls()
    yield cd_node
    for sandbox in cri.list_pods():
        cri.stop_pod(sandbox)
        cri.remove_pod(sandbox)


def require(node: cnode.Node, *types: str) -> None:
    lacking = cnode.missing(node.bin_dir, *types)
    if lacking:
        pytest.fail(f"missing {'/'.join(lacking)}: {node.bin_dir} has no {' and no '.join(lacking)} plugin "
                    f"(containerd's CRI always adds a loopback network; a hostPort needs portmap). "
                    f"The test does not fall back to the reference plugins in {cnode.REFERENCE}.", pytrace=False)


# --- checks ---------------------------------------------------------------------------------


def pod_addresses(node: cnode.Node, netns: str) -> list[str]:
    out = node.in_pod(netns, "ip", "-j", "addr", "show", "dev", "eth0").stdout
    return [f"{a['local']}/{a['prefixlen']}" for link in json.loads(out) for a in link.get("addr_info", []) if a.get("scope") == "global"]


def check_pod(node: cnode.Node, cri, sandbox_id: str):
    """The pod is ready and has one address: the one containerd reports, host-local allocated and eth0 holds."""
    pod = cri.status(sandbox_id)
    assert pod.ready, pod
    assert ipaddress.ip_address(pod.ip) in ipaddress.ip_network(cnode.SUBNET), pod
    owned = sorted(ip for ip, owner in allocations(node.path("ipam"), node.network).items() if owner == sandbox_id)
    assert owned == [pod.ip], f"containerd reports {pod.ip}, host-local allocated {owned} to {sandbox_id}"
    assert pod_addresses(node, pod.netns) == [f"{pod.ip}/24"], f"eth0 in {pod.netns}"
    assert node.exists(pod.netns)
    return pod


def assert_from_dir_under_test(node: cnode.Node, calls: list[dict], *types: str) -> None:
    """Every call ran a plugin of the directory under test, succeeded, and each of `types` ran."""
    assert calls, "containerd ran no plugin through the bin_dir under test"
    for call in calls:
        assert os.path.dirname(call["bin"]) == node.bin_dir, f"{call['type']} {call['command']} ran {call['bin']}, not {node.bin_dir}"
        if node.bin_dir != os.path.realpath(cnode.REFERENCE):
            assert not call["resolved"].startswith(cnode.REFERENCE + "/"), f"{call['bin']} is the reference's {call['resolved']}"
        assert call["rc"] == 0, f"{call['type']} {call['command']} failed: rc={call['rc']} {call['stdout']}"
    ran = {call["type"] for call in calls}
    assert set(types) <= ran, f"expected calls of {sorted(types)}, saw {sorted(ran)}"


def assert_nothing_left(node: cnode.Node, cri, pods=(), ids=(), masquerade_leak_ok=False) -> None:
    """No pod, allocation, veth, firewall rule, libcni cache entry, netns file, process or /tmp entry is left.

    masquerade_leak_ok: lines of the reference bridge's masquerade chains (CNI-<24 hex>) may be left (below).
    """
    assert cri.list_pods() == []
    assert allocations(node.path("ipam"), node.network) == {}, "host-local allocations left"
    assert eventually(lambda: node.veths() == [], 20), f"veths left on the pod bridge: {node.veths()}"
    needles = [p.ip for p in pods] + [p.id for p in pods] + list(ids)
    left = firewall_mentions(node.netns, *needles)
    if masquerade_leak_ok:
        left = [line for line in left if not re.search(r"\bCNI-[0-9a-f]{24}\b", line)]
    assert left == [], "firewall rules left"
    assert node.cached_results() == [], "libcni cache entries left"
    assert [n for n in node.listdir("/var/run/netns") if n.startswith("cni-")] == [], "CRI's netns files left"
    for p in pods:
        assert not node.exists(p.netns), p.netns
    only_containerd = lambda: [c.split()[0] for c in node.processes().values()] == ["containerd"]
    assert eventually(only_containerd, 30), f"processes left in the node: {node.processes()}"
    assert node.tmp_entries() == [], "the node's /tmp is not empty"


def calls_of(calls, type_: str, command: str, **env) -> list[dict]:
    return [c for c in calls if c["type"] == type_ and c["command"] == command and all(c["env"].get(k) == v for k, v in env.items())]


def pod_uid() -> str:
    return str(uuid.uuid4())


# --- CRI ------------------------------------------------------------------------------------


def test_cri_pod_lifecycle_with_a_repeated_stop(node, cri):
    require(node, "loopback", *cnode.conflist_types(node.bin_dir))
    sandbox_id = cri.run_pod("solo", pod_uid())
    pod = check_pod(node, cri, sandbox_id)
    assert len(node.veths()) == 1
    assert node.cached_results() == sorted([f"cni-loopback-{sandbox_id}-lo", f"{node.network}-{sandbox_id}-eth0"])

    calls = node.calls()
    assert_from_dir_under_test(node, calls, "loopback", "bridge")
    (bridge_add,) = calls_of(calls, "bridge", "ADD")
    env = bridge_add["env"]
    assert (env["CNI_CONTAINERID"], env["CNI_NETNS"], env["CNI_IFNAME"]) == (sandbox_id, pod.netns, "eth0")
    assert env["CNI_PATH"].split(":")[0] == node.path("bin"), "CRI's CNI_PATH starts with its bin_dir"
    args = dict(kv.split("=", 1) for kv in env["CNI_ARGS"].split(";"))
    assert args == {"IgnoreUnknown": "1", "K8S_POD_NAMESPACE": "cnit", "K8S_POD_NAME": "solo", "K8S_POD_INFRA_CONTAINER_ID": sandbox_id,
                    "K8S_POD_UID": args.get("K8S_POD_UID", "")} and args["K8S_POD_UID"]
    assert [ip["address"] for ip in bridge_add["stdout"]["ips"]] == [f"{pod.ip}/24"], "the bridge's result is what containerd reports"
    (lo_add,) = calls_of(calls, "loopback", "ADD")
    assert (lo_add["env"]["CNI_IFNAME"], lo_add["env"]["CNI_NETNS"]) == ("lo", pod.netns)

    node.forget_calls()
    cri.stop_pod(sandbox_id)
    assert not cri.status(sandbox_id).ready
    first = node.calls()
    assert_from_dir_under_test(node, first, "loopback", "bridge")
    assert [c["env"]["CNI_NETNS"] for c in calls_of(first, "bridge", "DEL")] == [pod.netns], "Stop DELs with the pod's netns"
    assert allocations(node.path("ipam"), node.network) == {} and node.veths() == [] and not node.exists(pod.netns)

    node.forget_calls()
    cri.stop_pod(sandbox_id)  # kubelet stops more than once: the DELs come again, without a netns or a cached result
    again = node.calls()
    assert_from_dir_under_test(node, again, "loopback", "bridge")
    for call in calls_of(again, "bridge", "DEL") + calls_of(again, "loopback", "DEL"):
        assert call["env"]["CNI_NETNS"] == "" and "prevResult" not in call["stdin"], call
    cri.remove_pod(sandbox_id)
    assert_from_dir_under_test(node, node.calls(), "bridge")
    assert_nothing_left(node, cri, [pod])


def test_cri_three_pods_at_once(node, cri):
    require(node, "loopback", *cnode.conflist_types(node.bin_dir))
    with ThreadPoolExecutor(3) as pool:
        ids = list(pool.map(lambda i: cri.run_pod(f"many{i}", pod_uid()), range(3)))
    pods = [check_pod(node, cri, sandbox_id) for sandbox_id in ids]
    assert len({p.ip for p in pods}) == 3, pods
    assert len(node.veths()) == 3
    calls = node.calls()
    assert_from_dir_under_test(node, calls, "loopback", "bridge")
    assert sorted(c["env"]["CNI_CONTAINERID"] for c in calls_of(calls, "bridge", "ADD")) == sorted(ids)
    # the pods reach each other over the bridge
    for a, b in ((0, 1), (1, 2), (2, 0)):
        ping = node.in_pod(pods[a].netns, image.BUSYBOX, "ping", "-c", "1", "-W", "5", pods[b].ip, check=False)
        assert ping.returncode == 0, f"pod {pods[a].ip} -> {pods[b].ip}: {ping.stdout}{ping.stderr}"

    with ThreadPoolExecutor(3) as pool:
        list(pool.map(cri.stop_pod, ids))
        list(pool.map(cri.remove_pod, ids))
    assert_from_dir_under_test(node, node.calls(), "loopback", "bridge")
    assert_nothing_left(node, cri, pods)


# an HTTP/1.0 GET printing the body (busybox-static's wget crashes resolving names on Debian 12)
GET = ("import socket, sys\n"
       "s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)\n"
       "s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n')\n"
       "data = b''.join(iter(lambda: s.recv(65536), b''))\n"
       "sys.stdout.write(data.split(b'\\r\\n\\r\\n', 1)[1].decode())\n")


def fetch(node: cnode.Node, port: int) -> subprocess.CompletedProcess:
    """GET / from the node's uplink address, port `port`, from the client namespace (outside the pod network)."""
    return subprocess.run(["ip", "netns", "exec", node.client.name, sys.executable, "-I", "-c", GET, cnode.NODE_IP, str(port)],
                          capture_output=True, text=True, timeout=30)


def test_cri_pod_with_a_host_port_reached_from_another_namespace(node, cri):
    require(node, "loopback", "portmap", *cnode.conflist_types(node.bin_dir))
    other = cri.run_pod("neighbour", pod_uid())  # a pod without hostPorts beside it
    sandbox_id = cri.run_pod("web", pod_uid(), port_mappings=[(HOST_PORT, 80)])
    pod, neighbour = check_pod(node, cri, sandbox_id), check_pod(node, cri, other)
    calls = node.calls()
    assert_from_dir_under_test(node, calls, "loopback", "bridge", "portmap")
    (portmap_add,) = calls_of(calls, "portmap", "ADD", CNI_CONTAINERID=sandbox_id)
    # go-cni's structs have no JSON tags: the capability's keys arrive capitalised
    assert portmap_add["stdin"]["runtimeConfig"]["portMappings"] == [{"HostPort": HOST_PORT, "ContainerPort": 80, "Protocol": "tcp", "HostIP": ""}]
    assert "portMappings" not in calls_of(calls, "portmap", "ADD", CNI_CONTAINERID=other)[0]["stdin"].get("runtimeConfig", {})

    got = []
    assert eventually(lambda: got.append(fetch(node, HOST_PORT)) or got[-1].stdout == image.PAGE.decode(), 20), \
        f"{cnode.NODE_IP}:{HOST_PORT} from the client namespace: {got[-1].returncode} {got[-1].stdout!r} {got[-1].stderr[-500:]!r}"

    for sandbox in (sandbox_id, other):
        cri.stop_pod(sandbox)
        cri.remove_pod(sandbox)
    assert fetch(node, HOST_PORT).returncode != 0, "the hostPort still answers after the pod was removed"
    assert_from_dir_under_test(node, node.calls(), "loopback", "bridge", "portmap")
    assert_nothing_left(node, cri, [pod, neighbour])


# --- ctr run --cni --------------------------------------------------------------------------


def test_ctr_run_rm_cni_in_the_foreground(node, cri, reference_dir):
    require(node, *cnode.conflist_types(node.bin_dir))
    name = "cnitrun"
    out = node.ctr("-n", "default", "run", "--rm", "--cni", "--cgroup", "", image.NAME, name, "/bin/sh", "-c", "ip -o -4 addr show dev eth0")
    printed = [line.split()[line.split().index("inet") + 1] for line in out.stdout.splitlines() if "inet" in line.split()]
    assert len(printed) == 1 and ipaddress.ip_interface(printed[0]) in ipaddress.ip_network(cnode.SUBNET), out.stdout

    calls = node.calls()
    assert_from_dir_under_test(node, calls, "bridge")
    (add,) = calls_of(calls, "bridge", "ADD")
    assert add["env"]["CNI_CONTAINERID"] == f"default-{name}" and add["env"]["CNI_NETNS"].startswith("/proc/")
    assert add["env"]["CNI_PATH"].split(":")[0] == "/opt/cni/bin", "ctr runs the plugins of /opt/cni/bin (the wrappers, in the node)"
    assert [ip["address"] for ip in add["stdout"]["ips"]] == printed, "eth0 holds the address the bridge allocated"
    assert [c["env"]["CNI_CONTAINERID"] for c in calls_of(calls, "bridge", "DEL")] == [f"default-{name}"], "the foreground run tore down"
    assert node.ctr("-n", "default", "containers", "list", "-q").stdout.split() == []
    # ctr DELs with CNI_NETNS="" (the task is gone): the reference bridge 1.1.1 then releases the address but skips
    # its masquerade teardown, which finds the addresses through the netns (plugins#810; docs/containerd-tests.md)
    reference = node.bin_dir == os.path.realpath(reference_dir)
    assert_nothing_left(node, cri, ids=[f"default-{name}", printed[0].split("/")[0]], masquerade_leak_ok=reference)


# --- the node itself ------------------------------------------------------------------------


def test_containerd_listens_only_inside_the_node(node):
    """gRPC and ttrpc on unix sockets in the work directory; TCP only for CRI's streaming server, on the node's 127.0.0.1."""
    listening = lambda out: [line.split() for line in out.splitlines() if '(("containerd",' in line]
    unix = listening(node.run("ss", "-Hlxp").stdout)
    assert sorted(cols[4] for cols in unix) == [node.socket, node.socket + ".ttrpc"], unix
    inet = listening(node.run("ss", "-Hltunp").stdout)
    assert inet and all(cols[4].startswith("127.0.0.1:") for cols in inet), inet
    pid = next(p for p, cmd in node.processes().items() if cmd.split()[0] == "containerd")
    machine = subprocess.run(["ss", "-Hltunxp"], capture_output=True, text=True, check=True).stdout
    assert [line for line in machine.splitlines() if f"pid={pid}," in line] == [], "containerd listens in the machine's network namespace"
