"""A kitchen on several cores: ``nd-sniff --workers N``.

One kitchen to the outside (one hub connection, one name, one sequence of dumplings), N
worker processes inside, each a ``Kitchen`` with its own flow table:

* **Files and stdin**: this process (the *reader*) reads the capture, picks a worker per
  packet with ``shard.Sharder`` (both directions of a flow, and what a chef needs across
  flows, to one worker), and sends the packets in batches through a pipe, one pickle per
  batch of ``BATCH`` packets, never waiting on one worker while another runs dry
  (``netdumplings.kitchen.handoff``).
* **Live**: the workers share each interface through a ``PACKET_FANOUT`` group (kernel
  flow hash, symmetric; IPv4 fragments defragmented by the kernel first), each with its
  own socket buffer and drop counter (see ``netdumplings.capture.fanout``).

Chefs run where their ``shard`` class attribute says (``chef.DumplingChef.shard``):
``"flows"`` chefs in every worker; ``"merge"`` chefs in every worker too, their totals
merged at every poke into one more instance here, which makes the interval dumpling;
``"reader"`` chefs (any chef that does not say) here, on every packet, in capture order.

Workers send their dumplings back encoded; the reader renumbers ``sequence`` so eaters see
one gapless sequence (``netdumplings.kitchen.workerout``). Flow ids are numbered per worker (worker i: i+1, i+1+N, ...), unique
in the kitchen. A worker that dies ends the capture: the others finish, the kitchen says
which one died and exits non-zero. Nothing waits without a bound.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from multiprocessing.connection import Connection, wait
from typing import Any, Callable, Iterable

from .chef import DumplingChef
from ..wire.dumpling import DRIVER_INTERVAL
from .handoff import Feeder, enlarge
from .kitchen import MAX_CATCH_UP_POKES, Kitchen, KitchenStats, Sink
from ..capture.packet import NsPacket, Packet
from .shard import MERGE, READER, Sharder, shard_mode
from .workerout import DefragTotals, SequencedSink, add_up, merge_stats
from .workerproc import BATCH, worker_main

log = logging.getLogger("netdumplings.workers")

#: Seconds a paused stream's partial batches wait before they are sent.
IDLE_FLUSH = 0.05
#: Seconds a worker is given to finish its flows and report, at the end.
FINISH_TIMEOUT = 60.0
#: Seconds to wait for a worker to exit after it reported (or was told to stop).
EXIT_TIMEOUT = 5.0

def auto_workers() -> int:
    """``--workers auto``: one per core left after the reader (at least 1)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, cores - 1)


class WorkerDied(Exception):
    """A worker process ended without finishing (crashed, killed, or a chef bug)."""


