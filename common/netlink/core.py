"""The suite's only pyroute2 importer: rtnetlink over a plain blocking socket.

pyroute2's package __init__ eagerly imports NDB, asyncio, multiprocessing and
ssl (about 100 ms per process start, see docs/performance.md).  We register
the package (and a light pyroute2.config) without running its __init__ and use
only its message classes (ifinfmsg, ifaddrmsg, rtmsg, ndmsg) to encode and
decode; the socket, sequencing, acks and errno translation are ours.
Pinned: pyroute2==0.9.7.
"""

import errno
import os
import socket
import struct
import sys

from common.errors import CNIError, from_os_error

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing here (type checkers go by the name)
if TYPE_CHECKING:
    from typing import Any


def _register_pyroute2_package() -> None:
    if "pyroute2" in sys.modules:
        return
    for finder in sys.meta_path:  # normal and PyInstaller-frozen imports alike
        find_spec = getattr(finder, "find_spec", None)
        spec = find_spec("pyroute2", None) if find_spec else None
        if spec is not None:
            break
    else:
        raise ImportError("pyroute2 is not installed")
    package = type(sys)("pyroute2")
    package.__spec__ = spec
    package.__path__ = list(spec.submodule_search_locations)
    package.__file__, package.__loader__, package.__package__ = spec.origin, spec.loader, "pyroute2"
    sys.modules["pyroute2"] = package


def _register_pyroute2_config() -> None:
    """pyroute2.config holding the three values ifinfmsg reads, until more is asked of it.

    The real module imports multiprocessing and platform and calls uname() at
    import (about 5 ms per start, docs/performance.md), for settings only
    pyroute2's sockets use.  Any other attribute runs the real module in this
    one's namespace first, so later users see the whole of it.
    """
    if "pyroute2.config" in sys.modules:
        return
    parent: Any = sys.modules["pyroute2"]  # modules we fill in by hand: attributes type checkers cannot know
    for finder in sys.meta_path:
        find_spec = getattr(finder, "find_spec", None)
        spec = find_spec("pyroute2.config", parent.__path__) if find_spec else None
        if spec is not None:
            break
    else:
        raise ImportError("pyroute2.config is missing")
    config: Any = type(sys)("pyroute2.config")
    config.__spec__, config.__loader__, config.__file__ = spec, spec.loader, spec.origin
    config.__package__, config.__path__ = "pyroute2.config", list(spec.submodule_search_locations or [])
    config.AF_BRIDGE = getattr(socket, "AF_BRIDGE", 7)
    config.data_plugins_pkgs = []  # link-kind plugins beyond pyroute2's own: none
    config.data_plugins_path = []

    def load_real(name):
        if name.startswith("__"):
            raise AttributeError(name)
        del config.__getattr__
        spec.loader.exec_module(config)
        return getattr(config, name)

    config.__getattr__ = load_real
    sys.modules["pyroute2.config"] = config
    parent.config = config


_register_pyroute2_package()
_register_pyroute2_config()
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg  # noqa: E402
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg  # noqa: E402
from pyroute2.netlink.rtnl.ndmsg import ndmsg  # noqa: E402
from pyroute2.netlink.rtnl.rtmsg import rtmsg  # noqa: E402

__all__ = ["ifinfmsg", "ifaddrmsg", "rtmsg", "ndmsg", "Netlink", "NetlinkError", "LinkNotFound", "LinkExists"]

NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_APPEND = 0x800
NLM_F_DUMP_INTR = 0x10
NLMSG_ERROR = 2
NLMSG_DONE = 3
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11
NLM_F_ACK_TLVS = 0x200
NLMSGERR_ATTR_MSG = 1
SOL_NETLINK = 270

CREATE = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
REPLACE = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE
CHANGE = NLM_F_REQUEST | NLM_F_ACK


class NetlinkError(OSError):
    """The kernel refused a request; .errno is set, .ext_msg holds the kernel's explanation."""

    def __init__(self, code: int, what: str, ext_msg: str = ""):
        text = os.strerror(code) + (f" ({ext_msg})" if ext_msg else "")
        super().__init__(code, f"{what}: {text}")
        self.ext_msg = ext_msg

    def cni(self, msg: str) -> CNIError:
        return from_os_error(self, msg)


