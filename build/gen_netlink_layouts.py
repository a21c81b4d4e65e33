"""Generate common/netlink/layouts.json from pyroute2's rtnetlink message classes.

    .venv/bin/python build/gen_netlink_layouts.py          # rewrite common/netlink/layouts.json
    .venv/bin/python build/gen_netlink_layouts.py --check  # exit 1 if it is out of date

pyroute2 stays the source of truth for the message layouts; the suite's codec
(common/netlink/codec.py) reads them as plain data, so no run-time module
imports pyroute2 (docs/performance.md).  This script imports pyroute2 normally
and walks the message classes the suite uses: ifinfmsg, ifaddrmsg, rtmsg,
ndmsg.  For each it records the fixed header (struct fields), and for every
attribute set reached from it the attribute numbers and names with the kind of
their value.  The output is a data file, not a module (the codec loads it once,
at import; its format is in common/netlink/codec.py's docstring), written the
same way every time: keys sorted, one layout or attribute a line.
common/tests/test_netlink_codec.py runs generate() and compares it with the
committed file, so a pyroute2 whose definitions differ fails the unit tests
until this script is run again.

What becomes of an attribute, by its pyroute2 class:
  * the generic atoms (uint8 ... be64, asciiz, string, ipaddr, target, l2addr,
    lladdr, hex, cdata, flag, none): that kind;
  * a class with only struct fields (a struct), or an nla_map (a nested set)
    the suite reads (NESTED, and what SELECTORS and CONSTANT reach):
    ("nest", <layout>), walked recursively;
  * pyroute2's run-time dispatch functions, resolved by calling them for the
    values the suite uses (SELECTORS): IFLA_INFO_DATA by IFLA_INFO_KIND (bridge,
    veth, vxlan), IFLA_INFO_SLAVE_DATA by the slave kind (bridge), IFLA_AF_SPEC
    by the message family (AF_BRIDGE), VETH_INFO_PEER (always a nested
    ifinfomsg); any other value of the selector decodes to raw bytes;
  * a few classes with their own code whose wire format is a plain value
    (SPECIAL: IFLA_OPERSTATE, IFLA_NET_NS_FD, the bridge VLAN attributes);
  * any other nested set, and anything else with code of its own (MPLS,
    encapsulations, arrays, multipath, wireless events, VF lists ...): "raw",
    bytes as received.  The suite reads none of them.
"""

import json
import os
import socket
import struct
import sys
import types

import pyroute2
import pyroute2.netlink as pn
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfbase, ifinfmsg
from pyroute2.netlink.rtnl.ndmsg import ndmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg, rtmsg_base

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.path.join(REPO, "common", "netlink", "layouts.json")
PINNED = "0.9.7"
MESSAGES = (ifinfmsg, ifaddrmsg, rtmsg, ndmsg)

