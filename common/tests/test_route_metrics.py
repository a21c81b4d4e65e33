"""Route fields of CNI 1.1.0 (mtu, advmss, priority, table, scope): parsed strictly, applied as kernel metrics."""

from ipaddress import ip_address, ip_interface, ip_network

import pytest

from common import netlink
from common.errors import CNIError, Code
from common.netns import open_netns
from common.types import Result, parse_cidr, parse_network

U32_MAX = 2**32 - 1


def result_with_route(**fields) -> dict:
    route = {"dst": "10.93.0.0/16", **fields}
    return {"cniVersion": "1.1.0", "ips": [{"address": "10.91.0.5/24"}], "routes": [route]}


BAD_ROUTE_FIELDS = [
    {"mtu": 2**32},
    {"mtu": 2**64},
    {"mtu": -1},
    {"mtu": True},
    {"mtu": 1500.0},
    {"mtu": "1500"},
    {"advmss": 2**32},
    {"advmss": -1},
    {"advmss": False},
    {"priority": 2**32},
    {"priority": -1},
    {"table": 2**32},
    {"table": -1},
    {"table": "100"},
    {"table": True},
    {"scope": 256},
    {"scope": -1},
    {"scope": "link"},
]


@pytest.mark.unit
@pytest.mark.parametrize("fields", BAD_ROUTE_FIELDS, ids=lambda f: "-".join(f"{k}={v!r}" for k, v in f.items()))
def test_out_of_range_route_fields_are_refused_with_the_callers_code(fields):
    data = result_with_route(**fields)
    with pytest.raises(CNIError) as err:
        Result.from_wire(data, "1.1.0", code=Code.DELEGATE_FAILED)
    assert err.value.code == Code.DELEGATE_FAILED, err.value
    assert next(iter(fields)) in str(err.value)
    with pytest.raises(CNIError) as err:
        Result.from_wire(data, "1.1.0")
    assert err.value.code == Code.DECODING_FAILURE


@pytest.mark.unit
def test_route_fields_at_their_limits_are_kept():
    data = result_with_route(mtu=U32_MAX, advmss=U32_MAX, priority=U32_MAX, table=U32_MAX, scope=255)
    (route,) = Result.from_wire(data, "1.1.0").routes
    assert (route.mtu, route.advmss, route.priority, route.table, route.scope) == (U32_MAX, U32_MAX, U32_MAX, U32_MAX, 255)
    assert Result.from_wire(data, "1.1.0").to_wire("1.1.0")["routes"] == data["routes"]


@pytest.mark.unit
@pytest.mark.parametrize("text", ["10.98.0.0/255.255.255.0", "10.0.0.0/0.0.0.255", "fd00::/ffff:ffff::", "10.98.0.0/+24", "10.98.0.0/24 "])
def test_netmask_and_other_non_decimal_prefixes_are_refused(text):
    # Go's net.ParseCIDR takes a decimal prefix length only; Python's ipaddress also takes masks
    with pytest.raises(ValueError):
        parse_network(text)
    with pytest.raises(ValueError):
        parse_cidr(text.replace("10.98.0.0", "10.98.0.5"))


@pytest.mark.unit
def test_decimal_prefixes_with_leading_zeros_stay_accepted_as_go_does():
    assert str(parse_network("10.98.0.0/024")) == "10.98.0.0/24"
    assert str(parse_cidr("fd00::5/064")) == "fd00::5/64"


@pytest.mark.unit
def test_the_kernel_caps_are_what_check_compares_against():
    assert netlink.kept_metrics(1400, 1360) == (1400, 1360)
    assert netlink.kept_metrics(U32_MAX, 100000) == (65520, 65495)
    assert netlink.kept_metrics(0, 0) == (0, 0)


@pytest.fixture
def cont(netns):
    ns = netns("c")
    handle = open_netns(ns.path)
    with netlink.inside(handle) as cl:
        yield ns, cl
    handle.close()


@pytest.mark.root
def test_route_metrics_reach_the_kernel_and_are_read_back(cont):
    ns, cl = cont
    ns.ip("link", "add", "eth0", "type", "veth", "peer", "name", "peer0")
    eth0 = netlink.get_link(cl, "eth0")
    netlink.add_address(cl, eth0.index, ip_interface("10.60.0.5/24"))
    netlink.add_address(cl, eth0.index, ip_interface("fd00:60::5/64"), nodad=True)
    netlink.set_link(cl, eth0.index, up=True)
    gw4, gw6 = ip_address("10.60.0.1"), ip_address("fd00:60::1")
    assert netlink.add_route(cl, ip_network("10.93.0.0/16"), gw4, eth0.index, append=True, mtu=1400, advmss=1360)
    assert netlink.add_route(cl, ip_network("10.94.0.0/16"), gw4, eth0.index, mtu=U32_MAX)
    assert netlink.add_route(cl, ip_network("fd93::/64"), gw6, eth0.index, append=True, mtu=1380, advmss=1320)
    assert netlink.add_route(cl, ip_network("10.95.0.0/16"), gw4, eth0.index, table=0)

    by_dst = {str(r.dst): r for r in netlink.list_routes(cl, 4) + netlink.list_routes(cl, 6)}
    assert (by_dst["10.93.0.0/16"].mtu, by_dst["10.93.0.0/16"].advmss) == (1400, 1360)
    assert (by_dst["10.94.0.0/16"].mtu, by_dst["10.94.0.0/16"].advmss) == netlink.kept_metrics(U32_MAX, 0)
    assert (by_dst["fd93::/64"].mtu, by_dst["fd93::/64"].advmss) == (1380, 1320)
    assert (by_dst["10.60.0.0/24"].mtu, by_dst["10.60.0.0/24"].advmss) == (0, 0)
    assert by_dst["10.95.0.0/16"].table == netlink.RT_TABLE_MAIN  # table 0 means main, as the kernel reads it
    (shown,) = ns.ipj("route", "show", "10.93.0.0/16")
    assert shown["metrics"] == [{"mtu": 1400, "advmss": 1360}]
