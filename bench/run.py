"""make bench: our built binaries against the reference plugins, interleaved, in throw-away namespaces.

Every measured command is one process start, timed from spawn to exit, the
way a runtime pays for it.  Ours and the reference run alternately within
each iteration (their order flips every iteration) on the same configs, so
machine noise lands on both.  Plugins run in node namespaces the benchmark
creates; the machine's own namespace is never touched, and every namespace is
deleted even when a step fails.

Our binary runs in place from a cache it fills once per build under
/var/lib/cni-multi (docs/build.md, "Run in place").  The benchmark runs in a
mount namespace of its own whose /var/lib is a directory of the run
(private_varlib), so the machine's /var/lib (its cni-multi cache included) is
never read or written; that cache is filled before anything is timed.
"""
import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager

from bench.report import CACHE_COMMANDS, CACHE_MODES, CACHE_WRAPPER, EMPTY_DEL, LIFECYCLE
from bench.vxlan_scale import bench_vxlan_scale
from conformance import netenv
from conformance.netenv import Netns

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OURS = os.path.join(REPO, "dist", "cni-bin")
REFERENCE = "/usr/lib/cni"
PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
CLONE_NEWNS = 0x00020000
STEPS = ("version", "hostlocal", "bridge", "vxlan", "vxlanscale", "cache", "slash16", "burst")


# --- a /var/lib of our own ----------------------------------------------------------


def private_varlib(work: str) -> str:
    """This process, and every process it starts, in a mount namespace of its own whose /var/lib is <work>/varlib.

    Our binary keeps its run-in-place cache in /var/lib/cni-multi; with this,
    the benchmark fills and uses a cache of its own and never touches the
    machine's.  Network namespaces made afterwards (ip netns add) are mounted
    in this namespace only, which is where every plugin runs.  Call it before
    any thread starts: unshare(2) moves the calling thread only.
    """
    from common import libc

    before = os.stat("/proc/thread-self/ns/mnt").st_ino
    libc.call("unshare", CLONE_NEWNS)
    if os.stat("/proc/thread-self/ns/mnt").st_ino == before:
        raise RuntimeError("unshare(CLONE_NEWNS) left the mount namespace unchanged")
    # nothing mounted here may propagate back to the machine's namespace
    netenv.sh("mount", "--make-rprivate", "/")
    varlib = os.path.join(work, "varlib")
    os.mkdir(varlib)
    os.chmod(varlib, 0o755)  # the cache's rules: every component owned by root, writable by nobody else
    netenv.sh("mount", "--bind", varlib, "/var/lib")
    return varlib


def cache_ids(varlib: str) -> list[str]:
    """The build directories in a /var/lib's run-in-place cache."""
    try:
        return sorted(n for n in os.listdir(os.path.join(varlib, "cni-multi")) if len(n) == 64)
    except OSError:
        return []


def self_test(bin_dir: str, wrap: list[str] | None = None, tmpdir: str = "") -> dict:
    """`cni-multi --self-test` (untimed): whether the binary runs in place, and from where."""
    env = {"PATH": PATH, **({"TMPDIR": tmpdir} if tmpdir else {})}
    proc = subprocess.run([*(wrap or []), os.path.join(bin_dir, "cni-multi"), "--self-test"], capture_output=True, env=env,
                          timeout=120)
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        report = {"ok": False, "error": (proc.stdout + proc.stderr)[-300:].decode(errors="replace")}
    report["rc"] = proc.returncode
    return report


# --- running plugins ------------------------------------------------------------


