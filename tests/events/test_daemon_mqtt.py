"""`device run --mqtt` end to end: a real daemon on real photos, a real Mosquitto, real paho subscribers."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import time

import cv2
import jinja2
import numpy as np
import pytest

from device.metadata import read_model_info, write_metadata
from tests.conftest import free_port
from tests.daemon.conftest import LABELS
from testkit.mosquitto import Mosquitto, retained
from testkit.scenes import side_by_side, write_scene

pytestmark = pytest.mark.usefixtures("mosquitto_installed")  # each test starts a broker

# The keys Home Assistant's MQTT discovery requires per platform (its sensor, binary_sensor and image docs):
# sensor and binary_sensor need a state_topic; image needs image_topic (or url_topic), with content_type for
# raw image bytes. Each entity of a device needs a unique_id.
REQUIRED = {"sensor": {"state_topic"}, "binary_sensor": {"state_topic"}, "image": {"image_topic", "content_type"}}


def daemon_args(model, source: str, broker: Mosquitto, device_id: str, *extra: str) -> tuple[str, ...]:
    return ("--model", str(model), "--source", source, "--source-fps", "10", "--threads", "1", "--http",
            "127.0.0.1:0", "--mqtt", broker.url, "--device-id", device_id, *extra)


def configs_of(broker: Mosquitto, device_id: str, wait_s: float = 0.5) -> dict[str, dict]:
    found = retained(broker.port, f"homeassistant/+/bloomkit_{device_id}/+/config", wait_s)
    return {topic: json.loads(payload) for topic, payload in found.items()}


def render(template: str, payload: bytes) -> str:
    """A value_template evaluated as Home Assistant does: Jinja2 with `value_json` the decoded payload."""
    return jinja2.Environment().from_string(template).render(value_json=json.loads(payload)).strip()


def check_discovery(configs: dict[str, dict], device_id: str, labels, regions=("frame",)) -> None:
    node = f"bloomkit_{device_id}"
    unique_ids = [config["unique_id"] for config in configs.values()]
    assert len(set(unique_ids)) == len(unique_ids) == len(regions) * (3 + len(labels))
    for topic, config in configs.items():
        prefix, component, topic_node, object_id, leaf = topic.split("/")
        assert (prefix, topic_node, leaf) == ("homeassistant", node, "config")
        assert REQUIRED[component] <= set(config), (topic, sorted(config))
        assert config["unique_id"] == f"{node}_{object_id}"
        assert config["availability_topic"] == f"bloomkit/{device_id}/availability"
        assert (config["payload_available"], config["payload_not_available"]) == ("online", "offline")
        device = config["device"]
        assert device["identifiers"] == [node] and device["name"] == f"bloomkit {device_id}"
        assert device["model"] and device["sw_version"].startswith("bloomkit ")
    for region in regions:
        label_sensor = configs[f"homeassistant/sensor/{node}/{region}_label/config"]
        assert label_sensor["device_class"] == "enum" and label_sensor["options"] == list(labels) + ["none"]
        binary = {config["name"].split()[-1].lower() for topic, config in configs.items()
                  if f"/binary_sensor/{node}/{region}_" in topic}
        assert binary == {label.lower() for label in labels}


def test_the_daemon_appears_in_home_assistant_with_retained_state_snapshot_and_events(
        run_daemon, broker, recorders, reference_model, clear_photos, tmp_path):
    scene = write_scene(tmp_path / "scene", [("sunflowers", clear_photos["sunflowers"], 15),
                                             ("roses", clear_photos["roses"], 15)])
    recorder = recorders(broker.port, ("#",))
    (tmp_path / "data").mkdir()  # made by the deploy, outside the releases
    daemon = run_daemon(*daemon_args(reference_model, f"folder:{scene}", broker, "pi1", "--data-dir",
                                     str(tmp_path / "data"), "--mqtt-metrics-interval", "1"))
    health = daemon.healthy()
    starts = recorder.wait(lambda: (lambda s: len({e["label"] for e in s}) == 2 and s)(
        [e for e in recorder.json_on("bloomkit/pi1/events") if e["type"] == "start"]), what="two start events")
    assert {event["label"] for event in starts} == {"sunflowers", "roses"}
    ends = [e for e in recorder.json_on("bloomkit/pi1/events") if e["type"] == "end"]
    assert ends and ends[0]["end"] and ends[0]["duration_s"] > 0 and ends[0]["id"] == starts[0]["id"]

    now = retained(broker.port, "bloomkit/pi1/#")
    assert now["bloomkit/pi1/availability"] == b"online"
    state = json.loads(now["bloomkit/pi1/state"])
    assert state["label"] in ("sunflowers", "roses") and state["score"] >= 0.5 and state["event"]
    snapshot = cv2.imdecode(np.frombuffer(now["bloomkit/pi1/snapshot"], np.uint8), cv2.IMREAD_COLOR)
    assert snapshot is not None and snapshot.shape[2] == 3

    configs = configs_of(broker, "pi1")
    check_discovery(configs, "pi1", LABELS)
    label_sensor = configs["homeassistant/sensor/bloomkit_pi1/frame_label/config"]
    assert render(label_sensor["value_template"], now["bloomkit/pi1/state"]) == state["label"]
    assert render(label_sensor["value_template"], b'{"label": null, "score": null}') == "none"
    score = configs["homeassistant/sensor/bloomkit_pi1/frame_score/config"]
    assert float(render(score["value_template"], now["bloomkit/pi1/state"])) == round(state["score"] * 100, 1)
    for label in LABELS:
        binary = configs[f"homeassistant/binary_sensor/bloomkit_pi1/frame_{label}/config"]
        assert render(binary["value_template"], now["bloomkit/pi1/state"]) == ("ON" if label == state["label"] else "OFF")
    assert configs["homeassistant/image/bloomkit_pi1/frame_snapshot/config"]["image_topic"] == "bloomkit/pi1/snapshot"

    metrics = recorder.wait(lambda: recorder.json_on("bloomkit/pi1/metrics"), what="metrics")[-1]
    assert metrics["fps"] > 0 and metrics["model"]["sha256"] == health["model"]["sha256"]
    assert metrics["mqtt"]["connected"] is True

    # The HTTP side: recent events, their snapshots from the data directory, MQTT state on /healthz and /metrics.
    events = daemon.json("/api/events")[1]["events"]
    assert {event["id"] for event in events} >= {event["id"] for event in starts}
    status, jpeg = daemon.get(f"/api/events/{starts[0]['id']}/snapshot.jpg")
    assert status == 200 and jpeg[:2] == b"\xff\xd8"
    assert (tmp_path / "data" / "snapshots" / f"{starts[0]['id']}.jpg").read_bytes() == jpeg
    assert daemon.get("/api/events/nosuchevent/snapshot.jpg")[0] == 404
    assert daemon.get("/api/events/..%2f..%2fetc/snapshot.jpg")[0] == 404
    health = daemon.json("/healthz")[1]
    assert health["mqtt"]["connected"] is True and health["mqtt"]["dropped"] == 0
    assert "bloomkit_mqtt_connected 1" in daemon.get("/metrics")[1].decode()

    assert daemon.terminate() == 0
    assert retained(broker.port, "bloomkit/pi1/availability")["bloomkit/pi1/availability"] == b"offline"
    assert json.loads(retained(broker.port, "bloomkit/pi1/state")["bloomkit/pi1/state"])["label"] is None
    last = recorder.json_on("bloomkit/pi1/events")[-1]
    assert last["type"] == "end"  # the open event was ended, not left dangling

    # The same device again: the same entities (unique_id is stable across restarts).
    again = run_daemon(*daemon_args(reference_model, f"folder:{scene}", broker, "pi1"))
    again.healthy()
    recorder.wait(lambda: recorder.on("bloomkit/pi1/availability")[-1:] == [b"online"], what="online again")
    assert configs_of(broker, "pi1") == configs


def test_a_killed_daemon_shows_as_offline_through_its_last_will(run_daemon, broker, reference_model, clear_photos, tmp_path):
    scene = write_scene(tmp_path / "scene", [("daisy", clear_photos["daisy"], 1)])
    daemon = run_daemon(*daemon_args(reference_model, f"folder:{scene}", broker, "pi-kill"))
    daemon.healthy()
    topic = "bloomkit/pi-kill/availability"
    daemon.wait_for(lambda: retained(broker.port, topic, 0.3).get(topic) == b"online", what="online")
    daemon.process.send_signal(signal.SIGKILL)
    daemon.process.wait(5)
    deadline = time.monotonic() + 10
    while retained(broker.port, topic, 0.3).get(topic) != b"offline":
        assert time.monotonic() < deadline, "the broker did not publish the last will"


def test_a_hot_reloaded_model_with_other_labels_replaces_the_entities(run_daemon, broker, reference_model, clear_photos,
                                                                      tmp_path):
    scene = write_scene(tmp_path / "scene", [("roses", clear_photos["roses"], 1)])
    current = tmp_path / "model.tflite"
    shutil.copy(reference_model, current)
    daemon = run_daemon(*daemon_args(current, f"folder:{scene}", broker, "pi3"))
    daemon.healthy()
    daemon.wait_for(lambda: len(configs_of(broker, "pi3", 0.3)) == 8, what="the first model's entities")
    first = configs_of(broker, "pi3")

    model = reference_model.read_bytes()
    info = read_model_info(model)
    renamed = ("daisy", "dandelion", "rose", "sunflower", "tulip")  # three labels gone, three new
    staged = tmp_path / ".model.tflite.new"
    staged.write_bytes(write_metadata(model, renamed, mean=info.mean, std=info.std, name="flowers", version="v2"))
    os.replace(staged, current)

    def reloaded():
        configs = configs_of(broker, "pi3", 0.3)
        return "homeassistant/binary_sensor/bloomkit_pi3/frame_rose/config" in configs and configs
    configs = daemon.wait_for(reloaded, what="the new model's entities")
    check_discovery(configs, "pi3", renamed)
    for gone in ("roses", "sunflowers", "tulips"):
        assert f"homeassistant/binary_sensor/bloomkit_pi3/frame_{gone}/config" not in configs
    kept = "homeassistant/binary_sensor/bloomkit_pi3/frame_daisy/config"
    assert configs[kept]["unique_id"] == first[kept]["unique_id"]
    assert "v2" in configs[kept]["device"]["sw_version"]
    state = json.loads(retained(broker.port, "bloomkit/pi3/state")["bloomkit/pi3/state"])
    assert state["label"] in (None, *renamed)

    # Restarted with the first model again: the entities the second one left on the broker go too.
    assert daemon.terminate() == 0
    shutil.copy(reference_model, current)
    again = run_daemon(*daemon_args(current, f"folder:{scene}", broker, "pi3"))
    again.healthy()
    again.wait_for(lambda: set(configs_of(broker, "pi3", 0.3)) == set(first), what="the stale entities removed")


def test_regions_each_get_their_own_state_entities_and_latest_entry(run_daemon, broker, reference_model, clear_photos,
                                                                     tmp_path):
    scene = tmp_path / "scene"
    scene.mkdir()
    side_by_side(clear_photos["sunflowers"], clear_photos["roses"], scene / "pots.jpg")
    daemon = run_daemon(*daemon_args(reference_model, f"folder:{scene}", broker, "pi2", "--region", "left=0,0,0.5,1",
                                     "--region", "right=0.5,0,0.5,1"))
    daemon.healthy()

    def states():
        now = retained(broker.port, "bloomkit/pi2/+/state", 0.3)
        labels = {topic: json.loads(payload)["label"] for topic, payload in now.items()}
        return all(labels.values()) and len(labels) == 2 and labels
    assert daemon.wait_for(states, what="both regions' state") == {"bloomkit/pi2/left/state": "sunflowers",
                                                                    "bloomkit/pi2/right/state": "roses"}
    latest = daemon.json("/api/latest")[1]
    regions = {region["name"]: region for region in latest["regions"]}
    assert regions["left"]["box"] == [0, 0, 0.5, 1] and regions["left"]["top"][0]["label"] == "sunflowers"
    assert regions["right"]["top"][0]["label"] == "roses"
    configs = configs_of(broker, "pi2")
    check_discovery(configs, "pi2", LABELS, regions=("left", "right"))
    assert configs["homeassistant/sensor/bloomkit_pi2/left_label/config"]["state_topic"] == "bloomkit/pi2/left/state"
    snapshot = retained(broker.port, "bloomkit/pi2/left/snapshot")["bloomkit/pi2/left/snapshot"]
    assert cv2.imdecode(np.frombuffer(snapshot, np.uint8), cv2.IMREAD_COLOR).shape[:2] == (240, 240)  # the region


def test_a_broker_down_at_start_does_not_stop_classifying_and_gets_everything_once_up(run_daemon, reference_model,
                                                                                     clear_photos, tmp_path):
    port = free_port()
    scene = write_scene(tmp_path / "scene", [("tulips", clear_photos["tulips"], 1)])
    daemon = run_daemon("--model", str(reference_model), "--source", f"folder:{scene}", "--source-fps", "10",
                        "--threads", "1", "--http", "127.0.0.1:0", "--mqtt", f"mqtt://127.0.0.1:{port}",
                        "--device-id", "pi4")
    health = daemon.healthy()  # 200: health is the camera and the model, not the broker
    assert health["mqtt"]["connected"] is False and "cannot connect" in health["mqtt"]["error"]
    assert "bloomkit_mqtt_connected 0" in daemon.get("/metrics")[1].decode()
    daemon.wait_for(lambda: daemon.json("/api/events")[1]["events"], what="an event while the broker is down")
    assert daemon.json("/healthz")[1]["mqtt"]["queued"] > 0

    broker = Mosquitto(tmp_path, port=port)
    try:
        now = daemon.wait_for(lambda: (lambda r: len(r) >= 3 and r)(retained(port, "bloomkit/pi4/#", 0.3)),
                              timeout=60, what="the retained topics after the broker came up")
        assert now["bloomkit/pi4/availability"] == b"online"
        assert json.loads(now["bloomkit/pi4/state"])["label"] == "tulips"
        assert daemon.json("/healthz")[1]["mqtt"]["connected"] is True
        assert len(configs_of(broker, "pi4")) == 8
    finally:
        broker.stop()


def test_a_broker_that_never_answers_neither_blocks_inference_nor_the_stop(run_daemon, reference_model, clear_photos,
                                                                           tmp_path):
    silent = socket.socket()  # accepts TCP connections (the kernel does) but never says a word of MQTT
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        scene = write_scene(tmp_path / "scene", [("daisy", clear_photos["daisy"], 1)])
        daemon = run_daemon("--model", str(reference_model), "--source", f"folder:{scene}", "--source-fps", "10",
                            "--threads", "1", "--http", "127.0.0.1:0", "--device-id", "pi5",
                            "--mqtt", f"mqtt://127.0.0.1:{silent.getsockname()[1]}")
        health = daemon.healthy()
        frames = health["frames"]
        daemon.wait_for(lambda: daemon.json("/healthz")[1]["frames"] >= frames + 10, what="frames flowing")
        assert daemon.json("/healthz")[1]["mqtt"]["connected"] is False
        began = time.monotonic()
        assert daemon.terminate() == 0
        assert time.monotonic() - began < 2.0
    finally:
        silent.close()


def test_events_made_while_the_broker_restarts_arrive_all_and_in_order(run_daemon, recorders, reference_model,
                                                                      clear_photos, tmp_path):
    broker = Mosquitto(tmp_path, persistent=True)
    try:
        recorder = recorders(broker.port, ("bloomkit/pi6/events",), session="pi6-recorder")
        scene = write_scene(tmp_path / "scene", [("daisy", clear_photos["daisy"], 5),
                                                 ("tulips", clear_photos["tulips"], 5)])
        daemon = run_daemon(*daemon_args(reference_model, f"folder:{scene}", broker, "pi6"))
        daemon.healthy()
        recorder.wait(lambda: len(recorder.on("bloomkit/pi6/events")) >= 4, what="events before the restart")
        broker.stop()
        daemon.wait_for(lambda: daemon.json("/healthz")[1]["mqtt"]["queued"] >= 6, what="events queued")
        broker.start()
        daemon.wait_for(lambda: (lambda m: m["connected"] and m["queued"] == 0)(daemon.json("/healthz")[1]["mqtt"]),
                        timeout=60, what="the queue delivered")
        made = daemon.json("/api/events")[1]["events"][::-1]  # oldest first: what the daemon made
        assert daemon.json("/healthz")[1]["mqtt"]["dropped"] == 0

        def received():  # while the daemon runs: its bounded drain at shutdown is not what this test is about
            messages = recorder.distinct_json_on("bloomkit/pi6/events")
            return made[-1]["id"] in {m["id"] for m in messages} and messages
        messages = recorder.wait(received, what="every event made")
        daemon.terminate()
        seen = list(dict.fromkeys(m["id"] for m in messages))  # first appearance, in order of arrival
        assert seen == sorted(seen)  # ids sort by start time: no event overtook another
        ids = [event["id"] for event in made if event["id"] >= seen[0]]
        assert [i for i in seen if i in ids] == ids  # nothing the daemon made while the broker was away is lost
        for event_id in ids[:-1]:
            kinds = [m["type"] for m in messages if m["id"] == event_id]
            assert kinds[0] == "start" and kinds[-1] == "end" and "start" not in kinds[1:]
    finally:
        broker.stop()
