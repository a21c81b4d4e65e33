"""Run in place: the single-file binary's persistent cache (build/bootloader-src/pyi_cni_cache.c, common/bincache.py).

Each test gives /var/lib a directory of its own (tmp_path/varlib, bound over
/var/lib in a private mount namespace), so it can plant symlinks, foreign
owners, read-only and noexec mounts, and delete the cache, without touching
the machine's /var/lib.  Everything runs the real dist/cni-bin binaries.
"""
import fcntl
import json
import os
import signal
import stat
import subprocess
import time

import pytest

from common import bincache

pytestmark = pytest.mark.root
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(REPO, "dist", "cni-bin")
MULTI = os.path.join(BIN, "cni-multi")
CACHE_ID = os.path.join(REPO, "build", "work", "cni-multi", "gen", "cache-id")
VERSION_IN = b'{"cniVersion":"1.0.0"}'


@pytest.fixture(scope="module")
def build_id() -> str:
    if not os.path.isfile(MULTI):
        pytest.fail("dist/cni-bin/cni-multi is missing: run make build (make test does)")
    with open(CACHE_ID) as f:
        return f.read().strip()


@pytest.fixture
def varlib(tmp_path):
    path = tmp_path / "varlib"
    path.mkdir()
    os.chmod(path, 0o755)
    return path


def in_ns(varlib, argv, mount_opts=""):
    """argv in a private mount namespace whose /var/lib is varlib (remounted with mount_opts, e.g. ro or noexec)."""
    remount = f" && mount -o remount,bind,{mount_opts} /var/lib" if mount_opts else ""
    script = f'mount --bind {varlib} /var/lib{remount} && exec "$@"'
    return ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", *argv]


def run(varlib, argv, stdin=b"", env=None, mount_opts="", rt=None, timeout=60):
    full = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **(env or {})}
    if rt:
        full["TMPDIR"] = rt
    return subprocess.run(in_ns(varlib, argv, mount_opts), input=stdin, env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=timeout)


def self_test(varlib, mount_opts="", rt=None) -> dict:
    proc = run(varlib, [MULTI, "--self-test"], mount_opts=mount_opts, rt=rt)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    report = json.loads(proc.stdout)
    assert report["ok"], report
    return report


def version_ok(proc) -> bool:
    return proc.returncode == 0 and json.loads(proc.stdout)["cniVersion"] == "1.0.0"


def listing(path) -> list[str]:
    return sorted(os.listdir(path)) if os.path.isdir(path) else []


def test_the_first_start_populates_a_sealed_cache_and_later_starts_run_from_it(varlib, build_id):
    root = varlib / "cni-multi"
    report = self_test(varlib)
    assert report["in_place"] is True and report["runtime_tmpdir"] == bincache.ROOT
    assert listing(root) == [build_id]  # published complete, no .tmp-* left
    st = os.lstat(root)
    assert st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o700
    home = root / build_id
    assert os.path.isfile(home / ".cni-multi-build") and os.path.isfile(home / "libpython3.11.so.1.0")
    lazy = listing(home / bincache.LAZY_DIR)
    assert any(name.startswith("_ssl.") for name in lazy) and any(name.startswith("libssl") for name in lazy)
    for top, dirs, files in os.walk(home):
        for name in dirs + files:
            mode = os.lstat(os.path.join(top, name)).st_mode
            if not stat.S_ISLNK(mode):
                assert mode & 0o277 == 0, (os.path.join(top, name), oct(mode))  # read-only, private
    # a warm start changes nothing
    inode = os.stat(home).st_ino
    assert version_ok(run(varlib, [os.path.join(BIN, "bridge")], VERSION_IN, {"CNI_COMMAND": "VERSION"}))
    assert listing(root) == [build_id] and os.stat(home).st_ino == inode


def test_a_running_plugin_is_one_process_holding_a_shared_lock_on_its_cache(varlib, build_id):
    proc = subprocess.Popen(in_ns(varlib, [os.path.join(BIN, "host-local")]), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={"PATH": "/usr/bin:/bin", "CNI_COMMAND": "VERSION"})
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not os.path.isdir(varlib / "cni-multi" / build_id):
            time.sleep(0.02)
        time.sleep(0.2)  # VERSION waits for stdin's end
        with open(f"/proc/{proc.pid}/task/{proc.pid}/children") as f:
            assert f.read().split() == []  # Python runs in the bootloader's process
        with open("/proc/locks") as f:
            locks = [line.split() for line in f]
        assert any(fields[1] == "FLOCK" and fields[3] == "READ" and fields[4] == str(proc.pid) for fields in locks), locks
    finally:
        out, _ = proc.communicate(VERSION_IN, timeout=30)
    assert json.loads(out)["cniVersion"] == "1.0.0"


