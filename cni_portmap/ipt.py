"""The iptables backend: the reference's chains in the nat table, one iptables-restore per family.

    PREROUTING, OUTPUT:  -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
    CNI-HOSTPORT-DNAT:   -p tcp -m comment --comment "<tag>, ..." -m multiport --dports 8080,8081 [conditions] -j CNI-DN-<id>
    CNI-DN-<id>:         -s POD/PREFIX -p tcp -m tcp --dport 8080 [-d HOSTIP] -j CNI-HOSTPORT-SETMARK   (hairpin)
                         -s 127.0.0.1 -p tcp -m tcp --dport 8080 [-d HOSTIP] -j CNI-HOSTPORT-SETMARK    (IPv4)
                         -p tcp -m tcp --dport 8080 [-d HOSTIP] -j DNAT --to-destination POD:80
    CNI-HOSTPORT-SETMARK: -j MARK --set-xmark 1<<markMasqBit (not created with externalSetMarkChain)
    POSTROUTING (first): -j CNI-HOSTPORT-MASQ;  CNI-HOSTPORT-MASQ: -m mark --mark BIT -j MASQUERADE

The shared chains and jumps are added when absent.  The attachment's chain
name and the comment of its jumps come from its tag (ident.py), so DEL and GC
find them from the rules alone.  With --noflush, declaring an existing chain
flushes it: that is how a repeated ADD replaces the attachment's chain.
"""

from cni_portmap import ident
from cni_portmap.conf import PortmapConf
from common import firewall
from common.errors import CNIError, Code

TOP = "CNI-HOSTPORT-DNAT"
SETMARK = "CNI-HOSTPORT-SETMARK"
MASQ = "CNI-HOSTPORT-MASQ"
MULTIPORT_MAX = 15


def _declared(lines: list[str]) -> set[str]:
    return {line[1:].split()[0] for line in lines if line.startswith(":")}


def _token(text: str) -> str:
    return f'"{text}"' if not text or " " in text else text


def _comment_of(line: str) -> str | None:
    at = line.find("--comment ")
    if at < 0:
        return None
    rest = line[at + len("--comment ") :]
    if rest.startswith('"'):
        return rest[1:].partition('"')[0]
    return rest.partition(" ")[0]


def _mark(conf: PortmapConf) -> str:
    bit = 1 << conf.mark_masq_bit
    return f"{bit:#x}/{bit:#x}"


def shared_lines(conf: PortmapConf, version: int, current: list[str]) -> list[str]:
    """The chains and jumps all attachments share, for those not there yet."""
    declared, out = _declared(current), []
    jumps = lambda chain, target: any(line.startswith(f"-A {chain} ") and line.endswith(f" -j {target}") for line in current)
    if conf.snat and not conf.external_set_mark_chain:
        if SETMARK not in declared:
            out.append(f":{SETMARK} - [0:0]")
        if not any(line.startswith(f"-A {SETMARK} ") for line in current):
            out.append(f'-A {SETMARK} -m comment --comment "CNI portfwd masquerade mark" -j MARK --set-xmark {_mark(conf)}')
        if MASQ not in declared:
            out.append(f":{MASQ} - [0:0]")
        if not jumps(MASQ, "MASQUERADE"):
            out.append(f"-A {MASQ} -m mark --mark {_mark(conf)} -j MASQUERADE")
        if not jumps("POSTROUTING", MASQ):
            # first, as the reference: bridge's masquerade rules would otherwise take the packets before it
            out.append(f'-I POSTROUTING 1 -m comment --comment "CNI portfwd requiring masquerade" -j {MASQ}')
    if TOP not in declared:
        out.append(f":{TOP} - [0:0]")
    for hook in ("PREROUTING", "OUTPUT"):
        if not jumps(hook, TOP):
            out.append(f"-A {hook} -m addrtype --dst-type LOCAL -j {TOP}")
    return out


def attachment_lines(conf: PortmapConf, version: int, chain: str, comment: str) -> list[str]:
    """The attachment's chain (declared, hence emptied) and its rules (pure: the unit tests read them)."""
    pod = conf.container_ip(version)
    mappings = conf.for_family(version)
    if pod is None or not mappings:
        return []
    setmark = conf.external_set_mark_chain or SETMARK
    host = "/32" if version == 4 else "/128"
    to = f"{pod.ip}:" if version == 4 else f"[{pod.ip}]:"
    out = [f":{chain} - [0:0]"]
    by_proto: dict[str, list[int]] = {}
    for m in mappings:
        by_proto.setdefault(m.protocol, []).append(m.host_port)
    conditions = " ".join(_token(c) for c in conf.conditions(version))
    for proto in sorted(by_proto):
        ports = by_proto[proto]
        for i in range(0, len(ports), MULTIPORT_MAX):
            group = ",".join(str(p) for p in ports[i : i + MULTIPORT_MAX])
            extra = f" {conditions}" if conditions else ""
            out.append(f'-A {TOP} -p {proto} -m comment --comment "{comment}" -m multiport --dports {group}{extra} -j {chain}')
    for m in mappings:
        base = f"-p {m.protocol} -m {m.protocol} --dport {m.host_port}" + (f" -d {m.daddr}{host}" if m.daddr is not None else "")
        if conf.snat:
            source = ("0.0.0.0/0" if version == 4 else "::/0") if conf.masq_all else str(pod)
            out.append(f"-A {chain} -s {source} {base} -j {setmark}")
            if version == 4 and not conf.masq_all:
                out.append(f"-A {chain} -s 127.0.0.1/32 {base} -j {setmark}")
        out.append(f"-A {chain} {base} -j DNAT --to-destination {to}{m.container_port}")
    return out