ATOMS = {
    getattr(pn.nlmsg_atoms, name): name
    for name in (
        "none flag uint8 uint16 uint32 uint64 int8 int16 int32 int64 be8 be16 be32 be64 sbe8 sbe16 sbe32 sbe64 "
        "ipaddr ip4addr ip6addr target l2addr lladdr hex cdata string asciiz"
    ).split()
}
# pyroute2's generic machinery: a class whose encode/decode come only from these has a plain wire format
GENERIC = {
    pn.nlmsg_base,
    pn.nla_base,
    pn.nla_base_string,
    pn.nla_base_struct,
    pn.nla,
    pn.nla_string,
    pn.nla_struct,
    pn.nlmsg,
    pn.nla_header,
    pn.nlmsg_atoms,
    pn.nlmsg_encoder_generic,
    pn.nlmsg_decoder_generic,
    pn.nlmsg_decoder_string,
    pn.nlmsg_decoder_struct,
    object,
    dict,
    # these two only turn flag names into numbers before encoding; the suite passes numbers
    ifinfbase,
    rtmsg_base,
    rtmsg_base.__mro__[1],  # nlflags
}
CODE = ("encode", "decode", "ft_encode", "ft_decode", "setvalue", "getvalue", "__init__")
# classes with code of their own whose wire format is nevertheless a plain value
SPECIAL = {
    ifinfbase.state: ("operstate", tuple(pyroute2.netlink.rtnl.ifinfmsg.states)),  # uint8, an index into these names
    ifinfbase.netns_fd: "uint32",  # pyroute2 also opens a named netns; the suite passes a descriptor
    ifinfbase.af_spec_bridge.vlan_flags: "uint16",  # pyroute2 also takes flag names
    ifinfbase.af_spec_bridge.vlan_info: None,  # a struct (flags, vid); pyroute2 also takes flag names
}
# pyroute2's dispatch functions, per (attribute table, attribute): what selects the set, and the values the suite uses
SELECTORS = {
    ("ifinfbase.ifinfo", "IFLA_INFO_DATA"): (("IFLA_INFO_KIND",), ("bridge", "veth", "vxlan")),
    ("ifinfbase.ifinfo", "IFLA_INFO_SLAVE_DATA"): (("IFLA_INFO_SLAVE_KIND", "IFLA_INFO_KIND"), ("bridge",)),
    ("ifinfbase", "IFLA_AF_SPEC"): ("family", (socket.AF_BRIDGE,)),
}
CONSTANT = {("ifinfbase.ifinfo.veth_data", "VETH_INFO_PEER")}  # functions that return one class whatever the input
# nested sets (classes with an nla_map) walked besides the messages and what SELECTORS and CONSTANT reach;
# the others (wireless events, VF lists, XDP, altnames, proto-down reasons) are "raw": the suite reads none
NESTED = {"ifinfbase.ifinfo", "rtmsg_base.metrics"}


def _compiled(cls) -> dict:
    cls()  # pyroute2 compiles a class's nla_map into its tables on first instantiation
    return cls._nlmsg_base__r_nla_map


def _has_own_code(cls) -> bool:
    return any(name in vars(k) for k in cls.__mro__ if k not in GENERIC and k not in ATOMS for name in CODE)


def _plain(fields) -> bool:
    """Every field a struct format (rta_mfc_stats, for one, lists atom names instead)."""
    try:
        return all(isinstance(fmt, str) and struct.calcsize(fmt) >= 0 for _, fmt in fields)
    except struct.error:
        return False


def _table_name(cls) -> str:
    return next(k for k in cls.__mro__ if "nla_map" in vars(k)).__qualname__


class Walker:
    def __init__(self):
        self.layouts: dict[str, tuple] = {}
        self.tables: dict[str, tuple] = {}
        self.classes: dict[str, type] = {}

    def layout(self, cls) -> str:
        name = cls.__qualname__
        if self.classes.setdefault(name, cls) is not cls:
            raise SystemExit(f"two pyroute2 classes named {name}")
        if name in self.layouts:
            return name
        fields = tuple((f, fmt) for f, fmt in cls.fields)
        if not _plain(fields):
            raise SystemExit(f"{name}: fields that are not struct formats")
        self.layouts[name] = (fields, None)  # placeholder while its table is walked
        table = None
        if cls.nla_map:
            table = _table_name(cls)
            if table not in self.tables:
                self.tables[table] = ()  # placeholder: a set may contain itself (the veth peer)
                entries = []
                for attr, prime in _compiled(cls).items():
                    flags = prime["nla_flags"] | getattr(prime["class"], "nla_flags", 0)
                    kind = self.kind(cls, table, prime)
                    entries.append((prime["type"], attr, kind) + ((flags,) if flags else ()))
                self.tables[table] = tuple(entries)
        self.layouts[name] = (fields, table)
        return name

    def kind(self, owner, table: str, prime: dict):
        cls = prime["class"]
        if prime["nla_array"] or prime["init"]:
            return "raw"
        if isinstance(cls, types.FunctionType):
            return self.selected(owner, table, prime["name"], cls)
        return self.kind_of_class(cls)

    def kind_of_class(self, cls, nested: bool = False):
        if cls in ATOMS:
            return ATOMS[cls]
        if cls in SPECIAL:
            return SPECIAL[cls] or ("nest", self.layout(cls))
        if _has_own_code(cls) or issubclass(cls, pn.nlmsg):  # a message class as an attribute: pyroute2's 'nested'
            return "raw"
        for atom, name in ATOMS.items():
            if issubclass(cls, atom):
                return name
        if cls.nla_map and (cls.__qualname__ in NESTED or nested):
            return ("nest", self.layout(cls))
        if cls.fields and not cls.nla_map and _plain(cls.fields):  # a struct
            return ("nest", self.layout(cls))
        return "raw"

    def selected(self, owner, table: str, attr: str, function):
        if (table, attr) in CONSTANT:
            return self.kind_of_class(function(owner()), nested=True)
        if (table, attr) not in SELECTORS:
            return "raw"
        by, values = SELECTORS[(table, attr)]
        choices = {}
        for value in values:
            probe = owner()
            if by == "family":
                probe["family"] = value
                cls = function(probe)
            else:
                probe["attrs"] = [(by[0], value)]
                cls = function(probe)
                for fallback in by[1:]:  # pyroute2 looks further when the first is absent
                    other = owner()
                    other["attrs"] = [(fallback, value)]
                    if function(other) is not cls:
                        raise SystemExit(f"{table}.{attr}: {fallback} does not select like {by[0]}")
            if cls is getattr(owner, "hex", None) or getattr(cls, "nla_flags", 0):
                raise SystemExit(f"{table}.{attr}: {value!r} selects nothing usable")
            choices[value] = self.kind_of_class(cls, nested=True)[1]
        return ("by", by, choices)


