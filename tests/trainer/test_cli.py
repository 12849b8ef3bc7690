"""`trainer train` and `trainer evaluate` from the command line: user mistakes, JSON, the report."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import pytest
from PIL import Image

from device.metadata import read_model_info
from tests.conftest import REPO, default_sigint
from tests.device.tiny_models import channel_mean_model
from trainer.cli import main


TRAINER_MAIN = "import sys\nfrom trainer.cli import main\nsys.exit(main(sys.argv[1:]))\n"
# what TensorFlow, XLA and absl print when left alone: glog lines (W0000 00:00:… file.cc:12]), their names
TF_NOISE = re.compile(r"^[IWEF]\d{4} |tensorflow|absl|oneDNN|cuda|XLA|\.cc:\d+\]", re.IGNORECASE)


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize("make, message", [
    (lambda root: None, "data folder not found"),
    (lambda root: (root / "daisy").mkdir(parents=True), "at least two labels"),
    (lambda root: [(root / label).mkdir(parents=True) or (root / label / "x.jpg").write_text("no")
                   for label in ("a", "b")], "no readable images for label(s) a, b"),
])
def test_unusable_data_folders_are_one_line_and_exit_1(tmp_path, capsys, make, message):
    make(tmp_path / "data")
    assert main(["train", "--data", str(tmp_path / "data"), "--export-dir", str(tmp_path / "out")]) == 1
    assert message in _error_line(capsys)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("export_dir", ["/proc/bloomkit-export", "{tmp}/a-file/out"])
def test_an_unusable_export_dir_is_one_line_before_any_data_is_read(tmp_path, capsys, export_dir):
    (tmp_path / "a-file").write_text("not a folder")
    assert main(["train", "--data", str(tmp_path / "missing"), "--export-dir", export_dir.format(tmp=tmp_path)]) == 1
    assert "cannot write to --export-dir" in _error_line(capsys)


def test_the_default_export_dir_is_export_not_the_current_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "export").write_text("a file where the folder would go")
    assert main(["train", "--data", str(tmp_path / "missing")]) == 1
    assert "cannot write to --export-dir export" in _error_line(capsys)


def test_a_bad_model_spec_is_one_line_before_any_data_is_read(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path / "missing"), "--model-spec", "bogus",
                 "--export-dir", str(tmp_path / "out")]) == 1
    assert "unknown model spec 'bogus'" in _error_line(capsys)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("split", ["abc", "1", "0", "1.5"])
def test_a_bad_split_is_one_line_and_exit_1(tiny_flowers, tmp_path, capsys, split):
    assert main(["train", "--data", str(tiny_flowers), "--split", split, "--export-dir", str(tmp_path)]) == 1
    assert "--split must be a fraction between 0 and 1" in _error_line(capsys)


def test_fewer_photos_than_a_batch_is_one_line_and_exit_1(tiny_flowers, tmp_path, capsys):
    assert main(["train", "--data", str(tiny_flowers), "--batch-size", "64", "--export-dir", str(tmp_path)]) == 1
    assert "fewer than the batch size 64" in _error_line(capsys)


def test_without_data_cache_or_network_the_error_names_data(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr("trainer.datasets.FLOWER_PHOTOS_URL", "http://127.0.0.1:9/flower_photos.tgz")
    assert main(["train", "--export-dir", str(tmp_path / "out")]) == 1
    assert "--data" in _error_line(capsys)


@pytest.fixture
def captive_portal():
    """The URL of a local server that answers every request with a web page, as a captive portal does."""
    import http.server
    import threading

    class Portal(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            page = b"<html><body>Please sign in to the guest Wi-Fi</body></html>" + b" " * 100_000
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Portal)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/flower_photos.tgz"
    server.shutdown()
    server.server_close()


def test_a_download_that_is_not_an_archive_is_one_line_naming_data(tmp_path, capsys, monkeypatch, captive_portal):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr("trainer.datasets.FLOWER_PHOTOS_URL", captive_portal)
    assert main(["train", "--export-dir", str(tmp_path / "out")]) == 1
    error = _error_line(capsys)
    assert "could not unpack the download of flower_photos" in error and "--data" in error
    assert not (tmp_path / "keras" / "datasets" / "flower_photos").exists()


def test_the_download_shows_a_progress_bar_on_a_terminal(tmp_path, captive_portal):
    import fcntl
    import os
    import pty
    import struct
    import termios

    script = ("import trainer.datasets as d\n"
              f"d.FLOWER_PHOTOS_URL = {captive_portal!r}\n"
              "try:\n    d.flower_photos()\nexcept d.DatasetUnavailable:\n    pass\n")
    terminal, child_end = pty.openpty()
    fcntl.ioctl(child_end, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # 24 lines, 100 columns
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, stderr=child_end, timeout=60,
                          env={**os.environ, "KERAS_HOME": str(tmp_path / "keras")})
    os.set_blocking(terminal, False)
    shown = os.read(terminal, 65536).decode(errors="replace")
    os.close(child_end)
    os.close(terminal)
    assert done.returncode == 0
    assert "Downloading flower_photos" in shown and "/97.7k" in shown  # 100,059 bytes, in KiB


def test_evaluate_runs_the_reference_model_without_tensorflow(reference_model, tiny_flowers):
    script = (
        "import json, sys\n"
        "from trainer.cli import main\n"
        f"code = main(['evaluate', {str(reference_model)!r}, '--data', {str(tiny_flowers)!r}, '--json'])\n"
        "assert code == 0\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')], 'imported TF'\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["count"] == 40 and summary["skipped"] == []
    assert summary["labels"] == ["daisy", "dandelion", "roses", "sunflowers", "tulips"]
    # Model Maker's model was trained on the full flower_photos, which holds these photos (it scores 0.9)
    assert summary["accuracy"] >= 0.8
    assert sum(map(sum, summary["confusion_matrix"])) == 40


def test_evaluate_rejects_a_folder_with_labels_the_model_lacks(reference_model, tiny_flowers, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(tiny_flowers / "daisy", data / "daisy")
    shutil.copytree(tiny_flowers / "roses", data / "cacti")
    assert main(["evaluate", str(reference_model), "--data", str(data)]) == 1
    assert "no label(s) cacti" in _error_line(capsys)


def _rgb_model(tmp_path, *, metadata: bool) -> tuple:
    """A TF-free model scoring each RGB channel's mean (labels r, g, b), and its labels.txt."""
    from device.metadata import write_metadata

    model = channel_mean_model("uint8", input_quantization=(1 / 255, 0), output_quantization=(1 / 256, 0))
    if metadata:
        model = write_metadata(model, ["r", "g", "b"], mean=[0], std=[255], name="channel-mean")
    (tmp_path / "rgb.tflite").write_bytes(model)
    (tmp_path / "labels.txt").write_text("r\ng\nb\n")
    return tmp_path / "rgb.tflite", tmp_path / "labels.txt"


