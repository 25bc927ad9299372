"""Statistics of one analysis (docs/DATA.md): per-frame documents, bins, the per-person ledger, summary.

People, not frames: every confirmed track is one person with one vote over its frames; face-frame
counts are kept beside them. Memory grows with the number of people and seconds, never with frames.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from models.classify import crop_faces
from models.faces import INCORRECT, LABELS, MASKED, REJECTED, UNKNOWN, UNMASKED, Faces, label_name
from models.rules import Rules, face_quality, rejection_reason, unknown_reason, vote
from shared import results
from worker.pipeline.persons import Evidence

KEYS = (*LABELS, "unknown")
CROP_MAX_PX = 160  # best-face crops are stored at most this size: enough for a thumbnail, small in GridFS


def counts_of(labels: np.ndarray) -> dict:
    """{faces, masked, unmasked, incorrect, unknown} counts of (N,) int labels."""
    labels = np.asarray(labels)
    return results.counts(masked=int(np.sum(labels == MASKED)), unmasked=int(np.sum(labels == UNMASKED)),
                          incorrect=int(np.sum(labels == INCORRECT)), unknown=int(np.sum(labels == UNKNOWN)))


def rate(masked: int, unmasked: int, incorrect: int) -> float | None:
    """Masked share of the decided ones (incorrect counts as not compliant); None when none decided."""
    return results.rate(masked, unmasked, incorrect)


def face_docs(faces: Faces) -> list[dict]:
    """The `faces` array of a frame document: box in pixels, score, label name, p_mask, probs, track."""
    docs = []
    for i in range(len(faces)):
        probs = faces.probs[i]
        docs.append(results.face_record(
            box=faces.xyxy[i], score=faces.score[i], label=label_name(int(faces.label[i])),
            probs=probs if np.isfinite(probs).all() else None, track=faces.track_id[i]))
    return docs


def frame_doc(frame: int, t: float, faces: Faces, **extra) -> dict:
    """One frame record (shared/results.py; extra: image for the CLI's image folders)."""
    return {**extra, **results.frame_record(frame, t, face_docs(faces), counts_of(faces.label))}


class FrameDocWriter:
    """Buffers frame documents and hands them on in batches (insert_many into `frames`, or a file)."""

    def __init__(self, write_many: Callable[[list[dict]], None], batch: int = 250):
        self.write_many = write_many
        self.batch = batch
        self.buffer: list[dict] = []
        self.written = 0

    def add(self, doc: dict) -> None:
        """Queue one document; writes a batch when full."""
        self.buffer.append(doc)
        if len(self.buffer) >= self.batch:
            self.flush()

    def flush(self) -> None:
        """Write whatever is buffered."""
        if self.buffer:
            self.write_many(self.buffer)
            self.written += len(self.buffer)
            self.buffer = []


@dataclass
class _Best:
    """The best face seen so far for one label: large, confidently detected, clearly visible."""

    rank: float = -1.0  # size x confidence x visibility of the face kept
    frame: int = -1
    box: list = field(default_factory=list)
    jpeg: bytes | None = None


@dataclass
class _Person:
    """Running tallies of one track (no per-frame lists: memory stays flat in clip length)."""

    first_frame: int
    first_s: float
    last_frame: int = 0
    last_s: float = 0.0
    frames: int = 0
    rejected: int = 0  # frames on which the track was not (yet) a person
    decided: int = 0
    votes: np.ndarray = field(default_factory=lambda: np.zeros(3, np.int64))
    weighted: np.ndarray = field(default_factory=lambda: np.zeros(3, np.float64))
    p_mask_sum: float = 0.0
    classified: int = 0
    # Best face per label (-1 unknown): the person's crop is the best of the label they are voted, so
    # "explain this face" explains a crop that agrees with the vote.
    best: dict[int, _Best] = field(default_factory=dict)


class StatsCollector:
    """Accumulates face-frame counts, per-second bins and per-person tallies, frame by frame."""

    def __init__(self, rules: Rules):
        self.rules = rules
        self.face_frames = np.zeros(4, np.int64)  # masked, unmasked, incorrect, unknown
        self.seconds: dict[int, np.ndarray] = {}
        self.people: dict[int, _Person] = {}
        self.evidence: dict = {}  # track id -> persons.Evidence, filled by the gate_people stage
        self.frames = 0
        self.last_t = 0.0

    def add(self, frame: int, t: float, faces: Faces, image: np.ndarray | None = None) -> None:
        """Count one frame's faces (labels and track ids set); image (BGR) supplies best-face crops."""
        self.frames += 1
        self.last_t = max(self.last_t, t)
        labels = faces.label.astype(np.int64)
        labels = labels[labels != REJECTED]  # not faces: in the frame data, never in the counts
        per_label = np.bincount(np.where(labels < 0, 3, labels), minlength=4)
        self.face_frames += per_label
        second = self.seconds.setdefault(int(t), np.zeros(4, np.int64))
        second += per_label
        if np.any(faces.track_id >= 0):
            quality = faces.quality if np.isfinite(faces.quality).all() else face_quality(faces)
            for i in np.flatnonzero(faces.track_id >= 0):
                self._person(frame, t, faces, int(i), float(quality[i]), image)

    def _person(self, frame: int, t: float, faces: Faces, i: int, quality: float,
                image: np.ndarray | None) -> None:
        tid = int(faces.track_id[i])
        p = self.people.get(tid)
        if p is None:
            p = self.people[tid] = _Person(first_frame=frame, first_s=t)
        p.last_frame, p.last_s = frame, t
        p.frames += 1
        label = int(faces.label[i])
        if label == REJECTED:
            p.rejected += 1
            return
        probs = faces.probs[i]
        if np.isfinite(probs).all():
            p.classified += 1
            p.p_mask_sum += float(probs[MASKED])
        if label >= 0:
            p.decided += 1
            p.votes[label] += 1
            # The vote is about time seen with and without a mask: each labelled frame is one vote for
            # its label, weighted by how well the face could be seen there.
            p.weighted[label] += quality
        side = float(faces.short_side[i])
        rank = side * float(faces.score[i]) * (0.5 + quality)
        best = p.best.setdefault(label, _Best())
        if rank > best.rank * 1.1:
            best.rank, best.frame = rank, frame
            best.box = [round(float(v), 1) for v in faces.xyxy[i]]
            if image is not None:
                best.jpeg = best_crop_jpeg(image, faces.xyxy[i])

    def summary(self) -> tuple[dict, dict[int, bytes]]:
        """The result's statistics (docs/DATA.md) and {track_id: best face JPEG} to store.

        Tracks that never became a person are listed with status "rejected" (and why) for audit; they
        are in no count and no rate.
        """
        ff = dict(zip(KEYS, (int(v) for v in self.face_frames), strict=True))
        ff_total = sum(ff.values())
        persons, crops = [], {}
        people = dict.fromkeys(KEYS, 0)
        rejected = 0
        for tid in sorted(self.people):
            p = self.people[tid]
            record = {
                "track_id": tid, "first_s": round(p.first_s, 3), "last_s": round(p.last_s, 3),
                "first_frame": p.first_frame, "last_frame": p.last_frame, "frames": p.frames,
                "votes": {name: int(p.votes[k]) for k, name in enumerate(LABELS)},
                "mean_p_mask": round(p.p_mask_sum / p.classified, 4) if p.classified else None,
                "crop_id": None,
            }
            if p.rejected == p.frames:
                e = self.evidence.get(tid)
                reason = (rejection_reason(e.frames, e.peak, e.mean, self.rules) if e is not None
                          else "not a person")
                rejected += 1
                persons.append({**record, "status": "rejected", "vote": "unknown", "rejected_reason": reason,
                                "best_frame": None, "best_box": None})
                continue
            v = vote(p.frames - p.rejected, p.decided, p.weighted, self.rules)
            people[label_name(v)] += 1
            best = p.best.get(v) or max(p.best.values(), key=lambda b: b.rank)
            persons.append({
                **record, "status": "counted", "vote": label_name(v),
                "unknown_reason": (unknown_reason(p.frames - p.rejected, p.classified, p.decided, p.weighted,
                                                  self.rules) if v == UNKNOWN else None),
                "best_frame": best.frame, "best_box": best.box,
            })
            if best.jpeg is not None:
                crops[tid] = best.jpeg
        counted = sum(people.values())
        return {
            "face_frames": {"total": ff_total, **ff},
            "people": {"total": counted, **people},
            "rejected_tracks": rejected,
            "compliance_rate": rate(people["masked"], people["unmasked"], people["incorrect"]),
            "face_frame_compliance": rate(ff["masked"], ff["unmasked"], ff["incorrect"]),
            "bins": {"second": self._bins(1), "minute": self._bins(60)},
            "persons": persons,
        }, crops

    def _bins(self, width: int) -> list[dict]:
        """Bins of `width` seconds from 0 to the last frame, empty ones included (charts show gaps)."""
        n = int(self.last_t // width) + 1 if self.frames else 0
        sums = np.zeros((n, 4), np.int64)
        for second, c in self.seconds.items():
            sums[second // width] += c
        return [
            {"t": k * width, "faces": int(row.sum()), "masked": int(row[0]), "unmasked": int(row[1]),
             "incorrect": int(row[2]), "unknown": int(row[3]), "rate": rate(*(int(x) for x in row[:3]))}
            for k, row in enumerate(sums)
        ]


def best_crop_jpeg(image: np.ndarray, box: np.ndarray) -> bytes:
    """JPEG bytes of a square face crop (with the classifier's margin) from a BGR frame, <= CROP_MAX_PX."""
    side = float(max(box[2] - box[0], box[3] - box[1]))
    size = int(max(16, min(CROP_MAX_PX, round(side * 1.3))))
    rgb = crop_faces(image, np.asarray(box, np.float32)[None], size)[0]
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 88])
    return buf.tobytes() if ok else b""


# --- tallies of one segment of a clip, and merging them (worker/segments.py, worker/join.py)


def tallies(collector: StatsCollector) -> dict:
    """A collector's running tallies as JSON-able data (best-face crops as base64), to merge later."""
    def person(p: _Person) -> dict:
        return {"first_frame": p.first_frame, "first_s": p.first_s, "last_frame": p.last_frame,
                "last_s": p.last_s, "frames": p.frames, "rejected": p.rejected, "decided": p.decided,
                "votes": p.votes.tolist(), "weighted": p.weighted.tolist(), "p_mask_sum": p.p_mask_sum,
                "classified": p.classified,
                "best": {str(label): {"rank": b.rank, "frame": b.frame, "box": b.box,
                                      "jpeg": base64.b64encode(b.jpeg).decode("ascii") if b.jpeg else None}
                         for label, b in p.best.items()}}

    return {"face_frames": collector.face_frames.tolist(), "frames": collector.frames,
            "last_t": collector.last_t,
            "seconds": {str(k): v.tolist() for k, v in collector.seconds.items()},
            "people": {str(tid): person(p) for tid, p in collector.people.items()},
            "evidence": {str(tid): [e.frames, e.peak, e.total, e.accepted]
                         for tid, e in collector.evidence.items()}}


def merged(rules: Rules, parts: list[dict], person_of: dict[int, int]) -> StatsCollector:
    """One collector from the tallies of consecutive segments, in order; person_of maps a track id to
    the id of the person it continues (tracks linked across a boundary), absent: itself."""
    out = StatsCollector(rules)
    for part in parts:
        out.face_frames += np.asarray(part["face_frames"], np.int64)
        out.frames += part["frames"]
        out.last_t = max(out.last_t, part["last_t"])
        for k, v in part["seconds"].items():
            out.seconds.setdefault(int(k), np.zeros(4, np.int64))
            out.seconds[int(k)] += np.asarray(v, np.int64)
        for tid, (frames, peak, total, accepted) in part["evidence"].items():
            pid = person_of.get(int(tid), int(tid))
            e = out.evidence.setdefault(pid, Evidence())
            e.frames, e.peak, e.total = e.frames + frames, max(e.peak, peak), e.total + total
            e.accepted = e.accepted or accepted
        for tid, r in part["people"].items():
            pid = person_of.get(int(tid), int(tid))
            p = out.people.get(pid)
            if p is None:
                p = out.people[pid] = _Person(first_frame=r["first_frame"], first_s=r["first_s"])
            p.last_frame, p.last_s = r["last_frame"], r["last_s"]  # segments come in order
            p.frames += r["frames"]
            p.rejected += r["rejected"]
            p.decided += r["decided"]
            p.votes += np.asarray(r["votes"], np.int64)
            p.weighted += np.asarray(r["weighted"], np.float64)
            p.p_mask_sum += r["p_mask_sum"]
            p.classified += r["classified"]
            for label, b in r["best"].items():
                mine = p.best.setdefault(int(label), _Best())
                if b["rank"] > mine.rank:
                    mine.rank, mine.frame, mine.box = b["rank"], b["frame"], b["box"]
                    mine.jpeg = base64.b64decode(b["jpeg"]) if b["jpeg"] else None
    return out
