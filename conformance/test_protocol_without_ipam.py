"""test_protocol's checks of every plugin, run for the plugins whose sample reserves no address.

conformance/configs.py's PLUGIN_TYPES holds the plugins whose sample reserves
addresses, which the lifecycle, result and GC tests judge by; loopback and
portmap (chained: its sample carries a prevResult) reserve none, so the
protocol checks, the same for every plugin, are collected here again with
their `plugin` fixture naming each of them.
"""

import inspect

import pytest

from conformance import test_protocol

pytestmark = pytest.mark.conformance
GENERIC = sorted(
    name for name, fn in vars(test_protocol).items() if name.startswith("test_") and callable(fn) and "plugin" in inspect.signature(fn).parameters
)
globals().update({name: getattr(test_protocol, name) for name in GENERIC})


@pytest.fixture(params=["loopback", "portmap"])
def plugin(request, plugins):
    return request.param, plugins.path(request.param)


def test_the_protocol_checks_are_collected_here():
    assert len(GENERIC) >= 15 and "test_unsupported_version_is_code_1" in GENERIC and "test_tolerated_config_keys" in GENERIC
