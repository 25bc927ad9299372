"""One clip, many workers: a long clip split into 20-second segments over two real worker processes
equals the unsplit run; a worker killed mid-segment costs that segment only; a cancel stops every
segment and leaves nothing; a lost join is sent again; a damaged segment, or one that keeps killing
workers, fails the job with a sentence, and a retry runs only what is missing (real Redis, real
MongoDB-compatible server, real Celery workers)."""

from __future__ import annotations

import time
from pathlib import Path

import av
import numpy as np
import pytest

from bench.bench_segments import composed_clip
from shared import jobs, result_docs
from shared.celery_app import PROCESS_JOB, enqueue
from shared.config import get_settings, set_settings
from shared.db import get_db
from tests.conftest import ARTIFACTS, RUN_TAG, WorkerProcess, wait_for_job
from tests.worker.helpers import fetch_output, frame_records, persons_of, result_files, stored_job
from worker import recovery
from worker.heartbeat import HEARTBEATS
from worker.segments_plan import plan_video

SECONDS = 120  # a two-minute clip: six 20-second segments
SEGMENT_S = 20
SIZE = (320, 180)  # low resolution keeps the CPU time of three runs to a few minutes


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return composed_clip(tmp_path_factory.mktemp("segments") / "two_minutes.mp4", SECONDS)


@pytest.fixture(scope="module")
def workers(settings, worker):
    """Two worker processes, the only ones on the session's queues: the session's own worker (beats
    every 15 s, STALLED_AFTER_S=90) is stopped meanwhile, so that "which worker ran what" and the
    6-second stall judgement of these tests concern these two alone."""
    worker.stop()
    env = {"STALLED_AFTER_S": "6"}
    logs = ARTIFACTS / "logs"
    pair = [WorkerProcess(logs / f"worker-{RUN_TAG}-seg{i}.log", env, name="seg") for i in range(2)]
    try:
        for w in pair:
            w.start()
        yield pair
    finally:
        for w in pair:
            w.stop()
        worker.start()


@pytest.fixture
def quick_stall(settings):
    """This process's recovery sweeps judge a segment stalled after 6 s without a heartbeat."""
    set_settings(settings.replace(stalled_after_s=6))
    yield get_settings()
    set_settings(settings)


def submit(path: Path, segment_s: int) -> dict:
    """Store the clip and queue its job with its own segment length (0: unsplit), as the web queues it."""
    job = stored_job(path, path.name)
    get_db().jobs.update_one({"_id": job["_id"]}, {"$set": {"segment_seconds": segment_s}})
    enqueue(PROCESS_JOB, str(job["_id"]))
    return job


def segments_now(job_id) -> list[dict]:
    return list(get_db()[jobs.SEGMENTS].find({"job_id": job_id}))


def pts_of(path: Path) -> list[int]:
    """Presentation timestamps of every decoded frame, in decoding order."""
    with av.open(str(path)) as c:
        return [f.pts for f in c.decode(video=0)]


def test_the_plan_splits_at_keyframes_about_every_segment(clip, settings):
    job = stored_job(clip, clip.name)
    try:
        plan = plan_video({**job, "segment_seconds": SEGMENT_S}, settings)
        assert plan is not None and plan["frames"] == SECONDS * 25
        segs = plan["segments"]
        assert 4 <= len(segs) <= 7
        assert segs[0]["first"] == 0 and segs[-1]["end"] == plan["frames"]
        with av.open(str(clip)) as c:
            keys = {i for i, e in enumerate(c.streams.video[0].index_entries) if e.is_keyframe}
        for a, b in zip(segs, segs[1:], strict=False):
            assert a["end"] == b["first"] and b["first"] in keys  # contiguous, each from a keyframe
            assert 0.5 * SEGMENT_S * 25 <= b["first"] - a["first"] <= 1.5 * SEGMENT_S * 25
        assert plan_video({**job, "segment_seconds": 0}, settings) is None  # never split
        assert plan_video({**job, "segment_seconds": 100}, settings) is None  # short: one segment
    finally:
        jobs.delete(job["_id"])


