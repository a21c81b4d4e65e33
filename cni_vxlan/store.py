"""Node subnet leases in etcd.

<prefix>/<network>/config               {"network", "subnetLen", "vni", "port"}: every node must agree
<prefix>/<network>/subnets/<a.b.c.d-len> {"node", "vtep", "vtepMAC", "underlayMTU", "updated"}
<prefix>/<network>/nodes/<node>         {"subnet"}

A lease is keyed by node name and taken with one transaction that requires
both keys to be absent, so two nodes racing for a subnet can never both win.
A node keeps its subnet across restarts; a changed VTEP address updates the
record under a guard on its revision.  Keys carry no TTL unless leaseTTL is
set (then `vxlan sync` keeps the etcd lease alive).
"""

import json
import random
import time
from dataclasses import dataclass
from ipaddress import ip_address, ip_network

from cni_vxlan import etcd
from cni_vxlan.conf import Peer, VxlanConf, parse_mac, vtep_mac, vtep_problem
from cni_vxlan.peers import Lease
from common.errors import CNIError, Code
from common.log import get as get_logger

log = get_logger(__name__)

ATTEMPTS = 10


@dataclass(frozen=True)
class Snapshot:
    """The store's config and leases at one revision."""

    revision: int
    config: dict | None
    leases: dict  # node name -> Lease
    # this node's nodes/ key when it has no subnets/ record: (mod_revision, the subnet it names, or None)
    stray: "tuple[int, object] | None" = None
    fingerprint: tuple[int, int] = (0, 0)  # (keys, highest mod_revision) under the network's prefix: etcd.Client.newest()


