"""Logging to stderr, or to a file when configured, at no cost until a record is emitted.

The runtime copies a plugin's stderr into its own logs, so stderr is the
default.  CNI_LOG_LEVEL (debug, info, warning, error) and CNI_LOG_FILE
override the config keys logLevel and logFile.

Plugins log only when something is off, yet importing the logging package
costs every call a few milliseconds (docs/performance.md, "Where the time
goes").  So modules log through get(name): a Logger that drops records below
the configured level itself, and imports logging, applies what setup() asked
for and hands the record over only when one is emitted.  Once logging is
loaded (an operator CLI configured it, or the tests' capture did) every record
goes to it, and its own levels and handlers decide.
"""

import os
import sys

DEBUG, INFO, WARNING, ERROR = 10, 20, 30, 40
LEVELS = {"DEBUG": DEBUG, "INFO": INFO, "WARNING": WARNING, "ERROR": ERROR}
_FORMAT = "%(asctime)s %(plugin)s[%(process)d] %(levelname)s %(container)s %(message)s"

_threshold = WARNING  # logging's own default, until setup() says otherwise
_pending: tuple | None = None  # setup()'s handler, installed with the first record


class Logger:
    """The part of logging.Logger the suite uses."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def log(self, level: int, msg, *args, **kwargs) -> None:
        if level < _threshold and "logging" not in sys.modules:
            return
        _logging().getLogger(self.name).log(level, msg, *args, **kwargs)

    def debug(self, msg, *args, **kwargs) -> None:
        self.log(DEBUG, msg, *args, **kwargs)

    def info(self, msg, *args, **kwargs) -> None:
        self.log(INFO, msg, *args, **kwargs)

    def warning(self, msg, *args, **kwargs) -> None:
        self.log(WARNING, msg, *args, **kwargs)

    def error(self, msg, *args, **kwargs) -> None:
        self.log(ERROR, msg, *args, **kwargs)

    def exception(self, msg, *args, **kwargs) -> None:
        kwargs.setdefault("exc_info", True)
        self.log(ERROR, msg, *args, **kwargs)


def get(name: str) -> Logger:
    return Logger(name)


def setup(plugin: str, container: str = "", level=None, path=None, stream=None) -> None:
    """Log to stderr, or to `path`; settings that cannot be used are reported, never fatal.

    level and path come from the untrusted config: a wrong type or a file
    that cannot be opened must not turn an ADD or a DEL into an internal
    error (a DEL that fails over its log file would leak the pod's address).
    """
    global _threshold, _pending
    problems = []
    level = os.environ.get("CNI_LOG_LEVEL") or level or "warning"
    if type(level) is not str or level.upper() not in LEVELS:
        problems.append(f"logLevel {level!r} is not one of debug, info, warning, error")
        level = "warning"
    path = os.environ.get("CNI_LOG_FILE") or path
    if path is not None and type(path) is not str:
        problems.append(f"logFile {path!r} is not a path")
        path = None
    fd = None
    if path:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK, 0o600)
        except (OSError, ValueError) as err:  # ValueError: an embedded NUL
            problems.append(f"cannot open logFile {path!r} ({getattr(err, 'strerror', None) or err}): logging to stderr")
    _threshold = LEVELS[level.upper()]
    _pending = (plugin, container[:12], fd, stream)
    if "logging" in sys.modules:
        _logging()  # someone loaded it already: records go there from now on, so configure it now
    for problem in problems:
        get(__name__).warning("%s", problem)


def _logging():
    import logging

    global _pending
    if _pending is not None:
        pending, _pending = _pending, None
        _configure(logging, *pending)
    return logging


def _configure(logging, plugin: str, container: str, fd: int | None, stream) -> None:
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    if fd is not None:
        handler = logging.StreamHandler(os.fdopen(fd, "a", buffering=1))
    else:
        handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(_FORMAT))

    def context(record) -> bool:
        record.plugin, record.container = plugin, container
        return True

    handler.addFilter(context)
    root.addHandler(handler)
    root.setLevel(_threshold)
