"""common/netlink without a kernel: recorded replies fed through a fake socket.

The datagrams under netlink_dumps/ are what a real kernel (Linux 6.18) returned
to recv() in a throw-away namespace; netlink_dumps/capture.py made them and its
docstring lists the topology (ul0/ul1, br0, veth0/veth1, vx42, four routes) the
assertions below rely on.  Interface indexes are the recorded ones (lo 1, ul1 2,
ul0 3, br0 4, veth1 5, veth0 6, vx42 7) but the tests look them up by name.
"""

import errno
import os
import socket
import struct
from ipaddress import ip_address, ip_interface, ip_network

import pytest

from common.errors import Code
from common.netlink import addr, core, link
from common.netlink.core import NLM_F_DUMP_INTR, NLM_F_MULTI, NLMSG_DONE, NLMSG_ERROR, Netlink, NetlinkError, ifaddrmsg, ifinfmsg, rtmsg

pytestmark = pytest.mark.unit

DUMPS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "netlink_dumps")
IFINFO_HDR, IFADDR_HDR, RTMSG_HDR = 16 + 16, 16 + 8, 16 + 12  # nlmsghdr + the family header
IFLA_LINKINFO, IFLA_INFO_DATA, IFLA_INFO_SLAVE_DATA = 18, 2, 5
IFLA_BR_VLAN_FILTERING, IFLA_VXLAN_LEARNING, IFLA_BRPORT_MODE = 7, 7, 4
IFA_F_NODAD, IFA_F_PERMANENT = 0x02, 0x80


# --- recorded datagrams and a socket that replays them ------------------------------


def datagrams(stem: str) -> list[bytes]:
    with open(os.path.join(DUMPS, f"{stem}.hex")) as f:
        return [bytes.fromhex(line.strip()) for line in f if line.strip() and not line.startswith("#")]


def split(datagram: bytes) -> list[bytes]:
    """The messages of one datagram, each without its alignment padding."""
    out, offset = [], 0
    while offset + 16 <= len(datagram):
        length = struct.unpack_from("=I", datagram, offset)[0]
        out.append(datagram[offset : offset + length])
        offset += (length + 3) & ~3
    return out


def join(*messages: bytes) -> bytes:
    return b"".join(m + b"\0" * (-len(m) % 4) for m in messages)


def header(message: bytes) -> tuple[int, int, int, int]:
    """(length, type, flags, seq)"""
    return struct.unpack_from("=IHHI", message, 0)


def with_flags(message: bytes, set_: int = 0, clear: int = 0) -> bytes:
    out = bytearray(message)
    flags = struct.unpack_from("=H", out, 6)[0]
    struct.pack_into("=H", out, 6, (flags | set_) & ~clear)
    return bytes(out)


def renumbered(datagram: bytes, seq: int) -> bytes:
    return join(*(m[:8] + struct.pack("=I", seq) + m[12:] for m in split(datagram)))


def all_messages(stem: str) -> list[bytes]:
    return [m for d in datagrams(stem) for m in split(d)]


def link_message(name: str) -> bytes:
    for m in all_messages("link_dump"):
        if header(m)[1] == link.RTM_NEWLINK and _ifname(m) == name:
            return m
    raise KeyError(name)


def _ifname(message: bytes) -> str:
    payload = message[nla_offset(message, IFINFO_HDR, (3,)) :]  # IFLA_IFNAME
    return payload.split(b"\0", 1)[0].decode()


def nla_offset(message: bytes, start: int, path: tuple[int, ...]) -> int:
    """Offset of the payload of the (nested) attribute `path` in one message."""
    end = len(message)
    for want in path:
        offset = start
        while offset + 4 <= end:
            alen, atype = struct.unpack_from("=HH", message, offset)
            if atype & 0x3FFF == want:
                break
            offset += (alen + 3) & ~3
        else:
            raise KeyError(path)
        start, end = offset + 4, offset + alen
    return start


def patched(message: bytes, offset: int, value: bytes) -> bytes:
    return message[:offset] + value + message[offset + len(value) :]


class Blocked(AssertionError):
    """recv() with nothing left to read: a real socket would block for ever."""


