"""Draw boxes, labels and a counter on BGR frames; every size scales with the frame (360p to 4K).

Annotators share supervision's signature: `annotate(scene, faces) -> scene`, drawing in place on a
BGR uint8 (H, W, 3) image.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from models.faces import INCORRECT, MASKED, REJECTED, UNMASKED, Faces

# BGR; green/red/orange read as good/bad/in-between, grey as "no decision".
COLOURS = {MASKED: (60, 180, 40), UNMASKED: (40, 40, 220), INCORRECT: (0, 150, 255)}
UNKNOWN_COLOUR = (150, 150, 150)
TEXTS = {MASKED: "masked", UNMASKED: "not masked", INCORRECT: "incorrect"}
FONT = cv2.FONT_HERSHEY_SIMPLEX
# Reference: at a 720-px short side, text is drawn at scale 1.0 (about 22 px tall), lines 2-3 px.
REFERENCE_SIDE = 720.0


@dataclass(frozen=True)
class Style:
    """Line width (px), font scale and text thickness (px) for one frame size."""

    line: int
    font_scale: float
    text_thickness: int
    pad: int

    @classmethod
    def for_frame(cls, width: int, height: int) -> Style:
        """Sizes proportional to the frame's short side, never below what stays legible at 360p."""
        k = min(width, height) / REFERENCE_SIDE
        return cls(line=max(1, round(2.5 * k)), font_scale=max(0.45, 1.0 * k),
                   text_thickness=max(1, round(2 * k)), pad=max(2, round(5 * k)))


def colour_of(label: int) -> tuple[int, int, int]:
    """BGR colour of a label index (-1 unknown)."""
    return COLOURS.get(int(label), UNKNOWN_COLOUR)


def text_of(label: int) -> str:
    """Display text of a label index: masked / not masked / incorrect / unknown."""
    return TEXTS.get(int(label), "unknown")


def _style(scene: np.ndarray) -> Style:
    h, w = scene.shape[:2]
    return Style.for_frame(w, h)


class BoxAnnotator:
    """A colour-coded rectangle around each face."""

    def annotate(self, scene: np.ndarray, faces: Faces) -> np.ndarray:
        """Draw on scene (BGR, in place) and return it."""
        style = _style(scene)
        for box, label in zip(faces.xyxy, faces.label, strict=True):
            x1, y1, x2, y2 = (int(round(v)) for v in box)
            cv2.rectangle(scene, (x1, y1), (x2, y2), colour_of(label), style.line, cv2.LINE_8)
        return scene


class LabelAnnotator:
    """'#id label NN%' on a filled tag above each face (inside the frame when the face is at the top)."""

    def annotate(self, scene: np.ndarray, faces: Faces) -> np.ndarray:
        """Draw on scene (BGR, in place) and return it."""
        style = _style(scene)
        h, w = scene.shape[:2]
        for i in range(len(faces)):
            label = int(faces.label[i])
            text = text_of(label)
            if label >= 0 and np.isfinite(faces.probs[i, label]):
                text += f" {100 * faces.probs[i, label]:.0f}%"
            if faces.track_id[i] >= 0:
                text = f"#{faces.track_id[i]} {text}"
            x1, y1 = int(round(faces.xyxy[i, 0])), int(round(faces.xyxy[i, 1]))
            draw_tag(scene, text, (x1, y1), colour_of(label), style, above=True, bounds=(w, h))
        return scene


class CounterAnnotator:
    """A small panel in the top-left corner: faces in view and how many of them wear a mask."""

    def annotate(self, scene: np.ndarray, faces: Faces) -> np.ndarray:
        """Draw on scene (BGR, in place) and return it."""
        style = _style(scene)
        h, w = scene.shape[:2]
        n = len(faces)
        masked = int(np.sum(faces.label == MASKED))
        bad = int(np.sum((faces.label == UNMASKED) | (faces.label == INCORRECT)))
        text = f"faces {n} | masked {masked} | not masked {bad}"
        draw_tag(scene, text, (style.pad, style.pad), (40, 40, 40), style, above=False, bounds=(w, h))
        return scene


def draw_tag(scene: np.ndarray, text: str, anchor: tuple[int, int], colour: tuple[int, int, int],
             style: Style, *, above: bool, bounds: tuple[int, int]) -> None:
    """Text on a filled rectangle; anchor is its bottom-left (above=True) or top-left corner, pixels."""
    (tw, th), base = cv2.getTextSize(text, FONT, style.font_scale, style.text_thickness)
    box_w, box_h = tw + 2 * style.pad, th + base + 2 * style.pad
    x, y = anchor
    top = y - box_h if above else y
    if top < 0:
        top = y if above else 0
    x = min(max(0, x), max(0, bounds[0] - box_w))
    top = min(max(0, top), max(0, bounds[1] - box_h))
    # cv2.rectangle includes its second corner: the tag is box_w x box_h pixels, so it fits exactly.
    cv2.rectangle(scene, (x, top), (x + box_w - 1, top + box_h - 1), colour, cv2.FILLED)
    # White on every tag colour: all of them are dark or saturated enough for contrast.
    cv2.putText(scene, text, (x + style.pad, top + style.pad + th), FONT, style.font_scale,
                (255, 255, 255), style.text_thickness, cv2.LINE_AA)


DEFAULT_ANNOTATORS = (BoxAnnotator(), LabelAnnotator(), CounterAnnotator())


def annotate(scene: np.ndarray, faces: Faces, annotators=DEFAULT_ANNOTATORS) -> np.ndarray:
    """Apply each annotator in turn to a BGR frame (in place); returns the frame.

    Rejected detections (tracks that are not people) are not drawn: they stay in the frame data only.
    """
    if len(faces) and np.any(faces.label == REJECTED):
        faces = faces[faces.label != REJECTED]
    for annotator in annotators:
        scene = annotator.annotate(scene, faces)
    return scene
