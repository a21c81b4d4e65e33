"""Delegation as the spec defines it: find the plugin in CNI_PATH, run it with
our environment (only CNI_COMMAND replaced) and our exact stdin, parse its output.

Our own plugin types that declare IN_PROCESS (common/plugins.py) run
in-process instead (the same code, the same stdin and environment), saving
one process start per ADD and DEL.  Set
CNI_DELEGATE_EXEC=1 to exec them like any other plugin.  An exec'd delegate
is killed (with its process group) after CNI_DELEGATE_TIMEOUT seconds
(default 20), and the command fails with code 11.
"""

import os
import stat

from common import startup
from common.config import load_json
from common.errors import CNIError, Code
from common.types import Result

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (type checkers go by the name)
if TYPE_CHECKING:
    from common.skel import Plugin

DEFAULT_TIMEOUT = 20.0


def find_in_path(name: str, path: tuple[str, ...]) -> str:
    """The first regular, executable file `name` in CNI_PATH (CVE-2021-20206: bare names only)."""
    if type(name) is not str or not name or "/" in name or "\0" in name or name in (".", ".."):
        raise CNIError(Code.INVALID_CONFIG, "invalid plugin name", f"{name!r} must be a bare file name")
    for directory in path:
        candidate = os.path.join(directory, name)
        try:
            st = os.stat(candidate)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and os.access(candidate, os.X_OK):
            return candidate
    raise CNIError(
        Code.INVALID_CONFIG,
        f"plugin {name!r} is missing from CNI_PATH",
        f"searched: {':'.join(path) or '(CNI_PATH is empty)'}",
    )


def in_process(plugin_type: str, environ) -> "Plugin | None":
    """The PLUGIN of one of our types that may run in this process (the plugin table says which), else None."""
    if environ.get("CNI_DELEGATE_EXEC") == "1":
        return None
    from common.plugins import table

    entry = table().get(plugin_type)
    if entry is None or not entry.get("in_process"):
        return None
    return startup.import_module(entry["module"]).PLUGIN


def check_available(plugin_type: str, args) -> None:
    """Fail before touching anything when the delegate cannot be run."""
    if in_process(plugin_type, args.environ) is None:
        find_in_path(plugin_type, args.path)


def _timeout(environ) -> float:
    try:
        value = float(environ.get("CNI_DELEGATE_TIMEOUT", DEFAULT_TIMEOUT))
    except ValueError:
        return DEFAULT_TIMEOUT
    return value if 0 < value <= 300 else DEFAULT_TIMEOUT


def delegate(command: str, plugin_type: str, args, config: dict | None = None):
    """Run `command` on a delegated plugin; a Result for ADD, None otherwise."""
    sub = args.replace(command=command)
    if config is not None:
        sub = sub.replace(config=config, stdin=startup.dumps(config).encode())
    plugin = in_process(plugin_type, args.environ)
    if plugin is not None:
        return plugin.handler(command)(sub)
    return _exec(command, plugin_type, sub, _timeout(args.environ))


def _exec(command: str, plugin_type: str, args, timeout: float):
    from common import proc

    path = find_in_path(plugin_type, args.path)
    env = dict(args.environ)
    env["CNI_COMMAND"] = command
    rc, out, _ = proc.run([path], args.stdin, timeout, env, f"delegated plugin {plugin_type}", pass_stderr=True)
    if rc != 0:
        raise _delegate_error(plugin_type, rc, out)
    if command != "ADD":
        return None
    try:
        data = load_json(out, f"the result of {plugin_type}")
    except CNIError as err:
        # 6 would blame the runtime's config; the delegate's output is what is broken
        raise CNIError(Code.DELEGATE_FAILED, err.msg, err.details) from None
    return Result.from_wire(data, args.cni_version, code=Code.DELEGATE_FAILED)


def _delegate_error(plugin_type: str, rc: int, out: bytes) -> CNIError:
    try:
        data = startup.loads(out.decode())
        code, msg = data["code"], data["msg"]
        if type(code) is int and type(msg) is str:
            details = data.get("details")
            return CNIError(code, msg, details if type(details) is str else "")
    except (ValueError, TypeError, KeyError):
        pass  # not the error structure: report the raw output below
    text = out.decode("utf-8", "replace").strip()[:300]
    return CNIError(Code.DELEGATE_FAILED, f"delegated plugin {plugin_type} failed", f"exit status {rc}: {text or 'no output'}")
