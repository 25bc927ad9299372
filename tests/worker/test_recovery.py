"""Nothing stuck: a job whose whole worker died is re-queued from its stopped heartbeat, and queued
jobs the broker lost are sent again (worker/recovery.py, real MongoDB-compatible server and Redis)."""

from __future__ import annotations

import os
import signal
import time
from datetime import timedelta

import pytest

from shared import jobs
from shared.config import get_settings, set_settings
from shared.db import get_db
from tests.conftest import wait_for_job
from tests.media import probe
from tests.worker.helpers import buckets_of, frame_records, long_clip, result_files, stored_job, submit
from worker import recovery
from worker.heartbeat import HEARTBEATS, Heartbeat


@pytest.fixture
def quick_stall(settings):
    """Recovery judging a job stalled after 3 s without a heartbeat (the sweep runs in this process)."""
    set_settings(settings.replace(stalled_after_s=3))
    yield get_settings()
    set_settings(settings)


def make_job(status: str = "queued") -> dict:
    job = stored_job(b"\0" * 64, "x.mp4", owner="recovery-test")
    if status == "running":
        job = jobs.claim(job["_id"], worker="gone-host:1")
    return job


def age(job_id, seconds: float) -> None:
    """Pretend the job's last write (and its heartbeat) happened `seconds` ago."""
    t = jobs.now() - timedelta(seconds=seconds)
    get_db().jobs.update_one({"_id": job_id}, {"$set": {"updated_at": t}})
    get_db()[HEARTBEATS].update_one({"_id": str(job_id)}, {"$set": {"at": t}})


def forget(job: dict) -> None:
    """Remove a test job whatever state a session worker may have put it in (its input is junk)."""
    get_db().jobs.update_one({"_id": job["_id"]}, {"$set": {"status": "cancelled"}})
    jobs.delete(job["_id"])


def test_a_stalled_job_is_requeued_a_live_one_is_left_alone(quick_stall, monkeypatch):
    # What is sent is recorded, not sent: a worker of the test session would otherwise take the job at
    # once (the real sending is in the two tests below).
    sent: list[str] = []
    monkeypatch.setattr(recovery, "enqueue", lambda name, job_id: sent.append(job_id))
    stalled, live, cancelled = make_job("running"), make_job("running"), make_job("running")
    jobs.progress(stalled["_id"], stalled["run_id"], 0.32, 60.0)
    for job in (stalled, live, cancelled):
        Heartbeat(job["_id"], job["run_id"], "gone-host").beat()
    jobs.cancel(cancelled["_id"])  # asked while its worker was dying: nobody will confirm it
    age(stalled["_id"], 60)
    age(cancelled["_id"], 60)
    try:
        done = recovery.sweep()
        assert str(stalled["_id"]) in done["requeued_stalled"]
        assert str(cancelled["_id"]) in done["cancelled_stalled"]
        assert str(live["_id"]) not in done["requeued_stalled"] + done["cancelled_stalled"]
        again = jobs.get(stalled["_id"])
        assert again["status"] == "queued" and "stopped responding at 32%" in again["note"]
        assert jobs.get(cancelled["_id"])["status"] == "cancelled"
        assert jobs.get(live["_id"])["status"] == "running"
        # Sent to the queue again; the live and the cancelled ones are not (other tests' leftovers in
        # this session's database may be sent too).
        assert str(stalled["_id"]) in sent
        assert str(live["_id"]) not in sent and str(cancelled["_id"]) not in sent
        # Queued again, it can be cancelled (or deleted) like any queued clip.
        assert jobs.cancel(stalled["_id"])["status"] == "cancelled"
    finally:
        for job in (stalled, live, cancelled):
            forget(job)


def test_a_queued_job_the_broker_lost_is_sent_once(quick_stall):
    lost = make_job()
    age(lost["_id"], 120)
    try:
        assert str(lost["_id"]) not in recovery.broker_job_ids()
        first = recovery.sweep()
        assert str(lost["_id"]) in first["resent_queued"]
        assert str(lost["_id"]) in recovery.broker_job_ids()
        # The broker holds it now (or a worker of the session took it, and it is no longer queued):
        # either way no duplicate.
        second = recovery.sweep()
        assert str(lost["_id"]) not in second["resent_queued"]
    finally:
        forget(lost)


def test_a_file_that_keeps_killing_workers_fails_after_three_attempts(quick_stall):
    job = make_job("running")
    try:
        for attempt in range(1, jobs.MAX_ATTEMPTS + 1):
            assert jobs.get(job["_id"])["attempts"] == attempt
            jobs.stall(job["_id"], jobs.get(job["_id"])["run_id"], "stopped")
            if attempt < jobs.MAX_ATTEMPTS:
                jobs.claim(job["_id"], worker="next-host:1")
        with pytest.raises(jobs.IllegalTransition):
            jobs.claim(job["_id"], worker="next-host:1")
        failed = jobs.get(job["_id"])
        assert failed["status"] == "failed" and "stopped 3 times" in failed["error"]
    finally:
        forget(job)


@pytest.mark.slow
def test_a_whole_worker_killed_mid_job_is_recovered_by_its_heartbeat(worker, tmp_path, quick_stall):
    src = long_clip(tmp_path / "machine_dies.mp4")
    job = submit(src)
    deadline = time.monotonic() + 240
    while not buckets_of(job["_id"]):  # killed once the first bucket is stored: mid-job
        assert time.monotonic() < deadline, "no bucket stored"
        time.sleep(0.1)
    assert jobs.get(job["_id"])["status"] == "running"
    os.killpg(worker.proc.pid, signal.SIGKILL)  # the whole worker machine: parent and pool
    worker.proc.wait(30)
    killed_at = time.monotonic()
    # Its message stays unacknowledged in Redis for the visibility timeout (hours): only the heartbeat
    # can tell. Sweep until recovery sees the stop (3 s here; STALLED_AFTER_S, 90 s by default).
    while not recovery.sweep()["requeued_stalled"]:
        assert time.monotonic() - killed_at < 60, "never judged stalled"
        time.sleep(0.5)
    assert jobs.get(job["_id"])["status"] == "queued"
    worker.start()  # a new worker machine
    done = wait_for_job(job["_id"], timeout=300)
    print(f"recovered and finished {time.monotonic() - killed_at:.1f} s after the kill")
    assert done["status"] == "succeeded", done["error"]
    assert done["attempts"] == 2
    assert [d["frame"] for d in frame_records(done)] == list(range(probe(src)["frames"]))
    roles = sorted(f["metadata"]["role"] for f in result_files(job["_id"]))
    assert roles.count("annotated") == 1 and roles.count("poster") == 1
