"""Container-side work: sysctls, addresses and routes of the pod's interface, and their CHECK."""

import time

from common import netlink
from common.errors import CNIError, Code
from common.netlink import sysctl
from common.netns import entered

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (type checkers go by the name)
if TYPE_CHECKING:
    from ipaddress import IPv4Address, IPv6Address

DAD_TIMEOUT = 5.0


def _set_if_present(key: str, value: str) -> None:
    # the interface may have no IPv6 (disabled in the pod): those knobs are then absent
    if sysctl.exists(key):
        sysctl.write(key, value)


def configure(cont, ns, ifname: str, result, enable_dad: bool) -> netlink.Link:
    """Sysctls, addresses, link up, DAD, routes: in the reference's order."""
    link = netlink.get_link(cont, ifname)
    has_v6 = any(ip.family == 6 for ip in result.ips)
    with entered(ns):
        if enable_dad:
            _set_if_present(f"ipv6/conf/{ifname}/enhanced_dad", "1")
            _set_if_present(f"ipv6/conf/{ifname}/accept_dad", "1")
        else:
            # hairpin reflects a pod's own neighbour solicitations, which DAD takes for a duplicate
            _set_if_present(f"ipv6/conf/{ifname}/accept_dad", "0")
        _set_if_present(f"ipv4/conf/{ifname}/arp_notify", "1")
        if has_v6:
            for name in ("lo", ifname):
                if sysctl.read(f"ipv6/conf/{name}/disable_ipv6") not in (None, "0"):
                    sysctl.write(f"ipv6/conf/{name}/disable_ipv6", "0")
            _set_if_present(f"ipv6/conf/{ifname}/keep_addr_on_down", "1")
    for ip in result.ips:
        try:
            netlink.add_address(cont, link.index, ip.address)
        except netlink.NetlinkError as err:
            raise err.cni(f"failed to add IP addr {ip.address} to {ifname!r}") from None
    netlink.set_link(cont, link.index, up=True)
    if any(ip.family == 6 and ip.gateway is not None for ip in result.ips):
        _wait_dad(cont, link.index, ifname)
    gateways: dict[int, IPv4Address | IPv6Address] = {}
    for ip in result.ips:
        if ip.gateway is not None:
            gateways.setdefault(ip.family, ip.gateway)
    for route in result.routes:
        gw = route.gw if route.gw is not None else gateways.get(route.dst.version)
        try:
            netlink.add_route(
                cont,
                route.dst,
                gw,
                link.index,
                append=True,
                priority=route.priority,
                table=route.table,
                scope=route.scope,
                mtu=route.mtu,
                advmss=route.advmss,
            )
        except netlink.NetlinkError as err:
            raise err.cni(f"failed to add route '{route.dst} via {gw} dev {ifname}'") from None
    return link


def _wait_dad(cont, index: int, ifname: str) -> None:
    deadline = time.monotonic() + DAD_TIMEOUT
    while True:
        v6 = [a for a in netlink.list_addresses(cont, index, 6) if a.scope != netlink.RT_SCOPE_LINK]
        failed = [str(a.address) for a in v6 if a.dad_failed]
        if failed:
            raise CNIError(Code.KERNEL_REFUSED, f"IPv6 duplicate address detection failed on {ifname}", f"dadfailed: {', '.join(failed)}")
        if not any(a.tentative for a in v6):
            return
        if time.monotonic() > deadline:
            if netlink.get_link(cont, index=index).operstate != "UP":
                return  # as the reference: only a link that is up can be expected to finish DAD
            raise CNIError(Code.TRY_AGAIN_LATER, f"IPv6 addresses on {ifname} still tentative after {DAD_TIMEOUT:g}s")
        time.sleep(0.05)


def verify(cont, ifname: str, iface, result) -> netlink.Link:
    """CHECK: the interface, its addresses and routes are as ADD left them."""
    link = netlink.find_link(cont, ifname)
    if link is None:
        raise CNIError(Code.CHECK_MISMATCH, f"CNI created interface in container {ifname} is missing")
    if link.kind != "veth":
        raise CNIError(Code.CHECK_MISMATCH, f"container interface {ifname} is a {link.kind or 'physical'} device, not a veth")
    if iface.mac and iface.mac != link.mac:
        raise CNIError(Code.CHECK_MISMATCH, f"Interface {ifname} Mac {iface.mac} doesn't match container Mac: {link.mac}")
    present = {a.address for a in netlink.list_addresses(cont, link.index)}
    for ip in result.ips:
        if ip.address not in present:
            raise CNIError(Code.CHECK_MISMATCH, f"Failed to match addr {ip.address} on interface {ifname}")
    for route in result.routes:
        _verify_route(cont, route)
    return link


def _verify_route(cont, route) -> None:
    table = route.table or netlink.RT_TABLE_MAIN  # as configure() asked for it
    found = [r for r in netlink.list_routes(cont, route.dst.version, table=table) if r.dst == route.dst]
    if route.gw is not None:
        found = [r for r in found if r.gw == route.gw]
    if not found:
        raise CNIError(Code.CHECK_MISMATCH, f"Expected Route {route.dst} via {route.gw or '(interface gateway)'} not found in routing table")
    # a metric the result does not name may have been set by a later plugin in the chain
    mtu, advmss = netlink.kept_metrics(route.mtu, route.advmss)
    if not any((not mtu or r.mtu == mtu) and (not advmss or r.advmss == advmss) for r in found):
        raise CNIError(
            Code.CHECK_MISMATCH,
            f"Route {route.dst} lacks its metrics mtu {route.mtu} advmss {route.advmss}",
            "found " + ", ".join(f"mtu {r.mtu} advmss {r.advmss}" for r in found),
        )
