"""vxlan configuration: the overlay, this node's identity, the peer source, the delegate.

`VxlanConf.load(args)` takes the command's CmdArgs, as every plugin's loader
does (why: `common.skel.CmdArgs.for_config`); it reads only the config.
"""

import json
import os
import re
import socket
from dataclasses import dataclass
from ipaddress import ip_address, ip_network
from typing import TYPE_CHECKING

from cni_vxlan import conf6
from cni_vxlan.etcd import parse_endpoint
from cni_vxlan.peers import SOURCES
from common.config import Obj, check_name
from common.errors import CNIError, Code
from common.skel import CmdArgs, ifname_problem

if TYPE_CHECKING:  # annotations only: conf is on every plugin call's import path
    from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

DEFAULT_DATA_DIR = "/var/lib/cni/vxlan"
DEFAULT_PORT = 4789
DEFAULT_PREFIX = "/cni-vxlan"
DEFAULT_BRIDGE = "cnivx0"
ROUTE_PROTOCOL = 241  # tags the routes we own, so stale ones are found by protocol too
MAC_RE = re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}\Z")
NODE_RE = re.compile(r"[^\s/]{1,253}\Z")  # a node name is an etcd key segment: no '/'
BROADCAST = ip_address("255.255.255.255")
# pods route the whole overlay: none of it may be this-network, loopback, link-local, multicast or reserved
NOT_FOR_PODS = tuple(ip_network(n) for n in ("0.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/3"))


@dataclass(frozen=True)
class Peer:
    """Another node of the overlay: its VTEP and pod subnet."""

    node: str
    vtep: "IPv4Address | IPv6Address"  # the remote VTEP address
    subnet: "IPv4Network | IPv6Network"  # the node's pod subnet: IPv4 in a config; records read back from etcd or state files are not family-checked
    mac: str  # its VTEP device's MAC
    subnet6: "IPv6Network | None" = None  # its IPv6 pod subnet in a dual-stack overlay (None: an IPv4 peer only)

    @property
    def base(self) -> "IPv4Address | IPv6Address":
        """The remote device's own address: the subnet's network address (flannel's scheme)."""
        return self.subnet.network_address

    @property
    def base6(self) -> "IPv6Address | None":
        """The remote device's own IPv6 address: the IPv6 subnet's first address, as for IPv4."""
        return self.subnet6.network_address if self.subnet6 is not None else None


@dataclass(frozen=True)
class EtcdConf:
    """How to reach the etcd store."""

    endpoints: tuple[str, ...]
    prefix: str
    lease_ttl: int
    timeout: float
    ca_file: str
    cert_file: str
    key_file: str


