"""Speed of the detectors (ms/frame at 720p and 1080p) and classifiers (faces/s), ours vs the seeds'.

python -m bench.bench_models [--rounds R] [--seconds S] [--caps 1280,1920] [--skip-keras]

Frames are synthetic but hold real faces: 3x3 mosaics of mask_scenes photos resized to 720p/1080p.
Every number comes from the same run on the same machine; `load_avg` shows how busy it was.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict

import cv2
import numpy as np

from models.splits import split_of
from models.voc import read_scenes
from shared.assets import asset_path
from shared.errors import MaskwatchError

RESOLUTIONS = {"720p": (1280, 720), "1080p": (1920, 1080)}
GRID = 3  # 3x3 photos per frame: crowd-like frames whose faces are CCTV-small


def mosaic_frames(size: tuple[int, int], count: int = 4) -> list[np.ndarray]:
    """`count` (H, W, 3) BGR uint8 frames of `size` (W, H), each a GRID x GRID mosaic of val photos."""
    width, height = size
    scenes = [s for s in read_scenes(asset_path("mask_scenes")) if split_of(s.stem) == "val"]
    # The photos with the most faces first: the classifier then has real work in every frame.
    scenes.sort(key=lambda s: -len(s.boxes))
    frames = []
    for k in range(count):
        frame = np.zeros((height, width, 3), np.uint8)
        for i in range(GRID * GRID):
            scene = scenes[(k * GRID * GRID + i) % len(scenes)]
            r, c = divmod(i, GRID)
            y1, y2 = r * height // GRID, (r + 1) * height // GRID
            x1, x2 = c * width // GRID, (c + 1) * width // GRID
            img = cv2.imread(str(scene.image_path))
            frame[y1:y2, x1:x2] = cv2.resize(img, (x2 - x1, y2 - y1), interpolation=cv2.INTER_AREA)
        frames.append(frame)
    return frames


def _stats(ms: list[float]) -> dict:
    return {
        "ms_per_frame_median": round(float(np.median(ms)), 1),
        "ms_per_frame_p10": round(float(np.percentile(ms, 10)), 1),
        "ms_per_frame_p90": round(float(np.percentile(ms, 90)), 1),
        "frames_timed": len(ms),
    }


def time_detectors(detectors: dict, frames: list[np.ndarray], rounds: int) -> dict:
    """ms/frame of each detector on the same frames, interleaved round by round.

    Interleaving spreads a busy neighbour's load over every detector alike, so their ratios hold
    even when the absolute numbers are inflated; p10 is the closest to an idle machine's figure.
    """
    times: dict = {name: [] for name in detectors}
    found: dict = {name: [] for name in detectors}
    per_round = {}
    for name, det in detectors.items():
        t0 = time.perf_counter()
        det(frames[0])  # warm-up: first-call allocations and setInputSize
        # Slow settings (the still profile at 1080p: ~1 s) get one frame a round, fast ones all.
        per_round[name] = frames[:1] if time.perf_counter() - t0 > 0.3 else frames
    for _ in range(rounds):
        for name, det in detectors.items():
            for frame in per_round[name]:
                t0 = time.perf_counter()
                faces = det(frame)
                times[name].append(1000 * (time.perf_counter() - t0))
                found[name].append(len(faces))
    return {
        name: {**_stats(times[name]), "faces_per_frame": round(float(np.mean(found[name])), 1)}
        for name in detectors
    }


def time_classifier(classifier, crops: np.ndarray, seconds: float) -> dict:
    """faces/s of classifier(crops) over >= `seconds` (at least one call) after one warm-up call."""
    classifier(crops[:2])
    done, started = 0, time.perf_counter()
    while done == 0 or time.perf_counter() - started < seconds:
        classifier(crops)
        done += len(crops)
    elapsed = time.perf_counter() - started
    return {"faces_per_s": round(done / elapsed, 1), "batch": len(crops), "faces_timed": done}


def face_crops(size: int, count: int) -> np.ndarray:
    """(count, size, size, 3) uint8 RGB crops of annotated val faces, cut as the worker cuts them."""
    from models.classify import crop_faces

    crops = []
    for scene in read_scenes(asset_path("mask_scenes")):
        if split_of(scene.stem) != "val" or not len(scene.boxes):
            continue
        crops.append(crop_faces(cv2.imread(str(scene.image_path)), scene.boxes, size))
        if sum(map(len, crops)) >= count:
            break
    return np.concatenate(crops)[:count]


def bench_detectors(rounds: int, caps: list[int]) -> dict:
    """ms/frame of YuNet (video and still profiles, and the video profile at other caps) and res10."""
    from models.detect import PROFILES, load_detector

    detectors = {f"yunet_{p}": load_detector("yunet", profile=p) for p in ("video", "still")}
    for cap in caps:
        detectors[f"yunet_video_max_side_{cap}"] = load_detector("yunet", profile="video", max_side=cap)
    detectors["res10_seeds"] = load_detector("res10")
    out: dict = {"settings": {f"yunet_{p}": asdict(PROFILES[p]) for p in ("video", "still")}}
    for res, size in RESOLUTIONS.items():
        result = time_detectors(detectors, mosaic_frames(size), rounds)
        base = result["res10_seeds"]["ms_per_frame_median"]
        for name, det in detectors.items():
            if hasattr(det, "working_scale"):
                s = det.working_scale(*size)
                result[name]["working_size"] = [round(size[0] * s), round(size[1] * s)]
            result[name]["x_res10_time"] = round(result[name]["ms_per_frame_median"] / base, 2)
        out[res] = result
    return out


def bench_classifiers(seconds: float, skip_keras: bool) -> dict:
    """faces/s: ours on LiteRT and Keras (batched), the seeds' batched and per-face model.predict."""
    from models.baselines import SeedClassifier
    from models.classify import load_classifier

    out: dict = {}
    try:
        ours = load_classifier(backend="litert", precision="float")
        crops = face_crops(ours.input_size, 64)
        out["ours_litert_batched"] = {"input_size": ours.input_size, **time_classifier(ours, crops, seconds)}
        if "tflite_int8" in ours.meta["files"]:  # the CPU worker's default
            int8 = load_classifier(backend="litert", precision="int8")
            out["ours_litert_int8_batched"] = {"input_size": int8.input_size,
                                               **time_classifier(int8, crops, seconds)}
        if not skip_keras:
            keras_ours = load_classifier(backend="keras")
            out["ours_keras_batched"] = {
                "input_size": keras_ours.input_size,
                **time_classifier(keras_ours, crops, seconds),
            }
    except MaskwatchError as e:  # our model not trained yet: still measure the seeds'
        out["ours_error"] = str(e)
    if not skip_keras:
        seed = SeedClassifier()
        crops = face_crops(seed.input_size, 64)
        out["seeds_keras_batched"] = {"input_size": seed.input_size, **time_classifier(seed, crops, seconds)}
        seed.per_face = True
        # One model.predict per face, as the seeds did: measured on fewer faces, it is slow.
        out["seeds_predict_per_face"] = {
            "input_size": seed.input_size,
            **time_classifier(seed, crops[:16], seconds),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    """Print the benchmark JSON."""
    ap = argparse.ArgumentParser(prog="python -m bench.bench_models", description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=4.0, help="minimum timing per classifier")
    ap.add_argument("--rounds", type=int, default=6, help="interleaved rounds of detector timing")
    ap.add_argument(
        "--caps", default="", help="also time the video profile at these working caps, e.g. 1280,1920"
    )
    ap.add_argument("--skip-keras", action="store_true", help="skip the TensorFlow paths (fast)")
    args = ap.parse_args(argv)
    started = time.perf_counter()
    try:
        result = {
            "machine": {
                "cpus": os.cpu_count(),
                "cv2": cv2.__version__,
                "cv2_threads": cv2.getNumThreads(),
                "python": platform.python_version(),
                "load_avg_before": [round(x, 2) for x in os.getloadavg()],
            },
            "frames": f"{GRID}x{GRID} mosaics of mask_scenes val photos",
            "detectors": bench_detectors(args.rounds, [int(c) for c in args.caps.split(",") if c]),
            "classifiers": bench_classifiers(args.seconds, args.skip_keras),
        }
    except MaskwatchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    result["machine"]["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
    result["wall_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
