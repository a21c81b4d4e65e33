"""One plugin table (common/plugins.py): a new plugin package is found everywhere without an edit outside it.

A throw-away plugin package is written into a temporary root; every reader of
the table must then know it when pointed at that root (and must not without).
"""

import ast
import importlib.util
import json
import os
import sys

import pytest

from common import invoke, plugins
from common.plugins import DeclarationError, discover

pytestmark = pytest.mark.unit
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "cni_tabletestfake"
TYPE = "tabletest-fake"
DECLARE = f"""\
TYPES = ({TYPE!r},)
KIND = "plugin"
IN_PROCESS = True
SAMPLE = {{"name": "confnet", "type": {TYPE!r}, "dataDir": "$DATA_DIR/fake", "ipam": {{"dataDir": "$DATA_DIR"}}}}
"""
PLUGIN = f"""\
from common import skel


def _refuse(args):
    raise AssertionError("the table test never runs a command")


PLUGIN = skel.Plugin(name={TYPE!r}, add=_refuse, delete=_refuse, versions=("1.0.0", "1.1.0"), about="throw-away plugin of tests/test_plugin_table.py")


def main():
    skel.main(PLUGIN)
"""


def _write_package(root, package: str, declare: str) -> None:
    path = root / package
    path.mkdir()
    (path / "__init__.py").write_text("")
    (path / "__main__.py").write_text(f"from {package}.plugin import main\n\nmain()\n")
    (path / "declare.py").write_text(declare)
    (path / "plugin.py").write_text(PLUGIN)
    (path / "tests").mkdir()
    (path / "tests" / "test_nothing.py").write_text("")


def _forget(package: str) -> None:
    for name in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
        del sys.modules[name]


