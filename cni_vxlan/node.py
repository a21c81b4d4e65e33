"""Converge this node: lease, VXLAN device, peers.  Shared by ADD and `vxlan sync`.

<dataDir>/<network>/
  lock               flock held while changing the node (ADDs and sync never interleave; the source is read before it)
  lease.json         this node's lease, for ADD while etcd is down
  applied.json       the peer set last programmed (CHECK and status read it)
  containers/      the delegate config each ADD used, per attachment (common.records; DEL replays it)
"""

import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from ipaddress import ip_address, ip_network

from cni_vxlan import device
from cni_vxlan.conf import Peer, VxlanConf
from cni_vxlan.peers import Lease, peer_source
from cni_vxlan.reconcile import reconcile
from common import netlink, statedir
from common.log import get as get_logger

log = get_logger(__name__)


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


def _peer(raw) -> Peer:
    """A peer as lease.json and applied.json hold it ("subnet6" only in a dual-stack network)."""
    subnet6 = ip_network(raw["subnet6"]) if raw.get("subnet6") is not None else None
    if subnet6 is not None and subnet6.version != 6:
        raise ValueError(f"subnet6 {subnet6} is not IPv6")
    return Peer(raw["node"], ip_address(raw["vtep"]), ip_network(raw["subnet"]), raw["mac"], subnet6)


def _record(p: Peer) -> dict:
    record = {"node": p.node, "vtep": str(p.vtep), "subnet": str(p.subnet), "mac": p.mac}
    if p.subnet6 is not None:
        record["subnet6"] = str(p.subnet6)
    return record


def cached_lease(conf: VxlanConf) -> Lease | None:
    data = read_state(conf, "lease.json")
    try:
        return Lease(_peer(data), int(data.get("underlayMTU", 0)))
    except (TypeError, KeyError, ValueError, AttributeError):
        return None


def _save_lease(conf: VxlanConf, lease: Lease) -> None:
    p = lease.peer
    record = {"node": p.node, "subnet": str(p.subnet), "vtep": str(p.vtep), "mac": p.mac, "underlayMTU": lease.underlay_mtu}
    if p.subnet6 is not None:
        record["subnet6"] = str(p.subnet6)
    write_state(conf, "lease.json", record)


def applied_peers(conf: VxlanConf) -> list[Peer]:
    data = read_state(conf, "applied.json") or {}
    peers = []
    for raw in data.get("peers", []):
        try:
            peers.append(_peer(raw))
        except (KeyError, TypeError, ValueError, AttributeError):
            continue
    return peers


def _save_applied(conf: VxlanConf, peers, revision: int, link, fingerprint) -> None:
    write_state(
        conf,
        "applied.json",
        {
            "revision": revision,
            "peers": [_record(p) for p in peers],
            # what the peers were programmed on: another boot or a re-created device holds none of them
            "boot": statedir.boot_id(),
            "ifindex": link.index,
            "fingerprint": fingerprint,  # the source's, when they were read (PeerSource.lease_and_peers, since)
        },
    )


def _since(conf: VxlanConf, nl):
    """The source's fingerprint of the peers programmed on the device as it is now, in this boot; else None."""
    data, boot = read_state(conf, "applied.json") or {}, statedir.boot_id()
    if not boot or data.get("boot") != boot or type(data.get("fingerprint")) is not list:
        return None
    link = netlink.find_link(nl, conf.device)
    return data["fingerprint"] if link is not None and link.index == data.get("ifindex") else None


def applied_on(conf: VxlanConf, link) -> list[Peer] | None:
    """The peers last programmed, when they were programmed on this device in this boot (else None: unknown)."""
    data, boot = read_state(conf, "applied.json") or {}, statedir.boot_id()
    if not boot or data.get("boot") != boot or data.get("ifindex") != link.index:
        return None
    return applied_peers(conf)


def applied_revision(conf: VxlanConf) -> int:
    """The source's revision of the peer set last programmed (0: none, or a source without revisions)."""
    revision = (read_state(conf, "applied.json") or {}).get("revision", 0)
    return revision if type(revision) is int else 0


def converge(conf: VxlanConf, nl, full: bool = True) -> NodeState:
    """Everything node-level an ADD needs, from one read of the peer source; the node changed under the node lock.

    full=False (an ADD) programs only what changed since the peers last applied on this
    device in this boot; full (`vxlan sync`) compares against the kernel's tables, and
    repairs what anyone else changed there.
    """
    # read-only checks first: a node whose config cannot work is refused before anything is written
    underlay, vtep = device.detect_vtep(nl, conf)
    source = peer_source(conf)
    source.precheck(vtep, underlay.mtu)
    # The source is asked before the node lock: a request may take etcd.timeout, and an ADD must
    # not wait behind sync's.  The store's transactions keep concurrent askers consistent; what
    # they read is applied in revision order (an older read, arriving late, changes no entry).
    lease, peers, revision = source.lease_and_peers(nl, vtep, underlay.mtu, None if full else _since(conf, nl))
    with node_lock(conf):
        # the IPv6 arguments only in a dual-stack network: an IPv4-only one makes exactly the calls it always made
        dual = conf.ipv6_network is not None
        link = device.ensure_device(nl, conf, lease.peer.subnet, underlay, vtep, **({"subnet6": lease.peer.subnet6} if dual else {}))
        if peers is not None and revision >= applied_revision(conf):
            applied = None if full else applied_on(conf, link)
            changes = reconcile(nl, link, conf.network, list(peers), applied, **({"network6": conf.ipv6_network} if dual else {}))
            if changes:
                log.info("%s: peers reconciled (%d routes set, %d removed)", conf.name, len(changes.routes), len(changes.stale_routes))
            _save_applied(conf, peers, revision, link, source.fingerprint)
        elif peers is not None:
            log.info("%s: peers read at revision %d, older than those programmed: left as they are", conf.name, revision)
        _save_lease(conf, lease)
        return NodeState(lease, link, peers, revision)
