"""Options and fixtures of the black-box suite (a pytest plugin: -p conformance.fixtures).

--bin-dir DIR (repeatable) names the plugin directories under test; by
default our source wrappers (dist/src-bin) and, when built, the single-file
binaries (dist/cni-bin).  --reference-dir names the reference plugins used as
an oracle and for chaining (default /usr/lib/cni).
"""
import os
import subprocess

import pytest

from conformance import netenv

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def default_bin_dirs() -> list[str]:
    dirs = [os.path.join(REPO, "dist", "src-bin")]
    built = os.path.join(REPO, "dist", "cni-bin")
    if os.path.isdir(built):
        dirs.append(built)
    return dirs


def pytest_configure(config):
    for marker in (
        "unit: pure logic, no root, no kernel state",
        "root: real namespaces and the real kernel (needs root)",
        "conformance: black-box tests of plugin executables (needs root)",
        "deliberate(reason): checks a deliberate improvement over the reference (README 'Deliberate differences'); "
        "skipped when the plugins under test are the reference's",
    ):
        config.addinivalue_line("markers", marker)


def pytest_addoption(parser):
    group = parser.getgroup("cni conformance")
    group.addoption("--bin-dir", action="append", default=[], help="plugin directory under test (repeatable)")
    group.addoption("--reference-dir", default="/usr/lib/cni", help="the reference plugins (oracle, chaining)")
    group.addoption("--podman-record", default="", help="write the CNI calls podman made (env, stdin) to this JSON file")


def pytest_generate_tests(metafunc):
    if "bin_dir" in metafunc.fixturenames:
        dirs = metafunc.config.getoption("bin_dir") or default_bin_dirs()
        ids = [os.path.relpath(d, REPO) if d.startswith(REPO) else d for d in dirs]
        metafunc.parametrize("bin_dir", [os.path.abspath(d) for d in dirs], ids=ids, scope="session")


@pytest.fixture(scope="session")
def reference_dir(request) -> str:
    path = request.config.getoption("reference_dir")
    if not os.path.isfile(os.path.join(path, "host-local")):
        pytest.fail(f"reference plugins missing from {path}: install Debian's containernetworking-plugins (make deps)")
    return path


class Plugins:
    """The plugins of one directory, with what each advertises."""

    def __init__(self, directory: str):
        self.dir = directory
        self._versions: dict[str, list[str]] = {}

    def path(self, name: str) -> str:
        path = os.path.join(self.dir, name)
        if not os.access(path, os.X_OK):
            pytest.skip(f"{self.dir} has no {name} plugin")
        return path

    def versions(self, name: str) -> list[str]:
        if name not in self._versions:
            out = subprocess.run([self.path(name)], input=b'{"cniVersion":"0.4.0"}', env={"CNI_COMMAND": "VERSION"},
                                 stdout=subprocess.PIPE, timeout=30)
            import json

            self._versions[name] = json.loads(out.stdout)["supportedVersions"]
        return self._versions[name]

    def need_version(self, name: str, version: str) -> None:
        if version not in self.versions(name):
            pytest.skip(f"{name} in {self.dir} does not advertise CNI {version}")


@pytest.fixture(scope="session")
def plugins(bin_dir) -> Plugins:
    return Plugins(bin_dir)


@pytest.fixture(scope="session")
def reference(reference_dir) -> Plugins:
    return Plugins(reference_dir)


@pytest.fixture
def container(netns):
    """A container network namespace path (the netns fixture deletes it)."""
    return netns("c").path


@pytest.fixture
def node(netns):
    """A node namespace in which plugins run (never the machine's own)."""
    return netns("n")




@pytest.fixture(scope="session", autouse=True)
def root_namespace_untouched():
    if not netenv.is_root():
        yield
        return
    before = netenv.root_snapshot()
    yield
    leftover = netenv.our_namespaces()
    for name in leftover:
        netenv.sh("ip", "netns", "del", name, check=False)
    after = netenv.root_snapshot()
    changed = {key: (before[key], after[key]) for key in before if before[key] != after[key]}
    assert not changed, f"the root network namespace changed during the run: {changed}"
    assert not leftover, f"tests left network namespaces behind: {leftover}"


@pytest.fixture
def netns():
    """A factory of throw-away namespaces, all deleted after the test."""
    created = []

    def make(tag: str = "") -> netenv.Netns:
        ns = netenv.Netns(tag)
        created.append(ns)
        return ns

    yield make
    for ns in reversed(created):
        ns.close()


def _same_dir(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def pytest_runtest_setup(item):
    marker = item.get_closest_marker("deliberate")
    callspec = getattr(item, "callspec", None)
    if marker is None or callspec is None or "bin_dir" not in callspec.params:
        return
    if _same_dir(callspec.params["bin_dir"], item.config.getoption("reference_dir")):
        reason = marker.args[0] if marker.args else marker.kwargs.get("reason", "")
        pytest.skip(f"deliberate difference from the reference (README 'Deliberate differences'): {reason}")


@pytest.fixture
def data_dir(tmp_path) -> str:
    """A private state root for one test (ipam.dataDir, top-level dataDir)."""
    path = tmp_path / "state"
    path.mkdir(mode=0o700)
    return str(path)


def pytest_collection_modifyitems(config, items):
    needs_root = [i for i in items if i.get_closest_marker("root") or i.get_closest_marker("conformance")]
    if needs_root and not netenv.is_root():
        skip = pytest.mark.skip(reason="needs root: real namespaces and the kernel")
        for item in needs_root:
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter):
    """Count passed/failed/skipped per tier, so a run shows all three tiers at work."""
    counts: dict[str, dict[str, int]] = {}
    for outcome in ("passed", "failed", "skipped", "error"):
        for report in terminalreporter.stats.get(outcome, []):
            keywords = getattr(report, "keywords", {})
            tier = next((t for t in ("unit", "root", "conformance") if t in keywords), "unmarked")
            counts.setdefault(tier, {}).setdefault(outcome, 0)
            counts[tier][outcome] += 1 if report.when in ("call", "setup") or outcome == "skipped" else 0
    if counts:
        terminalreporter.section("tests per tier")
        for tier in ("unit", "root", "conformance", "unmarked"):
            if tier in counts:
                line = ", ".join(f"{n} {o}" for o, n in sorted(counts[tier].items()) if n)
                terminalreporter.write_line(f"{tier:12} {line}")
