"""libc calls with integer arguments, without the ctypes package.

`import ctypes` costs about 2 ms per process start, and a PyInstaller binary
that bundles ctypes imports it at bootstrap on every run, VERSION included
(docs/performance.md).  The suite needs two libc calls, setns(2) and
prctl(2); this uses the C extension underneath ctypes (_ctypes) directly,
with the same errno capture as CDLL(None, use_errno=True).
"""

import _ctypes
import os


class _Int(_ctypes._SimpleCData):  # ctypes.c_int, as ctypes defines it
    _type_ = "i"


class _Func(_ctypes.CFuncPtr):  # a CDLL function with use_errno=True
    _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
    _restype_ = _Int


_handle = None
_funcs: dict = {}


def call(name: str, *args: int) -> int:
    """Call libc's `name`; a return of -1 raises OSError with the call's errno."""
    global _handle
    func = _funcs.get((name, len(args)))
    if func is None:
        if _handle is None:
            _handle = _ctypes.dlopen(None, os.RTLD_NOW)  # type: ignore[arg-type]  # None is the main program, as CDLL(None); typeshed wants a path
        func = _Func(_ctypes.dlsym(_handle, name))
        func.argtypes = (_Int,) * len(args)
        _funcs[(name, len(args))] = func
    result = func(*args)
    if result == -1:
        err = _ctypes.get_errno()
        raise OSError(err, f"{name}: {os.strerror(err)}")
    return result
