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

from common.errors import CNIError, Code

FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class Record:
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
        self.dir = os.path.join(data_dir, network)

    def _path(self, container_id: str, ifname: str) -> str:
        return os.path.join(self.dir, f"{container_id}-{ifname}.json")

    def write(self, record: Record) -> None:
        try:
            os.makedirs(self.dir, mode=0o700, exist_ok=True)
            path = self._path(record.container_id, record.ifname)
            tmp = f"{path}.tmp-{os.getpid()}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | FLAGS, 0o600)
            try:
                os.write(fd, json.dumps(asdict(record)).encode())
            finally:
                os.close(fd)
            os.rename(tmp, path)  # atomic: a reader sees the old record or the new one
        except OSError as err:
            raise CNIError(Code.IO_FAILURE, f"cannot record the attachment in {self.dir}", err.strerror) from None

    def new(self, container_id: str, ifname: str, netns: str, host_veth: str, mac: str = "") -> Record:
        record = Record(container_id, ifname, netns, host_veth, mac, _boot_id())
        self.write(record)
        return record

    def read(self, container_id: str, ifname: str) -> Record | None:
        return self._load(self._path(container_id, ifname))

    def _load(self, path: str) -> Record | None:
        try:
            fd = os.open(path, os.O_RDONLY | FLAGS)
        except OSError:
            return None
        try:
            data = json.loads(os.read(fd, 65536))
            return Record(**{k: str(data.get(k, "")) for k in Record.__dataclass_fields__})
        except (ValueError, TypeError, AttributeError):
            return None  # a damaged record is treated as absent; DEL still cleans by identity
        finally:
            os.close(fd)

    def remove(self, container_id: str, ifname: str) -> None:
        try:
            os.unlink(self._path(container_id, ifname))
        except FileNotFoundError:
            pass

    def all(self) -> list[Record]:
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return []
        out = []
        for name in sorted(names):
            if name.endswith(".json"):
                record = self._load(os.path.join(self.dir, name))
                if record is not None:
                    out.append(record)
            elif ".json.tmp-" in name:
                self._drop_stale(os.path.join(self.dir, name))
        return out

    @staticmethod
    def _drop_stale(path: str) -> None:
        """A killed writer's leftover; young ones may belong to a writer still running."""
        import time

        try:
            if time.time() - os.lstat(path).st_mtime > 60:
                os.unlink(path)
        except FileNotFoundError:
            pass
