"""store.Store, the one interface to host-local's allocations: a second backend only implements it and registers.

A fake in-memory backend stands in for the disk in store.BACKENDS; host-local's
commands and `cni-suite status` then run on it without touching a file.
"""

import os
import time
from ipaddress import ip_address

import pytest

from cni_hostlocal_ipam import plugin, store
from cni_hostlocal_ipam.backend import Store
from cni_hostlocal_ipam.conf import IPAMConf
from cni_hostlocal_ipam.store import Allocation, DiskStore, open_store
from common.errors import CNIError, Code
from common.skel import CmdArgs

pytestmark = pytest.mark.unit


class MemoryStore:
    """Every Store member, over a dict: what a second backend has to provide."""

    boot = "b" * 16

    def __init__(self):
        self.owner: dict = {}  # ip -> (container ID, ifname, boot)
        self.last: dict = {}
        self.entered = 0
        self.present = False

    def exists(self) -> bool:
        return self.present

    def __enter__(self) -> "MemoryStore":
        self.entered += 1
        self.present = True
        return self

    def __exit__(self, *exc) -> None:
        pass

    def free(self, version: int, n: int) -> bool:
        return ip_address(n if version == 4 else n.to_bytes(16, "big")) not in self.owner

    def reserve(self, ip, container_id: str, ifname: str, range_id: int) -> bool:
        if ip in self.owner:
            return False
        self.owner[ip] = (container_id, ifname, self.boot)
        self.last[range_id] = ip
        return True

    def last_reserved(self, range_id: int):
        return self.last.get(range_id)

    def owned_by(self, container_id: str, ifname: str) -> list:
        return [ip for ip, (cid, name, _) in self.owner.items() if (cid, name) == (container_id, ifname)]

    def release(self, container_id: str, ifname: str) -> list:
        released = self.owned_by(container_id, ifname)
        for ip in released:
            del self.owner[ip]
        return released

    def drop(self, ip) -> None:
        self.owner.pop(ip, None)

    def allocations(self) -> list[Allocation]:
        return [Allocation(ip, cid, name, boot, time.time()) for ip, (cid, name, boot) in sorted(self.owner.items())]


def config(tmp_path) -> dict:
    return {"cniVersion": "1.1.0", "name": "net", "ipam": {"type": "host-local", "subnet": "10.7.0.0/29", "dataDir": str(tmp_path)}}


def request(tmp_path, command: str, cid: str = "c1", ifname: str = "eth0", **extra) -> CmdArgs:
    return CmdArgs.for_config(dict(config(tmp_path), **extra), command=command).replace(container_id=cid, ifname=ifname)


def test_the_fake_and_the_disk_store_satisfy_the_protocol(tmp_path):
    assert isinstance(MemoryStore(), Store)
    assert isinstance(DiskStore(str(tmp_path), "net"), Store)

    class OnlyAllocates:  # the allocator's part (store.Reservations) is not a whole store
        boot = ""

        def free(self, version, n): ...
        def reserve(self, ip, container_id, ifname, range_id): ...
        def last_reserved(self, range_id): ...
        def owned_by(self, container_id, ifname): ...

    assert not isinstance(OnlyAllocates(), Store)


def test_open_store_is_the_one_constructor(tmp_path, monkeypatch):
    conf = IPAMConf.load(request(tmp_path, "ADD"))
    assert conf.store == "disk" and type(open_store(conf)) is DiskStore
    assert not open_store(conf, create=False).exists()  # nothing created by building it
    memory = MemoryStore()
    monkeypatch.setitem(store.BACKENDS, "memory", lambda conf, create: memory)
    assert open_store(conf.replace(store="memory")) is memory
    with pytest.raises(CNIError) as err:
        open_store(conf.replace(store="tape"))
    assert err.value.code == Code.INVALID_CONFIG and "memory" in err.value.details


def test_host_local_commands_and_status_run_on_a_registered_backend(tmp_path, monkeypatch):
    from cni_suite.report import ipam_report

    memory = MemoryStore()
    monkeypatch.setitem(store.BACKENDS, "disk", lambda conf, create: memory)  # every network on the fake
    result = plugin.add(request(tmp_path, "ADD"))
    assert [str(ip.address) for ip in result.ips] == ["10.7.0.2/29"]
    plugin.add(request(tmp_path, "ADD", cid="c2"))
    plugin.check(request(tmp_path, "CHECK"))
    report = ipam_report(config(tmp_path))
    assert [(a["ip"], a["containerID"], a["boot"]) for a in report["allocations"]] == [("10.7.0.2", "c1", "current"), ("10.7.0.3", "c2", "current")]
    assert report["ranges"][0]["used"] == 2
    gc = request(tmp_path, "GC", **{"cni.dev/valid-attachments": [{"containerID": "c2", "ifname": "eth0"}]})
    plugin.gc(gc)
    assert memory.owned_by("c1", "eth0") == [] and memory.owned_by("c2", "eth0") == [ip_address("10.7.0.3")]
    plugin.delete(request(tmp_path, "DEL", cid="c2"))
    assert memory.owner == {} and memory.entered == 6
    assert os.listdir(tmp_path) == []  # the disk was never touched


def test_the_boot_sweep_reads_boots_in_the_stores_own_terms():
    memory = MemoryStore()
    memory.reserve(ip_address("10.7.0.2"), "old", "eth0", 0)
    memory.owner[ip_address("10.7.0.2")] = ("old", "eth0", "a" * 16)  # recorded in an earlier boot
    memory.reserve(ip_address("10.7.0.3"), "new", "eth0", 0)
    released = plugin.collect(memory, set(), boot_sweep=True)
    assert [a.container_id for a in released] == ["old"] and memory.owned_by("new", "eth0")
