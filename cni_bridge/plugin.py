"""bridge: a Linux bridge and a veth pair per pod; a drop-in for the reference bridge plugin.

ADD is a transaction: each step registers its undo as soon as it has acted,
and a failure anywhere (or SIGTERM) unwinds everything this ADD created.
The shared bridge and its gateway addresses stay, as other pods use them.
DEL forgives: whatever is already gone counts as done, and nothing it needs
comes from the container's namespace.
"""

from contextlib import ExitStack
from ipaddress import ip_interface

# masq and spoofcheck are imported only where configured: hashlib and their
# setup cost every start otherwise (docs/performance.md)
from cni_bridge import bridge, container
from cni_bridge.conf import BridgeConf, data_dir_of
from cni_bridge.state import Records
from common import invoke, netlink, skel
from common.config import gc_valid_attachments
from common.errors import CNIError, Code, incomplete, step
from common.log import get as get_logger
from common.transaction import quietly, transaction
from common.types import Interface, IPConfig, Result, Route, default_route

log = get_logger(__name__)


def _check_tools(conf: BridgeConf) -> None:
    need = []
    if conf.mac_spoof_check or (conf.layer3 and conf.ip_masq and conf.ip_masq_backend == "nftables"):
        need.append("nft")
    if conf.layer3 and conf.ip_masq and conf.ip_masq_backend == "iptables":
        need.append("iptables-restore")
    if not need:
        return
    from common import firewall

    missing = [t for t in need if firewall.tool(t) is None]
    if missing:
        raise CNIError(Code.INVALID_CONFIG, f"{', '.join(missing)} is not installed", "needed by ipMasq or macspoofchk")


def add(args: skel.CmdArgs) -> Result:
    conf = BridgeConf.load(args)
    if conf.layer3:
        invoke.check_available(conf.ipam_type, args)
    _check_tools(conf)
    if conf.mac_spoof_check:
        from cni_bridge import spoofcheck
    _validate_ipam(conf, args)
    records = Records(conf.data_dir, conf.name)
    with (
        records.locked(args.container_id, args.ifname, create=True) as entry,
        netlink.host() as host,
        netlink.inside(args.netns) as cont,
        transaction() as undo,
    ):
        _refuse_live_attachment(host, entry, args)
        if netlink.find_link(cont, args.ifname) is not None:
            raise CNIError(Code.CONFLICTING_HOST_OBJECT, f"container veth name provided ({args.ifname}) already exists", f"in {args.netns_path}")
        br = bridge.ensure_bridge(host, conf, undo)
        veth_name = netlink.random_veth_name()
        while netlink.find_link(host, veth_name) is not None:
            veth_name = netlink.random_veth_name()
        entry.new(args.netns_path, veth_name, conf.mac)
        undo.callback(quietly, entry.remove)
        veth = _create_veth(host, args, conf, veth_name)
        undo.callback(quietly, netlink.delete_link, host, veth.name)
        bridge.attach_port(host, br, veth, conf)
        cont_link = netlink.get_link(cont, args.ifname)
        if conf.mac_spoof_check:  # spoofcheck was imported above, only when configured
            undo.callback(quietly, spoofcheck.teardown, args.container_id, args.ifname)
            spoofcheck.setup(veth.name, cont_link.mac, args.container_id, args.ifname)
        result = Result(
            interfaces=(Interface(br.name, br.mac), Interface(veth.name, veth.mac), Interface(args.ifname, cont_link.mac, args.netns_path))
        )
        if conf.layer3:
            result = _add_layer3(args, conf, host, cont, br, result, undo)
        elif not conf.disable_container_interface:
            netlink.set_link(cont, cont_link.index, up=True)
        if not conf.disable_container_interface:
            veth = bridge.wait_port_up(host, veth.name)
        # both MACs can change once the port joins and the gateway is set: report what is there now
        br = netlink.get_link(host, index=br.index)
        ifaces = (Interface(br.name, br.mac), Interface(veth.name, veth.mac)) + result.interfaces[2:]
        result = result.with_(interfaces=ifaces, dns=conf.dns or result.dns)
        undo.pop_all()
    log.info("added %s/%s: %s on %s", args.container_id, args.ifname, veth.name, conf.bridge)
    return result


