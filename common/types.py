"""CNI result types, and every difference between result versions.

One internal shape (1.1.0's) with ipaddress objects inside; strings exist only
in to_wire()/from_wire().  Shapes by version:
  0.1.0, 0.2.0        {"ip4": {...}, "ip6": {...}, "dns"}  one address per family
  0.3.0, 0.3.1, 0.4.0 interfaces, ips[] with "version", routes, dns
  1.0.0, 1.1.0        as 0.4.0 without ips[].version; 1.1.0 adds interface mtu,
                      socketPath, pciID and route mtu/advmss/priority/table/scope
Conversions follow the reference library (containernetworking/cni types 020,
040 and 100), including its quirks: an empty dns is printed as {} before 1.0.0
and omitted after; 1.1.0-only fields survive a 1.0.0 result.
"""

from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
    ip_address,
    ip_interface,
    ip_network,
)

from common.errors import CNIError, Code
from common.values import Value, field

LEGACY = ("0.1.0", "0.2.0")
WITH_IP_VERSION = ("0.3.0", "0.3.1", "0.4.0")


class Interface(Value):
    """An interface in a result (interfaces[])."""

    name: str
    mac: str = ""
    sandbox: str = ""
    mtu: int = 0
    socket_path: str = ""
    pci_id: str = ""


class IPConfig(Value):
    """An address in a result (ips[]), with its gateway and interface index."""

    address: IPv4Interface | IPv6Interface
    gateway: IPv4Address | IPv6Address | None = None
    interface: int | None = None

    @property
    def family(self) -> int:
        return self.address.version


class Route(Value):
    """A route in a result (routes[])."""

    dst: IPv4Network | IPv6Network
    gw: IPv4Address | IPv6Address | None = None
    mtu: int = 0
    advmss: int = 0
    priority: int = 0
    table: int | None = None
    scope: int | None = None


class DNS(Value):
    """A result's dns section; false when empty."""

    nameservers: tuple[str, ...] = ()
    domain: str = ""
    search: tuple[str, ...] = ()
    options: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.nameservers or self.domain or self.search or self.options)

    def to_wire(self) -> dict:
        out: dict = {}
        if self.nameservers:
            out["nameservers"] = list(self.nameservers)
        if self.domain:
            out["domain"] = self.domain
        if self.search:
            out["search"] = list(self.search)
        if self.options:
            out["options"] = list(self.options)
        return out


class Result(Value):
    """A CNI result in its internal (1.1.0) shape."""

    interfaces: tuple[Interface, ...] = ()
    ips: tuple[IPConfig, ...] = ()
    routes: tuple[Route, ...] = ()
    dns: DNS = field(default_factory=DNS)

    def with_(self, **changes) -> "Result":
        return self.replace(**changes)

    def to_wire(self, version: str) -> dict:
        if version in LEGACY:
            return _to_legacy(self, version)
        out: dict = {"cniVersion": version}
        if self.interfaces:
            out["interfaces"] = [_iface_wire(i, version) for i in self.interfaces]
        if self.ips:
            out["ips"] = [_ip_wire(ip, version) for ip in self.ips]
        if self.routes:
            out["routes"] = [_route_wire(r) for r in self.routes]
        if self.dns or version in WITH_IP_VERSION:
            out["dns"] = self.dns.to_wire()
        return out

    @classmethod
    def from_wire(cls, data, fallback_version: str = "", code: int = Code.DECODING_FAILURE) -> "Result":
        """Parse a result of any supported version (a prevResult or a delegate's output)."""
        try:
            return _from_wire(data, fallback_version)
        except CNIError:
            raise
        except (TypeError, ValueError, KeyError, AttributeError) as err:
            raise CNIError(code, "invalid result", f"{type(err).__name__}: {err}") from None


def _iface_wire(i: Interface, version: str) -> dict:
    out: dict = {"name": i.name}
    if i.mac:
        out["mac"] = i.mac
    if i.mtu and version not in WITH_IP_VERSION:
        out["mtu"] = i.mtu
    if i.sandbox:
        out["sandbox"] = i.sandbox
    if i.socket_path and version not in WITH_IP_VERSION:
        out["socketPath"] = i.socket_path
    if i.pci_id and version not in WITH_IP_VERSION:
        out["pciID"] = i.pci_id
    return out


def _ip_wire(ip: IPConfig, version: str) -> dict:
    out: dict = {}
    if version in WITH_IP_VERSION:
        out["version"] = str(ip.family)
    out["address"] = str(ip.address)
    if ip.gateway is not None:
        out["gateway"] = str(ip.gateway)
    if ip.interface is not None:
        out["interface"] = ip.interface
    return out


def _route_wire(r: Route, legacy: bool = False) -> dict:
    out: dict = {"dst": str(r.dst)}
    if r.gw is not None:
        out["gw"] = str(r.gw)
    if legacy:
        return out
    for key, value in (("mtu", r.mtu), ("advmss", r.advmss), ("priority", r.priority)):
        if value:
            out[key] = value
    if r.table is not None:
        out["table"] = r.table
    if r.scope is not None:
        out["scope"] = r.scope
    return out


