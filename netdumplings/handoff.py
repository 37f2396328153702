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
from collections import deque
from typing import Any, Iterable

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
        self.fd = fd
        enlarge(fd)

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