@pytest.fixture
def extra_root(tmp_path, monkeypatch):
    """A root holding only the new plugin's package, on sys.path as a root must be."""
    _write_package(tmp_path, PACKAGE, DECLARE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield str(tmp_path)
    _forget(PACKAGE)


@pytest.fixture
def roots(extra_root):
    return (plugins.ROOT, extra_root)


@pytest.fixture
def gen(monkeypatch):
    """build/gen.py as a module (it puts the repo and build/ on sys.path: undone after the test)."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    spec = importlib.util.spec_from_file_location("cni_gen_under_test", os.path.join(REPO, "build", "gen.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_build_table_holds_the_new_plugin(gen, roots):
    table, modules, entry_modules = gen.build_table(roots)

    assert table[TYPE] == {
        "package": PACKAGE,
        "kind": "plugin",
        "module": f"{PACKAGE}.plugin",
        "in_process": True,
        "quick_delete": "",
        "versions": ["1.0.0", "1.1.0"],
        "about": "throw-away plugin of tests/test_plugin_table.py",
    }
    assert {f"{PACKAGE}", f"{PACKAGE}.declare", f"{PACKAGE}.plugin"} <= set(modules)
    assert not any(m.startswith(f"{PACKAGE}.tests") for m in modules)
    assert set(gen.REQUIRED) <= set(table)  # the repository's own plugins are still there
    assert "cni-suite" in table and table["cni-suite"]["kind"] == "cli"
    assert TYPE not in gen.build_table()[0]  # found through the root, nowhere else


def test_cni_suite_counts_the_new_plugin_as_ours(roots, extra_root, tmp_path_factory):
    from cni_suite import inventory

    ours = inventory.ours(roots)
    assert TYPE in ours and "cni-suite" not in ours
    assert TYPE not in inventory.ours()

    conf_dir = tmp_path_factory.mktemp("net.d")
    doc = {"cniVersion": "1.1.0", "name": "fakenet", "plugins": [{"type": "someone-elses"}, {"type": TYPE, "x": 1}]}
    (conf_dir / "10-fake.conflist").write_text(json.dumps(doc))
    (conf_dir / "20-odd.conf").write_text(json.dumps({"name": "odd", "type": ["not", "a", "name"]}))

    found = inventory.networks(str(conf_dir), ours)
    assert [(n.name, n.plugin, n.config.get("x")) for n in found] == [("fakenet", TYPE, 1)]
    assert inventory.networks(str(conf_dir)) == []


def test_the_conformance_suite_has_a_config_for_the_new_plugin(roots):
    from conformance import configs

    samples = configs.by_type(roots)
    assert samples[TYPE]["type"] == TYPE
    assert set(configs.PLUGIN_TYPES) < set(samples)
    assert TYPE not in configs.PLUGIN_TYPES

    assert configs.from_sample(samples[TYPE], "1.1.0", "/tmp/d", mtu=1400) == {
        "name": "confnet",
        "type": TYPE,
        "dataDir": "/tmp/d/fake",
        "ipam": {"dataDir": "/tmp/d"},
        "cniVersion": "1.1.0",
        "mtu": 1400,
    }
    assert configs.from_sample(samples[TYPE]) == {"name": "confnet", "type": TYPE, "cniVersion": "1.0.0"}


def test_the_runtime_table_delegates_to_the_new_plugin_in_process(roots, monkeypatch):
    monkeypatch.setattr(plugins, "_table", discover(roots))
    plugin = invoke.in_process(TYPE, {})
    assert plugin is not None and plugin.name == TYPE
    assert invoke.in_process(TYPE, {"CNI_DELEGATE_EXEC": "1"}) is None
    assert invoke.in_process("cni-suite", {}) is None  # a CLI is never a delegate

    monkeypatch.setattr(plugins, "_table", None)
    assert invoke.in_process(TYPE, {}) is None
    assert invoke.in_process("host-local", {}) is not None


def test_the_source_tree_declares_the_suite():
    table = discover()
    assert {"bridge", "host-local", "vxlan", "cni-suite"} <= set(table)
    for name, entry in table.items():
        assert os.path.isfile(os.path.join(entry["path"], "__main__.py")), name  # dist/src-bin runs `python -m <package>`
        if entry["kind"] == "plugin":
            assert entry["module"] and entry["sample"] is not None, name


def test_common_names_no_plugin_package():
    """No import of a plugin package and no string naming one in common/'s code (docstrings and comments aside)."""
    packages = tuple(sorted({entry["package"] for entry in discover().values()}))
    offenders = []
    for directory, dirs, files in os.walk(os.path.join(REPO, "common")):
        dirs[:] = [d for d in dirs if d not in ("tests", "__pycache__")]
        for name in (f for f in files if f.endswith(".py")):
            with open(os.path.join(directory, name)) as f:
                tree = ast.parse(f.read())
            docstrings = {
                id(node.body[0].value)
                for node in ast.walk(tree)
                if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                and node.body
                and isinstance(node.body[0], ast.Expr)
            }
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    texts = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom):
                    texts = [node.module or ""]
                elif isinstance(node, ast.Constant) and type(node.value) is str and id(node) not in docstrings:
                    texts = [node.value]
                else:
                    continue
                offenders += [f"{name}:{node.lineno}: {text!r}" for text in texts if any(p in text for p in packages)]
    assert offenders == []


@pytest.mark.parametrize(
    "declare,problem",
    [
        ("TYPES = 'x'\n", "TYPES"),
        ("TYPES = ('x',)\nKIND = 'daemon'\n", "KIND"),
        ("TYPES = ('x',)\nMODULE = 'elsewhere.plugin'\n", "MODULE"),
        ("TYPES = ('x',)\nKIND = 'cli'\nIN_PROCESS = True\nMAIN = 'm:main'\n", "IN_PROCESS"),
        ("TYPES = ('x',)\nSAMPLE = '{}'\n", "SAMPLE"),
        ("TYPES = ('bridge',)\n", "already declared"),
    ],
)
def test_a_bad_declaration_fails_discovery(tmp_path, monkeypatch, declare, problem):
    package = "cni_tabletestbad"
    _write_package(tmp_path, package, declare)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        with pytest.raises(DeclarationError, match=problem):
            discover((plugins.ROOT, str(tmp_path)))
    finally:
        _forget(package)
