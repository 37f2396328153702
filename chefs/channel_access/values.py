"""caproto's values (enums, status codes, DBR structs, arrays, bytes) as JSON values."""

from __future__ import annotations

import ctypes
import enum
import inspect
import math
from typing import Any

from caproto._status import CAStatusCode


def _text(raw: bytes | bytearray | memoryview) -> str:
    """Bytes as text when printable (NUL padding dropped), else hex."""
    data = bytes(raw)
    end = data.find(b"\0")
    trimmed = data if end < 0 else data[:end]
    try:
        text = trimmed.decode("utf-8")
    except UnicodeDecodeError:
        text = trimmed.decode("latin-1")
    if text.isprintable() and (end < 0 or not data[end:].strip(b"\0")):
        return text
    return data.hex()


def jsonable(value: Any, max_items: int = 64) -> Any:
    """caproto values (enums, status codes, DBR structs, arrays, bytes) as JSON values."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, CAStatusCode):
        return value.name
    if isinstance(value, enum.Enum):
        name = value.name
        return name if name is not None else int(value.value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _text(value)
    if isinstance(value, ctypes.Array):
        return jsonable(list(value)[:max_items], max_items)
    if isinstance(value, ctypes.Structure):
        return {name: jsonable(getattr(value, name), max_items)
                for name, *_ in type(value)._fields_}
    if hasattr(value, "tolist"):  # numpy arrays and scalars, array.array
        value = value.tolist()
        if not isinstance(value, list):
            return jsonable(value, max_items)
    try:
        items = list(value)[:max_items]
    except TypeError:
        return repr(value)[:200]
    return [jsonable(v, max_items) for v in items]


_PARAMS: dict[type, tuple[str, ...]] = {}


def params(cls: type) -> tuple[str, ...]:
    """The constructor arguments of a caproto command class: its fields, in wire order."""
    found = _PARAMS.get(cls)
    if found is None:
        found = _PARAMS[cls] = tuple(inspect.signature(cls).parameters)
    return found


def header_dict(header: Any) -> dict[str, Any]:
    """A CA header (a ctypes structure) as a dict of its integer fields."""
    return {name: int(getattr(header, name)) for name, *_ in type(header)._fields_}

