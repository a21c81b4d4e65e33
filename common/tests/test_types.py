import itertools

import pytest

from common.errors import CNIError
from common.types import DNS, Interface, IPConfig, Result, Route, parse_cidr, parse_ip, parse_network
from common.version import SUPPORTED_VERSIONS

pytestmark = pytest.mark.unit

LEGACY = ("0.1.0", "0.2.0")

FULL = Result(
    interfaces=(
        Interface("cni0", "0a:58:0a:01:02:01"),
        Interface("veth1234", "aa:bb:cc:dd:ee:ff"),
        Interface("eth0", "02:00:00:00:00:05", "/run/netns/x"),
    ),
    ips=(
        IPConfig(parse_cidr("10.1.2.3/24"), parse_ip("10.1.2.1"), 2),
        IPConfig(parse_cidr("2001:db8::3/64"), parse_ip("2001:db8::1"), 2),
    ),
    routes=(Route(parse_network("0.0.0.0/0"), parse_ip("10.1.2.1")), Route(parse_network("::/0"))),
    dns=DNS(("10.0.0.53",), "example.org", ("svc.example.org",), ("ndots:5",)),
)


def representable(result: Result, version: str) -> Result:
    """What a result in `version` can carry of `result` (the reference's loss matrix)."""
    if version in LEGACY:
        first = {}
        for ip in result.ips:
            first.setdefault(ip.family, IPConfig(ip.address, ip.gateway))
        families = set(first)
        routes = tuple(Route(r.dst, r.gw) for r in result.routes if r.dst.version in families)
        return Result(ips=tuple(first[f] for f in sorted(first)), routes=routes, dns=result.dns)
    if version in ("0.3.0", "0.3.1", "0.4.0"):
        ifaces = tuple(Interface(i.name, i.mac, i.sandbox) for i in result.interfaces)
        return result.with_(interfaces=ifaces)
    return result


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_round_trip_within_a_version(version):
    expect = representable(FULL, version)
    assert Result.from_wire(FULL.to_wire(version)) == expect
    assert Result.from_wire(expect.to_wire(version)) == expect


@pytest.mark.parametrize("a,b", list(itertools.permutations(SUPPORTED_VERSIONS, 2)))
def test_conversion_between_every_version_pair(a, b):
    """a -> b keeps exactly what both versions can carry, in both directions."""
    via_a = Result.from_wire(FULL.to_wire(a))
    via_b = Result.from_wire(via_a.to_wire(b))
    assert via_b == representable(representable(FULL, a), b)


def test_1_1_fields_survive_as_the_reference_keeps_them():
    eth0 = Interface("eth0", "02:00:00:00:00:05", "/x", mtu=1400, socket_path="/s", pci_id="0000:01:00.0")
    rich = FULL.with_(interfaces=FULL.interfaces[:2] + (eth0,))
    wire = rich.to_wire("1.1.0")
    assert wire["interfaces"][2]["mtu"] == 1400 and wire["interfaces"][2]["pciID"] == "0000:01:00.0"
    assert Result.from_wire(rich.to_wire("1.0.0")) == rich
    assert "mtu" not in rich.to_wire("0.4.0")["interfaces"][2]


def test_wire_shapes():
    w040 = FULL.to_wire("0.4.0")
    assert w040["ips"][0] == {"version": "4", "address": "10.1.2.3/24", "gateway": "10.1.2.1", "interface": 2}
    assert "version" not in FULL.to_wire("1.0.0")["ips"][0]
    w020 = FULL.to_wire("0.2.0")
    assert set(w020) == {"cniVersion", "ip4", "ip6", "dns"}
    assert w020["ip4"] == {"ip": "10.1.2.3/24", "gateway": "10.1.2.1", "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.2.1"}]}
    assert w020["ip6"]["routes"] == [{"dst": "::/0"}]


def test_empty_dns_is_omitted_from_1_x_and_printed_before():
    bare = Result(ips=FULL.ips[:1])
    assert "dns" not in bare.to_wire("1.0.0")
    assert bare.to_wire("0.4.0")["dns"] == {}
    assert bare.to_wire("0.2.0")["dns"] == {}


@pytest.mark.parametrize("version", LEGACY)
def test_a_result_without_addresses_cannot_be_legacy(version):
    with pytest.raises(CNIError) as err:
        Result(interfaces=FULL.interfaces).to_wire(version)
    assert err.value.code == 1 and "no valid IP addresses" in err.value.msg


@pytest.mark.parametrize(
    "bad",
    [
        "nope",
        {"cniVersion": "1.0.0", "ips": "nope"},
        {"cniVersion": "1.0.0", "ips": [{"address": "10.1.2.3"}]},
        {"cniVersion": "1.0.0", "ips": [{"address": "10.1.2.3/24", "interface": 3}]},
        {"cniVersion": "1.0.0", "routes": [{"dst": "banana"}]},
        {"cniVersion": "0.2.0", "ip4": {"ip": "fe80::1%eth0/64"}},
        {"cniVersion": "1.0.0", "dns": {"nameservers": "1.1.1.1"}},
    ],
)
def test_malformed_results_are_decoding_errors(bad):
    with pytest.raises(CNIError) as err:
        Result.from_wire(bad)
    assert err.value.code == 6


def test_v4_mapped_addresses_become_v4_like_go():
    assert str(parse_ip("::ffff:10.99.0.77")) == "10.99.0.77"
    with pytest.raises(ValueError):
        parse_ip("fe80::1%eth0")
