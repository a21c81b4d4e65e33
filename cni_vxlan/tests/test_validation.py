"""Hostile vxlan configs: code 7 at config load (never 999), and what detect_vtep refuses before touching the node."""

import copy
import os

import pytest

from cni_vxlan import etcd
from cni_vxlan.conf import VxlanConf
from common.errors import CNIError
from common.skel import CmdArgs
from conformance.testbed import Testbed, ping

N1 = {"node": "n1", "vtep": "192.0.2.1", "subnet": "198.18.1.0/24"}
N2 = {"node": "n2", "vtep": "192.0.2.2", "subnet": "198.18.2.0/24"}


def conf(**kw) -> dict:
    base = {"cniVersion": "1.1.0", "name": "overlay", "type": "vxlan", "network": "198.18.0.0/16", "nodeName": "n1"}
    base.update(kw)
    return base


def static(*peers) -> dict:
    return conf(peerSource="static", peers=list(peers))


def refused(config: dict) -> CNIError:
    with pytest.raises(CNIError) as err:
        VxlanConf.load(CmdArgs.for_config(config, command="ADD"))
    assert err.value.code == 7, err.value
    return err.value


# --- static peers -----------------------------------------------------------------

BAD_PEERS = [
    (dict(N2, mac="0e:56:zz:00:00:01"), "six colon-separated hex octets"),
    (dict(N2, mac="0e:56:00:00:01"), "six colon-separated hex octets"),
    (dict(N2, mac="0e-56-c6-12-02-00"), "six colon-separated hex octets"),
    (dict(N2, mac="ff:ff:ff:ff:ff:ff"), "multicast MAC"),
    (dict(N2, mac="01:00:5e:00:00:01"), "multicast MAC"),
    (dict(N2, mac="00:00:00:00:00:00"), "all-zero"),
    (dict(N2, vtep="0.0.0.0"), "unspecified"),
    (dict(N2, vtep="255.255.255.255"), "broadcast"),
    (dict(N2, vtep="224.0.0.1"), "multicast address"),
    (dict(N2, vtep="127.0.0.2"), "loopback"),
    (dict(N2, vtep="::ffff:192.0.2.2"), "IPv4-mapped"),
    (dict(N2, vtep="192.0.2.1"), "duplicate vtep 192.0.2.1"),
    (dict(N2, node="n1"), "duplicate node n1"),
    (dict(N2, subnet="198.18.1.0/24"), "duplicate subnet 198.18.1.0/24"),
    (dict(N2, subnet="2001::/24"), "not a /24 inside"),
    (dict(N2, node="n/2"), "node name"),
    (dict(N2, mac="0E:56:C6:12:01:00"), "duplicate mac 0e:56:c6:12:01:00"),  # n1's, derived from its subnet
]


@pytest.mark.unit
@pytest.mark.parametrize("bad,fragment", BAD_PEERS, ids=[f"{b.get('mac') or b['vtep']}-{f}" for b, f in BAD_PEERS])
def test_a_bad_static_peer_is_refused_naming_it(bad, fragment):
    err = refused(static(N1, bad))
    assert fragment in err.details, err
    assert "peers[1]" in err.msg and bad["node"] in err.msg, err


@pytest.mark.unit
@pytest.mark.parametrize("vtep", ["::", "::1", "ff02::1"])
def test_unusable_ipv6_vteps_are_refused(vtep):
    refused(static(dict(N1, vtep="2001:db8::1"), dict(N2, vtep=vtep)))


@pytest.mark.unit
def test_peers_that_mix_families_are_refused():
    err = refused(static(N1, dict(N2, vtep="2001:db8::2")))
    assert "mix IPv4 and IPv6" in err.msg and "n2 has 2001:db8::2" in err.details


@pytest.mark.unit
def test_an_explicit_mac_is_kept_in_the_kernels_lowercase():
    c = VxlanConf.load(CmdArgs.for_config(static(dict(N1, mac="02:AB:00:00:00:01"), N2), command="ADD"))
    assert [p.mac for p in c.peers] == ["02:ab:00:00:00:01", "0e:56:c6:12:02:00"]