def _plant(varlib, build_id, case):
    root = varlib / "cni-multi"
    elsewhere = varlib / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    if case == "root is a symlink":
        os.symlink(elsewhere, root)
    elif case == "root owned by another user":
        root.mkdir(mode=0o700)
        os.chown(root, 1000, 1000)
    elif case == "root writable by its group":
        root.mkdir()
        os.chmod(root, 0o770)
    elif case == "parent writable by others":
        root.mkdir(mode=0o700)
        os.chmod(varlib, 0o777)
    elif case == "build directory is a symlink":
        root.mkdir(mode=0o700)
        os.symlink(elsewhere, root / build_id)
    elif case == "build directory owned by another user":
        root.mkdir(mode=0o700)
        (root / build_id).mkdir(mode=0o700)
        os.chown(root / build_id, 1000, 1000)
    return elsewhere


REFUSED = ["root is a symlink", "root owned by another user", "root writable by its group", "parent writable by others",
           "build directory is a symlink", "build directory owned by another user"]


@pytest.mark.parametrize("case", REFUSED)
def test_an_unsafe_cache_is_refused_and_the_binary_falls_back(varlib, build_id, case, tmp_path):
    elsewhere = _plant(varlib, build_id, case)
    rt = tmp_path / "rt"
    rt.mkdir(mode=0o700)
    before = listing(varlib / "cni-multi") if not os.path.islink(varlib / "cni-multi") else None
    report = self_test(varlib, rt=str(rt))
    assert report["in_place"] is False and report["runtime_tmpdir"] == str(rt)
    assert version_ok(run(varlib, [os.path.join(BIN, "host-local")], VERSION_IN, {"CNI_COMMAND": "VERSION"}, rt=str(rt)))
    assert listing(elsewhere) == []  # nothing written through a symlink
    if before is not None:
        assert listing(varlib / "cni-multi") == before  # nothing added to a cache it does not trust
    assert listing(rt) == []  # the fallback cleaned up after itself