@contextmanager
def inside(ns: Netns):
    """The benchmark's main thread in a node namespace: every plugin it starts runs there."""
    from common import libc

    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    target = os.open(ns.path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        libc.call("setns", target, 0x40000000)
        try:
            yield
        finally:
            try:
                libc.call("setns", home, 0x40000000)
            except OSError:
                os.write(2, b"bench: cannot return to the original network namespace\n")
                os._exit(70)
    finally:
        os.close(target)
        os.close(home)


class Impl:
    def __init__(self, label: str, bin_dir: str, tmpdir: str):
        self.label, self.bin_dir, self.tmpdir = label, bin_dir, tmpdir

    def env(self, command: str, cid: str = "", netns: str = "", extra: dict | None = None) -> dict:
        env = {"PATH": PATH, "CNI_COMMAND": command, "CNI_PATH": self.bin_dir, "CNI_IFNAME": "eth0", "TMPDIR": self.tmpdir}
        if cid:
            env["CNI_CONTAINERID"] = cid
        if netns:
            env["CNI_NETNS"] = netns
        env.update(extra or {})
        return env

    def run(self, plugin: str, command: str, config, cid: str = "", netns: str = "", extra: dict | None = None,
            wrap: list[str] | None = None) -> tuple[float, float, int, bytes]:
        """(wall ms, CPU ms, exit status, stdout) of one plugin process.

        CPU is user + system time of the process and of every descendant it
        waited for (our bootloader's Python child when it extracts per start,
        the reference bridge's host-local, a wrapper's mount): a figure machine
        load barely moves.  `wrap` is an argv the plugin's path is appended to
        (the cache scenario's mount-namespace wrapper); `extra` environment
        variables override the CNI ones (an empty CNI_NETNS).
        """
        stdin = config if isinstance(config, bytes) else json.dumps(config).encode()
        return _run_argv([*(wrap or []), os.path.join(self.bin_dir, plugin)], self.env(command, cid, netns, extra), stdin)


class Results:
    def __init__(self):
        self.samples: dict[tuple[str, str], list[float]] = {}
        self.cpu: dict[tuple[str, str], list[float]] = {}
        self.failures: dict[tuple[str, str], list[str]] = {}
        self.notes: list[str] = []
        self.burst: dict[str, dict] = {}
        self.exhausted: dict[str, dict] = {}
        self.cache_checks: dict = {}

    def add(self, scenario: str, impl: str, run: tuple, want_rc: int = 0) -> None:
        ms, cpu, rc, out = run
        self.samples.setdefault((scenario, impl), []).append(ms)
        self.cpu.setdefault((scenario, impl), []).append(cpu)
        if rc != want_rc:
            self.failures.setdefault((scenario, impl), []).append(f"rc={rc} {out[:300].decode(errors='replace')}")

    def record(self, scenario: str, impl: str, wall: float, cpu: float, failure: str = "") -> None:
        """A figure computed from several runs (the pod lifecycle's sum)."""
        self.samples.setdefault((scenario, impl), []).append(wall)
        self.cpu.setdefault((scenario, impl), []).append(cpu)
        if failure:
            self.failures.setdefault((scenario, impl), []).append(failure)

    def stats(self, scenario: str, impl: str) -> dict | None:
        values = self.samples.get((scenario, impl))
        if not values:
            return None
        return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values),
                "cpu": statistics.median(self.cpu[(scenario, impl)]), "failures": len(self.failures.get((scenario, impl), []))}


def alternate(i: int, impls: list[Impl]) -> list[Impl]:
    return impls if i % 2 == 0 else list(reversed(impls))


# --- scenarios ----------------------------------------------------------------------


def bench_version(res: Results, impls: list[Impl], iterations: int) -> None:
    for i in range(iterations):
        for impl in alternate(i, impls):
            for plugin in ("host-local", "bridge"):
                res.add(f"{plugin} VERSION", impl.label, impl.run(plugin, "VERSION", b'{"cniVersion":"1.0.0"}'))


def hostlocal_conf(data_dir: str, name: str, subnet: str) -> dict:
    return {"cniVersion": "1.0.0", "name": name, "type": "host-local",
            "ipam": {"type": "host-local", "subnet": subnet, "dataDir": data_dir}}


def bench_hostlocal(res: Results, impls: list[Impl], iterations: int, work: str) -> None:
    with Netns("bc") as container:
        for i in range(iterations):
            for impl in alternate(i, impls):
                conf = hostlocal_conf(os.path.join(work, "hl-" + impl.label), "bench", "10.210.0.0/24")
                for command in ("ADD", "DEL"):
                    res.add(f"host-local {command}", impl.label, impl.run("host-local", command, conf, f"hl{i}", container.path))


def bridge_conf(data_dir: str, bridge: str, subnet: str) -> dict:
    return {"cniVersion": "1.0.0", "name": "benchnet", "type": "bridge", "bridge": bridge, "isGateway": True,
            "ipam": {"type": "host-local", "subnet": subnet, "dataDir": data_dir}}


