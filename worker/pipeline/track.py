"""Face tracking, ByteTrack-style: two-stage IoU association, constant-velocity motion, lost-track buffer.

Faces in, the same Faces out with `track_id` set. A track is *confirmed* (gets a public id, counted as
a person) once it has been matched on `min_hits` frames while tentative (a tentative track survives
`tentative_frames` frames without a match: small faces flicker); `track_faces` delays its output by
`tentative_frames` frames so that the first frames of a confirmed track carry its id too.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Protocol

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

from models.faces import Faces
from worker.pipeline.timing import NO_TIMES


@dataclass(frozen=True)
class TrackerParams:
    """Thresholds of the tracker; tuned on the four clips and the composed crowd clips (tests/worker).

    high_score: detections at or above it start tracks and are matched first; low_score..high_score
    ones only extend existing tracks (ByteTrack's second stage: occluded, blurred, turning faces).
    match_iou / low_match_iou: minimum IoU of the stage-1 / stage-2 matches, computed on boxes grown by
    `box_buffer` x their size on every side, so small, fast faces still overlap their prediction.
    lost_frames: how long a track that sees nothing stays matchable (at 25 fps, 1.2 s); after that a
    confirmed track can still be re-joined by re-identification for reid_frames (4 s at 25 fps).
    """

    high_score: float = 0.6
    low_score: float = 0.3
    match_iou: float = 0.2
    low_match_iou: float = 0.3
    box_buffer: float = 0.3
    min_hits: int = 2
    tentative_frames: int = 3
    lost_frames: int = 30
    velocity_smoothing: float = 0.6  # weight of the previous velocity in the running estimate
    # Re-identification: a new track that appears within reid_frames of where a lost person was last
    # seen (centre within reid_distance x the face's size, similar size) and looks like them (colour
    # histograms of the clothes below the face and of the head, mean correlation >= reid_similarity)
    # is that person again. Lost tracks (under lost_frames) are candidates too, not only retired ones.
    # reid_similarity, reid_distance_weight and reid_size_ratio_at_edge: chosen on composed crowd
    # clips (models.evaluate_clips --composed, seeds 7, 11, 23), never on an evaluation clip.
    reid_frames: int = 100
    reid_distance: float = 1.5
    reid_size_ratio: float = 1.6
    # A face cut by the frame's edge (walking out or in) shows only part of itself: its box says little
    # about its size, so the size gate is looser when either box touches the edge.
    reid_size_ratio_at_edge: float = 2.5
    reid_similarity: float = 0.6
    reid_distance_weight: float = 0.1  # similarity given up per face size of distance, between candidates
    # Across a cut (edited footage switching back to a view) only a near-identical return counts: a
    # new shot of a crowd puts other people in the same places.
    reid_similarity_after_cut: float = 0.9
    reid_distance_after_cut: float = 0.5
    reid_size_ratio_after_cut: float = 1.3

    def describe(self) -> dict:
        """Every parameter, for the job's settings record."""
        return asdict(self)


def iou_matrix(a: np.ndarray, b: np.ndarray, buffer: float = 0.0) -> np.ndarray:
    """(len(a), len(b)) IoU of (N, 4) and (M, 4) xyxy boxes, each grown by buffer x its width/height."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float32)
    a, b = _grow(a, buffer), _grow(b, buffer)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return (inter / np.maximum(union, 1e-6)).astype(np.float32)


def _side(box: np.ndarray) -> float:
    """The longer side of an xyxy box, at least one pixel."""
    return float(max(box[2] - box[0], box[3] - box[1], 1.0))


def _grow(xyxy: np.ndarray, buffer: float) -> np.ndarray:
    if not buffer:
        return np.asarray(xyxy, np.float32)
    xyxy = np.asarray(xyxy, np.float32)
    wh = xyxy[:, 2:] - xyxy[:, :2]
    pad = np.concatenate([wh, wh], axis=1) * buffer
    return xyxy + pad * np.array([-1, -1, 1, 1], np.float32)


def _match(iou: np.ndarray, threshold: float) -> tuple[list[tuple[int, int]], set[int], set[int]]:
    """Optimal one-to-one matches with IoU >= threshold; (pairs, unmatched rows, unmatched columns)."""
    rows, cols = set(range(iou.shape[0])), set(range(iou.shape[1]))
    if iou.size == 0:
        return [], rows, cols
    r, c = linear_sum_assignment(-iou)
    pairs = [(i, j) for i, j in zip(r, c, strict=True) if iou[i, j] >= threshold]
    return pairs, rows - {i for i, _ in pairs}, cols - {j for _, j in pairs}


class _Track:
    """One tracked face: box, velocity (pixels/frame of centre and size), hit history."""

    __slots__ = ("key", "box", "velocity", "hits", "first_frame", "last_frame", "confirmed", "appearance")

    def __init__(self, key: int, box: np.ndarray, frame: int):
        self.key = key
        self.box = box.astype(np.float32)
        self.velocity = np.zeros(4, np.float32)
        self.hits = 1
        self.first_frame = frame
        self.last_frame = frame
        self.confirmed = False
        self.appearance: Looks | None = None

    def predict(self, frame: int) -> np.ndarray:
        """Box expected at `frame` under constant velocity (damped while lost: guesses decay)."""
        gap = frame - self.last_frame
        steps = min(gap, 5) + 0.5 * max(0, gap - 5) ** 0.5
        return self.box + self.velocity * steps

    def update(self, box: np.ndarray, frame: int, smoothing: float) -> None:
        gap = max(1, frame - self.last_frame)
        step = (box - self.box) / gap
        self.velocity = smoothing * self.velocity + (1 - smoothing) * step
        self.box = box.astype(np.float32)
        self.hits += 1
        self.last_frame = frame


class Tracker:
    """Assigns track keys to faces frame by frame; `ids` maps confirmed keys to public ids 1, 2, ..."""

    def __init__(self, params: TrackerParams | None = None):
        self.params = params or TrackerParams()
        self.tracks: list[_Track] = []
        self.ids: dict[int, int] = {}  # internal key -> public id, set on confirmation
        self.retired: list[_Track] = []  # confirmed tracks lost for good, re-joinable for a while
        self._before_cut: set[int] = set()  # keys of retired tracks last seen before a cut
        self.reidentified = 0
        self._next_key = 0
        self._next_id = 1
        self.frame = -1
        self._image: np.ndarray | None = None

    def update(self, faces: Faces, frame: int | None = None, image: np.ndarray | None = None) -> Faces:
        """Faces of the next frame, filtered to those on a track, with internal keys in track_id.

        Low-score faces that extend no track are dropped (they are mostly false detections). image
        (BGR) lets the tracker re-identify a person who was lost and comes back.
        """
        p = self.params
        self._image = image
        self.frame = frame = self.frame + 1 if frame is None else frame
        keep = faces.score >= p.low_score
        faces = faces[keep]
        high = np.flatnonzero(faces.score >= p.high_score)
        low = np.flatnonzero(faces.score < p.high_score)
        keys = np.full(len(faces), -1, np.int32)

        confirmed = [t for t in self.tracks if t.confirmed]
        tentative = [t for t in self.tracks if not t.confirmed]
        predicted = np.array([t.predict(frame) for t in confirmed], np.float32).reshape(-1, 4)

        # Stage 1: confident faces against every confirmed track, lost ones included.
        iou = iou_matrix(predicted, faces.xyxy[high], p.box_buffer)
        pairs, free_tracks, free_high = _match(iou, p.match_iou)
        for ti, di in pairs:
            self._assign(confirmed[ti], faces, high[di], keys, frame)
        # Stage 2: uncertain faces only extend tracks seen on the previous frame (ByteTrack).
        recent = [ti for ti in sorted(free_tracks) if confirmed[ti].last_frame == frame - 1]
        iou = iou_matrix(predicted[recent], faces.xyxy[low], p.box_buffer)
        pairs2, _, _ = _match(iou, p.low_match_iou)
        for ri, di in pairs2:
            self._assign(confirmed[recent[ri]], faces, low[di], keys, frame)
        # Stage 3: tentative tracks, with the confident faces left over.
        rest = np.array(sorted(free_high), np.int64)
        boxes = np.array([t.box for t in tentative], np.float32).reshape(-1, 4)
        pairs3, _, free_rest = _match(iou_matrix(boxes, faces.xyxy[high[rest]], p.box_buffer), p.match_iou)
        for ti, di in pairs3:
            self._assign(tentative[ti], faces, high[rest[di]], keys, frame)
        # New tracks from the confident faces nobody claimed.
        for di in sorted(free_rest):
            d = high[rest[di]]
            track = _Track(self._next_key, faces.xyxy[d], frame)
            self._next_key += 1
            self._confirm_if_ready(track)
            self.tracks.append(track)
            keys[d] = track.key
        # Tentative tracks not confirmed within their window were noise; lost ones expire (confirmed
        # ones into the re-identification list, for a while).
        alive = []
        for t in self.tracks:
            if frame - t.last_frame > p.lost_frames:
                if t.confirmed:
                    self.retired.append(t)
            elif t.confirmed or frame - t.first_frame < p.tentative_frames:
                alive.append(t)
        self.tracks = alive
        self.retired = [t for t in self.retired if frame - t.last_frame <= p.reid_frames]
        out = faces[keys >= 0]
        out.track_id = keys[keys >= 0].astype(np.int32)
        return out

    def _assign(self, track: _Track, faces: Faces, d: int, keys: np.ndarray, frame: int) -> None:
        track.update(faces.xyxy[d], frame, self.params.velocity_smoothing)
        if track.confirmed and track.hits % 5 == 0:
            self._look(track)  # kept fresh for when the person is lost; tentative tracks never need it
        self._confirm_if_ready(track)
        keys[d] = track.key

    def _look(self, track: _Track) -> None:
        """Refresh the track's appearance from the current image (when there is one)."""
        if self._image is not None:
            track.appearance = looks(self._image, track.box)

    def _confirm_if_ready(self, track: _Track) -> None:
        if not track.confirmed and track.hits >= self.params.min_hits:
            track.confirmed = True
            self._look(track)
            again = self._reidentify(track)
            if again is not None:
                self.ids[track.key] = self.ids[again.key]
                self.reidentified += 1
            else:
                self.ids[track.key] = self._next_id
                self._next_id += 1

    def _reidentify(self, track: _Track) -> _Track | None:
        """The earlier track this new one continues, if any: a confirmed track lost before the new one
        first appeared (still lost, or retired), at a plausible place and size, that looks alike.

        Lost tracks are candidates as well as retired ones: a person who walks out and comes back
        within lost_frames is not where the motion model expects (it moved on), and if only retired
        tracks were asked, the returning person would take the id of someone who left earlier. Of
        the candidates that pass the gates, the one that looks most alike, with nearer ones
        preferred (reid_distance_weight per face size), wins.
        """
        p = self.params
        if track.appearance is None:
            return None  # no image: no way to tell two people apart by place alone
        best, best_score = None, -np.inf
        side = _side(track.box)
        centre = (track.box[:2] + track.box[2:]) / 2
        at_edge = self._at_edge(track.box)
        lost = [t for t in self.tracks if t.confirmed and t is not track and t.last_frame < track.first_frame]
        for old in self.retired + lost:
            if old.appearance is None:
                continue
            cut = old.key in self._before_cut
            need = p.reid_similarity_after_cut if cut else p.reid_similarity
            ratio, reach = ((p.reid_size_ratio_after_cut, p.reid_distance_after_cut) if cut
                            else (p.reid_size_ratio, p.reid_distance))
            old_side = _side(old.box)
            size = max(side, old_side)
            if not cut and (at_edge or self._at_edge(old.box)):
                ratio = max(ratio, p.reid_size_ratio_at_edge)
            if size / min(side, old_side) > ratio:
                continue
            gap = float(np.linalg.norm(centre - (old.box[:2] + old.box[2:]) / 2)) / size
            if gap > reach:
                continue
            # Across a cut, the clothes alone, as strictly as before heads were compared: someone who
            # put a mask on between the shots is still the same person.
            sim = (similarity(track.appearance, old.appearance) if not cut
                   else similarity(track.appearance, old.appearance, parts=("clothes",)))
            if sim is None:
                continue
            score = sim - p.reid_distance_weight * gap
            if sim >= need and score > best_score:
                best, best_score = old, score
        if best is not None:
            if best in self.retired:
                self.retired.remove(best)
            else:
                self.tracks.remove(best)  # one person, one track: the lost one is continued by the new
        return best

    def _at_edge(self, box: np.ndarray) -> bool:
        """Whether the box touches the current image's border (within 2 px)."""
        if self._image is None:
            return False
        h, w = self._image.shape[:2]
        return bool(box[0] <= 2 or box[1] <= 2 or box[2] >= w - 2 or box[3] >= h - 2)

    def end_all(self) -> None:
        """End every track (a cut): later faces start new tracks; ids already given stay given.

        Confirmed tracks stay re-identifiable for a while, at a stricter likeness: edited footage
        cuts away and back to the same view, and a person there is still the same person.
        """
        self.retired.extend(t for t in self.tracks if t.confirmed)
        self._before_cut = {t.key for t in self.retired}
        self.tracks = []

    def public(self, faces: Faces) -> Faces:
        """The faces with internal keys replaced by public ids (-1 for tracks not confirmed)."""
        ids = np.array([self.ids.get(int(k), -1) for k in faces.track_id], np.int32)
        out = faces[np.arange(len(faces))]
        out.track_id = ids
        return out


@dataclass(frozen=True)
class Looks:
    """What a person looks like: hue-saturation histograms of the clothes below the face and of the head
    (face and hair); either is None when out of view (a face at the bottom edge shows no clothes)."""

    clothes: np.ndarray | None
    head: np.ndarray | None


def looks(image_bgr: np.ndarray, box: np.ndarray) -> Looks:
    """The person's Looks around a face box of a BGR frame."""
    return Looks(appearance(image_bgr, box), head_appearance(image_bgr, box))


def similarity(a: Looks, b: Looks, parts: tuple[str, ...] = ("clothes", "head")) -> float | None:
    """Correlation of two Looks: the mean over the parts both show (None when they share none)."""
    pairs = [(getattr(a, k), getattr(b, k)) for k in parts]
    sims = [float(cv2.compareHist(x, y, cv2.HISTCMP_CORREL))
            for x, y in pairs if x is not None and y is not None]
    return sum(sims) / len(sims) if sims else None


def _histogram(image_bgr: np.ndarray, left: int, top: int, right: int, bottom: int) -> np.ndarray | None:
    if right - left < 4 or bottom - top < 4:
        return None
    patch = image_bgr[top:bottom, left:right]
    step = max(1, min(patch.shape[:2]) // 32)  # subsample large patches: a histogram needs few pixels
    hsv = cv2.cvtColor(np.ascontiguousarray(patch[::step, ::step]), cv2.COLOR_BGR2HSV)
    hist = cv2.calcHist([hsv], [0, 1], None, [8, 8], [0, 180, 0, 256])
    return cv2.normalize(hist, hist).astype(np.float32)


def head_appearance(image_bgr: np.ndarray, box: np.ndarray) -> np.ndarray | None:
    """Hue-saturation histogram (8x8, float32) of the face and the hair above it; None when out of view."""
    h, w = image_bgr.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    fw, fh = x2 - x1, y2 - y1
    return _histogram(image_bgr, int(max(0, x1 - 0.1 * fw)), int(max(0, y1 - 0.3 * fh)),
                      int(min(w, x2 + 0.1 * fw)), int(min(h, y2)))


def appearance(image_bgr: np.ndarray, box: np.ndarray) -> np.ndarray | None:
    """Hue-saturation histogram (8x8, float32) of the clothes below a face box; None when out of view."""
    h, w = image_bgr.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    fw, fh = x2 - x1, y2 - y1
    # Shoulders and chest: wider than the face, from just under the chin to about two faces down.
    return _histogram(image_bgr, int(max(0, x1 - 0.5 * fw)), int(max(0, y2 + 0.2 * fh)),
                      int(min(w, x2 + 0.5 * fw)), int(min(h, y2 + 2.2 * fh)))


class CutDetector:
    """Notices hard cuts (edited footage, camera switches), where boxes at the same place are new people.

    Compares 32x18 grey thumbnails of consecutive frames: on the clips and composed crowds, motion
    (walking, panning) moves them by under 10 grey levels on average, cuts by over 60.
    """

    def __init__(self, threshold: float = 45.0):
        self.threshold = threshold
        self._prev: np.ndarray | None = None

    def __call__(self, image_bgr: np.ndarray) -> bool:
        """True when this BGR frame starts a new shot."""
        h, w = image_bgr.shape[:2]
        step = max(1, min(h // 36, w // 64))  # subsample first: area-resizing all of a 4K frame costs ms
        small = cv2.resize(image_bgr[::step, ::step], (32, 18), interpolation=cv2.INTER_AREA)
        grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY).astype(np.float32)
        cut = self._prev is not None and float(np.abs(grey - self._prev).mean()) > self.threshold
        self._prev = grey
        return cut


class HasFaces(Protocol):
    """Anything that flows through the stages with `faces` and a BGR `image` (run.Item)."""

    faces: Faces
    image: np.ndarray


def track_faces(items: Iterable[HasFaces], tracker: Tracker, cuts: CutDetector | None = None,
                times=NO_TIMES) -> Iterator[HasFaces]:
    """Set public track ids on each item's faces; output lags input by tentative_frames frames.

    With a CutDetector, every track ends at a cut: nobody is carried over into a different shot.
    """
    lag = max(0, tracker.params.tentative_frames)
    pending: deque[HasFaces] = deque()
    for item in items:
        with times.stage("track"):
            if cuts is not None and cuts(item.image):
                tracker.end_all()
            item.faces = tracker.update(item.faces, image=getattr(item, "image", None))
            pending.append(item)
            out = pending.popleft() if len(pending) > lag else None
            if out is not None:
                out.faces = tracker.public(out.faces)
        if out is not None:
            yield out
    while pending:
        out = pending.popleft()
        out.faces = tracker.public(out.faces)
        yield out
