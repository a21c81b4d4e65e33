"""The networks a node is configured with, as a runtime finds them (NETCONFPATH, default /etc/cni/net.d).

Only networks using our plugins (the plugin table, common/plugins.py) are
described: e.g. a bridge or vxlan network (with its host-local IPAM) or a
plugin list that uses host-local directly; of a plugin list, the first of ours.
"""

import glob
import os
import stat
from dataclasses import dataclass

from common import plugins as plugin_table
from common.config import MAX_STDIN, check_name, load_json
from common.errors import CNIError

DEFAULT_CONF_DIR = "/etc/cni/net.d"


def ours(roots=None) -> frozenset[str]:
    """The CNI types of our plugins: every declared plugin (not the operator CLI), in this program or under roots."""
    table = plugin_table.table() if roots is None else plugin_table.discover(roots)
    return frozenset(name for name, entry in table.items() if entry["kind"] == "plugin")


@dataclass(frozen=True)
class Network:
    name: str
    source: str  # the file it came from
    plugin: str  # its type, one of ours()
    config: dict  # the plugin's request configuration (cniVersion and name filled in)
    problem: str = ""  # why it could not be read, if it could not
    chained: tuple = ()  # the configurations of our plugins after it in the list (portmap after bridge), filled in alike


def conf_dir(option: str | None = None) -> str:
    return option or os.environ.get("NETCONFPATH") or DEFAULT_CONF_DIR


def networks(directory: str, plugin_types: frozenset[str] | None = None) -> list[Network]:
    """The networks of ours in directory (plugin_types: the types that are ours, default ours())."""
    wanted = ours() if plugin_types is None else plugin_types
    out, seen = [], set()
    for path in _conf_files(directory):
        try:
            data = load_json(read_conf(path), path)
        except (OSError, CNIError) as err:
            out.append(Network(os.path.basename(path), path, "", {}, f"unreadable: {err}"))
            continue
        if type(data) is not dict:
            continue
        plugins = data.get("plugins")
        entries = plugins if type(plugins) is list else [data]
        for at, entry in enumerate(entries):
            if type(entry) is not dict or type(entry.get("type")) is not str or entry["type"] not in wanted:
                continue
            name = data.get("name") or entry.get("name")
            try:
                name = check_name(name)  # the plugins refuse it too; and it names state directories, so no "../"
            except CNIError as err:
                out.append(Network(name if type(name) is str and name else os.path.basename(path), path, entry["type"], {}, str(err)))
                break
            if name in seen:
                continue  # as libcni: the first file naming a network wins
            seen.add(name)
            version = data.get("cniVersion") or entry.get("cniVersion") or "1.1.0"
            chained = tuple(
                dict(later, name=name, cniVersion=version)
                for later in entries[at + 1 :]
                if type(later) is dict and type(later.get("type")) is str and later["type"] in wanted
            )
            out.append(Network(name, path, entry["type"], dict(entry, name=name, cniVersion=version), chained=chained))
            break
    return out


def types_named(directory: str) -> list[tuple[str, str, str]]:
    """(conf file, network name, CNI type) for every plugin and IPAM type any conf file in directory names, ours or not.

    A runtime execs each of them from its CNI_PATH; `cni-suite doctor` checks
    where it would find them.  Unreadable files are left to networks().
    """
    out = []
    for path in _conf_files(directory):
        try:
            data = load_json(read_conf(path), path)
        except (OSError, CNIError):
            continue
        if type(data) is not dict:
            continue
        plugins = data.get("plugins")
        for entry in plugins if type(plugins) is list else [data]:
            if type(entry) is not dict:
                continue
            name = data.get("name") or entry.get("name")
            name = name if type(name) is str else os.path.basename(path)
            ipam = entry.get("ipam")
            for kind in (entry.get("type"), ipam.get("type") if type(ipam) is dict else None):
                if type(kind) is str and kind:
                    out.append((path, name, kind))
    return out


def _conf_files(directory: str) -> list[str]:
    """The files a runtime reads, in its order: plugin lists first, then single configs (libcni's extensions)."""
    return sorted(glob.glob(os.path.join(directory, "*.conflist"))) + sorted(
        glob.glob(os.path.join(directory, "*.conf")) + glob.glob(os.path.join(directory, "*.json"))
    )


_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _not_regular(path: str, mode: int) -> OSError:
    kind = next((name for test, name in _KINDS if test(mode)), "a special file")
    return OSError(f"{path} is {kind}, not a regular file")


def read_conf(path: str, limit: int = MAX_STDIN) -> bytes:
    """A conf file's bytes; OSError for anything that is not a regular file of at most `limit` bytes.

    Anyone who can write the conf dir can leave a FIFO there (open() would
    wait for a writer forever), a link to a device (endless or blocking reads,
    side effects of opening it) or a huge file.  Symlinks to regular files are
    followed, as runtimes follow them; a symlink loop is ELOOP.  The type is
    checked before opening, so no device is ever opened, and again on the open
    file, in case the name was swapped in between (O_NONBLOCK keeps a FIFO
    swapped in from blocking the open).  `limit` is what a plugin accepts on
    stdin: a runtime cannot pass a larger config anyway.
    """
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise _not_regular(path, st.st_mode)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _not_regular(path, st.st_mode)
        chunks, size = [], 0
        while size <= limit:  # st_size may change under us: the bound is on what is read
            chunk = os.read(fd, limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    if size > limit:
        raise OSError(f"{path} is larger than {limit} bytes")
    return b"".join(chunks)


def find(directory: str, name: str) -> Network:
    for network in networks(directory):
        if network.name == name:
            return network
    raise CNIError(7, f"no network {name!r} of ours in {directory}")
