"""Which tracks are people: a track's detections count only once the evidence says it is a face.

A stage between classification and annotation. It looks `lag` frames ahead: every track's
evidence (frames, best and mean detector confidence) is gathered as frames arrive, and a frame leaves
the stage `lag` frames later, when its tracks have been judged on what followed too. Faces of a track
that is not (yet) a person leave labelled REJECTED: kept in the frame data, not drawn, never in
the counts or the people. A track once accepted stays accepted.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from models.faces import REJECTED
from models.rules import Rules, is_person


@dataclass
class Evidence:
    """What a track has shown so far."""

    frames: int = 0
    peak: float = 0.0
    total: float = 0.0
    accepted: bool = False

    @property
    def mean(self) -> float:
        """Mean detector confidence over the track's detections."""
        return self.total / self.frames if self.frames else 0.0


def lag_frames(fps: float | None, rules: Rules) -> int:
    """Frames of look-ahead: enough for a track to show person_min_frames detections, at most ~0.6 s."""
    return max(rules.person_min_frames, min(15, round(0.4 * (fps or 25))))


def gate_people(items: Iterable, rules: Rules, lag: int, evidence: dict[int, Evidence] | None = None
                ) -> Iterator:
    """Items with the faces of tracks that are not people relabelled REJECTED (in place), `lag` late."""
    evidence = {} if evidence is None else evidence
    pending: deque = deque()
    for item in items:
        faces = item.faces
        for tid, score in zip(faces.track_id.tolist(), faces.score.tolist(), strict=True):
            if tid < 0:
                continue
            e = evidence.setdefault(tid, Evidence())
            e.frames += 1
            e.peak = max(e.peak, score)
            e.total += score
            if not e.accepted and is_person(e.frames, e.peak, e.mean, rules):
                e.accepted = True
        pending.append(item)
        if len(pending) > lag:
            yield _judged(pending.popleft(), evidence)
    while pending:
        yield _judged(pending.popleft(), evidence)


def _judged(item, evidence: dict[int, Evidence]):
    faces = item.faces
    if len(faces):
        rejected = np.array([t < 0 or not evidence[t].accepted for t in faces.track_id.tolist()], bool)
        faces.label[rejected] = REJECTED
    return item
