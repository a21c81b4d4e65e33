"""portmap configuration: the reference's keys, read as Go reads them, validated before the node is touched.

`PortmapConf.load(args)` takes the command's CmdArgs, as every plugin's loader
does (common/skel.py, CmdArgs.for_config).  Keys are matched
case-insensitively (containerd sends `HostPort`, `ContainerPort`: its structs
have no JSON tags), types strictly.  Everything the reference would only find
wrong when nft or iptables refuses a rule (a port above 65535, an unknown
protocol, a hostIP that is not an address) is a code-7 error here.

DEL and GC read only what they need (name, dataDir): a DEL must work with
whatever config the runtime still has, and it finds the rules by identity.
"""

import os
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface, ip_address

from common.config import Obj
from common.errors import CNIError, Code
from common.skel import CmdArgs
from common.types import Result
from common.values import Value

BACKENDS = ("nftables", "iptables")
PROTOCOLS = ("tcp", "udp", "sctp")
DEFAULT_MARK_BIT = 13  # the reference's: Kubernetes uses 14 and 15, Calico 20-31
DEFAULT_DATA_DIR = "/var/lib/cni/portmap"
_CHAIN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
_NFT_FORBIDDEN = frozenset(";#\x7f")  # a condition stays inside its one rule: no command separator, no comment
_IPT_FORBIDDEN = frozenset('"\\\x7f')  # a token stays one argument of its one line


class PortMapping(Value):
    """One entry of runtimeConfig.portMappings."""

    host_port: int
    container_port: int
    protocol: str  # tcp, udp or sctp
    host_ip: IPv4Address | IPv6Address | None = None  # None: every address of the node

    @property
    def family(self) -> int:
        """4 or 6 when hostIP names a family (0.0.0.0 and :: too), 0 for both."""
        return 0 if self.host_ip is None else self.host_ip.version

    @property
    def daddr(self) -> IPv4Address | IPv6Address | None:
        """The destination to match: none for an unspecified hostIP (as the reference)."""
        return None if self.host_ip is None or self.host_ip.is_unspecified else self.host_ip


class PortmapConf(Value):
    name: str
    backend: str  # "nftables" or "iptables"
    snat: bool
    masq_all: bool
    mark_masq_bit: int
    external_set_mark_chain: str  # "" for our own CNI-HOSTPORT-SETMARK
    conditions_v4: tuple[str, ...]
    conditions_v6: tuple[str, ...]
    data_dir: str
    mappings: tuple[PortMapping, ...] = ()
    container_v4: IPv4Interface | None = None  # from prevResult (ADD, CHECK)
    container_v6: IPv6Interface | None = None
    prev_result: Result | None = None

    def for_family(self, version: int) -> tuple[PortMapping, ...]:
        return tuple(m for m in self.mappings if m.family in (0, version))

    def container_ip(self, version: int) -> IPv4Interface | IPv6Interface | None:
        return self.container_v4 if version == 4 else self.container_v6

    def conditions(self, version: int) -> tuple[str, ...]:
        return self.conditions_v4 if version == 4 else self.conditions_v6

    @property
    def families(self) -> tuple[int, ...]:
        """The families with a container address: the ones ADD and CHECK act on."""
        return tuple(v for v in (4, 6) if self.container_ip(v) is not None)

    @classmethod
    def load(cls, args: CmdArgs) -> "PortmapConf":
        top = Obj(args.config)
        conditions_v4 = _conditions(top, "conditionsV4")
        conditions_v6 = _conditions(top, "conditionsV6")
        external = _external_chain(top)
        if external and top.lookup("markMasqBit") is not None:
            raise CNIError(Code.INVALID_CONFIG, "Cannot specify externalSetMarkChain and markMasqBit")
        conf = cls(
            name=args.config["name"],
            backend=_backend(top, external, conditions_v4, conditions_v6),
            snat=top.bool("snat", True),
            masq_all=top.bool("masqAll"),
            mark_masq_bit=top.int("markMasqBit", DEFAULT_MARK_BIT, 0, 31),
            external_set_mark_chain=external,
            conditions_v4=conditions_v4,
            conditions_v6=conditions_v6,
            data_dir=data_dir(top),
        )
        if args.command in ("DEL", "GC", "STATUS"):
            return conf
        prev = _prev_result(args)
        v4, v6 = _container_ips(prev, args.ifname) if prev is not None else (None, None)
        return conf.replace(mappings=_mappings(top), prev_result=prev, container_v4=v4, container_v6=v6)


def data_dir(top: Obj) -> str:
    """Where the node-wide lock lives (ours; the reference keeps no state)."""
    path = top.str("dataDir") or DEFAULT_DATA_DIR
    if not path.startswith("/") or ".." in path.split("/") or "\0" in path or os.path.normpath(path) == "/":
        raise CNIError(Code.INVALID_CONFIG, "invalid dataDir", f"{path!r} must be an absolute path without '..', not /")
    return os.path.normpath(path)


