"""The dual-stack overlay without the kernel: the IPv6 keys, leases per family, the plan, the delegate config."""

import json
from ipaddress import ip_address, ip_network

import pytest

from cni_vxlan.conf import Peer, VxlanConf, vtep_mac
from cni_vxlan.peers import Lease
from cni_vxlan.plugin import delegate_config
from cni_vxlan.reconcile import plan, plan_changes
from cni_vxlan.store import LeaseStore
from cni_vxlan.tests.test_units import FakeEtcd
from common.errors import CNIError, Code
from common.netlink import RouteEntry
from common.netlink.addr import Neighbour
from common.skel import CmdArgs

pytestmark = pytest.mark.unit

BASE = {"cniVersion": "1.1.0", "name": "overlay", "type": "vxlan", "network": "198.18.0.0/16", "nodeName": "n1"}
V6 = "fd42:198:18::/48"
PREFIX = "/cni-vxlan/overlay/"


def load(**keys) -> VxlanConf:
    return VxlanConf.load(CmdArgs.for_config({**BASE, **keys}, command="ADD"))


def refused(**keys) -> CNIError:
    with pytest.raises(CNIError) as err:
        load(**keys)
    assert err.value.code == Code.INVALID_CONFIG, err.value
    return err.value


# --- the IPv6 keys -----------------------------------------------------------------------------


def test_without_ipv6network_the_overlay_is_ipv4_only():
    c = load()
    assert (c.ipv6_network, c.ipv6_subnet_len) == (None, 0)


def test_ipv6_keys_and_their_default():
    assert (load(ipv6Network=V6).ipv6_network, load(ipv6Network=V6).ipv6_subnet_len) == (ip_network(V6), 64)
    assert load(ipv6Network=V6, ipv6SubnetLen=80).ipv6_subnet_len == 80


@pytest.mark.parametrize(
    "keys, fragment",
    [
        ({"ipv6Network": "fe80::/10"}, "overlaps fe80::/10"),
        ({"ipv6Network": "fe80:1::/64"}, "overlaps fe80::/10"),
        ({"ipv6Network": "ff05::/16"}, "overlaps ff00::/8"),
        ({"ipv6Network": "::1/128"}, "overlaps ::/8"),
        ({"ipv6Network": "::ffff:10.0.0.0/104"}, "overlaps ::/8"),
        ({"ipv6Network": "::/0"}, "overlaps ::/8"),
        ({"ipv6Network": "fec0::/48"}, "overlaps fec0::/10"),
        ({"ipv6Network": "10.0.0.0/8"}, "not IPv6"),
        ({"ipv6Network": "fd42::1/48"}, "host bits set"),
        ({"ipv6Network": "fd42::/48x"}, "does not appear to be"),
        ({"ipv6Network": ""}, "ipv6Network"),
        ({"ipv6Network": 48}, "ipv6Network"),
        ({"ipv6Network": V6, "ipv6SubnetLen": 121}, "at most 120"),
        ({"ipv6Network": V6, "ipv6SubnetLen": 48}, "longer than the network's prefix"),
        ({"ipv6Network": V6, "ipv6SubnetLen": 40}, "longer than the network's prefix"),
        ({"ipv6Network": V6, "ipv6SubnetLen": "64"}, "ipv6SubnetLen"),
        ({"ipv6Network": V6, "ipv6SubnetLen": True}, "ipv6SubnetLen"),
        ({"ipv6SubnetLen": 64}, "ipv6SubnetLen without ipv6Network"),
    ],
)
def test_bad_ipv6_keys_are_code_7(keys, fragment):
    err = refused(**keys)
    assert fragment in f"{err.msg} {err.details}"


N1 = {"node": "n1", "vtep": "192.0.2.1", "subnet": "198.18.1.0/24", "subnet6": "fd42:198:18:1::/64"}
N2 = {"node": "n2", "vtep": "192.0.2.2", "subnet": "198.18.2.0/24", "subnet6": "fd42:198:18:2::/64"}
N3 = {"node": "n3", "vtep": "192.0.2.3", "subnet": "198.18.3.0/24"}  # an IPv4 peer


