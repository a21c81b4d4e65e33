"""rtnetlink messages to and from bytes, laid out as pyroute2 defines them.

The layouts (fixed fields, attribute numbers, names and value kinds) are data,
layouts.json beside this module, generated from pyroute2 0.9.7 by
build/gen_netlink_layouts.py and read once, at import (common.startup.loads:
no json, no re); this module only walks them with struct, so a plugin never
imports pyroute2 (10-15 ms per call, docs/performance.md).  The message
objects offer what the suite used of pyroute2's: msg["index"],
msg["attrs"] = [(name, value), ...], msg.get_attr(name) (nested sets are
messages too, structs are dicts), msg["header"], msg.encode() then msg.data,
cls(data).decode().

Values decode as pyroute2 decodes them, with these differences: "hex" and
"cdata" attributes, those of a kind-dependent set whose kind the suite does not
use, and the sets layouts.json leaves "raw" are bytes (pyroute2 gives a hex dump
or decodes sets the suite never reads); an unknown attribute is ("UNKNOWN",
bytes), as in pyroute2; an l2addr of another length than 6 bytes is all its
bytes in hex (pyroute2 read 6 bytes whatever the length); a value too short
for its kind stays bytes (pyroute2 gave up on those too).  A message whose
attributes do not tile it (a length below 4, or past the end of what contains
it) raises DecodeError, which the caller turns into EPROTO.

layouts.json: "layouts", a message or nested set -> [its fixed fields as
[name, struct format], the name of its attribute table or null for a plain
struct]; "tables", an attribute table -> [number, name, kind(, flags to set in
the type)], for a number listed twice the last decodes; "defaults", the field
values a message encodes when none is set (pyroute2's; otherwise 0);
"pyroute2", the version it comes from.  A kind is a value type ("uint32",
"asciiz", "ipaddr", "l2addr", "raw", ...), ["nest", layout], ["operstate",
names], or ["by", selector, [[value, layout], ...]] where the selector is
"family" (the enclosing message's) or the attributes before it that hold the
value (IFLA_INFO_KIND ...).  The lists become tuples and the "by" pairs a dict
as a table is compiled (_table).
"""

import os
import struct
from _socket import AF_INET, AF_INET6, inet_ntop, inet_pton

from common.startup import loads

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (type checkers go by the name)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["DecodeError", "Message", "ifinfmsg", "ifaddrmsg", "rtmsg", "ndmsg"]

HEADER = struct.Struct("=IHHII")  # struct nlmsghdr: length, type, flags, sequence number, port id
NLA = struct.Struct("=HH")  # struct nlattr: length, type
NLA_TYPE_MASK = 0x3FFF  # the type without NLA_F_NESTED and NLA_F_NET_BYTEORDER
SCALARS = {
    kind: struct.Struct(fmt)
    for kind, fmt in zip(
        "uint8 uint16 uint32 uint64 int8 int16 int32 int64 be8 be16 be32 be64 sbe8 sbe16 sbe32 sbe64".split(),
        "=B =H =I =Q =b =h =i =q >B >H >I >Q >b >h >i >q".split(),
        strict=True,
    )
}


class DecodeError(ValueError):
    """Bytes that are no well-formed message of this layout."""


# --- layouts and tables: read at import, compiled on first use ----------------------------

LAYOUTS_FILE = os.path.join(os.path.dirname(__file__), "layouts.json")  # in the binary: <_MEIPASS>/common/netlink/


