"""Minimal valid network configurations per plugin type, for protocol-level tests.

Each plugin declares its own (SAMPLE in its declare.py, common/plugins.py);
the string "$DATA_DIR" in it stands for the test's data directory.
"""

import copy

from common.plugins import discover

DATA_DIR = "$DATA_DIR"
_DROP = object()


def by_type(roots=None) -> dict[str, dict]:
    """CNI type -> its sample config, for every declared plugin that has one (under roots, default the repo)."""
    return {name: entry["sample"] for name, entry in discover(roots).items() if entry["sample"] is not None}


BY_TYPE = by_type()
# the plugins whose sample reserves addresses (an ipam section): test_lifecycle, test_results and test_status_gc
# judge a plugin by host-local's files in dataDir.  The others (loopback) have their own conformance tests, which
# also run test_protocol's checks for them (test_loopback*.py).
PLUGIN_TYPES = tuple(name for name, sample in BY_TYPE.items() if "ipam" in sample)


def _fill(value, data_dir: str):
    """value with "$DATA_DIR" replaced by data_dir; without one, what names it is left out (and a dict left empty by that)."""
    if type(value) is str and (value == DATA_DIR or value.startswith(DATA_DIR + "/")):
        return data_dir + value[len(DATA_DIR) :] if data_dir else _DROP
    if type(value) is dict:
        filled = {key: _fill(item, data_dir) for key, item in value.items()}
        kept = {key: item for key, item in filled.items() if item is not _DROP}
        return _DROP if value and not kept else kept
    if type(value) is list:
        return [item for item in (_fill(item, data_dir) for item in value) if item is not _DROP]
    return copy.deepcopy(value)


def from_sample(sample: dict, version: str = "1.0.0", data_dir: str = "", **extra) -> dict:
    conf = _fill(sample, data_dir)
    assert type(conf) is dict, sample
    conf["cniVersion"] = version
    conf.update(extra)
    return conf


def config(plugin: str, version: str = "1.0.0", data_dir: str = "", **extra) -> dict:
    return from_sample(BY_TYPE[plugin], version, data_dir, **extra)