class FakeSocket:
    """The NETLINK_ROUTE socket, played back.

    Either preloaded with datagrams (for _collect), or scripted: each send()
    queues the next answer of `script`, renumbered to the request's sequence
    number, as the kernel answers every request under its own number.
    """

    def __init__(self, preloaded=(), script=()):
        self.queue = list(preloaded)
        self.script = [list(answer) for answer in script]
        self.sent: list[bytes] = []
        self.closed = False

    def send(self, data) -> int:
        data = bytes(data)
        self.sent.append(data)
        if self.script:
            seq = header(data)[3]
            self.queue.extend(renumbered(d, seq) for d in self.script.pop(0))
        return len(data)

    def recv(self, bufsize: int) -> bytes:
        if not self.queue:
            raise Blocked("recv() on an exhausted socket")
        return self.queue.pop(0)

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def fake(monkeypatch):
    """fake(preloaded=..., script=...) -> a Netlink whose socket is a FakeSocket."""

    def make(preloaded=(), script=()) -> Netlink:
        sock = FakeSocket(preloaded, script)
        monkeypatch.setattr(Netlink, "_open", staticmethod(lambda: sock))
        return Netlink()

    return make


def collect(nl: Netlink, cls, seq: int):
    return nl._collect(cls, seq, "test request")


# --- the recordings are what the tests think they are ------------------------------


def test_the_recordings_are_multipart_dumps_ending_in_done():
    links = datagrams("link_dump")
    assert len(links) >= 2, "the link dump must span several datagrams to test multipart collection"
    for stem, seq in (("link_dump", 1), ("addr_dump", 2), ("route4_dump", 3), ("route6_dump", 4)):
        messages = all_messages(stem)
        assert all(header(m)[3] == seq for m in messages), stem
        assert header(messages[-1])[1] == NLMSG_DONE and all(header(m)[2] & NLM_F_MULTI for m in messages), stem
        assert not any(header(m)[2] & NLM_F_DUMP_INTR for m in messages), stem
    for stem in ("err_route_gw", "err_link_exists", "err_link_missing", "ack"):
        (only,) = all_messages(stem)
        assert header(only)[1] == NLMSG_ERROR, stem


# --- _collect: multipart replies, sequence numbers, errors -----------------------------


def test_a_dump_over_several_datagrams_is_collected_in_order(fake):
    nl = fake(preloaded=datagrams("link_dump"))
    replies, interrupted = collect(nl, ifinfmsg, 1)
    assert not interrupted
    assert [r.get_attr("IFLA_IFNAME") for r in replies] == ["lo", "ul1", "ul0", "br0", "veth1", "veth0", "vx42"]
    assert nl.sock.queue == []  # everything up to NLMSG_DONE was read, nothing beyond


def test_collect_stops_at_done_and_leaves_later_datagrams_unread(fake):
    extra = datagrams("ack")[0]
    nl = fake(preloaded=datagrams("route4_dump") + [extra])
    replies, _ = collect(nl, rtmsg, 3)
    assert len(replies) == len(all_messages("route4_dump")) - 1
    assert nl.sock.queue == [extra]


def test_late_replies_to_earlier_requests_are_skipped(fake):
    # an ACK (seq 8) and a whole earlier dump (seq 3) arrive before our dump (seq 1)
    nl = fake(preloaded=datagrams("ack") + datagrams("route4_dump") + datagrams("link_dump"))
    replies, _ = collect(nl, ifinfmsg, 1)
    assert len(replies) == 7 and replies[0].get_attr("IFLA_IFNAME") == "lo"


def test_a_single_reply_without_multi_ends_the_request(fake):
    only = with_flags(link_message("br0"), clear=NLM_F_MULTI)
    nl = fake(preloaded=[only])
    replies, interrupted = collect(nl, ifinfmsg, 1)
    assert [r.get_attr("IFLA_IFNAME") for r in replies] == ["br0"] and not interrupted


def test_an_ack_ends_a_request_without_replies(fake):
    nl = fake(preloaded=datagrams("ack"))
    assert collect(nl, ifaddrmsg, 8) == ([], False)


def test_an_error_reply_raises_netlink_error_with_the_kernels_message(fake):
    nl = fake(preloaded=datagrams("err_route_gw"))
    with pytest.raises(NetlinkError) as err:
        collect(nl, rtmsg, 5)
    assert err.value.errno == errno.ENETUNREACH
    assert err.value.ext_msg == "Nexthop has invalid gateway"
    assert str(err.value) == f"[Errno {errno.ENETUNREACH}] test request: {os.strerror(errno.ENETUNREACH)} (Nexthop has invalid gateway)"


