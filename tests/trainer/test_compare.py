"""`trainer compare OLD NEW --data DIR`: the reference model against itself with two labels swapped."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from device import imaging
from device.digest import sha256_file
from device.metadata import read_model_info, write_metadata
from tests.conftest import REPO, copy_photos


@pytest.fixture(scope="module")
def swapped_model(reference_model, tmp_path_factory) -> Path:
    """The same network with "roses" and "tulips" swapped in its labels: wrong exactly where it said either."""
    model = reference_model.read_bytes()
    info = read_model_info(model)
    swap = {"roses": "tulips", "tulips": "roses"}
    path = tmp_path_factory.mktemp("swapped") / "swapped.tflite"
    path.write_bytes(write_metadata(model, [swap.get(label, label) for label in info.labels], mean=info.mean,
                                    std=info.std, name=info.name, version="swapped"))
    return path


@pytest.fixture(scope="module")
def photos(flowers_dir, tmp_path_factory) -> Path:
    return copy_photos(flowers_dir, tmp_path_factory.mktemp("compare-photos"), 4)


def compare(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trainer.cli", "compare", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def test_compare_reports_accuracy_per_label_changes_agreement_and_a_contact_sheet(reference_model, swapped_model,
                                                                                    photos, tmp_path):
    sheet = tmp_path / "sheet.png"
    done = compare(str(reference_model), str(swapped_model), "--data", str(photos), "--sheet", str(sheet), "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["count"] == 20 and result["old"]["sha256"] == sha256_file(reference_model)
    assert result["new"]["version"] == "swapped"
    said_either = [d for d in result["disagreements"]]
    assert said_either and all({d["old"], d["new"]} == {"roses", "tulips"} for d in said_either)
    assert result["agreement"] == pytest.approx(1 - len(said_either) / 20, abs=1e-4)
    for label in ("daisy", "dandelion", "sunflowers"):
        assert result["per_label"][label]["delta"] == 0
    roses = result["per_label"]["roses"]
    assert roses["new_recall"] < roses["old_recall"] and roses["delta"] < 0
    assert result["broken"] > 0 and result["new"]["accuracy"] < result["old"]["accuracy"]
    assert result["old"]["accuracy"] - result["new"]["accuracy"] == pytest.approx(
        (result["broken"] - result["fixed"]) / 20, abs=1e-3)
    assert result["sheet"] == str(sheet)
    image = imaging.decode(sheet)
    assert image.shape[1] > 1000 and image.shape[0] > 200


def test_compare_prints_a_table_and_writes_no_sheet_when_the_models_agree(reference_model, photos, tmp_path):
    done = compare(str(reference_model), str(reference_model), "--data", str(photos), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "agreement 1.000" in done.stdout and "fixes 0 and breaks 0" in done.stdout
    assert "roses" in done.stdout and not (tmp_path / "disagreements.png").exists()


@pytest.mark.parametrize("which", ["old", "new"])
def test_a_missing_or_truncated_model_is_one_line(reference_model, photos, tmp_path, which):
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(reference_model.read_bytes()[:5000])
    models = [str(reference_model), str(truncated)] if which == "new" else [str(tmp_path / "none.tflite"),
                                                                           str(reference_model)]
    done = compare(*models, "--data", str(photos))
    assert done.returncode == 1 and done.stderr.count("\n") == 1 and done.stderr.startswith("trainer: error: ")
