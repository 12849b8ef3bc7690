"""MQTT for the agent's reports: `mqtt://host[:port]` URLs and one retained message per device, so that
`fab fleet-status --mqtt URL` sees the whole fleet's last state without SSH (paho-mqtt)."""
from __future__ import annotations

import json
from device.errors import UserError

DEFAULT_PORT = 1883
TOPIC = "bloomkit/{device}/release"
TIMEOUT_S = 10


class MqttError(UserError):
    """The broker cannot be reached or refused us."""


def parse_url(url: str) -> tuple[str, int]:
    """`mqtt://host[:port]` (or `host[:port]`) → (host, port), through the one HOST:PORT parser."""
    from device.hostport import HostPortError, parse_host_port

    scheme, separator, address = url.partition("://")
    if not separator:
        scheme, address = "mqtt", url
    if scheme != "mqtt" or "/" in address.rstrip("/") or "@" in address:
        raise MqttError(f"{url!r}: expected mqtt://HOST[:PORT]")
    try:
        return parse_host_port(address.rstrip("/"), DEFAULT_PORT)
    except HostPortError as error:
        raise MqttError(f"MQTT broker {error}") from None


def topic(device_id: str) -> str:
    return TOPIC.format(device=device_id)


def publish_retained(url: str, device_id: str, report: dict) -> None:
    """Publish `report` as the device's retained message (QoS 1), and wait until the broker has it."""
    import paho.mqtt.client as mqtt

    host, port = parse_url(url)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bloomkit-agent-{device_id}")
    try:
        client.connect(host, port, keepalive=30)
        client.loop_start()
        info = client.publish(topic(device_id), json.dumps(report), qos=1, retain=True)
        info.wait_for_publish(TIMEOUT_S)
        if not info.is_published():
            raise MqttError(f"the broker at {host}:{port} did not take the report in {TIMEOUT_S} s")
    except OSError as error:
        raise MqttError(f"cannot reach the MQTT broker at {host}:{port}: {error.strerror or error}") from None
    finally:
        client.loop_stop()
        client.disconnect()


def read_retained(url: str, wait: float = 1.0) -> list[dict]:
    """Every device's retained report (what the broker hands a new subscriber), gathered for `wait` seconds
    after subscribing."""
    import threading
    import time

    import paho.mqtt.client as mqtt

    host, port = parse_url(url)
    reports: dict[str, dict] = {}
    subscribed = threading.Event()

    def on_message(client, userdata, message):
        try:
            report = json.loads(message.payload)
        except ValueError:
            return
        if isinstance(report, dict):
            reports[message.topic] = report

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.on_message = on_message
    client.on_subscribe = lambda *args: subscribed.set()
    try:
        client.connect(host, port, keepalive=30)
    except OSError as error:
        raise MqttError(f"cannot reach the MQTT broker at {host}:{port}: {error.strerror or error}") from None
    client.loop_start()
    try:
        client.subscribe(TOPIC.format(device="+"), qos=1)
        if not subscribed.wait(TIMEOUT_S):
            raise MqttError(f"the broker at {host}:{port} did not confirm the subscription")
        time.sleep(wait)
    finally:
        client.loop_stop()
        client.disconnect()
    return [reports[t] for t in sorted(reports)]
