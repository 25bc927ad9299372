"""The decode and encode threads: order kept, errors surface in the caller, a stop stops them at once."""

from __future__ import annotations

import threading
import time

import pytest

from shared.errors import BadInput
from worker.pipeline.threads import BackgroundWriter, prefetch


def test_prefetch_keeps_order_and_runs_ahead_in_another_thread():
    where = []

    def source():
        for i in range(20):
            where.append(threading.current_thread().name)
            yield i

    assert list(prefetch(source(), maxsize=3, name="decode")) == list(range(20))
    assert set(where) == {"decode"}


def test_prefetch_reraises_the_producers_error_after_its_items():
    def source():
        yield 1
        yield 2
        raise BadInput("the video is damaged after 2 frames")

    got = []
    with pytest.raises(BadInput, match="damaged after 2"):
        for x in prefetch(source()):
            got.append(x)
    assert got == [1, 2]


def test_closing_prefetch_stops_and_closes_the_source():
    state = {"made": 0, "closed": False}

    def endless():
        try:
            while True:
                state["made"] += 1
                yield state["made"]
        finally:
            state["closed"] = True

    gen = prefetch(endless(), maxsize=2, name="prefetch-closing")
    assert next(gen) == 1
    gen.close()  # returns once the thread has stopped (pytest-timeout fails a hang)
    assert state["closed"]
    assert not [t for t in threading.enumerate() if t.name == "prefetch-closing"]  # not producing on
    assert state["made"] <= 1 + 2 + 1  # what was taken, the queue, and the one it was putting


class ListSink:
    def __init__(self, fail_at: int | None = None, delay: float = 0.0):
        self.items, self.fail_at, self.delay = [], fail_at, delay
        self.entered = self.exited = None

    def __enter__(self):
        self.entered = True
        return self

    def write(self, x, pts=None):
        time.sleep(self.delay)
        if self.fail_at is not None and x == self.fail_at:
            raise OSError("disk full")
        self.items.append((x, pts, threading.current_thread().name))

    def __exit__(self, exc_type, exc, tb):
        self.exited = exc_type


def test_background_writer_writes_everything_in_order_in_its_thread():
    sink = ListSink(delay=0.001)
    with BackgroundWriter(sink, maxsize=2, name="encode") as w:
        for i in range(30):
            w.write(i, i * 10)
    assert [x for x, _, _ in sink.items] == list(range(30))
    assert {name for _, _, name in sink.items} == {"encode"} and sink.exited is None


def test_background_writer_surfaces_the_sinks_error():
    sink = ListSink(fail_at=5)
    with pytest.raises(OSError, match="disk full"), BackgroundWriter(sink, maxsize=2) as w:
        for i in range(100):
            w.write(i)
            time.sleep(0.002)
    assert sink.exited is OSError
    assert len(sink.items) == 5


def test_background_writer_drops_the_queue_when_the_caller_fails():
    class Stuck(ListSink):
        """The first write lasts until the writer is aborted: what is queued behind it must be dropped."""

        started = threading.Event()

        def write(self, x, pts=None):
            if not self.items:
                self.started.set()
                assert w._abort.wait(60)  # released by the caller's failure, whatever the machine's speed
            super().write(x, pts)

    sink = Stuck()
    with pytest.raises(KeyError), BackgroundWriter(sink, maxsize=8) as w:
        w.write(0)
        assert sink.started.wait(60)
        for i in range(1, 8):
            w.write(i)
        raise KeyError("cancelled")
    assert [x for x, _, _ in sink.items] == [0] and sink.exited is KeyError
