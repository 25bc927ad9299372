"""Headless Chromium drives the product: register, upload a real clip, watch, seek, chart, download.

Needs the real worker (the `worker` fixture) and Debian's chromium; screenshots go to
artifacts/screenshots/ as test artefacts.
"""

from __future__ import annotations

import base64
import csv
import time
import uuid

import pytest

from shared import jobs
from tests.conftest import ARTIFACTS
from tests.web.conftest import PASSWORD, new_app, served
from tests.web.seed import jpeg

SHOTS = ARTIFACTS / "screenshots"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--autoplay-policy=no-user-gesture-required"]


class LiveServer(str):
    """The base URL of a served app; .app is the Flask app (for config changes)."""

    app = None


@pytest.fixture
def live_server(settings):
    """The app on a free loopback port, in a thread (threaded: the player opens several connections)."""
    app = new_app(settings.replace(secret_key=uuid.uuid4().hex))
    with served(app) as port:
        url = LiveServer(f"http://127.0.0.1:{port}")
        url.app = app
        yield url


@pytest.fixture
def page():
    """A Chromium page that accepts downloads."""
    yield from chromium_page(accept_downloads=True)


def chromium_page(args: tuple[str, ...] = (), **context):
    """A headless Chromium page (extra args to the browser; context options), collecting page errors."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[*ARGS, *args])
        context = browser.new_context(viewport={"width": 1280, "height": 900}, **context)
        pg = context.new_page()
        pg.set_default_timeout(30_000)
        errors: list[str] = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.on("console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None)
        pg.js_errors = errors
        yield pg
        context.close()
        browser.close()


def wait_until(page, expression: str, timeout: float = 30) -> None:
    """Poll a JS expression until truthy (page.evaluate is not subject to the page's CSP, unlike
    wait_for_function's in-page polling, and the app's CSP forbids eval)."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {timeout}s: {expression}")
        time.sleep(0.1)


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


