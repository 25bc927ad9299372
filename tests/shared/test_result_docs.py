"""A result's documents: buckets, pages and long texts by _id, read back whole, deleted without a trace."""

from __future__ import annotations

import io
import json

import pytest
from bson import ObjectId

from shared import result_docs, results, storage
from shared.errors import BadInput


def _record(n: int, faces: int = 1) -> dict:
    face = results.face_record(box=[1, 2, 30, 40], score=0.9, label="masked", probs=[0.9, 0.05, 0.05],
                               track=n)
    return results.frame_record(n, n / 25, [face] * faces, results.counts(masked=faces))


def _write_clip(job_id, frames: int, persons: int, faces: int = 1) -> dict:
    writer = result_docs.BucketWriter(job_id, result_docs.put)
    for n in range(frames):
        writer.add(_record(n, faces))
    writer.flush()
    people = [{"track_id": t, "vote": "unmasked" if t % 3 == 0 else "masked", "first_s": t / 10}
              for t in range(1, persons + 1)]
    return result_docs.write_read_model(job_id, bins={"second": [results.bin_record(0, 1, 0, 0, 0)]},
                                        persons=people, buckets=writer.buckets)


def _ids(mongo, job_id) -> list[str]:
    return sorted(d["_id"] for c in ("frames", "frame_rows", "persons", "bins")
                  for d in mongo[c].find({"_id": {"$regex": f"^{job_id}:"}}, {"_id": 1}))


def test_pages_of_frames_anywhere_and_across_buckets(mongo):
    job_id = ObjectId()
    layout = _write_clip(job_id, frames=1234, persons=250)
    assert layout["buckets"] == 3 and layout["person_pages"] == 3 and layout["persons"] == 250
    page = result_docs.frames_page(job_id, 490, 20)  # frames 490-509 lie in buckets 0 and 1
    assert [r["frame"] for r in page] == list(range(490, 510))
    assert page[0] == json.loads(results.dumps(_record(490)))
    assert [r["frame"] for r in result_docs.frames_page(job_id, 1230, 500)] == [1230, 1231, 1232, 1233]
    assert result_docs.frames_page(job_id, 5000, 10) == []
    rows = "".join(result_docs.iter_rows(job_id, layout["buckets"])).splitlines()
    assert len(rows) == 1234 and rows[7].split(",")[:3] == ["7", "0.28", "1"]
    persons = list(result_docs.iter_persons(job_id, layout["person_pages"]))
    assert [p["track_id"] for p in persons] == list(range(1, 251))
    assert result_docs.find_person({"_id": job_id, "result": {"layout": layout}}, 201)["track_id"] == 201
    violations = json.loads(result_docs.text("persons", result_docs.violations_id(job_id)))
    assert len(violations) == layout["violations"] == 83 and violations[0]["track_id"] == 3


def test_long_texts_are_split_into_parts_and_joined_again(mongo, monkeypatch):
    monkeypatch.setattr(result_docs, "PART_BYTES", 2_000)
    job_id = ObjectId()
    layout = _write_clip(job_id, frames=600, persons=10, faces=20)  # compressed, still several parts
    heads = list(mongo.frames.find({"_id": {"$in": [result_docs.bucket_id(job_id, n) for n in (0, 1)]}}))
    assert all(h["parts"] > 1 and len(h["z"]) == 2_000 for h in heads)
    page = result_docs.frames_page(job_id, 495, 10)
    assert [r["frame"] for r in page] == list(range(495, 505)) and len(page[0]["faces"]) == 20
    result_docs.delete_read_model(job_id, layout)
    assert _ids(mongo, job_id) == []
    monkeypatch.setattr(result_docs, "MAX_PARTS", 3)
    with pytest.raises(BadInput, match="too many faces"):
        result_docs.text_docs("x", "".join(str(i) for i in range(100_000)))


def test_delete_without_a_layout_finds_what_an_interrupted_attempt_wrote(mongo):
    job_id = ObjectId()
    _write_clip(job_id, frames=2600, persons=120)
    assert len(_ids(mongo, job_id)) == 6 + 6 + 2 + 1 + 2  # buckets, rows, pages, violations, bins
    result_docs.delete_read_model(job_id, None)
    assert _ids(mongo, job_id) == []


def test_deleting_files_by_chunk_ids_including_interrupted_writes(mongo):
    whole = storage.put("results", io.BytesIO(b"a" * (3 * storage.CHUNK + 1)), "a.bin", content_type="x/y")
    small = [storage.put("results", io.BytesIO(b"b"), f"{i}.bin", content_type="x/y") for i in range(5)]
    interrupted = ObjectId()  # chunks stored, files document never written
    mongo["results.chunks"].insert_many([{"_id": storage.chunk_id(interrupted, n), "files_id": interrupted,
                                          "n": n, "data": b"c"} for n in range(3)])
    assert storage.delete_files("results", [whole, *small, interrupted, "junk"]) == 6
    for fid in (whole, *small, interrupted):
        assert mongo["results.chunks"].count_documents({"files_id": fid}) == 0
        assert mongo["results.files"].count_documents({"_id": fid}) == 0
    assert storage.delete("results", whole) is False


def test_a_person_of_a_split_clip_is_found_by_any_id_drawn_on_the_video(mongo):
    job_id = ObjectId()
    people = [{"track_id": 4, "track_ids": [4, 1002, 2001], "vote": "masked", "first_s": 1.0},
              {"track_id": 1001, "track_ids": [1001], "vote": "unmasked", "first_s": 70.0}]
    layout = result_docs.write_read_model(job_id, bins={"second": []}, persons=people, buckets=0)
    job = {"_id": job_id, "result": {"layout": layout}}
    assert result_docs.find_person(job, 2001)["track_id"] == 4  # segment 2's id of person 4
    assert result_docs.find_person(job, 1001)["track_id"] == 1001
    assert result_docs.find_person(job, 1003) is None