# --- etcd endpoints: one parser for the config and the client -----------------------

BAD_ENDPOINTS = [
    "http://",
    "http://[::1",
    "http://[::1]",
    "http://[::1]:",
    "http://host",
    "http://host:",
    "http://:2379",
    "http://host:0",
    "http://host:65536",
    "http://host:99999999999999999999",
    "http://host:２３７９",
    "http://host:²",
    "ftp://host:2379",
    "host:2379",
    "http://user@host:2379",
    "http://::1:2379",
    "http://[192.0.2.1]:2379",
    "http://[banana]:2379",
    "http://999.0.2.1:2379",
    "http://hôst:2379",
    "http://host:2379?x=1",
    "https://",
]


@pytest.mark.unit
@pytest.mark.parametrize("url", BAD_ENDPOINTS)
def test_a_malformed_endpoint_is_refused_at_load_and_by_the_client(url):
    err = refused(conf(etcd={"endpoints": ["http://127.0.0.1:2379", url]}))
    assert err.msg == "invalid etcd.endpoints", err
    with pytest.raises(ValueError):
        etcd.Client([url])


@pytest.mark.unit
@pytest.mark.parametrize(
    "url,parsed",
    [
        ("http://127.0.0.1:2379", ("http", "127.0.0.1", 2379)),
        ("https://etcd-0.etcd.svc:2379/", ("https", "etcd-0.etcd.svc", 2379)),
        ("http://[2001:db8::1]:2379", ("http", "2001:db8::1", 2379)),
    ],
)
def test_good_endpoints(url, parsed):
    assert etcd.parse_endpoint(url) == parsed
    assert VxlanConf.load(CmdArgs.for_config(conf(etcd={"endpoints": [url]}), command="ADD")).etcd.endpoints == (url,)


# --- any other hostile value: code 7, never another exception ------------------------

HOSTILE = [
    {"name": None},
    {"name": 7},
    {"network": 10},
    {"network": "0.0.0.0/0"},
    {"network": "127.0.0.0/16"},
    {"network": "224.1.0.0/16"},
    {"subnetLen": -1},
    {"subnetLen": 2**64},
    {"subnetLen": 24.0},
    {"vni": -1},
    {"vni": 2**64},
    {"vni": True},
    {"port": 10**30},
    {"mtu": -5},
    {"mtu": "1400"},
    {"subnetMin": "2001::/24"},
    {"subnetMax": "2001::"},
    {"subnetMin": 5},
    {"device": ["x"]},
    {"vtepInterface": "a/b"},
    {"vtepInterface": "x" * 16},
    {"vtepAddress": "0.0.0.0"},
    {"vtepAddress": "::1"},
    {"vtepAddress": "fe80::1%eth0"},
    {"vtepAddress": {}},
    {"nodeName": "a b"},
    {"nodeName": "n" * 254},
    {"nodeName": "n1\n"},
    {"dataDir": "/var/lib/\0x"},
    {"dataDir": 3},
    {"peerSource": 1},
    {"delegate": "x"},
    {"delegate": {"bridge": 5}},
    {"ipam": []},
    {"txChecksumOffload": 1},
    {"etcd": "x"},
    {"etcd": {"endpoints": "http://x:1"}},
    {"etcd": {"endpoints": [1]}},
    {"etcd": {"timeout": 10**400}},
    {"etcd": {"timeout": True}},
    {"etcd": {"timeout": -1}},
    {"etcd": {"leaseTTL": -1}},
    {"etcd": {"prefix": 5}},
    {"etcd": {"caFile": "/ca\0"}},
    {"etcd": {"keyFile": 1}},
    {"peerSource": "static", "peers": "n1"},
    {"peerSource": "static", "peers": [1]},
    {"peerSource": "static", "peers": [None]},
    {"peerSource": "static", "peers": [dict(N1, node=5)]},
    {"peerSource": "static", "peers": [dict(N1, vtep=2**64)]},
    {"peerSource": "static", "peers": [dict(N1, subnet="2001::/24")]},
    {"peerSource": "static", "peers": [dict(N1, mac=5)]},
    {"peerSource": "static", "peers": [dict(N1, vtep="x" * 10000)]},
    {"peerSource": "static", "peers": []},
]


