"""Session guard: the machine's own network namespace must be unchanged by the run."""
import pytest

from conformance import netenv


@pytest.fixture(scope="session", autouse=True)
def root_namespace_untouched():
    if not netenv.is_root():
        yield
        return
    before = netenv.root_snapshot()
    yield
    leftover = netenv.our_namespaces()
    for name in leftover:
        netenv.sh("ip", "netns", "del", name, check=False)
    after = netenv.root_snapshot()
    changed = {key: (before[key], after[key]) for key in before if before[key] != after[key]}
    assert not changed, f"the root network namespace changed during the run: {changed}"
    assert not leftover, f"tests left network namespaces behind: {leftover}"


@pytest.fixture
def netns():
    """A factory of throw-away namespaces, all deleted after the test."""
    created = []

    def make(tag: str = "") -> netenv.Netns:
        ns = netenv.Netns(tag)
        created.append(ns)
        return ns

    yield make
    for ns in reversed(created):
        ns.close()


def pytest_collection_modifyitems(config, items):
    needs_root = [i for i in items if i.get_closest_marker("root") or i.get_closest_marker("conformance")]
    if needs_root and not netenv.is_root():
        skip = pytest.mark.skip(reason="needs root: real namespaces and the kernel")
        for item in needs_root:
            item.add_marker(skip)
