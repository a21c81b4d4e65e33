"""`cni-suite doctor`: the known pain points of a node, each with the fix."""

import os
from dataclasses import asdict, dataclass

from cni_suite import inventory
from cni_suite.inventory import Network
from cni_suite.report import plumbing
from common import bincache, firewall, netlink
from common.errors import CNIError
from common.netlink import sysctl
from common.skel import CmdArgs


@dataclass(frozen=True)
class Finding:
    check: str
    network: str
    problem: str
    fix: str

    def to_dict(self) -> dict:
        return asdict(self)


def runtime_tmpdir() -> str:
    """Where a single-file binary unpacks itself: TMPDIR, or /tmp (docs/build.md)."""
    return os.environ.get("TMPDIR") or "/tmp"


def check_tmpdir(path: str | None = None) -> list[Finding]:
    path = path or runtime_tmpdir()
    try:
        noexec = bool(os.statvfs(path).f_flag & os.ST_NOEXEC)
    except OSError as err:
        return [Finding("runtime-tmpdir", "", f"{path} is unusable: {err.strerror}", "create it, root-only, on an exec-capable filesystem")]
    if noexec:
        return [
            Finding(
                "runtime-tmpdir",
                "",
                f"{path} is mounted noexec: the single-file plugins cannot start from it",
                "give the runtime TMPDIR=<a root-only directory on an exec-capable filesystem> (docs/build.md)",
            )
        ]
    return []


def check_network(network: Network) -> list[Finding]:
    if network.problem:
        return [Finding("config", network.name, network.problem, f"fix {network.source}")]
    try:
        ipam_config, _ = plumbing(network)
        return _bridge(network, ipam_config) + _ipv6(network, ipam_config) + _tools(network) + _vxlan(network)
    except (CNIError, OSError) as err:  # as status: one network's trouble is a finding, not the end of the report
        return [Finding("config", network.name, str(err), f"fix {network.source}")]


def _ranges(ipam_config):
    from cni_hostlocal_ipam.conf import IPAMConf

    return IPAMConf.load(CmdArgs.for_config(ipam_config, command="STATUS")).range_sets if ipam_config else ()


def _bridge(network: Network, ipam_config) -> list[Finding]:
    """A bridge holding a gateway address outside the network's ranges makes every ADD fail."""
    if network.plugin == "vxlan":
        from cni_vxlan.conf import VxlanConf

        name, gateway = VxlanConf.load(CmdArgs.for_config(network.config, command="STATUS")).bridge, True
    elif network.plugin == "bridge":
        from cni_bridge.conf import BridgeConf

        conf = BridgeConf.load(CmdArgs.for_config(network.config, command="STATUS"))
        name, gateway = conf.bridge, conf.is_gateway and not conf.force_address
    else:
        return []
    if not gateway or ipam_config is None:
        return []
    subnets = [r.subnet for rs in _ranges(ipam_config) for r in rs.ranges]
    with netlink.host() as nl:
        link = netlink.find_link(nl, name)
        addrs = netlink.list_addresses(nl, link.index, 4) if link else []
    foreign = [a.address for a in addrs if not any(a.address.ip in s for s in subnets if s.version == 4)]
    if not foreign:
        return []
    return [
        Finding(
            "bridge-address",
            network.name,
            f"bridge {name} holds {', '.join(map(str, foreign))}, outside {', '.join(map(str, subnets))}: every ADD fails with code 103",
            f"ip addr del {foreign[0]} dev {name}, or set forceAddress, or give the network its own bridge",
        )
    ]


def _ipv6(network: Network, ipam_config) -> list[Finding]:
    if not any(rs.version == 6 for rs in _ranges(ipam_config)):
        return []
    state = sysctl.read("ipv6/conf/all/disable_ipv6")
    if state in (None, "1"):
        why = "IPv6 is disabled on this node" if state == "1" else "this kernel has no IPv6"
        return [
            Finding(
                "ipv6",
                network.name,
                f"{why}, but the network has IPv6 ranges: ADD fails configuring the container",
                "sysctl -w net.ipv6.conf.all.disable_ipv6=0 (and default), or drop the IPv6 range",
            )
        ]
    return []


def _tools(network: Network) -> list[Finding]:
    if network.plugin != "bridge":
        return []
    from cni_bridge.conf import BridgeConf

    conf = BridgeConf.load(CmdArgs.for_config(network.config, command="STATUS"))
    needed = []
    if conf.layer3 and conf.ip_masq:
        needed.append("nft" if conf.ip_masq_backend == "nftables" else "iptables-restore")
    if conf.mac_spoof_check:
        needed.append("nft")
    return [
        Finding(
            "firewall-tools",
            network.name,
            f"{tool} is missing: ipMasq/macspoofchk cannot work",
            "apt-get install " + ("nftables" if tool == "nft" else "iptables"),
        )
        for tool in dict.fromkeys(needed)
        if firewall.tool(tool) is None
    ]


