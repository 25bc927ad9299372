"""A WebM that declares no frame rate (what a browser's MediaRecorder writes: the webcam check's chunks)
is analysed whole: its rate comes from its packets, not from FFmpeg's guess of 1000 fps."""

from __future__ import annotations

import random
from fractions import Fraction

import av
import numpy as np

from worker.pipeline.decode import VideoInfo, video_frames


def _rateless_webm(path, frames: int = 75) -> None:
    """VP8 at about 25 fps with jittered times (1 ms time base), remuxed so no rate is declared."""
    rng = random.Random(1)
    encoded = path.with_suffix(".enc.webm")
    with av.open(str(encoded), mode="w", format="webm") as out:
        s = out.add_stream("libvpx")
        s.width, s.height, s.pix_fmt = 160, 120, "yuv420p"
        s.codec_context.time_base = Fraction(1, 1000)
        t = 0
        for i in range(frames):
            image = np.full((120, 160, 3), (i * 7) % 255, np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
            frame.pts, frame.time_base = t, Fraction(1, 1000)
            t += rng.choice([33, 39, 40, 41, 47])
            for packet in s.encode(frame):
                out.mux(packet)
        for packet in s.encode(None):
            out.mux(packet)
    with av.open(str(encoded)) as src, av.open(str(path), mode="w", format="webm") as out:
        s = out.add_stream_from_template(src.streams.video[0])  # the template carries no frame rate
        for packet in src.demux(src.streams.video[0]):
            if packet.size:
                packet.stream = s
                out.mux(packet)


def test_a_webm_without_a_frame_rate_is_decoded_whole(tmp_path):
    path = tmp_path / "chunk.webm"
    _rateless_webm(path)
    with av.open(str(path)) as c:
        assert c.streams.video[0].average_rate is None  # as MediaRecorder's chunks (guessed: 1000)
    info = VideoInfo.from_path(path, max_pixels=10**7, max_seconds=3600)
    assert 20 <= info.fps <= 30
    assert sum(1 for _ in video_frames(path, info)) == 75  # not "only 75 of 2,960 frames: truncated"
