"""Fixtures of the bridge's namespace tests."""

import pytest

from cni_bridge.tests.bridgeenv import Bench


@pytest.fixture
def bench(bin_dir, netns, tmp_path) -> Bench:
    """A node namespace for the plugin under test (bin_dir), deleted with the test's namespaces."""
    return Bench(bin_dir, netns, tmp_path)
