"""common/netlink/codec.py against pyroute2 0.9.7, the definitions its layouts come from.

pyroute2 is imported here the normal way: it is the reference.  The codec must
encode every request the suite builds to the same bytes as pyroute2's classes
(each request is built twice, by the suite's own functions, once with each),
and decode the recorded kernel replies (netlink_dumps/, see
test_netlink_offline.py) to the same values.  common/netlink/layouts.json must
be what build/gen_netlink_layouts.py makes of the installed pyroute2: when its
definitions change, the first test fails until the generator runs again.
"""

import collections
import errno
import importlib.util
import os
import random
import struct
import subprocess
import sys
import types
from ipaddress import ip_address, ip_interface, ip_network

import pyroute2
import pytest
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg as pr_ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg as pr_ifinfmsg
from pyroute2.netlink.rtnl.ndmsg import ndmsg as pr_ndmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg as pr_rtmsg

from common.netlink import addr, codec, core, link
from common.netlink.codec import DecodeError
from common.tests.test_netlink_offline import IFINFO_HDR, FakeSocket, all_messages, datagrams, header, link_message, nla_offset, patched

pytestmark = pytest.mark.unit

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REFERENCE = {codec.ifinfmsg: pr_ifinfmsg, codec.ifaddrmsg: pr_ifaddrmsg, codec.rtmsg: pr_rtmsg, codec.ndmsg: pr_ndmsg}
DUMPS = {"link_dump": codec.ifinfmsg, "addr_dump": codec.ifaddrmsg, "route4_dump": codec.rtmsg, "route6_dump": codec.rtmsg}
# what common/netlink reads of each dump: these must decode to values, not stay bytes
READ = {
    "link_dump": set(
        "IFLA_IFNAME IFLA_ADDRESS IFLA_MTU IFLA_MASTER IFLA_OPERSTATE IFLA_LINK IFLA_IFALIAS IFLA_LINKINFO IFLA_INFO_KIND IFLA_INFO_SLAVE_KIND "
        "IFLA_INFO_DATA IFLA_INFO_SLAVE_DATA IFLA_BR_VLAN_FILTERING IFLA_VXLAN_ID IFLA_VXLAN_PORT IFLA_VXLAN_LOCAL IFLA_VXLAN_LINK "
        "IFLA_VXLAN_LEARNING IFLA_VXLAN_COLLECT_METADATA IFLA_BRPORT_MODE IFLA_BRPORT_ISOLATED".split()
    ),
    "addr_dump": {"IFA_ADDRESS", "IFA_LOCAL", "IFA_FLAGS", "IFA_CACHEINFO"},
    "route4_dump": {"RTA_TABLE", "RTA_DST", "RTA_GATEWAY", "RTA_OIF", "RTA_PRIORITY", "RTA_METRICS", "RTAX_MTU", "RTAX_ADVMSS"},
    "route6_dump": {"RTA_TABLE", "RTA_DST", "RTA_GATEWAY", "RTA_OIF", "RTA_PRIORITY", "RTA_METRICS", "RTAX_MTU", "RTAX_ADVMSS"},
}


# --- the layouts are pyroute2's ------------------------------------------------------------


def test_the_committed_layouts_are_what_the_generator_makes_of_the_installed_pyroute2():
    spec = importlib.util.spec_from_file_location("gen_netlink_layouts", os.path.join(REPO, "build", "gen_netlink_layouts.py"))
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert pyroute2.__version__ == gen.PINNED, "pyroute2 is not the pinned version: check its definitions, regenerate, update PINNED"
    assert gen.TARGET == codec.LAYOUTS_FILE == os.path.join(REPO, "common", "netlink", "layouts.json")
    with open(gen.TARGET) as f:
        committed = f.read()
    assert gen.generate() == committed, "pyroute2's definitions differ from common/netlink/layouts.json: run build/gen_netlink_layouts.py"
    assert codec.PYROUTE2 == gen.PINNED


