"""Which attachment a firewall rule belongs to, told from the rule alone (DEL and GC need no namespace).

The reference comments each rule with the container ID only, so two
attachments of one container (two networks, or two interfaces) share their
rules and one's DEL removes the other's.  Ours carry the network and the
attachment (common/attachment.py: digest of containerID and ifname):

    <tag> = <network hash, 16 hex>-<attachment digest, 32 hex>
    comment: "<tag>, net: <network>, if: <ifname>, id: <containerID>"

The tag comes first and has a fixed length, so truncating the readable rest
(nft keeps 128 bytes of a comment) never changes whose rule it is.  The
iptables backend's per-attachment chain is named from the tag too.
"""

from common import attachment, firewall
from common.startup import sha256

NET_HEX = 16
ATT_HEX = 32
TAG_LEN = NET_HEX + 1 + ATT_HEX
CHAIN_PREFIX = "CNI-DN-"  # the reference's prefix for the per-container DNAT chain
CHAIN_MAX = 28  # iptables' limit on a chain name


def network_tag(network: str) -> str:
    return sha256(network.encode()).hexdigest()[:NET_HEX]


def tag(network: str, container_id: str, ifname: str) -> str:
    return f"{network_tag(network)}-{attachment.digest(container_id, ifname)[:ATT_HEX]}"


def comment(network: str, container_id: str, ifname: str) -> str:
    """The rules' comment: the tag, then who it is for in words (quotes and control characters removed)."""
    return firewall.comment(f"{tag(network, container_id, ifname)}, net: {network}, if: {ifname}, id: {container_id}")


def owner(text: str | None) -> str | None:
    """The tag a comment of ours starts with; None for anyone else's comment."""
    if not text or len(text) < TAG_LEN or text[NET_HEX] != "-" or text[TAG_LEN : TAG_LEN + 1] not in ("", ","):
        return None
    head = text[:TAG_LEN]
    if not all(c in "0123456789abcdef" for c in head[:NET_HEX] + head[NET_HEX + 1 :]):
        return None
    return head


def dnat_chain(network: str, container_id: str, ifname: str) -> str:
    """The iptables chain of one attachment's DNAT rules (the reference's CNI-DN- prefix, our identity)."""
    digest = sha256(tag(network, container_id, ifname).encode()).hexdigest()
    return (CHAIN_PREFIX + digest)[:CHAIN_MAX]
