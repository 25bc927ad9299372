"""One camera's recorder: `python -m worker.recorder CAMERA_ID` (started by worker/recorders.py).

It pulls the stream with PyAV and copies its packets (never decodes: it cannot fall behind the stream
for lack of CPU), cuts a segment at the first keyframe after LIVE_SEGMENT_SECONDS, or at the keyframe
where the picture size changes (Params), and hands each segment to a storing thread that puts it in
GridFS and queues it as its own job at once (the reader never waits for the database). A camera that
drops (refused, timed out, the stream ended) is shown offline and retried with backoff up to
LIVE_RETRY_MAX_S; a new connection starts a new segment. When the recording ends (its duration, or
stopped) the segments are joined, packets copied with their times made continuous, into one clip of
the camera's owner (consecutive segments of one picture size per clip: a camera that changes size
starts another clip). Each segment is told where it lies in its clip (first frame, start time), so it is
analysed with the clip's frame numbers and times, and the clip's result is joined from the segments'
results (worker/live_join.py) instead of analysing the recording again.
"""

from __future__ import annotations

import logging
import os
import queue
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import av

from shared import cameras, jobs, storage
from shared.camera_urls import hide_in, masked
from shared.celery_app import PROCESS_JOB, enqueue
from shared.config import get_settings
from shared.db import UPLOADS, get_db
from shared.errors import NotFound

log = logging.getLogger("maskwatch.recorder")
OPEN_TIMEOUT_S = 10.0  # connecting, and the longest silence of a stream before it counts as dropped
CHECK_S = 1.0  # how often the camera's document is read (stopped? duration over?)


class Ended(Exception):
    """The recording is over: stopped, its duration reached, or the camera deleted."""


class Deleted(Ended):
    """The camera was deleted: nothing is joined or reported (its segments are being deleted)."""


class Terminated(Exception):
    """SIGTERM: store what was recorded and exit; the recording goes on when a recorder starts again."""


class Segment:
    """One segment being written: an MP4 of copied packets whose times start at 0."""

    def __init__(self, path: Path, template, seq: int, params: Params | None = None):
        self.path, self.seq = path, seq
        self.out = av.open(str(path), mode="w", format="mp4")
        self.stream = self.out.add_stream_from_template(template)
        opened_size = (template.codec_context.width, template.codec_context.height)
        if params is not None and params.size and params.size != opened_size:  # changed since it opened
            ctx = self.stream.codec_context
            ctx.width, ctx.height = params.size
            ctx.extradata = params.extradata
        self.time_base = template.time_base
        self.size = (self.stream.codec_context.width, self.stream.codec_context.height)
        self.base: int | None = None
        self.last_dts = -1
        self.frames = 0
        self.wall_start = time.time()

    def seconds(self, dts: int) -> float:
        """How long the segment is when a packet at dts starts (stream time)."""
        return 0.0 if self.base is None else float((dts - self.base) * self.time_base)

    def add(self, packet, pts: int, dts: int) -> None:
        """Mux one packet whose (filled-in) times are pts and dts in the input stream's time base."""
        if self.base is None:
            self.base = dts
        dts = max(dts - self.base, self.last_dts + 1)
        packet.dts, packet.pts = dts, max(pts - self.base, dts)
        self.last_dts = dts
        packet.stream = self.stream
        self.out.mux(packet)
        self.frames += 1

    def close(self) -> None:
        """Finish the file (its index written)."""
        self.out.close()
        self.wall_end = time.time()


