"""The bad-input matrix: hostile or broken input for host-local, bridge, vxlan, loopback and portmap.

Each case names the plugin, what is wrong, the command, the code it must get
and a fragment of the message.  tests/test_bad_input.py runs every case as a
real plugin call inside a node namespace holding one working pod, and checks
that the call fails with exactly one CNI error document and that the node,
both pods and every file under the test's directory (the state directories
and a canary outside them) are byte-for-byte what they were.  Cases marked
control must succeed; they guard against over-rejection where the safe
answer is to carry on (a planted last_reserved_ip symlink, a malformed
prevResult on DEL).

docs/bad-input.md is generated from CASES:
    .venv/bin/python -m tests.badinput --write
and a test fails when the file is out of date.  Row numbers refer to the
bad-input matrix in the project's reliability and security notes, section 4.
"""
import copy
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Callable

from conformance.netenv import Netns, Outcome, ns_state, tree_state

IFNAME = "eth0"
SUBNET = "10.161.0.0/24"
OVERLAY = "198.19.0.0/16"
NODE_UPLINK = "192.0.2.1"
DOC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "bad-input.md")


# --- the world a case runs in -------------------------------------------------------


class World:
    """A node namespace with an uplink named eth0 and one working pod ("seed"), a second pod, and a canary outside dataDir."""

    def __init__(self, plugin: str, bin_dir: str, make_netns, tmp_path, seed: bool = True):
        self.plugin = plugin
        self.bin_dir = bin_dir
        self.binary = os.path.join(bin_dir, plugin)
        self.tmp = str(tmp_path)
        self.state = os.path.join(self.tmp, "state")
        os.mkdir(self.state, 0o700)
        self.outside = os.path.join(self.tmp, "outside")
        os.mkdir(self.outside, 0o700)
        self.canary = os.path.join(self.outside, "canary")
        with open(self.canary, "w") as f:
            f.write("canary: must never change\n")
        self.node = make_netns("n")
        # the node's own eth0: what a DEL in the wrong namespace would destroy (no dummy module here: a veth)
        self.node.ip("link", "add", "eth0", "type", "veth", "peer", "name", "uplink0")
        self.node.ip("addr", "add", f"{NODE_UPLINK}/24", "dev", "eth0")
        self.node.ip("link", "set", "eth0", "up")
        self.node.ip("link", "set", "uplink0", "up")
        self.node.ip("route", "add", "default", "via", "192.0.2.254")
        self.pod = make_netns("c")
        self.pod2 = make_netns("c")
        if plugin == "loopback":
            # pod2's lo down, as in a new pod: a refused ADD that brought it up anyway would show in the snapshot
            self.pod2.ip("link", "set", "lo", "down")
        self.seed_result = None
        if seed:
            out = self.run("ADD", self.conf(), cid="seed", netns=self.pod.path)
            assert out.ok, f"the good {plugin} config must work: {out}"
            self.seed_result = out.json

    @property
    def ipam_dir(self) -> str:
        return os.path.join(self.state, "ipam")

    @property
    def net_dir(self) -> str:
        """host-local's directory of the network."""
        return os.path.join(self.ipam_dir, "badnet")

    def conf(self) -> dict:
        ipam = {"type": "host-local", "subnet": SUBNET, "dataDir": self.ipam_dir}
        if self.plugin == "host-local":
            return {"cniVersion": "1.1.0", "name": "badnet", "ipam": ipam}
        if self.plugin == "loopback":
            return {"cniVersion": "1.1.0", "name": "badnet", "type": "loopback"}
        if self.plugin == "portmap":
            # chained after a bridge that gave the pod 10.161.0.5 (the seed's rules are what a refusal must leave alone)
            return {"cniVersion": "1.1.0", "name": "badnet", "type": "portmap", "dataDir": os.path.join(self.state, "portmap"),
                    "runtimeConfig": {"portMappings": [{"hostPort": 18080, "containerPort": 80, "protocol": "tcp"}]},
                    "prevResult": {"cniVersion": "1.1.0", "ips": [{"address": "10.161.0.5/24"}]}}
        if self.plugin == "bridge":
            return {"cniVersion": "1.1.0", "name": "badnet", "type": "bridge", "bridge": "cnibad0", "isGateway": True, "ipMasq": True,
                    "dataDir": os.path.join(self.state, "bridge"), "ipam": ipam}
        peers = [{"node": "n1", "vtep": NODE_UPLINK, "subnet": "198.19.1.0/24"}, {"node": "n2", "vtep": "192.0.2.2", "subnet": "198.19.2.0/24"}]
        return {"cniVersion": "1.1.0", "name": "badnet", "type": "vxlan", "network": OVERLAY, "nodeName": "n1", "peerSource": "static",
                "peers": peers, "dataDir": os.path.join(self.state, "vxlan"), "ipam": {"dataDir": self.ipam_dir}}

    def env(self, command: str, cid: str = "bad1", netns: str | None = None, ifname: str = IFNAME) -> dict:
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "CNI_COMMAND": command, "CNI_PATH": self.bin_dir}
        if command in ("ADD", "DEL", "CHECK"):
            env.update(CNI_CONTAINERID=cid, CNI_NETNS=self.pod2.path if netns is None else netns, CNI_IFNAME=ifname)
        return env

    def run(self, command: str, config, cid: str = "bad1", netns: str | None = None, env: dict | None = None, stdin: bytes | None = None,
            mount_script: str = "", script_args: tuple = ()) -> Outcome:
        """The plugin in the node; with mount_script, in a private mount namespace of its own where the script ran first.

        The script gets the plugin as $1 and script_args as $2...; it must end by running "$1" (which reads our stdin).
        """
        full = self.env(command, cid, netns)
        for key, value in (env or {}).items():
            if value is None:
                full.pop(key, None)
            else:
                full[key] = value
        data = stdin if stdin is not None else json.dumps(config).encode()
        argv = ["ip", "netns", "exec", self.node.name, self.binary]
        if mount_script:
            # mounts made here live and die with this one process (unshare -m: private propagation)
            argv[4:] = ["unshare", "-m", "--propagation", "private", "sh", "-c", mount_script, "sh", self.binary, *script_args]
        proc = subprocess.run(argv, input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full, timeout=60, cwd=self.tmp)
        return Outcome(proc.returncode, proc.stdout, proc.stderr)

    def snapshot(self) -> dict:
        files = tree_state(self.tmp)
        for name, (mode, size, digest) in files.items():
            if os.path.basename(name).startswith("last_reserved_ip."):
                # the round-robin cursor moves on failed ADDs as in the reference (its differential test pins the order);
                # the harness notes (section 8.1) ignore its content
                files[name] = (mode, None, None)
        return {"node": ns_state(self.node), "pod": ns_state(self.pod), "pod2": ns_state(self.pod2), "files": files}


# --- cases -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    plugin: str  # host-local, bridge, vxlan, loopback or portmap
    what: str
    code: int  # 0: a control case, which must succeed
    fragment: str  # in the error's msg (lower-cased comparison)
    command: str = "ADD"
    conf: Callable | None = None  # conf(config, world) changes the good config in place
    stdin: Callable | bytes | None = None  # raw stdin instead of the config
    env: dict = field(default_factory=dict)  # overrides; None removes; a callable gets the world
    setup: Callable | None = None  # setup(world): planted files, before the snapshot
    check: Callable | None = None  # check(world, outcome): more assertions (control cases, canaries)
    cid: str = "bad1"
    seed: bool = True
    row: str = ""  # the matrix row(s)

    def stdin_for(self, world: World) -> bytes | None:
        return self.stdin(world) if callable(self.stdin) else self.stdin

    def env_for(self, world: World) -> dict:
        return {k: (v(world) if callable(v) else v) for k, v in self.env.items()}

    def config_for(self, world: World) -> dict:
        config = world.conf()
        if self.command == "CHECK" and world.seed_result is not None:
            config["prevResult"] = copy.deepcopy(world.seed_result)
        if self.conf is not None:
            self.conf(config, world)
        return config


def put(path: str, value) -> Callable:
    """A conf change: set a dotted key ("ipam.subnet")."""
    def change(config, world):
        target = config
        *parents, last = path.split(".")
        for p in parents:
            target = target.setdefault(p, {})
        target[last] = value
    return change


def drop(path: str) -> Callable:
    def change(config, world):
        target = config
        *parents, last = path.split(".")
        for p in parents:
            target = target[p]
        target.pop(last, None)
    return change


def both(*changes) -> Callable:
    def change(config, world):
        for c in changes:
            c(config, world)
    return change


def good_json(world: World) -> bytes:
    return json.dumps(world.conf()).encode()


def replace_bytes(old: bytes, new: bytes) -> Callable:
    return lambda world: good_json(world).replace(old, new, 1)


def ipam_key(plugin: str, key: str) -> str:
    """The dotted path of a host-local key in each plugin's config (vxlan merges its ipam section into the delegate's)."""
    return f"ipam.{key}"


# --- planted files (setup) and their canaries (check) ---------------------------------


def plant_symlink(name: str, target: str = "canary") -> Callable:
    """A symlink in host-local's network directory pointing outside (to the canary, or to a path that must not appear)."""
    def setup(world):
        os.symlink(os.path.join(world.outside, target), os.path.join(world.net_dir, name))
    return setup


