"""What goes wrong, through the real queue: a killed worker, a cancel, and a corpus of bad files."""

from __future__ import annotations

import os
import signal
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from shared import jobs, storage
from shared.db import RESULTS
from shared.errors import IllegalTransition
from tests.conftest import wait_for_job
from tests.media import make_clip, make_vfr_clip, probe
from tests.worker.helpers import (
    buckets_of,
    frame_records,
    long_clip,
    result_files,
    stored_job,
    submit,
    temp_dirs,
    wait_until,
)

pytestmark = pytest.mark.slow


def test_a_killed_pool_process_redelivers_and_ends_with_one_set_of_everything(worker, asset, tmp_path, mongo):
    src = long_clip(tmp_path / "kill_me.mp4")
    job = submit(src)
    # Killed once the first attempt has stored its first bucket (frames 0-499).
    wait_until(lambda: buckets_of(job["_id"]), 240, "a bucket stored")
    first_run = jobs.get(job["_id"])["run_id"]
    assert jobs.get(job["_id"])["status"] == "running"  # killed mid-job, not after it
    children = worker.children()
    assert children, "no pool process to kill"
    for pid in children:
        os.kill(pid, signal.SIGKILL)
    done = wait_for_job(job["_id"], timeout=240)
    assert done["status"] == "succeeded", done["error"]
    assert done["attempts"] == 2 and done["run_id"] != first_run
    frames = probe(src)["frames"]
    assert done["result"]["frames"] == frames
    numbers = [d["frame"] for d in frame_records(done)]
    assert numbers == list(range(frames))  # one set: no duplicates, no gaps
    assert [b["_id"] for b in buckets_of(job["_id"])] == [f"{job['_id']}:f:{n:06d}" for n in (0, 1, 2)]
    files = result_files(job["_id"])
    assert [f["metadata"]["role"] for f in files].count("annotated") == 1
    assert {f["_id"] for f in files if f["metadata"]["role"] == "annotated"} == {done["result"]["output_id"]}
    # No orphaned chunks: every chunk belongs to a file of this job that the result points at.
    ids = {f["_id"] for f in files}
    chunk_owners = set(mongo[f"{RESULTS}.chunks"].distinct("files_id", {"files_id": {"$in": list(ids)}}))
    assert chunk_owners == ids
    assert not temp_dirs(job["_id"])
    # The worker is still up and serving (a fresh pool process took over).
    assert worker.proc.poll() is None


def test_cancel_stops_a_running_job_and_keeps_nothing(worker, tmp_path, mongo):
    # Long enough that even a fast machine is still decoding when the cancel arrives; a cancel that
    # arrives while the outputs are stored still wins (jobs.finish), so no speed is assumed.
    src = make_clip(tmp_path / "long.mp4", frames=3000, size=(160, 120))
    job = submit(src)
    wait_until(lambda: (jobs.get(job["_id"]).get("frames_done") or 0) > 0, 240, "started")
    assert jobs.cancel(job["_id"])["cancel_requested"] is True
    done = wait_for_job(job["_id"], timeout=240)
    assert done["status"] == "cancelled" and done["error"] == "cancelled by the user"
    assert (done.get("frames_done") or 0) < 3000  # stopped mid-clip, not run to the end
    assert buckets_of(job["_id"]) == []
    assert result_files(job["_id"]) == [] and not temp_dirs(job["_id"])


def test_a_cancel_while_the_outputs_are_stored_ends_cancelled_with_nothing_kept(tmp_path, mongo, monkeypatch):
    from worker.tasks import process_job

    photo = tmp_path / "late.jpg"
    cv2.imwrite(str(photo), np.random.default_rng(3).integers(0, 256, (240, 320, 3), np.uint8))
    job = stored_job(photo, photo.name)
    real_put = storage.put

    def put_then_cancel(bucket, *args, **kwargs):
        # The user cancels after the worker's last progress check, while the annotated file is stored.
        if kwargs.get("metadata", {}).get("role") == "annotated":
            jobs.cancel(job["_id"])
        return real_put(bucket, *args, **kwargs)

    monkeypatch.setattr(storage, "put", put_then_cancel)
    assert process_job.apply(args=[str(job["_id"])]).get() == "cancelled"  # this process is the worker
    done = jobs.get(job["_id"])
    assert done["status"] == "cancelled" and done["result"] is None
    assert done["error"] == "cancelled by the user"
    assert result_files(job["_id"]) == [] and buckets_of(job["_id"]) == []


