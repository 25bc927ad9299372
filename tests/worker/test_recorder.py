"""Cameras recorded for real: GStreamer's RTSP server on loopback plays a shared clip, the supervisor's
recorder copies it into segments, the session worker analyses each, and the recording is joined into
one clip whose frames are the frames sent."""

from __future__ import annotations

import json
import os
import signal
import time

import av
import pytest

from shared import cameras, jobs, result_docs, results, storage
from shared.config import set_settings
from shared.db import UPLOADS, get_db
from tests.conftest import ARTIFACTS, RUN_TAG, wait_for_job
from tests.live.helpers import SHARED_CLIPS, RtspServer, Supervisor, looped, resized, wait_status
from tests.web import test_browser
from tests.web.conftest import PASSWORD, unique
from web import live, users

LOGS = ARTIFACTS / "logs"
live_server, page = test_browser.live_server, test_browser.page  # the browser tests' fixtures
SECRET = "pa55-" + RUN_TAG  # the camera's password: never in a status, an error or a log


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A 32-second 320x240 clip (the mall corridor twice: 960 frames, keyframes every 8 s)."""
    path = tmp_path_factory.mktemp("live") / "corridor_twice.mp4"
    return path, looped(SHARED_CLIPS / "mall_corridor_2012.mp4", 2, path)


@pytest.fixture
def supervisor(worker, settings):
    set_settings(settings.replace(live_allow_private=True))  # the cameras are on loopback
    sup = Supervisor(LOGS / f"recorders-{RUN_TAG}.log",
                     {"LIVE_ALLOW_PRIVATE": "1", "LIVE_SEGMENT_SECONDS": "5", "LIVE_RETRY_MAX_S": "2"})
    yield sup
    sup.stop()
    set_settings(settings)


def _settle(camera_id, timeout: float = 240) -> tuple[dict, list[dict]]:
    """Stop the camera; the joined clip (succeeded) and the recording's segment jobs (all finished)."""
    cameras.stop(camera_id)
    st = wait_status(camera_id, lambda s: s.get("done_recording"), 60, "joined")
    assert len(st["clip_ids"]) == 1
    clip = wait_for_job(st["clip_ids"][0], timeout=timeout)
    segs = cameras.segments(camera_id)
    return clip, [wait_for_job(s["_id"], timeout=timeout) for s in segs]


@pytest.mark.slow
@pytest.mark.browser
def test_a_camera_is_recorded_in_segments_analysed_and_joined_into_one_clip(live_server, page, supervisor,
                                                                           clip):
    """(live_server first: it sets the session's settings, which the supervisor fixture then amends.)"""
    path, sent = clip
    server = RtspServer(path, LOGS / f"rtsp-{RUN_TAG}.log").start()
    admin = users.create(unique("admin"), PASSWORD, is_admin=True)
    try:
        url = server.url.replace("rtsp://", f"rtsp://viewer:{SECRET}@")
        cam = cameras.create(name="corridor", url=url, owner=admin.id)
        # The live page, open while the camera records, follows it by itself (no reload).
        page.goto(f"{live_server}/login")
        page.fill("#username", admin.username)
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{live_server}/")
        page.goto(f"{live_server}/cameras/{cam['_id']}")
        page.wait_for_selector("#camera-state:has-text('recording')", timeout=60_000)
        page.wait_for_selector("#latest-video[src*='/segments/']", timeout=90_000)
        assert "Segment 1:" in page.inner_text("#latest-info")
        assert SECRET not in page.content()
        # The stream ends after the clip: every frame recorded, then the camera is offline.
        st = wait_status(cam["_id"], lambda s: s["state"] == cameras.OFFLINE and s.get("frames") == sent,
                         90, f"offline with {sent} frames")
        assert st["segments"] >= 4  # keyframes every 8 s, segments of 5 s or more: one per keyframe
        clip_job, segs = _settle(cam["_id"])
    finally:
        server.kill()
    page.wait_for_selector("#camera-state:has-text('stopped')", timeout=30_000)
    page.wait_for_selector(f"#clips a[href='/clips/{clip_job['_id']}']", timeout=30_000)
    assert clip_job["status"] == jobs.SUCCEEDED, clip_job.get("error")
    assert clip_job["owner"] == admin.id and clip_job["filename"].startswith("corridor ")
    assert clip_job["result"]["frames"] == sent
    assert all(s["status"] == jobs.SUCCEEDED for s in segs)
    _joined_from_parts(clip_job, segs, sent)
    assert sum(s["result"]["frames"] for s in segs) == sent
    assert [s["seq"] for s in sorted(segs, key=lambda s: s["seq"])] == list(range(len(segs)))
    # Each segment was queued as soon as it was cut, and analysed while the camera still recorded.
    first = min(segs, key=lambda s: s["seq"])
    assert first["stored_at"] - first["wall_end"] < 5
    assert first["finished_at"].timestamp() < max(s["wall_end"] for s in segs)
    # The live page's data: the latest analysed segment, per-minute compliance, the joined clip listed.
    view = live.live_view(cameras.get(cam["_id"]))
    assert view["state"] == cameras.STOPPED and view["latest"]["seq"] == len(segs) - 1
    assert sum(m["segments"] for m in view["per_minute"]) == len(segs)
    assert view["clips"] == [{"id": str(clip_job["_id"]), "filename": clip_job["filename"],
                              "status": jobs.SUCCEEDED}]
    assert SECRET not in str(cameras.status(cam["_id"])) and SECRET not in str(view)
    assert SECRET not in supervisor.log.read_text()


