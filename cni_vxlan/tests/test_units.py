"""vxlan logic without the kernel: config, MAC scheme, reconcile plan, leases over a fake etcd."""

import json
from ipaddress import ip_address, ip_network

import pytest

from cni_vxlan import etcd
from cni_vxlan.conf import Peer, VxlanConf, vtep_mac
from cni_vxlan.reconcile import plan, plan_changes
from cni_vxlan.store import LeaseStore
from common.errors import CNIError
from common.netlink import RouteEntry
from common.netlink.addr import Neighbour
from common.skel import CmdArgs

pytestmark = pytest.mark.unit


def conf(**kw):
    base = {"cniVersion": "1.1.0", "name": "overlay", "type": "vxlan", "network": "198.18.0.0/16", "nodeName": "n1"}
    base.update(kw)
    return base


STATIC = [{"node": "n1", "vtep": "192.0.2.1", "subnet": "198.18.1.0/24"}, {"node": "n2", "vtep": "192.0.2.2", "subnet": "198.18.2.0/24"}]


def test_defaults():
    c = VxlanConf.load(CmdArgs.for_config(conf(), command="ADD"))
    assert (c.vni, c.port, c.device, c.bridge, c.subnet_len, c.peer_source) == (1, 4789, "cnivx.1", "cnivx0", 24, "etcd")
    assert str(c.subnet_min) == "198.18.1.0/24" and str(c.subnet_max) == "198.18.255.0/24"
    assert c.etcd.endpoints == ("http://127.0.0.1:2379",) and c.etcd.lease_ttl == 0


def test_small_networks_get_a_longer_default_subnet_len():
    assert VxlanConf.load(CmdArgs.for_config(conf(network="198.18.0.0/24"), command="ADD")).subnet_len == 26


@pytest.mark.parametrize(
    "change,fragment",
    [
        ({"network": "198.18.0.0/24", "subnetLen": 16}, "smaller than subnetLen"),
        ({"network": "198.18.0.0/24", "subnetLen": 24}, "smaller than subnetLen"),
        ({"subnetLen": 31}, "at most 30"),
        ({"vni": 0}, "vni"),
        ({"vni": 16777216}, "vni"),
        ({"port": 0}, "port"),
        ({"port": 65536}, "port"),
        ({"peerSource": "static", "peers": STATIC, "nodeName": "n9"}, "no entry for this node"),
        ({"peerSource": "static", "peers": [{"node": "n1", "vtep": "192.0.2.1", "subnet": "10.0.0.0/24"}]}, "not a /24 inside"),
        ({"peerSource": "static", "peers": [{"node": "n1", "vtep": "192.0.2.1"}]}, "needs node, vtep and subnet"),
        ({"peerSource": "static", "peers": STATIC + [{"node": "n1", "vtep": "192.0.2.3", "subnet": "198.18.3.0/24"}]}, "duplicate"),
        ({"device": "a-device-name-too-long"}, "device"),
        ({"delegate": {"bridge": "cni%d"}}, "delegate.bridge"),
        ({"peerSource": "gossip"}, "peerSource"),
        ({"network": "2001:db8::/64"}, "IPv4"),
        ({"network": "banana"}, "invalid network"),
        ({"subnetMin": "198.18.5.0", "subnetMax": "198.18.4.0"}, "subnetMin is after"),
        ({"etcd": {"endpoints": ["127.0.0.1:2379"]}}, "endpoints"),
        ({"mtu": 20}, "mtu"),
        ({"txChecksumOffload": "yes"}, "txChecksumOffload"),
    ],
)
def test_bad_configs_are_code_7(change, fragment):
    with pytest.raises(CNIError) as err:
        VxlanConf.load(CmdArgs.for_config(conf(**change), command="ADD"))
    assert err.value.code == 7, err.value
    assert fragment in str(err.value)


def test_missing_network():
    raw = conf()
    del raw["network"]
    with pytest.raises(CNIError) as err:
        VxlanConf.load(CmdArgs.for_config(raw, command="ADD"))
    assert err.value.code == 7


def test_vtep_mac_follows_the_subnet():
    assert vtep_mac(ip_network("10.244.3.0/24")) == "0e:56:0a:f4:03:00"


def peer(n: int) -> Peer:
    subnet = ip_network(f"198.18.{n}.0/24")
    return Peer(f"n{n}", ip_address(f"192.0.2.{n}"), subnet, vtep_mac(subnet))


def route(p: Peer) -> RouteEntry:
    return RouteEntry(p.subnet, p.base, 5, 254, 0, 241, 0, True)


