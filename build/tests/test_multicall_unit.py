"""The entry point's logic, from source: dispatch, the _MEI sweep's rules, the bootloader binding."""
import importlib.util
import os
import time

import pytest

pytestmark = pytest.mark.unit
HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def multicall():
    spec = importlib.util.spec_from_file_location("cni_multicall_under_test", os.path.join(HERE, "..", "multicall.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "argv,expected",
    [
        (["/opt/cni/bin/bridge"], ("bridge", ["/opt/cni/bin/bridge"])),
        (["host-local", "x"], ("host-local", ["host-local", "x"])),
        (["/opt/cni/bin/cni-multi", "vxlan"], ("vxlan", ["vxlan"])),
        (["cni-multi", "cni-suite", "gc", "--all"], ("cni-suite", ["cni-suite", "gc", "--all"])),
        (["cni-multi"], ("cni-multi", ["cni-multi"])),
        (["cni-multi", "nope"], ("cni-multi", ["cni-multi", "nope"])),
        (["bridge", "host-local"], ("bridge", ["bridge", "host-local"])),  # a plugin's own name wins
    ],
)
def test_the_plugin_is_chosen_by_argv0_then_argv1(multicall, argv, expected):
    assert multicall.select(argv) == expected


def test_mei_owner_reads_the_bootloader_pid(multicall):
    assert multicall._mei_owner("_MEI00002a43kqTmJY") == 0x2A43
    assert multicall._mei_owner("_MEI00002a43kqTmJ") is None  # 17 characters
    assert multicall._mei_owner("_MEIzzzzzzzzkqTmJY") is None
    assert multicall._mei_owner("_XYZ00002a43kqTmJY") is None


def _mei(tmp_path, pid: int, age: float, marker: bool = True, files: bool = True, suffix: str = "abcdef"):
    path = tmp_path / f"_MEI{pid:08x}{suffix}"
    path.mkdir(mode=0o700)
    if files:
        (path / "libpython3.11.so.1.0").write_bytes(b"x")
    if marker:
        (path / ".cni-multi-build").write_text("cni-multi test\n")
    old = time.time() - age
    os.utime(path, (old, old))
    return str(path)


def _dead_pid() -> int:
    pid = 4_000_000
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid -= 1


def test_sweep_removes_only_old_dirs_of_ours_whose_bootloader_is_gone(multicall, tmp_path):
    dead = _dead_pid()
    stale = _mei(tmp_path, dead, age=120)
    empty = _mei(tmp_path, dead - 1, age=120, marker=False, files=False, suffix="emptyy")
    young = _mei(tmp_path, dead - 2, age=5, suffix="younga")
    alive = _mei(tmp_path, os.getpid(), age=120, suffix="alivea")
    foreign = _mei(tmp_path, dead - 3, age=120, marker=False, suffix="other1")  # another PyInstaller app's
    (tmp_path / os.path.basename(foreign) / "their_app.so").write_bytes(b"x")
    os.utime(foreign, (time.time() - 120,) * 2)
    current = _mei(tmp_path, dead - 4, age=120, suffix="mineaa")
    (tmp_path / "_MEI_not_a_dir").write_text("")
    os.symlink(stale, tmp_path / f"_MEI{dead - 5:08x}linkaa")

    removed = multicall.sweep(str(tmp_path), current)

    assert sorted(removed) == sorted([stale, empty])
    left = sorted(os.listdir(tmp_path))
    kept = [os.path.basename(p) for p in (young, alive, foreign, current)] + ["_MEI_not_a_dir", f"_MEI{dead - 5:08x}linkaa"]
    assert left == sorted(kept)


def test_sweep_removes_the_remains_of_a_bootloader_killed_while_deleting_its_directory(multicall, tmp_path):
    """The marker went first: what is left is recognised as part of our own tree, and nothing else is."""
    dead = _dead_pid()
    current = _mei(tmp_path, dead - 4, age=0, suffix="mineaa")
    os.makedirs(os.path.join(current, "python3.11", "lib-dynload"))
    open(os.path.join(current, "python3.11", "lib-dynload", "_json.so"), "w").close()
    remains = _mei(tmp_path, dead, age=0, marker=False, files=False, suffix="remain")
    os.makedirs(os.path.join(remains, "python3.11", "lib-dynload"))
    open(os.path.join(remains, "python3.11", "lib-dynload", "_json.so"), "w").close()
    other = _mei(tmp_path, dead - 1, age=0, marker=False, files=False, suffix="otherx")
    os.makedirs(os.path.join(other, "python3.11"))
    open(os.path.join(other, "python3.11", "their_app.so"), "w").close()
    swapped = _mei(tmp_path, dead - 2, age=0, marker=False, files=False, suffix="swappd")
    os.symlink("/etc", os.path.join(swapped, "python3.11"))  # a symlink where we have a directory
    old = time.time() - 120
    for path in (remains, other, swapped):
        os.utime(path, (old, old))

    assert multicall.stale_mei_dirs(str(tmp_path), current) == [remains]
    assert multicall.stale_mei_dirs(str(tmp_path), "") == []  # without our own tree to compare with, nothing


def test_sweep_leaves_dirs_of_other_users(multicall, tmp_path):
    dead = _dead_pid()
    stale = _mei(tmp_path, dead, age=120)
    assert multicall.stale_mei_dirs(str(tmp_path), uid=os.geteuid() + 1) == []
    assert multicall.stale_mei_dirs(str(tmp_path)) == [stale]


def test_an_orphaned_child_exits_at_once(multicall, monkeypatch):
    """The bootloader died before PR_SET_PDEATHSIG took effect: the parent is no longer it."""
    calls = []
    monkeypatch.setattr(multicall, "_prctl_pdeathsig", lambda: calls.append("prctl") or True)
    monkeypatch.setattr(multicall.os, "getppid", lambda: 1)

    def exit_(code):
        raise SystemExit(code)

    monkeypatch.setattr(multicall.os, "_exit", exit_)
    with pytest.raises(SystemExit) as done:
        multicall.bind_to_bootloader("/tmp/_MEI00002a43kqTmJY")
    assert done.value.code == multicall.EXIT_ORPHANED
    assert calls == ["prctl"]  # the death signal is asked for before the parent is checked


def test_a_child_whose_parent_is_the_bootloader_goes_on(multicall, monkeypatch):
    monkeypatch.setattr(multicall, "_prctl_pdeathsig", lambda: True)
    monkeypatch.setattr(multicall.os, "getppid", lambda: 0x2A43)
    multicall.bind_to_bootloader("/tmp/_MEI00002a43kqTmJY")  # returns


def test_onedir_layouts_are_not_bound(multicall, monkeypatch):
    monkeypatch.setattr(multicall, "_prctl_pdeathsig", lambda: pytest.fail("no bootloader to bind to"))
    multicall.bind_to_bootloader("/opt/app/_internal")
