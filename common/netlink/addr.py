"""Addresses, routes, neighbours and FDB entries."""

import errno
from _socket import AF_INET, AF_INET6  # not socket: its enums cost ms per start
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Address, IPv6Interface, IPv6Network, ip_address, ip_interface, ip_network

from common.netlink.core import (
    CHANGE,
    CREATE,
    NLM_F_APPEND,
    NLM_F_DUMP,
    NLM_F_REQUEST,
    REPLACE,
    Flag,
    Netlink,
    NetlinkError,
    ifaddrmsg,
    ndmsg,
    rtmsg,
)
from common.values import Value

RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
RTM_NEWNEIGH, RTM_DELNEIGH, RTM_GETNEIGH = 28, 29, 30
IFA_F_NODAD, IFA_F_TENTATIVE, IFA_F_DADFAILED = 0x02, 0x40, 0x08
RT_TABLE_MAIN = 254
RTPROT_KERNEL, RTPROT_BOOT = 2, 3
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK, RT_SCOPE_HOST = 0, 253, 254
RTN_UNICAST = 1
RTNH_F_ONLINK = 0x4
NUD_NOARP, NUD_PERMANENT = 0x40, 0x80
NTF_SELF = 0x02
AF_BRIDGE = 7
RTAX_MTU, RTAX_ADVMSS = 2, 8
# the kernel caps these metrics without an error (net/ipv4/metrics.c, shared by IPv6)
RTAX_MTU_CAP, RTAX_ADVMSS_CAP = 65535 - 15, 65535 - 40


def _family(version: int) -> int:
    return AF_INET if version == 4 else AF_INET6


# --- addresses -----------------------------------------------------------


class Address(Value):
    """An address assigned to a link (RTM_NEWADDR)."""

    index: int
    address: IPv4Interface | IPv6Interface
    flags: int
    scope: int
    tentative = Flag(IFA_F_TENTATIVE)
    dad_failed = Flag(IFA_F_DADFAILED)


def list_addresses(nl: Netlink, index: int = 0, version: int = 0) -> list[Address]:
    msg = ifaddrmsg()
    msg["family"] = _family(version) if version else 0
    out = []
    for reply in nl.request(msg, RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, "list addresses"):
        if index and reply["index"] != index:
            continue
        text = reply.get_attr("IFA_LOCAL") or reply.get_attr("IFA_ADDRESS")
        flags = reply.get_attr("IFA_FLAGS") or reply["flags"]
        try:
            address = ip_interface(f"{text}/{reply['prefixlen']}")
        except ValueError:  # an address attribute the codec could only leave as bytes: not a message the kernel sends
            raise NetlinkError(errno.EPROTO, "list addresses") from None
        out.append(Address(reply["index"], address, flags, reply["scope"]))
    return out


def _addr_msg(index: int, iface, flags: int = 0):
    msg = ifaddrmsg()
    msg["family"] = _family(iface.version)
    msg["prefixlen"] = iface.network.prefixlen
    msg["index"] = index
    msg["flags"] = flags & 0xFF
    attrs: list[tuple[str, object]] = [("IFA_LOCAL", str(iface.ip)), ("IFA_ADDRESS", str(iface.ip))]
    if iface.version == 4 and iface.network.prefixlen < 31:
        # as `ip addr add ... brd +` and the reference's netlink library do
        attrs.append(("IFA_BROADCAST", str(iface.network.broadcast_address)))
    if flags:
        attrs.append(("IFA_FLAGS", flags))
    msg["attrs"] = attrs
    return msg


def add_address(nl: Netlink, index: int, iface, nodad: bool = False) -> bool:
    """Add an address; False if it was already there."""
    return nl.try_request(_addr_msg(index, iface, IFA_F_NODAD if nodad else 0), RTM_NEWADDR, CREATE, f"add address {iface}", (errno.EEXIST,))


def del_address(nl: Netlink, index: int, iface) -> bool:
    return nl.try_request(_addr_msg(index, iface), RTM_DELADDR, CHANGE, f"delete address {iface}", (errno.EADDRNOTAVAIL, errno.ENODEV, errno.ENOENT))