def test_an_error_without_ack_tlvs_has_no_extended_message(fake):
    nl = fake(preloaded=datagrams("err_link_exists"))
    with pytest.raises(NetlinkError) as err:
        collect(nl, ifinfmsg, 6)
    assert (err.value.errno, err.value.ext_msg) == (errno.EEXIST, "")
    assert "(" not in err.value.strerror


def test_an_error_reply_during_a_dump_aborts_it(fake):
    first = datagrams("link_dump")[0]
    error = renumbered(datagrams("err_link_missing")[0], 1)
    nl = fake(preloaded=[first, error] + datagrams("link_dump")[1:])
    with pytest.raises(NetlinkError) as err:
        collect(nl, ifinfmsg, 1)
    assert err.value.errno == errno.ENODEV


# --- NLM_F_DUMP_INTR ----------------------------------------------------------------------


def with_dump_intr(answer: list[bytes], only_done: bool = False) -> list[bytes]:
    """The same datagrams with NLM_F_DUMP_INTR set on every message (or on NLMSG_DONE only)."""
    out = []
    for d in answer:
        out.append(join(*(with_flags(m, NLM_F_DUMP_INTR) if not only_done or header(m)[1] == NLMSG_DONE else m for m in split(d))))
    return out


def test_an_interrupted_dump_is_reported_by_collect(fake):
    nl = fake(preloaded=with_dump_intr(datagrams("link_dump")))
    replies, interrupted = collect(nl, ifinfmsg, 1)
    assert interrupted and len(replies) == 7


def test_dump_intr_on_done_alone_counts(fake):
    nl = fake(preloaded=with_dump_intr(datagrams("link_dump"), only_done=True))
    assert collect(nl, ifinfmsg, 1)[1] is True


def test_an_interrupted_dump_is_retried_under_a_new_sequence_number(fake):
    nl = fake(script=[with_dump_intr(datagrams("route4_dump")), datagrams("route4_dump")])
    routes = addr.list_routes(nl, 4)
    assert len(nl.sock.sent) == 2
    seqs = [header(s)[3] for s in nl.sock.sent]
    assert seqs == [1, 2]
    assert nl.sock.sent[0][12:] == nl.sock.sent[1][12:] and nl.sock.sent[0][:8] == nl.sock.sent[1][:8]
    assert ip_network("198.18.2.0/24") in [r.dst for r in routes]


def test_three_interrupted_dumps_return_the_last_view_without_a_fourth_try(fake):
    first, _, done = datagrams("link_dump")
    partial = with_dump_intr([first, done])  # lo and ul1 only
    nl = fake(script=[partial, partial, with_dump_intr(datagrams("link_dump")), datagrams("link_dump")])
    replies = nl.request(ifinfmsg(), link.RTM_GETLINK, core.NLM_F_REQUEST | core.NLM_F_DUMP, "list links")
    assert [header(s)[3] for s in nl.sock.sent] == [1, 2, 3]
    assert len(nl.sock.script) == 1  # the clean fourth answer was never asked for
    assert [r.get_attr("IFLA_IFNAME") for r in replies] == ["lo", "ul1", "ul0", "br0", "veth1", "veth0", "vx42"]


def test_request_header_fields(fake):
    nl = fake(script=[datagrams("link_dump"), datagrams("link_dump")])
    nl.request(ifinfmsg(), link.RTM_GETLINK, core.NLM_F_REQUEST | core.NLM_F_DUMP, "list links")
    nl.request(ifinfmsg(), link.RTM_GETLINK, core.NLM_F_REQUEST | core.NLM_F_DUMP, "list links")
    for n, sent in enumerate(nl.sock.sent, start=1):
        length, mtype, flags, seq = header(sent)
        assert (length, mtype, flags, seq) == (len(sent), link.RTM_GETLINK, 0x301, n)
        assert struct.unpack_from("=I", sent, 12)[0] == 0  # pid 0: the kernel


# --- _ext_ack -------------------------------------------------------------------------


