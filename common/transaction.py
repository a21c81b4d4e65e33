"""ADD as a transaction: each step registers its undo as soon as it has acted; a failure unwinds them all.

Used by the plugins whose ADD changes the node in several steps (bridge,
portmap).  The rollback itself must not be cut short: a second SIGTERM in the
middle of an undo (an IPAM DEL half done, a rule half removed) would leak what
the first one was meant to clean up.
"""

from contextlib import ExitStack, contextmanager

from common.log import get as get_logger
from common.startup import signal

log = get_logger(__name__)


@contextmanager
def transaction():
    """An ExitStack whose unwinding no signal can cut short.

    The first SIGTERM or SIGINT is the exception that starts the rollback
    (common/skel.py turns them into Interrupted); later ones are noted and
    dropped: the command fails with code 11 all the same.
    """
    with ExitStack() as undo:
        try:
            yield undo
        except BaseException:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, _deferred)
            raise


def quietly(fn, *args) -> None:
    """A rollback step: log a failure and let the remaining steps run."""
    try:
        fn(*args)
    except Exception as err:  # rollback must go on; the ADD's own error is what gets reported
        log.warning("rollback: %s failed: %s", getattr(fn, "__name__", fn), err)


def _deferred(signum, frame) -> None:
    log.warning("signal %d during rollback: finishing the rollback first", signum)