def symlinked_dir(which: str) -> Callable:
    """<dataDir>/<network> replaced by a symlink to a directory outside, holding a copy of nothing."""
    def setup(world):
        base = {"ipam": world.ipam_dir, "bridge": os.path.join(world.state, "bridge"), "vxlan": os.path.join(world.state, "vxlan")}[which]
        os.makedirs(base, mode=0o700, exist_ok=True)
        victim = os.path.join(world.outside, f"{which}-net")
        os.mkdir(victim, 0o700)
        real = os.path.join(base, "badnet")
        if os.path.isdir(real):
            os.rename(real, os.path.join(base, "moved-away"))
        os.symlink(victim, real)
    return setup


def chmod_net_dir(mode: int) -> Callable:
    def setup(world):
        os.chmod(world.net_dir, mode)
    return setup


def chown_net_dir(world) -> None:
    os.chown(world.net_dir, 65534, 65534)


def nothing_outside(world, outcome) -> None:
    """The canary is untouched and nothing was created outside the state directory."""
    with open(world.canary) as f:
        assert f.read() == "canary: must never change\n"
    assert sorted(os.listdir(world.outside)) == sorted(n for n in os.listdir(world.outside) if n == "canary" or n.endswith("-net")), os.listdir(world.outside)
    for name in os.listdir(world.outside):
        if name.endswith("-net"):
            assert os.listdir(os.path.join(world.outside, name)) == [], f"{name} got {os.listdir(os.path.join(world.outside, name))}"


def control_last_reserved(world, outcome) -> None:
    """Allocation went on; the planted hint was replaced by a file of ours, never written through."""
    nothing_outside(world, outcome)
    path = os.path.join(world.net_dir, "last_reserved_ip.0")
    assert not os.path.islink(path) and os.path.isfile(path)
    assert not os.path.exists(os.path.join(world.outside, "gone")), "a dangling symlink's target was created"


def control_ip_symlink(world, outcome) -> None:
    """An IP-named symlink counts as taken: that address is not handed out, and the link is left alone."""
    nothing_outside(world, outcome)
    assert outcome.json["ips"][0]["address"] != "10.161.0.3/24"
    assert os.path.islink(os.path.join(world.net_dir, "10.161.0.3"))


def control_del_released(world, outcome) -> None:
    """A DEL that had to succeed released the seed's address."""
    assert not [n for n in os.listdir(world.net_dir) if n[0].isdigit()], os.listdir(world.net_dir)


def vxlan_lock_symlink(world) -> None:
    lock = os.path.join(world.state, "vxlan", "badnet", "lock")
    if os.path.lexists(lock):
        os.unlink(lock)
    os.symlink(world.canary, lock)


def warned(fragment: str) -> Callable:
    """A control whose bad logging setting is reported on stderr, and whose symlinked log file was not followed."""
    def check(world, outcome):
        assert fragment in outcome.stderr.decode(errors="replace"), outcome
        nothing_outside(world, outcome)
    return check


def log_symlink(world) -> None:
    os.symlink(world.canary, os.path.join(world.state, "plugin.log"))


def fifo_resolv(world) -> None:
    os.mkfifo(os.path.join(world.outside, "resolv.fifo"))


def not_a_dir_data_dir(world) -> None:
    with open(os.path.join(world.outside, "file"), "w") as f:
        f.write("x")


def not_executable_ipam(world) -> None:
    os.mkdir(os.path.join(world.outside, "cnibin"))
    os.mkdir(os.path.join(world.outside, "cnibin", "host-local-dir"))


NEW_LINKS = {"bridge": ("cnibad0",), "vxlan": ("cnivx0", "cnivx.1")}


def link_names(ns) -> set[str]:
    return {link["ifname"] for link in ns.ipj("link", "show")}


def no_new_bridge(world, outcome) -> None:
    """On a fresh node (seed=False) a refused ADD left no bridge (cnibad0; for vxlan cnivx0) and no VXLAN device behind."""
    names = link_names(world.node)
    left = [n for n in NEW_LINKS.get(world.plugin, ()) if n in names]
    assert not left, f"a refused ADD on a fresh node left {left} behind ({sorted(names)})"


def granted(address: str) -> Callable:
    """A control whose ADD got exactly the requested address."""
    def check(world, outcome):
        assert [ip["address"] for ip in outcome.json["ips"]] == [address], outcome
    return check


def route_with(key: str, value) -> Callable:
    """ipam.routes holding one otherwise good route whose `key` is `value`."""
    return put("ipam.routes", [{"dst": "10.99.0.0/16", key: value}])


def peer_change(index: int, **fields) -> Callable:
    """Change vxlan's static peers[index] (fields set to None are removed)."""
    def change(config, world):
        peer = config["peers"][index]
        for key, value in fields.items():
            if value is None:
                peer.pop(key, None)
            else:
                peer[key] = value
    return change


def peer_added(**peer) -> Callable:
    return lambda config, world: config["peers"].append(dict(peer))


def _wrong_prev_v020(config, world):
    """A 0.2.0-shaped prevResult in a 1.1.0 config: no "ips", an "ip4" object instead."""
    config["prevResult"] = {"cniVersion": "0.2.0", "ip4": {"ip": "10.161.0.2/24", "gateway": "10.161.0.1"}}


def _prev_other_ip(config, world):
    config["prevResult"]["ips"][0]["address"] = "10.161.0.200/24"


HUGE = 5 << 20  # over the 4 MiB stdin cap