def _read_layouts(path: str) -> tuple:
    """(PYROUTE2, LAYOUTS, DEFAULTS, TABLES) from layouts.json; ImportError naming the file if it cannot be had."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            chunks = []
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
        finally:
            os.close(fd)
        data = loads(b"".join(chunks).decode())
        return data["pyroute2"], data["layouts"], data["defaults"], data["tables"]
    except (OSError, ValueError, KeyError, TypeError) as err:  # ValueError: not UTF-8, not JSON
        raise ImportError(f"common.netlink.codec: cannot read the netlink layouts {path}: {err}", path=path) from err


PYROUTE2, LAYOUTS, DEFAULTS, TABLES = _read_layouts(LAYOUTS_FILE)

_layouts: dict = {}  # layout -> (((field or None for padding, Struct), ...), size, table or None, field names)
_tables: dict = {}  # table -> ({number: (name, kind)}, {name: (type, kind)})


def _layout(name: str) -> tuple:
    compiled = _layouts.get(name)
    if compiled is None:
        fields, table = LAYOUTS[name]
        packed = tuple((None if f.startswith("__") else f, struct.Struct(fmt if fmt[0] in "<>=!@" else "=" + fmt)) for f, fmt in fields)
        names = frozenset(f for f, _ in packed if f)
        compiled = _layouts[name] = (packed, sum(s.size for _, s in packed), table, names)
    return compiled


def _kind(kind):
    """A kind as layouts.json holds it -> as the codec walks it: tuples, a "by" kind's choices a dict."""
    if kind.__class__ is str:
        return kind
    if kind[0] == "by":
        selector = kind[1]
        return ("by", selector if selector == "family" else tuple(selector), {value: layout for value, layout in kind[2]})
    return (kind[0], tuple(kind[1]) if kind[0] == "operstate" else kind[1])


def _table(name: str) -> tuple:
    compiled = _tables.get(name)
    if compiled is None:
        by_number, by_name = {}, {}
        for number, attr, json_kind, *flags in TABLES[name]:
            kind = _kind(json_kind)
            by_number[number] = (attr, kind)  # a number listed twice: the last decodes, as in pyroute2
            by_name[attr] = (number | (flags[0] if flags else 0), kind)
        compiled = _tables[name] = (by_number, by_name)
    return compiled


def _selected(selector, family: int, siblings: list):
    """The value that picks a kind-dependent set: the enclosing family, or the first sibling attribute holding it."""
    if selector == "family":
        return family
    for key in selector:
        for name, value in siblings:
            if name == key:
                return value
    return None


# --- decoding -------------------------------------------------------------------------------


def _text(raw: bytes):
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return raw


def _ipaddr(payload: bytes, family: int):
    size = len(payload)
    return inet_ntop(AF_INET if size == 4 else AF_INET6, payload) if size in (4, 16) else payload


def _target(payload: bytes, family: int):
    """An address of the enclosing message's family (pyroute2 reads the first 4 or 16 bytes)."""
    size = 4 if family == AF_INET else 16 if family == AF_INET6 else 0
    return inet_ntop(family, payload[:size]) if size and len(payload) >= size else payload


DECODERS = {
    "asciiz": lambda payload, family: _text(payload.strip(b"\0")),
    "string": lambda payload, family: _text(payload),
    "ipaddr": _ipaddr,
    "ip4addr": lambda payload, family: inet_ntop(AF_INET, payload) if len(payload) == 4 else payload,
    "ip6addr": lambda payload, family: inet_ntop(AF_INET6, payload) if len(payload) == 16 else payload,
    "target": _target,
    "l2addr": lambda payload, family: payload.hex(":"),
    "lladdr": lambda payload, family: _ipaddr(payload, family) if len(payload) in (4, 16) else payload.hex(":"),  # a MAC, "" or other
    "flag": lambda payload, family: True,
    "none": lambda payload, family: None,
}  # and "hex", "cdata", "raw": the bytes


def _decode_value(kind: "Any", payload: bytes, family: int, siblings: list):
    if kind.__class__ is str:
        scalar = SCALARS.get(kind)
        if scalar is not None:
            return scalar.unpack_from(payload)[0] if len(payload) >= scalar.size else payload
        decoder = DECODERS.get(kind)
        return payload if decoder is None else decoder(payload, family)
    what = kind[0]
    if what == "nest":
        return _decode_nested(kind[1], payload, family)
    if what == "by":
        layout = kind[2].get(_selected(kind[1], family, siblings))
        return payload if layout is None else _decode_nested(layout, payload, family)
    if what == "operstate" and payload and payload[0] < len(kind[1]):
        return kind[1][payload[0]]
    return payload


def _decode_fields(packed: tuple, data, offset: int) -> dict:
    values = {}
    for name, layout in packed:
        if name is not None:
            values[name] = layout.unpack_from(data, offset)[0]
        offset += layout.size
    return values


