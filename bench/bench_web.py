"""Storage at length: a four-hour clip's pages and exports, the clips list, GridFS speed, delete.

python -m bench.bench_web [--frames 360000] [--persons 5000] [--clips 200] [--stored-gb 1,5]
                          [--upload-mb 500] [--repeat 9] [--keep]

Seeds its own database on the server MONGO_URI names (FerretDB here, MongoDB in production): a
finished four-hour clip at 25 fps (360,000 frame records in 720 buckets, 5,000 people with face
crops) written as the worker writes it (tests/web/seed.py), 200 other clips, and uploads filling
GridFS to each --stored-gb size in turn. Then times, through the Flask app in-process: the results
page and its JSON, per-frame pages anywhere in the clip, a person page, the clips list, the per-frame
CSV and JSON exports (frames/s, web RSS growth), a 500 MB upload written and read back through
shared/storage.py at each stored size (written three times, the median counts: one write swings
10-20 % on a shared machine), seeks, and deleting the clip with all its data.

Baselines in the same run: the server's query plan and time for a bucket found by `_id` and the
same bucket found by fields (job_id, n: what an index serves on MongoDB but FerretDB's SQLite
backend scans), and each GridFS figure at the smaller and the larger stored size. Prints JSON, then
one line per target of issue 9's "Done when" (met or MISSED, with the figure).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import statistics
import sys
import threading
import time
import uuid
from urllib.parse import urlsplit, urlunsplit

MB = 1024 * 1024
TARGETS_MS = {"results_page_html": 150, "results_json": 150, "frames_page_500": 100,
              "persons_page_json": 100, "clips_list_html": 150}
TARGET_FRAMES_PER_S = 50_000
TARGET_MB_PER_S = 50
TARGET_DELETE_S = 5


def _timed(fn, repeat: int) -> dict:
    """Median, p95 and max milliseconds of `repeat` calls (fn returns a response to check)."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        resp = fn()
        times.append((time.perf_counter() - t) * 1000)
        status = getattr(resp, "status_code", 200)
        if status >= 400:
            raise SystemExit(f"bench: request failed with {status}: {resp.get_data(as_text=True)[:300]}")
    times.sort()
    return {"median": round(statistics.median(times), 1),
            "p95": round(times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))], 1),
            "max": round(times[-1], 1), "n": repeat}


class PeakRss(threading.Thread):
    """This process's resident memory sampled every 20 ms while running; .peak in bytes."""

    def __init__(self):
        import psutil

        super().__init__(daemon=True)
        self.proc, self.running = psutil.Process(), True
        self.base = self.peak = self.proc.memory_info().rss

    def run(self):
        while self.running:
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.02)

    def stop(self) -> float:
        """Stop sampling; the growth over the start in MB."""
        self.running = False
        self.join()
        return round((self.peak - self.base) / MB, 1)


class Pattern(io.RawIOBase):
    """`size` bytes of a repeated random MiB, produced on demand (an upload that is never in memory)."""

    def __init__(self, size: int):
        self.size, self.pos, self.block = size, 0, os.urandom(MB)

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        n = min(len(buf), self.size - self.pos, MB)
        buf[:n] = self.block[:n]
        self.pos += n
        return n


def _stored_bytes(database) -> int:
    return sum(d["length"] for d in database["uploads.files"].find({}, {"length": 1}))


def _fill(database, target: int) -> float:
    """Store filler uploads until GridFS `uploads` holds `target` bytes; seconds it took."""
    from shared import storage

    t = time.perf_counter()
    have = _stored_bytes(database)
    while have < target:
        size = min(256 * MB, target - have)
        storage.put("uploads", Pattern(size), "filler.bin", content_type="application/octet-stream")
        have += size
    return round(time.perf_counter() - t, 1)


