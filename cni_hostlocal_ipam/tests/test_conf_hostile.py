"""Hostile host-local configs and CNI_ARGS: IPAMConf.load refuses each with its code, never another exception.

The bridge calls IPAMConf.load before it creates anything, so whatever this
loader lets through fails later, after the node was touched.  The reference
(containernetworking-plugins 1.1.1) gives 999 for all of these, or accepts
them: a netmask-form subnet, a bad prefix on a requested address and a
requested address outside every range are 999 there; 0.0.0.0/0 is accepted
and then fails to allocate, and route fields it does not know are dropped.
"""

import os

import pytest

from cni_hostlocal_ipam.conf import IPAMConf
from common.errors import CNIError, Code
from common.skel import CmdArgs

pytestmark = pytest.mark.unit

U32_MAX = 2**32 - 1
SUBNET = {"subnet": "10.1.2.0/24"}


def args(ipam: dict, cni_args: dict | None = None, command: str = "ADD", **top) -> CmdArgs:
    config = {"cniVersion": "1.1.0", "name": "net", "ipam": {"type": "host-local", **ipam}, **top}
    return CmdArgs.for_config(config, command=command, cni_args=cni_args)


def route(**fields) -> dict:
    return {**SUBNET, "routes": [{"dst": "10.93.0.0/16", **fields}]}


def requested(*ips: str, where: str = "runtimeConfig") -> dict:
    if where == "runtimeConfig":
        return {"runtimeConfig": {"ips": list(ips)}}
    return {"args": {"cni": {"ips": list(ips)}}}