def test_the_codec_reads_its_layouts_once_and_names_the_file_when_it_cannot(tmp_path):
    assert set(codec.TABLES) >= {"ifinfbase", "ifaddrmsg", "rtmsg_base", "ndmsg"} and codec.LAYOUTS["ifinfmsg"][1] == "ifinfbase"
    missing = str(tmp_path / "layouts.json")
    with pytest.raises(ImportError, match=f"cannot read the netlink layouts {missing}") as err:
        codec._read_layouts(missing)
    assert err.value.path == missing
    for text in ("{", "[]", '{"layouts": {}}', "\udcff"):
        with open(missing, "w", errors="surrogateescape") as f:
            f.write(text)
        with pytest.raises(ImportError, match=missing):
            codec._read_layouts(missing)


def test_reading_the_layouts_does_not_import_json():
    code = f"import sys; sys.path.insert(0, {REPO!r}); import common.netlink.codec; print('json' in sys.modules)"
    assert subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"


# --- decoding: the same values as pyroute2 -----------------------------------------------------------


def pyroute2_decoded(message: bytes, cls):
    msg = REFERENCE[cls](message)
    msg.decode()
    return msg


def assert_same(ours, theirs, path: str, valued: collections.Counter) -> None:
    """ours: a codec Message; theirs: pyroute2's decoding of the same bytes (a message or a nested set)."""
    assert {k for k, _ in theirs.fields if not k.startswith("_")} == set(ours.fields), path
    for name, value in ours.fields.items():
        assert theirs[name] == value, (path, name)
    slots = theirs["attrs"]
    assert [name for name, _ in ours.attrs] == [slot.cell[0] for slot in slots], path
    for (name, value), slot in zip(ours.attrs, slots, strict=True):
        where = f"{path}/{name}"
        if isinstance(value, bytes):  # left raw: the attribute's payload as it came
            nla = slot.cell[1]
            assert bytes(nla.data[nla.offset + 4 : nla.offset + nla.length]) == value, where
            continue
        valued[name] += 1
        if isinstance(value, codec.Message):
            assert slot.try_to_decode(), where
            assert_same(value, slot.cell[1], where, valued)
        elif isinstance(value, dict):  # a struct
            theirs_struct = slot.get_value()
            assert {k: v for k, v in theirs_struct.items() if not k.startswith("_")} == value, where
        else:
            assert slot.get_value() == value, where


@pytest.mark.parametrize("stem", sorted(DUMPS))
def test_recorded_dumps_decode_as_pyroute2_decodes_them(stem):
    cls, valued, messages = DUMPS[stem], collections.Counter(), 0
    for message in all_messages(stem):
        if header(message)[1] == core.NLMSG_DONE:
            continue
        ours, theirs = cls(message).decode(), pyroute2_decoded(message, cls)
        assert ours.header == dict(theirs["header"])
        assert_same(ours, theirs, f"{stem}[{messages}]", valued)
        messages += 1
    assert messages >= 4
    assert READ[stem] <= set(valued), READ[stem] - set(valued)


# --- encoding: the same bytes as pyroute2, for every request the suite builds -------------------------