def _gridfs(upload_mb: int, writes: int = 3) -> tuple[dict, object]:
    """Write an `upload_mb` upload `writes` times and read the last back through shared/storage.py;
    figures (the write's median, each write listed) and the kept upload's id."""
    from shared import storage

    size = upload_mb * MB
    write_s, fid = [], None
    for _ in range(writes):
        if fid is not None:
            storage.delete("uploads", fid)  # one upload of this size stays stored at a time
        t = time.perf_counter()
        fid = storage.put("uploads", Pattern(size), "big.mp4", content_type="video/mp4")
        write_s.append(time.perf_counter() - t)
    t = time.perf_counter()
    with storage.open_file("uploads", fid) as f:
        got = sum(len(b) for b in iter(lambda: f.read(MB), b""))
    read_s = time.perf_counter() - t
    assert got == size, (got, size)
    rng = random.Random(7)
    seeks = []
    for _ in range(9):  # what a browser seeking in the video asks for: 64 KB somewhere in the file
        first = rng.randrange(0, size - 65536)
        t = time.perf_counter()
        b"".join(storage.iter_range(storage.open_file("uploads", fid), first, first + 65535))
        seeks.append((time.perf_counter() - t) * 1000)
    return {"write_mb_per_s": round(upload_mb / statistics.median(write_s), 1),
            "write_runs_mb_per_s": [round(upload_mb / w, 1) for w in write_s],
            "read_mb_per_s": round(upload_mb / read_s, 1),
            "range_64k_ms_median": round(statistics.median(seeks), 1)}, fid


def _lookups(database, job_id, buckets: int) -> dict:
    """A bucket by `_id` against the same bucket by fields (the baseline a server scans for)."""
    from shared import result_docs

    n = buckets // 2
    by_id = {"_id": result_docs.bucket_id(job_id, n)}
    by_fields = {"job_id": job_id, "n": n}

    def plan(f):
        out = database.command("explain", {"find": "frames", "filter": f})
        return json.dumps(out.get("queryPlanner"), default=str)[:160]

    def ms(f, repeat):
        return _timed(lambda: database.frames.find_one(f), repeat)["median"]

    return {"bucket_by_id_ms": ms(by_id, 9), "bucket_by_id_plan": plan(by_id),
            "baseline_bucket_by_fields_ms": ms(by_fields, 1),
            "baseline_bucket_by_fields_plan": plan(by_fields)}


def _export(client, url: str, frames: int) -> dict:
    """Stream a download to the end; frames/s, MB, seconds and the process's RSS growth."""
    rss = PeakRss()
    rss.start()
    t = time.perf_counter()
    resp = client.get(url, buffered=False)
    size = sum(len(chunk) for chunk in resp.response)
    seconds = time.perf_counter() - t
    return {"frames_per_s": round(frames / seconds), "seconds": round(seconds, 2),
            "mb": round(size / 1e6, 1), "rss_growth_mb": rss.stop()}


def done_when(out: dict) -> list[str]:
    """The issue's "Done when" lines from a run's figures: measured, target, met or MISSED."""
    lines = []

    def line(what: str, got, target: str, met: bool) -> None:
        lines.append(f"{'met   ' if met else 'MISSED'} {what}: {got} (target {target})")

    t = out.get("timings_ms") or {}
    for k, target in TARGETS_MS.items():
        if k in t:
            line(f"{k} median", f"{t[k]['median']} ms", f"< {target} ms", t[k]["median"] < target)
    csv = (out.get("exports") or {}).get("frames_csv")
    if csv:
        line("frames.csv export", f"{csv['frames_per_s']} frames/s, web RSS +{csv['rss_growth_mb']} MB",
             f">= {TARGET_FRAMES_PER_S} frames/s", csv["frames_per_s"] >= TARGET_FRAMES_PER_S)
    for g in (out.get("gridfs") or {}).values():
        for k in ("write_mb_per_s", "read_mb_per_s"):
            line(f"GridFS {k.split('_')[0]} of the upload, {g['stored_gb']} GB stored", f"{g[k]} MB/s",
                 f">= {TARGET_MB_PER_S} MB/s", g[k] >= TARGET_MB_PER_S)
    if "delete_clip_s" in out:
        line("delete the clip with all its data", f"{out['delete_clip_s']} s, "
             f"{out.get('delete_left_documents')} documents left", f"< {TARGET_DELETE_S} s",
             out["delete_clip_s"] < TARGET_DELETE_S and out.get("delete_left_documents") == 0)
    return lines


