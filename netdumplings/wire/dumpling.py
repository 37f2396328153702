"""Dumplings: the JSON documents kitchens make and eaters consume.

``{"metadata": {...}, "payload": <any JSON>}`` - the netdumplings 0.5 shape. The metadata
fields ``chef``, ``kitchen``, ``creation_time`` and ``driver`` are 0.5's; ``sequence``,
``capture_time`` and ``host`` are additions that old eaters ignore. The pydantic models are
the contract at the boundaries (hub validation, eater parsing, the exported JSON Schema); the
kitchen builds plain dicts on its hot path and encodes them once with orjson.
"""

from __future__ import annotations

import base64
import enum
import json
import sys
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

DRIVER_PACKET = "packet"
DRIVER_INTERVAL = "interval"


class DumplingMetadata(BaseModel):
    """Who made a dumpling, when, and why."""

    model_config = ConfigDict(extra="allow")

    chef: str = Field(description="Name of the chef (class name) that made the payload.")
    kitchen: str | None = Field(
        description="Name of the kitchen; null for dumplings the hub makes itself.")
    creation_time: float = Field(description="When the dumpling was made (epoch seconds).")
    driver: Literal["packet", "interval"] = Field(
        description="What drove it: a packet (or flow data) or an interval poke.")
    sequence: int | None = Field(
        default=None,
        description="Per-kitchen sequence number, 1 for the first dumpling of a kitchen run and "
                    "+1 for each next one; a jump tells an eater how many it missed.")
    capture_time: float | None = Field(
        default=None,
        description="Capture timestamp (epoch seconds) of the packet that drove the dumpling.")
    host: str | None = Field(default=None, description="Host name of the kitchen's machine.")


class Dumpling(BaseModel):
    """A dumpling as it travels on the wire."""

    model_config = ConfigDict(extra="allow")

    metadata: DumplingMetadata
    payload: Any = Field(description="Anything JSON: what the chef returned.")


def _default(obj: Any) -> Any:
    """Make the usual non-JSON values chefs return serialisable instead of failing."""
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if isinstance(obj, (bytes, bytearray, memoryview)):
        raw = bytes(obj)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return {"$base64": base64.b64encode(raw).decode("ascii")}
    if isinstance(obj, enum.Enum):
        return obj.value
    if hasattr(obj, "tolist"):  # numpy arrays and scalars
        return obj.tolist()
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


_OPTS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def encode(dumpling: dict[str, Any]) -> bytes:
    """Serialise a dumpling dict to compact JSON bytes (raises TypeError/ValueError if a
    payload cannot be represented)."""
    try:
        return orjson.dumps(dumpling, default=_default, option=_OPTS)
    except orjson.JSONEncodeError as exc:
        raise TypeError(str(exc)) from exc


def decode(data: bytes | str) -> Any:
    """Parse JSON (bytes or str) - fast, strict."""
    return orjson.loads(data)


def make_metadata(chef: str, kitchen: str | None, driver: str, creation_time: float,
                  sequence: int | None = None, capture_time: float | None = None,
                  host: str | None = None) -> dict[str, Any]:
    md: dict[str, Any] = {"chef": chef, "kitchen": kitchen, "creation_time": creation_time,
                          "driver": driver}
    if sequence is not None:
        md["sequence"] = sequence
    if capture_time is not None:
        md["capture_time"] = capture_time
    if host is not None:
        md["host"] = host
    return md


def json_schema() -> dict[str, Any]:
    schema = Dumpling.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://netdumplings.invalid/schema/dumpling.json"
    schema["title"] = "Dumpling"
    schema["description"] = (
        "A netdumplings dumpling as sent by kitchens to the hub (in-port) and by the hub to "
        "eaters (out-port), one per WebSocket text message unless a batch/msgpack encoding "
        "was negotiated in the hello.")
    return schema


if __name__ == "__main__":  # python -m netdumplings.wire.dumpling > docs/dumpling.schema.json
    json.dump(json_schema(), sys.stdout, indent=2)
    sys.stdout.write("\n")
