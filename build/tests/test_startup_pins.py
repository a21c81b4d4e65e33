"""The start-up measures are tied to versions (common/startup.py PINNED): a different one must fail loudly, here.

common/startup.py reaches CPython's private C modules (_json, _sha256, _signal);
build/multicall.py and the bootloader patches rely on PyInstaller 6.22.3's
layout; common/netlink/layouts.json is generated from pyroute2's definitions.
"""

import json
import os
import re
import subprocess
import sys
from importlib import metadata

import pytest

from common import startup

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MULTI = os.path.join(REPO, "dist", "cni-bin", "cni-multi")


def pinned_in_requirements(package: str) -> str:
    with open(os.path.join(REPO, "requirements.txt")) as f:
        for line in f:
            m = re.match(rf"\s*{re.escape(package)}==([^\s;#]+)", line, re.IGNORECASE)
            if m:
                return m.group(1)
    raise AssertionError(f"requirements.txt does not pin {package}")


@pytest.mark.unit
def test_this_interpreter_is_the_pinned_one():
    assert tuple(sys.version_info[:2]) == startup.PINNED["python"], (
        f"Python {sys.version_info[:2]} but common/startup.py is pinned to {startup.PINNED['python']}: "
        "re-check every measure listed there (_sha256, _signal, _json's scanner), then update PINNED"
    )


@pytest.mark.unit
@pytest.mark.parametrize("package", ["pyinstaller", "pyroute2"])
def test_installed_and_required_versions_are_the_pinned_ones(package):
    want = startup.PINNED[package]
    assert pinned_in_requirements(package) == want, f"requirements.txt and common/startup.py PINNED disagree on {package}"
    assert metadata.version(package) == want, f"{package} {metadata.version(package)} is installed; the start-up measures need {want}"


@pytest.mark.unit
def test_the_private_modules_are_the_fast_ones():
    """A fallback import would still work, only slower: fail here rather than find it in a benchmark."""
    code = (
        f"import sys; sys.path.insert(0, {REPO!r}); import common.startup; "
        "print(' '.join(sorted(m for m in ('_sha256', '_signal', '_json', 'hashlib', 'json', 're', 'signal') if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["_json", "_sha256", "_signal"]


@pytest.mark.root
def test_the_binary_carries_the_pinned_interpreter():
    if not os.path.isfile(MULTI):
        pytest.fail("dist/cni-bin/cni-multi is missing: run make build (make test does)")
    report = json.loads(subprocess.run([MULTI, "--self-test"], capture_output=True, timeout=60).stdout)
    assert tuple(int(p) for p in report["python"].split(".")[:2]) == startup.PINNED["python"]