def _cases() -> list[Case]:
    cases: list[Case] = []
    add = cases.append
    short = {"host-local": "hl", "bridge": "br", "vxlan": "vx"}

    # A. stdin and decoding, for every plugin (the protocol layer is shared; each binary must wire it up)
    for plugin, p in short.items():
        add(Case(f"{p}-stdin-empty", plugin, "empty stdin", 6, "failed to decode", stdin=b"", row="1"))
        add(Case(f"{p}-stdin-truncated", plugin, "truncated JSON", 6, "failed to decode", stdin=lambda w: good_json(w)[:40], row="2"))
        add(Case(f"{p}-stdin-null", plugin, "JSON null", 6, "failed to decode", stdin=b"null", row="4"))
        add(Case(f"{p}-stdin-non-utf8", plugin, "non-UTF-8 bytes in the network name", 6, "failed to decode",
                 stdin=replace_bytes(b'"badnet"', b'"bad\xffnet"'), row="5"))
        add(Case(f"{p}-stdin-huge", plugin, "stdin over the 4 MiB cap", 5, "too large", stdin=lambda w: b" " * HUGE + good_json(w), row="10"))
        add(Case(f"{p}-version-unsupported", plugin, 'cniVersion "9.9.9"', 1, "incompatible cni versions", conf=put("cniVersion", "9.9.9"), row="16"))
    add(Case("br-stdin-array", "bridge", "top level is a list", 6, "failed to decode", stdin=b"[1, 2]", row="3"))
    add(Case("br-stdin-surrogate", "bridge", "lone surrogate in a string", 6, "failed to decode",
             stdin=replace_bytes(b'"cnibad0"', b'"cni\\ud800"'), row="6"))
    add(Case("br-stdin-nan", "bridge", "NaN as a value", 6, "failed to decode", stdin=replace_bytes(b'"isGateway": true', b'"mtu": NaN'), row="7"))
    add(Case("br-stdin-deep", "bridge", "nesting 100,000 deep", 6, "failed to decode", stdin=b"[" * 100000 + b"]" * 100000, row="8"))
    add(Case("br-stdin-bigint", "bridge", "an integer of 5,000 digits", 6, "failed to decode",
             stdin=replace_bytes(b'"isGateway": true', b'"mtu": ' + b"9" * 5000), row="9"))
    add(Case("br-stdin-dupkey", "bridge", "duplicate key", 6, "failed to decode",
             stdin=replace_bytes(b'"isGateway": true', b'"bridge": "other0", "isGateway": true'), row="11"))

    # B. versions
    add(Case("hl-version-inexact", "host-local", 'cniVersion "1.0" (not exact)', 1, "incompatible cni versions", conf=put("cniVersion", "1.0"), row="17"))
    add(Case("vx-version-number", "vxlan", "cniVersion a number", 6, "invalid cniversion", conf=put("cniVersion", 1), row="19"))
    add(Case("br-check-0.3.1", "bridge", "CHECK with 0.3.1", 1, "does not allow check", command="CHECK", conf=put("cniVersion", "0.3.1"), cid="seed",
             env={"CNI_NETNS": lambda w: w.pod.path}, row="21"))
    add(Case("br-check-garbage-version", "bridge", 'CHECK with cniVersion "abc"', 6, "invalid cniversion", command="CHECK", conf=put("cniVersion", "abc"),
             cid="seed", env={"CNI_NETNS": lambda w: w.pod.path}, row="18"))
    add(Case("hl-gc-1.0.0", "host-local", "GC with 1.0.0", 1, "does not allow gc", command="GC", conf=put("cniVersion", "1.0.0"), row="22"))
    add(Case("vx-status-1.0.0", "vxlan", "STATUS with 1.0.0", 1, "does not allow status", command="STATUS", conf=put("cniVersion", "1.0.0"), row="22"))
    add(Case("hl-two-v4-sets-0.2.0", "host-local", "two IPv4 range sets with 0.2.0", 1, "",
             conf=both(put("cniVersion", "0.2.0"), drop("ipam.subnet"), put("ipam.ranges", [[{"subnet": SUBNET}], [{"subnet": "10.162.0.0/24"}]])), row="23"))

    # C. environment variables
    add(Case("hl-command-unknown", "host-local", "CNI_COMMAND=FROB", 4, "unknown cni_command", env={"CNI_COMMAND": "FROB"}, row="25"))
    add(Case("vx-command-lowercase", "vxlan", "CNI_COMMAND=add (lower case)", 4, "unknown cni_command", env={"CNI_COMMAND": "add"}, row="25"))
    add(Case("hl-env-all-missing", "host-local", "CNI_CONTAINERID, CNI_NETNS and CNI_IFNAME all missing", 4,
             "[cni_containerid,cni_netns,cni_ifname] missing", env={"CNI_CONTAINERID": None, "CNI_NETNS": None, "CNI_IFNAME": None}, row="27"))
    add(Case("br-cid-empty", "bridge", "CNI_CONTAINERID empty", 4, "cni_containerid", env={"CNI_CONTAINERID": ""}, row="28"))
    add(Case("vx-cid-dotdot", "vxlan", "CNI_CONTAINERID ../x (path escape)", 4, "cni_containerid", cid="../x", row="29"))
    add(Case("hl-cid-slash", "host-local", "CNI_CONTAINERID a/b", 4, "cni_containerid", cid="a/b", row="29"))
    add(Case("br-cid-newline", "bridge", "CNI_CONTAINERID with a newline", 4, "cni_containerid", cid="x\ny", row="29"))
    add(Case("br-cid-10000", "bridge", "CNI_CONTAINERID of 10,000 characters", 4, "cni_containerid", cid="c" * 10000, row="30"))
    add(Case("br-ifname-16", "bridge", "CNI_IFNAME of 16 bytes", 4, "cni_ifname", env={"CNI_IFNAME": "a" * 16}, row="31"))
    add(Case("hl-ifname-utf8-16", "host-local", "CNI_IFNAME of 8 x é (16 bytes)", 4, "cni_ifname", env={"CNI_IFNAME": "é" * 8}, row="32"))
    add(Case("hl-ifname-dotdot", "host-local", "CNI_IFNAME ..", 4, "cni_ifname", env={"CNI_IFNAME": ".."}, row="33"))
    add(Case("vx-ifname-slash", "vxlan", "CNI_IFNAME with /", 4, "cni_ifname", env={"CNI_IFNAME": "a/b"}, row="34"))
    add(Case("br-ifname-colon", "bridge", "CNI_IFNAME with :", 4, "cni_ifname", env={"CNI_IFNAME": "eth0:1"}, row="34"))
    add(Case("br-ifname-template", "bridge", "CNI_IFNAME eth%d (a kernel name template)", 4, "cni_ifname", env={"CNI_IFNAME": "eth%d"}, row="35"))
    add(Case("br-ifname-non-utf8", "bridge", "CNI_IFNAME with invalid UTF-8", 4, "cni_ifname", env={"CNI_IFNAME": b"eth\xff"}, row="36"))
    add(Case("vx-ifname-empty", "vxlan", "CNI_IFNAME empty", 4, "cni_ifname", env={"CNI_IFNAME": ""}, row="37"))
    add(Case("br-netns-missing-add", "bridge", "CNI_NETNS missing on ADD", 4, "cni_netns", env={"CNI_NETNS": None}, row="38"))
    add(Case("br-netns-nonexistent", "bridge", "CNI_NETNS does not exist", 4, "cni_netns", env={"CNI_NETNS": "/run/netns/cnit-no-such-ns"}, row="39"))
    add(Case("vx-netns-regular-file", "vxlan", "CNI_NETNS is a regular file", 4, "cni_netns", env={"CNI_NETNS": lambda w: w.canary}, row="40"))
    add(Case("br-netns-directory", "bridge", "CNI_NETNS is a directory", 4, "cni_netns", env={"CNI_NETNS": lambda w: w.outside}, row="40"))
    add(Case("hl-netns-mount-ns", "host-local", "CNI_NETNS is a mount namespace", 4, "cni_netns", env={"CNI_NETNS": "/proc/self/ns/mnt"}, row="41"))
    add(Case("br-netns-own-add", "bridge", "CNI_NETNS is the plugin's own (/proc/self/ns/net), ADD", 4, "cni_netns",
             env={"CNI_NETNS": "/proc/self/ns/net"}, row="42"))
    add(Case("br-netns-own-del", "bridge", "CNI_NETNS is the plugin's own, DEL of a pod whose ifname is the node's eth0", 4, "cni_netns",
             command="DEL", cid="seed", env={"CNI_NETNS": "/proc/self/ns/net"}, row="42"))
    add(Case("vx-netns-node-path", "vxlan", "CNI_NETNS is the node's /run/netns path (the plugin's own under another name)", 4, "cni_netns",
             env={"CNI_NETNS": lambda w: w.node.path}, row="42"))
    add(Case("vx-netns-node-path-del", "vxlan", "the same on DEL", 4, "cni_netns", command="DEL", cid="seed",
             env={"CNI_NETNS": lambda w: w.node.path}, row="42"))
    add(Case("hl-netns-init", "host-local", "CNI_NETNS is the init namespace (/proc/1/ns/net)", 4, "cni_netns", env={"CNI_NETNS": "/proc/1/ns/net"}, row="42"))
    add(Case("br-netns-relative", "bridge", "CNI_NETNS relative", 4, "cni_netns", env={"CNI_NETNS": "run/netns/x"}, row="43"))
    add(Case("hl-path-missing-gc", "host-local", "CNI_PATH missing on GC", 4, "cni_path", command="GC", env={"CNI_PATH": None}, row="44"))
    add(Case("br-args-bad-pair", "bridge", "CNI_ARGS with a pair that is not KEY=VALUE", 4, "cni_args", env={"CNI_ARGS": "IgnoreUnknown=1;=x"}, row="46"))
    add(Case("br-args-bad-ip", "bridge", "CNI_ARGS IP=not-an-ip", 4, "", env={"CNI_ARGS": "IP=not-an-ip"}, row="48"))
    add(Case("hl-args-huge", "host-local", "CNI_ARGS over 64 KiB", 4, "cni_args", env={"CNI_ARGS": "K=" + "v" * (65 << 10)}, row="49"))

    # D. network and bridge config
    add(Case("br-name-missing", "bridge", "network name missing", 7, "missing network name", conf=drop("name"), row="50"))
    add(Case("hl-name-dotdot", "host-local", "network name ../x (path escape)", 7, "network name", conf=put("name", "../x"), row="51"))
    add(Case("vx-name-slash", "vxlan", "network name a/b", 7, "network name", conf=put("name", "a/b"), row="51"))
    add(Case("br-name-hidden", "bridge", "network name .hidden", 7, "network name", conf=put("name", ".hidden"), row="51"))
    add(Case("hl-name-256", "host-local", "network name of 256 bytes", 7, "network name", conf=put("name", "n" * 256), row="52"))
    add(Case("br-bridge-colon", "bridge", "bridge name with :", 7, "bridge", conf=put("bridge", "cni:0"), row="54"))
    add(Case("br-bridge-dotdot", "bridge", "bridge name ..", 7, "bridge", conf=put("bridge", ".."), row="54"))
    add(Case("br-bridge-is-lo", "bridge", "bridge names an existing non-bridge (lo)", 103, "not a bridge", conf=put("bridge", "lo"), row="56"))
    add(Case("br-mtu-true", "bridge", "mtu true (a bool is not an int)", 7, "mtu", conf=put("mtu", True), row="14"))
    add(Case("br-isgateway-string", "bridge", 'isGateway "yes"', 7, "isgateway", conf=put("isGateway", "yes"), row="14"))
    add(Case("br-ipam-type-relative", "bridge", "ipam.type ../../../bin/true", 7, "plugin name", conf=put("ipam.type", "../../../bin/true"), row="62"))
    add(Case("br-ipam-type-absolute", "bridge", "ipam.type /bin/true", 7, "plugin name", conf=put("ipam.type", "/bin/true"), row="62"))
    add(Case("br-ipam-type-nul", "bridge", "ipam.type with a NUL", 7, "plugin name", conf=put("ipam.type", "host-local\0x"), row="62"))
    add(Case("br-ipam-type-missing", "bridge", "ipam.type missing from CNI_PATH", 7, "missing from cni_path", conf=put("ipam.type", "cnit-no-such-ipam"), row="63"))
    add(Case("br-ipam-type-dir", "bridge", "ipam.type names a directory in CNI_PATH", 7, "missing from cni_path",
             conf=put("ipam.type", "host-local-dir"), setup=not_executable_ipam, env={"CNI_PATH": lambda w: os.path.join(w.outside, "cnibin")}, row="64"))
    add(Case("br-datadir-relative", "bridge", "dataDir relative", 7, "datadir", conf=put("dataDir", "rel/bridge"), row="84"))
    add(Case("br-datadir-dotdot", "bridge", "dataDir with ..", 7, "datadir", conf=lambda c, w: c.update(dataDir=w.state + "/../outside"), row="84"))
    add(Case("vx-delegate-type-path", "vxlan", "delegate type ../../bin/true (a path)", 7, "plugin name", conf=put("delegate", {"type": "../../bin/true"}),
             seed=False, row="62"))
    add(Case("vx-delegate-type-missing", "vxlan", "delegate type missing from CNI_PATH", 7, "missing from cni_path",
             conf=put("delegate", {"type": "cnit-no-such-plugin"}), seed=False, row="63"))

    # E. host-local's ranges and files (through each plugin where it is reached)
    for plugin, p in (("host-local", "hl"), ("bridge", "br")):
        add(Case(f"{p}-subnet-banana", plugin, "subnet banana", 7, "invalid", conf=put("ipam.subnet", "banana"), row="67"))
    add(Case("hl-no-ranges", "host-local", "no subnet and no ranges", 7, "no ip ranges", conf=drop("ipam.subnet"), row="66"))
    add(Case("hl-subnet-host-bits", "host-local", "subnet with host bits", 7, "", conf=put("ipam.subnet", "10.161.0.5/24"), row="68"))
    add(Case("hl-subnet-31", "host-local", "subnet /31 (too small)", 7, "", conf=put("ipam.subnet", "10.161.0.0/31"), row="69"))
    add(Case("hl-rangeend-outside", "host-local", "rangeEnd outside the subnet", 7, "", conf=put("ipam.rangeEnd", "10.9.0.5"), row="71"))
    add(Case("hl-start-after-end", "host-local", "rangeStart after rangeEnd", 7, "", conf=both(put("ipam.rangeStart", "10.161.0.50"), put("ipam.rangeEnd", "10.161.0.40")), row="72"))
    add(Case("br-gateway-network", "bridge", "gateway = the network address", 7, "", conf=put("ipam.gateway", "10.161.0.0"), row="73"))
    add(Case("hl-gateway-broadcast", "host-local", "gateway = the broadcast address", 7, "", conf=put("ipam.gateway", "10.161.0.255"), row="74"))
    add(Case("hl-gateway-outside", "host-local", "gateway outside the subnet", 7, "", conf=put("ipam.gateway", "10.9.9.1"), row="75"))
    add(Case("hl-ranges-overlap", "host-local", "overlapping ranges in a set", 7, "",
             conf=both(drop("ipam.subnet"), put("ipam.ranges", [[{"subnet": SUBNET}, {"subnet": "10.161.0.0/25"}]])), row="76"))
    add(Case("hl-mixed-families", "host-local", "mixed families in one range set", 7, "",
             conf=both(drop("ipam.subnet"), put("ipam.ranges", [[{"subnet": SUBNET}, {"subnet": "fd00:161::/64"}]])), row="78"))
    add(Case("hl-zone-id", "host-local", "IPv6 zone id in the gateway", 7, "",
             conf=both(drop("ipam.subnet"), put("ipam.ranges", [[{"subnet": "fd00:161::/64", "gateway": "fd00:161::1%eth0"}]])), row="79"))
    add(Case("hl-leading-zeros", "host-local", "leading zeros 010.161.0.0/24", 7, "", conf=put("ipam.subnet", "010.161.0.0/24"), row="82"))
    add(Case("br-route-bad-dst", "bridge", "a route with dst banana", 7, "routes", conf=put("ipam.routes", [{"dst": "banana"}]), row="83"))
    add(Case("hl-datadir-relative", "host-local", "ipam.dataDir relative", 7, "datadir", conf=put("ipam.dataDir", "rel/ipam"), row="84"))
    add(Case("vx-ipam-datadir-dotdot", "vxlan", "ipam.dataDir with ..", 7, "datadir", conf=lambda c, w: c["ipam"].update(dataDir=w.state + "/../outside"),
             seed=False, row="84"))
    add(Case("hl-datadir-file", "host-local", "ipam.dataDir is a regular file", 7, "datadir", setup=not_a_dir_data_dir,
             conf=lambda c, w: c["ipam"].update(dataDir=os.path.join(w.outside, "file")), row="85"))
    add(Case("hl-netdir-symlink", "host-local", "<dataDir>/<network> is a symlink to a directory outside", 105, "unsafe state directory",
             setup=symlinked_dir("ipam"), check=nothing_outside, seed=False, row="86"))
    add(Case("hl-netdir-world-writable", "host-local", "<dataDir>/<network> is world-writable", 105, "unsafe state directory",
             setup=chmod_net_dir(0o777), row="86"))
    add(Case("br-netdir-foreign-owner", "bridge", "host-local's <dataDir>/<network> owned by another user", 105, "unsafe state directory",
             setup=chown_net_dir, row="86"))
    add(Case("hl-lock-symlink", "host-local", "lock is a symlink to a file outside", 105, "unsafe state directory",
             setup=lambda w: (os.unlink(os.path.join(w.net_dir, "lock")), plant_symlink("lock")(w)), check=nothing_outside, row="87"))
    add(Case("br-lock-dangling", "bridge", "lock is a dangling symlink (its target must not be created)", 105, "unsafe state directory",
             setup=lambda w: (os.unlink(os.path.join(w.net_dir, "lock")), plant_symlink("lock", "created-by-plugin")(w)), check=nothing_outside, row="87"))
    add(Case("hl-last-reserved-symlink", "host-local", "last_reserved_ip.0 a dangling symlink (control: ADD works, nothing written through)", 0, "",
             setup=lambda w: (os.unlink(os.path.join(w.net_dir, "last_reserved_ip.0")), plant_symlink("last_reserved_ip.0", "gone")(w)),
             check=control_last_reserved, row="87"))
    add(Case("hl-ip-named-symlink", "host-local", "a symlink named 10.161.0.3 (control: that address is skipped)", 0, "",
             setup=plant_symlink("10.161.0.3"), check=control_ip_symlink, row="87"))
    add(Case("vx-statedir-symlink", "vxlan", "vxlan's <dataDir>/<network> is a symlink to a directory outside", 105, "unsafe state directory",
             setup=symlinked_dir("vxlan"), check=nothing_outside, seed=False, row="86"))
    add(Case("vx-lock-symlink", "vxlan", "vxlan's lock is a symlink to a file outside", 105, "unsafe state directory",
             setup=vxlan_lock_symlink, check=nothing_outside, row="87"))
    add(Case("br-recorddir-symlink", "bridge", "the bridge's <dataDir>/<network> is a symlink to a directory outside", 105, "unsafe state directory",
             setup=symlinked_dir("bridge"), check=nothing_outside, seed=False, row="86"))
    add(Case("hl-resolvconf-fifo", "host-local", "resolvConf is a FIFO", 7, "resolvconf", setup=fifo_resolv,
             conf=lambda c, w: c["ipam"].update(resolvConf=os.path.join(w.outside, "resolv.fifo")), row="88"))
    add(Case("br-resolvconf-relative", "bridge", "resolvConf relative", 7, "resolvconf", conf=put("ipam.resolvConf", "resolv.conf"), row="89"))
    add(Case("hl-locktimeout-string", "host-local", 'lockTimeout "10"', 7, "locktimeout", conf=put("ipam.lockTimeout", "10")))
    add(Case("br-requested-gateway", "bridge", "requested IP = the gateway", 101, "", env={"CNI_ARGS": "IP=10.161.0.1"}, row="91"))
    add(Case("hl-requested-outside", "host-local", "requested IP outside every range", 101, "requested", env={"CNI_ARGS": "IP=10.9.0.9"}, row="92"))
    add(Case("hl-runtime-ips-nope", "host-local", 'runtimeConfig.ips ["nope"]', 7, "", conf=put("runtimeConfig", {"ips": ["nope"]}), row="93"))
    add(Case("br-duplicate-add", "bridge", "a second ADD of the same container and ifname (into another namespace)", 102, "",
             cid="seed", row="94"))
    add(Case("vx-duplicate-add", "vxlan", "a second ADD of the same container and ifname", 102, "", cid="seed", env={"CNI_NETNS": lambda w: w.pod2.path}, row="94"))

    # vxlan's own settings
    add(Case("vx-network-missing", "vxlan", "network missing", 7, "missing network", conf=drop("network"), seed=False))
    add(Case("vx-network-v6", "vxlan", "network IPv6", 7, "invalid network", conf=put("network", "fd00::/48"), seed=False))
    add(Case("vx-subnetlen-31", "vxlan", "subnetLen 31", 7, "subnetlen", conf=put("subnetLen", 31), seed=False))
    add(Case("vx-vni-0", "vxlan", "vni 0", 7, "vni", conf=put("vni", 0), seed=False))
    add(Case("vx-port-70000", "vxlan", "port 70000", 7, "port", conf=put("port", 70000), seed=False))
    add(Case("vx-device-16", "vxlan", "device name of 16 bytes", 7, "device", conf=put("device", "cnivx-abcdefghij"), seed=False))
    add(Case("vx-device-slash", "vxlan", "device name with /", 7, "device", conf=put("device", "vx/1"), seed=False))
    add(Case("vx-bridge-template", "vxlan", "delegate.bridge vx%d", 7, "delegate.bridge", conf=put("delegate", {"bridge": "vx%d"}), seed=False))
    add(Case("vx-peersource", "vxlan", "peerSource carrier-pigeon", 7, "peersource", conf=put("peerSource", "carrier-pigeon"), seed=False))
    add(Case("vx-no-own-peer", "vxlan", "static peers without this node", 7, "no entry for this node", conf=put("nodeName", "n9"), seed=False))
    add(Case("vx-etcd-endpoints", "vxlan", "etcd.endpoints not a list", 7, "endpoints",
             conf=both(put("peerSource", "etcd"), put("etcd", {"endpoints": "http://127.0.0.1:2379"})), seed=False))
    add(Case("vx-offload", "vxlan", 'txChecksumOffload "maybe"', 7, "txchecksumoffload", conf=put("txChecksumOffload", "maybe"), seed=False))
    add(Case("vx-mtu-10", "vxlan", "mtu 10", 7, "mtu", conf=put("mtu", 10), seed=False))
    add(Case("vx-datadir-relative", "vxlan", "dataDir relative", 7, "datadir", conf=put("dataDir", "rel/vxlan"), seed=False))
    add(Case("vx-static-vtep-mismatch", "vxlan", "this node's static vtep is not its address", 7, "vtep",
             conf=lambda c, w: c["peers"][0].update(vtep="192.0.2.9"), seed=False))

    # logging settings come from the config too: never fatal, never followed through a symlink
    add(Case("br-loglevel-number", "bridge", "logLevel 5 (control: ADD works, the setting is reported)", 0, "", conf=put("logLevel", 5),
             check=warned("logLevel 5")))
    add(Case("hl-logfile-missing-dir", "host-local", "logFile in a missing directory (control: logs go to stderr)", 0, "",
             conf=put("logFile", "/nonexistent-cnit/dir/x.log"), check=warned("cannot open logFile")))
    add(Case("vx-logfile-symlink", "vxlan", "logFile is a symlink to a file outside (control: not followed)", 0, "", setup=log_symlink,
             conf=lambda c, w: c.update(logFile=os.path.join(w.state, "plugin.log")), check=warned("cannot open logFile")))
    add(Case("hl-del-logfile-number", "host-local", "DEL with logFile 123 (control: releases)", 0, "", command="DEL", cid="seed",
             conf=put("logFile", 123), env={"CNI_NETNS": lambda w: w.pod.path}, check=control_del_released))

    # F. DEL, CHECK, GC, STATUS
    add(Case("br-check-no-prev", "bridge", "CHECK without prevResult", 7, "prevresult", command="CHECK", cid="seed", conf=drop("prevResult"),
             env={"CNI_NETNS": lambda w: w.pod.path}, row="103"))
    add(Case("br-check-prev-malformed", "bridge", 'CHECK with prevResult "ips": "nope"', 6, "", command="CHECK", cid="seed",
             conf=put("prevResult.ips", "nope"), env={"CNI_NETNS": lambda w: w.pod.path}, row="15"))
    add(Case("vx-check-prev-v020", "vxlan", "CHECK with a 0.2.0-shaped prevResult in a 1.1.0 config (no ips, no interfaces)", 107, "prevresult",
             command="CHECK", cid="seed",
             conf=_wrong_prev_v020, env={"CNI_NETNS": lambda w: w.pod.path}, row="15"))
    add(Case("hl-check-prev-other-ip", "host-local", "CHECK with a prevResult naming another address", 107, "not reserved", command="CHECK", cid="seed",
             conf=_prev_other_ip, env={"CNI_NETNS": lambda w: w.pod.path}, row="104"))
    add(Case("br-check-prev-other-sandbox", "bridge", "CHECK with a prevResult for another sandbox", 107, "sandbox", command="CHECK", cid="seed",
             env={"CNI_NETNS": lambda w: w.pod2.path}, row="104"))
    add(Case("br-del-prev-malformed", "bridge", "DEL with a malformed prevResult (control: succeeds, releases)", 0, "", command="DEL", cid="seed",
             conf=put("prevResult", {"ips": "nope"}), env={"CNI_NETNS": lambda w: w.pod.path}, check=control_del_released, row="99"))
    add(Case("hl-del-bad-subnet", "host-local", "DEL whose subnet no longer parses (control: releases)", 0, "", command="DEL", cid="seed",
             conf=put("ipam.subnet", "banana"), env={"CNI_NETNS": lambda w: w.pod.path}, check=control_del_released, row="100"))
    add(Case("br-del-ipam-missing", "bridge", "DEL when ipam.type is missing from CNI_PATH", 7, "missing from cni_path", command="DEL", cid="ghost",
             conf=put("ipam.type", "cnit-no-such-ipam"), row="101"))
    add(Case("br-del-ipam-path", "bridge", "DEL with ipam.type /bin/true", 7, "plugin name", command="DEL", cid="ghost",
             conf=put("ipam.type", "/bin/true"), row="101"))
    add(Case("hl-del-cid-escape", "host-local", "DEL with CNI_CONTAINERID ../../x", 4, "cni_containerid", command="DEL", cid="../../x", row="29"))
    add(Case("br-gc-valid-not-list", "bridge", "GC with cni.dev/valid-attachments not a list", 7, "valid-attachments", command="GC",
             conf=lambda c, w: c.update({"cni.dev/valid-attachments": {"containerID": "seed"}}), row="105"))
    add(Case("hl-gc-entry-incomplete", "host-local", "GC with an entry missing ifname", 7, "valid-attachments", command="GC",
             conf=lambda c, w: c.update({"cni.dev/valid-attachments": [{"containerID": "seed"}]}), row="105"))

    _hostile_cases(add, short)
    _loopback_cases(add)
    _portmap_cases(add)
    return cases


