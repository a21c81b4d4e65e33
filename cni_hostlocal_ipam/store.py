"""The on-disk store, byte-compatible with the reference host-local.

<dataDir>/<network>/
  <ip>                  "<containerID>\\r\\n<ifname>", mode 0600: the allocation
  last_reserved_ip.<N>  the last address handed out from range set N
  lock                  flock(LOCK_EX) held for the whole command
  .alloc.<h>.<boot>.<ip> a hard link of <ip>: our owner index (h = hash of
                        containerID and ifname, boot = the boot it was made in)
  .tmp-<h>-<pid>        an allocation being published

An allocation is published by writing a temp file and link()ing it to the
address's name, so a crash can never leave a half-written record (the
reference creates the file empty and writes it afterwards).  The index link
lets ADD find duplicates and DEL find its addresses from one directory
listing; the reference reads every file.  Go's host-local deletes by content,
so it removes our index links along with the records it releases; records it
creates have no index link and are found by reading them.  Every name is
opened relative to the directory fd with O_NOFOLLOW: a planted symlink is
never followed.

`Store` (backend.py) is what host-local (allocator and plugin), `cni-suite status`, `gc`
and the boot sweep need of a store; `open_store()` is the one place a store is
built, choosing the backend in BACKENDS that the config names.  DiskStore is
the only backend: another implements `Store` and registers there.
"""

import errno
import os
import stat

# _socket, not socket: the same inet_ntoa/inet_ntop without socket's selectors
# and enum conversions (about 2 ms per start, docs/performance.md)
from _socket import AF_INET6, inet_ntoa, inet_ntop

from cni_hostlocal_ipam.layout import INDEX_PREFIX, LAST_RESERVED, LOCK, TMP_PREFIX, owner_hash
from common import lock, statedir
from common.errors import CNIError, Code
from common.types import parse_ip
from common.values import Value

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (type checkers go by the name)
if TYPE_CHECKING:
    from collections.abc import Callable

    from cni_hostlocal_ipam.backend import Store
    from cni_hostlocal_ipam.conf import IPAMConf

FILE_FLAGS = statedir.FILE_FLAGS
MAX_RECORD = 4096


def ip_name(version: int, n: int) -> str:
    if version == 4:
        return inet_ntoa(n.to_bytes(4, "big"))
    return inet_ntop(AF_INET6, n.to_bytes(16, "big"))


class Allocation(Value):
    """An address held, and by whom."""

    ip: object
    container_id: str
    ifname: str  # "" for a legacy record holding only the container ID
    boot: str  # "" when unknown (a record written by another implementation)
    ctime: float


def _disk(conf: "IPAMConf", create: bool) -> "Store":
    return DiskStore(conf.data_dir, conf.name, conf.lock_timeout, create)


# backend name (IPAMConf.store) -> the store of a network
BACKENDS: "dict[str, Callable[[IPAMConf, bool], Store]]" = {"disk": _disk}


def open_store(conf: "IPAMConf", create: bool = True) -> "Store":
    """The network's store, not entered yet; with create=False entering never creates its state."""
    backend = BACKENDS.get(conf.store)
    if backend is None:  # IPAMConf.load sets only registered names
        raise CNIError(Code.INVALID_CONFIG, f"unknown host-local store {conf.store!r}", "known: " + ", ".join(BACKENDS))
    return backend(conf, create)