def test_plan_adds_missing_and_removes_stale_entries():
    p2, p3, p4 = peer(2), peer(3), peer(4)
    routes = [route(p2), route(p4)]
    neighbours = [Neighbour(5, p2.base, p2.mac, 0x80, 0), Neighbour(5, p4.base, p4.mac, 0x80, 0)]
    fdb = [Neighbour(5, ip_address("192.0.2.99"), p2.mac, 0xC0, 2), Neighbour(5, p4.vtep, p4.mac, 0xC0, 2)]
    todo = plan([p2, p3], routes, neighbours, fdb)
    assert todo.neighbours == [(p3.base, p3.mac)]
    assert todo.fdb == [(p2.mac, p2.vtep), (p3.mac, p3.vtep)]  # p2 moved: its FDB entry is replaced
    assert todo.routes == [(p3.subnet, p3.base)]
    assert [r.dst for r in todo.stale_routes] == [p4.subnet]
    assert todo.stale_neighbours == [p4.base]
    assert sorted(todo.stale_fdb) == sorted([(p2.mac, ip_address("192.0.2.99")), (p4.mac, p4.vtep)])
    assert not plan([p2], [route(p2)], [Neighbour(5, p2.base, p2.mac, 0x80, 0)], [Neighbour(5, p2.vtep, p2.mac, 0xC0, 2)])


def test_an_add_plans_only_the_peers_that_changed_since_they_were_applied():
    """issue 14: ADD must not scale with the node count; it plans against applied.json, not a dump."""
    p2, p3, p4 = peer(2), peer(3), peer(4)
    moved = Peer(p2.node, ip_address("192.0.2.99"), p2.subnet, p2.mac)
    todo = plan_changes([moved, p3], [p2, p4], oif=5)
    assert todo.neighbours == [(moved.base, moved.mac), (p3.base, p3.mac)]
    assert todo.fdb == [(moved.mac, moved.vtep), (p3.mac, p3.vtep)]
    assert todo.routes == [(moved.subnet, moved.base), (p3.subnet, p3.base)]
    assert [(r.dst, r.gw, r.oif, r.proto) for r in todo.stale_routes] == [(p4.subnet, p4.base, 5, 241)]
    assert todo.stale_neighbours == [p4.base]  # p2's stays: the moved peer keeps its subnet and base
    assert sorted(todo.stale_fdb) == sorted([(p2.mac, p2.vtep), (p4.mac, p4.vtep)])
    many = [peer(i) for i in range(2, 200)]
    assert not plan_changes(many, list(reversed(many)), oif=5)  # nothing changed: nothing to do, whatever the count


class FakeEtcd:
    """The gateway calls LeaseStore uses, with etcd's transaction semantics."""

    def __init__(self):
        self.kv: dict[str, tuple[bytes, int, int]] = {}  # key -> (value, create_revision, mod_revision)
        self.revision = 1
        self.before_txn = None

    def get_prefix(self, prefix):
        out = []
        for key in sorted(self.kv):
            if key.startswith(prefix):
                value, created, modified = self.kv[key]
                out.append(etcd.KV({"key": etcd.b64(key), "value": etcd.b64(value), "create_revision": created, "mod_revision": modified}))
        return self.revision, out

    def txn(self, compare, success, failure=()):
        self.txns = getattr(self, "txns", 0) + 1
        if self.before_txn:
            hook, self.before_txn = self.before_txn, None
            hook(compare)
        ok = True
        for c in compare:
            key = etcd.unb64(c["key"]).decode()
            current = self.kv.get(key)
            if c["target"] == "CREATE":
                ok &= current is None
            else:
                ok &= current is not None and current[2] == int(c["mod_revision"])
        for op in success if ok else failure:
            self.revision += 1
            if "request_put" in op:
                key = etcd.unb64(op["request_put"]["key"]).decode()
                created = self.kv[key][1] if key in self.kv else self.revision
                self.kv[key] = (etcd.unb64(op["request_put"]["value"]), created, self.revision)
            else:
                self.kv.pop(etcd.unb64(op["request_delete_range"]["key"]).decode(), None)
        return ok

    def grant(self, ttl):
        return 7

    def keepalive(self, lease):
        return 10


def store(fake, node="n1", **kw):
    return LeaseStore(VxlanConf.load(CmdArgs.for_config(conf(nodeName=node, network="198.18.0.0/22", **kw), command="ADD")), fake)


def test_lease_is_taken_once_and_kept():
    fake = FakeEtcd()
    lease, _ = store(fake).acquire(ip_address("192.0.2.1"), 1500)
    again, _ = store(fake).acquire(ip_address("192.0.2.1"), 1500)
    assert again.peer.subnet == lease.peer.subnet and lease.peer.mac == vtep_mac(lease.peer.subnet)
    assert json.loads(fake.kv["/cni-vxlan/overlay/nodes/n1"][0]) == {"subnet": str(lease.peer.subnet)}
    assert json.loads(fake.kv["/cni-vxlan/overlay/config"][0]) == {"network": "198.18.0.0/22", "subnetLen": 24, "vni": 1, "port": 4789}


