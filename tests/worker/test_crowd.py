"""People, not frames: a composed crowd clip (slow pans over annotated photos) is counted person by person."""

from __future__ import annotations

from collections import Counter, defaultdict

import cv2
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from models.voc import read_annotation
from shared.config import Settings
from tests.media import pan_over_photos, write_frames
from worker.pipeline.run import analyse_video
from worker.pipeline.track import iou_matrix

pytestmark = pytest.mark.slow

# Validation-split photos (the classifier never trained on them) with 12-21 faces each.
PHOTOS = ["maksssksksss795", "maksssksksss389", "maksssksksss545"]
SIZE = (640, 360)


def visible(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boxes clipped to the frame, and which still show at least half their face at >= 10 px."""
    w, h = SIZE
    clipped = boxes.copy()
    clipped[:, 0::2] = clipped[:, 0::2].clip(0, w)
    clipped[:, 1::2] = clipped[:, 1::2].clip(0, h)
    area = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    side = clipped[:, 2:] - clipped[:, :2]
    ok = (side.min(axis=1) >= 10) & (np.prod(side.clip(0), axis=1) >= 0.5 * area)
    return clipped, ok


def test_crowd_people_are_counted_once_each(tmp_path, models, asset):
    root = asset("mask_scenes")
    photos, labels = [], []
    for stem in PHOTOS:
        scene = read_annotation(root / "annotations" / f"{stem}.xml", root / "images")
        photos.append((cv2.imread(str(scene.image_path)), scene.boxes))
        labels.extend(int(x) for x in scene.labels)  # ids count faces across photos in this order
    truth = []

    def frames():
        for frame, boxes, ids in pan_over_photos(photos, size=SIZE, frames_per_photo=40):
            truth.append((boxes, ids))
            yield frame

    src = write_frames(tmp_path / "crowd.mp4", frames())
    docs: list[dict] = []
    outcome = analyse_video(src, tmp_path, settings=Settings(), models=models, on_frame=docs.append)
    assert len(docs) == len(truth) == 120

    # Which annotated face each detection is (IoU >= 0.3, one to one), frame by frame.
    tracks_of: dict[int, list[int]] = defaultdict(list)
    for (boxes, ids), doc in zip(truth, docs, strict=True):
        clipped, ok = visible(boxes)
        det = np.array([f["box"] for f in doc["faces"]], np.float32).reshape(-1, 4)
        iou = iou_matrix(clipped[ok], det)
        if iou.size:
            for i, j in zip(*linear_sum_assignment(-iou), strict=True):
                if iou[i, j] >= 0.3:
                    tracks_of[int(ids[ok][i])].append(doc["faces"][j]["track"])
    # Detectable: found often enough (>= 5 frames) to make a person with a vote.
    detectable = {g: t for g, t in tracks_of.items() if len(t) >= 5}
    assert len(detectable) >= 18, len(detectable)  # the detector does its part on these photos

    people = outcome.summary["people"]["total"]
    # Extra people are mostly real faces the annotators skipped; allow them, but not a count per frame.
    assert len(detectable) - 2 <= people <= 1.3 * len(detectable) + 2, (people, len(detectable))
    # Each face keeps one id: few fragments, and no id is shared by two people.
    fragments = sum(len({t for t, n in Counter(ts).items() if t >= 0 and n >= 3})
                    for ts in detectable.values())
    assert fragments <= 1.15 * len(detectable), (fragments, len(detectable))
    dominant = [Counter(ts).most_common(1)[0][0] for ts in detectable.values()]
    assert -1 not in dominant and len(set(dominant)) == len(dominant)
    # Each person's vote against the annotators' label for that face (undecided votes left out).
    names = ("masked", "unmasked", "incorrect")
    vote_of = {p["track_id"]: p["vote"] for p in outcome.summary["persons"]}
    pairs = [(names[labels[g]], vote_of[t]) for g, t in zip(detectable, dominant, strict=True)]
    decided = [(truth_label, v) for truth_label, v in pairs if v != "unknown"]
    correct = sum(truth_label == v for truth_label, v in decided)
    print(f"people {people}, detectable annotated faces {len(detectable)}, fragments {fragments}; "
          f"votes: {correct}/{len(decided)} decided correct, {len(pairs) - len(decided)} unknown")
    assert len(decided) >= 0.7 * len(pairs) and correct >= 0.75 * len(decided), pairs
