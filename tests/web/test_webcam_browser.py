"""The webcam check in headless Chromium with a fake camera fed from a shared clip: chunks recorded by
MediaRecorder are analysed by the real worker, their results shown on the page, and joined into one
clip when it stops."""

from __future__ import annotations

import time
import uuid

import av
import pytest

from shared import jobs
from shared.db import get_db
from tests.conftest import wait_for_job
from tests.live.helpers import ROOT
from tests.web.conftest import PASSWORD
from tests.web.test_browser import chromium_page, live_server, shot  # noqa: F401 - live_server: a fixture

CLIP = ROOT.parent / "shared" / "data" / "videos" / "one_face_without_mask_2.mp4"  # 640x360, one face


@pytest.fixture(scope="module")
def fake_camera(tmp_path_factory):
    """The clip's first 100 frames (4 s at 25 fps) as a .y4m, what Chromium's fake camera plays in a loop."""
    path = tmp_path_factory.mktemp("webcam") / "camera.y4m"
    with av.open(str(CLIP)) as src, av.open(str(path), mode="w", format="yuv4mpegpipe") as dst:
        s = src.streams.video[0]
        out = dst.add_stream("rawvideo", rate=25)
        out.width, out.height, out.pix_fmt = s.codec_context.width, s.codec_context.height, "yuv420p"
        for i, frame in enumerate(src.decode(s)):
            if i == 100:
                break
            frame = frame.reformat(format="yuv420p")
            frame.pts = None
            dst.mux(out.encode(frame))
        dst.mux(out.encode(None))
    return path


@pytest.fixture
def camera_page(fake_camera):
    """A Chromium page whose camera plays the fake_camera file."""
    yield from chromium_page(("--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                              f"--use-file-for-fake-video-capture={fake_camera}"))


@pytest.mark.browser
@pytest.mark.slow
def test_the_webcam_page_shows_results_of_the_first_chunks(worker, live_server, camera_page):  # noqa: F811
    page = camera_page
    name = f"cam{uuid.uuid4().hex[:6]}"
    page.goto(f"{live_server}/register")
    page.fill("#username", name)
    page.fill("#password", PASSWORD)
    page.fill("#confirm", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server}/")
    page.click("nav >> text=Webcam")
    page.wait_for_url(f"{live_server}/webcam")
    page.click("#webcam-start")
    page.wait_for_selector("#webcam-status:has-text('Recording')")
    # The first two chunks (3 s each) come back analysed, each with its frames and the face in it.
    page.wait_for_selector("#chunk-1[data-status=succeeded]", timeout=120_000)
    page.wait_for_selector("#chunk-0[data-status=succeeded]", timeout=30_000)
    page.click("#webcam-stop")
    shot(page, "webcam-results")
    for n in (0, 1):
        cells = page.locator(f"#chunk-{n} td").all_inner_texts()
        assert int(cells[2]) >= 30  # about 3 s of frames
        assert int(cells[3]) >= 1  # the person in the clip
        assert cells[4].endswith("%")
        assert float(cells[5].rstrip(" s")) < 60
    assert page.evaluate("document.getElementById('webcam-result').src").endswith("/video")
    # Stopped: the session's chunks, every one analysed, become one clip in the user's list.
    page.wait_for_selector("#webcam-status[data-clip=asked]", timeout=30_000)
    user_id = str(get_db().users.find_one({"username": name})["_id"])
    chunks = [wait_for_job(c["_id"], timeout=120) for c in get_db().jobs.find({"owner": f"webcam:{user_id}"})]
    assert len(chunks) >= 2 and all(c["status"] == jobs.SUCCEEDED for c in chunks), \
        [(c["seq"], c["size"], c.get("error")) for c in chunks]
    deadline = time.monotonic() + 60
    while not (listed := jobs.list_for(user_id)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert len(listed) == 1 and listed[0]["filename"].startswith("webcam ")  # the chunks are not listed
    clip = wait_for_job(listed[0]["_id"], timeout=180)
    assert clip["status"] == jobs.SUCCEEDED, clip.get("error")
    assert clip["chunks"] == len(chunks)
    assert clip["result"]["frames"] == sum(c["result"]["frames"] for c in chunks)
    # Joined from the chunks' results (each analysed with its place in the session's clip), not analysed
    # again: frames numbered on across every chunk, and the person in view all along is one person.
    from tests.worker.test_recorder import _joined_from_parts

    persons = _joined_from_parts(clip, chunks, clip["result"]["frames"])
    assert len(persons) == 1, persons
    assert not page.js_errors, page.js_errors
