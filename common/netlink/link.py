"""Links: look up, create (bridge, veth, vxlan), change, delete; bridge ports and VLANs."""

import errno
import os

from common.netlink.core import (
    CHANGE,
    CREATE,
    NLM_F_DUMP,
    NLM_F_REQUEST,
    Flag,
    LinkExists,
    LinkNotFound,
    Netlink,
    NetlinkError,
    ifinfmsg,
)
from common.values import Value

RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK, RTM_SETLINK = 16, 17, 18, 19
IFF_UP, IFF_PROMISC = 0x1, 0x100
AF_BRIDGE = 7
RTEXT_FILTER_BRVLAN = 2
BRIDGE_VLAN_INFO_PVID, BRIDGE_VLAN_INFO_UNTAGGED = 0x2, 0x4


class Link(Value):
    """A network device as the kernel reports it (RTM_NEWLINK)."""

    index: int
    name: str
    kind: str  # "" for a device without IFLA_INFO_KIND (e.g. a physical NIC)
    mac: str
    mtu: int
    master: int
    flags: int
    operstate: str
    peer_index: int  # IFLA_LINK: a veth's peer (in its own namespace)
    slave_kind: str = ""
    vlan_filtering: bool | None = None  # bridges only
    hairpin: bool | None = None  # bridge ports only
    isolated: bool | None = None  # bridge ports only
    vxlan: dict | None = None  # vxlan devices: vni, port, local, link, learning, ...
    alias: str = ""  # IFLA_IFALIAS: who owns a shared device (vxlan writes its network there)
    up = Flag(IFF_UP)
    promisc = Flag(IFF_PROMISC)


def _decode(msg) -> Link:
    info = msg.get_attr("IFLA_LINKINFO")
    kind = slave_kind = ""
    vlan_filtering = hairpin = isolated = vxlan = None
    if info is not None:
        kind = info.get_attr("IFLA_INFO_KIND") or ""
        slave_kind = info.get_attr("IFLA_INFO_SLAVE_KIND") or ""
        data = info.get_attr("IFLA_INFO_DATA")
        if kind == "bridge" and data is not None:
            vlan_filtering = bool(data.get_attr("IFLA_BR_VLAN_FILTERING"))
        elif kind == "vxlan" and data is not None:
            vxlan = {
                "vni": data.get_attr("IFLA_VXLAN_ID"),
                "port": data.get_attr("IFLA_VXLAN_PORT"),
                "local": data.get_attr("IFLA_VXLAN_LOCAL") or data.get_attr("IFLA_VXLAN_LOCAL6"),
                "link": data.get_attr("IFLA_VXLAN_LINK") or 0,
                "learning": bool(data.get_attr("IFLA_VXLAN_LEARNING")),
                "gbp": data.get_attr("IFLA_VXLAN_GBP") is not None,
                "collect_metadata": bool(data.get_attr("IFLA_VXLAN_COLLECT_METADATA")),
            }
        slave = info.get_attr("IFLA_INFO_SLAVE_DATA")
        if slave_kind == "bridge" and slave is not None:
            hairpin = bool(slave.get_attr("IFLA_BRPORT_MODE"))
            isolated = bool(slave.get_attr("IFLA_BRPORT_ISOLATED"))
    return Link(
        index=msg["index"],
        name=msg.get_attr("IFLA_IFNAME"),
        kind=kind,
        mac=msg.get_attr("IFLA_ADDRESS") or "",
        mtu=msg.get_attr("IFLA_MTU") or 0,
        master=msg.get_attr("IFLA_MASTER") or 0,
        flags=msg["flags"],
        operstate=msg.get_attr("IFLA_OPERSTATE") or "",
        peer_index=msg.get_attr("IFLA_LINK") or 0,
        slave_kind=slave_kind,
        vlan_filtering=vlan_filtering,
        hairpin=hairpin,
        isolated=isolated,
        vxlan=vxlan,
        alias=msg.get_attr("IFLA_IFALIAS") or "",
    )


