"""Running other programs: bounded in time, in their own process group, never via a shell."""

import os
import signal
import subprocess
import sys

from common.errors import CNIError, Code

_PYINSTALLER_VARS = ("_MEIPASS2", "_PYI_APPLICATION_HOME_DIR", "_PYI_ARCHIVE_FILE", "_PYI_PARENT_PROCESS_LEVEL", "_PYI_SPLASH_IPC")


def child_env(environ) -> dict:
    """Our environment minus what a frozen onefile binary injected.

    The bootloader puts its extraction directory first in LD_LIBRARY_PATH; a
    system nft or iptables would otherwise load our bundled libraries.
    """
    env = dict(environ)
    if getattr(sys, "frozen", False):
        original = env.pop("LD_LIBRARY_PATH_ORIG", None)
        if original is not None:
            env["LD_LIBRARY_PATH"] = original
        else:
            env.pop("LD_LIBRARY_PATH", None)
    for name in _PYINSTALLER_VARS:
        env.pop(name, None)
    return env


def run(
    argv: list[str], input: bytes = b"", timeout: float = 10.0, environ=None, what: str = "", pass_stderr: bool = False
) -> tuple[int, bytes, bytes]:
    """Run argv to completion; kill its whole process group on timeout or interruption.

    pass_stderr: the child writes to our stderr (the spec's rule for delegated plugins).
    """
    env = child_env(os.environ if environ is None else environ)
    try:
        proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None if pass_stderr else subprocess.PIPE, env=env, start_new_session=True
        )
    except OSError as err:
        raise CNIError(Code.INVALID_CONFIG, f"cannot run {what or argv[0]}", err.strerror or "") from None
    try:
        out, errout = proc.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        raise CNIError(Code.TRY_AGAIN_LATER, f"{what or argv[0]} timed out", f"killed after {timeout:g}s") from None
    except BaseException:
        _kill_group(proc)
        raise
    return proc.returncode, out, errout or b""


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
