"""A plugin's state directory <dataDir>/<network>, opened so that nothing planted there can redirect us.

os.makedirs() and open(path, O_NOFOLLOW) follow symlinks in every component
but the last: a planted <dataDir>/<network> symlink would put our files
wherever it points.  So the network directory is opened with O_NOFOLLOW
relative to an fd of dataDir, checked with fstat, and every later file
operation goes through that fd.
"""
import contextlib
import errno
import os
import stat

from common.errors import CNIError, Code

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
FILE_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC


def io_error(what: str, err: OSError) -> CNIError:
    if err.errno in (errno.ENOTDIR, errno.ELOOP):  # O_NOFOLLOW met a symlink, or a file sits where a directory should
        return CNIError(Code.UNSAFE_STATE_DIR, f"unsafe state directory: {what}", err.strerror)
    return CNIError(Code.IO_FAILURE, f"{what} failed", err.strerror)


def open_dir(data_dir: str, network: str, create: bool, key: str = "dataDir") -> int | None:
    """An fd of <data_dir>/<network> (created 0700 if create), or None when absent and not create.

    Refuses (105) a network directory that is a symlink, not ours, or
    group/world-writable; a data_dir that is not a directory is a config error (7).
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
        if create:
            try:
                os.mkdir(network, 0o700, dir_fd=parent)
            except FileExistsError:
                pass
            except OSError as err:
                raise io_error(f"creating {data_dir}/{network}", err) from None
        try:
            fd = os.open(network, DIR_FLAGS | os.O_NOFOLLOW, dir_fd=parent)
        except FileNotFoundError:
            return None
        except OSError as err:
            raise io_error(f"opening {data_dir}/{network}", err) from None
    finally:
        os.close(parent)
    st = os.fstat(fd)
    if st.st_uid != os.geteuid() or st.st_mode & 0o022:
        os.close(fd)
        raise CNIError(
            Code.UNSAFE_STATE_DIR,
            f"unsafe state directory: {data_dir}/{network}",
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
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=dirfd, dst_dir_fd=dirfd)
    except BaseException:
        # the write's own failure is what gets reported; an unlink that fails too changes nothing about it
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dirfd)
        raise