def bench_bridge(res: Results, impls: list[Impl], iterations: int, work: str) -> None:
    """ADD, CHECK, DEL; then containerd's second DEL of the same pod: CNI_NETNS empty, no prevResult.

    containerd tears a pod's network down when the sandbox stops (a DEL with
    the namespace and the ADD's result) and again when it is removed, after the
    namespace is gone (CNI_NETNS set but empty, no prevResult); the second DEL
    runs after the container namespace is deleted, as there.  The pod
    lifecycle is the per-iteration sum of ADD, DEL and the empty DEL (CHECK is
    not part of it: containerd does not send one).
    """
    nodes = {impl.label: Netns("bn") for impl in impls}
    try:
        for i in range(iterations):
            for impl in alternate(i, impls):
                conf = bridge_conf(os.path.join(work, "br-" + impl.label), "cnibench0", "10.211.0.0/16")
                plain = dict(conf)
                with Netns("bc") as container, inside(nodes[impl.label]):
                    added = impl.run("bridge", "ADD", conf, f"br{i}", container.path)
                    res.add("bridge ADD", impl.label, added)
                    if added[2] == 0:
                        conf["prevResult"] = json.loads(added[3])
                    res.add("bridge CHECK", impl.label, impl.run("bridge", "CHECK", conf, f"br{i}", container.path))
                    deleted = impl.run("bridge", "DEL", conf, f"br{i}", container.path)
                    res.add("bridge DEL", impl.label, deleted)
                with inside(nodes[impl.label]):
                    empty = impl.run("bridge", "DEL", plain, f"br{i}", extra={"CNI_NETNS": ""})
                res.add(EMPTY_DEL, impl.label, empty)
                runs = (("ADD", added), ("DEL", deleted), ("empty DEL", empty))
                failed = "; ".join(f"{name} rc={run[2]}" for name, run in runs if run[2] != 0)
                res.record(LIFECYCLE, impl.label, sum(run[0] for _, run in runs), sum(run[1] for _, run in runs), failed)
    finally:
        for ns in nodes.values():
            ns.close()


def bench_vxlan(res: Results, ours: Impl, iterations: int, work: str) -> None:
    if not os.access(os.path.join(ours.bin_dir, "vxlan"), os.X_OK):
        res.notes.append("vxlan: no vxlan plugin in this build; skipped.")
        return
    with Netns("bf") as fabric, Netns("bn") as node:
        # the node's underlay: a veth into a fabric namespace, the VTEP address on it
        fabric.ip("link", "add", "p1", "type", "veth", "peer", "name", "eth0", "netns", node.name)
        fabric.ip("addr", "add", "192.0.2.254/24", "dev", "p1")
        fabric.ip("link", "set", "p1", "up")
        node.ip("addr", "add", "192.0.2.1/24", "dev", "eth0")
        node.ip("link", "set", "eth0", "up")
        node.ip("route", "add", "default", "via", "192.0.2.254")
        conf = {"cniVersion": "1.1.0", "name": "benchoverlay", "type": "vxlan", "network": "198.18.0.0/16", "nodeName": "n1",
                "peerSource": "static", "peers": [{"node": "n1", "vtep": "192.0.2.1", "subnet": "198.18.1.0/24"}],
                "dataDir": os.path.join(work, "vx", "vxlan"), "ipam": {"dataDir": os.path.join(work, "vx", "ipam")}}
        for i in range(iterations):
            with Netns("bc") as container, inside(node):
                res.add("vxlan ADD", ours.label, ours.run("vxlan", "ADD", conf, f"vx{i}", container.path))
                res.add("vxlan DEL", ours.label, ours.run("vxlan", "DEL", conf, f"vx{i}", container.path))


def cache_wrapper(varlib: str, mode: str, mountpoint: str) -> list[str]:
    """The argv every cache-scenario run goes through: a private mount namespace, /var/lib bound to varlib, one tmpfs."""
    return ["unshare", "-m", "--propagation", "private", "sh", "-c", CACHE_WRAPPER, "sh", varlib, mode, mountpoint]


def clear_cache(varlib: str) -> None:
    """Delete every build's copy (and any partial one) from a /var/lib's cache; the root itself stays (mode 0700)."""
    root = os.path.join(varlib, "cni-multi")
    for name in os.listdir(root):
        path = os.path.join(root, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)


