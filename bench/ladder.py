"""python -m bench.ladder: what each start-up measure of the build buys (docs/performance.md, "The ladder").

Builds eight variants of the binary, each one measure fewer than the next, and
times them interleaved (wall and CPU):

  A  the packaging study's recipe (strip, excludes, no inspect/multiprocessing hooks,
     uncompressed CArchive) on the code before this work: the plugin is imported
     even for VERSION, pkgutil's runtime hook runs first, netns uses ctypes,
     pyroute2.config loads multiprocessing and platform, firewall imports subprocess
  B  + VERSION answered from the build's table by common.version; pkgutil's hook late
  C0 + no ctypes (common/libc.py), the light pyroute2.config, subprocess on demand
  C  the same measures on the present tree: C0 to C is what the code since THEN
     buys (pyroute2 off the run-time path, JSON without json and re, fewer dataclasses, ...)
  D  + cyclic GC off while importing, exit without interpreter teardown, imports read
     through one pinned descriptor
  E  + @dataclass methods compiled at build time
  F  + 13 extension modules extracted on demand, PYZ stored uncompressed
  G  + run in place: the bundle extracted once per build into the root-only cache
     /var/lib/cni-multi/<id>, Python in the bootloader's own process (= make build)

A, B and C0 are built from the tree and the spec of THEN (a2ae373, that of the
table in docs/performance.md), exported with git archive: A and B restore the common/ of
BEFORE, whose netlink/core.py imports pyroute2's message classes, and only a
spec of that time bundles pyroute2 (today's excludes it: common/netlink/codec.py).
C to G are built from copies of the working tree.

A to F are built without the cache's run-time options, so their bootloader
extracts per start into $TMPDIR, as before run in place (F is make build's
fallback).  Everything runs in a mount namespace of the ladder's own whose
/var/lib is a directory of the run (bench.run.private_varlib): G's cache is
filled there before timing, and the machine's /var/lib/cni-multi is never
touched.

Slow (eight PyInstaller builds); not part of `make bench`.  Needs root.
"""

import argparse
import io
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

from bench.run import Impl, inside, private_varlib, self_test
from conformance.netenv import Netns

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BEFORE = "ab19115"  # the commit before this work: common/ as it was
# the tree of the ladder's published run (docs/performance.md; the ladder, spec and entry point as at 550adf5, where it was
# written): a spec that still bundles pyroute2, which A and B's core.py imports
THEN = "a2ae373"
OLD_COMMON = ["common/skel.py", "common/version.py", "common/netns.py", "common/firewall.py", "common/netlink/core.py"]
STEPS = ("A", "B", "C0", "C", "D", "E", "F", "G")  # in order; a step has the measures of its letter and those before
FROM_THEN = {"A", "B", "C0"}
LAZY_LIST = (
    'LAZY_EXTENSIONS = ["_ssl", "unicodedata", "_datetime", "_pickle", "_heapq", "_multiprocessing", "_posixshmem", "_queue", '
    '"_uuid",\n                   "grp", "mmap", "resource", "termios"]'
)
RTHOOKS = 'DROP_RTHOOKS = {"pyi_rth_inspect", "pyi_rth_multiprocessing", "pyi_rth_pkgutil"}'


def _patch(path: str, old: str, new: str) -> None:
    with open(path) as f:
        text = f.read()
    if old not in text:
        raise SystemExit(f"ladder: {path} no longer contains {old[:60]!r}; update bench/ladder.py")
    with open(path, "w") as f:
        f.write(text.replace(old, new))


def _git_show(commit: str, path: str) -> str:
    return subprocess.run(["git", "-C", REPO, "show", f"{commit}:{path}"], capture_output=True, text=True, check=True).stdout