@pytest.mark.browser
def test_register_upload_watch_seek_chart_and_download(worker, live_server, page, asset):
    clip = asset("clip_with_mask")
    name = f"view{uuid.uuid4().hex[:6]}"

    page.goto(f"{live_server}/register")
    page.fill("#username", name)
    page.fill("#password", PASSWORD)
    page.fill("#confirm", PASSWORD)
    shot(page, "01-register")
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server}/")
    assert name in page.inner_text("header")

    # The file picker path of the drop zone; upload.js sends it with XHR and shows progress.
    page.set_input_files("#file-input", str(clip))
    page.wait_for_selector(".upload-item.ok")
    row = page.locator("tr.clip").first
    assert clip.name in row.inner_text()
    shot(page, "02-uploaded")
    # The row turns succeeded by polling alone: no reload.
    page.wait_for_selector("tr.clip[data-status=succeeded]", timeout=240_000)
    shot(page, "03-clips-done")
    job_id = page.locator("tr.clip").first.get_attribute("data-id")
    done = jobs.get(job_id)
    assert done["status"] == "succeeded", done.get("error")
    assert page.locator("tr.clip .compliance .rate").first.inner_text().endswith("%")

    page.locator("tr.clip .name a").first.click()
    page.wait_for_url(f"{live_server}/clips/{job_id}")
    wait_until(page, "document.getElementById('player').readyState >= 2", timeout=30)
    duration = page.evaluate("document.getElementById('player').duration")
    assert abs(duration - done["result"]["duration_s"]) < 0.5

    # Seeking needs Range support end to end: the browser asks for byte ranges of the MP4.
    target = round(duration * 0.6, 2)
    page.evaluate("""t => new Promise(res => {
        const v = document.getElementById('player');
        v.addEventListener('seeked', () => res(), {once: true});
        v.currentTime = t;
    })""", target)
    wait_until(page, "document.getElementById('player').readyState >= 2")
    assert abs(page.evaluate("document.getElementById('player').currentTime") - target) < 0.1
    # Playing is waited for as an event (the position moving on), not measured against a timer.
    played = page.evaluate("""() => new Promise(res => {
        const v = document.getElementById('player');
        v.muted = true;
        const t0 = v.currentTime;
        const moved = () => { if (v.currentTime > t0 + 0.2) { v.pause(); res(v.currentTime - t0); } };
        v.addEventListener('timeupdate', moved);
        setTimeout(() => res(v.currentTime - t0), 60000);  // a generous deadline on a loaded machine
        v.play().catch(() => res(-1));
    })""")
    assert played > 0.2, f"the video did not play after seeking ({played})"

    # The chart is drawn, its cursor follows the player, a click on it seeks.
    page.wait_for_selector("#chart svg .rate-line", state="attached")
    bars = page.evaluate("Array.from(document.querySelectorAll('#chart svg path.bar'))"
                         ".map(p => p.getAttribute('d'))")
    assert any(d != "M0 0" for d in bars), "no bars in the chart"
    cursor_x = float(page.get_attribute("#chart svg .cursor", "x1"))
    box = page.locator("#chart svg").bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.2, box["y"] + box["height"] * 0.5)
    wait_until(page, f"document.getElementById('player').currentTime < {target - 1}")
    seeked_to = page.evaluate("document.getElementById('player').currentTime")
    assert seeked_to < duration * 0.3
    wait_until(page, "parseFloat(document.querySelector('#chart svg .cursor').getAttribute('x1'))"
                           f" < {cursor_x}")
    shot(page, "04-results")

    # The per-frame CSV downloads through the browser.
    with page.expect_download() as dl:
        page.click("#download-frames-csv")
    download = dl.value
    assert download.suggested_filename.endswith(".frames.csv")
    with open(download.path(), encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == done["result"]["frames"]
    assert int(rows[-1]["frame"]) == done["result"]["frames"] - 1
    assert not page.js_errors, page.js_errors


def sign_in(page, base: str, username: str) -> None:
    page.goto(f"{base}/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")


@pytest.mark.browser
def test_seeded_results_in_a_browser(live_server, page, alice, video, image, mongo, worker):
    """The results page without waiting for the worker: player, chart sync, violations, explain, pages."""
    sign_in(page, live_server, alice.username)
    shot(page, "10-clips")
    assert page.locator(f"tr.clip[data-id='{video['_id']}'] img.thumb").count() == 1

    page.goto(f"{live_server}/clips/{video['_id']}")
    wait_until(page, "document.getElementById('player').readyState >= 2")
    first = next(p for p in video["result"]["persons"] if p["vote"] in ("unmasked", "incorrect"))
    page.locator(f"button.violation[data-t='{first['first_s']}']").first.click()
    wait_until(page,
        f"Math.abs(document.getElementById('player').currentTime - {first['first_s']}) < 0.1")
    # The unit switch fetches the per-minute bins from the API and redraws.
    page.click(".unit-switch button[data-unit=minute]")
    page.wait_for_selector(".unit-switch button[data-unit=minute].active")
    page.click(".unit-switch button[data-unit=second]")
    page.hover("#chart svg", position={"x": 300, "y": 80})
    assert "faces" in page.inner_text("#chart-tip") or "face" in page.inner_text("#chart-tip")

    # Explain this face: the page asks, then shows the maps once the worker has written them.
    person = video["result"]["persons"][3]
    page.click(f"button.explain[data-track='{person['track_id']}']")
    page.wait_for_selector("#explain:not([hidden])")
    assert "Computing" in page.inner_text("#explain-status") or page.is_visible("#explain-images")
    # The real worker explains the seeded crop and writes 224 px overlays.
    page.wait_for_selector("#explain-images:not([hidden])", timeout=120_000)
    assert "Classifier says" in page.inner_text("#explain-label")
    wait_until(page, "document.getElementById('explain-gradcam').naturalWidth === 224")
    shot(page, "11-results-seeded")

    page.goto(f"{live_server}/clips/{image['_id']}")
    wait_until(page, "document.getElementById('result-image').naturalWidth > 0")
    shot(page, "12-image")
    for path, name in (("/settings", "13-settings"), ("/model", "14-model")):
        page.goto(f"{live_server}{path}")
        shot(page, name)
    assert not page.js_errors, page.js_errors


DROP = """([name, b64]) => {
    const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
    const dt = new DataTransfer();
    dt.items.add(new File([bytes], name, {type: name.endsWith(".jpg") ? "image/jpeg" : "video/mp4"}));
    const drop = new DragEvent("drop", {dataTransfer: dt, bubbles: true});
    document.getElementById("dropzone").dispatchEvent(drop);
}"""


@pytest.mark.browser
def test_drop_uploads_and_bad_files_in_a_browser(live_server, page, bob, mongo):
    """Files dropped on the zone upload; too large is refused before sending, bad types by the server."""
    live_server.app.config["UPLOAD_MAX_BYTES"] = 256 * 1024
    sign_in(page, live_server, bob.username)
    before = mongo.jobs.count_documents({"owner": bob.id})
    page.evaluate(DROP, ["door.jpg", base64.b64encode(jpeg(size=(64, 48))).decode()])
    page.wait_for_selector(".upload-item.ok")
    page.wait_for_selector("tr.clip >> text=door.jpg")
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if r.method == "POST" else None)
    page.evaluate(DROP, ["huge.mp4", base64.b64encode(b"\0" * (300 * 1024)).decode()])
    page.wait_for_selector(".upload-item.failed >> text=too large")
    assert "the limit is 256.0 KB" in page.inner_text(".upload-item.failed")
    page.evaluate(DROP, ["notes.mp4", base64.b64encode(b"just some text, not a video").decode()])
    page.wait_for_selector(".upload-item.failed >> text=not a supported video or image")
    assert len(requests) == 1, requests  # only notes.mp4 went to the server; huge.mp4 never left
    assert mongo.jobs.count_documents({"owner": bob.id}) == before + 1
    shot(page, "15-drop-uploads")
    assert not page.js_errors, page.js_errors


