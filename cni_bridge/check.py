"""bridge CHECK: the attachment described by prevResult is still in place.

Like the reference, it finds the bridge and the container interface by name
in prevResult and verifies them, then the host veth that pairs them.  It
also verifies what the reference does not: the port's hairpin and isolation
flags, the masquerade rules and the macspoofchk rules.  Later plugins in a
chain may have changed routes, so only routes in prevResult are looked for,
each with the mtu and advmss it names (container.verify).
"""

from cni_bridge import container  # masq and spoofcheck only when configured, as in plugin.py
from cni_bridge.conf import BridgeConf
from common import invoke, netlink
from common.errors import CNIError, Code
from common.types import Result


def _mismatch(msg: str, details: str = "") -> CNIError:
    return CNIError(Code.CHECK_MISMATCH, msg, details)


def check(args) -> None:
    conf = BridgeConf.load(args)
    prev = args.config.get("prevResult")
    if not prev:
        raise CNIError(Code.INVALID_CONFIG, "Required prevResult missing")
    result = Result.from_wire(prev, args.cni_version)
    if conf.layer3:
        invoke.delegate("CHECK", conf.ipam_type, args)
    br_iface = next((i for i in result.interfaces if i.name == conf.bridge), None)
    cont_iface = next((i for i in result.interfaces if i.name == args.ifname and i.sandbox == args.netns_path), None)
    if br_iface is None:
        raise _mismatch(f"prevResult lists no bridge named {conf.bridge}")
    if cont_iface is None:
        raise _mismatch(f"Sandbox in prevResult doesn't match configured netns: {args.netns_path}", f"no {args.ifname} in {args.netns_path}")
    with netlink.host() as host, netlink.inside(args.netns) as cont:
        br = _verify_bridge(host, conf, br_iface)
        cont_link = container.verify(cont, args.ifname, cont_iface, result)
        veth = _find_host_veth(host, result, br, cont_link, conf.bridge)
        if veth.hairpin != conf.hairpin_mode or veth.isolated != conf.port_isolation:
            raise _mismatch(
                f"port flags of {veth.name} differ",
                f"hairpin {veth.hairpin} isolated {veth.isolated}, configured {conf.hairpin_mode}/{conf.port_isolation}",
            )
    if conf.layer3 and conf.ip_masq:
        from cni_bridge import masq

        if not masq.present(conf.ip_masq_backend, conf.name, args.ifname, args.container_id, result.ips):
            raise _mismatch(f"masquerade rules of {args.container_id}/{args.ifname} are missing", f"backend {conf.ip_masq_backend}")
    if conf.mac_spoof_check:
        from cni_bridge import spoofcheck

        if not spoofcheck.present(veth.name, cont_link.mac, args.container_id, args.ifname):
            raise _mismatch(f"macspoofchk rules of {args.container_id}/{args.ifname} are missing or stale")


def _verify_bridge(host, conf: BridgeConf, iface) -> netlink.Link:
    br = netlink.find_link(host, conf.bridge)
    if br is None:
        raise _mismatch(f"CNI created bridge {conf.bridge} in host namespace is missing")
    if br.kind != "bridge":
        raise _mismatch(f"Interface {conf.bridge} does not have link type of bridge")
    if iface.mac and iface.mac != br.mac:
        raise _mismatch(f"Bridge interface {conf.bridge} Mac doesn't match: {iface.mac}", f"it is {br.mac}")
    if br.promisc != conf.promisc_mode:
        raise _mismatch(f"Bridge interface {conf.bridge} configured Promisc Mode {conf.promisc_mode} doesn't match current state: {br.promisc}")
    return br


def _find_host_veth(host, result: Result, br: netlink.Link, cont_link: netlink.Link, bridge_name: str) -> netlink.Link:
    for iface in result.interfaces:
        if iface.sandbox or iface.name == bridge_name:
            continue
        link = netlink.find_link(host, iface.name)
        if link is None or link.kind != "veth" or link.index != cont_link.peer_index or link.master != br.index:
            continue
        if iface.mac and iface.mac != link.mac:
            raise _mismatch(f"Interface {iface.name} Mac doesn't match: {iface.mac}", f"it is {link.mac}")
        return link
    raise _mismatch(f"CNI veth created for bridge {bridge_name} is missing")