class Params:
    """The H.264 parameter sets a stream's keyframes carry in-band, and the picture size they give.

    A camera that changes resolution sends new parameter sets with its next keyframe; packets are
    not decoded, so only a keyframe whose SPS differs from the last one is decoded once, to learn its
    size (a rare event: reconfigured cameras, NVR failovers).
    """

    def __init__(self, size: tuple[int, int] | None = None):
        self.sps: bytes | None = None
        self.extradata = b""
        self.size = size

    def changed(self, packet, codec: str) -> bool:
        """Whether this keyframe gives another picture size than the one before."""
        if codec != "h264":
            return False
        nals = annexb_nals(bytes(packet))
        sps = next((n for n in nals if n and n[0] & 0x1F == 7), None)
        if sps is None or sps == self.sps:
            return False
        first = self.sps is None
        self.sps = sps
        self.extradata = b"".join(b"\x00\x00\x00\x01" + n for n in nals if n and n[0] & 0x1F in (7, 8))
        if first and self.size:
            return False  # the size the stream was opened with
        size = keyframe_size(packet)
        if size is None or size == self.size:
            return False
        self.size = size
        return True


def annexb_nals(data: bytes) -> list[bytes]:
    """The NAL units of an Annex B access unit (what RTSP, MPEG-TS and HLS carry); [] for other layouts."""
    starts, i = [], data.find(b"\x00\x00\x01")
    while i >= 0:
        starts.append(i + 3)
        i = data.find(b"\x00\x00\x01", i + 3)
    ends = [s - 3 for s in starts[1:]] + [len(data)]
    return [data[a:b].rstrip(b"\x00") for a, b in zip(starts, ends, strict=True)]


def keyframe_size(packet) -> tuple[int, int] | None:
    """(width, height) of one H.264 keyframe, decoded on its own."""
    try:
        decoder = av.CodecContext.create("h264", "r")
        frames = [*decoder.decode(packet), *decoder.decode(None)]
    except av.error.FFmpegError:
        return None
    return (frames[0].width, frames[0].height) if frames else None


class Store(threading.Thread):
    """Stores finished segments in GridFS and queues each as a job, in order, off the reading thread."""

    def __init__(self, camera: dict, recording_id: str, on_stored, done: list[dict] = ()):
        super().__init__(name="store", daemon=True)
        self.camera, self.recording_id, self.on_stored = camera, recording_id, on_stored
        self.todo: queue.Queue = queue.Queue()
        self.handed = self.stored = len(done)
        self.frames = sum(d.get("frames_recorded") or 0 for d in done)
        # Where the next segment starts in its clip: (picture size, first frame, start in seconds).
        last = max(done, key=lambda d: d["seq"], default=None)
        self.next = (None, 0, 0.0) if last is None or last.get("t0") is None else (
            tuple(last["size_wh"]), last["first_frame"] + last["frames_recorded"],
            last["t0"] + last["span_s"])

    def hand(self, seg: Segment) -> None:
        """Store seg soon (in this thread)."""
        self.handed += 1
        self.todo.put(seg)

    def run(self) -> None:
        while (seg := self.todo.get()) is not None:
            try:
                self._store(seg)
            except Exception:  # noqa: BLE001 - a segment lost to an outage must not stop the recording
                log.exception("camera %s: segment %d could not be stored", self.camera["_id"], seg.seq)
            finally:
                seg.path.unlink(missing_ok=True)
                self.stored += 1
                self.on_stored()

    def _store(self, seg: Segment) -> None:
        cam = self.camera
        size, first, t0 = self.next
        if size != seg.size:
            first, t0 = 0, 0.0  # another picture size starts another clip (Recorder.join_recording)
        span = file_span(seg.path)
        name = f"{cam['name']}-{seg.seq:05d}.mp4"
        file_id = storage.put_path(UPLOADS, seg.path, name, content_type="video/mp4",
                                   metadata={"camera_id": cam["_id"], "recording_id": self.recording_id})
        job = jobs.create(owner=cameras.owner_of_segments(cam["_id"]), filename=name, kind="video",
                          input_id=file_id, size=seg.path.stat().st_size, content_type="video/mp4")
        fields = {"camera_id": cam["_id"], "recording_id": self.recording_id, "seq": seg.seq,
                  "frames_recorded": seg.frames, "size_wh": list(seg.size), "wall_start": seg.wall_start,
                  "wall_end": seg.wall_end, "stored_at": time.time(), "first_frame": first, "t0": t0,
                  "span_s": span}
        get_db().jobs.update_one({"_id": job["_id"]}, {"$set": fields})  # before it is queued: one writer
        enqueue(PROCESS_JOB, str(job["_id"]))
        self.next = (seg.size, first + seg.frames, t0 + span)
        self.frames += seg.frames
        log.info("camera %s: segment %d stored and queued (%d frames, %.1f s after its end)", cam["_id"],
                 seg.seq, seg.frames, time.time() - seg.wall_end)

    def finish(self) -> None:
        """Wait until every handed segment is stored (again: at once)."""
        if self.is_alive():
            self.todo.put(None)
            self.join()


