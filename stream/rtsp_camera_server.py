"""An RTSP camera made of a clip: serves one H.264 .mp4 with GStreamer's gst-rtsp-server.

:class:`fakewatch.stream.rtsp_camera.RtspCamera` starts it. It runs under the system
interpreter, which has PyGObject (``gi``) from Debian's packages, not under fakewatch's
own environment, so it imports nothing of fakewatch:

    /usr/bin/python3 rtsp_camera_server.py --port 8554 --clip clip.mp4 [--user U --password P]

It prints ``ready rtsp://127.0.0.1:PORT/live`` once listening (``--port 0`` picks a free port
and prints it) and exits cleanly on SIGTERM or SIGINT.

The media is not shared: every client gets its own pipeline, so it receives the clip from its
first frame, paced in real time by the pipeline clock, like a camera that starts when you
connect. (A shared pipeline would hand a late client the clip's middle, and clips encoded with
libx264's defaults have one keyframe only, so it might decode nothing.) At the end of the clip
the server sends an RTCP BYE, which FFmpeg/PyAV reads as a clean end of stream.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8554, help="0 picks a free port")
    parser.add_argument("--mount", default="/live")
    parser.add_argument("--clip", required=True, help="an H.264 .mp4 file")
    parser.add_argument("--user", help="require HTTP basic auth with this user name")
    parser.add_argument("--password", default="")
    args = parser.parse_args()
    if not Path(args.clip).is_file():
        parser.error(f"no such clip: {args.clip}")

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    location = args.clip.replace("\\", "\\\\").replace('"', '\\"')
    factory.set_launch(
        f'( filesrc location="{location}" ! qtdemux ! h264parse '
        "! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )
    factory.set_shared(False)  # one pipeline per client: each starts at the clip's start
    if args.user:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "user")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password), token)
        server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        for permission in ("media.factory.access", "media.factory.construct"):
            permissions.add_permission_for_role("user", permission, True)
        factory.set_permissions(permissions)
    server.get_mount_points().add_factory(args.mount, factory)
    if server.attach(None) == 0:
        print(f"error: cannot listen on 127.0.0.1:{args.port}", file=sys.stderr)
        return 1

    loop = GLib.MainLoop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signum, loop.quit)
    print(f"ready rtsp://127.0.0.1:{server.get_bound_port()}{args.mount}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
