"""The HTTP side: the live page, its MJPEG stream, /api/latest, /healthz and /metrics.

The server only reads what the daemon publishes, so a slow or stuck browser never slows inference.
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources

import cv2

from device.daemon import metrics
from device.daemon.capture import LatestFrame
from device.daemon.loop import Daemon
from device.errors import UserError

BOUNDARY = "bloomkitframe"
RELEASE_ENV = "BLOOMKIT_RELEASE"
JPEG_QUALITY = 80


class HttpError(UserError):
    """The HTTP address cannot be served (in use, not an address of this machine)."""


class JpegView:
    """The newest frame as JPEG, encoded at most `fps` times a second and shared by every viewer."""

    def __init__(self, frames: LatestFrame, fps: float) -> None:
        self._frames = frames
        self.interval = 1.0 / fps
        self._lock = threading.Lock()
        self._sequence = -1
        self._jpeg = b""
        self._encoded_at = 0.0

    def latest(self) -> tuple[int, bytes] | None:
        """(sequence number, JPEG bytes) of a recent frame, or None before the first one."""
        with self._lock:
            sequence, frame = self._frames.peek()
            if frame is None:
                return None
            now = time.monotonic()
            if sequence != self._sequence and now - self._encoded_at >= self.interval:
                ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(frame.view, cv2.COLOR_RGB2BGR),
                                        [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
                if ok:
                    self._sequence, self._jpeg, self._encoded_at = sequence, jpeg.tobytes(), now
            return self._sequence, self._jpeg


class _IPv6HTTPServer(ThreadingHTTPServer):
    """For an IPv6 host such as ::1 (the stdlib's server binds IPv4 only)."""

    address_family = socket.AF_INET6


class LiveServer:
    """A ThreadingHTTPServer in a thread of its own, serving one daemon."""

    def __init__(self, address: tuple[str, int], daemon: Daemon) -> None:
        self.daemon = daemon
        self.view = JpegView(daemon.frames, daemon.settings.stream_fps)
        self.closing = threading.Event()
        try:
            server_class = _IPv6HTTPServer if ":" in address[0] else ThreadingHTTPServer
            self._httpd = server_class(address, _handler_for(self))
        except OSError as error:
            raise HttpError(f"--http {address[0]}:{address[1]}: {error.strerror or error}") from None
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="http", daemon=True)

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        host = self._httpd.server_address[0]
        return f"http://[{host}]:{self.port}/" if ":" in host else f"http://{host}:{self.port}/"

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self.closing.set()
        self._httpd.shutdown()
        self._httpd.server_close()


def _process() -> dict:
    """Which process answers, so that a deploy can tell its own daemon from another one on the port: the pid,
    and the release it runs (its launcher sets BLOOMKIT_RELEASE to the release's directory; None by hand)."""
    release = os.environ.get(RELEASE_ENV)
    return {"pid": os.getpid(),
            "release": {"version": os.path.basename(release), "path": release} if release else None}


def _handler_for(server: LiveServer) -> type[BaseHTTPRequestHandler]:
    page = resources.files("device.daemon").joinpath("live.html").read_bytes()

    class Handler(BaseHTTPRequestHandler):
        server_version = "bloomkit"
        timeout = 10  # seconds a client may stall a read or a write before its thread gives up

        def handle(self) -> None:
            try:
                super().handle()
            except (ConnectionError, TimeoutError):  # the client went away mid-answer: counted, not logged
                server.daemon.counters.http_disconnects.add()

        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            path = self.path.split("?", 1)[0]
            if path == "/":
                self._send(HTTPStatus.OK, page, "text/html; charset=utf-8")
            elif path == "/api/latest":
                health = server.daemon.health()
                waiting = {"timestamp": None, "frame": 0, "top": [], "fps": 0.0, "latency_ms": None,
                           "age_ms": None, "model": health["model"]["name"]}
                self._send_json(HTTPStatus.OK, {**(server.daemon.latest() or waiting), "status": health["status"],
                                                "reason": health["reason"], "sha256": health["model"]["sha256"]})
            elif path == "/healthz":
                health = {**server.daemon.health(), **_process()}
                self._send_json(HTTPStatus.OK if health["status"] == "ok" else HTTPStatus.SERVICE_UNAVAILABLE, health)
            elif path == "/metrics":
                self._send(HTTPStatus.OK, metrics.render(server.daemon).encode(), metrics.CONTENT_TYPE)
            elif path == "/stream.mjpg":
                self._stream()
            else:
                self._send_json(HTTPStatus.NOT_FOUND, {"error": f"no such page: {path}"})

        do_HEAD = do_GET  # monitoring tools probe with HEAD: the same status and headers, no body (see _send)

        def _send_json(self, status: HTTPStatus, body: dict) -> None:
            self._send(status, json.dumps(body).encode(), "application/json")

        def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _stream(self) -> None:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if self.command == "HEAD":
                return
            sent = -1
            try:
                while not server.closing.is_set():
                    latest = server.view.latest()
                    if latest is not None and latest[0] != sent:
                        sent, jpeg = latest
                        self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                                         f"Content-Length: {len(jpeg)}\r\n\r\n".encode() + jpeg + b"\r\n")
                        self.wfile.flush()
                    server.closing.wait(server.view.interval)
            except OSError:
                return  # the viewer went away, or stalled past the timeout

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: a request log line per poll would drown the daemon's own log."""

    return Handler