def make_tree(step: str, root: str) -> str:
    tree, level = os.path.join(root, step), step[0]  # C0: C's measures
    if step in FROM_THEN:  # THEN's tree as committed (its spec, entry point, gen.py and code)
        archive = subprocess.run(["git", "-C", REPO, "archive", "--format=tar", THEN], capture_output=True, check=True).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(tree, filter="data")
    else:
        ignore = shutil.ignore_patterns(".venv", ".git", "dist", "work", "__pycache__", "out", "tests", "stress", "demo")
        shutil.copytree(REPO, tree, ignore=ignore)
    spec, entry = os.path.join(tree, "build", "cni-multi.spec"), os.path.join(tree, "build", "multicall.py")
    if level < "G" and step not in FROM_THEN:  # no cache options in the archive: the bootloader extracts per start (THEN had none)
        _patch(spec, "    CACHE_OPTIONS,\n", "")
    if level < "F":  # extensions extracted at start, PYZ compressed (level 6 in build())
        _patch(spec, LAZY_LIST, "LAZY_EXTENSIONS = []")
    if level < "E":
        _patch(entry, "    try:\n        import cni_multi_dccache as cache", "    return\n    try:\n        import cni_multi_dccache as cache")
    if level < "D":
        _patch(entry, "    gc.disable()  # until", "    pass  # until")
        _patch(entry, "    gc.freeze()\n    gc.enable()", "    pass")
        _patch(entry, "    _exit_now(rc)\n", "    sys.exit(rc)\n")
        _patch(entry, "    pin_archive()\n", "")
    if level < "C":
        for path in OLD_COMMON[2:]:
            with open(os.path.join(tree, path), "w") as f:
                f.write(_git_show(BEFORE, path))
        _patch(spec, '    "_hashlib", "ctypes",', '    "_hashlib",')
    if level < "B":
        for path in OLD_COMMON[:2]:
            with open(os.path.join(tree, path), "w") as f:
                f.write(_git_show(BEFORE, path))
        _patch(entry, '    if "versions" in entry and command == "VERSION":', "    if False:")
        _patch(spec, RTHOOKS, RTHOOKS.replace(', "pyi_rth_pkgutil"', ""))
    return tree


def _run(step: str, what: str, argv: list[str], **kwargs) -> None:
    proc = subprocess.run(argv, capture_output=True, **kwargs)
    if proc.returncode != 0:
        raise SystemExit(f"ladder: building {step}: {what} failed:\n" + proc.stderr.decode(errors="replace")[-2000:])


