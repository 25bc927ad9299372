"""A live camera end to end: a 720p RTSP stream recorded in segments, each analysed as it arrives.

Measures, per segment, the latency from its last frame's arrival to its results being stored (the
target: segment length + 10 s), the analysis time and the wait in the queue, and the recorder's CPU per
second of stream. Baseline in the same run: the CPU that decoding the same stream would cost (what the
recorder avoids by copying packets). Then the recording's clip, joined from the segments' results: its
join time against the segments' analysis time (what analysing it again would cost), and its people
against the segments' counts added up. Prints JSON. Needs the services (`eval "$(bin/services env)"`) and
`bin/setup --test` (GStreamer's RTSP server); uses its own database and Redis database.

    python -m bench.bench_live [--seconds 60] [--segment-s 10] [--clip PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import psutil

from shared.config import ROOT

CLIP = ROOT.parent / "shared" / "data" / "videos" / "one_face_puts_mask_on.mp4"  # 1280x720, 30 fps


def _isolate(logs: Path) -> tuple[dict, subprocess.Popen]:
    """Its own database and Redis server (bench_segments' reasons), cameras on loopback allowed."""
    from bench.bench_segments import _isolate as isolated

    env, redis_server = isolated(logs)
    return {**env, "LIVE_ALLOW_PRIVATE": "1"}, redis_server


def _decode_cpu(path: Path) -> float:
    """CPU seconds PyAV needs to decode the file (the baseline)."""
    before = time.process_time()
    with av.open(str(path)) as c:
        for _ in c.decode(c.streams.video[0]):
            pass
    return time.process_time() - before


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_live", description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--segment-s", type=float, default=10)
    ap.add_argument("--clip", type=Path, default=CLIP)
    args = ap.parse_args(argv)
    logs = Path(tempfile.mkdtemp(prefix="bench-live-"))
    env, redis_server = _isolate(logs)
    env["LIVE_SEGMENT_SECONDS"] = str(args.segment_s)
    os.environ.update(env)
    from shared import cameras, db
    from shared.config import set_settings
    from tests.live.helpers import RtspServer, Supervisor, looped, wait_status
    from web import live

    set_settings(None)
    db.reset()
    with av.open(str(args.clip)) as c:
        v = c.streams.video[0]
        fps = float(v.average_rate)
        clip_s = v.frames / fps
        size = f"{v.codec_context.width}x{v.codec_context.height}"
    stream = logs / "stream.mp4"
    sent = looped(args.clip, max(1, round(args.seconds / clip_s)), stream)
    with open(logs / "worker.log", "ab") as log:
        worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "worker.tasks", "worker", "-Q",
                                   "video,default", "-c", "1", "--without-gossip", "--without-mingle",
                                   "--loglevel", "INFO", "-n", f"bench-live-{os.getpid()}@%h"], cwd=ROOT,
                                  env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    server = RtspServer(stream, logs / "rtsp.log").start()
    sup = Supervisor(logs / "recorders.log", env)
    try:
        # Models loaded before the stream starts (a worker that has run does not load them again).
        warm = _warm_up(args.clip, logs)
        cam = cameras.create(name="bench", url=server.url, owner="bench")
        wait_status(cam["_id"], lambda st: st["state"] == cameras.RECORDING, 60, "recording")
        rec = _recorder(sup.proc.pid)
        cpu0, t0 = sum(rec.cpu_times()[:2]), time.monotonic()
        wait_status(cam["_id"], lambda st: st.get("frames") == sent, args.seconds + 60, "recorded")
        rec_cpu, rec_wall = sum(rec.cpu_times()[:2]) - cpu0, time.monotonic() - t0
        cameras.stop(cam["_id"])
        segs = _finished(cam["_id"], timeout=args.seconds * 6 + 120)
        st = wait_status(cam["_id"], lambda st: st.get("done_recording"), 60, "joined")
        clip = _clip(st["clip_ids"][0], timeout=args.seconds * 4 + 120)
        view = live.live_view(cameras.get(cam["_id"]))
    finally:
        server.kill()
        sup.stop()
        os.killpg(worker.pid, 9)
        worker.wait(60)
        redis_server.terminate()
    lat = [s["finished_at"].timestamp() - s["wall_end"] for s in segs]
    out = {
        "source": {"clip": args.clip.name, "size": size, "seconds": round(sent / fps, 1),
                   "frames": sent}, "segment_s": args.segment_s, "segments": len(segs), "warm_up_s": warm,
        "latency_s": {"median": round(statistics.median(lat), 2), "max": round(max(lat), 2),
                      "each": [round(x, 2) for x in lat]},
        "target_s": args.segment_s + 10,
        "analysis_s": [s["result"]["processing_s"] for s in segs],
        "queue_wait_s": [round(s["started_at"].timestamp() - s["stored_at"], 2) for s in segs],
        "store_s": [round(s["stored_at"] - s["wall_end"], 2) for s in segs],
        "recorder_cpu_per_stream_s": round(rec_cpu / rec_wall, 4),
        # The recording's clip, joined from the segments' results; the baseline is what analysing it
        # again would cost (the segments' analysis of the same frames, measured in this run).
        "clip": {"status": clip["status"], "frames": clip["result"]["frames"],
                 "from_segments": clip["result"]["segments"].get("live", False),
                 "join_s": clip["result"]["segments"]["join_s"],
                 "queued_to_done_s": round((clip["finished_at"] - clip["created_at"]).total_seconds(), 2),
                 "baseline_analysis_s": round(sum(s["result"]["processing_s"] for s in segs), 2),
                 "people": clip["result"]["people"]["total"], "live_page_people": view["recent_people"],
                 "people_per_segment_summed": sum(s["result"]["people"]["total"] for s in segs)},
        "baseline_decode_cpu_per_stream_s": round(_decode_cpu(stream) / (sent / fps), 4),
        "logs": str(logs),
    }
    print(json.dumps(out, indent=1))
    db.drop_database(db.get_db().name)
    return 0


