"""The offline CLI: same pipeline, no web or queue; video, single image and folder of images."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.media import make_clip, probe, walking_faces, write_frames

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "worker.analyze", *map(str, args)], cwd=ROOT,
                          env=os.environ.copy(), capture_output=True, text=True, timeout=300)


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_cli_on_a_video(tmp_path, asset):
    faces = [cv2.imread(str(asset("mask_crops") / "with_mask" / "with_mask_0009.jpg"))]
    src = write_frames(tmp_path / "walk.mp4", (f for f, _ in walking_faces(faces, frames=60, step=2)))
    out = tmp_path / "out"
    done = cli(src, "--out", out)
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert printed["frames"] == probe(src)["frames"] == 60
    assert printed["seconds"] > 0 and printed["fps"] == pytest.approx(60 / printed["seconds"], rel=0.05)
    assert printed["video_fps"] == 25.0 and "bins" not in printed
    assert "frame" in done.stderr  # the tqdm bar went to stderr, not into the JSON
    summary = json.loads((out / "summary.json").read_text())
    assert summary["people"] == printed["people"] and len(summary["bins"]["second"]) == 3
    assert summary["people"]["total"] == 1 and summary["people"]["masked"] == 1
    info = probe(out / "annotated.mp4")
    assert info["frames"] == 60 and info["codec"] == "h264" and info["faststart"]
    lines = (out / "frames.jsonl").read_text().splitlines()
    assert len(lines) == 60 and len(rows(out / "frames.csv")) == 60
    first = json.loads(lines[0])
    assert first["frame"] == 0 and first["faces"] and len(first["faces"][0]["box"]) == 4
    persons = rows(out / "persons.csv")
    assert len(persons) == summary["people"]["total"] >= 1
    assert all((out / p["face_file"]).is_file() for p in persons)
    assert (out / "poster.jpg").is_file()


def test_cli_on_a_folder_of_images(tmp_path, asset):
    scenes = asset("mask_scenes") / "images"
    folder = tmp_path / "photos"
    folder.mkdir()
    for stem in ("maksssksksss795", "maksssksksss389"):
        shutil.copy(next(scenes.glob(f"{stem}.*")), folder / f"{stem}.png")
    cv2.imwrite(str(folder / "empty_room.jpg"), np.full((300, 400, 3), 90, np.uint8))
    (folder / "notes.txt").write_text("not an image: skipped")
    out = tmp_path / "out"
    done = cli(folder, "--out", out)
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert printed["images"] == 3 and printed["frames"] == 3 and printed["failed"] == []
    lines = [json.loads(line) for line in (out / "frames.jsonl").read_text().splitlines()]
    assert [x["image"] for x in lines] == ["empty_room.jpg", "maksssksksss389.png", "maksssksksss795.png"]
    by_image = {x["image"]: x for x in lines}
    assert by_image["empty_room.jpg"]["faces"] == []
    crowd = by_image["maksssksksss795.png"]["faces"]
    assert len(crowd) >= 12  # 21 annotated faces, most of them small
    for face in crowd:
        x1, y1, x2, y2 = face["box"]
        assert 0 <= x1 < x2 <= 400 and 0 <= y1 < y2 <= 300
        assert face["label"] in ("masked", "unmasked", "incorrect", "unknown") and len(face["probs"]) == 3
    assert sorted(p.name for p in (out / "annotated").iterdir()) == [
        "empty_room.jpg", "maksssksksss389.jpg", "maksssksksss795.jpg"]
    persons = rows(out / "persons.csv")
    assert len(persons) == printed["people"]["total"] == sum(len(x["faces"]) for x in lines)
    assert {p["image"] for p in persons} == {"maksssksksss389.png", "maksssksksss795.png"}
    frames_csv = rows(out / "frames.csv")
    assert [r["image"] for r in frames_csv] == [x["image"] for x in lines]


def test_cli_single_image_and_bad_input(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"garbage" * 10)
    done = cli(bad, "--out", tmp_path / "o1")
    assert done.returncode == 1 and "not a video or image file" in done.stderr
    src = make_clip(tmp_path / "tiny.mp4", frames=5, size=(160, 120))
    frame = tmp_path / "still.png"
    import av

    with av.open(str(src)) as c:
        cv2.imwrite(str(frame), next(c.decode(video=0)).to_ndarray(format="bgr24"))
    done = cli(frame, "--out", tmp_path / "o2")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["images"] == 1
    assert (tmp_path / "o2" / "annotated" / "still.jpg").is_file()
