"""Converge this node: lease, VXLAN device, peers.  Shared by ADD and `vxlan sync`.

<dataDir>/<network>/
  lock               flock held while converging (ADDs and sync never interleave)
  lease.json         this node's lease, for ADD while etcd is down
  applied.json       the peer set last programmed (CHECK and status read it)
  containers/<cid>-<ifname>.json   the delegate config each ADD used (DEL replays it)
"""
import errno
import json
import logging
import os
import stat
from contextlib import contextmanager
from dataclasses import dataclass
from ipaddress import ip_address, ip_network

from common import lock, netlink
from common.errors import CNIError, Code
from cni_vxlan import device, etcd
from cni_vxlan.conf import Peer, VxlanConf
from cni_vxlan.reconcile import reconcile
from cni_vxlan.store import Lease, LeaseStore

log = logging.getLogger(__name__)
FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class NodeState:
    """This node's lease, VTEP device and the peers last seen."""

    lease: Lease
    device: netlink.Link
    peers: tuple[Peer, ...] | None  # None: the store was unreachable, entries left as they were
    revision: int = 0


def state_dir(conf: VxlanConf) -> str:
    return os.path.join(conf.data_dir, conf.name)


def _state_error(what: str, err: OSError) -> CNIError:
    if err.errno == errno.ELOOP:  # O_NOFOLLOW met a planted symlink
        return CNIError(Code.UNSAFE_STATE_DIR, f"unsafe state directory: {what} is a symlink", err.strerror)
    return CNIError(Code.IO_FAILURE, f"{what} failed", err.strerror)


def safe_dir(path: str) -> str:
    """Create a state directory (0700) and refuse one that is a symlink, not ours, or group/world-writable.

    os.makedirs follows symlinks: a planted <dataDir>/<network> link would
    otherwise put every state file of ours wherever it points.
    """
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        st = os.lstat(path)
    except FileExistsError:
        raise CNIError(Code.INVALID_CONFIG, "invalid dataDir", f"{path} is not a directory") from None
    except OSError as err:
        raise _state_error(f"creating {path}", err) from None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise CNIError(
            Code.UNSAFE_STATE_DIR,
            f"unsafe state directory: {path}",
            f"{stat.filemode(st.st_mode)} owned by uid {st.st_uid}; want a directory of ours, not group/world-writable",
        )
    return path


@contextmanager
def node_lock(conf: VxlanConf):
    path = safe_dir(state_dir(conf))
    try:
        fd = os.open(os.path.join(path, "lock"), os.O_RDONLY | os.O_CREAT | FLAGS, 0o600)
    except OSError as err:
        raise _state_error(f"opening {path}/lock", err) from None
    try:
        lock.acquire(fd, conf.lock_timeout, f"vxlan network {conf.name}")
        yield
    finally:
        os.close(fd)


def write_json(path: str, data) -> None:
    safe_dir(os.path.dirname(path))
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | FLAGS, 0o600)
        try:
            os.fchmod(fd, 0o600)  # whatever the runtime's umask
            view = memoryview(json.dumps(data).encode())
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except OSError as err:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        except OSError as cleanup:
            log.warning("cannot remove %s: %s", tmp, cleanup.strerror)
        raise _state_error(f"writing {path}", err) from None


def read_json(path: str):
    try:
        # O_NONBLOCK: a FIFO planted under the name must not hang the plugin
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | FLAGS)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return json.loads(os.read(fd, 1 << 20))
    except (ValueError, OSError):
        return None  # damaged or unreadable state counts as absent, as a missing file does
    finally:
        os.close(fd)


def cached_lease(conf: VxlanConf) -> Lease | None:
    data = read_json(os.path.join(state_dir(conf), "lease.json"))
    try:
        subnet = ip_network(data["subnet"])
        return Lease(Peer(data["node"], ip_address(data["vtep"]), subnet, data["mac"]), int(data.get("underlayMTU", 0)))
    except (TypeError, KeyError, ValueError):
        return None


def _save_lease(conf: VxlanConf, lease: Lease) -> None:
    p = lease.peer
    write_json(os.path.join(state_dir(conf), "lease.json"), {"node": p.node, "subnet": str(p.subnet), "vtep": str(p.vtep), "mac": p.mac, "underlayMTU": lease.underlay_mtu})


def applied_peers(conf: VxlanConf) -> list[Peer]:
    data = read_json(os.path.join(state_dir(conf), "applied.json")) or {}
    peers = []
    for raw in data.get("peers", []):
        try:
            peers.append(Peer(raw["node"], ip_address(raw["vtep"]), ip_network(raw["subnet"]), raw["mac"]))
        except (KeyError, TypeError, ValueError):
            continue
    return peers


def _save_applied(conf: VxlanConf, peers, revision: int) -> None:
    write_json(os.path.join(state_dir(conf), "applied.json"), {
        "revision": revision,
        "peers": [{"node": p.node, "vtep": str(p.vtep), "subnet": str(p.subnet), "mac": p.mac} for p in peers],
    })


def converge(conf: VxlanConf, nl) -> NodeState:
    """Everything node-level an ADD needs, from one store read, under the node lock."""
    # read-only checks first: a node whose config cannot work is refused before anything is written
    underlay, vtep = device.detect_vtep(nl, conf)
    if conf.peer_source == "static":
        _static_lease(conf, vtep, underlay.mtu)
    with node_lock(conf):
        lease, peers, revision = _lease_and_peers(conf, nl, vtep, underlay.mtu)
        link = device.ensure_device(nl, conf, lease.peer.subnet, underlay, vtep)
        if peers is not None:
            changes = reconcile(nl, link, conf.network, list(peers))
            if changes:
                log.info("%s: peers reconciled (%d routes set, %d removed)", conf.name, len(changes.routes), len(changes.stale_routes))
            _save_applied(conf, peers, revision)
        _save_lease(conf, lease)
        return NodeState(lease, link, peers, revision)


def _static_lease(conf: VxlanConf, vtep, underlay_mtu: int) -> Lease:
    own = conf.own_peer()
    if own.vtep != vtep:
        raise CNIError(Code.INVALID_CONFIG, f"static peer {own.node} says vtep {own.vtep}, but this node's VTEP is {vtep}", "fix peers[] or set vtepAddress")
    return Lease(own, underlay_mtu)


def _lease_and_peers(conf: VxlanConf, nl, vtep, underlay_mtu: int):
    if conf.peer_source == "static":
        return _static_lease(conf, vtep, underlay_mtu), tuple(p for p in conf.peers if p.node != conf.node_name), 0
    store = LeaseStore(conf)
    cached = cached_lease(conf)
    try:
        lease, snap = store.acquire(vtep, underlay_mtu, cached.peer.subnet if cached else None)
        if not store.keepalive(lease):
            raise CNIError(Code.TRY_AGAIN_LATER, "this node's etcd lease expired meanwhile", "retry; `vxlan sync` keeps TTL leases alive")
        return lease, tuple(store.peers(snap)), snap.revision
    except etcd.EtcdError as err:
        # fail static: with valid local state, pods still start and no entry is removed
        if cached is not None and cached.peer.vtep == vtep and netlink.find_link(nl, conf.device) is not None:
            log.warning("etcd unreachable (%s): using the cached lease %s, peers left as programmed", err, cached.peer.subnet)
            return cached, None, 0
        raise CNIError(Code.TRY_AGAIN_LATER, "etcd unreachable and this node holds no lease yet", str(err)) from None