@pytest.mark.unit
@pytest.mark.parametrize("change", HOSTILE, ids=[repr(c)[:60] for c in HOSTILE])
def test_hostile_values_are_code_7(change):
    refused(conf(**change))


def _paths(value, path=()):
    if isinstance(value, dict):
        for key, item in value.items():
            yield path + (key,)
            yield from _paths(item, path + (key,))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield path + (i,)
            yield from _paths(item, path + (i,))


@pytest.mark.unit
def test_every_key_with_every_hostile_value_loads_or_is_code_7():
    full = conf(
        vni=5,
        port=4789,
        device="vx0",
        vtepInterface="eth0",
        vtepAddress="192.0.2.1",
        mtu=1400,
        subnetLen=24,
        subnetMin="198.18.1.0",
        subnetMax="198.18.9.0",
        dataDir="/tmp/x",
        txChecksumOffload=True,
        delegate={"bridge": "br0"},
        ipam={},
    )
    etcd_mode = dict(full, etcd={"endpoints": ["http://127.0.0.1:2379"], "prefix": "/x", "timeout": 2, "leaseTTL": 5, "caFile": "a"})
    static_mode = dict(full, peerSource="static", peers=[dict(N1, mac="02:00:00:00:00:01"), N2])
    values = [
        None,
        True,
        0,
        -1,
        2**64,
        10**400,
        1.5,
        "",
        " ",
        "\0",
        "x" * 5000,
        "::",
        "0.0.0.0",
        "0.0.0.0/0",
        "2001::/24",
        "2001::",
        "198.18.1.0/33",
        "http://",
        "é",
        [],
        [None],
        ["x"],
        {},
        {"a": 1},
        "ff:ff:ff:ff:ff:ff",
    ]
    for base in (etcd_mode, static_mode):
        for path in list(_paths(base)):
            for value in values:
                config = copy.deepcopy(base)
                parent = config
                for step in path[:-1]:
                    parent = parent[step]
                parent[path[-1]] = value
                try:
                    VxlanConf.load(CmdArgs.for_config(config, command="ADD"))
                except CNIError as err:
                    assert err.code == 7, (path, value, err)


# --- refused by detect_vtep on a real node, before anything is touched -----------------


@pytest.fixture
def bed():
    with Testbed() as b:
        yield b


def node_conf(bed, node, name="overlay", network="198.18.0.0/16", **kw) -> dict:
    c = {
        "cniVersion": "1.1.0",
        "name": name,
        "type": "vxlan",
        "network": network,
        "nodeName": node.name,
        "peerSource": "static",
        "dataDir": f"{bed.tmp}/{node.name}/vxlan",
        "ipam": {"dataDir": f"{bed.tmp}/{node.name}/ipam"},
    }
    c.update(kw)
    return c


def add(bed, node, pod, bin_dir, config):
    node.pod(pod)
    return node.run(os.path.join(bin_dir, "vxlan"), "ADD", config, pod, bin_dir)


def links(node) -> list[str]:
    return sorted(link["ifname"] for link in node.ns.ipj("link", "show"))


@pytest.mark.root
@pytest.mark.parametrize(
    "network,subnet", [("198.18.0.0/16", "198.18.7.0/24"), ("198.18.0.0/17", "198.18.7.0/24"), ("198.16.0.0/14", "198.16.7.0/24")]
)
def test_a_second_network_over_the_same_range_is_refused(bed, bin_dir, network, subnet):
    n1 = bed.add_node("n1")
    first = add(bed, n1, "a", bin_dir, node_conf(bed, n1, peers=[dict(N1, vtep=n1.address)]))
    assert first.ok, first
    before = links(n1)
    second = node_conf(
        bed, n1, name="second", network=network, vni=2, delegate={"bridge": "cnivx2"}, peers=[dict(N1, vtep=n1.address, subnet=subnet)]
    )
    out = add(bed, n1, "b", bin_dir, second)
    assert out.rc != 0 and out.json["code"] == 103, out
    assert "cnivx.1" in out.json["msg"] and "198.18.1.0/32" in out.json["msg"], out
    assert links(n1) == before and [link["ifname"] for link in n1.pods["b"].ipj("link", "show")] == ["lo"]


