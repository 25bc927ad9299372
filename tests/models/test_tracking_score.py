"""The tracking score of composed clips: true people, switches and false tracks are counted as defined."""

from __future__ import annotations

import numpy as np

from models import compose, tracking_score


def frame(faces: list[tuple[int, list[float]]]) -> dict:
    return {"faces": [{"track": t, "box": b, "label": "unmasked"} for t, b in faces]}


A, B, FAR = [10, 10, 40, 40], [100, 10, 130, 40], [200, 200, 230, 230]


def test_score_counts_switches_and_false_tracks():
    truth = compose.Truth(boxes=[np.array([A, B], np.float32)] * 10, ids=[np.array([0, 1])] * 10)
    perfect = [frame([(1, A), (2, B)]) for _ in range(10)]
    persons = {"persons": [{"track_id": 1, "status": "counted"}, {"track_id": 2, "status": "counted"}]}
    s = tracking_score.score(truth, perfect, persons)
    assert (s["true_people"], s["counted"], s["id_switches"], s["false_tracks"]) == (2, 2, 0, 0)
    # Person 0 changes track half way (a switch); track 3 is on nothing true (a false track); a rejected
    # track is not counted at all.
    frames = [frame([(1 if i < 5 else 4, A), (2, B), (3, FAR), (9, FAR)]) for i in range(10)]
    persons = {"persons": [{"track_id": t, "status": "counted"} for t in (1, 2, 3, 4)]
               + [{"track_id": 9, "status": "rejected"}]}
    s = tracking_score.score(truth, frames, persons)
    assert (s["counted"], s["id_switches"], s["false_tracks"]) == (4, 1, 1)
    assert s["count_error"] == 1.0


def test_composed_frames_keep_true_boxes_inside_the_frame():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)
    scene = compose.Scene("x", image, np.array([[50, 50, 90, 90], [300, 100, 340, 140]], np.float32))
    for motion in compose.MOTIONS:
        n, counts = 0, []
        for img, boxes, ids in compose.frames([scene], motion, frames_per_photo=10):
            counts.append(len(boxes))
            assert img.shape == (compose.SIZE[1], compose.SIZE[0], 3)
            assert len(boxes) == len(ids) and np.all(boxes[:, 2:] > boxes[:, :2])
            assert np.all(boxes[:, 0::2] <= compose.SIZE[0]) and np.all(boxes[:, 1::2] <= compose.SIZE[1])
            n += 1
        assert n == (20 if motion == "out_and_back" else 10)
        if motion == "out_and_back":  # everyone leaves the view, then comes back
            assert counts[0] >= 1 and 0 in counts and counts[-1] >= 1
