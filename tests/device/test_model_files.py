"""Model files are checked before they are read: a device, a pipe, a folder or a huge non-model file is one line,
and never costs the memory of reading it."""
from __future__ import annotations

import os
import resource
import subprocess
import sys

import pytest

from device.metadata import NotTFLiteError, read_model_file
from tests.conftest import REPO

MEMORY_LIMIT = 1 << 30  # address space for the child: reading a 1 GB file (or /dev/zero) whole would exceed it


def limited_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def device(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "device.cli", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=60, preexec_fn=limited_memory)


def sparse_file(path, size: int, head: bytes = b"") -> os.PathLike:
    """A file of `size` bytes that takes no disk space (a hole after `head`)."""
    with open(path, "wb") as file:
        file.write(head)
        file.truncate(size)
    return path


@pytest.fixture
def odd_models(tmp_path) -> dict[str, tuple[os.PathLike, str]]:
    os.mkfifo(tmp_path / "fifo.tflite")  # opening it to read would wait for a writer forever
    (tmp_path / "folder.tflite").mkdir()
    return {
        "/dev/zero": ("/dev/zero", "/dev/zero: cannot read model: it is a device, pipe or socket, not a file"),
        "fifo": (tmp_path / "fifo.tflite", "cannot read model: it is a device, pipe or socket, not a file"),
        "folder": (tmp_path / "folder.tflite", "cannot read model: it is a directory, not a file"),
        "1 GB of zeros": (sparse_file(tmp_path / "big.bin", 1 << 30), "not a TFLite model (no TFL3 identifier)"),
    }


@pytest.mark.parametrize("kind", ["/dev/zero", "fifo", "folder", "1 GB of zeros"])
def test_device_info_refuses_what_cannot_be_a_model_without_reading_it(odd_models, kind):
    path, message = odd_models[kind]
    shown = device("info", path)
    assert shown.returncode == 1 and shown.stdout == ""
    assert shown.stderr.startswith("device: error: ") and shown.stderr.count("\n") == 1, shown.stderr
    assert message in shown.stderr


def test_device_classify_and_run_refuse_them_the_same_way(odd_models, tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.jpg").write_bytes(b"x")
    for command in (["classify", tmp_path / "photos", "--model"], ["run", "--http", "off", "--model"]):
        shown = device(*command, "/dev/zero")
        assert shown.returncode == 1 and shown.stderr == f"device: error: {odd_models['/dev/zero'][1]}\n"


def test_a_file_larger_than_any_model_is_refused_by_its_size(tmp_path):
    huge = sparse_file(tmp_path / "huge.tflite", 3 << 30, head=b"\x1c\0\0\0TFL3")
    with pytest.raises(NotTFLiteError, match=r"huge\.tflite: not a TFLite model \(3\.0 GiB; a FlatBuffer is under 2 GiB\)"):
        read_model_file(huge)


def test_a_labels_file_that_is_a_device_is_refused(reference_model):
    shown = device("info", reference_model, "--labels", "/dev/zero")
    assert shown.returncode == 1
    assert shown.stderr.endswith("cannot read labels file /dev/zero: it is a device, pipe or socket, not a file\n")
    assert shown.stderr.count("\n") == 1