# --- routes --------------------------------------------------------------


class RouteEntry(Value):
    """A route in the kernel's table (RTM_NEWROUTE)."""

    dst: IPv4Network | IPv6Network
    gw: IPv4Address | IPv6Address | None
    oif: int
    table: int
    priority: int
    proto: int
    scope: int
    onlink: bool
    mtu: int = 0  # RTAX_MTU; 0 when the route has none
    advmss: int = 0


def kept_metrics(mtu: int, advmss: int) -> tuple[int, int]:
    """The route metrics the kernel keeps when asked for these: what a CHECK should find."""
    return min(mtu, RTAX_MTU_CAP), min(advmss, RTAX_ADVMSS_CAP)


def _metric(metrics, name: str) -> int:
    return (metrics.get_attr(name) or 0) if metrics else 0


RTM_DST_LEN = 17  # struct rtmsg's rtm_dst_len, after the 16-byte netlink header


def list_routes(nl: Netlink, version: int = 4, table: int | None = RT_TABLE_MAIN, dst_len: int | None = None) -> list[RouteEntry]:
    """The routes of a family (in one table); dst_len: only those of that prefix length (0: default routes), the others not decoded."""
    msg = rtmsg()
    msg["family"] = _family(version)
    out = []
    zero = "0.0.0.0" if version == 4 else "::"
    keep = None if dst_len is None else (lambda chunk: chunk[RTM_DST_LEN] == dst_len)
    for reply in nl.request(msg, RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, "list routes", keep):
        rtable = reply.get_attr("RTA_TABLE") or reply["table"]
        if table is not None and rtable != table:
            continue
        if reply["type"] != RTN_UNICAST:
            continue
        dst = reply.get_attr("RTA_DST") or zero
        gw = reply.get_attr("RTA_GATEWAY")
        metrics = reply.get_attr("RTA_METRICS")
        out.append(
            RouteEntry(
                dst=ip_network(f"{dst}/{reply['dst_len']}"),
                gw=ip_address(gw) if gw else None,
                oif=reply.get_attr("RTA_OIF") or 0,
                table=rtable,
                priority=reply.get_attr("RTA_PRIORITY") or 0,
                proto=reply["proto"],
                scope=reply["scope"],
                onlink=bool(reply["flags"] & RTNH_F_ONLINK),
                mtu=_metric(metrics, "RTAX_MTU"),
                advmss=_metric(metrics, "RTAX_ADVMSS"),
            )
        )
    return out


def _route_msg(
    dst,
    gw=None,
    oif: int = 0,
    table: int | None = None,
    priority: int = 0,
    scope: int | None = None,
    proto: int = RTPROT_BOOT,
    onlink: bool = False,
    mtu: int = 0,
    advmss: int = 0,
):
    msg = rtmsg()
    msg["family"] = _family(dst.version)
    msg["dst_len"] = dst.prefixlen
    # table 0 (unspecified) is main, as the kernel reads it; above 255 only RTA_TABLE can carry it
    msg["table"] = table if table and table < 256 else RT_TABLE_MAIN
    msg["proto"] = proto
    msg["type"] = RTN_UNICAST
    msg["scope"] = RT_SCOPE_UNIVERSE if scope is None else scope
    msg["flags"] = RTNH_F_ONLINK if onlink else 0
    attrs: list[tuple[str, object]] = []
    if dst.prefixlen:
        attrs.append(("RTA_DST", str(dst.network_address)))
    if gw is not None:
        attrs.append(("RTA_GATEWAY", str(gw)))
    if oif:
        attrs.append(("RTA_OIF", oif))
    if priority:
        attrs.append(("RTA_PRIORITY", priority))
    if table and table >= 256:
        attrs.append(("RTA_TABLE", table))
    metrics = [(name, value) for name, value in (("RTAX_MTU", mtu), ("RTAX_ADVMSS", advmss)) if value]
    if metrics:
        attrs.append(("RTA_METRICS", {"attrs": metrics}))
    msg["attrs"] = attrs
    return msg


