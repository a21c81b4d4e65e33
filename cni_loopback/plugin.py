"""loopback: brings lo up in the container's namespace; a drop-in for the reference loopback plugin.

As the reference does, it works on the device named lo whatever CNI_IFNAME
says, and reports it with the all-zero MAC and its first IPv4 and first IPv6
address (127.0.0.1/8, and ::1/128 where IPv6 is enabled on lo), each on
interface 0.  In a chain, it brings lo up all the same and answers with the
prevResult it was given, in the config's version.  DEL brings lo down again,
and has nothing to do without a namespace (CNI_NETNS empty, or gone with its
pod).  CHECK verifies that lo is up.  It keeps no state: GC has nothing to
collect and STATUS is always available.

Where the reference fails with 999, this answers with a code (README, "Error
codes"); a refused ADD changes nothing, and DEL forgives a namespace
whose lo was renamed (README, "Deliberate differences").
"""

from common import netlink, skel
from common.config import valid_attachments
from common.errors import CNIError, Code
from common.log import get as get_logger
from common.types import Interface, IPConfig, Result

LO = "lo"  # the reference ignores CNI_IFNAME: this plugin only ever acts on the loopback device
LO_MAC = "00:00:00:00:00:00"
IFF_LOOPBACK = 0x8

log = get_logger(__name__)


def add(args: skel.CmdArgs) -> Result:
    # a prevResult is read first, as the reference does: one that does not parse is refused before lo is touched
    prev = args.config.get("prevResult")
    chained = None if prev is None else Result.from_wire(prev, args.cni_version)
    with netlink.inside(args.netns) as nl:
        lo = _loopback(nl)
        if lo is None:
            raise CNIError(Code.CONFLICTING_HOST_OBJECT, f"no loopback interface named {LO} in {args.netns_path}", "renamed, or its name taken")
        addresses = _loopback_addresses(nl, lo, args)  # refused before lo is touched: a refused ADD changes nothing
        if not lo.up:
            _set_up(nl, lo, True, args)
            addresses = _loopback_addresses(nl, lo, args)  # the kernel gives lo 127.0.0.1/8 and ::1/128 as it comes up
    if chained is not None:
        return chained  # passed on unchanged, as the reference does
    ips = tuple(IPConfig(first.address, interface=0) for first in addresses if first is not None)
    return Result(interfaces=(Interface(LO, LO_MAC, args.netns_path),), ips=ips)


def _loopback(nl) -> "netlink.Link | None":
    """The namespace's loopback device, by the name the reference looks for; None if no device of that name is one."""
    link = netlink.find_link(nl, LO)
    return link if link is not None and link.flags & IFF_LOOPBACK else None


def _set_up(nl, lo: "netlink.Link", up: bool, args: skel.CmdArgs) -> None:
    try:
        netlink.set_link(nl, lo.index, up=up)
    except netlink.NetlinkError as err:
        raise err.cni(f"failed to set {LO} {'up' if up else 'down'} in {args.netns_path}") from None


def _loopback_addresses(nl, lo: "netlink.Link", args: skel.CmdArgs) -> "tuple[netlink.Address | None, netlink.Address | None]":
    """lo's first IPv4 and first IPv6 address (None where it has none); any address not a loopback one is refused."""
    first: dict[int, netlink.Address] = {}
    for addr in netlink.list_addresses(nl, lo.index):
        if not addr.address.ip.is_loopback:
            raise CNIError(
                Code.CONFLICTING_HOST_OBJECT, f"loopback interface found with non-loopback address {addr.address.ip}", f"in {args.netns_path}"
            )
        first.setdefault(addr.address.version, addr)
    return first.get(4), first.get(6)


def delete(args: skel.CmdArgs) -> None:
    if args.netns is None:
        return  # CNI_NETNS empty or gone: there is no lo left to bring down
    with netlink.inside(args.netns) as nl:
        lo = _loopback(nl)
        if lo is None:
            log.warning("DEL: no loopback interface named %s in %s: nothing to bring down", LO, args.netns_path)
            return
        _set_up(nl, lo, False, args)


def check(args: skel.CmdArgs) -> None:
    with netlink.inside(args.netns) as nl:
        lo = _loopback(nl)
    if lo is None:
        raise CNIError(Code.CHECK_MISMATCH, f"no loopback interface named {LO} in {args.netns_path}")
    if not lo.up:
        raise CNIError(Code.CHECK_MISMATCH, "loopback interface is down", f"{LO} in {args.netns_path}")


def gc(args: skel.CmdArgs) -> None:
    # nothing to collect (no state, and lo goes with its namespace); a malformed list is refused as every plugin refuses it
    valid_attachments(args.config)


def status(args: skel.CmdArgs) -> None:
    """Always available: ADD needs nothing but the container's namespace."""


PLUGIN = skel.Plugin(name="loopback", add=add, delete=delete, check=check, gc=gc, status=status, about="CNI loopback plugin (cni-python-suite)")


def main() -> None:
    skel.main(PLUGIN)
