"""The run-in-place cache of the single-file binary, seen from Python (docs/build.md, "Run in place").

The patched bootloader (build/bootloader-src/pyi_cni_cache.c) extracts the
bundle once per build into ROOT/<id> and runs Python in its own process; it
falls back to a per-start temporary directory where the cache is unsafe or
unusable.  This module owns what Python does with that cache: recognising it,
sweeping what killed first starts leave, pruning other builds' copies, and
telling the operator why a node falls back (cni-suite doctor).

Only os and sys at module level: the entry point imports it on every start.
"""

import os
import sys

ROOT = "/var/lib/cni-multi"  # a build-time option of the binary (build/cni-multi.spec), never an environment variable
LAZY_DIR = "cni-lazy"  # the lazy extensions' directory inside a build's cache (pyi_cni_cache.h)
TMP_PREFIX = ".tmp-"  # .tmp-<id>-<pid>: a first start extracting; never used
STALE_AFTER = 60.0  # seconds: a first population takes well under one


def _is_id(name: str) -> bool:
    return len(name) == 64 and all(c in "0123456789abcdef" for c in name)


def running_in_place(meipass: str | None = None) -> bool:
    """Whether this process runs from the cache (not a per-start directory, not from source)."""
    path: str = getattr(sys, "_MEIPASS", "") if meipass is None else meipass
    return bool(path) and os.path.dirname(path) == ROOT and _is_id(os.path.basename(path))


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_tree(path: str) -> bool:
    import shutil  # only when there is something to remove

    try:
        shutil.rmtree(path)  # fd-based: never follows a symlink planted inside
    except FileNotFoundError:
        pass  # a concurrent start removed it first
    except OSError as err:
        os.write(2, f"cni-multi: cannot remove {path}: {err.strerror}\n".encode())
        return False
    return True


def sweep(root: str = ROOT, now: float | None = None) -> list[str]:
    """Remove the partial copies of first starts that were killed (.tmp-<id>-<pid>, its pid gone or too old)."""
    import time

    now = time.time() if now is None else now
    removed: list[str] = []
    try:
        entries = os.scandir(root)
    except OSError:
        return removed
    with entries:
        stale = []
        for entry in entries:
            if not entry.name.startswith(TMP_PREFIX):
                continue
            pid = entry.name.rsplit("-", 1)[-1]
            try:
                age = now - entry.stat(follow_symlinks=False).st_mtime
            except OSError:
                continue
            if not pid.isdigit() or not pid_alive(int(pid)) or age > STALE_AFTER:
                stale.append(entry.path)
    for path in stale:
        if remove_tree(path):
            removed.append(path)
    return removed


