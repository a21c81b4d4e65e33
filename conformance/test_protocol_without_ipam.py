"""test_protocol's checks of every plugin, run for the plugins whose sample reserves no address.

conformance/configs.py's PLUGIN_TYPES holds the plugins whose sample reserves
addresses, which the lifecycle, result and GC tests judge by; loopback and
portmap (chained: its sample carries a prevResult) reserve none, so the
protocol checks, the same for every plugin, are collected here again with
their `plugin` fixture naming each of them.
"""

import inspect
import os

import pytest

from conformance import test_protocol

pytestmark = pytest.mark.conformance
GENERIC = sorted(
    name for name, fn in vars(test_protocol).items() if name.startswith("test_") and callable(fn) and "plugin" in inspect.signature(fn).parameters
)
globals().update({name: getattr(test_protocol, name) for name in GENERIC})


# generic checks that go through CHECK, which the reference's portmap fails on its own pods (conformance/test_portmap.py)
REFERENCE_CHECK = {"portmap": ("test_prev_result_without_cni_version",)}


@pytest.fixture(params=["loopback", "portmap"])
def plugin(request, plugins, bin_dir):
    if request.node.originalname in REFERENCE_CHECK.get(request.param, ()) and os.path.realpath(bin_dir) == os.path.realpath(
        request.config.getoption("reference_dir")
    ):
        pytest.skip("deliberate difference from the reference: its portmap's CHECK (1.1.1) fails on pods it set up itself")
    return request.param, plugins.path(request.param)


def test_the_protocol_checks_are_collected_here():
    assert len(GENERIC) >= 15 and "test_unsupported_version_is_code_1" in GENERIC and "test_tolerated_config_keys" in GENERIC
