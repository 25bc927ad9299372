"""Progress and ETA reach the job at most once a second; a cancel request is noticed at the next write."""

from __future__ import annotations

import time

import pytest

from shared import jobs
from shared.errors import Cancelled
from worker.progress import Progress


@pytest.fixture
def running_job(mongo):
    job = jobs.create(owner="t", filename="a.mp4", kind="video", input_id=None, size=1,
                      content_type="video/mp4")
    return jobs.claim(job["_id"], worker="test")


def test_progress_is_written_at_most_once_a_second(running_job, monkeypatch):
    writes = []
    real = jobs.progress

    def counting(*args, **kwargs):
        writes.append(time.monotonic())
        return real(*args, **kwargs)

    monkeypatch.setattr(jobs, "progress", counting)
    p = Progress(running_job["_id"], running_job["run_id"], total_frames=None)
    started = time.monotonic()
    frame = 0
    while time.monotonic() - started < 2.5:
        frame += 1
        p(frame, total=100_000)
        time.sleep(0.001)
    assert frame > 500 and 2 <= len(writes) <= 3
    assert all(b - a >= 1.0 for a, b in zip(writes, writes[1:], strict=False))
    doc = jobs.get(running_job["_id"])
    assert doc["frames_done"] > 0 and 0 < doc["progress"] < 0.1 and doc["eta_s"] > 0


def test_cancel_is_noticed_at_the_next_write(running_job):
    p = Progress(running_job["_id"], running_job["run_id"], total_frames=1000, every_s=0.5)
    p(1)
    jobs.cancel(running_job["_id"])
    asked = time.monotonic()
    with pytest.raises(Cancelled):
        for frame in range(2, 1000):
            p(frame)
            time.sleep(0.01)
    # Noticed at the first write after the request: within one write interval (plus a slow server).
    assert time.monotonic() - asked < 0.5 + 1.0
