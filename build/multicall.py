"""cni-multi: the entry point of the single-file binary (busybox style).

One PyInstaller onefile binary holds every plugin; `bridge`, `host-local`,
`vxlan` (and later the operator CLI `cni-suite`) are links to it, and the
plugin is chosen by basename(argv[0]).  Invoked under its own name the first
argument names the plugin: `cni-multi host-local`.

This is the first code the frozen child runs, so it also does the runtime
hygiene a onefile binary needs (docs/build.md, "Runtime hygiene"):

* The bootloader (our parent) extracted the bundle into `_MEI<pid><rand>` and
  waits for us.  Runtimes kill the *top* process on a timeout (SIGKILL): we
  ask the kernel for SIGKILL when the parent dies (PR_SET_PDEATHSIG), then
  check that the parent is still the bootloader, closing the race where it
  died before the prctl.
* A SIGKILLed bootloader cannot delete its `_MEI*` directory.  At start we
  remove such leftovers from the runtime temporary directory: only ours
  (marker file, or nothing but names of our own extraction tree, as a
  bootloader killed while deleting its directory leaves), owned by our uid,
  older than a minute, whose bootloader pid is gone.

Start-up cost (docs/performance.md, "What the build does"): only os and sys at
module level; VERSION is answered from a table written at build time
(cni_multi_table) by common.version, importing json and nothing of the
plugins or the protocol layer.  Before a plugin runs: the cyclic collector is
off while it imports, @dataclass gets methods compiled at build time, imports
read the archive through one descriptor, rarely used extension modules are
extracted when first imported; at the end the process exits without tearing
the interpreter down.
"""

import os
import sys

from common import bincache

PR_SET_PDEATHSIG = 1
SIGKILL = 9
MULTI_NAMES = ("cni-multi",)
MARKER = ".cni-multi-build"  # extracted first into every _MEI dir of ours (see the spec)
STALE_AFTER = 60.0  # seconds: a bootloader still extracting is never that old
EXIT_ORPHANED = 125


def _mei_owner(name: str) -> int | None:
    """The bootloader pid encoded in a onefile extraction directory name (_MEI%08x + 6 chars)."""
    if len(name) != 18 or not name.startswith("_MEI"):
        return None
    try:
        return int(name[4:12], 16)
    except ValueError:
        return None


def _prctl_pdeathsig() -> bool:
    from common import libc  # _ctypes underneath; the ctypes package is not in the binary

    try:
        libc.call("prctl", PR_SET_PDEATHSIG, SIGKILL)
    except OSError:
        return False
    return True


def bind_to_bootloader(meipass: str) -> None:
    """Die with the bootloader: PDEATHSIG, then make sure it has not died already."""
    bootloader = _mei_owner(os.path.basename(meipass))
    if bootloader is None:
        return  # onedir, or a layout we do not know: one process, nothing to bind
    if not _prctl_pdeathsig():
        return
    if os.getppid() != bootloader:
        # the bootloader died between fork and prctl; nobody waits for our answer
        os.write(2, b"cni-multi: the bootloader process is gone; exiting\n")
        os._exit(EXIT_ORPHANED)


def stale_mei_dirs(tmpdir: str, current: str = "", now: float | None = None, uid: int | None = None) -> list[str]:
    """Extraction directories in tmpdir that a killed bootloader of ours left behind."""
    import stat as st_mod
    import time

    now = time.time() if now is None else now
    uid = os.geteuid() if uid is None else uid
    found = []
    try:
        entries = os.scandir(tmpdir)
    except OSError:
        return found
    with entries:
        for entry in entries:
            name = entry.name
            if not name.startswith("_MEI") or entry.path == current:
                continue
            owner = _mei_owner(name)
            if owner is None:
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if not st_mod.S_ISDIR(st.st_mode) or st.st_uid != uid or now - st.st_mtime < STALE_AFTER:
                continue
            if bincache.pid_alive(owner):
                continue
            try:
                mine = os.lstat(os.path.join(entry.path, MARKER))
                ours = st_mod.S_ISREG(mine.st_mode)
            except FileNotFoundError:
                # killed right after mkdtemp (empty: garbage whoever made it), or while deleting its
                # own directory, the marker already gone: what is left is part of our own tree
                ours = _remains_of(entry.path, current)
            except OSError:
                ours = False
            if ours:
                found.append(entry.path)
    return found