@pytest.mark.root
def test_an_overlap_with_another_overlays_peer_routes_is_refused_and_a_disjoint_range_is_not(bed, bin_dir):
    n1, n2 = bed.add_node("n1"), bed.add_node("n2")
    peers = [dict(N1, vtep=n1.address), dict(N2, vtep=n2.address, subnet="198.18.200.0/24")]
    assert add(bed, n1, "a", bin_dir, node_conf(bed, n1, peers=peers)).ok
    # overlaps only the route to n2's subnet, not n1's own address
    overlapping = node_conf(
        bed,
        n1,
        name="second",
        network="198.18.200.0/22",
        vni=2,
        delegate={"bridge": "cnivx2"},
        peers=[dict(N1, vtep=n1.address, subnet="198.18.201.0/24")],
    )
    out = add(bed, n1, "b", bin_dir, overlapping)
    assert out.rc != 0 and out.json["code"] == 103 and "198.18.200.0/24" in out.json["msg"], out
    assert "cnivx.2" not in links(n1)
    disjoint = dict(overlapping, network="198.19.0.0/16", peers=[dict(N1, vtep=n1.address, subnet="198.19.1.0/24")])
    out = add(bed, n1, "c", bin_dir, disjoint)
    assert out.ok, out
    assert "cnivx.2" in links(n1)


@pytest.mark.root
def test_a_second_network_on_the_same_device_is_refused(bed, bin_dir):
    n1 = bed.add_node("n1")
    assert add(bed, n1, "a", bin_dir, node_conf(bed, n1, peers=[dict(N1, vtep=n1.address)])).ok
    other = node_conf(
        bed, n1, name="second", network="198.19.0.0/16", delegate={"bridge": "cnivx2"}, peers=[dict(N1, vtep=n1.address, subnet="198.19.1.0/24")]
    )  # the same default vni: the same device
    out = add(bed, n1, "b", bin_dir, other)
    assert out.rc != 0 and out.json["code"] == 103 and "the same vni" in out.json["details"], out
    addresses = [a["local"] for a in n1.ns.ipj("addr", "show", "cnivx.1")[0]["addr_info"] if a["family"] == "inet"]
    assert addresses == ["198.18.1.0"]


@pytest.mark.root
def test_a_copy_of_a_network_under_another_name_is_refused(bed, bin_dir):
    """The same range and the same vni: the kernel holds nothing that tells the two apart, the device's alias does."""
    n1 = bed.add_node("n1")
    first = node_conf(bed, n1, peers=[dict(N1, vtep=n1.address)])
    assert add(bed, n1, "a", bin_dir, first).ok
    assert n1.ns.ipj("-d", "link", "show", "cnivx.1")[0].get("ifalias") == "cni-vxlan network overlay"
    before = links(n1)
    out = add(bed, n1, "b", bin_dir, dict(first, name="copy", delegate={"bridge": "cnivx2"}))
    assert out.rc != 0 and out.json["code"] == 103 and "'overlay'" in out.json["msg"], out
    assert links(n1) == before and [link["ifname"] for link in n1.pods["b"].ipj("link", "show")] == ["lo"]
    assert add(bed, n1, "c", bin_dir, first).ok  # the owner itself goes on


@pytest.mark.root
def test_peers_of_the_other_family_than_this_nodes_vtep_are_refused(bed, bin_dir):
    n1 = bed.add_node("n1")
    peers = [dict(N1, vtep="2001:db8:ffff::1"), dict(N2, vtep="2001:db8:ffff::2")]  # the node has IPv4 only
    out = add(bed, n1, "a", bin_dir, node_conf(bed, n1, peers=peers))
    assert out.rc != 0 and out.json["code"] == 7 and "IPv6" in out.json["msg"] and "IPv4" in out.json["msg"], out
    assert links(n1) == ["eth0", "lo"]


