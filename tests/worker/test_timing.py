"""The benchmark's stage timer: each stage gets the CPU spent in it, codec threads count by name, the
stages and 'other' add up to the process's CPU time."""

from __future__ import annotations

import threading
import time

import cv2
import pytest

from tests.media import walking_faces, write_frames
from worker.pipeline import run
from worker.pipeline.threads import name_os_thread
from worker.pipeline.timing import STAGES, StageTimes, thread_stage

pytestmark = pytest.mark.skipif(not hasattr(time, "thread_time"), reason="needs a per-thread CPU clock")


def _burn(seconds: float) -> None:
    """Spend about `seconds` of this thread's CPU."""
    end = time.thread_time() + seconds
    x = 0
    while time.thread_time() < end:
        x += 1


def test_a_stage_gets_the_cpu_of_the_calls_inside_it_from_any_thread():
    times = StageTimes()
    with times.stage("detect"):
        _burn(0.05)

    def in_thread():
        with times.stage("classify"):
            _burn(0.08)

    t = threading.Thread(target=in_thread)
    t.start()
    t.join()
    time.sleep(0.05)  # waiting is not CPU: it must not count
    times.stop(frames=10)
    cpu = times.cpu_s()
    assert 0.05 <= cpu["detect"] < 0.07
    assert 0.08 <= cpu["classify"] < 0.10
    assert sum(cpu[s] for s in STAGES) + cpu["other"] == pytest.approx(cpu["total"], abs=1e-6)
    assert cpu["total"] >= cpu["detect"] + cpu["classify"]
    assert times.ms_per_frame()["classify"] == pytest.approx(1000 * cpu["classify"] / 10, abs=0.01)


def test_threads_named_encode_or_by_the_decoder_count_as_those_stages():
    assert thread_stage("av:h264:df0") == thread_stage("decode") == "decode"
    assert thread_stage("encode") == "encode" and thread_stage("python") is None
    times = StageTimes()
    done = threading.Event()

    def encoder():
        name_os_thread("encode")
        _burn(0.2)
        done.set()
        time.sleep(0.3)  # alive while sampled: an exited thread is no longer listed

    t = threading.Thread(target=encoder)
    t.start()
    done.wait()
    times.sample()
    t.join()
    times.stop(frames=1)
    cpu = times.cpu_s()
    # /proc counts in clock ticks (10 ms)
    assert 0.17 <= cpu["encode"] <= 0.25 and cpu["decode"] < 0.02


def test_the_frame_loop_fills_every_stage_and_counts_the_faces_classified(tmp_path, plumbing_models, asset):
    root = asset("mask_crops")
    faces = [cv2.imread(str(root / n)) for n in ("without_mask/without_mask_0001.jpg",
                                                  "without_mask/without_mask_0002.jpg")]
    src = write_frames(tmp_path / "two.mp4", (f for f, _ in walking_faces(faces, frames=30, face_px=90)))
    times = StageTimes()
    outcome = run.analyse_video(src, tmp_path, settings=run.Settings(), models=plumbing_models, times=times)
    assert times.frames == outcome.summary["frames"] == 30
    assert times.counts == {"faces": 60, "classified": 60}
    cpu = times.cpu_s()
    assert all(cpu[s] > 0 for s in ("detect", "track", "crop", "classify", "annotate")), cpu
    assert sum(cpu[s] for s in STAGES) + cpu["other"] == pytest.approx(cpu["total"], abs=1e-6)


def test_a_thread_that_worked_before_the_loop_counts_only_what_it_spends_during_it():
    busy, go, done = threading.Event(), threading.Event(), threading.Event()

    def pool_thread():  # like the classifier's pool, loaded and busy before this measurement
        name_os_thread("classify")
        _burn(0.3)
        busy.set()
        go.wait()
        _burn(0.1)
        done.set()
        time.sleep(0.3)  # alive while sampled

    t = threading.Thread(target=pool_thread)
    t.start()
    busy.wait()
    time.sleep(0.05)
    times = StageTimes()
    go.set()
    done.wait()
    times.stop(frames=1)
    t.join()
    cpu = times.cpu_s()
    assert 0.07 <= cpu["classify"] <= 0.15, cpu  # the 0.1 s since, not the 0.4 s of its life
    assert sum(cpu[s] for s in STAGES) + cpu["other"] == pytest.approx(cpu["total"], abs=1e-6)
