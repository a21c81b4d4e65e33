"""vxlan: one pod network across many nodes; pods are plumbed by the bridge plugin.

ADD converges the node (lease, device, peers: node.py), then delegates the
pod to `bridge` with host-local scoped to this node's subnet, saving that
delegate config first.  DEL replays the saved config and never needs etcd.
The same executable also runs the operator commands (`vxlan sync`,
`vxlan node-remove`, `vxlan show`) when called with arguments.
"""

import copy
import os
import sys

from cni_vxlan import device, node
from cni_vxlan.conf import DEFAULT_DATA_DIR, VxlanConf
from cni_vxlan.peers import peer_source
from cni_vxlan.reconcile import plan, programmed
from common import invoke, netlink, records, skel
from common.config import gc_valid_attachments
from common.errors import CNIError, Code, incomplete, step
from common.log import get as get_logger
from common.types import Interface, Result

log = get_logger(__name__)
PASSED_THROUGH = ("runtimeConfig", "args", "prevResult", "capabilities", "dns", "cni.dev/valid-attachments", "cni.dev/attachments")


def delegate_config(conf: VxlanConf, lease, mtu: int, request: dict) -> dict:
    """The bridge config for this node's subnet(s); user `delegate` and `ipam` keys win where sensible.

    Dual-stack: a second range set (the node's IPv6 subnet) and a route to the
    IPv6 overlay; the bridge's default route covers each family it gets an address of.
    """
    subnet6 = lease.peer.subnet6 if conf.ipv6_network is not None else None
    routes = [{"dst": str(conf.network)}] + ([{"dst": str(conf.ipv6_network)}] if subnet6 is not None else [])
    ipam: dict = {"type": "host-local", "routes": routes}
    ipam.update(conf.ipam)
    ipam["ranges"] = [[{"subnet": str(lease.peer.subnet)}]]  # always this node's lease
    if subnet6 is not None:
        ipam["ranges"].append([{"subnet": str(subnet6)}])
    out = {
        "type": "bridge",
        "bridge": conf.bridge,
        "isGateway": True,
        "isDefaultGateway": True,
        "ipMasq": False,  # the bridge's masquerade exempts only the local subnet: pod-to-pod would be NATed
        "hairpinMode": True,
        "mtu": mtu,
        "dataDir": os.path.join(node.state_dir(conf), "bridge"),
    }
    out.update(copy.deepcopy(conf.delegate))
    out.update({"cniVersion": request.get("cniVersion"), "name": conf.name, "ipam": ipam})
    for key in PASSED_THROUGH:
        if key in request:
            out[key] = request[key]
    return out


def _saved_configs(data_dir: str, network: str) -> records.Records:
    return records.Records(data_dir, network, "containers")


def add(args: skel.CmdArgs) -> Result:
    conf = VxlanConf.load(args)
    _validate_delegate(conf, args)
    with _saved_configs(conf.data_dir, conf.name).locked(args.container_id, args.ifname, create=True) as entry:
        if _saved(entry.read()) is not None:
            # a second ADD would overwrite the saved config and, failing, take the live attachment's records with it
            raise CNIError(
                Code.DUPLICATE_ALLOCATION,
                f"{args.container_id}/{args.ifname} is already attached to network {conf.name}",
                "DEL it before adding it again",
            )
        with netlink.host() as nl:
            state = node.converge(conf, nl, full=False)  # the peers that changed; `vxlan sync` repairs the rest
            delegate = delegate_config(conf, state.lease, state.device.mtu, args.config)
            invoke.check_available(delegate["type"], args)
            # saved before delegating: a DEL after a crash still knows what to undo
            entry.write({"device": conf.device, "delegate": delegate})
            try:
                result = invoke.delegate("ADD", delegate["type"], args, delegate)
            except BaseException:
                entry.remove()
                raise
            if len(delegate["ipam"]["ranges"]) > 1 and type(delegate.get("bridge")) is str:
                # the node's first pod: the bridge's new IPv6 gateway is unusable until its DAD ends (about 2 s)
                device.settle_gateway6(nl, delegate["bridge"])
    # the VXLAN device is a host-side interface of this attachment too
    return result.with_(interfaces=result.interfaces + (Interface(state.device.name, state.device.mac),))


