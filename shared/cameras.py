"""Cameras: what an admin asked for (`cameras`, written by the web) and what its recorder reports
(`camera_status`, written by the recorder only: one writer per document, so no update is lost).

    cameras       {_id, name, url (with its credentials: never shown), owner, wanted, duration_s,
                   recording_id, created_at, started_at}
    camera_status {_id: camera id, state, error, recording_id, segments, frames, storing, pid, beat_at,
                   done_recording, clip_ids}
    camera_leases {_id: camera id, holder: "host:pid", until}: which recorder may record it

Each recorded segment is a job of its own, owned by "camera:<id>" (so it is in no one's clips list),
with `camera_id`, `recording_id`, `seq`, `wall_start`, `wall_end` and `stored_at` (seconds since the
epoch); the whole recording becomes one clip of the camera's owner when it stops.
"""

from __future__ import annotations

import time
import uuid

from pymongo.errors import DuplicateKeyError

from shared import jobs
from shared.camera_urls import check, masked
from shared.config import get_settings
from shared.db import get_db
from shared.errors import NotFound

RECORDING, OFFLINE, STOPPED, STARTING = "recording", "offline", "stopped", "starting"
BEAT_S = 2.0  # how often a recorder writes its status
STALE_S = 15.0  # a status older than this is a recorder that is gone
LEASE_S = 15.0  # a recorder's claim on its camera, renewed with each status beat


def owner_of_segments(camera_id) -> str:
    """The owner of a camera's segment jobs."""
    return f"camera:{camera_id}"


def create(*, name: str, url: str, owner: str, duration_s: float | None = None) -> dict:
    """A new camera, recording at once; BadInput with the sentence when the URL may not be recorded."""
    url = check(url, allow_private=get_settings().live_allow_private)
    doc = {"name": (name or "").strip() or masked(url), "url": url, "owner": owner, "created_at": jobs.now()}
    doc["_id"] = get_db().cameras.insert_one(doc).inserted_id
    start(doc["_id"], duration_s)
    return get(doc["_id"])


def get(camera_id) -> dict:
    """One camera; NotFound when there is none."""
    doc = get_db().cameras.find_one({"_id": jobs.object_id(camera_id)})
    if doc is None:
        raise NotFound(f"no camera {camera_id}")
    return doc


def all_cameras() -> list[dict]:
    """Every camera, oldest first."""
    return list(get_db().cameras.find({}).sort("created_at", 1))


def wanted() -> list[dict]:
    """Cameras that should be recording now (their recorder runs until it has finished the recording)."""
    return list(get_db().cameras.find({"wanted": True}))


def start(camera_id, duration_s: float | None = None) -> None:
    """Start a new recording (for duration_s seconds, or until stopped)."""
    get_db().cameras.update_one({"_id": jobs.object_id(camera_id)}, {"$set": {
        "wanted": True, "recording_id": uuid.uuid4().hex, "started_at": time.time(),
        "duration_s": float(duration_s) if duration_s else None}})


def stop(camera_id) -> None:
    """Stop recording; the recorder stores the last segment and makes the recording one clip."""
    get_db().cameras.update_one({"_id": jobs.object_id(camera_id)}, {"$set": {"wanted": False}})


def delete(camera_id) -> None:
    """Remove a camera, its status and its segment jobs (the joined clips stay: they are its owner's)."""
    oid = jobs.object_id(camera_id)
    get_db().cameras.delete_one({"_id": oid})
    for job in get_db().jobs.find({"owner": owner_of_segments(oid)}, {"_id": 1}):
        try:
            jobs.delete(job["_id"])
        except Exception:  # noqa: BLE001 - a segment being analysed now is left for the retention sweep
            continue
    get_db().camera_status.delete_one({"_id": str(oid)})
    get_db().camera_leases.delete_one({"_id": str(oid)})


def status(camera_id) -> dict:
    """The recorder's last report, with `state` as shown: stopped, starting, recording or offline."""
    cam = get(camera_id)
    doc = get_db().camera_status.find_one({"_id": str(cam["_id"])}) or {}
    mine = doc.get("recording_id") == cam.get("recording_id")
    if not cam.get("wanted") or (mine and doc.get("done_recording")):
        shown = STOPPED
    elif not mine or not doc.get("state"):
        shown = STARTING
    elif time.time() - (doc.get("beat_at") or 0) > STALE_S:
        shown = OFFLINE  # its recorder is gone; the supervisor starts another
    else:
        shown = doc["state"]
    return {**doc, "state": shown, "camera_id": str(cam["_id"])}


def claim(camera_id, holder: str) -> bool:
    """Take (or keep) the right to record the camera for LEASE_S: one recorder per camera, however many
    supervisors run (on several machines). An expired lease is taken over."""
    cid, now = str(camera_id), time.time()
    get_db().camera_leases.delete_one({"_id": cid, "until": {"$lt": now}})
    try:
        get_db().camera_leases.insert_one({"_id": cid, "holder": holder, "until": now + LEASE_S})
        return True
    except DuplicateKeyError:
        held = get_db().camera_leases.find_one({"_id": cid}) or {}
        return held.get("holder") == holder


def holder(camera_id) -> str | None:
    """Who records the camera now (None: nobody holds a live lease)."""
    held = get_db().camera_leases.find_one({"_id": str(camera_id)}) or {}
    return held.get("holder") if (held.get("until") or 0) >= time.time() else None


def renew(camera_id, holder: str) -> bool:
    """Extend the holder's lease; False when it was lost (expired and taken over)."""
    res = get_db().camera_leases.update_one({"_id": str(camera_id), "holder": holder},
                                            {"$set": {"until": time.time() + LEASE_S}})
    return res.matched_count == 1


def release(camera_id, holder: str) -> None:
    """Give the lease up (the recorder has ended)."""
    get_db().camera_leases.delete_one({"_id": str(camera_id), "holder": holder})


def report(camera_id, **fields) -> None:
    """Write the recorder's status (the recorder is its only writer)."""
    get_db().camera_status.update_one({"_id": str(camera_id)},
                                      {"$set": {**fields, "beat_at": time.time()}}, upsert=True)


def segments(camera_id, since: float | None = None, limit: int = 500) -> list[dict]:
    """The camera's segment jobs, newest first (since: wall time of the segment's start, seconds)."""
    query: dict = {"owner": owner_of_segments(jobs.object_id(camera_id))}
    rows = get_db().jobs.find(query, {"explanations": 0}).sort("created_at", -1).limit(limit)
    return [r for r in rows if since is None or (r.get("wall_start") or 0) >= since]
