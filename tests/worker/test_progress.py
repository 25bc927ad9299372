"""Progress and ETA reach the job at most once a second; a cancel request is noticed at the next write."""

from __future__ import annotations

import pytest

from shared import jobs
from shared.errors import Cancelled
from worker.progress import Progress


@pytest.fixture
def running_job(mongo):
    job = jobs.create(owner="t", filename="a.mp4", kind="video", input_id=None, size=1,
                      content_type="video/mp4")
    return jobs.claim(job["_id"], worker="test")


class Clock:
    """A monotonic clock the test moves by hand, so write intervals are exact on any machine."""

    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock(monkeypatch):
    """worker.progress's clock, moved only by the test."""
    c = Clock()
    monkeypatch.setattr("worker.progress.time.monotonic", c)
    return c


def test_progress_is_written_at_most_once_a_second(running_job, monkeypatch, clock):
    writes = []
    real = jobs.progress

    def counting(*args, **kwargs):
        writes.append(clock.t)
        return real(*args, **kwargs)

    monkeypatch.setattr(jobs, "progress", counting)
    p = Progress(running_job["_id"], running_job["run_id"], total_frames=None)
    for frame in range(1, 161):  # 2.5 s of frames at 64 fps (a step that binary floats hold exactly)
        p(frame, total=10_000)
        clock.t += 1 / 64
    assert len(writes) == 3  # at 0 s, 1 s and 2 s
    assert [b - a for a, b in zip(writes, writes[1:], strict=False)] == [1.0, 1.0]
    doc = jobs.get(running_job["_id"])
    assert doc["frames_done"] == 129 and doc["progress"] == pytest.approx(0.0129) and doc["eta_s"] > 0


def test_cancel_is_noticed_at_the_next_write(running_job, clock):
    p = Progress(running_job["_id"], running_job["run_id"], total_frames=1000, every_s=0.5)
    p(1)
    jobs.cancel(running_job["_id"])
    frames_after = 0
    with pytest.raises(Cancelled):
        for frame in range(2, 1000):
            clock.t += 1 / 64
            frames_after += 1
            p(frame)
    # Noticed at the first write after the request: half a second of frames later.
    assert frames_after == 32
