"""The node's VXLAN device: create it, or verify the one there, with a reason on mismatch.

The device is shared by every pod of the node, so a device with another VNI,
port or learning setting is never silently recreated: ADD fails naming the
difference.  What the kernel can change in place (source address, underlay
device, MTU, MAC) is changed in place: a node whose address moved keeps
working after one ADD or sync.
"""

import errno
import os
import time
from ipaddress import ip_interface, ip_network

from cni_vxlan.conf import VxlanConf, vtep_mac
from common import netlink
from common.errors import CNIError, Code
from common.log import get as get_logger
from common.netlink import sysctl

log = get_logger(__name__)
OVERHEAD = {4: 50, 6: 70}  # outer IP + UDP + VXLAN + inner Ethernet headers


def detect_vtep(nl, conf: VxlanConf):
    """(underlay link, VTEP address), or a refusal when this node cannot serve the config.

    Read-only and run before the node lock: a refused ADD has touched nothing.
    """
    underlay, vtep = _find_vtep(nl, conf)
    odd = next((p for p in conf.peers if p.vtep.version != vtep.version), None)
    if odd is not None:
        raise CNIError(
            Code.INVALID_CONFIG,
            f"static peer {odd.node} has an IPv{odd.vtep.version} vtep ({odd.vtep}), but this node's VTEP is IPv{vtep.version} ({vtep})",
            "the underlay of one overlay is one family: fix peers[], or set vtepAddress or vtepInterface",
        )
    _refuse_overlap(nl, conf)
    return underlay, vtep


def _refuse_overlap(nl, conf: VxlanConf) -> None:
    """Refuse a network whose range another overlay on this node already uses: each would steal the other's packets.

    What the kernel holds is the claim: an IPv4 address or a route (a default
    route claims no range) of another VXLAN device inside conf.network, or an
    address outside it on conf.device itself (another network shares it); and
    in a dual-stack network the same for IPv6 and ipv6Network (link-local aside).
    """
    links = [link for link in netlink.list_links(nl) if link.kind == "vxlan"]
    vxlans = {link.index: link.name for link in links}
    if not vxlans:
        return
    ours = next((link for link in links if link.name == conf.device), None)
    if ours is not None and ours.alias.startswith(OWNER_PREFIX) and ours.alias != owner(conf):
        raise CNIError(
            Code.CONFLICTING_HOST_OBJECT,
            f"VXLAN device {conf.device} belongs to {ours.alias.removeprefix(OWNER_PREFIX)!r}",
            f"network {conf.name!r} would share it (the same vni): give each network its own vni",
        )
    ranges = [(4, conf.network)] + ([(6, conf.ipv6_network)] if conf.ipv6_network is not None else [])
    for version, network in ranges:
        _refuse_claims(nl, conf, vxlans, version, network)


LINK_LOCAL6 = ip_network("fe80::/10")  # every IPv6 device has one: it claims no overlay range


def _refuse_claims(nl, conf: VxlanConf, vxlans: dict, version: int, network) -> None:
    """The claims of one family (IPv6 only in a dual-stack network) against that family's range."""
    claims = [(a.index, a.address.network) for a in netlink.list_addresses(nl, version=version) if a.index in vxlans]
    if any(name != conf.device for name in vxlans.values()):
        # other overlays' routes; this device's own (one per peer) claim nothing its addresses do not
        claims += [
            (r.oif, r.dst) for r in netlink.list_routes(nl, version) if r.oif in vxlans and vxlans[r.oif] != conf.device and r.dst.prefixlen > 0
        ]
    for index, claimed in claims:
        if claimed.network_address in LINK_LOCAL6:  # an IPv4 address is in no IPv6 network
            continue
        if vxlans[index] == conf.device:
            assert claimed.version == version  # both lists asked the kernel for this family only
            if not claimed.subnet_of(network):
                raise CNIError(
                    Code.CONFLICTING_HOST_OBJECT,
                    f"VXLAN device {conf.device} serves {claimed}, outside network {network}",
                    "another network uses this device (the same vni): give each network its own vni, "
                    "or delete the device if this network's range changed",
                )
        elif claimed.overlaps(network):
            raise CNIError(
                Code.CONFLICTING_HOST_OBJECT,
                f"network {network} overlaps {claimed} of VXLAN device {vxlans[index]}",
                "another overlay on this node uses that range: give this network a range of its own, or remove the other one",
            )


