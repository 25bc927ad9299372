"""The clips list is read through the (owner, created_at) index, and documents come back exactly.

On FerretDB's SQLite backend upstream 1.24 pushes nothing but `_id` down to SQL, so listing one
user's clips read and decoded every job document of every user (the clips list took 178 ms with 201
jobs). bin/setup's patch pushes an equality on an indexed top-level field down through that index
(a superset: the value, or an array that may hold it; FerretDB filters again) and decodes stored
documents in one pass. The plan is asked through the wire (`explain`), so on MongoDB the same test
checks for an index scan. The round trip checks the new decoder against what MongoDB returns.
"""

from __future__ import annotations

import json

import pytest
from bson import Binary, Int64, ObjectId

from shared import jobs


def _explain(mongo, find: dict) -> tuple[dict, bool]:
    out = mongo.command("explain", find)
    return out, "ferretdbVersion" in (out.get("serverInfo") or {})


def test_the_clips_list_query_reads_only_that_owners_jobs_through_the_index(mongo):
    # The query jobs.list_for sends (filter, sort, limit), on the real jobs collection and its indexes.
    owner = "owner-of-the-list"
    jobs.list_for(owner)  # the collection and its indexes exist
    out, ferret = _explain(mongo, {"find": "jobs", "filter": {"owner": owner},
                                   "sort": {"created_at": -1}, "limit": 200})
    plan = json.dumps(out.get("queryPlanner"), default=str)
    if ferret:
        assert out.get("filterPushdown") is True, out
        assert "USING INDEX" in plan and "owner_1_created_at_-1" in plan, plan
        assert "SCAN " not in plan, plan  # not a table scan: other owners' jobs are never read
    else:
        assert "IXSCAN" in plan and "owner_1_created_at_-1" in plan and "COLLSCAN" not in plan, plan


@pytest.fixture
def owned(mongo):
    """Documents with an indexed `owner` of every shape an equality must handle like MongoDB."""
    coll = mongo["pushdown_probe"]
    coll.drop()
    coll.create_index([("owner", 1), ("n", -1)])
    coll.insert_many([
        {"_id": 1, "owner": "a", "n": 1},
        {"_id": 2, "owner": "b", "n": 2},
        {"_id": 3, "owner": ["x", "a"], "n": 3},  # an array holding the value matches
        {"_id": 4, "n": 4},  # no owner
        {"_id": 5, "owner": {"a": "a"}, "n": 5},
        {"_id": 6, "owner": "<a & \"é\">\n", "n": 6},  # escaped in JSON
        {"_id": 7, "owner": 7, "n": 7},
        {"_id": 9, "owner": "a", "n": 9},
    ])
    yield coll
    coll.drop()


@pytest.mark.parametrize("filter_, ids", [
    ({"owner": "a"}, [1, 3, 9]),
    ({"owner": "b"}, [2]),
    ({"owner": "<a & \"é\">\n"}, [6]),
    ({"owner": "a", "n": 9}, [9]),
    ({"owner": "a", "n": {"$lt": 5}}, [1, 3]),
    ({"owner": "nobody"}, []),
    ({"owner": 7}, [7]),
])
def test_an_indexed_equality_matches_like_mongodb(owned, filter_, ids):
    assert sorted(d["_id"] for d in owned.find(filter_)) == ids
    assert [d["_id"] for d in owned.find(filter_).sort("n", -1).limit(2)] == sorted(ids, reverse=True)[:2]


def test_documents_come_back_exactly(mongo):
    # Every shape the one-pass decoder takes a fast path for, and those it leaves to encoding/json.
    # (FerretDB 1.24 refuses nested arrays, and its encoder breaks on NaN and on quotes in field names.)
    coll = mongo["roundtrip_probe"]
    coll.drop()
    doc = {
        "_id": "rt:1",
        "s": "plain", "esc": "quote \" backslash \\ tab \t nl \n", "uni": "é ü 日本 😀", "ctl": "\x01\x1f",
        "empty": "", "html": "<&>", "slash": "a/b",
        "i32": -2147483648, "i64": Int64(9223372036854775807), "zero": 0, "neg": -7,
        "f": 1.5, "fneg": -0.25, "big": 1e300, "tiny": 5e-324, "fint": 3.0,
        "t": True, "fa": False, "none": None,
        "oid": ObjectId("6b0edeb0080b623621a94a9d"),
        "bin": Binary(bytes(range(256)) * 3), "bin_empty": Binary(b""), "bin_sub": Binary(b"\x00\x01", 4),
        "arr": [1, "two", {"three": [3, {"four": 4}]}, {}], "nested": {"a": {"b": {"c": [None, True]}}},
        "key with space": 2,
    }
    coll.insert_one(doc)
    got = coll.find_one({"_id": "rt:1"})
    assert list(got) == list(doc)  # field order kept
    assert got == {k: bytes(v) if isinstance(v, Binary) and v.subtype == 0 else v for k, v in doc.items()}
    assert got["bin_sub"] == Binary(b"\x00\x01", 4)
    assert isinstance(got["i64"], Int64) and isinstance(got["fint"], float)
    other = {"_id": "rt:2", "kéy": "non-ASCII names take the encoding/json path", "n": {"ü": [1.5, "x"]}}
    coll.insert_one(other)
    assert coll.find_one({"_id": "rt:2"}) == other
    coll.drop()
