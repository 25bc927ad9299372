"""Which real clips may be trained or tuned on, and which are kept for evaluation only.

The product is judged on footage it has never seen, so a clip in an evaluation split is never mined
for training data and no threshold is chosen by looking at it. The choice is fixed here, before
tuning, and reported by the evaluation commands.
"""

from __future__ import annotations

import hashlib

# shared/data/clips: four of the nine for evaluation only (a night IR doorway, a restaurant corner
# camera, a GIF classroom and the one COVID-era security camera), five to tune on.
EVAL_CLIPS = frozenset({
    "night_ir_doorway_2016.mp4",
    "restaurant_cctv_2012.mp4",
    "classroom_four_seated.gif",
    "office_door_black_mask.mp4",
})
# shared/data/videos: all four single-person clips are evaluation only.
EVAL_FOLDERS = frozenset({"videos"})
# datasets/cctv_pre2020: a third of the clips (by a hash of the name) are evaluation only; the rest
# are mined for unmasked CCTV faces.
PRE2020_EVAL_PERCENT = 34


def clip_split(folder: str, name: str) -> str:
    """'eval' or 'tune' for a labelled clip of a folder ('clips', 'videos', ...)."""
    if folder in EVAL_FOLDERS or name in EVAL_CLIPS:
        return "eval"
    return "tune"


def pre2020_split(name: str) -> str:
    """'eval' or 'mine' for a clip of datasets/cctv_pre2020, stable across runs."""
    bucket = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) % 100
    return "eval" if bucket < PRE2020_EVAL_PERCENT else "mine"
