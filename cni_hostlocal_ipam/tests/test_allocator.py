"""The allocator over an in-memory store: the reference's iterator and round-robin cases."""

from ipaddress import ip_address

import pytest

from cni_hostlocal_ipam.allocator import allocate, candidates
from cni_hostlocal_ipam.conf import _range_set
from common.errors import CNIError

pytestmark = pytest.mark.unit


class MemoryStore:
    def __init__(self, taken=(), last=None):
        self.owner = {ip_address(t): ("other", "eth0") for t in taken}
        self.last = {0: ip_address(last)} if last else {}

    def free(self, version, n):
        return ip_address(n if version == 4 else n.to_bytes(16, "big")) not in self.owner

    def reserve(self, ip, cid, ifname, range_id):
        if ip in self.owner:
            return False
        self.owner[ip] = (cid, ifname)
        self.last[range_id] = ip
        return True

    def last_reserved(self, range_id):
        return self.last.get(range_id)

    def owned_by(self, cid, ifname):
        return [ip for ip, o in self.owner.items() if o == (cid, ifname)]

    def release(self, cid, ifname):
        for ip in self.owned_by(cid, ifname):
            del self.owner[ip]


def rs(*ranges):
    return _range_set([dict(r) if isinstance(r, dict) else {"subnet": r} for r in ranges], 0)


def order(range_set, last=None, n=None):
    found = candidates(range_set, ip_address(last) if last else None)
    out = [str(ip_address(x if range_set.version == 4 else x.to_bytes(16, "big"))) for x, _ in found]
    return out[:n] if n else out


def test_iterates_from_the_start_skipping_the_gateway():
    assert order(rs("192.168.1.0/29")) == [f"192.168.1.{i}" for i in (2, 3, 4, 5, 6)]


def test_starts_after_the_last_reserved_and_tries_it_last():
    assert order(rs("192.168.1.0/29"), "192.168.1.4") == [f"192.168.1.{i}" for i in (5, 6, 2, 3, 4)]


def test_last_at_the_end_wraps_to_the_start():
    assert order(rs("192.168.1.0/29"), "192.168.1.6") == [f"192.168.1.{i}" for i in (2, 3, 4, 5, 6)]


def test_advances_to_the_next_range_and_rolls_over():
    two = rs("192.168.1.0/30", "192.168.2.0/30")
    assert order(two) == ["192.168.1.2", "192.168.2.2"]
    assert order(two, "192.168.1.2") == ["192.168.2.2", "192.168.1.2"]
    three = rs("10.0.0.0/30", "10.0.1.0/30", "10.0.2.0/30")
    assert order(three, "10.0.1.2") == ["10.0.2.2", "10.0.0.2", "10.0.1.2"]


def test_ipv6_all_ones_is_allocatable():
    assert order(rs("2001:db8::/126")) == ["2001:db8::2", "2001:db8::3"]


def test_range_start_and_end_bound_the_walk():
    r = rs({"subnet": "10.0.0.0/24", "rangeStart": "10.0.0.100", "rangeEnd": "10.0.0.102"})
    assert order(r) == ["10.0.0.100", "10.0.0.101", "10.0.0.102"]


def test_allocate_round_robin_and_skip_taken():
    store = MemoryStore(taken=["192.168.1.2"])
    r = rs("192.168.1.0/29")
    a = allocate(store, r, 0, "c1", "eth0")
    assert str(a.address) == "192.168.1.3/29" and str(a.gateway) == "192.168.1.1"
    store.release("c1", "eth0")
    # released .3 is not handed out again until the range is cycled
    assert str(allocate(store, r, 0, "c2", "eth0").address) == "192.168.1.4/29"


def test_never_allocates_the_broadcast():
    store = MemoryStore()
    r = rs("192.168.1.0/30")
    assert str(allocate(store, r, 0, "c1", "eth0").address) == "192.168.1.2/30"
    with pytest.raises(CNIError) as err:
        allocate(store, r, 0, "c2", "eth0")
    assert err.value.code == 100 and err.value.msg.startswith("no IP addresses available in range set: 192.168.1.1-192.168.1.2")


def test_duplicate_allocation_is_refused():
    store = MemoryStore()
    r = rs("10.1.2.0/24")
    allocate(store, r, 0, "c1", "eth0")
    with pytest.raises(CNIError) as err:
        allocate(store, r, 0, "c1", "eth0")
    assert err.value.code == 102 and "duplicate allocation is not allowed" in err.value.msg
    assert str(allocate(store, r, 0, "c1", "eth1").address) == "10.1.2.3/24"


@pytest.mark.parametrize(
    "requested,code,fragment",
    [
        ("192.168.1.5", None, None),
        ("192.168.1.1", 101, "subnet's gateway"),
        ("192.168.1.3", 101, "is not available in range set 192.168.1.1-192.168.1.6"),
    ],
)
def test_requested_ip(requested, code, fragment):
    store = MemoryStore(taken=["192.168.1.3"])
    r = rs("192.168.1.0/29")
    if code is None:
        assert str(allocate(store, r, 0, "c1", "eth0", ip_address(requested)).address) == "192.168.1.5/29"
    else:
        with pytest.raises(CNIError) as err:
            allocate(store, r, 0, "c1", "eth0", ip_address(requested))
        assert err.value.code == code and fragment in err.value.msg


def test_last_reserved_outside_the_set_restarts_at_range_start():
    store = MemoryStore(last="10.99.0.5")
    assert str(allocate(store, rs("192.168.1.0/29"), 0, "c", "eth0").address) == "192.168.1.2/29"


def test_nearly_full_slash_16_finds_the_free_addresses():
    r = rs("10.128.0.0/16")
    free = {"10.128.3.7", "10.128.250.1"}
    taken = [str(ip_address(n)) for n, _ in candidates(r, None) if str(ip_address(n)) not in free]
    store = MemoryStore(taken=taken, last="10.128.200.0")
    assert str(allocate(store, r, 0, "a", "eth0").address) == "10.128.250.1/16"
    assert str(allocate(store, r, 0, "b", "eth0").address) == "10.128.3.7/16"
    with pytest.raises(CNIError) as err:
        allocate(store, r, 0, "c", "eth0")
    assert err.value.code == 100
