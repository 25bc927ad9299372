"""Labels, votes and the statistics of docs/DATA.md: people counted once, face-frames beside them."""

from __future__ import annotations

import cv2
import numpy as np

from models.faces import MASKED, UNKNOWN, UNMASKED, Faces
from models.rules import Rules, frame_labels, vote
from worker.pipeline.stats import FrameDocWriter, StatsCollector, frame_doc

RULES = Rules()
M, U, INC = [0.95, 0.04, 0.01], [0.05, 0.9, 0.05], [0.1, 0.2, 0.7]


def tracked(rows: list[tuple]) -> Faces:
    """Faces from (track_id, probs, size_px) rows; labels by the default rules."""
    n = len(rows)
    xyxy = np.array([[10 * k, 10, 10 * k + size, 10 + size] for k, (_, _, size) in enumerate(rows)],
                    np.float32).reshape(n, 4)
    probs = np.array([p for _, p, _ in rows], np.float32).reshape(n, 3)
    f = Faces(xyxy=xyxy, score=np.full(n, 0.9), probs=probs,
              track_id=np.array([t for t, _, _ in rows], np.int32))
    f.label = frame_labels(f.probs, f.short_side, RULES)
    return f


def test_frame_labels_need_size_and_confidence():
    probs = np.array([M, U, [0.4, 0.35, 0.25], M, [np.nan] * 3], np.float32)
    sizes = np.array([40, 40, 40, RULES.min_face_px - 1, 40], np.float32)  # the 4th: too small
    assert frame_labels(probs, sizes, RULES).tolist() == [MASKED, UNMASKED, UNKNOWN, UNKNOWN, UNKNOWN]


def test_vote_rules():
    sums = np.array([8.0, 1.0, 1.0])
    assert vote(10, 10, sums, RULES) == MASKED
    assert vote(3, 3, sums, RULES) == UNKNOWN  # seen too briefly
    assert vote(10, 2, sums, RULES) == UNKNOWN  # mostly too small or uncertain to label
    assert vote(10, 10, sums * 0.1, RULES) == UNKNOWN  # labelled, but never seen clearly (little weight)
    # Masked for 72% of the clearly seen time: between compliant (75%) and not compliant (<= 70%).
    assert vote(10, 10, np.array([7.2, 2.6, 0.2]), RULES) == UNKNOWN
    # Without the mask for 38% of the time: not compliant, whatever the majority says.
    assert vote(10, 10, np.array([6.2, 3.5, 0.3]), RULES) == UNMASKED
    assert vote(10, 10, np.array([1.0, 2.0, 7.0]), RULES) == 2
    assert vote(1, 1, np.array([0.9, 0.1, 0.0]), RULES.for_images()) == MASKED


def feed(collector: StatsCollector, frames: list[list[tuple]], fps: float = 10.0) -> None:
    for i, rows in enumerate(frames):
        collector.add(i, i / fps, tracked(rows))


def test_people_are_counted_once_and_face_frames_beside_them():
    c = StatsCollector(RULES)
    # Person 1 masked for 20 frames; person 2 unmasked for 12, with 2 uncertain frames; person 3
    # seen 3 frames only (unknown); an untracked face (-1) counts as a face-frame but no person.
    frames = []
    for i in range(20):
        rows = [(1, M, 40)]
        if i < 12:
            rows.append((2, U if i not in (3, 4) else [0.4, 0.4, 0.2], 40))
        if 15 <= i < 18:
            rows.append((3, U, 40))
        if i == 19:
            rows.append((-1, INC, 30))
        frames.append(rows)
    feed(c, frames)
    s, crops = c.summary()
    assert s["people"] == {"total": 3, "masked": 1, "unmasked": 1, "incorrect": 0, "unknown": 1}
    assert s["compliance_rate"] == 0.5
    assert s["face_frames"] == {"total": 36, "masked": 20, "unmasked": 13, "incorrect": 1, "unknown": 2}
    assert s["face_frame_compliance"] == round(20 / 34, 4)
    p2 = next(p for p in s["persons"] if p["track_id"] == 2)
    assert p2["frames"] == 12 and p2["votes"] == {"masked": 0, "unmasked": 10, "incorrect": 0}
    assert p2["first_frame"] == 0 and p2["last_frame"] == 11 and p2["last_s"] == 1.1
    assert p2["vote"] == "unmasked" and 0.05 < p2["mean_p_mask"] < 0.15
    assert crops == {}  # no image was given: nothing to crop


