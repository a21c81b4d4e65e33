"""The store's file names (store.py describes the layout), and the one question a DEL can ask of them alone.

Only os, fcntl and common.attachment: a DEL that has nothing to do asks
holds_nothing() before anything of host-local is loaded (common/skel.py,
"quick DEL").
"""

import fcntl
import os

from common import attachment
from common.config import Obj
from common.errors import CNIError, Code

LOCK = "lock"
INDEX_PREFIX = ".alloc."
TMP_PREFIX = ".tmp-"
LAST_RESERVED = "last_reserved_ip."
DEFAULT_DATA_DIR = "/var/lib/cni/networks"


def absolute(path: str, key: str) -> str:
    if not path.startswith("/") or "\0" in path or ".." in path.split("/"):
        raise CNIError(Code.INVALID_CONFIG, f"invalid {key}", f"{path!r} must be an absolute path without '..'")
    return os.path.normpath(path)


def data_dir(ipam: Obj) -> str:
    """host-local's dataDir: a network's allocations live in <dataDir>/<network>."""
    return absolute(ipam.str("dataDir") or DEFAULT_DATA_DIR, "ipam.dataDir")


def owner_hash(container_id: str, ifname: str) -> str:
    """The index's short owner tag: it only narrows the search, the record's contents decide."""
    return attachment.sha256(f"{container_id}\r\n{ifname}".encode()).hexdigest()[:16]


def holds_nothing(data_dir: str, network: str, container_id: str, ifname: str) -> bool:
    """True when the network provably holds no address for the attachment (so its DEL has nothing to release).

    Read under a shared lock on the network's lock file, so no ADD is half
    way through.  Only our own records can be told apart by name (their owner
    index link); a record without one (the reference's, or a release killed
    between its two unlinks) could be anyone's, and the answer is then False:
    the full DEL reads it.
    """
    directory = os.path.join(data_dir, network)
    try:
        fd = os.open(os.path.join(directory, LOCK), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return not os.path.lexists(directory)  # no state at all; a directory without its lock is unusual
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return False  # a command holds the network: let the full DEL wait for it
        mine = f"{INDEX_PREFIX}{owner_hash(container_id.strip(), ifname)}."
        indexed, records = set(), set()
        for name in os.listdir(directory):
            if name.startswith(mine) or name.startswith(TMP_PREFIX):
                return False
            if name.startswith(INDEX_PREFIX):
                indexed.add(name.split(".", 4)[-1])
            elif name[0] != "." and name != LOCK and not name.startswith(LAST_RESERVED):
                records.add(name)
        return records <= indexed
    finally:
        os.close(fd)


def nothing_to_delete(args) -> bool:
    """True when host-local's DEL for args would release nothing (common/skel.py, quick_delete)."""
    try:
        top = Obj(args.config)
        ipam, network = top.obj("ipam"), top.str("name") or ""
        if ipam is None:
            return False  # the plugin's DEL reports it
        directory = data_dir(ipam)
    except CNIError:
        return False
    return bool(network) and holds_nothing(directory, network, args.container_id, args.ifname)
