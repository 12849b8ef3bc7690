"""`device run`'s event options: MQTT, Home Assistant discovery, the debouncer, webhook, regions, snapshots.

They are flags and config-file keys like every other option (`device.daemon.config` merges them); this
module holds their definitions and checks, so that every bad value fails at start in one line.
"""
from __future__ import annotations

import argparse
import re
import socket
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from device.daemon.events import Debounce
from device.daemon.mqtt import MqttError, Tls, parse_broker_url
from device.daemon.regions import Region, parse_regions
from device.daemon.webhook import check_webhook_url
from device.errors import UserError
from device.options import check_number

PATH_OPTIONS = ("mqtt_credentials", "mqtt_ca", "mqtt_cert", "mqtt_key", "snapshot_dir")  # relative to a config file
DEVICE_ID = re.compile(r"[a-z0-9_-]{1,64}")


class EventConfigError(UserError):
    """An event option with a value that cannot work."""


@dataclass(frozen=True)
class EventSettings:
    mqtt: str | None = None
    mqtt_credentials: Path | None = None
    mqtt_ca: Path | None = None
    mqtt_cert: Path | None = None
    mqtt_key: Path | None = None
    mqtt_client_id: str | None = None
    mqtt_prefix: str | None = None
    device_id: str | None = None
    mqtt_metrics_interval: float = 30.0
    mqtt_queue: int = 1000
    ha_discovery: bool = True
    ha_discovery_prefix: str = "homeassistant"
    event_min_frames: int = 3
    event_min_seconds: float = 0.0
    event_threshold: float = 0.5
    event_clear_seconds: float = 2.0
    webhook: str | None = None
    webhook_timeout: float = 5.0
    region: tuple[str, ...] = ()
    snapshot_dir: Path | None = None
    snapshot_budget: float = 100.0  # MB

    def __post_init__(self) -> None:
        if self.mqtt is not None:
            parse_broker_url(self.mqtt)
            if (self.mqtt_ca or self.mqtt_cert) and not self.mqtt.startswith("mqtts:"):
                raise MqttError("--mqtt-ca and --mqtt-cert need an mqtts:// broker URL")
        elif self.mqtt_credentials or self.mqtt_ca or self.mqtt_cert:
            raise MqttError("--mqtt-credentials, --mqtt-ca and --mqtt-cert need --mqtt URL")
        if bool(self.mqtt_cert) != bool(self.mqtt_key):
            raise MqttError("--mqtt-cert and --mqtt-key go together (a client certificate and its key)")
        if self.webhook is not None:
            check_webhook_url(self.webhook)
        parse_regions(self.region)
        if self.device_id is not None and not DEVICE_ID.fullmatch(self.device_id):
            raise EventConfigError(f"--device-id {self.device_id}: use lowercase letters, digits, - and _")
        for topic in (self.mqtt_prefix, self.ha_discovery_prefix):
            if topic is not None and (not topic or any(c in topic for c in "#+\0") or topic.endswith("/")):
                raise EventConfigError(f"MQTT topic prefix {topic!r}: no wildcards (+, #) and no trailing /")
        check_number("--event-min-frames", self.event_min_frames, minimum=1)
        check_number("--event-threshold", self.event_threshold, minimum=0, maximum=1)
        for name in ("event_min_seconds", "event_clear_seconds"):
            check_number(f"--{name.replace('_', '-')}", getattr(self, name), minimum=0)
        for name in ("mqtt_metrics_interval", "webhook_timeout", "snapshot_budget", "mqtt_queue"):
            check_number(f"--{name.replace('_', '-')}", getattr(self, name), above=0)

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> EventSettings:
        values = {f.name: options[f.name] for f in fields(cls) if options.get(f.name) is not None}
        if "region" in values:
            values["region"] = tuple(values["region"])
        return cls(**values)

    @property
    def regions(self) -> tuple[Region, ...]:
        return parse_regions(self.region)

    @property
    def debounce(self) -> Debounce:
        return Debounce(self.event_min_frames, self.event_min_seconds, self.event_threshold, self.event_clear_seconds)

    @property
    def tls(self) -> Tls:
        return Tls(self.mqtt_ca, self.mqtt_cert, self.mqtt_key)

    @property
    def resolved_device_id(self) -> str:
        """The device id given, else this host's name made safe for topics and ids."""
        if self.device_id:
            return self.device_id
        host = socket.gethostname().split(".")[0].lower()
        return re.sub(r"[^a-z0-9_-]+", "-", host).strip("-")[:64] or "pi"

    @property
    def topic_prefix(self) -> str:
        return self.mqtt_prefix or f"bloomkit/{self.resolved_device_id}"

    @property
    def client_id(self) -> str:
        return self.mqtt_client_id or f"bloomkit-{self.resolved_device_id}"


def add_options(parser: argparse.ArgumentParser) -> None:
    """The event flags of `device run` (defaults None, as `device.daemon.config.add_options` requires)."""
    group = parser.add_argument_group("events (MQTT, Home Assistant, webhook, regions)")
    add = group.add_argument
    add("--mqtt", metavar="URL", help="publish state, events, snapshots and metrics to mqtt://HOST[:PORT] or mqtts://")
    add("--mqtt-credentials", type=Path, metavar="FILE",
        help="user:password in a file of mode 0600 (default: $BLOOMKIT_MQTT_USERNAME/$BLOOMKIT_MQTT_PASSWORD, "
             "else DATA_DIR/secrets/mqtt-credentials)")
    add("--mqtt-ca", type=Path, metavar="FILE", help="CA certificate(s) for an mqtts:// broker (default: the system's)")
    add("--mqtt-cert", type=Path, metavar="FILE", help="client certificate for mqtts://")
    add("--mqtt-key", type=Path, metavar="FILE", help="the client certificate's private key (mode 0600)")
    add("--mqtt-client-id", metavar="ID", help="MQTT client id (default bloomkit-DEVICE_ID)")
    add("--mqtt-prefix", metavar="TOPIC", help="topic prefix (default bloomkit/DEVICE_ID)")
    add("--device-id", metavar="ID", help="this device's id in topics and Home Assistant (default: the host name)")
    add("--mqtt-metrics-interval", type=float, metavar="SECONDS", help="publish metrics this often (default 30)")
    add("--mqtt-queue", type=int, metavar="N", help="messages kept while the broker is away (default 1000)")
    add("--no-ha-discovery", dest="ha_discovery", action="store_const", const=False,
        help="do not announce entities to Home Assistant (MQTT discovery is on by default)")
    add("--ha-discovery-prefix", metavar="TOPIC", help="Home Assistant's discovery prefix (default homeassistant)")
    add("--event-min-frames", type=int, metavar="N", help="frames a label must hold to become the state (default 3)")
    add("--event-min-seconds", type=float, metavar="S", help="or: seconds it must hold (replaces the frame count)")
    add("--event-threshold", type=float, metavar="SCORE", help="score a label must reach to count (default 0.5)")
    add("--event-clear-seconds", type=float, metavar="S", help="seconds absent before the state clears (default 2)")
    add("--webhook", metavar="URL", help="POST each event's JSON to this URL (retried, with a timeout)")
    add("--webhook-timeout", type=float, metavar="S", help="seconds per webhook request (default 5)")
    add("--region", action="append", metavar="NAME=x,y,w,h",
        help="classify this part of the frame on its own (fractions; repeatable)")
    add("--snapshot-dir", type=Path, metavar="DIR", help="event snapshots (default DATA_DIR/snapshots)")
    add("--snapshot-budget", type=float, metavar="MB", help="disk space for snapshots, oldest removed first (default 100)")