class DiskStore:
    def __init__(self, data_dir: str, network: str, lock_timeout: float = 10.0, create: bool = True):
        self.data_dir = data_dir
        self.network = network
        self.lock_timeout = lock_timeout
        self.create = create
        self.dirfd = self.lockfd = -1
        # the index names need a token: all zeros when the kernel does not say (statedir.boot_id() is "")
        self.boot = statedir.boot_id() or "0" * 16

    def exists(self) -> bool:
        return os.path.isdir(os.path.join(self.data_dir, self.network))

    # --- opening, locking, scanning ---------------------------------------

    def __enter__(self) -> "DiskStore":
        try:
            self.dirfd = self._open_dir()
            self.lockfd = self._open_lock()
            self._lock()
            self._scan()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for fd in (self.lockfd, self.dirfd):
            if fd >= 0:
                os.close(fd)  # closing the lock fd releases the flock
        self.dirfd = self.lockfd = -1

    def _open_dir(self) -> int:
        fd = statedir.open_dir(self.data_dir, self.network, self.create, key="ipam.dataDir")
        if fd is None:  # DEL/CHECK/GC look before they open: it went away meanwhile
            raise CNIError(Code.IO_FAILURE, f"opening {self.data_dir}/{self.network} failed", os.strerror(errno.ENOENT))
        return fd

    def _open_lock(self) -> int:
        try:
            # O_NONBLOCK: a FIFO planted as the lock must not hang us before the regular-file check
            fd = os.open(LOCK, os.O_RDONLY | os.O_NONBLOCK | os.O_CREAT | FILE_FLAGS, 0o600, dir_fd=self.dirfd)
        except OSError as err:
            raise statedir.io_error("opening the lock file", err) from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise CNIError(Code.UNSAFE_STATE_DIR, "unsafe state directory", "lock is not a regular file")
        return fd

    def _lock(self) -> None:
        lock.acquire(self.lockfd, self.lock_timeout, f"network {self.network} ({self.data_dir}/{self.network}/lock)")

    def _scan(self) -> None:
        """One directory listing: the taken addresses, the owner index, stale temp files."""
        self.taken: set[str] = set()
        self.index: dict[str, list[tuple[str, str, str]]] = {}  # ip -> [(hash, boot, entry)]
        for name in os.listdir(self.dirfd):
            if name[0] == ".":
                if name.startswith(INDEX_PREFIX):
                    parts = name.split(".", 4)
                    if len(parts) == 5:
                        self.index.setdefault(parts[4], []).append((parts[2], parts[3], name))
                elif name.startswith(TMP_PREFIX):
                    # claims happen only under the lock we hold: no temp file is in flight
                    self._unlink(name)
                continue
            if name == LOCK or name.startswith(LAST_RESERVED):
                continue
            self.taken.add(name)
        for name in [ip for ip in self.index if ip not in self.taken]:
            # index links of a record that is gone (a release killed between its two unlinks,
            # or an older version's order): nothing refers to them any more
            for _, _, entry in self.index.pop(name):
                self._unlink(entry)

    # --- Reservations: what the allocator uses -------------------------------

    def free(self, version: int, n: int) -> bool:
        return ip_name(version, n) not in self.taken

    def reserve(self, ip, container_id: str, ifname: str, range_id: int) -> bool:
        name = str(ip)
        if name in self.taken:
            return False
        h = owner_hash(container_id.strip(), ifname)
        tmp = f"{TMP_PREFIX}{h}-{os.getpid()}"
        self._write_new(tmp, f"{container_id.strip()}\r\n{ifname}".encode())
        try:
            try:
                os.link(tmp, name, src_dir_fd=self.dirfd, dst_dir_fd=self.dirfd, follow_symlinks=False)
            except FileExistsError:
                self.taken.add(name)  # claimed by someone outside our lock (a Go plugin on an old lock inode)
                return False
            self.taken.add(name)
            entry = f"{INDEX_PREFIX}{h}.{self.boot}.{name}"
            try:
                os.link(tmp, entry, src_dir_fd=self.dirfd, dst_dir_fd=self.dirfd, follow_symlinks=False)
            except FileExistsError:
                # a stale index link of the same owner and address, on the old record's inode: replace it,
                # or the owner's DEL would not recognise the new record as its own
                self._unlink(entry)
                os.link(tmp, entry, src_dir_fd=self.dirfd, dst_dir_fd=self.dirfd, follow_symlinks=False)
            entries = [e for e in self.index.get(name, []) if e[2] != entry]
            self.index[name] = entries + [(h, self.boot, entry)]
        except OSError as err:
            raise statedir.io_error(f"reserving {name}", err) from None
        finally:
            self._unlink(tmp)
        self._replace(f"{LAST_RESERVED}{range_id}", name.encode())
        return True

    def last_reserved(self, range_id: int):
        data = self._read(f"{LAST_RESERVED}{range_id}")
        try:
            return parse_ip(data.decode().strip()) if data else None
        except (ValueError, UnicodeError):
            return None  # a corrupt hint only costs round-robin once

    def owned_by(self, container_id: str, ifname: str) -> list:
        return [a.ip for a in self._owned(container_id.strip(), ifname)]

    # --- release, listing ------------------------------------------------------

    def release(self, container_id: str, ifname: str) -> list:
        released = []
        for alloc in self._owned(container_id.strip(), ifname):
            self._drop(str(alloc.ip))
            released.append(alloc.ip)
        return released

    def allocations(self) -> list[Allocation]:
        """Every allocation with its owner (reads each record once; for GC and status)."""
        out = []
        for name in sorted(self.taken):
            try:
                ip = parse_ip(name)
            except ValueError:
                continue  # not an allocation: leave foreign files alone
            record = self._read(name, with_stat=True)
            if record is None:
                continue
            data, st = record
            cid, _, ifname = data.decode("utf-8", "replace").strip().partition("\r\n")
            boots = {boot for _, boot, entry in self.index.get(name, ()) if self._same_inode(entry, st)}
            out.append(Allocation(ip, cid, ifname, boots.pop() if len(boots) == 1 else "", st.st_ctime))
        return out

    def drop(self, ip) -> None:
        """Release one address regardless of owner (GC of an invalid or ownerless record)."""
        self._drop(str(ip))

    def _drop(self, name: str) -> None:
        # index links first: a kill in between leaves a record without its index, which DEL and GC
        # still find by reading it (as they find the reference's), never an index link without a record
        for _, _, entry in self.index.pop(name, ()):
            self._unlink(entry)
        self._unlink(name)
        self.taken.discard(name)

    def _owned(self, container_id: str, ifname: str) -> list[Allocation]:
        h = owner_hash(container_id, ifname)
        want, legacy = f"{container_id}\r\n{ifname}", container_id
        found = []
        stale = set()  # our index link names the address, but the record is another file now: read it
        for name, entries in self.index.items():
            for eh, boot, entry in entries:
                if eh == h and name in self.taken:
                    record = self._read(name, with_stat=True)
                    # a tag shared by another owner (a 64-bit collision) must not release its address
                    if record is not None and self._same_inode(entry, record[1]) and record[0].decode("utf-8", "replace").strip() == want:
                        found.append(Allocation(parse_ip(name), container_id, ifname, boot, record[1].st_ctime))
                    elif record is not None:
                        stale.add(name)
        # records without an index link were written by another implementation: read those
        legacy_found = []
        for name in self.taken.difference(self.index) | stale.difference(str(a.ip) for a in found):
            record = self._read(name, with_stat=True)
            if record is None:
                continue
            owner = record[0].decode("utf-8", "replace").strip()
            if owner not in (want, legacy):
                continue
            try:
                ip = parse_ip(name)
            except ValueError:
                continue
            if owner == want:
                found.append(Allocation(ip, container_id, ifname, "", record[1].st_ctime))
            else:
                legacy_found.append(Allocation(ip, container_id, "", "", record[1].st_ctime))
        # as the reference: records holding only the container ID count when nothing matches exactly
        return found or legacy_found

    # --- file primitives, all relative to the directory fd ---------------------

    def _stat(self, name: str):
        try:
            return os.stat(name, dir_fd=self.dirfd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def _same_inode(self, entry: str, st) -> bool:
        other = self._stat(entry)
        return other is not None and (other.st_ino, other.st_dev) == (st.st_ino, st.st_dev)

    def _read(self, name: str, with_stat: bool = False):
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | FILE_FLAGS, dir_fd=self.dirfd)
        except OSError:
            return None  # missing, or a symlink we refuse to follow
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return None
            data = os.read(fd, MAX_RECORD)
        finally:
            os.close(fd)
        return (data, st) if with_stat else data

    def _write_new(self, name: str, data: bytes) -> None:
        for attempt in (1, 2):
            try:
                fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | FILE_FLAGS, 0o600, dir_fd=self.dirfd)
                break
            except FileExistsError:
                if attempt == 2:
                    raise CNIError(Code.UNSAFE_STATE_DIR, "unsafe state directory", f"cannot replace {name}") from None
                self._unlink(name)  # a leftover of a killed run of ours
            except OSError as err:
                raise statedir.io_error(f"writing {name}", err) from None
        try:
            os.fchmod(fd, 0o600)  # whatever the runtime's umask
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        except OSError as err:
            os.close(fd)
            self._unlink(name)
            raise statedir.io_error(f"writing {name}", err) from None
        os.close(fd)

    def _replace(self, name: str, data: bytes) -> None:
        tmp = f"{TMP_PREFIX}{name}-{os.getpid()}"
        self._write_new(tmp, data)
        try:
            # rename replaces a planted symlink itself, never its target
            os.rename(tmp, name, src_dir_fd=self.dirfd, dst_dir_fd=self.dirfd)
        except OSError as err:
            self._unlink(tmp)
            raise statedir.io_error(f"writing {name}", err) from None

    def _unlink(self, name: str) -> None:
        try:
            os.unlink(name, dir_fd=self.dirfd)
        except FileNotFoundError:
            pass
        except OSError as err:
            raise statedir.io_error(f"removing {name}", err) from None