class ShardedKitchen:
    """N worker kitchens behind the interface of one ``Kitchen`` (``run``, ``finish``,
    ``stats``, ``chef_errors``, ``chef_seconds``), for ``nd-sniff``."""

    def __init__(self, workers: int, name: str, chef_classes: list[type], *, sink: Sink,
                 wants_dict: bool = False, poke_interval: float | None = 5.0,
                 chef_options: dict[str, dict[str, Any]] | None = None,
                 time_chefs: bool = False, decapsulate: bool = True,
                 live: Any = None, **kitchen_kwargs: Any) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        self.n = workers
        self.name = name
        self.poke_interval = poke_interval
        chef_options = chef_options or {}
        modes = {cls: shard_mode(cls) for cls in chef_classes}
        self.modes = {cls.__name__: m for cls, m in modes.items()}
        self._out = SequencedSink(sink, wants_dict)
        emit = lambda d, b: self._out(b)  # noqa: E731
        common = dict(poke_interval=poke_interval, time_chefs=time_chefs,
                      decapsulate=decapsulate, **kitchen_kwargs)
        # The reader's own kitchen: "reader" chefs see every packet here.
        reader_classes = [c for c, m in modes.items() if m == READER]
        self.reader = Kitchen(name, reader_classes, sink=emit, chef_options={
            k: v for k, v in chef_options.items() if any(c.__name__ == k for c in reader_classes)},
            **common)
        # One more instance of each worker chef, here: the "merge" ones get no packets, only
        # merged totals; the others are only asked what they are (``chefs``).
        self.worker_classes = [c for c, m in modes.items() if m != READER]
        self.merger = Kitchen(name, self.worker_classes, sink=emit, chef_options={
            k: v for k, v in chef_options.items()
            if any(c.__name__ == k for c in self.worker_classes)},
            poke_interval=poke_interval, decapsulate=decapsulate)
        self._merge_chefs = [c for c in self.merger.chefs if modes[type(c)] == MERGE]
        self._worker_args = dict(name=name, classes=self.worker_classes,
                                 chef_options={k: v for k, v in chef_options.items()
                                               if any(c.__name__ == k
                                                      for c in self.worker_classes)},
                                 common=common, workers=workers)
        if reader_classes:
            log.info("%s: %s run in the reader process, which sees every packet (they do not "
                     "say how to share flows between workers: see DumplingChef.shard)", name,
                     ", ".join(c.__name__ for c in reader_classes))
        if not self.worker_classes:
            log.warning("%s: --workers %d: no chef can run in a worker, all run in the "
                        "reader (see DumplingChef.shard)", name, workers)
        self.stats = KitchenStats()
        self._defrag = DefragTotals()
        self.stats.defrag = self._defrag  # type: ignore[assignment]
        self.chef_seconds: dict[str, float] | None = {} if time_chefs else None
        self._chef_errors: dict[str, int] = {}
        self.sharder = Sharder(workers, decapsulate)
        self.now: float | None = None
        self._poke_no = 0
        self._states: dict[int, dict[int, dict[str, Any]]] = {}
        self._poke_times: dict[int, float | None] = {}
        self._procs: list[multiprocessing.process.BaseProcess] = []
        self._reported: set[int] = set()
        self.feed = Feeder(BATCH, self._lost, lambda i: self._procs[i].is_alive(),
                           self._reported)
        self._from: list[Connection] = []
        self._live_stats: dict[int, dict[str, int]] = {}
        self._live_counts: dict[int, int] = {}
        #: Per worker: the packets it cooked (its final report), how even the split was.
        self.worker_packets: dict[int, int] = {}
        self.died: list[str] = []
        self.failed = threading.Event()
        self._collector: threading.Thread | None = None
        self._live = live
        self._finished = False
        self._reading = False
        #: The source is a stream that may pause (stdin, a pipe): batches are sent after
        #: ``IDLE_FLUSH`` seconds without a packet rather than when full.
        self.streaming = False
        self._lock = threading.Lock()

    # -- processes ------------------------------------------------------------------------

    def start(self) -> None:
        """Fork the workers (before any thread of ours starts: ``fork`` copies one thread)."""
        ctx = multiprocessing.get_context("fork")
        sources = self._live.open(self.n) if self._live is not None else [None] * self.n
        for i in range(self.n):
            to_r, to_w = os.pipe()
            enlarge(to_w)
            from_r, from_w = ctx.Pipe(duplex=False)
            enlarge(from_w.fileno())   # dumplings: 0.3 a packet, 1.2 KB each in the bench mix
            # the worker closes the reader's ends it inherits (else it never sees EOF)
            inherited = [to_w] + [o.fd for o in self.feed.outlets]
            proc = ctx.Process(target=worker_main, name=f"{self.name}-worker-{i + 1}",
                               args=(i, self._worker_args, to_r, from_w, sources[i],
                                     inherited), daemon=True)
            proc.start()
            os.close(to_r)
            from_w.close()
            self._procs.append(proc)
            self.feed.add(to_w)
            self._from.append(from_r)
        if self._live is not None:
            self._live.close_parent_copies()
        self._collector = threading.Thread(target=self._collect, name="worker-collector",
                                           daemon=True)
        self._collector.start()

    def start_live(self, capture: Any) -> None:
        """Live: open the workers' fanout sockets (``fanout.FanoutCapture``), then fork."""
        self._live = capture
        capture.kitchen = self
        if capture.count is not None:   # --count: the reader needs the counts sooner
            self._worker_args["report_mask"] = 0x3F
        self.start()

    @property
    def sender(self) -> Any:
        return getattr(self.reader, "sender", None)

    @sender.setter
    def sender(self, value: Any) -> None:
        # PacketForwardChef (a reader chef) reports the outbox's drops
        setattr(self.reader, "sender", value)
        setattr(self.merger, "sender", value)

    def describe_worker(self, i: int) -> str:
        proc = self._procs[i]
        return f"worker {i + 1} of {self.n} (pid {proc.pid})"

    def _lost(self, i: int) -> None:
        if i in self._reported:
            return
        proc = self._procs[i]
        proc.join(EXIT_TIMEOUT)
        code = proc.exitcode
        why = (f"killed by signal {-code}" if code is not None and code < 0
               else f"exit status {code}" if code is not None else "stopped answering")
        msg = f"{self.describe_worker(i)} died ({why})"
        if msg not in self.died:
            self.died.append(msg)
            log.error("%s: %s", self.name, msg)
        self._reported.add(i)
        self.failed.set()
        if self._reading and threading.current_thread() is not threading.main_thread():
            # The reader may be blocked reading stdin: a signal ends the wait (PEP 475
            # retries the read after a handler that returns; KeyboardInterrupt does not).
            self._reading = False
            ident = threading.main_thread().ident
            if ident is not None:
                signal.pthread_kill(ident, signal.SIGINT)

    # -- results --------------------------------------------------------------------------

    def _collect(self) -> None:
        """The collector thread: dumplings, poke states and final reports from workers."""
        pending: dict[Any, int] = {conn: i for i, conn in enumerate(self._from)}
        while pending:
            ready: list[Any] = wait(list(pending), timeout=0.5)
            for conn in ready:
                i = pending[conn]
                try:
                    msg: Any = conn.recv()
                except (EOFError, OSError):
                    del pending[conn]
                    if i not in self._reported:
                        self._lost(i)
                    continue
                kind = msg[0]
                if kind == "D":
                    self._out.many(msg[1])
                elif kind == "S":
                    self._state(i, msg[1], msg[2])
                elif kind == "C":
                    self._live_counts[i] = msg[1]
                elif kind == "Z":
                    self._final(i, msg[1])
                    self._reported.add(i)
        # any poke whose states will not all come (a worker died): nothing to merge

    def _state(self, i: int, poke: int, states: dict[str, Any]) -> None:
        got = self._states.setdefault(poke, {})
        got[i] = states
        if len(got) < self.n:
            return
        del self._states[poke]
        now = self._poke_times.pop(poke, None)
        merger = self.merger
        merger.now = now
        for chef in self._merge_chefs:
            try:
                chef.merge_worker_states([got[w][chef.name] for w in range(self.n)])
            except Exception as exc:
                merger._chef_error(chef, "merge_worker_states raised", exc)
                continue
            merger._call(chef, chef.interval_handler, (self.poke_interval,), DRIVER_INTERVAL,
                         now)

    def _final(self, i: int, report: dict[str, Any]) -> None:
        merge_stats(self.stats, report["stats"])
        self.worker_packets[i] = report["stats"]["packets"]
        self._defrag.add(*report["defrag"])
        add_up(self._chef_errors, report["chef_errors"])
        if self.chef_seconds is not None:
            add_up(self.chef_seconds, report["chef_seconds"])
        if report.get("live") is not None:
            self._live_stats[i] = report["live"]

    # -- the Kitchen interface --------------------------------------------------------------

    def poke(self) -> None:
        """Every worker runs its interval chefs and sends its totals; the reader's chefs are
        poked here; the merged interval dumplings follow once every worker has answered."""
        self._poke_no += 1
        self._poke_times[self._poke_no] = self.now
        for w in range(self.n):
            self.feed.flush(w)
            self.feed.send(w, ("P", self._poke_no, self.now))
        self.reader.poke()

    def run(self, source: Iterable[Packet | None], *, stop: Callable[[], bool] | None = None,
            progress: Callable[[], None] | None = None, live: bool = False) -> None:
        """Read ``source`` and hand each packet to its worker (files and stdin); poke every
        ``poke_interval`` seconds of capture time, as ``Kitchen.run`` does."""
        if live:
            return self._run_live(source, stop)
        if not self._procs:
            self.start()
        flusher = None
        if self.streaming:
            source = self._guarded(source)
            done = threading.Event()
            flusher = threading.Thread(target=self._flush_idle, args=(done,), daemon=True)
            flusher.start()
        self._reading = threading.current_thread() is threading.main_thread()
        try:
            self._read(source, stop, progress)
        except KeyboardInterrupt:
            if not self.failed.is_set():
                raise          # the user's Ctrl-C: nd-sniff finishes the kitchen
        finally:
            self._reading = False
            if flusher is not None:
                done.set()
                flusher.join()

    def _guarded(self, source: Iterable[Packet | None]) -> Iterable[Packet | None]:
        """A stream (stdin, a pipe) can pause: the reader holds ``_lock`` except while it
        waits for the next packet, so ``_flush_idle`` can send what is batched meanwhile."""
        lock = self._lock
        for packet in source:
            with lock:
                yield packet

    def _flush_idle(self, done: threading.Event) -> None:
        while not done.wait(IDLE_FLUSH):
            if self._lock.acquire(blocking=False):
                try:
                    for w in range(self.n):
                        self.feed.flush(w)
                    self.feed.pump_queued()
                finally:
                    self._lock.release()

    def _read(self, source: Iterable[Packet | None], stop: Callable[[], bool] | None,
              progress: Callable[[], None] | None) -> None:
        interval = self.poke_interval
        route = self.sharder.route
        released = self.sharder.released
        feed = self.feed
        batches = feed.batches
        send = feed.send
        reader = self.reader
        read_packets = bool(reader.chefs)
        to_workers = bool(self.worker_classes)   # else the workers would only count
        due: float | None = None
        failed = self.failed.is_set
        n = 0
        for packet in source:
            if packet is None:
                continue
            t = packet.time
            if interval and (due is None or t >= due):
                if due is None:
                    due = t + interval
                else:   # as Kitchen.tick: at most MAX_CATCH_UP_POKES, then skip
                    pokes = 0
                    while t >= due:
                        self.poke()
                        due += interval
                        pokes += 1
                        if pokes >= MAX_CATCH_UP_POKES and t >= due:
                            skipped = int((t - due) // interval) + 1
                            self.reader.stats.pokes_skipped += skipped
                            due += skipped * interval
            self.now = t
            if read_packets:
                reader.process(packet)
            n += 1
            if not to_workers:
                if not n & 0x3FF:
                    reader.expire()
                    if failed() or (stop is not None and stop()):
                        break
                continue
            w = route(packet)
            if released:
                for w2, p2 in released:
                    feed.add_packet(w2, p2)
                released.clear()
            if w >= 0:   # feed.add_packet, inline: this loop is the one serial step
                batch = batches[w]
                batch.append((packet.data, packet.time, packet.wirelen, packet.linktype,
                              packet.interface,
                              packet.time_ns if type(packet) is NsPacket else None))
                if len(batch) >= BATCH:
                    send(w, ("B", batch))
                    batches[w] = []
            if n & 0x3FF:
                continue
            feed.pump_queued()
            if read_packets:
                reader.expire()
            if failed() or (stop is not None and stop()):
                break
            if progress is not None:
                self.stats.packets = n
                progress()

    def _run_live(self, ticks: Iterable[Any], stop: Callable[[], bool] | None) -> None:
        """Live: the workers capture; here, pokes on the wall clock and waiting for a stop
        (``ticks`` yields ``None`` every so often, or the packets ``-w`` writes)."""
        if not self._procs:
            self.start()
        interval = self.poke_interval or 0.0
        next_wall = time.monotonic() + interval if interval else float("inf")
        reader = self.reader
        process = reader.process if reader.chefs else None
        for packet in ticks:
            self.feed.pump_queued()
            if packet is not None and process is not None:
                process(packet)
                self.now = packet.time
            if self.failed.is_set() or (stop is not None and stop()):
                break
            if self._live is not None and self._live.count_reached(self):
                break
            if time.monotonic() >= next_wall:
                self.poke()
                next_wall += interval
                if next_wall < time.monotonic():
                    next_wall = time.monotonic() + interval

    def finish(self) -> None:
        """End of capture: every worker closes its flows and makes its last interval
        dumplings, then reports; the reader's chefs finish; the merged totals go last."""
        if self._finished:
            return
        self._finished = True
        if not self._procs:
            self.start()
        self.sharder.flush()
        for w, p in self.sharder.released:
            self.feed.add_packet(w, p)
        self.sharder.released.clear()
        self._poke_no += 1
        self._poke_times[self._poke_no] = self.now
        self.stats.packets = 0   # the workers' reports count them (progress counted reads)
        for w in range(self.n):
            self.feed.flush(w)
            self.feed.send(w, ("F", self._poke_no, self.now))
        deadline = time.monotonic() + FINISH_TIMEOUT
        self.feed.drain(deadline)
        self.reader.finish()
        collector = self._collector
        if collector is not None:
            collector.join(max(0.0, deadline - time.monotonic()))
            if collector.is_alive():
                for i in range(self.n):
                    if i not in self._reported:
                        self.died.append(f"{self.describe_worker(i)} did not finish in "
                                         f"{FINISH_TIMEOUT:.0f}s; stopped")
                        self._reported.add(i)
                self.failed.set()
        for i, proc in enumerate(self._procs):
            proc.join(max(0.1, min(EXIT_TIMEOUT, deadline - time.monotonic())))
            if proc.is_alive():
                proc.kill()
                proc.join(EXIT_TIMEOUT)
        self._add_reader_stats()

    def terminate(self) -> None:
        """Stop every worker now (the reader is failing)."""
        for proc in self._procs:
            if proc.is_alive():
                proc.kill()
        for proc in self._procs:
            proc.join(EXIT_TIMEOUT)

    def _add_reader_stats(self) -> None:
        st = self.stats
        rs = self.reader.stats
        packets = st.packets  # as counted by the workers (each packet once)
        merge_stats(st, {k: v for k, v in rs.as_dict().items() if k != "packets"
                          and k != "bytes"})
        st.packets = packets
        if not self.worker_classes:
            st.packets, st.bytes = rs.packets, rs.bytes
        d = rs.defrag
        if d is not None:
            self._defrag.add(d.fragments, d.reassembled, d.dropped)
        add_up(self._chef_errors, self.reader.chef_errors)
        add_up(self._chef_errors, self.merger.chef_errors)
        if self.chef_seconds is not None:
            add_up(self.chef_seconds, self.reader.chef_seconds)
        st.dumplings = self._out.sequence

    @property
    def chef_errors(self) -> dict[str, int]:
        return dict(self._chef_errors)

    @property
    def chefs(self) -> list[DumplingChef]:
        return self.reader.chefs + self.merger.chefs

    def live_packets(self) -> int:
        """Live: packets the workers have read so far (reported every 4096 and when idle)."""
        return sum(self._live_counts.values())

    def live_stats(self) -> dict[int, dict[str, int]]:
        """Per worker: its live source's counts (kernel packets and drops), once finished."""
        return dict(self._live_stats)
