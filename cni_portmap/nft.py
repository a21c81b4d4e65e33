"""The nftables backend: upstream's `backend: nftables` layout, each change one `nft -f` transaction.

Per family, table `ip cni_hostport` / `ip6 cni_hostport`:

    prerouting   nat hook prerouting priority dstnat:  [conditions] fib daddr type local jump hostports_all
    output       nat hook output priority -100:        [conditions] fib daddr type local jump hostports_all
    hostports_all:  jump hostip_hostports; jump hostports
    hostports:      [ip daddr HOSTIP] tcp dport HOSTPORT dnat to POD:PORT        comment "<tag>, ..."
    hostip_hostports: (kept empty, as upstream: older versions put hostIP rules there)
    masquerading nat hook postrouting priority srcnat:
                    ip saddr POD ip daddr POD masquerade                         (hairpin)
                    ip saddr 127.0.0.1 ip daddr POD masquerade                   (the node's own 127.0.0.1, IPv4)
                    (masqAll: ip saddr 0.0.0.0/0 ip daddr POD masquerade instead of both)

DNAT applies only to traffic addressed to the node (`fib daddr type local`),
and a mapping with a hostIP matches that address too.  Every rule of an
attachment carries its tag (ident.py), so DEL and GC delete exactly its rules
by handle, and an ADD replaces a previous ADD's rules in the same transaction.
"""

from cni_portmap import ident
from cni_portmap.conf import PortmapConf
from common import firewall

TABLE = "cni_hostport"
FAMILY = {4: "ip", 6: "ip6"}
CHAINS = ("hostports", "hostip_hostports", "masquerading")  # where rules of attachments live


def _join(addr, port: int) -> str:
    return f"[{addr}]:{port}" if addr.version == 6 else f"{addr}:{port}"


def base_lines(conf: PortmapConf, version: int) -> list[str]:
    """The table and its chains, created if missing; the hooks' rules rewritten (upstream's ensure)."""
    t = f"{FAMILY[version]} {TABLE}"
    conditions = " ".join(conf.conditions(version))
    entry = f"{conditions} fib daddr type local jump hostports_all".lstrip()
    lines = [
        f'add table {t} {{ comment "CNI portmap plugin" ; }}',
        f"add chain {t} hostports",
        f"add chain {t} hostip_hostports",
        f"add chain {t} hostports_all",
        f"flush chain {t} hostports_all",
        f"add rule {t} hostports_all jump hostip_hostports",
        f"add rule {t} hostports_all jump hostports",
        f"add chain {t} prerouting {{ type nat hook prerouting priority dstnat ; }}",
        f"flush chain {t} prerouting",
        f"add rule {t} prerouting {entry}",
        f"add chain {t} output {{ type nat hook output priority -100 ; }}",
        f"flush chain {t} output",
        f"add rule {t} output {entry}",
    ]
    if conf.snat:
        lines.append(f"add chain {t} masquerading {{ type nat hook postrouting priority srcnat ; }}")
    return lines


def attachment_lines(conf: PortmapConf, version: int, comment: str) -> list[str]:
    """The rules of one attachment in one family (pure: the unit tests read them)."""
    pod = conf.container_ip(version)
    if pod is None:
        return []
    fam, t, quoted = FAMILY[version], f"{FAMILY[version]} {TABLE}", firewall.quote(comment)
    lines = []
    for m in conf.for_family(version):
        daddr = f"{fam} daddr {m.daddr} " if m.daddr is not None else ""
        lines.append(f"add rule {t} hostports {daddr}{m.protocol} dport {m.host_port} dnat to {_join(pod.ip, m.container_port)} comment {quoted}")
    if conf.snat:
        source = ("0.0.0.0/0" if version == 4 else "::/0") if conf.masq_all else str(pod.ip)
        lines.append(f"add rule {t} masquerading {fam} saddr {source} {fam} daddr {pod.ip} masquerade comment {quoted}")
        if version == 4 and not conf.masq_all:
            lines.append(f"add rule {t} masquerading ip saddr 127.0.0.1 ip daddr {pod.ip} masquerade comment {quoted}")
    return lines


