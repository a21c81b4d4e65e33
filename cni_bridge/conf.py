"""bridge configuration: the reference's keys and defaults, validated up front.

Everything that can be wrong with a request is found here, before the node
is touched (the reference creates the bridge first and validates later).
`BridgeConf.load(args)` takes the command's CmdArgs, as every plugin's loader
does (why: `common.skel.CmdArgs.for_config`); it reads the config and CNI_ARGS.
"""

from cni_bridge.idle import data_dir
from common.config import Obj
from common.errors import CNIError, Code
from common.skel import CmdArgs, ifname_problem
from common.types import DNS
from common.values import Value

DEFAULT_BRIDGE = "cni0"
MASQ_BACKENDS = ("nftables", "iptables")
_HEX = frozenset("0123456789abcdefABCDEF")


class BridgeConf(Value):
    """The bridge plugin's network configuration, validated."""

    name: str
    bridge: str
    is_gateway: bool
    is_default_gateway: bool
    force_address: bool
    ip_masq: bool
    ip_masq_backend: str  # "nftables" or "iptables"
    mtu: int  # 0: the kernel's default
    hairpin_mode: bool
    promisc_mode: bool
    vlan: int
    vlan_trunk: tuple[int, ...] | None  # None when the key is absent
    preserve_default_vlan: bool
    enable_dad: bool
    mac_spoof_check: bool
    disable_container_interface: bool
    port_isolation: bool
    mac: str  # requested container MAC ("" for the kernel's choice)
    ipam_type: str  # "" means layer 2 only
    dns: DNS | None
    data_dir: str

    @property
    def layer3(self) -> bool:
        return bool(self.ipam_type)

    @property
    def vlan_filtering(self) -> bool:
        return self.vlan != 0 or self.vlan_trunk is not None

    @classmethod
    def load(cls, args: CmdArgs) -> "BridgeConf":
        top = Obj(args.config)
        bridge = top.str("bridge") or DEFAULT_BRIDGE
        if why := ifname_problem(bridge):
            raise CNIError(Code.INVALID_CONFIG, "invalid bridge name", f"{bridge!r}: {why}")
        is_default_gateway = top.bool("isDefaultGateway")
        conf = cls(
            name=args.config["name"],
            bridge=bridge,
            is_gateway=top.bool("isGateway") or is_default_gateway,
            is_default_gateway=is_default_gateway,
            force_address=top.bool("forceAddress"),
            ip_masq=top.bool("ipMasq"),
            ip_masq_backend=_masq_backend(top),
            mtu=_mtu(top),
            hairpin_mode=top.bool("hairpinMode"),
            promisc_mode=top.bool("promiscMode"),
            vlan=_vlan(top),
            vlan_trunk=_vlan_trunk(top),
            preserve_default_vlan=top.bool("preserveDefaultVlan"),
            enable_dad=top.bool("enabledad"),
            mac_spoof_check=top.bool("macspoofchk"),
            disable_container_interface=top.bool("disableContainerInterface"),
            port_isolation=top.bool("portIsolation"),
            mac=_container_mac(top, args.args),
            ipam_type=_ipam_type(top),
            dns=_dns(top),
            data_dir=data_dir(top),
        )
        if conf.hairpin_mode and conf.promisc_mode:
            raise CNIError(Code.INVALID_CONFIG, "cannot set hairpin mode and promiscuous mode at the same time")
        if conf.layer3 and conf.disable_container_interface:
            raise CNIError(Code.INVALID_CONFIG, "cannot use IPAM when DisableContainerInterface flag is set")
        if conf.layer3 and conf.is_gateway and conf.vlan and len(f"{bridge}.{conf.vlan}".encode()) > 15:
            # found here, not when the gateway is due: by then the bridge exists and IPAM has run
            raise CNIError(Code.INVALID_CONFIG, "bridge name too long for a VLAN gateway", f"'{bridge}.{conf.vlan}' exceeds 15 bytes")
        return conf


def _mtu(top: Obj) -> int:
    mtu = top.int("mtu", 0)
    if mtu and not 68 <= mtu <= 65535:
        raise top.bad("mtu", "0 (the kernel's default) or 68..65535", mtu)
    return mtu


def _vlan(top: Obj) -> int:
    vlan = top.int("vlan", 0)
    if not 0 <= vlan <= 4094:
        raise CNIError(Code.INVALID_CONFIG, f"invalid VLAN ID {vlan} (must be between 0 and 4094)")
    return vlan