def _validate_ipam(conf: BridgeConf, args) -> None:
    """An IPAM config that host-local would refuse is refused before the bridge is made.

    host-local runs in-process, so its own loader can judge the config (and
    CNI_ARGS IP=) first; an exec'd or foreign IPAM judges its own, and a
    bridge this ADD created is removed again if it refuses.
    """
    if conf.ipam_type == "host-local" and invoke.in_process("host-local", args.environ) is not None:
        from cni_hostlocal_ipam.conf import IPAMConf

        IPAMConf.load(args)


def _refuse_live_attachment(host, entry, args) -> None:
    """A second ADD of a live container ID and ifname is refused before anything is touched.

    Its record would be overwritten and its rollback would release the live
    pod's address.  A record whose host veth is gone is a killed ADD's
    leftover: the runtime's DEL is owed, and this ADD may take its place.
    """
    record = entry.read()
    if record is None or not record.host_veth:
        return
    link = netlink.find_link(host, record.host_veth)
    if link is not None and link.kind == "veth":
        raise CNIError(
            Code.DUPLICATE_ALLOCATION,
            f"container {args.container_id} already has {args.ifname} on this network",
            f"host veth {record.host_veth} into {record.netns}; DEL it before adding it again",
        )


def _create_veth(host, args, conf, name: str) -> netlink.Link:
    try:
        netlink.create_veth(host, name, args.ifname, args.netns, mtu=conf.mtu, peer_mac=conf.mac or None)
    except netlink.LinkExists:
        raise CNIError(Code.TRY_AGAIN_LATER, f"failed to create veth pair: {name} or {args.ifname} appeared meanwhile") from None
    except netlink.NetlinkError as err:
        raise err.cni(f"failed to create veth pair {name}/{args.ifname}") from None
    return netlink.get_link(host, name)


def _add_layer3(args, conf: BridgeConf, host, cont, br, result: Result, undo: ExitStack) -> Result:
    # the spec: after trying an IPAM ADD, always DEL it on failure, even when the ADD itself failed;
    # except when it answered "duplicate allocation": the address belongs to a live attachment
    release = [True]

    def _release() -> None:
        if release[0]:
            quietly(invoke.delegate, "DEL", conf.ipam_type, args)

    undo.callback(_release)
    try:
        ipam = invoke.delegate("ADD", conf.ipam_type, args)
    except CNIError as err:
        release[0] = err.code != Code.DUPLICATE_ALLOCATION
        raise
    if not ipam.ips:
        raise CNIError(Code.DELEGATE_FAILED, "IPAM plugin returned missing IP config")
    result, gateways = _with_gateways(result, ipam, conf)
    container.configure(cont, args.netns, args.ifname, result, conf.enable_dad)
    if conf.is_gateway:
        result = _setup_gateways(host, br, gateways, conf, result)
    if conf.ip_masq:
        from cni_bridge import masq

        undo.callback(quietly, masq.teardown, conf.name, args.ifname, args.container_id)
        masq.setup(conf.ip_masq_backend, conf.name, args.ifname, args.container_id, result.ips)
    return result


def _with_gateways(result: Result, ipam: Result, conf: BridgeConf):
    """The reference's calcGateways: fill in gateways, add default routes, list the bridge's addresses."""
    routes = list(ipam.routes)
    gateways: dict[int, list] = {4: [], 6: []}
    default_done = {4: False, 6: False}
    ips = []
    for ip in ipam.ips:
        family = ip.family
        gw = ip.gateway
        if gw is None and conf.is_gateway:
            gw = ip.address.network.network_address + 1
        ips.append(IPConfig(ip.address, gw, 2))
        if conf.is_default_gateway and not default_done[family]:
            default = default_route(family)
            if not any(r.gw is not None and r.dst == default for r in routes):
                routes.append(Route(default, gw))
            default_done[family] = True
        if conf.is_gateway:
            gateways[family].append(ip_interface(f"{gw}/{ip.address.network.prefixlen}"))
    return result.with_(ips=tuple(ips), routes=tuple(routes), dns=ipam.dns), gateways


