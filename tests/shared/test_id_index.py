"""Lookups by `_id` (one id or a list) are answered from the `_id` index, not by scanning the collection.

Everything the product reads or deletes by key (job, result buckets, person pages, GridFS chunks)
relies on it. Upstream FerretDB 1.24 on SQLite scanned (its index expression differed from its query
expression); bin/setup builds it patched. The plan is asked through the wire protocol (`explain`), so
the test runs on MongoDB too, where it checks the same thing (no COLLSCAN).
"""

from __future__ import annotations

import json

import pytest


def _plan(mongo, collection: str, filter_: dict) -> tuple[str, bool]:
    """The server's query plan as text, and whether it is FerretDB's (SQLite EXPLAIN QUERY PLAN)."""
    out = mongo.command("explain", {"find": collection, "filter": filter_})
    ferret = "ferretdbVersion" in (out.get("serverInfo") or {})
    return json.dumps(out.get("queryPlanner"), default=str), ferret


@pytest.fixture
def keyed(mongo):
    """A collection of 2,000 small documents keyed by strings, plus one keyed by an ObjectId."""
    coll = mongo["id_index_probe"]
    coll.drop()
    coll.insert_many([{"_id": f"job:f:{n:06d}", "n": n} for n in range(2000)])
    yield coll
    coll.drop()


@pytest.mark.parametrize("filter_", [
    {"_id": "job:f:001234"},
    {"_id": {"$in": ["job:f:000007", "job:f:001999", "job:f:missing"]}},
], ids=["equality", "in-list"])
def test_lookup_by_id_uses_the_index(mongo, keyed, filter_):
    plan, ferret = _plan(mongo, keyed.name, filter_)
    if ferret:
        assert "USING INDEX" in plan and "SCAN " not in plan, plan
    else:
        assert "COLLSCAN" not in plan, plan
    want = filter_["_id"] if isinstance(filter_["_id"], str) else filter_["_id"]["$in"][:2]
    got = sorted(d["_id"] for d in keyed.find(filter_))
    assert got == sorted([want] if isinstance(want, str) else want)


def test_delete_by_id_list_removes_exactly_those(keyed):
    ids = [f"job:f:{n:06d}" for n in range(100, 150)]
    assert keyed.delete_many({"_id": {"$in": ids}}).deleted_count == 50
    assert keyed.count_documents({}) == 1950
    assert keyed.find_one({"_id": "job:f:000150"})["n"] == 150


def test_in_list_still_matches_like_mongodb(keyed):
    # The pushed-down list is only a pre-filter: mixed and non-key conditions still match exactly.
    assert [d["n"] for d in keyed.find({"_id": {"$in": ["job:f:000003", 3]}})] == [3]
    assert [d["n"] for d in keyed.find({"_id": {"$in": ["job:f:000003"]}, "n": 4})] == []
