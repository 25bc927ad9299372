"""CPU time per stage of the frame loop, for the benchmark: where each millisecond of a frame goes.

The analysis thread's stages (detect, track, crop, classify, annotate) are timed by that thread's own
CPU clock around each call. Decoding and encoding run in their own threads, and the libraries start
worker threads of their own (FFmpeg's decoder threads are named "av:...", libx264's inherit the encode
thread's name, XNNPACK's pool threads are named "classify" when the classifier loads), so those stages
also get the CPU of every thread of their name, read from /proc (Linux). What no stage claims
(statistics, the people gate, the queues, the interpreter) is "other": the stages and "other" add up
to the process's CPU time over the loop.
"""

from __future__ import annotations

import os
import resource
import threading
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

STAGES = ("decode", "detect", "track", "crop", "classify", "annotate", "encode")
_TASKS = Path("/proc/self/task")
_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


def process_cpu_s() -> float:
    """CPU seconds of this process so far, all threads (finished ones included)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def thread_stage(name: str) -> str | None:
    """The stage an OS thread's name belongs to: our decode/encode threads and the codecs' own."""
    if name == "decode" or name.startswith("av:"):
        return "decode"
    if name == "encode":
        return "encode"
    if name == "classify":  # XNNPACK's pool threads (named when the classifier is loaded)
        return "classify"
    return None


class StageTimes:
    """CPU seconds per stage over one frame loop; stage() times a call, sample() reads codec threads."""

    def __init__(self) -> None:
        self._timed = dict.fromkeys(STAGES, 0.0)
        self._threads: dict[int, tuple[str, float]] = {}  # tid -> (stage, CPU seconds seen last)
        self._lock = threading.Lock()
        # Threads of a stage's name that exist already (an earlier loop's codec or classifier pool)
        # count only what they spend from now on.
        self.sample()
        self._base = {tid: seconds for tid, (_, seconds) in self._threads.items()}
        self._start = process_cpu_s()
        self._end: float | None = None
        self.frames = 0
        self.counts: dict[str, int] = {}

    @contextmanager
    def stage(self, name: str):
        """Add the calling thread's CPU time inside the block to stage `name`."""
        started = time.thread_time()
        try:
            yield
        finally:
            spent = time.thread_time() - started
            with self._lock:
                self._timed[name] += spent

    def count(self, name: str, n: int) -> None:
        """Add n to the tally `name` (e.g. faces classified)."""
        self.counts[name] = self.counts.get(name, 0) + int(n)

    def sample(self) -> None:
        """Read the CPU of the decode and encode threads (call often: an exited thread is not listed)."""
        try:
            tids = os.listdir(_TASKS)
        except OSError:
            return
        for tid in tids:
            try:
                stage = thread_stage((_TASKS / tid / "comm").read_text().strip())
                if stage is None:
                    continue
                fields = (_TASKS / tid / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # the thread ended between listing and reading
            self._threads[int(tid)] = (stage, (int(fields[11]) + int(fields[12])) * _TICK_S)

    def stop(self, frames: int) -> None:
        """End the measurement after `frames` frames (a last sample, the process CPU)."""
        self.sample()
        self._end = process_cpu_s()
        self.frames = frames

    def cpu_s(self) -> dict[str, float]:
        """CPU seconds per stage, plus 'other' (the rest of the process) and 'total'."""
        out = dict(self._timed)
        for tid, (stage, seconds) in self._threads.items():
            out[stage] += max(0.0, seconds - self._base.get(tid, 0.0))
        total = (self._end if self._end is not None else process_cpu_s()) - self._start
        # Threads are read from /proc in clock ticks (10 ms), the process to the nanosecond: the parts
        # can exceed the whole by a tick, which is rounding, not time spent twice.
        total = max(total, sum(out.values()))
        out["other"] = total - sum(out.values())
        out["total"] = total
        return out

    def ms_per_frame(self) -> dict[str, float]:
        """cpu_s() in milliseconds per frame."""
        n = max(1, self.frames)
        return {k: round(1000 * v / n, 2) for k, v in self.cpu_s().items()}


class NoTimes:
    """The frame loop's default: stage() and sample() cost nothing."""

    def stage(self, name: str):
        """A no-op context."""
        return nullcontext()

    def count(self, name: str, n: int) -> None:
        """Nothing to add to."""

    def sample(self) -> None:
        """Nothing to read."""

    def stop(self, frames: int) -> None:
        """Nothing to stop."""


NO_TIMES = NoTimes()