# (id, ipam, CNI_ARGS, other top-level keys, expected code)
HOSTILE = [
    # route fields: u32 on the wire (RTA_PRIORITY, RTA_TABLE, RTAX_*), u8 for the scope
    ("route-mtu-2^32", route(mtu=2**32), None, {}, Code.INVALID_CONFIG),
    ("route-mtu-negative", route(mtu=-1), None, {}, Code.INVALID_CONFIG),
    ("route-mtu-bool", route(mtu=True), None, {}, Code.INVALID_CONFIG),
    ("route-mtu-float", route(mtu=1400.0), None, {}, Code.INVALID_CONFIG),
    ("route-mtu-string", route(mtu="1400"), None, {}, Code.INVALID_CONFIG),
    ("route-advmss-2^32", route(advmss=2**32), None, {}, Code.INVALID_CONFIG),
    ("route-advmss-2^64", route(advmss=2**64), None, {}, Code.INVALID_CONFIG),
    ("route-advmss-negative", route(advmss=-5), None, {}, Code.INVALID_CONFIG),
    ("route-priority-2^32", route(priority=2**32), None, {}, Code.INVALID_CONFIG),
    ("route-priority-bool", route(priority=False), None, {}, Code.INVALID_CONFIG),
    ("route-table-2^32", route(table=2**32), None, {}, Code.INVALID_CONFIG),
    ("route-table-negative", route(table=-1), None, {}, Code.INVALID_CONFIG),
    ("route-table-string", route(table="100"), None, {}, Code.INVALID_CONFIG),
    ("route-scope-256", route(scope=256), None, {}, Code.INVALID_CONFIG),
    ("route-scope-negative", route(scope=-1), None, {}, Code.INVALID_CONFIG),
    ("route-dst-netmask", {**SUBNET, "routes": [{"dst": "10.93.0.0/255.255.0.0"}]}, None, {}, Code.INVALID_CONFIG),
    ("route-not-an-object", {**SUBNET, "routes": ["10.93.0.0/16"]}, None, {}, Code.INVALID_CONFIG),
    # subnets and their ranges
    ("subnet-netmask", {"subnet": "10.98.0.0/255.255.255.0"}, None, {}, Code.INVALID_CONFIG),
    ("subnet-hostmask", {"subnet": "10.98.0.0/0.0.0.255"}, None, {}, Code.INVALID_CONFIG),
    ("subnet-v6-netmask", {"subnet": "fd00::/ffff:ffff:ffff:ffff::"}, None, {}, Code.INVALID_CONFIG),
    ("subnet-v4-everything", {"subnet": "0.0.0.0/0"}, None, {}, Code.INVALID_CONFIG),
    ("subnet-v6-everything", {"subnet": "::/0"}, None, {}, Code.INVALID_CONFIG),
    ("subnet-v4-everything-ranges", {"ranges": [[{"subnet": "0.0.0.0/0"}]]}, None, {}, Code.INVALID_CONFIG),
    ("subnet-v4-/40", {"subnet": "10.98.0.0/40"}, None, {}, Code.INVALID_CONFIG),
    ("subnet-v6-/129", {"subnet": "fd00::/129"}, None, {}, Code.INVALID_CONFIG),
    ("subnet-no-prefix", {"subnet": "10.98.0.0"}, None, {}, Code.INVALID_CONFIG),
    ("subnet-empty-prefix", {"subnet": "10.98.0.0/"}, None, {}, Code.INVALID_CONFIG),
    ("runtime-ipranges-netmask", {}, None, {"runtimeConfig": {"ipRanges": [[{"subnet": "10.98.0.0/255.255.255.0"}]]}}, Code.INVALID_CONFIG),
    ("runtime-ipranges-everything", {}, None, {"runtimeConfig": {"ipRanges": [[{"subnet": "::/0"}]]}}, Code.INVALID_CONFIG),
    ("rangestart-outside", {**SUBNET, "rangeStart": "10.1.3.5"}, None, {}, Code.INVALID_CONFIG),
    ("rangeend-outside", {**SUBNET, "rangeEnd": "10.1.3.5"}, None, {}, Code.INVALID_CONFIG),
    ("rangestart-other-family", {**SUBNET, "rangeStart": "fd00::5"}, None, {}, Code.INVALID_CONFIG),
    ("gateway-outside", {**SUBNET, "gateway": "10.1.3.1"}, None, {}, Code.INVALID_CONFIG),
    ("gateway-network-address", {**SUBNET, "gateway": "10.1.2.0"}, None, {}, Code.INVALID_CONFIG),
    ("gateway-broadcast", {**SUBNET, "gateway": "10.1.2.255"}, None, {}, Code.INVALID_CONFIG),
    # requested addresses in the config: a prefix must be a valid one, as the reference's ip.IP parses it
    ("runtime-ips-prefix-40", SUBNET, None, requested("10.1.2.3/40"), Code.INVALID_CONFIG),
    ("runtime-ips-prefix-netmask", SUBNET, None, requested("10.1.2.3/255.255.255.0"), Code.INVALID_CONFIG),
    ("runtime-ips-prefix-empty", SUBNET, None, requested("10.1.2.3/"), Code.INVALID_CONFIG),
    ("runtime-ips-prefix-garbage", SUBNET, None, requested("10.1.2.3/24/24"), Code.INVALID_CONFIG),
    ("runtime-ips-v6-prefix-200", {"subnet": "fd00::/64"}, None, requested("fd00::5/200"), Code.INVALID_CONFIG),
    ("args-cni-ips-prefix-99", SUBNET, None, requested("10.1.2.3/99", where="args"), Code.INVALID_CONFIG),
    ("args-cni-ips-not-strings", SUBNET, None, {"args": {"cni": {"ips": [167838211]}}}, Code.INVALID_CONFIG),
    # CNI_ARGS is an environment variable: 4, as for every other malformed CNI_ARGS (docs/bad-input.md)
    ("cni-args-prefix-99", SUBNET, {"IP": "10.1.2.3/99"}, {}, Code.INVALID_ENV),
    ("cni-args-prefix-40", SUBNET, {"IP": "10.1.2.3/40"}, {}, Code.INVALID_ENV),
    ("cni-args-prefix-netmask", SUBNET, {"IP": "10.1.2.3/255.255.255.0"}, {}, Code.INVALID_ENV),
    ("cni-args-prefix-empty", SUBNET, {"IP": "10.1.2.3/"}, {}, Code.INVALID_ENV),
    ("cni-args-garbage", SUBNET, {"IP": "banana"}, {}, Code.INVALID_ENV),
    ("cni-args-empty-item", SUBNET, {"IP": "10.1.2.3,"}, {}, Code.INVALID_ENV),
    ("cni-args-zone", {"subnet": "fd00::/64"}, {"IP": "fd00::5%eth0"}, {}, Code.INVALID_ENV),
    # requested addresses no range set can grant: 101, as the plugin reports them after allocating (README)
    ("requested-outside-every-range", SUBNET, {"IP": "10.9.9.9"}, {}, Code.REQUESTED_IP_UNAVAILABLE),
    ("requested-in-subnet-outside-range", {**SUBNET, "rangeStart": "10.1.2.100"}, None, requested("10.1.2.5"), Code.REQUESTED_IP_UNAVAILABLE),
    ("requested-other-family", SUBNET, None, requested("fd00::5"), Code.REQUESTED_IP_UNAVAILABLE),
    ("requested-the-gateway", SUBNET, None, requested("10.1.2.1"), Code.REQUESTED_IP_UNAVAILABLE),
]


