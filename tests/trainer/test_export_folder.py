"""The export folder: checked before any work, replaced whole or not at all; label names checked up front."""
from __future__ import annotations

import shutil

import pytest

from trainer import export_folder
from trainer.cli import main
from trainer.export_folder import ExportFolderError


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def _tree(folder) -> dict:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_a_model_tflite_that_is_a_folder_is_one_line_before_any_data_is_read(tmp_path, capsys):
    (tmp_path / "out" / "model.tflite").mkdir(parents=True)
    assert main(["train", "--data", str(tmp_path / "missing"), "--export-dir", str(tmp_path / "out")]) == 1
    error = _error_line(capsys)
    assert f"{tmp_path / 'out' / 'model.tflite'} is not a regular file" in error
    assert (tmp_path / "out" / "model.tflite").is_dir()


def test_an_export_dir_holding_other_files_is_refused_before_any_data_is_read(tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "model.tflite").write_bytes(b"an earlier export")
    (tmp_path / "out" / "notes.txt").write_text("mine")
    assert main(["train", "--data", str(tmp_path / "missing"), "--export-dir", str(tmp_path / "out")]) == 1
    assert "holds notes.txt, which is not part of an export" in _error_line(capsys)
    assert _tree(tmp_path / "out") == {"model.tflite": b"an earlier export", "notes.txt": b"mine"}


def test_an_export_dir_inside_the_data_folder_is_refused_before_the_photos_are_checked(tiny_flowers, tmp_path,
                                                                                        capsys):
    data = shutil.copytree(tiny_flowers, tmp_path / "data")
    before = sorted(path.name for path in data.iterdir())
    assert main(["train", "--data", str(data), "--export-dir", str(data / "daisy" / "export")]) == 1
    assert "is inside the data folder" in _error_line(capsys)
    assert sorted(path.name for path in data.iterdir()) == before
    assert not [path for path in data.rglob("*") if path.name.startswith(".") or path.name == "export"]


def test_a_label_with_a_line_break_is_refused_at_the_folder_check(tiny_flowers, tmp_path, capsys):
    data = shutil.copytree(tiny_flowers, tmp_path / "data")
    (data / "roses").rename(data / "red\nroses")
    assert main(["train", "--data", str(data), "--export-dir", str(tmp_path / "out")]) == 1
    assert "has a line break in its name" in _error_line(capsys)
    assert not (tmp_path / "out").exists()


def test_a_finished_export_replaces_the_old_one_whole(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "report.json").write_text("old")
    (folder / "training_curves.png").write_text("old")
    with export_folder.staged(folder) as staging:
        assert staging.parent == tmp_path and staging.name.startswith(".out.partial-")
        (staging / "report.json").write_text("new")
        assert _tree(folder) == {"report.json": b"old", "training_curves.png": b"old"}
    assert _tree(folder) == {"report.json": b"new"}
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize("stop", [KeyboardInterrupt, RuntimeError])
def test_an_export_stopped_halfway_leaves_the_old_one_and_no_trace(tmp_path, stop):
    folder = tmp_path / "a" / "b" / "out"
    with pytest.raises(stop):
        with export_folder.staged(folder) as staging:
            (staging / "model.tflite").write_bytes(b"half")
            raise stop()
    assert not (tmp_path / "a").exists()  # the parents it made are gone too
    folder.mkdir(parents=True)
    (folder / "model.tflite").write_bytes(b"old")
    with pytest.raises(stop):
        with export_folder.staged(folder) as staging:
            (staging / "model.tflite").write_bytes(b"half")
            raise stop()
    assert _tree(tmp_path) == {"a/b/out/model.tflite": b"old"}


def test_a_full_disk_is_one_error_naming_the_folder_and_keeps_the_old_export(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "model.tflite").write_bytes(b"old")
    with pytest.raises(ExportFolderError, match=r"cannot write the export to .*out: No space left on device; "
                                                r"the previous export is unchanged"):
        with export_folder.staged(folder) as staging:
            with open("/dev/full", "wb") as full:
                (staging / "model.tflite").write_bytes(b"new, half")
                full.write(b"x" * 10)
                full.flush()
    assert _tree(tmp_path) == {"out/model.tflite": b"old"}


def test_an_unwritable_parent_is_one_line(tmp_path):
    (tmp_path / "a-file").write_text("")
    with pytest.raises(ExportFolderError, match="cannot write to --export-dir"):
        with export_folder.staged(tmp_path / "a-file" / "out"):
            pytest.fail("should not start")