@dataclass(frozen=True)
class VxlanConf:
    """The vxlan plugin's network configuration, validated."""

    name: str
    network: "IPv4Network"
    subnet_len: int
    subnet_min: "IPv4Network"  # first leasable subnet
    subnet_max: "IPv4Network"
    vni: int
    port: int
    device: str
    bridge: str
    vtep_interface: str  # "" to follow the default route
    vtep_address: "IPv4Address | IPv6Address | None"  # None to use the VTEP interface's primary address
    mtu: int  # 0: the underlay's MTU minus the encapsulation overhead
    node_name: str
    peer_source: str  # a name in peers.SOURCES: "etcd" or "static"
    peers: tuple[Peer, ...]
    etcd: EtcdConf | None
    data_dir: str
    delegate: dict
    ipam: dict
    tx_checksum_offload: str  # "auto", "on" or "off"
    lock_timeout: float
    ipv6_network: "IPv6Network | None" = None  # the IPv6 pod network beside the IPv4 one (None: IPv4 only)
    ipv6_subnet_len: int = 0  # each node's IPv6 subnet (0 without ipv6Network)

    @classmethod
    def load(cls, args: CmdArgs) -> "VxlanConf":
        config = args.config
        name = check_name(config.get("name"))
        top = Obj(config)
        network = _network(top)
        subnet_len = _subnet_len(top, network)
        vni = top.int("vni", 1, 1, 16777215)
        device = top.str("device") or f"cnivx.{vni}"
        bridge = _delegate_bridge(top)
        vtep_interface = top.str("vtepInterface") or ""
        for key, ifname in (("device", device), ("delegate.bridge", bridge), ("vtepInterface", vtep_interface)):
            if ifname and (why := ifname_problem(ifname)):
                raise CNIError(Code.INVALID_CONFIG, f"invalid {key}", f"{_quote(ifname)}: {why}")
        peer_source = top.str("peerSource") or "etcd"
        if peer_source not in SOURCES:
            raise top.bad("peerSource", " or ".join(f"'{known}'" for known in SOURCES), peer_source)
        node_name = top.str("nodeName") or socket.gethostname()
        if not NODE_RE.match(node_name) or not node_name.isprintable():
            raise top.bad("nodeName", "a node name (no '/' or spaces)", node_name)
        subnet_min, subnet_max = _subnet_bounds(top, network, subnet_len)
        network6 = conf6.network6(top)
        subnet_len6 = conf6.subnet_len6(top, network6) if network6 is not None else 0
        conf = cls(
            name=name,
            network=network,
            subnet_len=subnet_len,
            subnet_min=subnet_min,
            subnet_max=subnet_max,
            vni=vni,
            port=top.int("port", DEFAULT_PORT, 1, 65535),
            device=device,
            bridge=bridge,
            vtep_interface=vtep_interface,
            vtep_address=_vtep_address(top),
            mtu=top.int("mtu", 0, 68, 65535),
            node_name=node_name,
            peer_source=peer_source,
            peers=_peers(top, network, subnet_len, network6, subnet_len6) if peer_source == "static" else (),
            etcd=_etcd(top) if peer_source == "etcd" else None,
            data_dir=_data_dir(top),
            delegate=_object(top, "delegate"),
            ipam=_object(top, "ipam"),
            tx_checksum_offload=_offload(top),
            lock_timeout=10.0,
            ipv6_network=network6,
            ipv6_subnet_len=subnet_len6,
        )
        own = conf.own_peer()
        if peer_source == "static" and own is None:
            raise CNIError(
                Code.INVALID_CONFIG, f"static peers have no entry for this node ({node_name!r})", "add {node, vtep, subnet} for it, or set nodeName"
            )
        if own is not None and network6 is not None and own.subnet6 is None:
            raise CNIError(
                Code.INVALID_CONFIG,
                f"static peer {node_name} has no subnet6",
                f"with ipv6Network, this node's own entry needs its IPv6 pod subnet (a /{subnet_len6} inside {network6}); "
                "other peers without one are IPv4 peers",
            )
        return conf

    def own_peer(self) -> Peer | None:
        return next((p for p in self.peers if p.node == self.node_name), None)


def vtep_mac(subnet) -> str:
    """0e:56 + the subnet's base address: unique per lease, stable across restarts, never random."""
    return "0e:56:" + ":".join(f"{b:02x}" for b in subnet.network_address.packed)


def parse_mac(text: str) -> str:
    """A VTEP's MAC in the kernel's lowercase, which CHECK and the reconcile plan compare as strings.

    ValueError for a group MAC (broadcast included), never a device's own, and
    for the all-zero MAC, the FDB's default-destination entry.
    """
    if not MAC_RE.match(text):
        raise ValueError("want six colon-separated hex octets, e.g. 0e:56:c6:12:01:00")
    mac = text.lower()
    if int(mac[:2], 16) & 1:
        raise ValueError("a multicast MAC (the low bit of the first octet is set; broadcast is one): a VTEP needs a unicast MAC")
    if mac == "00:00:00:00:00:00":
        raise ValueError("the all-zero MAC: a VTEP needs a unicast MAC")
    return mac


def vtep_problem(ip) -> str:
    """Why an address cannot be a VTEP, the unicast source or destination of VXLAN packets ("" if it can)."""
    problems = (
        (ip.is_unspecified, "the unspecified address"),
        (ip.is_loopback, "a loopback address"),
        (ip.is_multicast, "a multicast address"),
        (ip == BROADCAST, "the broadcast address"),
        (ip.version == 6 and ip.ipv4_mapped, "an IPv4-mapped IPv6 address: write the IPv4 address"),
        (ip.version == 6 and ip.scope_id, "an address with a %zone"),
    )
    return next((why for bad, why in problems if bad), "")