class LeaseStore:
    def __init__(self, conf: VxlanConf, client: etcd.Client | None = None):
        self.conf = conf
        e = conf.etcd
        if e is None:  # VxlanConf.load sets etcd exactly when peerSource is etcd; only peers.EtcdPeers builds this
            raise CNIError(Code.INVALID_CONFIG, f"network {conf.name} has no etcd settings", "the lease store serves peerSource etcd only")
        self.client = client or etcd.Client(e.endpoints, e.timeout, e.ca_file, e.cert_file, e.key_file)
        self.base = f"{e.prefix}/{conf.name}/"

    def subnet_key(self, subnet) -> str:
        return f"{self.base}subnets/{subnet.network_address}-{subnet.prefixlen}"

    def node_key(self, node: str) -> str:
        return f"{self.base}nodes/{node}"

    def snapshot(self) -> Snapshot:
        revision, kvs = self.client.get_prefix(self.base)
        config, leases, own = None, {}, None
        for kv in kvs:
            name = kv.key[len(self.base) :]
            try:
                if name == "config":
                    config = json.loads(kv.value)
                elif name.startswith("subnets/"):
                    lease = _decode_lease(name[len("subnets/") :], kv)
                    leases[lease.peer.node] = lease
                elif name == "nodes/" + self.conf.node_name:
                    own = kv
            except (ValueError, KeyError, TypeError):
                continue  # a foreign or damaged key: ignore it rather than fail every node
        stray = None
        if own is not None and self.conf.node_name not in leases:
            stray = (own.mod_revision, _named_subnet(own.value))
        fingerprint = (len(kvs), max((kv.mod_revision for kv in kvs), default=0))
        return Snapshot(revision, config, leases, stray, fingerprint)

    def fingerprint(self) -> tuple[int, int]:
        """The network's keys as Snapshot.fingerprint sums them up, read without reading them."""
        return self.client.newest(self.base)

    def _settings(self) -> dict:
        c = self.conf
        return {"network": str(c.network), "subnetLen": c.subnet_len, "vni": c.vni, "port": c.port}

    def ensure_config(self, snap: Snapshot) -> None:
        """The first node records the overlay's settings; every node must match them."""
        mine = self._settings()
        stored = snap.config
        if stored is None:
            key = self.base + "config"
            if self.client.txn([etcd.absent(key)], [etcd.put_op(key, json.dumps(mine).encode())]):
                return
            stored = self.snapshot().config or {}
        diffs = [f"{k}: {stored.get(k)} in the store vs {v} here" for k, v in mine.items() if stored.get(k) != v]
        if diffs:
            raise CNIError(Code.INVALID_CONFIG, f"network {self.conf.name} is configured differently on other nodes", "; ".join(diffs))

    def acquire(self, vtep, underlay_mtu: int, preferred=None) -> tuple[Lease, Snapshot]:
        """This node's lease (the existing one, updated if the VTEP moved, or a new free subnet)
        and the snapshot it was decided on, whose other leases are this node's peers."""
        node = self.conf.node_name
        for _ in range(ATTEMPTS):
            snap = self.snapshot()
            self.ensure_config(snap)
            mine = snap.leases.get(node)
            if mine is not None:
                if mine.peer.vtep == vtep and mine.underlay_mtu == underlay_mtu:
                    return mine, snap
                updated = Lease(Peer(node, vtep, mine.peer.subnet, mine.peer.mac), underlay_mtu, mine.mod_revision, mine.etcd_lease)
                key = self.subnet_key(mine.peer.subnet)
                if self.client.txn([etcd.unchanged(key, mine.mod_revision)], [etcd.put_op(key, _encode(updated), mine.etcd_lease)]):
                    return updated, snap
                continue  # changed meanwhile: read again
            nkey = self.node_key(node)
            node_guard = etcd.absent(nkey)
            if snap.stray is not None:
                # this node's nodes/ key without its subnets/ record (a half-written lease, a
                # hand edit): taken over, guarded by its revision, instead of failing forever
                revision, named = snap.stray
                log.warning("%s names %s but holds no subnet record: taking a lease anew", nkey, named or "nothing readable")
                node_guard, preferred = etcd.unchanged(nkey, revision), preferred or named
            subnet = self._choose(snap, preferred)
            assert self.conf.etcd is not None  # __init__ refused a conf without it
            lease_id = self.client.grant(self.conf.etcd.lease_ttl) if self.conf.etcd.lease_ttl else 0
            lease = Lease(Peer(node, vtep, subnet, vtep_mac(subnet)), underlay_mtu, 0, lease_id)
            skey = self.subnet_key(subnet)
            ops = [etcd.put_op(skey, _encode(lease), lease_id), etcd.put_op(nkey, json.dumps({"subnet": str(subnet)}).encode(), lease_id)]
            if self.client.txn([etcd.absent(skey), node_guard], ops):
                return lease, snap
        raise CNIError(Code.TRY_AGAIN_LATER, f"could not take a subnet lease in {ATTEMPTS} attempts", "other nodes kept taking the candidates")

    def _choose(self, snap: Snapshot, preferred):
        taken = {lease.peer.subnet for lease in snap.leases.values()}
        if preferred is not None and preferred not in taken and self.conf.subnet_min <= preferred <= self.conf.subnet_max:
            return preferred
        step = 1 << (32 - self.conf.subnet_len)
        lo, hi = int(self.conf.subnet_min.network_address), int(self.conf.subnet_max.network_address)
        count = (hi - lo) // step + 1
        free = []
        start = random.randrange(count)  # random start: fewer collisions between racing nodes
        for i in range(count):
            subnet = ip_network(f"{ip_address(lo + ((start + i) % count) * step)}/{self.conf.subnet_len}")
            if subnet not in taken:
                free.append(subnet)
                if len(free) >= 100:
                    break
        if not free:
            raise CNIError(
                Code.RANGE_EXHAUSTED,
                f"no free /{self.conf.subnet_len} left in {self.conf.network}",
                f"{len(taken)} nodes hold leases; retire nodes with `vxlan node-remove`",
            )
        return random.choice(free)

    def peers(self, snap: Snapshot, family: int = 0) -> list[Peer]:
        """The other nodes' peers; with family, only those whose VTEP this node's can reach."""
        out = []
        for node, lease in sorted(snap.leases.items()):
            if node == self.conf.node_name:
                continue
            if family and lease.peer.vtep.version != family:
                log.warning("peer %s has a VTEP of another family (%s): skipped", node, lease.peer.vtep)
                continue
            out.append(lease.peer)
        return out

    def remove_node(self, node: str) -> bool:
        snap = self.snapshot()
        lease = snap.leases.get(node)
        ops = [etcd.delete_op(self.node_key(node))]
        if lease is not None:
            ops.append(etcd.delete_op(self.subnet_key(lease.peer.subnet)))
        self.client.txn([], ops)
        return lease is not None

    def keepalive(self, lease: Lease) -> bool:
        """Refresh a TTL lease; False when it had expired (the keys are gone)."""
        return not lease.etcd_lease or self.client.keepalive(lease.etcd_lease) > 0


def _encode(lease: Lease) -> bytes:
    p = lease.peer
    return json.dumps(
        {
            "node": p.node,
            "vtep": str(p.vtep),
            "vtepMAC": p.mac,
            "underlayMTU": lease.underlay_mtu,
            "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
    ).encode()


def _named_subnet(value: bytes):
    """The subnet a nodes/ record names, or None when it names none readably."""
    try:
        return ip_network(json.loads(value)["subnet"])
    except (ValueError, KeyError, TypeError):
        return None


def _decode_lease(name: str, kv) -> Lease:
    base, _, length = name.rpartition("-")
    subnet = ip_network(f"{base}/{length}")
    data = json.loads(kv.value)
    # another node's record is input too: a damaged vtep or MAC is skipped like any foreign key
    vtep = ip_address(data["vtep"])
    if why := vtep_problem(vtep):
        raise ValueError(f"vtep {vtep}: {why}")
    if type(data["node"]) is not str:
        raise TypeError("node is not a string")
    peer = Peer(data["node"], vtep, subnet, parse_mac(data["vtepMAC"]) if data.get("vtepMAC") else vtep_mac(subnet))
    return Lease(peer, int(data.get("underlayMTU", 0)), kv.mod_revision, kv.lease)
