"""VxlanConf.load without root: what parses, and every default (README, "vxlan configuration").

Refusals are covered by test_validation.py and test_units.py; the few here pin
the edges of ranges whose inside is tested.
"""

import dataclasses
from ipaddress import ip_address, ip_network

import pytest

from cni_vxlan import conf as vxlan_conf
from cni_vxlan.conf import EtcdConf, Peer, VxlanConf, vtep_mac
from common.errors import CNIError, Code
from common.skel import CmdArgs

pytestmark = pytest.mark.unit

BASE = {"cniVersion": "1.1.0", "name": "overlay", "type": "vxlan", "network": "198.18.0.0/16", "nodeName": "n1"}
N1 = {"node": "n1", "vtep": "192.0.2.1", "subnet": "198.18.1.0/24"}
N2 = {"node": "n2", "vtep": "192.0.2.2", "subnet": "198.18.2.0/24"}


def load(**keys) -> VxlanConf:
    return VxlanConf.load(CmdArgs.for_config({**BASE, **keys}, command="ADD"))


def refused(**keys) -> CNIError:
    with pytest.raises(CNIError) as err:
        load(**keys)
    assert err.value.code == Code.INVALID_CONFIG, err.value
    return err.value


# --- defaults ------------------------------------------------------------------------------


def test_every_default(monkeypatch):
    monkeypatch.setattr(vxlan_conf.socket, "gethostname", lambda: "node-from-hostname")
    raw = dict(BASE)
    del raw["nodeName"]
    c = VxlanConf.load(CmdArgs.for_config(raw, command="ADD"))
    assert dataclasses.asdict(c) == {
        "name": "overlay",
        "network": ip_network("198.18.0.0/16"),
        "subnet_len": 24,
        "subnet_min": ip_network("198.18.1.0/24"),  # the first subnet's base would be the overlay's network address
        "subnet_max": ip_network("198.18.255.0/24"),
        "vni": 1,
        "port": 4789,
        "device": "cnivx.1",
        "bridge": "cnivx0",
        "vtep_interface": "",
        "vtep_address": None,
        "mtu": 0,
        "node_name": "node-from-hostname",
        "peer_source": "etcd",
        "peers": (),
        "etcd": {
            "endpoints": ("http://127.0.0.1:2379",),
            "prefix": "/cni-vxlan",
            "lease_ttl": 0,
            "timeout": 5.0,
            "ca_file": "",
            "cert_file": "",
            "key_file": "",
        },
        "data_dir": "/var/lib/cni/vxlan",
        "delegate": {},
        "ipam": {},
        "tx_checksum_offload": "auto",
        "lock_timeout": 10.0,
        "ipv6_network": None,  # IPv4 only unless ipv6Network is set
        "ipv6_subnet_len": 0,
    }
    assert isinstance(c.etcd, EtcdConf) and type(c.etcd.timeout) is float
    assert c.own_peer() is None


def test_the_module_constants_are_the_documented_defaults():
    assert (vxlan_conf.DEFAULT_PORT, vxlan_conf.DEFAULT_PREFIX, vxlan_conf.DEFAULT_DATA_DIR, vxlan_conf.DEFAULT_BRIDGE) == (
        4789,
        "/cni-vxlan",
        "/var/lib/cni/vxlan",
        "cnivx0",
    )


def test_an_empty_etcd_object_is_every_etcd_default():
    assert load(etcd={}).etcd == load().etcd


def test_empty_strings_mean_the_default():
    c = load(
        device="",
        dataDir="",
        vtepInterface="",
        vtepAddress="",
        subnetMin="",
        subnetMax="",
        peerSource="",
        etcd={"prefix": "", "endpoints": []},
        delegate={"bridge": ""},
    )
    assert (c.device, c.data_dir, c.vtep_interface, c.vtep_address, c.peer_source, c.bridge) == (
        "cnivx.1",
        "/var/lib/cni/vxlan",
        "",
        None,
        "etcd",
        "cnivx0",
    )
    assert (str(c.subnet_min), str(c.subnet_max)) == ("198.18.1.0/24", "198.18.255.0/24")
    assert c.etcd.prefix == "/cni-vxlan" and c.etcd.endpoints == ("http://127.0.0.1:2379",)


def test_null_values_mean_the_default():
    c = load(vni=None, port=None, mtu=None, subnetLen=None, etcd=None, delegate=None, ipam=None, txChecksumOffload=None)
    assert (c.vni, c.port, c.mtu, c.subnet_len, c.delegate, c.ipam, c.tx_checksum_offload) == (1, 4789, 0, 24, {}, {}, "auto")
    assert c.etcd == load().etcd


