"""host-local configuration, parsed once into immutable values (common.values).

Accepts everything the reference accepts (the `subnet` shorthand, range sets,
runtimeConfig.ipRanges, requested IPs from three sources) with the same
defaults and ordering, and rejects with code 7 what the reference lets
through to fail later or never: a gateway outside the subnet, on the network
or broadcast address, rangeStart after rangeEnd, zone ids, relative paths,
a /0 subnet, route fields wider than their netlink attributes.  The bridge
runs this loader before it touches the node, so what can be refused from the
config alone is refused here, down to a requested address that lies in no
range or is a gateway (101, the allocator's code).

`IPAMConf.load(args)` takes the command's CmdArgs, as every plugin's loader
does (why: `common.skel.CmdArgs.for_config`).  DEL and GC (`WITHOUT_RANGES`)
load without ranges, requested addresses or routes: a config that no longer
parses still releases its addresses.
"""

import os
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

from cni_hostlocal_ipam.layout import absolute, data_dir
from common.config import Obj
from common.errors import CNIError, Code
from common.types import DNS, U32_MAX, Route, parse_cidr, parse_ip, parse_network
from common.values import Value
from common.version import parse_version

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (type checkers go by the name)
if TYPE_CHECKING:
    from common.skel import CmdArgs

DEFAULT_LOCK_TIMEOUT = 10.0
RESOLV_CONF_MAX = 64 << 10
WITHOUT_RANGES = ("DEL", "GC")  # the commands that only release: they load the ipam section without ranges


class Range(Value):
    """One range of a range set: a subnet and its allocatable span."""

    subnet: IPv4Network | IPv6Network
    start: IPv4Address | IPv6Address  # first allocatable address, inclusive
    end: IPv4Address | IPv6Address  # last allocatable address, inclusive
    gateway: IPv4Address | IPv6Address

    def __contains__(self, ip) -> bool:
        return ip.version == self.subnet.version and self.start <= ip <= self.end

    def __str__(self) -> str:
        return f"{self.start}-{self.end}"


class RangeSet(Value):
    """Ranges of one family; an ADD takes one address from each range set."""

    ranges: tuple[Range, ...]

    @property
    def version(self) -> int:
        return self.ranges[0].subnet.version

    def range_for(self, ip) -> Range | None:
        return next((r for r in self.ranges if ip in r), None)

    def in_subnets(self, ip) -> bool:
        return any(ip.version == r.subnet.version and ip in r.subnet for r in self.ranges)

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.ranges)


class IPAMConf(Value):
    """The host-local configuration, validated."""

    name: str
    range_sets: tuple[RangeSet, ...]
    routes: tuple[Route, ...]
    data_dir: str
    resolv_conf: str
    requested: tuple  # requested addresses, in the reference's order
    lock_timeout: float
    store: str = "disk"  # the backend in store.BACKENDS (no ipam key chooses another yet)

    @classmethod
    def load(cls, args: "CmdArgs") -> "IPAMConf":
        need_ranges = args.command not in WITHOUT_RANGES
        top = Obj(args.config)
        ipam = top.obj("ipam")
        if ipam is None:
            raise CNIError(Code.INVALID_CONFIG, "IPAM config missing 'ipam' key")
        range_sets = _range_sets(top, ipam) if need_ranges else ()
        if need_ranges and not range_sets:
            raise CNIError(Code.INVALID_CONFIG, "no IP ranges specified", "set ipam.subnet or ipam.ranges")
        _check_overlaps(range_sets)
        _check_per_family(range_sets, args.cni_version)
        requested = _requested(top, args.args) if need_ranges else ()
        _check_requested_fit(range_sets, requested)
        # DEL and GC (WITHOUT_RANGES) use neither: a config that no longer parses still releases
        routes = tuple(_route(r, i) for i, r in enumerate(ipam.list("routes", []))) if need_ranges else ()
        return cls(
            name=args.config["name"],
            range_sets=range_sets,
            routes=routes,
            data_dir=data_dir(ipam),
            resolv_conf=_resolv_conf_path(ipam.str("resolvConf") or ""),
            requested=requested,
            lock_timeout=_lock_timeout(ipam),
        )


def _lock_timeout(ipam: Obj) -> float:
    value = ipam.lookup("lockTimeout")
    if value is None:
        return DEFAULT_LOCK_TIMEOUT
    if type(value) not in (int, float) or not 0 < value <= 300:
        raise ipam.bad("lockTimeout", "seconds in (0, 300]", value)
    return float(value)


def _resolv_conf_path(path: str) -> str:
    return absolute(path, "ipam.resolvConf") if path else ""


def _addr(value, what: str, version: int | None = None) -> IPv4Address | IPv6Address:
    try:
        addr = parse_ip(value)
    except ValueError:
        raise CNIError(Code.INVALID_CONFIG, f"invalid {what}", f"{value!r} is not an IP address") from None
    if version is not None and addr.version != version:
        raise CNIError(Code.INVALID_CONFIG, f"invalid {what}", f"{addr} is not an IPv{version} address")
    return addr


