"""A real RTSP server for the live tests: GStreamer's gst-rtsp-server (Debian), one MP4 file per mount.

Run by the system python3 (python3-gi, gir1.2-gst-rtsp-server-1.0; `bin/setup --test`):
    python3 tests/live/rtsp_server.py PORT FILE.mp4      -> rtsp://127.0.0.1:PORT/cam
The first client that connects gets the file played from its start in real time (H.264 packets as
stored, not re-encoded) and the session ends at its end; later clients are refused (404): a camera
that sent exactly the file, once. Prints "ready" once it listens.
"""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main(port: str, path: str) -> None:
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(f'( filesrc location="{path}" ! qtdemux ! h264parse ! '
                       'rtph264pay name=pay0 pt=96 config-interval=-1 )')
    factory.set_shared(False)  # the client gets the first frame
    mounts = server.get_mount_points()
    mounts.add_factory("/cam", factory)
    factory.connect("media-configure", lambda _f, media: media.connect(
        "unprepared", lambda *_: mounts.remove_factory("/cam")))
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on 127.0.0.1:{port}")
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
