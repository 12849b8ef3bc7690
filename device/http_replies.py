"""The reply side every bloomkit HTTP handler shares (the daemon's live page, `trainer review`): whole bodies
with their length, JSON, nothing cached, and no request log (a poll a second would drown the real output)."""
from __future__ import annotations

import json
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler


class QuietHandler(BaseHTTPRequestHandler):
    def _send_json(self, status: HTTPStatus, body: dict) -> None:
        self._send(status, json.dumps(body).encode(), "application/json")

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":  # a HEAD request gets the status and headers only
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the program's own lines say what matters."""
