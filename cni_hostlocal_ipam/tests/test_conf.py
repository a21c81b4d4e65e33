import pytest

from cni_hostlocal_ipam.conf import IPAMConf, read_resolv_conf
from common.errors import CNIError
from common.skel import CmdArgs

pytestmark = pytest.mark.unit


def args(ipam: dict, version: str = "1.0.0", cni_args: dict | None = None, **top) -> CmdArgs:
    config = {"cniVersion": version, "name": "net", "ipam": dict(type="host-local", **ipam), **top}
    return CmdArgs.for_config(config, command="ADD", cni_args=cni_args)


def load(ipam: dict, **kw) -> IPAMConf:
    return IPAMConf.load(args(ipam, **kw))


def test_subnet_shorthand_defaults():
    conf = load({"subnet": "192.0.2.0/24"})
    (r,) = conf.range_sets[0].ranges
    assert (str(r.start), str(r.end), str(r.gateway)) == ("192.0.2.1", "192.0.2.254", "192.0.2.1")
    assert conf.data_dir == "/var/lib/cni/networks" and conf.name == "net"


@pytest.mark.parametrize(
    "subnet,end",
    [("192.0.2.0/25", "192.0.2.126"), ("2001:db8:1::/64", "2001:db8:1:0:ffff:ffff:ffff:ffff"), ("10.0.0.0/30", "10.0.0.2")],
)
def test_range_end_defaults(subnet, end):
    assert str(load({"subnet": subnet}).range_sets[0].ranges[0].end) == end


def test_range_set_order_runtime_then_legacy_then_ranges():
    conf = load(
        {"subnet": "10.2.0.0/24", "ranges": [[{"subnet": "10.3.0.0/24"}]]},
        runtimeConfig={"ipRanges": [[{"subnet": "10.1.0.0/24"}]]},
    )
    assert [str(s.ranges[0].subnet) for s in conf.range_sets] == ["10.1.0.0/24", "10.2.0.0/24", "10.3.0.0/24"]


def test_requested_ip_order_and_sources():
    conf = load(
        {"subnet": "10.1.0.0/24"},
        cni_args={"IP": "10.1.0.9/24"},
        args={"cni": {"ips": ["10.1.0.10"]}},
        runtimeConfig={"ips": ["10.1.0.11/24", "::ffff:10.1.0.12"]},
    )
    assert [str(ip) for ip in conf.requested] == ["10.1.0.9", "10.1.0.10", "10.1.0.11", "10.1.0.12"]


def test_keys_match_case_insensitively_like_go():
    conf = IPAMConf.load(
        CmdArgs.for_config({"cniVersion": "1.0.0", "name": "n", "IPAM": {"Subnet": "10.9.0.0/16", "DATADIR": "/tmp/x"}}, command="ADD")
    )
    assert str(conf.range_sets[0].ranges[0].subnet) == "10.9.0.0/16" and conf.data_dir == "/tmp/x"


def test_routes_and_dns():
    conf = load({"subnet": "10.1.0.0/24", "routes": [{"dst": "0.0.0.0/0"}, {"dst": "10.9.0.0/16", "gw": "10.1.0.254", "priority": 5}]})
    assert [(str(r.dst), r.gw and str(r.gw), r.priority) for r in conf.routes] == [("0.0.0.0/0", None, 0), ("10.9.0.0/16", "10.1.0.254", 5)]


