"""The MQTT publisher against a real Mosquitto: anonymous, with a password file, over TLS; its queue across outages."""
from __future__ import annotations

import time

import pytest

from device.daemon.mqtt import Credentials, MqttError, MqttPublisher, Tls, parse_broker_url
from testkit.mosquitto import Mosquitto, TestCa, retained
from testkit.processes import wait_until

pytestmark = pytest.mark.usefixtures("mosquitto_installed")  # each test starts a broker

AVAILABILITY = "bloomkit/t/availability"


def publisher_for(port: int, scheme: str = "mqtt", **kwargs) -> MqttPublisher:
    publisher = MqttPublisher(parse_broker_url(f"{scheme}://127.0.0.1:{port}"), "bloomkit-test", AVAILABILITY, **kwargs)
    publisher.start()
    return publisher


def wait_for(condition, timeout: float = 20.0, what: str = "the condition"):
    assert wait_until(condition, timeout, step=0.05), f"timed out waiting for {what}"


def test_anonymous_broker_gets_availability_and_retained_state(broker, recorders):
    recorder = recorders(broker.port, ("bloomkit/t/#",))
    publisher = publisher_for(broker.port)
    try:
        publisher.publish("bloomkit/t/state", {"label": "roses"}, retain=True)
        publisher.publish("bloomkit/t/events", {"n": 1})
        recorder.wait(lambda: recorder.on("bloomkit/t/events"), what="the event")
        assert recorder.on(AVAILABILITY) == [b"online"]
        assert retained(broker.port, "bloomkit/t/#") == {AVAILABILITY: b"online",
                                                          "bloomkit/t/state": b'{"label":"roses"}'}
        assert publisher.status()["connected"] and publisher.status()["published"] >= 3
    finally:
        publisher.close()
    assert retained(broker.port, AVAILABILITY)[AVAILABILITY] == b"offline"  # said on a clean stop, not only as the will


def test_password_broker_takes_the_right_credentials_and_refuses_wrong_ones(tmp_path):
    broker = Mosquitto(tmp_path, password=("pi", "s3cret"))
    try:
        good = publisher_for(broker.port, credentials=Credentials("pi", "s3cret"))
        wait_for(lambda: good.status()["connected"], what="a connection with the right password")
        good.publish("bloomkit/t/state", b"x", retain=True)
        wait_for(lambda: retained(broker.port, "bloomkit/t/state", 0.3, credentials=("pi", "s3cret")),
                   what="the state")
        good.close()
        bad = publisher_for(broker.port, credentials=Credentials("pi", "wrong"))
        wait_for(lambda: bad.status()["error"], what="an error")
        assert not bad.status()["connected"] and "refused" in bad.status()["error"]
        assert "wrong" not in repr(Credentials("pi", "wrong"))
        bad.close()
    finally:
        broker.stop()


@pytest.mark.parametrize("client_certificate", [False, True], ids=["server-cert", "client-cert-required"])
def test_tls_broker_with_a_test_ca(tmp_path, client_certificate):
    ca = TestCa(tmp_path)
    broker = Mosquitto(tmp_path, tls=ca, require_certificate=client_certificate)
    try:
        tls = Tls(ca.ca_pem, ca.client_pem, ca.client_key) if client_certificate else Tls(ca.ca_pem)
        publisher = publisher_for(broker.port, "mqtts", tls=tls)
        wait_for(lambda: publisher.status()["connected"], what="a TLS connection")
        publisher.close()
        untrusted = publisher_for(broker.port, "mqtts")  # the system's CAs do not know the test CA
        time.sleep(1.5)
        assert not untrusted.status()["connected"] and untrusted.status()["error"]
        untrusted.close()
    finally:
        broker.stop()


def test_a_private_key_others_can_read_is_refused(tmp_path):
    ca = TestCa(tmp_path)
    ca.client_key.chmod(0o644)
    with pytest.raises(MqttError, match="readable by others"):
        MqttPublisher(parse_broker_url("mqtts://127.0.0.1:1"), "x", AVAILABILITY,
                      tls=Tls(ca.ca_pem, ca.client_pem, ca.client_key))


def test_the_queue_keeps_order_across_a_broker_restart_and_drops_only_the_oldest(tmp_path, recorders):
    broker = Mosquitto(tmp_path, persistent=True)
    # A subscriber with a persistent session: the broker keeps what arrives for it while it reconnects.
    recorder = recorders(broker.port, ("bloomkit/t/#",), session="recorder")
    publisher = publisher_for(broker.port, queue_size=40)
    try:
        publisher.publish("bloomkit/t/events", {"n": 0})
        recorder.wait(lambda: recorder.on("bloomkit/t/events"), what="the first event")
        broker.stop()
        wait_for(lambda: not publisher.status()["connected"], what="the publisher to notice")
        for n in range(1, 51):  # 50 events into a queue of 40: the 10 oldest go
            publisher.publish("bloomkit/t/events", {"n": n})
        for label in ("roses", "daisy", "tulips"):  # retained: only the latest is kept, in one queue slot
            publisher.publish("bloomkit/t/state", {"label": label}, retain=True)
        publisher.publish("bloomkit/t/metrics", {"fps": 1}, live_only=True)  # stale later: never queued
        status = publisher.status()
        assert not status["connected"] and status["queued"] == 40 and status["dropped"] == 11
        broker.start()
        recorder.wait(lambda: recorder.on("bloomkit/t/state"), timeout=40, what="the queue after the restart")
        received = [event["n"] for event in recorder.distinct_json_on("bloomkit/t/events")]
        assert received == [0] + list(range(12, 51))  # in order, none lost; 1..11 were the oldest
        assert recorder.json_on("bloomkit/t/state") == [{"label": "tulips"}]
        assert recorder.on("bloomkit/t/metrics") == []
        assert publisher.status()["queued"] == 0 and publisher.status()["connected"]
    finally:
        publisher.close()
        broker.stop()


def test_retained_topics_are_published_again_to_a_broker_that_lost_them(broker):
    publisher = publisher_for(broker.port)
    try:
        publisher.publish("bloomkit/t/state", {"label": "roses"}, retain=True)
        wait_for(lambda: retained(broker.port, "bloomkit/t/state", 0.3), what="the state")
        broker.restart()  # no persistence: the broker forgets every retained message
        wait_for(lambda: retained(broker.port, "bloomkit/t/#", 0.3).get("bloomkit/t/state") == b'{"label":"roses"}',
                   timeout=40, what="the state published again")
        assert retained(broker.port, AVAILABILITY, 0.3)[AVAILABILITY] == b"online"
    finally:
        publisher.close()


@pytest.mark.parametrize("url", ["mqtt:/nohost", "http://broker:1883", "mqtt://broker:99999", "mqtt://u:p@broker",
                                 "mqtt://broker/topic", "broker:1883"])
def test_malformed_broker_urls_are_one_line_errors(url):
    with pytest.raises(MqttError) as error:
        parse_broker_url(url)
    assert "\n" not in str(error.value) and "p@" not in str(error.value)


def test_broker_url_defaults():
    assert str(parse_broker_url("mqtt://pi.local")) == "mqtt://pi.local:1883"
    assert str(parse_broker_url("mqtts://[::1]")) == "mqtts://[::1]:8883"
