"""The MQTT link: broker URL and credentials, topic names, and a publisher that never blocks inference.

Messages go through a bounded queue of our own and a thread of our own, one message in flight at a
time (QoS 1, acknowledged before the next), so they arrive in the order they were made, also after a
reconnect. While the broker is away the queue fills; when full, its oldest message is dropped and
counted. A retained message replaces an older one still queued for its topic (only the latest state or
snapshot matters), and all retained topics are published again after a reconnect, since a restarted
broker may have lost them. Paho runs the network loop and reconnects with back-off.
"""
from __future__ import annotations

import collections
import json
import logging
import os
import stat
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping
from urllib.parse import urlsplit

from device.errors import UserError, one_line

log = logging.getLogger("device.daemon")

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
CREDENTIALS_ENV = ("BLOOMKIT_MQTT_USERNAME", "BLOOMKIT_MQTT_PASSWORD")
CREDENTIALS_FILE = "mqtt-credentials"  # in <data-dir>/secrets/, where `fab deploy` puts it
RECONNECT_DELAYS_S = (1, 30)
KEEPALIVE_S = 30


class MqttError(UserError):
    """An MQTT option that cannot work: a malformed broker URL, unsafe or unreadable credentials, a bad TLS file."""


@dataclass(frozen=True)
class BrokerUrl:
    scheme: str
    host: str
    port: int

    @property
    def tls(self) -> bool:
        return self.scheme == "mqtts"

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def parse_broker_url(text: str) -> BrokerUrl:
    """`mqtt://HOST[:PORT]` or `mqtts://HOST[:PORT]` (1883 and 8883 by default)."""
    usage = f"--mqtt {text}: expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT]"
    parts = urlsplit(text)
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise MqttError(usage)
    if parts.username is not None or parts.password is not None:
        raise MqttError(f"--mqtt: no credentials in the URL (they would show in `ps`); use --mqtt-credentials FILE")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise MqttError(usage)
    try:
        port = parts.port
    except ValueError:
        raise MqttError(usage) from None
    return BrokerUrl(parts.scheme, parts.hostname, port or DEFAULT_PORTS[parts.scheme])


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str

    def __repr__(self) -> str:  # never print a password, not even in a traceback
        return f"Credentials(username={self.username!r}, password='***')"


def read_secret_file(path: Path, what: str) -> str:
    """A file only its owner may read (mode 0600 or stricter), else refused: a secret others can read is not one."""
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise MqttError(f"{what} {path}: readable by others (mode {stat.S_IMODE(mode):04o}); chmod 600 it")
        return path.read_text(encoding="utf-8")
    except OSError as error:
        raise MqttError(f"{what} {path}: {error.strerror or one_line(error)}") from None
    except UnicodeDecodeError:
        raise MqttError(f"{what} {path}: not a text file") from None


def read_credentials(path: Path) -> Credentials:
    """`user:password` on the file's first line."""
    line = (read_secret_file(path, "--mqtt-credentials").splitlines() or [""])[0]
    username, colon, password = line.partition(":")
    if not colon or not username:
        raise MqttError(f"--mqtt-credentials {path}: expected one line user:password")
    return Credentials(username, password)


def find_credentials(explicit: Path | None, data_dir: Path | None, environ: Mapping[str, str]) -> Credentials | None:
    """The credentials file given, else the environment, else `<data-dir>/secrets/mqtt-credentials` if it exists."""
    if explicit is not None:
        return read_credentials(explicit)
    user_var, password_var = CREDENTIALS_ENV
    if environ.get(user_var):
        return Credentials(environ[user_var], environ.get(password_var, ""))
    if data_dir is not None and (data_dir / "secrets" / CREDENTIALS_FILE).exists():
        return read_credentials(data_dir / "secrets" / CREDENTIALS_FILE)
    return None


@dataclass(frozen=True)
class Topics:
    """The topic names under the prefix (`bloomkit/<device_id>`); a region's own topics sit under its name."""

    prefix: str

    @property
    def availability(self) -> str:
        return f"{self.prefix}/availability"

    @property
    def metrics(self) -> str:
        return f"{self.prefix}/metrics"

    def state(self, region: str | None) -> str:
        return self._of(region, "state")

    def events(self, region: str | None) -> str:
        return self._of(region, "events")

    def snapshot(self, region: str | None) -> str:
        return self._of(region, "snapshot")

    def _of(self, region: str | None, leaf: str) -> str:
        return f"{self.prefix}/{leaf}" if region is None else f"{self.prefix}/{region}/{leaf}"


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    retain: bool