def bench_cache(res: Results, ours: Impl, iterations: int, work: str) -> None:
    """Ours only: the run-in-place cache cold, warm, and refused (per-start extraction), interleaved.

    Every run goes through the same wrapper (unshare -m, /var/lib bound to a
    directory of this scenario, one 1 MB tmpfs mounted), so its cost is the
    same in each column and cancels in their ratios.  Cold and warm mount the
    tmpfs on an unused directory; the fallback mounts it (mode 0777) over
    /var/lib/cni-multi, which the binary refuses (a cache root writable by
    others), so it extracts into $TMPDIR per start as before.  Cold deletes the
    cache before each run, so each is the first start of the build.  The
    wrapper alone (exec /bin/true) is timed too.
    """
    varlib = os.path.join(work, "cache-varlib")
    os.mkdir(varlib)
    os.chmod(varlib, 0o755)
    for name in ("cni-multi", "bench-pad"):
        os.mkdir(os.path.join(varlib, name), 0o700)
    wraps = {"cold": cache_wrapper(varlib, "0700", "bench-pad"), "warm": cache_wrapper(varlib, "0700", "bench-pad"),
             "fallback": cache_wrapper(varlib, "0777", "cni-multi")}
    # each mode checked once, untimed: warm and cold run in place, the fallback does not
    checks = {}
    clear_cache(varlib)
    for mode in ("cold", "warm", "fallback"):
        report = self_test(ours.bin_dir, wraps[mode], ours.tmpdir)
        checks[mode] = report.get("in_place")
        if report.get("rc") != 0 or not report.get("ok"):
            res.notes.append(f"cache scenario: the self-test through the {mode} wrapper failed: {report}")
    expected = {"cold": True, "warm": True, "fallback": False}
    if checks != expected:
        res.notes.append(f"cache scenario: --self-test through each wrapper reported in_place {checks}, not {expected}: "
                         "its columns do not mean what they say.")
    res.cache_checks = {"in_place": checks, "expected": expected, "ok": checks == expected}
    if not cache_ids(varlib):
        res.notes.append("cache scenario: the warm check left no cache behind; warm figures are not warm.")
    modes = ["cold", "warm", "fallback"]
    with Netns("bc") as container:
        conf = hostlocal_conf(os.path.join(work, "hl-cache"), "bench", "10.214.0.0/24")
        for i in range(iterations):
            for mode in modes[i % 3:] + modes[:i % 3]:  # each mode first, second and third in turn (a warm cache always exists:
                # the checks above left one, and a cold run leaves the one it made)
                label = CACHE_MODES[mode]
                for command in CACHE_COMMANDS:
                    if mode == "cold":
                        clear_cache(varlib)
                    config = b'{"cniVersion":"1.0.0"}' if command == "VERSION" else conf
                    cid = f"cache-{mode}-{i}" if command != "VERSION" else ""
                    run = ours.run("host-local", command, config, cid, container.path if cid else "", wrap=wraps[mode])
                    res.add(f"{label}: host-local {command}", "ours", run)
                    if mode == "cold" and not cache_ids(varlib):
                        res.failures.setdefault((f"{label}: host-local {command}", "ours"), []).append(
                            "the cold start left no cache: it did not run in place")
            # the wrapper alone: the same namespace and mounts, then exec /bin/true
            res.add(f"{CACHE_MODES['wrapper']}: /bin/true", "ours", _run_argv([*wraps["warm"], "/bin/true"], ours.env("VERSION")))