def _vlan_trunk(top: Obj) -> tuple[int, ...] | None:
    items = top.list("vlanTrunk")
    if items is None:
        return None
    vlans: set[int] = set()
    for raw in items:
        if type(raw) is not dict:
            raise top.bad("vlanTrunk", "a list of {id} or {minID, maxID}", raw)
        item = Obj(raw, "vlanTrunk.")
        lo, hi, single = item.int("minID"), item.int("maxID"), item.int("id")
        if (lo is None) != (hi is None):
            missing = "minID" if lo is None else "maxID"
            raise CNIError(Code.INVALID_CONFIG, f"minID and maxID should be configured simultaneously, {missing} is missing")
        if lo is not None:
            for key, value in (("minID", lo), ("maxID", hi)):
                if not 1 <= value <= 4094:
                    raise CNIError(Code.INVALID_CONFIG, f"incorrect trunk {key} parameter", f"{value} is not in 1..4094")
            if hi < lo:
                raise CNIError(Code.INVALID_CONFIG, "minID is greater than maxID in trunk parameter")
            vlans.update(range(lo, hi + 1))
        if single is not None:
            if not 1 <= single <= 4094:
                raise CNIError(Code.INVALID_CONFIG, "incorrect trunk id parameter", f"{single} is not in 1..4094")
            vlans.add(single)
    return tuple(sorted(vlans))


def _masq_backend(top: Obj) -> str:
    backend = top.str("ipMasqBackend")
    if backend is None:
        # nftables when the tool is there: one atomic transaction per ADD, comments that DEL and GC key on
        from common import firewall  # the one list of where firewall tools live

        return "nftables" if firewall.tool("nft") is not None else "iptables"
    if backend not in MASQ_BACKENDS:
        raise CNIError(Code.INVALID_CONFIG, f"unknown ipmasq backend {backend!r}", "want 'nftables' or 'iptables'")
    return backend


def _mac_digits(text: str) -> str | None:
    """The 12 hex digits of aa:bb:cc:dd:ee:ff, aa-bb-..., aabbccddeeff or aabb.ccdd.eeff; None for anything else."""
    if len(text) == 14 and text[4] == text[9] == ".":
        digits = text[:4] + text[5:9] + text[10:]
    elif len(text) == 17 and text[2] in ":-" and all(text[i] == text[2] for i in (5, 8, 11, 14)):
        digits = "".join(text[i : i + 2] for i in range(0, 17, 3))
    elif len(text) == 12:
        digits = text
    else:
        return None
    return digits if len(digits) == 12 and _HEX.issuperset(digits) else None


def parse_mac(text: str, where: str) -> str:
    """A 48-bit unicast MAC in the forms Go's net.ParseMAC takes, as aa:bb:cc:dd:ee:ff."""
    digits = _mac_digits(text)
    if digits is None:
        raise CNIError(Code.INVALID_CONFIG, f"invalid MAC address in {where}", f"{text!r} is not a 48-bit MAC")
    octets = [int(digits[i : i + 2], 16) for i in range(0, 12, 2)]
    if octets[0] & 1:
        raise CNIError(Code.INVALID_CONFIG, f"invalid MAC address in {where}", f"{text} is a multicast address")
    if not any(octets):
        raise CNIError(Code.INVALID_CONFIG, f"invalid MAC address in {where}", f"{text} is all zeros")
    return ":".join(f"{o:02x}" for o in octets)


def _container_mac(top: Obj, cni_args) -> str:
    """runtimeConfig.mac wins over args.cni.mac, which wins over CNI_ARGS MAC (the reference's order)."""
    runtime, args = top.obj("runtimeConfig"), top.obj("args")
    cni = args.obj("cni") if args is not None else None
    for value, where in (
        (runtime.str("mac") if runtime else None, "runtimeConfig.mac"),
        (cni.str("mac") if cni else None, "args.cni.mac"),
        (cni_args.get("MAC"), "CNI_ARGS MAC"),
    ):
        if value:
            return parse_mac(value, where)
    return ""


def _ipam_type(top: Obj) -> str:
    ipam = top.obj("ipam")
    if ipam is None or not ipam.raw:
        return ""  # no ipam, or {}: layer 2 only, as in the reference
    plugin = ipam.str("type") or ""
    if not plugin:
        # settings without a type are a mistake the reference silently turns into layer 2
        raise CNIError(Code.INVALID_CONFIG, "missing ipam.type", "name the IPAM plugin, or drop the ipam section for a layer-2 bridge")
    if "/" in plugin or "\0" in plugin or plugin in (".", ".."):
        raise CNIError(Code.INVALID_CONFIG, "invalid plugin name", f"ipam.type {plugin!r} must be a bare file name")
    return plugin


def _dns(top: Obj) -> DNS | None:
    dns = top.obj("dns")
    if dns is None:
        return None
    value = DNS(tuple(dns.str_list("nameservers")), dns.str("domain") or "", tuple(dns.str_list("search")), tuple(dns.str_list("options")))
    return value if value else None


def data_dir_of(config: dict) -> str | None:
    """The dataDir of a config that may not load as a whole (a DEL after an upgrade); None if it is the broken part."""
    try:
        return data_dir(Obj(config))
    except CNIError:
        return None