def test_a_transient_database_fault_is_retried_and_the_job_succeeds(tmp_path, mongo, monkeypatch):
    from pymongo.errors import AutoReconnect

    from worker.tasks import process_job

    photo = tmp_path / "blip.jpg"
    cv2.imwrite(str(photo), np.random.default_rng(4).integers(0, 256, (240, 320, 3), np.uint8))
    job = stored_job(photo, photo.name)
    real_save_to, faults = storage.save_to, []

    def blip_once(*args, **kwargs):
        # The database drops the connection once while the upload is fetched (a failover, say).
        if not faults:
            faults.append(1)
            raise AutoReconnect("connection reset by peer")
        return real_save_to(*args, **kwargs)

    monkeypatch.setattr(storage, "save_to", blip_once)
    # Eager here, so Celery's automatic retry runs at once in this process instead of after a backoff.
    assert process_job.apply(args=[str(job["_id"])]).get() == "succeeded"
    done = jobs.get(job["_id"])
    assert done["status"] == "succeeded" and done["attempts"] == 2 and faults == [1]
    assert [f["metadata"]["role"] for f in result_files(job["_id"])].count("annotated") == 1


def test_the_soft_time_limit_fails_the_job_with_a_sentence_and_keeps_nothing(tmp_path, mongo, monkeypatch):
    import subprocess
    import sys
    from urllib.parse import urlsplit, urlunsplit

    from tests.conftest import ARTIFACTS, ROOT, RUN_TAG, WorkerProcess

    # A worker of its own, with a 1-second limit, on a Redis database no other test worker reads.
    r = urlsplit(os.environ["REDIS_URL"])
    monkeypatch.setenv("REDIS_URL", urlunsplit(r._replace(path=f"/{int(r.path.strip('/')) % 15 + 1}")))
    monkeypatch.setenv("JOB_TIME_LIMIT_S", "1")
    src = make_clip(tmp_path / "slow.mp4", frames=6000, size=(160, 120))  # far more than a second's work
    job = stored_job(src, src.name)
    limited = WorkerProcess(ARTIFACTS / "logs" / f"worker-{RUN_TAG}-limit.log")
    limited.start()
    try:
        send = ("from shared.celery_app import PROCESS_JOB, enqueue\n"
                f"enqueue(PROCESS_JOB, {str(job['_id'])!r})")
        subprocess.run([sys.executable, "-c", send], cwd=ROOT, env=os.environ.copy(), check=True, timeout=60)
        done = wait_for_job(job["_id"], timeout=300)
    finally:
        limited.stop()
    assert done["status"] == "failed", done
    assert done["error"] == "processing took longer than the 1-second limit"
    assert buckets_of(job["_id"]) == [] and result_files(job["_id"]) == [] and not temp_dirs(job["_id"])


