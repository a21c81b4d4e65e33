"""Assertions and probes shared by the suite's tests (black-box: results, namespaces, dataDirs)."""
from __future__ import annotations

import ipaddress
import json
import os

from conformance.netenv import Netns, Outcome

LEGACY = ("0.1.0", "0.2.0")
RICH_PRE_1 = ("0.3.0", "0.3.1", "0.4.0")
SPEC_VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")


def vkey(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def assert_ok(outcome: Outcome, what: str = "") -> None:
    assert outcome.rc == 0, f"{what}: {outcome}"


def assert_silent_ok(outcome: Outcome, what: str = "") -> None:
    """DEL, CHECK, GC and STATUS print nothing on success."""
    assert outcome.rc == 0, f"{what}: {outcome}"
    assert outcome.stdout.strip() == b"", f"{what}: success must print nothing: {outcome}"


def assert_cni_error(outcome: Outcome, code: int | None = None) -> dict:
    """A failure: exit status != 0 and exactly one JSON error document on stdout."""
    assert outcome.rc != 0, f"expected a failure: {outcome}"
    try:
        doc = json.loads(outcome.stdout)
    except ValueError:
        raise AssertionError(f"error output is not one JSON document: {outcome}") from None
    assert isinstance(doc, dict) and type(doc.get("code")) is int and isinstance(doc.get("msg"), str) and doc["msg"], doc
    if code is not None:
        assert doc["code"] == code, doc
    return doc


def result_addresses(result: dict) -> list[str]:
    """The CIDR addresses of a result of any version."""
    if "ips" in result:
        return [ip["address"] for ip in result["ips"]]
    return [result[fam]["ip"] for fam in ("ip4", "ip6") if fam in result]


def host_ips(result: dict) -> list[str]:
    return [a.split("/")[0] for a in result_addresses(result)]


def assert_result_shape(result: dict, version: str, *, ifname: str, netns: str, ipam_only: bool, subnet: str | None = None) -> None:
    """The result structure SPEC 'Result Types' requires of `version` (0.1.0 .. 1.1.0)."""
    assert result.get("cniVersion") == version, result
    if version in LEGACY:
        assert "ips" not in result and "interfaces" not in result, f"{version} result uses the 0.3+ shape: {result}"
        assert "ip4" in result or "ip6" in result, f"{version} results need at least one address: {result}"
        for fam in ("ip4", "ip6"):
            if fam in result:
                block = result[fam]
                net = ipaddress.ip_interface(block["ip"])  # CIDR
                assert net.version == (4 if fam == "ip4" else 6), block
                if block.get("gateway"):
                    ipaddress.ip_address(block["gateway"])
                for route in block.get("routes", []):
                    ipaddress.ip_network(route["dst"], strict=False)
                    assert set(route) <= {"dst", "gw"}, route
        if subnet and "ip4" in result:
            assert ipaddress.ip_interface(result["ip4"]["ip"]).ip in ipaddress.ip_network(subnet), result
        return
    assert "ip4" not in result and "ip6" not in result, f"{version} result uses the 0.1/0.2 shape: {result}"
    ips = result.get("ips", [])
    assert ips, f"no ips in {result}"
    for ip in ips:
        iface = ipaddress.ip_interface(ip["address"])  # address with prefix length
        if version in RICH_PRE_1:
            assert ip.get("version") == str(iface.version), f"{version} needs ips[].version: {ip}"
        else:
            assert "version" not in ip, f"{version} has no ips[].version: {ip}"
        if ip.get("gateway"):
            ipaddress.ip_address(ip["gateway"])
        if subnet and iface.version == ipaddress.ip_network(subnet).version:
            assert iface.ip in ipaddress.ip_network(subnet), (ip, subnet)
    for route in result.get("routes", []):
        ipaddress.ip_network(route["dst"], strict=False)
    if ipam_only:
        assert "interfaces" not in result or not result["interfaces"], f"an IPAM result has no interfaces: {result}"
        for ip in ips:
            assert "interface" not in ip, f"an IPAM result's ips have no interface index: {ip}"
        return
    interfaces = result.get("interfaces", [])
    containers = [i for i, x in enumerate(interfaces) if x.get("name") == ifname and x.get("sandbox") == netns]
    assert len(containers) == 1, f"expected one interface {ifname!r} with sandbox {netns!r}: {interfaces}"
    for x in interfaces:
        assert isinstance(x.get("name"), str) and x["name"], x
        if version in RICH_PRE_1:
            assert not ({"mtu", "socketPath", "pciID"} & set(x)), f"{version} interfaces have name/mac/sandbox only: {x}"
        if x.get("mac"):
            assert len(x["mac"].split(":")) == 6, x
    for ip in ips:
        assert ip.get("interface") == containers[0], f"ips[].interface must point at the container interface: {ip} {interfaces}"


def container_addresses(ns: Netns, ifname: str) -> list[str]:
    out = []
    for link in ns.ipj("addr", "show", "dev", ifname):
        for info in link.get("addr_info", []):
            if info.get("scope") == "global":
                out.append(f"{info['local']}/{info['prefixlen']}")
    return out


def link_names(ns: Netns) -> set[str]:
    return {link["ifname"] for link in ns.ipj("link", "show")}


def has_link(ns: Netns, name: str) -> bool:
    return name in link_names(ns)


def eventually(predicate, limit: float = 20.0) -> bool:
    """Poll `predicate` until true or `limit` seconds passed (the kernel destroys a deleted netns asynchronously)."""
    import time

    end = time.monotonic() + limit
    while True:
        if predicate():
            return True
        if time.monotonic() > end:
            return False
        time.sleep(0.1)


def allocations(data_dir: str, network: str) -> dict[str, str]:
    """host-local's on-disk reservations (the reference's documented format): {ip: container id}."""
    path = os.path.join(data_dir, network)
    out = {}
    try:
        names = os.listdir(path)
    except FileNotFoundError:
        return out
    for name in names:
        try:
            ipaddress.ip_address(name)
        except ValueError:
            continue
        with open(os.path.join(path, name), "rb") as f:
            out[name] = f.read().decode(errors="replace").split("\r\n")[0].strip()
    return out


def firewall_text(ns: Netns) -> str:
    """Every netfilter rule of a namespace, through both front ends."""
    return ns.exec("nft", "list", "ruleset", check=False) + "\n" + ns.exec("iptables-save", check=False) + "\n" + ns.exec("ip6tables-save", check=False)


def firewall_mentions(ns: Netns, *needles: str) -> list[str]:
    """Firewall lines naming any needle (an address as a whole word, or a container ID)."""
    import re

    hits = []
    for line in firewall_text(ns).splitlines():
        for needle in needles:
            if re.search(r"(?<![\w.:])" + re.escape(needle) + r"(?![\w:]|\.\d)", line):
                hits.append(line.strip())
    return hits


def prepare_node(kind: str, node: Netns) -> None:
    """What a node needs before a plugin of `kind` can run in it."""
    if kind == "vxlan":
        # the static-peers config names this node's VTEP 192.0.2.1: give the node an underlay with that address
        node.ip("link", "add", "underlay0", "type", "veth", "peer", "name", "underlay1")
        node.ip("link", "set", "underlay1", "up")
        node.ip("addr", "add", "192.0.2.1/24", "dev", "underlay0")
        node.ip("link", "set", "underlay0", "up")
        node.ip("route", "add", "default", "via", "192.0.2.254", "dev", "underlay0")


def logging_plugin_dir(dest: str, log_dir: str, sources: list[str]) -> str:
    """A plugin directory of wrappers that record each call (env, stdin) and exec the real plugin.

    Every plugin of `sources` (first wins) gets a /bin/sh wrapper in `dest`; a call leaves
    LOG/<ns-time>-<pid>-<type>.env and .stdin.  Works under a minimal environment (conmon's DEL).
    """
    import shlex

    os.makedirs(dest, exist_ok=True)
    os.makedirs(log_dir, exist_ok=True)
    seen = set()
    for directory in sources:
        for name in sorted(os.listdir(directory)):
            real = os.path.join(directory, name)
            if name in seen or not os.path.isfile(real) or not os.access(real, os.X_OK):
                continue
            seen.add(name)
            base = shlex.quote(log_dir) + f'/"$(/bin/date +%s%N)-$$-{name}"'
            script = (
                "#!/bin/sh\n"
                f"b={base}\n"
                '/usr/bin/env > "$b.env"\n'
                '/bin/cat > "$b.stdin"\n'
                f'exec {shlex.quote(real)} "$@" < "$b.stdin"\n'
            )
            path = os.path.join(dest, name)
            with open(path, "w") as f:
                f.write(script)
            os.chmod(path, 0o755)
    return dest


def logged_calls(log_dir: str) -> list[dict]:
    """The calls a logging_plugin_dir recorded, oldest first: {type, env, stdin (parsed when JSON), raw}."""
    calls = []
    for name in sorted(os.listdir(log_dir), key=lambda n: (int(n.split("-", 1)[0]), n)):
        if not name.endswith(".stdin"):
            continue
        stem = name[: -len(".stdin")]
        with open(os.path.join(log_dir, name), "rb") as f:
            raw = f.read()
        env = {}
        try:
            with open(os.path.join(log_dir, stem + ".env")) as f:
                for line in f.read().splitlines():
                    if "=" in line:
                        key, value = line.split("=", 1)
                        env[key] = value
        except FileNotFoundError:
            pass
        try:
            stdin = json.loads(raw)
        except ValueError:
            stdin = None
        calls.append({"type": stem.split("-", 2)[2], "command": env.get("CNI_COMMAND", ""), "env": env, "stdin": stdin, "raw": raw})
    return calls
