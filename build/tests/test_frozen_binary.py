"""The built single-file binary (make build): layout, self-containment, import discipline, process hygiene.

Everything runs the real dist/cni-bin binaries.  They run in place from the
cache (build/tests/test_run_in_place.py tests it) unless a test asks for the
per-start fallback: FALLBACK runs a command in a private mount namespace
where the cache root is unusable (world-writable).  Each run gets its own
runtime temporary directory (TMPDIR), so the _MEI directories a test looks
at are its own, whatever else runs on the machine.  Mount experiments happen only inside
private mount namespaces (unshare -m); network objects only in namespaces made
by conformance.netenv.
"""
import fcntl
import glob
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from common import bincache
from conformance.netenv import Netns

pytestmark = pytest.mark.root
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(REPO, "dist", "cni-bin")
MULTI = os.path.join(BIN, "cni-multi")
SIZE_LIMIT = 25 * 1024 * 1024
# what the VERSION path must never import (the brief: "nothing beyond the protocol core")
NOT_ON_VERSION = ("pyroute2", "asyncio", "logging", "ipaddress", "dataclasses", "common.skel", "common.plugins", "cni_bridge", "cni_hostlocal_ipam",
                  "cni_vxlan", "cni_suite")
# nor ADD and DEL (pyroute2: common/netlink/codec.py encodes with layouts generated from it; socket: core.py uses _socket;
# importlib and warnings: common.startup.import_module)
NOT_ON_ADD_DEL = ("asyncio", "ssl", "multiprocessing", "ctypes", "pyroute2", "socket", "platform", "importlib", "warnings")


@pytest.fixture(scope="module", autouse=True)
def built():
    if not os.path.isfile(MULTI):
        pytest.fail("dist/cni-bin/cni-multi is missing: run make build (make test does)")


def expected_names() -> set[str]:
    from common.plugins import discover  # the plugin table: every declared plugin and CLI

    return set(discover())


@pytest.fixture
def rt(tmp_path):
    """A runtime temporary directory of this test's own, as an operator would set TMPDIR."""
    path = tmp_path / "rt"
    path.mkdir(mode=0o700)
    return str(path)


@pytest.fixture(scope="module", autouse=True)
def cache_root():
    """The cache root exists (as the first start would make it), so FALLBACK can mount over it."""
    os.makedirs(bincache.ROOT, mode=0o700, exist_ok=True)


# the per-start fallback: a cache root writable by others is refused (pyi_cni_cache.c); unshare and sh exec, so the pid stays
FALLBACK = ["unshare", "-m", "--propagation", "private", "sh", "-c",
            f'mount -t tmpfs -o mode=0777,size=1m cni-fallback {bincache.ROOT} && exec "$@"', "sh"]


def run(argv, stdin=b"", env=None, rt=None, timeout=60):
    full = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    if rt:
        full["TMPDIR"] = rt
    full.update(env or {})
    return subprocess.run(argv, input=stdin, env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)


def modules_of(tmp_path, argv, command, stdin=b"", env=None, rt=None):
    dump = str(tmp_path / f"modules-{command}")
    proc = run(argv, stdin, {"CNI_COMMAND": command, "CNI_MULTI_DEBUG_MODULES": dump, **(env or {})}, rt)
    with open(dump) as f:
        return proc, set(f.read().split())


def hostlocal_conf(data_dir, name="bt", **ipam):
    return {"cniVersion": "1.0.0", "name": name, "ipam": {"type": "host-local", "subnet": "10.123.0.0/24", "dataDir": data_dir, **ipam}}


def cni_env(command, netns, cid="c1", **extra):
    return {"CNI_COMMAND": command, "CNI_CONTAINERID": cid, "CNI_NETNS": netns, "CNI_IFNAME": "eth0", "CNI_PATH": BIN, **extra}


# --- layout --------------------------------------------------------------------


def test_one_binary_and_a_link_per_plugin_name():
    st = os.lstat(MULTI)
    assert st.st_mode & 0o111 and not os.path.islink(MULTI)
    links = {n for n in os.listdir(BIN) if os.path.islink(os.path.join(BIN, n))}
    assert links == expected_names()
    for name in links:
        assert os.readlink(os.path.join(BIN, name)) == "cni-multi"
    assert sorted(os.listdir(BIN)) == sorted(links | {"cni-multi"})


