"""gRPC calls seen on HTTP/2 connections, decoded without a schema.

gRPC is HTTP/2 with ``content-type: application/grpc*``, ``:path`` = ``/service/method``,
length-prefixed messages (1 compressed-flag byte, 4-byte big-endian length) in the DATA of
each direction, and the outcome in the trailers (``grpc-status``, ``grpc-message``) or, for
calls answered without messages, in the single "Trailers-Only" HEADERS frame.

The chef reuses ``chefs.http2.Http2Decoder`` (one per flow) with a body sink that splits the
DATA into messages as it arrives, keeping only the first ``max_message_bytes`` of each, so
a long stream costs bounded memory. Without ``.proto`` files the messages are decoded
generically from the protobuf wire format (field numbers, wire types, values; nested
messages where the bytes parse as one), within size, field-count and depth caps.

The package, one job per module. The decoder side imports only the standard library and
its own modules (no kitchen, flows, scapy, sockets or asyncio, not even HTTP/2): ``decoder``
(``GrpcMessages``, the length-prefixed message framer, and bounded ``decompress``),
``protobuf`` (schema-less ``decode_protobuf``), ``metadata`` (status names, grpc-timeout,
grpc-message). ``payload`` builds a call's JSON from an HTTP/2 stream (it may import the
HTTP/2 package's sans-I/O modules); only ``chef`` (``GrpcChef``, an ``Http2Chef``)
imports the framework.
"""

from __future__ import annotations

from .chef import GrpcChef
from .decoder import Budget, GrpcMessages, decompress
from .metadata import RESERVED_HEADERS, STATUS_NAMES, status_name
from .protobuf import decode_protobuf

#: ``decompress`` by the name it had before the package split (tests use it).
_decompress = decompress

__all__ = ["Budget", "GrpcChef", "GrpcMessages", "RESERVED_HEADERS", "STATUS_NAMES",
           "decode_protobuf", "decompress", "status_name"]