def _run_argv(argv: list[str], env: dict, stdin: bytes | None = None) -> tuple[float, float, int, bytes]:
    """(wall ms, CPU ms, exit status, stdout) of one command, from spawn to exit (Impl.run says what CPU counts)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=env)
    if stdin is not None:
        try:  # configs fit a pipe buffer: plugins read all of stdin before they write
            proc.stdin.write(stdin)
        except BrokenPipeError:
            pass
        proc.stdin.close()
    out = proc.stdout.read()
    proc.stdout.close()
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = (time.perf_counter() - start) * 1e3
    proc.returncode = os.waitstatus_to_exitcode(status)
    return elapsed, (usage.ru_utime + usage.ru_stime) * 1e3, proc.returncode, out


# --- the burst ---------------------------------------------------------------------------


def _tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return pids


class Sampler(threading.Thread):
    """Sum of RSS of every process in the plugin trees, and what per-start extraction holds in TMPDIR (_MEI*; none in place)."""

    def __init__(self, roots: list[int], tmpdir: str, interval: float = 0.005):
        super().__init__(daemon=True)
        self.roots, self.tmpdir, self.interval = roots, tmpdir, interval
        self.stop = threading.Event()
        self.peak_rss = self.peak_procs = self.peak_extracted = self.samples = 0
        self.page = os.sysconf("SC_PAGE_SIZE")

    def run(self) -> None:
        while not self.stop.is_set():
            rss = procs = 0
            for root in list(self.roots):
                for pid in _tree(root):
                    try:
                        with open(f"/proc/{pid}/statm") as f:
                            rss += int(f.read().split()[1]) * self.page
                        procs += 1
                    except (OSError, IndexError, ValueError):
                        pass
            extracted = 0
            for top in _scandir(self.tmpdir):
                for directory, _, files in os.walk(top):
                    for name in files:
                        try:
                            extracted += os.lstat(os.path.join(directory, name)).st_size
                        except OSError:
                            pass
            self.peak_rss, self.peak_procs = max(self.peak_rss, rss), max(self.peak_procs, procs)
            self.peak_extracted = max(self.peak_extracted, extracted)
            self.samples += 1
            self.stop.wait(self.interval)


def _scandir(path: str) -> list[str]:
    try:
        return [e.path for e in os.scandir(path) if e.name.startswith("_MEI")]
    except OSError:
        return []


def burst(impl: Impl, node: Netns, containers: list[Netns], conf: dict, command: str, sample: bool, prev: dict | None = None):
    """Start one plugin per container at once: (wall ms, [(rc, stdout)], CPU ms of all of them, sampler or None)."""
    procs = []
    sampler = Sampler([], impl.tmpdir) if sample else None
    with inside(node):
        start = time.perf_counter()
        for i, container in enumerate(containers):
            c = dict(conf)
            if prev and prev.get(i):
                c["prevResult"] = prev[i]
            p = subprocess.Popen([os.path.join(impl.bin_dir, "bridge")], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL, env=impl.env(command, f"burst{i}", container.path))
            procs.append((p, json.dumps(c).encode()))
            if sampler:
                sampler.roots.append(p.pid)
        if sampler:
            sampler.start()
        for p, data in procs:  # every process exists before any gets its config: maximal overlap
            p.stdin.write(data)
            p.stdin.close()
        outs, cpu = [], 0.0
        for p, _ in procs:
            out = p.stdout.read()
            p.stdout.close()
            _, status, usage = os.wait4(p.pid, 0)
            p.returncode = os.waitstatus_to_exitcode(status)
            cpu += usage.ru_utime + usage.ru_stime
            outs.append((p.returncode, out))
        wall = (time.perf_counter() - start) * 1e3
    if sampler:
        sampler.stop.set()
        sampler.join()
    return wall, outs, cpu * 1e3, sampler


def bench_burst(res: Results, impls: list[Impl], size: int, rounds: int, work: str) -> None:
    """Ours and the reference, alternately: each burst once for timing and once more with the memory sampler."""
    for r in range(rounds):
        for impl in alternate(r, impls):
            for sample in (False, True):  # timing without the sampler; memory with it
                node = Netns("bb")
                containers = []
                try:
                    containers = [Netns("bc") for _ in range(size)]
                    data = os.path.join(work, f"burst-{impl.label.replace(' ', '_')}-{r}-{int(sample)}")
                    conf = bridge_conf(data, "cniburst0", "10.212.0.0/24")
                    wall_add, adds, cpu_add, s_add = burst(impl, node, containers, conf, "ADD", sample)
                    prev = {i: json.loads(out) for i, (rc, out) in enumerate(adds) if rc == 0 and out.strip()}
                    wall_del, dels, cpu_del, s_del = burst(impl, node, containers, conf, "DEL", sample, prev)
                    entry = res.burst.setdefault(impl.label, {"rounds": 0})
                    if not sample:
                        addresses = [v["ips"][0]["address"] for v in prev.values() if v.get("ips")]
                        entry["rounds"] += 1
                        entry.setdefault("add_wall", []).append(wall_add)
                        entry.setdefault("del_wall", []).append(wall_del)
                        entry.setdefault("add_cpu", []).append(cpu_add)
                        entry.setdefault("del_cpu", []).append(cpu_del)
                        entry["add_failures"] = entry.get("add_failures", 0) + sum(1 for rc, _ in adds if rc != 0)
                        entry["del_failures"] = entry.get("del_failures", 0) + sum(1 for rc, _ in dels if rc != 0)
                        entry.setdefault("distinct", []).append(len(set(addresses)))
                        entry.setdefault("results", []).append(len(addresses))
                        leftover = [link["ifname"] for link in node.ipj("link", "show") if link["ifname"].startswith("veth")]
                        entry["leftover_veths"] = entry.get("leftover_veths", 0) + len(leftover)
                        errors = [out[:200].decode(errors="replace") for rc, out in adds + dels if rc != 0]
                        entry.setdefault("errors", []).extend(errors[:3])
                    else:
                        entry["peak_rss"] = max(entry.get("peak_rss", 0), s_add.peak_rss, s_del.peak_rss)
                        entry["peak_procs"] = max(entry.get("peak_procs", 0), s_add.peak_procs, s_del.peak_procs)
                        entry["peak_extracted"] = max(entry.get("peak_extracted", 0), s_add.peak_extracted, s_del.peak_extracted)
                        entry["samples"] = entry.get("samples", 0) + s_add.samples + s_del.samples
                        entry["sampled_add_wall"] = wall_add
                finally:
                    for ns in containers:
                        ns.close()
                    node.close()


# --- host-local on a nearly full /16 -------------------------------------------------------


def prefill(directory: str, hosts: list[str], last: str) -> None:
    """Allocations in the reference's format: one file per address, '<id>\\r\\n<ifname>', and last_reserved_ip.0."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    for n, ip in enumerate(hosts):
        fd = os.open(os.path.join(directory, ip), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, f"prefill{n}\r\neth0".encode())
        os.close(fd)
    with open(os.path.join(directory, "last_reserved_ip.0"), "w") as f:
        f.write(last)