def test_binary_size_is_within_budget():
    assert os.path.getsize(MULTI) <= SIZE_LIMIT


@pytest.mark.parametrize("in_place", [True, False], ids=["in-place", "fallback"])
def test_self_test_imports_everything_inside_the_binary(rt, in_place):
    """Every module of ours, and TLS (extracted on first use, or at the cache's first population), load from inside the binary."""
    proc = run(([] if in_place else FALLBACK) + [MULTI, "--self-test"], rt=rt)
    report = json.loads(proc.stdout)
    assert proc.returncode == 0 and report["ok"], report
    assert report["failures"] == []
    assert set(report["plugins"]) == expected_names()
    assert report["openssl"].startswith("OpenSSL")
    assert report["in_place"] is in_place
    assert report["runtime_tmpdir"] == (bincache.ROOT if in_place else rt)
    assert report["build"].startswith("cni-multi ")
    assert os.listdir(rt) == []  # the bootloader removed this run's directory, the lazily written TLS files with it


def test_the_multi_call_name_takes_the_plugin_as_first_argument(rt):
    by_link = run([os.path.join(BIN, "host-local")], b'{"cniVersion":"0.4.0"}', {"CNI_COMMAND": "VERSION"}, rt)
    by_arg = run([MULTI, "host-local"], b'{"cniVersion":"0.4.0"}', {"CNI_COMMAND": "VERSION"}, rt)
    assert by_link.returncode == by_arg.returncode == 0
    assert by_link.stdout == by_arg.stdout
    assert json.loads(by_arg.stdout)["cniVersion"] == "0.4.0"
    bare = run([MULTI], env={"CNI_COMMAND": "VERSION"}, rt=rt)
    assert bare.returncode == 2 and b"usage" in bare.stderr


def test_each_name_behaves_as_its_source_wrapper_outside_cni(rt):
    """No CNI_COMMAND: the plugin's own main decides (the about text; vxlan's operator commands take arguments)."""
    cases = [("bridge", []), ("host-local", [])]
    if "vxlan" in expected_names():
        cases.append(("vxlan", ["--help"]))
    if "cni-suite" in expected_names():
        cases.append(("cni-suite", ["--help"]))
    for name, args in cases:
        frozen = run([os.path.join(BIN, name)] + args, rt=rt)
        source = run([os.path.join(REPO, "dist", "src-bin", name)] + args, rt=rt)
        assert frozen.returncode == source.returncode == 0, (name, frozen.stderr)
        assert frozen.stderr == source.stderr  # the about text goes to stderr
        # click names the program after argv[0]: the link's name, or __main__.py from source
        assert frozen.stdout == source.stdout.replace(b"__main__.py", name.encode()), name


def test_version_answers_match_the_plugins_and_the_source_wrappers(rt):
    """VERSION comes from a table the build wrote: it must say what each plugin itself says."""
    import importlib

    for name, package in (("host-local", "cni_hostlocal_ipam"), ("bridge", "cni_bridge"), ("vxlan", "cni_vxlan")):
        if name not in expected_names():
            continue
        plugin = importlib.import_module(package + ".plugin").PLUGIN
        for stdin in (b'{"cniVersion":"0.3.1"}', b"", b"garbage", b'{"cniVersion":7}'):
            frozen = run([os.path.join(BIN, name)], stdin, {"CNI_COMMAND": "VERSION"}, rt)
            source = run([os.path.join(REPO, "dist", "src-bin", name)], stdin, {"CNI_COMMAND": "VERSION"}, rt)
            assert frozen.returncode == source.returncode == 0
            assert frozen.stdout == source.stdout, (name, stdin)
            assert json.loads(frozen.stdout)["supportedVersions"] == list(plugin.versions)


# --- no Python on the host -------------------------------------------------------


