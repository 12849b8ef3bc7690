"""Fixtures of the metadata tests: the tflite-support venv (Google's readers) and a bare model."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO, require

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


@pytest.fixture(scope="session")
def bare_model(reference_model, tflite_support, tmp_path_factory) -> Path:
    """The reference model re-packed by tflite-support's own schema code without its metadata."""
    out = tmp_path_factory.mktemp("bare") / "bare.tflite"
    tflite_support("strip", reference_model, out)
    return out
