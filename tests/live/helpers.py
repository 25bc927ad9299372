"""Real live sources on loopback for the tests: GStreamer's RTSP server and the recorders' supervisor."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from shared import cameras
from tests.net import ROOT, free_port

SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's, with python3-gi (bin/setup --test)
SHARED_CLIPS = ROOT.parent / "shared" / "data" / "clips"


def looped(src: Path, times: int, dest: Path, frames: int | None = None) -> int:
    """src's H.264 packets `times` over in one MP4 (no re-encoding), cut after `frames`; the frames."""
    import av

    from worker.recorder import concatenate

    concatenate([src] * times, dest)
    if frames is not None:
        whole = dest.with_name(f"whole-{dest.name}")
        dest.rename(whole)
        with av.open(str(whole)) as c, av.open(str(dest), mode="w", format="mp4") as out:
            stream = out.add_stream_from_template(c.streams.video[0])
            for packet in [p for p in c.demux(c.streams.video[0]) if p.size][:frames]:
                packet.stream = stream
                out.mux(packet)
        whole.unlink()
    with av.open(str(dest)) as c:
        return sum(1 for p in c.demux(c.streams.video[0]) if p.size)


class RtspServer:
    """rtsp://127.0.0.1:PORT/cam playing one MP4 from its start to every client (rtsp_server.py)."""

    def __init__(self, clip: Path, log: Path, port: int | None = None):
        self.clip, self.log = clip, log
        self.port = port or free_port()
        self.url = f"rtsp://127.0.0.1:{self.port}/cam"
        self.proc: subprocess.Popen | None = None

    def start(self) -> RtspServer:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        out = open(self.log, "ab")  # noqa: SIM115 - the child keeps its copy
        self.proc = subprocess.Popen([SYSTEM_PYTHON, str(ROOT / "tests/live/rtsp_server.py"), str(self.port),
                                      str(self.clip)], stdout=subprocess.PIPE, stderr=out,
                                     start_new_session=True)
        out.close()
        line = self.proc.stdout.readline()
        if b"ready" not in line:
            raise RuntimeError(f"the RTSP server did not start; see {self.log}")
        return self

    def kill(self) -> None:
        """SIGKILL: a camera that drops off the network."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, 9)
            self.proc.wait(10)


class Supervisor:
    """`python -m worker.recorders` with the test's environment; its output (and the recorders') in log."""

    def __init__(self, log: Path, env: dict):
        log.parent.mkdir(parents=True, exist_ok=True)
        self.log = log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "worker.recorders", "--every", "0.5"],
                                         cwd=ROOT, env={**os.environ, **env}, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()


def wait_status(camera_id, test, timeout: float, what: str) -> dict:
    """Poll the camera's status until test(status) holds; the status."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = cameras.status(camera_id)
        if test(st):
            return st
        time.sleep(0.2)
    raise AssertionError(f"camera {camera_id} not {what} after {timeout}s: {cameras.status(camera_id)}")


def resized(src: Path, dest: Path, sizes=((320, 240), (640, 480)), frames: int = 60, fps: int = 30) -> int:
    """An MP4 of src's first frames encoded at each size in turn (frames each, a keyframe every second,
    new parameter sets in-band where the size changes): a camera reconfigured mid-stream; frames in all."""
    from fractions import Fraction

    import av

    with av.open(str(src)) as c:
        images = [f.to_ndarray(format="rgb24") for _, f in zip(range(frames * len(sizes)), c.decode(video=0),
                                                               strict=False)]
    n = 0
    with av.open(str(dest), mode="w", format="mp4") as out:
        stream = out.add_stream("h264", rate=fps)
        stream.width, stream.height = sizes[0]
        for part, (w, h) in enumerate(sizes):
            enc = av.CodecContext.create("libx264", "w")
            enc.width, enc.height, enc.pix_fmt = w, h, "yuv420p"
            enc.time_base, enc.framerate = Fraction(1, fps), fps
            enc.options = {"preset": "ultrafast", "g": str(fps), "bframes": "0", "threads": "1"}  # one slice
            for image in images[part * frames:(part + 1) * frames]:
                frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(width=w, height=h,
                                                                                   format="yuv420p")
                frame.pts = n
                n += 1
                for packet in [*enc.encode(frame)]:
                    packet.stream, packet.time_base = stream, Fraction(1, fps)
                    out.mux(packet)
            for packet in enc.encode(None):
                packet.stream, packet.time_base = stream, Fraction(1, fps)
                out.mux(packet)
    return n
