"""Host-side work: the shared bridge, its gateway addresses, and each pod's port."""

import errno
import os
import time

from common import netlink
from common.errors import CNIError, Code
from common.log import get as get_logger
from common.netlink import LinkExists, sysctl

log = get_logger(__name__)
NET_ADDR_SET = 3  # /sys/class/net/*/addr_assign_type of a MAC given by user space
PORT_UP_WAITS = (0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 1.0)  # seconds; the reference polls 0/50/500/1000/1000 ms


def accept_ra_off(ifname: str) -> None:
    """CVE-2020-10749: no host-side interface of ours may accept router advertisements.

    Skipped when IPv6 is off for the interface; a failed write where IPv6 is on is an error.
    """
    key = f"ipv6/conf/{ifname}/accept_ra"
    if not sysctl.exists(key):
        return
    try:
        sysctl.write(key, "0")
    except OSError as err:
        raise CNIError(Code.KERNEL_REFUSED, f"cannot disable router advertisements on {ifname}", f"{sysctl.path(key)}: {err.strerror}") from None


def random_mac() -> str:
    """Locally administered unicast: a bridge MAC that never follows its ports."""
    octets = bytearray(os.urandom(6))
    octets[0] = (octets[0] & 0xFC) | 0x02
    return ":".join(f"{o:02x}" for o in octets)


def ensure_bridge(nl, conf, undo=None) -> netlink.Link:
    """Create the bridge, or verify that the existing device of that name is one.

    A bridge this call created is removed by `undo` (an ExitStack) if the ADD
    fails, unless another pod's port has joined it meanwhile.
    """
    created = False
    try:
        # an explicit MAC keeps the bridge's address stable as ports come and go (cni#285)
        netlink.create_bridge(nl, conf.bridge, mtu=conf.mtu, mac=random_mac(), vlan_filtering=conf.vlan_filtering)
        created = True
        log.info("created bridge %s", conf.bridge)
        if undo is not None:
            undo.callback(_remove_if_unused, nl, conf.bridge)
    except LinkExists:
        pass  # created by an earlier or concurrent ADD, or by an admin
    except netlink.NetlinkError as err:
        no_filtering = conf.vlan_filtering and err.errno == errno.EOPNOTSUPP
        hint = " (this kernel has no bridge VLAN filtering, needed by vlan and vlanTrunk)" if no_filtering else ""
        # NetlinkError always passes (errno, text) to OSError, so strerror is a str
        raise CNIError(Code.KERNEL_REFUSED, f"failed to create bridge {conf.bridge!r}", f"{err.strerror}{hint}") from None
    br = netlink.get_link(nl, conf.bridge)
    if br.kind != "bridge":
        raise CNIError(Code.CONFLICTING_HOST_OBJECT, f"{conf.bridge!r} already exists but is not a bridge", f"it is a {br.kind or 'physical'} device")
    if not created:
        _pin_mac(nl, br)
    accept_ra_off(conf.bridge)
    try:
        if conf.promisc_mode and not br.promisc:
            netlink.set_link(nl, br.index, promisc=True)
        if not br.up:
            netlink.set_link(nl, br.index, up=True)
    except netlink.NetlinkError as err:
        raise err.cni(f"failed to set up bridge {conf.bridge!r}") from None
    return netlink.get_link(nl, index=br.index)


def _remove_if_unused(nl, name: str) -> None:
    """Rollback of a bridge this ADD created: gone, unless a port of someone else's uses it now."""
    try:
        br = netlink.find_link(nl, name)
        if br is None or br.kind != "bridge":
            return
        if any(link.master == br.index for link in netlink.list_links(nl)):
            return
        netlink.delete_link(nl, index=br.index)
    except netlink.NetlinkError as err:  # rollback goes on; the ADD's own error is what gets reported
        log.warning("rollback: removing bridge %s failed: %s", name, err)


def _pin_mac(nl, br: netlink.Link) -> None:
    """Give a bridge made by someone else a set MAC, as ours get at creation.

    An unset one follows the lowest port MAC, and becomes 00:00:00:00:00:00
    when the last port leaves: a pod's DEL, or a failed ADD's rollback, would
    change it for good.  The reference pins it only when it adds a gateway.
    Whether it is set shows only in sysfs; a sysfs of another namespace (the
    ifindex differs) leaves the bridge as it is.
    """
    base = f"/sys/class/net/{br.name}/"
    try:
        with open(base + "addr_assign_type") as f:
            assign = int(f.read())
        with open(base + "ifindex") as f:
            index = int(f.read())
    except (OSError, ValueError):
        return
    if index != br.index or assign == NET_ADDR_SET:
        return
    mac = br.mac if br.mac.strip("0:") else random_mac()
    try:
        netlink.set_link(nl, br.index, mac=mac)
    except netlink.NetlinkError as err:
        raise err.cni(f"cannot set the MAC of bridge {br.name!r}") from None
    log.info("pinned the MAC of bridge %s at %s", br.name, mac)