def find_link(nl: Netlink, name: str | None = None, index: int = 0) -> Link | None:
    msg = ifinfmsg()
    msg["index"] = index
    if name is not None:
        msg["attrs"] = [("IFLA_IFNAME", name)]
    try:
        replies = nl.request(msg, RTM_GETLINK, NLM_F_REQUEST, f"get link {name or index}")
    except NetlinkError as err:
        if err.errno == errno.ENODEV:
            return None
        raise
    return _decode(replies[0]) if replies else None


def get_link(nl: Netlink, name: str | None = None, index: int = 0) -> Link:
    link = find_link(nl, name, index)
    if link is None:
        raise LinkNotFound(name or index)
    return link


def list_links(nl: Netlink) -> list[Link]:
    return [_decode(m) for m in nl.request(ifinfmsg(), RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, "list links")]


def _create(nl: Netlink, name: str, kind: str, data: list | None = None, mtu: int = 0, mac: str | None = None, extra: tuple | list = ()) -> None:
    attrs: list[tuple[str, object]] = [("IFLA_IFNAME", name)]
    if mtu:
        attrs.append(("IFLA_MTU", mtu))
    if mac:
        attrs.append(("IFLA_ADDRESS", mac))
    attrs.extend(extra)
    info: list[tuple[str, object]] = [("IFLA_INFO_KIND", kind)]
    if data:
        info.append(("IFLA_INFO_DATA", {"attrs": data}))
    attrs.append(("IFLA_LINKINFO", {"attrs": info}))
    msg = ifinfmsg()
    msg["attrs"] = attrs
    if not nl.try_request(msg, RTM_NEWLINK, CREATE, f"create {kind} {name}", (errno.EEXIST,)):
        raise LinkExists(name)


def create_bridge(nl: Netlink, name: str, mtu: int = 0, mac: str | None = None, vlan_filtering: bool = False) -> None:
    data = [("IFLA_BR_VLAN_FILTERING", 1)] if vlan_filtering else None
    _create(nl, name, "bridge", data, mtu, mac)


def create_veth(nl: Netlink, name: str, peer_name: str, peer_ns, mtu: int = 0, peer_mac: str | None = None) -> None:
    """Create a veth pair here whose peer is born inside `peer_ns` (never visible on this side).

    With peer_ns None both ends stay in this namespace.
    """
    peer: list[tuple[str, object]] = [("IFLA_IFNAME", peer_name)]
    if peer_ns is not None:
        peer.append(("IFLA_NET_NS_FD", peer_ns.fd))
    if mtu:
        peer.append(("IFLA_MTU", mtu))
    if peer_mac:
        peer.append(("IFLA_ADDRESS", peer_mac))
    _create(nl, name, "veth", [("VETH_INFO_PEER", {"attrs": peer})], mtu)


def create_vxlan(
    nl: Netlink, name: str, vni: int, port: int, local, link_index: int, mac: str, mtu: int = 0, learning: bool = False, gbp: bool = False
) -> None:
    data = [
        ("IFLA_VXLAN_ID", vni),
        ("IFLA_VXLAN_PORT", port),
        ("IFLA_VXLAN_LEARNING", int(learning)),
        ("IFLA_VXLAN_LOCAL" if local.version == 4 else "IFLA_VXLAN_LOCAL6", str(local)),
    ]
    if link_index:
        data.append(("IFLA_VXLAN_LINK", link_index))
    if gbp:
        data.append(("IFLA_VXLAN_GBP", True))
    _create(nl, name, "vxlan", data, mtu, mac)