def test_runs_with_an_empty_environment_and_no_python_on_path(rt, netns, tmp_path):
    """env -i PATH=/nonexistent: VERSION, and a full host-local ADD/DEL."""
    base = ["env", "-i", "PATH=/nonexistent", f"TMPDIR={rt}"]
    version = subprocess.run(base + ["CNI_COMMAND=VERSION", os.path.join(BIN, "host-local")], input=b'{"cniVersion":"1.0.0"}',
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert version.returncode == 0, version.stderr
    assert json.loads(version.stdout)["cniVersion"] == "1.0.0"
    container = netns("c").path
    conf = json.dumps(hostlocal_conf(str(tmp_path / "data"))).encode()
    for command in ("ADD", "DEL"):
        env = [f"{k}={v}" for k, v in cni_env(command, container).items()]
        proc = subprocess.run(base + env + [os.path.join(BIN, "host-local")], input=conf, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        assert proc.returncode == 0, (command, proc.stdout, proc.stderr)
    assert json.loads(proc.stdout or b"null") is None


def _hide_python_script() -> str:
    """Shell for a private mount namespace in which no Python interpreter or library is left."""
    hide_dirs = [d for d in ("/root/.pyenv", "/usr/lib/python3", "/usr/lib/python3.11", "/usr/local/lib/python3.11",
                             os.path.join(REPO, ".venv")) if os.path.isdir(d)]
    hide_files = [f for f in glob.glob("/usr/bin/python3*") + glob.glob("/usr/lib/x86_64-linux-gnu/libpython3*") if os.path.isfile(f) and not os.path.islink(f)]
    lines = ["set -e", "mount --make-rprivate /"]
    lines += [f"mount -t tmpfs -o ro,size=4k none {d}" for d in hide_dirs]
    lines += [f"mount --bind /dev/null {f}" for f in hide_files]
    return "\n".join(lines)


def test_runs_where_no_python_is_installed(rt):
    """In a mount namespace where every Python (the build's, Debian's, the venv) is hidden."""
    script = _hide_python_script() + f"""
if /usr/bin/python3 -c pass 2>/dev/null || {sys.executable} -c pass 2>/dev/null; then echo "python still runs"; exit 3; fi
TMPDIR={rt} {MULTI} --self-test
"""
    proc = subprocess.run(["unshare", "-m", "sh", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert json.loads(proc.stdout)["ok"]


# --- /tmp mounted noexec: TMPDIR is the supported knob ----------------------------------


def test_noexec_tmp_fails_without_tmpdir_and_works_with_it(netns):
    """Falling back, a noexec /tmp breaks the extracted libraries; TMPDIR naming an exec-capable, root-only directory fixes it."""
    container = netns("c").path
    conf = json.dumps(hostlocal_conf("/tmp/data"))  # inside the private /tmp
    cni = f"CNI_CONTAINERID=c1 CNI_IFNAME=eth0 CNI_NETNS={container}"
    # the binaries are bound to /mnt first (private mount namespace): a checkout under /tmp would vanish under the new /tmp
    script = f"""set -e
mount --make-rprivate /
mount -t tmpfs -o mode=0777,size=1m cni-fallback {bincache.ROOT}
mount --bind {BIN} /mnt
mount -t tmpfs -o noexec,nosuid,nodev,mode=1777,size=64m none /tmp
mkdir -m 0700 /tmp/cni-rt
mount -t tmpfs -o mode=0700,size=64m none /tmp/cni-rt
set +e
echo '{{"cniVersion":"1.0.0"}}' | env -u TMPDIR CNI_COMMAND=VERSION /mnt/host-local >/dev/null 2>/tmp/default.err
echo "default=$?"
echo '{{"cniVersion":"1.0.0"}}' | TMPDIR=/tmp/cni-rt CNI_COMMAND=VERSION /mnt/host-local | tr -d ' \\n'; echo
TMPDIR=/tmp/cni-rt /mnt/cni-multi --self-test | tr -d ' \\n'; echo
echo '{conf}' | TMPDIR=/tmp/cni-rt CNI_COMMAND=ADD {cni} /mnt/host-local | tr -d ' \\n'; echo
echo '{conf}' | TMPDIR=/tmp/cni-rt CNI_COMMAND=DEL {cni} /mnt/host-local
echo "del=$?"
echo "left=$(ls -A /tmp/cni-rt | wc -l)"
"""
    proc = subprocess.run(["unshare", "-m", "sh", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    lines = proc.stdout.decode().splitlines()
    assert proc.returncode == 0, (lines, proc.stderr)
    assert lines[0] != "default=0", "a noexec /tmp should break the default run; the test proves nothing otherwise"
    assert json.loads(lines[1])["cniVersion"] == "1.0.0"
    assert json.loads(lines[2])["ok"] and json.loads(lines[2])["runtime_tmpdir"] == "/tmp/cni-rt"
    assert json.loads(lines[3])["ips"][0]["address"].startswith("10.123.0.")
    assert lines[4:6] == ["del=0", "left=0"]


# --- what each path imports ---------------------------------------------------------------


def test_version_imports_nothing_beyond_the_protocol_core(tmp_path, rt, lazy_extensions):
    for name in expected_names() - {"cni-suite"}:
        proc, modules = modules_of(tmp_path, [os.path.join(BIN, name)], "VERSION", b'{"cniVersion":"1.0.0"}', rt=rt)
        assert proc.returncode == 0
        assert "common.version" in modules  # the dump is real
        offenders = sorted(m for m in modules if m.startswith(NOT_ON_VERSION + lazy_extensions))
        assert offenders == [], (name, offenders)


@pytest.fixture(scope="module")
def lazy_extensions():
    proc = run([MULTI, "--self-test"])
    lazy = json.loads(proc.stdout)["lazy_extensions"]
    assert "_ssl" in lazy
    return tuple(lazy)


def test_bridge_add_check_del_never_import_pyroute2_socket_or_asyncio(tmp_path, rt, netns, lazy_extensions):
    """Nor an extension module the build extracts only on demand (that would cost every ADD its extraction)."""
    node, container = netns("n"), netns("c")
    conf = {"cniVersion": "1.0.0", "name": "bt", "type": "bridge", "bridge": "cnibt0", "isGateway": True,
            "ipam": {"type": "host-local", "subnet": "10.124.0.0/24", "dataDir": str(tmp_path / "data")}}
    argv = ["ip", "netns", "exec", node.name, os.path.join(BIN, "bridge")]
    proc, modules = modules_of(tmp_path, argv, "ADD", json.dumps(conf).encode(), cni_env("ADD", container.path), rt)
    assert proc.returncode == 0, proc.stdout
    result = json.loads(proc.stdout)
    assert {"common.netlink.codec", "cni_bridge.plugin", "cni_hostlocal_ipam.plugin"} <= modules  # codec read layouts.json
    assert sorted(m for m in modules if m.startswith(NOT_ON_ADD_DEL)) == []
    assert sorted(modules & set(lazy_extensions)) == []
    conf["prevResult"] = result
    for command in ("CHECK", "DEL"):
        proc, modules = modules_of(tmp_path, argv, command, json.dumps(conf).encode(), cni_env(command, container.path), rt)
        assert proc.returncode == 0, (command, proc.stdout, proc.stderr)
        assert sorted(m for m in modules if m.startswith(NOT_ON_ADD_DEL)) == [], command
        assert sorted(modules & set(lazy_extensions)) == [], command
    assert os.listdir(rt) == []


# --- SIGKILL of the top process -----------------------------------------------------------------


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def _bootloader_children(pid: int) -> list[int]:
    """The children of pid once it runs our binary: under FALLBACK, the shell before its exec has its own (mount)."""
    try:
        if not os.readlink(f"/proc/{pid}/exe").endswith("/cni-multi"):
            return []
    except OSError:
        return []
    return _children(pid)


def _wait_for(predicate, what: str, deadline: float = 20.0):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    pytest.fail(f"gave up waiting for {what}")


def _holds(pid: int, suffix: str) -> bool:
    try:
        return any(os.readlink(f"/proc/{pid}/fd/{fd}").endswith(suffix) for fd in os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return False


def _finish(proc: subprocess.Popen, timeout: float = 60) -> tuple[bytes, bytes]:
    out, err = proc.stdout.read(), proc.stderr.read()
    proc.wait(timeout)
    return out, err


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_sigkill_of_the_top_process_leaves_no_orphan_and_the_sweep_removes_its_directory(tmp_path, rt, netns):
    """Falling back: a runtime's timeout SIGKILLs the bootloader while the plugin waits for the network's lock."""
    container = netns("c").path
    data = str(tmp_path / "data")
    conf = json.dumps(hostlocal_conf(data, lockTimeout=60)).encode()
    binary = os.path.join(BIN, "host-local")
    for command in ("ADD", "DEL"):  # creates <data>/bt with its lock file
        warm = run([binary], conf, cni_env(command, container, cid="c0"), rt)
        assert warm.returncode == 0, warm.stdout
    holder = os.open(os.path.join(data, "bt", "lock"), os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX)
    try:
        top = subprocess.Popen(FALLBACK + [binary], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env={"PATH": "/usr/bin:/bin", "TMPDIR": rt, **cni_env("ADD", container)})
        top.stdin.write(conf)
        top.stdin.close()
        child = _wait_for(lambda: _bootloader_children(top.pid), "the bootloader's child")[0]
        _wait_for(lambda: _holds(child, "/bt/lock"), "the plugin to wait for the lock")
        assert _holds(child, "/cni-multi")  # its imports read from the inode it started as (pin_archive)
        mei = os.listdir(rt)
        assert len(mei) == 1 and mei[0].startswith("_MEI") and int(mei[0][4:12], 16) == top.pid
        os.kill(top.pid, signal.SIGKILL)
        top.wait()
        _wait_for(lambda: not _alive(child), "the Python child to die with its bootloader")
        assert not os.path.exists(f"/proc/{child}") or not _alive(child)
    finally:
        fcntl.flock(holder, fcntl.LOCK_UN)
        os.close(holder)
    top.stdout.close()
    top.stderr.close()
    assert [f for f in os.listdir(os.path.join(data, "bt")) if f[0].isdigit()] == []  # it died before allocating

    # the killed bootloader could not remove its directory; the next start removes it once it is a minute old
    leftover = os.path.join(rt, mei[0])
    assert os.path.isfile(os.path.join(leftover, ".cni-multi-build"))
    assert run(FALLBACK + [binary], b"{}", {"CNI_COMMAND": "VERSION"}, rt).returncode == 0
    assert os.listdir(rt) == mei  # too young: a bootloader might still be extracting
    old = time.time() - 120
    os.utime(leftover, (old, old))
    assert run(FALLBACK + [binary], b"{}", {"CNI_COMMAND": "VERSION"}, rt).returncode == 0
    assert os.listdir(rt) == []


SEM_POST_DELAY = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <semaphore.h>
#include <stdlib.h>
#include <unistd.h>
static int armed;
__attribute__((constructor)) static void init(void) {
    const char *v = getenv("CNIT_DELAY_SEM_POST");
    armed = v != NULL && v[0] == '1';
    unsetenv("CNIT_DELAY_SEM_POST");  /* the exec'd child starts undelayed */
    unsetenv("LD_PRELOAD");
}
int sem_post(sem_t *sem) {
    static int (*real)(sem_t *);
    if (real == NULL) real = (int (*)(sem_t *))dlsym(RTLD_NEXT, "sem_post");
    if (armed) { armed = 0; sleep(30); }
    return real(sem);
}
"""


def test_a_child_still_waiting_for_the_bootloader_dies_with_it(tmp_path, rt):
    """The window Python cannot close: the bootloader killed after fork, before it posts the start-up
    semaphore.  A preloaded sem_post that sleeps holds the window open; the patched bootloader
    (build/bootloader.sh) gives the child its parent-death signal before it waits, so it dies at once.
    Unpatched, it would wait in sem_wait() forever, holding the runtime's stdout pipe."""
    shim = tmp_path / "delay.so"
    src = tmp_path / "delay.c"
    src.write_text(SEM_POST_DELAY)
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(shim), str(src), "-ldl"], check=True)
    script = f'mount -t tmpfs -o mode=0777,size=1m cni-fallback {bincache.ROOT} && LD_PRELOAD={shim} exec "$@"'
    top = subprocess.Popen(FALLBACK[:-2] + [script, "sh", os.path.join(BIN, "host-local")], stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env={"PATH": "/usr/bin:/bin", "TMPDIR": rt, "CNI_COMMAND": "VERSION", "CNIT_DELAY_SEM_POST": "1"})
    child = None
    try:
        child = _wait_for(lambda: _bootloader_children(top.pid), "the bootloader's child")[0]
        time.sleep(0.3)  # the child is in sem_wait: the parent sleeps 30 s before posting
        with open(f"/proc/{child}/status") as f:
            assert "PPid:\t%d" % top.pid in f.read()
        os.kill(top.pid, signal.SIGKILL)
        top.wait()
        _wait_for(lambda: not _alive(child), "the waiting child to die with its bootloader", deadline=5)
        assert top.stdout.read() == b""  # the pipe's last writer is gone: a runtime's read ends
    finally:
        if child is not None and _alive(child):
            os.kill(child, signal.SIGKILL)  # the unpatched outcome: clean up what this test started
        top.stdout.close()
        top.stderr.close()


def test_the_parent_of_a_running_plugin_is_its_bootloader(rt):
    """Falling back, the child's parent is the bootloader whose pid names the _MEI directory (what bind_to_bootloader checks)."""
    proc = subprocess.Popen(FALLBACK + [os.path.join(BIN, "host-local")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={"PATH": "/usr/bin:/bin", "TMPDIR": rt, "CNI_COMMAND": "VERSION"})
    try:
        child = _wait_for(lambda: _bootloader_children(proc.pid), "the child")[0]
        with open(f"/proc/{child}/status") as f:
            status = dict(line.split(":\t", 1) for line in f.read().splitlines() if ":\t" in line)
        assert int(status["PPid"]) == proc.pid
    finally:
        proc.stdin.close()  # VERSION reads stdin to its end, then answers
        _finish(proc)
    assert proc.returncode == 0


# --- install: write-then-rename while a plugin runs -----------------------------------------------


def test_install_replaces_a_running_binary_by_rename(tmp_path, netns):
    dest = tmp_path / "root"
    bindir = dest / "opt" / "cni" / "bin"
    bindir.mkdir(parents=True)
    (bindir / "tuning").write_text("#!/bin/sh\n")  # someone else's plugin: left alone
    os.symlink("cni-multi", bindir / "gone-plugin")  # a name of ours this build no longer has
    install = [os.path.join(REPO, "build", "install.sh"), str(bindir)]
    first = subprocess.run(install, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    assert first.returncode == 0, first.stderr
    assert sorted(os.listdir(bindir)) == sorted(expected_names() | {"cni-multi", "tuning"})
    assert (bindir / "tuning").read_text() == "#!/bin/sh\n"
    assert os.stat(bindir / "cni-multi").st_mode & 0o777 == 0o755
    for name in expected_names():
        assert os.readlink(bindir / name) == "cni-multi"

    # a plugin runs from the installed binary (waiting for its network's lock) while install runs again
    rt = tmp_path / "rt"
    rt.mkdir(mode=0o700)
    container = netns("c").path
    data = str(tmp_path / "data")
    conf = json.dumps(hostlocal_conf(data)).encode()
    binary = str(bindir / "host-local")
    for command in ("ADD", "DEL"):
        assert run([binary], conf, cni_env(command, container, cid="c0", CNI_PATH=str(bindir)), str(rt)).returncode == 0
    before = os.stat(bindir / "cni-multi").st_ino
    holder = os.open(os.path.join(data, "bt", "lock"), os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX)
    try:
        running = subprocess.Popen([binary], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   env={"PATH": "/usr/bin:/bin", "TMPDIR": str(rt), **cni_env("ADD", container, CNI_PATH=str(bindir))})
        running.stdin.write(conf)
        running.stdin.close()
        assert _children(running.pid) == []  # in place: one process
        _wait_for(lambda: _holds(running.pid, "/bt/lock"), "the plugin to wait for the lock")
        again = subprocess.run(install, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
        assert again.returncode == 0, again.stderr  # no "text file busy"
        assert os.stat(bindir / "cni-multi").st_ino != before
    finally:
        fcntl.flock(holder, fcntl.LOCK_UN)
        os.close(holder)
    out, err = _finish(running)
    assert running.returncode == 0, (out, err)
    assert json.loads(out)["ips"][0]["address"].startswith("10.123.0.")
    assert not [f for f in os.listdir(bindir) if f.startswith(".")]  # no temporary files left