def _find_vtep(nl, conf: VxlanConf):
    """Configured, or the default route's interface and its primary address."""
    if conf.vtep_address is not None:
        for addr in netlink.list_addresses(nl, version=conf.vtep_address.version):
            if addr.address.ip == conf.vtep_address:
                return netlink.get_link(nl, index=addr.index), conf.vtep_address
        raise CNIError(Code.INVALID_CONFIG, f"vtepAddress {conf.vtep_address} is on no interface of this node")
    if conf.vtep_interface:
        link = netlink.find_link(nl, conf.vtep_interface)
        if link is None:
            raise CNIError(Code.INVALID_CONFIG, f"vtepInterface {conf.vtep_interface} does not exist on this node")
    else:
        link = _default_route_link(nl)
    for version in (4, 6):
        globals_ = [a for a in netlink.list_addresses(nl, link.index, version) if a.scope == netlink.RT_SCOPE_UNIVERSE]
        if globals_:
            return link, globals_[0].address.ip
    raise CNIError(Code.INVALID_CONFIG, f"{link.name} has no global address to use as the VTEP", "set vtepAddress")


def _default_route_link(nl) -> netlink.Link:
    for version in (4, 6):
        for route in netlink.list_routes(nl, version, dst_len=0):  # the peers' routes (one per node) are not decoded
            if route.oif:
                return netlink.get_link(nl, index=route.oif)
    raise CNIError(Code.INVALID_CONFIG, "cannot determine the VTEP interface: this node has no default route", "set vtepInterface or vtepAddress")


def device_mtu(conf: VxlanConf, underlay: netlink.Link, vtep) -> int:
    return conf.mtu or underlay.mtu - OVERHEAD[vtep.version]


def own_mac(conf: VxlanConf, subnet) -> str:
    """The MAC the other nodes send to: a static peer's own entry may name one, else it follows the subnet."""
    own = conf.own_peer()
    return own.mac if own is not None and own.subnet == subnet else vtep_mac(subnet)


OWNER_PREFIX = "cni-vxlan network "


def owner(conf: VxlanConf) -> str:
    """The device's alias: two networks of the same range and vni would otherwise share it unnoticed."""
    alias = OWNER_PREFIX + conf.name
    if len(alias.encode()) < 256:  # IFALIASZ
        return alias
    from common.attachment import sha256

    return OWNER_PREFIX + "sha256:" + sha256(conf.name.encode()).hexdigest()


def ensure_device(nl, conf: VxlanConf, subnet, underlay: netlink.Link, vtep, subnet6=None) -> netlink.Link:
    mac, mtu = own_mac(conf, subnet), device_mtu(conf, underlay, vtep)
    link = netlink.find_link(nl, conf.device)
    if link is None:
        link = _create(nl, conf, underlay, vtep, mac, mtu)
    else:
        link = _verify(nl, conf, link, underlay, vtep, mac, mtu)
    if link.alias != owner(conf):  # new, or made by a version that did not tag it
        netlink.set_link(nl, link.index, alias=owner(conf))
    _accept_ra_off(conf.device)  # before any IPv6 address: the device never configures itself from RAs
    _ensure_address(nl, conf, link, subnet, subnet6)
    if not link.up:
        try:
            netlink.set_link(nl, link.index, up=True)
        except netlink.NetlinkError as err:
            if err.errno == errno.EADDRINUSE:
                raise _port_in_use(nl, conf) from None
            raise
    _apply_offload(conf)
    sysctl.ensure("ipv4/ip_forward", "1")
    if subnet6 is not None:
        sysctl.ensure("ipv6/conf/all/forwarding", "1")
    return netlink.get_link(nl, index=link.index)


def _create(nl, conf: VxlanConf, underlay, vtep, mac: str, mtu: int) -> netlink.Link:
    try:
        netlink.create_vxlan(nl, conf.device, conf.vni, conf.port, vtep, underlay.index, mac, mtu)
    except netlink.LinkExists:
        if netlink.find_link(nl, conf.device) is None:
            # EEXIST with the name free: another device already carries this VNI on this port
            other = next(
                (link.name for link in netlink.list_links(nl) if link.vxlan and link.vxlan["vni"] == conf.vni and link.vxlan["port"] == conf.port),
                "another device",
            )
            raise CNIError(
                Code.CONFLICTING_HOST_OBJECT,
                f"VNI {conf.vni} on UDP port {conf.port} is already used by {other}",
                "choose another vni or port, or remove that device",
            ) from None
        return netlink.get_link(nl, conf.device)  # a concurrent ADD made it
    log.info("created %s (vni %s, port %s, local %s)", conf.device, conf.vni, conf.port, vtep)
    return netlink.get_link(nl, conf.device)


def incompatibility(link: netlink.Link, conf: VxlanConf) -> str:
    """Why an existing device cannot serve this config (empty if it can), flannel-style."""
    if link.kind != "vxlan":
        return f"kind: {link.kind or 'physical'} vs vxlan"
    have = link.vxlan
    assert have is not None  # the kernel reports IFLA_INFO_DATA for every vxlan device
    for key, want in (("vni", conf.vni), ("port", conf.port), ("learning", False), ("gbp", False)):
        if have[key] != want:
            return f"{key}: {have[key]} vs {want}"
    return ""