NETNS = types.SimpleNamespace(fd=7)
MAC = "0a:58:0a:01:00:01"
REQUESTS = {
    "find link by name": lambda nl: link.find_link(nl, "vx42"),
    "find link by index": lambda nl: link.find_link(nl, index=7),
    "list links": link.list_links,
    "create bridge": lambda nl: link.create_bridge(nl, "br0"),
    "create bridge, mtu, mac, vlan filtering": lambda nl: link.create_bridge(nl, "cni0", 1400, MAC, vlan_filtering=True),
    "create veth, peer in a netns": lambda nl: link.create_veth(nl, "veth0123abcd", "eth0", NETNS, 1450, "02:42:ac:11:00:02"),
    "create veth, both here": lambda nl: link.create_veth(nl, "cni0.5", "cni0.5p", None),
    "create vxlan v4": lambda nl: link.create_vxlan(nl, "vx42", 42, 4789, ip_address("192.0.2.1"), 3, "0e:56:c6:12:01:00", 1450),
    "create vxlan v6, learning, gbp": lambda nl: link.create_vxlan(nl, "vx6", 7, 8472, ip_address("2001:db8::1"), 0, MAC, learning=True, gbp=True),
    "set vxlan underlay v4": lambda nl: link.set_vxlan_underlay(nl, 7, ip_address("192.0.2.9"), 2),
    "set vxlan underlay v6": lambda nl: link.set_vxlan_underlay(nl, 7, ip_address("2001:db8::9"), 2),
    "delete link by name": lambda nl: link.delete_link(nl, "veth0123abcd"),
    "delete link by index": lambda nl: link.delete_link(nl, index=9),
    "set link, all of it": lambda nl: link.set_link(nl, 5, up=True, promisc=False, master=4, mtu=1400, mac=MAC, netns_fd=7, alias="overlay-test"),
    "set link down, no master": lambda nl: link.set_link(nl, 5, up=False, master=0, alias=""),
    "set bridge port flags": lambda nl: link.set_brport(nl, 6, hairpin=True, isolated=False),
    "add port vlan": lambda nl: link.add_port_vlan(nl, 6, 100, pvid=True, untagged=True),
    "delete port vlan": lambda nl: link.del_port_vlan(nl, 6, 1),
    "list port vlans": lambda nl: link.port_vlans(nl, 6),
    "list addresses": addr.list_addresses,
    "list IPv6 addresses": lambda nl: addr.list_addresses(nl, version=6),
    "add address /24": lambda nl: addr.add_address(nl, 3, ip_interface("10.1.0.2/24")),
    "add address /31": lambda nl: addr.add_address(nl, 3, ip_interface("10.1.0.2/31")),
    "add IPv6 address, nodad": lambda nl: addr.add_address(nl, 3, ip_interface("2001:db8::5/64"), nodad=True),
    "delete address": lambda nl: addr.del_address(nl, 3, ip_interface("10.1.0.2/24")),
    "list routes": lambda nl: addr.list_routes(nl, 4),
    "list IPv6 routes, every table": lambda nl: addr.list_routes(nl, 6, table=None),
    "add default route": lambda nl: addr.add_route(nl, ip_network("0.0.0.0/0"), ip_address("10.1.0.1"), 5),
    "add route with metrics": lambda nl: addr.add_route(nl, ip_network("198.18.9.0/24"), ip_address("203.0.113.9"), mtu=1400, advmss=1360),
    "add route, table 1000, onlink": lambda nl: addr.add_route(nl, ip_network("198.18.3.0/24"), ip_address("192.0.2.3"), 3, table=1000, onlink=True),
    "replace route, table 100, metric": lambda nl: addr.add_route(nl, ip_network("10.9.0.0/16"), None, 4, table=100, priority=50, replace=True),
    "append IPv6 route": lambda nl: addr.add_route(nl, ip_network("2001:db8:1::/64"), ip_address("fe80::1"), 3, append=True, mtu=1280),
    "add link-scope route": lambda nl: addr.add_route(nl, ip_network("10.1.0.0/24"), None, 4, scope=addr.RT_SCOPE_LINK, proto=addr.RTPROT_KERNEL),
    "delete route": lambda nl: addr.del_route(nl, ip_network("198.18.9.0/24"), ip_address("203.0.113.9"), 3),
    "list neighbours": addr.list_neighbours,
    "list fdb": lambda nl: addr.list_neighbours(nl, 7, bridge=True),
    "replace neighbour": lambda nl: addr.replace_neighbour(nl, 7, ip_address("10.1.0.7"), MAC),
    "replace IPv6 neighbour": lambda nl: addr.replace_neighbour(nl, 7, ip_address("2001:db8::7"), MAC),
    "delete neighbour": lambda nl: addr.del_neighbour(nl, 7, ip_address("10.1.0.7")),
    "replace fdb": lambda nl: addr.replace_fdb(nl, 7, MAC, ip_address("192.0.2.2")),
    "delete fdb": lambda nl: addr.del_fdb(nl, 7, MAC, ip_address("192.0.2.2")),
    "delete fdb, any vtep": lambda nl: addr.del_fdb(nl, 7, MAC),
}


