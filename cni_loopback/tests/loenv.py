"""Helpers of the loopback tests: configs, plugin runs in a node namespace, and what a pod's lo looks like.

Black-box: the plugin runs as an executable inside a throw-away node namespace
and the pods are throw-away namespaces whose lo starts down, as in a new pod;
everything is observed with iproute2.
"""

import copy

from conformance.netenv import Netns, Outcome, run_plugin

LEGACY = ("0.1.0", "0.2.0")
WITH_IP_VERSION = ("0.3.0", "0.3.1", "0.4.0")
LO_MAC = "00:00:00:00:00:00"


def config(version: str = "1.1.0", **keys) -> dict:
    conf = {"cniVersion": version, "name": "lonet", "type": "loopback"}
    conf.update(copy.deepcopy(keys))
    return conf


def run(binary: str, command: str, conf, node: Netns, netns: str = "", *, cid: str = "lo1", ifname: str = "eth0", env: dict | None = None) -> Outcome:
    return run_plugin(binary, command, conf, node=node, netns=netns, container_id=cid, ifname=ifname, env=env)


def lo_state(ns: Netns) -> tuple[bool, list[str]]:
    """(up, addresses) of a namespace's lo."""
    link = ns.ipj("addr", "show", "dev", "lo")[0]
    return "UP" in link["flags"], [f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", [])]


def expected(version: str, sandbox: str, v6: bool = True) -> dict:
    """The spec's form of the result for lo with 127.0.0.1/8 (and ::1/128), in `version`."""
    addresses = ["127.0.0.1/8"] + (["::1/128"] if v6 else [])
    if version in LEGACY:
        out: dict = {"cniVersion": version, "ip4": {"ip": "127.0.0.1/8"}}
        if v6:
            out["ip6"] = {"ip": "::1/128"}
        out["dns"] = {}
        return out
    ips = []
    for address in addresses:
        ip: dict = {"address": address, "interface": 0}
        if version in WITH_IP_VERSION:
            ip["version"] = "6" if ":" in address else "4"
        ips.append(ip)
    out = {"cniVersion": version, "interfaces": [{"name": "lo", "mac": LO_MAC, "sandbox": sandbox}], "ips": ips}
    if version in WITH_IP_VERSION:
        out["dns"] = {}
    return out


def disable_ipv6(ns: Netns) -> None:
    ns.exec("sysctl", "-q", "-w", "net.ipv6.conf.lo.disable_ipv6=1")
