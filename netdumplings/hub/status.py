"""What the hub says about itself: status dumplings, Prometheus metrics, /healthz, /status.

Status dumplings go to every eater every ``--status-freq`` seconds, so their size is bounded
whatever the peers do: each peer is a summary of its hello (``wire.hello_summary``: known
keys, short strings, short lists) and at most ``MAX_STATUS_PEERS`` kitchens and eaters are
listed (the counts are always complete). The full list is on request: ``GET /status`` on the
metrics port (behind the metrics token, like /metrics). Metric label values (kitchen, chef,
eater names) are capped at ``MAX_LABEL_SETS`` per family, the rest counted as ``_other``.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import math
import time
from bisect import bisect_left
from typing import Any, Iterable

import msgpack
import orjson

from .._version import __version__
from ..wire.messages import STATUS_CHEF

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0)
MAX_LABEL_SETS = 1000   # label values per metric family; beyond: "_other"
MAX_STATUS_PEERS = 100  # kitchens (and eaters) listed in a status dumpling


class Histogram:
    """Prometheus-style cumulative histogram kept as plain counters (scraped rarely,
    observed often)."""

    __slots__ = ("counts", "sum", "count")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        if not value > 0:
            value = 0.0     # negative (clock skew) or NaN: nothing to add
        elif value == math.inf:
            return          # would make the sum infinite for good
        self.counts[bisect_left(LATENCY_BUCKETS, value)] += 1
        self.sum += value
        self.count += 1

    def buckets(self) -> list[tuple[str, int]]:
        out, acc = [], 0
        for bound, n in zip(LATENCY_BUCKETS + (float("inf"),), self.counts):
            acc += n
            out.append(("+Inf" if bound == float("inf") else repr(bound), acc))
        return out


def capped(counts: dict[str, int], name: str, n: int) -> None:
    """Add ``n`` to ``counts[name]``, or to ``counts["_other"]`` once the family is full."""
    if name not in counts and len(counts) >= MAX_LABEL_SETS:
        name = "_other"
    counts[name] = counts.get(name, 0) + n


class StatusReport:
    """The reporting half of ``Hub`` (a mixin: the hub's attributes are used as they are)."""

    def status(self, full: bool = False) -> dict[str, Any]:
        """The SystemStatusChef payload (netdumplings 0.5 fields first); ``full``: every
        peer listed, not only the first ``MAX_STATUS_PEERS`` of each role."""
        limit = None if full else MAX_STATUS_PEERS
        kitchens = list(self.kitchens.values())[:limit]
        eaters = list(self.eaters.values())[:limit]
        return {
            "total_dumplings_in": self.dumplings_in,
            "total_dumplings_out": self.dumplings_out,
            "server_uptime": time.time() - self.started,
            "dumpling_kitchen_count": len(self.kitchens),
            "dumpling_eater_count": len(self.eaters),
            "dumpling_kitchens": [
                {**k.info, "dumplings": k.dumplings, "invalid": k.invalid} for k in kitchens],
            "dumpling_eaters": [
                {**e.info, "sent": e.sent, "queue_depth": e.queued,
                 "queue_size": e.max_queue, "dropped": e.missed_total,
                 "policy": e.hello.policy}
                for e in eaters],
            "dumpling_kitchens_listed": len(kitchens),
            "dumpling_eaters_listed": len(eaters),
            "total_dumplings_dropped": self.dumplings_dropped + sum(
                e.missed_total for e in self.eaters.values()),
            "total_dumplings_invalid": self.dumplings_invalid,
            "queue_bytes": self.budget.used,
            "queue_bytes_limit": self.budget.limit,
            "startup_buffer_bytes": self.replay.bytes,
            "connections_refused": {f"{r}:{why}": n for (r, why), n in self.refused.items()},
            "hub_version": __version__,
            **({"hub_id": self.backplane.hub_id, "backplane": self.backplane.status(),
                "total_dumplings_remote":
                self.dumplings_remote} if self.backplane is not None else {}),
        }

    def status_dumpling(self) -> dict[str, Any]:
        return {
            "metadata": {"chef": STATUS_CHEF, "kitchen": None, "creation_time": time.time(),
                         "driver": "interval"},
            "payload": self.status(),
        }

    async def _status_loop(self) -> None:
        while True:
            await asyncio.sleep(self.status_freq)
            self.publish_status()

    def publish_status(self) -> None:
        obj = self.status_dumpling()
        jb = mb = None
        if self.backplane is not None:
            jb = orjson.dumps(obj)
            self.backplane.publish_status(jb)
        for eater in list(self.eaters.values()):
            if not eater.closing and eater.matches(STATUS_CHEF, None, "interval"):
                if eater.msgpack:
                    mb = mb or msgpack.packb(obj)
                    ok = eater.push(mb)
                else:
                    jb = jb or orjson.dumps(obj)
                    ok = eater.push(jb)
                if not ok:
                    self._full(eater)

    # -- metrics --------------------------------------------------------------------------

    def collect(self) -> Iterable[Any]:
        """Prometheus metric families (a ``prometheus_client`` custom collector)."""
        from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                            HistogramMetricFamily)
        p = "netdumplings_hub_"
        c = CounterMetricFamily(p + "dumplings_in", "Dumplings accepted from kitchens",
                                labels=["kitchen", "chef"])
        for (k, chef), n in self.in_by.items():
            c.add_metric([k, chef], n)
        yield c
        c = CounterMetricFamily(p + "dumplings_rejected", "Dumplings refused (invalid, too "
                                "big, not decodable)", labels=["kitchen", "reason"])
        for (k, why), n in self.rejected_by.items():
            c.add_metric([k, why], n)
        yield c
        out, dropped = dict(self.out_by_eater), dict(self.dropped_by_eater)
        depth: dict[str, int] = {}
        for e in self.eaters.values():
            capped(out, e.name, e.sent)
            capped(dropped, e.name, e.missed_total)
            capped(depth, e.name, e.queued)
        c = CounterMetricFamily(p + "dumplings_out", "Dumplings sent to eaters",
                                labels=["eater"])
        for name, n in out.items():
            c.add_metric([name], n)
        yield c
        c = CounterMetricFamily(p + "dumplings_dropped", "Dumplings an eater missed (its "
                                "queue was full, or it came back after a restart too late "
                                "for the startup replay)", labels=["eater"])
        for name, n in dropped.items():
            c.add_metric([name], n)
        yield c
        g = GaugeMetricFamily(p + "queue_depth", "Dumplings waiting per eater",
                              labels=["eater"])
        for name, n in depth.items():
            g.add_metric([name], n)
        yield g
        yield GaugeMetricFamily(p + "queue_bytes", "Bytes queued to all eaters together "
                                "(counted against --max-memory-mb)", value=self.budget.used)
        yield GaugeMetricFamily(p + "startup_buffer_bytes", "Bytes held for eaters coming "
                                "back after a restart (--startup-grace)",
                                value=self.replay.bytes)
        g = GaugeMetricFamily(p + "connections", "Open connections (with a valid hello)",
                              labels=["role"])
        g.add_metric(["kitchen"], len(self.kitchens))
        g.add_metric(["eater"], len(self.eaters))
        yield g
        c = CounterMetricFamily(p + "connections_refused", "Connections closed at the hello "
                                "(auth, limits, bad or missing hello), for publishing "
                                "eaters or for not reading (write_timeout)",
                                labels=["role", "reason"])
        for (role, why), n in self.refused.items():
            c.add_metric([role, why], n)
        yield c
        h = self.latency
        yield HistogramMetricFamily(p + "relay_latency_seconds", "Kitchen creation_time to "
                                    "hub send (sampled)", buckets=h.buckets(), sum_value=h.sum)
        yield GaugeMetricFamily(p + "uptime_seconds", "Seconds since the hub started",
                                value=time.time() - self.started)

    async def _http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Just enough HTTP/1.1 for Prometheus and health checks: GET, one response."""
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            parts = head.split(b"\r\n", 1)[0].split()
            path = parts[1].split(b"?")[0] if len(parts) >= 2 else b""
            if path in (b"/metrics", b"/status") and not self._metrics_authorised(head):
                status, ctype, body = b"401 Unauthorized", b"text/plain", \
                    b"/metrics and /status need Authorization: Bearer <metrics token>\n"
                self._refuse("metrics", "auth")
            elif path == b"/metrics":
                from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
                status, ctype, body = b"200 OK", CONTENT_TYPE_LATEST.encode(), \
                    generate_latest(_Registry(self))
            elif path == b"/status":
                status, ctype, body = b"200 OK", b"application/json", orjson.dumps(
                    self.status(full=True))
            elif path == b"/healthz":
                status, ctype, body = b"200 OK", b"application/json", orjson.dumps(
                    {"status": "ok", "kitchens": len(self.kitchens),
                     "eaters": len(self.eaters), "uptime": time.time() - self.started})
            else:
                status, ctype, body = b"404 Not Found", b"text/plain", b"not found\n"
            extra = b"WWW-Authenticate: Bearer\r\n" if status.startswith(b"401") else b""
            writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Type: " + ctype +
                         b"\r\nContent-Length: %d\r\n" % len(body) + extra +
                         b"Connection: close\r\n\r\n" + body)
            await writer.drain()
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ConnectionError):
            pass
        finally:
            writer.close()

    def _metrics_authorised(self, head: bytes) -> bool:
        if self.metrics_token is None:
            return True
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"authorization":
                scheme, _, token = value.strip().partition(b" ")
                return scheme.lower() == b"bearer" and hmac.compare_digest(
                    token.strip(), self.metrics_token.encode())
        return False


def loopback(address: str | None) -> bool:
    if not address:
        return False
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


class _Registry:
    """What ``generate_latest`` needs: ``collect()`` - one hub's metrics, no globals, so
    several hubs in one process (tests) do not mix."""

    def __init__(self, hub: Any) -> None:
        self.hub = hub

    def collect(self) -> Iterable[Any]:
        return self.hub.collect()
