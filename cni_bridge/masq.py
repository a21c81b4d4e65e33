"""ipMasq: masquerade container traffic leaving its subnet, findable without the container.

Both backends name their rules by (network, container) so DEL and GC find
exactly their own, with no address read from the container's namespace (the
reference's iptables teardown needs those addresses and leaks its chain when
the namespace is gone, plugins#810).

nftables (the default): upstream's layout, so either implementation removes
the other's rules.  Table inet cni_plugins_masquerade, base chain postrouting
-> masq_checks, one rule per address:
    ip saddr A ip daddr != SUBNET masquerade comment "<net-hash>-<instance-hash>, net: N, if: I, id: C"
applied as one transaction.

iptables: the reference's layout (chain CNI-<hash>, comment name: "N" id: "C"),
applied with one iptables-restore per family.
"""

import hashlib
import re

from common import firewall

NFT_TABLE = "cni_plugins_masquerade"
NFT_CHAIN = "masq_checks"
NFT = f"inet {NFT_TABLE}"


def _hash16(text: str) -> str:
    return hashlib.sha512(text.encode()).hexdigest()[:16]


def network_hash(network: str) -> str:
    return _hash16(network)


def instance_hash(network: str, ifname: str, container_id: str) -> str:
    return f"{_hash16(network)}-{_hash16(ifname + ':' + container_id)}"


def nft_comment(network: str, ifname: str, container_id: str) -> str:
    return firewall.comment(f"{instance_hash(network, ifname, container_id)}, net: {network}, if: {ifname}, id: {container_id}")


def chain_name(network: str, container_id: str) -> str:
    return "CNI-" + hashlib.sha512((network + container_id).encode()).hexdigest()[:24]


def ipt_comment(network: str, container_id: str) -> str:
    return f'name: "{network}" id: "{container_id}"'


# --- setup -----------------------------------------------------------------


def setup(backend: str, network: str, ifname: str, container_id: str, ips) -> None:
    """ips: IPConfigs of the container (address with its prefix)."""
    if backend == "nftables":
        _setup_nft(network, ifname, container_id, ips)
    else:
        for version in (4, 6):
            family_ips = [ip for ip in ips if ip.family == version]
            if family_ips:
                _setup_ipt(version, network, container_id, family_ips)


def _setup_nft(network: str, ifname: str, container_id: str, ips) -> None:
    stale = _nft_handles(instance_hash(network, ifname, container_id))
    lines = [
        f'add table {NFT} {{ comment "Masquerading for plugins from github.com/containernetworking/plugins" ; }}',
        f'add chain {NFT} {NFT_CHAIN} {{ comment "Masquerade traffic from certain IPs to any (non-multicast) IP outside their subnet" ; }}',
        f"add chain {NFT} postrouting {{ type nat hook postrouting priority 100 ; }}",
        f"flush chain {NFT} postrouting",
        f"add rule {NFT} postrouting ip daddr 224.0.0.0/4 return",
        f"add rule {NFT} postrouting ip6 daddr ff00::/8 return",
        f"add rule {NFT} postrouting goto {NFT_CHAIN}",
    ]
    lines += [f"delete rule {NFT} {NFT_CHAIN} handle {h}" for h in stale]
    comment = firewall.quote(nft_comment(network, ifname, container_id))
    for ip in ips:
        family = "ip" if ip.family == 4 else "ip6"
        lines.append(f"add rule {NFT} {NFT_CHAIN} {family} saddr {ip.address.ip} {family} daddr != {ip.address.network} masquerade comment {comment}")
    firewall.nft("\n".join(lines) + "\n", "installing masquerade rules")


def _setup_ipt(version: int, network: str, container_id: str, ips) -> None:
    chain, comment = chain_name(network, container_id), ipt_comment(network, container_id)
    current = firewall.iptables_save(version)
    if current is None:
        firewall.iptables_restore(version, "", "installing masquerade rules")  # reports the missing tool
        return
    multicast = "224.0.0.0/4" if version == 4 else "ff00::/8"
    quoted = '"' + comment.replace('"', '\\"') + '"'
    lines = current.splitlines()
    have = set(lines)
    # with --noflush, declaring an existing chain would flush it: declare only a new one
    wanted = [] if chain in _declared(lines) else [f":{chain} - [0:0]"]
    host_len = 32 if version == 4 else 128
    for ip in ips:
        for rule in (
            f"-A {chain} -d {ip.address.network} -m comment --comment {quoted} -j ACCEPT",
            f"-A {chain} ! -d {multicast} -m comment --comment {quoted} -j MASQUERADE",
            f"-A POSTROUTING -s {ip.address.ip}/{host_len} -m comment --comment {quoted} -j {chain}",
        ):
            if rule not in have and rule not in wanted:  # append-unique, as the reference does
                wanted.append(rule)
    if wanted:
        firewall.iptables_restore(version, "*nat\n" + "\n".join(wanted) + "\nCOMMIT\n", "installing masquerade rules")