def _validate_delegate(conf: VxlanConf, args) -> None:
    """Refuse a delegate or ipam section that cannot work before converging: that creates the device and takes a lease.

    The delegate config is built as ADD will build it, with this node's
    subnet as far as it is known standing in for the lease, and checked by
    our bridge's and host-local's own config loaders (a foreign delegate
    checks its own).
    """
    from ipaddress import ip_address

    from cni_vxlan.conf import Peer
    from cni_vxlan.peers import Lease

    stand_in = Lease(Peer(conf.node_name, ip_address("0.0.0.0"), _expected_subnet(conf), "", _expected_subnet6(conf)), 0)
    probe = delegate_config(conf, stand_in, conf.mtu or 1500, args.config)
    invoke.check_available(probe["type"], args)
    if probe["type"] != "bridge" or invoke.in_process("bridge", args.environ) is None:
        return
    from cni_bridge.conf import BridgeConf
    from cni_hostlocal_ipam.conf import IPAMConf

    sub = args.replace(config=probe)
    bridge_conf = BridgeConf.load(sub)
    if bridge_conf.layer3:
        invoke.check_available(bridge_conf.ipam_type, sub)
        if bridge_conf.ipam_type == "host-local":
            IPAMConf.load(sub)


def _expected_subnet(conf: VxlanConf):
    """This node's pod subnet as far as it is known before converging: requested IPs are judged against it.

    The peer source (a static peer list) or an earlier lease names it; a node
    that holds no lease yet can only be held to the overlay's range.
    """
    hint = peer_source(conf).subnet_hint()
    if hint is not None:
        return hint
    cached = node.cached_lease(conf)
    return cached.peer.subnet if cached is not None else conf.network


def _expected_subnet6(conf: VxlanConf):
    """This node's IPv6 pod subnet as far as it is known before converging (None: an IPv4-only network)."""
    if conf.ipv6_network is None:
        return None
    own, cached = conf.own_peer(), node.cached_lease(conf)
    known = own.subnet6 if own is not None else cached.peer.subnet6 if cached is not None else None
    return known or conf.ipv6_network


def _saved(data: dict | None) -> tuple[str, dict] | None:
    if type(data) is not dict or type(data.get("delegate")) is not dict:
        return None
    device = data.get("device")
    return device if type(device) is str else "", data["delegate"]


def _with_prev(delegate: dict, request: dict, device_name: str) -> dict:
    """The delegate's prevResult is its own result: ours without the VXLAN device we appended."""
    prev = request.get("prevResult")
    if type(prev) is dict and type(prev.get("interfaces")) is list:
        prev = dict(
            prev, interfaces=[i for i in prev["interfaces"] if not (type(i) is dict and i.get("name") == device_name and not i.get("sandbox"))]
        )
    if prev is not None:
        delegate = dict(delegate, prevResult=prev)
    return delegate


def delete(args: skel.CmdArgs) -> None:
    try:
        data_dir = VxlanConf.load(args).data_dir
    except CNIError:
        # a config that broke since ADD: the saved delegate config is all DEL needs
        configured = args.config.get("dataDir")
        data_dir = configured if type(configured) is str else DEFAULT_DATA_DIR
    with _saved_configs(data_dir, args.config["name"]).locked(args.container_id, args.ifname, create=False) as entry:
        saved = _saved(entry.read())
        if saved is None:
            return  # never added, or already deleted
        device_name, delegate = saved
        delegate = _with_prev(delegate, args.config, device_name)
        invoke.delegate("DEL", delegate.get("type", "bridge"), args, delegate)
        entry.remove()


def check(args: skel.CmdArgs) -> None:
    conf = VxlanConf.load(args)
    saved = _saved(_saved_configs(conf.data_dir, conf.name).read(args.container_id, args.ifname))
    if saved is None:
        raise CNIError(Code.CHECK_MISMATCH, f"no attachment {args.container_id}/{args.ifname} on network {conf.name}")
    device_name, delegate = saved
    with netlink.host() as nl:
        problem = verify_node(conf, nl, node.cached_lease(conf))
        link = netlink.find_link(nl, conf.device)
    if problem:
        raise CNIError(Code.CHECK_MISMATCH, problem)
    if link is None:  # verify_node found it: gone only if deleted since
        raise CNIError(Code.CHECK_MISMATCH, f"VXLAN device {conf.device} is missing")
    if delegate.get("mtu", 0) > link.mtu:
        raise CNIError(Code.CHECK_MISMATCH, "the pod MTU exceeds the VXLAN device's", f"{delegate.get('mtu')} > {link.mtu}")
    invoke.delegate("CHECK", delegate.get("type", "bridge"), args, _with_prev(delegate, args.config, device_name))