def test_ext_ack_of_the_recorded_error():
    (chunk,) = all_messages("err_route_gw")
    assert header(chunk)[2] & core.NLM_F_ACK_TLVS
    assert core._ext_ack(chunk) == "Nexthop has invalid gateway"
    assert core._ext_ack(all_messages("err_link_exists")[0]) == ""


def _error_with_tlvs(*tlvs: tuple[int, bytes]) -> bytes:
    body = struct.pack("=i", -errno.EINVAL) + struct.pack("=IHHII", 16, 16, 0x5, 1, 0)
    for atype, payload in tlvs:
        raw = struct.pack("=HH", 4 + len(payload), atype) + payload
        body += raw + b"\0" * (-len(raw) % 4)
    return struct.pack("=IHHII", 16 + len(body), NLMSG_ERROR, 0x300, 1, 0) + body


@pytest.mark.parametrize(
    "tlvs,expected",
    [
        ([(1, b"plain\0")], "plain"),
        ([(2, struct.pack("=I", 40)), (1, b"after an offset TLV\0")], "after an offset TLV"),  # NLMSGERR_ATTR_OFFS first
        ([(1 | 0x8000, b"nested bit ignored\0")], "nested bit ignored"),
        ([(1, b"no terminator")], "no terminator"),
        ([(1, b"bad \xff utf-8\0")], "bad \ufffd utf-8"),
        ([(1, b"first\0junk after NUL")], "first"),
        ([(2, struct.pack("=I", 40))], ""),  # no message at all
        ([], ""),
    ],
)
def test_ext_ack_extraction(tlvs, expected):
    assert core._ext_ack(_error_with_tlvs(*tlvs)) == expected


@pytest.mark.parametrize("alen", [0, 1, 3])
def test_ext_ack_stops_at_a_tlv_shorter_than_its_header(alen):
    chunk = _error_with_tlvs((1, b"unreached\0"))
    bad = bytearray(chunk)
    struct.pack_into("=H", bad, 36, alen)
    assert core._ext_ack(bytes(bad)) == ""


def test_ext_ack_with_a_tlv_longer_than_the_message():
    chunk = bytearray(_error_with_tlvs((1, b"cut\0")))
    struct.pack_into("=H", chunk, 36, 200)
    assert core._ext_ack(bytes(chunk)) == "cut"


# --- NetlinkError ------------------------------------------------------------------------


def test_netlink_error_fields_and_code_mapping():
    err = NetlinkError(errno.ENETUNREACH, "add route 10.0.0.0/8", "Nexthop has invalid gateway")
    assert isinstance(err, OSError) and err.errno == errno.ENETUNREACH
    assert err.strerror == f"add route 10.0.0.0/8: {os.strerror(errno.ENETUNREACH)} (Nexthop has invalid gateway)"
    assert err.ext_msg == "Nexthop has invalid gateway"
    assert err.cni("failed").code == Code.KERNEL_REFUSED
    assert NetlinkError(errno.ENODEV, "x").cni("gone").code == Code.TRY_AGAIN_LATER
    assert NetlinkError(errno.ENOSPC, "x").cni("full").code == Code.IO_FAILURE
    assert NetlinkError(errno.EPERM, "x").strerror == f"x: {os.strerror(errno.EPERM)}"
    assert (core.LinkNotFound("eth9").errno, core.LinkExists("br0").errno) == (errno.ENODEV, errno.EEXIST)
    assert "link eth9" in str(core.LinkNotFound("eth9"))


# --- links ------------------------------------------------------------------------------------


@pytest.fixture
def links(fake) -> dict:
    nl = fake(script=[datagrams("link_dump")])
    return {lk.name: lk for lk in link.list_links(nl)}


def test_link_dump_decodes_every_device(links):
    assert list(links) == ["lo", "ul1", "ul0", "br0", "veth1", "veth0", "vx42"]
    assert [lk.index for lk in links.values()] == [1, 2, 3, 4, 5, 6, 7]


def test_loopback(links):
    lo = links["lo"]
    assert (lo.kind, lo.mac, lo.mtu, lo.master, lo.peer_index, lo.operstate) == ("", "00:00:00:00:00:00", 65536, 0, 0, "UNKNOWN")
    assert lo.up and lo.vxlan is None and lo.vlan_filtering is None and lo.hairpin is None