def _hostile_cases(add, short: dict) -> None:
    """G. The hostile review (issue 11): fields wider than their netlink attributes, loose address syntax, names that
    look like others, and vxlan's peers and etcd endpoints.  The bridge and vxlan ADDs run on a fresh node (seed=False)
    where a leftover bridge or VXLAN device would show, and no_new_bridge checks for one by name too."""
    fresh = {"host-local": True, "bridge": False, "vxlan": False}  # seed
    after = {"host-local": None, "bridge": no_new_bridge, "vxlan": no_new_bridge}  # check

    # route fields: priority, table, mtu and advmss are u32 netlink attributes, scope a u8; ints only (no bool, float, string)
    wrong = (("2to32", 2**32, "4294967296"), ("neg", -1, "-1"), ("bool", True, "true"), ("float", 1.5, "1.5"), ("string", "10", '"10"'))
    for plugin, p in short.items():
        for key in ("priority", "table", "mtu", "advmss"):
            for tag, value, shown in wrong:
                add(Case(f"{p}-route-{key}-{tag}", plugin, f"ipam.routes[0].{key} {shown}", 7, f"ipam.routes[0].{key}",
                         conf=route_with(key, value), seed=fresh[plugin], check=after[plugin], row="issue11"))
        add(Case(f"{p}-route-scope-256", plugin, "ipam.routes[0].scope 256 (a u8)", 7, "ipam.routes[0].scope",
                 conf=route_with("scope", 256), seed=fresh[plugin], check=after[plugin], row="issue11"))
    add(Case("hl-route-priority-2to33", "host-local", "ipam.routes[0].priority 2^33", 7, "ipam.routes[0].priority",
             conf=route_with("priority", 2**33), row="issue11"))
    add(Case("br-route-table-2to32-seeded", "bridge", "ipam.routes[0].table 4294967296 on a node with a working pod", 7, "ipam.routes[0].table",
             conf=route_with("table", 2**32), row="issue11"))

    # host-local subnets and ranges (vxlan forces its own ranges; its ipam.subnet still reaches host-local)
    for plugin, p in (("host-local", "hl"), ("bridge", "br")):
        add(Case(f"{p}-subnet-netmask", plugin, "subnet in netmask form 10.161.0.0/255.255.255.0", 7, "subnet",
                 conf=put("ipam.subnet", "10.161.0.0/255.255.255.0"), seed=fresh[plugin], check=after[plugin], row="issue11"))
        add(Case(f"{p}-subnet-v4-all", plugin, "subnet 0.0.0.0/0", 7, "subnet", conf=put("ipam.subnet", "0.0.0.0/0"),
                 seed=fresh[plugin], check=after[plugin], row="issue11"))
        add(Case(f"{p}-subnet-v6-all", plugin, "subnet ::/0", 7, "subnet", conf=put("ipam.subnet", "::/0"),
                 seed=fresh[plugin], check=after[plugin], row="issue11"))
        add(Case(f"{p}-subnet-40", plugin, "subnet 10.161.0.0/40 (an IPv4 prefix over 32)", 7, "subnet", conf=put("ipam.subnet", "10.161.0.0/40"),
                 seed=fresh[plugin], check=after[plugin], row="67"))
        add(Case(f"{p}-rangestart-outside", plugin, "rangeStart outside its subnet", 7, "rangestart", conf=put("ipam.rangeStart", "10.9.0.5"),
                 seed=fresh[plugin], check=after[plugin], row="70"))
    add(Case("br-subnet-netmask-seeded", "bridge", "subnet in netmask form on a node with a working pod", 7, "subnet",
             conf=put("ipam.subnet", "10.161.0.0/255.255.255.0"), row="issue11"))
    add(Case("vx-ipam-subnet-netmask", "vxlan", "ipam.subnet in netmask form (passed to host-local)", 7, "subnet",
             conf=put("ipam.subnet", "198.19.1.0/255.255.255.0"), seed=False, check=no_new_bridge, row="issue11"))
    add(Case("vx-ipam-subnet-all", "vxlan", "ipam.subnet 0.0.0.0/0 (passed to host-local)", 7, "subnet",
             conf=put("ipam.subnet", "0.0.0.0/0"), seed=False, check=no_new_bridge, row="issue11"))

    # requested addresses: in no range (101), with a bad prefix or malformed (4 from CNI_ARGS, 7 from the config)
    pod_net = {"host-local": "10.161.0", "bridge": "10.161.0", "vxlan": "198.19.1"}
    for plugin, p in short.items():
        net = pod_net[plugin]
        add(Case(f"{p}-requested-in-no-range", plugin, "CNI_ARGS IP=10.99.0.5 (in no range)", 101, "10.99.0.5", env={"CNI_ARGS": "IP=10.99.0.5"},
                 seed=fresh[plugin], check=after[plugin], row="92"))
        add(Case(f"{p}-runtime-ips-prefix-40", plugin, f'runtimeConfig.ips ["{net}.7/40"] (bad prefix)', 7, "runtimeconfig.ips",
                 conf=put("runtimeConfig", {"ips": [f"{net}.7/40"]}), seed=fresh[plugin], check=after[plugin], row="93"))
        add(Case(f"{p}-args-ip-prefix-99", plugin, f"CNI_ARGS IP={net}.7/99 (bad prefix)", 4, "cni_args", env={"CNI_ARGS": f"IP={net}.7/99"},
                 seed=fresh[plugin], check=after[plugin], row="48"))
        add(Case(f"{p}-args-ip-octet-300", plugin, f"CNI_ARGS IP={net}.300 (malformed)", 4, "cni_args", env={"CNI_ARGS": f"IP={net}.300"},
                 seed=fresh[plugin], check=after[plugin], row="48"))
    add(Case("br-requested-in-no-range-seeded", "bridge", "CNI_ARGS IP=10.99.0.5 on a node with a working pod", 101, "10.99.0.5",
             env={"CNI_ARGS": "IP=10.99.0.5"}, row="92"))

    # interface names the kernel reserves or that only look like others
    names = (("all", "all", "all (the kernel's conf/all)"), ("default", "default", "default (the kernel's conf/default)"),
             ("zwsp", "eth\u200b0", "eth0 with a zero-width space (U+200B)"), ("bom", "\ufeffeth0", "eth0 after a BOM (U+FEFF)"),
             ("rlo", "eth\u202e0", "eth0 with a right-to-left override (U+202E)"))
    for plugin, p in short.items():
        for tag, name, shown in names:
            add(Case(f"{p}-ifname-{tag}", plugin, f"CNI_IFNAME {shown}", 4, "cni_ifname", env={"CNI_IFNAME": name},
                     seed=fresh[plugin], check=after[plugin], row="issue11"))
    add(Case("br-ifname-rlo-seeded", "bridge", "CNI_IFNAME with U+202E on a node with a working pod", 4, "cni_ifname",
             env={"CNI_IFNAME": "eth\u202e0"}, row="issue11"))
    add(Case("vx-ifname-default-del", "vxlan", "DEL with CNI_IFNAME default", 4, "cni_ifname", command="DEL", cid="seed",
             env={"CNI_IFNAME": "default", "CNI_NETNS": lambda w: w.pod.path}, row="issue11"))

    # vxlan's static peers: the same list goes to every node, so a bad entry is refused naming it
    peer_cases = (
        ("mac-malformed", "a peer's MAC malformed (0e:56:zz:00:00:02)", peer_change(1, mac="0e:56:zz:00:00:02"), "peers[1]"),
        ("mac-broadcast", "a peer's MAC ff:ff:ff:ff:ff:ff", peer_change(1, mac="ff:ff:ff:ff:ff:ff"), "peers[1]"),
        ("mac-multicast", "a peer's MAC 01:00:5e:00:00:01 (multicast)", peer_change(1, mac="01:00:5e:00:00:01"), "peers[1]"),
        ("vtep-unspecified", "a peer's vtep 0.0.0.0", peer_change(1, vtep="0.0.0.0"), "peers[1]"),
        ("vtep-multicast", "a peer's vtep 224.0.0.1", peer_change(1, vtep="224.0.0.1"), "peers[1]"),
        ("dup-vtep", "two peers with the same vtep", peer_added(node="n3", vtep="192.0.2.2", subnet="198.19.3.0/24"), "peers[2]"),
        ("dup-mac", "two peers with the same MAC",
         both(peer_change(0, mac="0e:56:00:00:00:01"), peer_change(1, mac="0e:56:00:00:00:01")), "peers[1]"),
        ("dup-node", "two peers with the same node", peer_added(node="n2", vtep="192.0.2.3", subnet="198.19.3.0/24"), "peers[2]"),
        ("dup-subnet", "two peers with the same subnet", peer_added(node="n3", vtep="192.0.2.3", subnet="198.19.2.0/24"), "peers[2]"),
        ("subnet-overlap", "a peer's subnet 198.19.0.0/23 overlapping this node's",
         peer_added(node="n3", vtep="192.0.2.3", subnet="198.19.0.0/23"), "peers[2]"),
        ("vtep-v6-mix", "a peer with an IPv6 vtep while this node's is IPv4", peer_change(1, vtep="2001:db8::2"), "ipv4 and ipv6"),
    )
    for tag, what, change, fragment in peer_cases:
        add(Case(f"vx-peer-{tag}", "vxlan", what, 7, fragment, conf=change, seed=False, check=no_new_bridge, row="issue11"))
    add(Case("vx-peers-all-v6-node-v4", "vxlan", "every peer (this node's too) has an IPv6 vtep while this node's VTEP is IPv4", 7, "vtep",
             conf=both(peer_change(0, vtep="2001:db8::1"), peer_change(1, vtep="2001:db8::2")), seed=False, check=no_new_bridge, row="issue11"))
    add(Case("vx-peer-mac-broadcast-seeded", "vxlan", "a peer's MAC ff:ff:ff:ff:ff:ff on a node with a working pod (nothing reprogrammed)", 7,
             "peers[1]", conf=peer_change(1, mac="ff:ff:ff:ff:ff:ff"), row="issue11"))
    add(Case("vx-peer-dup-vtep-seeded", "vxlan", "two peers with the same vtep on a node with a working pod (nothing reprogrammed)", 7,
             "peers[2]", conf=peer_added(node="n3", vtep="192.0.2.2", subnet="198.19.3.0/24"), row="issue11"))

    # a requested address is checked against this node's own subnet, which need not be the first leasable one (subnetMin)
    own = peer_change(0, subnet="198.19.5.0/24")
    add(Case("vx-requested-own-subnet", "vxlan", "CNI_ARGS IP=198.19.5.7 in this node's static subnet 198.19.5.0/24, not subnetMin (control: granted)", 0,
             "", conf=own, env={"CNI_ARGS": "IP=198.19.5.7"}, seed=False, check=granted("198.19.5.7/24"), row="92"))
    add(Case("vx-requested-in-subnetmin-only", "vxlan", "CNI_ARGS IP=198.19.1.7 in subnetMin but not in this node's static subnet 198.19.5.0/24",
             101, "198.19.1.7", conf=own, env={"CNI_ARGS": "IP=198.19.1.7"}, seed=False, check=no_new_bridge, row="92"))

    # vxlan's etcd endpoints: refused when the config loads, never left to the client
    for tag, url in (("empty-host", "http://"), ("open-bracket", "http://[::1"), ("ftp", "ftp://x:1"), ("port-99999", "http://host:99999")):
        add(Case(f"vx-etcd-endpoint-{tag}", "vxlan", f'etcd.endpoints ["{url}"]', 7, "etcd.endpoints",
                 conf=both(put("peerSource", "etcd"), put("etcd", {"endpoints": [url]})), seed=False, check=no_new_bridge, row="issue11"))


