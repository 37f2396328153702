"""gRPC's own headers read as values: status codes by name, the headers that belong to
the protocol (so that the rest is the application's metadata), ``grpc-timeout`` in
seconds and the percent-encoded ``grpc-message`` (gRPC over HTTP/2 spec)."""

from __future__ import annotations

from urllib.parse import unquote

STATUS_NAMES = [
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
    "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
    "UNAUTHENTICATED",
]
#: Headers that belong to HTTP/2 or the gRPC protocol itself, not to the application.
RESERVED_HEADERS = frozenset({
    "content-type", "te", "user-agent", "grpc-timeout", "grpc-encoding",
    "grpc-accept-encoding", "grpc-status", "grpc-message", "grpc-status-details-bin",
    "content-length", "accept-encoding", "grpc-message-type",
})


def status_name(code: int | None) -> str | None:
    if code is None:
        return None
    return STATUS_NAMES[code] if 0 <= code < len(STATUS_NAMES) else f"CODE_{code}"


_TIMEOUT_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


def timeout_seconds(value: str | None) -> float | None:
    """grpc-timeout: up to 8 digits and a unit (H M S m u n), in seconds; None if not that."""
    if not value or len(value) > 9 or value[-1] not in _TIMEOUT_UNITS \
            or not value[:-1].isdigit() or not value[:-1].isascii():
        return None
    return int(value[:-1]) * _TIMEOUT_UNITS[value[-1]]


def percent_decode(value: str) -> str:
    """grpc-message is percent-encoded UTF-8."""
    if "%" not in value:
        return value
    return unquote(value, errors="backslashreplace")
