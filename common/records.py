"""Per-attachment records: one JSON document per (containerID, ifname), under a lock of its own.

<dir>/<key>.json holds the document, <dir>/<key>.lock its lock, with <key>
from common.attachment.  Every document stores its own pair
("container_id", "ifname"), and a document naming another pair counts as
absent, so no lookup ever acts on someone else's attachment.  ADD, DEL and
GC hold the lock for their whole read-modify-write: two calls for the same
attachment never interleave (an ADD racing an ADD used to roll back the
winner's record).  The lock file is removed by its holder as it finishes,
and GC removes those that killed calls leave.

Earlier versions named documents "<cid>-<ifname>.json", which two
attachments could share.  They are still read: for the pair stored inside,
or, in documents that store none, for the one pair the name can stand for;
a name that could stand for several is left to the runtime's own DEL.
"""

import os
import time
from contextlib import contextmanager

from common import attachment, startup, statedir
from common.errors import CNIError, Code
from common.log import get as get_logger

log = get_logger(__name__)
LOCK_TIMEOUT = 10.0  # as host-local's default: a stuck holder gives code 11, never a hang
PAIR = ("container_id", "ifname")


def _legacy_name(container_id: str, ifname: str) -> str:
    return f"{container_id}-{ifname}.json"


class Entry:
    """One attachment's document, used while its lock is held."""

    def __init__(self, records: "Records", dirfd: int | None, container_id: str, ifname: str, key: str):
        self.records, self.dirfd = records, dirfd
        self.pair = (container_id, ifname)
        self.name = key + ".json"

    def read(self) -> dict | None:
        if self.dirfd is None:
            return None
        doc = self.records.load(self.dirfd, self.name, self.pair)
        return doc if doc is not None else self.records.load(self.dirfd, _legacy_name(*self.pair), self.pair)

    def write(self, doc: dict) -> None:
        doc = dict(doc, container_id=self.pair[0], ifname=self.pair[1])
        if self.dirfd is None:  # only a DEL holds such an Entry, and DEL never writes
            raise CNIError(Code.IO_FAILURE, f"recording the attachment in {self.records.path} failed", "no state directory")
        try:
            statedir.write_file(self.dirfd, self.name, startup.dumps(doc).encode())
        except OSError as err:
            raise statedir.io_error(f"recording the attachment in {self.records.path}", err) from None

    def remove(self) -> None:
        if self.dirfd is None:
            return
        try:
            statedir.remove_file(self.dirfd, self.name)
            legacy = _legacy_name(*self.pair)
            if self.records.load(self.dirfd, legacy, self.pair) is not None:
                statedir.remove_file(self.dirfd, legacy)
        except OSError as err:
            raise statedir.io_error(f"removing the attachment record in {self.records.path}", err) from None