# --- the overlay's shape: subnetLen and the leasable range ----------------------------------

# network, keys -> (subnetLen, subnetMin, subnetMax)
SHAPES = [
    ("198.18.0.0/16", {}, (24, "198.18.1.0/24", "198.18.255.0/24")),
    ("10.244.0.0/22", {}, (24, "10.244.1.0/24", "10.244.3.0/24")),
    ("10.244.0.0/23", {}, (25, "10.244.0.128/25", "10.244.1.128/25")),
    ("198.18.0.0/24", {}, (26, "198.18.0.64/26", "198.18.0.192/26")),
    ("198.18.0.0/28", {}, (30, "198.18.0.4/30", "198.18.0.12/30")),
    ("10.0.0.0/8", {}, (24, "10.0.1.0/24", "10.255.255.0/24")),
    ("10.0.0.0/8", {"subnetLen": 16}, (16, "10.1.0.0/16", "10.255.0.0/16")),
    ("198.18.0.0/16", {"subnetLen": 30}, (30, "198.18.0.4/30", "198.18.255.252/30")),
    ("198.18.0.0/16", {"subnetLen": 17}, (17, "198.18.128.0/17", "198.18.128.0/17")),  # two subnets: only the second is leasable
    ("198.18.0.0/16", {"subnetMin": "198.18.10.0", "subnetMax": "198.18.20.0"}, (24, "198.18.10.0/24", "198.18.20.0/24")),
    ("198.18.0.0/16", {"subnetMin": "198.18.10.0/24", "subnetMax": "198.18.10.0/24"}, (24, "198.18.10.0/24", "198.18.10.0/24")),
    ("198.18.0.0/16", {"subnetMin": "198.18.0.0"}, (24, "198.18.0.0/24", "198.18.255.0/24")),  # explicitly asking for the first
    ("198.18.0.0/16", {"subnetLen": 26, "subnetMax": "198.18.0.192"}, (26, "198.18.0.64/26", "198.18.0.192/26")),
    ("198.18.0.0/15", {}, (24, "198.18.1.0/24", "198.19.255.0/24")),
]


@pytest.mark.parametrize("network,keys,expected", SHAPES, ids=[f"{n}-{k}" for n, k, _ in SHAPES])
def test_subnet_len_and_bounds(network, keys, expected):
    c = load(network=network, **keys)
    assert (c.subnet_len, str(c.subnet_min), str(c.subnet_max)) == expected
    assert c.subnet_min.subnet_of(c.network) and c.subnet_max.subnet_of(c.network)


def test_a_network_with_host_bits_is_refused_not_masked():
    refused(network="198.18.0.1/16")


def test_a_network_too_small_for_the_default_subnet_len():
    assert "at most 30" in str(refused(network="198.18.0.0/29"))  # default would be /31


@pytest.mark.parametrize("network", ["100.64.0.0/10", "172.16.0.0/12", "192.168.0.0/16", "203.0.113.0/24", "11.0.0.0/8"])
def test_usable_networks(network):
    assert str(load(network=network).network) == network


# --- each key set ------------------------------------------------------------------------------