def slash16_hosts() -> list[str]:
    """10.213.0.2 .. 10.213.255.254: the /16's allocatable addresses (10.213.0.1 is the gateway)."""
    return [f"10.213.{n >> 8}.{n & 255}" for n in range(2, 65535)]


def bench_slash16(res: Results, impls: list[Impl], iterations: int, work: str, allocated: int) -> None:
    hosts = slash16_hosts()
    rng = random.Random(16)
    taken = rng.sample(hosts, allocated)
    base = os.path.join(work, "slash16")
    prefill(os.path.join(base, "big"), taken, taken[-1])
    prefill(os.path.join(base, "full"), hosts, hosts[-1])
    res.notes.append(f"/16: {allocated} of {len(hosts) + 1} addresses allocated at random (seed 16), in the reference's file format; "
                     f"both implementations use the same directory, interleaved.")
    label = f"{allocated / 1000:g}k"
    with Netns("bc") as container:
        for i in range(iterations):
            for impl in alternate(i, impls):
                conf = hostlocal_conf(base, "big", "10.213.0.0/16")
                cid = f"s16-{impl.label}-{i}"
                res.add(f"host-local ADD, /16 with {label} used", impl.label, impl.run("host-local", "ADD", conf, cid, container.path))
                res.add(f"host-local DEL, /16 with {label} used", impl.label, impl.run("host-local", "DEL", conf, cid, container.path))
                conf = hostlocal_conf(base, "full", "10.213.0.0/16")
                failed = impl.run("host-local", "ADD", conf, f"full-{i}", container.path)
                res.add("host-local ADD, /16 exhausted (error)", impl.label, failed, want_rc=1)
                out = failed[3]
                if i == 0:
                    try:
                        doc = json.loads(out)
                        res.exhausted[impl.label] = {"code": doc.get("code"), "msg": doc.get("msg")}
                    except ValueError:
                        res.exhausted[impl.label] = {"code": None, "msg": out[:200].decode(errors="replace")}


# --- main -------------------------------------------------------------------------------------


