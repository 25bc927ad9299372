"""An anonymised copy of a clip: every face pixelated on every frame, same frames, same timing.

What is blurred on frame i is the union, over the frames i-k .. i+k, of the faces the analysis stored
(rejected detections too, and boxes interpolated along each track across frames where it was missed)
and of faces found anew by the detector's most sensitive profile. Taking neighbouring frames as well
covers a face the detector missed for a frame or two and one moving fast; a margin around each box
covers hair, ears and the mask's edge. Safe before pretty: a blurred background patch costs nothing,
a face shown for one frame is a leak.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np

from models.faces import LABELS, Faces
from worker.pipeline.annotate import Style, colour_of
from worker.pipeline.decode import Frame

WINDOW_S = 0.2  # a box also covers this long before and after the frame it was found on
MARGIN = 0.5  # of the box's width/height, added on every side: hair and ears make a blurred face a face
BRIDGE_S = 2.0  # a track missed for up to this long is blurred along the line between its sightings
SMALL = 48  # px: a region smaller than this is filled with its mean colour instead of blocks
SURE = 0.6  # a face found at least this confidently also covers the frames around it
BLOCKS = 3  # a face becomes at most BLOCKS x BLOCKS flat squares (with 8, YuNet still finds some)


def record_boxes(record: dict) -> np.ndarray:
    """(N, 4) boxes of a stored frame record's faces (shared/results.py form), rejected ones too."""
    return np.array([f["box"] for f in record.get("faces") or []], np.float32).reshape(-1, 4)


def bridged_boxes(records: Iterable[dict], max_gap: int) -> dict[int, list[np.ndarray]]:
    """Boxes on the frames where a track was missed for at most max_gap frames, by frame index.

    Linear between the last box before the gap and the first after it (records in frame order).
    """
    last: dict[int, tuple[int, np.ndarray]] = {}
    out: dict[int, list[np.ndarray]] = {}
    for record in records:
        i = record["frame"]
        for face in record.get("faces") or []:
            track = face.get("track", -1)
            if track < 0:
                continue
            box = np.asarray(face["box"], np.float32)
            seen = last.get(track)
            if seen and 1 < i - seen[0] <= max_gap + 1:
                j0, b0 = seen
                for j in range(j0 + 1, i):
                    w = (j - j0) / (i - j0)
                    out.setdefault(j, []).append((1 - w) * b0 + w * box)
            last[track] = (i, box)
    return out


def pixelate(image: np.ndarray, boxes: np.ndarray, margin: float = MARGIN) -> None:
    """Replace each box (grown by margin) with BLOCKS x BLOCKS flat squares, in place."""
    h, w = image.shape[:2]
    for x1, y1, x2, y2 in boxes:
        mx, my = (x2 - x1) * margin, (y2 - y1) * margin
        a, b = int(max(0, x1 - mx)), int(max(0, y1 - my))
        c, d = int(min(w, np.ceil(x2 + mx))), int(min(h, np.ceil(y2 + my)))
        if c - a < 2 or d - b < 2:
            continue
        roi = image[b:d, a:c]
        # A small face in blocks is still a face-like blob to a detector enlarging it: one flat patch.
        n = BLOCKS if min(c - a, d - b) >= SMALL else 1
        small = cv2.resize(roi, (n, n), interpolation=cv2.INTER_AREA)
        image[b:d, a:c] = cv2.resize(small, (c - a, d - b), interpolation=cv2.INTER_NEAREST)


