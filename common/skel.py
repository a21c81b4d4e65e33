"""The CNI protocol: the only place that reads CNI_* and writes stdout.

A plugin hands run() a Plugin of add/delete/check/gc/status callables.  run()
validates the environment and stdin, negotiates the version, calls the
plugin, and prints exactly one JSON document (or nothing for a successful
DEL, CHECK, GC or STATUS).  It never raises: a CNIError becomes the error
structure with its code, anything else becomes 999 with the traceback on
stderr only.
"""

import os
import sys

from common.config import MAX_STDIN, check_name, dumps, is_name, load_json, parse_cni_args
from common.errors import CNIError, Code, from_os_error
from common.values import Value, field
from common.version import COMMAND_MIN_VERSION, LATEST, SUPPORTED_VERSIONS, parse_version

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (type checkers go by the name)
if TYPE_CHECKING:  # for annotations only: skel must not import these at start (docs/performance.md)
    from collections.abc import Callable, Mapping

    from common.netns import NetNS
    from common.types import Result

COMMANDS = ("ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION")
# env vars each command requires, in the order the reference reports them
REQUIRED = {
    "ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "DEL": ("CNI_CONTAINERID", "CNI_IFNAME"),
    "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "GC": ("CNI_PATH",),
    "STATUS": (),
}
IFNAME_MAX = 15  # IFNAMSIZ - 1, in bytes
CONTAINER_ID_MAX = 255


class CmdArgs(Value):
    """One command's environment and stdin, parsed and validated; immutable.

    A Value (common.values), not a dataclass: every plugin start builds one,
    and the dataclasses module (with inspect) is the costliest import on that
    path (docs/performance.md).  Unlike other Values it is unhashable (config
    and args are mutable) and its repr leaves the environment out.
    """

    command: str
    container_id: str
    netns: "NetNS | None"  # opened and validated; None when absent or gone
    netns_path: str
    ifname: str
    args: "Mapping[str, str]"  # CNI_ARGS
    path: tuple[str, ...]
    stdin: bytes
    config: dict  # stdin, decoded once
    cni_version: str
    environ: "Mapping[str, str]" = field(default_factory=dict)

    __hash__ = None  # type: ignore[assignment]  # mutable fields (config, args): unhashable, as the dataclass was

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.FIELDS if name != "environ")
        return f"CmdArgs({shown})"

    @classmethod
    def for_config(cls, config: dict, *, command: str, cni_args: "Mapping[str, str] | None" = None) -> "CmdArgs":
        """The CmdArgs of `command` for a config that did not come through run(): a conf file, a test.

        Every plugin loads its config the same way, `Conf.load(args: CmdArgs)`
        (BridgeConf, IPAMConf, VxlanConf): the loaders need more than the dict
        (CNI_ARGS, the negotiated version, and host-local the command: DEL and
        GC load without ranges), and a plugin holds exactly this object.  A
        caller with only a config builds one here, naming the command whose
        view of the config it wants ("STATUS" for the whole config outside a
        pod).  There is no container, namespace, stdin, CNI_PATH or
        environment; cni_version is the config's cniVersion, or the latest.
        """
        if command not in REQUIRED:
            raise ValueError(f"not a CNI command with a config: {command!r}")
        version = config.get("cniVersion")
        return cls(
            command=command,
            container_id="",
            netns=None,
            netns_path="",
            ifname="",
            args=dict(cni_args or {}),
            path=(),
            stdin=b"",
            config=config,
            cni_version=version if type(version) is str and version else LATEST,
        )


class Plugin:
    """A plugin's name and its command handlers; a command without one is refused (4)."""

    __slots__ = ("name", "add", "delete", "check", "gc", "status", "versions", "about")

    def __init__(
        self,
        *,
        name: str,
        add: "Callable[[CmdArgs], Result]",
        delete: "Callable[[CmdArgs], None]",
        check: "Callable[[CmdArgs], None] | None" = None,
        gc: "Callable[[CmdArgs], None] | None" = None,
        status: "Callable[[CmdArgs], None] | None" = None,
        versions: tuple[str, ...] = SUPPORTED_VERSIONS,
        about: str = "",
    ):
        self.name, self.add, self.delete = name, add, delete
        self.check, self.gc, self.status = check, gc, status
        self.versions, self.about = versions, about

    def handler(self, command: str) -> "Callable[[CmdArgs], Result | None]":
        """The one map from a CNI command to its handler (the protocol layer and delegation use it)."""
        handlers = {"ADD": self.add, "DEL": self.delete, "CHECK": self.check, "GC": self.gc, "STATUS": self.status}
        found = handlers.get(command)
        if found is None:
            raise CNIError(Code.INVALID_ENV, f"{self.name} does not support {command}")
        return found


class Interrupted(BaseException):
    """SIGTERM or SIGINT arrived: unwind (rolling back) and report code 11."""


