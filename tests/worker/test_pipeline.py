"""The frame loop on its own (no queue): containers and codecs, rotation, variable frame rate, odd sizes,
still images, batching across frames, frame documents, cancel. The mask network is a stand-in here.
"""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from shared.config import Settings
from shared.errors import BadInput, Cancelled
from tests.media import (
    frame_times,
    make_clip,
    make_vfr_clip,
    probe,
    set_display_rotation,
    walking_faces,
    write_frames,
)
from worker.pipeline import run

SETTINGS = Settings()


def analyse(src: Path, workdir: Path, models, **kw):
    docs: list[dict] = []
    outcome = run.analyse(src, workdir, kind=kw.pop("kind", "video"), settings=kw.pop("settings", SETTINGS),
                          models=models, on_frame=docs.append, **kw)
    return outcome, docs


@pytest.mark.parametrize(("name", "fmt", "codec", "pix_fmt", "size"), [
    ("h264.mp4", None, "libx264", "yuv420p", (322, 242)),
    ("hevc.mov", "mov", "libx265", "yuv420p", (320, 240)),
    ("mpeg4.mkv", "matroska", "mpeg4", "yuv420p", (320, 240)),
    ("mjpeg-odd.avi", "avi", "mjpeg", "yuvj420p", (321, 241)),
    ("vp8.webm", "webm", "libvpx", "yuv420p", (320, 240)),
    ("vp9.webm", "webm", "libvpx-vp9", "yuv420p", (320, 240)),
    ("h264-444-odd.mkv", "matroska", "libx264", "yuv444p", (321, 241)),
])
def test_every_container_and_codec_gives_browser_h264(tmp_path, plumbing_models, name, fmt, codec, pix_fmt,
                                                        size):
    src = make_clip(tmp_path / name, frames=12, size=size, codec=codec, fmt=fmt, pix_fmt=pix_fmt)
    outcome, docs = analyse(src, tmp_path, plumbing_models)
    info = probe(outcome.output_path)
    assert info["codec"] == "h264" and info["pix_fmt"] == "yuv420p" and info["faststart"]
    assert info["frames"] == 12 == outcome.summary["frames"] == len(docs)
    # yuv420p needs even sizes: odd ones lose their last column/row, nothing is stretched.
    assert (info["width"], info["height"]) == (size[0] - size[0] % 2, size[1] - size[1] % 2)
    assert outcome.summary["width"] == size[0] and outcome.summary["height"] == size[1]
    assert outcome.output_type == "video/mp4" and outcome.thumbnail_path.stat().st_size > 0


# clockwise turn a player applies -> (the rotation reported, ffmpeg's counter-clockwise convention;
# the upright size; where the stored top-left block must end up, as (rows, columns) predicates)
TURNS = {
    90: (270, (240, 320), lambda ys, xs: ys.mean() < 80 and xs.mean() > 160),  # top-right
    180: (180, (320, 240), lambda ys, xs: ys.mean() > 160 and xs.mean() > 240),  # bottom-right
    270: (90, (240, 320), lambda ys, xs: ys.mean() > 240 and xs.mean() < 80),  # bottom-left
}


@pytest.mark.parametrize("clockwise", sorted(TURNS))
def test_phone_clip_is_turned_upright(tmp_path, plumbing_models, clockwise):
    rotation, size, in_place = TURNS[clockwise]
    marked = []
    for _ in range(6):
        img = np.zeros((240, 320, 3), np.uint8)
        img[:60, :80] = (0, 0, 255)  # a red block in the stored picture's top-left corner
        marked.append(img)
    src = set_display_rotation(write_frames(tmp_path / "phone.mp4", marked), clockwise)
    outcome, docs = analyse(src, tmp_path, plumbing_models)
    s = outcome.summary
    assert (s["width"], s["height"], s["rotation"]) == (*size, rotation)
    info = probe(outcome.output_path)
    assert (info["width"], info["height"]) == size
    import av

    with av.open(str(outcome.output_path)) as c:
        first = next(c.decode(video=0)).to_ndarray(format="bgr24")
    ys, xs = np.nonzero((first[:, :, 2] > 150) & (first[:, :, 1] < 100))
    # Turned clockwise for display, as players do.
    assert len(ys) > 0 and in_place(ys, xs), (ys.mean(), xs.mean())


def test_variable_frame_rate_keeps_every_frame_at_its_time(tmp_path, plumbing_models):
    times = [0.0, 0.04, 0.08, 0.2, 0.24, 0.5, 0.52, 0.9, 1.0, 1.6]
    src = make_vfr_clip(tmp_path / "vfr.mp4", times)
    assert frame_times(src) == pytest.approx(times, abs=1e-3)
    outcome, docs = analyse(src, tmp_path, plumbing_models)
    assert frame_times(outcome.output_path) == pytest.approx(times, abs=1e-3)
    assert [d["t"] for d in docs] == pytest.approx(times, abs=1e-3)
    assert [d["frame"] for d in docs] == list(range(len(times)))


def face_images(asset, names: list[str]) -> list[np.ndarray]:
    root = asset("mask_crops")
    return [cv2.imread(str(root / n)) for n in names]


