"""What ``nd-sniff --workers N`` must keep from one kitchen: a view of a run's dumplings that
two runs share when they made the same dumplings (tests and the benchmark compare them)."""

from __future__ import annotations

from typing import Any

from ..wire.dumpling import DRIVER_INTERVAL


def comparable(dumplings: list[dict[str, Any]]) -> dict[str, Any]:
    """What ``--workers N`` must keep from ``--workers 1``: per flow (transport and both
    endpoints) the dumplings of each chef in order; per chef the dumplings that name no
    flow, as a multiset; per chef the number of interval dumplings that name no flow
    (totals) and the last one. Flow
    ids, sequence numbers and creation times are left out: they number, not describe."""
    def strip(payload: Any, under: str = "") -> Any:
        if isinstance(payload, dict):
            return {k: strip(v, k) for k, v in payload.items()
                    if not (k == "id" and under == "flow") and k != "circuit"}
        if isinstance(payload, list):
            return [strip(v, under) for v in payload]
        return payload

    flows: dict[Any, list[Any]] = {}
    loose: dict[str, list[str]] = {}
    intervals: dict[str, list[Any]] = {}
    for d in dumplings:
        md, payload = d["metadata"], d["payload"]
        chef = md["chef"]
        flow = payload.get("flow") if isinstance(payload, dict) else None
        if isinstance(flow, dict):
            # whichever driver: a flow's dumpling made at a poke in one kitchen may be made
            # by a later packet in another (TcpConnChef's lingering summaries)
            key = (chef, flow.get("transport"), flow.get("client"), flow.get("server"))
            flows.setdefault(key, []).append(strip(payload))
        elif md.get("driver") == DRIVER_INTERVAL:
            intervals.setdefault(chef, []).append(payload)
        else:
            loose.setdefault(chef, []).append(repr(strip(payload)))
    return {"flows": flows,
            "loose": {c: sorted(v) for c, v in loose.items()},
            "intervals": {c: (len(v), _canon(strip(v[-1]))) for c, v in intervals.items()}}


def _canon(value: Any) -> Any:
    """Lists of records whose order says nothing (monitors, PVs) compared as sorted."""
    if isinstance(value, dict):
        return {k: _canon(v) for k, v in value.items()}
    if isinstance(value, list):
        items = [_canon(v) for v in value]
        try:
            return sorted(items, key=repr)
        except TypeError:
            return items
    return value
