"""Fixtures every area shares: real flower photos, the reference model, and CI strictness."""
from __future__ import annotations

import configparser
import errno
import hashlib
import os
import shutil
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from testkit.processes import default_sigint, free_port  # noqa: F401 (the tests' names for them)

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
IN_CI = os.environ.get("CI", "").lower() == "true"
PER_CLASS = 100


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """With CI=true a skip, however a test asked for it, is a failure: CI must have everything."""
    report = (yield).get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reason = reason.removeprefix("Skipped: ")
        report.outcome, report.longrepr = "failed", f"skipped in CI, where nothing may be: {reason}"


def require(condition: bool, reason: str) -> None:
    """Skip on a developer's machine, fail in CI: CI must have every system dependency."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"missing in CI: {reason}")
    pytest.skip(reason)


def unit_directives(unit: Path) -> dict[str, str]:
    """A systemd unit's [Service] settings (the last of a repeated key), as written."""
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str
    parser.read(unit)
    return dict(parser["Service"])


def systemd_analyze_verify(*arguments: str, env: dict[str, str] | None = None) -> None:
    """`systemd-analyze verify` passes without a word: it warns about unknown keys or bad values on stderr."""
    analyze = shutil.which("systemd-analyze")
    require(analyze is not None, "systemd-analyze (apt install systemd)")
    result = subprocess.run([analyze, "verify", *arguments], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == "", result.stderr


@pytest.fixture(scope="session")
def flowers_dir(tmp_path_factory) -> Path:
    """500 real flower photos, 100 per class: ../shared's copy, else the same pick from flower_photos."""
    shared = SHARED / "data" / "flowers-mini"
    if shared.is_dir():
        return shared
    from trainer.datasets import DatasetUnavailable, flower_photos

    try:
        full = flower_photos(download=True)
    except DatasetUnavailable as error:
        require(False, str(error))
    mini = tmp_path_factory.mktemp("flowers-mini")
    for label_dir in sorted(p for p in full.iterdir() if p.is_dir()):
        photos = sorted(label_dir.glob("*.jpg"), key=lambda p: hashlib.sha1(p.name.encode()).hexdigest())
        (mini / label_dir.name).mkdir()
        for photo in photos[:PER_CLASS]:
            shutil.copy(photo, mini / label_dir.name / photo.name)
    return mini


def copy_photos(flowers_dir: Path, destination: Path, per_label: int) -> Path:
    """The first `per_label` photos of each label, copied into label sub-folders of `destination`."""
    for label_dir in sorted(p for p in flowers_dir.iterdir() if p.is_dir()):
        (destination / label_dir.name).mkdir(parents=True, exist_ok=True)
        for photo in sorted(label_dir.glob("*.jpg"))[:per_label]:
            shutil.copy(photo, destination / label_dir.name / photo.name)
    return destination


@pytest.fixture(scope="session")
def tutorial_run(flowers_dir, tmp_path_factory) -> dict:
    """Model Maker's tutorial steps, unchanged but for the imports, on flowers-mini (the fast path)."""
    from trainer import DataLoader, image_classifier

    export_dir = tmp_path_factory.mktemp("tutorial-export")
    data = DataLoader.from_folder(flowers_dir)
    train_data, test_data = data.split(0.9)
    model = image_classifier.create(train_data)
    loss, accuracy = model.evaluate(test_data)
    model.export(export_dir=str(export_dir))
    return {"model": model, "train_data": train_data, "test_data": test_data, "loss": loss,
            "accuracy": accuracy, "export_dir": export_dir}


@pytest.fixture(scope="session")
def trained_model_path(tutorial_run) -> Path:
    """A real int8 (uint8 in and out) flowers model with bloomkit metadata, trained this session."""
    return tutorial_run["export_dir"] / "model.tflite"


MODEL_MAKER_MODEL = SHARED / "models" / "model-maker-flowers-int8.tflite"  # see ../shared/models/README.md


@pytest.fixture(scope="session")
def reference_model(request) -> Path:
    """A good int8 flowers model (uint8 in and out, metadata with five labels) for tests that need one:
    Model Maker's when ../shared has it, else the one our trainer made this session (a user's clone)."""
    if MODEL_MAKER_MODEL.is_file():
        return MODEL_MAKER_MODEL
    return request.getfixturevalue("trained_model_path")


@pytest.fixture
def full_disk(tmp_path) -> Iterator[Path]:
    """A folder on a tiny tmpfs filled to its last page: writing there fails with ENOSPC, as on a full SD card.

    Deleting `filler` in it makes room; `fill_disk` fills it again."""
    require(os.geteuid() == 0 and shutil.which("mount") is not None, "root and mount(8), to mount a small tmpfs")
    folder = tmp_path / "full"
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=128k,mode=0777", "bloomkit-full-disk", str(folder)],
                   check=True)
    try:
        fill_disk(folder)
        yield folder
    finally:
        subprocess.run(["umount", "--lazy", str(folder)], check=True)


def fill_disk(folder: Path) -> None:
    """Write `folder/filler` until the file system holding it has no space left."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        while os.write(fd, bytes(4096)):
            pass
    except OSError as error:
        assert error.errno == errno.ENOSPC
    finally:
        os.close(fd)
