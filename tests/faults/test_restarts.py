"""Services restarted under a working product: Redis with jobs queued and running, MongoDB mid-job.

Every job ends succeeded with exactly one set of frame data and one output; the time from the service
coming back to the product having recovered is measured and printed (pytest's terminal summary).
The kills of a worker's pool process and of a whole worker are in tests/worker/test_failures.py and
tests/worker/test_recovery.py.
"""

from __future__ import annotations

import sys
import time

import pytest

from tests.faults.conftest import RECOVERY
from tests.media import make_clip, probe
from tests.worker.helpers import (
    assert_one_set_of_everything,
    buckets_of,
    finished,
    long_clip,
    stored_job,
    wait_until,
)

pytestmark = pytest.mark.slow


def submit(stack, path):
    job = stored_job(path, path.name, owner="faults")
    stack.enqueue(job["_id"])
    return job


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("fault-clips")
    return {"long": long_clip(d / "long.mp4"), "short": make_clip(d / "short.mp4", frames=90)}


def running_mid_job(job) -> None:
    """Wait until the job has stored its first 500-frame bucket and is still running."""
    from shared import jobs

    wait_until(lambda: buckets_of(job["_id"]), 300, "a bucket stored")
    assert jobs.get(job["_id"])["status"] == "running"


@pytest.mark.parametrize("lose_data", [False, True], ids=["redis-restart", "redis-restart-data-lost"])
def test_a_redis_restart_with_a_job_running_and_one_queued_loses_neither(stack, clips, lose_data):
    from shared import jobs

    if not stack.workers:
        stack.worker()
    recovery = stack.spawn(sys.executable, "-m", "worker.recovery", "--every", "2",
                           log="faults-recovery.log") if lose_data else None
    running, queued = submit(stack, clips["long"]), submit(stack, clips["short"])
    running_mid_job(running)
    assert jobs.get(queued["_id"])["status"] == "queued"  # one worker, one job at a time
    back = stack.restart("redis", lose_data=lose_data)
    # Persisted (dev and production Redis are append-only), the queued message survives; without its
    # data, recovery finds a queued job the broker does not hold and sends it again.
    done = [wait_until(lambda j=j: finished(j["_id"]), 420, "finished") for j in (running, queued)]
    took = time.monotonic() - back
    RECOVERY[f"Redis restart{' without its data' if lose_data else ''}: both jobs done"] = took
    assert_one_set_of_everything(done[0], probe(clips["long"])["frames"])
    assert_one_set_of_everything(done[1], probe(clips["short"])["frames"])
    assert done[1]["attempts"] == 1
    assert stack.workers[0].proc.poll() is None  # the worker rode out the restart
    if recovery:
        recovery.terminate()


def test_a_mongodb_restart_mid_job_is_retried_and_ends_with_one_set(stack, clips):
    if not stack.workers:
        stack.worker()
    job = submit(stack, clips["long"])
    running_mid_job(job)
    back = stack.restart("mongo", pause_s=3.0)
    done = wait_until(lambda: finished(job["_id"]), 420, "finished")
    RECOVERY["MongoDB restart mid-job: job done"] = time.monotonic() - back
    assert_one_set_of_everything(done, probe(clips["long"])["frames"])
    assert done["attempts"] <= 2  # the interrupted attempt is retried (transient fault), not failed
    assert stack.workers[0].proc.poll() is None