def environment(ours: str) -> dict:
    """What the report's header says; read before private_varlib hides the machine's /var/lib (dpkg's database)."""
    rev = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    ref_version = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "containernetworking-plugins"], capture_output=True, text=True).stdout
    binary = os.path.join(ours, "cni-multi")
    return {"git": rev, "kernel": os.uname().release, "cpus": os.cpu_count(), "loadavg": " ".join(load),
            "binary_bytes": os.path.getsize(binary) if os.path.exists(binary) else 0,
            "reference": f"containernetworking-plugins {ref_version or '?'} ({REFERENCE})",
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def binary_identity(ours: str) -> tuple:
    st = os.stat(os.path.join(ours, "cni-multi"))
    return st.st_ino, st.st_size, st.st_mtime_ns


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=int(os.environ.get("ITERATIONS") or 15), help="runs per measured command (default 15)")
    parser.add_argument("--burst", type=int, default=110, help="parallel bridge ADDs (then DELs) per burst (default 110)")
    parser.add_argument("--burst-rounds", type=int, default=1, help="bursts per implementation (default 1)")
    parser.add_argument("--allocated", type=int, default=60000, help="addresses allocated in the /16 (default 60000)")
    parser.add_argument("--ours", default=OURS)
    parser.add_argument("--reference", default=REFERENCE)
    parser.add_argument("--out", default=os.path.join(REPO, "bench", "out"))
    parser.add_argument("--only", default="", help=f"comma-separated subset of {','.join(STEPS)}")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench: needs root (namespaces)", file=sys.stderr)
        return 2
    for d, name in ((args.ours, "cni-multi"), (args.reference, "host-local")):
        if not os.path.exists(os.path.join(d, name)):
            print(f"bench: {d}/{name} is missing (make build; make deps installs the reference)", file=sys.stderr)
            return 2
    only = set(filter(None, args.only.split(","))) or set(STEPS)
    if unknown := only - set(STEPS):
        print(f"bench: --only: unknown {','.join(sorted(unknown))} (choose from {','.join(STEPS)})", file=sys.stderr)
        return 2
    args.ours, args.out = os.path.abspath(args.ours), os.path.abspath(args.out)
    os.makedirs(args.out, exist_ok=True)
    env = environment(args.ours)
    identity = binary_identity(args.ours)
    work = tempfile.mkdtemp(prefix="cni-bench-")
    try:
        varlib = private_varlib(work)
    except (OSError, RuntimeError) as err:
        shutil.rmtree(work, ignore_errors=True)
        print(f"bench: cannot give the benchmark a private /var/lib ({err}); not running, so the machine's /var/lib/cni-multi "
              "stays untouched", file=sys.stderr)
        return 2
    rt = os.path.join(work, "rt")
    os.mkdir(rt, 0o700)
    ours, ref = Impl("ours", args.ours, rt), Impl("reference", args.reference, rt)
    impls = [ours, ref]
    res = Results()
    # the cache filled before anything is timed: every row but the cache scenario's is a warm start, as after make install
    check = self_test(args.ours, tmpdir=rt)
    env["ours_in_place"] = bool(check.get("in_place"))
    env["ours_runtime_dir"] = str(check.get("runtime_tmpdir", "?"))
    if not env["ours_in_place"]:
        res.notes.append(f"ours did NOT run in place (self-test: {check}); every figure of ours is per-start extraction.")
    started = time.monotonic()
    steps = {"version": lambda: bench_version(res, impls, args.iterations),
             "hostlocal": lambda: bench_hostlocal(res, impls, args.iterations, work),
             "bridge": lambda: bench_bridge(res, impls, args.iterations, work),
             "vxlan": lambda: bench_vxlan(res, ours, args.iterations, work),
             "vxlanscale": lambda: bench_vxlan_scale(res, ours, args.iterations, work),
             "cache": lambda: bench_cache(res, ours, args.iterations, work),
             "slash16": lambda: bench_slash16(res, impls, args.iterations, work, args.allocated),
             "burst": lambda: bench_burst(res, impls, args.burst, args.burst_rounds, work)}
    try:
        for name in STEPS:
            if name in only:
                t = time.monotonic()
                print(f"bench: {name} ...", file=sys.stderr, flush=True)
                steps[name]()
                print(f"bench: {name} done in {time.monotonic() - t:.0f} s", file=sys.stderr, flush=True)
    finally:
        builds = cache_ids(varlib)
        shutil.rmtree(work, ignore_errors=True)
        leftover = netenv.our_namespaces()
        for name in leftover:
            netenv.sh("ip", "netns", "del", name, check=False)
        if leftover:
            res.notes.append(f"bench left namespaces behind and deleted them: {leftover} (a bug: report it)")
    try:
        replaced = binary_identity(args.ours) != identity
    except OSError:
        replaced = True
    if len(builds) > 1 or replaced:
        res.notes.append(f"the binary was replaced during the run ({len(builds)} builds ran): some figures of ours are from another "
                         "build, and its first start was cold; run again.")
    with open("/proc/loadavg") as f:
        env["loadavg_end"] = " ".join(f.read().split()[:3])
    env["seconds"] = round(time.monotonic() - started)
    env["iterations"] = args.iterations
    env["burst"] = args.burst
    env["tmpdir"] = "a private directory on " + (os.path.dirname(work) or "/")

    from bench import report

    text = report.write(res, env, args.out)
    print(text)
    return 0
