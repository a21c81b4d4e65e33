"""What a host-local store backend implements: the allocator's part (Reservations) and the whole (Store).

Protocols for type checkers and tests: the plugins never import this module
at run time (typing alone costs every start a few milliseconds,
docs/performance.md), so store.py, allocator.py and plugin.py name it under
TYPE_CHECKING.  A second backend implements Store and registers in
store.BACKENDS (docs/architecture.md, "A host-local store backend").
"""

from typing import Protocol, runtime_checkable

from cni_hostlocal_ipam.store import Allocation


class Reservations(Protocol):
    """What the allocator (allocator.py) needs: a snapshot of the taken addresses, and claiming one."""

    def free(self, version: int, n: int) -> bool: ...

    def reserve(self, ip, container_id: str, ifname: str, range_id: int) -> bool: ...

    def last_reserved(self, range_id: int): ...

    def owned_by(self, container_id: str, ifname: str) -> list: ...


@runtime_checkable
class Store(Reservations, Protocol):
    """A network's allocations, for one command: built by open_store(), used as a context manager.

    Entering it takes the network's lock for the whole command (and creates the
    network's state when asked to); leaving it releases the lock.  Everything but
    exists() is called inside the `with`.
    """

    boot: str  # this boot as Allocation.boot names it: an allocation of another boot is the boot sweep's

    def exists(self) -> bool:
        """Whether the network has state at all: DEL, CHECK, GC and status skip a network without it."""
        ...

    def __enter__(self) -> "Store": ...

    def __exit__(self, *exc) -> None: ...

    def release(self, container_id: str, ifname: str) -> list:
        """Release the attachment's addresses; returns them."""
        ...

    def drop(self, ip) -> None:
        """Release one address whoever holds it (ADD's rollback, GC)."""
        ...

    def allocations(self) -> list[Allocation]:
        """Every allocation with its owner and boot (GC, status, the boot sweep)."""
        ...
