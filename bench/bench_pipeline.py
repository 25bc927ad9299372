"""Speed and memory of the whole worker pipeline, against its floor and the seeds' way, in one run.

    python -m bench.bench_pipeline [--repeat N] [--seed-frames N] [--skip-rss] [--preset P] [--only CLIP]

Per clip (720p and 1080p made from the one_face_puts_mask_on clip; a 1080p crowd of small faces made
from mask_scenes photos) it measures, each in a fresh process so that models, threads and memory do not
leak between them:
  pipeline  run.analyse_video end to end: decode, detect, track, classify, annotate, encode (our worker),
            with the CPU ms per frame of each stage (worker/pipeline/timing.py) and faces classified
  pipeline_float  the same with the float classifier (CLASSIFIER_PRECISION=float): what int8 gains
  floor     decode + H.264 re-encode with the same encoder settings, no analysis, overlapped in two
            threads as the pipeline does: the ceiling for fps
  floor_simple  the same in one plain loop (decode a frame, encode it), as a re-encode is usually written
  seed      the seeds' way: res10 SSD + one model.predict per face with their Keras classifier, every
            frame, one thread (first --seed-frames frames only: it is slow)
Then peak RSS of the pipeline on a 1-minute and a 10-minute synthetic clip (low resolution and 6 fps,
so that 10 minutes take ~2 minutes: memory that grows with length grows per frame, per second of bins
or per person, all of which these clips have — 3,600 frames, 600 seconds, 150 people — at any size).
Each measurement runs --repeat times, interleaved, and the fastest run counts (other load on a shared
machine only ever slows a run down); `fps_runs` lists them all, `cpu_ms_per_frame` is CPU time of all
threads, which other load moves far less than wall-clock time. Prints one JSON document; every figure
comes from this run on this machine (`load_avg` says how busy it was).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import cv2
import numpy as np

from shared.assets import asset_path
from shared.config import ROOT, get_settings

CACHE = ROOT / "artifacts" / "bench"
GOALS = {
    "pipeline_vs_floor_1080p": 0.75,
    "pipeline_vs_floor_720p": 0.6,
    "crowd_fps": 8.0,
    "pipeline_vs_seed_1080p": 4.0,
    "peak_rss_mb": 1536,
    "rss_10min_vs_1min": 1.1,
}


def _encode(frames, path: Path, *, fps: int, width: int, height: int) -> Path:
    """Write BGR frames as a high-quality H.264 MP4 (the benchmark's inputs), atomically."""
    tmp = path.with_suffix(".part.mp4")
    with av.open(str(tmp), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        s.options = {"crf": "18", "preset": "veryfast"}
        for image in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    tmp.replace(path)
    return path


def clip_at(height: int) -> Path:
    """one_face_puts_mask_on (1280x720, 30 fps, 268 frames) scaled to the given height, cached."""
    path = CACHE / f"puts_mask_on_{height}p.mp4"
    if path.exists():
        return path
    width = round(height * 16 / 9) // 2 * 2

    def frames():
        with av.open(str(asset_path("clip_puts_mask_on"))) as c:
            for f in c.decode(video=0):
                yield f.to_ndarray(format="bgr24", width=width, height=height)

    return _encode(frames(), path, fps=30, width=width, height=height)


def crowd_clip(frames: int = 90) -> Path:
    """1080p, 3x3 validation photos of mask_scenes slowly panning: many small faces (the hard case)."""
    path = CACHE / "crowd_mosaic_1080p.mp4"
    if path.exists():
        return path
    from bench.bench_models import mosaic_frames

    w, h = 1920, 1080
    big = mosaic_frames((w + frames * 2, h), count=1)[0]

    def pan():
        for i in range(frames):
            yield np.ascontiguousarray(big[:, 2 * i:2 * i + w])

    return _encode(pan(), path, fps=30, width=w, height=h)


def long_clip(minutes: int, *, fps: int = 6, size: tuple[int, int] = (320, 180)) -> Path:
    """A synthetic clip of people walking past (a new mask_crops face every 4 s), cached."""
    path = CACHE / f"walkers_{minutes}min_{fps}fps.mp4"
    if path.exists():
        return path
    root = asset_path("mask_crops")
    faces = [p for label in ("with_mask", "without_mask") for p in sorted((root / label).glob("*.jpg"))[:40]]
    w, h = size
    per_face = 4 * fps

    def frames():
        face = None
        for i in range(minutes * 60 * fps):
            k, j = divmod(i, per_face)
            if j == 0:
                face = cv2.resize(
                    cv2.imread(str(faces[k % len(faces)])), (70, 70), interpolation=cv2.INTER_AREA
                )
            frame = np.full((h, w, 3), 100, np.uint8)
            x = int(10 + (w - 90) * j / per_face)
            frame[50:120, x : x + 70] = face
            yield frame

    return _encode(frames(), path, fps=fps, width=w, height=h)


def _peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _cpu_s() -> float:
    """CPU seconds of this process, all threads (a figure that other load on the machine barely moves)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def child(mode: str, clip: Path, preset: str, seed_frames: int) -> dict:
    """One measurement in this (fresh) process; its figures."""
    from worker.loaded_models import get_models
    from worker.pipeline.decode import VideoInfo, video_frames
    from worker.pipeline.encode import VideoSink

    settings = get_settings().replace(encoder_preset=preset)
    info = VideoInfo.from_path(clip, max_pixels=settings.max_pixels, max_seconds=settings.max_video_seconds)
    out = CACHE / f"out-{mode}-{os.getpid()}.mp4"
    sink_args = {"width": info.width, "height": info.height, "fps": info.fps, "time_base": info.time_base,
                 "max_height": settings.output_max_height, "preset": preset}
    try:
        if mode == "pipeline":
            from worker.pipeline.run import analyse_video
            from worker.pipeline.timing import StageTimes

            models = get_models()  # loading is not part of the per-frame cost
            times = StageTimes()
            with tempfile.TemporaryDirectory(prefix="bench-") as workdir:
                cpu, started = _cpu_s(), time.perf_counter()
                outcome = analyse_video(clip, Path(workdir), settings=settings, models=models, times=times)
                seconds, cpu = time.perf_counter() - started, _cpu_s() - cpu
            s = outcome.summary
            return {**_figures(s["frames"], seconds, cpu),
                    "stage_cpu_ms_per_frame": times.ms_per_frame(),
                    "faces_per_frame": round(s["face_frames"]["total"] / s["frames"], 2),
                    # every tracked face of at least Rules.min_face_px is classified on every frame
                    "faces_classified_per_frame": round(times.counts.get("classified", 0) / s["frames"], 2),
                    "faces_tracked_per_frame": round(times.counts.get("faces", 0) / s["frames"], 2),
                    "fine_detection_frames": s["models"]["detector"]["params"].get("fine_frames"),
                    "people": s["people"]["total"], "classifier_backend": models.classifier.backend}
        if mode in ("floor", "floor_simple"):
            from worker.pipeline.threads import BackgroundWriter, prefetch

            n = 0
            cpu, started = _cpu_s(), time.perf_counter()
            if mode == "floor":  # decode and encode overlapped in threads, as in the pipeline
                with BackgroundWriter(VideoSink(out, **sink_args)) as sink:
                    for frame in prefetch(video_frames(clip, info)):
                        sink.write(frame.image, frame.pts)
                        n += 1
            else:  # one loop, decode then encode: how a re-encode is usually written
                with VideoSink(out, **sink_args) as sink:
                    for frame in video_frames(clip, info):
                        sink.write(frame.image, frame.pts)
                        n += 1
            return _figures(n, time.perf_counter() - started, _cpu_s() - cpu)
        if mode == "seed":
            return _seed(clip, info, out, sink_args, seed_frames)
        raise ValueError(mode)
    finally:
        out.unlink(missing_ok=True)


def _figures(frames: int, seconds: float, cpu_s: float) -> dict:
    return {"frames": frames, "seconds": round(seconds, 2), "fps": round(frames / seconds, 2),
            "cpu_ms_per_frame": round(1000 * cpu_s / frames, 1), "peak_rss_mb": _peak_rss_mb()}


def _seed(clip: Path, info, out: Path, sink_args: dict, limit: int) -> dict:
    """The seeds' loop: res10 -> crop -> model.predict per face -> draw -> write; one thread."""
    from models.baselines import SeedClassifier
    from models.classify import crop_faces
    from models.detect import load_detector
    from worker.pipeline.annotate import annotate
    from worker.pipeline.decode import video_frames
    from worker.pipeline.encode import VideoSink

    detector = load_detector("res10")
    classifier = SeedClassifier(per_face=True)
    classifier(np.zeros((1, 224, 224, 3), np.uint8))  # build the predict function before timing
    n = faces = 0
    cpu = started = 0.0
    with VideoSink(out, **sink_args) as sink:
        for frame in video_frames(clip, info):
            if n == 1:
                cpu, started = _cpu_s(), time.perf_counter()  # the first frame pays one-off costs
            found = detector(frame.image)
            if len(found):
                found.probs = classifier(crop_faces(frame.image, found.xyxy, 224, margin=0.0))
                found.label = np.argmax(found.probs, axis=1).astype(np.int8)
            annotate(frame.image, found)
            sink.write(frame.image, frame.pts)
            n += 1
            faces += len(found)
            if n >= limit:
                break
    seconds, cpu = time.perf_counter() - started, _cpu_s() - cpu
    return {**_figures(n - 1, seconds, cpu), "faces_per_frame": round(faces / n, 2)}


def run_child(mode: str, clip: Path, args) -> dict:
    """Run one measurement in a fresh interpreter; its JSON."""
    env = dict(os.environ)
    if mode == "pipeline_float":  # the same pipeline with the float classifier: what int8 gains
        mode, env["CLASSIFIER_PRECISION"] = "pipeline", "float"
    cmd = [sys.executable, "-m", "bench.bench_pipeline", "--child", mode, str(clip),
           "--preset", args.preset, "--seed-frames", str(args.seed_frames)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{mode} on {clip.name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare(r: dict) -> dict:
    """Ratios of one clip's measurements: wall-clock fps, and CPU per frame (robust to other load)."""
    p = r["pipeline"]
    return {
        "pipeline_vs_floor": round(p["fps"] / r["floor"]["fps"], 3),
        "pipeline_vs_floor_simple": round(p["fps"] / r["floor_simple"]["fps"], 3),
        "int8_over_float_fps": round(p["fps"] / r["pipeline_float"]["fps"], 3),
        "cpu_float_over_int8": round(r["pipeline_float"]["cpu_ms_per_frame"] / p["cpu_ms_per_frame"], 3),
        "pipeline_vs_seed": round(p["fps"] / r["seed"]["fps"], 2),
        "cpu_floor_over_pipeline": round(r["floor"]["cpu_ms_per_frame"] / p["cpu_ms_per_frame"], 3),
        "cpu_seed_over_pipeline": round(r["seed"]["cpu_ms_per_frame"] / p["cpu_ms_per_frame"], 2),
    }


def main(argv: list[str] | None = None) -> int:
    """Entry point: prints the JSON report."""
    ap = argparse.ArgumentParser(prog="python -m bench.bench_pipeline", description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed-frames", type=int, default=40, help="frames the seed-style loop processes")
    ap.add_argument("--preset", default=get_settings().encoder_preset, help="libx264 preset (X264_PRESET)")
    ap.add_argument("--skip-rss", action="store_true", help="skip the 1- vs 10-minute memory runs")
    ap.add_argument("--repeat", type=int, default=2, help="runs per measurement; the best one counts")
    ap.add_argument("--only", choices=("720p", "1080p", "crowd_1080p"), action="append",
                    help="measure only these clips (repeatable)")
    ap.add_argument("--child", nargs=2, metavar=("MODE", "CLIP"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    CACHE.mkdir(parents=True, exist_ok=True)
    if args.child:
        print(json.dumps(child(args.child[0], Path(args.child[1]), args.preset, args.seed_frames)))
        return 0
    report: dict = {"cpus": os.cpu_count(), "load_avg_start": [round(x, 2) for x in os.getloadavg()],
                    "preset": args.preset,
                    "clips": {"720p/1080p": "one_face_puts_mask_on scaled, 268 frames, 30 fps",
                              "crowd_1080p": "3x3 mask_scenes validation photos panning, 90 frames"}}
    makers = {"720p": lambda: clip_at(720), "1080p": lambda: clip_at(1080), "crowd_1080p": crowd_clip}
    for key in args.only or list(makers):
        clip = makers[key]()
        runs: dict[str, list[dict]] = {m: [] for m in ("floor", "floor_simple", "pipeline", "pipeline_float",
                                                       "seed")}
        for _ in range(args.repeat):  # interleaved, so a burst of other load hits every mode alike
            for mode, done in runs.items():
                done.append(run_child(mode, clip, args))
        r = {mode: {**max(done, key=lambda x: x["fps"]), "fps_runs": [x["fps"] for x in done]}
             for mode, done in runs.items()}
        report[key] = {**r, **compare(r)}
    if not args.skip_rss:
        one, ten = (run_child("pipeline", long_clip(m), args) for m in (1, 10))
        report["rss"] = {"clip": "320x180, 6 fps, a new face every 4 s", "1min": one, "10min": ten,
                         "ratio_10_to_1": round(ten["peak_rss_mb"] / one["peak_rss_mb"], 3)}
    measured = [k for k in makers if k in report]
    report["goals"] = {"pipeline_peak_rss_mb": [max(report[k]["pipeline"]["peak_rss_mb"] for k in measured),
                                                GOALS["peak_rss_mb"]]}
    if "720p" in report:
        report["goals"]["pipeline_vs_floor_720p"] = [report["720p"]["pipeline_vs_floor"],
                                                     GOALS["pipeline_vs_floor_720p"]]
    if "crowd_1080p" in report:
        crowd = report["crowd_1080p"]["pipeline"]
        report["goals"]["crowd_fps"] = [crowd["fps"], GOALS["crowd_fps"]]
        report["goals"]["crowd_faces_classified_per_frame"] = [crowd["faces_classified_per_frame"],
                                                               crowd["faces_tracked_per_frame"]]
    if "1080p" in report:
        report["goals"]["pipeline_vs_floor_1080p"] = [report["1080p"]["pipeline_vs_floor"],
                                                      GOALS["pipeline_vs_floor_1080p"]]
        report["goals"]["pipeline_vs_seed_1080p"] = [report["1080p"]["pipeline_vs_seed"],
                                                     GOALS["pipeline_vs_seed_1080p"]]
    if "rss" in report:
        report["goals"]["rss_10min_vs_1min"] = [report["rss"]["ratio_10_to_1"], GOALS["rss_10min_vs_1min"]]
    report["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
