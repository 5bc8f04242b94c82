"""Base of the fake ROS messages: typed fields like rosidl_generator_py's generated classes.

Real generated messages (rosidl_generator_py, ``_msg.py`` templates) use ``__slots__``, assert
each value's type in property setters and convert numeric sequences to ``array.array``.
This base reproduces the checks the node can trip over: float fields refuse ints, sequence
fields refuse numpy arrays (they are not ``collections.abc.Sequence``), bytes-typed
``octet`` fields need a single byte, unknown constructor arguments fail.
"""

from __future__ import annotations

import array
from collections.abc import Sequence
from typing import Any, ClassVar

REGISTRY: dict[str, type[Message]] = {}
INT_RANGES = {"uint8": (0, 255), "int8": (-128, 127), "uint16": (0, 65535), "int16": (-32768, 32767),
              "uint32": (0, 2**32 - 1), "int32": (-(2**31), 2**31 - 1), "uint64": (0, 2**64 - 1),
              "int64": (-(2**63), 2**63 - 1)}
TYPECODES = {"double": "d", "float": "f", "uint8": "B", "int8": "b", "uint16": "H", "int16": "h",
             "uint32": "I", "int32": "i", "uint64": "Q", "int64": "q"}


def _default(type_name: str) -> Any:
    if type_name.startswith("sequence<"):
        inner = type_name[len("sequence<"):-1].split(",")[0]
        return array.array(TYPECODES[inner]) if inner in TYPECODES else []
    if type_name == "boolean":
        return False
    if type_name == "octet":
        return b"\x00"
    if type_name in INT_RANGES:
        return 0
    if type_name in ("double", "float"):
        return 0.0
    if type_name == "string":
        return ""
    return REGISTRY[type_name]()


def _check_scalar(type_name: str, value: Any) -> bool:
    if type_name == "boolean":
        return isinstance(value, bool)
    if type_name == "octet":
        return isinstance(value, bytes) and len(value) == 1
    if type_name in INT_RANGES:
        lo, hi = INT_RANGES[type_name]
        return isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi
    if type_name in ("double", "float"):
        return isinstance(value, float)
    if type_name == "string":
        return isinstance(value, str)
    return isinstance(value, REGISTRY[type_name])


def _coerce(owner: str, name: str, type_name: str, value: Any) -> Any:
    if type_name.startswith("sequence<"):
        inner, _, bound = type_name[len("sequence<"):-1].partition(",")
        if inner in TYPECODES and isinstance(value, array.array):
            if value.typecode != TYPECODES[inner]:
                raise AssertionError(f"{owner}.{name}: array.array typecode must be {TYPECODES[inner]!r}")
            items = value
        else:
            if not isinstance(value, Sequence) or isinstance(value, str):
                raise AssertionError(f"The '{name}' field of {owner} must be a set or sequence "
                                     f"(got {type(value).__name__})")
            items = list(value)
            bad = [v for v in items if not _check_scalar(inner, v)]
            if bad:
                raise AssertionError(f"The '{name}' field of {owner} must hold values of type {inner!r}, "
                                     f"got {bad[0]!r}")
        if bound and len(items) > int(bound):
            raise AssertionError(f"The '{name}' field of {owner} holds at most {bound} values")
        return array.array(TYPECODES[inner], items) if inner in TYPECODES else list(items)
    if not _check_scalar(type_name, value):
        raise AssertionError(f"The '{name}' field of {owner} must be of type {type_name!r}, got {value!r}")
    return value


class Message:
    """Typed fields listed in ``_fields_and_field_types`` (same name and format as rclpy's)."""

    _type: ClassVar[str] = ""
    _fields_and_field_types: ClassVar[dict[str, str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls._type:
            REGISTRY[cls._type] = cls

    def __init__(self, **kwargs: Any) -> None:
        unknown = set(kwargs) - set(self._fields_and_field_types)
        if unknown:
            raise AssertionError(f"Invalid arguments passed to constructor: {', '.join(sorted(unknown))}")
        for name, type_name in self._fields_and_field_types.items():
            object.__setattr__(self, name, _default(type_name))
        for name, value in kwargs.items():
            setattr(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in self._fields_and_field_types:
            raise AttributeError(f"{type(self).__name__} has no field {name!r}")
        object.__setattr__(self, name, _coerce(type(self).__name__, name, self._fields_and_field_types[name], value))

    @classmethod
    def get_fields_and_field_types(cls) -> dict[str, str]:
        return dict(cls._fields_and_field_types)

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and all(
            getattr(self, n) == getattr(other, n) for n in self._fields_and_field_types)

    def __repr__(self) -> str:
        fields = ", ".join(f"{n}={getattr(self, n)!r}" for n in self._fields_and_field_types)
        return f"{self._type}({fields})"


class Service:
    """A service type: ``Request`` and ``Response`` message classes, as rosidl generates them."""

    Request: ClassVar[type[Message]]
    Response: ClassVar[type[Message]]