def set_vxlan_underlay(nl: Netlink, index: int, local, link_index: int) -> None:
    """Change a vxlan device's source address and underlay device in place (the kernel allows both)."""
    data = [("IFLA_VXLAN_LOCAL" if local.version == 4 else "IFLA_VXLAN_LOCAL6", str(local)), ("IFLA_VXLAN_LINK", link_index)]
    msg = ifinfmsg()
    msg["index"] = index
    msg["attrs"] = [("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "vxlan"), ("IFLA_INFO_DATA", {"attrs": data})]})]
    nl.request(msg, RTM_NEWLINK, CHANGE, f"change vxlan underlay of {index}")


def delete_link(nl: Netlink, name: str | None = None, index: int = 0) -> bool:
    """Delete a link; False if it was already gone."""
    msg = ifinfmsg()
    msg["index"] = index
    if name is not None:
        msg["attrs"] = [("IFLA_IFNAME", name)]
    return nl.try_request(msg, RTM_DELLINK, CHANGE, f"delete link {name or index}", (errno.ENODEV, errno.ENOENT))


def set_link(
    nl: Netlink,
    index: int,
    up: bool | None = None,
    promisc: bool | None = None,
    master: int | None = None,
    mtu: int = 0,
    mac: str | None = None,
    netns_fd: int | None = None,
    alias: str | None = None,
) -> None:
    msg = ifinfmsg()
    msg["index"] = index
    flags = change = 0
    for wanted, bit in ((up, IFF_UP), (promisc, IFF_PROMISC)):
        if wanted is not None:
            change |= bit
            flags |= bit if wanted else 0
    msg["flags"], msg["change"] = flags, change
    attrs: list[tuple[str, object]] = []
    if master is not None:
        attrs.append(("IFLA_MASTER", master))
    if mtu:
        attrs.append(("IFLA_MTU", mtu))
    if mac:
        attrs.append(("IFLA_ADDRESS", mac))
    if netns_fd is not None:
        attrs.append(("IFLA_NET_NS_FD", netns_fd))
    if alias is not None:
        attrs.append(("IFLA_IFALIAS", alias))
    msg["attrs"] = attrs
    nl.request(msg, RTM_NEWLINK, CHANGE, f"change link {index}")


def set_brport(nl: Netlink, index: int, hairpin: bool | None = None, isolated: bool | None = None) -> None:
    """Bridge-port flags, set like `ip link set DEV type bridge_slave hairpin on`."""
    data = []
    if hairpin is not None:
        data.append(("IFLA_BRPORT_MODE", int(hairpin)))
    if isolated is not None:
        data.append(("IFLA_BRPORT_ISOLATED", int(isolated)))
    if not data:
        return
    msg = ifinfmsg()
    msg["index"] = index
    msg["attrs"] = [("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_SLAVE_KIND", "bridge"), ("IFLA_INFO_SLAVE_DATA", {"attrs": data})]})]
    nl.request(msg, RTM_NEWLINK, CHANGE, f"set bridge port flags on {index}")


def _vlan_msg(index: int, vid: int, flags: int):
    msg = ifinfmsg()
    msg["family"] = AF_BRIDGE
    msg["index"] = index
    msg["attrs"] = [("IFLA_AF_SPEC", {"attrs": [("IFLA_BRIDGE_VLAN_INFO", {"flags": flags, "vid": vid})]})]
    return msg


def add_port_vlan(nl: Netlink, index: int, vid: int, pvid: bool = False, untagged: bool = False) -> None:
    flags = (BRIDGE_VLAN_INFO_PVID if pvid else 0) | (BRIDGE_VLAN_INFO_UNTAGGED if untagged else 0)
    nl.request(_vlan_msg(index, vid, flags), RTM_SETLINK, CHANGE, f"add vlan {vid} on {index}")


def del_port_vlan(nl: Netlink, index: int, vid: int) -> None:
    nl.try_request(_vlan_msg(index, vid, 0), RTM_DELLINK, CHANGE, f"delete vlan {vid} on {index}", (errno.ENOENT, errno.EINVAL))


def port_vlans(nl: Netlink, index: int) -> list[tuple[int, int]]:
    """(vid, flags) of every VLAN on a bridge port (flags: PVID 0x2, UNTAGGED 0x4)."""
    msg = ifinfmsg()
    msg["family"] = AF_BRIDGE
    msg["attrs"] = [("IFLA_EXT_MASK", RTEXT_FILTER_BRVLAN)]
    out = []
    for reply in nl.request(msg, RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, "list vlans"):
        if reply["index"] != index:
            continue
        spec = reply.get_attr("IFLA_AF_SPEC")
        if spec is None:
            continue
        for name, value in spec["attrs"]:
            if name == "IFLA_BRIDGE_VLAN_INFO":
                out.append((value["vid"], value["flags"]))
    return out


def random_veth_name() -> str:
    # the reference's scheme: NetworkManager ignores veth* devices
    return "veth" + os.urandom(4).hex()
