"""The tracker: stable ids through motion, crossings, short gaps and uncertain frames; noise never counted."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.faces import Faces
from worker.pipeline.track import Tracker, TrackerParams, iou_matrix, track_faces


def faces(*boxes_scores) -> Faces:
    """Faces from (x1, y1, x2, y2, score) tuples."""
    rows = np.array(boxes_scores, np.float32).reshape(-1, 5)
    return Faces(xyxy=rows[:, :4], score=rows[:, 4])


@dataclass
class It:
    faces: Faces


def run(frames: list[Faces], params: TrackerParams | None = None) -> list[Faces]:
    """Public-id faces of each frame, through the track_faces stage."""
    out = list(track_faces((It(f) for f in frames), Tracker(params)))
    assert len(out) == len(frames)
    return [o.faces for o in out]


def box(cx: float, cy: float, size: float, score: float = 0.9) -> tuple:
    return (cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2, score)


def test_iou_matrix():
    a = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32)
    b = np.array([[5, 0, 15, 10]], np.float32)
    iou = iou_matrix(a, b)
    assert iou.shape == (2, 1)
    assert abs(iou[0, 0] - 50 / 150) < 1e-6 and iou[1, 0] == 0
    # Growing boxes makes near misses overlap: what keeps small, fast faces on their track.
    far = np.array([[12, 0, 22, 10]], np.float32)
    assert iou_matrix(a[:1], far)[0, 0] == 0 and iou_matrix(a[:1], far, buffer=0.3)[0, 0] > 0


def test_two_faces_crossing_keep_their_ids():
    # Two 40-px faces walk towards each other on slightly different rows and cross at frame 20.
    frames = [faces(box(100 + 8 * i, 200, 40), box(420 - 8 * i, 215, 40)) for i in range(41)]
    out = run(frames)
    first = {int(t) for t in out[0].track_id}
    assert first == {1, 2}
    left_walker = [int(f.track_id[np.argmin(np.abs(f.xyxy[:, 0] - (80 + 8 * i)))]) for i, f in enumerate(out)]
    assert len(set(left_walker)) == 1, left_walker


def test_a_short_gap_keeps_the_id_a_long_one_starts_a_new_person():
    params = TrackerParams(lost_frames=10)
    seen = [faces(box(100 + 3 * i, 100, 50)) for i in range(10)]
    gap = [Faces.empty()] * 8
    back = [faces(box(100 + 3 * i, 100, 50)) for i in range(18, 25)]  # moved on meanwhile
    out = run(seen + gap + back, params)
    ids = [int(f.track_id[0]) for f in out if len(f)]
    assert set(ids) == {1}
    long_gap = [Faces.empty()] * 15
    out = run(seen + long_gap + [faces(box(100 + 3 * i, 100, 50)) for i in range(25, 30)], params)
    ids = [int(f.track_id[0]) for f in out if len(f)]
    assert ids[:10] == [1] * 10 and set(ids[10:]) == {2}


def test_uncertain_detections_extend_a_track_but_never_start_one():
    frames = [faces(box(200 + 2 * i, 150, 60, 0.9 if i < 5 or i > 9 else 0.4)) for i in range(15)]
    out = run(frames)
    assert [int(f.track_id[0]) for f in out] == [1] * 15
    # A lone uncertain face is dropped: it is more often a false detection than a person.
    out = run([faces(box(300, 300, 40, 0.45)) for _ in range(10)])
    assert all(len(f) == 0 for f in out)


def test_one_frame_flicker_is_not_a_person_but_its_first_frames_get_the_id():
    frames = [faces(box(100, 100, 40)) for _ in range(5)]
    frames[2] = faces(box(100, 100, 40), box(400, 300, 30))  # a false detection on one frame
    out = run(frames)
    assert [len(f) for f in out] == [1, 1, 2, 1, 1]
    assert sorted(int(t) for t in out[2].track_id) == [-1, 1]
    # The real face's very first frame already carries its id (output lags by min_hits - 1).
    assert int(out[0].track_id[0]) == 1


def test_ids_follow_constant_velocity_through_a_gap():
    # A small face moving 12 px/frame (more than its size in 2 frames) disappears for 3 frames.
    frames = [faces(box(50 + 12 * i, 100, 16)) for i in range(8)]
    frames += [Faces.empty()] * 3
    frames += [faces(box(50 + 12 * i, 100, 16)) for i in range(11, 16)]
    out = run(frames)
    assert {int(t) for f in out for t in f.track_id} == {1}


def test_low_scores_are_filtered_before_tracking():
    out = run([faces(box(100, 100, 40, 0.1))] * 4)
    assert all(len(f) == 0 for f in out)


def test_a_flickering_small_face_is_still_one_person_from_its_first_frame():
    # Found on every other frame only (small, blurred faces do that); confirmed on its second sighting.
    frames = [faces(box(200 + i, 120, 14)) if i % 2 == 0 else Faces.empty() for i in range(12)]
    out = run(frames)
    ids = [int(f.track_id[0]) for f in out if len(f)]
    assert ids == [1] * 6


@dataclass
class Seen:
    faces: Faces
    image: np.ndarray


def scene(face_box: tuple | None, shirt_bgr: tuple[int, int, int]) -> Seen:
    """A 320x240 frame with one person: a face box and a shirt of a colour below it (or nobody)."""
    image = np.full((240, 320, 3), 120, np.uint8)
    if face_box is None:
        return Seen(Faces.empty(), image)
    x1, y1, x2, y2, _ = face_box
    image[int(y2) + 4:int(y2) + 70, int(x1) - 15:int(x2) + 15] = shirt_bgr
    return Seen(faces(face_box), image)


def test_a_person_who_leaves_and_comes_back_keeps_their_id():
    # Gone for 40 frames (longer than lost_frames=10), back at the same place in the same shirt: the
    # same person. Someone else in a different shirt at that place later is a new person.
    p = TrackerParams(lost_frames=10, reid_frames=60)
    red, blue = (30, 30, 200), (200, 60, 20)
    frames = ([scene(box(150, 80, 40), red) for _ in range(15)] + [scene(None, red) for _ in range(40)]
              + [scene(box(156, 82, 40), red) for _ in range(15)] + [scene(None, red) for _ in range(40)]
              + [scene(box(150, 80, 40), blue) for _ in range(15)])
    tracker = Tracker(p)
    ids = [o.faces.track_id.tolist() for o in track_faces(iter(frames), tracker)]
    first, back, other = ids[5], ids[60], ids[120]
    assert first == back == [1]
    assert other == [2]
    assert tracker.reidentified == 1


def test_without_an_image_a_lost_person_is_not_guessed_back():
    p = TrackerParams(lost_frames=10, reid_frames=60)
    frames = [faces(box(150, 80, 40))] * 15 + [Faces.empty()] * 40 + [faces(box(150, 80, 40))] * 15
    out = run(frames, p)
    assert out[5].track_id.tolist() == [1] and out[60].track_id.tolist() == [2]


SKIN, RED, BLUE = (120, 150, 200), (30, 30, 200), (200, 60, 20)


def crowd(people: list[tuple[float, float, tuple[int, int, int]]], size: int = 40) -> Seen:
    """A 320x240 frame of people, each (face centre x, y, shirt colour): a skin-coloured face with the
    shirt below it; a face whose centre is within 20 px of the left or right edge is not detected."""
    image = np.full((240, 320, 3), 120, np.uint8)
    found = []
    for cx, cy, shirt in people:
        x1, y1, x2, y2 = (int(round(v)) for v in (cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2))
        image[max(0, y2 + 4):y2 + 70, max(0, x1 - 15):max(0, x2 + 15)] = shirt
        image[max(0, y1):y2, max(0, x1):max(0, x2)] = SKIN
        if 20 <= cx <= 300:
            found.append(box(cx, cy, size))
    return Seen(faces(*found) if found else Faces.empty(), image)


def counted_people(frames: list[Seen], params: TrackerParams) -> tuple[list[list[int]], int]:
    """Public ids per frame and the people counted, through the tracker, the person gate and the stats."""
    from models.rules import Rules
    from worker.pipeline.persons import gate_people
    from worker.pipeline.stats import StatsCollector

    rules = Rules()
    collector = StatsCollector(rules)
    out = list(gate_people(track_faces(iter(frames), Tracker(params)), rules, lag=8,
                           evidence=collector.evidence))
    for i, item in enumerate(out):
        collector.add(i, i / 25, item.faces, item.image)
    summary, _ = collector.summary()
    return [o.faces.track_id.tolist() for o in out], summary["people"]["total"]


def test_two_people_who_walk_out_of_view_and_back_are_counted_once_each():
    # The camera pans: A (red) and B (blue), side by side, leave by the left edge (A first, at the
    # same spot as B later), then come back in the reverse order. When B comes back A has been
    # retired and B is still lost (within lost_frames), away from where B's motion says B would be.
    # B must not be a new person, nor take A's id; A must get their own id back.
    p = TrackerParams(lost_frames=20, reid_frames=60)
    frames = []
    for i in range(41):
        shift = -8 * (i if i <= 20 else 40 - i)  # out for 20 frames, back for 20
        frames.append(crowd([(60 + shift, 100, RED), (110 + shift, 100, BLUE)]))
    ids, people = counted_people(frames, p)
    a, b = ids[2]  # both in view, left to right
    assert a != b
    assert ids[38] == [a, b], ids
    assert {t for f in ids for t in f} == {a, b}
    assert people == 2


def test_a_different_person_where_someone_was_just_lost_is_not_merged_with_them():
    # A (red) is lost; a moment later B (blue), with the same face, stands a face further on:
    # within reach of A's last place and before A's track has expired, but B is someone else.
    p = TrackerParams(lost_frames=20, reid_frames=60)
    frames = ([crowd([(150, 100, RED)]) for _ in range(15)] + [crowd([]) for _ in range(3)]
              + [crowd([(200, 100, BLUE)]) for _ in range(15)])
    ids, people = counted_people(frames, p)
    assert ids[5] == [1] and ids[25] == [2]
    assert people == 2
    # The same person (red) back there instead keeps their id: what tells them apart is the look.
    frames = frames[:18] + [crowd([(200, 100, RED)]) for _ in range(15)]
    ids, people = counted_people(frames, p)
    assert ids[5] == [1] and ids[25] == [1]
    assert people == 1