def _verify(nl, conf: VxlanConf, link, underlay, vtep, mac: str, mtu: int) -> netlink.Link:
    reason = incompatibility(link, conf)
    if reason:
        raise CNIError(Code.INVALID_CONFIG, f"{conf.device} exists with different settings", f"{reason}; delete it to let the plugin recreate it")
    if link.vxlan["local"] != str(vtep) or link.vxlan["link"] != underlay.index:
        netlink.set_vxlan_underlay(nl, link.index, vtep, underlay.index)
        log.warning("%s: VTEP moved to %s on %s", conf.device, vtep, underlay.name)
    if link.mac != mac:
        netlink.set_link(nl, link.index, mac=mac)
    if link.mtu != mtu:
        netlink.set_link(nl, link.index, mtu=mtu)
    return netlink.get_link(nl, index=link.index)


def _ensure_address(nl, conf: VxlanConf, link, subnet, subnet6) -> None:
    """The device holds its subnet's base address as a /32 (and its IPv6 subnet's as a /128), and no other overlay address."""
    wants: list[tuple] = [(4, conf.network, ip_interface(f"{subnet.network_address}/32"))]
    if subnet6 is not None and conf.ipv6_network is not None:
        wants.append((6, conf.ipv6_network, ip_interface(f"{subnet6.network_address}/128")))
    for version, network, want in wants:
        for addr in netlink.list_addresses(nl, link.index, version):
            if addr.address != want and addr.address.ip in network:
                netlink.del_address(nl, link.index, addr.address)
        # IPv6: no duplicate address detection; the address is this lease's, and DAD would leave it tentative
        netlink.add_address(nl, link.index, want, nodad=version == 6)


def settle_gateway6(nl, bridge: str, timeout: float = 5.0) -> None:
    """Wait until the bridge's IPv6 gateway address has passed duplicate address detection.

    While it is tentative the pods' neighbour solicitations for their gateway
    go unanswered, so a dual-stack ADD returns only once IPv6 works too; only a
    node's first pod waits.  A failed or slow DAD is logged, not fatal: the pod is attached.
    """
    link = netlink.find_link(nl, bridge)
    deadline = time.monotonic() + timeout
    while link is not None:
        v6 = [a for a in netlink.list_addresses(nl, link.index, 6) if a.scope != netlink.RT_SCOPE_LINK]
        failed = [str(a.address) for a in v6 if a.dad_failed]
        if failed:
            log.warning("%s: IPv6 duplicate address detection failed for %s", bridge, ", ".join(failed))
            return
        if not any(a.tentative for a in v6):
            return
        if time.monotonic() > deadline:
            log.warning("%s: IPv6 gateway still tentative after %gs", bridge, timeout)
            return
        time.sleep(0.05)


def _accept_ra_off(name: str) -> None:
    key = f"ipv6/conf/{name}/accept_ra"
    if sysctl.exists(key):
        sysctl.write(key, "0")


def _port_in_use(nl, conf: VxlanConf) -> CNIError:
    holders = [
        link.name for link in netlink.list_links(nl) if link.vxlan and link.vxlan["port"] == conf.port and link.name != conf.device and link.up
    ]
    return CNIError(
        Code.CONFLICTING_HOST_OBJECT,
        f"UDP port {conf.port} is already in use" + (f" by {', '.join(holders)}" if holders else ""),
        "a flow-based (external) vxlan device or another program holds it; choose another port",
    )


def offload_off_wanted(conf: VxlanConf) -> bool:
    """Kernels before 5.7 corrupt checksums of NATed VXLAN packets with TX offload on (flannel#1279)."""
    if conf.tx_checksum_offload != "auto":
        return conf.tx_checksum_offload == "off"
    release = os.uname().release.split("-")[0].split(".")
    try:
        return (int(release[0]), int(release[1])) < (5, 7)
    except (ValueError, IndexError):
        return False


def _apply_offload(conf: VxlanConf) -> None:
    if not offload_off_wanted(conf):
        return
    from common import firewall, proc

    ethtool = firewall.tool("ethtool")
    if ethtool is None:
        raise CNIError(Code.INVALID_CONFIG, "ethtool is needed to turn TX checksum offload off", "install ethtool, or set txChecksumOffload true")
    rc, _, err = proc.run([ethtool, "-K", conf.device, "tx-checksum-ip-generic", "off"], timeout=10, what="ethtool")
    if rc != 0:
        raise CNIError(Code.KERNEL_REFUSED, f"cannot turn TX checksum offload off on {conf.device}", err.decode(errors="replace").strip())