def verify_node(conf: VxlanConf, nl, lease) -> str:
    """Why this node's overlay state is not as the last converge left it ("" when it is)."""
    if lease is None:
        return f"network {conf.name} holds no lease on this node"
    link = netlink.find_link(nl, conf.device)
    if link is None:
        return f"VXLAN device {conf.device} is missing"
    reason = device.incompatibility(link, conf)
    if reason:
        return f"{conf.device} has different settings: {reason}"
    assert link.vxlan is not None  # incompatibility() found a vxlan device and read its settings
    if link.vxlan["local"] != str(lease.peer.vtep):
        return f"{conf.device} sends from {link.vxlan['local']}, the lease says {lease.peer.vtep}"
    if link.mac != lease.peer.mac:
        return f"{conf.device} has MAC {link.mac}, the lease says {lease.peer.mac}"
    if not link.up:
        return f"{conf.device} is down"
    if conf.ipv6_network is not None:
        if lease.peer.subnet6 is None:
            return f"network {conf.name} is dual-stack, but this node's lease has no IPv6 subnet"
        if not any(a.address.ip == lease.peer.base6 for a in netlink.list_addresses(nl, link.index, 6)):
            return f"{conf.device} lacks its IPv6 address {lease.peer.base6}"
    todo = plan(node.applied_peers(conf), *programmed(nl, link, conf.network, conf.ipv6_network))
    if todo.neighbours or todo.fdb or todo.routes:
        missing = [str(s) for s, _ in todo.routes] or [str(ip) for ip, _ in todo.neighbours] or [m for m, _ in todo.fdb]
        return f"overlay entries for peers are missing: {', '.join(missing)}"
    return ""


def gc(args: skel.CmdArgs) -> None:
    conf = VxlanConf.load(args)
    valid = gc_valid_attachments(args.config, f"every attachment of {conf.name} is stale")
    saved_configs = _saved_configs(conf.data_dir, conf.name)
    errors: list[CNIError] = []
    for doc in saved_configs.all():
        cid, ifname = doc["container_id"], doc["ifname"]
        if (cid, ifname) in valid or _saved(doc) is None:
            continue
        # the runtime's DEL never came: replay it, as libcni's GC does for cached attachments
        step(errors, f"collecting {cid}/{ifname}", _collect, saved_configs, args.replace(container_id=cid, ifname=ifname))
    step(errors, "removing the locks of killed calls", saved_configs.collect_orphan_locks)
    forwarded = _node_delegate(conf, args)
    if forwarded is not None:  # forward GC to the delegate, and through it to host-local
        invoke.delegate("GC", forwarded["type"], args, forwarded)
    if errors:
        raise incomplete("GC", errors)


def _collect(saved_configs: records.Records, args) -> None:
    """GC of one attachment, under its lock; one that an ADD or DEL holds now is theirs to finish."""
    with saved_configs.locked(args.container_id, args.ifname, create=False, wait=False) as entry:
        saved = _saved(entry.read()) if entry is not None else None
        if saved is None:
            return
        invoke.delegate("DEL", saved[1].get("type", "bridge"), args, saved[1])
        entry.remove()


def _node_delegate(conf: VxlanConf, args) -> dict | None:
    """The delegate config for node-wide verbs (GC, STATUS), from the cached lease."""
    lease = node.cached_lease(conf)
    if lease is None:
        return None
    with netlink.host() as nl:
        link = netlink.find_link(nl, conf.device)
    return delegate_config(conf, lease, link.mtu if link else 0, args.config)


def status(args: skel.CmdArgs) -> None:
    conf = VxlanConf.load(args)
    lease = node.cached_lease(conf)
    source = peer_source(conf)
    unreachable = source.view().error
    if unreachable:
        if lease is None:
            raise CNIError(Code.NOT_AVAILABLE, f"{source.name} unreachable and this node holds no lease", unreachable)
        log.warning("%s unreachable (%s): ADD works from the cached lease", source.name, unreachable)
    if lease is not None:
        with netlink.host() as nl:
            problem = verify_node(conf, nl, lease)
        if problem:
            raise CNIError(Code.LIMITED_CONNECTIVITY, problem, "run `vxlan sync --once` to repair")
    delegate = _node_delegate(conf, args)
    if delegate is not None:
        invoke.delegate("STATUS", delegate["type"], args, delegate)


PLUGIN = skel.Plugin(name="vxlan", add=add, delete=delete, check=check, gc=gc, status=status, about="CNI vxlan overlay plugin (cni-python-suite)")


def main() -> None:
    if len(sys.argv) > 1 and not os.environ.get("CNI_COMMAND"):
        from cni_vxlan.cli import main as cli  # operator commands: click is loaded only here

        cli()
        return
    skel.main(PLUGIN)