def _removal_lines(current: list[str], doomed) -> list[str]:
    """-D of the jumps whose comment's owner is doomed, then -F and -X of their chains (once no one else jumps there)."""
    ours, chains = [], set()
    for line in current:
        if line.startswith(f"-A {TOP} ") and doomed(ident.owner(_comment_of(line))):
            ours.append(line)
            chains.add(line.rsplit(" -j ", 1)[-1])
    rest = [line for line in current if line.startswith("-A ") and line not in ours]
    out = [f"-D {line[3:]}" for line in ours]
    for chain in sorted(chains & _declared(current)):
        if chain.startswith(ident.CHAIN_PREFIX) and not any(line.endswith(f" -j {chain}") for line in rest):
            out += [f"-F {chain}", f"-X {chain}"]
    return out


def _save(version: int) -> list[str] | None:
    text = firewall.iptables_save(version)
    return None if text is None else text.splitlines()


def _restore(version: int, lines: list[str], what: str) -> None:
    if lines:
        firewall.iptables_restore(version, "*nat\n" + "\n".join(lines) + "\nCOMMIT\n", what)


def setup(conf: PortmapConf, container_id: str, ifname: str) -> None:
    """Install the attachment's rules, one transaction per family; a later family's failure undoes nothing itself
    (the caller's undo, teardown(), removes every family's)."""
    tag = ident.tag(conf.name, container_id, ifname)
    chain = ident.dnat_chain(conf.name, container_id, ifname)
    comment = ident.comment(conf.name, container_id, ifname)
    for version in conf.families:
        current = _save(version)
        if current is None:
            raise CNIError(Code.INVALID_CONFIG, "installing port mappings: iptables-save is not installed", "install iptables")
        own = attachment_lines(conf, version, chain, comment)
        old = [f"-D {line[3:]}" for line in current if line.startswith(f"-A {TOP} ") and ident.owner(_comment_of(line)) == tag]
        if own:
            lines = shared_lines(conf, version, current) + old + own
            # chains first: iptables-restore wants a chain declared before a rule names it
            _restore(version, [line for line in lines if line[0] == ":"] + [line for line in lines if line[0] != ":"], "installing port mappings")
        elif old:
            _restore(version, _removal_lines(current, lambda owner: owner == tag), "installing port mappings")


def _saved_if_any(version: int) -> list[str]:
    """The nat table's lines; none when the tool or the kernel's table for the family is missing (nothing to remove)."""
    if firewall.tool("iptables-save" if version == 4 else "ip6tables-save") is None:
        return []
    try:
        return _save(version) or []
    except CNIError as err:
        if "does not exist" in err.details or "insmod" in err.details:  # e.g. no ip6table_nat: a DEL must not fail on it
            return []
        raise


def _remove(doomed, what: str) -> int:
    removed = 0
    for version in (4, 6):
        current = _saved_if_any(version)
        lines = _removal_lines(current, doomed)
        _restore(version, lines, what)
        removed += sum(line.startswith("-X ") for line in lines)
    return removed


def teardown(network: str, container_id: str, ifname: str) -> None:
    tag = ident.tag(network, container_id, ifname)
    _remove(lambda owner: owner == tag, "removing port mappings")


def collect(network: str, valid: set[tuple[str, str]]) -> int:
    prefix = ident.network_tag(network) + "-"
    keep = {ident.tag(network, cid, ifname) for cid, ifname in valid}
    return _remove(lambda owner: owner is not None and owner.startswith(prefix) and owner not in keep, "removing port mappings")


def missing(conf: PortmapConf, container_id: str, ifname: str) -> list[str]:
    """What CHECK finds absent: the attachment's jumps, its chain, a DNAT per mapping."""
    tag = ident.tag(conf.name, container_id, ifname)
    chain = ident.dnat_chain(conf.name, container_id, ifname)
    out = []
    for version in conf.families:
        pod = conf.container_ip(version)
        mappings = conf.for_family(version)
        if pod is None or not mappings:
            continue
        current = _save(version) or []
        if not any(line.startswith(f"-A {TOP} ") and ident.owner(_comment_of(line)) == tag for line in current):
            out.append(f"IPv{version} jump to {chain} in {TOP}")
        rules = [line for line in current if line.startswith(f"-A {chain} ")]
        to = f"{pod.ip}:" if version == 4 else f"[{pod.ip}]:"
        for m in mappings:
            port, target = f"-p {m.protocol} -m {m.protocol} --dport {m.host_port} ", f" -j DNAT --to-destination {to}{m.container_port}"
            if not any(port in line and line.endswith(target) for line in rules):
                out.append(f"IPv{version} {m.protocol} {m.host_port} -> {to}{m.container_port}")
    return out
