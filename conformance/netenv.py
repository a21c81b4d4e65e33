"""Test network environments: throw-away namespaces, plugin runs, root snapshots.

Standalone on purpose (stdlib only, nothing of the plugins' internals), so the
conformance suite can test any implementation.  Every namespace gets a
per-process unique name under PREFIX and is deleted by whoever created it.
"""
import itertools
import json
import os
import subprocess
import uuid
from dataclasses import dataclass

PREFIX = "cnit"
_seq = itertools.count()
_RUN = uuid.uuid4().hex[:6]


def sh(*argv: str, check: bool = True, input: bytes | None = None, timeout: float = 60) -> str:
    proc = subprocess.run(argv, input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {proc.returncode}: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout.decode(errors="replace")


def unique_name(tag: str = "") -> str:
    return f"{PREFIX}{_RUN}{tag}{next(_seq)}"


class Netns:
    """A named network namespace (/run/netns/NAME), deleted by close()."""

    def __init__(self, tag: str = "", lo_up: bool = True):
        self.name = unique_name(tag)
        sh("ip", "netns", "add", self.name)
        self.path = f"/run/netns/{self.name}"
        if lo_up:
            self.ip("link", "set", "lo", "up")

    def ip(self, *args: str, check: bool = True) -> str:
        return sh("ip", "-n", self.name, *args, check=check)

    def ipj(self, *args: str):
        out = sh("ip", "-j", "-n", self.name, *args)
        return json.loads(out) if out.strip() else []

    def exec(self, *argv: str, check: bool = True, input: bytes | None = None, timeout: float = 60) -> str:
        return sh("ip", "netns", "exec", self.name, *argv, check=check, input=input, timeout=timeout)

    def close(self) -> None:
        if os.path.exists(self.path):
            sh("ip", "netns", "del", self.name, check=False)

    def __enter__(self) -> "Netns":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class Outcome:
    rc: int
    stdout: bytes
    stderr: bytes

    @property
    def json(self):
        return json.loads(self.stdout) if self.stdout.strip() else None

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def __str__(self) -> str:
        return f"rc={self.rc} stdout={self.stdout.decode(errors='replace')!r} stderr={self.stderr.decode(errors='replace')[-2000:]!r}"


def run_plugin(binary: str, command: str, config, *, node: Netns | None = None, netns: str = "", ifname: str = "eth0",
               container_id: str = "", path: str = "", args: str = "", env: dict | None = None, timeout: float = 60) -> Outcome:
    """Run one plugin command the way a runtime does; inside `node` when given."""
    stdin = config if isinstance(config, bytes) else json.dumps(config).encode()
    full_env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "CNI_COMMAND": command}
    if container_id:
        full_env["CNI_CONTAINERID"] = container_id
    if netns:
        full_env["CNI_NETNS"] = netns
    if ifname:
        full_env["CNI_IFNAME"] = ifname
    full_env["CNI_PATH"] = path or os.path.dirname(binary)
    if args:
        full_env["CNI_ARGS"] = args
    full_env.update(env or {})
    argv = [binary] if node is None else ["ip", "netns", "exec", node.name, binary]
    proc = subprocess.run(argv, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full_env, timeout=timeout)
    return Outcome(proc.returncode, proc.stdout, proc.stderr)


# --- what a namespace holds ---------------------------------------------------

_VOLATILE_LINK = {"ifindex", "link_index", "link_netnsid", "stats", "stats64", "operstate", "linkinfo", "txqlen", "min_mtu", "max_mtu",
                  "num_tx_queues", "num_rx_queues", "gso_max_size", "gso_max_segs", "tso_max_size", "tso_max_segs", "gro_max_size",
                  "gro_ipv4_max_size", "gso_ipv4_max_size", "parentbus", "parentdev", "addr_assign_type", "inet6_addr_gen_mode",
                  "allmulti", "qdisc", "group"}