class Recorder:
    """Records one recording of one camera until it ends; then joins it into a clip."""

    def __init__(self, camera_id):
        self.camera = cameras.get(camera_id)
        self.id = self.camera["_id"]
        self.recording_id = self.camera["recording_id"]
        self.settings = get_settings()
        self.workdir = Path(tempfile.mkdtemp(prefix=f"maskwatch-rec-{self.id}-"))
        # A recorder started again (its predecessor crashed) goes on with the same recording.
        done = list(get_db().jobs.find({"owner": cameras.owner_of_segments(self.id),
                                        "recording_id": self.recording_id},
                                       {"seq": 1, "frames_recorded": 1, "size_wh": 1, "first_frame": 1,
                                        "t0": 1, "span_s": 1}))
        self.seq = len(done)
        self.lock = threading.Lock()  # the reading and the storing thread both report
        self.store = Store(self.camera, self.recording_id, on_stored=self.report, done=done)
        self.state = cameras.STARTING
        self.error: str | None = None
        self.checked = self.beat = 0.0
        self.started_at = self.camera.get("started_at") or time.time()
        self.terminated = False
        self.holder = f"{socket.gethostname()}:{os.getpid()}"  # its lease (cameras.claim)

    def report(self, **extra) -> None:
        """Write the status: state, stored segments and frames, segments still being stored."""
        extra.setdefault("done_recording", False)  # not the previous recording's
        extra.setdefault("clip_ids", [])
        with self.lock:
            cameras.report(self.id, state=self.state, error=self.error, recording_id=self.recording_id,
                           pid=os.getpid(), segments=self.store.stored, frames=self.store.frames,
                           storing=self.store.handed - self.store.stored, **extra)

    def check(self, force: bool = False) -> None:
        """Raise Ended when the recording should stop; beat the status every BEAT_S."""
        if self.terminated:
            raise Terminated
        now = time.monotonic()
        if now - self.beat >= cameras.BEAT_S:
            self.beat = now
            if not cameras.renew(self.id, self.holder):
                log.warning("camera %s: its lease was taken over; this recorder stops", self.id)
                raise Terminated
            self.report()
        if not force and now - self.checked < CHECK_S:
            return
        self.checked = now
        try:
            cam = cameras.get(self.id)
        except NotFound:
            raise Deleted("deleted") from None
        if not cam.get("wanted") or cam.get("recording_id") != self.recording_id:
            raise Ended("stopped")
        duration = cam.get("duration_s")
        if duration and time.time() >= self.started_at + duration:
            raise Ended("its duration is over")

    def run(self) -> None:
        """Record until the recording ends, reconnecting with backoff; then join."""
        if not cameras.claim(self.id, self.holder):
            log.info("camera %s is recorded by %s already", self.id, cameras.holder(self.id))
            shutil.rmtree(self.workdir, ignore_errors=True)
            return
        for stale in Path(tempfile.gettempdir()).glob(f"maskwatch-rec-{self.id}-*"):
            if stale != self.workdir:  # with the lease: a killed predecessor's unfinished segment
                shutil.rmtree(stale, ignore_errors=True)
        self.store.start()
        try:
            ended = self.record()
            self.store.finish()
            if ended:
                clip_ids = self.join_recording()
                self.state = cameras.STOPPED
                self.report(done_recording=True, clip_ids=clip_ids)
        finally:
            self.store.finish()  # whatever ends the recorder: what was recorded is stored
            shutil.rmtree(self.workdir, ignore_errors=True)
            cameras.release(self.id, self.holder)

    def record(self) -> bool:
        """Pull connection after connection; True when the recording is over (False: SIGTERM, deleted)."""
        backoff = 1.0
        try:
            while True:
                self.check(force=True)
                try:
                    self.pull()
                    self.error = "the stream ended"
                    backoff = 1.0  # it was up: reconnect soon
                except Ended:
                    raise
                except (av.error.FFmpegError, OSError, RuntimeError, ValueError) as e:
                    self.error = hide_in(f"{type(e).__name__}: {e}", self.camera["url"])
                log.warning("camera %s (%s) offline: %s; retrying in %.0f s", self.id,
                            masked(self.camera["url"]), self.error, backoff)
                self.state = cameras.OFFLINE
                self.report()
                deadline = time.monotonic() + backoff
                while time.monotonic() < deadline:
                    self.check()
                    time.sleep(0.2)
                backoff = min(backoff * 2, self.settings.live_retry_max_s)
        except Terminated:
            log.info("camera %s: recorder stopped; the recording goes on with the next one", self.id)
            return False
        except Deleted:
            get_db().camera_status.delete_one({"_id": str(self.id)})  # a beat may have followed the delete
            log.info("camera %s deleted: recording %s not joined", self.id, self.recording_id)
            return False
        except Ended as e:
            log.info("camera %s: recording %s ends: %s", self.id, self.recording_id, e)
            return True

    def pull(self) -> None:
        """One connection: copy packets into segments until the stream ends or the recording does."""
        url = self.camera["url"]
        options = {"rtsp_transport": "tcp"} if url.lower().startswith("rtsp") else {}
        container = av.open(url, options=options, timeout=(OPEN_TIMEOUT_S, OPEN_TIMEOUT_S))
        seg: Segment | None = None
        try:
            stream = container.streams.video[0]
            tb = stream.time_base
            self.state, self.error = cameras.RECORDING, None
            self.report()
            opened = time.monotonic()
            last: int | None = None
            params = Params((stream.codec_context.width, stream.codec_context.height)
                            if stream.codec_context.width else None)
            for packet in container.demux(stream):
                self.check()
                if packet.size == 0:
                    continue
                if seg is None and not packet.is_keyframe:
                    continue  # a segment starts at a keyframe
                dts = packet.dts if packet.dts is not None else packet.pts
                if dts is None:  # no times (RTSP before its first sender report, MJPEG): fill them in
                    step = packet.duration or max(1, int((time.monotonic() - opened) / tb) - (last or 0))
                    dts = 0 if last is None else last + step
                pts = packet.pts if packet.pts is not None else dts
                last = dts
                resized = packet.is_keyframe and params.changed(packet, stream.codec_context.name)
                if seg is not None and (resized or (packet.is_keyframe and
                                                    seg.seconds(dts) >= self.settings.live_segment_seconds)):
                    self.hand_over(seg)
                    seg = None
                if seg is None:
                    seg = Segment(self.workdir / f"seg-{self.seq:05d}.mp4", stream, self.seq, params)
                    self.seq += 1
                seg.add(packet, pts, dts)
        finally:
            if seg is not None:
                self.hand_over(seg)
            container.close()

    def hand_over(self, seg: Segment) -> None:
        seg.close()
        if seg.frames:
            self.store.hand(seg)
        else:
            seg.path.unlink(missing_ok=True)

    def join_recording(self) -> list[str]:
        """The recording's segments as clips of the camera's owner (one per run of one picture size)."""
        segs = list(get_db().jobs.find({"owner": cameras.owner_of_segments(self.id),
                                        "recording_id": self.recording_id}).sort("seq", 1))
        runs: list[list[dict]] = []
        for s in segs:
            if runs and runs[-1][-1].get("size_wh") == s.get("size_wh"):
                runs[-1].append(s)
            else:
                runs.append([s])
        clip_ids = []
        for n, run in enumerate(runs):
            try:
                clip_ids.append(str(self.join_run(run, n)))
            except Exception:  # noqa: BLE001 - the segments stay listed on the live page
                log.exception("camera %s: recording %s could not be joined", self.id, self.recording_id)
        return clip_ids

    def join_run(self, segs: list[dict], n: int):
        """Concatenate the segments' stored files into one MP4, store it, queue it; the clip's id."""
        paths = [storage.save_to(UPLOADS, s["input_id"], self.workdir / f"in-{s['seq']:05d}.mp4")
                 for s in segs]
        out = self.workdir / "recording.mp4"
        concatenate(paths, out)
        when = datetime.fromtimestamp(segs[0].get("wall_start") or time.time(), UTC)
        name = f"{self.camera['name']} {when:%Y-%m-%d %H-%M-%S}{f' ({n + 1})' if n else ''}.mp4"
        file_id = storage.put_path(UPLOADS, out, name, content_type="video/mp4",
                                   metadata={"camera_id": self.id, "recording_id": self.recording_id})
        job = jobs.create(owner=self.camera["owner"], filename=name, kind="video", input_id=file_id,
                          size=out.stat().st_size, content_type="video/mp4")
        get_db().jobs.update_one({"_id": job["_id"]}, {"$set": {
            "camera_id": self.id, "recording_id": self.recording_id,
            "frames_recorded": sum(s.get("frames_recorded") or 0 for s in segs),
            "live_parts": [s["_id"] for s in segs]}})  # its result is joined from theirs
        enqueue(PROCESS_JOB, str(job["_id"]))
        for p in [*paths, out]:
            p.unlink(missing_ok=True)
        log.info("camera %s: recording %s joined into clip %s (%d segments)", self.id, self.recording_id,
                 job["_id"], len(segs))
        return job["_id"]