def _joined_from_parts(clip_job: dict, segs: list[dict], sent: int) -> None:
    """The clip's result is its parts' joined (not a second analysis): frames numbered on across every
    cut, times continuous, people linked across cuts the same way the live page counts them."""
    res = clip_job["result"]
    assert res["segments"]["live"] is True and res["segments"]["count"] == len(segs)
    assert res["processing_s"] == pytest.approx(sum(s["result"]["processing_s"] for s in segs), abs=0.05)
    parts = sorted(segs, key=lambda s: s["seq"])
    for before, after in zip(parts, parts[1:], strict=False):
        assert after["first_frame"] == before["first_frame"] + before["frames_recorded"]
        edge = result_docs.frames_page(clip_job["_id"], after["first_frame"] - 1, 2)
        assert [r["frame"] for r in edge] == [after["first_frame"] - 1, after["first_frame"]]
        assert 0 < edge[1]["t"] - edge[0]["t"] < 0.1  # one frame at 30 fps
    records = result_docs.frames_page(clip_job["_id"], 0, sent + 10)
    assert [r["frame"] for r in records] == list(range(sent))
    persons = [p for p in json.loads(result_docs.all_persons_text(clip_job["_id"],
                                                                    res["layout"]["person_pages"]))
               if results.counted(p)]
    assert len(persons) == res["people"]["total"] == live.people_in(parts)
    assert res["people"]["total"] <= sum(s["result"]["people"]["total"] for s in parts)
    return persons


@pytest.fixture(scope="module")
def face_clip(tmp_path_factory):
    """One face in view throughout (the whole 8.9 s clip at 640x360, 30 fps, a keyframe every second)."""
    path = tmp_path_factory.mktemp("live") / "one_face.mp4"
    return path, resized(SHARED_CLIPS.parent / "videos" / "one_face_puts_mask_on.mp4", path,
                         sizes=((640, 360),), frames=360)


@pytest.mark.slow
def test_a_person_in_view_across_the_cuts_is_one_person_in_the_clip_and_on_the_live_page(supervisor,
                                                                                        face_clip):
    path, sent = face_clip
    server = RtspServer(path, LOGS / f"rtsp-face-{RUN_TAG}.log").start()
    cam = cameras.create(name="desk", url=server.url, owner="owner-4")
    try:
        wait_status(cam["_id"], lambda s: s.get("frames") == sent, 90, f"{sent} frames")
        clip_job, segs = _settle(cam["_id"])
    finally:
        server.kill()
    assert clip_job["status"] == jobs.SUCCEEDED, clip_job.get("error")
    assert len(segs) >= 2, segs  # cut at the first keyframe after 5 s
    assert all(s["status"] == jobs.SUCCEEDED for s in segs), [(s["status"], s.get("error")) for s in segs]
    assert [s["result"]["people"]["total"] for s in segs] == [1] * len(segs), [s["result"] for s in segs]
    persons = _joined_from_parts(clip_job, segs, sent)
    assert len(persons) == 1 and len(persons[0]["track_ids"]) == len(segs), persons
    view = live.live_view(cameras.get(cam["_id"]))
    assert view["recent_people"] == 1


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory):
    """The mall corridor's first 10 s: 300 frames, keyframes at 0 and 8 s."""
    path = tmp_path_factory.mktemp("live") / "corridor.mp4"
    return path, looped(SHARED_CLIPS / "mall_corridor_2012.mp4", 1, path, frames=300)


