"""HTTP cameras for real: an HLS playlist and an MJPEG stream (multipart/x-mixed-replace) served by a
small HTTP server on loopback, recorded (once, under two supervisors), every frame analysed."""

from __future__ import annotations

import http.server
import socketserver
import threading
import time

import av
import cv2
import psutil
import pytest

from shared import cameras, jobs, storage
from shared.config import set_settings
from shared.db import UPLOADS
from tests.conftest import ARTIFACTS, RUN_TAG, wait_for_job
from tests.live.helpers import SHARED_CLIPS, Supervisor, wait_status
from tests.worker.test_recorder import _joined_from_parts

CLIP = SHARED_CLIPS / "mall_corridor_2012.mp4"  # 320x240, 30 fps, 480 frames, keyframes at 0 and 8 s
HLS_FRAMES, MJPEG_FRAMES = 270, 60


class Camera(http.server.BaseHTTPRequestHandler):
    """/index.m3u8 (+ its .ts files) and /video.mjpg, each stream served to its first client only."""

    hls_dir = None
    jpegs: list[bytes] = []
    served: set = set()

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        name = self.path.lstrip("/")
        if name in ("index.m3u8", "video.mjpg") and name in self.served:
            self.send_error(404)  # a camera that sent its stream once
            return
        if name == "video.mjpg":
            self.served.add(name)
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            for jpeg in self.jpegs:
                self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n"
                                 % (len(jpeg), jpeg))
                self.wfile.flush()
                time.sleep(1 / 30)
            return
        path = self.hls_dir / name
        if "/" in name or not path.is_file():
            self.send_error(404)
            return
        if name == "index.m3u8":
            self.served.add(name)
        body = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def http_camera(tmp_path_factory):
    """The HTTP server's base URL (HLS of the clip in 4 s segments; its first frames as MJPEG)."""
    hls = tmp_path_factory.mktemp("hls")
    with av.open(str(CLIP)) as src, av.open(str(hls / "index.m3u8"), mode="w", format="hls",
                                            options={"hls_time": "4", "hls_playlist_type": "vod"}) as dst:
        s = src.streams.video[0]
        out = dst.add_stream_from_template(s)
        for packet in [p for p in src.demux(s) if p.size][:HLS_FRAMES]:
            packet.stream = out
            dst.mux(packet)
    jpegs = []
    with av.open(str(CLIP)) as src:
        for i, frame in enumerate(src.decode(video=0)):
            if i == MJPEG_FRAMES:
                break
            jpegs.append(cv2.imencode(".jpg", frame.to_ndarray(format="bgr24"))[1].tobytes())
    Camera.hls_dir, Camera.jpegs = hls, jpegs
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Camera)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _frames_of_upload(file_id) -> int:
    with storage.open_file(UPLOADS, file_id) as f, av.open(f) as c:
        return sum(1 for p in c.demux(c.streams.video[0]) if p.size)


@pytest.mark.slow
def test_hls_and_mjpeg_cameras_are_recorded_and_analysed(worker, settings, http_camera):
    set_settings(settings.replace(live_allow_private=True))
    env = {"LIVE_ALLOW_PRIVATE": "1", "LIVE_SEGMENT_SECONDS": "3", "LIVE_RETRY_MAX_S": "2"}
    # Two supervisors (two machines): each camera is still recorded by one recorder (its lease).
    sups = [Supervisor(ARTIFACTS / "logs" / f"recorders-http-{RUN_TAG}-{n}.log", env) for n in (1, 2)]
    try:
        cams = {HLS_FRAMES: cameras.create(name="hls", url=f"{http_camera}/index.m3u8", owner="o-http"),
                MJPEG_FRAMES: cameras.create(name="mjpeg", url=f"{http_camera}/video.mjpg", owner="o-http")}
        # Both supervisors start a recorder for each; the one without the lease ends by itself.
        ids = {str(c["_id"]) for c in cams.values()}
        deadline = time.monotonic() + 30
        while (running := _recorders(sups)) != {cid: [_holder_pid(cid)] for cid in ids}:
            assert time.monotonic() < deadline, f"recorders {running}, leases {[_holder_pid(c) for c in ids]}"
            time.sleep(0.2)
        time.sleep(2)
        assert _recorders(sups) == running  # and none is started again
        for sent, cam in cams.items():
            wait_status(cam["_id"], lambda s, n=sent: s.get("frames") == n and s["state"] == cameras.OFFLINE,
                        60, f"offline with {sent} frames")
            cameras.stop(cam["_id"])
        for sent, cam in cams.items():
            st = wait_status(cam["_id"], lambda s: s.get("done_recording"), 60, "joined")
            segs = [wait_for_job(s["_id"], timeout=180) for s in cameras.segments(cam["_id"])]
            assert all(s["status"] == jobs.SUCCEEDED for s in segs), [s.get("error") for s in segs]
            assert sum(s["result"]["frames"] for s in segs) == sent
            clip = wait_for_job(st["clip_ids"][0], timeout=180)
            assert _frames_of_upload(clip["input_id"]) == sent
            assert clip["status"] == jobs.SUCCEEDED, clip.get("error")
            _joined_from_parts(clip, segs, sent)  # from the segments' results, as any camera's
        mjpeg = cameras.segments(cams[MJPEG_FRAMES]["_id"])
        assert len(mjpeg) == 1 and mjpeg[0]["result"]["codec_in"] == "mjpeg"  # 2 s: one segment
        assert 1.5 < mjpeg[0]["result"]["duration_s"] < 3.5  # times from arrival: the stream has none
    finally:
        for sup in sups:
            sup.stop()
        set_settings(settings)


def _holder_pid(camera_id: str) -> int | None:
    """The pid of the recorder holding the camera's lease."""
    held = cameras.holder(camera_id)
    return int(held.rsplit(":", 1)[1]) if held else None


def _recorders(sups) -> dict[str, list[int]]:
    """{camera id: pids of the recorders running for it} under the supervisors."""
    out: dict[str, list[int]] = {}
    for sup in sups:
        for child in psutil.Process(sup.proc.pid).children():
            try:
                cmd = child.cmdline()
            except psutil.NoSuchProcess:
                continue
            if "worker.recorder" in cmd and child.status() != psutil.STATUS_ZOMBIE:
                out.setdefault(cmd[-1], []).append(child.pid)
    return out
