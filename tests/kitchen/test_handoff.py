"""The reader's pipes to the workers (netdumplings.kitchen.handoff), on real pipes: a worker whose
pipe is full does not stop the others being fed, nothing is lost or reordered, a worker
that is gone is reported."""

from __future__ import annotations

import os
import threading
import time

from netdumplings.kitchen.handoff import MAX_PENDING, Feeder, Inlet, Outlet, enlarge


def batch(i: int, size: int = 2000) -> tuple:
    return ("B", [(bytes([i % 256]) * size, float(i), size, 1, None, None)])


def test_a_full_pipe_is_queued_and_written_later_in_order() -> None:
    r, w = os.pipe()
    out, inlet = Outlet(w), Inlet(r)
    try:
        msgs = [batch(i) for i in range(200)]   # 400 KB: more than a default pipe holds
        for m in msgs:
            out.put(m)
            out.pump()
        assert out.pending > 0     # the pipe is full, nobody reads: queued, not blocked
        got: list[tuple] = []
        reader = threading.Thread(target=lambda: got.extend(inlet.recv() for _ in msgs))
        reader.start()             # a worker starts reading: the rest goes as it drains
        deadline = time.monotonic() + 10
        while not out.pump() and time.monotonic() < deadline:
            time.sleep(0.001)
        reader.join(10)
        assert got == msgs and out.pending == 0
    finally:
        out.close()
        inlet.close()


def test_one_stuck_worker_does_not_starve_another() -> None:
    """Worker 0 reads nothing; worker 1 still gets every batch sent to it, while what is
    for worker 0 stays queued (up to MAX_PENDING)."""
    pipes = [os.pipe() for _ in range(2)]
    lost: list[int] = []
    feed = Feeder(256, lost.append, lambda i: True, set())
    for _, w in pipes:
        enlarge(w, 1 << 16)
        feed.add(w)
    inlet = Inlet(pipes[1][0])
    got: list[tuple] = []
    reader = threading.Thread(target=lambda: got.extend(inlet.recv() for _ in range(250)))
    reader.start()
    try:
        for i in range(250):
            feed.send(0, batch(i))    # 500 KB for worker 0: beyond its pipe, queued
            feed.send(1, batch(i))
        deadline = time.monotonic() + 10
        while feed.outlets[1].pending and time.monotonic() < deadline:
            feed.pump_queued()        # as the reader does every 1,024 packets
            time.sleep(0.001)
        reader.join(10)
        assert not reader.is_alive() and len(got) == 250
        assert 0 < feed.outlets[0].pending <= MAX_PENDING and not lost
    finally:
        for r, w in pipes:
            os.close(r)
        for o in feed.outlets:
            o.close()


def test_a_worker_that_is_gone_is_reported_once() -> None:
    r, w = os.pipe()
    lost: list[int] = []
    gone: set[int] = set()

    def on_lost(i: int) -> None:
        lost.append(i)
        gone.add(i)

    feed = Feeder(256, on_lost, lambda i: False, gone)
    feed.add(w)
    os.close(r)                    # the worker's end: closed, as when it dies
    try:
        feed.send(0, batch(1))
        feed.send(0, batch(2))     # not sent again to a worker that is gone
        deadline = time.monotonic() + 5
        feed.drain(deadline)       # returns: nothing left to wait for
        assert lost == [0] and feed.outlets[0].pending == 0
    finally:
        feed.outlets[0].close()
