"""The shared netlink helper against the real kernel, inside throw-away namespaces."""

import os
from ipaddress import ip_address, ip_interface, ip_network

import pytest

from common import netlink
from common.errors import CNIError
from common.netlink import sysctl
from common.netns import NetNSGone, entered, open_netns

pytestmark = pytest.mark.root


@pytest.fixture
def pair(netns):
    node, cont = netns("n"), netns("c")
    n, c = open_netns(node.path), open_netns(cont.path)
    with netlink.inside(n) as nl, netlink.inside(c) as cl:
        yield node, cont, n, c, nl, cl
    n.close()
    c.close()


def test_bridge_and_veth_with_the_peer_born_in_the_container(pair):
    node, cont, n, c, nl, cl = pair
    netlink.create_bridge(nl, "br0", mtu=1400, mac="0a:58:00:00:00:01")
    br = netlink.get_link(nl, "br0")
    assert (br.kind, br.mtu, br.mac, br.vlan_filtering) == ("bridge", 1400, "0a:58:00:00:00:01", False)
    netlink.create_veth(nl, "vethtest1", "eth0", c, mtu=1400, peer_mac="02:00:00:00:00:07")
    assert netlink.find_link(nl, "eth0") is None  # never visible on the host side
    eth0 = netlink.get_link(cl, "eth0")
    veth = netlink.get_link(nl, "vethtest1")
    assert (eth0.kind, eth0.mac, eth0.mtu, eth0.peer_index) == ("veth", "02:00:00:00:00:07", 1400, veth.index)
    netlink.set_link(nl, veth.index, up=True, master=br.index)
    netlink.set_brport(nl, veth.index, hairpin=True, isolated=True)
    veth = netlink.get_link(nl, "vethtest1")
    assert (veth.master, veth.hairpin, veth.isolated, veth.up) == (br.index, True, True, True)
    netlink.set_brport(nl, veth.index, hairpin=False)
    assert netlink.get_link(nl, "vethtest1").hairpin is False
    with pytest.raises(netlink.LinkExists):
        netlink.create_veth(nl, "vethtest2", "eth0", c)  # the container already has eth0
    assert netlink.find_link(nl, "vethtest2") is None
    assert netlink.delete_link(cl, "eth0") is True
    assert netlink.find_link(nl, "vethtest1") is None  # the pair went together
    assert netlink.delete_link(cl, "eth0") is False


def test_kernel_errors_carry_the_kernels_explanation(pair):
    nl = pair[4]
    with pytest.raises(netlink.NetlinkError) as err:
        netlink.create_bridge(nl, "x" * 16)
    assert err.value.errno == 34 and "create bridge" in str(err.value)
    assert isinstance(err.value.cni("failed").code, int)
    with pytest.raises(netlink.LinkNotFound):
        netlink.get_link(nl, "nope")


def test_addresses_routes_and_ecmp(pair):
    node, cont, n, c, nl, cl = pair
    netlink.create_veth(nl, "vethtest3", "eth0", c)
    eth0 = netlink.get_link(cl, "eth0")
    assert netlink.add_address(cl, eth0.index, ip_interface("10.60.0.5/24")) is True
    assert netlink.add_address(cl, eth0.index, ip_interface("10.60.0.5/24")) is False
    assert netlink.add_address(cl, eth0.index, ip_interface("2001:db8:60::5/64"), nodad=True)
    netlink.set_link(cl, eth0.index, up=True)
    addrs = {str(a.address): a for a in netlink.list_addresses(cl, eth0.index)}
    assert "10.60.0.5/24" in addrs and not addrs["2001:db8:60::5/64"].tentative
    assert cont.ipj("addr", "show", "eth0")[0]["addr_info"][0]["broadcast"] == "10.60.0.255"
    gw = ip_address("10.60.0.1")
    assert netlink.add_route(cl, ip_network("0.0.0.0/0"), gw, eth0.index)
    assert netlink.add_route(cl, ip_network("0.0.0.0/0"), gw, eth0.index) is False
    assert netlink.add_route(cl, ip_network("192.0.2.0/24"), gw, eth0.index, priority=7, table=100)
    assert netlink.add_route(cl, ip_network("198.51.100.0/24"), gw, eth0.index, append=True)
    assert netlink.add_route(cl, ip_network("198.51.100.0/24"), ip_address("10.60.0.2"), eth0.index, append=True)
    main = netlink.list_routes(cl, 4)
    assert [(str(r.dst), str(r.gw)) for r in main if str(r.dst) == "198.51.100.0/24"] == [
        ("198.51.100.0/24", "10.60.0.1"),
        ("198.51.100.0/24", "10.60.0.2"),
    ]
    (r100,) = netlink.list_routes(cl, 4, table=100)
    assert (str(r100.dst), r100.priority) == ("192.0.2.0/24", 7)
    assert netlink.del_route(cl, ip_network("0.0.0.0/0"), gw, eth0.index) is True
    assert netlink.del_route(cl, ip_network("0.0.0.0/0"), gw, eth0.index) is False
    assert netlink.del_address(cl, eth0.index, ip_interface("10.60.0.5/24")) is True
    assert netlink.del_address(cl, eth0.index, ip_interface("10.60.0.5/24")) is False