def _decode_attrs(table: str, data, offset: int, end: int, family: int) -> list:
    by_number = _table(table)[0]
    attrs: list = []
    while offset + 4 <= end:
        length, atype = NLA.unpack_from(data, offset)
        if length < 4 or offset + length > end:
            raise DecodeError(f"attribute {atype & NLA_TYPE_MASK} of {length} bytes with {end - offset} left")
        payload = bytes(data[offset + 4 : offset + length])
        entry = by_number.get(atype & NLA_TYPE_MASK)
        if entry is None:
            attrs.append(("UNKNOWN", payload))
        else:
            attrs.append((entry[0], _decode_value(entry[1], payload, family, attrs)))
        offset += (length + 3) & ~3
    return attrs


def _decode_nested(layout: str, payload: bytes, family: int):
    packed, size, table, names = _layout(layout)
    if len(payload) < size:
        return payload  # too short for its fixed part
    fields = _decode_fields(packed, payload, 0)
    if table is None:
        return fields  # a struct: a dict, as pyroute2's
    nested = Message(layout=layout)
    nested.fields = fields
    nested.attrs = _decode_attrs(table, payload, (size + 3) & ~3, len(payload), fields.get("family", family))
    return nested


# --- encoding -------------------------------------------------------------------------------


def _mac(text: str) -> bytes:
    octets = bytes(int(part, 16) for part in text.split(":"))
    if len(octets) != 6:
        raise ValueError(f"not a MAC address: {text!r}")
    return octets


def _encode_lladdr(text: str) -> bytes:
    if ":" in text:
        return _mac(text) if len(text) == 17 and "::" not in text else inet_pton(AF_INET6, text)
    return inet_pton(AF_INET, text)


def _utf8(value) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)


ENCODERS = {
    "asciiz": lambda value, family: _utf8(value) + b"\0",
    "string": lambda value, family: _utf8(value),
    "ipaddr": lambda value, family: inet_pton(AF_INET6 if ":" in value else AF_INET, value),
    "ip4addr": lambda value, family: inet_pton(AF_INET, value),
    "ip6addr": lambda value, family: inet_pton(AF_INET6, value),
    "target": lambda value, family: inet_pton(family, value),
    "l2addr": lambda value, family: _mac(value),
    "lladdr": lambda value, family: _encode_lladdr(value),
    "flag": lambda value, family: b"",
    "none": lambda value, family: b"",
}  # and "hex", "cdata", "raw": bytes as given


def _encode_value(kind: "Any", value, family: int, siblings: list, out: bytearray) -> None:
    if kind.__class__ is str:
        scalar = SCALARS.get(kind)
        if scalar is not None:
            out += scalar.pack(value)
        elif kind == "target" and family not in (AF_INET, AF_INET6):
            raise ValueError(f"an address in a message of family {family}")
        else:
            encoder = ENCODERS.get(kind)
            out += bytes(value) if encoder is None else encoder(value, family)
        return
    what = kind[0]
    if what == "nest":
        _encode_nested(kind[1], value, family, out)
    elif what == "by":
        layout = kind[2].get(_selected(kind[1], family, siblings))
        if layout is None:
            out += bytes(value)
        else:
            _encode_nested(layout, value, family, out)
    elif what == "operstate":
        out.append(kind[1].index(value))
    else:
        raise ValueError(f"cannot encode a {kind!r}")


def _encode_fields(layout: str, packed: tuple, values, out: bytearray) -> None:
    defaults = DEFAULTS.get(layout, {})
    for name, field in packed:
        if name is None:
            out += field.pack()
        else:
            value = values.get(name)
            out += field.pack(defaults.get(name, 0) if value is None else value)
    out += bytes(-len(out) % 4)


def _encode_attrs(table: str, attrs: list, family: int, out: bytearray) -> None:
    by_name = _table(table)[1]
    for item in attrs:
        name, value = item[0], item[1]
        entry = by_name.get(name)
        if entry is None:
            raise ValueError(f"{table} has no attribute {name}")
        start = len(out)
        out += b"\0\0\0\0"
        _encode_value(entry[1], value, family, attrs, out)
        length = len(out) - start
        if length > 0xFFFF:
            raise ValueError(f"{name}: {length} bytes do not fit an attribute")
        NLA.pack_into(out, start, length, entry[0])
        out += bytes(-length % 4)


