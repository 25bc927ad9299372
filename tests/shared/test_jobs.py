"""The job state machine on the real database, including the transitions it must refuse."""

from __future__ import annotations

import pytest
from bson import ObjectId

from shared import jobs
from shared.errors import Cancelled, IllegalTransition, NotFound


@pytest.fixture
def job(mongo):
    return jobs.create(owner="alice", filename="a.mp4", kind="video", input_id=ObjectId(), size=10,
                       content_type="video/mp4")


def test_happy_path(job):
    assert job["status"] == "queued"
    running = jobs.claim(job["_id"], worker="w1")
    assert running["status"] == "running" and running["attempts"] == 1 and running["run_id"]
    assert jobs.progress(job["_id"], running["run_id"], 0.5, 10.0) is False
    mid = jobs.get(job["_id"])
    assert mid["progress"] == 0.5 and mid["eta_s"] == 10.0
    done = jobs.finish(job["_id"], running["run_id"], {"frames": 3})
    assert done["status"] == "succeeded" and done["result"] == {"frames": 3} and done["finished_at"]


def test_refused_transitions(job):
    with pytest.raises(IllegalTransition, match="queued; it cannot become succeeded"):
        jobs.finish(job["_id"], "no-run", {})
    with pytest.raises(IllegalTransition):
        jobs.retry(job["_id"])  # queued cannot be retried
    run = jobs.claim(job["_id"], "w")
    jobs.finish(job["_id"], run["run_id"], {})
    for change in (lambda: jobs.claim(job["_id"], "w"), lambda: jobs.cancel(job["_id"]),
                   lambda: jobs.retry(job["_id"]), lambda: jobs.fail(job["_id"], None, "x")):
        with pytest.raises(IllegalTransition, match="succeeded"):
            change()
    assert jobs.get(job["_id"])["status"] == "succeeded"


def test_a_stale_attempt_cannot_finish(job):
    first = jobs.claim(job["_id"], "w1")
    second = jobs.claim(job["_id"], "w2")  # redelivered after w1 died
    assert second["attempts"] == 2 and second["run_id"] != first["run_id"]
    assert jobs.progress(job["_id"], first["run_id"], 0.9, None) is True  # told to stop
    with pytest.raises(IllegalTransition):
        jobs.finish(job["_id"], first["run_id"], {"stale": True})
    jobs.finish(job["_id"], second["run_id"], {"fresh": True})
    assert jobs.get(job["_id"])["result"] == {"fresh": True}


def test_cancel_queued_and_running(job, mongo):
    assert jobs.cancel(job["_id"])["status"] == "cancelled"
    other = jobs.create(owner="a", filename="b.mp4", kind="video", input_id=ObjectId(), size=1,
                        content_type="video/mp4")
    run = jobs.claim(other["_id"], "w")
    assert jobs.cancel(other["_id"])["cancel_requested"] is True
    assert jobs.progress(other["_id"], run["run_id"], 0.1, None) is True
    assert jobs.mark_cancelled(other["_id"], run["run_id"])["status"] == "cancelled"


def test_a_cancel_during_the_final_storage_step_wins_over_the_result(job):
    run = jobs.claim(job["_id"], "w")
    jobs.cancel(job["_id"])  # after the worker's last progress check, before it finishes
    with pytest.raises(Cancelled):
        jobs.finish(job["_id"], run["run_id"], {"frames": 3})
    current = jobs.get(job["_id"])
    assert current["status"] == "running" and current["result"] is None
    assert jobs.mark_cancelled(job["_id"], run["run_id"])["status"] == "cancelled"


def test_retry_after_failure_starts_clean(job):
    run = jobs.claim(job["_id"], "w")
    failed = jobs.fail(job["_id"], run["run_id"], "the file is empty (0 bytes)")
    assert failed["status"] == "failed" and failed["error"] == "the file is empty (0 bytes)"
    again = jobs.retry(job["_id"])
    assert again["status"] == "queued" and again["error"] is None and again["attempts"] == 0


def test_repeatedly_lost_job_is_failed_not_redelivered_for_ever(job):
    for _ in range(jobs.MAX_ATTEMPTS):
        jobs.claim(job["_id"], "w")
    with pytest.raises(IllegalTransition):
        jobs.claim(job["_id"], "w")
    final = jobs.get(job["_id"])
    assert final["status"] == "failed" and "stopped 3 times" in final["error"]


def test_owner_and_malformed_ids(job):
    assert jobs.get(job["_id"], owner="alice")["_id"] == job["_id"]
    with pytest.raises(NotFound):
        jobs.get(job["_id"], owner="mallory")
    for bad in ("nope", "", None, "0" * 24):
        with pytest.raises(NotFound):
            jobs.get(bad)
