"""Speed of the web for a one-hour clip: results page, its JSON, lists, paging; upload memory.

python -m bench.bench_web [--frames 90000] [--persons 600] [--repeat 15] [--frames-page] [--exports]
                          [--upload-mb 1024] [--keep]

Seeds a finished one-hour clip (90,000 frame documents at 25 fps, a realistic `result`) into its own
database on the server MONGO_URI names (FerretDB here, MongoDB in production), then times requests
through the Flask app in-process. Baseline in the same run: reading the whole job document, which is
what the page would cost without the pre-serialised results view. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from urllib.parse import urlsplit, urlunsplit

TARGET_MS = 300


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
    return {
        "median": round(statistics.median(times), 1),
        "p95": round(times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))], 1),
        "max": round(times[-1], 1),
        "n": repeat,
    }


def main(argv: list[str] | None = None) -> int:
    """Seed, time, print JSON; exit 1 when the results page or its JSON misses the target."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=90_000, help="frame documents (90,000 = 1 h at 25 fps)")
    ap.add_argument("--fps", type=float, default=25.0)
    ap.add_argument("--persons", type=int, default=600, help="tracked people in the clip")
    ap.add_argument("--repeat", type=int, default=15, help="requests per measurement")
    ap.add_argument(
        "--frames-page",
        action="store_true",
        help="also time one per-frame page (a full scan of `frames` on FerretDB: slow)",
    )
    ap.add_argument("--exports", action="store_true", help="also time the per-frame CSV download")
    ap.add_argument("--upload-mb", type=int, default=0, help="also measure web RSS while uploading this much")
    ap.add_argument("--keep", action="store_true", help="keep the bench database")
    args = ap.parse_args(argv)

    mongo = os.environ.get("MONGO_URI")
    if not mongo:
        print('bench: MONGO_URI is not set: eval "$(bin/services env)" first', file=sys.stderr)
        return 2
    db_name = f"maskwatch_bench_{uuid.uuid4().hex[:8]}"
    os.environ["MONGO_URI"] = urlunsplit(urlsplit(mongo)._replace(path=f"/{db_name}"))

    from shared import db, jobs
    from shared.config import Settings, set_settings
    from tests.web.conftest import CSRF, PASSWORD
    from tests.web.seed import seed_clip
    from web import users
    from web.app import create_app

    settings = Settings.from_env()
    set_settings(settings)
    db.reset()
    database = db.get_db()
    out: dict = {"database": db_name, "target_ms": TARGET_MS, "load_avg": os.getloadavg()}
    try:
        info = database.client.admin.command("buildInfo")
        out["server"] = (
            f"FerretDB {info['ferretdbVersion']}"
            if "ferretdbVersion" in info
            else f"MongoDB {info.get('version')}"
        )
        owner = users.create(f"bench{uuid.uuid4().hex[:6]}", PASSWORD)
        t = time.perf_counter()
        job = seed_clip(
            owner.id,
            frames=args.frames,
            fps=args.fps,
            n_persons=args.persons,
            seed=42,
            filename="one-hour.mp4",
        )
        for i in range(3):  # a few other clips in the list
            seed_clip(owner.id, kind="image", n_persons=2, seed=i, crops=False, filename=f"still-{i}.jpg")
        out["seed_s"] = round(time.perf_counter() - t, 1)
        r = job["result"]
        out["clip"] = {
            "frames": r["frames"],
            "duration_s": r["duration_s"],
            "persons": len(r["persons"]),
            "bins_second": len(r["bins"]["second"]),
            "bins_minute": len(r["bins"]["minute"]),
            "frame_docs": database.frames.count_documents({"job_id": job["_id"]}),
        }

        app = create_app(settings, config={"TESTING": True})
        client = app.test_client()
        html = client.get("/login").get_data(as_text=True)
        token = CSRF.search(html).group(1)
        client.post("/login", data={"username": owner.username, "password": PASSWORD, "csrf_token": token})
        jid = str(job["_id"])
        timings: dict = {}
        timings["baseline_full_job_document_read"] = _timed(lambda: jobs.get(jid), max(3, args.repeat // 3))
        timings["first_view_builds_results_view"] = _timed(lambda: client.get(f"/api/v1/clips/{jid}"), 1)
        timings["results_page_html"] = _timed(lambda: client.get(f"/clips/{jid}"), args.repeat)
        timings["results_json"] = _timed(lambda: client.get(f"/api/v1/clips/{jid}/results"), args.repeat)
        timings["status_json"] = _timed(lambda: client.get(f"/api/v1/clips/{jid}"), args.repeat)
        timings["bins_per_second_json"] = _timed(
            lambda: client.get(f"/api/v1/clips/{jid}/bins?unit=second"), args.repeat
        )
        last = max(1, -(-args.persons // 100))  # the last page of people
        timings["persons_page_json"] = _timed(
            lambda: client.get(f"/api/v1/clips/{jid}/persons?page={last}"), args.repeat
        )
        timings["results_page_html_last_persons_page"] = _timed(
            lambda: client.get(f"/clips/{jid}?page={last}"), args.repeat
        )
        timings["video_range_64k"] = _timed(
            lambda: client.get(f"/clips/{jid}/video", headers={"Range": "bytes=0-65535"}), args.repeat
        )
        timings["clips_list_html"] = _timed(lambda: client.get("/"), max(3, args.repeat // 3))
        out["sizes_bytes"] = {
            "results_page_html": len(client.get(f"/clips/{jid}").data),
            "results_json": len(client.get(f"/api/v1/clips/{jid}/results").data),
        }
        if args.frames_page:
            mid = args.frames // 2
            timings["frames_page_500_json"] = _timed(
                lambda: client.get(f"/api/v1/clips/{jid}/frames?start={mid}&limit=500"), 1
            )
        if args.exports:
            timings["frames_csv_download"] = _timed(
                lambda: client.get(f"/clips/{jid}/download/frames.csv"), 1
            )
        out["timings_ms"] = timings
        if args.upload_mb:
            out["upload"] = _upload_rss(args.upload_mb)
        out["ok"] = all(timings[k]["median"] < TARGET_MS for k in ("results_page_html", "results_json"))
    finally:
        if not args.keep:
            db.get_client().drop_database(db_name)
    print(json.dumps(out, indent=2))
    return 0 if out.get("ok") else 1


def _upload_rss(size_mb: int) -> dict:
    """RSS of a real gunicorn web worker while a `size_mb` upload streams through it into GridFS."""
    from shared import jobs
    from tests.web.test_upload_memory import MIB, Server, measure_upload

    server = Server(upload_mb=size_mb + 1)
    try:
        m = measure_upload(server, size_mb * MIB)
        jobs.delete(m["clip"]["id"])
    finally:
        server.stop()
    return {
        "size_mb": size_mb,
        "seconds": round(m["seconds"], 1),
        "mb_per_s": round(size_mb / m["seconds"], 1),
        "rss_before_mb": round(m["base"] / MIB, 1),
        "rss_peak_mb": round(m["peak"] / MIB, 1),
        "rss_growth_mb": round((m["peak"] - m["base"]) / MIB, 1),
    }


if __name__ == "__main__":
    sys.exit(main())