@pytest.mark.slow
def test_a_split_run_equals_the_unsplit_run(clip, workers, tmp_path):
    whole = wait_for_job(submit(clip, 0)["_id"], timeout=900)
    split = wait_for_job(submit(clip, SEGMENT_S)["_id"], timeout=900)
    assert whole["status"] == "succeeded", whole["error"]
    assert split["status"] == "succeeded", split["error"]
    a, b = whole["result"], split["result"]
    n = len(split["plan"]["segments"])
    assert "segments" not in a and b["segments"]["count"] == n >= 4
    assert b["frames"] == a["frames"] == SECONDS * 25
    assert b["duration_s"] == a["duration_s"]
    # Frame records: one per frame, the same numbers and timestamps.
    ra, rb = frame_records(whole), frame_records(split)
    assert [(r["frame"], r["t"]) for r in rb] == [(r["frame"], r["t"]) for r in ra]
    # The same people, at most one extra per boundary.
    pa, pb = a["people"]["total"], b["people"]["total"]
    print(f"people: unsplit {a['people']}, split {b['people']} over {n} segments")
    assert pa <= pb <= pa + (n - 1) or pb <= pa <= pb + (n - 1)
    assert abs(pb - pa) <= n - 1
    ledger = persons_of(split)
    assert sum(p["status"] == "counted" for p in ledger) == pb
    assert all(p["track_ids"][0] == p["track_id"] for p in ledger)
    # One output, played and sought across every boundary: monotonic pts, the unsplit run's timestamps.
    out_a, out_b = fetch_output(whole, tmp_path / "whole.mp4"), fetch_output(split, tmp_path / "split.mp4")
    ta, tb = pts_of(out_a), pts_of(out_b)
    assert len(tb) == b["frames"] and all(x < y for x, y in zip(tb, tb[1:], strict=False))
    assert tb == ta
    data = out_b.read_bytes()
    assert 0 <= data.find(b"moov") < data.find(b"mdat")  # +faststart: plays while it downloads
    fps = split["plan"]["fps"]
    with av.open(str(out_b)) as c:
        s = c.streams.video[0]
        assert s.frames == b["frames"]
        for seg in split["plan"]["segments"][1:]:
            target = seg["first"] / fps + 0.2  # just past a boundary
            c.seek(round(target / s.time_base), stream=s)
            f = next(c.decode(s))
            assert f.time <= target + 0.05 and f.key_frame
            decoded = [f] + [next(c.decode(s)) for _ in range(10)]  # plays on through the boundary
            assert all(x.pts < y.pts for x, y in zip(decoded, decoded[1:], strict=False))
    roles = sorted(f["metadata"]["role"] for f in result_files(split["_id"]))
    assert roles.count("annotated") == 1 and "part" not in roles
    assert segments_now(split["_id"]) == []  # parts and segment documents are gone once joined
    for job in (whole, split):
        jobs.delete(job["_id"])