def test_bins_per_second_and_minute_include_empty_seconds():
    c = StatsCollector(RULES)
    frames = [[(1, M, 40)]] * 10 + [[]] * 20 + [[(2, U, 40), (3, M, 40)]] * 10  # 4 s at 10 fps
    feed(c, frames)
    s, _ = c.summary()
    sec = s["bins"]["second"]
    assert [b["t"] for b in sec] == [0, 1, 2, 3]
    assert [b["faces"] for b in sec] == [10, 0, 0, 20]
    assert sec[0]["rate"] == 1.0 and sec[1]["rate"] is None and sec[3]["rate"] == 0.5
    assert s["bins"]["minute"] == [{"t": 0, "faces": 30, "masked": 20, "unmasked": 10, "incorrect": 0,
                                    "unknown": 0, "rate": round(20 / 30, 4)}]


def test_nobody_decided_gives_no_rate():
    s, _ = StatsCollector(RULES).summary()
    assert s["compliance_rate"] is None and s["face_frame_compliance"] is None
    assert s["people"]["total"] == 0 and s["bins"]["second"] == []


def test_best_face_crop_is_the_largest_confident_face():
    c = StatsCollector(RULES)
    image = np.zeros((200, 300, 3), np.uint8)
    image[50:150, 100:200] = (0, 0, 255)  # a red square where the big face is
    small = tracked([(1, M, 20)])
    big = tracked([(1, M, 100)])
    big.xyxy[:] = [100, 50, 200, 150]
    c.add(0, 0.0, small, image)
    c.add(1, 0.1, big, image)
    c.add(2, 0.2, small, image)
    s, crops = c.summary()
    person = s["persons"][0]
    assert person["best_frame"] == 1 and person["best_box"] == [100.0, 50.0, 200.0, 150.0]
    crop = cv2.imdecode(np.frombuffer(crops[1], np.uint8), cv2.IMREAD_COLOR)
    assert crop.shape[0] == crop.shape[1] <= 160
    centre = crop[crop.shape[0] // 2, crop.shape[1] // 2]
    assert centre[2] > 200 and centre[0] < 50  # red, in BGR: the face, not the background


def test_frame_doc_shape():
    f = tracked([(4, M, 40), (-1, [np.nan] * 3, 8)])
    doc = frame_doc(7, 0.28, f, job_id="j")
    assert doc["job_id"] == "j" and doc["frame"] == 7 and doc["t"] == 0.28
    assert doc["counts"] == {"faces": 2, "masked": 1, "unmasked": 0, "incorrect": 0, "unknown": 1}
    a, b = doc["faces"]
    assert a["box"] == [0.0, 10.0, 40.0, 50.0] and a["label"] == "masked" and a["track"] == 4
    assert a["probs"] == [0.95, 0.04, 0.01] and a["p_mask"] == 0.95 and a["score"] == 0.9
    assert b["label"] == "unknown" and b["probs"] is None and b["p_mask"] is None


def test_frame_docs_are_written_in_batches():
    batches = []
    w = FrameDocWriter(batches.append, batch=4)
    for i in range(10):
        w.add({"frame": i})
    assert [len(b) for b in batches] == [4, 4]
    w.flush()
    assert [len(b) for b in batches] == [4, 4, 2] and w.written == 10
    w.flush()
    assert len(batches) == 3
