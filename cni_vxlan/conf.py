"""vxlan configuration: the overlay, this node's identity, the peer source, the delegate."""
import os
import socket
from dataclasses import dataclass
from ipaddress import ip_address, ip_network

from common.config import Obj
from common.errors import CNIError, Code
from common.skel import ifname_problem

DEFAULT_DATA_DIR = "/var/lib/cni/vxlan"
DEFAULT_PORT = 4789
DEFAULT_PREFIX = "/cni-vxlan"
DEFAULT_BRIDGE = "cnivx0"
ROUTE_PROTOCOL = 241  # tags the routes we own, so stale ones are found by protocol too


@dataclass(frozen=True)
class Peer:
    """Another node of the overlay: its VTEP and pod subnet."""

    node: str
    vtep: object  # the remote VTEP address (IPv4Address | IPv6Address)
    subnet: object  # the node's pod subnet (IPv4Network)
    mac: str  # its VTEP device's MAC

    @property
    def base(self):
        """The remote device's own address: the subnet's network address (flannel's scheme)."""
        return self.subnet.network_address


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
    network: object  # IPv4Network
    subnet_len: int
    subnet_min: object  # first leasable subnet (IPv4Network)
    subnet_max: object
    vni: int
    port: int
    device: str
    bridge: str
    vtep_interface: str  # "" to follow the default route
    vtep_address: object  # None to use the VTEP interface's primary address
    mtu: int  # 0: the underlay's MTU minus the encapsulation overhead
    node_name: str
    peer_source: str  # "etcd" or "static"
    peers: tuple[Peer, ...]
    etcd: EtcdConf | None
    data_dir: str
    delegate: dict
    ipam: dict
    tx_checksum_offload: str  # "auto", "on" or "off"
    lock_timeout: float

    @classmethod
    def load(cls, config: dict) -> "VxlanConf":
        top = Obj(config)
        network = _network(top)
        subnet_len = _subnet_len(top, network)
        vni = top.int("vni", 1, 1, 16777215)
        device = top.str("device") or f"cnivx.{vni}"
        bridge = _delegate_bridge(top)
        for key, name in (("device", device), ("delegate.bridge", bridge)):
            if why := ifname_problem(name):
                raise CNIError(Code.INVALID_CONFIG, f"invalid {key}", f"{name!r}: {why}")
        peer_source = top.str("peerSource") or "etcd"
        if peer_source not in ("etcd", "static"):
            raise top.bad("peerSource", "'etcd' or 'static'", peer_source)
        node_name = top.str("nodeName") or socket.gethostname()
        subnet_min, subnet_max = _subnet_bounds(top, network, subnet_len)
        conf = cls(
            name=config["name"],
            network=network,
            subnet_len=subnet_len,
            subnet_min=subnet_min,
            subnet_max=subnet_max,
            vni=vni,
            port=top.int("port", DEFAULT_PORT, 1, 65535),
            device=device,
            bridge=bridge,
            vtep_interface=top.str("vtepInterface") or "",
            vtep_address=_address(top, "vtepAddress"),
            mtu=top.int("mtu", 0, 68, 65535),
            node_name=node_name,
            peer_source=peer_source,
            peers=_peers(top, network, subnet_len) if peer_source == "static" else (),
            etcd=_etcd(top) if peer_source == "etcd" else None,
            data_dir=_data_dir(top),
            delegate=_object(top, "delegate"),
            ipam=_object(top, "ipam"),
            tx_checksum_offload=_offload(top),
            lock_timeout=10.0,
        )
        if peer_source == "static" and conf.own_peer() is None:
            raise CNIError(Code.INVALID_CONFIG, f"static peers have no entry for this node ({node_name!r})", "add {node, vtep, subnet} for it, or set nodeName")
        return conf

    def own_peer(self) -> Peer | None:
        return next((p for p in self.peers if p.node == self.node_name), None)


def vtep_mac(subnet) -> str:
    """0e:56 + the subnet's base address: unique per lease, stable across restarts, never random."""
    return "0e:56:" + ":".join(f"{b:02x}" for b in subnet.network_address.packed)