def _wait(cond, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def _left(job: dict) -> list:
    """What a stopped split job still has: buckets, results files, segment documents, outputs, beats."""
    keys = [jobs.segment_id(job["_id"], k) for k in range(len(job["plan"]["segments"]))]
    return (_buckets_left(job["_id"], job["plan"]["frames"]) + result_files(job["_id"])
            + segments_now(job["_id"]) + list(get_db()[jobs.SEGMENT_OUTS].find({"job_id": job["_id"]}))
            + list(get_db()[HEARTBEATS].find({"_id": {"$in": keys}})))


def _buckets_left(job_id, frames: int) -> list[str]:
    ids = [result_docs.bucket_id(job_id, n) for n in range(-(-frames // result_docs.BUCKET_FRAMES))]
    return [d["_id"] for d in get_db()[result_docs.FRAMES].find({"_id": {"$in": ids}})]


@pytest.mark.slow
def test_cancel_mid_job_stops_every_segment_and_keeps_nothing(clip, workers):
    job = submit(clip, SEGMENT_S)
    # Mid-job: both workers are in a segment and some frames are stored.
    _wait(lambda: sum(s["status"] == "running" and (s.get("frames_done") or 0) > 0
                      for s in segments_now(job["_id"])) >= 2, 600, "two segments never ran at once")
    jobs.cancel(job["_id"])
    done = wait_for_job(job["_id"], timeout=60)
    assert done["status"] == "cancelled"
    # Every segment stops within seconds, and nothing of the job's output is left.
    _wait(lambda: not _left(done), 30, "a segment kept running or left output")
    time.sleep(3)  # a segment that had not noticed yet would write within its next second
    assert _left(done) == []
    jobs.delete(job["_id"])


@pytest.mark.slow
def test_a_worker_killed_mid_segment_costs_that_segment_only(short_clip, workers, quick_stall, tmp_path):
    job = submit(short_clip, SEGMENT_S)
    running = _wait(lambda: [s for s in segments_now(job["_id"])
                             if s["status"] == "running" and (s.get("frames_done") or 0) > 50],
                    600, "no segment got going")
    pid = int(running[0]["worker"].split(":")[1])
    victim = next(w for w in workers if pid in w.children())
    victim.kill()  # its message stays unacknowledged in Redis: only the heartbeat tells
    killed_k = running[0]["k"]
    _wait(lambda: jobs.segment_id(job["_id"], killed_k) in recovery.sweep()["requeued_segments"], 60,
          "the stalled segment was never sent again")
    victim.start()  # a new machine takes its place
    done = wait_for_job(job["_id"], timeout=900)
    assert done["status"] == "succeeded", done["error"]
    frames = done["plan"]["frames"]
    assert [r["frame"] for r in frame_records(done)] == list(range(frames))  # one record per frame
    roles = sorted(f["metadata"]["role"] for f in result_files(done["_id"]))
    assert roles.count("annotated") == 1 and roles.count("poster") == 1 and "part" not in roles
    attempts = done["result"]["segments"]["attempts"]
    assert attempts[killed_k] == 2 and sum(attempts) == len(attempts) + 1  # only that segment again
    with av.open(str(fetch_output(done, tmp_path / "out.mp4"))) as c:
        assert sum(1 for _ in c.decode(video=0)) == frames
    jobs.delete(done["_id"])


def test_parts_encoded_apart_concatenate_into_the_one_encode(tmp_path):
    from fractions import Fraction

    from worker.join import concatenate
    from worker.pipeline.encode import VideoSink

    tb, step = Fraction(1, 12800), 512  # 25 fps in the time base of libx264's MP4s
    frames = [np.full((90, 160, 3), (i * 7) % 255, np.uint8) for i in range(60)]

    def encode(path, chunk):
        with VideoSink(path, width=160, height=90, fps=25, time_base=tb) as sink:
            for i, image in chunk:
                sink.write(image, i * step)
        return path

    whole = encode(tmp_path / "whole.mp4", list(enumerate(frames)))
    parts = [encode(tmp_path / f"p{k}.mp4", list(enumerate(frames))[a:b])
             for k, (a, b) in enumerate([(0, 23), (23, 41), (41, 60)])]
    joined = concatenate(parts, tmp_path / "joined.mp4")
    assert pts_of(joined) == pts_of(whole) == [i * step for i in range(60)]
    data = joined.read_bytes()
    assert 0 <= data.find(b"moov") < data.find(b"mdat")
    with av.open(str(joined)) as c:  # seeking into the second part lands on its first frame
        s = c.streams.video[0]
        c.seek(30 * step, stream=s)
        assert next(c.decode(s)).pts == 23 * step


def test_tracks_are_linked_across_a_boundary_by_the_overlap_frames():
    from worker.join import link_tracks

    box_a, box_b = [10, 10, 50, 50], [100, 10, 140, 50]
    before = {"tail": [[f, [box_a, box_b], [3, 4]] for f in range(100, 105)]}
    # Segment 1 sees the same two faces (its own ids, boxes a pixel off) and a third, new person.
    head = [[11, 10, 51, 50], [101, 11, 141, 51], [200, 10, 240, 50]]
    after = {"head": [[f, head, [1001, 1002, 1003]] for f in range(100, 105)],
             "tail": [[f, [[11, 10, 51, 50]], [1001]] for f in range(200, 203)]}
    again = {"head": [[f, [[12, 10, 52, 50]], [2001]] for f in range(200, 203)], "tail": []}
    links = link_tracks([before, after, again])
    assert links[1001] == 3 and links[1002] == 4 and links[2001] == 3  # across two boundaries: one person
    assert 1003 not in links


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory) -> Path:
    """45 seconds: two 20-second segments (a little work, then a join)."""
    return composed_clip(tmp_path_factory.mktemp("segments") / "two_segments.mp4", 45)


@pytest.mark.slow
def test_a_join_whose_worker_died_is_sent_again_by_recovery(short_clip, workers, quick_stall):
    job = submit(short_clip, SEGMENT_S)
    plan = _wait(lambda: jobs.get(job["_id"]).get("plan"), 300, "never planned")
    # A join that started on a machine which then died: its claim stays, its heartbeat never comes. The
    # last segment's join message finds the claim taken and stops, so only recovery can finish the job.
    assert jobs.claim_join(job["_id"], plan["id"], worker="dead-host:1:lost") is not None
    def all_done() -> bool:
        segs = [s for s in segments_now(job["_id"]) if "k" in s]
        return len(segs) == len(plan["segments"]) and all(s["status"] == "done" for s in segs)

    _wait(all_done, 600, "segments never finished")
    assert jobs.get(job["_id"])["status"] == "running"
    _wait(lambda: str(job["_id"]) in recovery.sweep()["sent_joins"], 60, "the join was never sent again")
    done = wait_for_job(job["_id"], timeout=300)
    assert done["status"] == "succeeded", done["error"]
    assert [r["frame"] for r in frame_records(done)] == list(range(plan["frames"]))
    roles = sorted(f["metadata"]["role"] for f in result_files(done["_id"]))
    assert roles.count("annotated") == 1 and roles.count("poster") == 1 and "part" not in roles
    assert done["result"]["segments"]["attempts"] == [1] * len(plan["segments"])  # segments ran once
    assert segments_now(job["_id"]) == []
    jobs.delete(done["_id"])


@pytest.mark.slow
def test_a_damaged_segment_fails_the_job_with_a_sentence_and_keeps_nothing(short_clip, workers, tmp_path):
    broken = tmp_path / "damaged_middle.mp4"
    data = bytearray(short_clip.read_bytes())
    with av.open(str(short_clip)) as c:  # zero 100 frames of the second segment's media data
        entries = c.streams.video[0].index_entries
        a, b = entries[SEGMENT_S * 25 + 150].pos, entries[SEGMENT_S * 25 + 250].pos
    data[a:b] = bytes(b - a)
    broken.write_bytes(data)
    done = wait_for_job(submit(broken, SEGMENT_S)["_id"], timeout=600)
    assert done["status"] == "failed"
    assert done["error"].startswith("the video is damaged after") and done["retryable"] is False
    _wait(lambda: not _left(done), 30, "a segment kept running or left output")
    time.sleep(3)  # a segment that had not noticed yet would write within its next second
    assert _left(done) == []
    jobs.delete(done["_id"])


@pytest.mark.slow
def test_a_segment_that_keeps_killing_workers_fails_the_job_and_a_retry_runs_only_it(
        short_clip, workers, quick_stall):
    job = submit(short_clip, SEGMENT_S)
    plan = _wait(lambda: jobs.get(job["_id"]).get("plan"), 300, "never planned")
    last = len(plan["segments"]) - 1
    for attempt in range(1, jobs.MAX_SEGMENT_ATTEMPTS + 1):
        seg = _wait(lambda a=attempt: next((s for s in segments_now(job["_id"]) if s.get("k") == last
                                            and s["status"] == "running" and s["attempts"] == a
                                            and (s.get("frames_done") or 0) > 0), None),
                    600, f"attempt {attempt} of the last segment never ran")
        victim = next(w for w in workers if int(seg["worker"].split(":")[1]) in w.children())
        victim.kill()
        _wait(lambda: jobs.segment_id(job["_id"], last) in recovery.sweep()["requeued_segments"], 60,
              "the stalled segment was never sent again")
        victim.start()
    failed = wait_for_job(job["_id"], timeout=300)
    assert failed["status"] == "failed" and failed["retryable"] is not False
    stopped = f"the worker stopped {jobs.MAX_SEGMENT_ATTEMPTS} times while processing"
    assert failed["error"].startswith(stopped) and "of this clip" in failed["error"]
    first = next(s for s in segments_now(job["_id"]) if s.get("k") == 0)
    assert first["status"] == "done"  # kept: a retry does not run it again
    jobs.retry(job["_id"])
    enqueue(PROCESS_JOB, str(job["_id"]))
    done = wait_for_job(job["_id"], timeout=600)
    assert done["status"] == "succeeded", done["error"]
    assert done["plan"]["id"] == plan["id"]
    assert done["result"]["segments"]["attempts"][0] == first["attempts"] == 1
    assert done["result"]["segments"]["attempts"][last] == 1  # the retry's own single attempt
    assert [r["frame"] for r in frame_records(done)] == list(range(plan["frames"]))
    jobs.delete(done["_id"])


def remuxed(src: Path, dest: Path, fmt: str) -> Path:
    """The clip's packets in another container (what an NVR export is), not re-encoded."""
    with av.open(str(src)) as i, av.open(str(dest), "w", format=fmt) as o:
        s = o.add_stream_from_template(i.streams.video[0])
        for p in i.demux(i.streams.video[0]):
            if p.dts is not None:
                p.stream = s
                o.mux(p)
    return dest


@pytest.mark.parametrize("fmt", ["matroska", "mpegts"])
def test_a_long_clip_without_an_index_is_planned_on_an_indexed_copy(short_clip, settings, tmp_path, fmt):
    from worker import indexed_copy

    src = remuxed(short_clip, tmp_path / f"nvr.{'mkv' if fmt == 'matroska' else 'ts'}", fmt)
    job = {**stored_job(src, src.name), "segment_seconds": SEGMENT_S}
    try:
        assert plan_video(job, settings) is None  # no per-frame index: it cannot be planned as it is
        assert indexed_copy.wanted(job, settings)
        assert not indexed_copy.wanted({**job, "segment_seconds": 60}, settings)  # short: runs whole
        copy = indexed_copy.make(job, tmp_path)
        plan = plan_video(job, settings, source_id=copy)
        assert plan is not None and plan["source_id"] == copy and len(plan["segments"]) == 2
        assert plan["frames"] == len(pts_of(short_clip))  # every frame of the original, in the copy
        get_db().jobs.update_one({"_id": job["_id"]}, {"$set": {"plan": plan}})  # as segments_plan.start
    finally:
        jobs.delete(job["_id"])
    assert get_db()["uploads.files"].count_documents({"metadata.job_id": job["_id"]}) == 0  # copy gone too


@pytest.mark.slow
def test_an_mkv_export_is_split_and_equals_its_unsplit_run(short_clip, workers, tmp_path):
    src = remuxed(short_clip, tmp_path / "nvr.mkv", "matroska")
    whole = wait_for_job(submit(src, 0)["_id"], timeout=600)
    split = wait_for_job(submit(src, SEGMENT_S)["_id"], timeout=600)
    assert whole["status"] == "succeeded", whole["error"]
    assert split["status"] == "succeeded", split["error"]
    assert split["plan"]["source_id"] and len(split["plan"]["segments"]) == 2
    assert "segments" not in whole["result"] and split["result"]["segments"]["count"] == 2
    assert split["result"]["frames"] == whole["result"]["frames"] == len(pts_of(short_clip))
    ra, rb = frame_records(whole), frame_records(split)
    assert [(r["frame"], r["t"]) for r in rb] == [(r["frame"], r["t"]) for r in ra]
    assert abs(split["result"]["people"]["total"] - whole["result"]["people"]["total"]) <= 1
    out = fetch_output(split, tmp_path / "split.mp4")
    ts = [round(float(t), 3) for t in _times(out)]
    assert ts == [round(float(t), 3) for t in _times(fetch_output(whole, tmp_path / "whole.mp4"))]
    for job in (whole, split):
        jobs.delete(job["_id"])
    assert get_db()["uploads.files"].count_documents({"metadata.job_id": split["_id"]}) == 0


def _times(path: Path) -> list:
    with av.open(str(path)) as c:
        return [f.time for f in c.decode(video=0)]


def open_gop_clip(path: Path, seconds: int = 45, fps: int = 25, size=(320, 180)) -> Path:
    """x264 with open GOPs: frames shown before a keyframe are stored after it, so a cut there puts
    them in the wrong segment (each segment then decodes another count than planned)."""
    w, h = size
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"x264-params": "keyint=50:min-keyint=50:open-gop=1:bframes=3:b-adapt=0:scenecut=0"}
        yy, xx = np.mgrid[0:h, 0:w]
        for i in range(seconds * fps):
            img = np.stack([(xx + 4 * i) % 256, (yy + 2 * i) % 256, np.full_like(xx, (9 * i) % 256)], -1)
            for p in s.encode(av.VideoFrame.from_ndarray(img.astype(np.uint8), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


@pytest.mark.slow
def test_a_clip_its_keyframes_do_not_cut_cleanly_runs_in_one_piece_instead(workers, tmp_path):
    src = open_gop_clip(tmp_path / "open_gop.mp4")
    job = submit(src, SEGMENT_S)
    seen_plan = _wait(lambda: jobs.get(job["_id"]).get("plan"), 120, "a plan")  # it was split at first
    done = wait_for_job(job["_id"], timeout=600)
    assert done["status"] == "succeeded", done["error"]
    assert len(seen_plan["segments"]) >= 2
    assert "segments" not in done["result"] and "plan" not in done and done["segment_seconds"] == 0
    assert done["result"]["frames"] == 45 * 25
    assert [r["frame"] for r in frame_records(done)] == list(range(45 * 25))  # each frame once
    assert segments_now(done["_id"]) == []
    roles = sorted(f["metadata"]["role"] for f in result_files(done["_id"]))
    assert roles.count("annotated") == 1 and "part" not in roles
    jobs.delete(done["_id"])