def _to_legacy(result: Result, version: str) -> dict:
    out: dict = {"cniVersion": version}
    for family, key in ((4, "ip4"), (6, "ip6")):
        first = next((ip for ip in result.ips if ip.family == family), None)
        if first is None:
            continue
        entry: dict = {"ip": str(first.address)}
        if first.gateway is not None:
            entry["gateway"] = str(first.gateway)
        routes = [_route_wire(r, legacy=True) for r in result.routes if r.dst.version == family]
        if routes:
            entry["routes"] = routes
        out[key] = entry
    if "ip4" not in out and "ip6" not in out:
        raise CNIError(
            Code.INCOMPATIBLE_VERSION,
            "cannot convert: no valid IP addresses",
            f"a result without addresses cannot be expressed in CNI {version}",
        )
    out["dns"] = result.dns.to_wire()
    return out


def parse_ip(text) -> IPv4Address | IPv6Address:
    """An address as Go's net.ParseIP would take it; v4-mapped v6 becomes v4."""
    if type(text) is not str or "%" in text:
        raise ValueError(f"invalid IP address {text!r}")
    addr = ip_address(text)
    if addr.version == 6 and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def _check_cidr_text(text, what: str) -> None:
    if type(text) is not str or "%" in text:
        raise ValueError(f"invalid {what} {text!r}")
    # Go's net.ParseCIDR takes a decimal prefix length only; ipaddress would also take a netmask
    _, slash, bits = text.partition("/")
    if not slash or not (bits.isascii() and bits.isdigit()):
        raise ValueError(f"invalid {what} {text!r}")


def parse_cidr(text) -> IPv4Interface | IPv6Interface:
    """A host address with prefix length ("10.1.2.3/24") as an IPv4/6Interface."""
    _check_cidr_text(text, "CIDR")
    return ip_interface(text)


def parse_network(text, strict: bool = False) -> IPv4Network | IPv6Network:
    _check_cidr_text(text, "network")
    return ip_network(text, strict=strict)


U32_MAX = 2**32 - 1


def _opt_uint(obj: dict, key: str, hi: int = U32_MAX) -> int | None:
    """An optional integer field, no wider than the netlink attribute it ends up in."""
    value = obj.get(key)
    if value is not None and (type(value) is not int or not 0 <= value <= hi):
        raise ValueError(f"{key} must be an integer in 0..{hi}, not {value!r}")
    return value


def _route_from(obj: dict) -> Route:
    gw = obj.get("gw")
    return Route(
        dst=parse_network(obj["dst"]),
        gw=parse_ip(gw) if gw else None,
        mtu=_opt_uint(obj, "mtu") or 0,
        advmss=_opt_uint(obj, "advmss") or 0,
        priority=_opt_uint(obj, "priority") or 0,
        table=_opt_uint(obj, "table"),
        scope=_opt_uint(obj, "scope", 255),
    )


def _dns_from(obj) -> DNS:
    if not obj:
        return DNS()
    if type(obj) is not dict:
        raise ValueError("dns must be an object")

    def strs(key):
        items = obj.get(key) or []
        if type(items) is not list or any(type(s) is not str for s in items):
            raise ValueError(f"dns.{key} must be a list of strings")
        return tuple(items)

    domain = obj.get("domain") or ""
    if type(domain) is not str:
        raise ValueError("dns.domain must be a string")
    return DNS(strs("nameservers"), domain, strs("search"), strs("options"))


def _from_wire(data, fallback_version: str) -> Result:
    if type(data) is not dict:
        raise ValueError("a result must be a JSON object")
    version = data.get("cniVersion") or fallback_version
    if version in LEGACY or "ip4" in data or "ip6" in data:
        legacy_ips: list[IPConfig] = []
        legacy_routes: list[Route] = []
        for key in ("ip4", "ip6"):
            entry = data.get(key)
            if not entry:
                continue
            gw = entry.get("gateway")
            legacy_ips.append(IPConfig(parse_cidr(entry["ip"]), parse_ip(gw) if gw else None))
            legacy_routes.extend(_route_from(r) for r in entry.get("routes") or [])
        return Result(ips=tuple(legacy_ips), routes=tuple(legacy_routes), dns=_dns_from(data.get("dns")))
    interfaces = []
    for i in data.get("interfaces") or []:
        name = i["name"]
        if type(name) is not str:
            raise ValueError("interface name must be a string")
        interfaces.append(
            Interface(
                name=name,
                mac=i.get("mac") or "",
                sandbox=i.get("sandbox") or "",
                mtu=_opt_uint(i, "mtu") or 0,
                socket_path=i.get("socketPath") or "",
                pci_id=i.get("pciID") or "",
            )
        )
    ips = []
    for ip in data.get("ips") or []:
        index = ip.get("interface")
        if index is not None and (type(index) is not int or not 0 <= index < len(interfaces)):
            raise ValueError(f"ips[].interface {index!r} does not name an interface")
        gw = ip.get("gateway")
        ips.append(IPConfig(parse_cidr(ip["address"]), parse_ip(gw) if gw else None, index))
    routes = tuple(_route_from(r) for r in data.get("routes") or [])
    return Result(tuple(interfaces), tuple(ips), routes, _dns_from(data.get("dns")))


def default_route(version: int) -> IPv4Network | IPv6Network:
    return ip_network("0.0.0.0/0") if version == 4 else ip_network("::/0")


def is_v4(addr) -> bool:
    return isinstance(addr, (IPv4Address, IPv4Interface))