class Records:
    """The records of one network: <data_dir>/<network>[/<subdir>]."""

    def __init__(self, data_dir: str, network: str, subdir: str = ""):
        self.data_dir, self.network, self.subdir = data_dir, network, subdir
        self.path = os.path.normpath(os.path.join(data_dir, network, subdir))

    def _open(self, create: bool) -> int | None:
        fd = statedir.open_dir(self.data_dir, self.network, create)
        if fd is None or not self.subdir:
            return fd
        try:
            return statedir.open_subdir(fd, self.subdir, create, self.path)
        finally:
            os.close(fd)

    @contextmanager
    def locked(self, container_id: str, ifname: str, create: bool, wait: bool = True):
        """The attachment under its lock; None (with wait=False) while another call holds it.

        A DEL (create False) locks too, creating the directory if it must: an
        ADD may create it meanwhile.  Only where it cannot be created (nor by
        anyone else's ADD) does it yield an Entry that holds nothing.
        Directories created here go again when the call leaves them empty: a
        refused ADD leaves the node as it found it, and a waiter that finds
        its directory gone opens it anew.
        """
        key = attachment.key(container_id, ifname)
        lock_name = key + ".lock"
        what = f"attachment {container_id}/{ifname} of network {self.network}"
        deadline = time.monotonic() + LOCK_TIMEOUT
        while True:
            created = statedir.missing_dirs(self.path)
            dirfd = self._open_to_lock(create)
            if dirfd is None and create:
                # made, then removed by another call's clean-up before we opened it: make it again
                if time.monotonic() > deadline:
                    raise statedir.DirectoryGone(what)
                continue
            if dirfd is None:
                yield Entry(self, None, container_id, ifname, key)
                return
            try:
                held = statedir.lock_file(dirfd, lock_name, max(deadline - time.monotonic(), 0.001), what, wait)
                break
            except statedir.DirectoryGone:
                os.close(dirfd)
                if time.monotonic() > deadline:
                    raise
            except BaseException:
                os.close(dirfd)
                statedir.remove_empty(created)
                raise
        try:
            yield None if held is None else Entry(self, dirfd, container_id, ifname, key)
        finally:
            if held is not None:
                held.remove()  # a lock file exists only while a call runs (or a killed one left it)
                held.release()
            os.close(dirfd)
            statedir.remove_empty(created)

    def _open_to_lock(self, create: bool) -> int | None:
        dirfd = self._open(create)
        if dirfd is not None or create:
            return dirfd
        try:
            return self._open(create=True)
        except CNIError as err:
            if err.code == Code.IO_FAILURE:  # a read-only or full file system: no ADD can record anything here either
                return None
            raise

    def untouched(self, container_id: str, ifname: str) -> bool:
        """True when nothing of the attachment is here: no document (under either name) and no lock file.

        A read without the lock, for a DEL that may have nothing to do: an ADD
        creates the lock file before it changes anything and writes the
        document before it touches the node, and the holder removes the lock
        file last.  So "untouched" means no call is running for the pair and
        none left anything; any file is a reason to take the full path.
        """
        key = attachment.key(container_id, ifname)
        names = (key + ".json", key + ".lock", _legacy_name(container_id, ifname))
        return not any(os.path.lexists(os.path.join(self.path, name)) for name in names)

    def read(self, container_id: str, ifname: str) -> dict | None:
        """The document without the lock (a quick look); None when absent."""
        dirfd = self._open(create=False)
        if dirfd is None:
            return None
        try:
            return Entry(self, dirfd, container_id, ifname, attachment.key(container_id, ifname)).read()
        finally:
            os.close(dirfd)

    @staticmethod
    def load(dirfd: int, name: str, pair: tuple[str, str] | None = None) -> dict | None:
        """The document in `name` with its pair filled in; None when absent, damaged or naming another pair."""
        data = statedir.read_file(dirfd, name, 1 << 20)
        if data is None:
            return None
        try:
            doc = startup.loads(data.decode())
        except ValueError:
            return None  # damaged: treated as absent; DEL still cleans by identity
        if type(doc) is not dict:
            return None
        stored: tuple[object, object] | None = (doc.get(PAIR[0]), doc.get(PAIR[1]))
        if stored == (None, None):
            stored = _only_pair(name)  # an earlier version's document, without its pair
        if stored is None or (pair is not None and stored != pair) or not all(type(v) is str for v in stored):
            return None
        return dict(doc, container_id=stored[0], ifname=stored[1])

    def all(self) -> list[dict]:
        """Every document, each found under a name its own pair gives it (anything else is not ours to trust)."""
        dirfd = self._open(create=False)
        if dirfd is None:
            return []
        try:
            out: dict[tuple[str, str], dict] = {}
            for name in sorted(os.listdir(dirfd)):
                if name.endswith(".json"):
                    doc = self.load(dirfd, name)
                    if doc is None:
                        if attachment.SEPARATOR not in name and not name.startswith(attachment.HASHED):
                            log.warning("%s/%s: an earlier version's record whose pair is ambiguous: left for the runtime's DEL", self.path, name)
                        continue
                    pair = (doc["container_id"], doc["ifname"])
                    if name == attachment.key(*pair) + ".json":
                        out[pair] = doc
                    elif name == _legacy_name(*pair):
                        out.setdefault(pair, doc)  # an earlier version's, unless the current name holds the pair too
                elif ".json.tmp-" in name:
                    statedir.drop_stale_temp(dirfd, name)
            return list(out.values())
        finally:
            os.close(dirfd)

    def collect_orphan_locks(self) -> None:
        """Remove lock files without a record (a killed call's), unless someone holds them now."""
        dirfd = self._open(create=False)
        if dirfd is None:
            return
        try:
            names = set(os.listdir(dirfd))
            for lock_name in sorted(n for n in names if n.endswith(".lock") and n[:-5] + ".json" not in names):
                with statedir.locked(dirfd, lock_name, 0, lock_name, wait=False) as held:
                    if held is not None and statedir.read_file(dirfd, lock_name[:-5] + ".json", 1) is None:
                        held.remove()
        finally:
            os.close(dirfd)


def _only_pair(name: str) -> tuple[str, str] | None:
    if not name.endswith(".json") or attachment.SEPARATOR in name:
        return None
    splits = attachment.legacy_splits(name[: -len(".json")])
    return splits[0] if len(splits) == 1 else None