def ifname_problem(name: str) -> str | None:
    if not name:
        return "empty"
    try:
        encoded = name.encode("utf-8")
    except UnicodeError:
        return "not valid UTF-8"
    if len(encoded) > IFNAME_MAX:
        return f"longer than {IFNAME_MAX} bytes"
    if name in (".", ".."):
        return "may not be '.' or '..'"
    if name in ("all", "default"):
        # the kernel's per-interface sysctl directories already use these names
        return f"{name!r} is reserved by the kernel (/proc/sys/net/*/conf/{name})"
    for ch in name:
        if ch in '/:%"\\' or ch.isspace() or ord(ch) < 32 or ord(ch) == 127:
            # '%' is a kernel name template (eth%d would create eth0, eth1...);
            # quotes and backslashes could escape a firewall rule's quoting
            return f"contains {ch!r}"
        if not ch.isascii() and _invisible(ch):
            # a zero-width space or a right-to-left override makes one name look like another
            return f"contains the invisible character U+{ord(ch):04X}"
    return None


def _invisible(ch: str) -> bool:
    from unicodedata import category

    return category(ch) in ("Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp", "Zs", "Mn", "Me")


def container_id_problem(cid: str) -> str | None:
    if not cid:
        return "empty"
    if len(cid) > CONTAINER_ID_MAX:
        return f"longer than {CONTAINER_ID_MAX} characters"
    if not is_name(cid):
        return "invalid characters (want [a-zA-Z0-9][a-zA-Z0-9_.-]*)"
    return None


class _Invocation:
    def __init__(self, plugin: "Plugin | _Named", environ: "Mapping[str, str]", stdin):
        self.plugin = plugin
        self.environ = environ
        self.stdin = stdin
        self.cni_version = LATEST  # what error output says until the config is read
        self.netns: NetNS | None = None

    def parse(self, command: str) -> CmdArgs:
        env = self.environ
        problems: list[tuple[str, str]] = []
        for var in REQUIRED[command]:
            if not env.get(var):
                problems.append((var, "missing"))
        cid = env.get("CNI_CONTAINERID", "")
        ifname = env.get("CNI_IFNAME", "")
        netns_path = env.get("CNI_NETNS", "")
        if command in ("ADD", "DEL", "CHECK"):
            for var, value, check in (("CNI_CONTAINERID", cid, container_id_problem), ("CNI_IFNAME", ifname, ifname_problem)):
                if value and (why := check(value)):
                    problems.append((var, why))
            if netns_path:
                if why := self._open_netns(command, netns_path):
                    problems.append(("CNI_NETNS", why))
        args = {}
        if command != "STATUS":
            try:
                args = parse_cni_args(env.get("CNI_ARGS", ""))
            except CNIError as err:
                problems.append(("CNI_ARGS", err.details or err.msg))
        if problems:
            raise _env_error(problems)
        data = self._read_stdin()
        config = load_json(data)
        if type(config) is not dict:
            raise CNIError(Code.DECODING_FAILURE, "failed to decode network configuration", "not a JSON object")
        self.cni_version = _negotiate(command, config, self.plugin.versions)
        check_name(config.get("name"))
        path = tuple(p for p in env.get("CNI_PATH", "").split(os.pathsep) if p.startswith("/"))
        return CmdArgs(command, cid, self.netns, netns_path, ifname, args, path, data, config, self.cni_version, env)

    def _open_netns(self, command: str, path: str) -> str | None:
        from common.netns import NetNSGone, open_netns

        override = self.environ.get("CNI_NETNS_OVERRIDE", "").lower() in ("1", "true")
        try:
            self.netns = open_netns(path, allow_own=override)
        except NetNSGone as gone:
            # DEL is best effort: a vanished namespace means only host-side cleanup remains
            return None if command == "DEL" else str(gone)
        except CNIError as err:
            return err.details
        return None

    def _read_stdin(self) -> bytes:
        try:
            data = self.stdin.read(MAX_STDIN + 1)
        except OSError as err:
            raise CNIError(Code.IO_FAILURE, "error reading from stdin", str(err)) from None
        if len(data) > MAX_STDIN:
            raise CNIError(Code.IO_FAILURE, "network configuration too large", f"limit {MAX_STDIN} bytes")
        return data


def _env_error(problems) -> CNIError:
    names = ",".join(var for var, _ in problems)
    if all(why == "missing" for _, why in problems):
        return CNIError(Code.INVALID_ENV, f"required env variables [{names}] missing")
    details = "; ".join(f"{var}: {why}" for var, why in problems)
    return CNIError(Code.INVALID_ENV, f"invalid env variables [{names}]", details)


def _negotiate(command: str, config: dict, supported: tuple[str, ...]) -> str:
    version = config.get("cniVersion", "")
    if type(version) is not str:
        raise CNIError(Code.DECODING_FAILURE, "invalid cniVersion", f"want a string, got {version!r}")
    version = version or "0.1.0"  # the spec's reading of a config without a version
    minimum = COMMAND_MIN_VERSION.get(command)
    if minimum:
        try:
            parsed = parse_version(version)
        except ValueError as err:
            raise CNIError(Code.DECODING_FAILURE, "invalid cniVersion", str(err)) from None
        if parsed < minimum:
            raise CNIError(Code.INCOMPATIBLE_VERSION, f"config version does not allow {command}", f"config is {version!r}")
    if version not in supported:
        raise CNIError(
            Code.INCOMPATIBLE_VERSION,
            "incompatible CNI versions",
            f'config is "{version}", plugin supports {list(supported)}',
        )
    return version


