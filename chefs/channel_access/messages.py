"""One framed CA message to its command name and JSON-able fields, by caproto's parser.

caproto reads the message (``read_from_bytestream`` for a circuit, ``read_datagram`` for
UDP) and decodes its data array and DBR metadata; this module only bounds what it is
asked to decode (a data count may lie) and turns the command's arguments into fields.
"""

from __future__ import annotations

import ctypes
from typing import Any

from caproto import CLIENT
from caproto._commands import (Commands, extract_data, extract_metadata, read_datagram,
                               read_from_bytestream)
from caproto._dbr import DBR_TYPES, MAX_STRING_SIZE, ChannelType, native_type

from .values import header_dict, jsonable, params


def read_command(message: bytearray, sender: tuple[str, int] | None, role: Any) -> Any:
    """caproto's command object for one whole message sent by ``role`` (raises on
    anything malformed); ``sender`` is given for a datagram."""
    if sender is not None:
        (command,) = read_datagram(message, sender, role)
    else:
        _, command, _ = read_from_bytestream(message, role)
    return command


def command_fields(command: Any, *, include_metadata: bool, max_data_items: int
                   ) -> dict[str, Any]:
    """The arguments of a caproto command as JSON-able fields, in wire order."""
    fields: dict[str, Any] = {}
    for param in params(type(command)):
        if param == "data":
            fields.update(_data(command, max_data_items))
        elif param == "metadata":
            fields["metadata"] = (_metadata(command, max_data_items) if include_metadata
                                  else None)
        elif param == "original_request":
            original = command.original_request
            request = header_dict(original)
            cls = Commands[CLIENT].get(original.command)
            request["name"] = cls.__name__ if cls else None
            fields[param] = request
        else:
            try:
                value = getattr(command, param)
            except Exception:  # e.g. a status code caproto does not know
                fields.setdefault("unreadable", []).append(param)
                value = None
            fields[param] = jsonable(value, max_data_items)
    return fields


def _data(command: Any, max_data_items: int) -> dict[str, Any]:
    """The data array, decoded by caproto but never more than ``max_data_items``.

    The count comes from the header and may lie; asking caproto for more strings than
    the payload holds would loop for each one, so the count is clamped first."""
    header = command.header
    if len(command.buffers) < 2:
        return {"data": None}
    raw = command.buffers[1]
    native = native_type(ChannelType(header.data_type))
    item_size = (MAX_STRING_SIZE if native is ChannelType.STRING
                 else ctypes.sizeof(DBR_TYPES[native]))
    available = len(raw) // item_size
    total = min(header.data_count, available)
    shown = min(total, max_data_items)
    data = extract_data(memoryview(raw)[:shown * item_size], header.data_type, shown)
    out: dict[str, Any] = {"data": jsonable(data, max_data_items)}
    if total > shown or header.data_count > available:
        out["data_items"] = total
        out["data_truncated"] = True
    return out


def _metadata(command: Any, max_data_items: int) -> Any:
    if not command.buffers:
        return None
    raw = command.buffers[0]
    if isinstance(raw, (bytes, bytearray, memoryview)) and not len(raw):
        return None
    return jsonable(extract_metadata(raw, command.header.data_type), max_data_items)