def payload_bytes(payload: bytes | dict | str) -> bytes:
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, str):
        return payload.encode()
    return json.dumps(payload, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Tls:
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None


class MqttPublisher:
    """Publishes to one broker from a thread of its own; `publish` only queues and never waits."""

    def __init__(self, broker: BrokerUrl, client_id: str, availability_topic: str, *,
                 credentials: Credentials | None = None, tls: Tls = Tls(), queue_size: int = 1000) -> None:
        import paho.mqtt.client as paho

        self.broker = broker
        self._availability = availability_topic
        self._queue: collections.deque[Message] = collections.deque()
        self._queue_size = queue_size
        self._retained: dict[str, bytes] = {}  # the latest payload of each retained topic, for a reconnect
        self._changed = threading.Condition()
        self._acked: set[int] = set()
        self._subscriptions: dict[str, Callable[[str, bytes], None]] = {}
        self._connected = False
        self._fresh = False  # connected since the retained topics were last published
        self._closing = False
        self._abort = False
        self.dropped = 0
        self.published = 0
        self.error: str | None = None
        client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
        client.will_set(availability_topic, b"offline", qos=1, retain=True)
        client.reconnect_delay_set(*RECONNECT_DELAYS_S)
        client.max_inflight_messages_set(1)
        if credentials is not None:
            client.username_pw_set(credentials.username, credentials.password)
        if broker.tls:  # the options checks refuse TLS files for a plain mqtt:// URL
            self._set_tls(client, tls)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        self._client = client
        self._thread = threading.Thread(target=self._run, name="mqtt", daemon=True)

    @staticmethod
    def _set_tls(client, tls: Tls) -> None:
        if tls.key is not None:
            read_secret_file(tls.key, "--mqtt-key")  # refuses a private key others can read
        try:
            client.tls_set(ca_certs=str(tls.ca) if tls.ca else None, certfile=str(tls.cert) if tls.cert else None,
                           keyfile=str(tls.key) if tls.key else None)
        except (OSError, ValueError) as error:
            raise MqttError(f"--mqtt-ca/--mqtt-cert: {one_line(error)}") from None

    def subscribe(self, topic_filter: str, handler: Callable[[str, bytes], None]) -> None:
        """Call `handler(topic, payload)` (on paho's thread) for each message on `topic_filter`; before `start`."""
        self._subscriptions[topic_filter] = handler

    def start(self) -> None:
        self._client.connect_async(self.broker.host, self.broker.port, keepalive=KEEPALIVE_S)
        self._client.loop_start()
        self._thread.start()

    def publish(self, topic: str, payload: bytes | dict | str, retain: bool = False, live_only: bool = False) -> None:
        """Queue a message (QoS 1). `live_only`: worthless later, so not queued while disconnected (metrics)."""
        message = Message(topic, payload_bytes(payload), retain)
        with self._changed:
            if self._closing or (live_only and not self._connected):
                return
            if retain:
                self._retained[topic] = message.payload
                self._queue = collections.deque(m for m in self._queue if m.topic != topic)
            if len(self._queue) >= self._queue_size:
                self._queue.popleft()
                if self.dropped == 0 or self.dropped % 100 == 0:
                    log.warning("mqtt: queue full (%d); dropping the oldest messages", self._queue_size)
                self.dropped += 1
            self._queue.append(message)
            self._changed.notify_all()

    def status(self) -> dict:
        with self._changed:
            return {"broker": str(self.broker), "connected": self._connected, "queued": len(self._queue),
                    "dropped": self.dropped, "published": self.published, "error": self.error}

    def close(self, drain_s: float = 2.0) -> None:
        """Deliver what is queued (up to `drain_s` while connected), say `offline`, disconnect cleanly."""
        with self._changed:
            self._closing = True
            self._changed.notify_all()
        self._thread.join(drain_s)
        with self._changed:
            self._abort = True
            self._changed.notify_all()
        self._thread.join(1.0)
        if self._connected:
            info = self._client.publish(self._availability, b"offline", qos=1, retain=True)
            try:
                info.wait_for_publish(1.0)
            except (RuntimeError, ValueError):
                pass
        connected = self._connected
        self._client.disconnect()
        if connected:  # else paho may sit in a connect attempt (up to its 5 s timeout): its thread is a daemon
            self._client.loop_stop()

    # Paho's callbacks, on its network thread.

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._set_error(f"the broker refused the connection: {reason_code}")
            return
        if self.error is not None:
            log.info("mqtt: connected to %s", self.broker)
        for topic_filter in self._subscriptions:
            client.subscribe(topic_filter, qos=1)
        with self._changed:
            self._connected, self._fresh, self.error = True, True, None
            self._changed.notify_all()

    def _on_connect_fail(self, client, userdata) -> None:
        self._set_error(f"cannot connect to {self.broker}; retrying")

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._changed:
            was_connected, self._connected = self._connected, False
        if was_connected and not self._closing:
            self._set_error(f"lost the connection to {self.broker} ({reason_code}); reconnecting")

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._changed:
            self._acked.add(mid)
            self._changed.notify_all()

    def _on_message(self, client, userdata, message) -> None:
        import paho.mqtt.client as paho

        for topic_filter, handler in self._subscriptions.items():
            if paho.topic_matches_sub(topic_filter, message.topic):
                handler(message.topic, message.payload)

    def _set_error(self, error: str) -> None:
        if error != self.error:
            log.warning("mqtt: %s", error)
        self.error = error

    # The publishing thread.

    def _run(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._abort or (self._connected and (self._fresh or self._queue))
                                       or (self._closing and not (self._queue and self._connected)))
                if self._abort or (self._closing and not (self._queue and self._connected)):
                    return
                if self._fresh:
                    self._fresh = False
                    queued = {message.topic for message in self._queue}
                    batch = [Message(self._availability, b"online", True)]
                    batch += [Message(topic, payload, True) for topic, payload in self._retained.items()
                              if topic not in queued]
                else:
                    batch = [self._queue.popleft()]
            for message in batch:
                self._send(message)

    def _send(self, message: Message) -> None:
        """Hand one message to paho and wait for its acknowledgement; across a reconnect paho sends it again."""
        info = self._client.publish(message.topic, message.payload, qos=1, retain=message.retain)
        with self._changed:
            self._changed.wait_for(lambda: info.mid in self._acked or self._abort)
            if info.mid in self._acked:
                self._acked.discard(info.mid)
                self.published += 1
            if not message.payload and message.retain:
                self._retained.pop(message.topic, None)  # a deleted retained topic needs no republishing