def test_bridge(links):
    br = links["br0"]
    assert (br.kind, br.mac, br.mtu, br.master, br.operstate, br.up) == ("bridge", "0a:58:0a:01:00:01", 1400, 0, "UP", True)
    assert br.vlan_filtering is False and br.slave_kind == "" and br.hairpin is None and br.isolated is None
    assert not br.promisc


def test_veth_pair_and_bridge_port(links):
    veth0, veth1, br = links["veth0"], links["veth1"], links["br0"]
    assert (veth0.kind, veth0.mac, veth0.mtu) == ("veth", "02:00:00:00:00:07", 1400)
    assert (veth1.kind, veth1.mac, veth1.mtu) == ("veth", "02:00:00:00:00:08", 1400)
    assert veth0.peer_index == veth1.index and veth1.peer_index == veth0.index
    assert veth0.master == br.index and veth1.master == 0
    assert (veth0.slave_kind, veth0.hairpin, veth0.isolated) == ("bridge", True, True)
    assert (veth1.slave_kind, veth1.hairpin, veth1.isolated) == ("", None, None)
    # the kernel reports IFF_PROMISC only when asked for it, not for the promiscuity a bridge port holds
    assert not veth0.promisc and veth0.flags & link.IFF_UP


def test_vxlan(links):
    vx = links["vx42"]
    assert (vx.kind, vx.mac, vx.mtu, vx.alias) == ("vxlan", "0e:56:c6:12:01:00", 1450, "overlay-test")
    assert vx.vxlan == {
        "vni": 42,
        "port": 4789,
        "local": "192.0.2.1",
        "link": links["ul0"].index,
        "learning": False,
        "gbp": False,
        "collect_metadata": False,
    }
    assert links["ul0"].alias == "" and links["ul0"].vxlan is None


def decode_one(message: bytes) -> link.Link:
    msg = ifinfmsg(message)
    msg.decode()
    return link._decode(msg)


def test_decode_reads_values_not_presence():
    br = link_message("br0")
    on = patched(br, nla_offset(br, IFINFO_HDR, (IFLA_LINKINFO, IFLA_INFO_DATA, IFLA_BR_VLAN_FILTERING)), b"\1")
    assert decode_one(br).vlan_filtering is False and decode_one(on).vlan_filtering is True
    vx = link_message("vx42")
    learning = patched(vx, nla_offset(vx, IFINFO_HDR, (IFLA_LINKINFO, IFLA_INFO_DATA, IFLA_VXLAN_LEARNING)), b"\1")
    assert decode_one(learning).vxlan["learning"] is True
    port = link_message("veth0")
    no_hairpin = patched(port, nla_offset(port, IFINFO_HDR, (IFLA_LINKINFO, IFLA_INFO_SLAVE_DATA, IFLA_BRPORT_MODE)), b"\0")
    decoded = decode_one(no_hairpin)
    assert (decoded.hairpin, decoded.isolated) == (False, True)
    flags = struct.unpack_from("=I", br, 24)[0]  # ifi_flags
    promisc = decode_one(patched(br, 24, struct.pack("=I", flags | link.IFF_PROMISC)))
    assert promisc.promisc and promisc.up and not decode_one(br).promisc
    down = decode_one(patched(br, 24, struct.pack("=I", flags & ~link.IFF_UP)))
    assert not down.up


def test_find_link_by_name(fake):
    reply = with_flags(link_message("vx42"), clear=NLM_F_MULTI)
    nl = fake(script=[[reply]])
    vx = link.find_link(nl, "vx42")
    assert vx.name == "vx42" and vx.vxlan["vni"] == 42
    request = nl.sock.sent[0]
    assert header(request)[1:3] == (link.RTM_GETLINK, core.NLM_F_REQUEST)
    assert _ifname(request) == "vx42"


def test_a_missing_link_is_none_or_link_not_found(fake):
    nl = fake(script=[datagrams("err_link_missing"), datagrams("err_link_missing")])
    assert link.find_link(nl, "nosuchdev") is None
    with pytest.raises(core.LinkNotFound) as err:
        link.get_link(nl, "nosuchdev")
    assert err.value.errno == errno.ENODEV


def test_creating_an_existing_link_is_link_exists(fake):
    nl = fake(script=[datagrams("err_link_exists")])
    with pytest.raises(core.LinkExists) as err:
        link.create_bridge(nl, "br0")
    assert err.value.errno == errno.EEXIST and "br0" in str(err.value)


