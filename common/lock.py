"""flock(LOCK_EX) with a bounded wait: a stuck holder gives code 11, never a hang.

flock, not POSIX record locks: the reference plugins lock with flock, and a
record lock would not exclude them.  The wait blocks in the kernel (fair
queueing) under an interval timer; threads other than the main one, where
signals cannot be used, poll instead.
"""

import fcntl
import time

from common.errors import CNIError, Code
from common.startup import signal


class _Timeout(Exception):
    pass


def _raise_timeout(signum, frame):
    raise _Timeout()


def acquire(fd: int, timeout: float, what: str) -> None:
    """Take an exclusive flock on fd within `timeout` seconds, or raise CNIError(11)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        pass
    try:
        previous = signal.signal(signal.SIGALRM, _raise_timeout)
    except ValueError:  # not the main thread
        return _poll(fd, timeout, what)
    try:
        signal.setitimer(signal.ITIMER_REAL, timeout)
        fcntl.flock(fd, fcntl.LOCK_EX)
    except _Timeout:
        raise _error(timeout, what) from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def try_acquire(fd: int) -> bool:
    """Take the flock if nobody holds it; False at once otherwise."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _poll(fd: int, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise _error(timeout, what) from None
            time.sleep(delay)
            delay = min(delay * 2, 0.05)


def _error(timeout: float, what: str) -> CNIError:
    return CNIError(Code.TRY_AGAIN_LATER, f"timed out waiting for the lock of {what}", f"held for over {timeout:g}s by another process")
