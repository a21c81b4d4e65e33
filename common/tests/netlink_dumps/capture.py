"""Record the rtnetlink replies that common/tests/test_netlink_offline.py replays.

How the files in this directory were made (once, as root, on Linux 6.18 with iproute2 6.1):

    cd /work/main && .venv/bin/python common/tests/netlink_dumps/capture.py

The script never touches the namespace it is started in.  It creates a
throw-away network namespace named ``cnitcap-<pid>``, re-runs itself inside it
with ``ip netns exec`` (``--inside``), and deletes the namespace afterwards,
also when anything fails.  Inside, it first refuses to go on if its network
namespace is the one it was started from, then builds a small fixed topology
with ``ip``:

    lo                      up
    ul0   (veth)            192.0.2.1/24, 2001:db8::1/64 (nodad), up (the underlay)
    ul1   (ul0's peer)      up
    br0   (bridge)          mac 0a:58:0a:01:00:01, mtu 1400, 10.1.0.1/24, up (this kernel has no VLAN filtering)
    veth0 (veth, in br0)    mac 02:00:00:00:00:07, mtu 1400, hairpin on, isolated on, up
    veth1 (veth0's peer)    mac 02:00:00:00:00:08, mtu 1400, up
    vx42  (vxlan)           vni 42, dstport 4789, local 192.0.2.1, dev ul0, nolearning,
                            mac 0e:56:c6:12:01:00, mtu 1450, alias "overlay-test"
    routes                  198.18.2.0/24 via 192.0.2.2 dev ul0 metric 50 proto 241 mtu 1400 advmss 1360
                            198.18.3.0/24 via 192.0.2.3 dev ul0 table 1000
                            198.18.4.0/24 via 203.0.113.1 dev ul0 onlink
                            2001:db8:1::/64 via 2001:db8::2 dev ul0 metric 60 mtu 1280 advmss 1220

and records, on a NETLINK_ROUTE socket with NETLINK_CAP_ACK and NETLINK_EXT_ACK
set (as common/netlink/core.py opens its sockets), the raw datagrams that each
recv() returned for:

    link_dump.hex          RTM_GETLINK  NLM_F_DUMP (AF_UNSPEC)
    addr_dump.hex          RTM_GETADDR  NLM_F_DUMP (AF_UNSPEC)
    route4_dump.hex        RTM_GETROUTE NLM_F_DUMP (AF_INET)
    route6_dump.hex        RTM_GETROUTE NLM_F_DUMP (AF_INET6)
    err_route_gw.hex       RTM_NEWROUTE 198.18.9.0/24 via 203.0.113.9 (unreachable gateway):
                           NLMSG_ERROR -ENETUNREACH with an NLMSGERR_ATTR_MSG
    err_link_exists.hex    RTM_NEWLINK bridge "br0" with NLM_F_EXCL: NLMSG_ERROR -EEXIST
    err_link_missing.hex   RTM_GETLINK for IFLA_IFNAME "nosuchdev": NLMSG_ERROR -ENODEV
    ack.hex                RTM_NEWADDR 192.0.2.5/24 on ul0 with NLM_F_ACK: NLMSG_ERROR 0 (an ACK)

File format: ``#`` lines are comments; every other line is the hex of one
datagram exactly as recv() returned it.  Request n (counting from 1, in the
order above) was sent with sequence number n; the replies carry it.
"""

import os
import socket
import struct
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE, NLM_F_DUMP = 0x1, 0x4, 0x200, 0x400, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
RTM_NEWLINK, RTM_GETLINK, RTM_NEWADDR, RTM_GETADDR, RTM_NEWROUTE, RTM_GETROUTE = 16, 18, 20, 22, 24, 26
SOL_NETLINK, NETLINK_CAP_ACK, NETLINK_EXT_ACK = 270, 10, 11

SETUP = [
    "link set lo up",
    "link add ul0 type veth peer name ul1",
    "link set ul1 up",
    "addr add 192.0.2.1/24 dev ul0",
    "addr add 2001:db8::1/64 dev ul0 nodad",
    "link set ul0 up",
    "link add br0 address 0a:58:0a:01:00:01 mtu 1400 type bridge",
    "link add veth0 address 02:00:00:00:00:07 mtu 1400 type veth peer name veth1 address 02:00:00:00:00:08 mtu 1400",
    "link set veth0 master br0",
    "link set veth0 type bridge_slave hairpin on isolated on",
    "link add vx42 address 0e:56:c6:12:01:00 mtu 1450 type vxlan id 42 dstport 4789 local 192.0.2.1 dev ul0 nolearning",
    "link set vx42 alias overlay-test",
    "addr add 10.1.0.1/24 dev br0",
    "link set br0 up",
    "link set veth0 up",
    "link set veth1 up",
    "link set vx42 up",
    "route add 198.18.2.0/24 via 192.0.2.2 dev ul0 metric 50 proto 241 mtu 1400 advmss 1360",
    "route add 198.18.3.0/24 via 192.0.2.3 dev ul0 table 1000",
    "route add 198.18.4.0/24 via 203.0.113.1 dev ul0 onlink",
    "-6 route add 2001:db8:1::/64 via 2001:db8::2 dev ul0 metric 60 mtu 1280 advmss 1220",
]


