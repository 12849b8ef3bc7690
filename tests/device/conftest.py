"""Fixtures for the device core: one reference classifier, tiny models, the Task Library's venv."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO, require
from tests.device.tiny_models import channel_mean_model

TASK_LIBRARY_VENV = REPO / ".venvs" / "tflite-support"


@pytest.fixture(scope="session")
def reference_classifier(reference_model):
    from device.classifier import Classifier

    return Classifier(reference_model, threads=2, top_k=5)


@pytest.fixture
def tiny_model(tmp_path):
    """Write a per-channel-mean model (labels r, g, b); with `mean`/`std`, with metadata."""
    from device.metadata import write_metadata

    def make(dtype="float32", mean=None, std=None, **kwargs) -> Path:
        model = channel_mean_model(dtype, **kwargs)
        if mean is not None:
            model = write_metadata(model, ["r", "g", "b"], mean=mean, std=std, name="channel-mean")
        path = tmp_path / f"tiny-{dtype}.tflite"
        path.write_bytes(model)
        return path

    return make


@pytest.fixture(scope="session")
def rgb_labels(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("labels") / "labels.txt"
    path.write_text("r\ng\nb\n")
    return path


@pytest.fixture(scope="session")
def task_library_python() -> Path:
    """The Python of a venv with tflite-support 0.4.4 (the Task Library), made once by its script."""
    made = subprocess.run([str(REPO / "scripts" / "make-tflite-support-venv"), str(TASK_LIBRARY_VENV)],
                          capture_output=True, text=True, timeout=900)
    require(made.returncode == 0, f"cannot make the tflite-support venv: {made.stderr.strip()[-300:]}")
    return TASK_LIBRARY_VENV / "bin" / "python"