def _audio_only(path: Path) -> Path:
    with av.open(str(path), "w", format="mp4") as c:
        s = c.add_stream("aac", rate=44100)
        for i in range(20):
            f = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            f.sample_rate, f.pts, f.time_base = 44100, i * 1024, Fraction(1, 44100)
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def _damaged_midway(src: Path, dest: Path) -> Path:
    data = bytearray(src.read_bytes())
    n = len(data)
    data[n // 3:n // 3 + 4000] = np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes()
    dest.write_bytes(bytes(data))
    return dest


def bad_files(d: Path) -> list[tuple[str, Path, str, str]]:
    """(case, file, kind, what the user must be told) for every kind of unusable upload."""
    good = make_clip(d / "good.mp4", frames=60, size=(320, 240))
    good_mkv = make_clip(d / "good.mkv", frames=60, size=(320, 240), fmt="matroska")
    data, mkv = good.read_bytes(), good_mkv.read_bytes()
    (d / "notes.mp4").write_text("hello, this is not a video")
    (d / "empty.mp4").write_bytes(b"")
    (d / "cut.mp4").write_bytes(data[: len(data) // 2])
    (d / "cut.mkv").write_bytes(mkv[: len(mkv) // 2])
    photo = cv2.imencode(".jpg", np.random.default_rng(1).integers(0, 256, (240, 320, 3), np.uint8))[1]
    (d / "cut.jpg").write_bytes(photo.tobytes()[: len(photo) // 2])
    mjpeg = {"codec": "mjpeg", "fmt": "avi", "pix_fmt": "yuvj420p", "frames": 2}
    huge = make_clip(d / "huge.avi", size=(4400, 2200), **mjpeg)
    tiny = make_clip(d / "tiny.avi", size=(8, 8), **mjpeg)
    long = make_vfr_clip(d / "long.mp4", [0.0, 0.04, 4.5 * 3600])
    return [
        ("not a video", d / "notes.mp4", "video", "not a video or image file we can read"),
        ("zero bytes", d / "empty.mp4", "video", "the file is empty (0 bytes)"),
        ("truncated mp4", d / "cut.mp4", "video", "incomplete (its index is missing)"),
        ("truncated mkv", d / "cut.mkv", "video", "the file is truncated or damaged"),
        ("no video stream", _audio_only(d / "voice.m4a"), "video", "the file has no video stream"),
        ("damaged midway", _damaged_midway(good, d / "damaged.mp4"), "video", "the video is damaged after"),
        ("damaged midway mkv", _damaged_midway(good_mkv, d / "damaged.mkv"), "video",
         "could be decoded"),
        ("absurd dimensions", huge, "video", "the video is 4400x2200 pixels; supported sizes"),
        ("too small", tiny, "video", "the video is 8x8 pixels; supported sizes"),
        ("too long", long, "video", "the video lasts 270 minutes; the limit is 240 minutes"),
        ("truncated image", d / "cut.jpg", "image", "the image is truncated or damaged"),
        ("not an image", d / "notes.mp4", "image", "not an image file we can read"),
    ]


def test_bad_files_fail_with_a_sentence_and_the_worker_stays_up(worker, tmp_path, mongo):
    cases = bad_files(tmp_path)
    submitted = [(case, submit(path, kind=kind)["_id"], expect) for case, path, kind, expect in cases]
    for case, job_id, expect in submitted:
        done = wait_for_job(job_id, timeout=120)
        assert done["status"] == "failed", (case, done["status"])
        assert expect in done["error"], (case, done["error"])
        assert "internal error" not in done["error"], case
        assert done["result"] is None
        assert result_files(job_id) == [] and not temp_dirs(job_id), case
        # The file itself is at fault: no retry is offered, and one asked for is refused.
        assert done["retryable"] is False, case
        with pytest.raises(IllegalTransition, match="upload a different file"):
            jobs.retry(job_id)
    assert not any(buckets_of(job_id) for _, job_id, _ in submitted)
    # Still up, and the next good file goes through.
    good = wait_for_job(submit(tmp_path / "good.mp4")["_id"], timeout=120)
    assert good["status"] == "succeeded", good["error"]
    assert worker.proc.poll() is None


def test_a_second_delivery_while_the_attempt_is_alive_is_not_run_and_one_after_it_died_is(
        tmp_path, mongo, settings, monkeypatch):
    from shared import config
    from worker.heartbeat import Heartbeat
    from worker.tasks import process_job

    # Redis hands a message out again past its visibility timeout even while a worker still runs it.
    monkeypatch.setattr(config, "_settings", settings.replace(stalled_after_s=3))  # watched for 3 s
    photo = tmp_path / "twice.jpg"
    cv2.imwrite(str(photo), np.random.default_rng(5).integers(0, 256, (240, 320, 3), np.uint8))
    job = stored_job(photo, photo.name)
    running = jobs.claim(job["_id"], worker="elsewhere")
    with Heartbeat(job["_id"], running["run_id"], worker="elsewhere", every_s=0.5):
        assert process_job.apply(args=[str(job["_id"])]).get() == "skipped"
    now = jobs.get(job["_id"])
    assert (now["status"], now["attempts"], now["run_id"]) == ("running", 1, running["run_id"])
    # That attempt's heartbeat stopped (its process died, leaving its last beat): the next delivery
    # takes the job over.
    mongo.heartbeats.insert_one({"_id": str(job["_id"]), "run_id": running["run_id"], "worker": "elsewhere",
                                 "at": jobs.now()})
    assert process_job.apply(args=[str(job["_id"])]).get() == "succeeded"
    assert jobs.get(job["_id"])["attempts"] == 2