def nlmsg(mtype: int, flags: int, seq: int, body: bytes) -> bytes:
    return struct.pack("=IHHII", 16 + len(body), mtype, flags, seq, 0) + body


def rta(atype: int, payload: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(payload), atype) + payload
    return raw + b"\0" * (-len(raw) % 4)


def ifinfomsg(index: int = 0) -> bytes:
    return struct.pack("=BxHiII", socket.AF_UNSPEC, 0, index, 0, 0)


def requests(underlay_index: int) -> list[tuple[str, bytes, bool]]:
    """(file stem, request body, is a dump) in sequence-number order."""
    out = []
    out.append(("link_dump", (RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, ifinfomsg()), True))
    out.append(("addr_dump", (RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, struct.pack("=BBBBi", socket.AF_UNSPEC, 0, 0, 0, 0)), True))
    rtmsg_v4 = struct.pack("=BBBBBBBBI", socket.AF_INET, 0, 0, 0, 0, 0, 0, 0, 0)
    out.append(("route4_dump", (RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, rtmsg_v4), True))
    rtmsg_v6 = struct.pack("=BBBBBBBBI", socket.AF_INET6, 0, 0, 0, 0, 0, 0, 0, 0)
    out.append(("route6_dump", (RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, rtmsg_v6), True))
    # family, dst_len, src_len, tos, table main, proto boot, scope universe, type unicast, flags
    route = struct.pack("=BBBBBBBBI", socket.AF_INET, 24, 0, 0, 254, 3, 0, 1, 0)
    route += rta(1, socket.inet_aton("198.18.9.0")) + rta(5, socket.inet_aton("203.0.113.9"))  # RTA_DST, RTA_GATEWAY
    out.append(("err_route_gw", (RTM_NEWROUTE, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, route), False))
    # IFLA_IFNAME br0, IFLA_LINKINFO { IFLA_INFO_KIND bridge }
    link = ifinfomsg() + rta(3, b"br0\0") + rta(18, rta(1, b"bridge\0"))
    out.append(("err_link_exists", (RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, link), False))
    out.append(("err_link_missing", (RTM_GETLINK, NLM_F_REQUEST, ifinfomsg() + rta(3, b"nosuchdev\0")), False))
    # family, prefixlen, flags, scope, index; IFA_LOCAL, IFA_ADDRESS
    addr = struct.pack("=BBBBi", socket.AF_INET, 24, 0, 0, underlay_index)
    addr += rta(2, socket.inet_aton("192.0.2.5")) + rta(1, socket.inet_aton("192.0.2.5"))
    out.append(("ack", (RTM_NEWADDR, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, addr), False))
    return out


def record_inside(outdir: str, outer_ns_ino: int) -> None:
    if os.stat("/proc/self/ns/net").st_ino == outer_ns_ino:
        raise SystemExit("refusing to capture: still in the namespace the script was started in")
    for line in SETUP:
        subprocess.run(["ip", *line.split()], check=True)
    underlay_index = socket.if_nametoindex("ul0")
    kernel = os.uname().release
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
    sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
    sock.bind((0, 0))
    for seq, (stem, (mtype, flags, body), dump) in enumerate(requests(underlay_index), start=1):
        sock.send(nlmsg(mtype, flags, seq, body))
        datagrams = []
        while True:
            data = sock.recv(1 << 20)
            datagrams.append(data)
            last_type = struct.unpack_from("=IH", data, 0)[1]
            # walk to the datagram's last message
            offset = 0
            while offset + 16 <= len(data):
                length, last_type = struct.unpack_from("=IH", data, offset)
                offset += (length + 3) & ~3
            if not dump or last_type in (NLMSG_DONE, NLMSG_ERROR):
                break
        with open(os.path.join(outdir, f"{stem}.hex"), "w") as out:
            out.write(f"# {stem}: request seq {seq}, type {mtype}, flags {flags:#x}; Linux {kernel}; {len(datagrams)} datagram(s)\n")
            out.write("# made by capture.py in this directory (see its docstring)\n")
            for data in datagrams:
                out.write(data.hex() + "\n")
    sock.close()


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--inside":
        record_inside(sys.argv[2], int(sys.argv[3]))
        return
    outdir = sys.argv[1] if len(sys.argv) > 1 else HERE
    outer_ino = os.stat("/proc/self/ns/net").st_ino
    name = f"cnitcap-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", name, sys.executable, os.path.abspath(__file__), "--inside", outdir, str(outer_ino)], check=True)
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


if __name__ == "__main__":
    main()