def _packets(src):
    """The video packets of an open file with their times (dts filled in from pts), and the time a
    packet lasts (seconds: one frame at the file's rate)."""
    s = src.streams.video[0]
    step = 1 / float(s.average_rate or 25)
    for packet in src.demux(s):
        if packet.dts is None and packet.pts is not None:
            packet.dts = packet.pts  # WebM from MediaRecorder: no B-frames, no dts
        if packet.dts is not None:
            yield packet, step


def file_span(path: Path) -> float:
    """Seconds from a file's start to the end of its last frame: where concatenate starts the next file."""
    return file_facts(path)[1]


def file_facts(path: Path) -> tuple[int, float]:
    """(frames, span): the file's video packets that hold a frame, and file_span."""
    frames, span = 0, 0.0
    with av.open(str(path)) as src:
        tb = src.streams.video[0].time_base
        for p, step in _packets(src):
            frames += p.size > 0
            span = max(span, float((p.pts if p.pts is not None else p.dts) * tb) + step)
    return frames, span


def concatenate(paths: list[Path], out: Path, fmt: str = "mp4") -> Path:
    """The files' video packets in order in one file (+faststart MP4, or fmt), each file's times following
    the last's (each file starts file_span of the ones before it later)."""
    options = {"movflags": "+faststart"} if fmt == "mp4" else {}
    with av.open(str(out), mode="w", format=fmt, options=options) as dst:
        stream = None
        offset = 0.0  # seconds: where the next file starts
        for path in paths:
            with av.open(str(path)) as src:
                s = src.streams.video[0]
                if stream is None:
                    stream = dst.add_stream_from_template(s)
                tb = s.time_base
                end = offset
                shift = round(offset / tb)
                for packet, step in _packets(src):
                    packet.dts += shift
                    packet.pts = (packet.pts if packet.pts is not None else packet.dts - shift) + shift
                    end = max(end, float(packet.pts * tb) + step)
                    packet.stream = stream
                    dst.mux(packet)
                offset = end
    return out


def main(argv: list[str]) -> None:
    """Record the camera named by argv[0] (its current recording)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("libav").setLevel(logging.ERROR)
    recorder = Recorder(argv[0])
    signal.signal(signal.SIGTERM, lambda *_: setattr(recorder, "terminated", True))
    recorder.run()


if __name__ == "__main__":
    main(sys.argv[1:])
