"""An indexed MP4 copy of an upload whose container has no per-frame index (Matroska, MPEG-TS, AVI,
FLV: what NVRs and phones often export), so that a long one is planned and split like an MP4.

The packets are copied, never decoded or re-encoded (minutes of video in seconds); the copy is stored
in `uploads` beside the original, named by the plan (`source_id`) and deleted with the job. Anything
the MP4 muxer refuses leaves the clip to run whole, as before.
"""

from __future__ import annotations

import logging
from pathlib import Path

import av
from bson import ObjectId

from shared import storage
from shared.config import Settings
from shared.db import UPLOADS
from shared.errors import BadInput
from worker.pipeline.decode import VideoInfo

log = logging.getLogger(__name__)
INDEXED = {"mov", "mp4", "m4a", "3gp", "3g2", "mj2"}  # ffmpeg's names of the MP4 family: indexed already


def wanted(job: dict, settings: Settings) -> bool:
    """Whether the upload is long enough to split but in a container without a per-frame index."""
    seconds = job.get("segment_seconds")
    seconds = settings.segment_seconds if seconds is None else seconds
    if seconds <= 0 or job.get("kind") == "image":
        return False
    try:
        with storage.open_file(UPLOADS, job["input_id"]) as f, av.open(f, metadata_errors="ignore") as c:
            if INDEXED & set(c.format.name.split(",")) or not c.streams.video:
                return False
            info = VideoInfo.from_container(c, max_pixels=settings.max_pixels,
                                            max_seconds=settings.max_video_seconds)
    except (av.FFmpegError, BadInput):
        return False  # the unsplit run says what is wrong with the file
    return (info.duration_s or 0) >= 1.5 * seconds


def make(job: dict, workdir: Path) -> ObjectId | None:
    """Store the indexed copy of the job's upload; its id, or None when it cannot be made."""
    out = workdir / "indexed.mp4"
    try:
        with storage.open_file(UPLOADS, job["input_id"]) as f, \
                av.open(f, metadata_errors="ignore") as src, av.open(str(out), "w", format="mp4") as dst:
            stream = src.streams.video[0]
            copy = dst.add_stream_from_template(stream)
            for packet in src.demux(stream):
                if packet.dts is None and packet.pts is None:
                    continue  # the demuxer's end-of-stream marker
                if packet.pts is None:
                    packet.pts = packet.dts  # AVI stores decode times only
                packet.stream = copy
                dst.mux(packet)
    except (av.FFmpegError, ValueError) as e:
        log.info("job %s: no indexed copy (%s); it runs whole", job["_id"], e)
        return None
    with open(out, "rb") as f:
        return storage.put(UPLOADS, f, f"{Path(job['filename']).stem}.indexed.mp4", content_type="video/mp4",
                           metadata={"job_id": job["_id"], "role": "indexed copy"})
