"""Fixtures of the metadata tests: the tflite-support venv (Google's readers and writers), a bare model and
Model Maker's model."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import MODEL_MAKER_MODEL, REPO, require

TFLITE_SUPPORT_VENV = REPO / ".venvs" / "tflite-support"
PROBE = Path(__file__).with_name("tflite_support_probe.py")
FLOWERS = ("daisy", "dandelion", "roses", "sunflowers", "tulips")


@pytest.fixture(scope="session")
def tflite_support():
    """Run tflite_support_probe.py in the tflite-support 0.4.4 venv, made on first use; returns its JSON."""
    made = subprocess.run([REPO / "scripts" / "make-tflite-support-venv", TFLITE_SUPPORT_VENV],
                          capture_output=True, text=True)
    require(made.returncode == 0, f"cannot make the tflite-support venv: {made.stderr.strip()[-500:]}")

    def probe(*arguments) -> object:
        done = subprocess.run([TFLITE_SUPPORT_VENV / "bin" / "python", PROBE, *map(str, arguments)],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    return probe


def quantization_normalization(model: Path) -> tuple[float, float]:
    """The (mean, std) a model's quantized input stands for when it has no metadata: raw pixels, read as
    (pixel - zero_point) * scale. Model Maker's is (0, 255); ours is what the converter chose."""
    from ai_edge_litert.interpreter import Interpreter

    scale, zero_point = Interpreter(str(model)).get_input_details()[0]["quantization"]
    return float(zero_point), 1 / scale


@pytest.fixture(scope="session")
def bare_model(reference_model, tflite_support, tmp_path_factory) -> Path:
    """The flowers model re-packed by tflite-support's own schema code without its metadata."""
    out = tmp_path_factory.mktemp("bare") / "bare.tflite"
    tflite_support("strip", reference_model, out)
    return out


@pytest.fixture(scope="session")
def model_maker_model(request, tmp_path_factory) -> Path:
    """An int8 flowers model with Model Maker 0.4.3's metadata, and that metadata as tflite-support displays
    it in `.metadata.json` beside it: the file Model Maker exported when ../shared has it, else (a user's
    clone) this session's trained model, bare, given the same metadata by tflite-support's own writers,
    an implementation independent of ours (on Model Maker's bare model they reproduce its JSON exactly)."""
    if MODEL_MAKER_MODEL.is_file():
        return MODEL_MAKER_MODEL
    tflite_support = request.getfixturevalue("tflite_support")
    model = tmp_path_factory.mktemp("model-maker") / MODEL_MAKER_MODEL.name
    bare = request.getfixturevalue("bare_model")   # the trained model's: reference_model falls back to it
    tflite_support("model-maker", bare, model, *FLOWERS)
    model.with_suffix(".metadata.json").write_text(json.dumps(tflite_support("display", model)["metadata"]))
    return model


TINY_FLOAT_MODEL = """
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import tensorflow as tf
inputs = tf.keras.Input((32, 48, 3), batch_size=1)
hidden = tf.keras.layers.GlobalAveragePooling2D()(tf.keras.layers.Conv2D(4, 3)(inputs))
model = tf.keras.Model(inputs, tf.keras.layers.Dense(5, activation="softmax")(hidden))
open(sys.argv[1], "wb").write(tf.lite.TFLiteConverter.from_keras_model(model).convert())
"""


@pytest.fixture(scope="session")
def float_model(tmp_path_factory) -> Path:
    """A tiny float32 classifier (1x32x48x3 in, 5 out) as TensorFlow's converter writes it."""
    out = tmp_path_factory.mktemp("float") / "tiny.tflite"
    done = subprocess.run([sys.executable, "-c", TINY_FLOAT_MODEL, out], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return out
