"""The reporter: classified frames in, state, events, snapshots, MQTT, Home Assistant and webhook out.

The inference loop only feeds each region's top label to its debouncer (microseconds); everything slow
(JPEG encoding, the disk, the network) happens on this module's thread, so publishing never holds up
inference. Built once at start by `build_reporter`, which checks every option (and the credentials
file) so that a mistake is one line at start, not a surprise an hour later.
"""
from __future__ import annotations

import collections
import logging
import os
import queue
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import cv2

from device.daemon.discovery import DeviceIdentity, Discovery
from device.daemon.event_config import EventSettings
from device.daemon.events import Debouncer, Transition
from device.daemon.mqtt import MqttPublisher, Topics, find_credentials, parse_broker_url
from device.daemon.regions import Region
from device.daemon.snapshots import SnapshotStore
from device.daemon.webhook import Webhook

if TYPE_CHECKING:
    from device.classifier import Category, Classifier
    from device.daemon.sources import Frame

log = logging.getLogger("device.daemon")

SNAPSHOT_QUALITY = 85
RECENT_EVENTS = 100
JOBS = 1000  # frames with transitions waiting for the thread; only a stuck disk could fill it


class Reporter:
    """Debouncers for the regions (or the whole frame), and the thread that reports what they decide."""

    def __init__(self, settings: EventSettings, classifier: Classifier, *, mqtt: MqttPublisher | None = None,
                 discovery: Discovery | None = None, webhook: Webhook | None = None,
                 snapshots: SnapshotStore | None = None, metrics: Callable[[], dict] = dict) -> None:
        self.settings = settings
        self.regions: tuple[Region | None, ...] = settings.regions or (None,)
        self.topics = Topics(settings.topic_prefix)
        self.mqtt, self.discovery, self.webhook, self.snapshots = mqtt, discovery, webhook, snapshots
        self._metrics = metrics
        self._debouncers = [Debouncer(settings.debounce, region.name if region else None) for region in self.regions]
        self._jobs: queue.Queue = queue.Queue(JOBS)
        self._recent: collections.OrderedDict[str, dict] = collections.OrderedDict()
        self._recent_lock = threading.Lock()
        self.lost_jobs = 0
        self._model_changed(classifier)
        self._thread = threading.Thread(target=self._run, name="reporter", daemon=True)

    def start(self) -> None:
        for debouncer in self._debouncers:  # the retained state starts empty, not as a previous run left it
            self._put(("state", debouncer.region, debouncer.state()))
        if self.mqtt:
            self.mqtt.start()
        if self.webhook:
            self.webhook.start()
        self._thread.start()

    # Called by the inference loop.

    def observe(self, frame: Frame, results: Sequence[tuple[Region | None, Sequence[Category]]]) -> None:
        """Feed each region's top label of one frame to its debouncer; queue any transition for the thread."""
        for (region, categories), debouncer in zip(results, self._debouncers):
            top = categories[0] if categories else None
            image = frame.view if region is None else region.crop(frame.view)
            transitions = debouncer.observe(top.label if top else None, top.score if top else 0.0,
                                            frame.captured, image)
            if transitions:
                self._put(("transitions", debouncer.region, transitions, debouncer.state()))

    def model_changed(self, classifier: Classifier) -> None:
        """A hot-reloaded model: events of labels it lacks end, and Home Assistant's entities follow its labels."""
        now = time.monotonic()
        for debouncer in self._debouncers:
            transitions = debouncer.forget_labels_except(classifier.labels, now)
            if transitions:
                self._put(("transitions", debouncer.region, transitions, debouncer.state()))
        self._model_changed(classifier)

    def _model_changed(self, classifier: Classifier) -> None:
        if self.discovery:
            self._put(("model", classifier.labels, classifier.info, classifier.model_sha256))

    def close(self) -> None:
        """End open events, deliver what is queued (briefly), and say `offline`."""
        now = time.monotonic()
        for debouncer in self._debouncers:
            transitions = debouncer.close(now)
            if transitions:
                self._put(("transitions", debouncer.region, transitions, debouncer.state()))
        self._put(None)
        if self._thread.is_alive():
            self._thread.join(1.0)
        if self.webhook:
            self.webhook.close(drain_s=0.5)
        if self.mqtt:
            self.mqtt.close(drain_s=0.5)

    # Read by the HTTP server.

    def recent(self) -> list[dict]:
        """The latest message of each recent event, newest first."""
        with self._recent_lock:
            return list(reversed(self._recent.values()))

    def snapshot_path(self, event_id: str) -> Path | None:
        return self.snapshots.path(event_id) if self.snapshots else None

    def status(self) -> dict:
        status: dict = {}
        if self.mqtt:
            status["mqtt"] = self.mqtt.status()
        if self.webhook:
            status["webhook"] = {"delivered": self.webhook.delivered, "failed": self.webhook.failed}
        return status

    # The thread.

    def _put(self, job) -> None:
        try:
            self._jobs.put_nowait(job)
        except queue.Full:
            self.lost_jobs += 1

    def _run(self) -> None:
        interval = self.settings.mqtt_metrics_interval
        next_metrics = time.monotonic() + interval
        while True:
            try:
                job = self._jobs.get(timeout=max(0.0, next_metrics - time.monotonic()) if self.mqtt else None)
            except queue.Empty:
                self.mqtt.publish(self.topics.metrics, {**self._metrics(), "mqtt": self.mqtt.status()}, live_only=True)
                next_metrics = time.monotonic() + interval
                continue
            if job is None:
                return
            kind, *rest = job
            if kind == "transitions":
                self._report(*rest)
            elif kind == "state":
                self._publish_state(*rest)
            elif kind == "model":
                self.discovery.announce(*rest)

    def _report(self, region: str | None, transitions: list[Transition], state: dict) -> None:
        for transition in transitions:
            event = transition.event
            if self.snapshots:
                event.snapshot = event.id
            record = event.record(transition.kind, transition.at)
            with self._recent_lock:
                self._recent[event.id] = record
                self._recent.move_to_end(event.id)
                while len(self._recent) > RECENT_EVENTS:
                    self._recent.popitem(last=False)
            if self.mqtt:
                self.mqtt.publish(self.topics.events(region), record)
            if self.webhook:
                self.webhook.post(record)
            if transition.kind != "end" and event.best_image is not None:
                self._snapshot(region, event.id, event.best_image)
        self._publish_state(region, state)

    def _snapshot(self, region: str | None, event_id: str, image) -> None:
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, SNAPSHOT_QUALITY])
        if not ok:
            return
        if self.snapshots:
            self.snapshots.save(event_id, jpeg.tobytes())
        if self.mqtt:
            self.mqtt.publish(self.topics.snapshot(region), jpeg.tobytes(), retain=True)

    def _publish_state(self, region: str | None, state: dict) -> None:
        if self.mqtt:
            self.mqtt.publish(self.topics.state(region), state, retain=True)