def _range(raw, where: str) -> Range:
    if type(raw) is not dict:
        raise CNIError(Code.INVALID_CONFIG, f"invalid {where}", "a range must be an object")
    obj = Obj(raw, where + ".")
    subnet_text = obj.str("subnet")
    if not subnet_text:
        raise CNIError(Code.INVALID_CONFIG, f"invalid {where}", "missing subnet")
    try:
        loose = parse_network(subnet_text)
    except ValueError:
        raise CNIError(Code.INVALID_CONFIG, f"invalid {where}.subnet", f"{subnet_text!r} is not a CIDR") from None
    if loose.network_address != ip_address(subnet_text.split("/")[0]):
        raise CNIError(
            Code.INVALID_CONFIG,
            f"invalid {where}.subnet",
            f"Network has host bits set. For a subnet mask of length {loose.prefixlen} the network address is {loose.network_address}",
        )
    subnet = loose
    if subnet.prefixlen == 0:
        raise CNIError(Code.INVALID_CONFIG, f"invalid {where}.subnet", f"{subnet} is the whole address family, not a pod subnet")
    if subnet.version == 6 and subnet.network_address.ipv4_mapped is not None:
        raise CNIError(Code.INVALID_CONFIG, f"invalid {where}.subnet", f"{subnet} is an IPv4-mapped IPv6 network; write the IPv4 network")
    if subnet.prefixlen > subnet.max_prefixlen - 2:
        raise CNIError(Code.INVALID_CONFIG, f"invalid {where}.subnet", f"Network {subnet} too small to allocate from")
    version = subnet.version
    first = subnet.network_address + 1
    # the IPv4 broadcast is never allocatable; IPv6 has no broadcast, so its last address is
    last = subnet.broadcast_address - (1 if version == 4 else 0)
    gateway = _addr(obj.str("gateway"), f"{where}.gateway", version) if obj.str("gateway") else first
    if not first <= gateway <= last:  # type: ignore[operator]  # one family: _addr checked gateway against the subnet's
        raise CNIError(Code.INVALID_CONFIG, f"invalid {where}.gateway", f"{gateway} is not a host address of {subnet}")
    start = _addr(obj.str("rangeStart"), f"{where}.rangeStart", version) if obj.str("rangeStart") else first
    end = _addr(obj.str("rangeEnd"), f"{where}.rangeEnd", version) if obj.str("rangeEnd") else last
    for key, value in (("rangeStart", start), ("rangeEnd", end)):
        if value not in subnet:
            raise CNIError(Code.INVALID_CONFIG, f"invalid {where}.{key}", f"{key} {value} not in network {subnet}")
    if start > end:  # type: ignore[operator]  # one family: _addr checked both against the subnet's
        raise CNIError(Code.INVALID_CONFIG, f"invalid {where}", f"rangeStart {start} is after rangeEnd {end}")
    return Range(subnet, start, end, gateway)


def _range_set(raw, index: int) -> RangeSet:
    where = f"range set {index}"
    if type(raw) is not list or not raw:
        raise CNIError(Code.INVALID_CONFIG, f"invalid {where}", "empty range set" if raw == [] else "a range set must be a list of ranges")
    ranges = tuple(_range(r, f"{where} range {i}") for i, r in enumerate(raw))
    if len({r.subnet.version for r in ranges}) > 1:
        raise CNIError(Code.INVALID_CONFIG, f"invalid {where}", "mixed address families")
    for i, a in enumerate(ranges):
        for b in ranges[i + 1 :]:
            if _overlap(a, b):
                raise CNIError(Code.INVALID_CONFIG, f"invalid {where}", f"subnets {a} and {b} overlap")
    return RangeSet(ranges)


def _range_sets(top: Obj, ipam: Obj) -> tuple[RangeSet, ...]:
    raw_sets = []
    runtime = top.obj("runtimeConfig")
    if runtime is not None:
        raw_sets.extend(runtime.list("ipRanges", []))
    if ipam.str("subnet"):
        legacy = {k: ipam.lookup(k) for k in ("subnet", "rangeStart", "rangeEnd", "gateway") if ipam.lookup(k) is not None}
        raw_sets.append([legacy])
    raw_sets.extend(ipam.list("ranges", []))
    return tuple(_range_set(raw, i) for i, raw in enumerate(raw_sets))


def _overlap(a: Range, b: Range) -> bool:
    if a.subnet.version != b.subnet.version:
        return False
    return a.start in b or a.end in b or b.start in a or b.end in a


def _check_overlaps(range_sets) -> None:
    for i, a in enumerate(range_sets):
        for j, b in enumerate(range_sets[i + 1 :], i + 1):
            if any(_overlap(x, y) for x in a.ranges for y in b.ranges):
                raise CNIError(Code.INVALID_CONFIG, f"range set {i} overlaps with {j}")


def _check_per_family(range_sets, cni_version: str) -> None:
    versions = [s.version for s in range_sets]
    if (versions.count(4) > 1 or versions.count(6) > 1) and parse_version(cni_version) < (0, 3, 0):
        raise CNIError(Code.INCOMPATIBLE_VERSION, f"CNI version {cni_version} does not support more than 1 address per family")