def _setup_gateways(host, br, gateways: dict, conf: BridgeConf, result: Result) -> Result:
    for family in (4, 6):
        for gw in gateways[family]:
            target = br
            if conf.vlan:
                target = bridge.ensure_vlan_gateway(host, br, conf)
                if all(i.name != target.name for i in result.interfaces):
                    result = result.with_(interfaces=result.interfaces + (Interface(target.name, target.mac),))
            bridge.ensure_gateway_addr(host, target, gw, conf.force_address)
        if gateways[family]:
            bridge.enable_forwarding(family)
    return result


# --- DEL -------------------------------------------------------------------


def delete(args: skel.CmdArgs) -> None:
    try:
        conf = BridgeConf.load(args)
    except CNIError as err:
        return _delete_without_config(args, err)
    errors: list[CNIError] = []
    with ExitStack() as held:
        entry = _lock_attachment(held, errors, Records(conf.data_dir, conf.name), args)
        record = step(errors, "reading the attachment record", entry.read) if entry else None
        step(errors, "deleting the interface", _delete_links, args, record)
        if conf.layer3:
            step(errors, "releasing the address", invoke.delegate, "DEL", conf.ipam_type, args)
        if conf.mac_spoof_check:
            from cni_bridge import spoofcheck

            step(errors, "removing macspoofchk rules", spoofcheck.teardown, args.container_id, args.ifname)
        if conf.layer3 and conf.ip_masq:
            from cni_bridge import masq

            step(errors, "removing masquerade rules", masq.teardown, conf.name, args.ifname, args.container_id)
        if errors:
            raise incomplete("DEL", errors)  # the record stays: a retried DEL still knows the host veth
        step(errors, "removing the attachment record", entry.remove)
    if errors:
        raise incomplete("DEL", errors)


def _lock_attachment(held: ExitStack, errors: list[CNIError], records: Records | None, args):
    """The attachment under its lock for the rest of DEL; None when its records cannot be opened.

    A lock another call holds past the bound is the answer (11: retry); an
    unusable record directory is noted and DEL still undoes what the
    container ID and ifname identify, as it would without a record.
    """
    if records is None:
        return None
    try:
        return held.enter_context(records.locked(args.container_id, args.ifname, create=False))
    except CNIError as err:
        if err.code == Code.TRY_AGAIN_LATER:
            raise
        errors.append(CNIError(err.code, f"reading the attachment record: {err.msg}", err.details))
        return None


def _delete_links(args, record) -> None:
    with netlink.host() as host:
        if args.netns is not None:
            with netlink.inside(args.netns) as cont:
                _delete_container_link(host, cont, args, record)
        if record is not None and record.host_veth:
            link = netlink.find_link(host, record.host_veth)
            if link is not None and link.kind == "veth":
                netlink.delete_link(host, index=link.index)  # CNI_NETNS was empty, but the pair lives


def _delete_container_link(host, cont, args, record) -> None:
    link = netlink.find_link(cont, args.ifname)
    if link is None:
        return
    if link.kind != "veth":
        log.warning("DEL: %s in %s is a %s, which we never create: left alone", args.ifname, args.netns_path, link.kind or "device")
        return
    if record is not None and record.host_veth:
        peer = netlink.find_link(host, record.host_veth)
        if peer is None or peer.index != link.peer_index:
            # a recycled /proc/<pid>/ns/net path: this interface belongs to someone else
            log.warning("DEL: %s in %s is not the veth ADD created (peer %s): left alone", args.ifname, args.netns_path, record.host_veth)
            return
    netlink.delete_link(cont, index=link.index)


