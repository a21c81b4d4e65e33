"""Attachment records: what an ADD created, readable without the container's namespace.

One record per attachment in <dataDir>/<network>/ (common.records: names
that cannot collide, a lock per attachment).  It is written before the veth
is created and removed by DEL.  It names the host-side veth and the
container MAC, so DEL can remove the pair when CNI_NETNS is empty, refuse to
delete an interface of the same name in a recycled namespace, and GC can
find every attachment of this network.
"""

from contextlib import contextmanager

from common import records, statedir
from common.values import Value


class Record(Value):
    """What ADD created for one attachment: the record DEL and GC read."""

    container_id: str
    ifname: str
    netns: str
    host_veth: str
    mac: str = ""  # the container interface's MAC, once known
    boot: str = ""


def _record(doc: dict | None) -> Record | None:
    if doc is None:
        return None
    return _present(doc)


def _present(doc: dict) -> Record:
    return Record(**{k: str(doc.get(k, "")) for k in Record.FIELDS})


class Attachment:
    """One attachment's record while its lock is held."""

    def __init__(self, entry: records.Entry):
        self.entry = entry

    def read(self) -> Record | None:
        return _record(self.entry.read())

    def new(self, netns: str, host_veth: str, mac: str = "") -> Record:
        record = Record(*self.entry.pair, netns, host_veth, mac, statedir.boot_id())
        self.entry.write(record.as_dict())
        return record

    def remove(self) -> None:
        self.entry.remove()


class Records:
    def __init__(self, data_dir: str, network: str):
        self.store = records.Records(data_dir, network)
        self.dir = self.store.path

    @contextmanager
    def locked(self, container_id: str, ifname: str, create: bool, wait: bool = True):
        """Attachment under its lock, or None (wait=False) while another call holds it."""
        with self.store.locked(container_id, ifname, create, wait) as entry:
            yield None if entry is None else Attachment(entry)

    def read(self, container_id: str, ifname: str) -> Record | None:
        return _record(self.store.read(container_id, ifname))

    def all(self) -> list[Record]:
        return [_present(doc) for doc in self.store.all()]  # store.all() lists documents, never None

    def collect_orphan_locks(self) -> None:
        self.store.collect_orphan_locks()
