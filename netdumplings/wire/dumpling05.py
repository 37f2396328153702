"""netdumplings 0.5's ``Dumpling`` and ``DumplingDriver``, and what eaters receive.

0.5 modelled a dumpling as an object (``dumpling.payload``, ``dumpling.chef_name``,
``dumpling.driver`` a ``DumplingDriver``); today's kitchens and eaters pass plain dicts
(``dumpling["payload"]``). ``DumplingDict`` is both at once: a ``dict`` (so today's eaters,
``json.dumps`` and ``orjson`` see exactly the dict they always did) that also answers 0.5's
attribute names and is an instance of ``Dumpling``, so an eater written for either API
works unchanged.

Kept free of heavy imports: ``netdumplings.eater`` uses it for every dumpling it hands out.
"""

from __future__ import annotations

import enum
import json
import time
from typing import Any

import orjson

from ..exceptions import InvalidDumpling, InvalidDumplingPayload


class DumplingDriver(enum.Enum):
    """What made a dumpling: a packet (or flow data) or an interval poke. The wire
    carries the member's name (``"packet"``, ``"interval"``)."""

    packet = 1
    interval = 2


_DRIVERS = {d.name: d for d in DumplingDriver}


def _driver_name(driver: Any) -> Any:
    return driver.name if isinstance(driver, DumplingDriver) else driver


def _kitchen_name(kitchen: Any) -> Any:
    """0.5 stored a kitchen object on dumplings it made and a kitchen *name* on those it
    parsed; either way the wire wants the name."""
    if kitchen is None or isinstance(kitchen, str):
        return kitchen
    return getattr(kitchen, "name", None)


def _payload_repr(payload: Any) -> str:
    return "None" if payload is None else f"<{type(payload).__name__}>"


def _driver_repr(driver: Any) -> str:
    if isinstance(driver, DumplingDriver):
        return f"DumplingDriver.{driver.name}"
    return repr(driver)


class Dumpling:
    """One dumpling, as netdumplings 0.5 modelled it.

    ``chef`` is the chef that made the payload (its ``name`` and ``kitchen`` are read from
    it) or just a chef name; ``creation_time`` defaults to now (epoch seconds).
    """

    chef: Any
    chef_name: Any
    kitchen: Any
    driver: Any
    creation_time: Any
    payload: Any

    def __init__(self, *, chef: Any, driver: DumplingDriver = DumplingDriver.packet,
                 creation_time: float | None = None, payload: Any) -> None:
        self.chef = chef
        try:
            self.chef_name = chef.name
            self.kitchen = chef.kitchen
        except AttributeError:  # a chef name rather than a chef
            self.chef_name = chef
            self.kitchen = None
        self.driver = driver
        self.creation_time = time.time() if creation_time is None else creation_time
        self.payload = payload

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(chef={self.chef!r}, driver={_driver_repr(self.driver)}, "
                f"creation_time={self.creation_time}, payload={_payload_repr(self.payload)})")

    @classmethod
    def from_json(cls, json_dumpling: Any) -> "Dumpling":
        """Parse a JSON-serialised dumpling; ``InvalidDumpling`` says what is wrong with it
        (not JSON, not a dumpling, a missing key, a driver other than packet/interval)."""
        try:
            obj = json.loads(json_dumpling)
        except (TypeError, ValueError) as exc:
            raise InvalidDumpling(f"Could not interpret dumpling JSON: {exc}") from exc
        if not isinstance(obj, dict) or not isinstance(obj.get("metadata"), dict):
            raise InvalidDumpling("Dumpling JSON is not an object with a metadata object")
        metadata = obj["metadata"]
        try:
            driver = _DRIVERS.get(metadata["driver"]) if isinstance(
                metadata["driver"], str) else None
            if driver is None:
                raise InvalidDumpling("Dumpling driver was not 'packet' or 'interval'")
            dumpling = cls(chef=metadata["chef"], driver=driver,
                           creation_time=metadata["creation_time"], payload=obj["payload"])
            dumpling.kitchen = metadata["kitchen"]
        except KeyError as exc:
            raise InvalidDumpling(f"Dumpling JSON was missing key: {exc}") from exc
        return dumpling

    def _wire_metadata(self) -> dict[str, Any]:
        return {"chef": self.chef_name, "kitchen": _kitchen_name(self.kitchen),
                "creation_time": self.creation_time, "driver": _driver_name(self.driver)}

    def to_json(self) -> str:
        """The dumpling as JSON text; ``InvalidDumplingPayload`` if the payload cannot be
        serialised."""
        try:
            return json.dumps({"metadata": self._wire_metadata(), "payload": self.payload})
        except (TypeError, ValueError) as exc:
            raise InvalidDumplingPayload(f"Could not create dumpling: {exc}") from exc


class DumplingDict(dict, Dumpling):  # type: ignore[misc]
    """A received dumpling: the wire's dict, which also reads as a 0.5 ``Dumpling``.

    Equality, ``repr`` and serialisation are the dict's (nothing changes for code that
    treats it as one); the attributes read and write the dict's ``metadata`` and
    ``payload``. ``chef`` is the chef's name and ``kitchen`` the kitchen's, as 0.5's
    ``Dumpling.from_json`` gave them; ``driver`` is a ``DumplingDriver``.
    """

    __slots__ = ()
    __repr__ = dict.__repr__

    def _md(self) -> dict[str, Any]:
        md = self.get("metadata")
        if not isinstance(md, dict):
            md = self["metadata"] = {}
        return md

    @property  # type: ignore[override]
    def payload(self) -> Any:
        return self.get("payload")

    @payload.setter
    def payload(self, value: Any) -> None:
        self["payload"] = value

    @property  # type: ignore[override]
    def chef_name(self) -> Any:
        return self._md().get("chef")

    @chef_name.setter
    def chef_name(self, value: Any) -> None:
        self._md()["chef"] = value

    chef = chef_name  # type: ignore[assignment]

    @property  # type: ignore[override]
    def kitchen(self) -> Any:
        return self._md().get("kitchen")

    @kitchen.setter
    def kitchen(self, value: Any) -> None:
        self._md()["kitchen"] = _kitchen_name(value)

    @property  # type: ignore[override]
    def driver(self) -> Any:
        raw = self._md().get("driver")
        return _DRIVERS.get(raw, raw) if isinstance(raw, str) else raw

    @driver.setter
    def driver(self, value: Any) -> None:
        self._md()["driver"] = _driver_name(value)

    @property  # type: ignore[override]
    def creation_time(self) -> Any:
        return self._md().get("creation_time")

    @creation_time.setter
    def creation_time(self, value: Any) -> None:
        self._md()["creation_time"] = value

    def _wire_metadata(self) -> dict[str, Any]:
        return self._md()

    def to_json(self) -> str:
        """The whole dumpling (every metadata field the hub relayed) as JSON text."""
        try:
            return orjson.dumps(self, option=orjson.OPT_NON_STR_KEYS).decode()
        except TypeError as exc:
            raise InvalidDumplingPayload(f"Could not create dumpling: {exc}") from exc


__all__ = ["Dumpling", "DumplingDict", "DumplingDriver"]
