"""`trainer export` on folders that are not usable runs: one line each, before TensorFlow loads."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO
from trainer import model_spec
from trainer.cli import main


def _run(folder, **changes):
    """A run folder whose run.json says `changes` (the model file is a placeholder: never loaded here)."""
    spec = model_spec.get("efficientnet_lite0")
    record = {"format": 1, "labels": ["a", "b"], "data_folder": None,
              "model_spec": {"name": spec.name, "input_size": [224, 224], "mean": [127.0], "std": [128.0],
                             "backbone_version": spec.backbone_version()}}
    for key, value in changes.items():
        (record["model_spec"] if key in record["model_spec"] else record)[key] = value
    folder.mkdir()
    (folder / "run.json").write_text(json.dumps(record))
    (folder / "model.keras").write_bytes(b"placeholder")
    return folder


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize("make, message", [
    (lambda folder: folder.mkdir(), "is not a training run: it has no run.json"),
    (lambda folder: _run(folder).joinpath("model.keras").unlink(), "is not a training run: it has no model.keras"),
    (lambda folder: _run(folder).joinpath("run.json").write_text("{not json"), "run.json is damaged"),
    (lambda folder: _run(folder, format=7), "is of format 7; this bloomkit reads format 1"),
    (lambda folder: _run(folder, backbone_version="efficientnet_lite0-0000.pth built by efficientnet_lite.py 0"),
     "was trained on another version of efficientnet_lite0"),
    (lambda folder: _run(folder, name="resnet50"), "trained on the backbone 'resnet50', which this bloomkit"),
])
def test_a_folder_that_is_not_a_usable_run_is_one_line(tmp_path, capsys, make, message):
    make(tmp_path / "run")
    assert main(["export", str(tmp_path / "run"), "--quantization", "float16", "-o", str(tmp_path / "m.tflite")]) == 1
    assert message in _error_line(capsys)
    assert not (tmp_path / "m.tflite").exists()


def test_int8_without_calibration_photos_is_one_line_before_tensorflow_loads(tmp_path):
    run = _run(tmp_path / "run", data_folder=str(tmp_path / "gone"))
    script = ("import sys\nfrom trainer.cli import main\ncode = main(sys.argv[1:])\n"
              "assert 'tensorflow' not in sys.modules\nsys.exit(code)\n")
    done = subprocess.run([sys.executable, "-c", script, "export", str(run), "--quantization", "int8",
                           "-o", str(tmp_path / "m.tflite")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip() == (f"trainer: error: int8 calibrates on photos: give --data DIR "
                                    f"(the run's data folder {tmp_path / 'gone'} is gone)")


def test_an_output_that_cannot_be_written_is_one_line(tmp_path, capsys):
    run = _run(tmp_path / "run")
    assert main(["export", str(run), "--quantization", "float16", "-o", str(tmp_path / "missing" / "m.tflite")]) == 1
    assert f"cannot write {tmp_path / 'missing' / 'm.tflite'}" in _error_line(capsys)