@pytest.mark.browser
def test_an_anonymised_copy_is_asked_for_on_the_results_page_downloaded_and_played(
        worker, live_server, page, alice, asset):
    import av

    from shared.celery_app import PROCESS_JOB, enqueue
    from tests.worker.helpers import stored_job

    clip = asset("real_clips") / "corridor_two_people.mp4"
    job = stored_job(clip, clip.name, owner=alice.id)
    enqueue(PROCESS_JOB, str(job["_id"]))
    sign_in(page, live_server, alice.username)
    page.goto(f"{live_server}/clips/{job['_id']}")
    # The pending page polls until done, then shows the results.
    page.wait_for_selector("#anonymise-button", timeout=240_000)
    page.click("#anonymise-button")
    page.wait_for_selector("#anon-status")
    shot(page, "10-anonymising")
    # The page polls the copy's state and shows its download once it is made (a reload, no click).
    page.wait_for_selector("#download-anonymised", timeout=300_000)
    assert "every face blurred" in page.inner_text("#download-anonymised + span")
    shot(page, "11-anonymised")
    with page.expect_download() as dl:
        page.click("#download-anonymised")
    download = dl.value
    assert download.suggested_filename == "corridor_two_people.anonymised.mp4"
    with av.open(download.path()) as c:
        frames = sum(1 for _ in c.decode(video=0))
    assert frames == jobs.get(job["_id"])["result"]["frames"]
    # It plays in the browser like the annotated video.
    page.goto(f"{live_server}/clips/{job['_id']}")
    url = page.get_attribute("#download-anonymised", "href")
    played = page.evaluate("""url => new Promise(res => {
        const v = document.createElement('video');
        v.muted = true; v.src = url;
        v.addEventListener('timeupdate', () => {
            if (v.currentTime > 0.2) { v.pause(); res(v.currentTime); }
        });
        v.addEventListener('error', () => res(-1));
        setTimeout(() => res(v.currentTime), 60000);
        document.body.appendChild(v);
        v.play().catch(() => res(-2));
    })""", url)
    assert played > 0.2, played
    assert not page.js_errors, page.js_errors
