"""Pure allocation logic: round-robin over a range set, as the reference does.

The candidate order is the reference's RangeIter: start after the last
reserved address (or at the first range's rangeStart), walk every range of
the set in order, wrap, skip each range's gateway, and try the last reserved
address itself last.  Candidates are integers checked against the store's
in-memory snapshot, so a nearly full /16 costs one directory listing, not
one open() per taken address.
"""

from collections.abc import Iterator
from ipaddress import ip_address, ip_interface

from cni_hostlocal_ipam.conf import Range, RangeSet
from common.errors import CNIError, Code
from common.types import IPConfig

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (type checkers go by the name)
if TYPE_CHECKING:
    from cni_hostlocal_ipam.backend import Reservations


def candidates(range_set: RangeSet, last) -> Iterator[tuple[int, Range]]:
    ranges = range_set.ranges
    spans = [(int(r.start), int(r.end), int(r.gateway), r) for r in ranges]
    first_idx, first_n = 0, spans[0][0]
    if last is not None:
        for idx, (_start, end, _, r) in enumerate(spans):
            if last in r:
                n = int(last)
                first_idx, first_n = (idx, n + 1) if n < end else ((idx + 1) % len(spans), spans[(idx + 1) % len(spans)][0])
                break
    # one full cycle: the tail of the first range, every other range, then its head
    order = [(first_idx, first_n, spans[first_idx][1])]
    for k in range(1, len(spans)):
        idx = (first_idx + k) % len(spans)
        order.append((idx, spans[idx][0], spans[idx][1]))
    if first_n > spans[first_idx][0]:
        order.append((first_idx, spans[first_idx][0], first_n - 1))
    for idx, lo, hi in order:
        gateway, r = spans[idx][2], spans[idx][3]
        for n in range(lo, hi + 1):
            if n != gateway:
                yield n, r


def allocate(store: "Reservations", range_set: RangeSet, range_id: int, container_id: str, ifname: str, requested=None) -> IPConfig:
    if requested is not None:
        return _allocate_requested(store, range_set, range_id, container_id, ifname, requested)
    for ip in store.owned_by(container_id, ifname):
        if range_set.range_for(ip) is not None:
            raise CNIError(
                Code.DUPLICATE_ALLOCATION,
                f"{ip} has been allocated to {container_id}, duplicate allocation is not allowed",
                f"ifname {ifname} already holds {ip}; DEL it before adding it again",
            )
    last = store.last_reserved(range_id)
    if last is not None and range_set.range_for(last) is None:
        last = None  # the ranges changed since: lose round-robin once, as the reference does
    version = range_set.version
    for n, r in candidates(range_set, last):
        if store.free(version, n):
            ip = ip_address(n) if version == 4 else ip_address(n.to_bytes(16, "big"))
            if store.reserve(ip, container_id, ifname, range_id):
                return IPConfig(ip_interface(f"{ip}/{r.subnet.prefixlen}"), r.gateway)
    raise CNIError(Code.RANGE_EXHAUSTED, f"no IP addresses available in range set: {range_set}")


def _allocate_requested(store: "Reservations", range_set: RangeSet, range_id: int, container_id: str, ifname: str, ip) -> IPConfig:
    r = range_set.range_for(ip)
    if r is None:  # IPAMConf.load refuses this first; never an AttributeError (999) here
        raise CNIError(Code.REQUESTED_IP_UNAVAILABLE, f"requested IP address {ip} is in no range of range set {range_set}")
    if ip == r.gateway:
        raise CNIError(Code.REQUESTED_IP_UNAVAILABLE, f"requested ip {ip} is subnet's gateway")
    if not store.reserve(ip, container_id, ifname, range_id):
        raise CNIError(Code.REQUESTED_IP_UNAVAILABLE, f"requested IP address {ip} is not available in range set {range_set}")
    return IPConfig(ip_interface(f"{ip}/{r.subnet.prefixlen}"), r.gateway)