def attach_port(nl, br: netlink.Link, veth: netlink.Link, conf) -> None:
    """Enslave the host veth with the configured port flags and VLANs, and bring it up."""
    accept_ra_off(veth.name)
    try:
        netlink.set_link(nl, veth.index, master=br.index)
        netlink.set_brport(nl, veth.index, hairpin=conf.hairpin_mode, isolated=conf.port_isolation)
        # an existing bridge can be asked for VLANs on a kernel without VLAN filtering: a refusal, not a bug
        _program_vlans(nl, veth.index, conf)
        netlink.set_link(nl, veth.index, up=True)
    except netlink.NetlinkError as err:
        raise err.cni(f"failed to attach {veth.name} to bridge {br.name!r}") from None


def port_vlan_plan(current: list[tuple[int, int]], conf) -> tuple[list[int], list[tuple[int, bool]]]:
    """Which VLANs to delete and which to add (vid, pvid+untagged) on a new port.

    An access port carries `vlan` untagged; a trunk carries `vlanTrunk` tagged
    plus a native VLAN (`vlan`, else 1) untagged.  The default VLAN entries are
    removed unless preserveDefaultVlan is set.
    """
    if not conf.vlan_filtering:
        return [], []
    delete = [] if conf.preserve_default_vlan else [vid for vid, _ in current]
    add: list[tuple[int, bool]] = []
    if conf.vlan:
        add.append((conf.vlan, True))
    elif conf.vlan_trunk is not None:
        add.append((1, True))
    add += [(vid, False) for vid in conf.vlan_trunk or () if vid != conf.vlan]
    return delete, add


def _program_vlans(nl, index: int, conf) -> None:
    if not conf.vlan_filtering:
        return
    delete, add = port_vlan_plan(netlink.port_vlans(nl, index), conf)
    for vid in delete:
        netlink.del_port_vlan(nl, index, vid)
    for vid, native in add:
        netlink.add_port_vlan(nl, index, vid, pvid=native, untagged=native)


def ensure_gateway_addr(nl, link: netlink.Link, gateway, force: bool) -> None:
    """Put gateway (an IPv4/6Interface) on the bridge, as the reference's ensureAddr does.

    IPv4 allows one address on the bridge; IPv6 allows several whose prefixes
    do not overlap.  A conflict is an error naming both addresses, unless
    forceAddress replaces the old one.
    """
    for addr in netlink.list_addresses(nl, link.index, gateway.version):
        if addr.address == gateway:
            return
        if addr.scope == netlink.RT_SCOPE_LINK and gateway.version == 6:
            continue  # the bridge's own fe80:: address is no conflict
        overlap = gateway.version == 4 or gateway.ip in addr.address.network or addr.address.ip in gateway.network
        if not overlap:
            continue
        if not force:
            raise CNIError(
                Code.CONFLICTING_HOST_OBJECT,
                f"failed to set bridge addr: {link.name!r} already has an IP address different from {gateway}",
                f"it has {addr.address}; set forceAddress to replace it, or use another bridge for this subnet",
            )
        netlink.del_address(nl, link.index, addr.address)
        log.warning("forceAddress: replaced %s with %s on %s", addr.address, gateway, link.name)
    try:
        netlink.add_address(nl, link.index, gateway)
    except netlink.NetlinkError as err:
        raise err.cni(f"could not add IP address {gateway} to {link.name!r}") from None


def enable_forwarding(version: int) -> None:
    sysctl.ensure("ipv4/ip_forward" if version == 4 else "ipv6/conf/all/forwarding", "1")


def ensure_vlan_gateway(nl, br: netlink.Link, conf) -> netlink.Link:
    """L3 with a VLAN: the gateway lives on <bridge>.<vlan>, a veth whose peer is a VLAN port."""
    name = f"{br.name}.{conf.vlan}"  # its length was checked with the config
    link = netlink.find_link(nl, name)
    if link is not None:
        return link
    peer = netlink.random_veth_name()
    try:
        netlink.create_veth(nl, peer, name, None, mtu=br.mtu)
    except LinkExists:
        return netlink.get_link(nl, name)  # a concurrent ADD made it
    port = netlink.get_link(nl, peer)
    attach_port(nl, br, port, conf.replace(hairpin_mode=False, port_isolation=False, vlan_trunk=None))
    link = netlink.get_link(nl, name)
    accept_ra_off(name)
    netlink.set_link(nl, link.index, up=True)
    return netlink.get_link(nl, name)


def wait_port_up(nl, veth_name: str) -> netlink.Link:
    """The port forwards only once both ends are up (plugins#463): wait, bounded."""
    link = None
    for pause in PORT_UP_WAITS:
        time.sleep(pause)
        link = netlink.get_link(nl, veth_name)
        if link.operstate == "UP":
            return link
    assert link is not None  # PORT_UP_WAITS is never empty
    raise CNIError(
        Code.KERNEL_REFUSED, f"bridge port in error state: {link.operstate}", f"{veth_name} did not come up within {sum(PORT_UP_WAITS):g}s"
    )
