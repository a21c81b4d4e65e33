"""host-local: per-node IPAM with file-locked state (the reference's on-disk format)."""

from cni_hostlocal_ipam.allocator import allocate, candidates
from cni_hostlocal_ipam.conf import IPAMConf, read_resolv_conf
from cni_hostlocal_ipam.store import open_store
from common import skel
from common.config import gc_valid_attachments
from common.errors import CNIError, Code
from common.log import get as get_logger
from common.types import Result

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (type checkers go by the name)
if TYPE_CHECKING:
    from cni_hostlocal_ipam.backend import Store

log = get_logger(__name__)


def add(args: skel.CmdArgs) -> Result:
    conf = IPAMConf.load(args)
    dns = read_resolv_conf(conf.resolv_conf)
    requested = list(dict.fromkeys(conf.requested))
    with open_store(conf) as store:
        ips = []
        try:
            for idx, range_set in enumerate(conf.range_sets):
                want = next((ip for ip in requested if range_set.range_for(ip) is not None), None)
                if want is not None:
                    requested.remove(want)
                try:
                    ips.append(allocate(store, range_set, idx, args.container_id, args.ifname, want))
                except CNIError as err:
                    raise CNIError(err.code, f"failed to allocate for range {idx}: {err.msg}", err.details) from None
            if requested:
                raise CNIError(
                    Code.REQUESTED_IP_UNAVAILABLE,
                    "failed to allocate all requested IPs: " + " ".join(str(ip) for ip in requested),
                    "each requested address must lie in a range (between rangeStart and rangeEnd) of a range set",
                )
        except BaseException:
            for ip in ips:  # all or nothing: this ADD's addresses only
                store.drop(ip.address.ip)
            raise
        log.info("allocated %s to %s/%s", " ".join(str(ip.address) for ip in ips), args.container_id, args.ifname)
    return Result(ips=tuple(ips), routes=conf.routes, dns=dns)


def delete(args: skel.CmdArgs) -> None:
    # DEL loads no ranges (conf.WITHOUT_RANGES): a config whose ranges no longer parse still releases its addresses
    conf = IPAMConf.load(args)
    store = open_store(conf, create=False)
    if not store.exists():
        return
    with store:
        released = store.release(args.container_id, args.ifname)
    if released:
        log.info("released %s of %s/%s", " ".join(map(str, released)), args.container_id, args.ifname)


def check(args: skel.CmdArgs) -> None:
    conf = IPAMConf.load(args)
    owned: list = []
    store = open_store(conf, create=False)
    if store.exists():
        with store:
            owned = store.owned_by(args.container_id, args.ifname)
    if not owned:
        raise CNIError(Code.CHECK_MISMATCH, f"host-local: Failed to find address added by container {args.container_id}")
    prev = args.config.get("prevResult")
    if prev:
        for ip in Result.from_wire(prev, args.cni_version).ips:
            mine = any(rs.in_subnets(ip.address.ip) for rs in conf.range_sets)
            if mine and ip.address.ip not in owned:
                raise CNIError(
                    Code.CHECK_MISMATCH,
                    f"host-local: {ip.address.ip} is not reserved for {args.container_id}/{args.ifname}",
                    f"reserved: {' '.join(map(str, owned)) or 'nothing'}",
                )


def gc(args: skel.CmdArgs) -> None:
    conf = IPAMConf.load(args)
    valid = gc_valid_attachments(args.config, f"releasing every address of network {conf.name}")
    store = open_store(conf, create=False)
    if store.exists():
        with store:
            collect(store, valid)


def collect(store: "Store", valid: set[tuple[str, str]], boot_sweep: bool = False) -> list:
    """Release every allocation not in `valid`; with boot_sweep, only those from an earlier boot."""
    valid_ids = {cid for cid, _ in valid}
    released = []
    for alloc in store.allocations():
        if alloc.ifname:
            keep = (alloc.container_id, alloc.ifname) in valid
        else:  # a record with only a container ID, or an empty one from a crashed writer
            keep = bool(alloc.container_id) and alloc.container_id in valid_ids
        if boot_sweep and (not alloc.boot or alloc.boot == store.boot):
            keep = True
        if not keep:
            store.drop(alloc.ip)
            released.append(alloc)
            log.warning("gc: released %s of %s/%s", alloc.ip, alloc.container_id or "?", alloc.ifname or "?")
    return released


def status(args: skel.CmdArgs) -> None:
    conf = IPAMConf.load(args)
    try:
        with open_store(conf) as store:
            for idx, range_set in enumerate(conf.range_sets):
                version = range_set.version
                if not any(store.free(version, n) for n, _ in candidates(range_set, None)):
                    raise CNIError(Code.NOT_AVAILABLE, f"no IP addresses available in range set {idx}: {range_set}")
    except CNIError as err:
        if err.code == Code.NOT_AVAILABLE:
            raise
        raise CNIError(Code.NOT_AVAILABLE, f"host-local cannot allocate: {err.msg}", err.details) from None


PLUGIN = skel.Plugin(
    name="host-local", add=add, delete=delete, check=check, gc=gc, status=status, about="CNI host-local IPAM plugin (cni-python-suite)"
)


def main() -> None:
    skel.main(PLUGIN)