def test_a_moved_vtep_updates_the_record_in_place():
    fake = FakeEtcd()
    lease, _ = store(fake).acquire(ip_address("192.0.2.1"), 1500)
    moved, _ = store(fake).acquire(ip_address("192.0.2.11"), 1500)
    assert moved.peer.subnet == lease.peer.subnet and str(moved.peer.vtep) == "192.0.2.11"
    key = f"/cni-vxlan/overlay/subnets/{lease.peer.subnet.network_address}-24"
    assert json.loads(fake.kv[key][0])["vtep"] == "192.0.2.11"


def test_a_lost_race_retries_with_another_subnet():
    fake = FakeEtcd()
    store(fake).ensure_config(store(fake).snapshot())
    stolen = []

    def rival_claims_the_same_subnet(compare):
        # between n1's read and its transaction, n2 takes exactly the subnet n1 is after
        key = etcd.unb64(compare[0]["key"]).decode()
        stolen.append(key)
        fake.kv[key] = (json.dumps({"node": "n2", "vtep": "192.0.2.2"}).encode(), 99, 99)

    fake.before_txn = rival_claims_the_same_subnet
    fake.txns = 0
    mine, _ = store(fake).acquire(ip_address("192.0.2.1"), 1500)
    assert fake.txns == 2  # the first create-if-absent failed, the retry won
    assert stolen[0].endswith(f"{mine.peer.subnet.network_address}-24") is False
    assert store(fake).snapshot().leases["n2"].peer.subnet != mine.peer.subnet


def test_subnets_run_out_cleanly():
    fake = FakeEtcd()
    got = {store(fake, node=f"n{i}").acquire(ip_address(f"192.0.2.{i}"), 1500)[0].peer.subnet for i in range(1, 4)}
    assert len(got) == 3 and ip_network("198.18.0.0/24") not in got  # the first subnet is skipped, as flannel does
    with pytest.raises(CNIError) as err:
        store(fake, node="n4").acquire(ip_address("192.0.2.4"), 1500)
    assert err.value.code == 100


def test_nodes_must_agree_on_the_overlay():
    fake = FakeEtcd()
    store(fake).acquire(ip_address("192.0.2.1"), 1500)
    with pytest.raises(CNIError) as err:
        store(fake, node="n2", vni=2).acquire(ip_address("192.0.2.2"), 1500)
    assert err.value.code == 7 and "vni: 1 in the store vs 2 here" in err.value.details


def test_remove_node_deletes_both_keys():
    fake = FakeEtcd()
    store(fake, node="n2").acquire(ip_address("192.0.2.2"), 1500)
    assert store(fake).remove_node("n2")
    assert not [k for k in fake.kv if "n2" in k or "subnets" in k]
    assert store(fake).remove_node("n2") is False


def test_a_stray_node_key_is_taken_over_not_a_permanent_error():
    """nodes/<node> without its subnets/ record (issue 14: it made the node fail forever with code 11)."""
    fake = FakeEtcd()
    fake.kv["/cni-vxlan/overlay/nodes/n1"] = (json.dumps({"subnet": "198.18.2.0/24"}).encode(), 1, 1)
    lease, _ = store(fake).acquire(ip_address("192.0.2.1"), 1500)
    assert str(lease.peer.subnet) == "198.18.2.0/24"  # the subnet it named, being free
    assert json.loads(fake.kv["/cni-vxlan/overlay/nodes/n1"][0]) == {"subnet": "198.18.2.0/24"}
    assert "/cni-vxlan/overlay/subnets/198.18.2.0-24" in fake.kv
    again, _ = store(fake).acquire(ip_address("192.0.2.1"), 1500)
    assert again.peer.subnet == lease.peer.subnet


def test_a_stray_node_key_naming_a_taken_or_unreadable_subnet_gets_another():
    fake = FakeEtcd()
    other, _ = store(fake, node="n2").acquire(ip_address("192.0.2.2"), 1500)
    for named in ({"subnet": str(other.peer.subnet)}, "garbage"):
        fake.kv["/cni-vxlan/overlay/nodes/n1"] = (json.dumps(named).encode(), fake.revision, fake.revision)
        fake.kv.pop(next((k for k in fake.kv if k.startswith("/cni-vxlan/overlay/subnets/") and "n1" in fake.kv[k][0].decode()), ""), None)
        lease, _ = store(fake).acquire(ip_address("192.0.2.1"), 1500)
        assert lease.peer.subnet != other.peer.subnet
        assert json.loads(fake.kv["/cni-vxlan/overlay/nodes/n1"][0]) == {"subnet": str(lease.peer.subnet)}
