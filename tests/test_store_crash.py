"""host-local's store when a release or a reservation is cut short (kill -9 between two file operations).

The stress harness found the first: a DEL killed between unlinking the
address's record and its owner-index link left the index link behind for
good (nothing ever looked at an index link without its record).  Releases
now drop the index link first, and every command removes index links whose
record is gone.
"""
import os

import pytest

from cni_hostlocal_ipam.allocator import allocate
from cni_hostlocal_ipam.conf import Range, RangeSet
from cni_hostlocal_ipam.store import DiskStore, owner_hash
from ipaddress import ip_address, ip_network

pytestmark = pytest.mark.unit

RS = RangeSet((Range(ip_network("10.180.0.0/29"), ip_address("10.180.0.2"), ip_address("10.180.0.6"), ip_address("10.180.0.1")),))


def files(tmp_path) -> list[str]:
    return sorted(n for n in os.listdir(tmp_path / "net") if n != "lock" and not n.startswith("last_reserved_ip."))


def add(tmp_path, cid: str) -> str:
    with DiskStore(str(tmp_path), "net") as store:
        return str(allocate(store, RS, 0, cid, "eth0").address.ip)


def release(tmp_path, cid: str) -> list:
    with DiskStore(str(tmp_path), "net", create=False) as store:
        return [str(ip) for ip in store.release(cid, "eth0")]


def test_an_index_link_whose_record_is_gone_is_removed_by_the_next_command(tmp_path):
    ip = add(tmp_path, "a")
    os.unlink(tmp_path / "net" / ip)  # a release of the old order, killed after its first unlink
    assert [n for n in files(tmp_path) if n.startswith(".alloc.")]
    assert release(tmp_path, "other") == []
    assert files(tmp_path) == []


def test_a_release_killed_after_the_index_link_went_is_finished_by_the_next_del(tmp_path):
    ip = add(tmp_path, "a")
    for name in files(tmp_path):
        if name.startswith(".alloc."):
            os.unlink(tmp_path / "net" / name)  # the new order, killed after its first unlink
    assert files(tmp_path) == [ip]
    assert release(tmp_path, "a") == [ip]  # found by reading the record, as a record the reference wrote
    assert files(tmp_path) == []


def test_a_stale_index_link_never_hides_the_owners_record(tmp_path):
    """Our index link of an address names an old inode; the record was rewritten (by the reference, say): DEL still finds it."""
    ip = add(tmp_path, "a")
    record = tmp_path / "net" / ip
    os.unlink(record)
    record.write_bytes(b"a\r\neth0")  # a new inode, as the reference writes it
    assert release(tmp_path, "a") == [ip]
    assert files(tmp_path) == []


def test_reserving_over_a_stale_index_link_of_the_same_owner_replaces_it(tmp_path):
    ip = "10.180.0.2"
    with DiskStore(str(tmp_path), "net") as store:
        stale = tmp_path / "net" / f".alloc.{owner_hash('a', 'eth0')}.{store.boot}.{ip}"
        stale.write_bytes(b"a\r\neth0")  # appeared after the scan: another inode than the record about to be made
        assert store.reserve(ip_address(ip), "a", "eth0", 0)
        assert os.stat(stale).st_ino == os.stat(tmp_path / "net" / ip).st_ino
    assert release(tmp_path, "a") == [ip]
    assert files(tmp_path) == []