def build(step: str, tree: str) -> str:
    py = os.path.join(REPO, ".venv", "bin", "python")
    gen = os.path.join(tree, "build", "work", "cni-multi", "gen")
    _run(step, "build/gen.py", [py, os.path.join(tree, "build", "gen.py"), gen], cwd=tree)
    env = dict(os.environ, PYTHONHASHSEED="0", PYINSTALLER_ZLIB_COMPRESSION_LEVEL="0" if step[0] >= "F" else "6")
    _run(
        step,
        "PyInstaller",
        [
            py,
            "-m",
            "PyInstaller",
            "--noconfirm",
            "--log-level",
            "ERROR",
            "--distpath",
            os.path.join(tree, "out"),
            "--workpath",
            os.path.join(tree, "build", "work"),
            os.path.join(tree, "build", "cni-multi.spec"),
        ],
        env=env,
        cwd=tree,
    )
    out = os.path.join(tree, "out")
    for name in ("host-local", "bridge"):
        os.symlink("cni-multi", os.path.join(out, name))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ladder", description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=15)
    parser.add_argument("--out", default=os.path.join(REPO, "bench", "out"))
    parser.add_argument("--steps", default="".join(STEPS), help=f"which of {' '.join(STEPS)} to build and time, e.g. ABC0 (default all)")
    args = parser.parse_args(argv)
    chosen = set(re.findall(r"C0|[^,\s]", args.steps.upper()))
    steps = [s for s in STEPS if s in chosen]
    if not steps or chosen - set(steps):
        parser.error(f"--steps: choose from {' '.join(STEPS)}")
    if os.geteuid() != 0:
        print("ladder: needs root (namespaces)", file=sys.stderr)
        return 2
    args.out = os.path.abspath(args.out)
    root = tempfile.mkdtemp(prefix="cni-ladder-")
    results: dict[str, dict[str, list]] = {}
    sizes = {}
    try:
        impls = []
        for step in steps:
            t = time.monotonic()
            out = build(step, make_tree(step, root))
            sizes[step] = os.path.getsize(os.path.join(out, "cni-multi"))
            rt = os.path.join(root, f"rt-{step}")
            os.mkdir(rt, 0o700)
            impls.append(Impl(step, out, rt))
            print(f"ladder: built {step} in {time.monotonic() - t:.0f} s", file=sys.stderr, flush=True)
        # from here on /var/lib is the ladder's own (no thread has started: unshare moves the calling thread only)
        private_varlib(root)
        for impl in impls:  # untimed: G fills its cache; A to F must extract per start
            report = self_test(impl.bin_dir, tmpdir=impl.tmpdir)
            # A and B ship ctypes by design (netns.py before C), which THEN's self-test reports; anything else fails
            expected = {"ctypes was imported"} if impl.label < "C" else set()
            if set(report.get("failures", ["no report"])) - expected:
                raise SystemExit(f"ladder: {impl.label} fails its self-test: {report}")
            if bool(report.get("in_place")) != (impl.label == "G"):
                raise SystemExit(f"ladder: {impl.label} should {'' if impl.label == 'G' else 'not '}run in place; self-test: {report}")
        with Netns("ln") as node:
            for i in range(args.iterations):
                order = impls if i % 2 == 0 else impls[::-1]
                for impl in order:
                    with Netns("lc") as container:
                        hl = {
                            "cniVersion": "1.0.0",
                            "name": "ladder",
                            "ipam": {"type": "host-local", "subnet": "10.215.0.0/16", "dataDir": os.path.join(root, "data-" + impl.label)},
                        }
                        br = {
                            "cniVersion": "1.0.0",
                            "name": "ladderbr",
                            "type": "bridge",
                            "bridge": "cniladder0",
                            "isGateway": True,
                            "ipam": {"type": "host-local", "subnet": "10.216.0.0/16", "dataDir": os.path.join(root, "data-" + impl.label)},
                        }
                        runs = [("VERSION", impl.run("host-local", "VERSION", b"{}"))]
                        runs += [(f"host-local {c}", impl.run("host-local", c, hl, f"l{i}", container.path)) for c in ("ADD", "DEL")]
                        with inside(node):
                            runs += [(f"bridge {c}", impl.run("bridge", c, br, f"b{i}", container.path)) for c in ("ADD", "DEL")]
                    for name, (wall, cpu, rc, out) in runs:
                        if rc != 0:
                            raise SystemExit(f"ladder: {impl.label} {name} failed: {out[:300]!r}")
                        results.setdefault(impl.label, {}).setdefault(name, []).append((wall, cpu))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    commands = ["VERSION", "host-local ADD", "host-local DEL", "bridge ADD", "bridge DEL"]
    lines = ["| step | size MB | " + " | ".join(f"{c} wall / CPU ms" for c in commands) + " |", "|---|---:|" + "---:|" * len(commands)]
    for step in steps:
        cells = []
        for c in commands:
            samples = results[step][c]
            cells.append(f"{statistics.median(w for w, _ in samples):.1f} / {statistics.median(u for _, u in samples):.1f}")
        lines.append(f"| {step} | {sizes[step] / 1048576:.1f} | " + " | ".join(cells) + " |")
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    text = "\n".join(lines) + f"\n\n{args.iterations} runs each, interleaved; load average at the end {load}.\n"
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "ladder.md"), "w") as f:
        f.write(text)
    with open(os.path.join(args.out, "ladder.json"), "w") as f:
        json.dump({"sizes": sizes, "results": results}, f)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
