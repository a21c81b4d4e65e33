"""Logging to stderr, or to a file when configured.

The runtime copies a plugin's stderr into its own logs, so stderr is the
default.  CNI_LOG_LEVEL (debug, info, warning, error) and CNI_LOG_FILE
override the config keys logLevel and logFile.
"""

import logging
import os

_FORMAT = "%(asctime)s %(plugin)s[%(process)d] %(levelname)s %(container)s %(message)s"


class _Context(logging.Filter):
    def __init__(self, plugin: str, container: str):
        super().__init__()
        self.plugin = plugin
        self.container = container

    def filter(self, record: logging.LogRecord) -> bool:
        record.plugin = self.plugin
        record.container = self.container
        return True


def setup(plugin: str, container: str = "", level=None, path=None, stream=None) -> None:
    """Log to stderr, or to `path`; settings that cannot be used are reported, never fatal.

    level and path come from the untrusted config: a wrong type or a file
    that cannot be opened must not turn an ADD or a DEL into an internal
    error (a DEL that fails over its log file would leak the pod's address).
    """
    problems = []
    level = os.environ.get("CNI_LOG_LEVEL") or level or "warning"
    if type(level) is not str or level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        problems.append(f"logLevel {level!r} is not one of debug, info, warning, error")
        level = "warning"
    path = os.environ.get("CNI_LOG_FILE") or path
    if path is not None and type(path) is not str:
        problems.append(f"logFile {path!r} is not a path")
        path = None
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    handler: logging.Handler | None = None
    if path:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK, 0o600)
        except (OSError, ValueError) as err:  # ValueError: an embedded NUL
            problems.append(f"cannot open logFile {path!r} ({getattr(err, 'strerror', None) or err}): logging to stderr")
        else:
            handler = logging.StreamHandler(os.fdopen(fd, "a", buffering=1))
    if handler is None:
        handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(_FORMAT))
    handler.addFilter(_Context(plugin, container[:12]))
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.WARNING))
    for problem in problems:
        logging.getLogger(__name__).warning("%s", problem)
