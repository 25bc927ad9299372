"""Which camera URLs are recorded, the sentence for those that are not, and credentials never shown."""

from __future__ import annotations

import pytest

from shared import cameras
from shared.camera_urls import check, hide_in, masked
from shared.config import set_settings
from shared.errors import BadInput


@pytest.mark.parametrize("url, sentence", [
    ("file:///etc/passwd", "file:// cannot be recorded: use an rtsp://, rtsps://, http:// or https://"),
    ("ftp://cam.example.com/x", "ftp:// cannot be recorded"),
    ("/dev/video0", "a URL without a scheme cannot be recorded"),
    ("rtsp://127.0.0.1:8554/cam", "the camera host 127.0.0.1 is a loopback, link-local or private address"),
    ("http://169.254.169.254/latest/meta-data", "169.254.169.254 is a loopback, link-local or private"),
    ("rtsp://192.168.1.20/stream1", "192.168.1.20 is a loopback, link-local or private address"),
    ("http://[::1]:8000/video.mjpg", "::1 is a loopback, link-local or private address"),
    ("rtsp://localhost/cam", "the camera host localhost is a loopback"),
    ("rtsp:///cam", "the camera URL names no host"),
])
def test_forbidden_urls_are_refused_with_a_sentence(url, sentence):
    with pytest.raises(BadInput) as e:
        check(url, allow_private=False)
    assert sentence in str(e.value)


def test_public_addresses_and_the_allowed_schemes_pass():
    for url in ("rtsp://8.8.8.8/cam", "rtsps://8.8.4.4:322/x", "http://1.1.1.1/video.mjpg",
                "https://1.0.0.1/live/index.m3u8"):
        assert check(url, allow_private=False) == url
    # LIVE_ALLOW_PRIVATE lets a LAN camera (or a test's loopback server) in; the scheme rule still holds.
    assert check("rtsp://192.168.1.20/stream1", allow_private=True)
    with pytest.raises(BadInput, match="file://"):
        check("file:///etc/passwd", allow_private=True)


def test_credentials_are_masked_everywhere_they_could_show():
    url = "rtsp://admin:s3cret@8.8.8.8:554/Streaming/Channels/101"
    assert masked(url) == "rtsp://***@8.8.8.8:554/Streaming/Channels/101"
    assert masked("http://1.1.1.1/x") == "http://1.1.1.1/x"
    err = f"Server returned 401 Unauthorized: '{url}' (user admin, password s3cret)"
    shown = hide_in(err, url)
    assert "s3cret" not in shown and "admin" not in shown and "rtsp://***@8.8.8.8:554" in shown


def test_a_camera_with_a_forbidden_url_is_not_created(mongo, settings):
    set_settings(settings.replace(live_allow_private=False))
    try:
        before = mongo.cameras.count_documents({})
        with pytest.raises(BadInput, match="file:// cannot be recorded"):
            cameras.create(name="x", url="file:///etc/shadow", owner="o")
        with pytest.raises(BadInput, match="loopback, link-local or private"):
            cameras.create(name="x", url="rtsp://10.0.0.5/cam", owner="o")
        assert mongo.cameras.count_documents({}) == before
    finally:
        set_settings(settings)
