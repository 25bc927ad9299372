"""What the live pages show, read from MongoDB only: a camera's state, its latest analysed segment,
compliance per minute over the last hour and people seen lately; webcam chunks stored as jobs."""

from __future__ import annotations

import io
import time

from shared import cameras, jobs, results, storage
from shared.camera_urls import masked
from shared.celery_app import PROCESS_JOB, enqueue
from shared.db import UPLOADS, get_db

RECENT_MIN = 10  # "people seen in the last N minutes"
HOUR_S = 3600


def camera_view(cam: dict) -> dict:
    """A camera as pages and JSON show it: never its credentials."""
    st = cameras.status(cam["_id"])
    return {"id": str(cam["_id"]), "name": cam["name"], "url": masked(cam["url"]), "state": st["state"],
            "error": st.get("error"), "segments": st.get("segments") or 0, "frames": st.get("frames") or 0,
            "duration_s": cam.get("duration_s"), "started_at": cam.get("started_at")}


def live_view(cam: dict, now: float | None = None) -> dict:
    """The live page's data: state, latest analysed segment, per-minute compliance, recent people, clips."""
    now = time.time() if now is None else now
    segs = cameras.segments(cam["_id"], since=now - HOUR_S)
    done = [s for s in segs if s["status"] == jobs.SUCCEEDED]
    latest = done[0] if done else None
    res = (latest or {}).get("result") or {}
    minutes: dict[int, dict] = {}
    for s in done:
        people = (s.get("result") or {}).get("people") or {}
        m = minutes.setdefault(int(s["wall_start"] // 60) * 60, {"masked": 0, "unmasked": 0, "incorrect": 0,
                                                                 "people": 0, "segments": 0})
        for k in ("masked", "unmasked", "incorrect"):
            m[k] += people.get(k) or 0
        m["people"] += people.get("total") or 0
        m["segments"] += 1
    per_minute = [{"t": t, **m, "rate": results.rate_of(m)} for t, m in sorted(minutes.items())]
    recent = [s for s in done if s["wall_end"] >= now - RECENT_MIN * 60]
    view = camera_view(cam)
    view.update({
        "per_minute": per_minute,
        "recent_minutes": RECENT_MIN,
        "recent_people": people_in(recent),
        "latest": None if latest is None else {
            "job_id": str(latest["_id"]), "seq": latest.get("seq"), "wall_start": latest["wall_start"],
            "wall_end": latest["wall_end"], "frames": res.get("frames"), "people": res.get("people"),
            "compliance_rate": res.get("compliance_rate"),
            "latency_s": round(latest["finished_at"].timestamp() - latest["wall_end"], 1)},
        "waiting": sum(1 for s in segs if s["status"] in (jobs.QUEUED, jobs.RUNNING)),
        "clips": [{"id": str(j["_id"]), "filename": j["filename"], "status": j["status"]}
                  for j in get_db().jobs.find({"owner": cam["owner"], "camera_id": cam["_id"]},
                                              {"filename": 1, "status": 1, "created_at": 1})
                  .sort("created_at", -1).limit(20)],
    })
    return view


def people_in(segs: list[dict]) -> int:
    """People counted in these analysed segments, once each: a person whose track crosses a cut between
    two of them (the links worker/live_join.py stores) is one person."""
    ids: dict[tuple, list[int]] = {}
    for s in segs:
        res = s.get("result") or {}
        if res.get("people_ids") is None:  # analysed before segments knew their people: counted apart
            return sum(((x.get("result") or {}).get("people") or {}).get("total") or 0 for x in segs)
        ids[(s["recording_id"], s["seq"])] = res["people_ids"]
    parent: dict[tuple, tuple] = {}  # (recording, track id): ids repeat from one recording to the next

    def root(t: tuple) -> tuple:
        while parent.get(t, t) != t:
            t = parent[t]
        return t

    links = [jobs.part_links_id(rec, seq) for rec, seq in ids]
    for doc in sorted(get_db()[jobs.LIVE_LINKS].find({"_id": {"$in": links}}), key=lambda d: d["seq"]):
        rec = doc["recording_id"]
        for a, b in zip(doc["before"], doc["after"], strict=True):
            parent[root((rec, b))] = root((rec, a))
    return len({root((rec, t)) for (rec, _), tids in ids.items() for t in tids})


def webcam_owner(user_id: str) -> str:
    """The owner of a user's webcam chunks (in nobody's clips list)."""
    return f"webcam:{user_id}"


def store_chunk(user_id: str, data: bytes, content_type: str, session: str, seq: int) -> dict:
    """Store one recorded chunk of the webcam page and queue it; the job."""
    ext = ".webm" if "webm" in content_type else ".mp4"
    name = f"webcam-{session[:12]}-{seq:05d}{ext}"
    file_id = storage.put(UPLOADS, io.BytesIO(data), name, content_type=content_type)
    job = jobs.create(owner=webcam_owner(user_id), filename=name, kind="video", input_id=file_id,
                      size=len(data), content_type=content_type)
    get_db().jobs.update_one({"_id": job["_id"]}, {"$set": {"webcam_session": session, "seq": seq,
                                                            "stored_at": time.time()}})
    enqueue(PROCESS_JOB, str(job["_id"]))
    return job


def has_chunks(user_id: str, session: str) -> bool:
    """Whether the user's webcam session stored any chunk."""
    return get_db().jobs.find_one({"owner": webcam_owner(user_id), "webcam_session": session}, {"_id": 1}) \
        is not None


def chunk_view(job: dict) -> dict:
    """A webcam chunk's state and, once analysed, its result."""
    out = {"id": str(job["_id"]), "seq": job.get("seq"), "status": job["status"], "error": job.get("error")}
    res = job.get("result") or {}
    if job["status"] == jobs.SUCCEEDED:
        out.update({"frames": res.get("frames"), "people": res.get("people"),
                    "compliance_rate": res.get("compliance_rate"),
                    "result_s": round(job["finished_at"].timestamp() - job["stored_at"], 1)})
    return out
