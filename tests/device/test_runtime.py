"""Choosing and loading the TFLite runtime."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from importlib.metadata import version

import pytest

from device import runtime
from device.errors import UserError
from tests.conftest import REPO


def test_runtime_name_names_the_installed_litert():
    assert runtime.runtime_name() == f"ai-edge-litert {version('ai-edge-litert')}"


def test_no_runtime_is_a_one_line_error_naming_what_to_install(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None)
    with pytest.raises(runtime.RuntimeMissingError, match=r"pip install 'bloomkit\[device\]'") as error:
        runtime.runtime_name()
    assert "\n" not in str(error.value)
    with pytest.raises(runtime.RuntimeMissingError):
        runtime.load_interpreter(b"")


def test_threads_default_to_the_cores_this_process_may_use():
    assert runtime.default_threads() == len(os.sched_getaffinity(0))


def test_a_non_model_is_a_user_error():
    with pytest.raises(UserError, match="cannot load the model"):
        runtime.load_interpreter(b"not a flatbuffer at all" * 10)


def test_loading_prints_no_native_info_lines(reference_model):
    script = ("from device.runtime import load_interpreter; import sys\n"
              f"load_interpreter({str(reference_model)!r}, threads=2)\n"
              "print('loaded')\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "loaded"
    assert "XNNPACK" not in result.stderr and "INFO" not in result.stderr


def test_without_litert_or_tflite_runtime_tensorflow_runs_the_model_quietly(reference_model, flowers_dir):
    """The workstation fallback: a trainer process (TensorFlow already quiet) classifies as LiteRT does."""
    photo = sorted((flowers_dir / "roses").glob("*.jpg"))[0]
    script = f"""if True:
        import importlib.util, json
        import trainer._quiet_tensorflow
        real_find_spec = importlib.util.find_spec
        importlib.util.find_spec = lambda name, *args: (
            None if name in ("ai_edge_litert", "tflite_runtime") else real_find_spec(name, *args))
        from device import imaging, runtime
        from device.classifier import Classifier
        top = Classifier({str(reference_model)!r}).classify(imaging.decode({str(photo)!r}))[0]
        print(json.dumps([runtime.runtime_name(), runtime.is_tensorflow(), top.label, top.score]))
    """
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    name, is_tensorflow, label, score = json.loads(done.stdout)
    assert name.startswith("tensorflow ") and is_tensorflow
    from device import imaging
    from device.classifier import Classifier

    expected = Classifier(reference_model).classify(imaging.decode(photo))[0]
    assert (label, score) == (expected.label, pytest.approx(expected.score, abs=1 / 255))
