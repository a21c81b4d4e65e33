"""Fixtures of the loopback tests."""

import pytest

from conformance.netenv import Netns


@pytest.fixture
def pods():
    """A factory of pod namespaces whose lo has never been up, as a runtime hands a new pod over; all deleted after the test."""
    created: list[Netns] = []

    def make() -> Netns:
        ns = Netns("c", lo_up=False)
        created.append(ns)
        return ns

    yield make
    for ns in reversed(created):
        ns.close()
