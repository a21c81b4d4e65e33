"""What /proc says about the plugin processes we started: descendants, survivors, lock holders.

Every plugin process of a run carries CNI_STRESS_RUN=<run id> in its
environment (children inherit it: the bootloader's Python child, nft,
iptables-restore), so a survivor is found by its environment, never by a
name another agent's processes could share.
"""
import os

MARKER_VAR = "CNI_STRESS_RUN"


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (an orphan may wait unreaped under a lazy init)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != b"Z"


def comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def status(pid: int) -> str:
    """State, parent and kernel wait channel, for reports."""
    try:
        with open(f"/proc/{pid}/status") as f:
            fields = dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)
        with open(f"/proc/{pid}/wchan") as f:
            wchan = f.read().strip()
    except OSError:
        return "gone"
    return f"state {fields.get('State', '?').strip()}, ppid {fields.get('PPid', '?').strip()}, wchan {wchan or '-'}"


def diagnose(pid: int) -> str:
    """Where a process hangs, for an orphan's report: threads, syscall, kernel stack, Python loaded or not, open files."""
    parts = []
    try:
        with open(f"/proc/{pid}/status") as f:
            fields = dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)
        parts.append(f"threads {fields.get('Threads', '?').strip()}, sigblk {fields.get('SigBlk', '?').strip()}, sigcgt {fields.get('SigCgt', '?').strip()}")
    except OSError:
        return "gone"
    for name in ("syscall", "stack"):
        try:
            with open(f"/proc/{pid}/{name}") as f:
                text = " | ".join(line.strip() for line in f.read().splitlines()[:4])
            parts.append(f"{name}: {text}")
        except OSError as err:
            parts.append(f"{name}: {err.strerror}")
    try:
        with open(f"/proc/{pid}/maps") as f:
            libs = {line.split()[-1].rsplit("/", 1)[-1] for line in f if ".so" in line}
        parts.append("python loaded" if any(l.startswith("libpython") for l in libs) else f"no libpython ({len(libs)} libs)")
    except OSError:
        pass
    try:
        fds = sorted(os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd"))
        parts.append(f"fds {fds[:12]}")
    except OSError:
        pass
    return "; ".join(parts)


def stuck_before_python(pid: int) -> bool:
    """A onefile bootloader child that never started Python: blocked on a futex, libpython not mapped.

    PyInstaller's POSIX bootloader forks, and the child waits in sem_wait()
    until the parent has installed its signal handlers and posted the
    semaphore (pyi_utils_posix.c, pyi_utils_create_child).  A SIGKILL to
    the parent inside that window leaves the child waiting forever: it has
    run none of our code (so PR_SET_PDEATHSIG, set from Python, never
    happened), but it holds the runtime's stdout pipe open.
    """
    try:
        with open(f"/proc/{pid}/wchan") as f:
            if "futex" not in f.read():
                return False
        with open(f"/proc/{pid}/maps") as f:
            return not any("libpython" in line for line in f)
    except OSError:
        return False


def children(pid: int) -> list[int]:
    out = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(c) for c in f.read().split()]
        except OSError:
            continue
    return out


def descendants(pid: int) -> list[int]:
    """Every process below pid (breadth first), from /proc/<pid>/task/*/children."""
    found, todo = [], [pid]
    while todo:
        for child in children(todo.pop()):
            if child not in found:
                found.append(child)
                todo.append(child)
    return found


def with_marker(run_id: str) -> list[int]:
    """Live processes whose environment carries this run's marker."""
    needle = f"{MARKER_VAR}={run_id}".encode()
    me = os.getpid()
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                env = f.read()
        except OSError:
            continue
        if needle in env.split(b"\0") and alive(int(name)):
            out.append(int(name))
    return out


def flock_holders(paths: list[str]) -> list[str]:
    """Locks (flock or POSIX) currently held on any of these files, as /proc/locks lines."""
    inodes = {}
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            continue
        inodes[(os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)] = path
    out = []
    try:
        with open("/proc/locks") as f:
            lines = f.read().splitlines()
    except OSError:
        return out
    for line in lines:
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 2157 fe:00:2147490 0 EOF"; a waiter's line has "->" after the number
        if "->" in fields:
            fields.remove("->")
        if len(fields) < 6:
            continue
        try:
            major, minor, ino = fields[5].split(":")
            key = (int(major, 16), int(minor, 16), int(ino))
        except ValueError:
            continue
        if key in inodes:
            out.append(f"{inodes[key]}: {line.strip()} ({comm(int(fields[4])) if fields[4].isdigit() else '?'})")
    return out