def test_static_peers_carry_an_optional_ipv6_subnet():
    c = load(ipv6Network=V6, peerSource="static", peers=[N1, N2, N3])
    assert [str(p.subnet6) for p in c.peers] == ["fd42:198:18:1::/64", "fd42:198:18:2::/64", "None"]
    assert c.peers[0].base6 == ip_address("fd42:198:18:1::") and c.peers[2].base6 is None


@pytest.mark.parametrize(
    "peers, fragment",
    [
        ([dict(N1, subnet6="fd42:198:19:1::/64"), N2], "not a /64 inside fd42:198:18::/48"),
        ([dict(N1, subnet6="fd42:198:18:1::/80"), N2], "not a /64 inside"),
        ([dict(N1, subnet6="198.18.9.0/24"), N2], "not a /64 inside"),
        ([dict(N1, subnet6="nonsense"), N2], "subnet6"),
        ([dict(N1, subnet6=64), N2], "subnet6"),
        ([N1, dict(N2, subnet6=N1["subnet6"])], "duplicate subnet6"),
        ([dict(N1, subnet6=None), N2], "static peer n1 has no subnet6"),
    ],
)
def test_bad_static_ipv6_subnets_are_code_7(peers, fragment):
    err = refused(ipv6Network=V6, peerSource="static", peers=[{k: v for k, v in p.items() if v is not None} for p in peers])
    assert fragment in f"{err.msg} {err.details}"


def test_a_static_subnet6_needs_ipv6network():
    err = refused(peerSource="static", peers=[N1, N2])
    assert "subnet6 needs ipv6Network" in err.details


# --- leases per family over a fake etcd -----------------------------------------------------------


def store(fake, node="n1", **kw):
    config = {**BASE, "nodeName": node, "network": "198.18.0.0/21", "ipv6Network": "fd42:198:18::/62", **kw}
    config = {k: v for k, v in config.items() if v is not None}
    return LeaseStore(VxlanConf.load(CmdArgs.for_config(config, command="ADD")), fake)


def test_a_node_leases_one_subnet_per_family_in_one_transaction_and_keeps_them():
    fake = FakeEtcd()
    fake.txns = 0
    lease, _ = store(fake).acquire(ip_address("192.0.2.1"), 1500)
    assert fake.txns == 2  # the config record, then both subnets and the node key together
    subnet, subnet6 = lease.peer.subnet, lease.peer.subnet6
    assert subnet6 is not None and subnet6.prefixlen == 64 and subnet6 != ip_network("fd42:198:18::/64")  # the first is skipped
    assert json.loads(fake.kv[f"{PREFIX}subnets6/{subnet6.network_address}-64"][0]) == {"node": "n1"}
    assert json.loads(fake.kv[f"{PREFIX}subnets/{subnet.network_address}-24"][0])["subnet6"] == str(subnet6)
    assert json.loads(fake.kv[f"{PREFIX}nodes/n1"][0]) == {"subnet": str(subnet), "subnet6": str(subnet6)}
    assert json.loads(fake.kv[f"{PREFIX}config"][0]) == {
        "network": "198.18.0.0/21", "subnetLen": 24, "vni": 1, "port": 4789, "ipv6Network": "fd42:198:18::/62", "ipv6SubnetLen": 64,
    }  # fmt: skip
    again, _ = store(fake).acquire(ip_address("192.0.2.1"), 1500)
    assert (again.peer.subnet, again.peer.subnet6) == (subnet, subnet6)


def test_three_nodes_get_every_ipv6_subnet_left_and_a_fourth_is_refused():
    fake = FakeEtcd()
    got = {store(fake, node=f"n{i}").acquire(ip_address(f"192.0.2.{i}"), 1500)[0].peer.subnet6 for i in range(1, 4)}
    assert got == {ip_network(f"fd42:198:18:{i}::/64") for i in (1, 2, 3)}
    with pytest.raises(CNIError) as err:
        store(fake, node="n4").acquire(ip_address("192.0.2.4"), 1500)
    assert err.value.code == Code.RANGE_EXHAUSTED and "fd42:198:18::/62" in err.value.msg


