"""The pipes from the reader to the workers of ``nd-sniff --workers N``.

One length-prefixed pickle a message (a batch of packets, a poke, the end). The reader's
side never blocks on one worker while another waits for packets: a full pipe is not
waited for, what does not fit stays queued here (``Outlet``), and the reader waits only
when a worker is more than ``MAX_PENDING`` bytes behind - and then feeds every other
worker while it waits. With a plain blocking send the reader stopped at the first full
pipe (64 KiB: about one batch), and the other worker ran dry within milliseconds whenever
the traffic of the moment was heavier on one side (measured: 5-10 % of each worker's
time idle in ``recv``). The pipes are also made as large as the system allows, up to
``PIPE_SIZE``, so each worker has more packets at hand.
"""

from __future__ import annotations

import fcntl
import os
import pickle
import select
import struct
import time
from collections import deque
from typing import Any, Callable, Iterable

from ..capture.packet import NsPacket

#: Bytes a pipe to a worker holds (Linux ``F_SETPIPE_SZ``; capped by
#: ``/proc/sys/fs/pipe-max-size``, 1 MiB by default).
PIPE_SIZE = 1 << 20
#: Bytes queued for one worker beyond its pipe before the reader waits for it (and writes
#: to every pipe that has room meanwhile).
MAX_PENDING = 1 << 19

_HEADER = struct.Struct("!I")
_IOV = 64   # buffers per writev


def enlarge(fd: int, size: int = PIPE_SIZE) -> int:
    """Make pipe ``fd`` hold ``size`` bytes, or as many as allowed; returns its size."""
    try:
        with open("/proc/sys/fs/pipe-max-size") as fh:
            size = min(size, int(fh.read()))
    except (OSError, ValueError):
        pass
    try:
        return fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, size)
    except (OSError, AttributeError):   # not Linux, or not allowed: the default size
        return 0


class Outlet:
    """The reader's end of one worker's pipe: ``put`` queues a message, ``pump`` writes
    what the pipe takes now. A worker that is gone raises ``BrokenPipeError``."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        os.set_blocking(fd, False)
        self._queue: deque[memoryview] = deque()
        #: Bytes queued, not yet in the pipe.
        self.pending = 0

    def put(self, msg: Any) -> None:
        data = pickle.dumps(msg, pickle.HIGHEST_PROTOCOL)
        self._queue.append(memoryview(_HEADER.pack(len(data))))
        self._queue.append(memoryview(data))
        self.pending += _HEADER.size + len(data)

    def pump(self) -> bool:
        """Write what fits without waiting; True when nothing is left queued."""
        queue = self._queue
        while queue:
            bufs = list(queue) if len(queue) <= _IOV else [queue[i] for i in range(_IOV)]
            try:
                n = os.writev(self.fd, bufs)
            except BlockingIOError:
                return False
            self.pending -= n
            while n:
                head = queue[0]
                if n >= len(head):
                    n -= len(head)
                    queue.popleft()
                else:
                    queue[0] = head[n:]
                    n = 0
        return True

    def drop(self) -> None:
        """The worker is gone: forget what was queued for it."""
        self._queue.clear()
        self.pending = 0

    def close(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass


def wait_writable(outlets: Iterable[Outlet], timeout: float) -> list[Outlet]:
    """The outlets with something queued whose pipe has room now (after ``timeout``
    seconds at most)."""
    waiting = {o.fd: o for o in outlets if o.pending}
    if not waiting:
        return []
    _, ready, _ = select.select([], list(waiting), [], timeout)
    return [waiting[fd] for fd in ready]


class Inlet:
    """The worker's end: ``recv`` the next message (``EOFError`` once the reader closed
    its end), ``poll`` whether one has started to arrive."""

    def __init__(self, fd: int) -> None:
        self.fd = fd   # the reader made the pipe large (``enlarge``)

    def _exactly(self, n: int) -> bytearray:
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            k = os.readv(self.fd, [view[got:]])
            if not k:
                raise EOFError("the reader closed the pipe")
            got += k
        return buf

    def recv(self) -> Any:
        (size,) = _HEADER.unpack(self._exactly(_HEADER.size))
        return pickle.loads(self._exactly(size))

    def poll(self, timeout: float = 0.0) -> bool:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        return bool(ready)

    def close(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass


class Feeder:
    """The reader's side of every worker's pipe: the batch being filled for each worker
    and what its pipe has not taken yet. ``lost(i)`` is called once a write says worker
    ``i`` is gone (or it stopped reading and is no longer ``alive(i)``); nothing more is
    sent to a worker in ``gone``."""

    def __init__(self, batch: int, lost: Callable[[int], None], alive: Callable[[int], bool],
                 gone: set[int]) -> None:
        self.batch = batch
        self.outlets: list[Outlet] = []
        #: Per worker: the packets (tuples, see ``packet_tuple``) of its next batch.
        self.batches: list[list[tuple]] = []
        self._lost = lost
        self._alive = alive
        self._gone = gone

    def add(self, fd: int) -> None:
        """One more worker, fed through the pipe whose writing end is ``fd``."""
        self.outlets.append(Outlet(fd))
        self.batches.append([])

    def send(self, i: int, msg: tuple) -> None:
        """Queue ``msg`` for worker ``i`` and write what its pipe takes; wait only when it
        is ``MAX_PENDING`` bytes behind, writing to the others meanwhile."""
        if i in self._gone:
            return
        outlet = self.outlets[i]
        # Data already queued means the pipe was full at the last write: trying again at
        # every batch costs a failed write each; the worker has a pipeful to work on.
        was_queued = outlet.pending
        outlet.put(msg)
        if not was_queued:
            self.pump(i)
        while outlet.pending > MAX_PENDING and i not in self._gone:
            self.wait(0.5)

    def add_packet(self, w: int, p: Any) -> None:
        batch = self.batches[w]
        batch.append(packet_tuple(p))
        if len(batch) >= self.batch:
            self.send(w, ("B", batch))
            self.batches[w] = []

    def flush(self, w: int) -> None:
        """Send worker ``w``'s partial batch."""
        if self.batches[w]:
            self.send(w, ("B", self.batches[w]))
            self.batches[w] = []

    def pump(self, i: int) -> None:
        try:
            self.outlets[i].pump()
        except OSError:   # BrokenPipeError: the worker is gone
            self.outlets[i].drop()
            self._lost(i)

    def pump_queued(self) -> None:
        """Write what full pipes left queued, as far as they take it now."""
        for i, outlet in enumerate(self.outlets):
            if outlet.pending:
                self.pump(i)

    def wait(self, timeout: float) -> None:
        """Write to every worker whose pipe has room, after ``timeout`` s at most."""
        ready = wait_writable(self.outlets, timeout)
        for o in ready:
            self.pump(self.outlets.index(o))
        if not ready:
            for i, outlet in enumerate(self.outlets):
                if outlet.pending and not self._alive(i):
                    outlet.drop()
                    self._lost(i)

    def drain(self, deadline: float) -> None:
        """Everything queued into the pipes (the end), until ``deadline`` at most."""
        self.pump_queued()
        while any(o.pending for o in self.outlets) and time.monotonic() < deadline:
            self.wait(0.1)


def packet_tuple(p: Any) -> tuple:
    """What a worker needs to make the packet again (``NsPacket``: its exact time too)."""
    return (p.data, p.time, p.wirelen, p.linktype, p.interface,
            p.time_ns if type(p) is NsPacket else None)