@pytest.mark.parametrize("ipam,cni_args,top,code", [case[1:] for case in HOSTILE], ids=[case[0] for case in HOSTILE])
def test_hostile_input_is_refused_by_the_loader_with_its_code(ipam, cni_args, top, code):
    try:
        IPAMConf.load(args(ipam, cni_args, **top))
    except CNIError as err:
        assert err.code == code, f"code {err.code}: {err}"
        return
    except Exception as err:  # anything else would be a 999 at the protocol layer
        pytest.fail(f"{type(err).__name__} instead of CNIError({code}): {err}")
    pytest.fail(f"accepted; want CNIError({code})")


ACCEPTED = [
    ("route-fields-at-u32-max", route(mtu=U32_MAX, advmss=U32_MAX, priority=U32_MAX, table=U32_MAX, scope=255), None, {}),
    ("route-fields-zero", route(mtu=0, advmss=0, priority=0, table=0, scope=0), None, {}),
    ("subnet-prefix-leading-zero", {"subnet": "10.98.0.0/024"}, None, {}),
    ("subnet-v4-/1", {"subnet": "0.0.0.0/1"}, None, {}),
    ("requested-with-its-prefix", {"ranges": [[SUBNET], [{"subnet": "fd00::/64"}]]}, {"IP": "10.1.2.3/24"}, requested("fd00::5/64", where="args")),
    ("requested-twice-the-same", SUBNET, {"IP": "10.1.2.3"}, requested("10.1.2.3/24")),
    ("requested-one-per-range-set", {"ranges": [[SUBNET], [{"subnet": "10.1.3.0/24"}]]}, {"IP": "10.1.2.3"}, requested("10.1.3.3")),
]


@pytest.mark.parametrize("ipam,cni_args,top", [case[1:] for case in ACCEPTED], ids=[case[0] for case in ACCEPTED])
def test_what_the_reference_accepts_stays_accepted(ipam, cni_args, top):
    conf = IPAMConf.load(args(ipam, cni_args, **top))
    assert conf.range_sets


def test_route_fields_reach_the_result_routes():
    conf = IPAMConf.load(args(route(mtu=1400, advmss=1360, priority=7, table=100, scope=253)))
    (r,) = conf.routes
    assert (r.mtu, r.advmss, r.priority, r.table, r.scope) == (1400, 1360, 7, 100, 253)


@pytest.mark.parametrize(
    "ipam,cni_args",
    [
        ({"subnet": "10.98.0.0/255.255.255.0"}, None),
        (route(mtu=2**32), None),
        (route(table=-1), None),
        (SUBNET, {"IP": "10.9.9.9"}),
        (SUBNET, {"IP": "10.1.2.3/99"}),
    ],
    ids=["netmask-subnet", "route-mtu-2^32", "route-table-negative", "requested-outside", "requested-bad-prefix"],
)
@pytest.mark.parametrize("command", ["DEL", "GC"])
def test_del_and_gc_still_load_what_an_add_now_refuses(ipam, cni_args, command):
    # an address allocated under an older, laxer loader must still be released
    conf = IPAMConf.load(args(ipam, cni_args, command))
    assert (conf.range_sets, conf.routes, conf.requested) == ((), (), ())


def test_two_requested_addresses_for_one_range_set_are_refused_by_the_add_without_a_trace(tmp_path):
    # left to the ADD (IPAMConf.load accepts them): it must refuse with 101 and keep no reservation
    from cni_hostlocal_ipam import plugin

    ipam = {**SUBNET, "dataDir": str(tmp_path)}
    with pytest.raises(CNIError) as err:
        plugin.add(args(ipam, {"IP": "10.1.2.3"}, **requested("10.1.2.4")).replace(container_id="c1", ifname="eth0"))
    assert err.value.code == Code.REQUESTED_IP_UNAVAILABLE and "10.1.2.4" in err.value.msg
    assert sorted(f for f in os.listdir(tmp_path / "net") if f[0].isdigit()) == []


@pytest.mark.parametrize("command", ["ADD", "CHECK", "STATUS"])
def test_every_other_command_needs_the_ranges(command):
    with pytest.raises(CNIError) as err:
        IPAMConf.load(args({}, None, command))
    assert err.value.code == Code.INVALID_CONFIG and "no IP ranges" in err.value.msg