@pytest.mark.slow
def test_a_camera_that_drops_is_offline_then_recording_again_when_it_returns(supervisor, short_clip):
    path, sent = short_clip
    server = RtspServer(path, LOGS / f"rtsp-{RUN_TAG}.log").start()
    cam = cameras.create(name="door", url=server.url, owner="owner-2")
    try:
        wait_status(cam["_id"], lambda s: s["state"] == cameras.RECORDING and s.get("segments", 0) >= 1,
                    60, "recording")
        server.kill()  # mid-way: the second keyframe is 8 s in
        down = wait_status(cam["_id"], lambda s: s["state"] == cameras.OFFLINE and s["storing"] == 0, 30,
                           "offline")
        assert down["error"]
        before = down["frames"]
        assert 0 < before < sent
        # Its recorder dies too: the supervisor starts another, which goes on with the same recording.
        os.kill(down["pid"], signal.SIGKILL)
        # (A new recorder says "starting" until its first connection has been tried.)
        again = wait_status(cam["_id"], lambda s: s.get("pid") not in (None, down["pid"])
                            and s["state"] != cameras.STARTING, 30, "supervised")
        assert again["state"] == cameras.OFFLINE and (again["segments"], again["frames"]) == \
            (down["segments"], before)
        time.sleep(2)  # it stays offline while the camera is gone (retried with backoff)
        assert cameras.status(cam["_id"])["state"] == cameras.OFFLINE
        server = RtspServer(path, server.log, port=server.port).start()
        wait_status(cam["_id"], lambda s: s["state"] == cameras.RECORDING, 30, "recording again")
        # The returned camera plays its clip from the start: all of it is recorded after what came before.
        wait_status(cam["_id"], lambda s: s.get("frames") == before + sent, 60, "storing new segments")
        cameras.stop(cam["_id"])
        st = wait_status(cam["_id"], lambda s: s.get("done_recording"), 60, "joined")
    finally:
        server.kill()
    segs = [wait_for_job(s["_id"], timeout=240) for s in cameras.segments(cam["_id"])]
    assert all(s["status"] == jobs.SUCCEEDED for s in segs)
    assert sum(s["result"]["frames"] for s in segs) == before + sent
    # The joined clip holds every recorded frame, and its result is its parts' joined: the recorder
    # started again after the kill numbered its segments on from where its predecessor stopped.
    clip_job = wait_for_job(st["clip_ids"][0], timeout=240)
    with storage.open_file(UPLOADS, clip_job["input_id"]) as f, av.open(f) as c:
        assert sum(1 for p in c.demux(c.streams.video[0]) if p.size) == before + sent
    assert clip_job["status"] == jobs.SUCCEEDED, clip_job.get("error")
    _joined_from_parts(clip_job, segs, before + sent)


@pytest.mark.slow
def test_a_stream_that_changes_resolution_starts_a_new_segment_and_clip(supervisor, tmp_path):
    path = tmp_path / "resized.mp4"
    sent = resized(SHARED_CLIPS / "mall_corridor_2012.mp4", path)  # 2 s at 320x240, then 2 s at 640x480
    server = RtspServer(path, LOGS / f"rtsp-{RUN_TAG}.log").start()
    cam = cameras.create(name="ptz", url=server.url, owner="owner-3")
    try:
        wait_status(cam["_id"], lambda s: s["state"] == cameras.OFFLINE and s.get("frames") == sent, 60,
                    f"offline with {sent} frames")
        cameras.stop(cam["_id"])
        st = wait_status(cam["_id"], lambda s: s.get("done_recording"), 60, "joined")
    finally:
        server.kill()
    # Segments of 5 s would hold it all: the cut is the size change, at its keyframe.
    segs = sorted((wait_for_job(s["_id"], timeout=180) for s in cameras.segments(cam["_id"])),
                  key=lambda s: s["seq"])
    assert [s["size_wh"] for s in segs] == [[320, 240], [640, 480]]
    assert all(s["status"] == jobs.SUCCEEDED for s in segs), [s.get("error") for s in segs]
    assert [(s["result"]["width"], s["result"]["height"], s["result"]["frames"]) for s in segs] == \
        [(320, 240, sent // 2), (640, 480, sent // 2)]
    # One clip per picture size, each holding its frames, each joined from its own part (numbered from 0).
    assert len(st["clip_ids"]) == 2
    for clip_id, size, part in zip(st["clip_ids"], ((320, 240), (640, 480)), segs, strict=True):
        clip_job = wait_for_job(clip_id, timeout=180)
        with storage.open_file(UPLOADS, clip_job["input_id"]) as f, av.open(f) as c:
            v = c.streams.video[0]
            assert (v.codec_context.width, v.codec_context.height) == size
            assert sum(1 for p in c.demux(v) if p.size) == sent // 2
        assert part["first_frame"] == 0 and part["t0"] == 0
        _joined_from_parts(clip_job, [part], sent // 2)
    # Started again for 6 s: a new recording, its own recorder (the camera is gone: offline), which ends by
    # itself when the 6 s are over. Then deleted: the segments go, the owner's clips stay.
    cameras.start(cam["_id"], duration_s=6)
    again = cameras.get(cam["_id"])["recording_id"]
    assert again != st["recording_id"]
    wait_status(cam["_id"], lambda s: s.get("recording_id") == again and s["state"] == cameras.OFFLINE, 30,
                "recording again (offline: its camera is gone)")
    over = wait_status(cam["_id"], lambda s: s.get("recording_id") == again and s.get("done_recording"), 30,
                       "stopped by its duration")
    assert over["state"] == cameras.STOPPED and cameras.get(cam["_id"])["wanted"]  # nobody pressed Stop
    assert over["beat_at"] - cameras.get(cam["_id"])["started_at"] >= 6
    cameras.delete(cam["_id"])
    time.sleep(3)
    assert get_db().camera_status.find_one({"_id": str(cam["_id"])}) is None
    assert not get_db().jobs.find_one({"owner": cameras.owner_of_segments(cam["_id"])})
    assert all(jobs.get(c)["owner"] == "owner-3" for c in st["clip_ids"])
