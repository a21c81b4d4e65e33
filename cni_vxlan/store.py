"""Node subnet leases in etcd.

<prefix>/<network>/config               {"network", "subnetLen", "vni", "port", "ipv6Network"?, "ipv6SubnetLen"?}: every node must agree
<prefix>/<network>/subnets/<a.b.c.d-len> {"node", "vtep", "vtepMAC", "underlayMTU", "updated", "subnet6"?}
<prefix>/<network>/subnets6/<v6-len>     {"node"}: the claim on an IPv6 subnet (dual-stack only)
<prefix>/<network>/nodes/<node>         {"subnet", "subnet6"?}

A lease is keyed by node name and taken with one transaction that requires
its keys to be absent, so two nodes racing for a subnet (of either family)
can never both win.  A record without "subnet6" (an IPv4-only network, or a
node of an older version) is an IPv4 peer only.
A node keeps its subnet across restarts; a changed VTEP address updates the
record under a guard on its revision.  Keys carry no TTL unless leaseTTL is
set (then `vxlan sync` keeps the etcd lease alive).
"""

import json
import random
import time
from dataclasses import dataclass, field, replace
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
    claims6: dict = field(default_factory=dict)  # IPv6 subnet -> the node whose subnets6/ key claims it


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

    def subnet6_key(self, subnet) -> str:
        return f"{self.base}subnets6/{subnet.network_address}-{subnet.prefixlen}"

    def node_key(self, node: str) -> str:
        return f"{self.base}nodes/{node}"

    def snapshot(self) -> Snapshot:
        revision, kvs = self.client.get_prefix(self.base)
        config, leases, own, claims6 = None, {}, None, {}
        for kv in kvs:
            name = kv.key[len(self.base) :]
            try:
                if name == "config":
                    config = json.loads(kv.value)
                elif name.startswith("subnets/"):
                    lease = _decode_lease(name[len("subnets/") :], kv)
                    leases[lease.peer.node] = lease
                elif name.startswith("subnets6/"):
                    base, _, length = name[len("subnets6/") :].rpartition("-")
                    claims6[ip_network(f"{base}/{length}")] = json.loads(kv.value)["node"]
                elif name == "nodes/" + self.conf.node_name:
                    own = kv
            except (ValueError, KeyError, TypeError):
                continue  # a foreign or damaged key: ignore it rather than fail every node
        stray = None
        if own is not None and self.conf.node_name not in leases:
            stray = (own.mod_revision, _named_subnet(own.value))
        fingerprint = (len(kvs), max((kv.mod_revision for kv in kvs), default=0))
        return Snapshot(revision, config, leases, stray, fingerprint, claims6)

    def fingerprint(self) -> tuple[int, int]:
        """The network's keys as Snapshot.fingerprint sums them up, read without reading them."""
        return self.client.newest(self.base)

    def _settings(self) -> dict:
        c = self.conf
        settings: dict = {"network": str(c.network), "subnetLen": c.subnet_len, "vni": c.vni, "port": c.port}
        if c.ipv6_network is not None:  # an IPv4-only network's record stays as it always was
            settings.update(ipv6Network=str(c.ipv6_network), ipv6SubnetLen=c.ipv6_subnet_len)
        return settings

    def ensure_config(self, snap: Snapshot) -> None:
        """The first node records the overlay's settings; every node must match them."""
        mine = self._settings()
        stored = snap.config
        if stored is None:
            key = self.base + "config"
            if self.client.txn([etcd.absent(key)], [etcd.put_op(key, json.dumps(mine).encode())]):
                return
            stored = self.snapshot().config or {}
        # the IPv6 keys are compared when either side has them: an IPv4-only node of a dual-stack network is refused too
        keys = list(mine) + [k for k in ("ipv6Network", "ipv6SubnetLen") if k in stored and k not in mine]
        diffs = [f"{k}: {stored.get(k)} in the store vs {mine.get(k)} here" for k in keys if stored.get(k) != mine.get(k)]
        if diffs:
            raise CNIError(Code.INVALID_CONFIG, f"network {self.conf.name} is configured differently on other nodes", "; ".join(diffs))

    def acquire(self, vtep, underlay_mtu: int, preferred=None, preferred6=None) -> tuple[Lease, Snapshot]:
        """This node's lease (the existing one, updated if the VTEP moved or it lacks its IPv6
        subnet, or new free subnets) and the snapshot it was decided on, whose other leases are
        this node's peers."""
        node = self.conf.node_name
        for _ in range(ATTEMPTS):
            snap = self.snapshot()
            self.ensure_config(snap)
            mine = snap.leases.get(node)
            if mine is not None:
                held6 = self._held6(snap, mine.peer)
                if mine.peer.vtep == vtep and mine.underlay_mtu == underlay_mtu and held6 is not None:
                    return mine, snap
                key = self.subnet_key(mine.peer.subnet)
                compares, subnet6 = [etcd.unchanged(key, mine.mod_revision)], held6 or None
                ops: list = []
                if held6 is None:  # dual-stack, and no IPv6 subnet yet (a lease of an IPv4-only version): one more claim
                    subnet6 = self._choose6(snap, mine.peer.subnet6 or preferred6)
                    compares += self._claim6(snap, subnet6, mine.etcd_lease, ops)
                    ops.append(etcd.put_op(self.node_key(node), _node_record(mine.peer.subnet, subnet6), mine.etcd_lease))
                updated = Lease(replace(mine.peer, vtep=vtep, subnet6=subnet6), underlay_mtu, mine.mod_revision, mine.etcd_lease)
                ops.append(etcd.put_op(key, _encode(updated), mine.etcd_lease))
                if self.client.txn(compares, ops):
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
            subnet6 = self._choose6(snap, preferred6) if self.conf.ipv6_network is not None else None
            assert self.conf.etcd is not None  # __init__ refused a conf without it
            lease_id = self.client.grant(self.conf.etcd.lease_ttl) if self.conf.etcd.lease_ttl else 0
            lease = Lease(Peer(node, vtep, subnet, vtep_mac(subnet), subnet6), underlay_mtu, 0, lease_id)
            skey = self.subnet_key(subnet)
            compares = [etcd.absent(skey), node_guard]
            ops = [etcd.put_op(skey, _encode(lease), lease_id), etcd.put_op(nkey, _node_record(subnet, subnet6), lease_id)]
            if subnet6 is not None:
                compares += self._claim6(snap, subnet6, lease_id, ops)
            if self.client.txn(compares, ops):
                return lease, snap
        raise CNIError(Code.TRY_AGAIN_LATER, f"could not take a subnet lease in {ATTEMPTS} attempts", "other nodes kept taking the candidates")

    def _held6(self, snap: Snapshot, peer: Peer):
        """This node's IPv6 subnet when it holds one (False: an IPv4-only network, nothing to hold; None: it holds none)."""
        if self.conf.ipv6_network is None:
            return False
        subnet6 = peer.subnet6
        if subnet6 is None or not self._in_network6(subnet6) or snap.claims6.get(subnet6) != peer.node:
            return None
        return subnet6

    def _in_network6(self, subnet6) -> bool:
        network6 = self.conf.ipv6_network
        return network6 is not None and subnet6.prefixlen == self.conf.ipv6_subnet_len and subnet6.subnet_of(network6)

    def _claim6(self, snap: Snapshot, subnet6, lease_id: int, ops: list) -> list:
        """The claim on subnet6 added to ops (and this node's other claims dropped); the compares that guard it.

        A claim this node already holds (its record lost, the claim left) is
        taken back as it is; any other must be absent.
        """
        node = self.conf.node_name
        key = self.subnet6_key(subnet6)
        ops.append(etcd.put_op(key, json.dumps({"node": node}).encode(), lease_id))
        ops += [etcd.delete_op(self.subnet6_key(s6)) for s6, holder in sorted(snap.claims6.items()) if holder == node and s6 != subnet6]
        return [] if snap.claims6.get(subnet6) == node else [etcd.absent(key)]

    def _choose(self, snap: Snapshot, preferred):
        taken = {lease.peer.subnet for lease in snap.leases.values()}
        c = self.conf
        return _free(taken, preferred, c.subnet_min, c.subnet_max, c.subnet_len, c.network)

    def _choose6(self, snap: Snapshot, preferred):
        c = self.conf
        assert c.ipv6_network is not None  # asked for dual-stack networks only
        node = c.node_name
        own = [s6 for s6, holder in sorted(snap.claims6.items()) if holder == node]  # claims a lost record left behind
        taken = {s6 for s6, holder in snap.claims6.items() if holder != node}
        taken |= {lease.peer.subnet6 for n, lease in snap.leases.items() if n != node and lease.peer.subnet6 is not None}
        if (preferred is None or preferred in taken) and own:
            preferred = own[0]
        subnets = c.ipv6_network.subnets(new_prefix=c.ipv6_subnet_len)
        first = next(subnets)
        lowest = next(subnets, first)  # as for IPv4: the first subnet's base is the network's own address
        highest = ip_network(f"{c.ipv6_network.broadcast_address - (2 ** (128 - c.ipv6_subnet_len) - 1)}/{c.ipv6_subnet_len}")
        return _free(taken, preferred, lowest, highest, c.ipv6_subnet_len, c.ipv6_network)

    def peers(self, snap: Snapshot, family: int = 0) -> list[Peer]:
        """The other nodes' peers; with family, only those whose VTEP this node's can reach."""
        out = []
        for node, lease in sorted(snap.leases.items()):
            if node == self.conf.node_name:
                continue
            if family and lease.peer.vtep.version != family:
                log.warning("peer %s has a VTEP of another family (%s): skipped", node, lease.peer.vtep)
                continue
            peer = lease.peer
            if peer.subnet6 is not None and not self._in_network6(peer.subnet6):
                peer = replace(peer, subnet6=None)  # not of this network's IPv6 range (or this node is IPv4 only): an IPv4 peer
            out.append(peer)
        return out

    def remove_node(self, node: str) -> bool:
        snap = self.snapshot()
        lease = snap.leases.get(node)
        ops = [etcd.delete_op(self.node_key(node))]
        if lease is not None:
            ops.append(etcd.delete_op(self.subnet_key(lease.peer.subnet)))
        # its IPv6 claims, by its record or by the claim keys that name it (a record of an older version has none)
        subnets6 = {s6 for s6, holder in snap.claims6.items() if holder == node}
        if lease is not None and lease.peer.subnet6 is not None and snap.claims6.get(lease.peer.subnet6) in (None, node):
            subnets6.add(lease.peer.subnet6)
        ops += [etcd.delete_op(self.subnet6_key(s6)) for s6 in sorted(subnets6)]
        self.client.txn([], ops)
        return lease is not None

    def keepalive(self, lease: Lease) -> bool:
        """Refresh a TTL lease; False when it had expired (the keys are gone)."""
        return not lease.etcd_lease or self.client.keepalive(lease.etcd_lease) > 0


