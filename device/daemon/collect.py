"""`device run --collect`: keep the frames the sampling policy picks, without slowing inference.

The inference loop only asks the policy (a few comparisons) and hands the frame to a bounded queue; a
worker thread encodes the JPEG and writes the sample. A full queue drops the sample, a full disk or an
unwritable folder pauses collection (retried every `RETRY_S`): each counted by reason, never silent.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import queue
import socket
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from device.daemon.collect_config import CollectError
from device.daemon.sampling import REASONS, Policy, Sampler
from device.samples import FORMAT_VERSION, IMAGE, SampleStore, StoreFull, now_utc, sample_name, utc_text

if TYPE_CHECKING:
    from device.classifier import Classifier
    from device.daemon.config import Settings
    from device.daemon.sources import Frame

log = logging.getLogger("device.daemon")

QUEUE_SIZE = 8          # frames waiting for the worker; each holds a full-size frame
JPEG_QUALITY = 90
THUMBNAIL_WIDTH = 160
RECENT = 6              # kept samples the live page shows
RETRY_S = 30.0          # a paused collection tries again after this long
WORKER_NICE = 10        # the worker's nice value above inference's: with every core busy, a sample waits, not a frame


@dataclass
class _Job:
    """A frame on its way to the worker, with what its sidecar will say."""

    frame: Frame
    scores: np.ndarray
    labels: tuple[str, ...]
    model: dict
    number: int
    reasons: list[str]
    when: datetime


class Collector:
    """Samples out of the inference loop (`offer`), written by a worker thread; `close` finishes the queue."""

    def __init__(self, folder: Path, policy: Policy, budget_bytes: int, source: str, sampler: Sampler | None = None,
                 queue_size: int = QUEUE_SIZE) -> None:
        self.folder = folder
        self.source = source
        self.host = socket.gethostname()
        self.store = SampleStore(folder, budget_bytes)
        self._sampler = sampler or Sampler(policy)
        self._queue: queue.Queue[_Job | None] = queue.Queue(maxsize=queue_size)
        self._lock = threading.Lock()
        self.kept: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()
        self.evicted: Counter[str] = Counter()
        self.recent: deque[dict] = deque(maxlen=RECENT)
        self.problem: str | None = None
        self._retry_at = 0.0
        self._sequence = 0
        self.leftovers_removed = 0
        self._opened = False
        try:
            self._open()
        except OSError as error:
            self._pause(error)
        self._worker = threading.Thread(target=self._work, name="collect", daemon=True)
        self._worker.start()

    # The inference loop's side: cheap, never blocks.

    def offer(self, frame: Frame, scores: np.ndarray, classifier: Classifier, number: int) -> None:
        now = time.monotonic()
        fired, cap = self._sampler.consider(scores, classifier.labels, now)
        if not fired:
            return
        if self.problem is not None and now < self._retry_at:
            return self._drop("paused")
        if cap is not None:
            return self._drop(cap)
        model = {"name": classifier.info.name, "version": classifier.info.version, "sha256": classifier.model_sha256}
        job = _Job(frame, np.array(scores, dtype=np.float32), classifier.labels, model, number, fired, now_utc())
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            return self._drop("queue_full")
        self._sampler.taken(now)
        if self.problem is not None:
            self._retry_at = now + RETRY_S  # one attempt per interval while paused

    def close(self, timeout: float = 1.0) -> None:
        """Write what is queued (for up to `timeout` seconds); what is left is counted as dropped."""
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            pass
        self._worker.join(timeout)
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                self._drop("shutdown")

    # The worker's side.

    def _open(self) -> None:
        self.leftovers_removed = self.store.open()
        self._opened = True
        if self.leftovers_removed:
            log.info("collect: removed %d partial samples left by a crash in %s",
                     self.leftovers_removed, self.folder)

    def _work(self) -> None:
        with contextlib.suppress(OSError):  # Linux: this thread only
            thread = threading.get_native_id()
            os.setpriority(os.PRIO_PROCESS, thread, min(19, os.getpriority(os.PRIO_PROCESS, thread) + WORKER_NICE))
        while True:
            job = self._queue.get()
            if job is None:
                return
            try:
                self._write(job)
            except Exception as error:  # noqa: BLE001 - the worker must outlive any one sample
                log.warning("collect: sample dropped: %s", error)
                self._drop("write_failed")

    def _write(self, job: _Job) -> None:
        image = job.frame.view
        ok, encoded = cv2.imencode(IMAGE, cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                                   [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            return self._drop("encode_failed")
        jpeg = encoded.tobytes()
        self._sequence += 1
        name = sample_name(job.when, self._sequence)
        best = int(np.argmax(job.scores))
        sidecar = {
            "format": FORMAT_VERSION, "time": utc_text(job.when), "host": self.host, "source": self.source,
            "frame": job.number, "model": job.model,
            "scores": {label: round(float(score), 6) for label, score in zip(job.labels, job.scores)},
            "top": {"label": job.labels[best], "score": round(float(job.scores[best]), 6)},
            "reasons": job.reasons,
            "image": {"file": name + IMAGE, "width": int(image.shape[1]), "height": int(image.shape[0]),
                      "bytes": len(jpeg), "sha256": hashlib.sha256(jpeg).hexdigest()},
        }
        try:
            if not self._opened:  # the folder could not be made at start; it may be possible now
                self._open()
            written = self.store.write(name, jpeg, sidecar)
        except StoreFull as error:
            log.warning("collect: %s", error)
            return self._drop("too_large")
        except OSError as error:
            self._pause(error)
            return self._drop("write_failed")
        with self._lock:
            self.kept[job.reasons[0]] += 1
            self.evicted["budget"] += len(written.evicted)
            if self.problem is not None:
                log.info("collect: writing samples again in %s", self.folder)
            self.problem = None
        self.recent.appendleft({"name": name, "time": sidecar["time"], "label": sidecar["top"]["label"],
                                "score": sidecar["top"]["score"], "reasons": job.reasons, "width": image.shape[1]})

    def _pause(self, error: OSError) -> None:
        reason = f"cannot write samples to {self.folder}: {error.strerror or error}"
        with self._lock:
            if reason != self.problem:
                log.warning("collect: paused: %s (retrying every %.0f s; inference goes on)", reason, RETRY_S)
            self.problem = reason
            self._retry_at = time.monotonic() + RETRY_S

    def _drop(self, reason: str) -> None:
        with self._lock:
            self.dropped[reason] += 1

    # What the HTTP server reads.

    def status(self) -> dict:
        """For /healthz: collection is on or paused (with the reason); the daemon stays healthy either way."""
        return {"state": "paused" if self.problem else "on", "reason": self.problem, "folder": str(self.folder)}

    def stats(self) -> dict:
        with self._lock:
            kept, dropped, evicted = dict(self.kept), dict(self.dropped), dict(self.evicted)
        return {**self.status(), "kept": {reason: kept.get(reason, 0) for reason in REASONS}, "dropped": dropped,
                "evicted": evicted, "samples": self.store.count, "bytes": self.store.total,
                "budget_bytes": self.store.budget, "queued": self._queue.qsize(),
                "recent": [{key: value for key, value in sample.items() if key not in ("thumbnail", "width")}
                           for sample in list(self.recent)]}

    def thumbnail(self, name: str) -> bytes | None:
        """A recent sample's thumbnail, made when the live page first asks for it (most are never shown);
        None once the sample has left the folder (collected or evicted)."""
        sample = next((sample for sample in list(self.recent) if sample["name"] == name), None)
        if sample is None:
            return None
        if "thumbnail" not in sample:
            sample["thumbnail"] = _thumbnail(self.folder / (name + IMAGE), sample["width"])
        return sample["thumbnail"]


def _thumbnail(path: Path, width: int) -> bytes | None:
    """THUMBNAIL_WIDTH pixels wide, from the JPEG decoded at a reduced size (the decoder's DCT scaling: cheap)."""
    scale = next((s for s in (8, 4, 2) if width // s >= THUMBNAIL_WIDTH), 1)
    image = cv2.imread(str(path), {8: cv2.IMREAD_REDUCED_COLOR_8, 4: cv2.IMREAD_REDUCED_COLOR_4,
                                   2: cv2.IMREAD_REDUCED_COLOR_2, 1: cv2.IMREAD_COLOR}[scale])
    if image is None:
        return None
    height, width = image.shape[:2]
    size = (THUMBNAIL_WIDTH, max(1, round(height * THUMBNAIL_WIDTH / width)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return cv2.imencode(IMAGE, small, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes()


def collector_for(settings: Settings, source: str, labels: tuple[str, ...]) -> Collector | None:
    """The collector `settings` ask for (None: off); `--collect-labels` must name labels of the model."""
    config = settings.collect
    if not config.enabled:
        return None
    policy = config.policy
    unknown = sorted((policy.labels or set()) - set(labels))
    if unknown:
        raise CollectError(f"--collect-labels {','.join(unknown)}: not a label of the model "
                           f"(its labels: {', '.join(labels)})")
    return Collector(config.samples_folder(settings.data_dir), policy, config.budget_bytes, source)