def test_a_claimed_ipv6_subnet_is_never_taken_twice():
    fake = FakeEtcd()
    for i in (1, 2, 3):  # a foreign claim on all but one: the node gets the one left
        if i != 2:
            fake.kv[f"{PREFIX}subnets6/fd42:198:18:{i}::-64"] = (json.dumps({"node": "x"}).encode(), 1, 1)
    lease, _ = store(fake).acquire(ip_address("192.0.2.1"), 1500)
    assert lease.peer.subnet6 == ip_network("fd42:198:18:2::/64")


def test_an_old_ipv4_only_record_is_an_ipv4_peer_and_its_node_gets_an_ipv6_subnet_on_upgrade():
    fake = FakeEtcd()
    old = {"node": "n2", "vtep": "192.0.2.2", "vtepMAC": vtep_mac(ip_network("198.18.2.0/24")), "underlayMTU": 1500, "updated": "x"}
    fake.kv[f"{PREFIX}subnets/198.18.2.0-24"] = (json.dumps(old).encode(), 1, 1)
    fake.kv[f"{PREFIX}nodes/n2"] = (json.dumps({"subnet": "198.18.2.0/24"}).encode(), 1, 1)
    mine, snap = store(fake).acquire(ip_address("192.0.2.1"), 1500)
    (peer,) = store(fake).peers(snap)
    assert (peer.node, str(peer.subnet), peer.subnet6) == ("n2", "198.18.2.0/24", None)
    upgraded, _ = store(fake, node="n2").acquire(ip_address("192.0.2.2"), 1500)  # n2 now runs this version
    assert str(upgraded.peer.subnet) == "198.18.2.0/24" and upgraded.peer.subnet6 not in (None, mine.peer.subnet6)
    assert json.loads(fake.kv[f"{PREFIX}subnets/198.18.2.0-24"][0])["subnet6"] == str(upgraded.peer.subnet6)
    assert json.loads(fake.kv[f"{PREFIX}subnets6/{upgraded.peer.subnet6.network_address}-64"][0]) == {"node": "n2"}


def test_ipv6_settings_must_agree_both_ways():
    fake = FakeEtcd()
    store(fake).acquire(ip_address("192.0.2.1"), 1500)
    for kw, fragment in (
        ({"ipv6SubnetLen": 80}, "ipv6SubnetLen: 64 in the store vs 80 here"),
        ({"ipv6Network": None}, "ipv6Network: fd42:198:18::/62 in the store vs None here"),
    ):
        with pytest.raises(CNIError) as err:
            store(fake, node="n2", **kw).acquire(ip_address("192.0.2.2"), 1500)
        assert err.value.code == 7 and fragment in err.value.details
    v4 = FakeEtcd()  # and an IPv4-only network's record refuses a dual-stack node
    store(v4, ipv6Network=None).acquire(ip_address("192.0.2.1"), 1500)
    with pytest.raises(CNIError) as err:
        store(v4, node="n2").acquire(ip_address("192.0.2.2"), 1500)
    assert "ipv6Network: None in the store vs fd42:198:18::/62 here" in err.value.details


def test_remove_node_deletes_its_ipv6_claim_too():
    fake = FakeEtcd()
    store(fake, node="n2").acquire(ip_address("192.0.2.2"), 1500)
    assert store(fake).remove_node("n2")
    assert not [k for k in fake.kv if k != f"{PREFIX}config"]


def test_an_ipv6_subnet_outside_the_network_is_not_programmed():
    fake = FakeEtcd()
    n2, _ = store(fake, node="n2").acquire(ip_address("192.0.2.2"), 1500)
    record = json.loads(fake.kv[f"{PREFIX}subnets/{n2.peer.subnet.network_address}-24"][0])
    fake.kv[f"{PREFIX}subnets/{n2.peer.subnet.network_address}-24"] = (json.dumps(dict(record, subnet6="2001:db8::/64")).encode(), 50, 50)
    _, snap = store(fake).acquire(ip_address("192.0.2.1"), 1500)
    assert [(p.node, p.subnet6) for p in store(fake).peers(snap)] == [("n2", None)]


# --- the plan over both families -----------------------------------------------------------------


def peer(n: int, v6: bool = True) -> Peer:
    subnet = ip_network(f"198.18.{n}.0/24")
    return Peer(f"n{n}", ip_address(f"192.0.2.{n}"), subnet, vtep_mac(subnet), ip_network(f"fd42:198:18:{n}::/64") if v6 else None)