def _delete_without_config(args, err: CNIError) -> None:
    """A config that no longer parses: undo what the container ID and ifname identify, and release the address.

    Succeeds only if everything was undone; an ipam section whose plugin
    cannot be named means the address cannot be released, so DEL fails.
    """
    from cni_bridge import masq, spoofcheck

    ipam = args.config.get("ipam")
    ipam_type = ipam.get("type") if type(ipam) is dict else None
    data_dir = data_dir_of(args.config)
    records = Records(data_dir, args.config["name"]) if data_dir else None
    errors: list[CNIError] = []
    with ExitStack() as held:
        entry = _lock_attachment(held, errors, records, args)
        record = step(errors, "reading the attachment record", entry.read) if entry else None
        step(errors, "deleting the interface", _delete_links, args, record)
        step(errors, "removing masquerade rules", masq.teardown, args.config["name"], args.ifname, args.container_id)
        step(errors, "removing macspoofchk rules", spoofcheck.teardown, args.container_id, args.ifname)
        if type(ipam_type) is str and ipam_type:
            step(errors, "releasing the address", invoke.delegate, "DEL", ipam_type, args)
        elif ipam:
            errors.append(CNIError(err.code, "releasing the address: no IPAM plugin named"))
        if errors:
            raise CNIError(err.code, err.msg, "; ".join([err.details] + [str(e) for e in errors]).strip("; "))
        if entry:
            step(errors, "removing the attachment record", entry.remove)
    log.warning("DEL with an invalid config (%s): interface, rules and address released", err)


# --- CHECK, GC, STATUS -------------------------------------------------------


def check(args: skel.CmdArgs) -> None:
    from cni_bridge.check import check as run_check

    run_check(args)


def gc(args: skel.CmdArgs) -> None:
    from cni_bridge import masq

    conf = BridgeConf.load(args)
    valid = gc_valid_attachments(args.config, f"every attachment of {conf.name} is stale")
    records = Records(conf.data_dir, conf.name)
    errors: list[CNIError] = []
    with netlink.host() as host:
        for record in step(errors, "reading the attachment records", records.all) or ():
            if (record.container_id, record.ifname) not in valid:
                step(errors, f"collecting {record.container_id}/{record.ifname}", _collect, host, records, record)
    step(errors, "removing the locks of killed calls", records.collect_orphan_locks)
    step(errors, "removing masquerade rules", masq.collect, conf.name, valid)
    if conf.layer3:
        step(errors, "IPAM GC", invoke.delegate, "GC", conf.ipam_type, args)
    if errors:
        raise incomplete("GC", errors)


def _collect(host, records: Records, record) -> None:
    """GC of one stale attachment, under its lock; one that an ADD or DEL holds now is theirs to finish."""
    from cni_bridge import spoofcheck

    with records.locked(record.container_id, record.ifname, create=False, wait=False) as entry:
        if entry is None or entry.read() != record:
            return
        link = netlink.find_link(host, record.host_veth) if record.host_veth else None
        if link is not None and link.kind == "veth":
            netlink.delete_link(host, None, link.index)
        spoofcheck.teardown(record.container_id, record.ifname)
        entry.remove()  # only when all went well: else the next GC still knows what to remove


def status(args: skel.CmdArgs) -> None:
    conf = BridgeConf.load(args)
    try:
        _check_tools(conf)
    except CNIError as err:
        raise CNIError(Code.NOT_AVAILABLE, err.msg, err.details) from None
    if conf.layer3:
        invoke.delegate("STATUS", conf.ipam_type, args)


PLUGIN = skel.Plugin(name="bridge", add=add, delete=delete, check=check, gc=gc, status=status, about="CNI bridge plugin (cni-python-suite)")


def main() -> None:
    skel.main(PLUGIN)
