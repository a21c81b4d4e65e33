"""The disk store on a temporary directory: format, safety, crash leftovers, locking."""

import fcntl
import multiprocessing
import os
import stat
import time
from ipaddress import ip_address

import pytest

from cni_hostlocal_ipam.allocator import allocate
from cni_hostlocal_ipam.conf import _range_set
from cni_hostlocal_ipam.plugin import collect
from cni_hostlocal_ipam.store import DiskStore
from common.errors import CNIError

pytestmark = pytest.mark.unit

RS = _range_set([{"subnet": "10.1.2.0/24"}], 0)


def store(tmp_path, timeout=5.0):
    return DiskStore(str(tmp_path), "net", timeout)


def files(tmp_path):
    return sorted(os.listdir(tmp_path / "net"))


def test_record_format_and_modes_match_the_reference(tmp_path):
    with store(tmp_path) as s:
        assert s.reserve(ip_address("10.1.2.2"), " c1 ", "eth0", 0)
    d = tmp_path / "net"
    assert (d / "10.1.2.2").read_bytes() == b"c1\r\neth0"
    assert (d / "last_reserved_ip.0").read_bytes() == b"10.1.2.2"
    for name in ("10.1.2.2", "last_reserved_ip.0", "lock"):
        assert stat.S_IMODE(os.lstat(d / name).st_mode) == 0o600, name
    assert stat.S_IMODE(os.lstat(d).st_mode) == 0o700
    index = [f for f in files(tmp_path) if f.startswith(".alloc.")]
    assert len(index) == 1 and index[0].endswith(".10.1.2.2")
    assert os.stat(d / index[0]).st_ino == os.stat(d / "10.1.2.2").st_ino


def test_release_by_id_and_ifname(tmp_path):
    with store(tmp_path) as s:
        s.reserve(ip_address("10.1.2.2"), "c1", "eth0", 0)
        s.reserve(ip_address("10.1.2.3"), "c1", "eth1", 0)
        assert s.release("c1", "eth0") == [ip_address("10.1.2.2")]
        assert s.release("c1", "eth0") == []
    assert files(tmp_path) == [f for f in files(tmp_path) if "10.1.2.2" not in f]
    assert "10.1.2.3" in files(tmp_path)


def test_records_written_by_another_implementation_are_found_by_content(tmp_path):
    (tmp_path / "net").mkdir(mode=0o700)
    (tmp_path / "net" / "10.1.2.7").write_bytes(b"goc\r\neth0")
    (tmp_path / "net" / "10.1.2.8").write_bytes(b"legacy")  # pre-ifname format: ID only
    with store(tmp_path) as s:
        assert s.owned_by("goc", "eth0") == [ip_address("10.1.2.7")]
        assert s.release("legacy", "eth0") == [ip_address("10.1.2.8")]
        assert s.release("goc", "eth0") == [ip_address("10.1.2.7")]
    assert [f for f in files(tmp_path) if f[0].isdigit()] == []


def test_index_link_removed_by_a_content_based_release_leaves_no_trace(tmp_path):
    """Go's host-local deletes every file whose content matches: our index link goes too."""
    with store(tmp_path) as s:
        s.reserve(ip_address("10.1.2.2"), "c1", "eth0", 0)
    d = tmp_path / "net"
    for name in os.listdir(d):
        if (d / name).read_bytes().strip() == b"c1\r\neth0":
            os.unlink(d / name)
    assert files(tmp_path) == ["last_reserved_ip.0", "lock"]


