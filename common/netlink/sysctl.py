"""Per-namespace network sysctls under /proc/sys/net.

/proc/sys/net resolves to the namespace of the thread that opens the file, so
a container's knobs are written inside `netns.entered(ns)`.
"""

import os

ROOT = "/proc/sys/net/"


def path(key: str) -> str:
    """'ipv6/conf/eth0/accept_ra' -> its /proc path; refuses anything outside /proc/sys/net."""
    if ".." in key.split("/") or key.startswith("/"):
        raise ValueError(f"invalid sysctl {key!r}")
    return ROOT + key


def exists(key: str) -> bool:
    return os.path.exists(path(key))


def read(key: str) -> str | None:
    try:
        fd = os.open(path(key), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        return os.read(fd, 4096).decode().strip()
    finally:
        os.close(fd)


def write(key: str, value: str) -> None:
    fd = os.open(path(key), os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def ensure(key: str, value: str) -> bool:
    """Write only when different (global knobs like ip_forward); True if it changed."""
    if read(key) == value:
        return False
    write(key, value)
    return True


def ipv6_enabled(ifname: str) -> bool:
    """False when IPv6 is off for the interface (or the whole namespace)."""
    return read(f"ipv6/conf/{ifname}/disable_ipv6") == "0"
