"""Finished clips written straight into MongoDB, stored as the worker stores them (docs/DATA.md).

A clip is a set of synthetic people, each visible over a span of frames with a true class; every
frame record lists their faces, and the result (counts, votes, bins, persons) is aggregated from
those same frames, so pages and exports can be checked against each other. Frames go into buckets,
persons, violations and bins into their documents (shared/result_docs.py), the summary onto the job.
Used by the web tests and by bench/bench_web.py (four hours: 360,000 frames).
"""

from __future__ import annotations

import io
import math
import random
from pathlib import Path

from bson import ObjectId

from shared import jobs, result_docs, results, storage
from shared.db import RESULTS, UPLOADS

CLASSES = ("masked", "unmasked", "incorrect")
KEYS = ("masked", "unmasked", "incorrect", "unknown")


def jpeg(color=(90, 120, 150), size=(48, 48)) -> bytes:
    """A small solid JPEG."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "JPEG", quality=80)
    return buf.getvalue()


def png(color=(200, 40, 40), size=(48, 48)) -> bytes:
    """A small solid PNG."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def _people(n: int, frames: int, fps: float, rng: random.Random) -> list[dict]:
    """People with a visible span (frames) and a true class; a few are too small to decide."""
    people = []
    for track in range(1, n + 1):
        length = rng.randint(int(2 * fps), max(int(2 * fps) + 1, int(min(40 * fps, frames))))
        first = rng.randint(0, max(0, frames - length))
        r = rng.random()
        truth = "masked" if r < 0.7 else "unmasked" if r < 0.85 else "incorrect" if r < 0.95 else "unknown"
        people.append({"track": track, "first": first, "last": min(frames - 1, first + length - 1),
                       "truth": truth, "x": rng.randint(0, 250), "y": rng.randint(0, 160)})
    return people


def _label(person: dict, rng: random.Random) -> tuple[str, list[float]]:
    if person["truth"] == "unknown":
        return "unknown", [0.4, 0.35, 0.25]
    label = person["truth"] if rng.random() < 0.85 else rng.choice(CLASSES)
    p = 0.6 + 0.35 * rng.random()
    probs = [(1 - p) / 2] * 3
    probs[CLASSES.index(label)] = p
    return label, [round(v, 3) for v in probs]


def frame_docs(frames: int, fps: float, people: list[dict], seed: int = 0):
    """The frame records in order, generated lazily (four hours of them never sit in a list)."""
    rng = random.Random(seed + 1)
    starts: dict[int, list[dict]] = {}
    for p in people:
        starts.setdefault(p["first"], []).append(p)
    visible: list[dict] = []
    for i in range(frames):
        visible = [p for p in visible if p["last"] >= i] + starts.get(i, [])
        faces = []
        counts = dict.fromkeys(("faces", *KEYS), 0)
        for p in visible:
            label, probs = _label(p, rng)
            box = [p["x"], p["y"], p["x"] + 40, p["y"] + 48]
            faces.append(results.face_record(box=box, score=0.93, label=label, probs=probs, track=p["track"]))
            counts["faces"] += 1
            counts[label] += 1
        yield results.frame_record(i, i / fps, faces, counts)