def _colour_folder(root, layout: dict[str, list[tuple[int, int, int]]]):
    for label, colours in layout.items():
        (root / label).mkdir(parents=True)
        for number, colour in enumerate(colours):
            Image.new("RGB", (8, 8), colour).save(root / label / f"{number}.png")
    return root


def test_evaluate_takes_the_models_top_label_over_all_its_labels(tmp_path, capsys):
    model, _ = _rgb_model(tmp_path, metadata=True)
    # the sky-blue photo filed under g: the model says b, which the folder lacks, so it is wrong
    data = _colour_folder(tmp_path / "data", {"r": [(250, 10, 10)], "g": [(10, 250, 10), (0, 100, 255)]})
    assert main(["evaluate", str(model), "--data", str(data), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["accuracy"] == pytest.approx(2 / 3, abs=1e-4)
    assert result["labels"] == ["r", "g", "b"]
    assert result["confusion_matrix"] == [[1, 0, 0], [0, 1, 1], [0, 0, 0]]


def test_evaluate_a_model_without_metadata_with_labels(tmp_path, capsys):
    model, labels = _rgb_model(tmp_path, metadata=False)
    data = _colour_folder(tmp_path / "data", {"r": [(250, 10, 10)], "b": [(10, 10, 250)]})
    assert main(["evaluate", str(model), "--data", str(data)]) == 1
    assert "no metadata" in (error := _error_line(capsys)) and "--labels labels.txt" in error
    assert main(["evaluate", str(model), "--data", str(data), "--labels", str(labels), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == 1.0


def test_evaluate_names_a_model_that_is_not_one_before_reading_the_photos(tmp_path, capsys):
    (tmp_path / "hostname").write_text("pi-kitchen\n")
    assert main(["evaluate", str(tmp_path / "hostname"), "--data", str(tmp_path / "missing")]) == 1
    error = _error_line(capsys)
    assert str(tmp_path / "hostname") in error and "TFLite" in error


@pytest.mark.slow
def test_train_writes_model_report_and_json_then_evaluate_reads_it(tiny_flowers, tmp_path, capsys):
    out = tmp_path / "out"
    # a real process: TensorFlow's C++ logs go straight to file descriptor 2, where capsys cannot look
    trained = subprocess.run([sys.executable, "-c", TRAINER_MAIN, "train", "--data", tiny_flowers, "--split", "0.75",
                              "--epochs", "2", "--batch-size", "8", "--export-dir", out, "--seed", "1", "--json"],
                             cwd=REPO, capture_output=True, text=True, timeout=900)
    assert trained.returncode == 0, trained.stderr
    noise = [line for line in trained.stderr.splitlines() if TF_NOISE.search(line)]
    assert not noise, trained.stderr
    summary = json.loads(trained.stdout)
    assert summary["labels"] == ["daisy", "dandelion", "roses", "sunflowers", "tulips"]
    assert (summary["train_count"], summary["test_count"], summary["skipped"]) == (30, 10, [])
    assert summary["quantization"] == "int8"
    assert 0 <= summary["float_accuracy"] <= 1 and 0 <= summary["tflite_accuracy"] <= 1
    assert summary["model_bytes"] == (out / "model.tflite").stat().st_size > 1_000_000
    assert summary["seconds"] > 0
    for name in ("model.tflite", "labels.txt", "report.json", "confusion_matrix.png", "training_curves.png"):
        assert (out / name).is_file(), name
    report = json.loads((out / "report.json").read_text())
    assert set(report["per_label"]["tflite"]) == set(summary["labels"])
    assert report["timings"]["fit_seconds"] > 0
    info = read_model_info(out / "model.tflite")
    assert info.labels == tuple(summary["labels"]) and info.author == "bloomkit"
    assert (info.input.dtype, info.input.scale, info.input.zero_point) == ("uint8", 1 / 128, 127)

    assert main(["evaluate", str(out / "model.tflite"), "--data", str(tiny_flowers), "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["count"] == 40 and evaluated["labels"] == summary["labels"]


def test_ctrl_c_is_one_line_exit_130_and_leaves_no_empty_export_folder(tiny_flowers, tmp_path):
    import signal
    import time

    out = tmp_path / "new" / "out"
    process = subprocess.Popen([sys.executable, "-c", TRAINER_MAIN, "train", "--data", tiny_flowers,
                                "--batch-size", "8", "--export-dir", out], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint)
    deadline = time.monotonic() + 300  # a busy machine can take minutes to import
    while not out.parent.exists() and time.monotonic() < deadline:  # the run has begun: the parents are made first
        time.sleep(0.05)
    assert out.parent.exists(), "the run never began"
    time.sleep(1.0)   # TensorFlow is loading and the features are being computed
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert (process.returncode, err.strip()) == (130, "trainer: interrupted")
    assert not (tmp_path / "new").exists()


@pytest.mark.slow
def test_train_collects_the_features_it_started_before_tensorflow_loaded(tiny_flowers, tmp_path, monkeypatch):
    """The training and the test photos' features are computed once each, ahead, and then used."""
    from trainer import frozen_features, model_spec

    frozen_features.extractor_tflite(model_spec.get("efficientnet_lite0"))  # cached, as after any first run
    computed, started = [], []
    real_start = frozen_features.start
    monkeypatch.setattr(frozen_features, "start", lambda *args: started.append(real_start(*args)) or started[-1])
    real_compute = frozen_features.compute
    monkeypatch.setattr(frozen_features, "compute", lambda *args: computed.append(args[3].size) or real_compute(*args))
    assert main(["train", "--data", str(tiny_flowers), "--split", "0.75", "--epochs", "1", "--batch-size", "8",
                 "--export-dir", str(tmp_path / "out"), "--quantization", "float32"]) == 0
    assert computed == [30, 10] and len(started[0]) == 0
