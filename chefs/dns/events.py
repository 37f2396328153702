"""What the DNS decoder returns: parsed messages and the events of one flow.

Plain dataclasses, JSON-able parts only, no framework types: ``direction`` is whatever
value the caller fed the decoder with (the chef passes the kitchen's ``Direction``), handed
back unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class DnsMessage:
    """One parsed DNS message, already in JSON-able form."""

    id: int
    is_response: bool
    header: dict[str, Any]
    questions: list[dict[str, Any]]
    answers: list[dict[str, Any]]
    authority: list[dict[str, Any]]
    additional: list[dict[str, Any]]
    edns: dict[str, Any] | None
    size: int
    counts: dict[str, int]

    @property
    def question(self) -> dict[str, Any] | None:
        return self.questions[0] if self.questions else None


@dataclass(slots=True)
class Query:
    """A query was seen (its answer, if any, comes later as a ``Lookup``)."""

    message: DnsMessage
    direction: Any
    timestamp: float | None
    retransmission: bool = False


@dataclass(slots=True)
class Lookup:
    """A query and its response; ``response`` is None for an unanswered query and
    ``query`` is None for a response whose query was not seen (then ``query_direction``
    is None too: the decoder does not know the sides, only ``response_direction``)."""

    query: DnsMessage | None
    response: DnsMessage | None
    query_direction: Any
    query_time: float | None
    response_time: float | None
    response_direction: Any = None

    @property
    def latency(self) -> float | None:
        if self.query is None or self.response is None:
            return None
        if self.query_time is None or self.response_time is None:
            return None
        return max(0.0, self.response_time - self.query_time)


@dataclass(slots=True)
class DecodeError:
    """Bytes that are not a DNS message (skipped; the flow's decoder carries on)."""

    reason: str
    size: int
    hex_prefix: str
    direction: Any
    timestamp: float | None


Event = Query | Lookup | DecodeError