def lo_in_pod2(*argv: str) -> Callable:
    """A change to pod2's lo (the namespace refused calls are pointed at) before the snapshot."""
    return lambda world: world.pod2.ip(*argv)


def lo_taken(world) -> None:
    """pod2's loopback renamed, and its name given to a veth."""
    world.pod2.ip("link", "set", "lo", "name", "lo9")
    world.pod2.ip("link", "add", "lo", "type", "veth", "peer", "name", "lopeer")


def lo_down_in(which: str) -> Callable:
    """A control whose DEL brought that pod's lo down."""
    def check(world, outcome):
        ns = world.pod if which == "pod" else world.pod2
        assert "UP" not in ns.ipj("link", "show", "dev", "lo")[0]["flags"], f"{which}'s lo is still up"
    return check


def lo_still(state: str) -> Callable:
    """A control whose DEL changed nothing: pod2's devices named lo and lo9 are as setup() left them."""
    def check(world, outcome):
        flags = {link["ifname"]: "UP" in link["flags"] for link in world.pod2.ipj("link", "show")}
        assert flags.get("lo9") is False and flags.get("lo") is (state == "up"), flags
    return check


def _loopback_cases(add) -> None:
    """H. loopback (issue 13): the shared protocol layer wired up, and lo in the right namespace only.  Refused calls
    go to pod2, whose lo is down: a refusal that brought it up, or a DEL that reached the node's lo, shows."""
    pod = {"CNI_NETNS": lambda w: w.pod.path}
    add(Case("lo-stdin-empty", "loopback", "empty stdin", 6, "failed to decode", stdin=b"", row="1"))
    add(Case("lo-stdin-truncated", "loopback", "truncated JSON", 6, "failed to decode", stdin=lambda w: good_json(w)[:30], row="2"))
    add(Case("lo-stdin-null", "loopback", "JSON null", 6, "failed to decode", stdin=b"null", row="4"))
    add(Case("lo-stdin-non-utf8", "loopback", "non-UTF-8 bytes in the network name", 6, "failed to decode",
             stdin=replace_bytes(b'"badnet"', b'"bad\xffnet"'), row="5"))
    add(Case("lo-stdin-dupkey", "loopback", "duplicate key", 6, "failed to decode",
             stdin=replace_bytes(b'"type": "loopback"', b'"type": "loopback", "type": "bridge"'), row="11"))
    add(Case("lo-stdin-huge", "loopback", "stdin over the 4 MiB cap", 5, "too large", stdin=lambda w: b" " * HUGE + good_json(w), row="10"))
    add(Case("lo-version-unsupported", "loopback", 'cniVersion "9.9.9"', 1, "incompatible cni versions", conf=put("cniVersion", "9.9.9"), row="16"))
    add(Case("lo-version-inexact", "loopback", 'cniVersion "1.0" (not exact)', 1, "incompatible cni versions", conf=put("cniVersion", "1.0"),
             row="17"))
    add(Case("lo-check-0.3.1", "loopback", "CHECK with 0.3.1", 1, "does not allow check", command="CHECK", conf=put("cniVersion", "0.3.1"),
             cid="seed", env=pod, row="21"))
    add(Case("lo-gc-1.0.0", "loopback", "GC with 1.0.0", 1, "does not allow gc", command="GC", conf=put("cniVersion", "1.0.0"), row="22"))
    add(Case("lo-status-1.0.0", "loopback", "STATUS with 1.0.0", 1, "does not allow status", command="STATUS", conf=put("cniVersion", "1.0.0"),
             row="22"))
    add(Case("lo-command-unknown", "loopback", "CNI_COMMAND=FROB", 4, "unknown cni_command", env={"CNI_COMMAND": "FROB"}, row="25"))
    add(Case("lo-env-all-missing", "loopback", "CNI_CONTAINERID, CNI_NETNS and CNI_IFNAME all missing", 4,
             "[cni_containerid,cni_netns,cni_ifname] missing", env={"CNI_CONTAINERID": None, "CNI_NETNS": None, "CNI_IFNAME": None}, row="27"))
    add(Case("lo-cid-dotdot", "loopback", "CNI_CONTAINERID ../x", 4, "cni_containerid", cid="../x", row="29"))
    add(Case("lo-ifname-16", "loopback", "CNI_IFNAME of 16 bytes (validated though loopback uses lo)", 4, "cni_ifname",
             env={"CNI_IFNAME": "a" * 16}, row="31"))
    add(Case("lo-ifname-zwsp", "loopback", "CNI_IFNAME lo with a zero-width space (U+200B)", 4, "cni_ifname", env={"CNI_IFNAME": "lo\u200b"},
             row="issue11"))
    add(Case("lo-netns-missing-add", "loopback", "CNI_NETNS missing on ADD", 4, "cni_netns", env={"CNI_NETNS": None}, row="38"))
    add(Case("lo-netns-nonexistent", "loopback", "CNI_NETNS does not exist", 4, "cni_netns", env={"CNI_NETNS": "/run/netns/cnit-no-such-ns"},
             row="39"))
    add(Case("lo-netns-regular-file", "loopback", "CNI_NETNS is a regular file", 4, "cni_netns", env={"CNI_NETNS": lambda w: w.canary}, row="40"))
    add(Case("lo-netns-own-add", "loopback", "CNI_NETNS is the plugin's own (/proc/self/ns/net), ADD", 4, "cni_netns",
             env={"CNI_NETNS": "/proc/self/ns/net"}, row="42"))
    add(Case("lo-netns-own-del", "loopback", "CNI_NETNS is the plugin's own, DEL (would bring the node's lo down)", 4, "cni_netns",
             command="DEL", cid="seed", env={"CNI_NETNS": "/proc/self/ns/net"}, row="42"))
    add(Case("lo-netns-node-path-del", "loopback", "CNI_NETNS is the node's /run/netns path, DEL", 4, "cni_netns", command="DEL", cid="seed",
             env={"CNI_NETNS": lambda w: w.node.path}, row="42"))
    add(Case("lo-netns-init-check", "loopback", "CNI_NETNS is the init namespace (/proc/1/ns/net), CHECK", 4, "cni_netns", command="CHECK",
             cid="seed", env={"CNI_NETNS": "/proc/1/ns/net"}, row="42"))
    add(Case("lo-netns-relative", "loopback", "CNI_NETNS relative", 4, "cni_netns", env={"CNI_NETNS": "run/netns/x"}, row="43"))
    add(Case("lo-args-bad-pair", "loopback", "CNI_ARGS with a pair that is not KEY=VALUE", 4, "cni_args", env={"CNI_ARGS": "IgnoreUnknown=1;=x"},
             row="46"))
    add(Case("lo-path-missing-gc", "loopback", "CNI_PATH missing on GC", 4, "cni_path", command="GC", env={"CNI_PATH": None}, row="44"))
    add(Case("lo-name-missing", "loopback", "network name missing", 7, "missing network name", conf=drop("name"), row="50"))
    add(Case("lo-name-dotdot", "loopback", "network name ../x", 7, "network name", conf=put("name", "../x"), row="51"))
    add(Case("lo-prev-malformed", "loopback", 'ADD with prevResult "ips": "nope" (refused before lo is touched)', 6, "invalid result",
             conf=put("prevResult", {"cniVersion": "1.1.0", "ips": "nope"}), row="15"))
    add(Case("lo-prev-not-object", "loopback", "ADD with prevResult a string", 6, "invalid result", conf=put("prevResult", "10.1.2.3/24"), row="15"))
    add(Case("lo-prev-bad-index", "loopback", "ADD with a prevResult whose ips[].interface names no interface", 6, "invalid result",
             conf=put("prevResult", {"cniVersion": "1.1.0", "ips": [{"address": "10.1.2.3/24", "interface": 3}]}), row="15"))
    add(Case("lo-non-loopback-address", "loopback", "lo holds 10.9.8.7/24 (refused before lo comes up)", 103, "non-loopback address 10.9.8.7",
             setup=lo_in_pod2("addr", "add", "10.9.8.7/24", "dev", "lo"), row="issue13"))
    add(Case("lo-renamed", "loopback", "lo renamed, and a veth named lo", 103, "no loopback interface", setup=lo_taken, row="issue13"))
    add(Case("lo-check-down", "loopback", "CHECK with lo down", 107, "loopback interface is down", command="CHECK", cid="seed", row="issue13"))
    add(Case("lo-check-renamed", "loopback", "CHECK when lo was renamed", 107, "no loopback interface", command="CHECK", cid="seed",
             setup=lo_taken, row="issue13"))
    add(Case("lo-gc-valid-not-list", "loopback", "GC with cni.dev/valid-attachments not a list", 7, "valid-attachments", command="GC",
             conf=lambda c, w: c.update({"cni.dev/valid-attachments": {"containerID": "seed"}}), row="105"))
    add(Case("lo-gc-entry-incomplete", "loopback", "GC with an entry missing ifname", 7, "valid-attachments", command="GC",
             conf=lambda c, w: c.update({"cni.dev/valid-attachments": [{"containerID": "seed"}]}), row="105"))
    # controls: DEL forgives
    add(Case("lo-del-prev-malformed", "loopback", "DEL with a malformed prevResult (control: brings lo down)", 0, "", command="DEL", cid="seed",
             conf=put("prevResult", {"ips": "nope"}), env=pod, check=lo_down_in("pod"), row="99"))
    add(Case("lo-del-renamed", "loopback", "DEL when lo was renamed and a veth took its name (control: nothing changed)", 0, "", command="DEL",
             setup=lambda w: (lo_taken(w), w.pod2.ip("link", "set", "lo", "up")), check=lo_still("up"), row="issue13"))
    add(Case("lo-del-netns-gone", "loopback", "DEL whose CNI_NETNS no longer exists (control)", 0, "", command="DEL", cid="seed",
             env={"CNI_NETNS": "/run/netns/cnit-no-such-ns"}, row="39"))
    add(Case("lo-loglevel-number", "loopback", "logLevel 5 (control: ADD works, the setting is reported)", 0, "", conf=put("logLevel", 5),
             check=warned("logLevel 5")))


