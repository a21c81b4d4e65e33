"""PortmapConf.load without root: defaults, Go-style keys, the backend choice, and refusals (code 7)."""

import os
from ipaddress import ip_address, ip_interface

import pytest

from cni_portmap.conf import PortmapConf, PortMapping
from common import skel
from common.errors import CNIError, Code

pytestmark = pytest.mark.unit

BASE = {"cniVersion": "1.0.0", "name": "pm-net", "type": "portmap"}
PREV = {
    "cniVersion": "1.0.0",
    "interfaces": [{"name": "cni0", "mac": "0a:00:00:00:00:01"}, {"name": "eth0", "sandbox": "/run/netns/x"}],
    "ips": [{"address": "10.1.0.5/24", "interface": 1}, {"address": "fd00::5/64", "interface": 1}],
}


def load(command: str = "ADD", ifname: str = "eth0", **keys) -> PortmapConf:
    args = skel.CmdArgs.for_config({**BASE, **keys}, command=command)
    return PortmapConf.load(args.replace(ifname=ifname))


def refused(**keys) -> CNIError:
    with pytest.raises(CNIError) as err:
        load(**keys)
    assert err.value.code == Code.INVALID_CONFIG, err.value
    return err.value


@pytest.fixture
def nft(monkeypatch):
    """Whether `nft` is found: the default backend depends on it."""

    def present(value: bool):
        real = os.access
        monkeypatch.setattr(os, "access", lambda path, mode: value if path.endswith("/nft") else real(path, mode))

    return present


def test_defaults(nft):
    nft(True)
    conf = load()
    assert (conf.backend, conf.snat, conf.masq_all, conf.mark_masq_bit, conf.external_set_mark_chain) == ("nftables", True, False, 13, "")
    assert conf.conditions_v4 == conf.conditions_v6 == ()
    assert conf.mappings == () and conf.prev_result is None and conf.families == ()
    assert conf.data_dir == "/var/lib/cni/portmap"


def test_default_backend_without_nft(nft):
    nft(False)
    assert load().backend == "iptables"