def _rules(version: int) -> list[dict]:
    return firewall.nft_table_rules(FAMILY[version], TABLE) or []


def _delete_lines(version: int, rules: list[dict], doomed) -> list[str]:
    t = f"{FAMILY[version]} {TABLE}"
    return [f"delete rule {t} {r['chain']} handle {r['handle']}" for r in rules if r.get("chain") in CHAINS and doomed(ident.owner(r.get("comment")))]


def setup(conf: PortmapConf, container_id: str, ifname: str) -> None:
    """Install the attachment's rules in every family it has an address in: one transaction, all or nothing."""
    tag = ident.tag(conf.name, container_id, ifname)
    comment = ident.comment(conf.name, container_id, ifname)
    lines: list[str] = []
    for version in conf.families:
        lines += base_lines(conf, version)
        lines += _delete_lines(version, _rules(version), lambda owner: owner == tag)  # a previous ADD's
        lines += attachment_lines(conf, version, comment)
    if lines:
        firewall.nft("\n".join(lines) + "\n", "installing port mappings")


def _remove(doomed) -> int:
    lines: list[str] = []
    for version in (4, 6):
        lines += _delete_lines(version, _rules(version), doomed)
    if lines:
        firewall.nft("\n".join(lines) + "\n", "removing port mappings")
    return len(lines)


def teardown(network: str, container_id: str, ifname: str) -> None:
    """Remove the attachment's rules from both families; nothing there is fine."""
    if firewall.tool("nft") is None:
        return
    tag = ident.tag(network, container_id, ifname)
    _remove(lambda owner: owner == tag)


def collect(network: str, valid: set[tuple[str, str]]) -> int:
    """GC: remove the rules of this network's attachments that are not valid; how many went."""
    if firewall.tool("nft") is None:
        return 0
    prefix = ident.network_tag(network) + "-"
    keep = {ident.tag(network, cid, ifname) for cid, ifname in valid}
    return _remove(lambda owner: owner is not None and owner.startswith(prefix) and owner not in keep)


# --- CHECK -------------------------------------------------------------------


def _dnat_of(rule: dict) -> tuple | None:
    """(protocol, dport, daddr or None, to address, to port) of a DNAT rule as nft lists it in JSON."""
    proto = dport = daddr = to = None
    for expr in rule.get("expr", ()):
        match = expr.get("match")
        if match:
            payload = match.get("left", {}).get("payload", {})
            if payload.get("field") == "dport":
                proto, dport = payload.get("protocol"), match.get("right")
            elif payload.get("field") == "daddr":
                daddr = match.get("right")
        elif "dnat" in expr:
            to = (expr["dnat"].get("addr"), expr["dnat"].get("port"))
    return None if to is None else (proto, dport, daddr, *to)


def missing(conf: PortmapConf, container_id: str, ifname: str) -> list[str]:
    """What CHECK finds absent of the attachment's rules (empty: all there)."""
    tag = ident.tag(conf.name, container_id, ifname)
    out = []
    for version in conf.families:
        pod = conf.container_ip(version)
        assert pod is not None
        rules = [r for r in _rules(version) if ident.owner(r.get("comment")) == tag]
        have = {_dnat_of(r) for r in rules if r.get("chain") == "hostports"}
        for m in conf.for_family(version):
            want = (m.protocol, m.host_port, None if m.daddr is None else str(m.daddr), str(pod.ip), m.container_port)
            if want not in have:
                out.append(f"{FAMILY[version]} {m.protocol} {m.host_port} -> {_join(pod.ip, m.container_port)}")
        if conf.snat:
            want_masq = 2 if version == 4 and not conf.masq_all else 1
            if sum(r.get("chain") == "masquerading" for r in rules) < want_masq:
                out.append(f"{FAMILY[version]} masquerade rules for {pod.ip}")
    return out
