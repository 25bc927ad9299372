"""The web under load: 20 concurrent clients on the clips list, a results page and the status API.

python -m bench.bench_load [--clients 20] [--requests 200] [--clips 200] [--frames 15000] [--keep]

Seeds its own database on the server MONGO_URI names (FerretDB here): one user with --clips finished
clips (tests/web/seed.py, stored as the worker stores them), one of them --frames long (10 minutes at
25 fps by default). Starts the production web server as bin/run does (gunicorn, 2 processes x 8
threads) and sends --requests requests per endpoint from --clients concurrent signed-in clients, each
with its own session. Baseline in the same run: /healthz (the server and the network, no database).
Each endpoint's first request (which builds what the web caches, shared/cache.py) is timed on its
own as first_ms, then both server processes are warmed and the steady state is measured. Then the
same again while a job of this user runs and writes its progress every second, as a worker does
(`while_a_job_runs`: every cache sees a change each second). Prints JSON: median, p95 and max ms,
errors and requests/s per endpoint; exit 1 when a steady-state p95 is over 200 ms or any request
failed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit, urlunsplit

TARGET_P95_MS = 200
CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


def _session(base: str, username: str, password: str):
    """A signed-in requests session (cookie + CSRF, as a browser has)."""
    import requests

    s = requests.Session()
    token = CSRF.search(s.get(f"{base}/login").text).group(1)
    r = s.post(f"{base}/login", data={"username": username, "password": password, "csrf_token": token},
               allow_redirects=False)
    if r.status_code != 303:
        raise SystemExit(f"bench: login failed ({r.status_code})")
    return s


def _load(sessions: list, url: str, n: int, headers: dict | None = None) -> dict:
    """n GETs of url spread over the sessions, all at once; latency figures and errors."""
    def one(i: int) -> tuple[float, int]:
        t = time.perf_counter()
        try:
            r = sessions[i % len(sessions)].get(url, headers=headers, timeout=30)
            status = r.status_code
        except Exception:  # noqa: BLE001 - a refused or reset connection is an error to count
            status = 0
        return (time.perf_counter() - t) * 1000, status

    started = time.perf_counter()
    with ThreadPoolExecutor(len(sessions)) as pool:
        results = list(pool.map(one, range(n)))
    wall = time.perf_counter() - started
    times = sorted(ms for ms, _ in results)
    errors = [s for _, s in results if not 200 <= s < 300]
    return {"median_ms": round(statistics.median(times), 1),
            "p95_ms": round(times[min(n - 1, int(round(0.95 * (n - 1))))], 1),
            "max_ms": round(times[-1], 1), "requests": n, "errors": len(errors),
            "error_statuses": sorted(set(errors)), "requests_per_s": round(n / wall, 1)}


def main(argv: list[str] | None = None) -> int:
    """Seed, serve, load, print JSON; exit 1 when a target is missed."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--requests", type=int, default=200, help="requests per endpoint")
    ap.add_argument("--clips", type=int, default=200, help="clips in the list")
    ap.add_argument("--frames", type=int, default=15_000, help="frames of the clip whose page is loaded")
    ap.add_argument("--keep", action="store_true", help="keep the bench database")
    args = ap.parse_args(argv)

    mongo = os.environ.get("MONGO_URI")
    if not mongo or not os.environ.get("REDIS_URL"):
        print('bench: MONGO_URI / REDIS_URL are not set: eval "$(bin/services env)" first', file=sys.stderr)
        return 2
    db_name = f"maskwatch_load_{uuid.uuid4().hex[:8]}"
    os.environ["MONGO_URI"] = urlunsplit(urlsplit(mongo)._replace(path=f"/{db_name}"))

    from shared import db, jobs
    from shared.config import Settings, set_settings
    from shared.db import get_db
    from tests.net import Gunicorn
    from tests.web.conftest import PASSWORD
    from tests.web.seed import seed_clip
    from web import users

    set_settings(Settings.from_env())
    db.reset()
    out: dict = {"database": db_name, "clients": args.clients, "cores": os.cpu_count(),
                 "load_avg_start": [round(x, 2) for x in os.getloadavg()]}
    server = None
    try:
        owner = users.create(f"load{uuid.uuid4().hex[:6]}", PASSWORD)
        token, _ = users.create_token(owner.id, "load")
        t = time.perf_counter()
        job = seed_clip(owner.id, frames=args.frames, n_persons=100, seed=7, filename="ten-minutes.mp4")
        for i in range(args.clips - 1):
            seed_clip(owner.id, kind="image" if i % 2 else "video", frames=50, n_persons=3, seed=i,
                      filename=f"clip-{i}.{'jpg' if i % 2 else 'mp4'}")
        out["seed_s"] = round(time.perf_counter() - t, 1)
        server = Gunicorn()  # bin/run's processes and threads
        base, jid = server.base, str(job["_id"])
        sessions = [_session(base, owner.username, PASSWORD) for _ in range(args.clients)]
        api = {"Authorization": f"Bearer {token}"}
        for s in sessions:  # warm every connection and both server processes
            s.get(f"{base}/healthz")
        endpoints = {
            "baseline_healthz": (f"{base}/healthz", None),
            "clips_list_html": (f"{base}/", None),
            "clips_list_json": (f"{base}/api/v1/clips?limit={args.clips}", api),
            "results_page_html": (f"{base}/clips/{jid}", None),
            "status_json": (f"{base}/api/v1/clips/{jid}", api),
        }
        out["endpoints"] = {}
        for name, (url, headers) in endpoints.items():
            # The first request after a change builds what the caches keep (shared/cache.py); the
            # figures are for the steady state that follows, the first one is printed beside them.
            t = time.perf_counter()
            sessions[0].get(url, headers=headers, timeout=60)
            first_ms = round((time.perf_counter() - t) * 1000, 1)
            _load(sessions, url, 2 * args.clients, headers)  # both server processes warm
            out["endpoints"][name] = {**_load(sessions, url, args.requests, headers), "first_ms": first_ms}
        # The same while a worker runs a job of this user: its progress is written every second,
        # so every process's caches see a change each second (only that job is read again).
        running = seed_clip(owner.id, kind="video", frames=50, n_persons=1, seed=99, filename="running.mp4")
        get_db().jobs.update_one({"_id": running["_id"]}, {"$set": {"status": jobs.QUEUED}})
        run_id = jobs.claim(running["_id"], "bench-worker")["run_id"]
        stop = threading.Event()

        def progress() -> None:
            n = 0
            while not stop.wait(1.0):
                n += 1
                jobs.progress(running["_id"], run_id, min(0.99, n / 100), 100.0 - n)

        writer = threading.Thread(target=progress, daemon=True)
        writer.start()
        try:
            out["while_a_job_runs"] = {name: _load(sessions, url, args.requests, headers)
                                       for name, (url, headers) in endpoints.items()
                                       if name != "baseline_healthz"}
        finally:
            stop.set()
            writer.join()
        listed = sessions[0].get(f"{base}/api/v1/clips?limit={args.clips}", headers=api).json()["clips"]
        out["listed"] = len(listed)
        checked = [k for k in out["endpoints"] if k != "baseline_healthz"]
        out["target_p95_ms"] = TARGET_P95_MS
        out["missed"] = [k for k in checked if out["endpoints"][k]["p95_ms"] >= TARGET_P95_MS
                         or out["endpoints"][k]["errors"]]
        out["errors_while_a_job_runs"] = sum(v["errors"] for v in out["while_a_job_runs"].values())
        out["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    finally:
        if server:
            server.stop()
        if not args.keep:
            db.drop_database(db_name)
    print(json.dumps(out, indent=2))
    failed = out.get("missed") or out.get("errors_while_a_job_runs") or out.get("listed") != args.clips
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
