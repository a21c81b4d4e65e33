"""Converge this node: lease, VXLAN device, peers.  Shared by ADD and `vxlan sync`.

<dataDir>/<network>/
  lock               flock held while converging (ADDs and sync never interleave)
  lease.json         this node's lease, for ADD while etcd is down
  applied.json       the peer set last programmed (CHECK and status read it)
  containers/      the delegate config each ADD used, per attachment (common.records; DEL replays it)
"""

import json
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from ipaddress import ip_address, ip_network

from cni_vxlan import device, etcd
from cni_vxlan.conf import Peer, VxlanConf
from cni_vxlan.reconcile import reconcile
from cni_vxlan.store import Lease, LeaseStore
from common import netlink, statedir
from common.errors import CNIError, Code

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NodeState:
    """This node's lease, VTEP device and the peers last seen."""

    lease: Lease
    device: netlink.Link
    peers: tuple[Peer, ...] | None  # None: the store was unreachable, entries left as they were
    revision: int = 0


def state_dir(conf: VxlanConf) -> str:
    return os.path.join(conf.data_dir, conf.name)


@contextmanager
def _state(conf: VxlanConf, create: bool):
    """An fd of <dataDir>/<network> under common.statedir's rules (None when absent and not create)."""
    fd = statedir.open_dir(conf.data_dir, conf.name, create)
    try:
        yield fd
    finally:
        if fd is not None:
            os.close(fd)


@contextmanager
def node_lock(conf: VxlanConf):
    with _state(conf, create=True) as fd:
        with statedir.locked(fd, "lock", conf.lock_timeout, f"vxlan network {conf.name}"):
            yield


def write_state(conf: VxlanConf, name: str, data) -> None:
    with _state(conf, create=True) as fd:
        try:
            statedir.write_file(fd, name, json.dumps(data).encode())
        except OSError as err:
            raise statedir.io_error(f"writing {state_dir(conf)}/{name}", err) from None


def read_state(conf: VxlanConf, name: str):
    """A state file's JSON; None when absent, damaged or not a regular file (as a missing file)."""
    with _state(conf, create=False) as fd:
        data = statedir.read_file(fd, name, 1 << 20) if fd is not None else None
    try:
        return json.loads(data) if data is not None else None
    except ValueError:
        return None


def cached_lease(conf: VxlanConf) -> Lease | None:
    data = read_state(conf, "lease.json")
    try:
        subnet = ip_network(data["subnet"])
        return Lease(Peer(data["node"], ip_address(data["vtep"]), subnet, data["mac"]), int(data.get("underlayMTU", 0)))
    except (TypeError, KeyError, ValueError):
        return None


def _save_lease(conf: VxlanConf, lease: Lease) -> None:
    p = lease.peer
    write_state(conf, "lease.json", {"node": p.node, "subnet": str(p.subnet), "vtep": str(p.vtep), "mac": p.mac, "underlayMTU": lease.underlay_mtu})


def applied_peers(conf: VxlanConf) -> list[Peer]:
    data = read_state(conf, "applied.json") or {}
    peers = []
    for raw in data.get("peers", []):
        try:
            peers.append(Peer(raw["node"], ip_address(raw["vtep"]), ip_network(raw["subnet"]), raw["mac"]))
        except (KeyError, TypeError, ValueError):
            continue
    return peers


def _save_applied(conf: VxlanConf, peers, revision: int) -> None:
    write_state(
        conf,
        "applied.json",
        {
            "revision": revision,
            "peers": [{"node": p.node, "vtep": str(p.vtep), "subnet": str(p.subnet), "mac": p.mac} for p in peers],
        },
    )


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
    if own is None:  # VxlanConf.load refuses static peers without this node's entry
        raise CNIError(
            Code.INVALID_CONFIG, f"static peers have no entry for this node ({conf.node_name!r})", "add {node, vtep, subnet} for it, or set nodeName"
        )
    if own.vtep != vtep:
        raise CNIError(
            Code.INVALID_CONFIG, f"static peer {own.node} says vtep {own.vtep}, but this node's VTEP is {vtep}", "fix peers[] or set vtepAddress"
        )
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
        return lease, tuple(store.peers(snap, vtep.version)), snap.revision
    except etcd.EtcdError as err:
        # fail static: with valid local state, pods still start and no entry is removed
        if cached is not None and cached.peer.vtep == vtep and netlink.find_link(nl, conf.device) is not None:
            log.warning("etcd unreachable (%s): using the cached lease %s, peers left as programmed", err, cached.peer.subnet)
            return cached, None, 0
        raise CNIError(Code.TRY_AGAIN_LATER, "etcd unreachable and this node holds no lease yet", str(err)) from None