def anonymised_frames(frames: Iterable[Frame], records: Iterable[dict],
                      detector: Callable[[np.ndarray], Faces], *, fps: float,
                      bridged: dict[int, list[np.ndarray]]) -> Iterator[Frame]:
    """The frames with every face pixelated.

    records: the clip's frame records in order; bridged: more boxes by frame index (gaps of tracks,
    leaks an earlier pass left). Each frame is held back until the k frames after it are decoded and
    searched, so that a face found later covers the frames before it too; once blurred, the frame is
    searched again, and what is still found is blurred as well.
    """
    k = max(1, round(WINDOW_S * (fps or 25)))
    pending = iter(records)
    stored: dict[int, np.ndarray] = {}
    window: deque[tuple[int, Frame, Faces]] = deque()  # (ordinal, frame, faces found anew)

    def stored_at(i: int) -> np.ndarray:
        while i not in stored:
            record = next(pending, None)
            if record is None:
                return np.zeros((0, 4), np.float32)
            stored[record["frame"]] = record_boxes(record)
        return stored[i]

    def emit(n: int) -> Frame:
        frame = next(f for o, f, _ in window if o == n)
        i = frame.index
        # A confident face covers its neighbours too; a doubtful one (often a large false alarm) only
        # its own frame: the check after encoding catches what that leaves.
        cover = [found.xyxy if o == n else found.xyxy[found.score >= SURE]
                 for o, _, found in window if abs(o - n) <= k]
        for j in range(i - k, i + k + 1):
            cover.append(stored_at(j) if j >= 0 else np.zeros((0, 4), np.float32))
            cover.append(np.array(bridged.get(j, []), np.float32).reshape(-1, 4))
        pixelate(frame.image, np.concatenate(cover))
        pixelate(frame.image, detector(frame.image).xyxy)
        for j in [j for j in stored if j < i - k]:
            del stored[j]
        while window and window[0][0] < n - k:
            window.popleft()
        return frame

    read = done = 0
    for frame in frames:
        window.append((read, frame, detector(frame.image)))
        read += 1
        while done < read - k:
            yield emit(done)
            done += 1
    while done < read:  # the last frames: no more future to wait for
        yield emit(done)
        done += 1


def leaks(frames: Iterable[Frame], detector: Callable[[np.ndarray], Faces], *,
          grow: float = 2.0) -> dict[int, list[np.ndarray]]:
    """Faces the detector still finds on an export's frames, by frame index (empty: none on any frame).

    Each box is grown `grow` times about its centre: what was found on a blurred patch is a face-like
    blob of patch and surroundings, which a larger patch covers.
    """
    found: dict[int, list[np.ndarray]] = {}
    for frame in frames:
        boxes = detector(frame.image).xyxy
        if len(boxes):
            centre, half = (boxes[:, :2] + boxes[:, 2:]) / 2, (boxes[:, 2:] - boxes[:, :2]) * grow / 2
            boxes = np.concatenate([centre - half, centre + half], axis=1)
        if len(boxes):
            for j in (frame.index - 1, frame.index, frame.index + 1):  # and its neighbours, to be safe
                found.setdefault(j, []).extend(boxes)
    return found


def draw_compliance_boxes(image: np.ndarray, record: dict, scale: float = 1.0) -> np.ndarray:
    """Outline each counted face of a stored record in its label's colour, with no text (in place).

    Drawn on a copy already checked face-free: an outline only adds pixels, so it cannot show a face
    (tags and text are left out: they are what makes the detector report faces on a blurred frame).
    """
    style = Style.for_frame(image.shape[1], image.shape[0])
    for face in record.get("faces") or []:
        if face.get("label") == "rejected":
            continue
        x1, y1, x2, y2 = (int(round(v * scale)) for v in face["box"])
        label = LABELS.index(face["label"]) if face.get("label") in LABELS else -1
        cv2.rectangle(image, (x1, y1), (x2, y2), colour_of(label), style.line, cv2.LINE_8)
    return image


def boxed_frames(frames: Iterable[Frame], records: Iterable[dict], scale: float) -> Iterator[Frame]:
    """The frames with their stored faces outlined (draw_compliance_boxes), records in frame order."""
    pending = iter(records)
    record = next(pending, None)
    for frame in frames:
        while record is not None and record["frame"] < frame.index:
            record = next(pending, None)
        if record is not None and record["frame"] == frame.index:
            draw_compliance_boxes(frame.image, record, scale)
        yield frame


def stored_records(bucket_texts: Iterable[str]) -> Iterator[dict]:
    """Frame records from the clip's stored buckets (JSON arrays), in order."""
    for text in bucket_texts:
        yield from json.loads(text)


def anonymise_image(image: np.ndarray, record: dict, detector, *, out: Path) -> Path:
    """A still image with every face pixelated (stored and found anew); JPEG at out."""
    found = [detector(image).xyxy, record_boxes(record)]
    pixelate(image, np.concatenate(found))
    for _ in range(3):  # what is still found once blurred is blurred too
        if not len(again := detector(image).xyxy):
            break
        pixelate(image, again)
    cv2.imwrite(str(out), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return out