def mapping(**fields) -> Callable:
    """A conf change: the one port mapping with these fields changed."""

    def change(config, world):
        config["runtimeConfig"]["portMappings"][0].update(fields)

    return change


def hostport_rules(world) -> list[str]:
    return [line for line in world.node.exec("nft", "list", "ruleset").splitlines() if "dport 18080" in line]


def seed_rules_gone(world, outcome) -> None:
    assert hostport_rules(world) == [], "the seed's DEL removed its DNAT rule"


def seed_rules_kept(world, outcome) -> None:
    assert len(hostport_rules(world)) == 1, "another attachment's DEL left the seed's DNAT rule alone"


def _portmap_cases(add) -> None:
    """I. portmap (issue 13): every mapping and option checked before a rule is written.  Refused ADDs are pod2's
    (bad1): a rule written for it, or the seed's removed, shows in the node's snapshot."""
    pod = {"CNI_NETNS": lambda w: w.pod.path}
    add(Case("pm-stdin-empty", "portmap", "empty stdin", 6, "failed to decode", stdin=b"", row="1"))
    add(Case("pm-stdin-truncated", "portmap", "truncated JSON", 6, "failed to decode", stdin=lambda w: good_json(w)[:30], row="2"))
    add(Case("pm-stdin-dupkey", "portmap", "duplicate key", 6, "failed to decode",
             stdin=replace_bytes(b'"type": "portmap"', b'"type": "portmap", "type": "bridge"'), row="11"))
    add(Case("pm-version-unsupported", "portmap", 'cniVersion "9.9.9"', 1, "incompatible cni versions", conf=put("cniVersion", "9.9.9"), row="16"))
    add(Case("pm-command-unknown", "portmap", "CNI_COMMAND=FROB", 4, "unknown cni_command", env={"CNI_COMMAND": "FROB"}, row="25"))
    add(Case("pm-cid-dotdot", "portmap", "CNI_CONTAINERID ../x", 4, "cni_containerid", cid="../x", row="29"))
    add(Case("pm-netns-own-add", "portmap", "CNI_NETNS is the plugin's own, ADD", 4, "cni_netns", env={"CNI_NETNS": "/proc/self/ns/net"}, row="42"))
    add(Case("pm-name-dotdot", "portmap", "network name ../x", 7, "network name", conf=put("name", "../x"), row="51"))
    add(Case("pm-hostport-0", "portmap", "hostPort 0", 7, "invalid host port number: 0", conf=mapping(hostPort=0), row="issue13"))
    add(Case("pm-hostport-70000", "portmap", "hostPort 70000", 7, "invalid host port number: 70000", conf=mapping(hostPort=70000), row="issue13"))
    add(Case("pm-hostport-string", "portmap", 'hostPort "8080" (a string)', 7, "hostport", conf=mapping(hostPort="8080"), row="issue13"))
    add(Case("pm-containerport-0", "portmap", "containerPort 0", 7, "invalid container port number: 0", conf=mapping(containerPort=0),
             row="issue13"))
    add(Case("pm-protocol-icmp", "portmap", "protocol icmp", 7, "protocol", conf=mapping(protocol="icmp"), row="issue13"))
    add(Case("pm-hostip-bad", "portmap", 'hostIP "1.2.3"', 7, "hostip", conf=mapping(hostIP="1.2.3"), row="issue13"))
    add(Case("pm-mappings-not-list", "portmap", "portMappings an object", 7, "portmappings",
             conf=put("runtimeConfig", {"portMappings": {"hostPort": 18081}}), row="issue13"))
    add(Case("pm-mapping-not-object", "portmap", "a mapping that is a number", 7, "portmappings[0]",
             conf=put("runtimeConfig", {"portMappings": [5]}), row="issue13"))
    add(Case("pm-condition-semicolon", "portmap", "conditionsV4 holding '; flush ruleset'", 7, "conditionsv4",
             conf=put("conditionsV4", ["ip saddr 192.0.2.9; flush ruleset"]), row="issue13"))
    add(Case("pm-condition-newline", "portmap", "conditionsV4 holding a newline", 7, "conditionsv4",
             conf=put("conditionsV4", ["ip saddr 192.0.2.9\nflush ruleset"]), row="issue13"))
    add(Case("pm-condition-quote", "portmap", "iptables conditionsV4 holding a quote", 7, "conditionsv4",
             conf=both(put("backend", "iptables"), put("conditionsV4", ["-s", '192.0.2.9" -j ACCEPT'])), row="issue13"))
    add(Case("pm-markbit-32", "portmap", "markMasqBit 32", 7, "markmasqbit", conf=both(put("backend", "iptables"), put("markMasqBit", 32)),
             row="issue13"))
    add(Case("pm-markbit-and-chain", "portmap", "markMasqBit with externalSetMarkChain", 7, "cannot specify externalsetmarkchain and markmasqbit",
             conf=both(put("backend", "iptables"), put("markMasqBit", 13), put("externalSetMarkChain", "KUBE-MARK-MASQ")), row="issue13"))
    add(Case("pm-chain-bad", "portmap", "externalSetMarkChain 'bad chain!'", 7, "externalsetmarkchain",
             conf=both(put("backend", "iptables"), put("externalSetMarkChain", "bad chain!")), row="issue13"))
    add(Case("pm-backend-ebtables", "portmap", "backend ebtables", 7, "unrecognized backend", conf=put("backend", "ebtables"), row="issue13"))
    add(Case("pm-backend-mixed", "portmap", "backend nftables with an iptables-only option", 7, "iptables-specific options",
             conf=both(put("backend", "nftables"), put("externalSetMarkChain", "KUBE-MARK-MASQ")), row="issue13"))
    add(Case("pm-no-prevresult", "portmap", "ADD without prevResult (portmap is chained)", 7, "chained plugin", conf=drop("prevResult"),
             row="issue13"))
    add(Case("pm-prev-malformed", "portmap", 'prevResult "ips": "nope"', 7, "invalid result",
             conf=put("prevResult", {"cniVersion": "1.1.0", "ips": "nope"}), row="15"))
    add(Case("pm-datadir-relative", "portmap", "dataDir relative", 7, "invalid datadir", conf=put("dataDir", "rel/dir"), row="issue13"))
    add(Case("pm-snat-string", "portmap", 'snat "yes" (not a boolean)', 7, "snat", conf=put("snat", "yes"), row="issue13"))
    add(Case("pm-check-missing", "portmap", "CHECK of an attachment that has no rules", 107, "missing hostport rules", command="CHECK",
             row="issue13"))
    add(Case("pm-gc-valid-not-list", "portmap", "GC with cni.dev/valid-attachments not a list", 7, "valid-attachments", command="GC",
             conf=lambda c, w: c.update({"cni.dev/valid-attachments": {"containerID": "seed"}}), row="105"))
    # controls: DEL forgives, and removes only its own attachment's rules
    add(Case("pm-del-no-netns", "portmap", "DEL without CNI_NETNS, prevResult or mappings (control: the seed's rules go)", 0, "", command="DEL",
             cid="seed", env={"CNI_NETNS": ""}, conf=lambda c, w: (c.pop("prevResult"), c.pop("runtimeConfig")), check=seed_rules_gone, row="99"))
    add(Case("pm-del-other", "portmap", "DEL of an attachment that has no rules (control: the seed's stay)", 0, "", command="DEL", env=pod,
             check=seed_rules_kept))


