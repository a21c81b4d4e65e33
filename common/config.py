"""Strict JSON decoding and typed, case-insensitive access to config objects.

The reference plugins decode with Go's encoding/json: keys match
case-insensitively (an exact match wins), unknown keys are ignored, and types
are strict ("1500" is not an int, true is not 1).  Obj reproduces that, so a
config the reference accepts is accepted here, and a mistyped value is a clean
code-7 error instead of a Python exception.
"""

import builtins

from common import startup
from common.errors import CNIError, Code
from common.log import get as get_logger

MAX_STDIN = 4 << 20  # configs carrying a prevResult are well under 64 KiB
MAX_CNI_ARGS = 64 << 10
NAME_PATTERN = r"[a-zA-Z0-9][a-zA-Z0-9_.\-]*\Z"  # the reference's; checked without re (common/startup.py)
_NAME_FIRST = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_NAME_REST = _NAME_FIRST | frozenset("_.-")
NAME_MAX = 255

log = get_logger(__name__)

_INF = float("inf")


def _reject_constant(name):
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text):
    value = float(text)
    if value in (_INF, -_INF):
        raise ValueError(f"number {text} out of range")
    return value


def _no_duplicates(pairs):
    obj = {}
    for key, value in pairs:
        if key in obj:
            # Go keeps the last value; two readers of one config must never disagree
            raise ValueError(f"duplicate key {key!r}")
        obj[key] = value
    return obj


def load_json(data: bytes, what: str = "network configuration"):
    """Decode untrusted JSON; every failure is a code-6 CNIError."""
    try:
        text = data.decode("utf-8")
        value = startup.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_constant=_reject_constant,
            parse_float=_finite_float,
        )
        if "\\u" in text:
            # a lone surrogate decodes fine but cannot be written out again
            startup.dumps(value, ensure_ascii=False).encode("utf-8")
    except (ValueError, RecursionError, UnicodeError) as err:
        raise CNIError(Code.DECODING_FAILURE, f"failed to decode {what}", str(err)[:500]) from None
    return value


def dumps(value) -> str:
    return startup.dumps(value, indent=4)


def _jtext(value) -> str:
    text = startup.dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."


class Obj:
    """A read-only JSON object with Go-style key lookup and typed getters."""

    __slots__ = ("raw", "where", "_folded")

    def __init__(self, raw: dict, where: str = ""):
        self.raw = raw
        self.where = where
        self._folded: dict | None = None

    def lookup(self, key: str):
        if key in self.raw:
            return self.raw[key]
        if self._folded is None:
            self._folded = {k.lower(): v for k, v in self.raw.items()}
        return self._folded.get(key.lower())

    def __contains__(self, key: str) -> bool:
        return self.lookup(key) is not None

    def bad(self, key: str, want: str, value) -> CNIError:
        return CNIError(Code.INVALID_CONFIG, f"invalid {self.where}{key}", f"want {want}, got {_jtext(value)}")

    def typed(self, key: builtins.str, want_type: type, want: builtins.str, default=None):
        """The value under `key`, which must be exactly of `want_type` (`want` words it); `default` if absent or null."""
        value = self.lookup(key)
        if value is None:
            return default
        if type(value) is not want_type:
            raise self.bad(key, want, value)
        return value

    def str(self, key: builtins.str, default=None):
        return self.typed(key, str, "a string", default)

    def bool(self, key: builtins.str, default: bool = False) -> bool:
        return self.typed(key, bool, "true or false", default)

    def int(self, key: builtins.str, default=None, lo: int | None = None, hi: int | None = None):
        value = self.typed(key, int, "an integer")
        if value is None:
            return default
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise self.bad(key, f"an integer in {lo}..{hi}", value)
        return value

    def list(self, key: builtins.str, default=None):
        return self.typed(key, list, "a list", default)

    def obj(self, key: builtins.str):
        value = self.typed(key, dict, "an object")
        return None if value is None else Obj(value, f"{self.where}{key}.")

    def str_list(self, key: builtins.str) -> builtins.list:
        items = self.list(key, [])
        for item in items:
            if type(item) is not str:
                raise self.bad(key, "a list of strings", items)
        return items


def parse_cni_args(text: str) -> dict:
    """CNI_ARGS "K1=V1;K2=V2".  Lenient: unknown keys and empty segments are ignored.

    The reference rejects unknown keys unless IgnoreUnknown is set; runtimes
    and chained plugins made that impractical (cni#126, cni#560), so we accept
    them (a documented difference).
    """
    if len(text) > MAX_CNI_ARGS:
        raise CNIError(Code.INVALID_ENV, "CNI_ARGS too long", f"{len(text)} bytes, limit {MAX_CNI_ARGS}")
    args = {}
    for pair in text.split(";"):
        if not pair:
            continue
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CNIError(Code.INVALID_ENV, "invalid CNI_ARGS", f"pair {pair[:80]!r} is not KEY=VALUE")
        args[key] = value
    return args


def is_name(text: str) -> bool:
    """Whether text matches NAME_PATTERN (network names, container IDs)."""
    return bool(text) and text[0] in _NAME_FIRST and _NAME_REST.issuperset(text)


def check_name(name, what: str = "network name") -> str:
    if type(name) is not str or not name:
        raise CNIError(Code.INVALID_CONFIG, f"missing {what}")
    if not is_name(name) or len(name.encode()) > NAME_MAX:
        raise CNIError(
            Code.INVALID_CONFIG,
            f"invalid characters found in {what}",
            f"{name[:80]!r} must match {NAME_PATTERN} and be at most {NAME_MAX} bytes",
        )
    return name


def valid_attachments(config: dict) -> set[tuple[str, str]] | None:
    """cni.dev/valid-attachments (or the pre-rename cni.dev/attachments); None if absent."""
    raw = config.get("cni.dev/valid-attachments", config.get("cni.dev/attachments"))
    if raw is None:
        return None
    if type(raw) is not list:
        raise CNIError(Code.INVALID_CONFIG, "invalid cni.dev/valid-attachments", "want a list of {containerID, ifname}")
    out = set()
    for item in raw:
        obj = Obj(item) if type(item) is dict else None
        cid = obj.str("containerID") if obj else None
        ifname = obj.str("ifname") if obj else None
        if not cid or not ifname:
            raise CNIError(Code.INVALID_CONFIG, "invalid cni.dev/valid-attachments", f"entry {item!r} needs containerID and ifname")
        out.add((cid, ifname))
    return out


def gc_valid_attachments(config: dict, absent: str) -> set[tuple[str, str]]:
    """The attachments GC keeps: cni.dev/valid-attachments, or none at all without the key.

    Go reads a missing key so (and cnitool relies on it); a warning then says
    what it means here (`absent`, e.g. "every attachment of NET is stale").
    """
    valid = valid_attachments(config)
    if valid is None:
        log.warning("GC without cni.dev/valid-attachments: %s", absent)
        return set()
    return valid