def _vxlan(network: Network) -> list[Finding]:
    if network.plugin != "vxlan":
        return []
    from cni_vxlan.conf import VxlanConf
    from cni_vxlan.peers import peer_source

    conf = VxlanConf.load(CmdArgs.for_config(network.config, command="STATUS"))
    source = peer_source(conf)
    view = source.view()
    if view.error:
        return [Finding(source.name, network.name, f"{source.name} unreachable: {view.error}", view.fix)]
    mtus = set(view.underlay_mtus.values())
    if len(mtus) > 1:
        by_mtu = {m: sorted(n for n, mtu in view.underlay_mtus.items() if mtu == m) for m in sorted(mtus)}
        detail = "; ".join(f"{m}: {', '.join(nodes)}" for m, nodes in by_mtu.items())
        return [
            Finding(
                "vxlan-mtu",
                network.name,
                f"peers' underlay MTUs differ ({detail}): large packets between them are dropped",
                f"set the same mtu on every node (the smallest underlay MTU minus 50, here {min(mtus) - 50})",
            )
        ]
    return []


# containerd's CRI plugin runs it for every pod, beside the network's own plugins
RUNTIME_TYPES = ("loopback",)


def plugin_on_path(kind: str, cni_path: list[str]) -> str | None:
    """The file a runtime would exec for a CNI type: the first executable of that name on CNI_PATH (libcni's FindInPath)."""
    for directory in cni_path:
        path = os.path.join(directory, kind)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def check_plugins(conf_dir: str, bin_dir: str, cni_path: list[str]) -> list[Finding]:
    """Every type the conf dir names (and loopback) should be in bin_dir, and run from there.

    A type missing from bin_dir but present further along CNI_PATH runs from
    there without a word (Debian's containerd appends /usr/lib/cni): the node
    then mixes suites, and a test of ours may be testing the reference.
    """
    bin_dir = os.path.normpath(bin_dir)
    named_by: dict[str, tuple[str, str]] = {}  # type -> (network, conf file): the first that names it
    for source, network, kind in inventory.types_named(conf_dir):
        named_by.setdefault(kind, (network, source))
    if named_by:
        for kind in RUNTIME_TYPES:
            named_by.setdefault(kind, ("", "containerd's CRI"))
    findings = []
    if "portmap" in named_by and firewall.tool("nft") is None and None in (firewall.tool("iptables-save"), firewall.tool("iptables-restore")):
        network, source = named_by["portmap"]
        findings.append(
            Finding(
                "firewall-tools",
                network,
                f"portmap (named by {source}) needs nft, or iptables-save and iptables-restore: none is installed",
                "apt-get install nftables",
            )
        )
    for kind, (network, source) in sorted(named_by.items()):
        path = plugin_on_path(kind, cni_path)
        if path is None:
            findings.append(
                Finding(
                    "plugin-missing",
                    network,
                    f"type {kind} (named by {source}) is on no directory of CNI_PATH {':'.join(cni_path)}: every ADD fails",
                    f"install {kind} into {bin_dir} (`make install` installs ours), or fix the type in {source}",
                )
            )
        elif os.path.normpath(os.path.dirname(path)) != bin_dir:
            findings.append(
                Finding(
                    "plugin-elsewhere",
                    network,
                    f"type {kind} (named by {source}) is not in {bin_dir}: the runtime runs {path} instead",
                    f"install {kind} into {bin_dir} (`make install` installs ours), or take {os.path.dirname(path)} off CNI_PATH",
                )
            )
    return findings


def check_run_in_place() -> list[Finding]:
    """Whether the single-file plugins can run in place from their cache (docs/build.md, "Run in place")."""
    why, fix = bincache.why_not()
    if not why:
        return []
    return [Finding("run-in-place", "", f"{why}: every plugin start unpacks itself into the runtime's TMPDIR (slower)", fix)]


def examine(networks: list[Network], tmpdir: str | None = None, plugins: tuple[str, str, list[str]] | None = None) -> list[Finding]:
    """Every finding; the runtime's TMPDIR counts when it was named, or when the plugins cannot run in place.

    plugins: (conf dir, bin dir, CNI_PATH) to check where each named type runs from.
    """
    findings = check_run_in_place()
    if tmpdir or findings:
        findings += check_tmpdir(tmpdir)
    if plugins:
        findings += check_plugins(*plugins)
    for network in networks:
        findings += check_network(network)
    return findings
