"""Progress and ETA for a running job, written at most once a second; notices cancellation."""

from __future__ import annotations

import time

from shared import jobs
from shared.errors import Cancelled


class Progress:
    """Callable per processed frame; raises Cancelled within a second of a cancel request."""

    def __init__(self, job_id, run_id: str, total_frames: int | None, every_s: float = 1.0):
        self.job_id, self.run_id = job_id, run_id
        self.total = total_frames or 0
        self.every_s = every_s
        self.started = time.monotonic()
        self.last_write = 0.0

    def __call__(self, done_frames: int, *, total: int | None = None, force: bool = False,
                 **fields) -> None:
        """Record that done_frames of total are finished; extra fields go on the job document."""
        if total:
            self.total = total
        now = time.monotonic()
        if not force and now - self.last_write < self.every_s:
            return
        self.last_write = now
        fraction = min(done_frames / self.total, 0.999) if self.total else 0.0
        elapsed = now - self.started
        eta = round(elapsed * (1 - fraction) / fraction, 1) if fraction > 0.01 else None
        if jobs.progress(self.job_id, self.run_id, fraction, eta, frames_done=done_frames, **fields):
            raise Cancelled("cancelled by the user")
