"""portmap: hostPort mappings for a pod, chained after bridge or vxlan; a drop-in for the reference portmap.

ADD validates everything (config, prevResult, the backend's tools, the
interface to set route_localnet on) before touching the node, then applies
the attachment's rules and route_localnet as a transaction: a failure undoes
what was applied.  The rules of one attachment carry its identity (ident.py),
so DEL needs neither the container's namespace nor prevResult nor the port
mappings, and a DEL of an attachment without rules changes nothing.  Changes
to the firewall are serialised by one node-wide lock (<dataDir>/lock): the
iptables backend reads, then writes shared chains.
"""

import os
from contextlib import ExitStack, contextmanager

from cni_portmap.conf import DEFAULT_DATA_DIR, PortmapConf, data_dir
from common import skel, statedir
from common.config import Obj, gc_valid_attachments
from common.errors import CNIError, Code, incomplete, step
from common.log import get as get_logger
from common.transaction import quietly, transaction
from common.types import Result

log = get_logger(__name__)
LOCK = "lock"
LOCK_TIMEOUT = 10.0


def _backend(conf: PortmapConf):
    if conf.backend == "nftables":
        from cni_portmap import nft

        return nft
    from cni_portmap import ipt

    return ipt


def _missing_tools(conf: PortmapConf) -> list[str]:
    from common import firewall

    if conf.backend == "nftables":
        need = ["nft"]
    else:
        prefixes = {4: "ip", 6: "ip6"}
        need = [f"{prefixes[v]}{tool}" for v in conf.families for tool in ("tables-save", "tables-restore")]
    return [tool for tool in need if firewall.tool(tool) is None]


def _check_tools(conf: PortmapConf, code: int = Code.INVALID_CONFIG) -> None:
    if missing := _missing_tools(conf):
        raise CNIError(code, f"{', '.join(missing)} is not installed", f"needed by the portmap {conf.backend} backend")


@contextmanager
def _locked(path: str):
    """The node-wide portmap lock (code 11 after LOCK_TIMEOUT seconds)."""
    dirfd = statedir.open_dir(os.path.dirname(path), os.path.basename(path), create=True)
    assert dirfd is not None  # created
    try:
        with statedir.locked(dirfd, LOCK, LOCK_TIMEOUT, "the portmap lock"):
            yield
    finally:
        os.close(dirfd)


def _localnet_interface(conf: PortmapConf) -> str | None:
    """The node's interface that routes to the pod's IPv4 address (the bridge): 127.0.0.1 must cross it.

    Longest prefix in the main table, as a route lookup would find it; None
    when no route leads there (the reference then skips route_localnet too).
    """
    pod = conf.container_v4
    if not conf.snat or pod is None:
        return None
    from common import netlink

    with netlink.host() as nl:
        routes = [r for r in netlink.list_routes(nl, 4) if r.oif and pod.ip in r.dst]
        if not routes:
            return None
        best = max(routes, key=lambda r: (r.dst.prefixlen, -r.priority))
        link = netlink.find_link(nl, index=best.oif)
    return link.name if link is not None else None


def _enable_localnet(ifname: str, undo: ExitStack) -> None:
    from common.netlink import sysctl

    key = f"ipv4/conf/{ifname}/route_localnet"
    try:
        previous = sysctl.read(key)
        if previous != "1":
            sysctl.write(key, "1")
            if previous is not None:
                undo.callback(quietly, sysctl.write, key, previous)
    except OSError as err:
        raise CNIError(Code.KERNEL_REFUSED, f"unable to enable route_localnet on {ifname}", err.strerror or str(err)) from None


def add(args: skel.CmdArgs) -> Result:
    conf = PortmapConf.load(args)
    if conf.prev_result is None:
        raise CNIError(Code.INVALID_CONFIG, "must be called as chained plugin", "portmap needs the previous plugin's result (prevResult)")
    if not conf.mappings or not conf.families:
        return conf.prev_result  # nothing to map: the previous result, untouched, as the reference
    _check_tools(conf)
    backend = _backend(conf)
    localnet = _localnet_interface(conf)
    with _locked(conf.data_dir), transaction() as undo:
        # registered before acting: a later step's failure must not leave the rules behind
        undo.callback(quietly, backend.teardown, conf.name, args.container_id, args.ifname)
        backend.setup(conf, args.container_id, args.ifname)
        if localnet is not None:
            _enable_localnet(localnet, undo)
        undo.pop_all()
    return conf.prev_result


def delete(args: skel.CmdArgs) -> None:
    """Remove the attachment's rules from both backends (it may predate a backend change); forgiving."""
    try:
        path = data_dir(Obj(args.config))
    except CNIError:
        path = DEFAULT_DATA_DIR  # a DEL still removes the rules of a config that no longer parses
    name = args.config["name"]
    errors: list[CNIError] = []
    from cni_portmap import ipt, nft

    with _locked(path):
        step(errors, "removing nftables port mappings", nft.teardown, name, args.container_id, args.ifname)
        step(errors, "removing iptables port mappings", ipt.teardown, name, args.container_id, args.ifname)
    if errors:
        raise incomplete("DEL", errors)


def check(args: skel.CmdArgs) -> None:
    conf = PortmapConf.load(args)
    if conf.prev_result is None:
        raise CNIError(Code.INVALID_CONFIG, "Required prevResult missing")
    if not conf.mappings or not conf.families:
        return
    _check_tools(conf)
    missing = _backend(conf).missing(conf, args.container_id, args.ifname)
    if missing:
        raise CNIError(Code.CHECK_MISMATCH, "missing hostport rules", "; ".join(missing))


def gc(args: skel.CmdArgs) -> None:
    conf = PortmapConf.load(args)
    valid = gc_valid_attachments(args.config, f"every port mapping of {conf.name} is stale")
    errors: list[CNIError] = []
    from cni_portmap import ipt, nft

    with _locked(conf.data_dir):
        step(errors, "removing stale nftables port mappings", nft.collect, conf.name, valid)
        step(errors, "removing stale iptables port mappings", ipt.collect, conf.name, valid)
    if errors:
        raise incomplete("GC", errors)


def status(args: skel.CmdArgs) -> None:
    from common import firewall

    conf = PortmapConf.load(args)
    need = ("nft",) if conf.backend == "nftables" else ("iptables-save", "iptables-restore")
    if missing := [tool for tool in need if firewall.tool(tool) is None]:
        raise CNIError(Code.NOT_AVAILABLE, f"{', '.join(missing)} is not installed", f"needed by the portmap {conf.backend} backend")


PLUGIN = skel.Plugin(name="portmap", add=add, delete=delete, check=check, gc=gc, status=status, about="CNI portmap plugin (cni-python-suite)")


def main() -> None:
    skel.main(PLUGIN)
