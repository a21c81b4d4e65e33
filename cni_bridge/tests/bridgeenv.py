"""Helpers of the bridge's namespace tests: configs, plugin runs, and what a node holds.

Black-box on purpose: everything is observed with iproute2, nft and
iptables-save inside the test's own namespaces, and the rule identities are
computed here from the documented formats rather than imported from the
plugin, so a change of format is caught.
"""

import copy
import hashlib
import json
import os
import re
import subprocess
import time

from conformance.netenv import Netns, Outcome, ns_state, run_plugin, tree_state

IFNAME = "eth0"


def config(tmp_path, name: str = "brt", bridge: str = "cnitbr0", subnets=("10.91.0.0/24",), version: str = "1.1.0", **keys) -> dict:
    """A bridge config whose state lives under tmp_path; subnets=() gives a layer-2 bridge."""
    conf = {"cniVersion": version, "name": name, "type": "bridge", "bridge": bridge, "dataDir": str(tmp_path / "bridge")}
    if subnets:
        conf["ipam"] = {"type": "host-local", "dataDir": str(tmp_path / "ipam"), "ranges": [[{"subnet": s}] for s in subnets]}
    conf.update(copy.deepcopy(keys))
    return conf


def with_prev(conf: dict, result: dict) -> dict:
    """The CHECK (or DEL) config for an attachment: the ADD result as prevResult."""
    out = copy.deepcopy(conf)
    out["prevResult"] = result
    return out


class Bench:
    """One node namespace running the bridge plugin, and container namespaces on demand."""

    def __init__(self, bin_dir: str, make_netns, tmp_path):
        self.bin_dir = bin_dir
        self.bridge = os.path.join(bin_dir, "bridge")
        self.tmp = tmp_path
        self._make = make_netns
        self.node = make_netns("n")

    def container(self) -> Netns:
        return self._make("c")

    def run(
        self,
        command: str,
        conf,
        container: Netns | None = None,
        cid: str = "c1",
        *,
        netns: str | None = None,
        ifname: str = IFNAME,
        path: str = "",
        env: dict | None = None,
        args: str = "",
    ) -> Outcome:
        if netns is None:
            netns = container.path if container is not None else ""
        return run_plugin(
            self.bridge, command, conf, node=self.node, netns=netns, ifname=ifname, container_id=cid, path=path or self.bin_dir, env=env, args=args
        )

    def add(self, conf, container: Netns, cid: str = "c1", **kw) -> dict:
        out = self.run("ADD", conf, container, cid, **kw)
        assert out.ok, out
        return out.json

    def gc(self, conf, valid=None) -> Outcome:
        conf = copy.deepcopy(conf)
        if valid is not None:
            conf["cni.dev/valid-attachments"] = [{"containerID": cid, "ifname": ifname} for cid, ifname in valid]
        return run_plugin(self.bridge, "GC", conf, node=self.node, ifname="", path=self.bin_dir)

    def snapshot(self, *containers: Netns) -> dict:
        """Everything a failed or refused command must leave exactly as it was."""
        return {"node": ns_state(self.node), "containers": [ns_state(c) for c in containers], "files": tree_state(str(self.tmp))}


def difference(before, after, path: str = "") -> str:
    """Where two snapshots first differ, for assertion messages."""
    if isinstance(before, dict) and isinstance(after, dict):
        for key in sorted(set(before) | set(after), key=str):
            if before.get(key) != after.get(key):
                return difference(before.get(key), after.get(key), f"{path}.{key}")
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        for i, (x, y) in enumerate(zip(before, after, strict=True)):
            if x != y:
                return difference(x, y, f"{path}[{i}]")
    return f"{path}: before {before!r}\n  after {after!r}"


# --- what a namespace holds ----------------------------------------------------


def links(ns: Netns) -> dict[str, dict]:
    return {link["ifname"]: link for link in ns.ipj("-d", "link", "show")}


def kind(link: dict) -> str | None:
    return link.get("linkinfo", {}).get("info_kind")


def veths(ns: Netns) -> list[str]:
    return sorted(name for name, link in links(ns).items() if kind(link) == "veth")


def addresses(ns: Netns, ifname: str = IFNAME) -> list[str]:
    return sorted(
        f"{i['local']}/{i['prefixlen']}"
        for a in ns.ipj("addr", "show")
        if a["ifname"] == ifname
        for i in a.get("addr_info", [])
        if i.get("scope") == "global"
    )


def sysctl(ns: Netns, key: str) -> str:
    return ns.exec("cat", f"/proc/sys/net/{key}").strip()


