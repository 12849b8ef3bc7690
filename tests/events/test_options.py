"""Event options: flags and config file alike, and every bad value a one-line error at start."""
from __future__ import annotations

import argparse

import pytest

from device import cli
from device.daemon.config import add_options, resolve
from device.daemon.mqtt import Credentials, find_credentials


def settings_from(*argv: str):
    parser = argparse.ArgumentParser()
    add_options(parser)
    return resolve(parser.parse_args(argv))


def secret(path, text: str, mode: int = 0o600):
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.mark.parametrize("argv, message", [
    (["--mqtt", "mqtt//broker"], "--mqtt mqtt//broker: expected mqtt://HOST[:PORT]"),
    (["--mqtt", "mqtt://broker:70000"], "expected mqtt://HOST[:PORT]"),
    (["--mqtt", "mqtt://me:pw@broker"], "no credentials in the URL"),
    (["--region", "left=0,0,0.6,1", "--region", "right=0.5,0,0.6,1"], "--region right=0.5,0,0.6,1: outside the frame"),
    (["--region", "pot=0.2,0.2,0,0.5"], "width and height must be above 0"),
    (["--region", "pot=0,0,0.5,1", "--region", "pot=0.5,0,0.5,1"], "--region pot: two regions with one name"),
    (["--region", "pot=0,0,half,1"], "expected NAME=x,y,w,h"),
    (["--region", "pot/1=0,0,1,1"], "the name may use letters"),
    (["--event-threshold", "1.5"], "--event-threshold 1.5: must be at least 0 and at most 1"),
    (["--event-min-frames", "0"], "--event-min-frames 0: must be at least 1"),
    (["--event-clear-seconds", "inf"], "--event-clear-seconds inf: must be a finite number"),
    (["--snapshot-budget", "nan"], "--snapshot-budget nan: must be a finite number"),
    (["--mqtt-metrics-interval", "0"], "--mqtt-metrics-interval 0: must be positive"),
    (["--webhook", "ftp://example.com/x"], "--webhook ftp://example.com/x: expected an http:// or https:// URL"),
    (["--mqtt", "mqtt://broker", "--mqtt-ca", "ca.pem"], "need an mqtts:// broker URL"),
    (["--mqtt", "mqtts://broker", "--mqtt-cert", "c.pem"], "--mqtt-cert and --mqtt-key go together"),
    (["--mqtt", "mqtt://broker", "--mqtt-prefix", "bloomkit/#"], "no wildcards"),
    (["--device-id", "Pi One"], "--device-id Pi One: use lowercase letters"),
    (["--mqtt-credentials", "secret"], "need --mqtt URL"),
])
def test_bad_event_options_are_one_line_errors_at_start(argv, message, capsys, tmp_path):
    assert cli.main(["run", "--model", str(tmp_path / "model.tflite"), *argv]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("device: error: ") and message in error


@pytest.mark.parametrize("mode, text, message", [
    (0o644, "pi:pw\n", "readable by others (mode 0644); chmod 600 it"),
    (0o600, "no colon here\n", "expected one line user:password"),
    (None, "", "No such file or directory"),
])
def test_a_credentials_file_must_be_private_readable_and_well_formed(mode, text, message, capsys, tmp_path,
                                                                      reference_model):
    credentials = tmp_path / "mqtt-credentials"
    if mode is not None:
        secret(credentials, text, mode)
    code = cli.main(["run", "--model", str(reference_model), "--source", f"folder:{tmp_path / 'none'}",
                     "--mqtt", "mqtt://127.0.0.1:1", "--mqtt-credentials", str(credentials)])
    error = capsys.readouterr().err
    assert code == 1 and error.count("\n") == 1 and message in error
    assert "pw" not in error


def test_credentials_come_from_the_file_given_then_the_environment_then_the_data_directory(tmp_path):
    given = secret(tmp_path / "given", "a:1")
    (tmp_path / "data" / "secrets").mkdir(parents=True)
    secret(tmp_path / "data" / "secrets" / "mqtt-credentials", "c:3\n")
    environ = {"BLOOMKIT_MQTT_USERNAME": "b", "BLOOMKIT_MQTT_PASSWORD": "2"}
    assert find_credentials(given, tmp_path / "data", environ) == Credentials("a", "1")
    assert find_credentials(None, tmp_path / "data", environ) == Credentials("b", "2")
    assert find_credentials(None, tmp_path / "data", {}) == Credentials("c", "3")
    assert find_credentials(None, tmp_path / "elsewhere", {}) is None


def test_event_options_in_a_config_file_with_paths_relative_to_it(tmp_path, monkeypatch):
    folder = tmp_path / "etc"
    (folder / "data").mkdir(parents=True)
    (folder / "device.toml").write_text(
        'model = "model.tflite"\nmqtt = "mqtts://broker.lan"\nmqtt_ca = "ca.pem"\nmqtt-credentials = "secret"\n'
        'data_dir = "data"\nha_discovery = false\nregion = ["left=0,0,0.5,1", "right=0.5,0,0.5,1"]\n'
        'event_min_frames = 5\nwebhook = "http://hooks.lan/bloomkit"\n')
    monkeypatch.chdir(tmp_path)
    settings = settings_from("--config", "etc/device.toml", "--event-min-frames", "2")
    folder = folder.relative_to(tmp_path)  # the file's own folder, as the config file was named
    events = settings.events
    assert events.mqtt == "mqtts://broker.lan" and events.mqtt_ca == folder / "ca.pem"
    assert events.mqtt_credentials == folder / "secret" and settings.data_dir == folder / "data"
    assert events.ha_discovery is False and events.event_min_frames == 2  # the flag wins over the file
    assert [region.name for region in events.regions] == ["left", "right"]
    assert events.webhook == "http://hooks.lan/bloomkit"


def test_defaults_come_from_the_host_name(monkeypatch):
    monkeypatch.setattr("socket.gethostname", lambda: "Garden-Pi.local")
    events = settings_from("--model", "m.tflite", "--mqtt", "mqtt://broker").events
    assert events.resolved_device_id == "garden-pi"
    assert events.topic_prefix == "bloomkit/garden-pi" and events.client_id == "bloomkit-garden-pi"
    assert events.ha_discovery is True
    custom = settings_from("--model", "m.tflite", "--device-id", "pot1", "--mqtt-prefix", "home/greenhouse").events
    assert custom.topic_prefix == "home/greenhouse" and custom.client_id == "bloomkit-pot1"
