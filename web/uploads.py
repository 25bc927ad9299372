"""Upload checks by content, not by extension (magic bytes via `filetype`, no OpenCV here)."""

from __future__ import annotations

from typing import BinaryIO

import filetype

VIDEO_TYPES = {"video/mp4", "video/quicktime", "video/x-matroska", "video/webm", "video/x-msvideo",
               "video/x-m4v", "video/mpeg", "video/x-flv"}
IMAGE_TYPES = {"image/jpeg", "image/png", "image/webp", "image/bmp", "image/tiff"}


class UploadRejected(ValueError):
    """The upload is empty or not a supported video or image; the message is for the user."""


def sniff(stream: BinaryIO) -> tuple[str, str]:
    """('video' | 'image', MIME type) from the first bytes; rewinds the stream."""
    head = stream.read(8192)
    stream.seek(0)
    if not head:
        raise UploadRejected("The file is empty.")
    kind = filetype.guess(head)
    mime = kind.mime if kind else None
    if mime in VIDEO_TYPES:
        return "video", mime
    if mime in IMAGE_TYPES:
        return "image", mime
    raise UploadRejected(
        f"This file is not a supported video or image ({mime or 'unknown type'}). "
        "Upload MP4, MOV, MKV, AVI or WebM video, or JPEG/PNG images."
    )