def test_faces_of_several_frames_are_classified_in_one_call(tmp_path, plumbing_models, asset):
    faces = face_images(asset, ["without_mask/without_mask_0001.jpg", "without_mask/without_mask_0002.jpg"])
    frames = (f for f, _ in walking_faces(faces, frames=20, size=(480, 270), face_px=90, step=2))
    src = write_frames(tmp_path / "two.mp4", frames)
    outcome, docs = analyse(src, tmp_path, plumbing_models)
    calls = plumbing_models.classifier.calls
    # 20 frames, 2 faces each, a window of 8 frames: 3 calls of 16, 16 and 8 crops, not 40 calls.
    assert sum(calls) == sum(len(d["faces"]) for d in docs) == 40
    assert len(calls) == 3 and max(calls) == 16
    s = outcome.summary
    assert s["people"]["total"] == 2 and s["face_frames"]["total"] == 40
    assert {f["track"] for d in docs for f in d["faces"]} == {1, 2}
    assert s["models"]["classifier"]["name"] == "colour-stand-in"
    assert s["models"]["detector"]["name"] == "yunet" and len(s["models"]["detector"]["sha256"]) == 64
    assert s["settings"]["rules"]["classify_window"] == 8


def test_cancel_stops_the_loop_and_its_threads(tmp_path, plumbing_models):
    src = make_clip(tmp_path / "long.mp4", frames=300, size=(320, 240))
    before = threading.active_count()
    seen = []

    def on_progress(done, **kw):
        seen.append(done)
        if done == 20:
            raise Cancelled("cancelled by the user")

    with pytest.raises(Cancelled):
        run.analyse(src, tmp_path, kind="video", settings=SETTINGS, models=plumbing_models,
                    on_progress=on_progress)
    assert seen[-1] == 20
    assert threading.active_count() == before  # decode and encode threads are gone


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_still_image_goes_through_the_same_stages(tmp_path, plumbing_models, asset, suffix):
    faces = face_images(asset, ["without_mask/without_mask_0003.jpg", "with_mask/with_mask_0007.jpg"])
    frame, boxes = next(walking_faces(faces, frames=1, size=(640, 360), face_px=120))
    src = tmp_path / f"photo{suffix}"
    cv2.imwrite(str(src), frame)
    outcome, docs = analyse(src, tmp_path, plumbing_models, kind="image")
    assert outcome.output_type == "image/jpeg"
    out = cv2.imread(str(outcome.output_path))
    assert out.shape == frame.shape and not np.array_equal(out, frame)  # annotated
    assert len(docs) == 1 and docs[0]["frame"] == 0 and len(docs[0]["faces"]) == 2
    s = outcome.summary
    assert s["frames"] == 1 and s["people"]["total"] == 2 and set(outcome.crops) == {1, 2}
    for face, truth in zip(sorted(docs[0]["faces"], key=lambda f: f["box"][0]), boxes, strict=True):
        x1, y1, x2, y2 = face["box"]
        assert abs((x1 + x2) / 2 - (truth[0] + truth[2]) / 2) < 30
    assert s["models"]["detector"]["params"]["profile"] == "still"


def test_large_frames_are_scaled_down_to_the_output_cap(tmp_path, plumbing_models):
    src = make_clip(tmp_path / "big.mp4", frames=8, size=(1280, 720))
    outcome, docs = analyse(src, tmp_path, plumbing_models, settings=SETTINGS.replace(output_max_height=360))
    info = probe(outcome.output_path)
    assert (info["width"], info["height"]) == (640, 360) and info["frames"] == 8
    assert (outcome.summary["output_width"], outcome.summary["output_height"]) == (640, 360)
    # The analysis saw the full frames: boxes and sizes are in input pixels.
    assert (outcome.summary["width"], outcome.summary["height"]) == (1280, 720)


def test_settings_from_the_environment_set_the_limits_and_the_encoder(tmp_path, plumbing_models):
    env = {"MAX_PIXELS": "50000", "MAX_VIDEO_SECONDS": "60", "X264_PRESET": "ultrafast"}
    settings = Settings.from_env(env)
    clip = make_clip(tmp_path / "vga.mp4", frames=6, size=(320, 240))  # 76,800 pixels a frame
    with pytest.raises(BadInput, match=r"the video is 320x240 pixels; .* up to 50,000 pixels per frame"):
        analyse(clip, tmp_path, plumbing_models, settings=settings)
    photo = tmp_path / "big.png"
    cv2.imwrite(str(photo), np.zeros((240, 320, 3), np.uint8))
    with pytest.raises(BadInput, match=r"up to 50,000 pixels"):
        analyse(photo, tmp_path, plumbing_models, settings=settings, kind="image")
    long = make_vfr_clip(tmp_path / "long.mp4", [0.0, 0.04, 90.0])
    with pytest.raises(BadInput, match="the video lasts 2 minutes; the limit is 1 minutes"):
        analyse(long, tmp_path, plumbing_models, settings=settings)
    # Within the limits the annotated output is encoded with the preset asked for (x264 writes its
    # options into the stream: subme=0 is ultrafast's, the default veryfast's is subme=2).
    small = make_clip(tmp_path / "small.mp4", frames=6, size=(160, 120))
    for d in ("fast", "default"):
        (tmp_path / d).mkdir()
    fast, _ = analyse(small, tmp_path / "fast", plumbing_models, settings=settings)
    default, _ = analyse(small, tmp_path / "default", plumbing_models, settings=Settings.from_env({}))
    assert b"subme=0 " in fast.output_path.read_bytes()
    assert b"subme=2 " in default.output_path.read_bytes()