def routes(p: Peer) -> list:
    return [RouteEntry(p.subnet, p.base, 5, 254, 0, 241, 0, True), RouteEntry(p.subnet6, p.base6, 5, 254, 0, 241, 0, True)]


def neighbours(p: Peer) -> list:
    return [Neighbour(5, p.base, p.mac, 0x80, 0), Neighbour(5, p.base6, p.mac, 0x80, 0)]


def test_plan_programs_both_families_and_one_fdb_entry_per_peer():
    p2, p3, p4 = peer(2), peer(3), peer(4, v6=False)
    todo = plan([p2, p3, p4], routes(p2)[:1], neighbours(p2), [Neighbour(5, p2.vtep, p2.mac, 0xC0, 2)])
    assert todo.routes == [(p2.subnet6, p2.base6), (p3.subnet, p3.base), (p3.subnet6, p3.base6), (p4.subnet, p4.base)]
    assert todo.neighbours == [(p3.base, p3.mac), (p3.base6, p3.mac), (p4.base, p4.mac)]
    assert todo.fdb == [(p3.mac, p3.vtep), (p4.mac, p4.vtep)]
    assert not todo.stale_routes and not todo.stale_neighbours
    gone = plan([p3], routes(p2) + routes(p3), neighbours(p2) + neighbours(p3), [])
    assert [r.dst for r in gone.stale_routes] == [p2.subnet, p2.subnet6] and gone.stale_neighbours == [p2.base, p2.base6]


def test_plan_changes_covers_ipv6_entries():
    p2, p3 = peer(2), peer(3)
    todo = plan_changes([p2], [p3], oif=5)
    assert todo.routes == [(p2.subnet, p2.base), (p2.subnet6, p2.base6)]
    assert todo.neighbours == [(p2.base, p2.mac), (p2.base6, p2.mac)]
    assert [(r.dst, r.gw) for r in todo.stale_routes] == [(p3.subnet, p3.base), (p3.subnet6, p3.base6)]
    assert todo.stale_neighbours == [p3.base, p3.base6] and todo.stale_fdb == [(p3.mac, p3.vtep)]
    lost6 = plan_changes([peer(2, v6=False)], [p2], oif=5)  # a peer that lost its IPv6 subnet: only those entries go
    assert [r.dst for r in lost6.stale_routes] == [p2.subnet6] and lost6.stale_neighbours == [p2.base6] and not lost6.stale_fdb


# --- the delegate ------------------------------------------------------------------------------


def test_the_delegate_gets_a_range_set_and_a_route_per_family():
    c = load(ipv6Network=V6)
    out = delegate_config(c, Lease(peer(3), 1500), 1450, {"cniVersion": "1.1.0"})
    assert out["ipam"]["ranges"] == [[{"subnet": "198.18.3.0/24"}], [{"subnet": "fd42:198:18:3::/64"}]]
    assert out["ipam"]["routes"] == [{"dst": "198.18.0.0/16"}, {"dst": V6}]
    assert out["isDefaultGateway"] is True  # a default route for each family the pod gets an address of
    v4 = delegate_config(load(), Lease(peer(3), 1500), 1450, {"cniVersion": "1.1.0"})
    assert v4["ipam"]["ranges"] == [[{"subnet": "198.18.3.0/24"}]] and v4["ipam"]["routes"] == [{"dst": "198.18.0.0/16"}]


def test_a_claim_left_by_a_lost_record_is_taken_back_not_orphaned():
    fake = FakeEtcd()
    lease, _ = store(fake).acquire(ip_address("192.0.2.1"), 1500)
    subnet6 = lease.peer.subnet6
    for key in (f"{PREFIX}subnets/{lease.peer.subnet.network_address}-24", f"{PREFIX}nodes/n1"):
        del fake.kv[key]  # the record and node key lost (a hand edit); the IPv6 claim stays
    again, _ = store(fake).acquire(ip_address("192.0.2.1"), 1500)
    assert again.peer.subnet6 == subnet6
    assert [k for k in fake.kv if "/subnets6/" in k] == [f"{PREFIX}subnets6/{subnet6.network_address}-64"]