def _encode_nested(layout: str, value, family: int, out: bytearray) -> None:
    """value: a Message, or a dict of fields and "attrs" (pyroute2's form)."""
    packed, size, table, names = _layout(layout)
    values = value.fields if isinstance(value, Message) else value
    start = len(out)
    _encode_fields(layout, packed, values, out)
    if table is None:
        del out[start + size :]  # a struct's length leaves out its padding (the attribute's own comes after)
        return
    attrs = value.attrs if isinstance(value, Message) else value.get("attrs", ())
    family = values.get("family", family) if "family" in names else family
    _encode_attrs(table, attrs, family, out)


# --- messages -----------------------------------------------------------------------------------


class Message:
    """A netlink message (header, fixed fields, attributes), or a nested attribute set (no header)."""

    __slots__ = ("layout", "header", "fields", "attrs", "data")
    LAYOUT = ""

    def __init__(self, data: bytes | bytearray | None = None, layout: str = ""):
        self.layout = layout or self.LAYOUT
        self.header: dict = {}
        self.fields: dict = {}
        self.attrs: list = []
        self.data = data

    def __getitem__(self, key: str):
        if key == "attrs":
            return self.attrs
        if key == "header":
            return self.header
        value = self.fields.get(key)
        if value is None:
            if key not in _layout(self.layout)[3]:
                raise KeyError(key)
            return 0  # a field not set (pyroute2 answers 0 too)
        return value

    def __setitem__(self, key: str, value) -> None:
        if key == "attrs":
            self.attrs = list(value)
        elif key == "header":
            self.header = dict(value)
        elif key in _layout(self.layout)[3]:
            self.fields[key] = value
        else:
            raise KeyError(f"{self.layout} has no field {key}")

    def get_attr(self, name: str, default=None):
        """The value of the first attribute called `name`."""
        for attr, value in self.attrs:
            if attr == name:
                return value
        return default

    def __repr__(self) -> str:
        return f"{self.layout}({self.fields}, attrs={self.attrs})"

    def encode(self) -> "Message":
        packed, size, table, names = _layout(self.layout)
        out = bytearray(HEADER.size)
        _encode_fields(self.layout, packed, self.fields, out)
        if table is not None:
            family = self.fields.get("family")
            _encode_attrs(table, self.attrs, DEFAULTS.get(self.layout, {}).get("family", 0) if family is None else family, out)
        header = self.header
        header["length"] = len(out)
        HEADER.pack_into(out, 0, len(out), header.get("type", 0), header.get("flags", 0), header.get("sequence_number", 0), header.get("pid", 0))
        self.data = out
        return self

    def decode(self) -> "Message":
        data = self.data
        if data is None or len(data) < HEADER.size:
            raise DecodeError("shorter than a netlink header")
        length, mtype, flags, seq, pid = HEADER.unpack_from(data)
        packed, size, table, names = _layout(self.layout)
        if length < HEADER.size + size or length > len(data):
            raise DecodeError(f"a {self.layout} of {length} bytes in {len(data)}")
        self.header = {"length": length, "type": mtype, "flags": flags, "sequence_number": seq, "pid": pid}
        self.fields = _decode_fields(packed, data, HEADER.size)
        start = (HEADER.size + size + 3) & ~3
        self.attrs = [] if table is None else _decode_attrs(table, data, start, length, self.fields.get("family", 0))
        return self


class ifinfmsg(Message):  # pyroute2's class names, which the suite has always used
    __slots__ = ()
    LAYOUT = "ifinfmsg"


class ifaddrmsg(Message):
    __slots__ = ()
    LAYOUT = "ifaddrmsg"


class rtmsg(Message):
    __slots__ = ()
    LAYOUT = "rtmsg"


class ndmsg(Message):
    __slots__ = ()
    LAYOUT = "ndmsg"
