"""Attachment records: what an ADD created, readable without the container's namespace.

<dataDir>/<network>/<containerID>-<ifname>.json is written before the veth is
created and removed by DEL.  It names the host-side veth and the container
MAC, so DEL can remove the pair when CNI_NETNS is empty, refuse to delete an
interface of the same name in a recycled namespace, and GC can find every
attachment of this network (for macspoofchk chains and stray veths).
"""
import json
import os
from dataclasses import asdict, dataclass

from common import statedir


@dataclass(frozen=True)
class Record:
    """What ADD created for one attachment: the record DEL and GC read."""

    container_id: str
    ifname: str
    netns: str
    host_veth: str
    mac: str = ""  # the container interface's MAC, once known
    boot: str = ""


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip().replace("-", "")[:16]
    except OSError:
        return ""


class Records:
    def __init__(self, data_dir: str, network: str):
        self.data_dir, self.network = data_dir, network
        self.dir = os.path.join(data_dir, network)

    @staticmethod
    def _name(container_id: str, ifname: str) -> str:
        return f"{container_id}-{ifname}.json"

    def _open(self, create: bool) -> int | None:
        return statedir.open_dir(self.data_dir, self.network, create)

    def write(self, record: Record) -> None:
        dirfd = self._open(create=True)
        try:
            statedir.write_file(dirfd, self._name(record.container_id, record.ifname), json.dumps(asdict(record)).encode())
        except OSError as err:
            raise statedir.io_error(f"recording the attachment in {self.dir}", err) from None
        finally:
            os.close(dirfd)

    def new(self, container_id: str, ifname: str, netns: str, host_veth: str, mac: str = "") -> Record:
        record = Record(container_id, ifname, netns, host_veth, mac, _boot_id())
        self.write(record)
        return record

    def read(self, container_id: str, ifname: str) -> Record | None:
        dirfd = self._open(create=False)
        if dirfd is None:
            return None
        try:
            return self._load(dirfd, self._name(container_id, ifname))
        finally:
            os.close(dirfd)

    @staticmethod
    def _load(dirfd: int, name: str) -> Record | None:
        data = statedir.read_file(dirfd, name)
        if data is None:
            return None
        try:
            doc = json.loads(data)
            return Record(**{k: str(doc.get(k, "")) for k in Record.__dataclass_fields__})
        except (ValueError, TypeError, AttributeError):
            return None  # a damaged record is treated as absent; DEL still cleans by identity

    def remove(self, container_id: str, ifname: str) -> None:
        dirfd = self._open(create=False)
        if dirfd is None:
            return
        try:
            os.unlink(self._name(container_id, ifname), dir_fd=dirfd)
        except FileNotFoundError:
            pass
        finally:
            os.close(dirfd)

    def all(self) -> list[Record]:
        dirfd = self._open(create=False)
        if dirfd is None:
            return []
        try:
            out = []
            for name in sorted(os.listdir(dirfd)):
                if name.endswith(".json"):
                    record = self._load(dirfd, name)
                    if record is not None:
                        out.append(record)
                elif ".json.tmp-" in name:
                    self._drop_stale(dirfd, name)
            return out
        finally:
            os.close(dirfd)

    @staticmethod
    def _drop_stale(dirfd: int, name: str) -> None:
        """A killed writer's leftover; young ones may belong to a writer still running."""
        import time

        try:
            if time.time() - os.stat(name, dir_fd=dirfd, follow_symlinks=False).st_mtime > 60:
                os.unlink(name, dir_fd=dirfd)
        except FileNotFoundError:
            pass
