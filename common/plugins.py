"""The plugin table: which packages of this project are CNI plugins (or operator CLIs), and under which names.

Every plugin package declares itself once, in its own `declare.py` (constants
only, no imports: reading a declaration must cost nothing):

    TYPES = ("<type>",)       # the CNI type names it answers to (the binary's links, the wrappers in dist/src-bin)
    KIND = "plugin"           # "plugin": MODULE defines PLUGIN, a common.skel.Plugin;
                              # "cli": an operator command, run as `python -m <package>`
    MODULE = "<package>.plugin"       # optional, this is the default (plugins only)
    MAIN = "<package>.plugin:main"    # optional, this is the default: the console script's entry (setup.py)
    IN_PROCESS = True         # it may run in the caller's process when delegated to (invoke.py) and for
                              # `cni-suite gc`; optional, default False
    QUICK_DELETE = "<package>.<module>:<function>"  # optional: tells from the parsed CmdArgs, without
                              # loading the plugin, that its DEL would change nothing (common/skel.py, quick_delete)
    SAMPLE = {...}            # optional: a minimal network config for the conformance suite, where the
                              # string "$DATA_DIR" stands for the test's data directory (conformance/configs.py)

`discover()` finds the packages: every top-level directory `cni_*` of a root
that holds a `declare.py` (the root must be on sys.path; by default the one
holding `common/`).  Nothing here names a plugin.  The build (build/gen.py)
freezes what the runtime needs of the table into `cni_multi_table.PLUGINS`;
`table()` reads that inside the binary and discovers from source otherwise.
"""

import os

from common.startup import import_module

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (type checkers go by the name)
if TYPE_CHECKING:
    from collections.abc import Iterable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DECLARATION = "declare"  # the module, in each plugin package, that declares it
PREFIX = "cni_"  # plugin packages are top-level packages named cni_<name>
KINDS = ("plugin", "cli")
RUNTIME_KEYS = ("package", "kind", "module", "in_process", "quick_delete")  # what the binary's frozen table keeps of an entry
_table: "dict[str, dict] | None" = None


class DeclarationError(ValueError):
    """A declaration that cannot be read: the build and the tests fail on it, loudly."""


def discover(roots: "Iterable[str] | None" = None) -> dict[str, dict]:
    """CNI type (or CLI) name -> its entry, for every declared package under `roots` (default: ROOT).

    An entry: package, kind, module (plugins; "" for a CLI), main ("module:function"),
    in_process, sample (a config, or None), path (the package's directory).
    """
    found: dict[str, dict] = {}
    for root in (ROOT,) if roots is None else roots:
        try:
            names = sorted(os.listdir(root))
        except OSError as err:
            raise DeclarationError(f"plugin root {root}: {err.strerror}") from None
        for package in names:
            path = os.path.join(root, package)
            if not package.startswith(PREFIX) or not package.isidentifier() or not os.path.isfile(os.path.join(path, DECLARATION + ".py")):
                continue
            entry = _entry(package, path)
            for name in entry.pop("types"):
                if name in found:
                    raise DeclarationError(f"{package}: type {name!r} is already declared by {found[name]['package']}")
                found[name] = entry
    return found


def _entry(package: str, path: str) -> dict:
    module = import_module(f"{package}.{DECLARATION}")
    where = os.path.dirname(os.path.abspath(module.__file__ or ""))
    if not os.path.isdir(where) or not os.path.samefile(where, path):
        raise DeclarationError(f"{package}: imported from {where}, not {path} (is its root on sys.path, before any other?)")
    types = getattr(module, "TYPES", None)
    kind = getattr(module, "KIND", "plugin")
    if type(types) is not tuple or not types or not all(type(t) is str and t and "/" not in t for t in types):
        raise DeclarationError(f"{package}: TYPES must be a non-empty tuple of names")
    if kind not in KINDS:
        raise DeclarationError(f"{package}: KIND must be one of {', '.join(KINDS)}")
    target = getattr(module, "MODULE", f"{package}.plugin") if kind == "plugin" else ""
    main = getattr(module, "MAIN", f"{target}:main" if target else "")
    in_process = getattr(module, "IN_PROCESS", False)
    sample = getattr(module, "SAMPLE", None)
    quick_delete = getattr(module, "QUICK_DELETE", "")
    if type(target) is not str or (kind == "plugin" and not target.startswith(package + ".")):
        raise DeclarationError(f"{package}: MODULE must be a module of {package}")
    if type(main) is not str or main.count(":") != 1:
        raise DeclarationError(f"{package}: MAIN must be 'module:function'")
    if type(in_process) is not bool or (in_process and kind != "plugin"):
        raise DeclarationError(f"{package}: IN_PROCESS must be a bool, and only a plugin runs in-process")
    own_function = quick_delete.count(":") == 1 and quick_delete.startswith(package + ".") if type(quick_delete) is str else False
    if type(quick_delete) is not str or (quick_delete and (kind != "plugin" or not own_function)):
        raise DeclarationError(f"{package}: QUICK_DELETE must be '{package}.<module>:<function>' of a plugin")
    if sample is not None and (type(sample) is not dict or kind != "plugin"):
        raise DeclarationError(f"{package}: SAMPLE must be a network config (a dict) of a plugin")
    return {
        "types": types,
        "package": package,
        "kind": kind,
        "module": target,
        "main": main,
        "in_process": in_process,
        "quick_delete": quick_delete,
        "sample": sample,
        "path": path,
    }


def table() -> dict[str, dict]:
    """The plugins this program holds: the build's frozen table inside the binary, else discovered from source."""
    global _table
    if _table is None:
        try:
            import cni_multi_table  # written by build/gen.py: what this binary holds
        except ImportError:
            _table = discover()
        else:
            _table = cni_multi_table.PLUGINS
    return _table