def sent_by(request, monkeypatch) -> list[bytes]:
    sock = FakeSocket(script=[datagrams("ack")])
    monkeypatch.setattr(core.Netlink, "_open", staticmethod(lambda: sock))
    request(core.Netlink())
    return sock.sent


@pytest.mark.parametrize("name", list(REQUESTS))
def test_every_request_the_suite_builds_encodes_as_with_pyroute2(name, monkeypatch):
    ours = sent_by(REQUESTS[name], monkeypatch)
    for module in (addr, link):  # the same functions, building pyroute2's messages
        for cls, reference in REFERENCE.items():
            if hasattr(module, cls.__name__):
                monkeypatch.setattr(module, cls.__name__, reference)
    theirs = sent_by(REQUESTS[name], monkeypatch)
    assert len(ours) == 1 and ours == theirs, (ours[0].hex(), theirs[0].hex())
    # and both read it back the same way
    mtype = header(ours[0])[1]
    cls = {0: codec.ifinfmsg, 4: codec.ifaddrmsg, 8: codec.rtmsg, 12: codec.ndmsg}[(mtype - 16) & ~3]
    assert_same(cls(ours[0]).decode(), pyroute2_decoded(ours[0], cls), name, collections.Counter())


def test_a_veth_request_holds_the_peer_as_a_nested_ifinfomsg():
    msg = codec.ifinfmsg()
    peer = {"attrs": [("IFLA_IFNAME", "eth0"), ("IFLA_NET_NS_FD", 7)]}
    msg["attrs"] = [
        ("IFLA_IFNAME", "v0"),
        ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "veth"), ("IFLA_INFO_DATA", {"attrs": [("VETH_INFO_PEER", peer)]})]}),
    ]
    back = codec.ifinfmsg(msg.encode().data).decode()
    got = back.get_attr("IFLA_LINKINFO").get_attr("IFLA_INFO_DATA").get_attr("VETH_INFO_PEER")
    assert got.layout == "ifinfveth" and got["index"] == 0 and got.get_attr("IFLA_IFNAME") == "eth0" and got.get_attr("IFLA_NET_NS_FD") == 7


# --- the message API the suite uses ---------------------------------------------------------------------


def test_fields_attributes_and_header():
    msg = codec.rtmsg()
    assert msg["table"] == 0 and msg["attrs"] == [] and msg.get_attr("RTA_DST") is None and msg.get_attr("RTA_DST", "x") == "x"
    with pytest.raises(KeyError):
        msg["index"]
    with pytest.raises(KeyError):
        msg["nosuchfield"] = 1
    msg["header"]["type"] = addr.RTM_GETROUTE
    data = msg.encode().data
    assert header(data) == (28, addr.RTM_GETROUTE, 0, 0) and data[16] == 2  # rtmsg's family defaults to AF_INET, as pyroute2's
    assert msg["header"]["length"] == 28


def test_an_attribute_the_layout_does_not_know_is_refused_when_encoding():
    msg = codec.ifinfmsg()
    msg["attrs"] = [("IFLA_NO_SUCH_THING", 1)]
    with pytest.raises(ValueError, match="IFLA_NO_SUCH_THING"):
        msg.encode()


# --- what the kernel does not send: raw bytes where pyroute2 gave up, DecodeError where nothing tiles --------