def add_route(nl: Netlink, dst, gw=None, oif: int = 0, *, replace: bool = False, append: bool = False, **kw) -> bool:
    """Add (or replace) a route; False if an identical one already exists."""
    flags = REPLACE if replace else CREATE
    if append:
        flags = (CREATE & ~0x200) | NLM_F_APPEND  # ECMP: another route to the same dst
    return nl.try_request(_route_msg(dst, gw, oif, **kw), RTM_NEWROUTE, flags, f"add route {dst}", (errno.EEXIST,))


def del_route(nl: Netlink, dst, gw=None, oif: int = 0, **kw) -> bool:
    kw.setdefault("proto", 0)
    kw.setdefault("scope", RT_SCOPE_UNIVERSE)
    msg = _route_msg(dst, gw, oif, **kw)
    msg["type"] = 0
    return nl.try_request(msg, RTM_DELROUTE, CHANGE, f"delete route {dst}", (errno.ESRCH, errno.ENOENT, errno.ENODEV))


# --- neighbours and FDB entries ------------------------------------------


class Neighbour(Value):
    """A neighbour or FDB entry (RTM_NEWNEIGH)."""

    index: int
    dst: IPv4Address | IPv6Address | None  # an IP address, or for FDB entries the remote VTEP (or None)
    mac: str
    state: int
    flags: int


def _neigh_msg(family: int, index: int, state: int, flags: int, attrs: list):
    msg = ndmsg()
    msg["family"] = family
    msg["ifindex"] = index
    msg["state"] = state
    msg["flags"] = flags
    msg["attrs"] = attrs
    return msg


def list_neighbours(nl: Netlink, index: int = 0, bridge: bool = False) -> list[Neighbour]:
    msg = _neigh_msg(AF_BRIDGE if bridge else 0, 0, 0, 0, [])
    out = []
    for reply in nl.request(msg, RTM_GETNEIGH, NLM_F_REQUEST | NLM_F_DUMP, "list neighbours"):
        if index and reply["ifindex"] != index:
            continue
        dst = reply.get_attr("NDA_DST")
        out.append(Neighbour(reply["ifindex"], ip_address(dst) if dst else None, reply.get_attr("NDA_LLADDR") or "", reply["state"], reply["flags"]))
    return out


def replace_neighbour(nl: Netlink, index: int, ip, mac: str) -> None:
    msg = _neigh_msg(_family(ip.version), index, NUD_PERMANENT, 0, [("NDA_DST", str(ip)), ("NDA_LLADDR", mac)])
    nl.request(msg, RTM_NEWNEIGH, REPLACE, f"set neighbour {ip}")


def del_neighbour(nl: Netlink, index: int, ip) -> bool:
    msg = _neigh_msg(_family(ip.version), index, 0, 0, [("NDA_DST", str(ip))])
    return nl.try_request(msg, RTM_DELNEIGH, CHANGE, f"delete neighbour {ip}", (errno.ENOENT, errno.ENODEV))


def replace_fdb(nl: Netlink, index: int, mac: str, dst) -> None:
    """A permanent FDB entry MAC -> remote VTEP; replace updates a moved peer in place."""
    msg = _neigh_msg(AF_BRIDGE, index, NUD_PERMANENT | NUD_NOARP, NTF_SELF, [("NDA_LLADDR", mac), ("NDA_DST", str(dst))])
    nl.request(msg, RTM_NEWNEIGH, REPLACE, f"set fdb {mac}")


def del_fdb(nl: Netlink, index: int, mac: str, dst=None) -> bool:
    attrs = [("NDA_LLADDR", mac)] + ([("NDA_DST", str(dst))] if dst is not None else [])
    msg = _neigh_msg(AF_BRIDGE, index, 0, NTF_SELF, attrs)
    return nl.try_request(msg, RTM_DELNEIGH, CHANGE, f"delete fdb {mac}", (errno.ENOENT, errno.ENODEV))
