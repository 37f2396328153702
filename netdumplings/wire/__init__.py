"""Wire: what kitchens, the hub and eaters say to each other (docs/protocol.md).

The dumpling (``metadata`` + ``payload``, its JSON Schema, encoding), the hello and welcome
messages, ports and close codes, the kitchen's sender (``HubSender``), netdumplings 0.5's
``Dumpling`` as eaters receive it, and keeping tokens out of logs.

May import: the standard library, pydantic, orjson, msgpack, websockets (the sender) and
``netdumplings.exceptions``. It is the language every other stage shares, so it imports
none of them.
"""

from .._lazy import lazy_exports

__all__ = ["DEFAULT_HOST", "IN_PORT", "METRICS_PORT", "NOTICE_CHEF", "OUT_PORT", "PROTOCOL",
           "STATUS_CHEF", "DumplingMetadata", "EaterHello", "HubSender", "KitchenHello",
           "Welcome", "decode", "encode", "json_schema"]

__getattr__, __dir__ = lazy_exports(__name__, {
    **{name: ".messages" for name in (
        "DEFAULT_HOST", "IN_PORT", "METRICS_PORT", "NOTICE_CHEF", "OUT_PORT", "PROTOCOL",
        "STATUS_CHEF", "EaterHello", "KitchenHello", "Welcome")},
    **{name: ".dumpling" for name in ("DumplingMetadata", "decode", "encode", "json_schema")},
    "HubSender": ".sender",
})
