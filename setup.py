"""Console scripts from the plugin table (common/plugins.py); everything else is in setup.cfg.

A plugin is installed as cni-<type> (its MAIN), an operator CLI under its own name.
"""

import os
import sys

from setuptools import setup

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common.plugins import discover  # noqa: E402  the project's own, from this source tree


def console_scripts() -> list[str]:
    scripts = []
    for name, entry in sorted(discover().items()):
        script = name if entry["kind"] == "cli" else f"cni-{name}"
        scripts.append(f"{script} = {entry['main']}")
    return scripts


setup(entry_points={"console_scripts": console_scripts()})