@pytest.mark.parametrize(
    "ipam,fragment",
    [
        ({}, "no IP ranges"),
        ({"subnet": "banana"}, "not a CIDR"),
        ({"subnet": "10.0.0.0/40"}, "not a CIDR"),
        ({"subnet": "10.99.0.5/24"}, "host bits set"),
        ({"subnet": "10.0.0.0/31"}, "too small"),
        ({"subnet": "2001:db8::/127"}, "too small"),
        ({"subnet": "10.0.0.0/24", "rangeStart": "10.0.1.5"}, "not in network"),
        ({"subnet": "10.0.0.0/24", "rangeEnd": "10.0.1.5"}, "not in network"),
        ({"subnet": "10.0.0.0/24", "rangeStart": "10.0.0.50", "rangeEnd": "10.0.0.40"}, "after rangeEnd"),
        ({"subnet": "10.0.0.0/24", "gateway": "10.0.0.0"}, "not a host address"),
        ({"subnet": "10.0.0.0/24", "gateway": "10.0.0.255"}, "not a host address"),
        ({"subnet": "10.0.0.0/24", "gateway": "10.0.5.1"}, "not a host address"),
        ({"subnet": "10.0.0.0/24", "gateway": "fd00::1"}, "not an IPv4"),
        ({"subnet": "fd00::/64", "gateway": "fd00::5%eth0"}, "not an IP"),
        ({"subnet": "::ffff:10.98.0.0/120"}, "IPv4-mapped"),
        ({"subnet": "010.0.0.0/24"}, "not a CIDR"),
        ({"ranges": [[{"subnet": "10.0.0.0/24"}, {"subnet": "10.0.0.0/25"}]]}, "overlap"),
        ({"ranges": [[{"subnet": "10.0.0.0/24"}], [{"subnet": "10.0.0.0/24"}]]}, "overlaps"),
        ({"ranges": [[{"subnet": "10.0.0.0/24"}, {"subnet": "fd00::/64"}]]}, "mixed"),
        ({"ranges": [[]]}, "empty range set"),
        ({"ranges": "10.0.0.0/24"}, "a list"),
        ({"subnet": "10.0.0.0/24", "routes": [{"dst": "banana"}]}, "routes"),
        ({"subnet": "10.0.0.0/24", "routes": [{"dst": "10.9.0.0/16", "gw": "fd00::1"}]}, "differ in family"),
        ({"subnet": "10.0.0.0/24", "dataDir": "rel/dir"}, "absolute"),
        ({"subnet": "10.0.0.0/24", "dataDir": "/var/lib/../../etc"}, "absolute"),
        ({"subnet": "10.0.0.0/24", "resolvConf": "resolv.conf"}, "absolute"),
        ({"subnet": "10.0.0.0/24", "lockTimeout": "10"}, "lockTimeout"),
        ({"subnet": 24}, "a string"),
    ],
)
def test_invalid_config_is_code_7(ipam, fragment):
    with pytest.raises(CNIError) as err:
        load(ipam)
    assert err.value.code == 7, err.value
    assert fragment in str(err.value)


def test_missing_ipam_key():
    with pytest.raises(CNIError) as err:
        IPAMConf.load(CmdArgs.for_config({"cniVersion": "1.0.0", "name": "n"}, command="ADD"))
    assert err.value.code == 7 and "missing 'ipam'" in err.value.msg


def test_two_range_sets_per_family_need_0_3_0():
    ipam = {"ranges": [[{"subnet": "10.0.0.0/24"}], [{"subnet": "10.1.0.0/24"}]]}
    with pytest.raises(CNIError) as err:
        load(ipam, version="0.2.0")
    assert err.value.code == 1
    assert len(load(ipam, version="0.3.0").range_sets) == 2
    load({"ranges": [[{"subnet": "10.0.0.0/24"}], [{"subnet": "fd00::/64"}]]}, version="0.2.0")


def test_bad_requested_ips():
    with pytest.raises(CNIError) as err:
        load({"subnet": "10.0.0.0/24"}, cni_args={"IP": "not-an-ip"})
    assert err.value.code == 4
    with pytest.raises(CNIError) as err:
        load({"subnet": "10.0.0.0/24"}, runtimeConfig={"ips": ["nope"]})
    assert err.value.code == 7


def test_resolv_conf_parsing(tmp_path):
    f = tmp_path / "resolv.conf"
    f.write_text(
        "# comment\n; other\nnameserver 10.0.0.53\nnameserver 10.0.0.54\ndomain example.org\nsearch a.org b.org\noptions ndots:5 edns0\nbogus\n"
    )
    dns = read_resolv_conf(str(f))
    assert dns.nameservers == ("10.0.0.53", "10.0.0.54") and dns.domain == "example.org"
    assert dns.search == ("a.org", "b.org") and dns.options == ("ndots:5", "edns0")


@pytest.mark.parametrize("make", ["fifo", "dir", "missing", "huge"])
def test_resolv_conf_that_is_not_a_small_file_is_refused(tmp_path, make):
    import os

    path = tmp_path / "r"
    if make == "fifo":
        os.mkfifo(path)
    elif make == "dir":
        path.mkdir()
    elif make == "huge":
        path.write_bytes(b"#" * (65 << 10))
    with pytest.raises(CNIError) as err:
        read_resolv_conf(str(path))
    assert err.value.code == 7
