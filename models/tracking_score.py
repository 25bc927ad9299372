"""Frame-level tracking score of one analysed clip against true boxes and identities (models.compose)."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
from scipy.optimize import linear_sum_assignment

MATCH_IOU = 0.3
MIN_TRUE_FRAMES = 5  # a true person visible for fewer frames is not expected to be counted


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) IoU of xyxy boxes."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float32)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-6)


def score(truth, frames: list[dict], summary: dict) -> dict:
    """Distinct people counted vs true, identity switches and false tracks of one clip.

    truth: models.compose.Truth; frames: the worker's frame documents in order; summary: its result.
    A counted person is a false track when most of its face-frames match no true face. The count
    decomposes as counted = true people found by a track of their own + fragments + false tracks:
    fragments are the extra tracks of a person (a track that broke and was not re-joined: counted
    twice). mask_scenes does not box every face (blurred background faces, heads turned away), so a
    false track is often a real person the annotators skipped: look before reading it as a detector
    error.
    """
    counted_ids = {p["track_id"] for p in summary["persons"] if p.get("status", "counted") == "counted"}
    seen = Counter()
    track_hits: dict[int, Counter] = defaultdict(Counter)  # track -> true id -> frames
    track_frames: Counter = Counter()
    sequence: dict[int, list[int]] = defaultdict(list)  # true id -> matched counted tracks in order
    for boxes, ids, doc in zip(truth.boxes, truth.ids, frames, strict=True):
        seen.update(int(i) for i in ids)
        faces = [f for f in doc["faces"] if f.get("track", -1) in counted_ids]
        det = np.array([f["box"] for f in faces], np.float32).reshape(-1, 4)
        for f in faces:
            track_frames[f["track"]] += 1
        m = iou(np.asarray(boxes, np.float32).reshape(-1, 4), det)
        if m.size:
            rows, cols = linear_sum_assignment(-m)
            for r, c in zip(rows, cols, strict=True):
                if m[r, c] >= MATCH_IOU:
                    track_hits[faces[c]["track"]][int(ids[r])] += 1
                    sequence[int(ids[r])].append(faces[c]["track"])
    switches = sum(sum(1 for a, b in zip(s, s[1:], strict=False) if a != b) for s in sequence.values())
    false_tracks = sum(
        1 for t in counted_ids if sum(track_hits[t].values()) < 0.5 * max(1, track_frames[t])
    )
    true_people = sum(1 for n in seen.values() if n >= MIN_TRUE_FRAMES)
    found = len({i for hits in track_hits.values() for i in hits})
    # Each real track's person: the true id it matches most; a person with several tracks is fragmented.
    owners = [track_hits[t].most_common(1)[0][0] for t in counted_ids
              if sum(track_hits[t].values()) >= 0.5 * max(1, track_frames[t])]
    return {
        "frames": len(frames), "true_people": true_people, "counted": len(counted_ids),
        "count_error": round((len(counted_ids) - true_people) / true_people, 4) if true_people else None,
        "true_people_found": found, "true_people_missed": true_people - len(
            {i for i, n in seen.items() if n >= MIN_TRUE_FRAMES} & set(sequence)),
        "fragments": len(owners) - len(set(owners)), "id_switches": switches, "false_tracks": false_tracks,
    }