def test_mappings_read_case_insensitively():
    """containerd's structs have no JSON tags: HostPort, ContainerPort, Protocol, HostIP."""
    conf = load(
        runtimeConfig={
            "portMappings": [
                {"HostPort": 8080, "ContainerPort": 80, "Protocol": "TCP", "HostIP": ""},
                {"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "192.0.2.7"},
                {"hostport": 9000, "containerport": 90, "protocol": "sctp", "hostip": "::"},
            ]
        }
    )
    assert conf.mappings == (
        PortMapping(8080, 80, "tcp", None),
        PortMapping(5353, 53, "udp", ip_address("192.0.2.7")),
        PortMapping(9000, 90, "sctp", ip_address("::")),
    )
    assert [m.family for m in conf.mappings] == [0, 4, 6]
    assert conf.mappings[2].daddr is None, "an unspecified hostIP matches every address of its family"
    assert conf.for_family(4) == conf.mappings[:2]
    assert conf.for_family(6) == (conf.mappings[0], conf.mappings[2])


def test_v4_mapped_host_ip_is_ipv4():
    conf = load(runtimeConfig={"portMappings": [{"hostPort": 1, "containerPort": 2, "protocol": "tcp", "hostIP": "::ffff:192.0.2.1"}]})
    assert conf.mappings[0].host_ip == ip_address("192.0.2.1")


def test_container_addresses_from_prev_result():
    conf = load(prevResult=PREV)
    assert conf.container_v4 == ip_interface("10.1.0.5/24") and conf.container_v6 == ip_interface("fd00::5/64")
    assert conf.families == (4, 6)


def test_addresses_of_other_interfaces_are_skipped():
    prev = dict(PREV, ips=[{"address": "10.9.0.1/24", "interface": 0}, {"address": "10.1.0.5/24", "interface": 1}])
    assert load(prevResult=prev).container_v4 == ip_interface("10.1.0.5/24"), "the bridge's address (no sandbox) is not the pod's"
    assert load(ifname="net1", prevResult=PREV).families == (), "another ifname: none of these addresses"
    assert load(prevResult=dict(PREV, ips=[{"address": "10.1.0.6/24"}])).container_v4 == ip_interface("10.1.0.6/24"), "no index: taken"


def test_del_ignores_what_it_does_not_need():
    conf = load("DEL", runtimeConfig={"portMappings": [{"hostPort": 0}]}, prevResult={"broken": True})
    assert conf.mappings == () and conf.prev_result is None


@pytest.mark.parametrize(
    "keys, backend",
    [
        ({"externalSetMarkChain": "KUBE-MARK-MASQ"}, "iptables"),
        ({"conditionsV4": ["-d", "192.0.2.1"]}, "iptables"),
        ({"conditionsV6": ["!", "-s", "fd00::1"]}, "iptables"),
        ({"conditionsV4": ["ip daddr 192.0.2.1"]}, "nftables"),
    ],
)
def test_backend_chosen_by_its_options(nft, keys, backend):
    nft(True)
    assert load(**keys).backend == backend


@pytest.mark.parametrize(
    "keys, words",
    [
        ({"backend": "ebtables"}, "unrecognized backend"),
        ({"backend": "nftables", "externalSetMarkChain": "X"}, "iptables-specific options ['externalSetMarkChain']"),
        ({"backend": "iptables", "conditionsV4": ["ip saddr 1.2.3.4"]}, "nftables-specific options ['conditionsV4']"),
        ({"markMasqBit": 32}, "markMasqBit"),
        ({"markMasqBit": -1}, "markMasqBit"),
        ({"markMasqBit": 14, "externalSetMarkChain": "KUBE-MARK-MASQ"}, "Cannot specify externalSetMarkChain and markMasqBit"),
        ({"externalSetMarkChain": "bad chain"}, "externalSetMarkChain"),
        ({"externalSetMarkChain": "X" * 29}, "externalSetMarkChain"),
        ({"conditionsV4": ["ip saddr 1.2.3.4; flush ruleset"]}, "conditionsV4"),
        ({"conditionsV4": ["ip saddr 1.2.3.4\nflush ruleset"]}, "conditionsV4"),
        ({"conditionsV6": ["-m", 'comment --comment "x'], "backend": "iptables"}, "conditionsV6"),
        ({"conditionsV4": "ip saddr 1.2.3.4"}, "conditionsV4"),
        ({"snat": "true"}, "snat"),
        ({"dataDir": "relative"}, "dataDir"),
        ({"dataDir": "/"}, "dataDir"),
    ],
)
def test_refusals(keys, words):
    assert words in str(refused(**keys))


@pytest.mark.parametrize(
    "entry, words",
    [
        ({"hostPort": 8080, "protocol": "tcp"}, "Invalid container port number: 0"),
        ({"containerPort": 80, "protocol": "tcp"}, "Invalid host port number: 0"),
        ({"hostPort": 65536, "containerPort": 80, "protocol": "tcp"}, "Invalid host port number: 65536"),
        ({"hostPort": -1, "containerPort": 80, "protocol": "tcp"}, "Invalid host port number: -1"),
        ({"hostPort": "8080", "containerPort": 80, "protocol": "tcp"}, "hostPort"),
        ({"hostPort": 8080.5, "containerPort": 80, "protocol": "tcp"}, "hostPort"),
        ({"hostPort": 8080, "containerPort": 80, "protocol": "icmp"}, "protocol"),
        ({"hostPort": 8080, "containerPort": 80}, "protocol"),
        ({"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": "1.2.3"}, "hostIP"),
    ],
)
def test_mapping_refusals(entry, words):
    assert words in str(refused(runtimeConfig={"portMappings": [entry]}))


def test_mapping_not_an_object():
    assert "portMappings[0]" in str(refused(runtimeConfig={"portMappings": [8080]}))


def test_prev_result_that_does_not_parse():
    refused(prevResult={"ips": [{"address": "not-an-address"}]})
