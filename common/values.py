"""Value: immutable records without the dataclasses module, the one base for them all.

Why: every CNI command is a process start, and imports are most of its cost
(docs/performance.md, "Where the time goes").  `import dataclasses` brings
inspect, ast, dis, tokenize, re, enum, copy and weakref: about 9 ms of a bridge
ADD from source (-X importtime), the costliest module on the path, and
@dataclass then compiles every method it writes.  This module imports nothing
and compiles nothing.  Measured from source (-X importtime, cumulative, median
of 21 interleaved runs, 2026-12-04): importing host-local's plugin took 27.0 ms
with dataclasses, 14.1 without; bridge's 30.9, then 26.0 with common.netlink's
four classes still on @dataclass, and 11.8 with those on Value too (measured
on a copy).  Every record on the plugins' hot path derives from Value
(common.skel's CmdArgs too: unhashable, and its repr without the
environment); no other module reimplements it.

Fields are declared once, as annotations, as for @dataclass(frozen=True):

    class Route(Value):
        dst: IPv4Network | IPv6Network
        gw: IPv4Address | IPv6Address | None = None
        tags: tuple = field(default_factory=tuple)  # a new default per instance

The metaclass turns them into __slots__ (after a base class's fields) and
Value gives what the suite used of a frozen dataclass: construction by position
or keyword in field order with defaults, FrozenInstanceError on assignment,
__eq__ and __hash__ by fields (same class only), dataclasses' __repr__,
replace(**changes) and as_dict() (dataclasses.asdict's recursion, without its
deep copy of other leaves), copy and pickle.  Type checkers read it as
a frozen dataclass (dataclass_transform), so constructor calls stay checked.
Python 3.11's eager class annotations are assumed (common.startup.PINNED).
"""

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (type checkers go by the name)
if TYPE_CHECKING:
    from typing import Any, ClassVar, Self, dataclass_transform
else:
    dataclass_transform = lambda **_: lambda cls: cls  # a no-op at run time


class FrozenInstanceError(AttributeError):
    """An assignment to a Value's field (dataclasses.FrozenInstanceError's counterpart)."""


class _Factory:
    __slots__ = ("make",)

    def __init__(self, make):
        self.make = make


def field(*, default_factory) -> "Any":
    """A default made afresh for each instance (dataclasses.field(default_factory=...))."""
    return _Factory(default_factory)


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
class _Fields(type):
    def __new__(mcs, name, bases, ns):
        own = tuple(ns.get("__annotations__", ()))
        defaults = {n: ns.pop(n) for n in own if n in ns}  # a slot may not share its name with a class attribute
        ns["__slots__"] = own
        cls = super().__new__(mcs, name, bases, ns)
        cls.FIELDS = getattr(cls, "FIELDS", ()) + own
        cls.__match_args__ = cls.FIELDS  # type: ignore[misc]  # as @dataclass sets it
        cls._defaults = {**getattr(cls, "_defaults", {}), **defaults}
        required = [n for n in cls.FIELDS if n not in cls._defaults]
        if required and cls.FIELDS.index(required[-1]) != len(required) - 1:
            raise TypeError(f"{name}: field {required[-1]!r} without a default follows one with a default")
        return cls


class Value(metaclass=_Fields):
    if TYPE_CHECKING:
        FIELDS: ClassVar[tuple[str, ...]]  # the field names, in order
        _defaults: ClassVar[dict[str, Any]]  # a field's default, or its _Factory

    def __init__(self, *args, **kwargs):
        if kwargs or len(args) != len(self.FIELDS):
            args = self._complete(args, kwargs)
        for name, value in zip(self.FIELDS, args, strict=True):
            object.__setattr__(self, name, value)

    @classmethod
    def _complete(cls, args: tuple, kwargs: dict) -> tuple:
        """Every field's value in order, from positional and keyword arguments and the defaults."""
        fields, values = cls.FIELDS, list(args)
        if len(args) > len(fields):
            raise TypeError(f"{cls.__name__} takes {len(fields)} positional arguments but {len(args)} were given")
        for name in fields[len(args) :]:
            if name in kwargs:
                values.append(kwargs.pop(name))
            elif name in cls._defaults:
                default = cls._defaults[name]
                values.append(default.make() if type(default) is _Factory else default)
            else:
                raise TypeError(f"{cls.__name__} missing required argument {name!r}")
        if kwargs:
            twice = [name for name in fields[: len(args)] if name in kwargs]
            why = f"multiple values for {twice}" if twice else f"unexpected keyword arguments {sorted(kwargs)}"
            raise TypeError(f"{cls.__name__} got {why}")
        return tuple(values)

    def __setattr__(self, name: str, value) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def _values(self) -> tuple:
        return tuple(getattr(self, name) for name in self.FIELDS)

    def __eq__(self, other) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __reduce__(self):  # copy, deepcopy and pickle construct, as __setattr__ refuses
        return type(self), self._values()

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.FIELDS)
        return f"{type(self).__qualname__}({shown})"

    def replace(self, **changes) -> "Self":
        """A copy with some fields changed (dataclasses.replace)."""
        return type(self)(**{**{name: getattr(self, name) for name in self.FIELDS}, **changes})

    def as_dict(self) -> dict:
        """The fields in order, Values within (also in tuples, lists and dicts) as dicts too (dataclasses.asdict)."""
        return {name: _plain(getattr(self, name)) for name in self.FIELDS}


def _plain(obj):
    if isinstance(obj, Value):
        return obj.as_dict()
    if isinstance(obj, (tuple, list)):
        return type(obj)(_plain(item) for item in obj)
    if isinstance(obj, dict):
        return type(obj)((_plain(key), _plain(item)) for key, item in obj.items())
    return obj