def _route(raw, index: int) -> Route:
    where = f"ipam.routes[{index}]"
    if type(raw) is not dict:
        raise CNIError(Code.INVALID_CONFIG, f"invalid {where}", "a route must be an object")
    obj = Obj(raw, where + ".")
    try:
        dst = parse_network(obj.str("dst") or "")
        gw = parse_ip(obj.str("gw")) if obj.str("gw") else None
    except ValueError as err:
        raise CNIError(Code.INVALID_CONFIG, f"invalid {where}", str(err)) from None
    if gw is not None and gw.version != dst.version:
        raise CNIError(Code.INVALID_CONFIG, f"invalid {where}", f"gw {gw} and dst {dst} differ in family")
    return Route(
        dst=dst,
        gw=gw,
        # as wide as RTAX_MTU, RTAX_ADVMSS, RTA_PRIORITY, RTA_TABLE (u32) and rtm_scope (u8)
        mtu=obj.int("mtu", 0, 0, U32_MAX),
        advmss=obj.int("advmss", 0, 0, U32_MAX),
        priority=obj.int("priority", 0, 0, U32_MAX),
        table=obj.int("table", None, 0, U32_MAX),
        scope=obj.int("scope", None, 0, 255),
    )


def _requested(top: Obj, cni_args) -> tuple:
    """Requested addresses: CNI_ARGS IP first, then args.cni.ips, then runtimeConfig.ips."""
    out = []
    if cni_args.get("IP"):
        for text in cni_args["IP"].split(","):
            try:
                out.append(_requested_ip(text.strip()))
            except ValueError:
                # CNI_ARGS is an environment variable: 4, as for any other malformed CNI_ARGS
                raise CNIError(Code.INVALID_ENV, "invalid CNI_ARGS", f"IP={text!r} is not an IP address or ip/prefix") from None
    args = top.obj("args")
    cni = args.obj("cni") if args is not None else None
    runtime = top.obj("runtimeConfig")
    for source, where in ((cni, "args.cni.ips"), (runtime, "runtimeConfig.ips")):
        if source is None:
            continue
        for text in source.str_list("ips"):
            try:
                out.append(_requested_ip(text))
            except ValueError:
                raise CNIError(Code.INVALID_CONFIG, f"invalid {where}", f"{text!r} is not an IP address or ip/prefix") from None
    return tuple(out)


def _requested_ip(text: str):
    """An address, written alone or with a prefix length that is then dropped (the reference's ip.IP)."""
    address, slash, _ = text.partition("/")
    if slash:
        parse_cidr(text)  # a prefix is optional, but an invalid one is not ignored
    return parse_ip(address)


def _range_of(range_sets, ip) -> tuple:
    """The index of the range set holding ip, and its range; (None, None) if none does."""
    for idx, range_set in enumerate(range_sets):
        r = range_set.range_for(ip)
        if r is not None:
            return idx, r
    return None, None


def _check_requested_fit(range_sets, requested) -> None:
    """Refuse now, as the ADD would after allocating, a requested address no range can grant.

    Two requested addresses for one range set are left to the ADD, which
    refuses them with 101 too and undoes the reservation it made.
    """
    outside = []
    for ip in requested:
        idx, r = _range_of(range_sets, ip)
        if r is None:
            outside.append(str(ip))
        elif ip == r.gateway:
            raise CNIError(Code.REQUESTED_IP_UNAVAILABLE, f"failed to allocate for range {idx}: requested ip {ip} is subnet's gateway")
    if outside:
        raise CNIError(
            Code.REQUESTED_IP_UNAVAILABLE,
            "failed to allocate all requested IPs: " + " ".join(dict.fromkeys(outside)),
            "each requested address must lie in a range (between rangeStart and rangeEnd) of a range set",
        )


def read_resolv_conf(path: str) -> DNS:
    """Parse a resolv.conf as the reference does, refusing FIFOs, devices and huge files."""
    if not path:
        return DNS()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as err:
        raise CNIError(Code.INVALID_CONFIG, "invalid ipam.resolvConf", f"{path}: {err.strerror}") from None
    try:
        st = os.fstat(fd)
        if not (st.st_mode & 0o170000 == 0o100000) or st.st_size > RESOLV_CONF_MAX:
            raise CNIError(Code.INVALID_CONFIG, "invalid ipam.resolvConf", f"{path} is not a regular file under {RESOLV_CONF_MAX} bytes")
        text = os.read(fd, RESOLV_CONF_MAX).decode("utf-8", "replace")
    finally:
        os.close(fd)
    nameservers, search, options, domain = [], [], [], ""
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 2 or fields[0].startswith(("#", ";")):
            continue
        if fields[0] == "nameserver":
            nameservers.append(fields[1])
        elif fields[0] == "domain":
            domain = fields[1]
        elif fields[0] == "search":
            search.extend(fields[1:])
        elif fields[0] == "options":
            options.extend(fields[1:])
    return DNS(tuple(nameservers), domain, tuple(search), tuple(options))
