"""`device run --config FILE`: TOML or YAML with the flags' names; flags given on the command line win."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

from device.daemon.config import ConfigError, Settings, add_options, resolve
from device.errors import UserError


def parse(*argv: str) -> Settings:
    parser = argparse.ArgumentParser()
    add_options(parser)
    return resolve(parser.parse_args(argv))


def test_toml_config_with_dashes_or_underscores(tmp_path):
    config = tmp_path / "device.toml"
    config.write_text('model = "/var/lib/bloomkit/model.tflite"\nsource = "folder:/photos"\n"source-fps" = 2.5\n'
                      'top_k = 2\nallow = ["daisy", "roses"]\nema = 0.3\non_change = true\nhttp = "0.0.0.0:9000"\n'
                      '"max-frame-gap" = 12\n')
    settings = parse("--config", str(config))
    assert settings.model == Path("/var/lib/bloomkit/model.tflite")
    assert (settings.source, settings.source_fps, settings.top_k) == ("folder:/photos", 2.5, 2)
    assert settings.allow == ("daisy", "roses") and settings.ema == 0.3 and settings.on_change
    assert settings.http_address == ("0.0.0.0", 9000) and settings.max_frame_gap == 12


def test_yaml_config_and_flags_override_it(tmp_path):
    config = tmp_path / "device.yaml"
    config.write_text("model: a.tflite\ntop-k: 5\nthreshold: 0.2\njsonl: /tmp/out.jsonl\nsmooth: 4\nhttp: off\n")
    settings = parse("--config", str(config), "--top-k", "1", "--model", "b.tflite", "--deny", "daisy,roses",
                     "--deny", "tulips")
    assert settings.model == Path("b.tflite") and settings.top_k == 1
    assert settings.deny == ("daisy", "roses", "tulips"), "as device classify takes them"
    assert settings.threshold == 0.2 and settings.jsonl == "/tmp/out.jsonl" and settings.smooth == 4
    assert settings.http_address is None, "YAML's bare off (a boolean) turns HTTP off"


def test_defaults_without_a_config():
    settings = parse("--model", "m.tflite")
    assert settings.http_address == ("127.0.0.1", 8080), "HTTP on localhost unless configured"
    assert (settings.top_k, settings.smooth, settings.ema, settings.jsonl) == (3, 0, None, None)


@pytest.mark.parametrize("name, text, message", [
    ("c.toml", 'model = "m"\nframes = 3\n', "unknown option 'frames'"),
    ("c.toml", 'model = "m"\ntop_k = "many"\n', "invalid int value: 'many'"),
    ("c.toml", 'model = "m"\non_change = "yes"\n', "on_change must be true or false"),
    ("c.toml", "model = \n", "not valid TOML"),
    ("c.yaml", "model: [unclosed\n", "not valid YAML"),
    ("c.yaml", "- a list\n", "expected option = value pairs"),
    ("c.ini", "model = m\n", "name it .toml, .yaml or .yml"),
    ("c.toml", 'top_k = 3\n', "no model"),
])
def test_bad_config_files_are_one_line_errors(tmp_path, name, text, message):
    config = tmp_path / name
    config.write_text(text)
    with pytest.raises(ConfigError, match=message) as error:
        parse("--config", str(config))
    assert "\n" not in str(error.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="No such file"):
        parse("--config", str(tmp_path / "absent.toml"))


def test_a_config_that_is_not_a_regular_file_is_not_read(tmp_path):
    os.mkfifo(tmp_path / "device.toml")  # reading it would wait for a writer forever
    (tmp_path / "zero.toml").symlink_to("/dev/zero")  # and this would never end
    for name in ("device.toml", "zero.toml"):
        with pytest.raises(ConfigError, match=f"config .*{name}: not a regular file"):
            parse("--config", str(tmp_path / name))


@pytest.mark.parametrize("argv, message", [
    (["--smooth", "3", "--ema", "0.5"], "pick one"),
    (["--ema", "1.5"], "--ema 1.5: must be positive and at most 1"),
    (["--ema", "nan"], "--ema nan: must be a finite number"),
    (["--http", "8080"], "expected HOST:PORT"),
    (["--max-frame-gap", "0"], "--max-frame-gap 0: must be positive"),
    (["--max-frame-gap", "inf"], "--max-frame-gap inf: must be a finite number"),
    (["--source-fps", "nan"], "--source-fps nan: must be a finite number"),
    (["--source-fps", "inf"], "--source-fps inf: must be a finite number"),
    (["--source-fps", "-1"], "--source-fps -1: must be at least 0"),
    (["--stream-fps=-inf"], "--stream-fps -inf: must be a finite number"),
    (["--smooth", "-2"], "--smooth -2: must be at least 0"),
    (["--jsonl-max-mb", "0"], "--jsonl-max-mb 0: must be positive"),
    # The classifier's: checked with the rest, not when the model loads (m.tflite does not exist).
    (["--top-k", "0"], "--top-k 0: must be at least 1"),
    (["--threshold", "1.5"], "--threshold 1.5: must be at least 0 and at most 1"),
    (["--threshold=-0.1"], "--threshold -0.1: must be at least 0 and at most 1"),
    (["--threads", "0"], "--threads 0: must be at least 1"),
])
def test_bad_values_are_one_line_errors(argv, message):
    with pytest.raises(UserError) as error:
        parse("--model", "m.tflite", *argv)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_nan_in_a_config_file_is_refused_too(tmp_path):
    config = tmp_path / "device.toml"
    config.write_text('model = "m.tflite"\nsource_fps = nan\n')  # TOML has nan and inf literals
    with pytest.raises(UserError, match="--source-fps nan: must be a finite number"):
        parse("--config", str(config))


@pytest.mark.parametrize("line, message", [
    ("threads = 0", "--threads 0: must be at least 1"),
    ("threshold = 1.5", "--threshold 1.5: must be at least 0 and at most 1"),
    ("top_k = -2", "--top-k -2: must be at least 1"),
])
def test_the_classifiers_options_in_a_config_file_are_range_checked_too(tmp_path, line, message):
    config = tmp_path / "device.toml"
    config.write_text(f'model = "m.tflite"\n{line}\n')          # no such model: nothing is loaded to find out
    with pytest.raises(UserError) as error:
        parse("--config", str(config))
    assert str(error.value) == message


@pytest.mark.parametrize("source, anchored", [
    ("folder:photos", "folder:{folder}/photos"),
    ("clips/garden.mp4", "{folder}/clips/garden.mp4"),
    ("folder:/srv/photos", "folder:/srv/photos"),
    ("opencv:0", "opencv:0"),
    ("picamera2:1", "picamera2:1"),
    ("rtsp://camera.local/stream", "rtsp://camera.local/stream"),
])
def test_relative_paths_in_a_config_file_are_relative_to_its_folder(tmp_path, monkeypatch, source, anchored):
    folder = tmp_path / "etc"
    folder.mkdir()
    (folder / "device.toml").write_text(f'model = "model.tflite"\nlabels = "../labels.txt"\n'
                                        f'jsonl = "results.jsonl"\nsource = "{source}"\n')
    monkeypatch.chdir(tmp_path)
    settings = parse("--config", "etc/device.toml", "--http", "off")
    folder = Path("etc")
    assert settings.model == folder / "model.tflite" and settings.labels == folder / "../labels.txt"
    assert settings.jsonl == str(folder / "results.jsonl")
    assert settings.source == anchored.format(folder=folder)


def test_paths_given_as_flags_stay_relative_to_the_working_directory(tmp_path):
    config = tmp_path / "device.toml"
    config.write_text('model = "/opt/model.tflite"\njsonl = "-"\n')
    settings = parse("--config", str(config), "--labels", "labels.txt", "--source", "folder:photos")
    assert settings.model == Path("/opt/model.tflite") and settings.jsonl == "-"
    assert settings.labels == Path("labels.txt") and settings.source == "folder:photos"


def test_the_data_directory_is_an_option_and_a_config_setting_checked_before_the_start(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    assert parse("--model", "m.tflite").data_dir is None                       # no data directory unless given
    assert parse("--model", "m.tflite", "--data-dir", str(data)).data_dir == data
    config = tmp_path / "device.toml"
    config.write_text('model = "m.tflite"\ndata_dir = "data"\n')
    assert parse("--config", str(config)).data_dir == data                      # relative to the file
    with pytest.raises(ConfigError, match="--data-dir .*missing: no such directory"):
        parse("--model", "m.tflite", "--data-dir", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="--data-dir .*device.toml: not a directory"):
        parse("--model", "m.tflite", "--data-dir", str(config))


@pytest.mark.parametrize("address, expected", [
    ("127.0.0.1:0", ("127.0.0.1", 0)),          # any free port: the daemon says which on its start line
    ("[::1]:8080", ("::1", 8080)),
])
def test_http_addresses(address, expected):
    assert parse("--model", "m.tflite", "--http", address).http_address == expected


@pytest.mark.parametrize("address", ["127.0.0.1:70000", "127.0.0.1:-1", "127.0.0.1:abc", ":8080", "[a]:1"])
def test_bad_http_addresses_are_one_line(address):
    with pytest.raises(ConfigError, match="--http") as caught:
        parse("--model", "m.tflite", "--http", address)
    assert "\n" not in str(caught.value)