# name: (keys, {field: expected value})
GOOD = {
    "vni 1": ({"vni": 1}, {"vni": 1, "device": "cnivx.1"}),
    "vni names the device": ({"vni": 42}, {"vni": 42, "device": "cnivx.42"}),
    "vni 16777215 (the device name still fits 15 bytes)": ({"vni": 16777215}, {"vni": 16777215, "device": "cnivx.16777215"}),
    "device": ({"device": "vxlan0", "vni": 7}, {"device": "vxlan0", "vni": 7}),
    "device of 15 bytes": ({"device": "v" * 15}, {"device": "v" * 15}),
    "port 1": ({"port": 1}, {"port": 1}),
    "port 8472 (the kernel's default)": ({"port": 8472}, {"port": 8472}),
    "port 65535": ({"port": 65535}, {"port": 65535}),
    "mtu 68": ({"mtu": 68}, {"mtu": 68}),
    "mtu 1450": ({"mtu": 1450}, {"mtu": 1450}),
    "mtu 65535": ({"mtu": 65535}, {"mtu": 65535}),
    "vtepInterface": ({"vtepInterface": "eth1"}, {"vtep_interface": "eth1"}),
    "vtepAddress IPv4": ({"vtepAddress": "192.0.2.10"}, {"vtep_address": ip_address("192.0.2.10")}),
    "vtepAddress IPv6": ({"vtepAddress": "2001:db8::10"}, {"vtep_address": ip_address("2001:db8::10")}),
    "nodeName": ({"nodeName": "worker-7.example.test"}, {"node_name": "worker-7.example.test"}),
    "nodeName of 253 characters": ({"nodeName": "n" * 253}, {"node_name": "n" * 253}),
    "nodeName with unicode": ({"nodeName": "nœud-1"}, {"node_name": "nœud-1"}),
    "dataDir": ({"dataDir": "/run/cni/vxlan-test"}, {"data_dir": "/run/cni/vxlan-test"}),
    "dataDir is normalised": ({"dataDir": "/run//cni/./vxlan/"}, {"data_dir": "/run/cni/vxlan"}),
    "delegate": ({"delegate": {"bridge": "ovl0", "ipMasq": True}}, {"delegate": {"bridge": "ovl0", "ipMasq": True}, "bridge": "ovl0"}),
    "delegate without a bridge": ({"delegate": {"ipMasq": True}}, {"delegate": {"ipMasq": True}, "bridge": "cnivx0"}),
    "delegate.bridge of 15 bytes": ({"delegate": {"bridge": "b" * 15}}, {"bridge": "b" * 15, "delegate": {"bridge": "b" * 15}}),
    "ipam": ({"ipam": {"dataDir": "/run/ipam"}}, {"ipam": {"dataDir": "/run/ipam"}}),
    "txChecksumOffload true": ({"txChecksumOffload": True}, {"tx_checksum_offload": "on"}),
    "txChecksumOffload false": ({"txChecksumOffload": False}, {"tx_checksum_offload": "off"}),
    "txChecksumOffload auto": ({"txChecksumOffload": "auto"}, {"tx_checksum_offload": "auto"}),
    "peerSource etcd explicitly": ({"peerSource": "etcd"}, {"peer_source": "etcd"}),
    "keys match case-insensitively": ({"VNI": 9, "Port": 4790, "MTU": 1400, "DEVICE": "vx9"}, {"vni": 9, "port": 4790, "mtu": 1400, "device": "vx9"}),
    "an exact key wins over a folded one": ({"vni": 3, "VNI": 4}, {"vni": 3, "device": "cnivx.3"}),
    "unknown keys are ignored": ({"flannelCompat": True, "capabilities": {"portMappings": True}}, {}),
}


@pytest.mark.parametrize("case", list(GOOD))
def test_a_good_key_parses(case):
    keys, expected = GOOD[case]
    c = load(**keys)
    assert {field: getattr(c, field) for field in expected} == expected
    defaults = dataclasses.asdict(load())
    untouched = {k: v for k, v in dataclasses.asdict(c).items() if k not in expected}
    assert untouched == {k: defaults[k] for k in untouched}, "only the keys set may change"


def test_delegate_and_ipam_are_copies():
    delegate, ipam = {"bridge": "ovl0"}, {"dataDir": "/run/ipam"}
    c = load(delegate=delegate, ipam=ipam)
    delegate["bridge"], ipam["dataDir"] = "changed", "/changed"
    assert (c.delegate, c.ipam) == ({"bridge": "ovl0"}, {"dataDir": "/run/ipam"})


@pytest.mark.parametrize(
    "keys",
    [
        {"vni": 0},
        {"vni": 16777216},
        {"port": 0},
        {"port": 65536},
        {"mtu": 67},
        {"mtu": 65536},
        {"mtu": 0},
        {"device": "v" * 16},
        {"delegate": {"bridge": "b" * 16}},
        {"nodeName": "n" * 254},
        {"dataDir": "run/cni"},
        {"dataDir": "/run/../etc"},
        {"txChecksumOffload": "on"},
    ],
)
def test_just_outside_the_ranges_above(keys):
    """mtu 0 included: unlike the bridge's mtu, the vxlan key has no explicit 'kernel default' value."""
    refused(**keys)


# --- etcd -----------------------------------------------------------------------------------------