def walk() -> Walker:
    walker = Walker()
    for msg in MESSAGES:
        walker.layout(msg)
    return walker


# --- output: JSON, one layout or attribute a line -------------------------------------


def _native(value):
    """value with tuples as lists and int subclasses (pyroute2's enums) as ints: what JSON holds.

    json.dumps would write an enum as its int too, but would also turn a dict key that is no string into one, silently.
    """
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, tuple | list):
        return [_native(v) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _native(v) for k, v in value.items()}
    raise SystemExit(f"cannot write {value!r}")


def _kind(kind):
    """A kind as the data file holds it: a "by" kind's choices as [value, layout] pairs (a value may be a number)."""
    if isinstance(kind, tuple) and kind[0] == "by":
        return ("by", kind[1], tuple(kind[2].items()))
    return kind


def _one(value) -> str:
    return json.dumps(_native(value), ensure_ascii=True)


def _object(items: list, indent: int) -> str:
    """A JSON object of (key, already written value), a member a line, keys sorted."""
    pad = " " * indent
    members = ",\n".join(f"{pad}  {_one(key)}: {text}" for key, text in sorted(items))
    return "{\n" + members + "\n" + pad + "}" if items else "{}"


def _rows(rows, indent: int) -> str:
    pad = " " * indent
    return "[\n" + ",\n".join(f"{pad}  {_one(row)}" for row in rows) + "\n" + pad + "]" if rows else "[]"


ABOUT = "generated by build/gen_netlink_layouts.py from pyroute2's definitions; do not edit (the format: common/netlink/codec.py)"


def generate() -> str:
    walker = walk()
    defaults = {m.__qualname__: {k: int(v) for k, v in m.defaults.items() if k != "header"} for m in MESSAGES if m.defaults}
    tables = {name: tuple(entry[:2] + (_kind(entry[2]),) + entry[3:] for entry in entries) for name, entries in walker.tables.items()}
    top = [
        ("about", _one(ABOUT)),
        ("pyroute2", _one(pyroute2.__version__)),
        ("layouts", _object([(name, _one(layout)) for name, layout in walker.layouts.items()], 2)),
        ("defaults", _object([(name, _one(dict(sorted(fields.items())))) for name, fields in defaults.items()], 2)),
        ("tables", _object([(name, _rows(entries, 4)) for name, entries in tables.items()], 2)),
    ]
    return _object(top, 0) + "\n"


def main(argv: list[str]) -> int:
    if pyroute2.__version__ != PINNED:
        sys.stderr.write(f"pyroute2 {pyroute2.__version__} is installed, the suite pins {PINNED}: check its definitions, then PINNED here\n")
    text = generate()
    current = ""
    if os.path.exists(TARGET):
        with open(TARGET) as f:
            current = f.read()
    if "--check" in argv:
        if text != current:
            sys.stderr.write(f"{TARGET} is out of date: run {argv[0]}\n")
            return 1
        return 0
    with open(TARGET, "w") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