def with_attr(message: bytes, atype: int, payload: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(payload), atype) + payload
    out = bytearray(message + b"\0" * (-len(message) % 4) + raw + b"\0" * (-len(raw) % 4))
    struct.pack_into("=I", out, 0, len(out))
    return bytes(out)


def test_an_unknown_attribute_decodes_to_raw_bytes():
    msg = codec.ifinfmsg(with_attr(link_message("lo"), 200, b"\1\2\3")).decode()
    assert msg.attrs[-1] == ("UNKNOWN", b"\1\2\3") and msg.get_attr("IFLA_IFNAME") == "lo"


def test_a_link_kind_without_a_layout_leaves_its_data_raw():
    br = link_message("br0")
    dummy = patched(br, nla_offset(br, IFINFO_HDR, (18, 1)), b"dumm\0\0")  # IFLA_INFO_KIND "bridge" -> "dumm"
    info = codec.ifinfmsg(dummy).decode().get_attr("IFLA_LINKINFO")
    assert info.get_attr("IFLA_INFO_KIND") == "dumm" and isinstance(info.get_attr("IFLA_INFO_DATA"), bytes)


@pytest.mark.parametrize("payload", [b"\1\2", b""])
def test_a_value_too_short_for_its_kind_stays_bytes(payload):
    msg = codec.ifinfmsg(with_attr(link_message("lo"), 4, payload)).decode()  # a second IFLA_MTU
    assert [v for n, v in msg.attrs if n == "IFLA_MTU"] == [65536, payload]


def test_a_nested_attribute_running_past_its_container_is_a_decode_error(fake_netlink):
    vx = link_message("vx42")
    info_data = nla_offset(vx, IFINFO_HDR, (18, 2)) - 4
    broken = patched(vx, info_data, struct.pack("=H", 0x400))
    with pytest.raises(DecodeError):
        codec.ifinfmsg(broken).decode()
    nl = fake_netlink([struct.pack("=IHHII", len(broken), 16, 0, 1, 0) + broken[16:]])
    with pytest.raises(core.NetlinkError) as err:
        nl._collect(codec.ifinfmsg, 1, "test")
    assert err.value.errno == errno.EPROTO


def test_a_message_shorter_than_its_fixed_part_is_a_decode_error():
    for cls, size in ((codec.ifinfmsg, 32), (codec.ifaddrmsg, 24), (codec.rtmsg, 28), (codec.ndmsg, 28)):
        with pytest.raises(DecodeError):
            cls(struct.pack("=IHHII", size - 1, 16, 0, 0, 0) + bytes(size)).decode()
        with pytest.raises(DecodeError):
            cls(struct.pack("=IHHII", size, 16, 0, 0, 0) + bytes(size - 17)).decode()  # the length says more than there is
        assert cls(struct.pack("=IHHII", size, 16, 0, 0, 0) + bytes(size - 16)).decode().attrs == []


def test_mangled_messages_decode_or_raise_decode_error_and_nothing_else():
    rng = random.Random(12)
    for stem, cls in DUMPS.items():
        for message in all_messages(stem)[:8]:
            if header(message)[1] == core.NLMSG_DONE:
                continue
            for cut in range(len(message)):  # truncated, with a consistent length
                _decode_or_error(cls, struct.pack("=I", cut) + message[4:cut] if cut >= 4 else message[:cut])
            for _ in range(300):
                mangled = bytearray(message)
                for _ in range(rng.randint(1, 4)):
                    mangled[rng.randrange(16, len(mangled))] = rng.randrange(256)
                _decode_or_error(cls, bytes(mangled))


def _decode_or_error(cls, data: bytes) -> None:
    try:
        cls(data).decode()
    except DecodeError:
        pass


@pytest.fixture
def fake_netlink(monkeypatch):
    def make(preloaded) -> core.Netlink:
        sock = FakeSocket(preloaded)
        monkeypatch.setattr(core.Netlink, "_open", staticmethod(lambda: sock))
        return core.Netlink()

    return make
