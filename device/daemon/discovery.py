"""Home Assistant MQTT discovery: the retained config messages that make a Pi appear in HA by itself.

One HA device per Pi; per region (or the whole frame) an enum sensor for the label, a sensor for its
score, a binary_sensor per label and an image entity for the snapshot, all reading the retained topics
the daemon publishes and all unavailable when the Pi's availability topic says `offline`. Ids are
derived from the device id, region and label only, so they stay the same across restarts and models.
"""
from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from device.daemon.mqtt import Topics

if TYPE_CHECKING:
    from device.metadata import ModelInfo

NO_LABEL = "none"  # the enum sensor's option while no label is the state
PI_MODEL_FILE = Path("/proc/device-tree/model")


def slug(text: str) -> str:
    """A label as it may appear in an id: lowercase letters, digits and _; a short hash keeps altered ones apart."""
    cleaned = re.sub(r"[^a-z0-9_]+", "_", text.lower()).strip("_")
    if cleaned == text:
        return cleaned
    return f"{cleaned or 'label'}_{hashlib.sha1(text.encode()).hexdigest()[:6]}"


def bloomkit_version() -> str:
    try:
        return metadata.version("bloomkit")
    except metadata.PackageNotFoundError:
        return "dev"


def hardware_model() -> str:
    """What HA shows as the device's model: the Pi's own name when there is one."""
    try:
        return PI_MODEL_FILE.read_text(errors="replace").strip("\x00\n ") or "bloomkit"
    except OSError:
        return "bloomkit"


@dataclass(frozen=True)
class DeviceIdentity:
    device_id: str
    discovery_prefix: str = "homeassistant"

    @property
    def node(self) -> str:
        return f"bloomkit_{self.device_id}"


def configs(identity: DeviceIdentity, topics: Topics, regions: Iterable[str | None], labels: Iterable[str],
            model: ModelInfo, model_sha256: str) -> dict[str, dict]:
    """Every discovery config topic with its payload, for this model's labels and these regions."""
    labels = list(labels)
    device = {
        "identifiers": [identity.node],
        "name": f"bloomkit {identity.device_id}",
        "manufacturer": "bloomkit",
        "model": hardware_model(),
        "sw_version": f"bloomkit {bloomkit_version()}, model {model.name or 'unnamed'} {model.version or ''} "
                      f"({model_sha256[:12]})".replace("  ", " "),
    }
    common = {
        "availability_topic": topics.availability,
        "payload_available": "online",
        "payload_not_available": "offline",
        "device": device,
        "origin": {"name": "bloomkit", "sw_version": bloomkit_version()},
    }
    result: dict[str, dict] = {}

    def add(component: str, key: str, name: str, fields: dict) -> None:
        unique_id = f"{identity.node}_{key}"
        topic = f"{identity.discovery_prefix}/{component}/{identity.node}/{key}/config"
        result[topic] = {"name": name, "unique_id": unique_id, **fields, **common}

    for region in regions:
        where = region or "frame"
        named = (lambda what: f"{region} {what}") if region else (lambda what: what.capitalize())
        state = topics.state(region)
        add("sensor", f"{where}_label", named("label"), {
            "state_topic": state,
            "value_template": f"{{{{ value_json.label if value_json.label is not none else '{NO_LABEL}' }}}}",
            "device_class": "enum",
            "options": labels + [NO_LABEL],
            "json_attributes_topic": state,
            "icon": "mdi:flower",
        })
        add("sensor", f"{where}_score", named("score"), {
            "state_topic": state,
            "value_template": "{{ ((value_json.score or 0) * 100) | round(1) }}",
            "unit_of_measurement": "%",
            "state_class": "measurement",
            "suggested_display_precision": 1,
            "icon": "mdi:percent",
        })
        for label in labels:
            add("binary_sensor", f"{where}_{slug(label)}", named(label), {
                "state_topic": state,
                "value_template": f"{{{{ 'ON' if value_json.label == {json.dumps(label)} else 'OFF' }}}}",
                "payload_on": "ON",
                "payload_off": "OFF",
                "device_class": "occupancy",
            })
        add("image", f"{where}_snapshot", named("snapshot"), {
            "image_topic": topics.snapshot(region),
            "content_type": "image/jpeg",
        })
    return result


class Discovery:
    """The config topics this device has in HA now; publishes new ones and empties those of labels gone.

    It also listens to the retained configs under this device's node, so entities left by a model that
    ran before a restart are removed too, not only those of a model swapped while running.
    """

    def __init__(self, identity: DeviceIdentity, topics: Topics, regions: tuple[str | None, ...], publish) -> None:
        self.identity = identity
        self.topics = topics
        self.regions = regions
        self._publish = publish  # publish(topic, payload, retain=...)
        self._lock = threading.Lock()
        self._current: frozenset[str] = frozenset()
        self._known: set[str] = set()

    @property
    def subscription(self) -> str:
        return f"{self.identity.discovery_prefix}/+/{self.identity.node}/+/config"

    def announce(self, labels: Iterable[str], model: ModelInfo, model_sha256: str) -> None:
        """Publish the configs for a model (at start and after a hot reload); empty those no longer wanted."""
        wanted = configs(self.identity, self.topics, self.regions, labels, model, model_sha256)
        with self._lock:
            gone = self._known - set(wanted)
            self._current = frozenset(wanted)
            self._known = set(wanted)
        for topic in sorted(gone):
            self._publish(topic, b"", retain=True)
        for topic, payload in wanted.items():
            self._publish(topic, payload, retain=True)

    def on_retained_config(self, topic: str, payload: bytes) -> None:
        """A config under our node seen on the broker: empty it unless the current model wants it."""
        with self._lock:
            stale = bool(payload) and topic not in self._current
        if stale:
            self._publish(topic, b"", retain=True)