CASES = _cases()


# --- docs/bad-input.md ------------------------------------------------------------------


def render() -> str:
    plugins = sorted({c.plugin for c in CASES})
    errors = [c for c in CASES if c.code]
    lines = [
        "# Bad input: every case, its code and its message",
        "",
        "Generated from `tests/badinput.py` by `.venv/bin/python -m tests.badinput --write`;",
        "`tests/test_bad_input.py::test_the_table_is_current` fails when this file is out of date.",
        "",
        f"{len(CASES)} cases ({len(errors)} refusals, {len(CASES) - len(errors)} controls) across {', '.join(plugins)}. "
        "Each runs the plugin binary in a node namespace that holds one working pod. A refusal must exit",
        "non-zero with exactly one CNI error document on stdout carrying the code below and a message containing",
        "the text below, and leave the node, both pods and the files under the test's directory byte-for-byte",
        "unchanged: links, addresses, routes, nftables and iptables rules, sysctls, every state file and a canary",
        "file outside the state directories. DEL errors never say \"not found\" (containerd would take them for",
        "success). A control must succeed; its own checks are named in the case. \"row\" is the row of the bad-input",
        "matrix in the reliability and security notes (section 4).",
        "",
        "| case | plugin | command | what | code | message contains | row |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in CASES:
        code = str(c.code) if c.code else "0 (control)"
        fragment = f"`{c.fragment}`" if c.fragment else ""
        lines.append(f"| `{c.id}` | {c.plugin} | {c.command} | {c.what.replace('|', '/')} | {code} | {fragment} | {c.row} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--write" in argv:
        with open(DOC, "w") as f:
            f.write(text)
        print(f"wrote {DOC} ({len(CASES)} cases)")
        return 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