def _version(plugin: Plugin, stdin, stdout) -> int:
    from common.version import respond

    return respond(plugin.versions, stdin, stdout, MAX_STDIN)


def _on_signal(signum, frame):
    raise Interrupted(signum)


def run(plugin: Plugin, environ=None, stdin=None, stdout=None, stderr=None) -> int:
    environ = os.environ if environ is None else environ
    stdin = sys.stdin.buffer if stdin is None else stdin
    stdout = sys.stdout if stdout is None else stdout
    stderr = sys.stderr if stderr is None else stderr
    command = environ.get("CNI_COMMAND", "")
    if not command:
        versions = ", ".join(plugin.versions)
        stderr.write(f"{plugin.about or 'CNI ' + plugin.name + ' plugin'}\nCNI protocol versions supported: {versions}\n")
        return 0
    if command == "VERSION":
        return _version(plugin, stdin, stdout)
    inv = _Invocation(plugin, environ, stdin)
    try:
        if command not in COMMANDS:
            raise CNIError(Code.INVALID_ENV, f"unknown CNI_COMMAND: {command[:40]}")
        return _dispatch(plugin, inv, command, stdout, stderr)
    except CNIError as err:
        return _fail(stdout, err.to_wire(inv.cni_version))
    except Interrupted:
        interrupted = CNIError(Code.TRY_AGAIN_LATER, "interrupted by a signal", "the operation was rolled back")
        return _fail(stdout, interrupted.to_wire(inv.cni_version))
    except OSError as err:  # the kernel or the OS refused something no layer below mapped
        return _fail(stdout, from_os_error(err).to_wire(inv.cni_version))
    except Exception as exc:  # the one boundary where unknown failures become 999
        import traceback

        traceback.print_exc(file=stderr)
        internal = CNIError(Code.INTERNAL, f"internal error: {type(exc).__name__}", str(exc)[:500])
        return _fail(stdout, internal.to_wire(inv.cni_version))
    finally:
        if inv.netns is not None:
            inv.netns.close()


def _dispatch(plugin: Plugin, inv: _Invocation, command: str, stdout, stderr) -> int:
    from common import log
    from common.startup import signal

    args = inv.parse(command)
    log.setup(plugin.name, args.container_id, args.config.get("logLevel"), args.config.get("logFile"), stderr)
    handler = plugin.handler(command)
    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        result = handler(args)
    finally:
        for sig, saved in previous.items():
            signal.signal(sig, saved)
    if command == "ADD" and result is not None:  # the one command that answers with a result
        _write(stdout, dumps(result.to_wire(args.cni_version)) + "\n")
    return 0


def _write(stdout, text: str) -> None:
    try:
        stdout.write(text)
        stdout.flush()
    except BrokenPipeError:
        # the runtime went away; a finished ADD stays done, its DEL will follow
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass


def _fail(stdout, wire: dict) -> int:
    _write(stdout, dumps(wire) + "\n")
    return 1


def quick_delete(name: str, versions: tuple[str, ...], decide: str, environ=None, stdin=None, stderr=None):
    """Answer a DEL without loading the plugin, when `decide` says the plugin's DEL would change nothing.

    containerd sends every pod a second DEL without a namespace, and runtimes
    repeat DELs (the namespace gone by then); each would otherwise pay for
    loading the whole plugin.
    `decide` names a function ("module:function", a plugin's QUICK_DELETE,
    e.g. cni_bridge/idle.py) taking the parsed CmdArgs and answering True
    only when it can tell that nothing is there.  Returns None when the DEL
    is answered (success, no output, as the plugin's own); otherwise the
    stdin the plugin's run() reads instead (this has read the real one).
    Anything unusual (invalid input, a namespace to look into, a doubt) goes
    to the plugin, which reports it.
    """
    import io

    environ = os.environ if environ is None else environ
    stdin = sys.stdin.buffer if stdin is None else stdin
    if environ.get("CNI_COMMAND") != "DEL":
        return stdin
    data = stdin.read(MAX_STDIN + 1)
    inv = _Invocation(_Named(name, versions), environ, io.BytesIO(data))
    try:
        args = inv.parse("DEL")
        module, _, function = decide.partition(":")
        from common.startup import import_module

        nothing = getattr(import_module(module), function)(args) is True
    except Exception:  # noqa: BLE001  the plugin's DEL runs and reports whatever this could not judge
        nothing = False
    finally:
        if inv.netns is not None:
            inv.netns.close()
    if not nothing:
        return io.BytesIO(data)
    from common import log

    log.setup(name, args.container_id, args.config.get("logLevel"), args.config.get("logFile"), stderr or sys.stderr)
    return None


class _Named:
    """What parsing needs of a plugin that is not loaded: its name and versions."""

    def __init__(self, name: str, versions: tuple[str, ...]):
        self.name, self.versions = name, versions


def main(plugin: Plugin) -> None:
    sys.exit(run(plugin))