def prune(keep: str = "", root: str = ROOT) -> tuple[list[str], list[str]]:
    """Remove other builds' caches that no running process holds: (removed, busy).

    Every process running from a cache holds a shared flock on its directory
    (the bootloader takes it before Python starts), so an exclusive one that
    succeeds proves nobody runs from it, and keeps new starts out until the
    directory is gone (they wait on the lock, then find it missing and
    populate it again).
    """
    import fcntl

    removed = sweep(root)
    busy: list[str] = []
    try:
        names = sorted(os.listdir(root))
    except OSError:
        return removed, busy
    for name in names:
        if not _is_id(name) or name == keep:
            continue
        path = os.path.join(root, name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            busy.append(path)
            os.close(fd)
            continue
        try:
            if remove_tree(path):
                removed.append(path)
        finally:
            os.close(fd)
    return removed, busy


def why_not(root: str = ROOT) -> tuple[str, str]:
    """(why the bootloader cannot run in place from root, the fix), or ("", "") when it can (pyi_cni_cache.c's rules)."""
    import stat

    if os.geteuid() != 0:
        return "the plugins do not run as root", "run the container runtime as root"
    path = "/"
    for part in [p for p in root.split("/") if p]:
        path = os.path.join(path, part)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            if path == root:
                break  # made by the first start
            return f"{path} is missing", f"create it, owned by root, mode 0755 ({root} is a build option)"
        except OSError as err:
            return f"{path}: {err.strerror}", f"make {path} a directory root can read"
        if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
            return f"{path} is not a directory (a symlink?)", f"make {path} a real directory owned by root"
        if st.st_uid != 0:
            return f"{path} is owned by uid {st.st_uid}", f"chown root {path}"
        private = path == root
        if st.st_mode & (0o077 if private else 0o022):
            return f"{path} is writable by others (mode {st.st_mode & 0o7777:o})", f"chmod {'0700' if private else 'go-w'} {path}"
    existing = root if os.path.isdir(root) else os.path.dirname(root)
    try:
        flags = os.statvfs(existing).f_flag
    except OSError as err:
        return f"{existing}: {err.strerror}", f"make {existing} readable by root"
    if flags & os.ST_NOEXEC:
        return f"{existing} is on a noexec file system", f"mount it exec, or build with another cache root ({root})"
    if flags & os.ST_RDONLY and not os.path.isdir(root):
        return f"{existing} is read-only and holds no cache yet", "run `make install` (it fills the cache) where it is writable"
    return "", ""


# --- a cache deleted under a running process ------------------------------------
# Mapped libraries and modules already imported survive; a module imported later
# would find its file gone.  The bundle is still inside the binary: its CArchive
# (PyInstaller 6.22.3 layout, pinned in requirements.txt and checked by
# build/tests: cookie "!8sIIII64s" at the end of the file, TOC entries "!IIIIBc"
# plus a padded name; members stored uncompressed, build/cni-multi.spec) is read
# through /proc/self/exe, which stays on the inode this process started from.
COOKIE_MAGIC = b"MEI\014\013\012\013\016"


def binary_members(path: str = "/proc/self/exe") -> dict[str, tuple[int, int, int]]:
    """name -> (absolute offset, length, compressed) of every member of the binary's CArchive."""
    import struct

    with open(path, "rb") as f:
        size = f.seek(0, 2)
        tail_at = max(0, size - 8192)
        f.seek(tail_at)
        tail = f.read()
        at = tail.rfind(COOKIE_MAGIC)
        if at < 0:
            raise OSError(f"{path}: no CArchive cookie")
        _, pkg_len, toc_off, toc_len, _, _ = struct.unpack_from("!8sIIII64s", tail, at)
        start = tail_at + at + struct.calcsize("!8sIIII64s") - pkg_len
        f.seek(start + toc_off)
        toc = f.read(toc_len)
    members, pos, head = {}, 0, struct.calcsize("!IIIIBc")
    while pos < len(toc):
        entry_len, offset, length, _, compressed, _ = struct.unpack_from("!IIIIBc", toc, pos)
        name = toc[pos + head : pos + entry_len].rstrip(b"\0").decode()
        members[name] = (start + offset, length, compressed)
        pos += entry_len
    return members


def scratch_dir() -> str:
    """A private directory for this process's files, removed at exit (build/multicall.py)."""
    global _scratch
    if _scratch is None:
        base = os.environ.get("TMPDIR") or "/tmp"
        for _ in range(16):
            path = os.path.join(base, f"cni-multi-{os.getpid()}-{os.urandom(4).hex()}")
            try:
                os.mkdir(path, 0o700)  # never an existing directory: nobody else can put a file in it
            except FileExistsError:
                continue
            _scratch = path
            break
        else:
            raise OSError(f"cannot make a private directory in {base}")
    return _scratch


_scratch: str | None = None


def remove_scratch() -> None:
    if _scratch is not None:
        remove_tree(_scratch)


class CacheGone:
    """The last finder on sys.meta_path when running in place: an extension module whose cached file is gone.

    Nothing else found the module; if the cache directory has vanished, the
    extension is written from the binary into a private directory and loaded
    from there.
    """

    def find_spec(self, name, path=None, target=None):
        meipass = getattr(sys, "_MEIPASS", "")
        if os.path.isdir(meipass) or "." in name:
            return None
        from importlib.machinery import EXTENSION_SUFFIXES, ExtensionFileLoader
        from importlib.util import spec_from_file_location

        members = binary_members()
        version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
        for suffix in EXTENSION_SUFFIXES:
            member = members.get(f"{version}/lib-dynload/{name}{suffix}")
            if member is None:
                continue
            extension = os.path.join(scratch_dir(), name + suffix)
            write_member(member, extension)
            return spec_from_file_location(name, extension, loader=ExtensionFileLoader(name, extension))
        return None


def write_member(member: tuple[int, int, int], target: str) -> None:
    """A member of the binary's archive into a new file (FileExistsError if it is there)."""
    offset, length, compressed = member
    src = os.open("/proc/self/exe", os.O_RDONLY | os.O_CLOEXEC)
    try:
        dst = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o500)
    except OSError:
        os.close(src)
        raise
    try:
        raw = os.pread(src, length, offset)
        if compressed:
            import zlib

            raw = zlib.decompress(raw)
        data = memoryview(raw)
        while data:
            data = data[os.write(dst, data) :]
    finally:
        os.close(src)
        os.close(dst)
