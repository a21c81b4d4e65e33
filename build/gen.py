"""Build-time generation for the multi-call binary (run by build/build.sh, before PyInstaller).

Writes into the directory given as argv[1]:

* cni_multi_table.py: the plugins this build holds (the plugin table,
  common/plugins.py: every package that declares itself), what each answers
  to VERSION, and every module of ours to bundle.
* cni_multi_dccache.py: the code of every method @dataclass generates while
  our modules are imported, compiled once here instead of on every start
  (build/multicall.py installs it; about 7 ms per ADD, docs/performance.md).
* .cni-multi-build: the marker the _MEI sweep recognises as ours.

It runs in a fresh interpreter so that what it records is exactly what a
plugin process does.
"""

import builtins
import dataclasses
import importlib
import marshal
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "build"))

import multicall  # noqa: E402  the entry point (its marker file's name)

from common import plugins as plugin_table  # noqa: E402

REQUIRED = ("host-local", "bridge")  # a build without these is no build of this suite

SOURCES: dict[str, object] = {}  # dataclass method text -> its code, in first-seen order


def _recording_exec(source, globals=None, locals=None):
    if isinstance(source, str) and source not in SOURCES:
        SOURCES[source] = compile(source, "<string>", "exec", dont_inherit=True)
    return builtins.exec(source, globals, locals)


def package_modules(package: str, root: str = REPO) -> list[str]:
    """Every module of a package (a directory of root) except its tests (and a CLI's __main__, which runs on import)."""
    found = []
    for directory, dirs, files in os.walk(os.path.join(root, package)):
        dirs[:] = sorted(d for d in dirs if d not in ("tests", "__pycache__"))
        dotted = os.path.relpath(directory, root).replace(os.sep, ".")
        for name in sorted(files):
            if not name.endswith(".py") or name.startswith("test_") or name == "conftest.py":
                continue
            if name == "__init__.py":
                found.append(dotted)
            elif name != "__main__.py":
                found.append(f"{dotted}.{name[:-3]}")
    return found


def build_table(roots=None) -> tuple[dict, list[str], list[str]]:
    """(PLUGINS, MODULES, ENTRY_MODULES) of cni_multi_table, from the plugin table under roots (default: the repo).

    Imports each plugin's PLUGIN module (one that fails to import fails the
    build: it does not ship without it), not the other modules.
    """
    plugins: dict[str, dict] = {}
    modules, entries, seen = package_modules("common"), [], set()
    for name, declared in plugin_table.discover(roots).items():
        package, root = declared["package"], os.path.dirname(declared["path"])
        entry = {key: declared[key] for key in plugin_table.RUNTIME_KEYS}
        if declared["kind"] == "plugin":
            plugin = importlib.import_module(declared["module"]).PLUGIN
            entry.update(versions=list(plugin.versions), about=plugin.about)
        elif not os.path.isfile(os.path.join(declared["path"], "__main__.py")):
            raise SystemExit(f"gen: {name}: the CLI package {package} has no __main__.py")
        elif package + ".__main__" not in entries:
            entries.append(package + ".__main__")  # bundled, never imported here: it runs on import
        plugins[name] = entry
        if package not in seen:
            seen.add(package)
            modules += package_modules(package, root)
    return plugins, modules, entries


def main(out: str) -> None:
    os.makedirs(out, exist_ok=True)
    dataclasses.exec = _recording_exec  # dataclasses._create_fn's only exec
    plugins, modules, entries = build_table()
    for required in REQUIRED:
        if required not in plugins:
            raise SystemExit(f"gen: the {required} plugin is missing")
    for module in modules:
        importlib.import_module(module)
    del dataclasses.exec

    with open(os.path.join(out, "cni_multi_table.py"), "w") as f:
        f.write('"""Written by build/gen.py: the plugins in this binary and what VERSION answers."""\n')
        f.write(f"PLUGINS = {plugins!r}\n")
        f.write(f"MODULES = {modules!r}\n")
        f.write(f"ENTRY_MODULES = {entries!r}\n")

    with open(os.path.join(out, "cni_multi_dccache.py"), "w") as f:
        f.write('"""Written by build/gen.py: compiled @dataclass methods, keyed by their source (build/multicall.py)."""\n')
        f.write(f"PYTHON = {tuple(sys.version_info[:3])!r}\n")
        f.write(f"COUNT = {len(SOURCES)}\n")
        f.write(f"BLOB = {marshal.dumps(SOURCES)!r}\n")

    rev = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    marker = os.path.join(out, multicall.MARKER)
    with open(marker, "w") as f:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        f.write(f"cni-multi {rev or 'unknown'} plugins={','.join(sorted(plugins))} built={stamp}\n")
    os.chmod(marker, 0o755)
    print(f"gen: {len(plugins)} plugins ({', '.join(sorted(plugins))}), {len(modules)} modules, {len(SOURCES)} dataclass methods precompiled")


if __name__ == "__main__":
    main(sys.argv[1])