def test_vxlan_neighbours_and_fdb_replace(pair):
    node, cont, n, c, nl, cl = pair
    netlink.create_vxlan(nl, "vxt.42", 42, 4789, ip_address("192.0.2.1"), 0, "0e:56:00:00:00:01", mtu=1450)
    vx = netlink.get_link(nl, "vxt.42")
    assert vx.vxlan["vni"] == 42 and vx.vxlan["port"] == 4789 and vx.vxlan["learning"] is False
    assert vx.vxlan["local"] == "192.0.2.1" and vx.mac == "0e:56:00:00:00:01"
    netlink.set_link(nl, vx.index, up=True)
    netlink.replace_neighbour(nl, vx.index, ip_address("10.244.2.0"), "0e:56:0a:f4:02:00")
    netlink.replace_fdb(nl, vx.index, "0e:56:0a:f4:02:00", ip_address("192.0.2.2"))
    netlink.replace_fdb(nl, vx.index, "0e:56:0a:f4:02:00", ip_address("192.0.2.3"))  # a peer moved
    fdb = [f for f in netlink.list_neighbours(nl, vx.index, bridge=True) if f.mac == "0e:56:0a:f4:02:00"]
    assert [str(f.dst) for f in fdb] == ["192.0.2.3"]
    (neigh,) = netlink.list_neighbours(nl, vx.index)
    assert (str(neigh.dst), neigh.mac, neigh.state) == ("10.244.2.0", "0e:56:0a:f4:02:00", netlink.NUD_PERMANENT)
    assert netlink.del_fdb(nl, vx.index, "0e:56:0a:f4:02:00", ip_address("192.0.2.3")) is True
    assert netlink.del_neighbour(nl, vx.index, ip_address("10.244.2.0")) is True
    assert netlink.del_neighbour(nl, vx.index, ip_address("10.244.2.0")) is False


def test_sysctls_follow_the_entered_namespace(pair):
    node, cont, n, c, nl, cl = pair
    with entered(c):
        sysctl.write("ipv4/conf/lo/arp_notify", "1")
        assert sysctl.read("ipv4/conf/lo/arp_notify") == "1"
    assert cont.exec("cat", "/proc/sys/net/ipv4/conf/lo/arp_notify").strip() == "1"
    home = os.stat("/proc/thread-self/ns/net").st_ino
    with entered(n):
        assert sysctl.read("ipv4/conf/lo/arp_notify") == "0"
        assert os.stat("/proc/thread-self/ns/net").st_ino != home
    assert os.stat("/proc/thread-self/ns/net").st_ino == home
    with pytest.raises(ValueError):
        sysctl.path("../../etc/passwd")


def test_open_netns_refuses_what_is_not_a_network_namespace(pair, tmp_path):
    node = pair[0]
    assert open_netns(node.path).path == node.path
    for path in ("/proc/self/ns/mnt", str(tmp_path), "/nonexistent"):
        with pytest.raises(NetNSGone):
            open_netns(path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(NetNSGone):
        open_netns(str(fifo))
    with pytest.raises(CNIError):
        open_netns("/proc/self/ns/net")
    if os.access("/proc/1/ns/net", os.R_OK):  # some sandboxes hide PID 1's namespace from us
        with pytest.raises(CNIError):
            open_netns("/proc/1/ns/net")