ETCD = {
    "endpoints": (
        {"endpoints": ["http://10.0.0.1:2379", "https://[2001:db8::1]:2379", "https://etcd.example.test:2379/"]},
        {"endpoints": ("http://10.0.0.1:2379", "https://[2001:db8::1]:2379", "https://etcd.example.test:2379/")},
    ),
    "prefix": ({"prefix": "/overlays"}, {"prefix": "/overlays"}),
    "prefix loses trailing slashes": ({"prefix": "/overlays/x//"}, {"prefix": "/overlays/x"}),
    "prefix / is the root": ({"prefix": "/"}, {"prefix": ""}),
    "leaseTTL": ({"leaseTTL": 30}, {"lease_ttl": 30}),
    "leaseTTL of a year": ({"leaseTTL": 86400 * 365}, {"lease_ttl": 86400 * 365}),
    "timeout as an integer": ({"timeout": 2}, {"timeout": 2.0}),
    "timeout as a fraction": ({"timeout": 0.25}, {"timeout": 0.25}),
    "timeout of 60": ({"timeout": 60}, {"timeout": 60.0}),
    "TLS files": (
        {"caFile": "/etc/etcd/ca.pem", "certFile": "/etc/etcd/c.pem", "keyFile": "/etc/etcd/k.pem"},
        {"ca_file": "/etc/etcd/ca.pem", "cert_file": "/etc/etcd/c.pem", "key_file": "/etc/etcd/k.pem"},
    ),
    "keys match case-insensitively": (
        {"ENDPOINTS": ["http://10.0.0.2:2379"], "Prefix": "/p", "leasettl": 9},
        {"endpoints": ("http://10.0.0.2:2379",), "prefix": "/p", "lease_ttl": 9},
    ),
}


@pytest.mark.parametrize("case", list(ETCD))
def test_etcd_settings(case):
    keys, expected = ETCD[case]
    e = load(etcd=keys).etcd
    assert {field: getattr(e, field) for field in expected} == expected
    defaults = dataclasses.asdict(load().etcd)
    assert {k: v for k, v in dataclasses.asdict(e).items() if k not in expected} == {k: defaults[k] for k in defaults if k not in expected}
    if "timeout" in expected:
        assert type(e.timeout) is float


@pytest.mark.parametrize("etcd", [{"timeout": 0}, {"timeout": 60.001}, {"leaseTTL": 86400 * 365 + 1}, {"prefix": "cni"}])
def test_etcd_just_outside_its_ranges(etcd):
    refused(etcd=etcd)


def test_etcd_settings_are_unused_with_static_peers():
    c = load(peerSource="static", peers=[N1], etcd={"endpoints": ["http://10.0.0.1:2379"]})
    assert c.etcd is None


# --- static peers -----------------------------------------------------------------------------------


def test_static_peers_parse_with_derived_macs():
    c = load(peerSource="static", peers=[N1, N2])
    assert c.peer_source == "static" and c.etcd is None
    assert c.peers == (
        Peer("n1", ip_address("192.0.2.1"), ip_network("198.18.1.0/24"), "0e:56:c6:12:01:00"),
        Peer("n2", ip_address("192.0.2.2"), ip_network("198.18.2.0/24"), "0e:56:c6:12:02:00"),
    )
    assert c.own_peer() == c.peers[0]
    assert c.peers[1].base == ip_address("198.18.2.0")
    assert vtep_mac(c.peers[1].subnet) == c.peers[1].mac


def test_the_own_peer_follows_node_name():
    c = load(peerSource="static", peers=[N1, N2], nodeName="n2")
    assert c.own_peer().node == "n2" and c.own_peer().vtep == ip_address("192.0.2.2")


def test_static_peers_over_an_ipv6_underlay():
    peers = [dict(N1, vtep="2001:db8::1"), dict(N2, vtep="2001:db8::2", mac="02:00:00:00:00:02")]
    c = load(peerSource="static", peers=peers)
    assert [str(p.vtep) for p in c.peers] == ["2001:db8::1", "2001:db8::2"]
    assert [p.mac for p in c.peers] == ["0e:56:c6:12:01:00", "02:00:00:00:00:02"]


def test_a_peer_may_hold_any_subnet_of_the_network_even_outside_the_leasable_range():
    c = load(peerSource="static", peers=[dict(N1, subnet="198.18.0.0/24")], subnetMin="198.18.10.0")
    assert c.own_peer().subnet == ip_network("198.18.0.0/24") and str(c.subnet_min) == "198.18.10.0/24"


def test_peer_keys_match_case_insensitively():
    c = load(peerSource="static", peers=[{"Node": "n1", "VTEP": "192.0.2.1", "Subnet": "198.18.1.0/24", "MAC": "02:00:00:00:00:01"}])
    assert c.own_peer() == Peer("n1", ip_address("192.0.2.1"), ip_network("198.18.1.0/24"), "02:00:00:00:00:01")


def test_peers_follow_subnet_len():
    c = load(network="198.18.0.0/24", peerSource="static", peers=[dict(N1, subnet="198.18.0.64/26")])
    assert c.subnet_len == 26 and c.own_peer().mac == "0e:56:c6:12:00:40"


def test_peers_are_ignored_in_etcd_mode():
    assert load(peers=[N1, N2]).peers == ()
