"""One clip, many workers: wall time of a 10-minute clip split into segments over 1, 2 and 4 worker
processes on this machine, and the projected wall time for 8, 16 and 64 workers.

    python -m bench.bench_segments [--minutes 10] [--segment-s 60] [--workers 1,2,4] [--size 192x108]
                                   [--fps 10]

The clip is the shared clips one after another, letterboxed to a low resolution at a low frame rate
(192x108, 10 fps by default: 6,000 frames) so that three runs take a few minutes on two cores; the
split, the join and their costs are those of any resolution, the per-segment time is not. Each run
starts N real Celery worker processes (concurrency 1 each) against the dev services (bin/services; its
own database, and a Redis server of its own), queues the clip as the web does and waits for the result.

The projection takes the per-segment processing times measured in the 1-worker run (no segment competed
for the cores there) and schedules them on W workers in waves, longest first: plan + the sum of each
wave's slowest segment + join. It is printed for this clip and for an hour of the same footage (60x the
segments, the plan and the join scaled by their per-segment cost), so the plan and the join can be seen
not to become the bottleneck. Prints one JSON document; every measured figure comes from this run.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import av
import cv2
import numpy as np

from shared.config import ROOT

CACHE = ROOT / "artifacts" / "bench"


def composed_clip(path: Path, seconds: float, *, size=(320, 180), fps: int = 25) -> Path:
    """The shared clips one after another (letterboxed to size, every frame taken as one of `fps`)
    until `seconds` are filled; H.264 (libx264 veryfast: keyframes every 250 frames and at cuts)."""
    sources = sorted((ROOT / ".cache/assets/videos").glob("*.mp4")) + \
        sorted((ROOT / ".cache/assets/clips").glob("*.mp4"))
    total = round(seconds * fps)
    tmp = path.with_suffix(".part.mp4")
    with av.open(str(tmp), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "26"}
        n = 0
        while n < total:
            for src in sources:
                with av.open(str(src)) as c:
                    for f in c.decode(video=0):
                        if n >= total:
                            break
                        image = _letterbox(f.to_ndarray(format="bgr24"), size)
                        out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")))
                        n += 1
        out.mux(stream.encode())
    tmp.replace(path)
    return path


def _letterbox(img: np.ndarray, size) -> np.ndarray:
    h, w = img.shape[:2]
    k = min(size[0] / w, size[1] / h)
    small = cv2.resize(img, (max(2, round(w * k)), max(2, round(h * k))), interpolation=cv2.INTER_AREA)
    canvas = np.zeros((size[1], size[0], 3), np.uint8)
    y, x = (size[1] - small.shape[0]) // 2, (size[0] - small.shape[1]) // 2
    canvas[y:y + small.shape[0], x:x + small.shape[1]] = small
    return canvas


def _isolate(tmp: Path) -> tuple[dict, subprocess.Popen]:
    """Environment of this benchmark: its own database on the dev MongoDB, and a Redis server of its own
    (a Redis database number could be shared with a test session, whose worker would take our tasks)."""
    import redis

    mongo = os.environ.get("MONGO_URI")
    if not mongo:
        sys.exit("bench_segments: MONGO_URI is not set: "
                 "bin/services start && eval \"$(bin/services env)\" && export MONGO_URI REDIS_URL")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                               "--appendonly", "no", "--dir", str(tmp)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 30
    while True:
        try:
            redis.Redis.from_url(url).ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("redis-server did not start") from None
            time.sleep(0.1)
    m = urlsplit(mongo)
    return {"MONGO_URI": urlunsplit(m._replace(path=f"/maskwatch_bench_{uuid.uuid4().hex[:8]}")),
            "REDIS_URL": url}, server


def _workers(n: int, env: dict, logs: Path) -> list[subprocess.Popen]:
    """n worker processes (concurrency 1 each), once every one of them says it is ready."""
    procs, paths = [], []
    for i in range(n):
        path = logs / f"bench-worker-{n}-{i}.log"
        with open(path, "wb") as log:
            command = [sys.executable, "-m", "celery", "-A", "worker.tasks", "worker", "-Q", "video,default",
                       "-c", "1", "--without-gossip", "--without-mingle", "--without-heartbeat",
                       "-n", f"bench-{n}-{i}-{os.getpid()}@%h", "--loglevel", "INFO"]
            procs.append(subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env}, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True))
        paths.append(path)
    deadline = time.monotonic() + 180
    while not all(b"ready" in p.read_bytes() for p in paths):
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            raise RuntimeError(f"workers did not start; see {logs}")
        time.sleep(0.2)
    return procs


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, 9)
            p.wait()


def _run(clip: Path, segment_s: int, workers: int, env: dict, logs: Path) -> dict:
    """One job of the clip on `workers` fresh worker processes; its measured times."""
    from shared import jobs
    from shared.celery_app import PROCESS_JOB, enqueue
    from shared.db import get_db
    from tests.worker.helpers import stored_job

    procs = _workers(workers, env, logs)
    try:
        job = stored_job(clip, clip.name, owner="bench")
        get_db().jobs.update_one({"_id": job["_id"]}, {"$set": {"segment_seconds": segment_s}})
        t0 = time.monotonic()
        enqueue(PROCESS_JOB, str(job["_id"]))
        while (done := jobs.get(job["_id"]))["status"] not in jobs.FINAL:
            time.sleep(0.2)
        wall = time.monotonic() - t0
    finally:
        _stop(procs)
    if done["status"] != jobs.SUCCEEDED:
        raise RuntimeError(f"the job {done['status']}: {done.get('error')}")
    seg = done["result"].get("segments") or {}
    out = {"workers": workers, "wall_s": round(wall, 1), "frames": done["result"]["frames"],
           "people": done["result"]["people"]["total"], "segments": seg.get("count", 1),
           "plan_s": (done.get("plan") or {}).get("plan_s"), "join_s": seg.get("join_s"),
           "segment_s": seg.get("processing_s")}
    jobs.delete(job["_id"])
    return out


def project(seg_times: list[float], workers: int, plan_s: float, join_s: float) -> float:
    """Critical path on `workers`: plan + every wave's slowest segment (longest first) + join."""
    waves = [seg_times[i:i + workers] for i in range(0, len(seg_times), workers)]
    longest_first = sorted(seg_times, reverse=True)
    # Greedy list scheduling (each segment to the first free worker) bounds it from below too.
    free = [0.0] * min(workers, len(seg_times))
    for t in longest_first:
        heapq.heappush(free, heapq.heappop(free) + t)
    return round(plan_s + min(sum(max(w) for w in waves), max(free)) + join_s, 1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_segments", description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--segment-s", type=int, default=60)
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--size", default="192x108")
    ap.add_argument("--fps", type=int, default=10)
    args = ap.parse_args(argv)
    logs = Path(tempfile.mkdtemp(prefix="bench-segments-"))
    env, redis_server = _isolate(logs)
    os.environ.update(env)
    from shared import db
    from shared.config import set_settings

    set_settings(None)
    db.reset()
    w, h = (int(v) for v in args.size.split("x"))
    CACHE.mkdir(parents=True, exist_ok=True)
    clip = CACHE / f"segments_{args.minutes:g}min_{w}x{h}_{args.fps}fps.mp4"
    if not clip.exists():
        composed_clip(clip, args.minutes * 60, size=(w, h), fps=args.fps)
    runs = []
    try:
        for n in (int(v) for v in args.workers.split(",")):
            runs.append(_run(clip, args.segment_s, n, env, logs))
            print(json.dumps(runs[-1]), file=sys.stderr)
    finally:
        db.drop_database(db.get_db().name)
        redis_server.terminate()
        redis_server.wait(30)
    base = next((r for r in runs if r["workers"] == 1), runs[0])
    for r in runs:
        r["speedup"] = round(base["wall_s"] / r["wall_s"], 2)
    seg_times = base["segment_s"] or [base["wall_s"]]
    plan_s, join_s = base["plan_s"] or 0.0, base["join_s"] or 0.0
    hour = 60 / args.minutes
    report = {
        "clip": {"minutes": args.minutes, "size": f"{w}x{h}", "fps": args.fps, "frames": base["frames"],
                 "segment_s": args.segment_s, "segments": base["segments"],
                 "note": "low resolution and frame rate so that the runs take minutes; per-segment "
                         "times scale with pixels and frames, the plan and the join do not"},
        "cores": os.cpu_count(), "load_avg": [round(v, 2) for v in os.getloadavg()],
        "runs": runs,
        "per_segment_s": {"min": min(seg_times), "max": max(seg_times),
                          "mean": round(sum(seg_times) / len(seg_times), 2)},
        "plan_s": plan_s, "join_s": join_s,
        "projected_wall_s": {str(n): project(seg_times, n, plan_s, join_s) for n in (1, 2, 4, 8, 16, 64)},
        "projected_wall_s_one_hour": {str(n): project(seg_times * round(hour), n, plan_s * hour,
                                                      join_s * hour)
                                      for n in (1, 8, 16, 64)},
        "projection": "plan + each wave's slowest segment + join, from the 1-worker run's per-segment "
                      "times; beyond as many workers as segments nothing is gained; the hour scales the "
                      "segments, the plan and the join by 60/minutes",
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
