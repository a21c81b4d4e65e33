"""Start-up measures: cheaper ways in to what the standard library offers, in one place.

Every plugin call is a process start, and imports are most of what it costs
(docs/performance.md, "Where the time goes").  The usual modules bring more
than the suite uses; these reach the same C code directly.  Each depends on
the interpreter the binary carries: PINNED names it, and
build/tests/test_startup_pins.py fails when the interpreter, PyInstaller or
pyroute2 in use differ from it, so an upgrade is a decision, not an accident.
The other start-up measures are the frozen binary's own, in build/multicall.py
(and the bootloader's, build/bootloader-src/).

- sha256: the builtin _sha256 (hashlib would load OpenSSL's _hashlib, about
  5 ms); CPython 3.12 renamed it _sha2.
- signal: _signal, the same calls with plain ints (signal wraps them in enums,
  about 1 ms).
- import_module: importlib's, for an absolute name, without importing the
  importlib package (it imports warnings: about 0.3 ms per call).
- JSON: _json's C scanner and string encoders (json imports re, and re imports
  enum: about 3 ms).  loads() and dumps() give json.loads() and json.dumps()'s
  results for what the suite reads and writes; anything else they hand to
  json itself, so errors read exactly as json's.

Modules that need only an address family or inet_ntop import them from
_socket directly (socket imports selectors and enum); that needs no pin.  And
what only some calls use (the firewall rules' modules, subprocess, etcd, the
TLS stack) is imported where it is used, with a comment saying so: ordinary
Python, the one measure that cannot live here.
"""

import _signal as signal  # noqa: F401  (re-exported: common.lock, common.skel, cni_bridge.plugin)
import sys
from _json import encode_basestring, encode_basestring_ascii, make_scanner

try:
    from _sha256 import sha256  # noqa: F401  (re-exported: common.attachment)
except ImportError:  # another CPython: correct, only slower to import (the pin test says so)
    from hashlib import sha256  # noqa: F401

PINNED = {"python": (3, 11), "pyinstaller": "6.22.3", "pyroute2": "0.9.7"}
_WHITESPACE = " \t\n\r"


def import_module(name: str):
    """importlib.import_module(name) for an absolute name: the module, imported if it is not yet."""
    __import__(name)
    return sys.modules[name]


class _Decoding:
    """What _json.make_scanner reads of a json.JSONDecoder (CPython 3.11, Modules/_json.c scanner_new)."""

    __slots__ = ("strict", "object_hook", "object_pairs_hook", "parse_float", "parse_int", "parse_constant", "memo")

    def __init__(self, object_pairs_hook, parse_constant, parse_float):
        self.strict, self.object_hook, self.object_pairs_hook = True, None, object_pairs_hook
        self.parse_float, self.parse_int, self.parse_constant, self.memo = parse_float, int, parse_constant, {}


def _skip(text: str, at: int) -> int:
    while at < len(text) and text[at] in _WHITESPACE:
        at += 1
    return at


def loads(text: str, object_pairs_hook=None, parse_constant=None, parse_float=None):
    """json.loads(text, object_pairs_hook=..., parse_constant=..., parse_float=...)."""
    context = _Decoding(object_pairs_hook, parse_constant or _constant, parse_float or float)
    scan = make_scanner(context)  # type: ignore[arg-type]  # typeshed: the context is typed as the scanner class
    try:
        value, end = scan(text, _skip(text, 0))
        if _skip(text, end) == len(text):
            return value
    except Exception:  # noqa: BLE001  json says what is wrong, in its own words (below)
        pass
    import json

    return json.loads(text, object_pairs_hook=object_pairs_hook, parse_constant=parse_constant, parse_float=parse_float)


def _constant(name: str) -> float:
    return {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}[name]


def dumps(value, indent: int | None = None, ensure_ascii: bool = True) -> str:
    """json.dumps(value, indent=..., ensure_ascii=...) for dicts with str keys, lists, str, int, float, bool, None."""
    out: list[str] = []
    try:
        _encode(value, out, encode_basestring_ascii if ensure_ascii else encode_basestring, indent, 0)
    except _NotPlain:
        import json

        return json.dumps(value, indent=indent, ensure_ascii=ensure_ascii)
    return "".join(out)


class _NotPlain(Exception):
    """A value json encodes in ways not repeated here (other key types, subclasses, cycles): json does it."""


def _encode(value, out: list, string, indent: int | None, level: int) -> None:
    kind = type(value)
    if kind is str:
        out.append(string(value))
    elif value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif kind is int:
        out.append(int.__repr__(value))
    elif kind is float:
        if value != value or value in (float("inf"), float("-inf")):
            raise _NotPlain
        out.append(float.__repr__(value))
    elif kind is dict or kind is list or kind is tuple:
        if level > 100:
            raise _NotPlain  # deep nesting, or a cycle: json's own checks and errors
        items = value.items() if kind is dict else value
        if not items:
            out.append("{}" if kind is dict else "[]")
            return
        inner = "" if indent is None else "\n" + " " * (indent * (level + 1))
        separator = ", " if indent is None else "," + inner
        out.append(("{" if kind is dict else "[") + inner)
        first = True
        for item in items:
            if not first:
                out.append(separator)
            first = False
            if kind is dict:
                key, item = item
                if type(key) is not str:
                    raise _NotPlain
                out.append(string(key))
                out.append(": ")
            _encode(item, out, string, indent, level + 1)
        out.append(("" if indent is None else "\n" + " " * (indent * level)) + ("}" if kind is dict else "]"))
    else:
        raise _NotPlain
