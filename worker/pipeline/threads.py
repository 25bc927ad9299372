"""Overlap decoding, inference and encoding: a producer thread and a consumer thread, bounded queues.

PyAV (decode, swscale, libx264), OpenCV and LiteRT release the GIL in their heavy calls, so a decode
thread and an encode thread run beside the inference thread on separate cores. Queues are small:
memory stays a few frames deep whatever the clip length.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import queue
import sys
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

_END = object()
_POLL_S = 0.1  # how often a blocked thread looks at the stop flag


def name_os_thread(name: str) -> None:
    """Give the calling thread `name` in the OS too (Linux; 15 bytes), for top and the stage timer."""
    # Threads the codecs start from this one inherit the name: libx264's count as "encode".
    if sys.platform != "linux":
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):
        pass


def _os_thread_name() -> str | None:
    try:
        with open(f"/proc/self/task/{threading.get_native_id()}/comm") as f:
            return f.read().strip()
    except OSError:
        return None


@contextmanager
def os_thread_name(name: str):
    """The calling thread carries `name` in the OS inside the block: threads started there inherit it."""
    before = _os_thread_name()
    name_os_thread(name)
    try:
        yield
    finally:
        if before is not None:
            name_os_thread(before)


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


def prefetch(source: Iterable, *, maxsize: int = 4, name: str = "prefetch") -> Iterator:
    """Items of source, produced by a background thread up to maxsize ahead; its errors re-raise here.

    Closing the returned generator (or an error in the consumer) stops the thread and closes source.
    """
    q: queue.Queue = queue.Queue(maxsize=maxsize)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        name_os_thread(name)
        iterator = iter(source)
        try:
            for item in iterator:
                if not put(item):
                    break
            else:
                put(_END)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, which re-raises it
            put(_Failure(e))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()  # the generator's own finally (container.close) runs in its thread

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        thread.join()


class BackgroundWriter:
    """Runs a sink's `write(*args)` calls in a thread; a context manager around the sink's own.

    write() blocks only when maxsize calls are waiting; an error of the sink re-raises at the next
    write() or on exit. On exit after an error the queue is dropped, not written.
    """

    def __init__(self, sink, *, maxsize: int = 4, name: str = "encode"):
        self.sink = sink
        self._q: queue.Queue = queue.Queue(maxsize=maxsize)
        self._error: BaseException | None = None
        self._abort = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def __enter__(self) -> BackgroundWriter:
        self.sink.__enter__()
        self._thread.start()
        return self

    def _run(self) -> None:
        name_os_thread(self._thread.name)
        while True:
            args = self._q.get()
            if args is _END:
                return
            if self._error is not None or self._abort.is_set():
                continue  # keep draining so the producer never blocks on a dead consumer
            try:
                self.sink.write(*args)
            except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
                self._error = e

    def write(self, *args) -> None:
        """Queue one sink.write(*args)."""
        if self._error is not None:
            raise self._error
        while True:
            try:
                self._q.put(args, timeout=_POLL_S)
                return
            except queue.Full:
                if self._error is not None:
                    raise self._error from None

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self._abort.set()
        self._q.put(_END)
        self._thread.join()
        if exc_type is None and self._error is not None:
            self.sink.__exit__(type(self._error), self._error, None)
            raise self._error
        self.sink.__exit__(exc_type, exc, tb)
