"""Where a node gets its lease and learns its peers: one class per `peerSource`.

As flannel's subnet manager: node.py (ADD and `vxlan sync`), plugin.py (STATUS, the
subnet judged before converging), status.py (`vxlan show`), cli.py (`sync --watch`,
`node-remove`) and `cni-suite doctor` ask the network's source, `peer_source(conf)`,
and never branch on its name.  A source is a class implementing `PeerSource`,
registered in SOURCES (whose names are the values conf.py accepts for peerSource);
its own config keys are parsed in conf.py.

ADD imports this module on every call, so it imports nothing heavy at load:
EtcdPeers loads the lease store (store.py) only when used, so static peers never
load it.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from common.errors import CNIError, Code
from common.log import get as get_logger

if TYPE_CHECKING:  # annotations only
    from ipaddress import IPv4Network, IPv6Network

    from cni_vxlan.conf import Peer, VxlanConf

log = get_logger(__name__)
HEALTH_EVERY = 5.0  # seconds of quiet on a watch between checks that its member still has a leader


@dataclass(frozen=True)
class Lease:
    """This node's subnet as its source grants it (mod_revision and etcd_lease: the etcd source's bookkeeping)."""

    peer: "Peer"
    underlay_mtu: int
    mod_revision: int = 0
    etcd_lease: int = 0


class PeerSourceError(Exception):
    """The source could not do it: unreachable, or not a thing this source does."""


@dataclass(frozen=True)
class View:
    """What the source says now: for STATUS, `vxlan show` and `cni-suite doctor`."""

    state: str  # one line for `vxlan show`
    peers: "tuple[Peer, ...] | None" = None  # the other nodes; None: show the peers last applied
    error: str = ""  # why the source is unreachable ("" when it is not)
    fix: str = ""  # what to check when it is unreachable
    underlay_mtus: dict[str, int] = field(default_factory=dict)  # node -> its underlay MTU, where the source knows it


class PeerSource(Protocol):
    name: str  # the peerSource value, and how messages name the source

    def precheck(self, vtep, underlay_mtu: int) -> None:
        """Refuse a node this source cannot serve: read-only, before the node lock and before anything is written."""
        ...

    # what the source looked like at the last lease_and_peers, for `since` (None: it cannot tell)
    fingerprint: "tuple | None"

    def lease_and_peers(self, nl, vtep, underlay_mtu: int, since=None) -> "tuple[Lease, tuple[Peer, ...] | None, int]":
        """Before the node lock: (this node's lease, the other nodes or None when the source is unreachable, revision).

        since: the fingerprint of the peers last applied (an ADD gives it): when the
        source has not changed since, the answer may be the cached lease and None,
        read without listing the peers (an ADD's cost then does not follow the node count).

        Several callers on one node may ask at once (an ADD beside `vxlan sync`):
        the answer must not depend on who asks first.  The revision orders the
        answers (node.converge applies none older than the last applied).

        None leaves the programmed entries as they are (the node keeps working
        from its cached lease); raise CNIError when the node cannot work at all.
        """
        ...

    def subnet_hint(self) -> "IPv4Network | IPv6Network | None":
        """This node's subnet when the source knows it without a read (None: the cached lease decides)."""
        ...

    def view(self) -> View: ...

    def follow(self, revision: int, resync: float, converge: Callable[[], int]) -> None:
        """`vxlan sync --watch` after a converge at `revision`: call converge() (it returns the new revision)
        on every change and at least every `resync` seconds; return when the caller should converge again.
        Raises PeerSourceError when the source is lost (the caller backs off and retries)."""
        ...

    def remove_node(self, name: str) -> bool:
        """Retire a node (`vxlan node-remove`): whether it held a lease; PeerSourceError when this source cannot."""
        ...


class StaticPeers:
    """peerSource static: every node's entry is in the config (conf.peers), this node's included."""

    name = "static"

    def __init__(self, conf: "VxlanConf"):
        self.conf = conf

    def _lease(self, vtep, underlay_mtu: int) -> Lease:
        conf = self.conf
        own = conf.own_peer()
        if own is None:  # VxlanConf.load refuses static peers without this node's entry
            raise CNIError(
                Code.INVALID_CONFIG,
                f"static peers have no entry for this node ({conf.node_name!r})",
                "add {node, vtep, subnet} for it, or set nodeName",
            )
        if own.vtep != vtep:
            raise CNIError(
                Code.INVALID_CONFIG, f"static peer {own.node} says vtep {own.vtep}, but this node's VTEP is {vtep}", "fix peers[] or set vtepAddress"
            )
        return Lease(own, underlay_mtu)

    def precheck(self, vtep, underlay_mtu: int) -> None:
        self._lease(vtep, underlay_mtu)

    fingerprint: "tuple | None" = None  # the peers are in the config: nothing to read, nothing to skip

    def lease_and_peers(self, nl, vtep, underlay_mtu: int, since=None):
        return self._lease(vtep, underlay_mtu), tuple(p for p in self.conf.peers if p.node != self.conf.node_name), 0

    def subnet_hint(self):
        own = self.conf.own_peer()
        return own.subnet if own is not None else None

    def view(self) -> View:
        return View("static peers")

    def follow(self, revision: int, resync: float, converge: Callable[[], int]) -> None:
        time.sleep(resync)  # nothing to watch: re-converge now and then, repairing what others changed

    def remove_node(self, name: str) -> bool:
        raise PeerSourceError("static peers: remove the node from peers[] in every node's config instead")


class EtcdPeers:
    """peerSource etcd: leases taken and listed in etcd (store.LeaseStore), cached in lease.json for when etcd is down."""

    name = "etcd"

    def __init__(self, conf: "VxlanConf"):
        self.conf = conf
        self.fingerprint: tuple | None = None

    def _store(self):
        from cni_vxlan.store import LeaseStore

        return LeaseStore(self.conf)

    def precheck(self, vtep, underlay_mtu: int) -> None:
        pass  # decided in lease_and_peers, against the store

    def lease_and_peers(self, nl, vtep, underlay_mtu: int, since=None):
        from cni_vxlan import etcd, node
        from common import netlink

        conf = self.conf
        store = self._store()
        cached = node.cached_lease(conf)
        try:
            # a cached lease without the IPv6 subnet a dual-stack network wants is not good enough
            complete = cached is not None and (conf.ipv6_network is None or cached.peer.subnet6 is not None)
            if since is not None and complete and cached is not None and (cached.peer.vtep, cached.underlay_mtu) == (vtep, underlay_mtu):
                if store.fingerprint() == tuple(since):  # one small reply: nothing under the prefix changed
                    self.fingerprint = tuple(since)
                    return cached, None, 0
            lease, snap = store.acquire(vtep, underlay_mtu, cached.peer.subnet if cached else None, cached.peer.subnet6 if cached else None)
            self.fingerprint = snap.fingerprint
            if not store.keepalive(lease):
                raise CNIError(Code.TRY_AGAIN_LATER, "this node's etcd lease expired meanwhile", "retry; `vxlan sync` keeps TTL leases alive")
            return lease, tuple(store.peers(snap, vtep.version)), snap.revision
        except etcd.EtcdError as err:
            # fail static: with valid local state, pods still start and no entry is removed
            if complete and cached is not None and cached.peer.vtep == vtep and netlink.find_link(nl, conf.device) is not None:
                log.warning("etcd unreachable (%s): using the cached lease %s, peers left as programmed", err, cached.peer.subnet)
                return cached, None, 0
            raise CNIError(Code.TRY_AGAIN_LATER, "etcd unreachable and this node holds no lease yet", str(err)) from None

    def subnet_hint(self):
        return None  # etcd decides when converging

    def view(self) -> View:
        from cni_vxlan import etcd

        conf = self.conf
        try:
            snap = self._store().snapshot()
        except etcd.EtcdError as err:
            assert conf.etcd is not None  # VxlanConf.load sets it for peerSource etcd (LeaseStore refuses otherwise)
            return View(
                f"etcd unreachable ({err}): showing the last applied peers",
                error=str(err),
                fix=f"check {', '.join(conf.etcd.endpoints)} from this node (firewall, TLS files, etcd health)",
            )
        return View(
            f"etcd reachable (revision {snap.revision}, {len(snap.leases)} leases)",
            tuple(other.peer for n, other in sorted(snap.leases.items()) if n != conf.node_name),
            underlay_mtus={n: lease.underlay_mtu for n, lease in snap.leases.items() if lease.underlay_mtu},
        )

    def follow(self, revision: int, resync: float, converge: Callable[[], int]) -> None:
        """Watch from revision+1; converge after a short debounce, and re-list every `resync`.

        Every converge also refreshes a TTL lease, so with leaseTTL the re-list
        runs at least three times per TTL.
        """
        from cni_vxlan import etcd

        assert self.conf.etcd is not None  # VxlanConf.load gives an etcd network its etcd settings
        if self.conf.etcd.lease_ttl:
            resync = min(resync, self.conf.etcd.lease_ttl / 3)
        store = self._store()
        try:
            last_full = last_check = time.monotonic()
            pending = 0.0
            for events in store.client.watch(store.base, revision + 1, idle=0.2):
                now = time.monotonic()
                if events:
                    pending = pending or now  # debounce: let a burst of changes land first
                if (pending and now - pending >= 0.2) or now - last_full >= resync:
                    converge()
                    pending, last_full = 0.0, now
                elif now - last_check >= HEALTH_EVERY:
                    # a member cut off from its cluster keeps the stream open and sends nothing
                    if not store.client.healthy(store.client.current):
                        raise etcd.EtcdError(f"the watched member {store.client.current[1]} has no leader or does not answer")
                    last_check = now
        except etcd.EtcdError as err:
            store.client.failed(store.client.current)
            raise PeerSourceError(str(err)) from None

    def remove_node(self, name: str) -> bool:
        from cni_vxlan import etcd

        try:
            return self._store().remove_node(name)
        except etcd.EtcdError as err:
            raise PeerSourceError(str(err)) from None


# peerSource -> its source; conf.py accepts exactly these names
SOURCES: "dict[str, Callable[[VxlanConf], PeerSource]]" = {"etcd": EtcdPeers, "static": StaticPeers}


def peer_source(conf: "VxlanConf") -> PeerSource:
    """The network's peer source (nothing is read or connected yet)."""
    factory = SOURCES.get(conf.peer_source)
    if factory is None:  # VxlanConf.load accepts only registered names
        raise CNIError(Code.INVALID_CONFIG, f"unknown peerSource {conf.peer_source!r}", "known: " + ", ".join(SOURCES))
    return factory(conf)
