"""`trainer review`: the inbox's samples on a local page, most uncertain first, one key per decision.

The page only shows what `/api/state` says and posts decisions naming the sample they are about, so a
key pressed twice, or a page left open in a second tab, can never decide a sample nobody looked at.
"""
from __future__ import annotations

import json
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from urllib.parse import unquote

from device.errors import UserError
from device.http_replies import QuietHandler
from trainer.inbox import Dataset, Inbox, InboxError, Sample, accept, check_label, discard, undo_last

MAX_BODY = 4096


class Review:
    """The queue of samples still to decide and the labels to choose from; every method is thread-safe."""

    def __init__(self, inbox: Inbox, dataset: Dataset) -> None:
        self.inbox = inbox
        self.dataset = dataset
        self._lock = threading.Lock()
        self.queue, self.skipped = inbox.scan()
        # The dataset's labels, then the models' labels it lacks; new ones go at the end, so a digit key
        # keeps its label for the whole review.
        self.labels = dataset.labels()
        for sample in self.queue:
            self.labels += [label for label in sample.sidecar["scores"] if label not in self.labels]
        self.done = {"accepted": 0, "discarded": 0, "undone": 0}

    def state(self) -> dict:
        with self._lock:
            current = self.queue[0] if self.queue else None
            history = self.inbox.history()
            return {"labels": self.labels, "current": _describe(current) if current else None,
                    "remaining": len(self.queue), "reviewed": len(history), "session": dict(self.done),
                    "skipped": [{"sample": key, "note": note} for key, note in self.skipped],
                    "last": history[-1] if history else None}

    def decide(self, key: str, action: str, label: str | None = None) -> dict:
        with self._lock:
            if not self.queue or self.queue[0].key != key:
                raise Conflict(f"{key} is not the sample under review (the page was out of date)")
            sample = self.queue[0]
            if action == "accept":
                accept(self.inbox, self.dataset, sample, check_label(label or sample.top[0]))
                self.done["accepted"] += 1
            elif action == "discard":
                discard(self.inbox, sample)
                self.done["discarded"] += 1
            else:
                raise InboxError(f"unknown action {action!r}")
            self.queue.pop(0)
        return self.state()

    def undo(self) -> dict:
        with self._lock:
            undone = undo_last(self.inbox, self.dataset)
            if undone is not None:
                self.done["undone"] += 1
                back = [s for s in self.inbox.scan()[0] if s.key == undone["sample"]]
                self.queue[:0] = back  # the sample comes back first, to be decided again
        return self.state()

    def add_label(self, label: str) -> dict:
        with self._lock:
            if check_label(label) not in self.labels:
                self.labels.append(label)
        return self.state()

    def image(self, key: str) -> bytes | None:
        with self._lock:
            sample = next((s for s in self.queue if s.key == key), None)
        return sample.image.read_bytes() if sample else None


class Conflict(UserError):
    """A decision about a sample that is not the one under review."""


def _describe(sample: Sample) -> dict:
    meta = sample.sidecar
    label, score = sample.top
    return {"sample": sample.key, "image": f"/samples/{sample.key}.jpg", "label": label, "score": score,
            "scores": dict(sorted(meta["scores"].items(), key=lambda item: -item[1])),
            "reasons": meta.get("reasons", []), "host": meta.get("host"), "time": meta.get("time"),
            "model": meta.get("model", {}).get("name")}


class ReviewServer:
    """A ThreadingHTTPServer on 127.0.0.1 for one review."""

    def __init__(self, review: Review, port: int) -> None:
        try:
            self._httpd = ThreadingHTTPServer(("127.0.0.1", port), _handler_for(review))
        except OSError as error:
            raise InboxError(f"--port {port}: {error.strerror or error}") from None
        self._httpd.daemon_threads = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/"

    def serve_forever(self) -> None:
        self._httpd.serve_forever(poll_interval=0.2)

    def close(self) -> None:
        self._httpd.server_close()


def _handler_for(review: Review) -> type[BaseHTTPRequestHandler]:
    page = resources.files("trainer").joinpath("review.html").read_bytes()

    class Handler(QuietHandler):
        server_version = "bloomkit-review"

        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            path = unquote(self.path.split("?", 1)[0])
            if path == "/":
                self._send(HTTPStatus.OK, page, "text/html; charset=utf-8")
            elif path == "/api/state":
                self._send_json(HTTPStatus.OK, review.state())
            elif path.startswith("/samples/") and path.endswith(".jpg"):
                jpeg = review.image(path[len("/samples/"):-len(".jpg")])
                if jpeg is None:
                    self._send_json(HTTPStatus.NOT_FOUND, {"error": "not a sample under review"})
                else:
                    self._send(HTTPStatus.OK, jpeg, "image/jpeg")
            else:
                self._send_json(HTTPStatus.NOT_FOUND, {"error": f"no such page: {path}"})

        def do_POST(self) -> None:  # noqa: N802
            # JSON only: a page on another site cannot send it without the browser asking us first (CORS).
            if self.headers.get("Content-Type", "").split(";")[0] != "application/json":
                return self._send_json(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, {"error": "send JSON"})
            length = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(min(length, MAX_BODY)) or b"{}")
                if self.path == "/api/decision":
                    state = review.decide(str(body["sample"]), str(body["action"]), body.get("label"))
                elif self.path == "/api/undo":
                    state = review.undo()
                elif self.path == "/api/labels":
                    state = review.add_label(str(body["label"]))
                else:
                    return self._send_json(HTTPStatus.NOT_FOUND, {"error": f"no such action: {self.path}"})
            except Conflict as error:
                return self._send_json(HTTPStatus.CONFLICT, {"error": str(error), **review.state()})
            except (UserError, KeyError, ValueError) as error:
                return self._send_json(HTTPStatus.BAD_REQUEST, {"error": str(error)})
            self._send_json(HTTPStatus.OK, state)


    return Handler