def main(argv: list[str] | None = None) -> int:
    """Seed, time, print JSON; exit 1 when a target is missed."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=360_000, help="frames of the long clip (4 h at 25 fps)")
    ap.add_argument("--fps", type=float, default=25.0)
    ap.add_argument("--persons", type=int, default=5000, help="tracked people in the long clip")
    ap.add_argument("--clips", type=int, default=200, help="other clips in the list")
    ap.add_argument("--stored-gb", default="1,5", help="GridFS sizes to measure at, in order (GB)")
    ap.add_argument("--upload-mb", type=int, default=500, help="the upload written and read back")
    ap.add_argument("--repeat", type=int, default=9, help="requests per measurement")
    ap.add_argument("--keep", action="store_true", help="keep the bench database")
    args = ap.parse_args(argv)

    mongo = os.environ.get("MONGO_URI")
    if not mongo:
        print('bench: MONGO_URI is not set: eval "$(bin/services env)" first', file=sys.stderr)
        return 2
    db_name = f"maskwatch_bench_{uuid.uuid4().hex[:8]}"
    os.environ["MONGO_URI"] = urlunsplit(urlsplit(mongo)._replace(path=f"/{db_name}"))

    from shared import db, jobs, result_docs
    from shared.config import Settings, set_settings
    from tests.web.conftest import CSRF, PASSWORD
    from tests.web.seed import seed_clip
    from web import users
    from web.app import create_app

    settings = Settings.from_env()
    set_settings(settings)
    db.reset()
    database = db.get_db()
    out: dict = {"database": db_name, "load_avg_start": [round(x, 2) for x in os.getloadavg()]}
    ok = True
    try:
        info = database.client.admin.command("buildInfo")
        out["server"] = (f"FerretDB {info['ferretdbVersion']}" if "ferretdbVersion" in info
                         else f"MongoDB {info.get('version')}")
        owner = users.create(f"bench{uuid.uuid4().hex[:6]}", PASSWORD)
        t = time.perf_counter()
        job = seed_clip(owner.id, frames=args.frames, fps=args.fps, n_persons=args.persons, seed=42,
                        filename="four-hours.mp4")
        out["seed_clip_s"] = round(time.perf_counter() - t, 1)
        t = time.perf_counter()
        for i in range(args.clips):
            seed_clip(owner.id, kind="image" if i % 2 else "video", frames=50, n_persons=3, seed=i,
                      filename=f"clip-{i}.{'jpg' if i % 2 else 'mp4'}")
        out["seed_other_clips_s"] = round(time.perf_counter() - t, 1)
        r, layout = job["result"], job["result"]["layout"]
        out["clip"] = {"frames": r["frames"], "duration_s": r["duration_s"], "persons": layout["persons"],
                       "buckets": layout["buckets"], "person_pages": layout["person_pages"],
                       "violations": layout["violations"], "bins_second": len(r["bins"]["second"]),
                       "sampled_bucket_compressed_mb": round(max(len(d["z"]) for d in database.frames.find(
                           {"_id": {"$in": [result_docs.bucket_id(job["_id"], n)
                                            for n in range(0, layout["buckets"], 97)]}})) / 1e6, 2),
                       "job_document_kb": round(len(json.dumps(jobs.get(job["_id"]), default=str)) / 1e3, 1)}
        stored = [float(x) for x in args.stored_gb.split(",") if x]
        out["fill_s"] = {f"{stored[0]}GB": _fill(database, int(stored[0] * 1e9))}

        app = create_app(settings, config={"TESTING": True})
        client = app.test_client()
        token = CSRF.search(client.get("/login").get_data(as_text=True)).group(1)
        client.post("/login", data={"username": owner.username, "password": PASSWORD, "csrf_token": token})
        jid, frames = str(job["_id"]), args.frames
        timings: dict = {}
        timings["results_page_html"] = _timed(lambda: client.get(f"/clips/{jid}"), args.repeat)
        timings["results_json"] = _timed(lambda: client.get(f"/api/v1/clips/{jid}/results"), args.repeat)
        timings["status_json"] = _timed(lambda: client.get(f"/api/v1/clips/{jid}"), args.repeat)
        rng = random.Random(3)
        starts = [0, frames // 2, frames - 500] + [rng.randrange(0, frames - 500) for _ in range(args.repeat)]
        pos = iter(starts * 2)
        timings["frames_page_500"] = _timed(
            lambda: client.get(f"/api/v1/clips/{jid}/frames?start={next(pos)}&limit=500"), len(starts))
        last = layout["person_pages"]
        timings["persons_page_json"] = _timed(
            lambda: client.get(f"/api/v1/clips/{jid}/persons?page={last}"), args.repeat)
        timings["results_page_html_last_persons_page"] = _timed(
            lambda: client.get(f"/clips/{jid}?page={last}"), args.repeat)
        timings["clips_list_html"] = _timed(lambda: client.get("/"), args.repeat)
        timings["clips_list_json"] = _timed(lambda: client.get("/api/v1/clips?limit=500"), args.repeat)
        out["timings_ms"] = timings
        out["sizes_bytes"] = {"results_page_html": len(client.get(f"/clips/{jid}").data),
                              "results_json": len(client.get(f"/api/v1/clips/{jid}/results").data)}
        out["exports"] = {
            "frames_csv": _export(client, f"/clips/{jid}/download/frames.csv", frames),
            "frames_json": _export(client, f"/clips/{jid}/download/frames.json", frames),
        }
        out["lookups"] = _lookups(database, job["_id"], layout["buckets"])
        for k, target in TARGETS_MS.items():
            ok &= timings[k]["median"] < target
        ok &= out["exports"]["frames_csv"]["frames_per_s"] >= TARGET_FRAMES_PER_S

        out["gridfs"] = {}
        fid = None
        for i, gb in enumerate(stored):
            if i:
                out["fill_s"][f"{gb}GB"] = _fill(database, int(gb * 1e9))
            if fid is not None:
                from shared import storage

                storage.delete("uploads", fid)  # the next one is written afresh at the larger size
            figures, fid = _gridfs(args.upload_mb)
            figures["stored_gb"] = round(_stored_bytes(database) / 1e9, 2)
            out["gridfs"][f"{gb}GB"] = figures
            ok &= figures["write_mb_per_s"] >= TARGET_MB_PER_S and figures["read_mb_per_s"] >= TARGET_MB_PER_S

        # The four-hour clip gets the 500 MB upload as its original, then goes with all its data.
        database.jobs.update_one({"_id": job["_id"]}, {"$set": {"input_id": fid}})
        t = time.perf_counter()
        jobs.delete(job["_id"])
        out["delete_clip_s"] = round(time.perf_counter() - t, 2)
        left = sum(database[c].count_documents({"_id": {"$regex": f"^{jid}:"}})
                   for c in ("frames", "frame_rows", "persons", "bins"))
        out["delete_left_documents"] = left
        ok &= out["delete_clip_s"] < TARGET_DELETE_S and left == 0
        out["targets"] = {"ms": TARGETS_MS, "frames_per_s": TARGET_FRAMES_PER_S, "mb_per_s": TARGET_MB_PER_S,
                          "delete_s": TARGET_DELETE_S}
        out["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
        out["ok"] = bool(ok)
    finally:
        if not args.keep:
            db.drop_database(db_name)
    print(json.dumps(out, indent=2))
    print("\n".join(done_when(out)))
    return 0 if out.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
