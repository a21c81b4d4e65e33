"""macspoofchk: frames leaving a container's host veth must carry the container's MAC.

The reference's layout (so either implementation removes the other's rules):
table bridge nat, base chain PREROUTING (filter, prerouting, priority -300),
  iifname "<host veth>" jump cni-br-iface-<id>
  cni-br-iface-<id>:      jump cni-br-iface-<id>-mac
  cni-br-iface-<id>-mac:  ether saddr <mac> return; drop
every rule commented macspoofchk-<id>.  The reference's <id> is
"<cid>-<ifname>", which (pod-1, eth0) and (pod, 1-eth0) share, and which
can equal another pair's "<id>-mac": we use it only where it stands for one
pair alone and does not end in "-mac" (every ordinary pod), and
common.attachment.digest() of the pair otherwise.  Teardown needs only the
container ID and ifname, so it works without the container's namespace.
"""

import re

from common import attachment, firewall

TABLE = "bridge nat"
_IDENTIFIER = re.compile(r"[A-Za-z0-9_./-]+\Z")  # what nft accepts as an unquoted chain name


def rule_id(container_id: str, ifname: str) -> str:
    plain = f"{container_id}-{ifname}"
    # "<id>-mac" names the second chain of the pair whose id is <id>: no plain id may end so
    if len(plain) <= 200 and _IDENTIFIER.match(plain) and not plain.endswith("-mac") and attachment.legacy_splits(plain) == [(container_id, ifname)]:
        return plain
    return attachment.digest(container_id, ifname)


def _names(container_id: str, ifname: str) -> tuple[str, str, str]:
    ref = rule_id(container_id, ifname)
    base = f"cni-br-iface-{ref}"
    return base, base + "-mac", f"macspoofchk-{ref}"


def _stale_prerouting(comment: str) -> list[int]:
    rules = firewall.nft_rules("bridge", "nat", "PREROUTING") or []
    return [r["handle"] for r in rules if r.get("comment") == comment]


def setup(host_veth: str, mac: str, container_id: str, ifname: str) -> None:
    iface, mac_chain, comment = _names(container_id, ifname)
    quoted = firewall.quote(comment)
    lines = [
        f"add table {TABLE}",
        f"add chain {TABLE} PREROUTING {{ type filter hook prerouting priority -300 ; policy accept ; }}",
        f"add chain {TABLE} {iface}",
        f"add chain {TABLE} {mac_chain}",
        f"flush chain {TABLE} {iface}",
        f"flush chain {TABLE} {mac_chain}",
    ]
    lines += [f"delete rule {TABLE} PREROUTING handle {h}" for h in _stale_prerouting(comment)]
    lines += [
        f'add rule {TABLE} PREROUTING iifname "{host_veth}" jump {iface} comment {quoted}',
        f"add rule {TABLE} {iface} jump {mac_chain} comment {quoted}",
        f"add rule {TABLE} {mac_chain} ether saddr {mac} return comment {quoted}",
        f"add rule {TABLE} {mac_chain} drop comment {quoted}",
    ]
    firewall.nft("\n".join(lines) + "\n", "installing macspoofchk rules")


def teardown(container_id: str, ifname: str) -> None:
    iface, mac_chain, comment = _names(container_id, ifname)
    chains = set(firewall.nft_chains("bridge", "nat"))
    lines = [f"delete rule {TABLE} PREROUTING handle {h}" for h in _stale_prerouting(comment)]
    # the jump into a chain goes first, then the chain that jumps to the next, then the last
    lines += [f"delete chain {TABLE} {name}" for name in (iface, mac_chain) if name in chains]
    if lines:
        firewall.nft("\n".join(lines) + "\n", "removing macspoofchk rules")


def present(host_veth: str, mac: str, container_id: str, ifname: str) -> bool:
    iface, mac_chain, comment = _names(container_id, ifname)
    jumps = [r for r in firewall.nft_rules("bridge", "nat", "PREROUTING") or [] if r.get("comment") == comment]
    checks = firewall.nft_rules("bridge", "nat", mac_chain) or []
    return bool(jumps) and any(mac in str(r.get("expr")) for r in checks)
