"""`device info` and `trainer metadata` as a person runs them, on real files.

In-process through the CLIs' own entry (which turns `UserError`s into one line, and lets any other
exception escape, failing the test); one real process checks that `trainer metadata` runs without
TensorFlow.
"""
from __future__ import annotations

import functools
import json
import re
import subprocess
import sys

import pytest

from device import cli as device_cli
from device.metadata import read_model_info
from device.metadata import write_metadata
from tests.device.tiny_models import channel_mean_model
from tests.metadata.conftest import quantization_normalization
from tests.metadata.conftest import FLOWERS
from trainer import cli as trainer_cli

# `trainer metadata` in a fresh process, reporting whether TensorFlow got imported
TRAINER_METADATA = """
import sys
from trainer.cli import main
code = main(sys.argv[1:])
print("tensorflow imported:", "tensorflow" in sys.modules, file=sys.stderr)
sys.exit(code)
"""


@pytest.fixture
def cli(capsys):
    """Run a CLI's `main` in this process, as a CompletedProcess (exit code, stdout, stderr)."""
    def run(main, *arguments) -> subprocess.CompletedProcess:
        code = main(list(map(str, arguments)))
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(arguments, code, out, err)
    return run


@pytest.fixture
def device(cli):
    return functools.partial(cli, device_cli.main)


@pytest.fixture
def trainer_metadata(cli):
    return functools.partial(cli, trainer_cli.main, "metadata")


def test_info_for_people_and_for_scripts(model_maker_model, device):
    shown = device("info", model_maker_model)
    assert shown.returncode == 0, shown.stderr
    lines = dict(line.split(None, 1) for line in shown.stdout.splitlines() if not line.startswith("labels"))
    assert lines["name"] == "efficientnet_lite0"
    assert lines["normalization"] == "mean 0, std 255"
    assert "uint8 [1, 224, 224, 3]" in lines["input"]
    assert lines["runtime"].startswith("ai-edge-litert")
    assert re.search(r"^labels \(5\) +daisy, dandelion, roses, sunflowers, tulips$", shown.stdout, re.M)
    column = len("normalization  ")   # the longest key, then the values, aligned
    assert all(line[column - 2:column] == "  " and line[column] != " " for line in shown.stdout.splitlines())

    report = json.loads(device("info", model_maker_model, "--json").stdout)
    assert report["labels"] == list(FLOWERS)
    # the tensor's name and quantization are the model's, not its metadata's: Model Maker's is input_1,
    # 1/255 and 0; the stand-in a user's clone trains has its own (see the model_maker_model fixture)
    from ai_edge_litert.interpreter import Interpreter

    tensor = Interpreter(str(model_maker_model)).get_input_details()[0]
    scale, zero_point = tensor["quantization"]
    assert report["input"] == {"name": tensor["name"], "shape": [1, 224, 224, 3], "dtype": "uint8",
                               "scale": pytest.approx(scale), "zero_point": zero_point}
    assert report["input_size"] == [224, 224] and report["has_metadata"]


