"""Matching and metrics on hand-made boxes with known answers, and the evaluation CLI end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from models import evaluate
from models.metrics import SIZE_BINS, Tally, iou_matrix, match_greedy, short_side, size_bin
from shared.assets import asset_path
from shared.config import ROOT


def test_iou_of_known_boxes():
    a = np.array([[0, 0, 2, 2]], np.float32)
    b = np.array([[0, 0, 2, 2], [1, 0, 3, 2], [5, 5, 6, 6], [0, 0, 1, 1]], np.float32)
    np.testing.assert_allclose(iou_matrix(a, b), [[1.0, 1 / 3, 0.0, 0.25]])
    assert iou_matrix(np.zeros((0, 4)), b).shape == (0, 4)
    # Degenerate (zero-area) boxes have IoU 0, not NaN.
    assert iou_matrix([[1, 1, 1, 1]], [[1, 1, 1, 1]])[0, 0] == 0.0


def test_greedy_matching_goes_by_score_and_takes_the_best_free_box():
    gt = np.array([[0, 0, 10, 10], [4, 0, 14, 10]], np.float32)
    pred = np.array(
        [
            [0, 0, 10, 10],  # score .9: exactly the first face
            [1, 0, 11, 10],  # score .8: best IoU is the (taken) first face, falls back to the second
            [0, 0, 10, 10],  # score .7: a duplicate, nothing left for it
        ],
        np.float32,
    )
    p2g, g2p = match_greedy(pred, [0.9, 0.8, 0.7], gt, iou_threshold=0.4)
    assert p2g.tolist() == [0, 1, -1]
    assert g2p.tolist() == [0, 1]


def test_higher_score_wins_even_with_a_worse_overlap():
    gt = np.array([[0, 0, 10, 10]], np.float32)
    pred = np.array([[2, 0, 12, 10], [0, 0, 10, 10]], np.float32)  # IoU 0.667 and 1.0
    p2g, g2p = match_greedy(pred, [0.95, 0.6], gt)
    assert p2g.tolist() == [0, -1] and g2p.tolist() == [0]


def test_iou_threshold_is_inclusive():
    gt = np.array([[0, 0, 10, 10]], np.float32)
    at = np.array([[0, 0, 4, 10]], np.float32)  # IoU 0.4 exactly
    below = np.array([[0, 0, 3.9, 10]], np.float32)
    assert match_greedy(at, [1.0], gt, 0.4)[1].tolist() == [0]
    assert match_greedy(below, [1.0], gt, 0.4)[1].tolist() == [-1]
    assert match_greedy(np.zeros((0, 4)), [], gt)[1].tolist() == [-1]
    assert match_greedy(at, [1.0], np.zeros((0, 4)))[0].tolist() == [-1]


def test_size_bins_by_short_side():
    assert short_side([[0, 0, 30, 10]]).tolist() == [10.0]
    assert size_bin([0, 23.9, 24, 47.9, 48, 500]).tolist() == [0, 0, 1, 1, 2, 2]
    assert [name for name, _, _ in SIZE_BINS] == ["lt24", "24to48", "ge48"]


def test_tally_recall_precision_and_mask_accuracy():
    t = Tally()
    # Image 1: a 10 px masked face (found, called unmasked), a 30 px unmasked face (found, right),
    # a 60 px incorrectly-masked face (found, called unmasked: wrong 3-class, right binary).
    gt = np.array([[0, 0, 10, 10], [20, 0, 50, 30], [100, 0, 160, 60]], np.float32)
    labels = np.array([0, 1, 2])
    pred = np.array([[0, 0, 10, 10], [20, 0, 50, 30], [100, 0, 160, 60], [300, 0, 310, 10]], np.float32)
    t.add(pred, [0.9, 0.9, 0.9, 0.9], gt, labels, pred_labels=np.array([1, 1, 1, 0]))
    # Image 2: a 30 px masked face that is missed; nothing detected.
    t.add(np.zeros((0, 4)), np.zeros(0), np.array([[0, 0, 30, 30]]), np.array([0]), np.zeros(0, int))
    r = t.summary()
    assert r["overall"]["faces"] == 4 and r["overall"]["detections"] == 4
    assert r["overall"]["recall"] == 0.75
    assert r["overall"]["precision"] == 0.75  # the 10 px detection at x=300 is a false positive
    assert r["overall"]["mask_accuracy_3class"] == round(1 / 3, 4)
    assert r["overall"]["mask_accuracy_binary"] == round(2 / 3, 4)
    by = r["by_size"]
    assert (by["lt24"]["recall"], by["lt24"]["precision"]) == (1.0, 0.5)
    assert (by["24to48"]["faces"], by["24to48"]["recall"]) == (2, 0.5)
    assert by["ge48"]["mask_accuracy_3class"] == 0.0 and by["ge48"]["mask_accuracy_binary"] == 1.0
    assert r["confusion_truth_by_predicted"] == [[0, 1, 0], [0, 1, 0], [0, 1, 0]]
    assert Tally().summary()["overall"]["recall"] is None  # no faces: no ratio, not a crash


def test_unlabelled_faces_count_as_wrong_and_are_reported_apart():
    t = Tally()
    gt = np.array([[0, 0, 30, 30], [40, 0, 70, 30]], np.float32)
    t.add(gt, [0.9, 0.9], gt, np.array([0, 1]), pred_labels=np.array([0, -1]))  # the second left unknown
    r = t.summary()["overall"]
    assert r["mask_accuracy_3class"] == 0.5
    assert (r["labelled_share"], r["mask_accuracy_3class_labelled"]) == (0.5, 1.0)


EXPECTED_PIPELINE_KEYS = {"detector", "overall", "by_size", "recall_by_fine_size", "timing", "meets_goal"}


def _check(result: dict, classified: bool, pipelines=("ours", "seeds")) -> None:
    assert result["split"] == "val" and result["images"] == 3 and result["iou_threshold"] == 0.4
    assert set(result["pipelines"]) == set(pipelines)
    for name, p in result["pipelines"].items():
        assert set(p) >= EXPECTED_PIPELINE_KEYS, name
        assert set(p["by_size"]) == {"lt24", "24to48", "ge48"}
        for block in [p["overall"], *p["by_size"].values()]:
            for key in ("recall", "precision"):
                assert block[key] is None or 0.0 <= block[key] <= 1.0
            assert ("mask_accuracy_3class" in block) == classified
            assert ("mask_accuracy_binary" in block) == classified
        assert p["timing"]["detector_ms_per_image_median"] > 0
    assert result["pipelines"]["ours"]["detector"]["name"] == "yunet"
    if "seeds" in pipelines:
        assert result["pipelines"]["seeds"]["detector"]["name"] == "res10"


def test_cli_detector_only_prints_json():
    scenes = asset_path("mask_scenes")
    out = subprocess.run(
        [sys.executable, "-m", "models.evaluate", "--scenes", str(scenes), "--limit", "3", "--detector-only"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    _check(json.loads(out.stdout), classified=False)


class _FakeClassifier:
    """Stands in for a network: calls every face masked."""

    input_size = 32
    name = "fake"

    def __call__(self, crops):
        assert crops.ndim == 4 and crops.shape[1:] == (32, 32, 3) and crops.dtype == np.uint8
        return np.tile(np.array([[0.9, 0.05, 0.05]], np.float32), (len(crops), 1))


def test_full_evaluation_plumbing_with_fake_classifiers(monkeypatch, capsys):
    import models.baselines as baselines
    import models.classify as classify

    monkeypatch.setattr(classify, "load_classifier", lambda backend="auto": _FakeClassifier())
    monkeypatch.setattr(baselines, "SeedClassifier", _FakeClassifier)
    assert evaluate.main(["--scenes", str(asset_path("mask_scenes")), "--limit", "3"]) == 0
    result = json.loads(capsys.readouterr().out)
    _check(result, classified=True)
    ours = result["pipelines"]["ours"]
    assert ours["classifier"]["name"] == "fake"
    assert ours["timing"]["classifier_ms_per_face"] is not None
    # The first 3 val photos hold masked faces only, so "always masked" is right on every match.
    assert ours["overall"]["mask_accuracy_3class"] == 1.0
    assert 0.0 <= ours["with_worker_rules"]["overall"]["labelled_share"] <= 1.0


def test_cli_full_run_with_our_real_models():
    # Without the seeds' Keras model: our path (LiteRT) needs no TensorFlow, which keeps this fast;
    # the seeds' plumbing is covered above and their classifier by its own tests.
    scenes = str(asset_path("mask_scenes"))
    out = subprocess.run(
        [sys.executable, "-m", "models.evaluate", "--scenes", scenes, "--limit", "3", "--no-seeds"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    result = json.loads(out.stdout)
    _check(result, classified=True, pipelines=("ours",))
    assert result["pipelines"]["ours"]["classifier"]["backend"] in ("litert", "keras")
