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


def setup(plugin: str, container: str = "", level: str | None = None, path: str | None = None, stream=None) -> None:
    level = os.environ.get("CNI_LOG_LEVEL") or level or "warning"
    path = os.environ.get("CNI_LOG_FILE") or path
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    if path:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        handler: logging.Handler = logging.StreamHandler(os.fdopen(fd, "a", buffering=1))
    else:
        handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(_FORMAT))
    handler.addFilter(_Context(plugin, container[:12]))
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.WARNING))