@pytest.mark.root
@pytest.mark.parametrize(
    "change",
    [
        {"peers": [N1, dict(N2, mac="ff:ff:ff:ff:ff:ff")]},
        {"peers": [N1, dict(N2, mac="not-a-mac")]},
        {"peerSource": "etcd", "etcd": {"endpoints": ["http://[::1"]}},
        {"etcd": {"endpoints": ["http://"]}, "peerSource": "etcd"},
    ],
)
def test_the_plugin_answers_code_7_not_999(bed, bin_dir, change):
    n1 = bed.add_node("n1")
    out = add(bed, n1, "a", bin_dir, node_conf(bed, n1, **change))
    assert out.rc != 0 and out.json["code"] == 7, out
    assert links(n1) == ["eth0", "lo"]


@pytest.mark.root
def test_a_static_peers_own_mac_is_the_devices(bed, bin_dir):
    n1, n2 = bed.add_node("n1"), bed.add_node("n2")
    peers = [dict(N1, vtep=n1.address, mac="02:00:00:00:01:01"), dict(N2, vtep=n2.address, mac="02:00:00:00:02:02")]
    outs = [add(bed, n, "p" + n.name, bin_dir, node_conf(bed, n, peers=peers)) for n in (n1, n2)]
    assert all(out.ok for out in outs), outs
    assert n1.ns.ipj("link", "show", "cnivx.1")[0]["address"] == "02:00:00:00:01:01"
    address = outs[1].json["ips"][0]["address"].split("/")[0]
    assert ping(n1.pods["pn1"], address)
    check = dict(node_conf(bed, n1, peers=peers), prevResult=outs[0].json)
    assert n1.run(os.path.join(bin_dir, "vxlan"), "CHECK", check, "pn1", bin_dir).ok


# --- other nodes' records in etcd are input too -------------------------------------------------

HOSTILE_RECORDS = {
    "broadcast MAC": {"node": "n9", "vtep": "192.0.2.9", "vtepMAC": "ff:ff:ff:ff:ff:ff"},
    "malformed MAC": {"node": "n9", "vtep": "192.0.2.9", "vtepMAC": "zz:00"},
    "multicast vtep": {"node": "n9", "vtep": "224.0.0.1"},
    "unspecified vtep": {"node": "n9", "vtep": "0.0.0.0"},
    "node not a string": {"node": 9, "vtep": "192.0.2.9"},
    "vtep not an address": {"node": "n9", "vtep": "banana"},
}


@pytest.mark.unit
@pytest.mark.parametrize("case", list(HOSTILE_RECORDS))
def test_a_hostile_lease_record_is_skipped_not_fatal(case):
    """snapshot() skips records whose decoding raises ValueError, KeyError or TypeError: nothing else may escape."""
    import base64
    import json

    from cni_vxlan.store import _decode_lease

    b64 = lambda data: base64.b64encode(data).decode()  # noqa: E731 - the wire form etcd's JSON gateway sends
    kv = etcd.KV({"key": b64(b"/cnit/overlay/subnets/198.18.9.0-24"), "value": b64(json.dumps(HOSTILE_RECORDS[case]).encode()), "mod_revision": 5})
    with pytest.raises((ValueError, KeyError, TypeError)):
        _decode_lease("198.18.9.0-24", kv)


@pytest.mark.unit
def test_a_peer_of_another_family_is_skipped():
    from ipaddress import ip_address, ip_network

    from cni_vxlan.conf import Peer
    from cni_vxlan.store import Lease, LeaseStore, Snapshot

    store = LeaseStore.__new__(LeaseStore)
    store.conf = VxlanConf.load(CmdArgs.for_config(conf(etcd={"endpoints": ["http://127.0.0.1:2379"]}), command="ADD"))
    leases = {
        "n2": Lease(Peer("n2", ip_address("192.0.2.2"), ip_network("198.18.2.0/24"), "02:00:00:00:00:02"), 0),
        "n3": Lease(Peer("n3", ip_address("2001:db8::3"), ip_network("198.18.3.0/24"), "02:00:00:00:00:03"), 0),
    }
    snap = Snapshot(1, None, leases)
    assert [p.node for p in store.peers(snap, 4)] == ["n2"]
    assert [p.node for p in store.peers(snap)] == ["n2", "n3"]
