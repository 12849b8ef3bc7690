"""`device classify`: records for every file, errors listed not fatal, --eval, atomic output checked first."""
from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from device.cli import main
from tests.conftest import REPO, default_sigint, fill_disk

PER_LABEL = 3
BAD_FILES = {"daisy/empty.jpg": "", "roses/truncated.jpg": None, "tulips/notes.txt": "not a photo\n"}


@pytest.fixture(scope="module")
def photo_folder(flowers_dir, tmp_path_factory) -> Path:
    """3 photos per label in label sub-folders, plus an empty, a truncated and a text file, and a hidden one."""
    folder = tmp_path_factory.mktemp("photos")
    for label in sorted(p for p in flowers_dir.iterdir() if p.is_dir()):
        (folder / label.name).mkdir()
        for photo in sorted(label.glob("*.jpg"))[:PER_LABEL]:
            shutil.copy(photo, folder / label.name / photo.name)
    some_photo = next((flowers_dir / "roses").glob("*.jpg")).read_bytes()
    for name, content in BAD_FILES.items():
        path = folder / name
        if content is None:
            path.write_bytes(some_photo[:len(some_photo) // 3])
        else:
            path.write_text(content)
    (folder / "daisy" / ".DS_Store").write_bytes(b"\0\1")
    return folder


def classify(*args: str) -> int:
    return main(["classify", *map(str, args)])


def test_csv_has_a_row_per_file_and_lists_unreadable_ones(photo_folder, reference_model, tmp_path, capsys):
    out = tmp_path / "results.csv"
    assert classify(photo_folder, "--model", reference_model, "--out", out) == 0
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["path", "top1", "score1", "top2", "score2", "top3", "score3", "latency_ms", "error"]
    expected = sorted(p.relative_to(photo_folder).as_posix() for p in photo_folder.rglob("*")
                      if p.is_file() and not p.name.startswith("."))
    assert [row["path"] for row in rows] == expected
    errors = {row["path"]: row["error"] for row in rows if row["error"]}
    assert set(errors) == set(BAD_FILES)
    assert errors["tulips/notes.txt"] == "not an image"
    good = [row for row in rows if not row["error"]]
    assert len(good) == 5 * PER_LABEL
    assert all(float(row["latency_ms"]) > 0 and row["top3"] for row in good)
    assert all(float(row["score1"]) >= float(row["score2"]) >= float(row["score3"]) for row in good)
    assert sum(row["top1"] == row["path"].split("/")[0] for row in good) >= 12
    captured = capsys.readouterr()
    assert f"classified {5 * PER_LABEL} images" in captured.out
    assert "skipped 3 files" in captured.out and "tulips/notes.txt: not an image" in captured.out
    assert captured.err == ""  # no progress bar when stderr is not a terminal


def test_jsonl_records_and_json_summary(photo_folder, reference_model, tmp_path, capsys):
    out = tmp_path / "results.jsonl"
    assert classify(photo_folder, "--model", reference_model, "--out", out, "--json", "--top-k", "2") == 0
    summary = json.loads(capsys.readouterr().out)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    classified = [r for r in records if "top" in r]
    assert summary["images"] == len(classified) == 5 * PER_LABEL
    assert sorted(s["path"] for s in summary["skipped"]) == sorted(BAD_FILES)
    assert all(set(r) == {"path", "error"} for r in records if "top" not in r)
    assert all(len(r["top"]) == 2 and set(r["top"][0]) == {"label", "score"} for r in classified)
    counts = {label: sum(r["top"][0]["label"] == label for r in classified) for label in summary["labels"]}
    assert summary["labels"] == counts
    assert summary["images_per_second"] > 0 and "accuracy" not in summary


def test_eval_reports_accuracy_recall_and_confusion(flowers_dir, reference_model, tmp_path, capsys):
    folder = tmp_path / "eval"
    for label in ("daisy", "sunflowers"):
        shutil.copytree(flowers_dir / label, folder / label,
                        ignore=lambda _, names: sorted(names)[6:])
    out = tmp_path / "eval.jsonl"
    assert classify(folder, "--model", reference_model, "--out", out, "--eval", "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    hits = [r["top"][0]["label"] == r["path"].split("/")[0] for r in records]
    assert summary["accuracy"] == pytest.approx(sum(hits) / len(hits), abs=1e-4)
    assert set(summary["recall"]) == {"daisy", "sunflowers"}
    matrix = summary["confusion"]["matrix"]
    assert summary["confusion"]["labels"] == ["daisy", "dandelion", "roses", "sunflowers", "tulips"]
    assert [sum(row) for row in matrix] == [6, 0, 0, 6, 0]
    assert matrix[0][0] + matrix[3][3] == sum(hits)

    assert classify(folder, "--model", reference_model, "--out", out, "--eval") == 0
    printed = capsys.readouterr().out
    assert "accuracy" in printed and "confusion" in printed


def test_eval_needs_label_sub_folders(photo_folder, reference_model, tmp_path, capsys):
    folder = tmp_path / "pets"
    shutil.copytree(photo_folder / "daisy", folder / "cats")
    shutil.copytree(photo_folder / "roses", folder / "roses")
    assert classify(folder, "--model", reference_model, "--out", tmp_path / "x.csv", "--eval") == 1
    error = capsys.readouterr().err
    assert error.startswith("device: error: --eval: sub-folders cats are not labels") and error.count("\n") == 1
    assert not (tmp_path / "x.csv").exists()


@pytest.mark.parametrize("make, message", [
    (lambda tmp: tmp / "absent", "no such folder"),
    (lambda tmp: (tmp / "empty").mkdir() or tmp / "empty", "no files to classify"),
])
def test_missing_or_empty_folder_is_one_line(tmp_path, reference_model, capsys, make, message):
    assert classify(make(tmp_path), "--model", reference_model) == 1
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1


def test_without_out_records_go_to_stdout_and_summary_to_stderr(photo_folder, reference_model, capsys):
    assert classify(photo_folder / "tulips", "--model", reference_model, "--format", "jsonl") == 0
    captured = capsys.readouterr()
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert len(records) == PER_LABEL + 1
    assert "classified 3 images" in captured.err


def test_an_output_inside_the_folder_is_not_classified(photo_folder, reference_model, tmp_path):
    folder = tmp_path / "tulips"
    shutil.copytree(photo_folder / "tulips", folder)
    out = folder / "results.csv"
    for _ in range(2):
        assert classify(folder, "--model", reference_model, "--out", out) == 0
    assert "results.csv" not in out.read_text()


def test_an_unknown_extension_needs_format(photo_folder, reference_model, tmp_path, capsys):
    assert classify(photo_folder, "--model", reference_model, "--out", tmp_path / "results.txt") == 1
    assert "--format" in capsys.readouterr().err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_an_interrupted_run_leaves_the_old_output_intact(flowers_dir, reference_model, tmp_path, sig):
    out = tmp_path / "results.csv"
    out.write_text("path,top1\nold,row\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "device.cli", "classify", str(flowers_dir), "--model", str(reference_model),
         "--out", str(out), "--threads", "1"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        preexec_fn=default_sigint)
    deadline = time.monotonic() + 120
    while not any(p.stat().st_size for p in tmp_path.glob(".results.csv.*.tmp")):  # rows are being written
        assert process.poll() is None and time.monotonic() < deadline, "the run ended before it could be stopped"
        time.sleep(0.02)
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=60)
    assert out.read_text() == "path,top1\nold,row\n"
    if sig == signal.SIGINT:
        assert process.returncode == 130 and b"interrupted" in stderr
        assert not list(tmp_path.glob(".results.csv.*"))


def test_piping_into_a_reader_that_stops_early_is_quiet(flowers_dir, reference_model):
    command = [sys.executable, "-m", "device.cli", "classify", str(flowers_dir), "--model", str(reference_model)]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout.readline().startswith(b"path,")
    process.stdout.close()  # like `| head -1`
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 141
    assert b"Traceback" not in stderr and b"BrokenPipe" not in stderr


def read_only_folder(tmp_path: Path) -> Path:
    """A folder this process cannot create files in: mode 555 binds everyone but root; /sys binds root too."""
    if os.geteuid() == 0:
        return Path("/sys")
    folder = tmp_path / "read-only"
    folder.mkdir(mode=0o555)
    return folder


@pytest.mark.parametrize("out, message", [
    (lambda tmp: Path("/nonexistent/r.csv"), "cannot write --out /nonexistent/r.csv: No such file or directory"),
    (lambda tmp: read_only_folder(tmp) / "r.csv", "cannot write --out {out}: Permission denied"),
    (lambda tmp: (tmp / "r.csv").mkdir() or tmp / "r.csv", "--out {out}: is a directory"),
])
def test_an_output_that_cannot_be_written_is_refused_before_classifying(photo_folder, reference_model, tmp_path,
                                                                        capsys, monkeypatch, out, message):
    from device import classify as engine

    def never(*args, **kwargs):
        raise AssertionError("the images were classified before --out was checked")

    monkeypatch.setattr(engine, "classify_files", never)
    out = out(tmp_path)
    assert classify(photo_folder, "--model", reference_model, "--out", out) == 1
    assert capsys.readouterr().err == f"device: error: {message.format(out=out)}\n"


def test_a_full_disk_under_out_is_one_line_and_keeps_the_old_file(photo_folder, reference_model, full_disk):
    os.unlink(full_disk / "filler")
    out = full_disk / "results.csv"
    out.write_text("path,top1\nold,row\n")
    fill_disk(full_disk)
    result = run_device("classify", photo_folder, "--model", reference_model, "--out", out)
    assert result.returncode == 1
    assert result.stderr == f"device: error: cannot write --out {out}: No space left on device\n"
    assert out.read_text() == "path,top1\nold,row\n"
    assert sorted(p.name for p in full_disk.iterdir()) == ["filler", "results.csv"], "no temporary file left"


def test_records_to_a_full_standard_output_are_one_line(photo_folder, reference_model):
    with open("/dev/full", "w") as full:
        result = run_device("classify", photo_folder, "--model", reference_model, stdout=full)
    assert result.returncode == 1
    assert result.stderr == "device: error: cannot write standard output: No space left on device\n"


def test_a_summary_to_a_full_standard_output_is_one_line(photo_folder, reference_model, tmp_path):
    with open("/dev/full", "w") as full:
        result = run_device("classify", photo_folder, "--model", reference_model, "--out", tmp_path / "r.csv",
                            stdout=full)
    assert result.returncode == 1
    assert result.stderr == "device: error: cannot write standard output: No space left on device\n"
    assert len((tmp_path / "r.csv").read_text().splitlines()) == 1 + 5 * PER_LABEL + len(BAD_FILES), "records kept"


@pytest.mark.parametrize("option, message", [
    (["--threshold", "nan"], "--threshold nan: must be a finite number"),
    (["--threshold", "-0.1"], "--threshold -0.1: must be at least 0 and at most 1"),
    (["--top-k", "0"], "--top-k 0: must be at least 1"),
    (["--threads", "0"], "--threads 0: must be at least 1"),
])
def test_numbers_that_are_not_usable_are_one_line(photo_folder, reference_model, capsys, option, message):
    assert classify(photo_folder, "--model", reference_model, *option) == 1
    assert capsys.readouterr().err == f"device: error: {message}\n"


def run_device(*args, stdout=subprocess.PIPE) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "device.cli", *map(str, args)], cwd=REPO, stdout=stdout,
                          stderr=subprocess.PIPE, text=True, timeout=120)
