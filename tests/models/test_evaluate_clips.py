"""The clip-level evaluation: the rule that judges a clip, the honest splits, and a real clip end to end."""

from __future__ import annotations

import json

from models import clip_splits, evaluate_clips
from shared.assets import asset_path


def summary(total, masked, unmasked, incorrect=0, unknown=0, rate=None):
    return {"people": {"total": total, "masked": masked, "unmasked": unmasked, "incorrect": incorrect,
                       "unknown": unknown}, "compliance_rate": rate, "processing_fps": 10.0}


TRUTH = {"truth_rate": 0.0, "max_people": 3, "min_decided": 2}


def test_judge_applies_each_part_of_the_rule():
    assert evaluate_clips.judge(summary(2, 0, 2, rate=0.0), TRUTH)["right"]
    assert evaluate_clips.judge(summary(3, 0, 2, unknown=1, rate=0.0), TRUTH)["right"]
    wrong_rate = evaluate_clips.judge(summary(2, 1, 1, rate=0.5), TRUTH)
    assert not wrong_rate["right"] and "rate 0.5" in wrong_rate["why"]
    too_many = evaluate_clips.judge(summary(5, 0, 5, rate=0.0), TRUTH)
    assert not too_many["right"] and "counted 5 > 3" in too_many["why"]
    undecided = evaluate_clips.judge(summary(2, 0, 0, unknown=2), TRUTH)
    assert not undecided["right"] and "nobody decided" in undecided["why"]
    # Within the tolerance of 0.1 is right; a state-changing clip without one truth rate only counts.
    assert evaluate_clips.judge(summary(4, 3, 1, rate=0.75), {"truth_rate": 0.7, "max_people": 4})["right"]
    assert evaluate_clips.judge(summary(1, 0, 0, unknown=1), {"truth_rate": None, "max_people": 1})["right"]


def test_evaluation_clips_are_fixed_and_kept_out_of_mining():
    labels = json.loads((asset_path("real_clips") / "LABELS.json").read_text())
    names = [n for n in labels if not n.startswith("_")]
    held = [n for n in names if clip_splits.clip_split("clips", n) == "eval"]
    assert len(names) == 9 and len(held) >= 4
    assert all(clip_splits.clip_split("videos", n) == "eval" for n in ("one_face_with_mask.mp4", "x.mp4"))
    pre = sorted(p.name for p in asset_path("cctv_pre2020").glob("*.mp4"))
    splits = {n: clip_splits.pre2020_split(n) for n in pre}
    assert set(splits.values()) == {"eval", "mine"}
    assert 0.25 < sum(s == "eval" for s in splits.values()) / len(pre) < 0.45


def test_two_people_walking_to_a_ceiling_camera_are_both_decided_unmasked(tmp_path):
    # Recorded in 2019: nobody is masked. Both faces are clearly visible (30-55 px); before the
    # visibility-weighted vote both stayed "unknown".
    clip = asset_path("real_clips") / "corridor_two_people.mp4"
    s = evaluate_clips.analyse(clip, tmp_path / "out")
    row = evaluate_clips.judge(s, {"truth_rate": 0.0, "max_people": 3, "min_decided": 2})
    assert row["right"], row
    assert s["people"]["unmasked"] == 2 and s["people"]["masked"] == 0
    assert (tmp_path / "out" / "annotated.mp4").stat().st_size > 0