def _quote(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _network(top: Obj) -> "IPv4Network":
    text = top.str("network")
    if not text:
        raise CNIError(Code.INVALID_CONFIG, "missing network", "the overlay's CIDR, e.g. 10.244.0.0/16")
    try:
        network = ip_network(text)
    except ValueError as err:
        raise CNIError(Code.INVALID_CONFIG, "invalid network", str(err)) from None
    if network.version != 4:
        raise CNIError(Code.INVALID_CONFIG, "invalid network", "the overlay is IPv4 (the underlay may be IPv6)")
    reserved = next((n for n in NOT_FOR_PODS if network.overlaps(n)), None)
    if reserved is not None:
        raise CNIError(Code.INVALID_CONFIG, "invalid network", f"{network} overlaps {reserved}, which is not for pods")
    return network


def _subnet_len(top: Obj, network: "IPv4Network") -> int:
    default = 24 if network.prefixlen <= 22 else network.prefixlen + 2
    subnet_len = top.int("subnetLen", default)
    if subnet_len > 30:
        raise top.bad("subnetLen", "at most 30 (a node needs room for pods)", subnet_len)
    if subnet_len <= network.prefixlen:
        raise CNIError(
            Code.INVALID_CONFIG,
            f"network {network} is smaller than subnetLen /{subnet_len}",
            f"subnetLen must be longer than the network's prefix ({network.prefixlen}) to carve node subnets out of it",
        )
    return subnet_len


def _subnet_bounds(top: Obj, network: "IPv4Network", subnet_len: int) -> "tuple[IPv4Network, IPv4Network]":
    subnets = network.subnets(new_prefix=subnet_len)
    first = next(subnets)
    # as flannel: the first subnet's base would be the overlay's network address
    default_min = next(subnets, first)
    default_max = ip_network(f"{network.broadcast_address - (2 ** (32 - subnet_len) - 1)}/{subnet_len}")
    assert default_max.version == 4  # the last /subnetLen of an IPv4 network (checked by _network): narrows the type
    bounds: list[IPv4Network] = []
    for key, default in (("subnetMin", default_min), ("subnetMax", default_max)):
        text = top.str(key)
        if not text:
            bounds.append(default)
            continue
        try:
            value = ip_network(text if "/" in text else f"{text}/{subnet_len}")
        except ValueError as err:
            raise CNIError(Code.INVALID_CONFIG, f"invalid {key}", str(err)) from None
        if value.version != 4 or value.prefixlen != subnet_len or not value.subnet_of(network):
            raise CNIError(Code.INVALID_CONFIG, f"invalid {key}", f"{value} is not a /{subnet_len} inside {network}")
        bounds.append(value)
    if bounds[0].network_address > bounds[1].network_address:
        raise CNIError(Code.INVALID_CONFIG, "subnetMin is after subnetMax", f"{bounds[0]} > {bounds[1]}")
    return bounds[0], bounds[1]


def _vtep_address(top: Obj) -> "IPv4Address | IPv6Address | None":
    text = top.str("vtepAddress")
    try:
        address = ip_address(text) if text else None
    except ValueError:
        raise top.bad("vtepAddress", "an IP address", text) from None
    if address is not None and (why := vtep_problem(address)):
        raise CNIError(Code.INVALID_CONFIG, "invalid vtepAddress", f"{address} is {why}")
    return address


def _peers(top: Obj, network: "IPv4Network", subnet_len: int, network6: "IPv6Network | None", subnet_len6: int) -> tuple[Peer, ...]:
    """The static peers.  The same list goes to every node, so a typo is refused naming the peer."""
    peers: list[Peer] = []
    holders: dict[tuple[str, object], tuple[int, str]] = {}  # (what, value) -> (index, node) of the first peer with it
    for i, raw in enumerate(top.list("peers", [])):
        peer = _peer(i, raw, network, subnet_len, network6, subnet_len6)
        # every subnet is a /subnetLen (/ipv6SubnetLen), so two overlap exactly when they are equal
        for what, value in (("node", peer.node), ("vtep", peer.vtep), ("subnet", peer.subnet), ("mac", peer.mac), ("subnet6", peer.subnet6)):
            if value is None:
                continue
            j, node = holders.setdefault((what, value), (i, peer.node))
            if j != i:
                raise _bad_peer(i, peer.node, f"duplicate {what} {value}: peers[{j}] ({node}) has it too")
        peers.append(peer)
    odd = next((p for p in peers if p.vtep.version != peers[0].vtep.version), None)
    if odd is not None:
        first = peers[0]
        raise CNIError(
            Code.INVALID_CONFIG,
            "static peers mix IPv4 and IPv6 VTEPs",
            f"{first.node} has {first.vtep}, {odd.node} has {odd.vtep}: the underlay of one overlay is one family",
        )
    return tuple(peers)


def _peer(i: int, raw, network: "IPv4Network", subnet_len: int, network6: "IPv6Network | None", subnet_len6: int) -> Peer:
    if type(raw) is not dict:
        raise CNIError(Code.INVALID_CONFIG, f"invalid peers[{i}]", f"want {{node, vtep, subnet, subnet6?, mac?}}, got {_quote(raw)}")
    item = Obj(raw, f"peers[{i}].")
    node, vtep, subnet, mac = (item.str(key) for key in ("node", "vtep", "subnet", "mac"))
    missing = [key for key, value in (("node", node), ("vtep", vtep), ("subnet", subnet)) if not value]
    if missing:
        raise _bad_peer(i, node, f"needs node, vtep and subnet; {', '.join(missing)} missing")
    if not NODE_RE.match(node) or not node.isprintable():
        raise _bad_peer(i, node, "node: want a node name (no '/' or spaces)")
    try:
        address = ip_address(vtep)
    except ValueError:
        raise _bad_peer(i, node, f"vtep {_quote(vtep)} is not an IP address") from None
    if why := vtep_problem(address):
        raise _bad_peer(i, node, f"vtep {vtep} is {why}")
    try:
        net = ip_network(subnet)
    except ValueError as err:
        raise _bad_peer(i, node, f"subnet: {str(err)[:160]}") from None
    if net.version != 4 or net.prefixlen != subnet_len or not net.subnet_of(network):
        raise _bad_peer(i, node, f"{net} is not a /{subnet_len} inside {network}")
    try:
        mac = parse_mac(mac) if mac else vtep_mac(net)
    except ValueError as err:
        raise _bad_peer(i, node, f"mac {_quote(mac)}: {err}") from None
    try:
        net6 = conf6.peer_subnet6(item, network6, subnet_len6)
    except ValueError as err:
        raise _bad_peer(i, node, str(err)) from None
    return Peer(node, address, net, mac, net6)


def _bad_peer(i: int, node: str | None, why: str) -> CNIError:
    return CNIError(Code.INVALID_CONFIG, f"invalid peers[{i}]" + (f" (node {_quote(node)})" if node else ""), why)


def _etcd(top: Obj) -> EtcdConf:
    etcd = top.obj("etcd") or Obj({}, "etcd.")
    endpoints = tuple(etcd.str_list("endpoints")) or ("http://127.0.0.1:2379",)
    for url in endpoints:
        try:
            parse_endpoint(url)
        except ValueError as err:
            raise CNIError(Code.INVALID_CONFIG, "invalid etcd.endpoints", f"{_quote(url)}: {err}") from None
    prefix = etcd.str("prefix") or DEFAULT_PREFIX
    if not prefix.startswith("/"):
        raise etcd.bad("prefix", "a key prefix starting with '/'", prefix)
    timeout = etcd.lookup("timeout")
    if timeout is not None and (type(timeout) not in (int, float) or not 0 < timeout <= 60):
        raise etcd.bad("timeout", "seconds in (0, 60]", timeout)
    return EtcdConf(
        endpoints=endpoints,
        prefix=prefix.rstrip("/"),
        lease_ttl=etcd.int("leaseTTL", 0, 0, 86400 * 365),
        timeout=float(timeout or 5),
        ca_file=_path(etcd, "caFile"),
        cert_file=_path(etcd, "certFile"),
        key_file=_path(etcd, "keyFile"),
    )


def _path(obj: Obj, key: str) -> str:
    path = obj.str(key) or ""
    if "\0" in path:  # os.open and ssl would raise ValueError, not a refusal
        raise obj.bad(key, "a path without NUL bytes", path)
    return path


def _data_dir(top: Obj) -> str:
    path = _path(top, "dataDir") or DEFAULT_DATA_DIR
    if not path.startswith("/") or ".." in path.split("/"):
        raise top.bad("dataDir", "an absolute path without '..'", path)
    return os.path.normpath(path)


def _object(top: Obj, key: str) -> dict:
    value = top.obj(key)
    return dict(value.raw) if value is not None else {}


def _delegate_bridge(top: Obj) -> str:
    delegate = top.obj("delegate")
    name = delegate.str("bridge") if delegate is not None else None
    return name or DEFAULT_BRIDGE


def _offload(top: Obj) -> str:
    value = top.lookup("txChecksumOffload")
    if value is None or value == "auto":
        return "auto"
    if type(value) is bool:
        return "on" if value else "off"
    raise top.bad("txChecksumOffload", "'auto', true or false", value)