class Aggregate:
    """face_frames, people, rates, bins and persons built from frame documents (as the worker does)."""

    def __init__(self, fps: float, people: list[dict]):
        self.fps, self.people = fps, people
        self.ff = dict.fromkeys(("total", *KEYS), 0)
        self.bins: dict[str, dict[int, dict]] = {"second": {}, "minute": {}}
        self.votes = {p["track"]: dict.fromkeys(CLASSES, 0) for p in people}
        self.p_sum = {p["track"]: 0.0 for p in people}
        self.n_faces = {p["track"]: 0 for p in people}

    def add(self, d: dict) -> None:
        """Count one frame document."""
        for unit, span in (("second", 1), ("minute", 60)):
            t = int(d["t"] // span) * span
            b = self.bins[unit].setdefault(t, {"t": t, "faces": 0, **dict.fromkeys(KEYS, 0)})
            b["faces"] += d["counts"]["faces"]
            for k in KEYS:
                b[k] += d["counts"][k]
        for f in d["faces"]:
            self.ff["total"] += 1
            self.ff[f["label"]] += 1
            if f["label"] in CLASSES:
                self.votes[f["track"]][f["label"]] += 1
            if f["p_mask"] is not None:
                self.p_sum[f["track"]] += f["p_mask"]
                self.n_faces[f["track"]] += 1

    def result(self) -> dict:
        """The aggregated part of the job's result."""
        persons, counts = [], dict.fromkeys(("total", *KEYS), 0)
        for p in self.people:
            v, t = self.votes[p["track"]], p["track"]
            vote = max(CLASSES, key=lambda k: v[k]) if sum(v.values()) else "unknown"
            counts["total"] += 1
            counts[vote] += 1
            persons.append({
                "track_id": t, "first_s": round(p["first"] / self.fps, 3),
                "last_s": round(p["last"] / self.fps, 3), "first_frame": p["first"], "last_frame": p["last"],
                "frames": p["last"] - p["first"] + 1, "vote": vote, "votes": v,
                "mean_p_mask": round(self.p_sum[t] / self.n_faces[t], 4) if self.n_faces[t] else None,
                "crop_id": p.get("crop_id"), "best_frame": (p["first"] + p["last"]) // 2,
                "best_box": [p["x"], p["y"], p["x"] + 40, p["y"] + 48],
            })
        return {
            "face_frames": self.ff, "people": counts,
            "compliance_rate": results.rate_of(counts),
            "face_frame_compliance": results.rate_of(self.ff),
            "bins": {u: [results.bin_record(b["t"], *(b[k] for k in KEYS)) for _, b in sorted(bins.items())]
                     for u, bins in self.bins.items()},
            "persons": persons,
        }


def seed_clip(owner: str, *, kind: str = "video", frames: int = 250, fps: float = 25.0, n_persons: int = 6,
              width: int = 320, height: int = 240, filename: str | None = None, seed: int = 0,
              media_dir: Path | None = None, crops: bool = True) -> dict:
    """A succeeded job with its buckets, pages, bins and stored files; returns the job document.

    The returned document's `result` also carries the whole `bins`, `persons`, `models` and `settings`
    (as the analysis produced them) for tests to compare with; the stored job keeps the summary only.
    media_dir: where to write the small real MP4 used as input and annotated output (videos).
    crops: store a face crop per person (GridFS files, recorded in the job's file ledger).
    """
    rng = random.Random(seed)
    filename = filename or ("lobby.mp4" if kind == "video" else "entrance.jpg")
    if kind == "image":
        frames, fps = 1, 1.0
    people = _people(n_persons, frames, fps, rng)
    if kind == "image":
        for p in people:
            p["first"] = p["last"] = 0
    if kind == "video":
        from tests.media import make_clip

        # The real video matches the result for short clips; long ones get a 2-second stand-in.
        clip = make_clip((media_dir or Path("/tmp")) / f"seed-{ObjectId()}.mp4",
                         frames=frames if frames <= 500 else 50,
                         size=(width, height), fps=max(1, round(fps)))
        data, ctype = clip.read_bytes(), "video/mp4"
        clip.unlink()
    else:
        data, ctype = jpeg(size=(width, height)), "image/jpeg"
    input_id = storage.put(UPLOADS, io.BytesIO(data), filename, content_type=ctype, metadata={"owner": owner})
    job = jobs.create(owner=owner, filename=filename, kind=kind, input_id=input_id, size=len(data),
                      content_type=ctype)
    job_id = job["_id"]
    run = jobs.claim(job_id, worker="seed")
    meta = {"job_id": job_id}
    if crops:
        for p in people:
            p["crop_id"] = ObjectId()
        result_docs.record_files(job_id, [p["crop_id"] for p in people])
        face = jpeg((30, 90, 60))
        for p in people:
            storage.put(RESULTS, io.BytesIO(face), f"face-{p['track']}.jpg", content_type="image/jpeg",
                        metadata={**meta, "role": "crop"}, file_id=p["crop_id"])
    output_id = storage.put(RESULTS, io.BytesIO(data), f"out{Path(filename).suffix}", content_type=ctype,
                            metadata={**meta, "role": "annotated"})
    thumb_id = storage.put(RESULTS, io.BytesIO(jpeg(size=(160, 90))), "poster.jpg", content_type="image/jpeg",
                           metadata={**meta, "role": "poster"})
    agg = Aggregate(fps, people)
    buckets = result_docs.BucketWriter(job_id, result_docs.put)
    for d in frame_docs(frames, fps, people, seed):
        agg.add(d)
        buckets.add(d)
    buckets.flush()
    result = {
        "output_id": output_id, "output_type": ctype if kind == "image" else "video/mp4",
        "thumbnail_id": thumb_id, "frames": frames, "duration_s": round(frames / fps, 3), "fps": fps,
        "width": width, "height": height, "rotation": 0, "codec_in": "h264",
        "output_width": width, "output_height": height, "encoder": "libx264",
        "processing_s": round(frames / 30.0, 2), "processing_fps": 30.0,
        **agg.result(),
        "models": {"detector": {"name": "yunet-2023mar", "sha256": "8f2383e4" * 8, "params": {"score": 0.6}},
                   "classifier": {"name": "mask-mobilenetv2-v1", "sha256": "1a2b3c4d" * 8, "input_size": 224,
                                  "backend": "tflite"}},
        "settings": {"min_face_px": 24, "vote": "majority", "max_height": 1080},
    }
    summary, bins, persons, details = results.split(result)
    summary["layout"] = result_docs.write_read_model(job_id, bins=bins, persons=persons,
                                                     buckets=buckets.buckets, details=details)
    job = jobs.finish(job_id, run["run_id"], summary)
    job["result"] = {**job["result"], **details, "bins": bins, "persons": persons}
    return job


def persons_of(job: dict) -> list[dict]:
    """The seeded clip's persons (from its result)."""
    return job["result"]["persons"]


def violations_of(job: dict) -> list[dict]:
    """People whose vote is unmasked or incorrect."""
    return [p for p in persons_of(job) if p["vote"] in ("unmasked", "incorrect")]


def span_seconds(job: dict) -> float:
    """The clip's duration rounded up to a whole second."""
    return math.ceil(job["result"]["duration_s"])
