"""A camera's segments as parts of one clip: each analysed with the clip's frame numbers and times, the
clip's result joined from theirs (no second analysis of the recording), people linked across parts.

The recorder tells each segment job where it lies in its clip (`first_frame`, `t0`: worker/recorder.py).
A part is analysed like any upload (its own result feeds the live page), except that its frames carry
the clip's numbers and times and its track ids start at seq*run.ID_STRIDE (as a split clip's segments'
do); it also stores an output (`segment_outs`, "live:<recording>:<seq>"): its people's tallies and the
faces of its first and last second. Its own frame buckets keep its own numbering (0 ..): two parts
never write the same bucket.

Parts follow each other without overlap (the recorder cuts at a keyframe), so a person crossing a cut is
found by their last box in one part and their first box in the next: the cut is one frame long, faces
barely move, and the boxes of one person overlap (LINK_IOU), matched one to one, best first. Each part,
when done, stores its links to the parts before and after it that are done (`live_links`, written the
same by either side), which the live page counts people by.

The recording's clip (`live_parts`: its parts' job ids) is analysed by the usual task; when every part
succeeded and they fit together, its result is joined from theirs as a split clip's is (worker/join.py:
merged tallies, buckets rewritten in the clip's numbering, the annotated parts' packets concatenated).
Anything else (a part failed, an old part without its output, a part still running after WAIT_S)
analyses the recording from its file, as before.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from models.rules import Rules
from shared import jobs, result_docs, results, storage
from shared.config import Settings
from shared.db import RESULTS, get_db
from shared.errors import Cancelled
from worker.loaded_models import get_models
from worker.pipeline import run
from worker.pipeline.decode import VideoInfo, video_frames
from worker.pipeline.encode import write_thumbnail
from worker.pipeline.stats import tallies
from worker.pipeline.track import iou_matrix
from worker.recorder import concatenate, file_facts

log = logging.getLogger(__name__)
LINK_S = 1.0  # a track ending this close to a cut, or starting this close after it, may cross it
LINK_IOU = 0.3  # the same face one frame apart (a few frames when the detector missed it at the cut)
WAIT_S = 600.0  # how long the clip waits for parts still analysed (then it is analysed itself)
CHUNK_WAIT_S = 30.0  # how long a webcam chunk waits for the one before it to know its place


def is_part(job: dict) -> bool:
    """Whether the job is a camera segment (or webcam chunk) that knows its place in its clip."""
    return job.get("recording_id") is not None and job.get("seq") is not None and job.get("t0") is not None


# --- a part


def analyse_part(job: dict, src: Path, workdir: Path, *, settings: Settings, on_progress,
                 on_frame) -> run.Outcome:
    """Analyse one part with its clip's frame numbers, times and ids, and store its output (the caller
    links it to its neighbours once its result is stored). on_frame gets records in the part's own
    numbering (its own buckets)."""
    first, t0, seq = int(job["first_frame"]), float(job["t0"]), int(job["seq"])
    info = VideoInfo.from_path(src, max_pixels=settings.max_pixels, max_seconds=settings.max_video_seconds)
    window = max(1, round(LINK_S * (info.fps or 25)))
    head: list = []
    tail: deque = deque(maxlen=window)

    def record(r: dict) -> None:
        faces = [r["frame"], [f["box"] for f in r["faces"]], [f["track"] for f in r["faces"]]]
        if len(head) < window:
            head.append(faces)
        tail.append(faces)
        on_frame({**r, "frame": r["frame"] - first, "t": round(r["t"] - t0, 4)})

    out, thumb = workdir / "annotated.mp4", workdir / "poster.jpg"
    expected = info.frames or round(info.duration_s * info.fps) or None
    # start=-t0: a part's times start at 0, so its frames' times become t0 + theirs.
    done = run.frame_loop(_numbered(video_frames(src, info), first), info, out, settings=settings,
                          models=get_models(), rules=Rules(),
                          on_progress=lambda n: on_progress(n, total=expected), on_frame=record,
                          start=-t0, id_offset=seq * run.ID_STRIDE)
    write_thumbnail(done.poster.image, thumb, width=run.POSTER_WIDTH)
    stats, crops = done.collector.summary()
    summary = run.video_summary(info, done, stats, settings=settings, rules=Rules())
    payload = {"seq": seq, "first_frame": first, "t0": t0, "frames": done.frames, "last_t": done.last_t,
               "seconds": done.seconds, "output": [done.output_width, done.output_height, done.encoder],
               "models": done.models, "tracker": done.tracker.describe(), "tallies": tallies(done.collector),
               "poster": {"faces": done.poster.faces}, "head": head, "tail": list(tail)}
    result_docs.put(jobs.SEGMENT_OUTS, result_docs.text_docs(
        jobs.part_out_id(job["recording_id"], seq), results.dumps(payload), job_id=job["_id"]))
    summary["people_ids"] = sorted(p["track_id"] for p in summary["persons"] if results.counted(p))
    return run.Outcome(output_path=out, output_type="video/mp4", thumbnail_path=thumb, summary=summary,
                       crops=crops)


def place_chunk(job: dict, src: Path) -> dict:
    """A webcam chunk given its place in its session's clip (right after the chunk before it), recorded
    on its job; the job as it was when the chunk before has no place (it is then analysed on its own,
    and the session's clip analysed again)."""
    if job.get("webcam_session") is None or job.get("seq") is None or job.get("t0") is not None:
        return job
    seq = int(job["seq"])
    frames, span = file_facts(src)
    place = {"recording_id": f"webcam:{job['webcam_session']}", "first_frame": 0, "t0": 0.0,
             "frames_recorded": frames, "span_s": span}
    deadline = time.monotonic() + CHUNK_WAIT_S
    while seq > 0:
        prev = get_db().jobs.find_one({"owner": job["owner"], "webcam_session": job["webcam_session"],
                                       "seq": seq - 1}, {"status": 1, "t0": 1, "first_frame": 1,
                                                         "frames_recorded": 1, "span_s": 1})
        if prev is not None and prev.get("t0") is not None:
            place.update(first_frame=prev["first_frame"] + prev["frames_recorded"],
                         t0=prev["t0"] + prev["span_s"])
            break
        if prev is None or prev["status"] in jobs.FINAL or time.monotonic() > deadline:
            log.info("job %s: the chunk before has no place; analysed on its own", job["_id"])
            return job
        time.sleep(0.5)
    if not jobs.record(job["_id"], job["run_id"], **place):
        raise Cancelled("a newer attempt owns the job")
    return {**job, **place}


def _numbered(frames, first: int) -> Iterator:
    """Frames numbered on from first (the part's place in its clip)."""
    for frame in frames:
        frame.index += first
        yield frame


def load_out(recording_id: str, seq: int) -> dict | None:
    """Part seq's output, or None when it has none (not done, or recorded before parts had one)."""
    return json.loads(result_docs.text(jobs.SEGMENT_OUTS, jobs.part_out_id(recording_id, seq), "null"))


def link_neighbours(job: dict) -> None:
    """Store the links between this part and the parts before and after it whose outputs exist."""
    rec, seq = job["recording_id"], int(job["seq"])
    mine = load_out(rec, seq)
    for before, after, k in ((load_out(rec, seq - 1) if seq else None, mine, seq),
                             (mine, load_out(rec, seq + 1), seq + 1)):
        if before is None or after is None or not follows(before, after):
            continue
        pairs = sorted(link(before, after).items())  # two lists: FerretDB stores no nested arrays
        doc = {"_id": jobs.part_links_id(rec, k), "recording_id": rec, "seq": k,
               "before": [a for _, a in pairs], "after": [b for b, _ in pairs]}
        get_db()[jobs.LIVE_LINKS].replace_one({"_id": doc["_id"]}, doc, upsert=True)


def follows(before: dict, after: dict) -> bool:
    """Whether after starts where before ends in one clip (not a new clip after a size change)."""
    return after["first_frame"] == before["first_frame"] + before["frames"] and after["first_frame"] > 0


def link(before: dict, after: dict) -> dict[int, int]:
    """{track id in after: the track id in before it continues}: each track's last box in before's last
    second against each track's first box in after's first second, matched one to one by IoU."""
    ends: dict[int, list] = {}
    for _, boxes, ids in before["tail"]:
        for box, tid in zip(boxes, ids, strict=True):
            if tid >= 0:
                ends[tid] = box
    starts: dict[int, list] = {}
    for _, boxes, ids in after["head"]:
        for box, tid in zip(boxes, ids, strict=True):
            if tid >= 0:
                starts.setdefault(tid, box)
    if not ends or not starts:
        return {}
    a_ids, b_ids = list(ends), list(starts)
    iou = iou_matrix(np.asarray([ends[t] for t in a_ids], np.float32).reshape(-1, 4),
                     np.asarray([starts[t] for t in b_ids], np.float32).reshape(-1, 4))
    rows, cols = linear_sum_assignment(-iou)
    return {int(b_ids[j]): int(a_ids[i]) for i, j in zip(rows, cols, strict=True) if iou[i, j] >= LINK_IOU}


def chain(links: list[dict[int, int]]) -> dict[int, int]:
    """{track id: the first track id of its person} from the links of consecutive cuts, in order."""
    person_of: dict[int, int] = {}
    for pairs in links:
        for b, a in pairs.items():
            person_of[b] = person_of.get(a, a)
    return person_of


# --- the clip


def wait_for_parts(job: dict, progress) -> list[dict] | None:
    """The clip's part jobs once none is still queued or running (progress notices a cancel); None when
    one is missing or WAIT_S passes."""
    deadline = time.monotonic() + WAIT_S
    while True:
        found = {d["_id"]: d for d in get_db().jobs.find({"_id": {"$in": job["live_parts"]}},
                                                          {"status": 1, "seq": 1, "result": 1})}
        if len(found) < len(job["live_parts"]):
            return None  # deleted meanwhile (retention): the recording itself is still there
        parts = [found[i] for i in job["live_parts"]]
        if all(p["status"] in jobs.FINAL for p in parts):
            return parts
        if time.monotonic() > deadline:
            log.warning("job %s: parts still running after %.0f s; the recording is analysed itself",
                        job["_id"], WAIT_S)
            return None
        progress(0, force=False)
        time.sleep(0.5)


def join_parts(job: dict, src: Path, workdir: Path, *, settings: Settings, progress) -> dict | None:
    """The clip's result joined from its parts' (stored, as an unsplit run stores it); None when they
    cannot be joined (the caller analyses the recording instead)."""
    from worker import join

    started = time.monotonic()
    parts = wait_for_parts(job, progress)
    outs = [load_out(job["recording_id"], p["seq"]) for p in parts or [] if p["status"] == jobs.SUCCEEDED]
    why = _unjoinable(parts, outs)
    if why:
        log.info("job %s: %s; the recording is analysed itself", job["_id"], why)
        return None
    info = VideoInfo.from_path(src, max_pixels=settings.max_pixels, max_seconds=settings.max_video_seconds)
    if not jobs.record(job["_id"], job["run_id"], frames_written=True):  # buckets follow: found if it fails
        raise Cancelled("a newer attempt owns the job")
    links = [link(a, b) for a, b in zip(outs, outs[1:], strict=False)]
    files = [storage.save_to(RESULTS, p["result"]["output_id"], workdir / f"part-{p['seq']:05d}.mp4")
             for p in parts]
    annotated = concatenate(files, workdir / "annotated.mp4")
    best = parts[max(range(len(parts)), key=lambda i: (outs[i]["poster"]["faces"], -i))]  # first most faces
    thumb = storage.save_to(RESULTS, best["result"]["thumbnail_id"], workdir / "poster.jpg")
    segments = {"count": len(parts), "seconds": settings.live_segment_seconds, "live": True,
                "processing_s": [p["result"].get("processing_s") for p in parts]}
    result = join.assemble(job, outs, chain(links), records=_records(parts, outs), annotated=annotated,
                           thumb=thumb, info=info, segments=segments, buckets=None)
    result["segments"]["join_s"] = round(time.monotonic() - started, 2)
    return result


def _unjoinable(parts: list[dict] | None, outs: list[dict | None]) -> str | None:
    """Why the parts' results cannot make the clip's (None: they can)."""
    if parts is None:
        return "a part is missing or still running"
    if len(outs) < len(parts):
        return "a part was not analysed"
    if any(o is None for o in outs):
        return "a part has no output (recorded before parts had one)"
    if outs[0]["first_frame"] != 0 or not all(follows(a, b) for a, b in zip(outs, outs[1:], strict=False)):
        return "the parts do not follow each other"
    if len({tuple(o["output"]) for o in outs}) != 1:
        return "the parts were encoded differently"
    return None


def _records(parts: list[dict], outs: list[dict]) -> Iterator[dict]:
    """Every part's frame records in the clip's numbering and times, in order."""
    for part, out in zip(parts, outs, strict=True):
        first, t0 = out["first_frame"], out["t0"]
        for bucket in result_docs.iter_buckets(part["_id"], part["result"]["layout"]["buckets"]):
            for r in json.loads(bucket["json"]):
                yield {**r, "frame": r["frame"] + first, "t": round(r["t"] + t0, 4)}
