"""The one owner of plugin state: <dataDir>/<network>, its files, its locks, the boot id.

os.makedirs() and open(path, O_NOFOLLOW) follow symlinks in every component
but the last: a planted <dataDir>/<network> symlink would put our files
wherever it points.  So the network directory is opened with O_NOFOLLOW
relative to an fd of dataDir, checked with fstat (ours, not group- or
world-writable), and every later file operation goes through that fd.
Directories we create are 0700, files 0600, and a file is published
complete (write, then rename) or not at all.
"""

import contextlib
import errno
import os
import stat
import time

from common import lock
from common.errors import CNIError, Code

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
FILE_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC


def io_error(what: str, err: OSError) -> CNIError:
    if err.errno in (errno.ENOTDIR, errno.ELOOP):  # O_NOFOLLOW met a symlink, or a file sits where a directory should
        return CNIError(Code.UNSAFE_STATE_DIR, f"unsafe state directory: {what}", err.strerror or "")
    return CNIError(Code.IO_FAILURE, f"{what} failed", err.strerror or "")


def boot_id() -> str:
    """This boot's id (16 hex digits), or "" when the kernel does not say."""
    try:
        with open("/proc/sys/kernel/random/boot_id", "rb") as f:
            return f.read().decode().strip().replace("-", "")[:16]
    except (OSError, UnicodeError):
        return ""


def missing_dirs(path: str) -> list[str]:
    """The components of `path` that do not exist yet, deepest last: what creating it would add."""
    out = []
    while path and path != "/" and not os.path.lexists(path):
        out.append(path)
        path = os.path.dirname(path)
    return out[::-1]


def remove_empty(paths: list[str]) -> None:
    """Undo of directory creation: remove those still empty, deepest first (someone else's files keep theirs)."""
    for path in reversed(paths):
        try:
            os.rmdir(path)
        except OSError:
            return


def open_dir(data_dir: str, network: str, create: bool, key: str = "dataDir") -> int | None:
    """An fd of <data_dir>/<network> (created 0700 if create), or None when absent and not create.

    Refuses (105) a network directory that is a symlink, not ours, or
    group/world-writable; a data_dir that is not a directory is a config error (7).
    Directories it creates are 0700, dataDir's own missing parents included.
    """
    if create:
        try:
            os.makedirs(data_dir, mode=0o700, exist_ok=True)
        except FileExistsError:
            raise CNIError(Code.INVALID_CONFIG, f"invalid {key}", f"{data_dir} is not a directory") from None
        except OSError as err:
            raise io_error(f"creating {data_dir}", err) from None
    try:
        parent = os.open(data_dir, DIR_FLAGS)
    except FileNotFoundError:
        return None
    except OSError as err:
        if err.errno == errno.ENOTDIR:
            raise CNIError(Code.INVALID_CONFIG, f"invalid {key}", f"{data_dir} is not a directory") from None
        raise io_error(f"opening {data_dir}", err) from None
    try:
        return open_subdir(parent, network, create, f"{data_dir}/{network}")
    finally:
        os.close(parent)


def open_subdir(dirfd: int, name: str, create: bool, what: str) -> int | None:
    """An fd of the directory `name` inside dirfd (created 0700 if create), under open_dir's rules."""
    if create:
        try:
            os.mkdir(name, 0o700, dir_fd=dirfd)
        except FileExistsError:
            pass
        except OSError as err:
            raise io_error(f"creating {what}", err) from None
    try:
        fd = os.open(name, DIR_FLAGS | os.O_NOFOLLOW, dir_fd=dirfd)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise io_error(f"opening {what}", err) from None
    return _checked(fd, what)


def _checked(fd: int, what: str) -> int:
    st = os.fstat(fd)
    if st.st_uid != os.geteuid() or st.st_mode & 0o022:
        os.close(fd)
        raise CNIError(
            Code.UNSAFE_STATE_DIR,
            f"unsafe state directory: {what}",
            f"owned by uid {st.st_uid} with mode {stat.filemode(st.st_mode)}; want ours and not group/world-writable",
        )
    return fd


def read_file(dirfd: int, name: str, limit: int = 65536) -> bytes | None:
    """A regular file's contents, or None when absent or not a regular file (a FIFO must not block us)."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | FILE_FLAGS, dir_fd=dirfd)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return os.read(fd, limit)
    finally:
        os.close(fd)


def write_file(dirfd: int, name: str, data: bytes) -> None:
    """Write then rename, so a reader sees the old contents or the new; no temp file survives a failure."""
    tmp = f"{name}.tmp-{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | FILE_FLAGS, 0o600, dir_fd=dirfd)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=dirfd, dst_dir_fd=dirfd)
    except BaseException:
        # the write's own failure is what gets reported; an unlink that fails too changes nothing about it
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dirfd)
        raise


def remove_file(dirfd: int, name: str) -> None:
    """Unlink `name`; one already gone counts as removed."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name, dir_fd=dirfd)


def drop_stale_temp(dirfd: int, name: str, age: float = 60) -> None:
    """A killed writer's temp file; young ones may belong to a writer still running."""
    with contextlib.suppress(FileNotFoundError):
        if time.time() - os.stat(name, dir_fd=dirfd, follow_symlinks=False).st_mtime > age:
            os.unlink(name, dir_fd=dirfd)


class DirectoryGone(CNIError):
    """The directory was removed under us (its last user cleaned up): open it anew and try again."""

    def __init__(self, what: str):
        super().__init__(Code.TRY_AGAIN_LATER, f"{what}: the state directory was removed meanwhile")


class HeldLock:
    """An flock on a lock file in a state directory, held until release()."""

    def __init__(self, dirfd: int, name: str, fd: int):
        self.dirfd, self.name, self.fd = dirfd, name, fd

    def remove(self) -> None:
        """Delete the lock file while still holding it: waiters find its inode unlinked and open the name anew."""
        remove_file(self.dirfd, self.name)

    def release(self) -> None:
        os.close(self.fd)


def lock_file(dirfd: int, name: str, timeout: float, what: str, wait: bool = True) -> HeldLock | None:
    """An exclusive flock on the file `name` in dirfd (code 11 after `timeout` seconds).

    The file may be unlinked by a holder (remove()), so after each acquisition
    the name must still refer to the locked inode; otherwise try again.  With
    wait=False, None at once when another process holds it.  DirectoryGone
    when the directory itself was removed meanwhile.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            # O_NONBLOCK: a FIFO planted as the lock must not hang us before the regular-file check
            fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_CREAT | FILE_FLAGS, 0o600, dir_fd=dirfd)
        except FileNotFoundError:
            raise DirectoryGone(what) from None
        except OSError as err:
            raise io_error(f"opening the lock {name}", err) from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise CNIError(Code.UNSAFE_STATE_DIR, "unsafe state directory", f"{name} is not a regular file")
            if wait:
                lock.acquire(fd, max(deadline - time.monotonic(), 0.001), what)
            elif not lock.try_acquire(fd):
                os.close(fd)
                return None
            st = os.fstat(fd)
            try:
                now = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
            except FileNotFoundError:
                now = None
        except BaseException:
            os.close(fd)
            raise
        if now is not None and (now.st_ino, now.st_dev) == (st.st_ino, st.st_dev):
            return HeldLock(dirfd, name, fd)
        os.close(fd)  # the holder we waited for removed it


@contextlib.contextmanager
def locked(dirfd: int, name: str, timeout: float, what: str, wait: bool = True):
    """lock_file() for the block; yields None (with wait=False) when another process holds it."""
    held = lock_file(dirfd, name, timeout, what, wait)
    try:
        yield held
    finally:
        if held is not None:
            held.release()