# --- addresses ---------------------------------------------------------------------------------


def test_address_dump(fake):
    nl = fake(script=[datagrams("addr_dump")])
    addresses = addr.list_addresses(nl)
    by_ip = {str(a.address): a for a in addresses}
    assert by_ip["127.0.0.1/8"].index == 1 and by_ip["127.0.0.1/8"].scope == addr.RT_SCOPE_HOST
    assert by_ip["192.0.2.1/24"].index == 3 and by_ip["192.0.2.1/24"].scope == addr.RT_SCOPE_UNIVERSE
    assert by_ip["10.1.0.1/24"].index == 4
    v6 = by_ip["2001:db8::1/64"]
    assert v6.index == 3 and v6.flags == IFA_F_NODAD | IFA_F_PERMANENT and not v6.tentative and not v6.dad_failed
    assert by_ip["::1/128"].scope == addr.RT_SCOPE_HOST
    link_locals = [a for a in addresses if a.address.version == 6 and a.address.ip.is_link_local]
    assert {a.index for a in link_locals} == {2, 3, 4, 5, 6, 7} and all(a.scope == addr.RT_SCOPE_LINK for a in link_locals)
    assert len(addresses) == 11


def test_address_dump_filtered_by_index_and_request_family(fake):
    nl = fake(script=[datagrams("addr_dump"), datagrams("addr_dump")])
    on_ul0 = addr.list_addresses(nl, index=3)
    assert [str(a.address) for a in on_ul0][:2] == ["192.0.2.1/24", "2001:db8::1/64"] and {a.index for a in on_ul0} == {3}
    addr.list_addresses(nl, version=6)
    assert nl.sock.sent[0][16] == 0 and nl.sock.sent[1][16] == socket.AF_INET6
    assert header(nl.sock.sent[1])[1:3] == (addr.RTM_GETADDR, 0x301)


def test_adding_an_address_sends_it_and_reads_the_ack(fake):
    nl = fake(script=[datagrams("ack")])
    assert addr.add_address(nl, 3, ip_interface("192.0.2.5/24")) is True
    msg = ifaddrmsg(nl.sock.sent[0])
    msg.decode()
    assert (msg["family"], msg["prefixlen"], msg["index"]) == (socket.AF_INET, 24, 3)
    assert (msg.get_attr("IFA_LOCAL"), msg.get_attr("IFA_BROADCAST")) == ("192.0.2.5", "192.0.2.255")
    assert header(nl.sock.sent[0])[2] == core.CREATE


def test_adding_an_existing_address_is_false(fake):
    nl = fake(script=[datagrams("err_link_exists")])  # any EEXIST
    assert addr.add_address(nl, 3, ip_interface("192.0.2.1/24")) is False


# --- routes ------------------------------------------------------------------------------------


def test_ipv4_route_dump_of_the_main_table(fake):
    nl = fake(script=[datagrams("route4_dump")])
    routes = {str(r.dst): r for r in addr.list_routes(nl, 4)}
    assert sorted(routes) == ["10.1.0.0/24", "192.0.2.0/24", "198.18.2.0/24", "198.18.4.0/24"]  # no local/broadcast, no table 1000
    r = routes["198.18.2.0/24"]
    assert (r.gw, r.oif, r.table, r.priority, r.proto, r.scope, r.onlink) == (ip_address("192.0.2.2"), 3, 254, 50, 241, 0, False)
    assert (r.mtu, r.advmss) == (1400, 1360)
    connected = routes["10.1.0.0/24"]
    assert (connected.gw, connected.oif, connected.proto, connected.scope, connected.mtu, connected.advmss) == (
        None,
        4,
        addr.RTPROT_KERNEL,
        addr.RT_SCOPE_LINK,
        0,
        0,
    )
    onlink = routes["198.18.4.0/24"]
    assert onlink.onlink and onlink.gw == ip_address("203.0.113.1") and onlink.proto == addr.RTPROT_BOOT