def build_reporter(settings: EventSettings, data_dir: Path | None, classifier: Classifier,
                   metrics: Callable[[], dict], environ=os.environ) -> Reporter:
    """The reporter for these options, with every option, file and folder checked now."""
    mqtt = discovery = webhook = snapshots = None
    snapshot_dir = settings.snapshot_dir or (data_dir / "snapshots" if data_dir else None)
    if snapshot_dir is not None:
        snapshots = SnapshotStore(snapshot_dir, int(settings.snapshot_budget * 1_000_000))
    if settings.mqtt:
        topics = Topics(settings.topic_prefix)
        credentials = find_credentials(settings.mqtt_credentials, data_dir, environ)
        mqtt = MqttPublisher(parse_broker_url(settings.mqtt), settings.client_id, topics.availability,
                             credentials=credentials, tls=settings.tls, queue_size=settings.mqtt_queue)
        if settings.ha_discovery:
            identity = DeviceIdentity(settings.resolved_device_id, settings.ha_discovery_prefix)
            regions = tuple(region.name for region in settings.regions) or (None,)
            discovery = Discovery(identity, topics, regions, mqtt.publish)
            mqtt.subscribe(discovery.subscription, discovery.on_retained_config)
    if settings.webhook:
        webhook = Webhook(settings.webhook, settings.webhook_timeout)
    return Reporter(settings, classifier, mqtt=mqtt, discovery=discovery, webhook=webhook, snapshots=snapshots,
                    metrics=metrics)
