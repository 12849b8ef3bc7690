"""`--webhook URL`: each event's JSON POSTed to a URL, for users without a broker; retried, with a timeout.

Its own thread and a bounded queue, so a slow or dead endpoint never holds up inference or MQTT.
"""
from __future__ import annotations

import collections
import json
import logging
import threading
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from device.errors import UserError, one_line

log = logging.getLogger("device.daemon")

RETRY_DELAYS_S = (1.0, 2.0, 4.0)  # after the first try: four tries in all


class WebhookError(UserError):
    """A webhook URL that is not http:// or https:// with a host."""


def check_webhook_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookError(f"--webhook {url}: expected an http:// or https:// URL")
    return url


class Webhook:
    def __init__(self, url: str, timeout_s: float = 5.0, queue_size: int = 100) -> None:
        self.url = check_webhook_url(url)
        self.timeout_s = timeout_s
        self._queue: collections.deque[dict] = collections.deque(maxlen=queue_size)
        self._changed = threading.Condition()
        self._closing = threading.Event()
        self.delivered = 0
        self.failed = 0
        self._thread = threading.Thread(target=self._run, name="webhook", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def post(self, record: dict) -> None:
        with self._changed:
            if len(self._queue) == self._queue.maxlen:
                self.failed += 1  # the oldest falls out of the deque
            self._queue.append(record)
            self._changed.notify()

    def close(self, drain_s: float = 1.0) -> None:
        self._closing.set()
        with self._changed:
            self._changed.notify()
        self._thread.join(drain_s)

    def _run(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._queue or self._closing.is_set())
                if not self._queue:
                    return
                record = self._queue.popleft()
            self._deliver(record)

    def _deliver(self, record: dict) -> None:
        body = json.dumps(record).encode()
        error = ""
        for delay in (0.0, *RETRY_DELAYS_S):
            if delay and self._closing.wait(delay):
                break
            request = urllib.request.Request(self.url, data=body, method="POST",
                                             headers={"Content-Type": "application/json",
                                                      "User-Agent": "bloomkit"})
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    response.read()
                self.delivered += 1
                return
            except urllib.error.HTTPError as failure:
                error = f"HTTP {failure.code}"
                if 400 <= failure.code < 500 and failure.code not in (408, 429):
                    break  # the endpoint rejects this request; asking again will not change its mind
            except (OSError, ValueError) as failure:
                error = one_line(failure)
        self.failed += 1
        log.warning("webhook %s: event %s not delivered (%s)", urlsplit(self.url).hostname, record.get("id"), error)