def test_twenty_simultaneous_first_starts_publish_one_cache(varlib, build_id):
    """Pinned to one CPU, as a busy node interleaves them."""
    procs = [subprocess.Popen(["taskset", "-c", "0"] + in_ns(varlib, [os.path.join(BIN, "bridge")]), stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={"PATH": "/usr/bin:/bin", "CNI_COMMAND": "VERSION"})
             for _ in range(20)]
    outs = [p.communicate(VERSION_IN, timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 20, [err for _, err in outs]
    assert all(json.loads(out)["cniVersion"] == "1.0.0" for out, _ in outs)
    assert listing(varlib / "cni-multi") == [build_id]  # the losers removed their copies
    assert self_test(varlib)["in_place"] is True


def test_read_only_var_falls_back_until_a_cache_exists(varlib, build_id, tmp_path):
    rt = tmp_path / "rt"
    rt.mkdir(mode=0o700)
    report = self_test(varlib, mount_opts="ro", rt=str(rt))
    assert report["in_place"] is False and listing(varlib) == []
    self_test(varlib)  # populated where it is writable (make install does this)
    assert self_test(varlib, mount_opts="ro")["in_place"] is True  # then read-only is fine


def test_a_noexec_cache_location_falls_back(varlib, build_id, tmp_path):
    rt = tmp_path / "rt"
    rt.mkdir(mode=0o700)
    report = self_test(varlib, mount_opts="noexec", rt=str(rt))
    assert report["in_place"] is False and report["runtime_tmpdir"] == str(rt)
    assert listing(varlib / "cni-multi") == []  # created, but never filled


def _hostlocal(data):
    return json.dumps({"cniVersion": "1.0.0", "name": "rip", "type": "host-local",
                       "ipam": {"type": "host-local", "subnet": "10.125.0.0/24", "dataDir": str(data)}}).encode()


def _cni_env(command, netns_path, cid):
    return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CNI_COMMAND": command, "CNI_CONTAINERID": cid, "CNI_NETNS": netns_path,
            "CNI_IFNAME": "eth0", "CNI_PATH": BIN}


def _wait_holding(pid, suffix, deadline=20.0):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            if any(os.readlink(f"/proc/{pid}/fd/{fd}").endswith(suffix) for fd in os.listdir(f"/proc/{pid}/fd")):
                return
        except OSError:
            pass
        time.sleep(0.02)
    pytest.fail(f"{pid} never opened {suffix}")


def test_a_cache_deleted_under_a_running_plugin_breaks_no_call(varlib, build_id, tmp_path, netns):
    """rm -rf of the whole cache while an ADD waits for its network's lock: the ADD completes, the next start repopulates."""
    container = netns("c").path
    data = tmp_path / "data"
    conf = _hostlocal(data)
    binary = os.path.join(BIN, "host-local")
    for command in ("ADD", "DEL"):  # the network's directory and lock file
        assert run(varlib, [binary], conf, _cni_env(command, container, "c0")).returncode == 0
    holder = os.open(data / "rip" / "lock", os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX)
    try:
        proc = subprocess.Popen(in_ns(varlib, [binary]), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=_cni_env("ADD", container, "c1"))
        proc.stdin.write(conf)
        proc.stdin.close()
        _wait_holding(proc.pid, "/rip/lock")
        subprocess.run(["rm", "-rf", str(varlib / "cni-multi")], check=True)
    finally:
        fcntl.flock(holder, fcntl.LOCK_UN)
        os.close(holder)
    out, err = proc.stdout.read(), proc.stderr.read()
    assert proc.wait(30) == 0, (out, err)
    assert json.loads(out)["ips"][0]["address"].startswith("10.125.0.")
    assert listing(varlib) == []  # nothing recreated under the running call
    assert run(varlib, [binary], conf, _cni_env("DEL", container, "c1")).returncode == 0
    assert listing(varlib / "cni-multi") == [build_id]


def test_prune_removes_other_builds_unless_a_process_runs_from_them(varlib, build_id):
    self_test(varlib)
    root = varlib / "cni-multi"
    unused, busy = root / ("a" * 64), root / ("b" * 64)
    leftover = root / f".tmp-{'c' * 64}-999999999"  # a killed first start's copy (no such pid)
    for path in (unused, busy, leftover):
        path.mkdir(mode=0o700)
        (path / "lib.so").write_bytes(b"x")
    holder = os.open(busy, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(holder, fcntl.LOCK_SH)  # as a running plugin of that build holds it (pyi_cni_cache.c)
    try:
        proc = run(varlib, [MULTI, "--prune-cache"])
        assert proc.returncode == 0, proc.stderr
        assert listing(root) == sorted([build_id, busy.name])
        assert f"kept {bincache.ROOT}/{busy.name}: in use" in proc.stdout.decode()
    finally:
        os.close(holder)
    assert run(varlib, [MULTI, "--prune-cache"]).returncode == 0
    assert listing(root) == [build_id]


def test_a_first_start_killed_while_populating_leaves_nothing_half_usable(varlib, build_id):
    """SIGKILL while the copy is being written: never published, and the next start sweeps it."""
    root = varlib / "cni-multi"
    killed = 0
    for _ in range(10):
        proc = subprocess.Popen(in_ns(varlib, [os.path.join(BIN, "host-local")]), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env={"PATH": "/usr/bin:/bin", "CNI_COMMAND": "VERSION"})
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any(n.startswith(".tmp-") for n in listing(root)):
            if proc.poll() is not None:
                break
            time.sleep(0.001)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        names = listing(root)
        assert build_id not in names or os.path.isfile(root / build_id / ".cni-multi-build")
        if build_id not in names:
            killed += 1
            break
        subprocess.run(["rm", "-rf", str(root)], check=True)
    assert killed, "no kill landed during the population"
    assert any(n.startswith(".tmp-") for n in listing(root))
    old = time.time() - 2 * bincache.STALE_AFTER
    for name in listing(root):
        os.utime(root / name, (old, old))
    assert self_test(varlib)["in_place"] is True
    assert listing(root) == [build_id]


def test_cni_suite_gc_prunes_other_builds(varlib, build_id, tmp_path):
    self_test(varlib)
    other = varlib / "cni-multi" / ("d" * 64)
    other.mkdir(mode=0o700)
    conf_dir = tmp_path / "net.d"
    conf_dir.mkdir()
    proc = run(varlib, [os.path.join(BIN, "cni-suite"), "--conf-dir", str(conf_dir), "gc", "--boot-sweep"])
    assert proc.returncode == 0, proc.stderr
    assert f"run-in-place cache: removed {bincache.ROOT}/{other.name}" in proc.stdout.decode()
    assert listing(varlib / "cni-multi") == [build_id]