def _remains_of(path: str, tree: str, limit: int = 500) -> bool:
    """Whether every entry under path also exists, as the same type, in our own extraction tree.

    Only then is a markerless directory ours: another onefile application's
    leftovers hold names our binary does not extract.  Bounded, and
    symlinks are compared, never followed.
    """
    import stat as st_mod

    seen = 0
    for top, dirs, files in os.walk(path):
        rel = os.path.relpath(top, path)
        for name in dirs + files:
            seen += 1
            if seen > limit or not tree:
                return False
            try:
                theirs = os.lstat(os.path.join(top, name)).st_mode
                ours = os.lstat(os.path.normpath(os.path.join(tree, rel, name))).st_mode
            except OSError:
                return False
            if st_mod.S_IFMT(theirs) != st_mod.S_IFMT(ours):
                return False
    return True


def sweep(tmpdir: str, current: str = "") -> list[str]:
    return [path for path in stale_mei_dirs(tmpdir, current) if bincache.remove_tree(path)]


def pin_archive() -> None:
    """Read every later import from the binary we started as, through one descriptor.

    PyInstaller's PYZ reader opens the executable *by path* for each module it
    imports.  `make install` replaces binaries by rename; a plugin that is
    running then would read the new file at the old offsets.  /proc/self/exe
    stays on the inode we were started from.  pread on one descriptor is also
    cheaper than an open/seek/read/close per module (90 on a bridge ADD).
    """
    archive = getattr(sys.modules.get("pyimod02_importers"), "pyz_archive", None)
    if archive is None or not hasattr(archive, "_filename") or not hasattr(archive, "_start_offset"):
        return
    try:
        fd = os.open("/proc/self/exe", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        mine, named = os.fstat(fd), os.stat(archive._filename)
    except OSError:
        named = None
    if named is None or (mine.st_dev, mine.st_ino) != (named.st_dev, named.st_ino):
        os.close(fd)  # already replaced, or not our layout: leave the reader as it is
        return
    import marshal
    import zlib

    names = sys.modules["pyimod01_archive"]  # the reader's own constants (PyInstaller 6.22)
    code_kinds, nspkg = (names.PYZ_ITEM_MODULE, names.PYZ_ITEM_PKG), names.PYZ_ITEM_NSPKG
    toc, base, pread = archive.toc, archive._start_offset, os.pread

    def extract(name, raw=False):  # ZlibArchiveReader.extract, reading through fd
        entry = toc.get(name)
        if entry is None:
            raise KeyError(f"No entry named {name!r} found in the archive!")
        typecode, offset, length = entry
        if typecode == nspkg:
            return None
        try:
            data = zlib.decompress(pread(fd, length, base + offset))
            return marshal.loads(data) if typecode in code_kinds and not raw else data
        except EOFError as err:
            raise ImportError(f"Failed to unmarshal PYZ entry {name!r}!") from err

    archive.extract = extract


def pin_base_library(meipass: str) -> None:
    """Read base_library.zip through one descriptor, so that a cache deleted under us breaks no later import.

    Running in place, the stdlib modules PyInstaller keeps in base_library.zip
    are read from the cache, and zipimport opens the archive by path for each
    module (zipimport._get_data, CPython 3.11; pinned by requirements.txt and
    the spec).  /proc/self/fd/<fd> names the inode opened at start, whatever
    happens to the path.
    """
    path = os.path.join(meipass, "base_library.zip")
    importer = sys.path_importer_cache.get(path)
    if importer is None or getattr(importer, "archive", None) != path:
        return
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return
    importer.archive = f"/proc/self/fd/{fd}"


def hygiene() -> None:
    meipass = getattr(sys, "_MEIPASS", None)
    if not getattr(sys, "frozen", False) or not meipass:
        return
    pin_archive()
    if bincache.running_in_place(meipass):
        # one process, no parent to bind to; what killed first starts left behind
        pin_base_library(meipass)
        bincache.sweep()
        sys.meta_path.append(bincache.CacheGone())
        return
    bind_to_bootloader(meipass)
    if _mei_owner(os.path.basename(meipass)) is not None:
        sweep(os.path.dirname(meipass), meipass)


def select(argv: list[str], names=None) -> tuple[str, list[str]]:
    """(plugin name, argv as the plugin sees it): basename(argv[0]), else argv[1] under the multi-call name."""
    names = _table() if names is None else names
    name = os.path.basename(argv[0]) if argv else ""
    if name not in names and len(argv) > 1 and argv[1] in names:
        return argv[1], argv[1:]
    return name, argv


def _table() -> dict:
    """CNI type (argv[0] basename) -> its entry in the plugin table (common/plugins.py)."""
    try:
        from cni_multi_table import PLUGINS  # written by build/gen.py: what this binary holds
    except ImportError:  # running from source: every declared package
        from common.plugins import table

        return table()
    return PLUGINS


def _usage(table: dict) -> int:
    names = ", ".join(sorted(table))
    sys.stderr.write(f"usage: link this binary as one of: {names}; or run cni-multi <name> [args]\n")
    sys.stderr.write("       cni-multi --self-test   import everything this binary holds and report (JSON)\n")
    sys.stderr.write("       cni-multi --prune-cache remove other builds' unused copies from the run-in-place cache\n")
    return 2


def _gc_after_imports() -> None:
    """Collect cycles again, leaving what the imports built out of every collection.

    main() turns the cyclic collector off for start-up: imports allocate tens
    of thousands of objects and none of them is garbage, yet the collector
    would scan them over and over (about 6 ms per ADD, docs/performance.md).
    """
    import gc

    gc.freeze()
    gc.enable()


def _precompile_dataclasses(dataclasses) -> None:
    """Give @dataclass the methods it would compile, compiled at build time.

    dataclasses builds __init__, __repr__, __eq__, ... as source text and
    exec()s it (about 7 ms for the classes an ADD used to define,
    docs/performance.md).  build/gen.py recorded those texts with their code;
    the text stays the key, so a class the build did not see is compiled as
    before.
    """
    try:
        import cni_multi_dccache as cache
    except ImportError:
        return  # running from source
    if tuple(sys.version_info[:3]) != cache.PYTHON:
        return
    import marshal

    codes = marshal.loads(cache.BLOB)
    del sys.modules["cni_multi_dccache"]

    def exec_precompiled(source, globals=None, locals=None):
        return exec(codes.get(source, source) if type(source) is str else source, globals, locals)

    dataclasses.exec = exec_precompiled  # _create_fn's only exec; dataclasses has no other


class _WhenDataclassesLoad:
    """Patch dataclasses (above) when something imports it, not before: the plugins' hot path never does.

    The first finder on sys.meta_path: for "dataclasses" it steps aside,
    imports the real module, patches it, and hands the import system a spec
    whose loader returns that module as it is.
    """

    def find_spec(self, name, path=None, target=None):
        if name != "dataclasses":
            return None
        sys.meta_path.remove(self)
        import dataclasses
        from _frozen_importlib import ModuleSpec

        _precompile_dataclasses(dataclasses)
        return ModuleSpec(name, _Loaded(dataclasses))


class _Loaded:
    def __init__(self, module):
        self.module = module

    def create_module(self, spec):
        return self.module

    def exec_module(self, module) -> None:
        pass


class LazyExtensions:
    """Load an extension module no hot path imports, with the libraries it needs, on its first import.

    The spec keeps these out of the per-start extraction (_ssl with OpenSSL
    alone is 5.6 MB, 4-5 ms per start): they travel in the archive under
    cni-lazy/, which the bootloader extracts only into the run-in-place cache,
    at its first population.  Running in place they are loaded from there;
    otherwise (the per-start fallback, or a cache deleted under us) they are
    written out of the binary (bincache.binary_members) into this run's _MEI
    directory, which the bootloader removes at exit, or into a private
    directory removed at exit.
    """

    def __init__(self, extensions: dict):
        self.extensions = extensions  # name -> [file names in load order, the extension last]

    def find_spec(self, name, path=None, target=None):
        order = self.extensions.pop(name, None)
        if order is None:
            return None
        import _ctypes
        import _frozen_importlib_external as external

        directory = os.path.join(sys._MEIPASS, bincache.LAZY_DIR)
        if not bincache.running_in_place():
            directory = sys._MEIPASS
        elif not os.path.isfile(os.path.join(directory, order[-1])):
            directory = bincache.scratch_dir()  # the cache was deleted under us
        members = None if directory.endswith(bincache.LAZY_DIR) else bincache.binary_members()
        extension = os.path.join(directory, order[-1])  # the libraries it needs come first
        for base in order:
            target_path = os.path.join(directory, base)
            if members is not None:
                try:
                    bincache.write_member(members[f"{bincache.LAZY_DIR}/{base}"], target_path)
                except FileExistsError:
                    continue  # a library another extension brought along, already loaded
            if target_path != extension:
                # loaded by path, so the extension's DT_NEEDED entries find it by soname
                _ctypes.dlopen(target_path, os.RTLD_NOW)
        loader = external.ExtensionFileLoader(name, extension)
        return external.spec_from_file_location(name, extension, loader=loader)


def _frozen_imports() -> None:
    """What every path that runs plugin code needs first (all no-ops from source)."""
    if getattr(sys, "frozen", False) and "dataclasses" not in sys.modules:
        sys.meta_path.insert(0, _WhenDataclassesLoad())
    if getattr(sys, "frozen", False) and not any(isinstance(f, LazyExtensions) for f in sys.meta_path):
        extensions = _lazy_extensions()
        if extensions:
            sys.meta_path.insert(0, LazyExtensions(dict(extensions)))


def _lazy_extensions() -> dict:
    try:
        from cni_multi_lazy import EXTENSIONS
    except ImportError:
        return {}
    return EXTENSIONS


def self_test(table: dict) -> int:
    """cni-multi --self-test: import everything this binary holds, load TLS, report as JSON."""
    import json
    from importlib import import_module

    _frozen_imports()
    failures = []
    try:
        from cni_multi_table import MODULES
    except ImportError:
        MODULES = []
    for module in MODULES:
        try:
            import_module(module)
        except Exception as err:  # every failure is reported, the test goes on
            failures.append(f"{module}: {type(err).__name__}: {err}")
    import importlib.util

    for name, entry in table.items():
        if entry.get("kind") == "cli" and importlib.util.find_spec(entry["package"] + ".__main__") is None:
            failures.append(f"{name}: {entry['package']}.__main__ is not in the binary")
    openssl = ""
    try:
        import ssl

        ssl.create_default_context()
        openssl = ssl.OPENSSL_VERSION
    except Exception as err:
        failures.append(f"ssl: {type(err).__name__}: {err}")
    if "pyroute2" in sys.modules:
        failures.append("pyroute2 was imported (no run-time module may: common/netlink/codec.py encodes and decodes)")
    for heavy in ("asyncio", "ctypes"):
        if heavy in sys.modules:
            failures.append(f"{heavy} was imported")
    build = ""
    meipass = getattr(sys, "_MEIPASS", "")
    if meipass:
        try:
            with open(os.path.join(meipass, MARKER)) as f:
                build = f.read().strip()
        except OSError as err:
            failures.append(f"marker: {err}")
    report = {
        "ok": not failures,
        "build": build,
        "python": ".".join(map(str, sys.version_info[:3])),
        "openssl": openssl,
        "plugins": sorted(table),
        "modules": len(MODULES),
        "lazy_extensions": sorted(_lazy_extensions()),
        "runtime_tmpdir": os.path.dirname(meipass) if meipass else "",
        "in_place": bincache.running_in_place(meipass),
        "failures": failures,
    }
    sys.stdout.write(json.dumps(report, indent=2) + "\n")
    return 0 if not failures else 1


def prune_cache() -> int:
    """cni-multi --prune-cache (make install, cni-suite gc): other builds' caches nobody runs from."""
    meipass = getattr(sys, "_MEIPASS", "")
    keep = os.path.basename(meipass) if bincache.running_in_place(meipass) else ""
    removed, busy = bincache.prune(keep)
    for path in removed:
        sys.stdout.write(f"removed {path}\n")
    for path in busy:
        sys.stdout.write(f"kept {path}: in use\n")
    why, fix = bincache.why_not()
    sys.stdout.write(f"running in place from {meipass}\n" if keep else f"not running in place: {why or 'not the binary'}{fix and ': ' + fix}\n")
    return 0


def run(argv: list[str]) -> int:
    table = _table()
    if argv[1:2] == ["--self-test"] and os.path.basename(argv[0]) in MULTI_NAMES:
        return self_test(table)
    if argv[1:2] == ["--prune-cache"] and os.path.basename(argv[0]) in MULTI_NAMES:
        return prune_cache()
    name, argv = select(argv, table)
    entry = table.get(name)
    if entry is None:
        return _usage(table)
    sys.argv = argv
    package = entry["package"]
    command = os.environ.get("CNI_COMMAND", "")
    if "versions" in entry and command == "VERSION":
        # answered without importing the plugin or the protocol layer: the build
        # recorded what the plugin advertises (checked against it by build/tests)
        from common.version import respond

        return respond(entry["versions"], sys.stdin.buffer, sys.stdout)
    if entry.get("quick_delete") and command == "DEL":
        # containerd's second DEL and repeated DELs: answered without loading the plugin when
        # its declaration can tell there is nothing to do (common/skel.py, quick_delete)
        from common import skel

        stdin = skel.quick_delete(name, tuple(entry.get("versions", ())), entry["quick_delete"])
        if stdin is None:
            return 0
        import io

        sys.stdin = io.TextIOWrapper(stdin)  # what it read, for the plugin
    _frozen_imports()
    from common.startup import import_module

    if entry["kind"] == "plugin":
        try:
            module = import_module(entry["module"])
        except ModuleNotFoundError as err:
            if err.name not in (package, entry["module"]):
                raise
            sys.stderr.write(f"cni-multi: {name} is not part of this binary\n")
            return 2
        _gc_after_imports()
        main = getattr(module, "main", None)
        if main is None:
            from common import skel

            return skel.run(module.PLUGIN)
        main()  # the plugin's own entry (vxlan's takes operator commands as arguments); it exits
        return 0
    import runpy  # an operator CLI: its package's __main__

    _gc_after_imports()
    runpy.run_module(package, run_name="__main__", alter_sys=True)
    return 0


def _debug_modules() -> None:
    """CNI_MULTI_DEBUG_MODULES=<path>: write the imported module names at exit (build tests use it)."""
    path = os.environ.get("CNI_MULTI_DEBUG_MODULES")
    if not path:
        return
    names = sorted(sys.modules)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, ("\n".join(names) + "\n").encode())
    finally:
        os.close(fd)


def _exit_now(rc) -> None:
    """Exit without tearing the interpreter down (a few ms per run).

    What a normal exit would still do for us is done here: atexit handlers
    (logging's flush), then stdout and stderr.  Nothing of ours leaves
    buffered state for the finaliser (state files are written with os.write
    and closed), and plugins run no threads.
    """
    import atexit

    atexit._run_exitfuncs()
    bincache.remove_scratch()
    if rc is None:
        rc = 0
    elif type(rc) is not int:
        sys.stderr.write(f"{rc}\n")
        rc = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            if stream is sys.stdout and rc == 0:
                rc = 120  # as CPython reports an unflushable stdout at exit
    os._exit(rc & 0xFF)


def main() -> None:
    import gc

    gc.disable()  # until the plugin's modules are in: _gc_after_imports()
    hygiene()
    try:
        rc = run(sys.argv)
    except SystemExit as done:
        rc = done.code
    finally:
        _debug_modules()
    _exit_now(rc)


if __name__ == "__main__":
    main()