def bad_files(reference_model, bare_model, tmp_path):
    data = reference_model.read_bytes()
    (tmp_path / "photo.jpg").write_bytes(b"\xff\xd8\xff\xe0JFIF" + bytes(64))
    (tmp_path / "half.tflite").write_bytes(data[:len(data) // 2])
    (tmp_path / "three.txt").write_text("daisy\nroses\ntulips\n")
    return {
        "not a TFLite model": [tmp_path / "photo.jpg"],
        "truncated": [tmp_path / "half.tflite"],
        "no metadata": [bare_model],
        "3 labels, but the model outputs 5": [reference_model, "--labels", tmp_path / "three.txt"],
        "No such file": [tmp_path / "missing.tflite"],
    }


def test_info_on_bad_files_says_one_line(reference_model, bare_model, tmp_path, device):
    for message, arguments in bad_files(reference_model, bare_model, tmp_path).items():
        shown = device("info", *arguments)
        assert shown.returncode == 1 and shown.stdout == ""
        assert shown.stderr.startswith("device: error: ") and shown.stderr.count("\n") == 1, shown.stderr
        assert message in shown.stderr


def test_trainer_metadata_round_trip_without_tensorflow(bare_model, tmp_path, trainer_metadata):
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(FLOWERS) + "\n")
    out = tmp_path / "flowers.tflite"
    done = subprocess.run([sys.executable, "-c", TRAINER_METADATA, "metadata", bare_model, "--labels", labels,
                           "--name", "flowers", "--version", "v3", "--author", "me", "-o", out],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "tensorflow imported: False" in done.stderr
    info = read_model_info(out)
    assert (info.name, info.version, info.author, info.labels) == ("flowers", "v3", "me", FLOWERS)
    mean, std = quantization_normalization(bare_model)
    assert (info.mean, info.std) == ((mean,), (pytest.approx(std),))   # from the uint8 input's quantization

    done = trainer_metadata(out, "--labels", labels, "--mean", "127", "--std", "128", "-o", out)
    assert done.returncode == 0, done.stderr
    info = read_model_info(out)
    assert (info.name, info.mean, info.std) == ("flowers", (127.0,), (128.0,))


def test_trainer_metadata_refuses_and_keeps_the_output(bare_model, tmp_path, trainer_metadata):
    out = tmp_path / "out.tflite"
    out.write_bytes(b"precious")
    labels = tmp_path / "labels.txt"
    labels.write_text("one\ntwo\n")
    done = trainer_metadata(bare_model, "--labels", labels, "-o", out)
    assert done.returncode == 1 and "2 labels, but the model outputs 5" in done.stderr
    assert "Traceback" not in done.stderr
    assert out.read_bytes() == b"precious"
    done = trainer_metadata(bare_model, "--labels", labels, "--mean", "1", "-o", out)
    assert done.returncode == 1 and "--mean and --std together" in done.stderr


def _rgb_model(path, **metadata):
    """A TF-free uint8 model with 3 outputs (input scale 1/255); with metadata when given its fields."""
    model = channel_mean_model("uint8", input_quantization=(1 / 255, 0), output_quantization=(1 / 256, 0))
    path.write_bytes(write_metadata(model, ["r", "g", "b"], **metadata) if metadata else model)
    return path


def test_trainer_metadata_keeps_what_the_existing_metadata_says(tmp_path, trainer_metadata):
    model = _rgb_model(tmp_path / "rgb.tflite", mean=[127.0], std=[128.0], name="custom", version="v7",
                       description="colours", author="someone", license="MIT")
    (tmp_path / "labels.txt").write_text("red\ngreen\nblue\n")
    done = trainer_metadata(model, "--labels", tmp_path / "labels.txt", "-o", tmp_path / "out.tflite")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("3 labels, mean 127, std 128")
    info = read_model_info(tmp_path / "out.tflite")
    assert info.labels == ("red", "green", "blue")
    assert (info.mean, info.std) == ((127.0,), (128.0,))
    assert (info.name, info.version, info.description, info.author, info.license) == (
        "custom", "v7", "colours", "someone", "MIT")

    done = trainer_metadata(model, "--labels", tmp_path / "labels.txt", "--name", "renamed", "--mean", "0",
                            "--std", "255", "-o", tmp_path / "out.tflite")
    info = read_model_info(tmp_path / "out.tflite")
    assert (info.name, info.version, info.mean, info.std) == ("renamed", "v7", (0.0,), (255.0,))


def test_trainer_metadata_on_a_bare_model_takes_a_clean_std_from_the_quantization(tmp_path, trainer_metadata):
    model = _rgb_model(tmp_path / "bare.tflite")
    (tmp_path / "labels.txt").write_text("r\ng\nb\n")
    done = trainer_metadata(model, "--labels", tmp_path / "labels.txt", "-o", tmp_path / "out.tflite")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("3 labels, mean 0, std 255")
    info = read_model_info(tmp_path / "out.tflite")
    assert (info.mean, info.std, info.name, info.version) == ((0.0,), (255.0,), "bare", "v1")
