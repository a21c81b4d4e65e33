"""test_protocol's checks of every plugin, run for portmap.

conformance/configs.py's PLUGIN_TYPES holds the plugins whose sample reserves
addresses; portmap's reserves none (it is chained: its sample carries a
prevResult), so the protocol checks, the same for every plugin, are collected
here with their `plugin` fixture naming portmap.
"""

import inspect

import pytest

from conformance import test_protocol

pytestmark = pytest.mark.conformance
GENERIC = sorted(
    name for name, fn in vars(test_protocol).items() if name.startswith("test_") and callable(fn) and "plugin" in inspect.signature(fn).parameters
)
globals().update({name: getattr(test_protocol, name) for name in GENERIC})


@pytest.fixture
def plugin(plugins):
    return "portmap", plugins.path("portmap")


def test_the_protocol_checks_are_collected_here():
    assert len(GENERIC) >= 15 and "test_unsupported_version_is_code_1" in GENERIC and "test_tolerated_config_keys" in GENERIC
