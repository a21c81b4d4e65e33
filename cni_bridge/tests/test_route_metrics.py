"""Route mtu and advmss (CNI 1.1.0) end up on the container's kernel routes, and CHECK verifies them.

Route fields too wide for their netlink attributes are refused before
anything stays behind: 7 from host-local's config, 106 from a delegate's
result.
"""

import copy
import json

import pytest

from cni_bridge.tests.bridgeenv import IFNAME, config, difference, fake_ipam, links, records, veths, with_prev

pytestmark = pytest.mark.root

NET, BRIDGE = "rtm", "cnitrtm0"
ROUTES = [
    {"dst": "10.93.0.0/16", "mtu": 1400, "advmss": 1360},
    {"dst": "2001:db8:93::/64", "mtu": 1380, "advmss": 1320},
    {"dst": "10.94.0.0/16", "mtu": 100000},  # the kernel keeps 65520: CHECK must expect that, not fail
]


def conf_with_routes(tmp_path, routes) -> dict:
    conf = config(tmp_path, name=NET, bridge=BRIDGE, subnets=("10.92.0.0/24", "2001:db8:92::/64"), isGateway=True)
    conf["ipam"]["routes"] = copy.deepcopy(routes)
    return conf


def kernel_metrics(ns, dst: str) -> list:
    family = "-6" if ":" in dst else "-4"
    return [route.get("metrics") for route in ns.ipj(family, "route", "show", dst)]


def test_host_local_route_metrics_are_applied_and_checked(bench, tmp_path):
    conf = conf_with_routes(tmp_path, ROUTES)
    pod = bench.container()
    result = bench.add(conf, pod)
    assert [r for r in result["routes"] if r["dst"] != "0.0.0.0/0"] == ROUTES
    assert kernel_metrics(pod, "10.93.0.0/16") == [[{"mtu": 1400, "advmss": 1360}]]
    assert kernel_metrics(pod, "2001:db8:93::/64") == [[{"mtu": 1380, "advmss": 1320}]]
    assert kernel_metrics(pod, "10.94.0.0/16") == [[{"mtu": 65520}]]
    out = bench.run("CHECK", with_prev(conf, result), pod)
    assert out.ok, out

    # a route that lost a metric no longer matches what ADD set up
    for dst, via, kept in (("10.93.0.0/16", "10.92.0.1", ["mtu", "1400"]), ("2001:db8:93::/64", "2001:db8:92::1", ["advmss", "1320"])):
        family = "-6" if ":" in dst else "-4"
        pod.ip(family, "route", "replace", dst, "via", via, "dev", IFNAME, *kept)
        out = bench.run("CHECK", with_prev(conf, result), pod)
        assert out.rc == 1 and out.json["code"] == 107, out
        assert dst in out.json["msg"]
        original = next(r for r in ROUTES if r["dst"] == dst)
        pod.ip(family, "route", "replace", dst, "via", via, "dev", IFNAME, "mtu", str(original["mtu"]), "advmss", str(original["advmss"]))
        assert bench.run("CHECK", with_prev(conf, result), pod).ok

    assert bench.run("DEL", conf, pod).ok
    assert veths(bench.node) == []


HOSTILE_FIELDS = {
    "mtu 2^32": {"mtu": 2**32},
    "advmss -1": {"advmss": -1},
    "priority 2^32": {"priority": 2**32},
    "table 2^32": {"table": 2**32},
    "scope 256": {"scope": 256},
    "mtu true": {"mtu": True},
}


class Witnessed:
    """A node holding one healthy pod of the network: the refused ADD must leave all of it as it was."""

    def __init__(self, bench, tmp_path):
        self.bench = bench
        self.conf = conf_with_routes(tmp_path, ROUTES[:1])
        self.witness = bench.container()
        bench.add(self.conf, self.witness, "c0")
        self.pod = bench.container()
        self.witness_records = records(self.conf)

    def snapshot(self) -> dict:
        snap = self.bench.snapshot(self.pod, self.witness)
        snap["files"] = {k: v for k, v in snap["files"].items() if not k.startswith("fakes")}  # the fake IPAM's call log
        return snap

    def refused(self, conf, code: int, **kw) -> None:
        before = self.snapshot()
        out = self.bench.run("ADD", conf, self.pod, "c1", **kw)
        assert out.rc == 1 and out.json["code"] == code, out
        assert IFNAME not in links(self.pod) and records(self.conf) == self.witness_records
        after = self.snapshot()
        assert after == before, difference(before, after)


@pytest.mark.parametrize("field", list(HOSTILE_FIELDS))
def test_route_field_out_of_range_in_host_local_config_is_7(field, bench, tmp_path):
    env = Witnessed(bench, tmp_path)
    conf = conf_with_routes(tmp_path, [{"dst": "10.95.0.0/16", **HOSTILE_FIELDS[field]}])
    env.refused(conf, 7)


@pytest.mark.parametrize("field", list(HOSTILE_FIELDS))
def test_route_field_out_of_range_in_a_delegate_result_is_106(field, bench, tmp_path):
    env = Witnessed(bench, tmp_path)
    result = {"cniVersion": "1.1.0", "ips": [{"address": "10.92.0.77/24"}], "routes": [{"dst": "10.95.0.0/16", **HOSTILE_FIELDS[field]}]}
    fakes = tmp_path / "fakes"
    fake_ipam(fakes, "fakeipam", f"echo '{json.dumps(result)}'")
    conf = copy.deepcopy(env.conf)
    conf["ipam"] = {"type": "fakeipam"}
    env.refused(conf, 106, path=str(fakes))
