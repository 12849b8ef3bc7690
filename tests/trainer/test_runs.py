"""A run folder over its life: trained, interrupted over, written on a full disk, exported again without training."""
from __future__ import annotations

import json
import resource
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from device.metadata import read_model_info
from tests.conftest import REPO, default_sigint
from trainer.cli import main

TRAINER_MAIN = "import sys\nfrom trainer.cli import main\nsys.exit(main(sys.argv[1:]))\n"
SETTINGS = ["--split", "0.75", "--epochs", "2", "--batch-size", "8", "--seed", "1"]


def _trainer(*args, preexec_fn=None, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", TRAINER_MAIN, *map(str, args)], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=preexec_fn, **popen)


def _tree(folder) -> dict:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def _one_line(err: str) -> str:
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err.strip()


@pytest.fixture(scope="module")
def run_dir(tiny_flowers, tmp_path_factory):
    """A finished `trainer train` export of the tiny photo set (its own data folder, which tests may remove)."""
    root = tmp_path_factory.mktemp("run")
    data = shutil.copytree(tiny_flowers, root / "photos")
    process = _trainer("train", "--data", data, *SETTINGS, "--export-dir", root / "export", "--json")
    out, err = process.communicate(timeout=900)
    assert process.returncode == 0, err
    return root / "export"


@pytest.mark.slow
def test_a_run_keeps_the_model_and_what_export_needs(run_dir, tiny_flowers):
    record = json.loads((run_dir / "run.json").read_text())
    assert record["labels"] == ["daisy", "dandelion", "roses", "sunflowers", "tulips"]
    assert record["model_spec"]["name"] == "efficientnet_lite0"
    assert (record["model_spec"]["input_size"], record["model_spec"]["mean"]) == ([224, 224], [127.0])
    assert record["data_folder"] == str(run_dir.parent / "photos")
    assert (run_dir / "model.keras").stat().st_size > 10_000_000
    assert not [p for p in run_dir.parent.iterdir() if p.name.startswith(".")]


@pytest.mark.slow
def test_ctrl_c_after_the_new_model_is_written_keeps_the_previous_export_whole(run_dir, tmp_path):
    export = shutil.copytree(run_dir, tmp_path / "export")
    before = _tree(export)
    process = _trainer("train", "--data", run_dir.parent / "photos", *SETTINGS, "--epochs", "1",
                       "--export-dir", export, preexec_fn=default_sigint)
    deadline = time.monotonic() + 300
    while not list(tmp_path.glob(".export.partial-*/model.tflite")) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert process.poll() is None, process.communicate()
    process.send_signal(signal.SIGINT)  # the new model is written, the report not yet
    _, err = process.communicate(timeout=120)
    assert (process.returncode, err.strip()) == (130, "trainer: interrupted")
    assert _tree(export) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]


def _file_size_limit() -> None:
    """A disk that fills up after 1 MB: writes beyond it fail, as on a full disk (EFBIG instead of ENOSPC)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, 1_000_000))


@pytest.mark.slow
def test_a_full_disk_is_one_line_and_keeps_the_previous_export(run_dir, tmp_path):
    export = shutil.copytree(run_dir, tmp_path / "export")
    before = _tree(export)
    process = _trainer("train", "--data", run_dir.parent / "photos", *SETTINGS, "--epochs", "1",
                       "--quantization", "float32", "--export-dir", export, preexec_fn=_file_size_limit)
    _, err = process.communicate(timeout=600)
    assert process.returncode == 1
    assert _one_line(err).startswith(f"trainer: error: cannot write the export to {export}: File too large")
    assert _tree(export) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]


@pytest.mark.slow
def test_export_requantizes_a_run_without_training(run_dir, tmp_path, capsys):
    from trainer import DataLoader, QuantizationConfig, image_classifier
    from trainer.tflite_eval import tflite_scores

    assert main(["export", str(run_dir), "--quantization", "float32", "-o", str(tmp_path / "float.tflite"),
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model_bytes"] == (tmp_path / "float.tflite").stat().st_size
    info = read_model_info(tmp_path / "float.tflite")
    assert info.labels == ("daisy", "dandelion", "roses", "sunflowers", "tulips") and info.input.dtype == "float32"

    # the API: the same model, loaded, scores as its float export does
    model = image_classifier.load(run_dir)
    photos = DataLoader.from_folder(run_dir.parent / "photos")
    np.testing.assert_allclose(tflite_scores(tmp_path / "float.tflite", photos), model.predict_scores(photos),
                               atol=1e-4)
    loss, accuracy = model.evaluate(photos)
    assert accuracy == pytest.approx(np.mean(model.predict_scores(photos).argmax(axis=1) == photos.labels), abs=1e-6)
    with pytest.raises(image_classifier.TrainingError, match="has none: pass quantization_config"):
        model.export(tmp_path)
    model.export(tmp_path, tflite_filename="api-int8.tflite",
                 quantization_config=QuantizationConfig.for_int8(photos, quantization_steps=10))
    assert read_model_info(tmp_path / "api-int8.tflite").input.dtype == "uint8"

    # int8 calibrates on the run's own photos, into a folder as OUT/model.tflite
    (tmp_path / "int8").mkdir()
    assert main(["export", str(run_dir), "--quantization", "int8", "-o", str(tmp_path / "int8")]) == 0
    assert "wrote" in capsys.readouterr().out
    int8 = tflite_scores(tmp_path / "int8" / "model.tflite", photos).argmax(axis=1)
    assert np.mean(int8 == model.predict_scores(photos).argmax(axis=1)) >= 0.9

    # without them: one line
    moved = shutil.move(run_dir.parent / "photos", tmp_path / "photos")
    try:
        assert main(["export", str(run_dir), "--quantization", "int8", "-o", str(tmp_path / "again.tflite")]) == 1
        assert "int8 calibrates on photos: give --data DIR" in _one_line(capsys.readouterr().err)
        assert main(["export", str(run_dir), "--quantization", "int8", "--data", str(moved),
                     "-o", str(tmp_path / "again.tflite")]) == 0
    finally:
        shutil.move(moved, run_dir.parent / "photos")


@pytest.mark.slow
def test_a_run_with_a_trained_backbone_loads_with_its_own_backbone(tiny_flowers, tmp_path):
    """Its features are no longer ImageNet's, so the loaded model must compute them, not the cached .tflite."""
    from trainer import DataLoader, image_classifier, saved_run

    photos = DataLoader.from_folder(tiny_flowers)
    tuned = image_classifier.create(photos, train_whole_model=True, epochs=1, batch_size=8, learning_rate=0.05,
                                    seed=2, steps_per_epoch=2)
    saved_run.save(tmp_path, tuned.model, tuned.index_to_label, tuned.model_spec, tiny_flowers, backbone_trained=True)
    loaded = image_classifier.load(tmp_path)
    assert json.loads((tmp_path / "run.json").read_text())["model_spec"]["backbone_version"] is None
    np.testing.assert_allclose(loaded.predict_scores(photos), tuned.predict_scores(photos), atol=1e-5)
