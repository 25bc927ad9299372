"""The web's caches (shared/cache.py) on the real Redis and MongoDB server: never stale, from any process."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import redis
from bson import ObjectId

from shared import cache, jobs
from shared.config import get_settings, set_settings
from shared.db import get_db

ROOT = Path(__file__).resolve().parents[2]


class Builds:
    """A build function that counts its calls and returns the job document as stored now."""

    def __init__(self, job_id):
        self.job_id, self.calls = job_id, 0

    def __call__(self):
        self.calls += 1
        return jobs.get(self.job_id)


def _job() -> dict:
    return jobs.create(owner=str(ObjectId()), filename="clip.mp4", kind="video", input_id=ObjectId(),
                       size=1, content_type="video/mp4")


def test_an_entry_is_reused_until_a_write_to_its_collection(mongo):
    job, c = _job(), cache.Versioned("jobs")
    build = Builds(job["_id"])
    assert c.get(mongo.name, job["_id"], build)["status"] == jobs.QUEUED
    assert c.get(mongo.name, job["_id"], build)["status"] == jobs.QUEUED
    assert build.calls == 1
    get_db().users.update_one({"_id": "nobody"}, {"$set": {"x": 1}})  # another source: still current
    c.get(mongo.name, job["_id"], build)
    assert build.calls == 1
    jobs.cancel(job["_id"])  # a write to jobs, by any code path: stale
    assert c.get(mongo.name, job["_id"], build)["status"] == jobs.CANCELLED
    assert build.calls == 2


def test_a_write_by_another_process_is_seen_at_once(mongo):
    job, c = _job(), cache.Versioned("jobs")
    build = Builds(job["_id"])
    assert c.get(mongo.name, job["_id"], build)["filename"] == "clip.mp4"
    # A worker's write, from its own process and its own MongoDB and Redis clients.
    code = ("from shared.db import get_db; from bson import ObjectId; "
            f"get_db().jobs.update_one({{'_id': ObjectId('{job['_id']}')}}, "
            "{'$set': {'filename': 'renamed.mp4'}})")
    env = {**os.environ, "MONGO_URI": get_settings().mongo_uri, "REDIS_URL": get_settings().redis_url}
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, timeout=120)
    assert c.get(mongo.name, job["_id"], build)["filename"] == "renamed.mp4"
    assert build.calls == 2


def test_entries_built_before_redis_lost_its_data_are_not_used(mongo):
    job, c = _job(), cache.Versioned("jobs")
    build = Builds(job["_id"])
    c.get(mongo.name, job["_id"], build)
    # Redis restarted empty: the counters start again from 0, so an old entry could match one.
    r = redis.Redis.from_url(get_settings().redis_url)
    r.delete(*r.keys(f"{cache.PREFIX}{mongo.name}:*"))
    c.get(mongo.name, job["_id"], build)
    assert build.calls == 2


def test_without_redis_every_lookup_reads_mongodb(mongo, settings):
    job, c = _job(), cache.Versioned("jobs")
    build = Builds(job["_id"])
    set_settings(replace(settings, redis_url="redis://127.0.0.1:9/0", connect_timeout_s=0.5))
    try:
        for _ in range(3):
            assert c.get(mongo.name, job["_id"], build)["_id"] == job["_id"]
    finally:
        set_settings(settings)
    assert build.calls == 3


def test_a_lost_bump_is_outlived_by_max_age(mongo, monkeypatch):
    job, c = _job(), cache.Versioned("jobs")
    build = Builds(job["_id"])
    c.get(mongo.name, job["_id"], build)
    monkeypatch.setattr(cache, "MAX_AGE_S", 0.0)
    c.get(mongo.name, job["_id"], build)
    assert build.calls == 2


def test_every_write_method_bumps_the_revision(mongo):
    before = cache.revision(mongo.name, "jobs")
    coll = get_db().jobs
    oid = coll.insert_one({"owner": "x"}).inserted_id
    coll.update_one({"_id": oid}, {"$set": {"a": 1}})
    coll.find_one_and_update({"_id": oid}, {"$set": {"a": 2}})
    coll.update_many({"_id": oid}, {"$set": {"a": 3}})
    coll.replace_one({"_id": oid}, {"owner": "x"})
    coll.delete_one({"_id": oid})
    after = cache.revision(mongo.name, "jobs")
    assert after[0] == before[0] and after[1] == before[1] + 6
    assert get_db()["jobs"].__class__ is get_db().get_collection("jobs").__class__ is type(coll)


def test_the_change_log_keeps_entries_of_documents_not_written(mongo):
    a, b, c = _job(), _job(), cache.Versioned("jobs")
    build = Builds(a["_id"])
    kept = []

    def keep(value, changed):
        kept.append(changed)
        return None if str(a["_id"]) in changed else value

    c.get(mongo.name, a["_id"], build, keep)
    jobs.cancel(b["_id"])  # another job: the entry is kept, not rebuilt
    assert c.get(mongo.name, a["_id"], build, keep)["status"] == jobs.QUEUED
    assert build.calls == 1 and kept[-1] == {str(b["_id"])}
    jobs.cancel(a["_id"])  # its own job: rebuilt
    assert c.get(mongo.name, a["_id"], build, keep)["status"] == jobs.CANCELLED
    assert build.calls == 2
    get_db().jobs.update_many({"owner": "no one"}, {"$set": {"x": 1}})  # which documents: unknown
    c.get(mongo.name, a["_id"], build, keep)
    assert build.calls == 3 and len(kept) == 2  # not asked: the log cannot say


def test_an_entry_older_than_the_log_is_rebuilt(mongo, monkeypatch):
    a, c = _job(), cache.Versioned("jobs")
    build = Builds(a["_id"])
    c.get(mongo.name, a["_id"], build, lambda value, changed: value)
    monkeypatch.setattr(cache, "LOG_MAX", 2)
    for _ in range(3):  # three bumps, two kept in the log: the first change after the entry is gone
        get_db().jobs.update_one({"_id": ObjectId()}, {"$set": {"x": 1}})
    c.get(mongo.name, a["_id"], build, lambda value, changed: value)
    assert build.calls == 2
