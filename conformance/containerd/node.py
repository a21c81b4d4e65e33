"""A throw-away Kubernetes-like node: containerd in its own network, mount and PID namespaces.

Node(bin_dir) builds, under a private work directory in /var/tmp:

* bin/: one logging wrapper per plugin type of the directory under test (CRI's bin_dir, and
  /opt/cni/bin for `ctr run --cni`): each call leaves calls/<ns>-<pid>-<type>.{env,stdin,stdout,rc,bin}
  (.bin: the binary it ran, and where its symlinks lead);
* net.d/: the conflist (CRI's conf_dir, and /etc/cni/net.d for ctr); ipam/: host-local's dataDir;
* cni/: /var/lib/cni inside the node (libcni's result cache, bridge state);
* root/, state/: containerd's root and state, its unix socket state/containerd.sock;
* the node's network namespace (conformance.netenv), with an uplink to a client namespace;
* PID 1 of a new PID and mount namespace (nsinit.py): overlays on /run, /var/lib, /opt, binds
  of the directories above on the paths containerd and ctr use, and, unless the directory
  under test is the reference itself, an empty tmpfs over /usr/lib/cni, which Debian's go-cni
  appends to ctr's CNI_PATH (a type missing from the directory under test must fail, not run
  the reference).

Nothing touches the machine's own network namespace, /run/containerd, /var/lib/containerd,
/etc/cni/net.d, /opt/cni/bin or /var/lib/cni.  close() kills the PID namespace's init by its
PID (the kernel then kills every process in it: containerd, shims, containers), deletes the
namespaces and the work directory.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from conformance import netenv
from conformance.containerd import image

REFERENCE = "/usr/lib/cni"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BRIDGE = "cnitctr0"
SUBNET = "10.88.37.0/24"
NODE_IP, CLIENT_IP = "192.0.2.1", "192.0.2.2"
NSINIT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "nsinit.py")
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
TOOLS = ("containerd", "containerd-shim-runc-v2", "ctr", "runc", "nsenter", "unshare", "mount")


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the test process dies, so even a killed run leaves no node running."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def missing_tools() -> list[str]:
    return [t for t in TOOLS if not shutil.which(t, path=PATH)] + ([image.BUSYBOX] if not os.path.isfile(image.BUSYBOX) else [])


def conflist_types(bin_dir: str) -> list[str]:
    """The conflist's plugin types: bridge and host-local, and portmap when the directory has it."""
    return ["bridge", "host-local"] + (["portmap"] if _executable(bin_dir, "portmap") else [])


def _executable(directory: str, name: str) -> bool:
    path = os.path.join(directory, name)
    return os.path.isfile(path) and os.access(path, os.X_OK)


def missing(bin_dir: str, *types: str) -> list[str]:
    return [t for t in types if not _executable(bin_dir, t)]


def named_types(conflist: dict) -> list[str]:
    """The plugin and IPAM types a conflist names."""
    out = []
    for entry in conflist.get("plugins", []):
        out.append(entry["type"])
        if isinstance(entry.get("ipam"), dict) and entry["ipam"].get("type"):
            out.append(entry["ipam"]["type"])
    return out