def ns_state(ns: "Netns", sysctls: bool = True) -> dict:
    """Links (with flags and masters), addresses, routes, rules, firewall and per-link sysctls of a namespace."""
    links = {}
    for link in ns.ipj("-d", "link", "show"):
        links[link["ifname"]] = {k: v for k, v in link.items() if k not in _VOLATILE_LINK}
        info = link.get("linkinfo", {})
        links[link["ifname"]]["kind"] = info.get("info_kind")
        links[link["ifname"]]["slave"] = {k: v for k, v in info.get("info_slave_data", {}).items() if not k.endswith("timer")}
    addrs = sorted(
        (a["ifname"], i["local"], i["prefixlen"], i.get("broadcast"), i.get("scope"))
        for a in ns.ipj("addr", "show") for i in a.get("addr_info", []) if not i["local"].startswith("fe80:")
    )
    routes = sorted(
        json.dumps({k: v for k, v in r.items() if k not in ("expires", "cache")}, sort_keys=True)
        for fam in ("-4", "-6") for r in ns.ipj(fam, "route", "show", "table", "all")
        if not r.get("dst", "").startswith(("fe80", "ff00", "local", "multicast")) and r.get("type") not in ("local", "multicast", "broadcast")
    )
    state = {"links": links, "addresses": addrs, "routes": routes}
    state["nft"] = ns.exec("nft", "list", "ruleset", check=False)
    state["iptables"] = "\n".join(l for l in (ns.exec("iptables-save", check=False) + ns.exec("ip6tables-save", check=False)).splitlines() if not l.startswith("#"))
    if sysctls:
        keys = ["ipv4/ip_forward", "ipv6/conf/all/forwarding"]
        for name in links:
            keys += [f"ipv6/conf/{name}/{k}" for k in ("accept_ra", "accept_dad", "disable_ipv6", "keep_addr_on_down", "enhanced_dad")]
            keys.append(f"ipv4/conf/{name}/arp_notify")
        script = "; ".join(f"printf '%s=' {k}; cat /proc/sys/net/{k} 2>/dev/null || echo" for k in keys)
        state["sysctls"] = dict(line.split("=", 1) for line in ns.exec("sh", "-c", script).splitlines() if "=" in line)
    return state


def tree_state(path: str) -> dict:
    """Every file under path: type, mode, size, content hash."""
    import hashlib

    out = {}
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            full = os.path.join(root, name)
            st = os.lstat(full)
            digest = ""
            if os.path.isfile(full) and not os.path.islink(full):
                with open(full, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
            out[os.path.relpath(full, path)] = (st.st_mode, st.st_size, digest)
    return out


# --- the machine's root namespace must stay untouched -----------------------


def root_snapshot() -> dict:
    """Links, addresses, routes and firewall rules of the namespace we run in."""

    def j(*args):
        out = sh("ip", "-j", *args, check=False)
        return json.loads(out) if out.strip() else []

    links = sorted((l["ifname"], l.get("mtu"), l.get("address"), l.get("master")) for l in j("link", "show"))
    addrs = sorted((a["ifname"], i["local"], i["prefixlen"]) for a in j("addr", "show") for i in a.get("addr_info", []))
    routes = sorted(
        json.dumps({k: v for k, v in r.items() if k not in ("expires", "cache")}, sort_keys=True)
        for fam in ("-4", "-6")
        for r in j(fam, "route", "show", "table", "all")
    )
    rules = sorted(json.dumps(r, sort_keys=True) for fam in ("-4", "-6") for r in j(fam, "rule", "show"))
    nft = sh("nft", "list", "ruleset", check=False) if _have("nft") else ""
    ipt = ""
    for tool in ("iptables-save", "ip6tables-save"):
        if _have(tool):
            ipt += "\n".join(l for l in sh(tool, check=False).splitlines() if not l.startswith("#"))
    return {"links": links, "addresses": addrs, "routes": routes, "rules": rules, "nft": nft, "iptables": ipt}


def _have(tool: str) -> bool:
    return any(os.access(os.path.join(d, tool), os.X_OK) for d in ("/usr/sbin", "/usr/bin", "/sbin", "/bin"))


def our_namespaces() -> list[str]:
    out = sh("ip", "netns", "list", check=False)
    return [line.split()[0] for line in out.splitlines() if line.startswith(PREFIX + _RUN)]


def is_root() -> bool:
    return os.geteuid() == 0