# --- teardown and GC -------------------------------------------------------


def nft_rules() -> list[dict]:
    return firewall.nft_rules("inet", NFT_TABLE, NFT_CHAIN) or []


def _nft_handles(prefix: str, keep: set[str] | frozenset[str] = frozenset()) -> list[int]:
    return [r["handle"] for r in nft_rules() if r.get("comment", "").startswith(prefix) and r.get("comment") not in keep]


def _nft_delete(handles: list[int]) -> None:
    if handles:
        firewall.nft("".join(f"delete rule {NFT} {NFT_CHAIN} handle {h}\n" for h in handles), "removing masquerade rules")


_CHAIN_RULE = re.compile(r"^-A (\S+) .*--comment \"name: \\\"(.*?)\\\" id: \\\"(.*?)\\\"\"")


def _declared(save_lines: list[str]) -> set[str]:
    return {line[1:].split()[0] for line in save_lines if line.startswith(":")}


def ipt_chains(version: int, network: str) -> dict[str, str]:
    """CNI-* chains of this network: chain -> container ID (read from the rules' comments)."""
    text = firewall.iptables_save(version)
    chains: dict[str, str] = {}
    for line in (text or "").splitlines():
        m = _CHAIN_RULE.match(line)
        if m and m.group(1).startswith("CNI-") and m.group(2) == network:
            chains[m.group(1)] = m.group(3)
    return chains


def _ipt_remove(version: int, network: str, container_ids: set[str]) -> None:
    """Remove the rules commented with this network and these containers, and their chains once unused.

    Only rules carrying our own comment go: the reference's chain name hashes
    network + containerID, which two attachments of different networks can
    share ("a" + "bc", "ab" + "c"), so a chain is deleted only when no rule
    of anyone else is left in it or jumps to it.
    """
    text = firewall.iptables_save(version)
    if not text or not container_ids:
        return
    lines = text.splitlines()
    ours, chains = set(), set()
    for line in lines:
        m = _CHAIN_RULE.match(line)
        if m and m.group(2) == network and m.group(3) in container_ids:
            ours.add(line)
            chain = m.group(1) if m.group(1) != "POSTROUTING" else line.split(" -j ")[-1]
            if chain.startswith("CNI-"):
                chains.add(chain)
    rest = [line for line in lines if line.startswith("-A ") and line not in ours]
    commands = [f"-D {line[3:]}" for line in sorted(ours, key=lambda line: not line.startswith("-A POSTROUTING "))]
    for chain in sorted(chains & _declared(lines)):
        if not any(line.split()[1] == chain or line.endswith(f" -j {chain}") for line in rest):
            commands.append(f"-X {chain}")
    if commands:
        firewall.iptables_restore(version, "*nat\n" + "\n".join(commands) + "\nCOMMIT\n", "removing masquerade rules")


def teardown(network: str, ifname: str, container_id: str) -> None:
    """Remove this attachment's rules from both backends (it may predate a backend change)."""
    _nft_delete(_nft_handles(instance_hash(network, ifname, container_id)))
    for version in (4, 6):
        _ipt_remove(version, network, {container_id})


def collect(network: str, valid: set[tuple[str, str]]) -> int:
    """GC: remove the rules of this network's attachments that are not valid; return how many chains/rules went."""
    keep = {nft_comment(network, ifname, cid) for cid, ifname in valid}
    stale = _nft_handles(network_hash(network) + "-", keep)
    _nft_delete(stale)
    removed = len(stale)
    valid_ids = {cid for cid, _ in valid}  # the iptables layout has no ifname, as in the reference
    for version in (4, 6):
        chains = {chain: cid for chain, cid in ipt_chains(version, network).items() if cid not in valid_ids}
        _ipt_remove(version, network, set(chains.values()))
        removed += len(chains)
    return removed


def present(backend: str, network: str, ifname: str, container_id: str, ips) -> bool:
    """CHECK: are this attachment's rules in place?"""
    if backend == "nftables":
        prefix = instance_hash(network, ifname, container_id)
        return len([r for r in nft_rules() if r.get("comment", "").startswith(prefix)]) >= len(ips)
    chain = chain_name(network, container_id)
    return all(chain in ipt_chains(version, network) for version in {ip.family for ip in ips})