def _free(taken: set, preferred, lowest, highest, subnet_len: int, network):
    """A free /subnet_len between lowest and highest: preferred when free, else a random one."""
    if preferred is not None and preferred.version == network.version and preferred.prefixlen == subnet_len and preferred not in taken:
        if lowest.network_address <= preferred.network_address <= highest.network_address:
            return preferred
    bits = network.max_prefixlen
    step = 1 << (bits - subnet_len)
    lo, hi = int(lowest.network_address), int(highest.network_address)
    count = (hi - lo) // step + 1
    free = []
    start = random.randrange(count)  # random start: fewer collisions between racing nodes
    for i in range(min(count, len(taken) + 100)):  # a free one is among the first len(taken) + 1
        subnet = ip_network(f"{ip_address(lo + ((start + i) % count) * step)}/{subnet_len}")
        if subnet not in taken:
            free.append(subnet)
            if len(free) >= 100:
                break
    if not free:
        raise CNIError(
            Code.RANGE_EXHAUSTED,
            f"no free /{subnet_len} left in {network}",
            f"{len(taken)} nodes hold leases; retire nodes with `vxlan node-remove`",
        )
    return random.choice(free)


def _node_record(subnet, subnet6) -> bytes:
    record = {"subnet": str(subnet)}
    if subnet6 is not None:
        record["subnet6"] = str(subnet6)
    return json.dumps(record).encode()


def _encode(lease: Lease) -> bytes:
    p = lease.peer
    return json.dumps(
        {
            "node": p.node,
            "vtep": str(p.vtep),
            "vtepMAC": p.mac,
            "underlayMTU": lease.underlay_mtu,
            "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **({"subnet6": str(p.subnet6)} if p.subnet6 is not None else {}),
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
    subnet6 = ip_network(data["subnet6"]) if data.get("subnet6") is not None else None
    if subnet6 is not None and subnet6.version != 6:
        raise ValueError(f"subnet6 {subnet6} is not IPv6")
    peer = Peer(data["node"], vtep, subnet, parse_mac(data["vtepMAC"]) if data.get("vtepMAC") else vtep_mac(subnet), subnet6)
    return Lease(peer, int(data.get("underlayMTU", 0)), kv.mod_revision, kv.lease)