class Node:
    def __init__(self, bin_dir: str, conflist: dict | None = None, cni_section: str = ""):
        """conflist: the network to use instead of the harness's own (a README's, as a user copies it);
        cni_section: the body of containerd's [plugins."io.containerd.grpc.v1.cri".cni] table instead of
        the harness's (whose bin_dir and conf_dir are /opt/cni/bin and /etc/cni/net.d in the node, too)."""
        self.conflist, self.cni_section = conflist, cni_section
        self.bin_dir = os.path.realpath(bin_dir)
        self.work = tempfile.mkdtemp(prefix="cnitctr", dir="/var/tmp")
        self.network = netenv.unique_name("ctr")
        self.init_pid = 0
        self.holder: subprocess.Popen | None = None
        self.daemon: subprocess.Popen | None = None
        self.netns: netenv.Netns | None = None
        self.client: netenv.Netns | None = None
        self.socket = os.path.join(self.work, "state", "containerd.sock")
        wanted = named_types(conflist) if conflist else conflist_types(self.bin_dir)
        self.types = sorted(set(wanted + ["loopback"]) - set(missing(self.bin_dir, "loopback")))
        try:
            self._layout()
            self._networks()
            self._namespaces()
            self._start_containerd()
            self._import_image()
        except BaseException:
            self.close()
            raise

    # --- set-up -------------------------------------------------------------------------

    def path(self, *parts: str) -> str:
        return os.path.join(self.work, *parts)

    def _layout(self) -> None:
        for sub in ("bin", "calls", "net.d", "cni", "root", "state", "opt-containerd", "tmp", "pods"):
            os.makedirs(self.path(sub))
        os.chmod(self.path("tmp"), 0o1777)
        os.makedirs(self.path("ipam"), mode=0o700)
        for name in self.types:
            self._wrapper(name)
        conf = {
            "cniVersion": "1.0.0",
            "name": self.network,
            "plugins": [{"type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": True, "hairpinMode": True,
                         "ipam": {"type": "host-local", "ranges": [[{"subnet": SUBNET}]], "routes": [{"dst": "0.0.0.0/0"}],
                                  "dataDir": self.path("ipam")}}],
        }
        if "portmap" in self.types:
            conf["plugins"].append({"type": "portmap", "capabilities": {"portMappings": True}})
        if self.conflist:
            conf = self.conflist
            self.network = conf["name"]
        with open(self.path("net.d", "10-cnitctr.conflist"), "w") as f:
            json.dump(conf, f, indent=1)
        image.oci_archive(self.path("image.tar"))
        with open(self.path("containerd.toml"), "w") as f:
            f.write(self._config())

    def _wrapper(self, name: str) -> None:
        """bin/<name>: record the call (environment, stdin, stdout, exit status, which binary) and run the real plugin."""
        real = os.path.join(self.bin_dir, name)
        base = shlex.quote(self.path("calls")) + f'/"$(/bin/date +%s%N)-$$-{name}"'
        script = (
            "#!/bin/sh\n"
            f"b={base}\n"
            '/usr/bin/env > "$b.env"\n'
            '/bin/cat > "$b.stdin"\n'
            f'echo {shlex.quote(real)} > "$b.bin"\n'
            f'/bin/readlink -f {shlex.quote(real)} >> "$b.bin"\n'
            f'{shlex.quote(real)} "$@" < "$b.stdin" > "$b.stdout"\n'
            "rc=$?\n"
            'echo $rc > "$b.rc"\n'
            '/bin/cat "$b.stdout"\n'
            "exit $rc\n"
        )
        with open(self.path("bin", name), "w") as f:
            f.write(script)
        os.chmod(self.path("bin", name), 0o755)

    def _config(self) -> str:
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        return f"""version = 2
root = "{self.path('root')}"
state = "{self.path('state')}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs",
                    "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{self.socket}"
  tcp_address = ""

[ttrpc]
  address = "{self.socket}.ttrpc"

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{self.path('opt-containerd')}"

[{cri}]
  sandbox_image = "{image.NAME}"
  disable_cgroup = true
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

[{cri}.cni]
{self.cni_section or self._cni_section()}

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
"""

    def _cni_section(self) -> str:
        return f'''  bin_dir = "{self.path('bin')}"
  conf_dir = "{self.path('net.d')}"
  max_conf_num = 1'''

    def _networks(self) -> None:
        """The node's network namespace, and a client namespace on an uplink (192.0.2.0/24) to reach hostPorts from."""
        self.netns = netenv.Netns("cn")
        self.client = netenv.Netns("cc")
        self.netns.ip("link", "add", "uplink0", "type", "veth", "peer", "name", "uplink1", "netns", self.client.name)
        self.netns.ip("addr", "add", f"{NODE_IP}/24", "dev", "uplink0")
        self.netns.ip("link", "set", "uplink0", "up")
        self.client.ip("addr", "add", f"{CLIENT_IP}/24", "dev", "uplink1")
        self.client.ip("link", "set", "uplink1", "up")
        self.client.ip("route", "add", "default", "via", NODE_IP)

    def _mount_spec(self) -> dict:
        binds = [(self.path("bin"), "/opt/cni/bin"), (self.path("net.d"), "/etc/cni/net.d"), (self.path("cni"), "/var/lib/cni"),
                 (self.path("tmp"), "/tmp")]
        overlays = ["/run", "/var/lib", "/opt"]
        for _, target in binds:  # a bind target the machine lacks is created inside an overlay, never on the machine
            ancestor = target
            while not os.path.isdir(ancestor):
                ancestor = os.path.dirname(ancestor)
            if ancestor != target and not any(ancestor == o or ancestor.startswith(o + "/") for o in overlays):
                overlays.append(ancestor)
        empty = [REFERENCE] if os.path.isdir(REFERENCE) and self.bin_dir != os.path.realpath(REFERENCE) else []
        return {"work": self.work, "overlays": overlays, "binds": binds, "empty": empty, "keep": self.kept, "ready": self.path("ready")}

    @property
    def kept(self) -> list[str]:
        """The checkout and the plugin directory, where the node's own /tmp would hide them (a clone under /tmp):
        the wrappers exec the plugins by absolute path, and dist/src-bin's run the checkout's virtualenv."""
        out = []
        for path in (REPO, self.bin_dir):
            if path.startswith("/tmp/") and not any(path == k or path.startswith(k + "/") for k in out):
                out.append(path)
        return out

    def tmp_entries(self) -> list[str]:
        """What the node's /tmp holds beyond the mount points of `kept`."""
        mine = {path.split("/")[2] for path in self.kept}
        return [name for name in self.listdir("/tmp") if name not in mine]

    def _namespaces(self) -> None:
        argv = ["nsenter", f"--net={self.netns.path}", "--", "unshare", "--mount", "--propagation", "private", "--pid", "--fork",
                "--kill-child", "--mount-proc", "--", sys.executable, "-I", NSINIT, json.dumps(self._mount_spec())]
        # unshare --kill-child: when unshare dies (also of _die_with_parent), the init and so the whole node die with it
        with open(self.path("nsinit.log"), "wb") as log:
            self.holder = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, env={"PATH": PATH}, cwd="/",
                                           preexec_fn=_die_with_parent)
        deadline = time.monotonic() + 30
        while not os.path.exists(self.path("ready")):
            if self.holder.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the node's namespaces did not come up: {self._tail('nsinit.log')}")
            time.sleep(0.05)
        with open(f"/proc/{self.holder.pid}/task/{self.holder.pid}/children") as f:
            self.init_pid = int(f.read().split()[0])

    def _start_containerd(self) -> None:
        argv = self.enter_argv() + ["containerd", "--config", self.path("containerd.toml")]
        with open(self.path("containerd.log"), "wb") as log:
            self.daemon = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, env={"PATH": PATH}, cwd="/")
        deadline = time.monotonic() + 60
        while True:
            if self.daemon.poll() is not None:
                raise RuntimeError(f"containerd exited: {self._tail('containerd.log')}")
            if os.path.exists(self.socket):
                out = self.ctr("plugins", "list", check=False)
                if out.returncode == 0 and any(line.split()[1:2] == ["cri"] and line.split()[-1] == "ok" for line in out.stdout.splitlines()):
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"containerd's CRI plugin did not come up: {self._tail('containerd.log')}")
            time.sleep(0.2)

    def _import_image(self) -> None:
        for namespace in ("k8s.io", "default"):  # CRI's namespace, and ctr's (the content store is shared)
            self.ctr("-n", namespace, "images", "import", self.path("image.tar"))

    def _tail(self, name: str, size: int = 4000) -> str:
        try:
            with open(self.path(name), "rb") as f:
                return f.read().decode(errors="replace")[-size:]
        except OSError:
            return ""

    # --- inside the node ----------------------------------------------------------------

    def enter_argv(self) -> list[str]:
        """argv prefix running a command in the node: its network, mount and PID namespaces, cwd /, environment reset."""
        return ["nsenter", f"--target={self.init_pid}", "--net", "--mount", "--pid", "--wd=/", "--", "env", "-i", f"PATH={PATH}"]

    def run(self, *argv: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        proc = subprocess.run(self.enter_argv() + list(argv), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout, cwd="/")
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(argv)}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    def ctr(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        return self.run("ctr", "--address", self.socket, *args, check=check, timeout=timeout)

    def in_pod(self, netns_path: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run a machine tool in a pod's network namespace (a path in the node's mount namespace)."""
        return self.run("nsenter", f"--net={netns_path}", "--", *argv, check=check)

    def exists(self, path: str) -> bool:
        """Whether path exists in the node's mount namespace."""
        return self.run("test", "-e", path, check=False).returncode == 0

    def listdir(self, path: str) -> list[str]:
        out = self.run("ls", "-A", path, check=False)
        return out.stdout.split() if out.returncode == 0 else []

    def processes(self) -> dict[int, str]:
        """Every process of the node ({pid: command}) but its init: what descends from the PID namespace's init (shims,
        which daemonise, and the containers) or from the nsenter that started containerd (containerd itself)."""
        parents: dict[int, int] = {}
        names: dict[int, str] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmdline = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
            names[int(entry)] = cmdline or stat.split("(", 1)[1].rsplit(")", 1)[0]
        found, frontier = {}, {self.init_pid} | ({self.daemon.pid} if self.daemon else set())
        while frontier:
            children = {pid for pid, ppid in parents.items() if ppid in frontier and pid not in found}
            found.update({pid: names[pid] for pid in children})
            frontier = children
        return found

    def veths(self) -> list[str]:
        """The node's links enslaved to the pod bridge."""
        return sorted(link["ifname"] for link in self.netns.ipj("link", "show") if link.get("master") == BRIDGE)

    def cached_results(self) -> list[str]:
        """libcni's cache entries (/var/lib/cni/results in the node)."""
        try:
            return sorted(os.listdir(self.path("cni", "results")))
        except FileNotFoundError:
            return []

    def calls(self) -> list[dict]:
        """The plugin calls the wrappers recorded, oldest first: {type, command, env, stdin, stdout, rc, bin, resolved}
        (bin: the plugin the wrapper ran; resolved: that path with every symlink resolved)."""
        directory = self.path("calls")
        stems = sorted({name.rsplit(".", 1)[0] for name in os.listdir(directory)}, key=lambda s: (int(s.split("-", 1)[0]), s))
        out = []
        for stem in stems:
            record = {"type": stem.split("-", 2)[2]}
            for part in ("env", "stdin", "stdout", "rc", "bin"):
                try:
                    with open(os.path.join(directory, f"{stem}.{part}"), "rb") as f:
                        record[part] = f.read().decode(errors="replace")
                except FileNotFoundError:
                    record[part] = None
            env = dict(line.split("=", 1) for line in (record["env"] or "").splitlines() if "=" in line)
            record["env"], record["command"] = env, env.get("CNI_COMMAND", "")
            record["bin"], record["resolved"] = ((record["bin"] or "").split("\n") + ["", ""])[:2]
            record["rc"] = int(record["rc"]) if (record["rc"] or "").strip() else None
            for part in ("stdin", "stdout"):
                try:
                    record[part] = json.loads(record[part]) if record[part] else None
                except ValueError:
                    pass
            out.append(record)
        return out

    def forget_calls(self) -> None:
        for name in os.listdir(self.path("calls")):
            os.unlink(self.path("calls", name))

    def log(self) -> str:
        return self._tail("containerd.log", 6000)

    # --- tear-down ----------------------------------------------------------------------

    def _containers(self) -> list[str]:
        """The ids of every container containerd knows (CRI's sandboxes in k8s.io, ctr's in default)."""
        ids = []
        for namespace in ("k8s.io", "default"):
            out = self.ctr("-n", namespace, "containers", "list", "-q", check=False, timeout=30)
            ids += out.stdout.split() if out.returncode == 0 else []
        return ids

    def _stop_everything(self) -> None:
        """Best effort before the kill: stop and remove what a failed test left, so containerd tears its networks down and
        runc removes the cgroups it created for the containers (/sys/fs/cgroup/*/<id>)."""
        for namespace in ("k8s.io", "default"):
            for task in self.ctr("-n", namespace, "tasks", "list", "-q", check=False, timeout=30).stdout.split():
                self.ctr("-n", namespace, "tasks", "kill", "-s", "SIGKILL", task, check=False, timeout=30)
        from conformance.containerd.cri import RuntimeClient

        client = RuntimeClient(self.socket, timeout=30)
        try:
            for sandbox in client.list_pods():
                client.stop_pod(sandbox)
                client.remove_pod(sandbox)
        finally:
            client.close()
        for container in self.ctr("-n", "default", "containers", "list", "-q", check=False, timeout=30).stdout.split():
            self.ctr("-n", "default", "tasks", "delete", "-f", container, check=False, timeout=30)
            self.ctr("-n", "default", "containers", "delete", container, check=False, timeout=30)

    def close(self) -> None:
        containers: list[str] = []
        try:
            if self.daemon is not None and self.daemon.poll() is None:
                try:
                    containers = self._containers()
                    if containers:
                        self._stop_everything()
                except Exception as e:  # the kill below ends everything anyway; say why the clean way failed
                    print(f"containerd node {self.work}: clean stop failed: {e!r}", file=sys.stderr)
            if self.init_pid:
                # the init of our PID namespace, by PID: the kernel kills containerd, its shims and the containers with it
                try:
                    os.kill(self.init_pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            for proc in (self.daemon, self.holder):
                if proc is not None:
                    if proc.poll() is None and not self.init_pid:
                        proc.kill()
                    proc.wait(timeout=60)
        finally:
            # cgroups runc created for containers that were killed rather than deleted (empty, so rmdir is enough)
            leftover = [os.path.join("/sys/fs/cgroup", c, container) for container in containers for c in os.listdir("/sys/fs/cgroup")]
            deadline = time.monotonic() + 10
            while leftover and time.monotonic() < deadline:  # EBUSY until the killed processes are gone
                for path in list(leftover):
                    try:
                        os.rmdir(path)
                    except FileNotFoundError:
                        leftover.remove(path)
                    except OSError:
                        continue
                    else:
                        leftover.remove(path)
                time.sleep(0.1 if leftover else 0)
            for ns in (self.client, self.netns):
                if ns is not None:
                    ns.close()
            shutil.rmtree(self.work, ignore_errors=True)