def test_a_table_above_255_comes_from_rta_table(fake):
    nl = fake(script=[datagrams("route4_dump"), datagrams("route4_dump")])
    in_1000 = addr.list_routes(nl, 4, table=1000)
    assert [(str(r.dst), r.gw, r.table) for r in in_1000] == [("198.18.3.0/24", ip_address("192.0.2.3"), 1000)]
    every = addr.list_routes(nl, 4, table=None)
    assert len(every) == 5 and all(r.dst.version == 4 for r in every)
    assert nl.sock.sent[0][16] == socket.AF_INET


def test_ipv6_route_dump_with_metrics(fake):
    nl = fake(script=[datagrams("route6_dump")])
    routes = addr.list_routes(nl, 6)
    assert nl.sock.sent[0][16] == socket.AF_INET6
    by_dst = {}
    for r in routes:
        by_dst.setdefault(str(r.dst), []).append(r)
    (r,) = by_dst["2001:db8:1::/64"]
    assert (r.gw, r.oif, r.priority, r.mtu, r.advmss) == (ip_address("2001:db8::2"), 3, 60, 1280, 1220)
    (connected,) = by_dst["2001:db8::/64"]
    assert (connected.gw, connected.priority, connected.mtu, connected.advmss) == (None, 256, 0, 0)
    assert {r.oif for r in by_dst["fe80::/64"]} == {2, 3, 4, 5, 6, 7}
    assert all(r.table == 254 for r in routes) and not any(r.dst.prefixlen == 128 for r in routes)  # local routes filtered


def test_an_unreachable_gateway_is_refused_with_the_kernels_explanation(fake):
    nl = fake(script=[datagrams("err_route_gw")])
    with pytest.raises(NetlinkError) as err:
        addr.add_route(nl, ip_network("198.18.9.0/24"), ip_address("203.0.113.9"), mtu=1400, advmss=1360)
    assert err.value.errno == errno.ENETUNREACH and err.value.ext_msg == "Nexthop has invalid gateway"
    assert "add route 198.18.9.0/24" in str(err.value)
    sent = rtmsg(nl.sock.sent[0])
    sent.decode()
    metrics = sent.get_attr("RTA_METRICS")
    assert (metrics.get_attr("RTAX_MTU"), metrics.get_attr("RTAX_ADVMSS")) == (1400, 1360)
    assert (sent.get_attr("RTA_DST"), sent.get_attr("RTA_GATEWAY"), sent["dst_len"]) == ("198.18.9.0", "203.0.113.9", 24)


# --- truncated and garbage input: NetlinkError(EPROTO), nothing else ---------------------------


def test_a_message_length_below_the_header_size_is_eproto(fake):
    first = split(datagrams("link_dump")[0])[0]
    for bad_length in (0, 4, 15):
        broken = struct.pack("=I", bad_length) + first[4:]
        nl = fake(preloaded=[broken])
        with pytest.raises(NetlinkError) as err:
            collect(nl, ifinfmsg, 1)
        assert err.value.errno == errno.EPROTO, bad_length


# a message longer than its datagram, or an NLMSG_ERROR shorter than 20 bytes, once escaped as struct.error or a pyroute2 decode error (999)


@pytest.mark.parametrize("cut", [16, 20, 32, 100, 1000])
def test_a_truncated_message_is_eproto(fake, cut):
    first = datagrams("link_dump")[0]
    nl = fake(preloaded=[first[:cut]] + datagrams("link_dump")[2:])
    with pytest.raises(NetlinkError) as err:
        collect(nl, ifinfmsg, 1)
    assert err.value.errno == errno.EPROTO


@pytest.mark.parametrize("cut", [16, 18])
def test_a_truncated_error_message_is_eproto(fake, cut):
    chunk = datagrams("err_route_gw")[0][:cut]
    nl = fake(preloaded=[struct.pack("=I", cut) + chunk[4:]])  # even with a consistent length field
    with pytest.raises(NetlinkError) as err:
        collect(nl, rtmsg, 5)
    assert err.value.errno == errno.EPROTO


def test_an_attribute_running_past_its_message_is_eproto(fake):
    first = split(datagrams("addr_dump")[0])[0]
    broken = with_flags(patched(first, IFADDR_HDR, struct.pack("=H", 0xFFFF)), clear=NLM_F_MULTI)
    nl = fake(script=[[broken]])
    with pytest.raises(NetlinkError) as err:
        addr.list_addresses(nl)
    assert err.value.errno == errno.EPROTO