def _recorder(supervisor_pid: int) -> psutil.Process:
    """The recorder process the supervisor started."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        kids = psutil.Process(supervisor_pid).children()
        if kids:
            return kids[0]
        time.sleep(0.2)
    raise RuntimeError("no recorder process")


def _warm_up(clip: Path, logs: Path) -> float:
    """Run one short job so the worker's models are loaded; its wall time."""
    from shared import jobs
    from shared.celery_app import PROCESS_JOB, enqueue
    from tests.worker.helpers import stored_job

    started = time.monotonic()
    job = stored_job(clip, "warm.mp4")
    enqueue(PROCESS_JOB, str(job["_id"]))
    while jobs.get(job["_id"])["status"] not in jobs.FINAL:
        if time.monotonic() - started > 600:
            raise RuntimeError("the warm-up job did not finish")
        time.sleep(0.5)
    return round(time.monotonic() - started, 1)


def _clip(job_id, timeout: float) -> dict:
    """The recording's clip job once finished."""
    from shared import jobs

    deadline = time.monotonic() + timeout
    while (job := jobs.get(job_id))["status"] not in jobs.FINAL:
        if time.monotonic() > deadline:
            raise RuntimeError("the recording's clip did not finish in time")
        time.sleep(0.5)
    return job


def _finished(camera_id, timeout: float) -> list[dict]:
    """The camera's segment jobs once all are analysed, oldest first."""
    from shared import cameras, jobs

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        segs = cameras.segments(camera_id)
        if segs and all(s["status"] in jobs.FINAL for s in segs):
            return sorted(segs, key=lambda s: s["seq"])
        time.sleep(0.5)
    raise RuntimeError("segments not analysed in time")


if __name__ == "__main__":
    sys.exit(main())
