"""A real client: podman 4 with its CNI backend runs containers on the plugins under test.

podman runs inside a node namespace this test creates (`nsenter --net`), and inside a
private mount namespace held by a process the test starts (`unshare --mount`), where
a tmpfs over /etc/containers holds this test's containers.conf and storage.conf (so
conmon's cleanup process, which gets neither our environment nor our command line
options, reads them too), /var/lib/cni (libcni's result cache) is a temporary
directory and /run/netns (podman's netns mounts) a tmpfs.  Storage, runroot and
state are temporary directories; the image is imported from busybox-static.
CNI_PATH points at wrappers that record every call.  See docs/podman.md.

Container a publishes a port (-p) through the portmap under test (a directory without one fails
with "missing portmap"; the reference's is never used in its place): a client namespace on an
uplink to the node fetches a page from busybox httpd in the container through the node's address.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from conformance.helpers import allocations, eventually, firewall_mentions, logged_calls, logging_plugin_dir

pytestmark = pytest.mark.conformance
NET = "podnet"
BRIDGE = "cnitpod0"
SUBNET = "10.89.7.0/24"
IMAGE = "localhost/cnitbox:latest"
HOST_PORT = 18082
TOOLS = ("podman", "runc", "conmon", "nsenter", "unshare")


def podman_missing() -> str:
    """Why podman cannot run here ('' when it can)."""
    if os.geteuid() != 0:
        return "podman as a CNI client needs root"
    for tool in TOOLS:
        if not shutil.which(tool):
            return f"{tool} is not installed (Debian: apt-get install podman runc conmon util-linux)"
    if not os.path.isfile("/bin/busybox"):
        return "/bin/busybox is missing (Debian: apt-get install busybox-static), needed to build the image locally"
    out = subprocess.run(["podman", "--version"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    version = out.stdout.split()[-1] if out.returncode == 0 and out.stdout.split() else ""
    if not version.startswith("4."):
        return f"podman {version or '(unknown)'} is not podman 4: only podman 4 has the CNI network backend"
    return ""


class Podman:
    def __init__(self, tmp, node, plugin_dir):
        self.tmp = tmp
        self.node = node
        for sub in ("etc", "graph", "run", "tmp", "volumes", "cni-cache", "home", "ipam", "net.d"):
            os.makedirs(os.path.join(tmp, sub), exist_ok=True)
        os.chmod(os.path.join(tmp, "ipam"), 0o700)
        etc = os.path.join(tmp, "etc")
        with open(os.path.join(etc, "containers.conf"), "w") as f:
            f.write(f"""[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[network]
network_backend = "cni"
cni_plugin_dirs = ["{plugin_dir}"]
network_config_dir = "{tmp}/net.d"
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{tmp}/events.log"
tmp_dir = "{tmp}/tmp"
volume_path = "{tmp}/volumes"
""")
        with open(os.path.join(etc, "storage.conf"), "w") as f:
            f.write(f'[storage]\ndriver = "vfs"\ngraphroot = "{tmp}/graph"\nrunroot = "{tmp}/run"\n')
        for name in ("policy.json", "registries.conf"):
            if os.path.isfile(f"/etc/containers/{name}"):
                shutil.copy(f"/etc/containers/{name}", etc)
        if not os.path.isfile(os.path.join(etc, "policy.json")):
            with open(os.path.join(etc, "policy.json"), "w") as f:
                json.dump({"default": [{"type": "insecureAcceptAnything"}]}, f)
        ready = os.path.join(tmp, "ready")
        script = (
            "set -e; mount --make-rprivate /; "
            f"mount -t tmpfs cnitest /etc/containers; cp {etc}/* /etc/containers/; "
            f"[ -d /var/lib/cni ] || mkdir -p /var/lib/cni; mount --bind {tmp}/cni-cache /var/lib/cni; "
            "mkdir -p /run/netns; mount -t tmpfs cnitest /run/netns; "
            f"touch {ready}; exec sleep 86400"
        )
        self.holder = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", script],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if not eventually(lambda: os.path.exists(ready) or self.holder.poll() is not None, 30) or not os.path.exists(ready):
            raise RuntimeError(f"the private mount namespace did not come up: {self.holder.stderr.read() if self.holder.poll() is not None else ''}")
        self.env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": os.path.join(tmp, "home"), "CNIT_CALLER": "1"}

    def __call__(self, *args, check=True, timeout=180):
        argv = ["nsenter", f"--mount=/proc/{self.holder.pid}/ns/mnt", f"--net={self.node.path}", "podman", *args]
        proc = subprocess.run(argv, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout, text=True)
        if check:
            assert proc.returncode == 0, f"podman {' '.join(args)}: rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        return proc

    def diagnose(self) -> str:
        calls = [(c["type"], c["command"], c["env"].get("CNI_CONTAINERID", "")[:12]) for c in logged_calls(os.path.join(self.tmp, "calls"))
                 if c["command"] != "VERSION"]
        try:
            with open(os.path.join(self.tmp, "events.log")) as f:
                events = [(e.get("Name"), e.get("Status")) for e in map(json.loads, f.read().splitlines()) if e.get("Type") == "container"]
        except (OSError, ValueError):
            events = []
        return f"calls={calls} events={events} ps={self('ps', '-a', check=False).stdout}"

    def close(self):
        try:
            self("rm", "-a", "-f", "-t", "0", check=False)
        finally:
            if self.holder.poll() is None:
                self.holder.kill()
            self.holder.wait(timeout=30)


def build_image(podman, tmp):
    rootfs = os.path.join(tmp, "rootfs")
    os.makedirs(os.path.join(rootfs, "bin"))
    os.makedirs(os.path.join(rootfs, "etc"))
    shutil.copy("/bin/busybox", os.path.join(rootfs, "bin", "busybox"))
    applets = subprocess.run(["/bin/busybox", "--list"], stdout=subprocess.PIPE, text=True, check=True).stdout.split()
    for applet in applets:
        if applet != "busybox":
            os.symlink("busybox", os.path.join(rootfs, "bin", applet))
    with open(os.path.join(rootfs, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\n")
    tar = os.path.join(tmp, "rootfs.tar")
    subprocess.run(["tar", "-C", rootfs, "-cf", tar, "."], check=True)
    podman("import", "--change", 'CMD ["/bin/sh"]', tar, IMAGE)


def container_ip(podman, name):
    doc = json.loads(podman("inspect", name).stdout)[0]
    return doc["NetworkSettings"]["Networks"][NET]["IPAddress"]


def container_id(podman, name):
    return json.loads(podman("inspect", name).stdout)[0]["Id"]


@pytest.fixture
def podman(node, bin_dir, reference_dir, plugins):
    reason = podman_missing()
    if reason:
        pytest.skip(reason)
    plugins.path("bridge")
    plugins.path("host-local")
    if not os.access(os.path.join(bin_dir, "portmap"), os.X_OK):
        # the -p mapping must go through the portmap under test, never the reference's
        pytest.fail(f"missing portmap: {bin_dir} has no portmap plugin; podman's -p needs it", pytrace=False)
    # a short private directory: with a path as long as pytest's tmp_path, conmon's exit command (the
    # `podman container cleanup` that DELs a container which exits on its own) silently never runs
    tmp = tempfile.mkdtemp(prefix="cnitpm", dir="/tmp")
    try:
        plugin_dir = logging_plugin_dir(os.path.join(tmp, "plugins"), os.path.join(tmp, "calls"), [bin_dir, reference_dir])
        p = Podman(tmp, node, plugin_dir)
        try:
            yield p
        finally:
            p.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_network(podman):
    conf = {
        "cniVersion": "1.0.0",
        "name": NET,
        "plugins": [
            {"type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": True,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": SUBNET}]], "routes": [{"dst": "0.0.0.0/0"}],
                      "dataDir": os.path.join(podman.tmp, "ipam")}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    with open(os.path.join(podman.tmp, "net.d", f"{NET}.conflist"), "w") as f:
        json.dump(conf, f)


# an HTTP/1.0 GET of / printing the body (busybox-static's wget crashes on Debian 12)
GET = ("import socket, sys\n"
       "s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)\n"
       "s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n')\n"
       "data = b''.join(iter(lambda: s.recv(65536), b''))\n"
       "sys.stdout.write(data.split(b'\\r\\n\\r\\n', 1)[1].decode())\n")
PAGE = "cnit-podman-published"
SERVE = f"mkdir -p /www && echo {PAGE} > /www/index.html && httpd -p 80 -h /www && exec sleep 3600"


def client_of(node, netns):
    """A namespace on an uplink to the node (node 192.0.2.1, client 192.0.2.2), from which published ports are reached."""
    client = netns("cl")
    node.ip("link", "add", "uplink0", "type", "veth", "peer", "name", "uplink1", "netns", client.name)
    node.ip("addr", "add", "192.0.2.1/24", "dev", "uplink0")
    node.ip("link", "set", "uplink0", "up")
    client.ip("addr", "add", "192.0.2.2/24", "dev", "uplink1")
    client.ip("link", "set", "uplink1", "up")
    client.ip("route", "add", "default", "via", "192.0.2.1")
    return client


def fetch(client, port):
    return subprocess.run(["ip", "netns", "exec", client.name, sys.executable, "-I", "-c", GET, "192.0.2.1", str(port)],
                          capture_output=True, text=True, timeout=30)


def veths(node):
    return sorted(l["ifname"] for l in node.ipj("link", "show") if l["ifname"].startswith("veth"))


def test_podman_containers_on_our_bridge(podman, node, netns, bin_dir, request):
    write_network(podman)
    with open(os.path.join(podman.tmp, "plugins", "portmap")) as f:
        assert os.path.join(bin_dir, "portmap") in f.read(), "podman's portmap is the one under test"
    client = client_of(node, netns)
    build_image(podman, podman.tmp)
    assert NET in podman("network", "ls", "--format", "{{.Name}}").stdout.split(), "podman sees the network (VERSION succeeded)"

    podman("run", "-d", "--cap-add", "NET_RAW", "--name", "a", "--network", NET, "-p", f"{HOST_PORT}:80", IMAGE, "sh", "-c", SERVE)
    podman("run", "-d", "--cap-add", "NET_RAW", "--name", "b", "--network", NET, IMAGE, "sleep", "3600")
    ip_a, ip_b = container_ip(podman, "a"), container_ip(podman, "b")
    id_a, id_b = container_id(podman, "a"), container_id(podman, "b")
    assert ip_a != ip_b
    ipam = os.path.join(podman.tmp, "ipam")
    assert allocations(ipam, NET) == {ip_a: id_a, ip_b: id_b}
    assert len(veths(node)) == 2 and node.ipj("link", "show", BRIDGE), "the bridge and veths are in the node namespace"
    assert firewall_mentions(node, ip_a) and firewall_mentions(node, ip_b), "masquerade rules for both containers"
    assert any(str(HOST_PORT) in r for r in firewall_mentions(node, f"{ip_a}:80")), "portmap's DNAT for -p"
    # the published port answers from another namespace, through the node's address
    got = []
    assert eventually(lambda: got.append(fetch(client, HOST_PORT)) or got[-1].stdout.strip() == PAGE, 20), \
        f"-p {HOST_PORT}:80 from the client namespace: {got[-1].returncode} {got[-1].stdout!r} {got[-1].stderr[-500:]!r}"

    # the two containers reach each other over our bridge
    for src, dst in (("a", ip_b), ("b", ip_a)):
        ping = podman("exec", src, "ping", "-c", "1", "-W", "5", dst, check=False)
        assert ping.returncode == 0, f"{src} -> {dst}: {ping.stdout}{ping.stderr}"

    # a container that exits on its own is torn down by conmon's cleanup process, with a minimal environment
    podman("run", "-d", "--name", "c", "--network", NET, IMAGE, "true")
    id_c = container_id(podman, "c")
    assert eventually(lambda: any(c["command"] == "DEL" and c["env"].get("CNI_CONTAINERID") == id_c and c["type"] == "bridge"
                                  for c in logged_calls(os.path.join(podman.tmp, "calls"))), 120), \
        f"conmon's cleanup sent no DEL: {podman.diagnose()}"
    assert eventually(lambda: id_c not in allocations(ipam, NET).values(), 60), "conmon's DEL released the address"
    assert eventually(lambda: len(veths(node)) == 2, 60)

    # stop and remove: podman's DEL through our plugins, nothing left behind
    podman("stop", "-t", "0", "a")
    podman("rm", "-f", "-t", "0", "a", "b", "c")
    assert podman("ps", "-a", "-q").stdout.strip() == ""
    assert fetch(client, HOST_PORT).returncode != 0, "the published port still answers after podman rm"
    assert allocations(ipam, NET) == {}, "every address was released"
    assert eventually(lambda: veths(node) == []), f"veths left behind: {veths(node)}"
    assert firewall_mentions(node, ip_a, ip_b, f"{ip_a}:80", id_a, id_b, id_c) == [], "masquerade and DNAT rules left behind"
    assert os.listdir(os.path.join(podman.tmp, "cni-cache", "results")) == [], "podman's libcni cache is empty"

    calls = logged_calls(os.path.join(podman.tmp, "calls"))
    by_command = {}
    for call in calls:
        by_command.setdefault((call["type"], call["command"]), []).append(call)
    assert ("bridge", "ADD") in by_command and ("bridge", "DEL") in by_command
    for call in by_command[("bridge", "ADD")]:
        assert "prevResult" not in call["stdin"] and call["env"]["CNI_IFNAME"] == "eth0"
        assert call["env"]["CNI_ARGS"].startswith("IgnoreUnknown=1;K8S_POD_NAME=")
    for call in by_command[("bridge", "VERSION")]:
        assert call["env"]["CNI_CONTAINERID"] == "" and call["env"]["CNI_NETNS"] == "dummy"
    pm = [c for c in by_command[("portmap", "ADD")] if c["env"]["CNI_CONTAINERID"] == id_a]
    assert pm and pm[0]["stdin"]["runtimeConfig"] == {"portMappings": [{"hostPort": HOST_PORT, "containerPort": 80, "protocol": "tcp"}]}
    # ADD runs with podman's environment; the DEL of the container that exited came from conmon's cleanup
    # process, whose environment is not the caller's (no CNIT_CALLER): the plugins worked with it
    assert all(c["env"].get("CNIT_CALLER") == "1" for c in by_command[("bridge", "ADD")])
    conmon_del = [c for c in by_command[("bridge", "DEL")] if c["env"].get("CNI_CONTAINERID") == id_c]
    assert conmon_del and "_OCI_SYNCPIPE" in conmon_del[0]["env"] and "CNIT_CALLER" not in conmon_del[0]["env"]
    assert conmon_del[0]["stdin"]["prevResult"]["ips"], "podman's DEL carries the cached result"

    record = request.config.getoption("podman_record")
    if record:
        with open(record, "w") as f:
            json.dump([{k: c[k] for k in ("type", "command", "env", "stdin")} for c in calls], f, indent=1, sort_keys=True)
