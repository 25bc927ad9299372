"""Who counts as a person, and which faces can be judged: the rules behind the clip-level answer."""

from __future__ import annotations

import numpy as np

from models.faces import REJECTED, UNKNOWN, UNMASKED, Faces
from models.rules import Rules, face_quality, frame_labels
from worker.pipeline.persons import gate_people
from worker.pipeline.stages import Item
from worker.pipeline.stats import StatsCollector

RULES = Rules()
M, U = [0.95, 0.04, 0.01], [0.04, 0.95, 0.01]


def frontal(x: float, y: float, side: float) -> np.ndarray:
    """(5, 2) landmarks of a frontal face in a box at (x, y) of this side: eyes, nose, mouth corners."""
    rel = np.array([[0.3, 0.35], [0.7, 0.35], [0.5, 0.55], [0.35, 0.75], [0.65, 0.75]], np.float32)
    return np.array([x, y], np.float32) + rel * side


def from_above(x: float, y: float, side: float) -> np.ndarray:
    """Landmarks as YuNet gives them on the top of a head: eyes close together, mouth above the nose."""
    rel = np.array([[0.46, 0.5], [0.54, 0.5], [0.5, 0.45], [0.47, 0.4], [0.53, 0.4]], np.float32)
    return np.array([x, y], np.float32) + rel * side


def faces(rows: list[tuple]) -> Faces:
    """Faces from (track, score, probs, landmark maker) rows: 40 px boxes in a row, labelled by the rules."""
    n = len(rows)
    xyxy = np.array([[60 * k, 20, 60 * k + 40, 60] for k in range(n)], np.float32).reshape(n, 4)
    lms = np.array([make(60 * k, 20, 40) for k, (*_, make) in enumerate(rows)], np.float32).reshape(n, 5, 2)
    f = Faces(xyxy=xyxy, score=np.array([s for _, s, _, _ in rows], np.float32), landmarks=lms,
              probs=np.array([p for _, _, p, _ in rows], np.float32).reshape(n, 3),
              track_id=np.array([t for t, _, _, _ in rows], np.int32))
    f.label = frame_labels(f.probs, f.short_side, RULES, face_quality(f))
    return f


def run(frames: list[list[tuple]]) -> tuple[list[Item], dict]:
    """Frames through the people gate and the statistics, as the frame loop chains them (10 fps)."""
    collector = StatsCollector(RULES)
    image = np.zeros((100, 400, 3), np.uint8)
    items = [Item(index=i, t=i / 10, image=image, faces=faces(rows)) for i, rows in enumerate(frames)]
    out = list(gate_people(items, RULES, lag=8, evidence=collector.evidence))
    for item in out:
        collector.add(item.index, item.t, item.faces, item.image)
    return out, collector.summary()[0]


def test_a_short_uncertain_track_is_rejected_not_counted():
    # A real unmasked face on every frame; a false detection (shoulder, hair) for 6 frames at 0.62,
    # which the classifier happens to call masked with confidence.
    frames = [[(1, 0.9, U, frontal)] + ([(2, 0.62, M, frontal)] if 3 <= i < 9 else []) for i in range(30)]
    out, summary = run(frames)
    assert summary["people"]["total"] == 1
    assert summary["people"]["unmasked"] == 1 and summary["people"]["masked"] == 0
    assert summary["compliance_rate"] == 0.0
    assert summary["rejected_tracks"] == 1
    ghost = next(p for p in summary["persons"] if p["track_id"] == 2)
    assert ghost["status"] == "rejected" and "confidently" in ghost["rejected_reason"]
    # Kept in the frame data as rejected detections, never in the face counts.
    assert all(item.faces.label[1] == REJECTED for item in out if len(item.faces) == 2)
    assert summary["face_frames"]["total"] == 30
    assert summary["face_frames"]["masked"] == 0


def test_a_short_but_confident_track_is_counted_from_its_first_frame():
    # A person who walks through in 7 frames, clearly seen: the look-ahead accepts them before their
    # first frame leaves the gate, so none of their frames is rejected.
    frames = [[(1, 0.9, U, frontal)] if 10 <= i < 17 else [] for i in range(30)]
    out, summary = run(frames)
    assert summary["people"]["total"] == 1 and summary["rejected_tracks"] == 0
    assert all(item.faces.label[0] == UNMASKED for item in out if len(item.faces))


def test_a_head_seen_from_above_is_never_called_masked():
    # The classifier says "masked" with 0.95 on the top of a head: the landmarks say the face is not
    # visible, so every frame is "can't tell" and the person is unknown, with the reason.
    frames = [[(1, 0.85, M, from_above)] for _ in range(30)]
    out, summary = run(frames)
    assert all(item.faces.label[0] == UNKNOWN for item in out)
    assert summary["people"]["masked"] == 0 and summary["people"]["unknown"] == 1
    assert summary["compliance_rate"] is None
    assert "seen clearly" in summary["persons"][0]["unknown_reason"]


def test_a_clearly_visible_unmasked_face_is_decided():
    frames = [[(1, 0.9, U, frontal)] for _ in range(30)]
    _, summary = run(frames)
    assert summary["people"] == {"total": 1, "masked": 0, "unmasked": 1, "incorrect": 0, "unknown": 0}
    assert summary["persons"][0]["vote"] == "unmasked" and summary["persons"][0]["unknown_reason"] is None


def test_visibility_weights_the_vote():
    # Masked on 20 clear frames; "unmasked" on 10 frames where the head is turned and the detection
    # uncertain. Counted frame by frame that is 67% masked (not compliant); weighted by how well the
    # face could be seen, the clear frames carry the vote.
    def turned(x, y, side):
        lm = frontal(x, y, side)
        lm[:, 0] = x + 0.5 * side + (lm[:, 0] - x - 0.5 * side) * 0.55  # eyes closer together
        return lm

    clear, poor = faces([(1, 0.9, U, frontal)]), faces([(1, 0.65, U, turned)])
    assert float(face_quality(poor)[0]) < 0.5 * float(face_quality(clear)[0])
    assert poor.label[0] == UNMASKED  # still seen well enough to be labelled
    frames = [[(1, 0.9, M, frontal)] for _ in range(20)] + [[(1, 0.65, U, turned)] for _ in range(10)]
    _, summary = run(frames)
    assert summary["persons"][0]["votes"] == {"masked": 20, "unmasked": 10, "incorrect": 0}
    assert summary["people"]["masked"] == 1