def settle(*namespaces: Netns, timeout: float = 10.0) -> None:
    """Wait until IPv6 DAD is over everywhere: a tentative gateway address answers nothing."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any("tentative" in ns.ip("-6", "addr", "show") for ns in namespaces):
            return
        time.sleep(0.1)
    raise AssertionError("IPv6 addresses still tentative")


def wait_carrier(ns: Netns, name: str, timeout: float = 10.0) -> None:
    """A bridge gets carrier from its first forwarding port a moment after the port is up."""
    deadline = time.monotonic() + timeout
    while "NO-CARRIER" in links(ns)[name]["flags"]:
        assert time.monotonic() < deadline, f"{name} has no carrier"
        time.sleep(0.05)


def ping(src: Netns, addr: str) -> None:
    src.exec("ping", "-c1", "-W2", addr)


# --- state files -----------------------------------------------------------------


def allocations(conf: dict) -> list[str]:
    """host-local's files naming an address (records and our .alloc links), not its lock or cursors."""
    directory = os.path.join(conf["ipam"]["dataDir"], conf["name"])
    if not os.path.isdir(directory):
        return []
    return sorted(f for f in os.listdir(directory) if f != "lock" and not f.startswith("last_reserved_ip."))


def records(conf: dict) -> list[str]:
    directory = os.path.join(conf["dataDir"], conf["name"])
    return sorted(os.listdir(directory)) if os.path.isdir(directory) else []


# --- masquerade rules, by the documented identities --------------------------------


def hash16(text: str) -> str:
    return hashlib.sha512(text.encode()).hexdigest()[:16]


def nft_comment(network: str, container_id: str, ifname: str = IFNAME) -> str:
    return f"{hash16(network)}-{hash16(ifname + ':' + container_id)}, net: {network}, if: {ifname}, id: {container_id}"


def ipt_chain(network: str, container_id: str) -> str:
    return "CNI-" + hashlib.sha512((network + container_id).encode()).hexdigest()[:24]


def nft_ruleset(ns: Netns) -> str:
    return ns.exec("nft", "list", "ruleset")


def ipt_nat(ns: Netns) -> str:
    return ns.exec("iptables-save", "-t", "nat") + ns.exec("ip6tables-save", "-t", "nat")


def masq_rules(ns: Netns, network: str, container_id: str) -> list[str]:
    """Every nftables or iptables line that belongs to this container's masquerading."""
    comment, chain = nft_comment(network, container_id), ipt_chain(network, container_id)
    nft = [line.strip() for line in nft_ruleset(ns).splitlines() if comment in line]
    ipt = [line.strip() for line in ipt_nat(ns).splitlines() if chain in line or f'id: \\"{container_id}\\"' in line]
    return nft + ipt


def any_masquerade(ns: Netns) -> list[str]:
    """nftables masquerade statements and iptables MASQUERADE targets or CNI-* chains, of anyone."""
    nft = [line.strip() for line in nft_ruleset(ns).splitlines() if re.search(r"\smasquerade(\s|$)", line)]
    return nft + [line.strip() for line in ipt_nat(ns).splitlines() if "MASQUERADE" in line or "CNI-" in line]


# --- fake IPAM plugins -------------------------------------------------------------


def fake_ipam(directory, name: str, add_body: str, other_body: str = "exit 0") -> str:
    """A shell-script IPAM in `directory`: ADD runs add_body, the rest other_body; every call is logged to <name>.calls."""
    directory = str(directory)
    os.makedirs(directory, exist_ok=True)
    calls = os.path.join(directory, f"{name}.calls")
    script = (
        "#!/bin/sh\n"
        f'echo "$CNI_COMMAND $CNI_CONTAINERID $$" >> {calls}\n'
        "cat > /dev/null\n"
        f'if [ "$CNI_COMMAND" != ADD ]; then {other_body}; fi\n'
        f"{add_body}\n"
    )
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        f.write(script)
    os.chmod(path, 0o755)
    return calls


def calls(log_path: str) -> list[tuple[str, str]]:
    """(command, container ID) of each logged fake-IPAM call."""
    if not os.path.exists(log_path):
        return []
    with open(log_path) as f:
        return [tuple(line.split()[:2]) for line in f if line.strip()]


def alive(pid: int) -> bool:
    """A process exists and is not a zombie (an orphan may wait unreaped under a lazy init)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def start_plugin(bench: Bench, command: str, conf: dict, container: Netns, cid: str, path: str, env: dict | None = None) -> subprocess.Popen:
    """The plugin as a child we can signal (`ip netns exec` and the wrapper both exec, keeping the PID)."""
    import tempfile

    full_env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": cid,
        "CNI_NETNS": container.path,
        "CNI_IFNAME": IFNAME,
        "CNI_PATH": path,
        **(env or {}),
    }
    with tempfile.TemporaryFile() as stdin:  # a file, not a pipe: communicate() then only reads
        stdin.write(json.dumps(conf).encode())
        stdin.seek(0)
        return subprocess.Popen(
            ["ip", "netns", "exec", bench.node.name, bench.bridge], stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full_env
        )