class LinkNotFound(NetlinkError):
    def __init__(self, name):
        super().__init__(errno.ENODEV, f"link {name}")


class LinkExists(NetlinkError):
    def __init__(self, name):
        super().__init__(errno.EEXIST, f"link {name}")


class Netlink:
    """One NETLINK_ROUTE socket bound to one network namespace."""

    def __init__(self, netns=None):
        self.netns = netns
        if netns is None:
            self.sock = self._open()
        else:
            from common.netns import entered

            # the socket belongs to the namespace it was created in
            with entered(netns):
                self.sock = self._open()
        self.seq = 0

    @staticmethod
    def _open() -> socket.socket:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        try:
            # echo only the request header with errors, followed by the kernel's message
            sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
            sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
        except OSError:
            pass  # older kernels: errors simply come without the extended message
        sock.bind((0, 0))
        return sock

    def __enter__(self) -> "Netlink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def request(self, msg, mtype: int, flags: int, what: str = "netlink request") -> list:
        """Send one message; return decoded replies.  Kernel errors raise NetlinkError."""
        msg["header"]["type"] = mtype
        msg["header"]["flags"] = flags
        msg["header"]["pid"] = 0
        msg.encode()
        data = bytearray(msg.data)
        for _ in range(3):
            self.seq += 1
            struct.pack_into("=I", data, 8, self.seq)
            self.sock.send(data)
            replies, interrupted = self._collect(type(msg), self.seq, what)
            if not interrupted:
                break
        return replies  # after three interrupted dumps: the last, best-effort view

    def _collect(self, cls, seq: int, what: str):
        replies: list = []
        interrupted = False
        while True:
            data = self.sock.recv(1 << 20)
            offset = 0
            while offset + 16 <= len(data):
                length, mtype, flags, mseq, _ = struct.unpack_from("=IHHII", data, offset)
                if length < 16 or offset + length > len(data):
                    raise NetlinkError(errno.EPROTO, what)  # a message the kernel cannot have sent whole
                chunk = data[offset : offset + length]
                offset += (length + 3) & ~3
                if mseq != seq:
                    continue  # a late reply to an earlier request
                if flags & NLM_F_DUMP_INTR:
                    interrupted = True
                if mtype == NLMSG_DONE:
                    return replies, interrupted
                if mtype == NLMSG_ERROR:
                    if length < 20:
                        raise NetlinkError(errno.EPROTO, what)
                    code = -struct.unpack_from("=i", chunk, 16)[0]
                    if code:
                        raise NetlinkError(code, what, _ext_ack(chunk) if flags & NLM_F_ACK_TLVS else "")
                    return replies, interrupted
                reply = cls(chunk)
                try:
                    reply.decode()
                except Exception:  # pyroute2's decoders raise their own types on malformed attributes
                    raise NetlinkError(errno.EPROTO, what) from None
                replies.append(reply)
                if not flags & NLM_F_MULTI:
                    return replies, interrupted


def _ext_ack(chunk: bytes) -> str:
    """The kernel's NLMSGERR_ATTR_MSG, if it sent one."""
    # header(16) + error(4) + the echoed request header(16, capped); then TLVs
    offset = 16 + 4 + 16
    while offset + 4 <= len(chunk):
        alen, atype = struct.unpack_from("=HH", chunk, offset)
        if alen < 4:
            break
        if atype & 0x3FFF == NLMSGERR_ATTR_MSG:
            return chunk[offset + 4 : offset + alen].split(b"\0", 1)[0].decode("utf-8", "replace")
        offset += (alen + 3) & ~3
    return ""


def host() -> Netlink:
    """A socket in the plugin's own (the node's) namespace."""
    return Netlink()


def inside(ns) -> Netlink:
    """A socket in a container namespace (a validated common.netns.NetNS)."""
    return Netlink(ns)
