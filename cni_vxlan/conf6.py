"""The optional IPv6 pod network beside the IPv4 one (flannel's EnableIPv6/IPv6Network).

`ipv6Network` (absent: IPv4 only, as before) is cut into node subnets of
`ipv6SubnetLen` (default /64), one per node beside its IPv4 subnet.  The
underlay stays single-stack: one device carries both families.  Parsed here,
for VxlanConf.load, so conf.py keeps to the IPv4 overlay and the node.
"""

from ipaddress import ip_network
from typing import TYPE_CHECKING

from common.config import Obj
from common.errors import CNIError, Code

if TYPE_CHECKING:  # annotations only: conf is on every plugin call's import path
    from ipaddress import IPv6Network

DEFAULT_SUBNET_LEN = 64
MAX_SUBNET_LEN = 120  # a node needs room for pods: 256 addresses at least
# pods route the whole range: none of it may be ::/8 (unspecified, loopback, IPv4-mapped
# and -compatible), link-local, site-local (deprecated) or multicast
NOT_FOR_PODS = tuple(ip_network(n) for n in ("::/8", "fe80::/10", "fec0::/10", "ff00::/8"))


def network6(top: Obj) -> "IPv6Network | None":
    """ipv6Network, or None when the key is absent (IPv4 only)."""
    if top.lookup("ipv6Network") is None:
        if top.lookup("ipv6SubnetLen") is not None:
            raise CNIError(
                Code.INVALID_CONFIG, "ipv6SubnetLen without ipv6Network", "set ipv6Network for a dual-stack overlay, or drop ipv6SubnetLen"
            )
        return None
    text = top.str("ipv6Network")
    if not text:
        raise top.bad("ipv6Network", "an IPv6 CIDR, e.g. fd00:10:244::/48", text)
    try:
        network = ip_network(text)
    except ValueError as err:
        raise CNIError(Code.INVALID_CONFIG, "invalid ipv6Network", str(err)) from None
    if network.version != 6:
        raise CNIError(Code.INVALID_CONFIG, "invalid ipv6Network", f"{network} is not IPv6 (the IPv4 pod network is `network`)")
    reserved = next((n for n in NOT_FOR_PODS if network.overlaps(n)), None)
    if reserved is not None:
        raise CNIError(Code.INVALID_CONFIG, "invalid ipv6Network", f"{network} overlaps {reserved}, which is not for pods")
    return network


def subnet_len6(top: Obj, network: "IPv6Network") -> int:
    subnet_len = top.int("ipv6SubnetLen", DEFAULT_SUBNET_LEN)
    if subnet_len > MAX_SUBNET_LEN:
        raise top.bad("ipv6SubnetLen", f"at most {MAX_SUBNET_LEN} (a node needs room for pods)", subnet_len)
    if subnet_len <= network.prefixlen:
        raise CNIError(
            Code.INVALID_CONFIG,
            f"ipv6Network {network} is smaller than ipv6SubnetLen /{subnet_len}",
            f"ipv6SubnetLen must be longer than the network's prefix ({network.prefixlen}) to carve node subnets out of it",
        )
    return subnet_len


def peer_subnet6(item: Obj, network: "IPv6Network | None", subnet_len: int) -> "IPv6Network | None":
    """A static peer's optional `subnet6`: a /ipv6SubnetLen inside ipv6Network (ValueError naming the problem)."""
    text = item.lookup("subnet6")
    if text is None:
        return None
    if network is None:
        raise ValueError("subnet6 needs ipv6Network (a dual-stack overlay)")
    if type(text) is not str:
        raise ValueError(f"subnet6: want an IPv6 CIDR, got {text!r}"[:160])
    try:
        net = ip_network(text)
    except ValueError as err:
        raise ValueError(f"subnet6: {str(err)[:160]}") from None
    if net.version != 6 or net.prefixlen != subnet_len or not net.subnet_of(network):
        raise ValueError(f"subnet6 {net} is not a /{subnet_len} inside {network}")
    return net