def _conditions(top: Obj, key: str) -> tuple[str, ...]:
    items = tuple(top.str_list(key))
    for item in items:
        if any(ord(ch) < 32 for ch in item) or _NFT_FORBIDDEN.intersection(item):
            raise top.bad(key, "conditions without control characters, ';' or '#'", item)
    if _condition_backend(items) == "iptables":
        for item in items:
            if _IPT_FORBIDDEN.intersection(item):
                raise top.bad(key, "iptables arguments without quotes or backslashes", item)
    return items


def _condition_backend(conditions: tuple[str, ...]) -> str:
    """The reference's reading: iptables arguments start with '-' or '!', an nft expression never does."""
    if not conditions or not conditions[0]:
        return ""
    return "iptables" if conditions[0][0] in "-!" else "nftables"


def _external_chain(top: Obj) -> str:
    chain = top.str("externalSetMarkChain")
    if chain is None:
        return ""
    if not chain or len(chain) > 28 or not _CHAIN_CHARS.issuperset(chain) or chain[0] == "-":
        raise top.bad("externalSetMarkChain", "an iptables chain name (at most 28 of [A-Za-z0-9_.-])", chain)
    return chain


def _backend(top: Obj, external: str, conditions_v4: tuple[str, ...], conditions_v6: tuple[str, ...]) -> str:
    wants: dict[str, list[str]] = {}
    if external:
        wants.setdefault("iptables", []).append("externalSetMarkChain")
    for key, conditions in (("conditionsV4", conditions_v4), ("conditionsV6", conditions_v6)):
        if which := _condition_backend(conditions):
            wants.setdefault(which, []).append(key)
    backend = top.str("backend")
    if backend is None:
        if len(wants) == 1:
            backend = next(iter(wants))  # options only one backend understands choose it (the reference would refuse)
        else:
            from common import firewall  # the one list of where firewall tools live

            backend = "nftables" if firewall.tool("nft") is not None else "iptables"
    elif backend not in BACKENDS:
        raise CNIError(Code.INVALID_CONFIG, f"unrecognized backend {backend!r}", "want 'nftables' or 'iptables'")
    wrong = BACKENDS[1] if backend == BACKENDS[0] else BACKENDS[0]
    if wants.get(wrong):
        raise CNIError(Code.INVALID_CONFIG, f"{backend} backend was requested but configuration contains {wrong}-specific options {wants[wrong]}")
    return backend


def _mappings(top: Obj) -> tuple[PortMapping, ...]:
    runtime = top.obj("runtimeConfig")
    items = runtime.list("portMappings", []) if runtime is not None else []
    out = []
    for i, raw in enumerate(items):
        where = f"runtimeConfig.portMappings[{i}]."
        if type(raw) is not dict:
            raise CNIError(Code.INVALID_CONFIG, f"invalid {where[:-1]}", "want an object {hostPort, containerPort, protocol, hostIP}")
        entry = Obj(raw, where)
        container_port = entry.int("containerPort", 0)
        host_port = entry.int("hostPort", 0)
        if not 0 < container_port <= 65535:
            raise CNIError(Code.INVALID_CONFIG, f"Invalid container port number: {container_port}", "want 1..65535")
        if not 0 < host_port <= 65535:
            raise CNIError(Code.INVALID_CONFIG, f"Invalid host port number: {host_port}", "want 1..65535")
        protocol = (entry.str("protocol") or "").lower()
        if protocol not in PROTOCOLS:
            raise entry.bad("protocol", "tcp, udp or sctp", entry.lookup("protocol"))
        out.append(PortMapping(host_port, container_port, protocol, _host_ip(entry)))
    return tuple(out)


def _host_ip(entry: Obj) -> IPv4Address | IPv6Address | None:
    text = entry.str("hostIP") or ""
    if not text:
        return None
    try:
        addr = ip_address(text)
    except ValueError:
        raise entry.bad("hostIP", "an IP address", text) from None
    if addr.version == 6 and addr.ipv4_mapped is not None:  # Go's To4() reads ::ffff:a.b.c.d as IPv4
        return addr.ipv4_mapped
    return addr


def _prev_result(args: CmdArgs) -> Result | None:
    prev = args.config.get("prevResult")
    if prev is None:
        return None
    return Result.from_wire(prev, args.cni_version, code=Code.INVALID_CONFIG)


def _container_ips(result: Result, ifname: str) -> tuple[IPv4Interface | None, IPv6Interface | None]:
    """The first address of each family on the container's interface, chosen as the reference chooses.

    An address whose interface index names another interface, or one outside
    a sandbox (the bridge), is skipped; one without an index is taken.
    """
    v4: IPv4Interface | None = None
    v6: IPv6Interface | None = None
    for ip in result.ips:
        index = ip.interface
        if index is not None and 0 <= index < len(result.interfaces):
            iface = result.interfaces[index]
            if iface.name != ifname or not iface.sandbox:
                continue
        if isinstance(ip.address, IPv4Interface):
            v4 = v4 or ip.address
        elif isinstance(ip.address, IPv6Interface):
            v6 = v6 or ip.address
    return v4, v6