def _network(top: Obj):
    text = top.str("network")
    if not text:
        raise CNIError(Code.INVALID_CONFIG, "missing network", "the overlay's CIDR, e.g. 10.244.0.0/16")
    try:
        network = ip_network(text)
    except ValueError as err:
        raise CNIError(Code.INVALID_CONFIG, "invalid network", str(err)) from None
    if network.version != 4:
        raise CNIError(Code.INVALID_CONFIG, "invalid network", "the overlay is IPv4 (the underlay may be IPv6)")
    return network


def _subnet_len(top: Obj, network) -> int:
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


def _subnet_bounds(top: Obj, network, subnet_len: int):
    subnets = network.subnets(new_prefix=subnet_len)
    first = next(subnets)
    # as flannel: the first subnet's base would be the overlay's network address
    default_min = next(subnets, first)
    default_max = ip_network(f"{network.broadcast_address - (2 ** (32 - subnet_len) - 1)}/{subnet_len}")
    bounds = []
    for key, default in (("subnetMin", default_min), ("subnetMax", default_max)):
        text = top.str(key)
        if not text:
            bounds.append(default)
            continue
        try:
            value = ip_network(text if "/" in text else f"{text}/{subnet_len}")
        except ValueError as err:
            raise CNIError(Code.INVALID_CONFIG, f"invalid {key}", str(err)) from None
        if value.prefixlen != subnet_len or not value.subnet_of(network):
            raise CNIError(Code.INVALID_CONFIG, f"invalid {key}", f"{value} is not a /{subnet_len} inside {network}")
        bounds.append(value)
    if bounds[0].network_address > bounds[1].network_address:
        raise CNIError(Code.INVALID_CONFIG, "subnetMin is after subnetMax", f"{bounds[0]} > {bounds[1]}")
    return bounds[0], bounds[1]


def _address(top: Obj, key: str):
    text = top.str(key)
    if not text:
        return None
    try:
        return ip_address(text)
    except ValueError:
        raise top.bad(key, "an IP address", text) from None


def _peers(top: Obj, network, subnet_len: int) -> tuple[Peer, ...]:
    peers, seen = [], set()
    for raw in top.list("peers", []):
        if type(raw) is not dict:
            raise top.bad("peers", "a list of {node, vtep, subnet}", raw)
        item = Obj(raw, "peers[].")
        node, vtep, subnet = item.str("node"), _address(item, "vtep"), item.str("subnet")
        if not node or vtep is None or not subnet:
            raise CNIError(Code.INVALID_CONFIG, "invalid peers entry", f"{raw!r} needs node, vtep and subnet")
        try:
            net = ip_network(subnet)
        except ValueError as err:
            raise CNIError(Code.INVALID_CONFIG, "invalid peers entry", f"{node}: {err}") from None
        if net.prefixlen != subnet_len or not net.subnet_of(network):
            raise CNIError(Code.INVALID_CONFIG, "invalid peers entry", f"{node}: {net} is not a /{subnet_len} inside {network}")
        if node in seen or net in {p.subnet for p in peers}:
            raise CNIError(Code.INVALID_CONFIG, "invalid peers entry", f"{node}: duplicate node name or subnet")
        seen.add(node)
        peers.append(Peer(node, vtep, net, item.str("mac") or vtep_mac(net)))
    return tuple(peers)


def _etcd(top: Obj) -> EtcdConf:
    etcd = top.obj("etcd") or Obj({}, "etcd.")
    endpoints = tuple(etcd.str_list("endpoints")) or ("http://127.0.0.1:2379",)
    for url in endpoints:
        if not url.startswith(("http://", "https://")):
            raise etcd.bad("endpoints", "http:// or https:// URLs", url)
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
        ca_file=etcd.str("caFile") or "",
        cert_file=etcd.str("certFile") or "",
        key_file=etcd.str("keyFile") or "",
    )


def _data_dir(top: Obj) -> str:
    path = top.str("dataDir") or DEFAULT_DATA_DIR
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