def test_planted_symlinks_are_never_followed(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    d = tmp_path / "net"
    d.mkdir(mode=0o700)
    os.symlink(victim, d / "last_reserved_ip.0")
    os.symlink(victim, d / "10.1.2.2")
    with store(tmp_path) as s:
        assert s.last_reserved(0) is None
        got = allocate(s, RS, 0, "c1", "eth0")
    assert str(got.address) == "10.1.2.3/24"  # the squatted name counts as taken
    assert victim.read_text() == "precious"
    assert not os.path.islink(d / "last_reserved_ip.0")


def test_symlinked_lock_or_network_dir_is_refused(tmp_path):
    (tmp_path / "elsewhere").mkdir(mode=0o700)
    os.symlink(tmp_path / "elsewhere", tmp_path / "net")
    with pytest.raises(CNIError) as err:
        store(tmp_path).__enter__()
    assert err.value.code == 105
    os.unlink(tmp_path / "net")
    (tmp_path / "net").mkdir(mode=0o700)
    os.symlink(tmp_path / "victim", tmp_path / "net" / "lock")
    with pytest.raises(CNIError) as err:
        store(tmp_path).__enter__()
    assert err.value.code == 105
    assert not (tmp_path / "victim").exists()


def test_world_writable_network_dir_is_refused(tmp_path):
    (tmp_path / "net").mkdir()
    os.chmod(tmp_path / "net", 0o777)
    with pytest.raises(CNIError) as err:
        store(tmp_path).__enter__()
    assert err.value.code == 105


def test_leftover_temp_files_are_removed_and_never_count(tmp_path):
    d = tmp_path / "net"
    d.mkdir(mode=0o700)
    (d / ".tmp-0123456789abcdef-999").write_bytes(b"c1\r\neth0")
    with store(tmp_path) as s:
        assert s.owned_by("c1", "eth0") == []
    assert files(tmp_path) == ["lock"]


def test_corrupt_last_reserved_hint_is_harmless(tmp_path):
    d = tmp_path / "net"
    d.mkdir(mode=0o700)
    (d / "last_reserved_ip.0").write_bytes(b"\x00garbage")
    with store(tmp_path) as s:
        assert str(allocate(s, RS, 0, "c1", "eth0").address) == "10.1.2.2/24"


def _hold_lock(path, ready):
    fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    ready.set()
    time.sleep(60)


def test_lock_held_by_a_stuck_process_gives_code_11_within_the_bound(tmp_path):
    (tmp_path / "net").mkdir(mode=0o700)
    ready = multiprocessing.Event()
    holder = multiprocessing.Process(target=_hold_lock, args=(str(tmp_path / "net" / "lock"), ready))
    holder.start()
    try:
        assert ready.wait(10)
        start = time.monotonic()
        with pytest.raises(CNIError) as err:
            store(tmp_path, timeout=0.5).__enter__()
        assert err.value.code == 11 and "timed out waiting for the lock" in err.value.msg
        assert time.monotonic() - start < 5
    finally:
        holder.kill()
        holder.join()
    with store(tmp_path, timeout=0.5):
        pass  # the kernel released the dead holder's lock


def _allocate_many(data_dir, worker, count, out):
    got = []
    for i in range(count):
        with DiskStore(data_dir, "net", 30) as s:
            got.append(str(allocate(s, RS, 0, f"w{worker}-{i}", "eth0").address.ip))
    out.put(got)


def test_concurrent_processes_never_share_an_address(tmp_path):
    out = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=_allocate_many, args=(str(tmp_path), w, 20, out)) for w in range(8)]
    for p in procs:
        p.start()
    results = [ip for _ in procs for ip in out.get(timeout=60)]
    for p in procs:
        p.join()
    assert len(results) == 160 and len(set(results)) == 160
    assert len([f for f in files(tmp_path) if f[0].isdigit()]) == 160


def test_gc_keeps_exactly_the_valid_attachments(tmp_path):
    d = tmp_path / "net"
    with store(tmp_path) as s:
        for i, cid in enumerate(["a", "b", "c"], 2):
            s.reserve(ip_address(f"10.1.2.{i}"), cid, "eth0", 0)
    (d / "10.1.2.9").write_bytes(b"")  # a crashed writer's empty record (the reference's leak)
    (d / "10.1.2.10").write_bytes(b"b")  # legacy record of a valid container
    with store(tmp_path) as s:
        released = collect(s, {("b", "eth0")})
    assert sorted(str(a.ip) for a in released) == ["10.1.2.2", "10.1.2.4", "10.1.2.9"]
    assert sorted(f for f in files(tmp_path) if f[0].isdigit()) == ["10.1.2.10", "10.1.2.3"]
    assert len([f for f in files(tmp_path) if f.startswith(".alloc.")]) == 1


def test_boot_sweep_releases_only_earlier_boots(tmp_path):
    d = tmp_path / "net"
    with store(tmp_path) as s:
        s.reserve(ip_address("10.1.2.2"), "old", "eth0", 0)
        s.reserve(ip_address("10.1.2.3"), "new", "eth0", 0)
        boot = s.boot
    # simulate a record written in an earlier boot: its index link carries another boot id
    (entry,) = [f for f in os.listdir(d) if f.endswith(".10.1.2.2")]
    os.rename(d / entry, d / entry.replace(boot, "0" * 16))
    with store(tmp_path) as s:
        released = collect(s, set(), boot_sweep=True)
    assert [str(a.ip) for a in released] == ["10.1.2.2"]
    assert "10.1.2.3" in files(tmp_path)
