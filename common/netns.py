"""Network namespace handles: opened without ever creating one.

A path is accepted only if it names a network namespace (NS_GET_NSTYPE), so a
regular file, a mount namespace or a FIFO can never be mistaken for one.  The
plugin's own namespace, and the init namespace, are refused before any work is
done: a stale /proc/<pid>/ns/net can point there after PID reuse, and a DEL
would then delete the node's own interfaces.
"""

import errno
import fcntl
import os
import stat
from contextlib import contextmanager

from common.errors import CNIError, Code
from common.values import Value

CLONE_NEWNET = 0x40000000
NS_GET_NSTYPE = 0xB703


class NetNSGone(Exception):
    """The path does not exist or is not a network namespace (DEL treats it as gone)."""


class NetNS(Value):
    """A network namespace held open by fd, so the path cannot be swapped under us."""

    path: str
    fd: int

    def close(self) -> None:
        os.close(self.fd)


def _setns(fd: int) -> None:
    # loaded here, not at the top: only entering a namespace needs libc (the _ctypes
    # extension, about 1 ms), and host-local, which never enters one, opens CNI_NETNS too
    from common import libc  # not ctypes: about 2 ms less per start (docs/performance.md)

    libc.call("setns", fd, CLONE_NEWNET)


def _same_ns(st: os.stat_result, path: str) -> bool:
    try:
        other = os.stat(path)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == (other.st_dev, other.st_ino)


def open_netns(path: str, allow_own: bool = False) -> NetNS:
    """Open and validate a network namespace path.

    Raises NetNSGone when the path is missing or is not a network namespace,
    and CNIError(4) when it is our own or the init namespace.
    """
    if not path.startswith("/"):
        raise CNIError(Code.INVALID_ENV, "invalid CNI_NETNS", f"{path!r} is not an absolute path")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise NetNSGone(f"{path} does not exist") from None
    except OSError as err:
        raise NetNSGone(f"{path}: {err.strerror}") from None
    # nsfs inodes are regular files; never open a FIFO or a device node
    if not stat.S_ISREG(st.st_mode):
        raise NetNSGone(f"{path} is not a network namespace")
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        try:
            nstype = fcntl.ioctl(fd, NS_GET_NSTYPE)
        except OSError as err:
            if err.errno in (errno.ENOTTY, errno.EINVAL):
                raise NetNSGone(f"{path} is not a namespace") from None
            raise
        if nstype != CLONE_NEWNET:
            raise NetNSGone(f"{path} is a namespace of another type")
        st = os.fstat(fd)
        if not allow_own:
            for own in ("/proc/thread-self/ns/net", "/proc/1/ns/net"):
                if _same_ns(st, own):
                    raise CNIError(
                        Code.INVALID_ENV,
                        "invalid CNI_NETNS",
                        f"{path} is the plugin's own or the init network namespace",
                    )
    except BaseException:
        os.close(fd)
        raise
    return NetNS(path, fd)


@contextmanager
def entered(ns: NetNS):
    """Run a block with this thread inside `ns`, and always come back.

    Needed only where the kernel resolves the namespace from the caller:
    creating a socket and /proc/sys.  If we cannot return, the process must
    not go on acting in the wrong namespace, so it exits at once.
    """
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(ns.fd)
        try:
            yield
        finally:
            try:
                _setns(home)
            except OSError:
                os.write(2, b"fatal: cannot return to the plugin's network namespace\n")
                os._exit(70)
    finally:
        os.close(home)
